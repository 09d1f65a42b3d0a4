"""Kernel families: Gaussian, Laplace (stationary), linear, polynomial (inner products).

``"gaussian"``   k(x, z) = exp(-||x - z||^2 / (2 s^2))
``"laplace"``    k(x, z) = exp(-||x - z|| / s)
``"linear"``     k(x, z) = <x, z>
``"polynomial"`` k(x, z) = (<x, z> / s^2 + coef0)^degree

Default bandwidth (``bandwidth=None``, filled by :meth:`Kernel.resolve` from the training data):
the median pairwise Euclidean distance over a seeded sample of at most 1,000 rows
(:func:`default_bandwidth`), divided by sqrt(2) for the Gaussian (a typical pair then has
k = exp(-1)) and undivided for the Laplace kernel. On MNIST pixels in [0, 1] this gives
s ~ 7.2; the literature value s = 5 (Belkin, Ma & Mandal, ICML 2018: MNIST, pixels in [0, 1]; see
docs/numerics.md, "Bandwidth conventions") must be passed explicitly. :func:`median_distance` is the seeded-sample
variant that the Gabor features' bandwidth uses.
The distances are computed on the data scaled by exact powers of two, so the rule works at any data
scale (1e200, 1e-300) without overflow or underflow.

:class:`Stationary` is the public base of distance kernels with a bandwidth: a subclass writes
:meth:`~kernelgen.kernels.Kernel.from_sqdist` on r2 = ||x - z||^2 / s^2 only (docs/kernels.md).
Gaussian and Laplace keep a private fused path (scale folded into one factor, the proven entry
bound of :meth:`KernelEntries.entry_error_bound`) used only while their own formula is in force.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np

from .._validation import as_float_array
from ..errors import InvalidInputError
from ._base import Kernel
from ._entries import exponent_scale

__all__ = ["Gaussian", "Laplace", "Linear", "Polynomial", "Stationary", "default_bandwidth", "median_distance"]

log = logging.getLogger(__name__)


def default_bandwidth(X, *, kernel: str = "gaussian", max_samples: int = 1000, seed: int = 0) -> float:
    """Median-heuristic bandwidth (module docstring): median distance, / sqrt(2) for the Gaussian.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Any scale: the distances are computed on X scaled by exact powers of two (no overflow at
        1e200, no underflow at 1e-300) and the median scaled back.
    kernel : str
        ``"gaussian"`` divides the median by sqrt(2); any other name (``"laplace"``, a user's
        :class:`Stationary` kernel) takes the median itself.
    max_samples : int
        Rows sampled (without replacement, with ``seed``) when X is larger.
    seed : int

    Returns
    -------
    float

    Raises
    ------
    InvalidInputError
        Fewer than two rows, all sampled rows coincide, or the median distance is beyond float64.
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    if X.shape[0] < 2:
        raise InvalidInputError("default_bandwidth needs at least two rows; pass bandwidth explicitly.")
    if X.shape[0] > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_samples, replace=False))
        X = X[idx]
    X, e = _centred_unit(X)
    med = float(np.median(np.sqrt(_pair_sqdist(X))))
    if med <= 0:
        raise InvalidInputError("all sampled rows coincide; pass bandwidth explicitly.")
    med = med / np.sqrt(2.0) if kernel == "gaussian" else med
    return _rescaled(med, e, "; rescale the data or pass bandwidth explicitly.")


