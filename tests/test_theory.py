"""Asymptotic risk formulas: check values, limits, independent oracles, and simulations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize

from kernelgen import theory as T
from kernelgen.errors import InvalidInputError

ZETA_RELU = T.relu_moments()["zeta"]


# ---------------------------------------------------------------- Mei & Montanari
def test_mm_check_values_from_facts():
    # FACTS.md gives chi, B, V to 7/5/5 significant digits: compare at that precision.
    chi = T.mm_chi(3, 2, 1.0)
    B, V = T.mm_bias_variance(3, 2, 1.0)
    assert chi == pytest.approx(-1.414214, abs=5e-7)
    assert B == pytest.approx(1.0355, abs=5e-5)
    assert V == pytest.approx(2.2071, abs=5e-5)


def test_mm_facts_theory_values_centred_relu():
    # FACTS.md: theory 1.137 at psi = (3, 2) and 0.419 at (6, 2), zeta ~ 1.659, tau^2 = 0.25.
    assert ZETA_RELU == pytest.approx(1.659, abs=5e-4)
    assert T.mm_risk(3, 2, ZETA_RELU, tau2=0.25) == pytest.approx(1.137, abs=5e-4)
    assert T.mm_risk(6, 2, ZETA_RELU, tau2=0.25) == pytest.approx(0.419, abs=5e-4)


@pytest.mark.parametrize("psi1,psi2,zeta", [(3, 2, 1.0), (0.5, 2, 1.659), (4, 1.5, 0.7)])
@pytest.mark.parametrize("lam_bar", [1e-3, 0.1, 2.0])
def test_mm_fixed_point_equations_hold(psi1, psi2, zeta, lam_bar):
    # Rebuild nu1, nu2 = i t1, i t2 from chi and check the original complex fixed point of
    # [MM] Definition 1; the root is found to ~1e-15 relative, so 1e-10 is generous.
    chi = T.mm_chi(psi1, psi2, zeta, lam_bar)
    xi = 1j * np.sqrt(psi1 * psi2 * lam_bar)
    u = -chi
    c = 1 + zeta**2 / (1 + zeta**2 * u)
    s = abs(xi)
    nu1, nu2 = 1j * (psi1 - c * u) / s, 1j * (psi2 - c * u) / s
    z2 = zeta**2
    r1 = psi1 / (-xi - nu2 - z2 * nu2 / (1 - z2 * nu1 * nu2))
    r2 = psi2 / (-xi - nu1 - z2 * nu1 / (1 - z2 * nu1 * nu2))
    assert nu1.imag > 0 and nu2.imag > 0
    assert abs(r1 - nu1) <= 1e-10 * abs(nu1) and abs(r2 - nu2) <= 1e-10 * abs(nu2)
    assert (nu1 * nu2).real == pytest.approx(chi, rel=1e-12)


def test_mm_ridge_tends_to_ridgeless_closed_form():
    # chi(lam) is continuous at 0 with |chi(lam) - chi(0)| = O(sqrt(lam)): 1e-12 -> ~1e-6.
    for psi1, psi2 in [(3, 2), (1, 3), (6, 2)]:
        r0 = T.mm_risk(psi1, psi2, ZETA_RELU, tau2=0.25)
        r1 = T.mm_risk(psi1, psi2, ZETA_RELU, tau2=0.25, lam_bar=1e-12)
        assert r1 == pytest.approx(r0, rel=1e-5)
    assert T.mm_risk(2, 2, ZETA_RELU) == float("inf")


# ---------------------------------------------------------------- Hastie et al.
@pytest.mark.parametrize("gamma", [0.3, 0.8, 1.5, 2.0, 5.0])
def test_mp_stieltjes_against_quadrature(gamma):
    # Independent oracle: integrate the Marchenko-Pastur density (plus the atom at 0 of mass
    # 1 - 1/gamma when gamma > 1). quad reaches ~1e-10 on this smooth integrand.
    lam = 0.37
    a, b = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2

    def dens(x):
        return np.sqrt(max((b - x) * (x - a), 0.0)) / (2 * np.pi * gamma * x)

    m_int = integrate.quad(lambda x: dens(x) / (x + lam), a, b, epsabs=1e-13, epsrel=1e-12)[0]
    mp_int = integrate.quad(lambda x: dens(x) / (x + lam) ** 2, a, b, epsabs=1e-13, epsrel=1e-12)[0]
    if gamma > 1:
        m_int += (1 - 1 / gamma) / lam
        mp_int += (1 - 1 / gamma) / lam**2
    m, mp = T.mp_stieltjes(lam, gamma, derivative=True)
    assert m == pytest.approx(m_int, rel=1e-8)
    assert mp == pytest.approx(mp_int, rel=1e-8)  # m'(z) = int dmu / (s - z)^2


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9, 1.1, 2.0, 4.0])
def test_hmrt_ridge_tends_to_ridgeless(gamma):
    # The closed-form m' is cancellation-free: at lambda = 1e-10 the ridge formula must match
    # the ridgeless limit to O(lambda / |1 - gamma|) ~ 1e-9 (no catastrophic loss of digits).
    r0 = T.hmrt_ridgeless_risk(gamma, r2=1.0, sigma2=0.25)
    r = T.hmrt_ridge_risk(1e-10, gamma, r2=1.0, sigma2=0.25)
    assert r == pytest.approx(r0, rel=1e-7)


def test_hmrt_facts_small_lambda_value():
    # FACTS.md: gamma = 2, lambda = 1e-4 must give 0.75 (a finite-difference m' gave 0.50).
    assert T.hmrt_ridge_risk(1e-4, 2.0, r2=1.0, sigma2=0.25) == pytest.approx(0.75, abs=2e-4)


def test_hmrt_optimal_ridge_minimises_formula():
    # lambda* = sigma^2 gamma / r^2 (HMRT Cor. 5); bounded scalar minimisation finds it to ~1e-5.
    for gamma in (0.5, 2.0):
        lam_star = T.hmrt_optimal_ridge(gamma, r2=1.0, sigma2=0.5)
        res = optimize.minimize_scalar(lambda L: T.hmrt_ridge_risk(L, gamma, r2=1.0, sigma2=0.5),
                                       bounds=(1e-3, 10), method="bounded", options={"xatol": 1e-8})
        assert res.x == pytest.approx(lam_star, rel=1e-3)


def test_hmrt_mprime_matches_central_difference():
    # At moderate lambda a central difference (h = 1e-5, error O(h^2) ~ 1e-10) is accurate.
    for gamma in (0.5, 2.0):
        lam, h = 0.5, 1e-5
        fd = -(T.mp_stieltjes(lam + h, gamma) - T.mp_stieltjes(lam - h, gamma)) / (2 * h)  # d/dz, z = -lam
        assert T.mp_stieltjes(lam, gamma, derivative=True)[1] == pytest.approx(fd, rel=1e-8)


# ---------------------------------------------------------------- simulations vs formulas
def _finite_n_isotropic(n, p, r2, sigma2):
    """Exact finite-(n, p) expectation of the HMRT ridgeless excess risk (inverse-Wishart mean)."""
    if p <= n - 2:
        return sigma2 * p / (n - p - 1)
    return r2 * (1 - n / p) + sigma2 * n / (p - n - 1)


@pytest.mark.parametrize("p", [100, 400])
def test_hmrt_ridgeless_formula_vs_simulation(p):
    n, r2, sigma2, seeds = 200, 1.0, 0.25, range(20)
    sim = T.simulate_hmrt(n, p, r2=r2, sigma2=sigma2, seeds=seeds)
    theory = T.hmrt_ridgeless_risk(p / n, r2=r2, sigma2=sigma2)
    # Tolerance: 4 standard errors of the seed mean (spread measured on the same seeds) plus the
    # known finite-size gap between the exact finite-n expectation and the limit (O(1/n)).
    se = sim.std / np.sqrt(len(sim.risks))
    gap = abs(_finite_n_isotropic(n, p, r2, sigma2) - theory)
    assert abs(sim.mean - theory) <= 4 * se + gap
    assert np.all(sim.ranks == min(n, p))


@pytest.mark.parametrize("p", [100, 400])
def test_hmrt_ridge_formula_vs_simulation(p):
    n, lam = 200, 0.3
    sim = T.simulate_hmrt(n, p, r2=1.0, sigma2=0.25, lam=lam, seeds=range(20))
    theory = T.hmrt_ridge_risk(lam, p / n, r2=1.0, sigma2=0.25)
    # 4 standard errors + 5% for the O(1/sqrt(n)) finite-size correction of a ridge risk at n = 200
    # (measured gap here 0.0 to 4%).
    se = sim.std / np.sqrt(len(sim.risks))
    assert abs(sim.mean - theory) <= 4 * se + 0.05 * theory


@pytest.mark.parametrize("p", [50, 150])
def test_bhx_formula_vs_simulation(p):
    # The BHX risk is an exact finite-sample expectation: only Monte-Carlo error remains, so
    # 4 standard errors of the seed mean (failure probability ~6e-5 per test).
    kw = dict(norm2_in=0.5, norm2_out=0.5, sigma2=0.25)
    sim = T.simulate_bhx(100, p, 300, seeds=range(40), **kw)
    theory = T.bhx_weak_features_risk(p, 100, **kw)
    assert abs(sim.mean - theory) <= 4 * sim.std / np.sqrt(len(sim.risks))


@pytest.mark.parametrize("psi", [(3, 2), (6, 2)])
def test_mm_formula_vs_simulation(psi):
    d = 100
    sim = T.simulate_mei_montanari(d, psi[0] * d, psi[1] * d, tau2=0.25, seeds=range(5), n_test=2000)
    theory = T.mm_risk(*psi, ZETA_RELU, tau2=0.25)
    # Two sources: Monte-Carlo spread (4 standard errors over the 5 seeds) and the finite-d bias of
    # an asymptotic formula, O(1/sqrt(d)); FACTS measured +3.6% / +2.3% at d = 200, so 10% at d = 100.
    se = sim.std / np.sqrt(len(sim.risks))
    assert abs(sim.mean - theory) <= 4 * se + 0.10 * theory


def test_mm_ridge_formula_vs_simulation():
    d, lam = 100, 0.05
    lam_bar = lam / T.relu_moments()["mu_star2"]
    sim = T.simulate_mei_montanari(d, 300, 200, tau2=0.25, lam=lam, seeds=range(5), n_test=2000)
    theory = T.mm_risk(3, 2, ZETA_RELU, lam_bar=lam_bar, tau2=0.25)
    se = sim.std / np.sqrt(len(sim.risks))
    assert abs(sim.mean - theory) <= 4 * se + 0.10 * theory  # same justification as above


def test_invalid_inputs_raise_named_errors():
    with pytest.raises(InvalidInputError):
        T.hmrt_ridge_risk(0.0, 2.0)
    with pytest.raises(InvalidInputError):
        T.mm_chi(-1, 2, 1.0)
    with pytest.raises(InvalidInputError):
        T.simulate_bhx(10, 20, 5, norm2_in=1, norm2_out=0, sigma2=0)
