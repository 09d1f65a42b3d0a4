"""The per-dtype BLAS/LAPACK call limits kernelgen keeps (CALL_LIMITS) are safe here.

Each call runs in a subprocess with the default (multithreaded) BLAS, so a segfault
fails the test instead of killing pytest. FACTS.md: the stock OpenBLAS crashed in
float32 potrf from n ~ 40,000 and in float64 from ~23,000; CALL_LIMITS stays far below.
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


def test_limits_are_below_measured_crash_points():
    # FACTS.md crash points: float32 potrf 40,000 (33,000 ran), float64 potrf 23,000 (21,500 ran)
    assert CALL_LIMITS[np.dtype(np.float32)].potrf_n < 33000
    assert CALL_LIMITS[np.dtype(np.float64)].potrf_n < 21500
    assert DEFAULT_TILE <= min(lim.potrf_n for lim in CALL_LIMITS.values())