def median_distance(X, *, m: int = 2000, seed: int = 0) -> float:
    """Median-heuristic distance of a seeded sample: ``sqrt(median ||x_i - x_j||^2)`` over pairs i < j.

    The sample is ``numpy.random.default_rng(seed).choice(n, min(m, n), replace=False)`` (in that order), the
    one the Gabor run (scripts/mnist_gabor.py, verify claim C4: bandwidth 0.7 x this value, m = 2,000) has
    always used; the distances are computed as in :func:`default_bandwidth` (data brought to [-1, 1] by exact
    powers of two and centred, so there is no cancellation far from the origin and no overflow at 1e200), in
    float64.

    Relation to :func:`default_bandwidth`: that rule (the kernels' ``bandwidth=None``) samples
    ``max_samples = 1,000`` rows (sorted indices), takes the median of the *distances* and divides it by
    sqrt(2) for the Gaussian. Here the median is taken over *squared* distances and its square root
    returned; the two medians agree except for an even number of pairs, where one averages the two middle
    distances and the other the two middle squared distances. So
    ``default_bandwidth(X, kernel="laplace", max_samples=m, seed=seed)`` is this value up to that averaging
    and the choice of sample.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Converted to float64.
    m : int, default 2000
        Rows sampled (all rows, in a seeded order, when ``n_samples <= m``); at least 2.
    seed : int, default 0

    Returns
    -------
    float
        Positive and finite.

    Raises
    ------
    InvalidInputError
        ``m < 2`` or fewer than two rows, all sampled rows coincide, or the distance is beyond float64.
    NonFiniteInputError, ShapeMismatchError
        ``X`` holds NaN / inf or is not 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> median_distance(np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]))  # squared distances 25, 25, 100
    5.0
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 2:
        raise InvalidInputError(f"m (rows sampled) must be an integer >= 2, got {m!r}.")
    if X.shape[0] < 2:
        raise InvalidInputError("median_distance needs at least two rows.")
    idx = np.random.default_rng(seed).choice(X.shape[0], size=min(int(m), X.shape[0]), replace=False)
    S, e = _centred_unit(X[idx])
    med = float(np.sqrt(np.median(_pair_sqdist(S))))
    if med <= 0:
        raise InvalidInputError("all sampled rows coincide: the median distance is 0.")
    return _rescaled(med, e, "; rescale the data.")


def _pair_sqdist(S) -> np.ndarray:
    """The squared distances of the distinct pairs of rows of S (upper triangle, row order), clipped at 0."""
    sq = np.einsum("ij,ij->i", S, S)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (S @ S.T), 0.0)
    return d2[np.triu_indices(S.shape[0], 1)]


def _rescaled(med: float, e: int, remedy: str) -> float:
    """med * 2^e, refused (InvalidInputError) when it leaves the positive float64 range."""
    with np.errstate(over="ignore"):
        out = float(np.ldexp(med, e))
    if not (np.isfinite(out) and out > 0):
        raise InvalidInputError(f"the median distance of these data ({med:.6g} x 2^{e}) is outside the float64 "
                                "range" + remedy)
    return out


def _centred_unit(X) -> tuple[np.ndarray, int]:
    """``(Y, e)`` with ``X - mean = 2^e Y``, ``max|Y|`` in [0.5, 1): distances of ``Y`` times ``2^e`` are those of X.

    Distances are translation invariant and scale with the data: bring the data to [-1, 1] by an exact power
    of two, centre them (no cancellation), bring the centred spread to [-1, 1] again.
    """
    e1 = _exponent(X)
    X = np.ldexp(X, -e1)
    X = X - X.mean(axis=0)
    e2 = _exponent(X)
    return np.ldexp(X, -e2), e1 + e2


def _exponent(X) -> int:
    """e with max|X| / 2^e in [0.5, 1) (0 for all-zero X): an exact power-of-two rescaling."""
    m = float(np.max(np.abs(X))) if X.size else 0.0
    return int(np.frexp(m)[1]) if m > 0 else 0


def _scale_with_limits(D, c):
    """D <- -c D in place, with the limits of exp(-c D) right when c is 0 or infinite (no 0 * inf = NaN)."""
    if np.isinf(c):  # bandwidth negligible against every nonzero distance: k = 1 at distance 0, else 0
        np.copyto(D, np.where(D > 0, -np.inf, 0.0))
    else:
        with np.errstate(over="ignore"):
            D *= -c
    return D


def _exp_minus(D, c, t_out=None):
    """D <- exp(-c D) in place (the limits right for c = 0 or inf); with ``t_out``, -c D is kept there too."""
    if t_out is not None and np.isfinite(c):
        np.multiply(D, -c, out=t_out)
        np.exp(t_out, out=D)
        return D
    _scale_with_limits(D, c)
    if t_out is not None:
        t_out[...] = D
    np.exp(D, out=D)
    return D


def _scale_with_limits_jax(D, c):
    import jax.numpy as jnp

    if np.isinf(c):
        return jnp.where(D > 0, -jnp.inf, 0.0).astype(D.dtype)
    return -c * D


def _positive_or_none(value, what):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (np.isfinite(value) and value > 0):
        raise InvalidInputError(f"{what} must be a positive finite number (or None for the default), got {value!r}.")


class Stationary(Kernel):
    """Base of distance kernels k(x, z) = f(||x - z||^2 / s^2) with a bandwidth s.

    A subclass sets ``name`` and implements :meth:`~kernelgen.kernels.Kernel.from_sqdist` on
    r2 = ||x - z||^2 / s^2 (and :meth:`~kernelgen.kernels.Kernel.from_sqdist_jax` for the JAX
    backend); the bandwidth, its median-heuristic default, the diagonal k(0) and every rescaling at
    the float range's edges come from here (docs/kernels.md).

    Parameters
    ----------
    bandwidth : float > 0 or None
        s, in the units of the data; None: the median heuristic on the training data
        (:func:`default_bandwidth`, filled by :meth:`resolve`).

    Raises
    ------
    InvalidInputError
        A bandwidth that is not a positive finite number (or None).
    """

    stationary = True

    def __init__(self, bandwidth=None):
        self.bandwidth = bandwidth
        self._check()

    def _check(self):
        _positive_or_none(self.bandwidth, f"{type(self).__name__}.bandwidth")

    def resolve(self, X):
        if self.bandwidth is not None:
            return self
        s = default_bandwidth(X, kernel=self.name)
        log.info("no bandwidth given: the median heuristic chose s = %.6g", s)
        params = self.get_params(deep=False)
        params["bandwidth"] = s
        return type(self)(**params)  # every other hyper-parameter kept

    @property
    def is_resolved(self):
        return self.bandwidth is not None

    def _s(self):
        if self.bandwidth is None:
            raise InvalidInputError(f"{type(self).__name__} has bandwidth=None: resolve it on data first "
                                    "(kernel.resolve(X)), or pass a bandwidth.")
        return float(self.bandwidth)

    def _length_scale(self) -> float:
        return self._s()

    def _builtin_formula(self, owner) -> bool:
        """True while ``owner``'s own from_sqdist and from_sqdist_jax are in force (no subclass overrides them)."""
        cls = type(self)
        return cls.from_sqdist is owner.from_sqdist and cls.from_sqdist_jax is owner.from_sqdist_jax


