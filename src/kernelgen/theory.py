"""Exact asymptotic risk formulas for double descent, and simulations in each paper's model.

Formulas (all in closed form or a one-dimensional root; no finite differences):

* :func:`hmrt_ridgeless_risk`, :func:`hmrt_ridge_risk`, :func:`mp_stieltjes` --
  Hastie, Montanari, Rosset & Tibshirani, isotropic features ``x ~ N(0, I_p)``,
  ``y = x^T beta + eps``, ``||beta||^2 = r^2``, ``Var eps = sigma^2``, ``gamma = p / n``;
  excess risk ``E_x (x^T (beta_hat - beta))^2`` (``sigma^2`` not included).
* :func:`bhx_weak_features_risk` -- Belkin, Hsu & Xu, the learner uses ``p`` of the ``D``
  coordinates; exact *finite-sample* expected risk (it includes ``sigma^2``).
* :func:`mm_chi`, :func:`mm_bias_variance`, :func:`mm_risk` -- Mei & Montanari,
  random-features ridge regression on the sphere of radius ``sqrt(d)``.

Simulations (:func:`simulate_hmrt`, :func:`simulate_bhx`, :func:`simulate_mei_montanari`)
draw data in the paper's own model, fit with :func:`kernelgen.min_norm_solve` (or a ridge
solve), and return the test risk estimated on fresh samples, so that the formulas can be
overlaid on simulations (``scripts/double_descent.py``) and tested (``tests/test_theory.py``).

Numerics. The ridge formula needs ``m'(-lambda)``; it is taken in closed form from the
Marchenko-Pastur quadratic, and the two differences that cancel catastrophically at small
``lambda`` (``m`` itself for ``gamma < 1`` and ``m - lambda m'`` for ``gamma > 1``) are
rationalised, so ``hmrt_ridge_risk(1e-12)`` agrees with the ridgeless limit to ~1e-10
(a finite-difference ``m'`` gave 0.50 instead of 0.75 at gamma = 2, lambda = 1e-4: FACTS.md).
The Mei-Montanari fixed point is solved on the imaginary axis, where it reduces to one
monotone scalar equation (derivation in :func:`mm_chi`), by Brent's method.

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

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from .errors import InvalidInputError

__all__ = [
    "mp_stieltjes",
    "hmrt_ridgeless_risk",
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


def mp_stieltjes(lam, gamma, *, derivative: bool = False):
    """Marchenko-Pastur Stieltjes transform ``m(-lambda)`` (and ``m'(-lambda)``).

    ``m(z) = int dmu(s) / (s - z)`` for the Marchenko-Pastur law of ``X^T X / n`` with
    aspect ratio ``gamma = p / n`` and identity covariance. It solves
    ``gamma z m^2 - (1 - gamma - z) m + 1 = 0``; at ``z = -lambda``

    ``m = [-(1 - gamma + lambda) + sqrt(D)] / (2 gamma lambda)``,
    ``D = (1 - gamma + lambda)^2 + 4 gamma lambda``,

    and implicit differentiation of the quadratic gives ``m' = m (1 + gamma m) / sqrt(D)``.

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

    References
    ----------
    [HMRT] section 5 (Marchenko-Pastur law); the quadratic is their eq. for ``m(z)``.
    """
    lam = _positive(lam, "lam")
    gamma = _positive(gamma, "gamma")
    a = 1.0 - gamma + lam
    sqrt_d = np.sqrt(a * a + 4.0 * gamma * lam)
    # Choose the cancellation-free root expression (product of the roots is -1/(gamma lam)).
    m = 2.0 / (sqrt_d + a) if a >= 0 else (sqrt_d - a) / (2.0 * gamma * lam)
    if not derivative:
        return m
    mprime = m * (1.0 + gamma * m) / sqrt_d
    return m, mprime


def hmrt_ridgeless_risk(gamma, *, r2: float = 1.0, sigma2: float = 1.0):
    """Excess risk of the minimum-norm least-squares estimator ``X^+ y``, isotropic model.

    ``gamma < 1``: ``R = sigma^2 gamma / (1 - gamma)``;
    ``gamma > 1``: ``R = r^2 (1 - 1/gamma) + sigma^2 / (gamma - 1)``; ``gamma = 1``: ``inf``.

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

    References
    ----------
    [HMRT] Theorem 1 (isotropic features), eq. (5)-(6).
    """
    r2 = _nonneg(r2, "r2")
    sigma2 = _nonneg(sigma2, "sigma2")
    g = np.asarray(gamma, dtype=np.float64)
    if np.any(~np.isfinite(g)) or np.any(g <= 0):
        raise InvalidInputError("gamma must be positive and finite.")
    with np.errstate(divide="ignore", invalid="ignore"):
        under = sigma2 * g / (1.0 - g)
        over = r2 * (1.0 - 1.0 / g) + sigma2 / (g - 1.0)
    out = np.where(g < 1, under, np.where(g > 1, over, np.inf))
    return float(out) if out.ndim == 0 else out


def hmrt_ridge_risk(lam, gamma, *, r2: float = 1.0, sigma2: float = 1.0) -> float:
    """Excess risk of ridge regression ``(X^T X/n + lambda I)^{-1} X^T y / n``, isotropic model.

    ``R(lambda) = r^2 lambda^2 m'(-lambda) + sigma^2 gamma [m(-lambda) - lambda m'(-lambda)]``,
    with ``m`` the Marchenko-Pastur Stieltjes transform (:func:`mp_stieltjes`). The
    variance factor is evaluated as ``m (gamma lambda m + 1 - gamma) / sqrt(D)`` and, for
    ``gamma > 1``, ``gamma lambda m + 1 - gamma = 2 lambda / (sqrt(D) + gamma - 1 + lambda)``,
    so nothing cancels as ``lambda -> 0`` (the limit is :func:`hmrt_ridgeless_risk`).

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

    References
    ----------
    [HMRT] Theorem 5 and Corollary 5 (isotropic ridge), with ``lambda^* = sigma^2 gamma / r^2``.
    """
    r2 = _nonneg(r2, "r2")
    sigma2 = _nonneg(sigma2, "sigma2")
    lam = _positive(lam, "lam")
    gamma = _positive(gamma, "gamma")
    m, mprime = mp_stieltjes(lam, gamma, derivative=True)
    a = 1.0 - gamma + lam
    sqrt_d = np.sqrt(a * a + 4.0 * gamma * lam)
    if gamma > 1:  # rationalised: D - (1 - gamma - lam)^2 = 4 lam
        g_term = 2.0 * lam / (sqrt_d + gamma - 1.0 + lam)
    else:
        g_term = gamma * lam * m + 1.0 - gamma
    m_minus_lmp = m * g_term / sqrt_d  # = m - lam m'
    return float(r2 * lam * lam * mprime + sigma2 * gamma * m_minus_lmp)


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
        over = a * (1.0 - n / pp) + b * (1.0 + n / (pp - n - 1.0))
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

    Returns
    -------
    chi : float (negative)

    References
    ----------
    [MM] Definition 1 (eq. 15-16) and Theorem 3 (ridgeless closed form of chi).
    """
    psi1 = _positive(psi1, "psi1")
    psi2 = _positive(psi2, "psi2")
    zeta = _positive(zeta, "zeta")
    lam_bar = _nonneg(lam_bar, "lam_bar")
    z2 = zeta * zeta
    psi = min(psi1, psi2)
    q = psi * z2 - z2 - 1.0
    u0 = (q + np.sqrt(q * q + 4.0 * psi * z2)) / (2.0 * z2)  # ridgeless root, c(u0) u0 = psi
    if lam_bar == 0.0:
        return -float(u0)
    s2 = psi1 * psi2 * lam_bar

    def cu(u):
        return u + z2 * u / (1.0 + z2 * u)

    def f(u):
        w = cu(u)
        return s2 * u - (psi1 - w) * (psi2 - w)

    # f(0) = -psi1 psi2 < 0 and f(u0) = s2 u0 > 0 (c(u) u increasing): the root is in (0, u0).
    u = optimize.brentq(f, 0.0, u0, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    return -float(u)


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
        Check values (FACTS.md): ``psi = (3, 2), zeta = 1`` -> ``B = 1.0355, V = 2.2071``.

    References
    ----------
    [MM] Definition 1, eq. (17)-(19): E0, E1, E2 polynomials in ``chi``.
    """
    chi = mm_chi(psi1, psi2, zeta, lam_bar)
    x, z2, p1, p2 = chi, zeta * zeta, float(psi1), float(psi2)
    z4, z6 = z2 * z2, z2 * z2 * z2
    e0 = (
        -(x**5) * z6
        + 3 * x**4 * z4
        + (p1 * p2 - p1 - p2 + 1) * x**3 * z6
        - 2 * x**3 * z4
        - 3 * x**3 * z2
        + (p1 + p2 - 3 * p1 * p2 + 1) * x**2 * z4
        + 2 * x**2 * z2
        + x**2
        + 3 * p1 * p2 * x * z2
        - p1 * p2
    )
    e1 = p2 * x**3 * z4 - p2 * x**2 * z2 + p1 * p2 * x * z2 - p1 * p2
    e2 = (
        x**5 * z6
        - 3 * x**4 * z4
        + (p1 - 1) * x**3 * z6
        + 2 * x**3 * z4
        + 3 * x**3 * z2
        - (p1 + 1) * x**2 * z4
        - 2 * x**2 * z2
        - x**2
    )
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
    from .solvers import min_norm_solve

    # Simulation sizes (d ~ 100-1000) run faster on one BLAS thread than on a threaded
    # OpenBLAS, which is pathologically slow on small matrices when the machine is loaded.
    with threadpool_limits(limits=1 if max(A.shape) < 4096 else None, user_api="blas"):
        sol = min_norm_solve(A, y)
    return sol.coef, int(sol.rank)


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
            b = np.linalg.solve(X.T @ X / n + lam * np.eye(p), X.T @ y / n)
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
            a = np.linalg.solve(Phi.T @ Phi / n + (N * lam / d) * np.eye(N), Phi.T @ y / n)
            rank = -1
        risks.append(float(np.mean((Xt @ beta - Phit @ a) ** 2)))
        ranks.append(rank)
    return _summarise(risks, ranks)
