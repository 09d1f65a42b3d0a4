"""Tiled symmetric storage and the bounded-call tiled Cholesky (private).

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
(float64 cho_factor from n = 16,384 to ~23,000 depending on the machine, float32 from ~33,000:
docs/numerics.md, "BLAS and LAPACK call limits"); the tests in
``tests/test_blas_limits.py`` run calls at these limits in a subprocess.

Algorithm (right-looking tiled Cholesky, Golub & Van Loan, Matrix Computations,
4th ed., Alg. 4.2.2 blocked by tiles): for k = 0..T-1: potrf(A_kk); A_ik <- A_ik L_kk^-T
(trsm) for i > k; A_ij <- A_ij - L_ik L_jk^T for k < j < i (GEMM, one call per tile)
and A_ii <- A_ii - L_ik L_ik^T (SYRK, lower triangle).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.linalg import blas, lapack
from tqdm.auto import tqdm

from ..errors import InvalidInputError, NotPositiveDefiniteError
from ..numerics import CALL_LIMITS, empty_hugepages

log = logging.getLogger(__name__)

__all__ = [
    "LowerPanels",
    "tiled_cholesky",
    "cholesky_solve_panels",
    "symmetric_matvec_panels",
]


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
        # (on transparent huge pages: filling fresh panels otherwise costs a page fault per 4 KiB)
        self.panels = [
            empty_hugepages((self.bounds[i + 1], self.bounds[i + 1] - self.bounds[i]), self.dtype).T
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

    def leading(self, m: int) -> "LowerPanels":
        """The leading ``m x m`` block as read-only views of these panels (no entry is copied).

        The same layout cut at row and column ``m``: panels wholly above ``m`` are the panels
        themselves, the panel that ``m`` cuts is its first ``m - b_i`` rows and ``m`` columns, the
        panels below are dropped; ``m`` need not be a multiple of the tile. The views are
        read-only (a write would change this storage: factor or fill a block in its own
        :class:`LowerPanels`). They keep this storage alive.

        Because the lower triangle of a Cholesky factor is computed row panel by row panel from
        the entries to its left and above, the leading block of a factor ``L`` of ``A`` is the
        factor of the leading block of ``A`` (``A[:m, :m] = L[:m, :m] L[:m, :m]^T``; Golub & Van
        Loan, Matrix Computations, 4th ed., §4.2.2): :func:`cholesky_solve_panels` on the view
        solves with ``A[:m, :m]``, and :func:`symmetric_matvec_panels` on the view of a stored
        kernel multiplies by ``K[:m, :m]``.

        Parameters
        ----------
        m : int
            Order of the leading block, ``1 <= m <= n``.

        Returns
        -------
        LowerPanels
            ``n = m``, the same tile and dtype; its panels are views.

        Raises
        ------
        InvalidInputError
            ``m`` is not an integer in ``[1, n]``.
        """
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= int(m) <= self.n:
            raise InvalidInputError(f"the leading block's order must be an integer in [1, {self.n}], got {m!r}.")
        m = int(m)
        view = object.__new__(LowerPanels)
        view.n, view.dtype, view.tile = m, self.dtype, self.tile
        view.bounds = _bounds(m, self.tile)
        view.panels = []
        for i in range(len(view.bounds) - 1):
            r0, r1 = view.bounds[i], view.bounds[i + 1]
            p = self.panels[i][: r1 - r0, :r1]
            p.flags.writeable = False
            view.panels.append(p)
        return view

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
                        "solver='min_norm' for the minimum-norm interpolant of a singular matrix, "
                        "dtype='float64' if the float32 factor failed, "
                        "or an explicit ridge=... (reported, never added silently).",
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
