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
(trsm) for i > k; A_ij <- A_ij - L_ik L_jk^T for k < j < i (GEMM, one call per tile)
and A_ii <- A_ii - L_ik L_ik^T (SYRK, lower triangle).
"""

from __future__ import annotations

import logging
import os
import time
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
    "exact_integer_form",
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


def tiled_cholesky(P: LowerPanels, *, verbose: bool = False, desc: str = "cholesky",
                   stats: dict | None = None) -> None:
    """Factor P = L L^T in place (lower triangle of P becomes L).

    ``stats``, when given, accumulates the seconds spent in potrf, trsm and gemm (incl. syrk).

    Raises
    ------
    NotPositiveDefiniteError
        At the first non-positive pivot, with its global (zero-based) index.
    """
    potrf, trsm, gemm = _blas("potrf", P.dtype), _blas("trsm", P.dtype), _blas("gemm", P.dtype)
    syrk = _blas("syrk", P.dtype)
    lim = CALL_LIMITS[P.dtype]
    b, T = P.bounds, P.n_tiles
    flops = P.n**3 / 3.0
    clock = time.perf_counter
    st = {"potrf": 0.0, "trsm": 0.0, "gemm": 0.0}
    with tqdm(total=T, desc=desc, unit="tile", disable=not verbose) as bar:
        for k in range(T):
            Akk = P.tile_view(k, k)
            t0 = clock()
            c, info = potrf(Akk, lower=1, clean=0, overwrite_a=1)
            st["potrf"] += clock() - t0
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
            t0 = clock()
            for i in range(k + 1, T):
                Aik = P.tile_view(i, k)
                x = trsm(1.0, Akk, Aik, side=1, lower=1, trans_a=1, overwrite_b=1)
                _check_inplace(x, Aik, "trsm")
            st["trsm"] += clock() - t0
            if k + 1 < T:
                # trailing update tile by tile: A_ij -= L_ik L_jk^T for k < j <= i. Every operand is a
                # Fortran-contiguous tile, so SciPy's wrapper passes it to BLAS without a copy.
                t0 = clock()
                for i in range(k + 1, T):
                    Lik = P.tile_view(i, k)
                    for j in range(k + 1, i):
                        C = P.tile_view(i, j)
                        r = gemm(-1.0, Lik, P.tile_view(j, k), trans_b=1, beta=1.0, c=C, overwrite_c=1)
                        _check_inplace(r, C, "gemm")
                    C = P.tile_view(i, i)  # diagonal tile: lower triangle only (syrk, half the flops)
                    r = syrk(-1.0, Lik, beta=1.0, c=C, lower=1, overwrite_c=1)
                    _check_inplace(r, C, "syrk")
                st["gemm"] += clock() - t0
            bar.update(1)
    if stats is not None:
        for key, v in st.items():
            stats[key] = stats.get(key, 0.0) + v
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

    def work(r0, r1):
        off = None if diag_offset is None else diag_offset + r0
        _apply_kernel_inplace(G[r0:r1], sq_r[r0:r1], sq_c, params, same_diag_offset=off)

    _in_row_chunks(G.shape[0], G.shape[1], work)


def _in_row_chunks(rows: int, cols: int, work) -> None:
    """Call work(r0, r1) over cache-sized row chunks of a rows x cols block, on all cores."""
    step = max(1, _CHUNK_ELEMS // max(1, cols))
    chunks = [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]
    if len(chunks) == 1 or _n_threads() == 1:
        for r0, r1 in chunks:
            work(r0, r1)
    else:
        with ThreadPoolExecutor(_n_threads()) as ex:
            list(ex.map(lambda rr: work(*rr), chunks))


def fill_kernel_panels(P: LowerPanels, X: np.ndarray, params: dict, *, verbose: bool = False,
                       desc: str = "kernel") -> None:
    """Fill P with the lower triangle (and full diagonal tiles) of k(X, X).

    X must already have P's dtype. Each panel is computed as k(X[:b_{i+1}], X[rows_i])
    into its C-order buffer, i.e. directly into the Fortran panel (no copy).
    """
    src = _BlockSource(X, X, params, P.dtype, same=True)
    b = P.bounds
    for i in tqdm(range(P.n_tiles), desc=desc, unit="panel", disable=not verbose):
        r0, r1 = b[i], b[i + 1]
        buf = P.panels[i].T  # C-order (r1, rows_i): buf[c, r] = k(x_c, x_{r0 + r})
        # diagonal: element (c, r) with c = r0 + r, i.e. in row-chunk terms col = row - r0
        src.block(0, r1, r0, r1, -r0, buf)


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


#: float32 represents every integer of magnitude < 2^24 exactly, so a float32 GEMM of integer
#: matrices whose sums of |products| stay below this bound is exact, in any summation order.
_FLOAT32_EXACT_INT = 2**24


def exact_integer_form(X: np.ndarray, *, center: float | None = None,
                       scales=(255.0, 256.0, 1.0)):
    """Detect X = k / c for integers k (e.g. 8-bit images scaled by 1/255) and centre them.

    Returns ``(Kc, c, center)`` with Kc = k - center as float32, or None when X is not of
    that form or when d * max|Kc|^2 >= 2^24 (a float32 GEMM of Kc would then not be exact).
    Squared distances are translation invariant, so for distance kernels the Gram of the
    centred integers gives ||x - z||^2 = (|k|^2 + |k'|^2 - 2 <k, k'>) / c^2 *exactly* in the
    numerator, at the float32 GEMM rate (twice the float64 one).
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.size == 0 or X.dtype.kind != "f":
        return None
    for c in scales:
        K = np.rint(X * c)
        if not np.array_equal(K / c, X):
            continue
        if center is None:
            center = float(np.rint((K.max() + K.min()) / 2.0))
        Kc = K - center
        m = float(np.abs(Kc).max())
        if X.shape[1] * m * m >= _FLOAT32_EXACT_INT:
            return None
        return Kc.astype(np.float32), float(c), center
    return None


