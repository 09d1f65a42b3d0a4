"""Bayesian evidence: exact (linear regression, Gaussian process) and Laplace.

What is here
------------
* :func:`blr_log_evidence` -- exact log evidence of Bayesian linear regression
  (Bishop PRML eq. 3.86) from a float64 Cholesky factor of ``A = alpha I + beta Phi^T Phi``.
* :func:`mackay_evidence` -- MacKay's fixed-point re-estimation of ``alpha`` and ``beta``
  (PRML eqs. 3.91-3.95), with a convergence report; the SVD of ``Phi`` is computed once.
* :func:`gp_log_evidence` -- exact ``sum_j log N(y_j | 0, a^2 K + sigma^2 I)`` per target column
  (Rasmussen & Williams eq. 2.30) from a float64 Cholesky factor.
* :func:`factor_kernel` / :func:`gp_type2_ml` -- "factor once, solve many": one symmetric
  eigendecomposition of ``K`` and then type-II maximum likelihood of the amplitude ``a^2`` and the
  noise variance ``sigma^2`` at O(n k) per evaluation.
* :func:`laplace_evidence` -- the Laplace approximation for any twice-differentiable log joint with
  a proper prior (JAX Hessian or a user-supplied exact Hessian), at its MAP found by L-BFGS and
  polished by Newton, or at a given point; with the Occam-factor decomposition.
* :func:`logistic_laplace_evidence`, :func:`softmax_laplace_evidence` -- logistic / softmax
  regression with a Gaussian prior; the Hessian is the exact Gauss-Newton matrix (exact for the
  canonical link).
* :func:`kernel_logistic_laplace_evidence` -- the same logistic Laplace evidence in function space
  (latent prior ``f ~ N(0, K)``, Rasmussen & Williams Alg. 3.1, eq. 3.32): O(n^3), for models with
  more parameters than samples; equal to the weight-space form for ``K = X X^T / lam``.
* :func:`effective_dimension` -- ``N_eff(H, z) = sum_i lambda_i / (lambda_i + z)``.

Dtype policy
------------
Everything is float64: inputs of any real dtype are converted to float64 (never computed in
float32: a float32 factor's log-determinant is not accurate enough, and refinement does not fix
it). JAX runs only inside :func:`kernelgen._jax.enable_x64`. No jitter or ridge is ever added: a
matrix that is not positive definite raises :class:`~kernelgen.errors.NotPositiveDefiniteError`.

References
----------
.. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, 2006, sections 3.5 and 4.4
   (eqs. 3.86, 3.91-3.95, 4.135-4.137).
.. [2] D. J. C. MacKay, "Bayesian interpolation", Neural Computation 4(3), 1992.
.. [3] C. E. Rasmussen and C. K. I. Williams, *Gaussian Processes for Machine Learning*, 2006,
   eq. 2.30 and section 5.4.
.. [4] S. L. Smith and Q. V. Le, "A Bayesian perspective on generalization and stochastic
   gradient descent", ICLR 2018.
.. [5] W. J. Maddox, G. Benton, A. G. Wilson, "Rethinking parameter counting in deep models:
   effective dimensionality revisited", 2020 (N_eff).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable

import numpy as np
import scipy.linalg as sla
import scipy.optimize as sopt
from scipy.special import expit, log_expit, logsumexp

from ._validation import as_float_array, check_same_rows
from .factors import EighFactor
from .numerics import check_symmetric
from .errors import (
    ConvergenceError,
    InvalidInputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
)

__all__ = [
    "BLREvidence",
    "MacKayResult",
    "GPEvidence",
    "KernelEigenFactor",
    "GPType2ML",
    "LaplaceResult",
    "KernelLaplaceResult",
    "blr_log_evidence",
    "mackay_evidence",
    "gp_log_evidence",
    "factor_kernel",
    "gp_type2_ml",
    "laplace_evidence",
    "logistic_laplace_evidence",
    "softmax_laplace_evidence",
    "kernel_logistic_laplace_evidence",
    "effective_dimension",
    "uniform_null_log_evidence",
]

logger = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _positive_scalar(x, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a positive real number, got {x!r}.") from exc
    if not math.isfinite(v):
        raise NonFiniteInputError(f"{name} = {v} is not finite; pass a positive finite number.")
    if v <= 0.0:
        raise InvalidInputError(f"{name} must be > 0 (a proper Gaussian), got {v}.")
    return v


def _cholesky_lower(A: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor in float64, or NotPositiveDefiniteError (no jitter added)."""
    try:
        return sla.cholesky(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        # LAPACK reports the order of the leading minor that failed: "... leading minor of order k"
        idx = None
        digits = [int(s) for s in str(exc).replace(".", " ").split() if s.isdigit()]
        if digits:
            idx = digits[0] - 1
        raise NotPositiveDefiniteError(
            f"{what} is not positive definite in float64 (Cholesky failed: {exc}). kernelgen adds no "
            "jitter; increase the prior precision / noise variance explicitly if that is intended.",
            index=idx,
        ) from exc


def _logdet_from_cholesky(L: np.ndarray) -> float:
    return 2.0 * float(np.sum(np.log(np.diag(L))))


# ----------------------------------------------------------------------------------------------
# Bayesian linear regression (PRML section 3.5)
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BLREvidence:
    """Exact evidence of Bayesian linear regression at fixed ``alpha``, ``beta``.

    Attributes
    ----------
    log_evidence : float
        ``ln p(t | alpha, beta)``, PRML eq. 3.86.
    mean : ndarray of shape (n_features,)
        Posterior mean ``m_N = beta A^{-1} Phi^T t`` (eq. 3.84).
    alpha, beta : float
    gamma : float
        Effective number of well-determined parameters ``sum_i lambda_i / (alpha + lambda_i)``
        (eq. 3.91), lambda_i the eigenvalues of ``beta Phi^T Phi``.
    misfit : float
        ``E(m_N) = beta/2 ||t - Phi m_N||^2 + alpha/2 m_N^T m_N`` (eq. 3.82).
    log_det_A : float
        ``ln |alpha I + beta Phi^T Phi|`` from the float64 Cholesky factor.
    """

    log_evidence: float
    mean: np.ndarray
    alpha: float
    beta: float
    gamma: float
    misfit: float
    log_det_A: float


def blr_log_evidence(Phi, t, *, alpha: float, beta: float) -> BLREvidence:
    """Exact log evidence of Bayesian linear regression (PRML eq. 3.86).

    Model: ``w ~ N(0, alpha^{-1} I_M)``, ``t | w ~ N(Phi w, beta^{-1} I_N)``.

    Parameters
    ----------
    Phi : array of shape (n_samples, n_features)
        Design matrix.
    t : array of shape (n_samples,)
        Targets.
    alpha : float
        Prior precision (> 0).
    beta : float
        Noise precision (> 0).

    Returns
    -------
    BLREvidence

    References
    ----------
    Bishop PRML eqs. 3.81-3.86 (evidence), 3.91 (gamma).

    Examples
    --------
    >>> import numpy as np
    >>> Phi = np.array([[1.0], [2.0]]); t = np.array([1.0, 2.0])
    >>> round(blr_log_evidence(Phi, t, alpha=1.0, beta=1.0).log_evidence, 6)
    -3.849463
    """
    Phi = as_float_array(Phi, "Phi", ndim=(2,), dtype=np.float64)
    t = as_float_array(t, "t", ndim=(1,), dtype=np.float64)
    check_same_rows(Phi, t, "Phi", "t")
    alpha = _positive_scalar(alpha, "alpha")
    beta = _positive_scalar(beta, "beta")
    N, M = Phi.shape
    # A = alpha I + beta Phi^T Phi  (PRML eq. 3.81)
    A = beta * (Phi.T @ Phi)
    A[np.diag_indices(M)] += alpha
    L = _cholesky_lower(A, "A = alpha I + beta Phi^T Phi")
    # m_N = beta A^{-1} Phi^T t  (eq. 3.84)
    mean = beta * sla.cho_solve((L, True), Phi.T @ t, check_finite=False)
    resid = t - Phi @ mean
    misfit = 0.5 * beta * float(resid @ resid) + 0.5 * alpha * float(mean @ mean)  # eq. 3.82
    log_det_A = _logdet_from_cholesky(L)
    # eq. 3.86
    log_ev = 0.5 * M * math.log(alpha) + 0.5 * N * math.log(beta) - misfit - 0.5 * log_det_A - 0.5 * N * LOG_2PI
    # gamma = M - alpha tr(A^{-1})  (equivalent to eq. 3.91)
    Linv = sla.solve_triangular(L, np.eye(M), lower=True, check_finite=False)
    gamma = M - alpha * float(np.sum(Linv * Linv))
    return BLREvidence(float(log_ev), mean, alpha, beta, float(gamma), float(misfit), float(log_det_A))


@dataclasses.dataclass(frozen=True)
class MacKayResult:
    """Result of MacKay's fixed-point iteration for ``alpha`` and ``beta``.

    Attributes
    ----------
    alpha, beta : float
        The fixed point (evidence-maximising hyperparameters, a stationary point of eq. 3.86).
    gamma : float
        Effective number of parameters at the fixed point (eq. 3.91).
    log_evidence : float
        Eq. 3.86 at the fixed point, recomputed by :func:`blr_log_evidence` (Cholesky route).
    mean : ndarray of shape (n_features,)
    n_iter : int
    converged : bool
    relative_change : float
        ``max(|d ln alpha|, |d ln beta|)`` at the last iteration.
    history : ndarray of shape (n_iter + 1, 3)
        Rows ``(alpha, beta, log_evidence)`` (the evidence computed from the SVD).
    """

    alpha: float
    beta: float
    gamma: float
    log_evidence: float
    mean: np.ndarray
    n_iter: int
    converged: bool
    relative_change: float
    history: np.ndarray


def mackay_evidence(
    Phi,
    t,
    *,
    alpha0: float = 1.0,
    beta0: float | None = None,
    tol: float = 1e-12,
    max_iter: int = 10_000,
    strict: bool = True,
) -> MacKayResult:
    """Maximise the BLR evidence over ``alpha``, ``beta`` by MacKay's fixed-point updates.

    ``alpha <- gamma / m_N^T m_N`` (PRML eq. 3.92), ``1/beta <- ||t - Phi m_N||^2 / (N - gamma)``
    (eq. 3.95), with ``gamma`` from eq. 3.91. The thin SVD ``Phi = U S V^T`` is computed once;
    each iteration then costs O(min(N, M)).

    Parameters
    ----------
    Phi : array of shape (n_samples, n_features)
    t : array of shape (n_samples,)
    alpha0 : float
        Initial prior precision.
    beta0 : float, optional
        Initial noise precision; default ``1 / var(t)``.
    tol : float
        Stop when ``max(|d ln alpha|, |d ln beta|) <= tol``.
    max_iter : int
    strict : bool
        If True (default) raise :class:`~kernelgen.errors.ConvergenceError` when ``max_iter`` is
        reached; otherwise return with ``converged=False``.

    Returns
    -------
    MacKayResult

    Raises
    ------
    ConvergenceError
        Not converged (``strict``), or a hyperparameter diverges (``m_N = 0`` drives
        ``alpha -> inf``; an exact fit ``t = Phi m_N`` drives ``beta -> inf``).

    References
    ----------
    Bishop PRML eqs. 3.87-3.95; MacKay (1992).
    """
    Phi = as_float_array(Phi, "Phi", ndim=(2,), dtype=np.float64)
    t = as_float_array(t, "t", ndim=(1,), dtype=np.float64)
    check_same_rows(Phi, t, "Phi", "t")
    N, M = Phi.shape
    alpha = _positive_scalar(alpha0, "alpha0")
    if beta0 is None:
        v = float(np.var(t))
        beta0 = 1.0 / v if v > 0 else 1.0
    beta = _positive_scalar(beta0, "beta0")
    # factor once: Phi = U diag(s) V^T; eigenvalues of Phi^T Phi are s^2 (plus M - r zeros)
    U, s, Vt = sla.svd(Phi, full_matrices=False, check_finite=False)
    r = s.size
    lam0 = s * s
    c = U.T @ t
    perp = t - U @ c
    t_perp2 = float(perp @ perp)  # part of t outside range(Phi): never fitted
    t_norm2 = float(t @ t)

    def stats(a, b):
        d = a + b * lam0
        z = b * s * c / d  # m_N in the V basis
        mm = float(z @ z)
        res2 = t_perp2 + float(np.sum((a * c / d) ** 2))
        gam = float(np.sum(b * lam0 / d))
        logdet = float(np.sum(np.log(d))) + (M - r) * math.log(a)
        E = 0.5 * b * res2 + 0.5 * a * mm
        le = 0.5 * M * math.log(a) + 0.5 * N * math.log(b) - E - 0.5 * logdet - 0.5 * N * LOG_2PI
        return mm, res2, gam, le

    history = []
    converged = False
    change = math.inf
    it = 0
    for it in range(1, max_iter + 1):
        mm, res2, gam, le = stats(alpha, beta)
        history.append((alpha, beta, le))
        if mm <= 0.0 or not math.isfinite(mm):
            raise ConvergenceError(
                "m_N = 0: the targets are orthogonal to range(Phi), so the evidence increases without "
                "bound as alpha -> inf. Check the design matrix / targets."
            )
        if res2 <= 1e-24 * t_norm2 or N - gam <= 0.0:  # residual at rounding level: an exact fit
            raise ConvergenceError(
                f"the fit is exact (||t - Phi m_N||^2 = {res2:.3g}, N - gamma = {N - gam:.3g}), so beta -> inf; "
                "MacKay's updates have no finite fixed point. Use fewer features than samples or fix beta."
            )
        alpha_new = gam / mm  # eq. 3.92
        beta_new = (N - gam) / res2  # eq. 3.95
        change = max(abs(math.log(alpha_new / alpha)), abs(math.log(beta_new / beta)))
        alpha, beta = alpha_new, beta_new
        if change <= tol:
            converged = True
            break
    mm, res2, gam, le = stats(alpha, beta)
    history.append((alpha, beta, le))
    if not converged:
        msg = (
            f"MacKay iteration did not converge in {max_iter} iterations (last relative change "
            f"{change:.3g} > tol {tol:.3g}); raise max_iter or loosen tol."
        )
        if strict:
            raise ConvergenceError(msg)
        logger.warning(msg)
    final = blr_log_evidence(Phi, t, alpha=alpha, beta=beta)
    logger.debug("MacKay: %d iterations, alpha=%.6g beta=%.6g gamma=%.4f", it, alpha, beta, final.gamma)
    return MacKayResult(
        alpha=float(alpha),
        beta=float(beta),
        gamma=final.gamma,
        log_evidence=final.log_evidence,
        mean=final.mean,
        n_iter=it,
        converged=converged,
        relative_change=float(change),
        history=np.asarray(history, dtype=np.float64),
    )


# ----------------------------------------------------------------------------------------------
# Gaussian-process (kernel) form
# ----------------------------------------------------------------------------------------------
def _as_targets(Y, n: int) -> np.ndarray:
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    if Y.shape[0] != n:
        raise ShapeMismatchError(f"K has {n} rows but Y has {Y.shape[0]}; they must match.")
    return Y.reshape(n, -1)


def _as_square(K, name="K") -> np.ndarray:
    K = as_float_array(K, name, ndim=(2,), dtype=np.float64)
    if K.shape[0] != K.shape[1]:
        raise ShapeMismatchError(f"{name} must be square (n, n), got shape {K.shape}.")
    return K


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


#: The eigendecomposition factor of a kernel matrix: one class for the whole package
#: (:class:`kernelgen.factors.EighFactor`: eigenvalues, eigenvectors, rank, ``project``,
#: ``log_evidence``, ``effective_dim``, pseudo-inverse ``solve`` and ``logdet``).
KernelEigenFactor = EighFactor


def factor_kernel(K) -> EighFactor:
    """Eigendecompose a symmetric kernel matrix once (scipy ``eigh``, float64): an :class:`EighFactor`.

    The symmetry check and the rank / PSD rules are those of :mod:`kernelgen.numerics` (checked in
    row blocks at every size, tolerances following the precision of K).

    Parameters
    ----------
    K : array of shape (n_samples, n_samples)

    Returns
    -------
    EighFactor

    Raises
    ------
    InvalidInputError
        K not square, not symmetric, or too large for one LAPACK call.
    """
    K = _as_square(K)
    return EighFactor.factor(K)


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
    factor : KernelEigenFactor
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
    factor: KernelEigenFactor


def gp_type2_ml(K_or_factor, Y, *, ratio_bounds: tuple | None = None, n_grid: int = 161) -> GPType2ML:
    """Maximise the GP evidence over ``a^2`` and ``sigma^2`` (factor once, solve many).

    With ``r = sigma^2 / a^2`` and ``v_i = lambda_i + r`` the evidence is maximised over ``a^2`` in
    closed form, ``a^2(r) = sum_ij c_ij^2 / v_i / (n k)`` (``c = U^T Y``), leaving a 1-D profile in
    ``ln r``: a log-spaced grid, then bounded Brent (scipy) around the best grid point. Each
    evaluation costs O(n k) after the single eigendecomposition.

    Parameters
    ----------
    K_or_factor : array of shape (n, n) or KernelEigenFactor
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
    fac = K_or_factor if isinstance(K_or_factor, KernelEigenFactor) else factor_kernel(K_or_factor)
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


# ----------------------------------------------------------------------------------------------
# effective dimensionality
# ----------------------------------------------------------------------------------------------
def effective_dimension(H, z):
    """Effective dimensionality ``N_eff(H, z) = sum_i lambda_i / (lambda_i + z)``.

    Parameters
    ----------
    H : array of shape (d,) or (d, d)
        Eigenvalues, or a symmetric matrix (its eigenvalues are computed with scipy ``eigvalsh``).
    z : float or array of shape (m,)
        Positive regularisation level(s). ``z -> 0`` gives the number of positive eigenvalues (the
        rank); ``z -> inf`` gives 0. Equals PRML's gamma (eq. 3.91) with ``z = alpha``.

    Returns
    -------
    float or ndarray of shape (m,)

    References
    ----------
    Maddox, Benton & Wilson (2020); MacKay (1992); Bishop PRML eq. 3.91.
    """
    H = as_float_array(H, "H", ndim=(1, 2), dtype=np.float64)
    if H.ndim == 2:
        if H.shape[0] != H.shape[1]:
            raise ShapeMismatchError(f"H must be square, got shape {H.shape}.")
        lam = sla.eigvalsh(H, check_finite=False)
    else:
        lam = H
    z_arr = np.asarray(z, dtype=np.float64)
    if np.any(np.isnan(z_arr)):
        raise NonFiniteInputError("z contains NaN.")
    if np.any(z_arr <= 0):
        raise InvalidInputError("z must be > 0 (the limit z -> 0 is the rank; pass a small positive z).")
    zz = np.atleast_1d(z_arr)
    with np.errstate(invalid="ignore"):
        out = np.array([0.0 if math.isinf(zi) else float(np.sum(lam / (lam + zi))) for zi in zz])
    return float(out[0]) if z_arr.ndim == 0 else out


# ----------------------------------------------------------------------------------------------
# Laplace approximation
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LaplaceResult:
    """Laplace approximation of the log evidence and its Occam-factor decomposition.

    ``log_evidence = log_likelihood + log_prior + log_volume`` with
    ``log_volume = (d/2) ln 2 pi - 1/2 sum_i ln lambda_i = sum(occam_per_eigenvalue)``;
    ``log_occam_factor = log_prior + log_volume`` (MacKay's Occam factor: posterior volume over
    prior volume), so ``log_evidence = log_likelihood + log_occam_factor``.

    Attributes
    ----------
    log_evidence : float
    w : ndarray of shape (d,)
        The expansion point (the MAP when ``is_map``).
    log_likelihood, log_prior : float
        At ``w``.
    log_volume : float
        ``(d/2) ln 2 pi - 1/2 ln det H``.
    log_occam_factor : float
    occam_per_eigenvalue : ndarray of shape (d,)
        ``1/2 ln 2 pi - 1/2 ln lambda_i`` for each Hessian eigenvalue (ascending order).
    hessian_eigenvalues : ndarray of shape (d,)
        Ascending eigenvalues of the Hessian of the negative log joint at ``w``.
    log_det_hessian : float
    grad_norm : float
        Euclidean norm of the gradient of the log joint at ``w``.
    newton_decrement2 : float
        ``g^T H^{-1} g`` at ``w`` (0 at an exact stationary point).
    is_map : bool
        ``w`` was found by the optimiser and it converged.
    n_iter : int
        Newton iterations (0 when evaluated at a given point).
    method : str
    """

    log_evidence: float
    w: np.ndarray
    log_likelihood: float
    log_prior: float
    log_volume: float
    log_occam_factor: float
    occam_per_eigenvalue: np.ndarray
    hessian_eigenvalues: np.ndarray
    log_det_hessian: float
    grad_norm: float
    newton_decrement2: float
    is_map: bool
    n_iter: int
    method: str

    @property
    def n_params(self) -> int:
        return self.w.size

    def effective_dim(self, z, *, prior_precision: float | None = None) -> float | np.ndarray:
        """``N_eff(H, z)`` of the Hessian at ``w``.

        With ``prior_precision`` (an isotropic prior ``N(0, prior_precision^-1 I)``), the data part
        ``H - prior_precision I`` is used instead (it shares H's eigenvectors); with
        ``z = prior_precision`` this is MacKay's gamma, the number of well-determined parameters
        (PRML eq. 3.91 / 4.5.1).
        """
        lam = self.hessian_eigenvalues
        if prior_precision is not None:
            lam = lam - _positive_scalar(prior_precision, "prior_precision")
        return effective_dimension(lam, z)


def _clean_hessian(H) -> np.ndarray:
    """float64 copy of H, symmetrised (JAX/AD Hessians are symmetric only to rounding)."""
    H = np.asarray(H, dtype=np.float64)
    return 0.5 * (H + H.T)


def _symmetric_eigvals(H: np.ndarray, what: str) -> np.ndarray:
    H = np.asarray(H, dtype=np.float64)
    if not np.all(np.isfinite(H)):
        raise NonFiniteInputError(f"the {what} contains NaN/inf; the log joint is not twice differentiable here.")
    H = _clean_hessian(H)
    lam = sla.eigvalsh(H, check_finite=False)
    if lam[0] <= 0:
        raise NotPositiveDefiniteError(
            f"the {what} is not positive definite (smallest eigenvalue {lam[0]:.3g}): the Laplace "
            "approximation needs a strict local maximum of the log joint. Find the MAP first "
            "(find_map=True) or use a proper prior with positive precision.",
            index=int(np.argmin(lam)),
        )
    return lam


def _laplace_core(
    neg_joint: Callable,
    neg_grad: Callable,
    neg_hess: Callable,
    log_lik: Callable,
    log_prior: Callable,
    w0: np.ndarray,
    *,
    find_map: bool,
    max_lbfgs: int,
    max_newton: int,
    strict: bool,
    method: str,
) -> LaplaceResult:
    w = np.array(w0, dtype=np.float64, copy=True)
    f = float(neg_joint(w))
    if not math.isfinite(f):
        raise NonFiniteInputError(f"the log joint is not finite at the starting point ({-f}); pick another w0.")
    n_newton = 0
    dec2 = math.nan
    converged = False
    if find_map:
        if max_lbfgs > 0:
            res = sopt.minimize(
                lambda x: float(neg_joint(x)),
                w,
                jac=lambda x: np.asarray(neg_grad(x), dtype=np.float64),
                method="L-BFGS-B",
                options={"maxiter": max_lbfgs, "gtol": 1e-10, "ftol": 1e-15},
            )
            if np.all(np.isfinite(res.x)) and res.fun <= f:
                w, f = np.asarray(res.x, dtype=np.float64), float(res.fun)
        # Newton polish with backtracking (Boyd & Vandenberghe Alg. 9.5), stopped at rounding level
        prev = math.inf
        for n_newton in range(1, max_newton + 1):
            g = np.asarray(neg_grad(w), dtype=np.float64)
            H = _clean_hessian(neg_hess(w))
            L = _cholesky_lower(H, "Hessian of the negative log joint during the Newton polish")
            step = -sla.cho_solve((L, True), g, check_finite=False)
            dec2 = float(-g @ step)
            scale = max(1.0, abs(f))
            if dec2 / 2 <= 1e-12 * scale:
                converged = True
            if dec2 / 2 <= 1e-26 * scale or (converged and dec2 >= prev):
                break  # at rounding level: further steps cannot improve w
            prev = dec2
            tstep = 1.0
            while True:
                w_new = w + tstep * step
                f_new = float(neg_joint(w_new))
                if math.isfinite(f_new) and f_new <= f - 0.25 * tstep * dec2 + 1e-14 * scale:
                    break
                tstep *= 0.5
                if tstep < 1e-12:
                    break
            if tstep < 1e-12:
                break
            w, f = w_new, f_new
        if not converged:
            msg = (
                f"Newton polish did not reach the MAP (Newton decrement^2/2 = {dec2 / 2:.3g} after {n_newton} "
                "iterations); raise max_newton / max_lbfgs or check that the log joint is smooth and concave "
                "near its maximum."
            )
            if strict:
                raise ConvergenceError(msg)
            logger.warning(msg)
    g = np.asarray(neg_grad(w), dtype=np.float64)
    H = np.asarray(neg_hess(w), dtype=np.float64)
    lam = _symmetric_eigvals(H, "Hessian of the negative log joint")
    Hs = _clean_hessian(H)
    dec2 = float(g @ np.linalg.solve(Hs, g))
    ll = float(log_lik(w))
    lp = float(log_prior(w))
    per = 0.5 * LOG_2PI - 0.5 * np.log(lam)
    log_volume = float(np.sum(per))
    logdet = float(np.sum(np.log(lam)))
    return LaplaceResult(
        log_evidence=ll + lp + log_volume,
        w=w,
        log_likelihood=ll,
        log_prior=lp,
        log_volume=log_volume,
        log_occam_factor=lp + log_volume,
        occam_per_eigenvalue=per,
        hessian_eigenvalues=lam,
        log_det_hessian=logdet,
        grad_norm=float(np.linalg.norm(g)),
        newton_decrement2=dec2,
        is_map=bool(find_map and converged),
        n_iter=n_newton if find_map else 0,
        method=method,
    )


def laplace_evidence(
    log_likelihood: Callable,
    log_prior: Callable,
    w0,
    *,
    hessian: str | Callable = "jax",
    find_map: bool = True,
    max_lbfgs: int = 500,
    max_newton: int = 50,
    strict: bool = True,
) -> LaplaceResult:
    """Laplace approximation of ``ln p(D) = ln int p(D|w) p(w) dw``.

    ``ln p(D) ~ ln p(D|w*) + ln p(w*) + (d/2) ln 2 pi - 1/2 ln det H`` with ``H`` the Hessian of
    the negative log joint at ``w*`` (PRML eq. 4.135-4.137). Exact for a Gaussian log joint
    (Bayesian linear regression). ``w*`` is the MAP (L-BFGS-B, then Newton polish to rounding
    level) unless ``find_map=False``, in which case the formula is evaluated at ``w0`` itself (e.g.
    the point an SGD run reached; ``newton_decrement2`` then says how far from stationary it is).

    Parameters
    ----------
    log_likelihood, log_prior : callable
        JAX-traceable functions of ``w`` (array of shape (d,)) returning scalars; the prior must be
        proper (normalised). They are called inside :func:`kernelgen._jax.enable_x64`.
    w0 : array of shape (d,)
        Starting point (or the expansion point with ``find_map=False``).
    hessian : "jax" or callable
        ``"jax"``: ``jax.hessian`` of the negative log joint. A callable ``hessian(w)`` must return
        the exact (d, d) Hessian of the negative log joint (e.g. an exact Gauss-Newton matrix).
    find_map : bool
    max_lbfgs, max_newton : int
    strict : bool
        Raise :class:`~kernelgen.errors.ConvergenceError` if the MAP is not reached.

    Returns
    -------
    LaplaceResult

    Raises
    ------
    NotPositiveDefiniteError
        The Hessian at the expansion point is not positive definite.
    NonFiniteInputError, ShapeMismatchError

    References
    ----------
    Bishop PRML section 4.4 (eq. 4.135); MacKay (1992) (Occam factor).
    """
    import jax
    import jax.numpy as jnp

    from ._jax import enable_x64

    w0 = as_float_array(w0, "w0", ndim=(1,), dtype=np.float64)
    with enable_x64():

        def neg(w):
            return -(log_likelihood(w) + log_prior(w))

        vg = jax.jit(jax.value_and_grad(neg))
        ll_j = jax.jit(log_likelihood)
        lp_j = jax.jit(log_prior)
        if hessian == "jax":
            hj = jax.jit(jax.hessian(neg))

            def neg_hess(w):
                return np.asarray(hj(jnp.asarray(w)), dtype=np.float64)

            method = "laplace/jax-hessian"
        elif callable(hessian):

            def neg_hess(w):
                Hw = np.asarray(hessian(np.asarray(w)), dtype=np.float64)
                if Hw.shape != (w0.size, w0.size):
                    raise ShapeMismatchError(f"hessian(w) returned shape {Hw.shape}, expected {(w0.size, w0.size)}.")
                return Hw

            method = "laplace/user-hessian"
        else:
            raise InvalidInputError(f"hessian must be 'jax' or a callable, got {hessian!r}.")
        return _laplace_core(
            lambda w: float(vg(jnp.asarray(w))[0]),
            lambda w: np.asarray(vg(jnp.asarray(w))[1], dtype=np.float64),
            neg_hess,
            lambda w: float(ll_j(jnp.asarray(w))),
            lambda w: float(lp_j(jnp.asarray(w))),
            w0,
            find_map=find_map,
            max_lbfgs=max_lbfgs,
            max_newton=max_newton,
            strict=strict,
            method=method,
        )


# ----------------------------------------------------------------------------------------------
# logistic / softmax regression with a Gaussian prior (closed-form gradient and Hessian)
# ----------------------------------------------------------------------------------------------
def _prior_precision(prior_precision, D: int) -> np.ndarray:
    lam = np.asarray(prior_precision, dtype=np.float64)
    if lam.ndim == 0:
        lam = np.full(D, float(lam))
    if lam.shape != (D,):
        raise ShapeMismatchError(f"prior_precision must be a scalar or have shape ({D},), got {lam.shape}.")
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise InvalidInputError("prior_precision must be finite and > 0 (a proper Gaussian prior).")
    return lam


def _gaussian_log_prior(lam: np.ndarray):
    const = 0.5 * float(np.sum(np.log(lam))) - 0.5 * lam.size * LOG_2PI

    def lp(w):
        return const - 0.5 * float(np.sum(lam * w * w))

    return lp


def _labels(y, n: int, n_classes: int | None) -> tuple[np.ndarray, int]:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ShapeMismatchError(f"y must have shape ({n},), got {y.shape}.")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise NonFiniteInputError("y contains NaN/inf.")
        if not np.all(y == np.round(y)):
            raise InvalidInputError("y must hold integer class labels 0..C-1.")
    elif y.dtype.kind not in "iub":
        raise InvalidInputError(f"y must hold integer class labels, got dtype {y.dtype}.")
    yi = y.astype(np.int64)
    C = int(yi.max()) + 1 if n_classes is None else int(n_classes)
    if yi.min() < 0 or yi.max() >= C:
        raise InvalidInputError(f"labels must lie in 0..{C - 1}; got range [{yi.min()}, {yi.max()}].")
    return yi, C


def logistic_laplace_evidence(
    X, y, *, prior_precision, w=None, find_map: bool = True, max_newton: int = 100, strict: bool = True
) -> LaplaceResult:
    """Laplace evidence of binary logistic regression with prior ``w ~ N(0, diag(prior_precision)^-1)``.

    ``p(y_n = 1 | x_n, w) = sigmoid(x_n^T w)``. The Hessian of the negative log joint,
    ``X^T diag(s (1 - s)) X + diag(prior_precision)``, is exact (PRML eq. 4.97, 4.143).
    Add a column of ones to ``X`` for an intercept.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,)
        Labels in {0, 1}.
    prior_precision : float or array of shape (n_features,)
    w : array of shape (n_features,), optional
        Starting point (``find_map=True``, default zeros) or expansion point (``find_map=False``).
    find_map : bool
    max_newton : int
    strict : bool

    Returns
    -------
    LaplaceResult

    References
    ----------
    Bishop PRML section 4.5.1 (eqs. 4.142-4.144); MacKay (1992).
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    n, d = X.shape
    yi, C = _labels(y, n, 2)
    yf = yi.astype(np.float64)
    sgn = 2.0 * yf - 1.0
    lam = _prior_precision(prior_precision, d)
    lp = _gaussian_log_prior(lam)

    def ll(w):
        return float(np.sum(log_expit(sgn * (X @ w))))

    def neg_joint(w):
        return -ll(w) - lp(w)

    def neg_grad(w):
        return -(X.T @ (yf - expit(X @ w))) + lam * w

    def neg_hess(w):
        z = X @ w
        wt = expit(z) * expit(-z)  # s (1 - s) without cancellation
        H = X.T @ (X * wt[:, None])
        H[np.diag_indices(d)] += lam
        return H

    w0 = np.zeros(d) if w is None else as_float_array(w, "w", ndim=(1,), dtype=np.float64)
    if w0.shape != (d,):
        raise ShapeMismatchError(f"w must have shape ({d},), got {w0.shape}.")
    return _laplace_core(
        neg_joint, neg_grad, neg_hess, ll, lp, w0,
        find_map=find_map, max_lbfgs=0, max_newton=max_newton, strict=strict, method="laplace/logistic-exact",
    )


def softmax_laplace_evidence(
    X,
    y,
    *,
    prior_precision,
    n_classes: int | None = None,
    W=None,
    find_map: bool = True,
    max_lbfgs: int = 200,
    max_newton: int = 100,
    strict: bool = True,
) -> LaplaceResult:
    """Laplace evidence of softmax (multinomial logistic) regression with a Gaussian prior.

    Parameters ``W`` of shape (n_features, n_classes), flattened row-major into ``w`` (index
    ``j * C + c``); prior ``w ~ N(0, diag(prior_precision)^-1)`` on all ``d C`` entries (proper, so
    the softmax shift invariance is broken and the Hessian is positive definite). The Hessian of the
    negative log likelihood, ``sum_n (diag(p_n) - p_n p_n^T) (x) x_n x_n^T``, is the exact
    Gauss-Newton matrix, exact for the softmax/cross-entropy pair (canonical link). Cost per Hessian:
    ``C(C+1)/2`` products of (d, n) by (n, d).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,)
        Integer labels 0..C-1.
    prior_precision : float or array of shape (n_features * n_classes,)
    n_classes : int, optional
        Default ``max(y) + 1``.
    W : array of shape (n_features, n_classes) or (n_features * n_classes,), optional
        Starting point (default zeros) or, with ``find_map=False``, the expansion point.
    find_map, max_lbfgs, max_newton, strict
        As in :func:`laplace_evidence`.

    Returns
    -------
    LaplaceResult
        ``result.w.reshape(n_features, n_classes)`` is the weight matrix.

    References
    ----------
    Bishop PRML section 4.3.4 (eqs. 4.109-4.110), 4.4 (eq. 4.137).
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    n, d = X.shape
    yi, C = _labels(y, n, n_classes)
    D = d * C
    lam = _prior_precision(prior_precision, D)
    lp = _gaussian_log_prior(lam)
    Y1 = np.zeros((n, C))
    Y1[np.arange(n), yi] = 1.0

    def logits(w):
        return X @ w.reshape(d, C)

    def ll(w):
        Z = logits(w)
        return float(np.sum(Z[np.arange(n), yi]) - np.sum(logsumexp(Z, axis=1)))

    def neg_joint(w):
        return -ll(w) - lp(w)

    def probs(w):
        Z = logits(w)
        Z = Z - Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        return P / P.sum(axis=1, keepdims=True)

    def neg_grad(w):
        return -(X.T @ (Y1 - probs(w))).ravel() + lam * w

    def neg_hess(w):
        P = probs(w)
        H4 = np.empty((d, C, d, C))
        for a in range(C):
            for b in range(a, C):
                wt = P[:, a] * (1.0 - P[:, a]) if a == b else -P[:, a] * P[:, b]
                blk = X.T @ (X * wt[:, None])
                H4[:, a, :, b] = blk
                if b != a:
                    H4[:, b, :, a] = blk.T
        H = H4.reshape(D, D)
        H[np.diag_indices(D)] += lam
        return H

    if W is None:
        w0 = np.zeros(D)
    else:
        w0 = np.asarray(W, dtype=np.float64).reshape(-1)
        if w0.size != D:
            raise ShapeMismatchError(f"W must have {D} = {d} x {C} entries, got {w0.size}.")
        if not np.all(np.isfinite(w0)):
            raise NonFiniteInputError("W contains NaN/inf.")
    return _laplace_core(
        neg_joint, neg_grad, neg_hess, ll, lp, w0,
        find_map=find_map, max_lbfgs=max_lbfgs, max_newton=max_newton, strict=strict,
        method="laplace/softmax-exact-gauss-newton",
    )


# ----------------------------------------------------------------------------------------------
# logistic regression in function space (GP classification), for n_samples << n_features
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class KernelLaplaceResult:
    """Laplace evidence of binary classification with a Gaussian prior on the latent function.

    ``log_evidence = log_likelihood + log_prior_quadratic - 1/2 log_det_B`` (Rasmussen & Williams
    eq. 3.32), where ``f`` is the latent vector at the mode, ``a = K^-1 f`` (for singular ``K``: the
    coefficient with ``f = K a`` that the Newton iteration carries), ``log_prior_quadratic =
    -1/2 a^T f`` and ``B = I + W^1/2 K W^1/2`` with ``W = diag(s (1 - s))``, ``s = sigmoid(f)``.

    Attributes
    ----------
    log_evidence : float
    f : ndarray of shape (n_samples,)
        Latent values (logits) at the mode.
    a : ndarray of shape (n_samples,)
        Dual coefficients, ``f = K a``. For ``K = X X^T / lam`` the weight-space MAP is
        ``w = X^T a / lam``.
    log_likelihood : float
        ``sum_n ln sigmoid((2 y_n - 1) f_n)``.
    log_prior_quadratic : float
        ``-1/2 a^T f`` (equals ``-lam/2 ||w||^2`` in weight space).
    log_det_B : float
        ``ln |I + W^1/2 K W^1/2|`` (float64 Cholesky); equals ``ln |I + X^T W X / lam|``.
    effective_dim : float
        ``sum_i mu_i / (1 + mu_i)``, ``mu_i`` the eigenvalues of ``W^1/2 K W^1/2`` = ``n - tr(B^-1)``
        (MacKay's gamma, the number of well-determined parameters).
    grad_norm : float
        Norm of the function-space gradient ``grad ln p(y|f) - a`` at the mode.
    newton_decrement2 : float
        ``g^T (K^-1 + W)^-1 g`` at the mode, computed without ``K^-1``; it equals the weight-space
        Newton decrement of :func:`logistic_laplace_evidence` when ``K = X X^T / lam``.
    is_map : bool
    n_iter : int
    method : str
    """

    log_evidence: float
    f: np.ndarray
    a: np.ndarray
    log_likelihood: float
    log_prior_quadratic: float
    log_det_B: float
    effective_dim: float
    grad_norm: float
    newton_decrement2: float
    is_map: bool
    n_iter: int
    method: str

    @property
    def log_occam_factor(self) -> float:
        """``log_evidence - log_likelihood`` (MacKay's Occam factor, as in :class:`LaplaceResult`)."""
        return self.log_prior_quadratic - 0.5 * self.log_det_B


def kernel_logistic_laplace_evidence(
    K, y, *, a=None, max_newton: int = 100, strict: bool = True
) -> KernelLaplaceResult:
    """Laplace evidence of binary logistic classification with latent prior ``f ~ N(0, K)``.

    Rasmussen & Williams Algorithm 3.1 (Newton on the mode, with the stable matrix
    ``B = I + W^1/2 K W^1/2``) and eq. 3.32 (the approximate log marginal likelihood). With the
    linear kernel ``K = X X^T / lam`` this is *exactly* the weight-space Laplace evidence of
    :func:`logistic_laplace_evidence` with ``prior_precision=lam`` (same mode ``f = X w``, same
    ``-lam/2 ||w||^2``, and ``ln det(X^T W X + lam I) - d ln lam = ln det B`` by Sylvester's
    determinant identity), at O(n^3) per Newton step instead of O(n d^2 + d^3): the way to evaluate
    a model with more parameters than samples. ``K`` may be singular (``n > d``): ``K^-1`` is never
    formed.

    Parameters
    ----------
    K : array of shape (n_samples, n_samples)
        Symmetric positive semi-definite prior covariance of the latent logits (float64 copy taken).
    y : array of shape (n_samples,)
        Labels in {0, 1}.
    a : array of shape (n_samples,), optional
        Starting dual coefficients (``f = K a``; default zeros). To warm-start a scan over
        ``K = G / lam`` from a previous ``a_prev`` at ``lam_prev``, pass ``a_prev * lam / lam_prev``
        (same ``f``).
    max_newton : int
    strict : bool
        Raise :class:`~kernelgen.errors.ConvergenceError` if the Newton iteration does not reach the
        mode (decrement^2 / 2 <= 1e-12 max(1, |objective|)); otherwise log a warning.

    Returns
    -------
    KernelLaplaceResult

    Raises
    ------
    ShapeMismatchError
        ``K`` not square, or ``y`` / ``a`` of the wrong length.
    InvalidInputError
        ``K`` not symmetric (:func:`kernelgen.numerics.check_symmetric`), labels outside {0, 1}.
    NonFiniteInputError
        NaN/inf in ``K`` or ``a``.
    NotPositiveDefiniteError
        ``B`` fails its Cholesky factorisation (``K`` is not positive semi-definite).
    ConvergenceError
        With ``strict``, the mode was not reached in ``max_newton`` steps.

    References
    ----------
    C. E. Rasmussen and C. K. I. Williams, *Gaussian Processes for Machine Learning*, 2006,
    section 3.4, Algorithms 3.1-3.2, eq. 3.32; Bishop PRML section 4.5.1 (eq. 4.137) for the
    weight-space form; Smith & Le (2018), section 2.
    """
    K = _as_square(K)
    n = K.shape[0]
    check_symmetric(K, name="K")  # kernelgen.numerics: the one symmetry rule
    yi, _ = _labels(y, n, 2)
    yf = yi.astype(np.float64)
    sgn = 2.0 * yf - 1.0
    if a is None:
        a = np.zeros(n)
    else:
        a = as_float_array(a, "a", ndim=(1,), dtype=np.float64).copy()
        if a.shape != (n,):
            raise ShapeMismatchError(f"a must have shape ({n},), got {a.shape}.")
    f = K @ a

    def psi(a_, f_):  # the log joint up to the constant: ln p(y|f) - 1/2 a^T K a
        return float(np.sum(log_expit(sgn * f_))) - 0.5 * float(a_ @ f_)

    def local(f_):
        W = expit(f_) * expit(-f_)  # s (1 - s) without cancellation
        sw = np.sqrt(W)
        B = sw[:, None] * K * sw[None, :]
        B[np.diag_indices(n)] += 1.0
        L = _cholesky_lower(B, "B = I + W^1/2 K W^1/2 (is K positive semi-definite?)")
        return W, sw, L, yf - expit(f_)

    def decrement2(a_, sw, L, grad):
        g = grad - a_  # function-space gradient of psi
        v = K @ g
        u = sw * v
        return float(g @ v - u @ sla.cho_solve((L, True), u, check_finite=False))

    obj = psi(a, f)
    if not math.isfinite(obj):
        raise NonFiniteInputError("the log joint is not finite at the starting point; pick another a.")
    converged = False
    dec2 = math.nan
    prev = math.inf
    it = 0
    for it in range(1, max_newton + 1):
        W, sw, L, grad = local(f)
        dec2 = decrement2(a, sw, L, grad)
        scale = max(1.0, abs(obj))
        if dec2 / 2 <= 1e-12 * scale:
            converged = True
        if dec2 / 2 <= 1e-26 * scale or (converged and dec2 >= prev):
            break  # at rounding level
        prev = dec2
        b = W * f + grad  # R&W Alg. 3.1 line 6
        a_new = b - sw * sla.cho_solve((L, True), sw * (K @ b), check_finite=False)  # lines 7-8
        da = a_new - a
        df = K @ da
        t = 1.0  # backtracking (Boyd & Vandenberghe Alg. 9.5) along the full Newton step
        while True:
            a_try, f_try = a + t * da, f + t * df
            o_try = psi(a_try, f_try)
            if math.isfinite(o_try) and o_try >= obj + 0.25 * t * dec2 - 1e-14 * scale:
                break
            t *= 0.5
            if t < 1e-12:
                break
        if t < 1e-12:
            break
        a, f, obj = a_try, f_try, o_try
    if not converged:
        msg = (
            f"Newton did not reach the mode (decrement^2/2 = {dec2 / 2:.3g} after {it} iterations); raise "
            "max_newton."
        )
        if strict:
            raise ConvergenceError(msg)
        logger.warning(msg)
    W, sw, L, grad = local(f)
    dec2 = decrement2(a, sw, L, grad)
    ll = float(np.sum(log_expit(sgn * f)))
    quad = -0.5 * float(a @ f)
    logdet = _logdet_from_cholesky(L)
    Linv = sla.solve_triangular(L, np.eye(n), lower=True, check_finite=False)
    n_eff = float(n - np.sum(Linv * Linv))  # n - tr(B^-1), tr(B^-1) = ||L^-1||_F^2
    out = ll + quad - 0.5 * logdet
    if not math.isfinite(out):
        raise NonFiniteInputError(f"the Laplace log evidence is not finite ({out}).")
    return KernelLaplaceResult(
        log_evidence=out, f=f, a=a, log_likelihood=ll, log_prior_quadratic=quad, log_det_B=logdet,
        effective_dim=n_eff, grad_norm=float(np.linalg.norm(grad - a)), newton_decrement2=dec2,
        is_map=converged, n_iter=it, method="laplace/kernel-logistic-newton",
    )


def uniform_null_log_evidence(n_samples: int, n_classes: int) -> float:
    """Log evidence of the null model that predicts uniform class probabilities: ``-N ln C``.

    It has no parameters, so its evidence is its likelihood (Smith & Le 2018, section 2).
    """
    if int(n_samples) < 0 or int(n_classes) < 2:
        raise InvalidInputError("need n_samples >= 0 and n_classes >= 2.")
    return -int(n_samples) * math.log(int(n_classes))