class Gaussian(Stationary):
    """Gaussian (RBF) kernel k(x, z) = exp(-||x - z||^2 / (2 s^2)).

    Parameters
    ----------
    bandwidth : float > 0 or None
        s, in the units of the data; None: the median heuristic (module docstring).

    References
    ----------
    Zhang et al., ICLR 2017, §5 (MNIST, s = 5 on pixels in [0, 1] by the EigenPro convention).
    """

    name = "gaussian"

    def from_sqdist(self, r2):
        r2 *= -0.5
        return np.exp(r2, out=r2)

    def from_sqdist_jax(self, r2):
        import jax.numpy as jnp

        return jnp.exp(-0.5 * r2)

    def _proven_entry_form(self):
        return "gaussian" if type(self) is Gaussian else None

    def _entries_from_sqdist(self, D, log2_scale: int = 0, dscale=1.0, t_out=None):
        if not self._builtin_formula(Gaussian):
            return super()._entries_from_sqdist(D, log2_scale, dscale, t_out)
        # D holds ||x - z||^2 / (4^log2_scale dscale); the exponent is -D * dscale * 4^log2_scale / (2 s^2),
        # its scale rounded once (exponent_scale); with t_out, -t is kept there (the proven bound's T o K)
        return _exp_minus(D, exponent_scale("gaussian", self._s(), log2_scale, dscale), t_out)

    def _entries_from_sqdist_jax(self, D, log2_scale: int = 0):
        if not self._builtin_formula(Gaussian):
            return super()._entries_from_sqdist_jax(D, log2_scale)
        import jax.numpy as jnp

        c = exponent_scale("gaussian", self._s(), log2_scale)
        return jnp.exp(_scale_with_limits_jax(D, c))


