"""Exact asymptotic risk formulas for double descent, and simulations in each paper's model.

Formulas (all in closed form or a one-dimensional root; no finite differences):

* :func:`hmrt_ridgeless_risk`, :func:`hmrt_ridge_risk`, :func:`mp_stieltjes` --
  Hastie, Montanari, Rosset & Tibshirani, isotropic features ``x ~ N(0, I_p)``,
  ``y = x^T beta + eps``, ``||beta||^2 = r^2``, ``Var eps = sigma^2``, ``gamma = p / n``;
  excess risk ``E_x (x^T (beta_hat - beta))^2`` (``sigma^2`` not included);
  :func:`hmrt_ridgeless_risk_finite` is its exact expectation at finite ``n, p``.
* :func:`bhx_weak_features_risk` -- Belkin, Hsu & Xu, the learner uses ``p`` of the ``D``
  coordinates; exact *finite-sample* expected risk (it includes ``sigma^2``).
* :func:`mm_chi`, :func:`mm_bias_variance`, :func:`mm_risk` -- Mei & Montanari,
  random-features ridge regression on the sphere of radius ``sqrt(d)``.

Simulations (:func:`simulate_hmrt`, :func:`simulate_bhx`, :func:`simulate_mei_montanari`)
draw data in the paper's own model, fit with :func:`kernelgen.min_norm_solve` (or a ridge
solve), and return the test risk estimated on fresh samples, so that the formulas can be
overlaid on simulations (``scripts/double_descent.py``) and tested (``tests/test_theory.py``).

Numerics. The ridge formula needs ``m'(-lambda)``; it is taken in closed form from the
Marchenko-Pastur quadratic, and :func:`hmrt_ridge_risk` is written in ``L = lambda m(-lambda)``
(bounded in ``(0, 1]``), so that no term overflows or cancels: it is finite for every
``lambda > 0`` down to the smallest subnormal and tends to the ridgeless limit (a central
difference for ``m'`` with step 1e-6 gives 0.4999 instead of 0.7499 at gamma = 2, lambda = 1e-4,
r^2 = 1, sigma^2 = 0.25: NumPy float64, rechecked 2026-12-05 on a 2-core Intel Xeon; the
earlier closed form overflowed below lambda ~ 1e-154). Square roots of sums of squares use
``hypot``, quadratic roots use the cancellation-free form, and 1 - 1/gamma is (gamma - 1)/gamma.
The Mei-Montanari fixed point is solved on the imaginary axis, where it reduces to one
monotone scalar equation (derivation in :func:`mm_chi`), by Brent's method with a purely
relative tolerance; the polynomials E0, E1, E2 are evaluated exactly in rational arithmetic,
and a result whose estimated relative error exceeds 1e-6 (only near psi1 = psi2 at tiny ridge)
is refused with :class:`~kernelgen.errors.InvalidInputError` instead of being returned.
NaN is never returned; ``inf`` is returned only where the exact quantity diverges
(gamma = 1, n - 1 <= p <= n + 1, psi1 = psi2 without ridge), as documented per function.

References
----------
.. [HMRT] T. Hastie, A. Montanari, S. Rosset, R. Tibshirani. Surprises in high-dimensional
   ridgeless least squares interpolation. Ann. Statist. 50(2), 2022 (arXiv:1903.08560),
   Theorem 1 (ridgeless, isotropic) and Theorem 5 / Corollary 5 (ridge, isotropic).
.. [BHX] M. Belkin, D. Hsu, J. Xu. Two models of double descent for weak features.
   SIAM J. Math. Data Sci. 2(4), 2020 (arXiv:1903.07571), Theorem 1.
.. [MM] S. Mei, A. Montanari. The generalization error of random features regression:
   precise asymptotics and double descent curve. Comm. Pure Appl. Math. 75(4), 2022
   (arXiv:1908.05355), Definition 1, Theorem 2 and Theorem 3 (ridgeless limit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from .errors import InvalidInputError
from .solvers import min_norm_solve

__all__ = [
    "mp_stieltjes",
    "hmrt_ridgeless_risk",
    "hmrt_ridgeless_risk_finite",
    "hmrt_ridge_risk",
    "hmrt_optimal_ridge",
    "bhx_weak_features_risk",
    "relu_moments",
    "mm_chi",
    "mm_bias_variance",
    "mm_risk",
    "SimulationResult",
    "simulate_hmrt",
    "simulate_bhx",
    "simulate_mei_montanari",
]

log = logging.getLogger(__name__)


def _positive(x, name):
    x = float(x)
    if not np.isfinite(x) or x <= 0:
        raise InvalidInputError(f"{name} must be a positive finite number, got {x}.")
    return x


def _nonneg(x, name):
    x = float(x)
    if not np.isfinite(x) or x < 0:
        raise InvalidInputError(f"{name} must be a non-negative finite number, got {x}.")
    return x


# ---------------------------------------------------------------------------------------
# Hastie, Montanari, Rosset, Tibshirani: isotropic linear regression
# ---------------------------------------------------------------------------------------


def _mp_parts(lam: float, gamma: float):
    """Overflow- and cancellation-free pieces of the Marchenko-Pastur transform at ``z = -lam``.

    Returns ``(a, sqrt_d, lm)`` with ``a = 1 - gamma + lam``, ``sqrt_d = sqrt(a^2 + 4 gamma lam)``
    (by ``hypot``, so ``a^2`` never overflows) and ``lm = lam m(-lam)``, which lies in ``(0, 1]``
    for every ``lam > 0`` (it is ``int lam / (s + lam) dmu(s)``). The root is taken in the
    form free of cancellation (the product of the two roots of the quadratic is
    ``-1 / (gamma lam)``), and every sum is halved first so that nothing overflows for
    ``lam`` or ``gamma`` up to the largest float.
    """
    a = 1.0 - gamma + lam
    sqrt_d = float(np.hypot(a, 2.0 * np.sqrt(gamma) * np.sqrt(lam)))
    if a >= 0:
        lm = lam / (0.5 * sqrt_d + 0.5 * a)  # lam m = 2 lam / (sqrt(D) + a)
    else:
        lm = (0.5 * sqrt_d - 0.5 * a) / gamma  # lam m = (sqrt(D) - a) / (2 gamma)
    return a, sqrt_d, lm


def mp_stieltjes(lam, gamma, *, derivative: bool = False):
    """Marchenko-Pastur Stieltjes transform ``m(-lambda)`` (and ``m'(-lambda)``).

    ``m(z) = int dmu(s) / (s - z)`` for the Marchenko-Pastur law of ``X^T X / n`` with
    aspect ratio ``gamma = p / n`` and identity covariance (for ``gamma > 1`` it has an atom
    of mass ``1 - 1/gamma`` at 0). It solves ``gamma z m^2 - (1 - gamma - z) m + 1 = 0``; at
    ``z = -lambda``

    ``m = [-(1 - gamma + lambda) + sqrt(D)] / (2 gamma lambda)``,
    ``D = (1 - gamma + lambda)^2 + 4 gamma lambda``,

    and implicit differentiation of the quadratic gives ``m' = m (1 + gamma m) / sqrt(D)``.
    Both are evaluated without cancellation (see ``_mp_parts``).

    Parameters
    ----------
    lam : float
        Ridge ``lambda > 0``.
    gamma : float
        Aspect ratio ``p / n > 0``.
    derivative : bool
        Also return ``m'(-lambda) = dm/dz`` at ``z = -lambda``.

    Returns
    -------
    m : float
    mprime : float, only when ``derivative=True``

    Raises
    ------
    InvalidInputError
        If ``lam`` or ``gamma`` is not positive and finite, or if the value itself exceeds
        the float64 range: for ``gamma > 1``, ``m ~ (1 - 1/gamma) / lambda`` and
        ``m' ~ (1 - 1/gamma) / lambda^2``, so ``m'`` is not representable below
        ``lambda ~ 1e-154``. The risk :func:`hmrt_ridge_risk` does not need ``m`` or ``m'``
        themselves and is finite for every ``lambda > 0``.

    References
    ----------
    [HMRT] section 5 (Marchenko-Pastur law); the quadratic is their eq. for ``m(z)``.
    """
    lam = _positive(lam, "lam")
    gamma = _positive(gamma, "gamma")
    a, sqrt_d, lm = _mp_parts(lam, gamma)
    with np.errstate(over="ignore"):
        m = 1.0 / (0.5 * sqrt_d + 0.5 * a) if a >= 0 else lm / lam
        # m (1 + gamma m) / sqrt(D) with gamma / sqrt(D) <= 1-ish formed first (no gamma m overflow)
        mprime = m * (1.0 / sqrt_d + (gamma / sqrt_d) * m) if derivative else 0.0
    if not (np.isfinite(m) and np.isfinite(mprime)):
        raise InvalidInputError(
            f"m(-lambda) or m'(-lambda) at lambda={lam:g}, gamma={gamma:g} exceeds the float64 range "
            "(m ~ 1/lambda, m' ~ 1/lambda^2 for gamma > 1); hmrt_ridge_risk is finite for all lambda > 0.")
    return (float(m), float(mprime)) if derivative else float(m)


def hmrt_ridgeless_risk(gamma, *, r2: float = 1.0, sigma2: float = 1.0):
    """Excess risk of the minimum-norm least-squares estimator ``X^+ y``, isotropic model.

    ``gamma < 1``: ``R = sigma^2 gamma / (1 - gamma)``;
    ``gamma > 1``: ``R = r^2 (1 - 1/gamma) + sigma^2 / (gamma - 1)``; ``gamma = 1``: ``inf``
    (the limit diverges there). ``1 - 1/gamma`` is evaluated as ``(gamma - 1) / gamma`` (no
    cancellation near ``gamma = 1``).

    Parameters
    ----------
    gamma : float or array_like
        ``p / n``.
    r2, sigma2 : float
        Signal ``||beta||^2`` and noise variance.

    Returns
    -------
    risk : float or ndarray, shaped like ``gamma``
        ``E_x (x^T (beta_hat - beta))^2`` in the proportional limit (noise not included).

    See Also
    --------
    hmrt_ridgeless_risk_finite : the exact expectation at finite ``n, p``.

    References
    ----------
    [HMRT] Theorem 1 (isotropic features), eq. (5)-(6).
    """
    r2 = _nonneg(r2, "r2")
    sigma2 = _nonneg(sigma2, "sigma2")
    g = np.asarray(gamma, dtype=np.float64)
    if np.any(~np.isfinite(g)) or np.any(g <= 0):
        raise InvalidInputError("gamma must be positive and finite.")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        under = sigma2 * (g / (1.0 - g))
        over = r2 * ((g - 1.0) / g) + sigma2 / (g - 1.0)
    out = np.where(g < 1, under, np.where(g > 1, over, np.inf))
    return float(out) if out.ndim == 0 else out


def hmrt_ridgeless_risk_finite(n, p, *, r2: float = 1.0, sigma2: float = 1.0):
    """Exact finite-sample expected excess risk of ``X^+ y`` in the isotropic Gaussian model.

    Model as in :func:`hmrt_ridgeless_risk` (``X`` has i.i.d. ``N(0, 1)`` entries, ``n`` rows,
    ``p`` columns), and ``beta`` either fixed with ``||beta||^2 = r^2`` or drawn independently
    of ``X`` (e.g. uniform on that sphere). The expectation is over ``X`` and the noise:

    ``p <= n - 2``: ``E = sigma^2 p / (n - p - 1)``;
    ``p >= n + 2``: ``E = r^2 (1 - n/p) + sigma^2 n / (p - n - 1)``;
    ``inf`` for ``n - 1 <= p <= n + 1`` (the expectation diverges).

    Derivation. For ``p < n``, ``beta_hat - beta = (X^T X)^{-1} X^T eps`` and
    ``E ||.||^2 = sigma^2 tr E (X^T X)^{-1} = sigma^2 p / (n - p - 1)``, the mean of the inverse
    Wishart ``W_p(n, I)^{-1}`` being ``I / (n - p - 1)``. For ``p > n``,
    ``beta_hat - beta = -(I - P) beta + X^T (X X^T)^{-1} eps`` with ``P`` the projection on the
    row space of ``X``, a uniformly distributed ``n``-dimensional subspace (rotation
    invariance), so ``E ||(I - P) beta||^2 = r^2 (1 - n/p)``; the two parts are orthogonal, and
    ``E tr (X X^T)^{-1} = n / (p - n - 1)`` (inverse Wishart ``W_n(p, I)``). This is the
    ``||beta_Tc|| = 0`` case of :func:`bhx_weak_features_risk` minus the ``sigma^2`` that
    function includes; as ``n, p -> inf`` with ``p/n -> gamma`` it tends to
    :func:`hmrt_ridgeless_risk`, the gap being ``O(1/n)``.

    Parameters
    ----------
    n, p : int or array_like of int
        Training samples and features (``>= 1``); broadcast against each other.
    r2, sigma2 : float
        ``||beta||^2`` and noise variance.

    Returns
    -------
    risk : float or ndarray
        ``E ||beta_hat - beta||^2`` (= ``E_x (x^T (beta_hat - beta))^2``; noise not included).

    Raises
    ------
    InvalidInputError
        If ``n`` or ``p`` is below 1, or ``r2``, ``sigma2`` is negative or not finite.

    References
    ----------
    [HMRT] section 2 and Theorem 1 (the same decomposition, in the limit).
    [BHX] Theorem 1 (exact finite-sample version, from which this is the ``D = p`` case).
    R. J. Muirhead, Aspects of Multivariate Statistical Theory, Wiley 1982, Theorem 3.2.12
    (``E W^{-1} = Sigma^{-1} / (m - p - 1)`` for ``W ~ W_p(m, Sigma)``).
    """
    r2 = _nonneg(r2, "r2")
    sigma2 = _nonneg(sigma2, "sigma2")
    nn, pp = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(p, dtype=np.float64))
    if np.any(~np.isfinite(nn)) or np.any(~np.isfinite(pp)) or np.any(nn < 1) or np.any(pp < 1):
        raise InvalidInputError("n and p must be finite and >= 1.")
    with np.errstate(divide="ignore", invalid="ignore"):
        under = sigma2 * (pp / (nn - pp - 1.0))
        over = r2 * ((pp - nn) / pp) + sigma2 * (nn / (pp - nn - 1.0))
    out = np.where(pp <= nn - 2, under, np.where(pp >= nn + 2, over, np.inf))
    return float(out) if out.ndim == 0 else out


def hmrt_ridge_risk(lam, gamma, *, r2: float = 1.0, sigma2: float = 1.0) -> float:
    """Excess risk of ridge regression ``(X^T X/n + lambda I)^{-1} X^T y / n``, isotropic model.

    ``R(lambda) = r^2 lambda^2 m'(-lambda) + sigma^2 gamma [m(-lambda) - lambda m'(-lambda)]``,
    with ``m`` the Marchenko-Pastur Stieltjes transform (:func:`mp_stieltjes`). With
    ``L = lambda m(-lambda)`` (in ``(0, 1]``) and ``m' = m (1 + gamma m) / sqrt(D)``, the terms are
    evaluated as

    ``lambda^2 m' = L (lambda + gamma L) / sqrt(D)`` and
    ``m - lambda m' = m (gamma L + 1 - gamma) / sqrt(D)``,

    and for ``gamma > 1``, ``m (gamma L + 1 - gamma) = 2 L / (sqrt(D) + gamma - 1 + lambda)``
    (since ``D - (1 - gamma - lambda)^2 = 4 lambda``). Nothing overflows or cancels, so the
    value is finite for every ``lambda > 0`` (down to the smallest subnormal) and tends to
    :func:`hmrt_ridgeless_risk` as ``lambda -> 0+`` (at ``gamma = 1`` it grows like
    ``sigma^2 / (2 sqrt(lambda))``).

    Parameters
    ----------
    lam : float
        Ridge ``lambda > 0`` (for ``lambda = 0`` use :func:`hmrt_ridgeless_risk`).
    gamma : float
        ``p / n``.
    r2, sigma2 : float
        Signal ``||beta||^2`` and noise variance.

    Returns
    -------
    risk : float
        The excess risk ``E (x^T (beta_hat_lambda - beta))^2`` (the test point's noise not included).

    Raises
    ------
    InvalidInputError
        If ``lam`` or ``gamma`` is not positive and finite, or ``r2``/``sigma2`` negative.

    References
    ----------
    [HMRT] Theorem 5 and Corollary 5 (isotropic ridge), with ``lambda^* = sigma^2 gamma / r^2``.
    """
    r2 = _nonneg(r2, "r2")
    sigma2 = _nonneg(sigma2, "sigma2")
    lam = _positive(lam, "lam")
    gamma = _positive(gamma, "gamma")
    a, sqrt_d, lm = _mp_parts(lam, gamma)
    bias = lm * ((lam + gamma * lm) / sqrt_d)  # lambda^2 m'
    if gamma > 1:
        m_g = lm / (0.5 * sqrt_d + 0.5 * (gamma - 1.0) + 0.5 * lam)  # m (gamma L + 1 - gamma)
    else:  # a = 1 - gamma + lam > 0: m = 2 / (sqrt(D) + a), both factors positive
        m_g = (gamma * lm + (1.0 - gamma)) / (0.5 * sqrt_d + 0.5 * a)
    var = gamma * (m_g / sqrt_d)  # gamma (m - lambda m')
    risk = r2 * bias + sigma2 * var
    if not np.isfinite(risk):  # not reachable for finite inputs; never return NaN/inf
        raise InvalidInputError(f"hmrt_ridge_risk is not finite at lam={lam!r}, gamma={gamma!r}.")
    return float(risk)


def hmrt_optimal_ridge(gamma, *, r2: float = 1.0, sigma2: float = 1.0) -> float:
    """Risk-minimising ridge ``lambda^* = sigma^2 gamma / r^2`` ([HMRT] Corollary 5)."""
    return _nonneg(sigma2, "sigma2") * _positive(gamma, "gamma") / _positive(r2, "r2")


# ---------------------------------------------------------------------------------------
# Belkin, Hsu, Xu: weak features
# ---------------------------------------------------------------------------------------


def bhx_weak_features_risk(p, n, *, norm2_in: float, norm2_out: float, sigma2: float):
    """Expected risk of min-norm least squares on ``p`` of the ``D`` Gaussian features.

    Model: ``x ~ N(0, I_D)``, ``y = x^T beta + sigma eps``; the learner regresses on the
    coordinates ``T`` (``|T| = p``) only. With ``norm2_in = ||beta_T||^2`` and
    ``norm2_out = ||beta_{T^c}||^2`` (the unused part acts as extra noise):

    ``p <= n - 2``: ``(||beta_Tc||^2 + sigma^2) (1 + p / (n - p - 1))``;
    ``p >= n + 2``: ``||beta_T||^2 (1 - n/p) + (||beta_Tc||^2 + sigma^2) (1 + n / (p - n - 1))``;
    ``inf`` for ``n - 1 <= p <= n + 1`` (the expectation diverges).

    These are exact expectations at finite ``n, p`` (inverse-Wishart mean and a uniformly
    random projection), not only limits. The risk includes ``sigma^2``.

    Parameters
    ----------
    p : int or array_like of int
        Features used by the learner.
    n : int
        Training samples.
    norm2_in, norm2_out, sigma2 : float

    Returns
    -------
    risk : float or ndarray shaped like ``p``

    References
    ----------
    [BHX] Theorem 1 (Gaussian design, prescient selection of ``T`` not needed).
    """
    n = int(n)
    if n < 1:
        raise InvalidInputError(f"n must be a positive integer, got {n}.")
    a = _nonneg(norm2_in, "norm2_in")
    b = _nonneg(norm2_out, "norm2_out") + _nonneg(sigma2, "sigma2")
    pp = np.asarray(p, dtype=np.float64)
    if np.any(pp < 1):
        raise InvalidInputError("p must be >= 1.")
    with np.errstate(divide="ignore", invalid="ignore"):
        under = b * (1.0 + pp / (n - pp - 1.0))
        over = a * ((pp - n) / pp) + b * (1.0 + n / (pp - n - 1.0))  # 1 - n/p without cancellation
    out = np.where(pp <= n - 2, under, np.where(pp >= n + 2, over, np.inf))
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------
# Mei & Montanari: random-features regression on the sphere
# ---------------------------------------------------------------------------------------


def relu_moments(*, centred: bool = True) -> dict:
    """Gaussian moments of the ReLU activation, for the Mei-Montanari constants.

    ``mu0 = E sigma(G)``, ``mu1 = E G sigma(G)``, ``mu_star^2 = E sigma(G)^2 - mu0^2 - mu1^2``
    and ``zeta = mu1 / mu_star`` for ``G ~ N(0, 1)`` and ``sigma(x) = max(x, 0)`` (minus
    ``1/sqrt(2 pi)`` when ``centred``). Centred ReLU: ``zeta = 0.5 / sqrt(1/4 - 1/(2 pi))``
    = 1.6589.

    Returns
    -------
    dict with keys ``mu0``, ``mu1``, ``mu_star2``, ``zeta``, ``shift`` (subtracted constant).
    """
    shift = 1.0 / np.sqrt(2.0 * np.pi) if centred else 0.0
    mu0 = 1.0 / np.sqrt(2.0 * np.pi) - shift
    mu1 = 0.5
    second = 0.5 - 2.0 * shift / np.sqrt(2.0 * np.pi) + shift**2  # E (relu(G) - shift)^2
    mu_star2 = second - mu0**2 - mu1**2
    return {"mu0": mu0, "mu1": mu1, "mu_star2": mu_star2, "zeta": mu1 / np.sqrt(mu_star2), "shift": shift}


def mm_chi(psi1, psi2, zeta, lam_bar: float = 0.0) -> float:
    """``chi = nu1 nu2`` of the Mei-Montanari fixed point at ``xi = i sqrt(psi1 psi2 lam_bar)``.

    On the imaginary axis put ``xi = i s`` and ``nu_k = i t_k`` with ``t_k > 0``; the fixed
    point ``nu1 = psi1 (-xi - nu2 - zeta^2 nu2 / (1 - zeta^2 nu1 nu2))^{-1}`` (and its mirror)
    becomes ``s t1 + c(u) u = psi1``, ``s t2 + c(u) u = psi2`` with ``u = t1 t2 = -chi`` and
    ``c(u) = 1 + zeta^2 / (1 + zeta^2 u)``. Eliminating ``t1, t2``:

    ``s^2 u = (psi1 - c(u) u)(psi2 - c(u) u)``,  ``0 < u``, ``c(u) u < min(psi1, psi2)``,

    whose left side increases and right side decreases in ``u``: one root, found by Brent's
    method. At ``lam_bar = 0`` the root is ``c(u) u = psi = min(psi1, psi2)``, i.e. the
    closed form ``chi = -[(psi zeta^2 - zeta^2 - 1) + sqrt((psi zeta^2 - zeta^2 - 1)^2
    + 4 psi zeta^2)] / (2 zeta^2)`` ([MM] Theorem 3).

    Parameters
    ----------
    psi1, psi2 : float
        ``N / d`` and ``n / d``.
    zeta : float
        ``mu1 / mu_star`` of the activation (:func:`relu_moments`).
    lam_bar : float
        ``lambda / mu_star^2 >= 0``.

    The scalar equation is solved divided by ``psi1 psi2`` (``lam_bar u = (1 - w/psi1)(1 - w/psi2)``,
    ``w = c(u) u``), on ``(0, min(u0, 1/lam_bar))``, with a purely relative tolerance, so that it
    stays finite and accurate for ``lam_bar`` from 1e-300 to 1e300 and ``psi`` from 1e-8 to 1e8.

    Returns
    -------
    chi : float (negative)

    Raises
    ------
    InvalidInputError
        If an argument is not positive (``lam_bar``: non-negative) and finite, or ``psi zeta^2``
        lies outside the float64 range.

    References
    ----------
    [MM] Definition 1 (eq. 15-16) and Theorem 3 (ridgeless closed form of chi).
    """
    return -_mm_u(psi1, psi2, zeta, lam_bar)[0]


def _mm_u(psi1, psi2, zeta, lam_bar):
    """``u = -chi > 0`` and an estimate of its relative rounding error (see :func:`mm_chi`)."""
    psi1 = _positive(psi1, "psi1")
    psi2 = _positive(psi2, "psi2")
    zeta = _positive(zeta, "zeta")
    lam_bar = _nonneg(lam_bar, "lam_bar")
    eps = np.finfo(float).eps
    z2 = zeta * zeta
    psi = min(psi1, psi2)
    q = psi * z2 - z2 - 1.0
    # Ridgeless root of z2 u^2 - q u - psi = 0 (c(u) u = psi); hypot avoids q^2 overflow and,
    # for q < 0 (small psi), the product of the roots (-psi / z2) avoids cancellation in q + sqrt.
    sq = float(np.hypot(q, 2.0 * zeta * np.sqrt(psi)))
    u0 = (q + sq) / (2.0 * z2) if q >= 0 else 2.0 * psi / (sq - q)
    if not (np.isfinite(u0) and u0 > 0):
        raise InvalidInputError(f"mm_chi: psi={psi:g}, zeta={zeta:g} are outside the float64 range of the formula.")
    if lam_bar == 0.0:
        return float(u0), 8 * eps

    def cu(u):  # c(u) u = u + z2 u / (1 + z2 u), finite also when z2 u overflows or is 0
        zu = z2 * u
        return u + (0.0 if zu == 0.0 else 1.0 / (1.0 + 1.0 / zu))

    def f(u):  # (s^2 u - (psi1 - w)(psi2 - w)) / (psi1 psi2): no product of large psi's
        w = cu(u)
        return lam_bar * u - (1.0 - w / psi1) * (1.0 - w / psi2)

    # f(0) = -1 < 0; f > 0 at u0 (c(u) u increasing) and at 1/lam_bar: root in (0, min(u0, 1/lam_bar)).
    hi = min(u0, 1.0 / lam_bar)
    if f(hi) <= 0.0:  # the root equals hi to rounding (lam_bar -> 0 or lam_bar -> inf)
        u = hi
    else:
        # Relative tolerance only (xtol at the smallest normal float): roots near 1e-300 stay exact.
        u = optimize.brentq(f, 0.0, hi, xtol=np.finfo(float).tiny, rtol=4 * eps, maxiter=2000)
    # Error of the root: rounding in f (~ 4 eps (1 + lam_bar u)) divided by f'(u), plus Brent's rtol.
    w = cu(u)
    dw = 1.0 + z2 / (1.0 + z2 * u) ** 2
    fprime = lam_bar + dw * ((1.0 - w / psi2) / psi1 + (1.0 - w / psi1) / psi2)
    rel = 8 * eps + (4 * eps * (1.0 + lam_bar * u) / fprime / u if fprime > 0 else np.inf)
    return float(u), float(rel)


def mm_bias_variance(psi1, psi2, zeta, lam_bar: float = 0.0) -> tuple[float, float]:
    """Mei-Montanari bias ``B = E1/E0`` and variance ``V = E2/E0`` coefficients.

    Parameters
    ----------
    psi1, psi2 : float
        ``N / d`` and ``n / d``.
    zeta : float
        ``mu1 / mu_star``.
    lam_bar : float
        ``lambda / mu_star^2``; 0 gives the ridgeless (min-norm) limit.

    Returns
    -------
    B, V : float
        Check values (computed outside this package from [MM] Theorem 2, tested in
        ``tests/test_theory.py``): ``psi = (3, 2), zeta = 1`` -> ``chi = -sqrt(2)``, ``B = 1.0355,
        V = 2.2071``.
        Limits (tested): as ``psi1 -> inf``, ``B`` and ``V`` tend to :func:`hmrt_ridge_risk` with
        ``gamma = 1/psi2``, ``lambda = (1 + psi2 lam_bar) / (psi2 zeta^2)`` and ``(r2, sigma2) =
        (1, 0)``, ``(0, 1)``; ridgeless, as ``psi2 -> inf``, ``B -> lambda m(-lambda)`` with
        ``gamma = 1/psi1``, ``lambda = 1/(zeta^2 psi1)`` and ``V -> 0``; both gaps are ``O(1/psi)``.

    Raises
    ------
    InvalidInputError
        On invalid arguments, at a divergence (``E0 = 0``), or when the estimated relative error
        of ``B`` or ``V`` (error of ``chi`` times the conditioning of ``E1/E0``, ``E2/E0``) exceeds
        1e-6, which happens only near ``psi1 = psi2`` with ``lam_bar`` tiny (e.g. ``psi1 = psi2 = 3``,
        ``lam_bar = 1e-12``) or ``|psi1 - psi2| / psi < ~1e-9`` without ridge.

    References
    ----------
    [MM] Definition 1, eq. (17)-(19): E0, E1, E2 polynomials in ``chi``.
    """
    u, rel_u = _mm_u(psi1, psi2, zeta, lam_bar)
    # The polynomials are evaluated in exact rational arithmetic on the float inputs (each
    # float is a rational number): no intermediate overflow (chi^5, psi1 psi2 chi^3 at large
    # psi), no cancellation among the terms of E0, and B, V are the correctly rounded ratios for
    # this chi. What is left is the error of chi itself, amplified by the conditioning
    # |chi d log(E1/E0)/d chi| (large near the interpolation threshold psi1 = psi2 at small
    # lam_bar); that product is estimated and a result worse than 1e-6 relative is refused.
    x, z2 = -Fraction(u), Fraction(float(zeta)) ** 2
    p1, p2 = Fraction(float(psi1)), Fraction(float(psi2))
    z4, z6 = z2 * z2, z2 * z2 * z2
    # Coefficients of chi^5 ... chi^0 ([MM] eq. (17)-(19), grouped by powers of chi).
    c0 = [-z6, 3 * z4, (p1 - 1) * (p2 - 1) * z6 - 2 * z4 - 3 * z2, (p1 + p2 - 3 * p1 * p2 + 1) * z4 + 2 * z2 + 1,
          3 * p1 * p2 * z2, -p1 * p2]
    c1 = [0, 0, p2 * z4, -p2 * z2, p1 * p2 * z2, -p1 * p2]
    c2 = [z6, -3 * z4, (p1 - 1) * z6 + 2 * z4 + 3 * z2, -(p1 + 1) * z4 - 2 * z2 - 1, 0, 0]

    def horner(c):  # value and d/dchi, exact
        v, dv = Fraction(0), Fraction(0)
        for a in c:
            dv = dv * x + v
            v = v * x + a
        return v, dv

    (e0, d0), (e1, d1), (e2, d2) = horner(c0), horner(c1), horner(c2)
    if e0 == 0:
        raise InvalidInputError(
            f"E0 = 0 at psi1={psi1}, psi2={psi2}, lam_bar={lam_bar}: the risk diverges (interpolation "
            "threshold psi1 = psi2 without ridge, or lam_bar below float resolution there).")
    cond = max(float(abs(x * (d1 * e0 - d0 * e1) / (e1 * e0))) if e1 != 0 else 0.0,
               float(abs(x * (d2 * e0 - d0 * e2) / (e2 * e0))) if e2 != 0 else 0.0)
    if not cond * rel_u <= 1e-6:
        raise InvalidInputError(
            f"mm_bias_variance at psi1={psi1}, psi2={psi2}, zeta={zeta}, lam_bar={lam_bar} is ill-conditioned: "
            f"estimated relative error {cond * rel_u:.1e} > 1e-6 (near psi1 = psi2 with lam_bar this small, "
            "chi cannot be resolved in float64).")
    return float(e1 / e0), float(e2 / e0)


def mm_risk(psi1, psi2, zeta, *, lam_bar: float = 0.0, F1_sq: float = 1.0, F_star_sq: float = 0.0,
            tau2: float = 0.0) -> float:
    """Mei-Montanari test risk ``R = F1^2 B + (tau^2 + F*^2) V + F*^2``.

    The risk is ``E_x (f(x) - f_hat(x))^2`` (the label noise ``tau^2`` of the test point is
    not included); ``psi1 = psi2`` with ``lam_bar = 0`` gives ``inf``.

    Parameters
    ----------
    psi1, psi2, zeta, lam_bar : float
        See :func:`mm_bias_variance`.
    F1_sq, F_star_sq, tau2 : float
        Linear-part energy ``||beta_1||^2``, nonlinear-part energy, noise variance.

    Returns
    -------
    risk : float
        ``E_x (f(x) - f_hat(x))^2``; ``inf`` at ``psi1 = psi2`` without ridge.

    Raises
    ------
    InvalidInputError
        As :func:`mm_bias_variance`.

    References
    ----------
    [MM] Theorem 2, eq. (20).
    """
    if lam_bar == 0.0 and float(psi1) == float(psi2):
        return float("inf")
    b, v = mm_bias_variance(psi1, psi2, zeta, lam_bar)
    return float(F1_sq * b + (tau2 + F_star_sq) * v + F_star_sq)


# ---------------------------------------------------------------------------------------
# Simulations in each paper's model
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationResult:
    """Risk estimates over seeds.

    Attributes
    ----------
    risks : ndarray of shape (n_seeds,)
        One test-risk estimate per seed.
    mean, std : float
        Mean and standard deviation (ddof=1 when more than one seed) over seeds.
    ranks : ndarray of shape (n_seeds,)
        Numerical rank reported by the min-norm solve (``-1`` for ridge solves).
    """

    risks: np.ndarray
    mean: float
    std: float
    ranks: np.ndarray


def _summarise(risks, ranks) -> SimulationResult:
    risks = np.asarray(risks, dtype=np.float64)
    std = float(risks.std(ddof=1)) if risks.size > 1 else 0.0
    return SimulationResult(risks, float(risks.mean()), std, np.asarray(ranks, dtype=np.int64))


def _min_norm(A, y):
    # Simulation sizes (d ~ 100-1000) run faster on one BLAS thread than on a threaded
    # OpenBLAS, which is pathologically slow on small matrices when the machine is loaded.
    with threadpool_limits(limits=1 if max(A.shape) < 4096 else None, user_api="blas"):
        sol = min_norm_solve(A, y)
    return sol.coef, int(sol.rank)


def _ridge_solve(G, b):
    """``G^{-1} b`` for a small SPD ridge system, on one BLAS thread (see :func:`_min_norm`)."""
    with threadpool_limits(limits=1 if G.shape[0] < 4096 else None, user_api="blas"):
        return np.linalg.solve(G, b)


def _seeds(seeds):
    seeds = [int(s) for s in np.atleast_1d(seeds)]
    if not seeds:
        raise InvalidInputError("pass at least one seed.")
    return seeds


def simulate_hmrt(n: int, p: int, *, r2: float = 1.0, sigma2: float = 1.0, lam: float = 0.0,
                  seeds=(0,)) -> SimulationResult:
    """Simulate the [HMRT] isotropic model and estimate the excess risk of ``beta_hat``.

    ``x ~ N(0, I_p)``, ``beta`` uniform on the sphere of radius ``sqrt(r2)``, ``y = x^T beta
    + sigma eps``. ``lam = 0``: ``beta_hat = X^+ y`` (:func:`kernelgen.min_norm_solve`);
    ``lam > 0``: ``(X^T X / n + lam I)^{-1} X^T y / n``. Because ``x`` is isotropic the excess
    risk equals ``||beta_hat - beta||^2`` exactly: no test set is drawn and the estimate
    has no test-sampling noise.

    Returns
    -------
    SimulationResult
    """
    risks, ranks = [], []
    for seed in _seeds(seeds):
        rng = np.random.default_rng(seed)
        beta = rng.standard_normal(p)
        beta *= np.sqrt(r2) / np.linalg.norm(beta)
        X = rng.standard_normal((n, p))
        y = X @ beta + np.sqrt(sigma2) * rng.standard_normal(n)
        if lam == 0.0:
            b, rank = _min_norm(X, y)
        else:
            b = _ridge_solve(X.T @ X / n + lam * np.eye(p), X.T @ y / n)
            rank = -1
        risks.append(float(np.sum((b - beta) ** 2)))  # E_x (x^T(b - beta))^2, x ~ N(0, I)
        ranks.append(rank)
    return _summarise(risks, ranks)


def simulate_bhx(n: int, p: int, D: int, *, norm2_in: float, norm2_out: float, sigma2: float,
                 seeds=(0,)) -> SimulationResult:
    """Simulate the [BHX] weak-features model: min-norm regression on the first ``p`` of ``D``.

    ``beta_T`` (first ``p`` coordinates) has norm ``sqrt(norm2_in)`` and ``beta_Tc`` norm
    ``sqrt(norm2_out)``, directions uniform; ``y = x^T beta + sigma eps`` with ``x ~ N(0, I_D)``.
    The risk ``E (y - x_T^T beta_hat)^2 = ||beta_hat - beta_T||^2 + ||beta_Tc||^2 + sigma^2`` is
    computed exactly given the fit (isotropic design), matching what
    :func:`bhx_weak_features_risk` averages.

    Returns
    -------
    SimulationResult
    """
    if not 1 <= p <= D:
        raise InvalidInputError(f"need 1 <= p <= D, got p={p}, D={D}.")
    risks, ranks = [], []
    for seed in _seeds(seeds):
        rng = np.random.default_rng(seed)
        b_in = rng.standard_normal(p)
        b_in *= np.sqrt(norm2_in) / np.linalg.norm(b_in)
        b_out = rng.standard_normal(D - p) if D > p else np.zeros(0)
        if D > p and norm2_out > 0:
            b_out *= np.sqrt(norm2_out) / np.linalg.norm(b_out)
        else:
            b_out[:] = 0.0
        X = rng.standard_normal((n, D))
        y = X[:, :p] @ b_in + X[:, p:] @ b_out + np.sqrt(sigma2) * rng.standard_normal(n)
        b, rank = _min_norm(X[:, :p], y)
        risks.append(float(np.sum((b - b_in) ** 2) + norm2_out + sigma2))
        ranks.append(rank)
    return _summarise(risks, ranks)


def _sphere(rng, m, d):
    """``m`` points uniform on the sphere of radius ``sqrt(d)`` in ``R^d``."""
    Z = rng.standard_normal((m, d))
    Z *= np.sqrt(d) / np.linalg.norm(Z, axis=1, keepdims=True)
    return Z


def simulate_mei_montanari(d: int, N: int, n: int, *, F1_sq: float = 1.0, tau2: float = 0.0,
                           lam: float = 0.0, seeds=(0,), n_test: int = 4000,
                           centred_relu: bool = True) -> SimulationResult:
    """Simulate [MM] random-features regression with (centred) ReLU on the sphere.

    ``x_i, theta_j`` uniform on the sphere of radius ``sqrt(d)``; features
    ``sigma(<theta_j, x>/sqrt(d))``; target ``f(x) = <beta_1, x>`` with ``||beta_1||^2 = F1_sq``
    (so ``F*^2 = 0``), labels ``y = f(x) + tau eps``. ``lam = 0``: min-norm coefficients
    ``a = Phi^+ y`` (:func:`kernelgen.min_norm_solve`); ``lam > 0``: the ridge problem
    ``min (1/n)||y - Phi a||^2 + (N lam / d)||a||^2``. The risk ``E_x (f(x) - f_hat(x))^2`` is
    estimated on ``n_test`` fresh sphere points (noise-free targets).

    Returns
    -------
    SimulationResult
    """
    shift = relu_moments(centred=centred_relu)["shift"]
    risks, ranks = [], []
    for seed in _seeds(seeds):
        rng = np.random.default_rng(seed)
        beta = rng.standard_normal(d)
        beta *= np.sqrt(F1_sq) / np.linalg.norm(beta)  # ||beta||^2 = F1_sq
        theta = _sphere(rng, N, d)
        X = _sphere(rng, n, d)
        Xt = _sphere(rng, n_test, d)
        Phi = np.maximum(X @ theta.T / np.sqrt(d), 0.0) - shift
        Phit = np.maximum(Xt @ theta.T / np.sqrt(d), 0.0) - shift
        # E_x <beta, x>^2 = ||beta||^2 for x uniform on the sphere of radius sqrt(d).
        y = X @ beta + np.sqrt(tau2) * rng.standard_normal(n)
        if lam == 0.0:
            a, rank = _min_norm(Phi, y)
        else:
            a = _ridge_solve(Phi.T @ Phi / n + (N * lam / d) * np.eye(N), Phi.T @ y / n)
            rank = -1
        risks.append(float(np.mean((Xt @ beta - Phit @ a) ** 2)))
        ranks.append(rank)
    return _summarise(risks, ranks)
