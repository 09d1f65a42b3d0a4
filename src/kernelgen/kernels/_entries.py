"""Accurate kernel entries in bounded blocks, and the blockwise products built on them.

:class:`KernelEntries` is where a kernel's entries are computed; every solver, experiment and
backend gets its blocks from here. It owns the accuracy rules:

- **Distance kernels are centred.** ||x||^2 + ||z||^2 - 2<x, z> cancels catastrophically when the
  data sit far from the origin relative to their spread (FACTS.md); distances are translation
  invariant, so both operands are shifted by one common centre (the mean of the first operand)
  before the inner products.
- **Exact integer inner products.** When both operands are integers over a common scale (8-bit
  images / 255 or / 256), centred at the *first operand's* integer midrange, and
  d * max|a| * max|b| < 2^24, a float32 GEMM of the centred integers is exact in any summation
  order (:func:`exact_integer_form`), so the float64 kernel gets exact squared-distance numerators
  at the float32 GEMM rate.
- **Near-duplicates recomputed by differences.** Where ||x - z||^2 is much smaller than
  ||x - c||^2 + ||z - c||^2 (c the centre), the expansion has lost most of its digits; those
  entries are recomputed directly as sum (x - z)^2.
- **Bounded calls.** Every GEMM output is at most ``CALL_LIMITS[dtype].gemm_rows x gemm_cols``
  (the bundled OpenBLAS segfaults on very large single calls: FACTS.md).

The elementwise transform runs in cache-sized row chunks on all cores (NumPy ufuncs release the GIL).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from .._validation import as_float_array
from ..errors import InvalidInputError, ShapeMismatchError
from ..numerics import CALL_LIMITS, DEFAULT_TILE

__all__ = ["CompositeEntries", "KernelEntries", "exact_integer_form"]

log = logging.getLogger(__name__)

#: float32 represents every integer of magnitude < 2^24 exactly, so a float32 GEMM of integer
#: matrices whose sums of |products| stay below this bound is exact, in any summation order.
_FLOAT32_EXACT_INT = 2**24

#: Squared distances below this fraction of |x - c|^2 + |z - c|^2 are recomputed by differences:
#: the expansion's error ~u (|x - c|^2 + |z - c|^2) is then at most ~64 u relative to the distance.
_CLOSE = 1.0 / 64.0

#: Elements per chunk of the elementwise transform: ~1 MB, so its passes run in cache.
_CHUNK_ELEMS = 1 << 17


def _n_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


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


def exact_integer_form(X: np.ndarray, *, center: float | None = None, scales=(255.0, 256.0, 1.0)):
    """Detect X = k / c for integers k (e.g. 8-bit images / 255) and centre them.

    Parameters
    ----------
    X : ndarray of shape (n, d), floating
    center : float, optional
        Integer centre to subtract; default the integer midrange of X. Pass the first operand's
        centre when forming the second operand of a cross block.
    scales : tuple of float
        Candidate scales c.

    Returns
    -------
    (Kc, c, center) or None
        Kc = k - center as float32; None when X is not of that form or when
        d * max|Kc|^2 >= 2^24 (a float32 GEMM of Kc would then not be exact).
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


def _safe_mean(A: np.ndarray) -> np.ndarray:
    """Column means without overflow (entries up to the float64 maximum)."""
    m = np.max(np.abs(A)) if A.size else 0.0
    if not np.isfinite(m) or m < 1e300:
        return A.mean(axis=0)
    return (A / 2.0).mean(axis=0) * 2.0


def _power_of_two_scale(A: np.ndarray, B: np.ndarray, dtype) -> int:
    """k such that squared norms of A / 2^k, B / 2^k neither overflow nor underflow in ``dtype`` (0 if fine)."""
    m = max(float(np.max(np.abs(A))) if A.size else 0.0, float(np.max(np.abs(B))) if B.size else 0.0)
    if m == 0.0:
        return 0
    fi = np.finfo(dtype)
    d = max(A.shape[1], 1)
    hi = np.sqrt(fi.max / (4.0 * d))  # |x|^2 + |z|^2 - 2<x, z> stays finite
    lo = np.sqrt(fi.tiny) * 2.0**12  # smallest squared distances stay normal, with room for rounding
    if lo <= m <= hi:
        return 0
    return int(np.frexp(m)[1])