class _BlockSource:
    """Builds float64 (or float32) kernel blocks k(A[rows], B[cols]) for the blockwise products.

    When both sides are exact integers over a common scale (see :func:`exact_integer_form`)
    and the kernel is a distance kernel, the inner products come from an exact float32 GEMM
    of the centred integers; otherwise from a GEMM in ``dtype``.
    """

    def __init__(self, A, B, params, dtype, *, same: bool):
        self.params, self.dtype = params, np.dtype(dtype)
        self.lim = CALL_LIMITS[self.dtype]
        self.int_form = None
        if self.dtype == np.float64 and params["kernel"] in ("gaussian", "laplace"):
            fa = exact_integer_form(A)
            fb = fa if same or fa is None else exact_integer_form(B, center=fa[2], scales=(fa[1],))
            if fa is not None and fb is not None:
                m = float(np.abs(fa[0]).max()) * float(np.abs(fb[0]).max())
                if A.shape[1] * m < _FLOAT32_EXACT_INT:
                    self.int_form = (fa[0], fb[0], fa[1])
        if self.int_form is not None:
            Ia, Ib, c = self.int_form
            self.A, self.B = Ia, Ib
            self.sqa = np.einsum("ij,ij->i", Ia.astype(np.float64), Ia.astype(np.float64))
            self.sqb = self.sqa if same else np.einsum("ij,ij->i", Ib.astype(np.float64), Ib.astype(np.float64))
            self.inv_c2 = 1.0 / (c * c)
            log.debug("exact integer inner products (scale 1/%g) for the float64 kernel", c)
        else:
            self.A = np.asarray(A, dtype=self.dtype)
            self.B = self.A if same else np.asarray(B, dtype=self.dtype)
            self.sqa = np.einsum("ij,ij->i", self.A, self.A)
            self.sqb = self.sqa if same else np.einsum("ij,ij->i", self.B, self.B)
        self._buf32 = None

    def block(self, r0, r1, c0, c1, diag_offset, out):
        if self.int_form is None:
            return _kernel_block(self.A[r0:r1], self.B[c0:c1], self.sqa[r0:r1], self.sqb[c0:c1],
                                 self.params, diag_offset, out)
        rows, cols = r1 - r0, c1 - c0
        if self._buf32 is None or self._buf32.shape[0] < rows or self._buf32.shape[1] < cols:
            self._buf32 = np.empty((max(rows, self.lim.gemm_rows), max(cols, self.lim.gemm_cols)), np.float32)
        G = self._buf32[:rows, :cols]
        for a0 in range(0, rows, self.lim.gemm_rows):
            a1 = min(rows, a0 + self.lim.gemm_rows)
            for b0 in range(0, cols, self.lim.gemm_cols):
                b1 = min(cols, b0 + self.lim.gemm_cols)
                np.matmul(self.A[r0 + a0:r0 + a1], self.B[c0 + b0:c0 + b1].T, out=G[a0:a1, b0:b1])
        sq_r, sq_c, params, inv_c2 = self.sqa[r0:r1], self.sqb[c0:c1], self.params, self.inv_c2

        def work(a, b):
            o = out[a:b]
            o[...] = G[a:b]  # exact integers, float32 -> float64
            o *= -2.0
            o += sq_r[a:b, None]
            o += sq_c[None, :]
            o *= inv_c2  # |x - z|^2: exact integer numerator, one rounding
            _apply_kernel_inplace(o, None, None, params, distances_ready=True)

        _in_row_chunks(rows, cols, work)
        return out


