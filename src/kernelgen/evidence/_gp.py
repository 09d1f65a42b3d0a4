"""Exact Gaussian-process evidence and type-II maximum likelihood (private; see :mod:`kernelgen.evidence`).

:func:`gp_log_evidence` (Rasmussen & Williams eq. 2.30, from a float64 Cholesky factor);
:func:`gp_type2_ml`: one symmetric eigendecomposition of ``K``
(:meth:`kernelgen.factors.EighFactor.factor`), then the amplitude and the noise variance at O(n k) per
evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import scipy.linalg as sla
import scipy.optimize as sopt

from .._validation import as_float_array
from ..errors import InvalidInputError, ShapeMismatchError
from ..factors import EighFactor
from ._common import (
    LOG_2PI,
    _as_square,
    _cholesky_lower,
    _logdet_from_cholesky,
    _positive_scalar,
)
from ._dimension import effective_dimension

__all__ = [
    "GPEvidence",
    "GPType2ML",
    "gp_log_evidence",
    "gp_type2_ml",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Gaussian-process (kernel) form
# ----------------------------------------------------------------------------------------------
def _as_targets(Y, n: int) -> np.ndarray:
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    if Y.shape[0] != n:
        raise ShapeMismatchError(f"K has {n} rows but Y has {Y.shape[0]}; they must match.")
    return Y.reshape(n, -1)


@dataclasses.dataclass(frozen=True)
class GPEvidence:
    """Exact GP log evidence ``sum_j log N(y_j | 0, a^2 K + sigma^2 I)``.

    Attributes
    ----------
    log_evidence : float
        Sum over target columns.
    per_column : ndarray of shape (n_targets,)
    amplitude2, noise_var : float
        ``a^2`` and ``sigma^2``.
    log_det : float
        ``ln |a^2 K + sigma^2 I|`` (float64 Cholesky).
    data_fit : ndarray of shape (n_targets,)
        ``y_j^T C^{-1} y_j``.
    """

    log_evidence: float
    per_column: np.ndarray
    amplitude2: float
    noise_var: float
    log_det: float
    data_fit: np.ndarray


def gp_log_evidence(K, Y, *, amplitude2: float, noise_var: float) -> GPEvidence:
    """Exact log marginal likelihood of a zero-mean GP, per target column.

    ``log N(y | 0, C) = -1/2 y^T C^{-1} y - 1/2 ln|C| - n/2 ln 2 pi`` with
    ``C = a^2 K + sigma^2 I`` (Rasmussen & Williams eq. 2.30), from a float64 Cholesky factor.
    For the linear kernel ``K = Phi Phi^T`` with ``a^2 = 1/alpha`` and ``sigma^2 = 1/beta`` this
    equals :func:`blr_log_evidence` (PRML eq. 3.86).

    Parameters
    ----------
    K : array of shape (n_samples, n_samples)
        Symmetric positive semi-definite kernel matrix.
    Y : array of shape (n_samples,) or (n_samples, n_targets)
    amplitude2 : float
        Prior amplitude ``a^2 > 0``.
    noise_var : float
        Noise variance ``sigma^2 >= 0`` (0 allowed only if ``K`` itself is positive definite).

    Returns
    -------
    GPEvidence

    Raises
    ------
    NotPositiveDefiniteError
        ``a^2 K + sigma^2 I`` is not positive definite in float64.
    """
    K = _as_square(K)
    n = K.shape[0]
    Y = _as_targets(Y, n)
    a2 = _positive_scalar(amplitude2, "amplitude2")
    s2 = float(noise_var)
    if not math.isfinite(s2) or s2 < 0:
        raise InvalidInputError(f"noise_var must be finite and >= 0, got {noise_var!r}.")
    C = a2 * K
    C[np.diag_indices(n)] += s2
    L = _cholesky_lower(C, "a^2 K + sigma^2 I")
    Z = sla.solve_triangular(L, Y, lower=True, check_finite=False)
    fit = np.sum(Z * Z, axis=0)
    logdet = _logdet_from_cholesky(L)
    per = -0.5 * fit - 0.5 * logdet - 0.5 * n * LOG_2PI
    return GPEvidence(float(per.sum()), per, a2, s2, logdet, fit)


@dataclasses.dataclass(frozen=True)
class GPType2ML:
    """Type-II maximum likelihood of the GP amplitude and noise variance.

    Attributes
    ----------
    amplitude2, noise_var : float
        The maximiser ``(a^2, sigma^2)`` (shared by all target columns).
    ratio : float
        ``sigma^2 / a^2``.
    log_evidence : float
        Maximised log evidence, summed over columns.
    per_column : ndarray of shape (n_targets,)
    effective_dim : float
        ``N_eff(K, sigma^2/a^2)`` -- PRML's gamma for the kernel form.
    gradient : ndarray of shape (2,)
        Gradient of the total log evidence w.r.t. ``(ln a^2, ln sigma^2)`` at the maximiser.
    at_bound : bool
        The ratio hit the search bounds (the maximiser may lie outside them).
    bounds : tuple of float
        Search interval of the ratio.
    factor : kernelgen.factors.EighFactor
        The eigendecomposition of ``K`` used (reuse it for other targets).
    """

    amplitude2: float
    noise_var: float
    ratio: float
    log_evidence: float
    per_column: np.ndarray
    effective_dim: float
    gradient: np.ndarray
    at_bound: bool
    bounds: tuple
    factor: EighFactor


def gp_type2_ml(K_or_factor, Y, *, ratio_bounds: tuple | None = None, n_grid: int = 161) -> GPType2ML:
    """Maximise the GP evidence over ``a^2`` and ``sigma^2`` (factor once, solve many).

    With ``r = sigma^2 / a^2`` and ``v_i = lambda_i + r`` the evidence is maximised over ``a^2`` in
    closed form, ``a^2(r) = sum_ij c_ij^2 / v_i / (n k)`` (``c = U^T Y``), leaving a 1-D profile in
    ``ln r``: a log-spaced grid, then bounded Brent (scipy) around the best grid point. Each
    evaluation costs O(n k) after the single eigendecomposition.

    Parameters
    ----------
    K_or_factor : array of shape (n, n) or kernelgen.factors.EighFactor
        The kernel matrix (decomposed once here, float64) or its factor from
        ``EighFactor.factor(K)`` (factor once, solve many).
    Y : array of shape (n,) or (n, n_targets)
    ratio_bounds : (float, float), optional
        Search interval for ``r``; default ``[max(1e-12 lambda_max, 10 |lambda_min^-|), 1e6 lambda_max]``
        (the lower end keeps ``a^2 K + sigma^2 I`` positive definite despite rounding in ``K``).
    n_grid : int

    Returns
    -------
    GPType2ML

    References
    ----------
    Rasmussen & Williams section 5.4.1; Bishop PRML section 3.5.2 (gamma).
    """
    fac = K_or_factor if isinstance(K_or_factor, EighFactor) else EighFactor.factor(_as_square(K_or_factor))
    lam = fac.eigenvalues
    c = fac.project(Y)
    n, k = c.shape
    q = np.sum(c * c, axis=1)
    if not np.any(q > 0):
        raise InvalidInputError("Y is identically zero: the evidence has no finite maximiser.")
    lmax = float(max(lam[-1], 0.0))
    if lmax <= 0:
        raise InvalidInputError("K has no positive eigenvalue; it is not a useful kernel matrix.")
    if ratio_bounds is None:
        lo = max(1e-12 * lmax, 10.0 * max(0.0, -float(lam[0])))
        ratio_bounds = (lo, 1e6 * lmax)
    lo, hi = float(ratio_bounds[0]), float(ratio_bounds[1])
    if not (0 < lo < hi) or lo + float(lam[0]) <= 0:
        raise InvalidInputError(
            f"ratio_bounds {ratio_bounds} must satisfy 0 < lo < hi and lo > -lambda_min = {-lam[0]:.3g}."
        )

    def neg_profile(log_r: float) -> float:
        v = lam + math.exp(log_r)
        a2 = float(np.sum(q / v)) / (n * k)
        return 0.5 * n * k * (1.0 + LOG_2PI + math.log(a2)) + 0.5 * k * float(np.sum(np.log(v)))

    grid = np.linspace(math.log(lo), math.log(hi), n_grid)
    vals = np.array([neg_profile(g) for g in grid])
    i = int(np.argmin(vals))
    a_, b_ = grid[max(i - 1, 0)], grid[min(i + 1, n_grid - 1)]
    def dprofile(log_r: float) -> float:
        # d(neg_profile)/d ln r * 2 / (k r): stationarity of the profile, solved to rounding by brentq
        v = lam + math.exp(log_r)
        return -n * float(np.sum(q / v**2)) / float(np.sum(q / v)) + float(np.sum(1.0 / v))

    da, db = dprofile(a_), dprofile(b_)
    if da < 0 < db:
        log_r = float(sopt.brentq(dprofile, a_, b_, xtol=1e-14, rtol=4 * np.finfo(float).eps))
    else:  # optimum at a bound of the search interval (or a flat profile): bounded Brent
        res = sopt.minimize_scalar(neg_profile, bounds=(a_, b_), method="bounded", options={"xatol": 1e-12})
        log_r = float(res.x) if res.fun <= vals[i] else float(grid[i])
    r = math.exp(log_r)
    v = lam + r
    a2 = float(np.sum(q / v)) / (n * k)
    s2 = a2 * r
    per = fac.log_evidence(amplitude2=a2, noise_var=s2, projected=c)
    # gradient of the total w.r.t. (ln a^2, ln sigma^2): d/dv_i = q_i / (2 v_i^2) - k / (2 v_i)
    vv = a2 * lam + s2
    g_v = 0.5 * q / vv**2 - 0.5 * k / vv
    grad = np.array([a2 * float(np.sum(lam * g_v)), s2 * float(np.sum(g_v))])
    at_bound = bool(abs(log_r - grid[0]) < 1e-6 or abs(log_r - grid[-1]) < 1e-6)
    if at_bound:
        logger.warning("type-II ML noise/amplitude ratio %.3g at the search bound %s", r, (lo, hi))
    return GPType2ML(
        amplitude2=a2,
        noise_var=s2,
        ratio=r,
        log_evidence=float(per.sum()),
        per_column=per,
        effective_dim=float(effective_dimension(lam, r)),
        gradient=grad,
        at_bound=at_bound,
        bounds=(lo, hi),
        factor=fac,
    )