def _gemm_bounded(A, B, out, lim):
    """out <- A @ B.T in blocks of at most lim.gemm_rows x lim.gemm_cols."""
    for r0 in range(0, A.shape[0], lim.gemm_rows):
        r1 = min(A.shape[0], r0 + lim.gemm_rows)
        for c0 in range(0, B.shape[0], lim.gemm_cols):
            c1 = min(B.shape[0], c0 + lim.gemm_cols)
            np.matmul(A[r0:r1], B[c0:c1].T, out=out[r0:r1, c0:c1])


def _validate_pair(A, B, dtype):
    dtype = np.dtype(dtype)
    if dtype.type not in (np.float32, np.float64):
        raise InvalidInputError(f"dtype must be float32 or float64, got {dtype}.")
    A = as_float_array(A, "X", ndim=(2,))
    same = B is None or B is A
    Bc = A if same else as_float_array(B, "Z", ndim=(2,))
    if Bc.shape[1] != A.shape[1]:
        raise ShapeMismatchError(f"X has {A.shape[1]} features but Z has {Bc.shape[1]}.")
    return A, Bc, same, dtype


class KernelEntries:
    """Blocks of k(A, B) computed accurately (see the module docstring).

    Parameters
    ----------
    kernel : Kernel
        A resolved kernel (no data-dependent default left).
    A : array of shape (n_A, d)
    B : array of shape (n_B, d) or None (B = A: diagonal entries of distance kernels exact)
    dtype : float32 or float64
        Precision of the entries produced.
    """

    def __init__(self, kernel, A, B=None, *, dtype=np.float64):
        A, B, same, dtype = _validate_pair(A, B, dtype)
        self.kernel, self.dtype, self.same = kernel, dtype, same
        self.shape = (A.shape[0], B.shape[0])
        self.n_features = A.shape[1]
        self.lim = CALL_LIMITS[dtype]
        self.int_form = None
        self.log2_scale = 0
        if kernel.stationary and dtype == np.float64:
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
            if kernel.stationary:
                # one common centre (the first operand's mean) for both operands: distances are
                # translation invariant and the expansion no longer cancels far from the origin
                A64 = np.asarray(A, dtype=np.float64)
                centre = _safe_mean(A64)
                Ac = A64 - centre
                Bc = Ac if same else np.asarray(B, dtype=np.float64) - centre
                # a power-of-two scale (exact) keeps squared norms inside the dtype's range; the kernel
                # is told the scale (distances far beyond or below the float range still give the right limits)
                self.log2_scale = _power_of_two_scale(Ac, Bc, dtype)
                if self.log2_scale:
                    Ac = np.ldexp(Ac, -self.log2_scale)
                    Bc = Ac if same else np.ldexp(Bc, -self.log2_scale)
                self.A = np.asarray(Ac, dtype=dtype)
                self.B = self.A if same else np.asarray(Bc, dtype=dtype)
            else:
                self.A = np.asarray(A, dtype=dtype)
                self.B = self.A if same else np.asarray(B, dtype=dtype)
            self.sqa = np.einsum("ij,ij->i", self.A, self.A)
            self.sqb = self.sqa if same else np.einsum("ij,ij->i", self.B, self.B)
        self._buf32 = None

    def block(self, r0: int, r1: int, c0: int, c1: int, diag_offset, out: np.ndarray) -> np.ndarray:
        """out <- k(A[r0:r1], B[c0:c1]) in ``dtype``.

        ``diag_offset``: when not None (B = A), entry (r, r + diag_offset) of the block is a
        diagonal entry k(x, x) (exact zero distance for distance kernels). ``out`` is
        (r1 - r0, c1 - c0) of ``dtype``, any memory order, written in place.
        """
        kern = self.kernel
        rows, cols = r1 - r0, c1 - c0
        if self.int_form is not None:
            if self._buf32 is None or self._buf32.shape[0] < rows or self._buf32.shape[1] < cols:
                self._buf32 = np.empty((max(rows, self.lim.gemm_rows), max(cols, self.lim.gemm_cols)), np.float32)
            G = self._buf32[:rows, :cols]
            _gemm_bounded(self.A[r0:r1], self.B[c0:c1], G, self.lim)
            sq_r, sq_c, inv_c2 = self.sqa[r0:r1], self.sqb[c0:c1], self.inv_c2

            def work(a, b):
                o = out[a:b]
                o[...] = G[a:b]  # exact integers, float32 -> float64
                o *= -2.0
                o += sq_r[a:b, None]
                o += sq_c[None, :]
                o *= inv_c2  # |x - z|^2: exact integer numerator, one rounding
                np.maximum(o, 0.0, out=o)
                kern._from_sqdist(o)

            _in_row_chunks(rows, cols, work)
            return out
        _gemm_bounded(self.A[r0:r1], self.B[c0:c1], out, self.lim)
        sq_r, sq_c = self.sqa[r0:r1], self.sqb[c0:c1]
        if kern.stationary:
            Ar, Bc = self.A[r0:r1], self.B[c0:c1]
            max_c = float(sq_c.max()) if cols else 0.0

            def work(a, b):
                o = out[a:b]
                o *= -2.0
                o += sq_r[a:b, None]
                o += sq_c[None, :]
                np.maximum(o, 0.0, out=o)
                # |x|^2 + |z|^2 - 2<x, z> carries an absolute error ~ u (|x|^2 + |z|^2): where the distance is
                # much smaller than that scale (near-duplicates) recompute it by differences (few ulps)
                thr = _CLOSE * (float(sq_r[a:b].max()) + max_c)
                rr, cc = np.nonzero(o < thr)
                if rr.size:
                    D = Ar[a + rr] - Bc[cc]
                    o[rr, cc] = np.einsum("ij,ij->i", D, D)
                if diag_offset is not None:
                    r = np.arange(b - a)
                    cc = r + a + diag_offset
                    ok = (cc >= 0) & (cc < cols)
                    o[r[ok], cc[ok]] = 0.0
                kern._from_sqdist(o, self.log2_scale) if self.log2_scale else kern._from_sqdist(o)
        else:
            def work(a, b):
                o = out[a:b]
                off = None if diag_offset is None else diag_offset + a
                res = kern._from_gram(o, sq_r[a:b], sq_c, off, self.n_features)
                if res is not o:
                    o[...] = res

        _in_row_chunks(rows, cols, work)
        return out


