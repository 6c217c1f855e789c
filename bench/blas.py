"""NumPy's BLAS as threadpoolctl sees it: library, kernel (architecture), threads.

OpenBLAS picks its kernel at start-up, and OPENBLAS_CORETYPE overrides the choice, so the
kernel is read in the same kind of child process that runs the NumPy variant:
``python -m bench.blas`` prints one JSON line.
"""

from __future__ import annotations

import json
import sys

import numpy  # noqa: F401  loads the BLAS that threadpoolctl then inspects


def blas_info() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"error": "threadpoolctl not installed (pip install threadpoolctl)"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {key: pool.get(key) for key in ("internal_api", "architecture", "num_threads", "version")}
    return {"error": "no BLAS found"}


if __name__ == "__main__":
    print(json.dumps(blas_info()))
    sys.exit(0)
