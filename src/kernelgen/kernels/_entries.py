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

import functools
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .._validation import as_float_array
from ..errors import InvalidInputError, ShapeMismatchError
from ..numerics import CALL_LIMITS, DEFAULT_TILE

__all__ = [
    "BoundedProducts", "CompositeEntries", "EntryErrorModel", "KernelEntries", "bounded_summation_depth",
    "entries_apply", "entries_bounded_symmetric_apply", "entries_symmetric_apply", "exact_integer_form",
    "exponent_scale", "fused_summation_depth",
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

#: The accuracy taken of NumPy's float64 ``exp`` in the entry error model (ulps of the result): glibc
#: documents < 1 ulp for exp on x86-64 and NumPy's AVX-512F float64 exp is documented < 1 ulp; measured
#: here 0.715 ulp at most over 2e7 arguments in [-40, 0] (docs/numerics.md), and
#: tests/test_certificate.py measures it on every machine the tests run on.
_EXP_ULPS = 1.0

#: Smallest positive float64 (subnormal) and smallest normal: exp results below the normal range carry an
#: absolute, not a relative, error of at most _EXP_ULPS * 2^-1074.
_TINY_SUB = 2.0**-1074
_TINY_NORMAL = 2.0**-1022


def _gamma(m: float) -> float:
    """gamma_m = m u / (1 - m u) (Higham, Accuracy and Stability, Lemma 3.1), float64."""
    return m * _U64 / (1.0 - m * _U64)


@functools.lru_cache(maxsize=256)
def exponent_scale(form: str, bandwidth: float, log2_scale: int = 0, dscale=1) -> float:
    """The scale c of the exponent t = c * D (Gaussian) or t = c * sqrt(D) (Laplace), rounded once.

    c is formed exactly in rational arithmetic from the bandwidth s (a float, hence a rational),
    the power-of-two data scale 2^log2_scale and the distance scale ``dscale`` (1, or the exact
    rational 1 / c_int^2 of the integer form), then converted to float64 by one correctly rounded
    division (:class:`fractions.Fraction`): |c_float - c| <= u c for a normal result.

    Parameters
    ----------
    form : {"gaussian", "laplace"}
        Gaussian: c = 4^log2_scale dscale / (2 s^2); Laplace: c = 2^log2_scale sqrt(dscale) / s.
    bandwidth : float
    log2_scale : int
    dscale : int, float or Fraction
        For Laplace its square root must be rational (1 / c_int^2, or 1).

    Returns
    -------
    float
        c (``inf`` where it overflows, 0.0 where it underflows entirely).

    Raises
    ------
    InvalidInputError
        A Laplace ``dscale`` whose square root is irrational, or an unknown form.
    """
    s = Fraction(bandwidth)
    ds = Fraction(dscale)
    if form == "gaussian":
        exact = Fraction(4) ** int(log2_scale) * ds / (2 * s * s)
    elif form == "laplace":
        num, den = math.isqrt(ds.numerator), math.isqrt(ds.denominator)
        if num * num != ds.numerator or den * den != ds.denominator:
            raise InvalidInputError(f"the Laplace exponent needs a rational sqrt(dscale), got dscale = {dscale!r}.")
        exact = Fraction(2) ** int(log2_scale) * Fraction(num, den) / s
    else:
        raise InvalidInputError(f"unknown exponent form {form!r}")
    try:
        return float(exact)  # int / int true division: correctly rounded (one rounding)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class EntryErrorModel:
    """A proven per-entry error bound of computed float64 kernel entries.

    For every entry, with k the kernel of the given data in exact arithmetic, k_hat the computed entry
    and t_hat >= 0 the computed exponent (k_hat = fl(exp(-t_hat))):

        |k_hat - k| <= a0 * k_hat + a1 * t_hat * k_hat + mu,   and   k <= kappa * k_hat + mu.

    Attributes
    ----------
    a0, a1 : float
        Relative coefficients (a1 = 0 when the bound does not weight entries by their exponent).
    mu : float
        Absolute term (results of exp below the normal range carry an absolute error).
    kappa : float
        Upper factor from computed to exact entries.
    eps_max : float
        Largest relative error |k_hat - k| / k over any entry the data can produce (the scalar bound of
        :meth:`KernelEntries.entry_error_bound`).
    t_max : float
        Upper bound on every exponent t_hat.
    """

    a0: float
    a1: float
    mu: float
    kappa: float
    eps_max: float
    t_max: float


def _integer_residual_norm(X, c: float, chunks) -> float:
    """max over rows of ||c x - k|| (k = rint(c x)), exactly formed then rounded upward: the integer form's
    representation error in integer units (X == fl(k / c) was checked by :func:`exact_integer_form`).

    c x is split exactly as p + e (Dekker's TwoProduct with Veltkamp splitting, no FMA needed); p - k is
    exact (Sterbenz: p is within one ulp of the integer k, or both are 0).
    """
    split = 134217729.0  # 2^27 + 1
    worst = 0.0
    for sl in chunks:
        x = np.asarray(X[sl], dtype=np.float64)
        p = x * c
        k = np.rint(p)
        t = split * x
        xh = t - (t - x)
        xl = x - xh
        t = split * c
        ch = t - (t - c)
        cl = c - ch
        e = ((xh * ch - p) + xh * cl + xl * ch) + xl * cl
        r = (p - k) + e
        worst = max(worst, float(np.sqrt(np.max(np.einsum("ij,ij->i", r, r)))) if r.size else 0.0)
    # the sum r = (p - k) + e, the squares, the d-term sums and the sqrt: widened by (1 + (d + 8) u)
    d = X.shape[1] if X.ndim == 2 else 1
    return worst * (1.0 + (d + 8) * 2.0 * _U64)


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

        For the non-negative kernels whose entries are exp(-t) -- the exact built-in Gaussian (any data)
        and Laplace (integer form, e.g. 8-bit images / 255) classes (a subclass gets None: it may compute
        another formula) -- against the kernel of the *given* float64 data in exact arithmetic. None for
        float32 entries, other kernels, scales outside the normal float range, and Laplace on
        non-integer data (the square root of a squared distance that carries an absolute error has no
        useful relative bound near 0: docs/numerics.md, "The proven residual bound").

        The analysis (u = 2^-53; ``exp`` accurate to _EXP_ULPS ulps, measured): the exponent's scale c is
        rounded once from its exact rational value (:func:`exponent_scale`);

        - integer form: the squared distance D of the integers is exact; t_hat = fl(D c) (Gaussian) or
          fl(fl(sqrt(D)) c) (Laplace), so |t_hat - t_int| <= gamma_2 t_int (gamma_3). The given data
          are fl(k / c_int): each row is within rho = max_i ||c_int x_i - k_i|| (computed exactly,
          integer units) of its integers, so |D_given - D| <= 4 rho sqrt(D) + 4 rho^2 and
          |t - t_int| <= 2 rho sqrt(c)(1 + t_int) + 4 c rho^2 (Gaussian; sqrt(t) <= (1 + t)/2) or
          2 rho c (Laplace: the triangle inequality);
        - float form (Gaussian): D carries an absolute error <= (2 gamma_{d+3} + 8u)(max|a|^2 +
          max|b|^2) (GEMM expansion, centring's rounding; near-duplicates recomputed more accurately),
          so |t_hat - t| <= gamma_2 t_hat / (1 - gamma_2) + c E_D.

        In both, |t_hat - t| <= beta1 t_hat + beta0 <= x_max, and k_hat = exp(-t_hat)(1 + delta),
        |delta| <= e = 2u _EXP_ULPS for normal results, give |k_hat - k| <= k_hat (e + expm1(|t_hat - t|))
        / (1 - e) <= a0 k_hat + a1 t_hat k_hat with expm1(x) <= x expm1(x_max) / x_max (convexity).
        Results below the normal range err by at most _EXP_ULPS 2^-1074 absolutely: the term mu.
        """
        form = getattr(self.kernel, "_proven_entry_form", lambda: None)()
        if self.dtype != np.float64 or form not in ("gaussian", "laplace"):
            return None
        u = _U64
        gauss = form == "gaussian"
        c = exponent_scale(form, float(self.kernel.bandwidth), self.log2_scale, self.dscale)
        if not (np.isfinite(c) and c >= _TINY_NORMAL):
            return None  # the scale itself outside the normal range: its rounding is not relative
        ra = float(np.sqrt(np.max(self.sqa))) if self.sqa.size else 0.0
        rb = float(np.sqrt(np.max(self.sqb))) if self.sqb.size else 0.0
        c_up = c * (1.0 + u)  # the exact scale is within one rounding of c
        if self.int_form is not None:
            d_max = (ra + rb) ** 2 * (1.0 + 4.0 * u)  # the norms are exact integers' square roots, rounded
            rho = self._rho
            if gauss:
                t_max = c * d_max * (1.0 + 2.0 * u)
                sq = math.sqrt(c_up) * (1.0 + u)
                beta1 = (_gamma(2) + 2.0 * rho * sq) / (1.0 - _gamma(2))
                beta0 = 2.0 * rho * sq + 4.0 * c_up * rho * rho
            else:
                t_max = c * math.sqrt(d_max) * (1.0 + 3.0 * u)
                beta1 = _gamma(3) / (1.0 - _gamma(3))
                beta0 = 2.0 * rho * c_up
        elif gauss:
            gam = _gamma(self.n_features + 3)
            # the norms themselves carry a relative error <= gamma_d: widen them by it
            d_max = (ra + rb) ** 2 * (1.0 + gam) * (1.0 + 4.0 * u)
            e_abs = (2.0 * gam + 8.0 * u) * (float(np.max(self.sqa)) + float(np.max(self.sqb))) * (1.0 + gam)
            t_max = c * (d_max + e_abs) * (1.0 + 2.0 * u)
            beta1 = _gamma(2) / (1.0 - _gamma(2))
            beta0 = c_up * e_abs * (1.0 + _gamma(2))
        else:
            return None
        x_max = beta1 * t_max + beta0
        if not np.isfinite(x_max) or x_max > 1e-3:
            return None
        e = 2.0 * u * _EXP_ULPS
        rho1 = math.expm1(x_max) / x_max if x_max > 0 else 1.0
        up = 1.0 + 8.0 * u  # this arithmetic's own rounding, upward
        return EntryErrorModel(
            a0=(e + rho1 * beta0) / (1.0 - e) * up,
            a1=rho1 * beta1 / (1.0 - e) * up,
            mu=2.0 * (_EXP_ULPS * _TINY_SUB * math.exp(x_max) + _TINY_NORMAL * math.expm1(x_max)),
            kappa=math.exp(x_max) / (1.0 - e) * up,
            eps_max=(math.expm1(x_max) * (1.0 + e) + e) * up,
            t_max=t_max,
        )

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


def entries_symmetric_apply(src, V, *, verbose=False, desc="float64 K @ V") -> np.ndarray:
    """k(X, X) @ V for the float64 entries ``src`` of k(X, X) (reused across passes: see symmetric_apply)."""
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

    def fn(item, state):
        out, outT = state
        r0, r1, c0, c1 = item
        lo_end = min(c1, r0)  # columns [c0, lo_end) are strictly below the diagonal
        d0 = max(c0, r0)  # columns [d0, c1) belong to the diagonal block
        # the transposed products of this block's chunks are summed here first, then added once to outT
        # (short accumulation chains: see fused_summation_depth)
        accT = np.zeros((VT.shape[0], max(0, lo_end - c0)))

        def consume(a, b, Kc):  # Kc = K[r0 + a: r0 + b, c0:c1], in cache
            ra, rb = r0 + a, r0 + b
            if lo_end > c0:
                Kl = Kc[:, : lo_end - c0]
                out[ra:rb] += Kl @ V2[c0:lo_end]
                accT[...] += VT[:, ra:rb] @ Kl
            if c1 > r0:
                out[ra:rb] += Kc[:, d0 - c0: c1 - c0] @ V2[d0:c1]

        src.block(r0, r1, c0, c1, r0 - c0, None, consume)
        if lo_end > c0:
            outT[:, c0:lo_end] += accT

    with tqdm(total=len(items), desc=desc, unit="block", disable=not verbose, mininterval=1.0) as bar:
        parts = _parallel_map(items, fn, lambda: (np.zeros_like(V2), np.zeros_like(VT)), bar=bar)
    out = parts[0][0]
    out += parts[0][1].T
    for p, pT in parts[1:]:
        out += p
        out += pT.T
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


# ---------------------------------------------------------------------------------------------- bounded products
#: Dot-product segment of the bounded pass: every BLAS call sums at most _SEG terms per output (any order),
#: and the segments' partial sums are added pairwise (height ceil(log2 segments)).
_SEG = 16


def _pairwise(P):
    """Sum of P over axis 0 by a balanced tree, in place (P[0] holds it); every term meets <= ceil(log2 S) additions."""
    S = P.shape[0]
    while S > 1:
        h = S // 2
        P[:h] += P[S - h:S]  # pairs (i, S - h + i); an odd middle element waits a level
        S -= h
    return P[0]


def _segmented_rows(K, W):
    """K (a, C) @ W (C, w): segments of _SEG columns (one stacked BLAS call), summed pairwise."""
    a, C = K.shape
    S, rem = divmod(C, _SEG)
    parts = []
    if S:
        parts.append(np.matmul(K[:, :S * _SEG].reshape(a, S, _SEG).transpose(1, 0, 2),
                               W[:S * _SEG].reshape(S, _SEG, W.shape[1])))
    if rem:
        parts.append((K[:, S * _SEG:] @ W[S * _SEG:])[None])
    return _pairwise(parts[0] if len(parts) == 1 else np.concatenate(parts))


def _segmented_cols(WT, K):
    """WT (w, a) @ K (a, C): segments of _SEG rows of K (one stacked BLAS call), summed pairwise."""
    a, C = K.shape
    S, rem = divmod(a, _SEG)
    parts = []
    if S:
        parts.append(np.matmul(WT[:, :S * _SEG].reshape(WT.shape[0], S, _SEG).transpose(1, 0, 2),
                               K[:S * _SEG].reshape(S, _SEG, C)))
    if rem:
        parts.append((WT[:, S * _SEG:] @ K[S * _SEG:])[None])
    return _pairwise(parts[0] if len(parts) == 1 else np.concatenate(parts))


def _two_sum_into(hi, lo, x) -> None:
    """hi <- fl(hi + x) and lo <- lo + (the exact rounding error of that addition) (Knuth's TwoSum).

    hi + (the exact errors collected in lo) stays exactly the sum of everything added (no overflow):
    the accumulation is error-free up to the plain summation of the errors (Ogita, Rump & Oishi,
    "Accurate sum and dot product", SISC 26(6), 2005, Algorithm 4.4 Sum2 and Proposition 4.5).
    """
    s = hi + x
    bp = s - hi
    err = (hi - (s - bp)) + (x - bp)
    hi[...] = s
    lo += err


def bounded_summation_depth(n: int) -> tuple[int, int, int]:
    """(h, N, D) of :func:`entries_bounded_symmetric_apply` at order n (see there).

    h: the most roundings a term of a signed product meets before it joins the compensated
    accumulation: its product, <= _SEG - 1 additions inside one BLAS call, ceil(log2 segments)
    pairwise additions (segments of a chunk's <= _SUB_COLS columns or <= _CHUNK_ELEMS / _SUB_COLS... rows);
    N: the most partial sums one output accumulates by TwoSum (rows side: one per column sub-block;
    transposed side: one per row chunk; and the final combination of the workers' accumulators);
    D: the summation depth of the plain (any-order) non-negative product M|V|.
    """
    seg_rows = math.ceil(_SUB_COLS / _SEG)
    seg_cols = math.ceil(_SUB_ROWS / _SEG)  # a chunk has at most _SUB_ROWS rows
    h = _SEG + math.ceil(math.log2(max(2, seg_rows, seg_cols)))
    chunk_rows = max(1, _CHUNK_ELEMS // _SUB_COLS)
    N = n // _SUB_COLS + 2 + n // max(1, min(chunk_rows, _SUB_ROWS)) + 2 + 4 * _n_threads() + 8
    D = _SUB_COLS + _SUB_ROWS + N + 16
    return int(h), int(N), int(D)


@dataclass(frozen=True)
class BoundedProducts:
    """What one bounded pass returns (:func:`entries_bounded_symmetric_apply`).

    Attributes
    ----------
    KV : ndarray of V's shape
        The signed product K_hat V (segmented dot products, compensated accumulation).
    M_abs : ndarray of V's shape
        M_hat |V| with M = K_hat o (1 + tau T_hat) entrywise (plain summation; all terms >= 0): the weights
        of the entry model, a0 K_hat + a1 T_hat o K_hat <= a0 M for tau = a1 / a0.
    tau : float
    """

    KV: np.ndarray
    M_abs: np.ndarray
    tau: float


def entries_bounded_symmetric_apply(src, V, *, tau: float = 0.0, verbose=False,
                                    desc="float64 K @ V (bounded)") -> BoundedProducts:
    """K_hat V and (K_hat o (1 + tau T_hat))|V| in one pass, the signed product with a short summation.

    The certifying pass of the proven residual bound (docs/numerics.md, "The proven residual bound"):
    the same fused, symmetric, cache-blocked pass as :func:`entries_symmetric_apply` (every
    off-diagonal entry computed once, used for its row and its column), but

    - each signed dot product is split into segments of _SEG terms (one stacked BLAS call per chunk),
      whose partial sums are added pairwise: every term meets at most h roundings
      (:func:`bounded_summation_depth`) instead of thousands;
    - those partial sums are accumulated error-free by TwoSum into (hi, lo) pairs, across chunks,
      sub-blocks and workers, and the result is fl(hi + fl(sum of lo)).

    So |KV - K_hat V| <= [gamma_h + (u + 4 N^2 u^2)(1 + gamma_h)] K_hat|V| componentwise (Higham, Lemma
    3.1 and §4.2; Ogita, Rump & Oishi 2005, Prop. 4.5), K_hat the computed entries. The non-negative
    product M|V|, M = K_hat o (1 + tau T_hat) (T_hat the computed exponents; each entry of M formed with
    two roundings, >= 0), is a plain sum with relative error <= gamma_D: one product carries both terms
    of the entry model (a0 K + a1 T o K = a0 M for tau = a1 / a0).

    Parameters
    ----------
    src : KernelEntries
        Float64 entries of a symmetric k(X, X) with an :meth:`~KernelEntries.entry_error_model`.
    V : ndarray of shape (n, k) or (n,)
    tau : float >= 0
        Weight of the exponent in M (0: M = K_hat).

    Returns
    -------
    BoundedProducts
        Arrays of V's shape.

    Raises
    ------
    InvalidInputError
        Entries that are not float64 and symmetric, or that have no exponent form; tau < 0.
    ShapeMismatchError
        V with the wrong number of rows.
    """
    dtype = np.dtype(np.float64)
    if src.dtype != dtype or not src.same or not hasattr(src, "entry_error_model"):
        raise InvalidInputError("entries_bounded_symmetric_apply needs the float64 entries of a symmetric k(X, X).")
    if not (tau >= 0.0 and math.isfinite(tau)):
        raise InvalidInputError(f"tau must be a finite number >= 0, got {tau!r}")
    V = as_float_array(V, "V", ndim=(1, 2), dtype=dtype)
    n = src.shape[0]
    if V.shape[0] != n:
        raise ShapeMismatchError(f"V has {V.shape[0]} rows, the kernel has order {n}.")
    V2 = np.ascontiguousarray(V.reshape(n, -1))
    k = V2.shape[1]
    VT = np.ascontiguousarray(V2.T)
    A = np.abs(V2)
    AT = np.ascontiguousarray(A.T)
    minus_tau = -float(tau)
    items = _sub_blocks(n, lambda r1: r1)

    def make_state():
        z = lambda *shape: np.zeros(shape)  # noqa: E731
        # rows side: hi, lo (signed), M|V|; transposed side: the same as (k, n)
        return [z(n, k), z(n, k), z(n, k), z(k, n), z(k, n), z(k, n)]

    def fn(item, state):
        hi, lo, ab, hiT, loT, abT = state
        r0, r1, c0, c1 = item
        lo_end = min(c1, r0)
        d0 = max(c0, r0)

        def consume(a, b, Kc, TKc):
            ra, rb = r0 + a, r0 + b
            M = TKc  # -t k -> k + tau t k, in place (>= 0; two roundings)
            M *= minus_tau
            M += Kc
            if lo_end > c0:
                w = lo_end - c0
                Kl, Ml = Kc[:, :w], M[:, :w]
                _two_sum_into(hi[ra:rb], lo[ra:rb], _segmented_rows(Kl, V2[c0:lo_end]))
                ab[ra:rb] += Ml @ A[c0:lo_end]
                _two_sum_into(hiT[:, c0:lo_end], loT[:, c0:lo_end], _segmented_cols(VT[:, ra:rb], Kl))
                abT[:, c0:lo_end] += AT[:, ra:rb] @ Ml
            if c1 > r0:
                Kd, Md = Kc[:, d0 - c0: c1 - c0], M[:, d0 - c0: c1 - c0]
                _two_sum_into(hi[ra:rb], lo[ra:rb], _segmented_rows(Kd, V2[d0:c1]))
                ab[ra:rb] += Md @ A[d0:c1]

        src.block(r0, r1, c0, c1, r0 - c0, None, consume, want_t=True)

    with tqdm(total=len(items), desc=desc, unit="block", disable=not verbose, mininterval=1.0) as bar:
        parts = _parallel_map(items, fn, make_state, bar=bar)
    hi, lo, ab = parts[0][0], parts[0][1], parts[0][2]
    for j, p in enumerate(parts):
        if j:
            _two_sum_into(hi, lo, p[0])
            lo += p[1]
            ab += p[2]
        _two_sum_into(hi, lo, p[3].T)
        lo += p[4].T
        ab += p[5].T
    hi += lo  # the one rounding of the compensated sum
    return BoundedProducts(hi.reshape(V.shape), ab.reshape(V.shape), float(tau))
