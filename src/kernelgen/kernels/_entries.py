"""Accurate kernel entries in bounded blocks, and the blockwise products built on them.

:class:`KernelEntries` is where a kernel's entries are computed; every solver, experiment and
backend gets its blocks from here. It owns the accuracy rules:

- **Distance kernels are centred.** ||x||^2 + ||z||^2 - 2<x, z> cancels catastrophically when the
  data sit far from the origin relative to their spread (see docs/numerics.md, "Summation and
  rounding"); distances are translation
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
  (the bundled OpenBLAS segfaults on very large single calls: see docs/numerics.md, "BLAS and LAPACK
  call limits").

The elementwise transform runs in cache-sized row chunks on all cores (NumPy ufuncs release the GIL).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .._validation import as_float_array
from ..errors import InvalidInputError, ShapeMismatchError
from ..numerics import CALL_LIMITS, DEFAULT_TILE
from ._error_model import EntryErrorModel, _integer_residual_norm, exponent_scale
from ._error_model import entry_error_model as _entry_error_model

__all__ = [
    "CompositeEntries", "EntryErrorModel", "KernelEntries", "entries_apply", "entries_symmetric_apply",
    "exact_integer_form", "exponent_scale", "fused_summation_depth",
]

log = logging.getLogger(__name__)

#: float32 represents every integer of magnitude < 2^24 exactly, so a float32 GEMM of integer
#: matrices whose sums of |products| stay below this bound is exact, in any summation order.
_FLOAT32_EXACT_INT = 2**24

#: Squared distances below this fraction of |x - c|^2 + |z - c|^2 are recomputed by differences:
#: the expansion's error ~u (|x - c|^2 + |z - c|^2) is then at most ~64 u relative to the distance.
_CLOSE = 1.0 / 64.0

#: Elements per chunk of the elementwise transform: ~1 MB, so its passes run in cache.
_CHUNK_ELEMS = 1 << 17


#: Sub-blocks of the fused passes (symmetric_apply, apply, fill_panels): each worker computes a
#: _SUB_ROWS x _SUB_COLS block of inner products (one single-threaded GEMM: 512 rows run it at ~96% of
#: the large-GEMM rate, 256 at ~89%), then transforms and uses it in row chunks of _CHUNK_ELEMS
#: entries while each chunk is in cache.
_SUB_ROWS = 512
_SUB_COLS = 2048

_TLS = threading.local()

#: float64 unit roundoff, ln 2, and the accuracy assumed of NumPy's float64 ``exp``/``log`` (ulps):
#: glibc documents <= 1 ulp for both on x86-64, NumPy's AVX-512 float64 exp/log < 1 ulp;
#: tests/test_certificate.py measures the exp used here against extended precision.
_U64 = float(np.finfo(np.float64).eps) / 2.0
_LN2_64 = float(np.log(2.0))
_MATH_ULPS = 4.0

def fused_summation_depth(n: int) -> int:
    """Most additions any term of one output of :func:`entries_symmetric_apply` goes through (order n).

    A product K[r, j] v_j meets at most: the dot product of one chunk (<= _SUB_COLS terms for the
    row products; <= _SUB_ROWS for the transposed ones, whose chunks are then summed per sub-block,
    <= _SUB_ROWS more), one accumulation per sub-block into the worker's output (<= n / _SUB_COLS + 2
    for rows, <= n / _SUB_ROWS + 1 for columns), and the final sums of the workers' partial outputs
    (2 per worker). Counted as the sum of all these (an upper bound on the height of the summation
    tree); any summation of that height has error <= gamma_depth times the sum of the terms' moduli
    (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., §4.2 and Lemma 3.1).
    """
    return int(_SUB_COLS + 2 * _SUB_ROWS + n // _SUB_COLS + n // _SUB_ROWS + 2 * _n_threads() + 16)


def _n_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _serial() -> bool:
    """True inside a worker of :func:`_parallel_map` (no nested thread pools there)."""
    return getattr(_TLS, "serial", False)


def _parallel_map(items, fn, make_state, *, bar=None):
    """fn(item, state) for every item on all cores; returns the per-worker states, in worker order.

    The fused passes are parallel over sub-blocks, not inside BLAS: each worker runs single-threaded
    GEMMs on its own cache-sized blocks and accumulates into its own ``state`` (no locks on the
    output). Items are dealt round-robin (worker w takes items w, w + T, ...), each worker in item
    order, so the floating-point result does not depend on thread timing: the same input gives the
    same bits on the same machine. An exception in one worker stops the others at their next item
    and is re-raised here.
    """
    nt = min(_n_threads(), len(items)) if items else 1
    if nt <= 1 or _serial():
        state = make_state()
        for item in items:
            fn(item, state)
            if bar is not None:
                bar.update(1)
        return [state]
    stop = threading.Event()
    lock = threading.Lock()

    def worker(w):
        _TLS.serial = True
        try:
            state = make_state()
            for item in items[w::nt]:
                if stop.is_set():
                    break
                fn(item, state)
                if bar is not None:
                    with lock:
                        bar.update(1)
            return state
        except BaseException:
            stop.set()
            raise
        finally:
            _TLS.serial = False

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(nt) as ex:
        futures = [ex.submit(worker, w) for w in range(nt)]
        return [f.result() for f in futures]


def _in_row_chunks(rows: int, cols: int, work) -> None:
    """Call work(r0, r1) over cache-sized row chunks of a rows x cols block, on all cores."""
    step = max(1, _CHUNK_ELEMS // max(1, cols))
    chunks = [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]
    if len(chunks) == 1 or _n_threads() == 1 or _serial():
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
    step = max(1, _CHUNK_ELEMS // max(1, X.shape[1]))  # row chunks: every pass below runs in cache
    chunks = [slice(r, min(X.shape[0], r + step)) for r in range(0, X.shape[0], step)]
    for c in scales:
        lo, hi, ok = np.inf, -np.inf, True
        for sl in chunks:
            Xs = np.asarray(X[sl], dtype=np.float64)  # judged in float64: float32 data are not fl64(k / c)
            K = np.rint(Xs * c)
            if not np.array_equal(K / c, Xs):
                ok = False
                break
            lo, hi = min(lo, float(K.min())), max(hi, float(K.max()))
        if not ok:
            continue
        # X == fl(k / c), not k / c: for c not a power of two the integers describe the data only to within
        # u |X| per coordinate, which is faithful (no worse than centring's own rounding) only near the origin;
        # far from it (e.g. pixels / 255 + 1e6) the float path, exact on the given values, is used instead
        if not _is_power_of_two(c) and max(abs(lo), abs(hi)) > 4.0 * max(hi - lo, 1.0):
            continue
        cen = float(np.rint((hi + lo) / 2.0)) if center is None else center
        m = max(abs(hi - cen), abs(lo - cen))
        if X.shape[1] * m * m >= _FLOAT32_EXACT_INT:
            continue  # too wide for this scale: a smaller one (c = 1 for raw 0..255 values) may fit
        center = cen
        Kc = np.empty(X.shape, dtype=np.float32)
        for sl in chunks:
            K = np.rint(np.asarray(X[sl], dtype=np.float64) * c)
            K -= center
            Kc[sl] = K  # integers of magnitude <= m < 2^12: exact in float32
        return Kc, float(c), center
    return None


def _is_power_of_two(c: float) -> bool:
    """True when k / c is exact for every integer k (c = 2^e): fl(k / c) is then the data itself."""
    return c == 2.0 ** (np.frexp(c)[1] - 1)


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
        if kernel.stationary:
            fa = exact_integer_form(A)
            fb = fa if same or fa is None else exact_integer_form(B, center=fa[2], scales=(fa[1],))
            if fa is not None and fb is not None:
                m = float(np.abs(fa[0]).max()) * float(np.abs(fb[0]).max())
                if A.shape[1] * m < _FLOAT32_EXACT_INT:
                    self.int_form = (fa[0], fb[0], fa[1])
        self._rho = 0.0  # max_i ||c x_i - k_i||: the integer form's representation error (0 when c = 2^e)
        if self.int_form is not None:
            Ia, Ib, c = self.int_form
            if not _is_power_of_two(c):
                step = max(1, _CHUNK_ELEMS // max(1, A.shape[1]))
                rows = lambda M: [slice(r, min(M.shape[0], r + step)) for r in range(0, M.shape[0], step)]  # noqa: E731
                self._rho = _integer_residual_norm(A, c, rows(A))
                if not same:
                    self._rho = max(self._rho, _integer_residual_norm(B, c, rows(B)))
            # the row operand carries the factor -2 (exact: a power of two), so that the GEMM gives
            # -2 <a, b> directly; its partial sums are even integers below 2^25, exact in float32
            self.A, self.B = Ia * np.float32(-2.0), Ib
            # squared norms in float32: integers whose partial sums stay below d * max|k|^2 < 2^24, so exact
            # (no float64 copies of the data: their first touch costs more than the sums)
            self.sqa = np.einsum("ij,ij->i", Ia, Ia).astype(np.float64)
            self.sqb = self.sqa if same else np.einsum("ij,ij->i", Ib, Ib).astype(np.float64)
            self.inv_c2 = 1.0 / (c * c)
            # the exact distance scale 1 / c^2 (c an integer: 255, 256 or 1), for the exponent's one rounding
            self.dscale = Fraction(1, int(c) ** 2)
            log.debug("exact integer inner products (scale 1/%g) for the %s kernel", c, dtype.name)
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
            self.dscale = 1
        self._tls = threading.local()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_tls", None)  # per-thread scratch buffers: rebuilt empty on unpickling
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._tls = threading.local()

    def entry_error_bound(self):
        """eta with |computed k(a, b) - k(a, b)| <= eta * k(a, b) for every entry, or None.

        The scalar (worst entry) form of :meth:`entry_error_model`: its ``eps_max``. None where there is
        no model, and where an entry could fall below the normal float range (exponent above 700: such
        entries carry an absolute, not a relative, error).
        """
        m = self.entry_error_model()
        if m is None or m.t_max > 700.0:
            return None
        return m.eps_max

    def entry_error_model(self):
        """The proven per-entry error of these float64 entries (:class:`EntryErrorModel`), or None.

        See :func:`kernelgen.kernels._error_model.entry_error_model` for the analysis.
        """
        return _entry_error_model(self)

    def _scratch(self, key, rows, cols, dtype):
        """A (rows, cols) work buffer of this object for the calling thread (reused across blocks)."""
        bufs = self._tls.__dict__  # per thread: freed with the worker thread that used it
        buf = bufs.get(key)
        if buf is None or buf.shape[0] < rows or buf.shape[1] < cols or buf.dtype != dtype:
            buf = np.empty((rows, cols), dtype=dtype)
            bufs[key] = buf
        return buf[:rows, :cols]

    def block(self, r0: int, r1: int, c0: int, c1: int, diag_offset, out, consume=None, want_t: bool = False):
        """out <- k(A[r0:r1], B[c0:c1]) in ``dtype``; or hand it, chunk by chunk, to ``consume``.

        ``diag_offset``: when not None (B = A), entry (r, r + diag_offset) of the block is a
        diagonal entry k(x, x) (exact zero distance for distance kernels). ``out`` is
        (r1 - r0, c1 - c0) of ``dtype``, any memory order, written in place.

        ``consume(a, b, entries)``, when given, is called with each finished cache-sized row chunk
        (rows a:b of the block) while it is still in cache: the fused passes use the entries there
        and then. With ``out=None`` the chunks live in a scratch buffer and are not kept. With
        ``want_t`` (float64 entries of a kernel with an :meth:`entry_error_model`), it is called as
        ``consume(a, b, entries, minus_tk)`` with ``minus_tk = fl(-t_hat * k_hat)`` entrywise (t_hat the
        computed exponent), the weights of the model's ``a1`` term.
        """
        if want_t and (self.dtype != np.float64 or consume is None):
            raise InvalidInputError("want_t needs float64 entries and a consume callback.")
        kern = self.kernel
        rows, cols = r1 - r0, c1 - c0
        if out is None and (self.int_form is None or self.dtype != np.float64):
            out = self._scratch("block", rows, cols, self.dtype)
        if self.int_form is not None:
            G = self._scratch("gram32", rows, cols, np.float32)
            _gemm_bounded(self.A[r0:r1], self.B[c0:c1], G, self.lim)  # -2 <a, b>: exact integers
            sq_r, sq_c = self.sqa[r0:r1], self.sqb[c0:c1]

            direct = out is not None and out.dtype == np.float64

            def work(a, b):
                # |a - b|^2 = |a|^2 + |b|^2 - 2 <a, b>: exact integers (no clip needed: never negative);
                # the scale 1 / c^2 is folded into the kernel's own scaling (one rounding either way)
                o = out[a:b] if direct else self._scratch("sqdist64", b - a, cols, np.float64)
                np.add(G[a:b], sq_r[a:b, None], out=o)
                o += sq_c[None, :]
                if want_t:
                    tk = self._scratch("minus_tk", b - a, cols, np.float64)
                    res = kern._entries_from_sqdist(o, 0, self.dscale, t_out=tk)
                else:
                    res = kern._entries_from_sqdist(o, 0, self.dscale)
                if res is not o:
                    o[...] = res
                if out is not None and not direct:
                    out[a:b] = o  # float32 entries: one rounding of the float64 value
                if want_t:
                    np.multiply(tk, o, out=tk)
                    consume(a, b, o, tk)
                elif consume is not None:
                    consume(a, b, o if direct or out is None else out[a:b])

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
                if want_t:
                    tk = self._scratch("minus_tk", b - a, cols, np.float64)
                    res = kern._entries_from_sqdist(o, self.log2_scale, t_out=tk)
                else:
                    res = kern._entries_from_sqdist(o, self.log2_scale)
                if res is not o:
                    o[...] = res
                if want_t:
                    np.multiply(tk, o, out=tk)
                    consume(a, b, o, tk)
                elif consume is not None:
                    consume(a, b, o)
        else:
            if want_t:
                raise InvalidInputError(f"{type(kern).__name__} has no exponent form (want_t).")

            def work(a, b):
                o = out[a:b]
                off = None if diag_offset is None else diag_offset + a
                res = kern.from_gram(o, sq_r[a:b], sq_c, off, self.n_features)
                if res is not o:
                    o[...] = res
                if consume is not None:
                    consume(a, b, o)

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
        self._tls = threading.local()

    _scratch = KernelEntries._scratch
    __getstate__ = KernelEntries.__getstate__
    __setstate__ = KernelEntries.__setstate__

    def entry_error_bound(self):
        """None: no proven entry bound for composite kernels (the float64 iteration verifies directly)."""
        return None

    def block(self, r0, r1, c0, c1, diag_offset, out, consume=None):
        """As :meth:`KernelEntries.block` (the components' blocks, combined; then ``consume`` by chunk)."""
        if out is None:
            out = self._scratch("block", r1 - r0, c1 - c0, self.dtype)
        self.parts[0].block(r0, r1, c0, c1, diag_offset, out)
        if self.scale is not None:
            out *= self.scale
        else:
            tmp = self._scratch("part", r1 - r0, c1 - c0, self.dtype)
            for part in self.parts[1:]:
                part.block(r0, r1, c0, c1, diag_offset, tmp)
                self.kernel._combine(out, tmp)
        if consume is not None:
            step = max(1, _CHUNK_ELEMS // max(1, c1 - c0))
            for a in range(0, r1 - r0, step):
                b = min(r1 - r0, a + step)
                consume(a, b, out[a:b])
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

    Panel i is k(X[:b_{i+1}], X[rows_i]) in its C-order buffer, i.e. directly the Fortran panel (no
    copy), computed in row sub-blocks on all cores (one single-threaded GEMM per sub-block, its
    transform done while it is in cache).
    """
    src = kernel.entries(X, None, dtype=P.dtype)
    b = P.bounds
    with tqdm(total=P.n_tiles, desc=desc, unit="panel", disable=not verbose) as bar:
        for i in range(P.n_tiles):
            r0, r1 = b[i], b[i + 1]
            buf = P.panels[i].T  # C-order (r1, rows_i): buf[c, r] = k(x_c, x_{r0 + r})

            def fn(item, state, r0=r0, r1=r1, buf=buf):
                a, e = item
                src.block(a, e, r0, r1, a - r0, buf[a:e])

            _parallel_map([(a, min(r1, a + _SUB_ROWS)) for a in range(0, r1, _SUB_ROWS)], fn, lambda: None)
            bar.update(1)


def fill_columns(src, r0, r1, c0, c1, out) -> None:
    """out <- k(X[r0:r1], X[c0:c1]) for the symmetric entries ``src`` (c0 < c1 <= r1), out Fortran (r1-r0, c1-c0).

    The out-of-core factor's fill: columns [c0, c1) of row panel [r0, r1), as :func:`fill_panels`
    fills whole panels (the C-order buffer of ``out`` is k(X[c0:c1], X[r0:r1]); diagonal entries exact).
    """
    buf = out.T  # C order (c1 - c0, r1 - r0): buf[c - c0, r] = k(x_c, x_{r0 + r})

    def fn(item, state):
        a, e = item
        src.block(a, e, r0, r1, a - r0, buf[a - c0:e - c0])

    _parallel_map([(a, min(c1, a + _SUB_ROWS)) for a in range(c0, c1, _SUB_ROWS)], fn, lambda: None)


def _sub_blocks(rows, cols_of):
    """(r0, r1, c0, c1) sub-blocks: rows in _SUB_ROWS steps, columns [0, cols_of(r1)) in _SUB_COLS steps."""
    items = []
    for r0 in range(0, rows, _SUB_ROWS):
        r1 = min(rows, r0 + _SUB_ROWS)
        end = cols_of(r1)
        items.extend((r0, r1, c0, min(end, c0 + _SUB_COLS)) for c0 in range(0, end, _SUB_COLS))
    return items


def symmetric_apply(kernel, X, V, *, tile=DEFAULT_TILE, verbose=False, desc="float64 K @ V") -> np.ndarray:
    """k(X, X) @ V in float64; every off-diagonal block computed once and used for both products.

    Fused: each worker computes a cache-sized block of inner products, turns it into kernel
    entries and applies it to V (and its transpose to V) before moving on, so every float64 entry
    is produced once and read while in cache. ``tile`` caps the sub-block's rows.
    """
    if int(tile) < 1:
        raise InvalidInputError(f"tile must be a positive integer, got {tile!r}.")
    return entries_symmetric_apply(kernel.entries(X, None, dtype=np.float64), V, verbose=verbose, desc=desc)


def checked_extent(extent, k: int):
    """``extent`` as int64 (None stays None): k non-decreasing, non-negative row counts, else InvalidInputError."""
    if extent is None:
        return None
    extent = np.asarray(extent, dtype=np.int64)
    if extent.shape != (k,) or np.any(np.diff(extent) < 0) or np.any(extent < 0):
        raise InvalidInputError(f"extent must be {k} non-decreasing non-negative row counts, one per column of V; "
                                f"got shape {extent.shape}.")
    return extent


def entries_symmetric_apply(src, V, *, verbose=False, desc="float64 K @ V", extent=None) -> np.ndarray:
    """k(X, X) @ V for the float64 entries ``src`` of k(X, X) (reused across passes: see symmetric_apply).

    ``extent`` (optional, non-decreasing ints, one per column of ``V``): column j of ``V`` is zero in
    rows ``>= extent[j]`` and only rows ``< extent[j]`` of column j of the result are wanted -- the
    stacked prefix systems of a nested learning curve. A block whose rows start at ``r0`` then
    multiplies only the columns with ``extent > r0`` (a suffix); the other columns of its rows are
    left 0. Every wanted entry is the same sum of the same terms as without ``extent`` (same blocks, same
    accumulation structure; only products with zero rows of ``V`` and unwanted outputs are skipped), so
    the summation-depth bound is unchanged; BLAS may order a block's dot products differently for a
    different number of columns.
    """
    dtype = np.dtype(np.float64)
    if src.dtype != dtype or not src.same:
        raise InvalidInputError("entries_symmetric_apply needs the float64 entries of a symmetric k(X, X).")
    V = as_float_array(V, "V", ndim=(1, 2), dtype=dtype)
    n = src.shape[0]
    if V.shape[0] != n:
        raise ShapeMismatchError(f"V has {V.shape[0]} rows, the kernel has order {n}.")
    items = _sub_blocks(n, lambda r1: r1)
    V2 = V.reshape(n, -1)
    VT = np.ascontiguousarray(V2.T)  # (k, n): the transposed products accumulate as rows of k x n
    extent = checked_extent(extent, V2.shape[1])

    def fn(item, state):
        out, outT = state
        r0, r1, c0, c1 = item
        # the columns this block serves: every row here (and every transposed row) is >= r0
        j0 = 0 if extent is None else int(np.searchsorted(extent, r0, side="right"))
        if j0 >= V2.shape[1]:
            return
        js = slice(j0, None)
        lo_end = min(c1, r0)  # columns [c0, lo_end) are strictly below the diagonal
        d0 = max(c0, r0)  # columns [d0, c1) belong to the diagonal block
        # the transposed products of this block's chunks are summed here first, then added once to outT
        # (short accumulation chains: see fused_summation_depth)
        accT = np.zeros((VT.shape[0] - j0, max(0, lo_end - c0)))

        def consume(a, b, Kc):  # Kc = K[r0 + a: r0 + b, c0:c1], in cache
            ra, rb = r0 + a, r0 + b
            if lo_end > c0:
                Kl = Kc[:, : lo_end - c0]
                out[ra:rb, js] += Kl @ V2[c0:lo_end, js]
                accT[...] += VT[js, ra:rb] @ Kl
            if c1 > r0:
                out[ra:rb, js] += Kc[:, d0 - c0: c1 - c0] @ V2[d0:c1, js]

        src.block(r0, r1, c0, c1, r0 - c0, None, consume)
        if lo_end > c0:
            outT[js, c0:lo_end] += accT

    with tqdm(total=len(items), desc=desc, unit="block", disable=not verbose, mininterval=1.0) as bar:
        parts = _parallel_map(items, fn, lambda: (np.zeros_like(V2), np.zeros_like(VT)), bar=bar)
    out = parts[0][0]
    out += parts[0][1].T
    for p, pT in parts[1:]:
        out += p
        out += pT.T
    if extent is not None:  # the unwanted rows of each column: 0, not a partial sum
        for j in range(V2.shape[1]):
            out[extent[j]:, j] = 0.0
    return out.reshape(V.shape)


def apply(kernel, A, B, V, *, verbose=False, desc="K @ V") -> np.ndarray:
    """k(A, B) @ V in float64, in fused cache-sized blocks on all cores, without forming k(A, B)."""
    return entries_apply(kernel.entries(A, B, dtype=np.float64), V, verbose=verbose, desc=desc)


def entries_apply(src, V, *, verbose=False, desc="K @ V") -> np.ndarray:
    """k(A, B) @ V for the float64 entries ``src`` of k(A, B)."""
    dtype = np.dtype(np.float64)
    if src.dtype != dtype:
        raise InvalidInputError("entries_apply needs float64 entries.")
    V = as_float_array(V, "V", ndim=(1, 2), dtype=dtype)
    na, nb = src.shape
    if V.shape[0] != nb:
        raise ShapeMismatchError(f"V has {V.shape[0]} rows, k(A, B) has {nb} columns.")
    items = _sub_blocks(na, lambda r1: nb)

    def fn(item, out):
        r0, r1, c0, c1 = item

        def consume(a, b, Kc):
            out[r0 + a: r0 + b] += Kc @ V[c0:c1]

        src.block(r0, r1, c0, c1, None, None, consume)

    with tqdm(total=len(items), desc=desc, unit="block", disable=not verbose, mininterval=1.0) as bar:
        parts = _parallel_map(items, fn, lambda: np.zeros((na,) + V.shape[1:], dtype=dtype), bar=bar)
    out = parts[0]
    for p in parts[1:]:
        out += p
    return out
