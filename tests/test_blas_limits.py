"""The per-dtype BLAS/LAPACK call limits kernelgen keeps (CALL_LIMITS) are safe here.

Each call runs in a subprocess with the default (multithreaded) BLAS, so a segfault
fails the test instead of killing pytest. The stock threaded OpenBLAS crashed in float64 potrf
from n = 16,384 on the Intel Xeon machine (2026-12-05) and from ~23,000 on the AMD EPYC ones, and in
float32 potrf from 33,000 (Intel) / 40,000 (AMD): docs/numerics.md, "BLAS and LAPACK call limits".
CALL_LIMITS stays below the largest sizes that ran on every machine.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kernelgen.numerics import CALL_LIMITS, DEFAULT_TILE

CODE = textwrap.dedent(
    """
    import numpy as np, sys
    from scipy.linalg import blas, lapack
    from kernelgen.numerics import CALL_LIMITS, DEFAULT_TILE
    dt = np.dtype(sys.argv[1]); what = sys.argv[2]; lim = CALL_LIMITS[dt]; p = 's' if dt == np.float32 else 'd'
    rng = np.random.default_rng(0)
    if what == 'potrf':
        n = lim.potrf_n
        A = np.asfortranarray(rng.random((n, n), dtype=np.float64).astype(dt) * 0.5)
        A += A.T; A[np.diag_indices(n)] += n          # diagonally dominant: SPD
        c, info = getattr(lapack, p + 'potrf')(A, lower=1, overwrite_a=1, clean=0)
        assert info == 0, info
    else:  # the largest GEMM the engine issues: tile x K times K x gemm_cols (K = tile), and kernel blocks (K = d)
        for k in (DEFAULT_TILE, 4096):
            a = np.asfortranarray(rng.random((lim.gemm_rows, k)).astype(dt))
            b = np.asfortranarray(rng.random((k, lim.gemm_cols)).astype(dt))
            c = getattr(blas, p + 'gemm')(1.0, a, b)
            assert np.isfinite(c[::997, ::997]).all()
    print('ok')
    """
)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("what", ["potrf", "gemm"])
def test_call_limits_do_not_crash(dtype, what):
    r = subprocess.run([sys.executable, "-c", CODE, dtype, what], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"exit {r.returncode} (negative = killed by signal): {r.stderr[-2000:]}"
    assert r.stdout.strip().endswith("ok")


# Largest single calls that ran with the default (threaded) BLAS on every machine measured, one call per
# process (docs/numerics.md, "BLAS and LAPACK call limits"): potrf order and X @ X.T order per dtype.
RAN_EVERYWHERE = {
    np.dtype(np.float32): {"potrf": 24000, "gemm": 30000},  # crashed: potrf 33,000 (Intel), X @ X.T 60,000
    np.dtype(np.float64): {"potrf": 14000, "gemm": 20000},  # crashed: potrf 16,384 (Intel), X @ X.T 25,000
}


def test_limits_are_below_measured_crash_points():
    for dt, ran in RAN_EVERYWHERE.items():
        lim = CALL_LIMITS[dt]
        assert lim.potrf_n < ran["potrf"], dt
        assert max(lim.gemm_rows, lim.gemm_cols) < ran["gemm"], dt
    assert DEFAULT_TILE <= min(lim.potrf_n for lim in CALL_LIMITS.values())
