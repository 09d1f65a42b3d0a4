"""The proven per-entry error of kernel entries, and the exponent's scale rounded once.

:func:`entry_error_model` is the analysis behind :meth:`KernelEntries.entry_error_model
<kernelgen.kernels.KernelEntries.entry_error_model>` (docs/numerics.md, "The proven residual bound"):
for the exact built-in Gaussian and Laplace classes, |k_hat - k| <= a0 k_hat + a1 t_hat k_hat + mu per
entry, against the kernel of the given float64 data in exact arithmetic.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InvalidInputError

__all__ = ["EntryErrorModel", "entry_error_model", "exponent_scale"]

_U64 = float(np.finfo(np.float64).eps) / 2.0

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


def entry_error_model(src):
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
    form = getattr(src.kernel, "_proven_entry_form", lambda: None)()
    if src.dtype != np.float64 or form not in ("gaussian", "laplace"):
        return None
    u = _U64
    gauss = form == "gaussian"
    c = exponent_scale(form, float(src.kernel.bandwidth), src.log2_scale, src.dscale)
    if not (np.isfinite(c) and c >= _TINY_NORMAL):
        return None  # the scale itself outside the normal range: its rounding is not relative
    ra = float(np.sqrt(np.max(src.sqa))) if src.sqa.size else 0.0
    rb = float(np.sqrt(np.max(src.sqb))) if src.sqb.size else 0.0
    c_up = c * (1.0 + u)  # the exact scale is within one rounding of c
    if src.int_form is not None:
        d_max = (ra + rb) ** 2 * (1.0 + 4.0 * u)  # the norms are exact integers' square roots, rounded
        rho = src._rho
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
        gam = _gamma(src.n_features + 3)
        # the norms themselves carry a relative error <= gamma_d: widen them by it
        d_max = (ra + rb) ** 2 * (1.0 + gam) * (1.0 + 4.0 * u)
        e_abs = (2.0 * gam + 8.0 * u) * (float(np.max(src.sqa)) + float(np.max(src.sqb))) * (1.0 + gam)
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

