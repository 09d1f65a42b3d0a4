"""Tiled symmetric storage, tiled Cholesky and blockwise kernel products (private).

Storage
-------
:class:`LowerPanels` keeps the lower triangle of a symmetric n x n matrix as row
panels: panel i holds rows [b_i, b_{i+1}) and columns [0, b_{i+1}), stored in
Fortran order so that every tile (a column range of a panel) is a contiguous
Fortran array that SciPy's BLAS/LAPACK wrappers update in place. It needs about
half the memory of a dense matrix (60,000 float32: 7.2 GB instead of 14.4 GB).

Every BLAS/LAPACK call is bounded (:data:`CALL_LIMITS`): potrf/trsm act on one
tile, GEMM outputs are at most ``tile x gemm_cols``. The stock multithreaded
OpenBLAS shipped in NumPy/SciPy wheels segfaults on very large single calls
(FACTS.md: float32 cho_factor from n ~ 40,000, float64 from ~23,000); the tests in
``tests/test_blas_limits.py`` run calls at these limits in a subprocess.

Algorithm (right-looking tiled Cholesky, Golub & Van Loan, Matrix Computations,
4th ed., Alg. 4.2.2 blocked by tiles): for k = 0..T-1: potrf(A_kk); A_ik <- A_ik L_kk^-T
(trsm) for i > k; A_ij <- A_ij - L_ik L_jk^T for k < j <= i (GEMM, one call per
panel row and column chunk).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas, lapack
from tqdm.auto import tqdm

from ..errors import NotPositiveDefiniteError
from ..kernels import _apply_kernel_inplace

log = logging.getLogger(__name__)

__all__ = [
    "CALL_LIMITS",
    "CallLimits",
    "LowerPanels",
    "tiled_cholesky",
    "cholesky_solve_panels",
    "fill_kernel_panels",
    "symmetric_matvec_panels",
    "symmetric_kernel_matvec",
    "kernel_matvec",
]


@dataclass(frozen=True)
class CallLimits:
    """Largest single BLAS/LAPACK call kernelgen issues for one dtype.

    potrf_n : order of the largest potrf (one diagonal tile; also the tile size cap)
    gemm_rows, gemm_cols : largest GEMM output block
    """

    potrf_n: int
    gemm_rows: int
    gemm_cols: int


#: Tested per-dtype call limits (tests/test_blas_limits.py runs each at its limit in a
#: subprocess). Far below the measured crash points (float32 potrf ~40,000, float64
#: ~23,000; float64 GEMM 25,000^2 crashed, 20,000^2 ran): FACTS.md.
CALL_LIMITS = {
    np.dtype(np.float32): CallLimits(potrf_n=8192, gemm_rows=8192, gemm_cols=16384),
    np.dtype(np.float64): CallLimits(potrf_n=8192, gemm_rows=8192, gemm_cols=16384),
}

#: Default tile size: large enough for GEMM to run near peak, small enough that the
#: serial potrf on the diagonal is cheap.
DEFAULT_TILE = 2048


def _n_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _bounds(n: int, tile: int) -> list[int]:
    return list(range(0, n, tile)) + [n]


class LowerPanels:
    """Lower triangle of a symmetric matrix stored as Fortran-ordered row panels.

    Parameters
    ----------
    n : int
        Order of the matrix.
    tile : int
        Panel height (and tile width).
    dtype : float32 or float64
    """

    def __init__(self, n: int, tile: int, dtype):
        self.n = int(n)
        self.dtype = np.dtype(dtype)
        limit = CALL_LIMITS[self.dtype].potrf_n
        self.tile = int(min(tile, limit))
        self.bounds = _bounds(self.n, self.tile)
        # panel i: C-order (b_{i+1}, rows_i) buffer, exposed transposed as Fortran (rows_i, b_{i+1})
        self.panels = [
            np.empty((self.bounds[i + 1], self.bounds[i + 1] - self.bounds[i]), dtype=self.dtype).T
            for i in range(self.n_tiles)
        ]

    @staticmethod
    def nbytes_for(n: int, tile: int, dtype) -> int:
        b = _bounds(int(n), int(tile))
        return int(sum((b[i + 1] - b[i]) * b[i + 1] for i in range(len(b) - 1)) * np.dtype(dtype).itemsize)

    @property
    def n_tiles(self) -> int:
        return len(self.bounds) - 1

    @property
    def nbytes(self) -> int:
        return int(sum(p.nbytes for p in self.panels))

    def tile_view(self, i: int, j: int) -> np.ndarray:
        """Tile (i, j), j <= i, as a Fortran-contiguous view (writes go to storage)."""
        return self.panels[i][:, self.bounds[j]:self.bounds[j + 1]]

    @classmethod
    def from_dense(cls, A: np.ndarray, tile: int, dtype) -> "LowerPanels":
        """Copy the lower triangle (and diagonal tiles in full) of a dense symmetric A."""
        P = cls(A.shape[0], tile, dtype)
        for i in range(P.n_tiles):
            r0, r1 = P.bounds[i], P.bounds[i + 1]
            P.panels[i][...] = A[r0:r1, :r1]
        return P

    def to_dense(self, *, symmetric: bool = True) -> np.ndarray:
        """Dense copy (for tests and small n): lower triangle mirrored when symmetric."""
        A = np.zeros((self.n, self.n), dtype=self.dtype)
        for i in range(self.n_tiles):
            r0, r1 = self.bounds[i], self.bounds[i + 1]
            A[r0:r1, :r1] = self.panels[i]
        A = np.tril(A)
        if symmetric:
            A = A + np.tril(A, -1).T
        return A

    def diagonal(self) -> np.ndarray:
        return np.concatenate([np.diag(self.tile_view(i, i)).copy() for i in range(self.n_tiles)])

    def add_to_diagonal(self, value: float) -> None:
        for i in range(self.n_tiles):
            t = self.tile_view(i, i)
            idx = np.arange(t.shape[0])
            t[idx, idx] += value


def _blas(name: str, dtype):
    prefix = "s" if np.dtype(dtype) == np.float32 else "d"
    mod = lapack if name == "potrf" else blas
    return getattr(mod, prefix + name)


def _check_inplace(result, target, what):
    if not np.shares_memory(result, target):  # pragma: no cover - depends on SciPy internals
        log.warning("%s did not run in place; copying back", what)
        target[...] = result


def tiled_cholesky(P: LowerPanels, *, verbose: bool = False, desc: str = "cholesky") -> None:
    """Factor P = L L^T in place (lower triangle of P becomes L).

    Raises
    ------
    NotPositiveDefiniteError
        At the first non-positive pivot, with its global (zero-based) index.
    """
    potrf, trsm, gemm = _blas("potrf", P.dtype), _blas("trsm", P.dtype), _blas("gemm", P.dtype)
    lim = CALL_LIMITS[P.dtype]
    b, T = P.bounds, P.n_tiles
    flops = P.n**3 / 3.0
    with tqdm(total=T, desc=desc, unit="tile", disable=not verbose) as bar:
        for k in range(T):
            Akk = P.tile_view(k, k)
            c, info = potrf(Akk, lower=1, clean=0, overwrite_a=1)
            if info != 0:
                if info > 0:
                    idx = b[k] + info - 1
                    raise NotPositiveDefiniteError(
                        f"Cholesky factorisation failed at pivot {idx} of {P.n} ({P.dtype} arithmetic): "
                        "the matrix is not positive definite to working precision. Remedies: use "
                        "solver='min_norm' for the minimum-norm interpolant of a singular kernel, "
                        "dtype='float64' if the float32 factor failed, a larger bandwidth, "
                        "or an explicit ridge (reported, never added silently).",
                        index=idx,
                    )
                raise RuntimeError(f"potrf argument error info={info}")  # pragma: no cover
            _check_inplace(c, Akk, "potrf")
            for i in range(k + 1, T):
                Aik = P.tile_view(i, k)
                x = trsm(1.0, Akk, Aik, side=1, lower=1, trans_a=1, overwrite_b=1)
                _check_inplace(x, Aik, "trsm")
            if k + 1 < T:
                # column panel k below the diagonal, gathered once: C-order (m, nb) -> F view (nb, m)
                CkT = np.concatenate([P.tile_view(i, k) for i in range(k + 1, T)], axis=0).T
                base = b[k + 1]
                for i in range(k + 1, T):
                    Lik = P.tile_view(i, k)
                    width = b[i + 1] - base
                    for c0 in range(0, width, lim.gemm_cols):
                        c1 = min(width, c0 + lim.gemm_cols)
                        C = P.panels[i][:, base + c0:base + c1]
                        r = gemm(-1.0, Lik, CkT[:, c0:c1], beta=1.0, c=C, overwrite_c=1)
                        _check_inplace(r, C, "gemm")
            bar.update(1)
    log.debug("tiled cholesky n=%d tile=%d (%.3g flop)", P.n, P.tile, flops)


def cholesky_solve_panels(L: LowerPanels, B: np.ndarray) -> np.ndarray:
    """Solve (L L^T) X = B with a factor from :func:`tiled_cholesky`.

    B : array of shape (n, k) in any float dtype; computed in L's dtype.
    """
    trsm = _blas("trsm", L.dtype)
    b, T = L.bounds, L.n_tiles
    Y = np.asfortranarray(B, dtype=L.dtype).copy(order="F")
    # forward: L y = B, by panel rows (each panel read once)
    for i in range(T):
        r0, r1 = b[i], b[i + 1]
        if r0 > 0:
            Y[r0:r1] -= L.panels[i][:, :r0] @ Y[:r0]
        Yi = np.asfortranarray(Y[r0:r1])
        Y[r0:r1] = trsm(1.0, L.tile_view(i, i), Yi, side=0, lower=1, trans_a=0, overwrite_b=1)
    # backward: L^T x = y; after solving block i, subtract its contribution from rows above
    for i in range(T - 1, -1, -1):
        r0, r1 = b[i], b[i + 1]
        Yi = np.asfortranarray(Y[r0:r1])
        Y[r0:r1] = trsm(1.0, L.tile_view(i, i), Yi, side=0, lower=1, trans_a=1, overwrite_b=1)
        if r0 > 0:
            Y[:r0] -= L.panels[i][:, :r0].T @ Y[r0:r1]
    return Y


def _kernel_block(Xr, Xc, sq_r, sq_c, params, diag_offset, out):
    """out <- k(Xr, Xc) in out's dtype; out is (len(Xr), len(Xc)), any memory order."""
    lim = CALL_LIMITS[out.dtype]
    for r0 in range(0, Xr.shape[0], lim.gemm_rows):
        r1 = min(Xr.shape[0], r0 + lim.gemm_rows)
        for c0 in range(0, Xc.shape[0], lim.gemm_cols):
            c1 = min(Xc.shape[0], c0 + lim.gemm_cols)
            np.matmul(Xr[r0:r1], Xc[c0:c1].T, out=out[r0:r1, c0:c1])
    _apply_parallel(out, sq_r, sq_c, params, diag_offset)
    return out