class CompositeEntries:
    """Entries of Sum / Product / Scaled kernels: the components' accurate entries, combined.

    The kernel is told apart by its registered ``name`` (``"scaled"``: one component ``kernel`` times
    ``scale``; ``"sum"`` / ``"product"``: ``kernels`` combined by ``_combine``), not by class:
    :mod:`kernelgen.kernels._base` imports this module, so this one does not import it.
    """

    def __init__(self, kernel, A, B=None, *, dtype=np.float64):
        A, B, same, dtype = _validate_pair(A, B, dtype)
        self.kernel, self.dtype, self.same = kernel, dtype, same
        self.shape = (A.shape[0], B.shape[0])
        Bx = None if same else B
        self.scale = float(kernel.scale) if kernel.name == "scaled" else None
        if self.scale is not None:
            self.parts = [kernel.kernel.entries(A, Bx, dtype=dtype)]
        else:
            self.parts = [k.entries(A, Bx, dtype=dtype) for k in kernel.kernels]
        self._tmp = None

    def block(self, r0, r1, c0, c1, diag_offset, out):
        self.parts[0].block(r0, r1, c0, c1, diag_offset, out)
        if self.scale is not None:
            out *= self.scale
            return out
        shape = (r1 - r0, c1 - c0)
        if self._tmp is None or self._tmp.shape[0] < shape[0] or self._tmp.shape[1] < shape[1]:
            self._tmp = np.empty(shape, dtype=self.dtype)
        tmp = self._tmp[: shape[0], : shape[1]]
        for part in self.parts[1:]:
            part.block(r0, r1, c0, c1, diag_offset, tmp)
            self.kernel._combine(out, tmp)
        return out


