"""Benchmark radis-mlx against the anchors (llama.cpp's bare child; mlx_lm.server and stream_generate).

The code is radis_mlx/bench (also `radis-mlx bench`); see its --help and docs/BENCHMARKS.md.

Usage: .venv/bin/python scripts/bench.py [--engines llamacpp,mlx,distributed] [--rounds 3] [--tokens 128] ...
"""

from __future__ import annotations

import sys

from radis_mlx.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