#: Elements per chunk of the elementwise kernel transform: ~1 MB, so that the six passes
#: (scale, add, add, clip, scale, exp) over a chunk run in cache rather than from memory.
_CHUNK_ELEMS = 1 << 17


def _apply_parallel(G, sq_r, sq_c, params, diag_offset):
    """Elementwise kernel transform of G in cache-sized row chunks, on all cores (ufuncs release the GIL)."""
    if params["kernel"] == "linear":
        return
    n = G.shape[0]
    chunk_rows = max(1, _CHUNK_ELEMS // max(1, G.shape[1]))
    chunks = [(r0, min(n, r0 + chunk_rows)) for r0 in range(0, n, chunk_rows)]

    def work(rr):
        r0, r1 = rr
        off = None if diag_offset is None else diag_offset + r0
        _apply_kernel_inplace(G[r0:r1], sq_r[r0:r1], sq_c, params, same_diag_offset=off)

    if len(chunks) == 1 or _n_threads() == 1:
        for rr in chunks:
            work(rr)
    else:
        with ThreadPoolExecutor(_n_threads()) as ex:
            list(ex.map(work, chunks))


def fill_kernel_panels(P: LowerPanels, X: np.ndarray, params: dict, *, verbose: bool = False,
                       desc: str = "kernel") -> None:
    """Fill P with the lower triangle (and full diagonal tiles) of k(X, X).

    X must already have P's dtype. Each panel is computed as k(X[:b_{i+1}], X[rows_i])
    into its C-order buffer, i.e. directly into the Fortran panel (no copy).
    """
    sq = np.einsum("ij,ij->i", X, X)
    b = P.bounds
    for i in tqdm(range(P.n_tiles), desc=desc, unit="panel", disable=not verbose):
        r0, r1 = b[i], b[i + 1]
        buf = P.panels[i].T  # C-order (r1, rows_i): buf[c, r] = k(x_c, x_{r0 + r})
        # diagonal: element (c, r) with c = r0 + r, i.e. in row-chunk terms col = row - r0
        _kernel_block(X[:r1], X[r0:r1], sq[:r1], sq[r0:r1], params, -r0, buf)


def symmetric_matvec_panels(P: LowerPanels, V: np.ndarray) -> np.ndarray:
    """K @ V for K stored in P (lower panels, full diagonal tiles), in P's dtype."""
    V = np.asarray(V, dtype=P.dtype)
    out = np.zeros_like(V)
    b = P.bounds
    for i in range(P.n_tiles):
        r0, r1 = b[i], b[i + 1]
        Pi = P.panels[i]
        out[r0:r1] += Pi @ V[:r1]  # strictly-lower tiles and the full diagonal tile
        if r0 > 0:
            out[:r0] += Pi[:, :r0].T @ V[r0:r1]  # their mirror images
    return out


def symmetric_kernel_matvec(X: np.ndarray, V: np.ndarray, params: dict, *, tile: int = DEFAULT_TILE,
                            dtype=np.float64, verbose: bool = False, desc: str = "K @ v") -> np.ndarray:
    """k(X, X) @ V with the kernel computed on the fly in ``dtype`` (default float64).

    Uses symmetry: every off-diagonal block is computed once and used for both of its
    products (K_ij V_j into row block i, K_ij^T V_i into row block j). Memory: one
    block of ``tile x gemm_cols`` plus the output.
    """
    dtype = np.dtype(dtype)
    X = np.asarray(X, dtype=dtype)
    V = np.asarray(V, dtype=dtype)
    n = X.shape[0]
    lim = CALL_LIMITS[dtype]
    tile = min(tile, lim.potrf_n)
    sq = np.einsum("ij,ij->i", X, X)
    out = np.zeros_like(V)
    b = _bounds(n, tile)
    buf = np.empty((tile, lim.gemm_cols), dtype=dtype)
    for i in tqdm(range(len(b) - 1), desc=desc, unit="panel", disable=not verbose):
        r0, r1 = b[i], b[i + 1]
        for c0 in range(0, r1, lim.gemm_cols):
            c1 = min(r1, c0 + lim.gemm_cols)
            Kb = buf[: r1 - r0, : c1 - c0]
            _kernel_block(X[r0:r1], X[c0:c1], sq[r0:r1], sq[c0:c1], params, r0 - c0, Kb)
            # columns [c0, c1) intersect [0, r0) (strictly lower) and possibly the diagonal tile
            lo_end = min(c1, r0)
            if lo_end > c0:
                Kl = Kb[:, : lo_end - c0]
                out[r0:r1] += Kl @ V[c0:lo_end]
                out[c0:lo_end] += Kl.T @ V[r0:r1]
            if c1 > r0:  # diagonal tile part: columns [max(c0, r0), c1)
                d0 = max(c0, r0)
                out[r0:r1] += Kb[:, d0 - c0: c1 - c0] @ V[d0:c1]
    return out


def kernel_matvec(Xa: np.ndarray, Xb: np.ndarray, V: np.ndarray, params: dict, *, dtype=np.float64,
                  verbose: bool = False, desc: str = "predict") -> np.ndarray:
    """k(Xa, Xb) @ V computed blockwise in ``dtype`` without forming the full matrix."""
    dtype = np.dtype(dtype)
    Xa = np.asarray(Xa, dtype=dtype)
    Xb = np.asarray(Xb, dtype=dtype)
    V = np.asarray(V, dtype=dtype)
    lim = CALL_LIMITS[dtype]
    sqa = np.einsum("ij,ij->i", Xa, Xa)
    sqb = np.einsum("ij,ij->i", Xb, Xb)
    out = np.zeros((Xa.shape[0],) + V.shape[1:], dtype=dtype)
    rows = min(lim.gemm_rows, 2048)
    buf = np.empty((rows, lim.gemm_cols), dtype=dtype)
    starts = range(0, Xa.shape[0], rows)
    for r0 in tqdm(starts, desc=desc, unit="block", disable=not verbose):
        r1 = min(Xa.shape[0], r0 + rows)
        for c0 in range(0, Xb.shape[0], lim.gemm_cols):
            c1 = min(Xb.shape[0], c0 + lim.gemm_cols)
            Kb = buf[: r1 - r0, : c1 - c0]
            _kernel_block(Xa[r0:r1], Xb[c0:c1], sqa[r0:r1], sqb[c0:c1], params, None, Kb)
            out[r0:r1] += Kb @ V[c0:c1]
    return out
