"""Shared helpers for the benchmarks: BLAS rates measured in the same run, machine info.

Argument parsing, the final JSON line (with provenance) and peak RSS (``peak_rss_gb``) come from
:mod:`kernelgen.cli`, as for the scripts.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

__all__ = ["gemm_rate", "machine"]


def gemm_rate(dtype, n: int = 4096, reps: int = 3) -> float:
    """Best-of-``reps`` GFLOP/s of an n x n x n GEMM with the BLAS NumPy uses (all cores)."""
    rng = np.random.default_rng(0)
    A = rng.random((n, n)).astype(dtype)
    B = rng.random((n, n)).astype(dtype)
    C = np.empty((n, n), dtype=dtype)
    np.matmul(A, B, out=C)  # warm up
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(A, B, out=C)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, load(1 min) {load:.2f} at start"
