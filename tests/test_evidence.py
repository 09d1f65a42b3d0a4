"""Tests for kernelgen.evidence: exact/Laplace evidence, MacKay, type-II ML, Occam factor, N_eff."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit, log_expit
from scipy.stats import multivariate_normal

from kernelgen import evidence as ev
from kernelgen.factors import EighFactor
from kernelgen.errors import (
    ConvergenceError,
    InvalidInputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
)

ROOT = Path(__file__).resolve().parents[1]


def _blr_problem(seed, N=40, M=6, noise=0.4):
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((N, M))
    t = Phi @ rng.standard_normal(M) + noise * rng.standard_normal(N)
    return Phi, t


def _jax_blr_terms(Phi, t, alpha, beta):
    import jax.numpy as jnp

    N, M = Phi.shape

    def loglik(w):
        r = jnp.asarray(t) - jnp.asarray(Phi) @ w
        return 0.5 * N * jnp.log(beta / (2 * jnp.pi)) - 0.5 * beta * jnp.sum(r * r)

    def logprior(w):
        return 0.5 * M * jnp.log(alpha / (2 * jnp.pi)) - 0.5 * alpha * jnp.sum(w * w)

    return loglik, logprior


# ------------------------------------------------------------------ exact evidence oracles
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(40, 6), (8, 15)])
def test_blr_evidence_equals_gaussian_marginal(seed, shape):
    Phi, t = _blr_problem(seed, *shape)
    alpha, beta = 0.8, 3.0
    got = ev.blr_log_evidence(Phi, t, alpha=alpha, beta=beta)
    # oracle: t ~ N(0, Phi Phi^T / alpha + I / beta) (PRML eq. 3.86 is this density)
    cov = Phi @ Phi.T / alpha + np.eye(shape[0]) / beta
    want = multivariate_normal(np.zeros(shape[0]), cov).logpdf(t)
    # both are float64 Cholesky-based; 1e-11 relative covers a few hundred roundings of O(1) terms
    assert got.log_evidence == pytest.approx(want, rel=1e-11)


@pytest.mark.parametrize("seed", [0, 1])
def test_gp_linear_kernel_equals_blr(seed):
    Phi, t = _blr_problem(seed, 30, 5)
    alpha, beta = 1.7, 0.6
    blr = ev.blr_log_evidence(Phi, t, alpha=alpha, beta=beta)
    gp = ev.gp_log_evidence(Phi @ Phi.T, t, amplitude2=1 / alpha, noise_var=1 / beta)
    # independent routes (M x M weight-space vs N x N function-space Cholesky): rounding only
    assert gp.log_evidence == pytest.approx(blr.log_evidence, rel=1e-11)
    # the eigen-factor route gives the same number ("factor once, solve many")
    fac = EighFactor.factor(Phi @ Phi.T)
    per = fac.log_evidence(t, amplitude2=1 / alpha, noise_var=1 / beta)
    assert per[0] == pytest.approx(blr.log_evidence, rel=1e-11)
    # gamma = N_eff(beta Phi^T Phi, alpha) = N_eff(K, sigma^2 / a^2)
    assert fac.effective_dim(alpha / beta) == pytest.approx(blr.gamma, rel=1e-10)


def test_gp_multi_column_is_sum_of_columns():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((25, 3))
    K = np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1))
    Y = rng.standard_normal((25, 4))
    res = ev.gp_log_evidence(K, Y, amplitude2=2.0, noise_var=0.1)
    cols = [ev.gp_log_evidence(K, Y[:, j], amplitude2=2.0, noise_var=0.1).log_evidence for j in range(4)]
    # column j is an independent GP: exact additivity up to rounding. The two differ only in the data fit
    # y^T A^-1 y (A = a2 K + s2 I, one factor), solved with 4 right-hand sides vs 1 (another BLAS order). Each
    # computed solve is the exact solve of a perturbed A (|dA| <= gamma_{3n+1} |R^T||R|, Higham Thm 10.4), so
    # the fit moves by at most about 2 gamma_{3n+1} cond(A) |fit| (first order, doubled); the other terms are
    # the same operations in both. A tolerance relative to the log evidence alone would break where its terms
    # cancel.
    A = 2.0 * K + 0.1 * np.eye(25)
    u = np.finfo(np.float64).eps / 2
    gam = (3 * 25 + 1) * u / (1 - (3 * 25 + 1) * u)
    bound = 2 * (2 * gam * np.linalg.cond(A) * np.abs(res.data_fit))  # x2: both sides carry that error
    assert np.all(np.abs(res.per_column - np.asarray(cols)) <= 0.5 * bound + 8 * u * np.abs(res.per_column))
    assert abs(res.log_evidence - sum(cols)) <= 0.5 * bound.sum() + 8 * u * np.abs(res.per_column).sum()
    assert bound.max() < 1e-9 * np.abs(res.per_column).max()  # not vacuous


# ------------------------------------------------------------------ Laplace = exact for BLR
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(40, 6), (8, 15)])
def test_laplace_equals_exact_blr(seed, shape):
    Phi, t = _blr_problem(seed, *shape)
    alpha, beta = 0.5, 4.0
    exact = ev.blr_log_evidence(Phi, t, alpha=alpha, beta=beta)
    ll, lp = _jax_blr_terms(Phi, t, alpha, beta)
    lap = ev.laplace_evidence(ll, lp, np.zeros(shape[1]))
    # the requirement: Gaussian log joint => Laplace is exact, 1e-10 relative in float64
    assert abs(lap.log_evidence - exact.log_evidence) <= 1e-10 * abs(exact.log_evidence)
    np.testing.assert_allclose(lap.w, exact.mean, rtol=1e-9, atol=1e-12)
    assert lap.is_map
    # Hessian = alpha I + beta Phi^T Phi exactly; its log-det equals the Cholesky one
    assert lap.log_det_hessian == pytest.approx(exact.log_det_A, rel=1e-11)
    # gamma (PRML eq. 3.91) = N_eff of the data Hessian H - alpha I at z = alpha
    assert lap.effective_dim(alpha, prior_precision=alpha) == pytest.approx(exact.gamma, rel=1e-9, abs=1e-9)


def test_laplace_at_given_point_is_not_optimised():
    Phi, t = _blr_problem(4)
    ll, lp = _jax_blr_terms(Phi, t, 1.0, 2.0)
    at_map = ev.laplace_evidence(ll, lp, np.zeros(6))
    w_off = at_map.w + 0.1
    off = ev.laplace_evidence(ll, lp, w_off, find_map=False)
    np.testing.assert_array_equal(off.w, w_off)
    assert not off.is_map and off.n_iter == 0 and off.newton_decrement2 > 0
    # For a quadratic log joint, L(w) = L(w*) - dec^2/2 exactly (dec^2 = (w-w*)^T H (w-w*)),
    # and H is the same everywhere: the formula at w loses exactly dec^2/2.
    assert at_map.log_evidence - off.log_evidence == pytest.approx(off.newton_decrement2 / 2, rel=1e-9)


# ------------------------------------------------------------------ Occam decomposition
def test_occam_decomposition_sums_to_total():
    rng = np.random.default_rng(5)
    X = np.c_[rng.standard_normal((60, 3)), np.ones(60)]
    y = (rng.random(60) < expit(X @ np.array([1.0, -2.0, 0.5, 0.2]))).astype(int)
    r = ev.logistic_laplace_evidence(X, y, prior_precision=0.5)
    d = X.shape[1]
    # the decomposition is an identity of floats summed in different orders: 1e-12 relative
    assert r.log_likelihood + r.log_prior + r.log_volume == pytest.approx(r.log_evidence, rel=1e-12)
    assert r.log_likelihood + r.log_occam_factor == pytest.approx(r.log_evidence, rel=1e-12)
    assert np.sum(r.occam_per_eigenvalue) == pytest.approx(r.log_volume, rel=1e-12)
    assert r.log_volume == pytest.approx(0.5 * d * math.log(2 * math.pi) - 0.5 * r.log_det_hessian, rel=1e-12)
    # each eigenvalue contributes 1/2 ln 2pi - 1/2 ln lambda_i: halving lambda_i gains 1/2 ln 2
    np.testing.assert_allclose(
        r.occam_per_eigenvalue, 0.5 * math.log(2 * math.pi) - 0.5 * np.log(r.hessian_eigenvalues), rtol=1e-14
    )
    # log det H via an independent Cholesky of the closed-form Hessian
    s = expit(X @ r.w)
    H = X.T @ (X * (s * (1 - s))[:, None]) + 0.5 * np.eye(d)
    assert r.log_det_hessian == pytest.approx(2 * np.sum(np.log(np.diag(np.linalg.cholesky(H)))), rel=1e-12)


# ------------------------------------------------------------------ MacKay fixed point
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mackay_fixed_point_is_stationary(seed):
    Phi, t = _blr_problem(seed, 80, 7, noise=0.5)
    res = ev.mackay_evidence(Phi, t, alpha0=1.0)
    assert res.converged and res.relative_change <= 1e-12

    def f(la, lb):
        return ev.blr_log_evidence(Phi, t, alpha=math.exp(la), beta=math.exp(lb)).log_evidence

    la, lb = math.log(res.alpha), math.log(res.beta)
    h = 1e-4
    ga = (f(la + h, lb) - f(la - h, lb)) / (2 * h)
    gb = (f(la, lb + h) - f(la, lb - h)) / (2 * h)
    # central differences: truncation h^2 * f''' ~ 1e-8 * N, rounding eps*|f|/h ~ 1e-10: 1e-5 is 100x margin
    assert abs(ga) < 1e-5 and abs(gb) < 1e-5, (ga, gb)
    # and it is a maximum: every nearby point is lower
    for da, db in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)]:
        assert f(la + da, lb + db) < res.log_evidence
    # type-II ML of the GP form (independent optimiser on the N x N kernel) finds the same point
    gp = ev.gp_type2_ml(Phi @ Phi.T, t)
    assert gp.amplitude2 == pytest.approx(1 / res.alpha, rel=1e-7)  # both at rounding-level stationarity
    assert gp.noise_var == pytest.approx(1 / res.beta, rel=1e-7)
    assert gp.log_evidence == pytest.approx(res.log_evidence, rel=1e-12)
    assert gp.effective_dim == pytest.approx(res.gamma, rel=1e-7)


def test_mackay_reports_non_convergence():
    Phi, t = _blr_problem(0, 50, 5)
    with pytest.raises(ConvergenceError):
        ev.mackay_evidence(Phi, t, max_iter=2)
    res = ev.mackay_evidence(Phi, t, max_iter=2, strict=False)
    assert not res.converged and res.n_iter == 2 and res.history.shape == (3, 3)


def test_mackay_divergence_is_an_error():
    Phi, t = _blr_problem(0, 10, 2)
    t_perp = t - Phi @ np.linalg.lstsq(Phi, t, rcond=None)[0]  # orthogonal to range(Phi): m_N = 0
    with pytest.raises(ConvergenceError, match="alpha -> inf"):
        ev.mackay_evidence(Phi, t_perp)
    # an exactly realisable target (t in range(Phi), no noise) drives beta -> inf
    with pytest.raises(ConvergenceError):
        ev.mackay_evidence(Phi, Phi @ np.array([1.0, -2.0]), max_iter=100_000)


def test_gp_type2_ml_gradient_by_finite_differences():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((60, 2))
    K = np.exp(-np.sum((X[:, None] - X[None]) ** 2, -1) / 2)
    Y = np.sin(X[:, :1] * 2) + 0.2 * rng.standard_normal((60, 2))
    res = ev.gp_type2_ml(K, Y)
    assert not res.at_bound

    def f(la, ls):
        return ev.gp_log_evidence(K, Y, amplitude2=math.exp(la), noise_var=math.exp(ls)).log_evidence

    la, ls = math.log(res.amplitude2), math.log(res.noise_var)
    h = 1e-4
    g = [(f(la + h, ls) - f(la - h, ls)) / (2 * h), (f(la, ls + h) - f(la, ls - h)) / (2 * h)]
    # FD truncation ~1e-8 * n, rounding ~1e-10: stationary within 1e-5
    assert np.max(np.abs(g)) < 1e-5, g
    assert np.max(np.abs(res.gradient)) < 1e-6
    assert res.log_evidence == pytest.approx(f(la, ls), rel=1e-12)


# ------------------------------------------------------------------ effective dimension
def test_effective_dimension_limits():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((4, 10))
    H = B.T @ B  # rank 4, d = 10
    lmax = np.linalg.eigvalsh(H)[-1]
    # z -> 0: rank. Rounding eigenvalues are ~1e-15 lmax, each contributing ~1e-15/1e-9 = 1e-6
    assert ev.effective_dimension(H, 1e-9 * lmax) == pytest.approx(4, abs=1e-5)
    # z -> inf: sum lambda / z -> 0
    big = ev.effective_dimension(H, 1e12 * lmax)
    assert 0 < big < 10 * 1e-12 and ev.effective_dimension(H, np.inf) == 0.0
    # monotone decreasing in z, vectorised
    zs = np.logspace(-3, 3, 13) * lmax
    vals = ev.effective_dimension(np.linalg.eigvalsh(H), zs)
    assert vals.shape == (13,) and np.all(np.diff(vals) < 0)
    # full rank: z -> 0 gives d
    assert ev.effective_dimension(np.array([1.0, 2.0, 3.0]), 1e-12) == pytest.approx(3, abs=1e-11)
    with pytest.raises(InvalidInputError):
        ev.effective_dimension(H, 0.0)
    with pytest.raises(ShapeMismatchError):
        ev.effective_dimension(np.ones((2, 3)), 1.0)


# ------------------------------------------------------------------ logistic Laplace vs quadrature
def _log_joint_logistic(X, y, lam):
    sgn = 2.0 * y - 1.0
    d = X.shape[1]
    const = 0.5 * d * math.log(lam / (2 * math.pi))

    def L(W):  # W: (m, d) points -> (m,)
        W = np.atleast_2d(W)
        return np.sum(log_expit((W @ (sgn[:, None] * X).T)), axis=1) + const - 0.5 * lam * np.sum(W * W, axis=1)

    return L


def _brute_force_log_evidence(X, y, lam, lap):
    """ln int exp(L(w)) dw by quadrature in whitened coordinates around the MAP."""
    d = X.shape[1]
    L = _log_joint_logistic(X, y, lam)
    Lstar = L(lap.w)[0]
    s = expit(X @ lap.w)
    H = X.T @ (X * (s * (1 - s))[:, None]) + lam * np.eye(d)
    C = np.linalg.cholesky(np.linalg.inv(H))  # w = w* + C u, dw = det(C) du
    logdetC = np.sum(np.log(np.diag(C)))
    if d == 1:
        val, _ = integrate.quad(
            lambda u: math.exp(L(lap.w + C[0, 0] * u)[0] - Lstar), -14, 14, epsabs=0, epsrel=1e-13, limit=400
        )
    else:
        # trapezoid on an analytic, Gaussian-decaying integrand: error ~exp(-2 pi^2 / h^2), negligible at h = 0.1
        u = np.linspace(-12, 12, 241)
        h = u[1] - u[0]
        U = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
        val = float(np.sum(np.exp(L(lap.w + U @ C.T) - Lstar))) * h * h
    return Lstar + logdetC + math.log(val)


@pytest.mark.parametrize("d", [1, 2])
def test_quadrature_oracle_is_exact_on_a_gaussian(d):
    # sanity check of the brute-force integrator on a case with a closed form: at lam -> Gaussian
    # integrand exp(-u^2/2) the whitened integral is (2 pi)^(d/2); compare within 1e-12
    u = np.linspace(-12, 12, 241)
    h = u[1] - u[0]
    if d == 1:
        val, _ = integrate.quad(lambda x: math.exp(-x * x / 2), -14, 14, epsabs=0, epsrel=1e-13)
    else:
        U = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
        val = float(np.sum(np.exp(-0.5 * np.sum(U * U, 1)))) * h * h
    assert val == pytest.approx((2 * math.pi) ** (d / 2), rel=1e-12)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_logistic_laplace_vs_brute_force(d, seed):
    rng = np.random.default_rng(seed)
    X_all = rng.standard_normal((1280, d))
    w_true = np.array([1.5, -1.0])[:d]
    y_all = (rng.random(1280) < expit(X_all @ w_true)).astype(int)
    gaps = []
    for n in (80, 320, 1280):  # nested data sets
        lap = ev.logistic_laplace_evidence(X_all[:n], y_all[:n], prior_precision=1.0)
        exact = _brute_force_log_evidence(X_all[:n], y_all[:n], 1.0, lap)
        gaps.append(lap.log_evidence - exact)
    gaps = np.abs(gaps)
    print(f"d={d} seed={seed} |Laplace - quadrature| at n=80,320,1280: {gaps}")
    # The Laplace error is O(1/n) (measured ~3.5x per 4x n here); it must shrink monotonically,
    # by at least 2.5x from n=320 to n=1280, and stay below 0.05 nats in these 1-2 parameter models.
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[1] / gaps[2] > 2.5
    assert gaps[0] < 0.05


# ------------------------------------------------------------------ closed-form Hessians vs JAX
def test_softmax_closed_form_matches_jax():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(11)
    n, d, C = 50, 3, 4
    X = rng.standard_normal((n, d))
    y = rng.integers(0, C, n)
    lam = 0.7
    r = ev.softmax_laplace_evidence(X, y, prior_precision=lam, n_classes=C)

    def ll(w):
        Z = jnp.asarray(X) @ w.reshape(d, C)
        return jnp.sum(Z[jnp.arange(n), y] - jax.scipy.special.logsumexp(Z, axis=1))

    def lp(w):
        return 0.5 * d * C * jnp.log(lam / (2 * jnp.pi)) - 0.5 * lam * jnp.sum(w * w)

    rj = ev.laplace_evidence(ll, lp, np.zeros(d * C))
    # same MAP (both at rounding-level Newton decrement) and same Hessian spectrum
    assert r.log_evidence == pytest.approx(rj.log_evidence, rel=1e-11)
    np.testing.assert_allclose(r.hessian_eigenvalues, rj.hessian_eigenvalues, rtol=1e-9)
    np.testing.assert_allclose(r.w, rj.w, atol=1e-9)
    # C = 2 softmax with the same prior is a different model from the sigmoid one: only check it runs
    r2 = ev.softmax_laplace_evidence(X, (y > 1).astype(int), prior_precision=lam)
    assert r2.n_params == 2 * d and r2.is_map


def test_logistic_at_sgd_like_point():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((100, 3))
    y = (X[:, 0] > 0).astype(int)
    m = ev.logistic_laplace_evidence(X, y, prior_precision=1.0)
    off = ev.logistic_laplace_evidence(X, y, prior_precision=1.0, w=m.w * 0.8, find_map=False)
    again = ev.logistic_laplace_evidence(X, y, prior_precision=1.0, w=m.w, find_map=False)
    # at the MAP the formula does not depend on who found the point
    assert again.log_evidence == pytest.approx(m.log_evidence, rel=1e-13)
    assert off.newton_decrement2 > 1e-6 and not off.is_map
    # the log joint is lower away from the MAP (strictly concave)
    assert off.log_likelihood + off.log_prior < m.log_likelihood + m.log_prior


# ------------------------------------------------------------------ errors, mutation
def test_named_errors():
    Phi, t = _blr_problem(0)
    with pytest.raises(ShapeMismatchError):
        ev.blr_log_evidence(Phi, t[:-1], alpha=1.0, beta=1.0)
    bad = Phi.copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteInputError):
        ev.blr_log_evidence(bad, t, alpha=1.0, beta=1.0)
    with pytest.raises(InvalidInputError):
        ev.blr_log_evidence(Phi, t, alpha=-1.0, beta=1.0)
    with pytest.raises(ShapeMismatchError):
        ev.gp_log_evidence(np.eye(3), np.ones(4), amplitude2=1.0, noise_var=0.1)
    # K with a negative eigenvalue and no noise: not positive definite, no jitter added
    with pytest.raises(NotPositiveDefiniteError):
        ev.gp_log_evidence(np.diag([1.0, -1e-3]), np.ones(2), amplitude2=1.0, noise_var=0.0)
    with pytest.raises(InvalidInputError):
        ev.logistic_laplace_evidence(Phi, np.full(Phi.shape[0], 3), prior_precision=1.0)
    with pytest.raises(InvalidInputError):
        ev.logistic_laplace_evidence(Phi, (t > 0).astype(int), prior_precision=0.0)


def test_non_pd_hessian_is_an_error():
    import jax.numpy as jnp

    # a bimodal log joint (improper-curvature point at w = 0): Laplace is undefined there
    def ll(w):
        return jnp.log(jnp.exp(-0.5 * (w[0] - 2) ** 2) + jnp.exp(-0.5 * (w[0] + 2) ** 2))

    def lp(w):
        return -0.5 * jnp.log(2 * jnp.pi * 100.0) - w[0] ** 2 / 200.0

    with pytest.raises(NotPositiveDefiniteError):
        ev.laplace_evidence(ll, lp, np.zeros(1), find_map=False)
    # from a start on one side the MAP is found and Laplace is well defined there
    r = ev.laplace_evidence(ll, lp, np.array([1.0]))
    assert r.is_map and r.w[0] > 1.5


def test_inputs_not_mutated():
    Phi, t = _blr_problem(1)
    P0, t0 = Phi.copy(), t.copy()
    ev.blr_log_evidence(Phi, t, alpha=1.0, beta=1.0)
    ev.mackay_evidence(Phi, t)
    K = Phi @ Phi.T
    K0 = K.copy()
    ev.gp_log_evidence(K, t, amplitude2=1.0, noise_var=1.0)
    ev.gp_type2_ml(K, t)
    np.testing.assert_array_equal(Phi, P0)
    np.testing.assert_array_equal(t, t0)
    np.testing.assert_array_equal(K, K0)


def test_null_model():
    assert ev.uniform_null_log_evidence(100, 10) == pytest.approx(-100 * math.log(10), rel=1e-15)


# ------------------------------------------------------------------ scripts (--smoke)
def _run_script(name, tmp_path):
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py"), "--smoke", "--out-dir", str(out),
         "--json-out", str(out / "m.json")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics == json.loads((out / "m.json").read_text())
    return metrics, out


def test_label_noise_smoke(tmp_path):
    m, out = _run_script("label_noise", tmp_path)
    rows = m["rows"]
    assert [r["corruption"] for r in rows] == [0.0, 0.5, 1.0]
    for r in rows:
        for key in ("corruption", "train_error", "test_error", "rkhs_norm", "log_evidence", "effective_dim", "seconds"):
            assert key in r and np.isfinite(r[key])
        assert r["train_error"] == 0.0  # the exact interpolant memorises every (corrupted) label
        assert r["relative_residual"] <= 1e-10
        assert 0 < r["effective_dim"] < m["n_train"]
    # nested corruption: more corrupted labels, larger RKHS norm, lower evidence (synthetic blobs)
    assert rows[0]["rkhs_norm"] < rows[-1]["rkhs_norm"]
    assert rows[0]["log_evidence"] > rows[-1]["log_evidence"]
    assert rows[0]["test_error"] < rows[-1]["test_error"]
    for f in ("kernel_measures.png", "sgd_noise_scale.png", "evidence_vs_test_error.png", "table.md"):
        assert (out / f).stat().st_size > 0
    assert all(r["noise_scale"] >= 0 for r in m["sgd_runs"])


# ------------------------------------------------------------------ function-space (kernel) logistic Laplace
def _gauss_kernel_factor(Z, s):
    """Gaussian kernel K on Z and an X with X X^T = K (eigen-factor): any PSD K is a linear kernel."""
    D2 = np.sum((Z[:, None, :] - Z[None, :, :]) ** 2, axis=-1)
    K = np.exp(-D2 / (2 * s * s))
    lam, U = np.linalg.eigh(K)
    X = U * np.sqrt(np.clip(lam, 0, None))
    return X @ X.T, X


@pytest.mark.parametrize("shape", [(30, 80), (60, 12), (25, 25)])
@pytest.mark.parametrize("lam", [1e-4, 0.3, 30.0])
def test_kernel_logistic_equals_weight_space(shape, lam):
    n, d = shape
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, 2, n)
    rw = ev.logistic_laplace_evidence(X, y, prior_precision=lam)
    rk = ev.kernel_logistic_laplace_evidence(X @ X.T / lam, y)
    # same mode, both Newton-polished to rounding level: agreement to ~1e-12 measured, 1e-9 allowed
    assert rk.log_evidence == pytest.approx(rw.log_evidence, rel=1e-9, abs=1e-9)
    assert rk.log_likelihood == pytest.approx(rw.log_likelihood, rel=1e-9, abs=1e-9)
    # -1/2 a^T f = -lam/2 ||w||^2 (the Gaussian log prior without its normaliser)
    assert rk.log_prior_quadratic == pytest.approx(-0.5 * lam * rw.w @ rw.w, rel=1e-9, abs=1e-9)
    # ln|B| = ln det H - d ln lam (Sylvester)
    assert rk.log_det_B == pytest.approx(rw.log_det_hessian - d * math.log(lam), rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(X.T @ rk.a / lam, rw.w, rtol=1e-8, atol=1e-10 * np.abs(rw.w).max())
    np.testing.assert_allclose(rk.f, X @ rw.w, rtol=1e-8, atol=1e-9)
    assert rk.effective_dim == pytest.approx(rw.effective_dim(lam, prior_precision=lam), rel=1e-9, abs=1e-9)
    assert rk.log_occam_factor == pytest.approx(rk.log_evidence - rk.log_likelihood, rel=1e-12, abs=1e-12)
    assert rk.is_map and rk.newton_decrement2 < 1e-18 * max(1.0, abs(rk.log_evidence))  # at rounding level


@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_logistic_nonlinear_kernel_equals_weight_space(seed):
    # a Gaussian kernel is X X^T for its eigen-factor X, so the weight-space Laplace is the oracle
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((40, 3))
    y = (Z[:, 0] + 0.5 * rng.standard_normal(40) > 0).astype(int)
    K, X = _gauss_kernel_factor(Z, 1.5)
    K = 0.5 * (K + K.T)
    rk = ev.kernel_logistic_laplace_evidence(4.0 * K, y)
    rw = ev.logistic_laplace_evidence(X, y, prior_precision=0.25)
    assert rk.log_evidence == pytest.approx(rw.log_evidence, rel=1e-9, abs=1e-9)  # rounding level, as above


def test_kernel_logistic_vs_brute_force_one_point():
    # n = 1: the evidence is a 1-D integral; Laplace != exact, but its formula can be checked by hand:
    # mode f* solves f = k (y - sigmoid(f)); ln q = ln sigmoid(f*) - f*^2/(2k) - 1/2 ln(1 + k W)
    k, y = 2.5, np.array([1])
    r = ev.kernel_logistic_laplace_evidence(np.array([[k]]), y)
    from scipy.optimize import brentq

    f = brentq(lambda t: t - k * (1 - expit(t)), -10, 10, xtol=1e-15)
    W = expit(f) * expit(-f)
    want = float(log_expit(f)) - f * f / (2 * k) - 0.5 * math.log(1 + k * W)
    assert r.log_evidence == pytest.approx(want, rel=1e-12)  # closed form, rounding level
    # and the Laplace value is close to the exact 1-D integral (not equal: the posterior is skewed)
    exact = math.log(integrate.quad(lambda t: expit(t) * math.exp(-t * t / (2 * k)) / math.sqrt(2 * math.pi * k),
                                    -60, 60, epsabs=1e-14)[0])
    assert exact == pytest.approx(-math.log(2), abs=1e-10)  # E[sigmoid(f)] = 1/2 for a symmetric prior
    assert abs(r.log_evidence - exact) < 0.1  # measured 0.021: the Laplace error for one logistic factor


def test_kernel_logistic_warm_start_and_no_mutation():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 50))
    y = rng.integers(0, 2, 30)
    G = X @ X.T
    G0 = G.copy()
    r1 = ev.kernel_logistic_laplace_evidence(G / 1.0, y)
    a0 = r1.a * (0.1 / 1.0)  # same logits under K = G / 0.1
    a0c = a0.copy()
    cold = ev.kernel_logistic_laplace_evidence(G / 0.1, y)
    warm = ev.kernel_logistic_laplace_evidence(G / 0.1, y, a=a0)
    assert warm.log_evidence == pytest.approx(cold.log_evidence, rel=1e-12, abs=1e-12)  # same mode
    assert warm.n_iter <= cold.n_iter
    np.testing.assert_array_equal(G, G0)
    np.testing.assert_array_equal(a0, a0c)


def test_kernel_logistic_errors(caplog):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((10, 20))
    K = X @ X.T
    y = rng.integers(0, 2, 10)
    with pytest.raises(InvalidInputError):
        ev.kernel_logistic_laplace_evidence(K + np.triu(np.ones((10, 10)), 1), y)  # not symmetric
    with pytest.raises(NotPositiveDefiniteError):
        ev.kernel_logistic_laplace_evidence(-100.0 * np.eye(10), np.ones(10, dtype=int))
    with pytest.raises(ShapeMismatchError):
        ev.kernel_logistic_laplace_evidence(K[:, :9], y)
    with pytest.raises(ShapeMismatchError):
        ev.kernel_logistic_laplace_evidence(K, y, a=np.zeros(9))
    with pytest.raises(InvalidInputError):
        ev.kernel_logistic_laplace_evidence(K, y + 1)  # labels must be 0/1
    with pytest.raises(NonFiniteInputError):
        ev.kernel_logistic_laplace_evidence(K, y, a=np.full(10, np.nan))
    with pytest.raises(ConvergenceError):
        ev.kernel_logistic_laplace_evidence(K / 1e-4, y, max_newton=1)
    r = ev.kernel_logistic_laplace_evidence(K / 1e-4, y, max_newton=1, strict=False)
    assert not r.is_map and r.newton_decrement2 > 0
    assert any("did not reach the mode" in rec.message for rec in caplog.records)


def test_evidence_factor_is_the_package_eigh_factor(rng):
    """One factor class for one matrix: evidence reuses kernelgen.factors.EighFactor (issue: seams)."""
    from kernelgen.factors import Factor

    X = rng.normal(size=(40, 3))
    K = X @ X.T + np.eye(40)
    fac = EighFactor.factor(K)
    assert isinstance(fac, Factor)
    # the leftovers are gone: one constructor (EighFactor.factor), no evidence alias
    assert not hasattr(ev, "factor_kernel") and not hasattr(ev, "KernelEigenFactor")
    # the same factor serves the evidence scan and the minimum-norm solve (pinv = inverse here, PD)
    y = rng.normal(size=40)
    np.testing.assert_allclose(fac.solve(y), np.linalg.solve(K, y), rtol=1e-10)
    res = ev.gp_type2_ml(fac, y)
    assert res.factor is fac
    # the symmetry rule is the package's: a large asymmetry is refused at every size
    Kb = K.copy()
    Kb[0, 1] += 1e-3
    with pytest.raises(InvalidInputError):
        EighFactor.factor(Kb)
    with pytest.raises(InvalidInputError):
        ev.gp_type2_ml(Kb, y)