class Laplace(Stationary):
    """Laplace kernel k(x, z) = exp(-||x - z|| / s).

    Parameters
    ----------
    bandwidth : float > 0 or None
        s; None: the median heuristic (module docstring).
    """

    name = "laplace"

    def from_sqdist(self, r2):
        np.sqrt(r2, out=r2)
        r2 *= -1.0
        return np.exp(r2, out=r2)

    def from_sqdist_jax(self, r2):
        import jax.numpy as jnp

        return jnp.exp(-jnp.sqrt(r2))

    def _proven_entry_form(self):
        return "laplace" if type(self) is Laplace else None

    def _entries_from_sqdist(self, D, log2_scale: int = 0, dscale=1.0, t_out=None):
        if not self._builtin_formula(Laplace):
            return super()._entries_from_sqdist(D, log2_scale, dscale, t_out)
        # D holds ||x - z||^2 / (4^log2_scale dscale); t = sqrt(D) 2^log2_scale sqrt(dscale) / s, scale rounded once
        np.sqrt(D, out=D)
        return _exp_minus(D, exponent_scale("laplace", self._s(), log2_scale, dscale), t_out)

    def _entries_from_sqdist_jax(self, D, log2_scale: int = 0):
        if not self._builtin_formula(Laplace):
            return super()._entries_from_sqdist_jax(D, log2_scale)
        import jax.numpy as jnp

        return jnp.exp(_scale_with_limits_jax(jnp.sqrt(D), exponent_scale("laplace", self._s(), log2_scale)))


class Linear(Kernel):
    """Linear kernel k(x, z) = <x, z> (K = X X^T: the minimum-norm linear interpolant)."""

    name = "linear"

    def __init__(self):
        pass

    def from_gram(self, G, sq_rows, sq_cols, diag_offset, n_features):
        return G

    def from_gram_jax(self, G, sq_rows, sq_cols, diag_mask, n_features):
        return G

    def diag(self, X):
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        return np.einsum("ij,ij->i", X, X)


class Polynomial(Kernel):
    """Polynomial kernel k(x, z) = (<x, z> / s^2 + coef0)^degree.

    Parameters
    ----------
    degree : int >= 1, default 3
    bandwidth : float > 0, default 1.0
        s (scales the inner product).
    coef0 : float >= 0, default 1.0
    """

    name = "polynomial"

    def __init__(self, degree=3, bandwidth=1.0, coef0=1.0):
        self.degree = degree
        self.bandwidth = bandwidth
        self.coef0 = coef0
        self._check()

    def _check(self):
        d = self.degree
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise InvalidInputError(f"Polynomial.degree must be an integer >= 1, got {d!r}.")
        _positive_or_none(self.bandwidth, "Polynomial.bandwidth")
        if self.bandwidth is None:
            raise InvalidInputError("Polynomial.bandwidth must be a positive number.")
        c = self.coef0
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not (np.isfinite(c) and c >= 0):
            raise InvalidInputError(f"Polynomial.coef0 must be a finite number >= 0 (positive definite), got {c!r}.")

    def from_gram(self, G, sq_rows, sq_cols, diag_offset, n_features):
        G *= 1.0 / float(self.bandwidth) ** 2
        G += float(self.coef0)
        np.power(G, int(self.degree), out=G)
        return G

    def from_gram_jax(self, G, sq_rows, sq_cols, diag_mask, n_features):
        return (G / float(self.bandwidth) ** 2 + float(self.coef0)) ** int(self.degree)

    def diag(self, X):
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        return (np.einsum("ij,ij->i", X, X) / float(self.bandwidth) ** 2 + float(self.coef0)) ** int(self.degree)