def dense_matrix(kernel, A, B=None, *, dtype=np.float64, out=None) -> np.ndarray:
    """k(A, B) as a dense array, in blocks of at most ``CALL_LIMITS[dtype].gemm_rows`` rows."""
    src = kernel.entries(A, B, dtype=dtype)
    n, m = src.shape
    dtype = src.dtype
    if out is None:
        out = np.empty((n, m), dtype=dtype)
    elif out.shape != (n, m) or out.dtype != dtype or not out.flags.c_contiguous:
        raise InvalidInputError(f"out must be C-contiguous {dtype} of shape {(n, m)}.")
    rows = CALL_LIMITS[dtype].gemm_rows
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        src.block(r0, r1, 0, m, r0 if src.same else None, out[r0:r1])
    return out


def fill_panels(kernel, P, X, *, verbose=False, desc="kernel") -> None:
    """Fill LowerPanels P with the lower triangle (and full diagonal tiles) of k(X, X) in P's dtype.

    Panel i is computed as k(X[:b_{i+1}], X[rows_i]) into its C-order buffer, i.e. directly into
    the Fortran panel (no copy).
    """
    src = kernel.entries(X, None, dtype=P.dtype)
    b = P.bounds
    for i in tqdm(range(P.n_tiles), desc=desc, unit="panel", disable=not verbose):
        r0, r1 = b[i], b[i + 1]
        buf = P.panels[i].T  # C-order (r1, rows_i): buf[c, r] = k(x_c, x_{r0 + r})
        src.block(0, r1, r0, r1, -r0, buf)


def symmetric_apply(kernel, X, V, *, tile=DEFAULT_TILE, verbose=False, desc="float64 K @ V") -> np.ndarray:
    """k(X, X) @ V in float64; every off-diagonal block computed once and used for both products."""
    dtype = np.dtype(np.float64)
    V = as_float_array(V, "V", ndim=(1, 2), dtype=dtype)
    src = kernel.entries(X, None, dtype=dtype)
    n = src.shape[0]
    if V.shape[0] != n:
        raise ShapeMismatchError(f"V has {V.shape[0]} rows, the kernel has order {n}.")
    lim = CALL_LIMITS[dtype]
    tile = max(1, min(int(tile), lim.potrf_n))
    out = np.zeros_like(V)
    b = list(range(0, n, tile)) + [n]
    buf = np.empty((tile, lim.gemm_cols), dtype=dtype)
    for i in tqdm(range(len(b) - 1), desc=desc, unit="panel", disable=not verbose):
        r0, r1 = b[i], b[i + 1]
        for c0 in range(0, r1, lim.gemm_cols):
            c1 = min(r1, c0 + lim.gemm_cols)
            Kb = buf[: r1 - r0, : c1 - c0]
            src.block(r0, r1, c0, c1, r0 - c0, Kb)
            lo_end = min(c1, r0)  # columns [c0, lo_end) are strictly below the diagonal tile
            if lo_end > c0:
                Kl = Kb[:, : lo_end - c0]
                out[r0:r1] += Kl @ V[c0:lo_end]
                out[c0:lo_end] += Kl.T @ V[r0:r1]
            if c1 > r0:  # the diagonal tile part: columns [max(c0, r0), c1)
                d0 = max(c0, r0)
                out[r0:r1] += Kb[:, d0 - c0: c1 - c0] @ V[d0:c1]
    return out


def apply(kernel, A, B, V, *, verbose=False, desc="K @ V") -> np.ndarray:
    """k(A, B) @ V in float64, blockwise, without forming k(A, B)."""
    dtype = np.dtype(np.float64)
    V = as_float_array(V, "V", ndim=(1, 2), dtype=dtype)
    src = kernel.entries(A, B, dtype=dtype)
    na, nb = src.shape
    if V.shape[0] != nb:
        raise ShapeMismatchError(f"V has {V.shape[0]} rows, k(A, B) has {nb} columns.")
    lim = CALL_LIMITS[dtype]
    out = np.zeros((na,) + V.shape[1:], dtype=dtype)
    rows = min(lim.gemm_rows, 2048)
    buf = np.empty((rows, lim.gemm_cols), dtype=dtype)
    for r0 in tqdm(range(0, na, rows), desc=desc, unit="block", disable=not verbose):
        r1 = min(na, r0 + rows)
        for c0 in range(0, nb, lim.gemm_cols):
            c1 = min(nb, c0 + lim.gemm_cols)
            Kb = buf[: r1 - r0, : c1 - c0]
            src.block(r0, r1, c0, c1, None, Kb)
            out[r0:r1] += Kb @ V[c0:c1]
    return out
