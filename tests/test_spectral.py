"""kernelgen.spectral against closed forms on synthetic spectra and against exact kernel regression.

Oracles: the single-mode and degenerate-spectrum theories solved by hand (a quadratic in kappa); the
ridgeless finite-rank limit (E_g = 0 once P reaches the rank); the power-law exponent min(beta - 1, 2 alpha)
of the spectral theory; a Monte-Carlo average of exact kernel regression on data whose kernel spectrum is
known by construction; eigendecompositions against numpy on matrices known in closed form.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import scipy.linalg as sla

from kernelgen.errors import (
    InvalidInputError,
    MemoryBudgetError,
    NonFiniteInputError,
    ShapeMismatchError,
)
from kernelgen.factors import EIGH_MAX_N
from kernelgen.kernels import Gaussian, Linear
from kernelgen.spectral import eigenlearning_curve, kernel_spectrum, target_alignment


def _degenerate_theory(eta, N, W, P, lam):
    """N modes of eigenvalue eta holding total power W: kappa from its quadratic, then gamma and E_g.

    kappa = lam + kappa N eta / (P eta + kappa)  <=>  kappa^2 + kappa (P eta - N eta - lam) - lam P eta = 0,
    evaluated in 50-digit arithmetic (mpmath), so that neither the root nor 1 - gamma loses digits.
    """
    mp.mp.dps = 50
    out = []
    for p in P:
        e, n, w, lm, p = (mp.mpf(v) for v in (eta, N, W, lam, p))
        b = p * e - n * e - lm
        kappa = (-b + mp.sqrt(b * b + 4 * lm * p * e)) / 2 if lam > 0 else max(-b, mp.mpf(0))
        gamma = n * p * e**2 / (p * e + kappa) ** 2
        out.append((kappa, gamma, kappa**2 * w / ((1 - gamma) * (p * e + kappa) ** 2)))
    return (np.array([float(v[i]) for v in out]) for i in range(3))


@pytest.mark.parametrize("N", [1, 7])
@pytest.mark.parametrize("lam", [1e-3, 0.2, 5.0])
def test_degenerate_spectrum_closed_form(N, lam):
    eta, W = 0.3, 1.7
    P = np.array([0.25, 1.0, 2.0, 6.5, 7.0, 40.0, 1e4])
    c = eigenlearning_curve(np.full(N, eta), np.full(N, W / N), P, ridge=lam)
    kappa, gamma, E = _degenerate_theory(eta, N, W, P, lam)
    # brentq on log k to rtol 4 eps, 1 - gamma without cancellation: E_g to ~1e-14; 1e-12 leaves room
    np.testing.assert_allclose(c.kappa, kappa, rtol=1e-12)
    np.testing.assert_allclose(c.gamma, gamma, rtol=1e-12)
    np.testing.assert_allclose(c.error, E, rtol=1e-12)


@pytest.mark.parametrize("N", [1, 10])
def test_ridgeless_flat_spectrum(N):
    """Ridgeless, N equal modes: E_g = W (1 - P / N) below N (isotropic regression), 0 from P = N on."""
    W = 3.0
    P = np.array([0.5, 1.0, 2.5, N - 0.5, N, N + 1, 5 * N], dtype=float)
    c = eigenlearning_curve(np.full(N, 1.0 / N), np.full(N, W / N), P)
    expected = np.where(P < N, W * (1 - P / N), 0.0)
    np.testing.assert_allclose(c.error, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c.kappa[P >= N], 0.0)


def test_finite_rank_ridgeless_limits():
    eta = np.array([1.0, 0.5, 0.1, 0.01, 0.0, 0.0])  # rank N+ = 4 and two null modes
    w = np.array([0.4, 0.3, 0.2, 0.1, 0.0, 0.0])
    c = eigenlearning_curve(eta, w, [4, 5, 100])
    assert c.error.tolist() == [0.0, 0.0, 0.0]  # target in the kernel's span: learned exactly once P >= N+
    w_out = np.array([0.4, 0.3, 0.2, 0.1, 0.25, 0.05])  # power 0.3 outside the span
    c = eigenlearning_curve(eta, w_out, [4, 5, 8])
    # P > N+: the null power is amplified by 1 / (1 - gamma) = P / (P - N+); at P = N+ it diverges
    assert c.error[0] == np.inf
    np.testing.assert_allclose(c.error[1:], [5 / 1 * 0.3, 8 / 4 * 0.3], rtol=1e-14)
    # below the rank with a ridge, every term is finite and the small-P limit is the target's power
    c = eigenlearning_curve(eta, w_out, [1e-9, 2.0], ridge=1e-3)
    assert np.all(np.isfinite(c.error)) and c.error[0] == pytest.approx(w_out.sum(), rel=1e-6)


def test_kappa_solves_its_equation_and_gamma_matches():
    rng = np.random.default_rng(3)
    eta, w = rng.exponential(size=300) ** 3, rng.random(300)
    P = np.array([1.0, 17.0, 120.0, 299.0, 2000.0])
    for lam in (0.0, 1e-6, 0.5):
        c = eigenlearning_curve(eta, w, P, ridge=lam)
        for p, k, g in zip(P, c.kappa, c.gamma):
            if k == 0.0:
                continue
            lhs = lam + k * np.sum(eta / (p * eta + k))
            assert abs(lhs - k) <= 1e-12 * k  # the implicit equation, to brentq's relative accuracy
            assert g == pytest.approx(np.sum(p * eta**2 / (p * eta + k) ** 2), rel=1e-10)  # Bordelon's gamma


@pytest.mark.parametrize("alpha, beta", [(1.5, 2.0), (1.5, 5.0), (2.0, 2.5)])
def test_power_law_exponent(alpha, beta):
    """eta_k = k^-alpha, w_k = k^-beta: E_g ~ P^-min(beta - 1, 2 alpha) (ridgeless, P << modes).

    Modes k <~ P are learned with error (kappa / eta_k)^2 w_k, kappa ~ P^-alpha, the rest are not learned:
    the sum gives P^(1 - beta) unless 2 alpha < beta - 1 (then the learned modes' error P^-2alpha dominates);
    1 / (1 - gamma) tends to a constant. 1e6 modes: the truncated tail shifts the slope on [1e3, 1e4] by
    about (P / 1e6)^(beta - 1) <= 0.01; the pre-asymptotic drift measured there is <= 0.04.
    """
    k = np.arange(1, 10**6 + 1, dtype=np.float64)
    P = np.geomspace(1e3, 1e4, 5)
    c = eigenlearning_curve(k**-alpha, k**-beta, P)
    slope = np.polyfit(np.log(P), np.log(c.error), 1)[0]
    assert slope == pytest.approx(-min(beta - 1, 2 * alpha), abs=0.05)


@pytest.mark.parametrize("lam", [0.0, 1e-2])
def test_monte_carlo_against_exact_kernel_regression(lam):
    """Theory against the average error of exact kernel regression, on a kernel with a known spectrum.

    x ~ N(0, I_N), k(x, x') = sum_k eta_k x_k x'_k: its integral operator has eigenvalues eta_k and
    orthonormal eigenfunctions phi_k(x) = x_k; the target y = sum_k b_k x_k has weights w_k = b_k^2, and the
    test error of f = sum_k bhat_k x_k is exactly ||bhat - b||^2. Averaged over R = 80 draws of P points.
    Tolerance: 3 standard errors of the mean (sampling) + 8% of the theory for its finite-N, finite-P
    corrections (the theory is the P, N -> infinity limit; measured gaps here <= 5%).
    """
    rng = np.random.default_rng(11)
    N, R = 200, 80
    idx = np.arange(1, N + 1, dtype=np.float64)
    eta, b = idx**-1.5, idx**-0.5 * rng.choice([-1.0, 1.0], N)
    for P in (20, 60, 140):
        errs = []
        for _ in range(R):
            X = rng.normal(size=(P, N))
            K = (X * eta) @ X.T
            a = sla.solve(K + lam * np.eye(P), X @ b, assume_a="pos")
            errs.append(np.sum((eta * (X.T @ a) - b) ** 2))
        mean, se = np.mean(errs), np.std(errs, ddof=1) / np.sqrt(R)
        theory = eigenlearning_curve(eta, b**2, P, ridge=lam).error[0]
        assert abs(mean - theory) <= 3 * se + 0.08 * theory, (P, mean, se, theory)


def test_kernel_spectrum_linear_and_reconstruction():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    s = kernel_spectrum(X, Linear())
    # K / M = X X^T / M shares its nonzero eigenvalues with X^T X / M (descending)
    np.testing.assert_allclose(s.eigenvalues[:4], np.linalg.eigvalsh(X.T @ X / 300)[::-1], rtol=1e-12)
    assert s.rank == 4 and np.all(np.abs(s.eigenvalues[4:]) <= 1e-12 * s.eigenvalues[0])
    assert np.all(np.diff(s.eigenvalues) <= 0) and s.rows.tolist() == list(range(300))
    g = kernel_spectrum(X, Gaussian(bandwidth=2.0), n_sample=120, seed=4)
    K = Gaussian(bandwidth=2.0).matrix(X[g.rows]) / 120
    V = g.eigenvectors
    np.testing.assert_allclose(V.T @ V, np.eye(120), atol=1e-12)  # orthonormal (syevd: ~n eps)
    np.testing.assert_allclose((V * g.eigenvalues) @ V.T, K, atol=1e-13)
    assert np.array_equal(g.rows, np.random.default_rng(4).choice(300, 120, replace=False))
    again = kernel_spectrum(X, Gaussian(bandwidth=2.0), n_sample=120, seed=4)
    assert np.array_equal(again.eigenvalues, g.eigenvalues)  # reproducible
    assert kernel_spectrum(X, Linear(), n_sample=50).rows.tolist() == list(range(50))  # no seed: first rows


def test_spectrum_alignment_and_theory_compose():
    """kernel_spectrum -> target_alignment -> eigenlearning_curve recovers the known spectrum's prediction.

    Same model as the Monte-Carlo test with 8 well-separated modes (eta_k = 2^-k): on M = 1200 samples the
    eigenvalues of K / M estimate eta_k, and w_k = (u_k^T y)^2 / M estimates b_k^2, each to a relative
    sampling error ~ sqrt(2 / M) = 4% (a few-sigma margin: 20%); the predictions agree to 15%. A wrong
    normalisation (K instead of K / M, or w without / M) would be off by a factor M.
    """
    rng = np.random.default_rng(8)
    eta, b = 2.0 ** -np.arange(8), rng.choice([-1.0, 1.0], 8) * np.linspace(1.0, 0.3, 8)
    X = rng.normal(size=(1200, 8))
    s = kernel_spectrum(X * np.sqrt(eta), Linear())
    a = target_alignment(s.eigenvectors, X @ b)
    np.testing.assert_allclose(s.eigenvalues[:8], eta, rtol=0.2)
    np.testing.assert_allclose(a.weights[:8], b**2, rtol=0.2)
    est = eigenlearning_curve(s.eigenvalues, a.weights, [2.0, 5.0], ridge=1e-3).error
    true = eigenlearning_curve(eta, b**2, [2.0, 5.0], ridge=1e-3).error
    np.testing.assert_allclose(est, true, rtol=0.15)


def test_kernel_spectrum_refusals():
    X = np.zeros((EIGH_MAX_N + 1, 1))
    with pytest.raises(MemoryBudgetError, match=str(EIGH_MAX_N)):
        kernel_spectrum(X, Linear())  # refused by the planner before any matrix is formed
    Y = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(InvalidInputError, match="n_sample"):
        kernel_spectrum(Y, Linear(), seed=1)
    with pytest.raises(InvalidInputError):
        kernel_spectrum(Y, Linear(), n_sample=21)
    with pytest.raises(InvalidInputError, match="precomputed"):
        kernel_spectrum(Y, "precomputed")
    Y[0, 0] = np.nan
    with pytest.raises(NonFiniteInputError):
        kernel_spectrum(Y, Linear())


def test_target_alignment():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.normal(size=(50, 50)))
    coef = np.zeros(50)
    coef[[0, 3]] = [3.0, 4.0]
    a = target_alignment(Q, Q @ coef)
    np.testing.assert_allclose(a.projections, coef, atol=1e-13)
    np.testing.assert_allclose(a.weights[[0, 3]], [9 / 50, 16 / 50], rtol=1e-12)
    np.testing.assert_allclose(a.cumulative_power[[0, 2, 3, 49]], [0.36, 0.36, 1.0, 1.0], rtol=1e-12)
    Y = rng.normal(size=(50, 3))  # several targets: power summed over columns, Parseval on a full basis
    b = target_alignment(Q, Y)
    assert b.projections.shape == (50, 3)
    assert b.weights.sum() == pytest.approx(np.sum(Y**2) / 50, rel=1e-12)
    assert np.all(np.diff(b.cumulative_power) >= 0) and b.cumulative_power[-1] == 1.0
    with pytest.raises(ShapeMismatchError):
        target_alignment(Q, Y[:-1])
    with pytest.raises(InvalidInputError, match="no power"):
        target_alignment(Q, np.zeros(50))


def test_eigenlearning_refusals():
    with pytest.raises(InvalidInputError, match=">= 0"):
        eigenlearning_curve([1.0, -1e-6], [1.0, 1.0], 3)  # beyond rounding: sqrt(u) = 1.05e-8
    with pytest.raises(InvalidInputError, match="weights"):
        eigenlearning_curve([1.0, 0.5], [1.0, -1.0], 3)
    with pytest.raises(ShapeMismatchError):
        eigenlearning_curve([1.0, 0.5], [1.0], 3)
    with pytest.raises(InvalidInputError, match="P"):
        eigenlearning_curve([1.0], [1.0], [2.0, 0.0])
    with pytest.raises(InvalidInputError, match="ridge"):
        eigenlearning_curve([1.0], [1.0], 2, ridge=-1.0)
    with pytest.raises(InvalidInputError, match="positive"):
        eigenlearning_curve([0.0, 0.0], [1.0, 1.0], 2)
    with pytest.raises(NonFiniteInputError):
        eigenlearning_curve([1.0, np.nan], [1.0, 1.0], 2)
    c = eigenlearning_curve([1.0, -1e-9], [1.0, 0.0], 2.0)  # a rounding negative (> -sqrt(u) max) is a null mode
    assert c.error.tolist() == [0.0]
