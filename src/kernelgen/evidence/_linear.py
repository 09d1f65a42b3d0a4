"""Exact evidence of Bayesian linear regression and MacKay's re-estimation (private; see
:mod:`kernelgen.evidence`).

:func:`blr_log_evidence` (Bishop PRML eq. 3.86, from a float64 Cholesky factor of
``A = alpha I + beta Phi^T Phi``) and :func:`mackay_evidence` (PRML eqs. 3.91-3.95, one SVD of ``Phi``).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import scipy.linalg as sla

from .._validation import as_float_array, check_same_rows
from ..errors import ConvergenceError
from ._common import LOG_2PI, _cholesky_lower, _logdet_from_cholesky, _positive_scalar

__all__ = [
    "BLREvidence",
    "MacKayResult",
    "blr_log_evidence",
    "mackay_evidence",
]

logger = logging.getLogger(__name__)


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
    >>> # by hand: t ~ N(0, C), C = I/beta + Phi Phi^T/alpha = [[2, 2], [2, 5]], det C = 6,
    >>> # t^T C^-1 t = 5/6: log N = -5/12 - log(6)/2 - log(2 pi) = -3.1504235...
    >>> round(blr_log_evidence(Phi, t, alpha=1.0, beta=1.0).log_evidence, 6)
    -3.150423
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
