"""`radis-mlx bench` (and scripts/bench.py): radis-mlx against the anchors, measured in one run."""