def symmetric_kernel_matvec(X: np.ndarray, V: np.ndarray, params: dict, *, tile: int = DEFAULT_TILE,
                            dtype=np.float64, verbose: bool = False, desc: str = "K @ v") -> np.ndarray:
    """k(X, X) @ V with the kernel computed on the fly in ``dtype`` (default float64).

    Uses symmetry: every off-diagonal block is computed once and used for both of its
    products (K_ij V_j into row block i, K_ij^T V_i into row block j). Memory: one
    block of ``tile x gemm_cols`` plus the output. Integer-valued data (e.g. pixels / 255)
    get exact inner products from a float32 GEMM (:func:`exact_integer_form`).
    """
    dtype = np.dtype(dtype)
    V = np.asarray(V, dtype=dtype)
    n = X.shape[0]
    lim = CALL_LIMITS[dtype]
    tile = min(tile, lim.potrf_n)
    src = _BlockSource(X, X, params, dtype, same=True)
    out = np.zeros_like(V)
    b = _bounds(n, tile)
    buf = np.empty((tile, lim.gemm_cols), dtype=dtype)
    for i in tqdm(range(len(b) - 1), desc=desc, unit="panel", disable=not verbose):
        r0, r1 = b[i], b[i + 1]
        for c0 in range(0, r1, lim.gemm_cols):
            c1 = min(r1, c0 + lim.gemm_cols)
            Kb = buf[: r1 - r0, : c1 - c0]
            src.block(r0, r1, c0, c1, r0 - c0, Kb)
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
    V = np.asarray(V, dtype=dtype)
    lim = CALL_LIMITS[dtype]
    src = _BlockSource(Xa, Xb, params, dtype, same=False)
    out = np.zeros((Xa.shape[0],) + V.shape[1:], dtype=dtype)
    rows = min(lim.gemm_rows, 2048)
    buf = np.empty((rows, lim.gemm_cols), dtype=dtype)
    starts = range(0, Xa.shape[0], rows)
    for r0 in tqdm(starts, desc=desc, unit="block", disable=not verbose):
        r1 = min(Xa.shape[0], r0 + rows)
        for c0 in range(0, Xb.shape[0], lim.gemm_cols):
            c1 = min(Xb.shape[0], c0 + lim.gemm_cols)
            Kb = buf[: r1 - r0, : c1 - c0]
            src.block(r0, r1, c0, c1, None, Kb)
            out[r0:r1] += Kb @ V[c0:c1]
    return out
