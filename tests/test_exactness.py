"""Certified exactness: every number kernelgen reports is right, or it refuses (regression tests).

Each regression example runs on every backend ("scipy", "jax") and, where it applies, on both
solvers ("cholesky", "min_norm"). Oracles are closed forms (K = I), exact integer arithmetic,
independent dense float64 computations, or textbook bounds (CG); every tolerance carries its
justification in a comment. Not duplicated here: the JAX first-failing-pivot index for
``solver="cholesky"`` (tests/test_seams.py).
"""

import math
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernelgen.solvers._refine as refine_mod
from kernelgen import SolveOptions, kernel_interpolate, kernel_matrix, min_norm_solve
from kernelgen.errors import (
    ConvergenceError,
    InterpolationWarning,
    MemoryBudgetError,
    NonFiniteResultError,
    NotPositiveDefiniteError,
    SingularSystemError,
)
from kernelgen.kernels import Gaussian, Polynomial, kernel_matrix_jax
from kernelgen.solvers import refine

EPS = float(np.finfo(np.float64).eps)
BACKENDS = ("scipy", "jax")
SOLVERS = ("cholesky", "min_norm")
both = pytest.mark.parametrize("backend", BACKENDS)
solvers = pytest.mark.parametrize("solver", SOLVERS)


# ============================================================================ 1. non-finite never passes
@both
@solvers
def test_overflowing_polynomial_kernel_is_refused_with_the_reason(backend, solver):
    Z = np.random.default_rng(20261129).normal(size=(40, 10))
    y = np.random.default_rng(1).normal(size=40)
    # (|z|^2 + 1)^400 with |z|^2 ~ 10 is ~ 11^400 = 1e416 > 1.8e308: the kernel is not representable
    with pytest.raises(NonFiniteResultError) as ei:
        kernel_interpolate(Z, y, kernel=Polynomial(degree=400), backend=backend, solver=solver)
    msg = str(ei.value)
    assert "not finite" in msg and "overflow" in msg and "Polynomial(degree=400" in msg


FAR = np.array([[0.0], [1e160], [2e160]])


@both
@solvers
def test_points_1e160_apart_give_the_identity_and_alpha_equals_y(backend, solver):
    y = np.array([1.0, 2.0, 3.0])
    fit = kernel_interpolate(FAR, y, kernel=Gaussian(bandwidth=1.0), backend=backend, solver=solver)
    # exp(-(1e160)^2 / 2) = 0 exactly in float64 (and in R it is < 1e-300): K = I, alpha = y bit for bit
    np.testing.assert_array_equal(fit.alpha, y)
    assert fit.relative_residual == 0.0


def test_kernel_matrix_and_classifier_of_points_1e160_apart():
    from kernelgen.estimators import KernelInterpolationClassifier

    np.testing.assert_array_equal(kernel_matrix(FAR, kernel=Gaussian(bandwidth=1.0)), np.eye(3))  # exact (above)
    for backend in BACKENDS:
        clf = KernelInterpolationClassifier(kernel=Gaussian(bandwidth=1.0), backend=backend).fit(FAR, [7, 8, 9])
        np.testing.assert_array_equal(clf.predict(FAR), [7, 8, 9])  # K = I: each point predicts its own label


def test_min_norm_solve_refuses_an_overflowing_answer():
    # X = diag(1e-320) (subnormal, rank 2 relative to its own scale): X^+ 1 = 1e320 > 1.8e308 overflows
    with pytest.raises(NonFiniteResultError, match="not representable"):
        min_norm_solve(np.diag([1e-320, 1e-320]), np.ones(2))


@both
@solvers
def test_tiny_bandwidth_gives_the_identity(backend, solver):
    X = np.array([[0.0], [1.0], [2.0]])
    y = np.array([1.0, -2.0, 3.0])
    g = Gaussian(bandwidth=1e-170)
    # s^2 = 1e-340 underflows; the exact entries exp(-1 / 2e-340) are 0 in float64: K = I, alpha = y exactly
    np.testing.assert_array_equal(kernel_matrix(X, kernel=g), np.eye(3))
    fit = kernel_interpolate(X, y, kernel=g, backend=backend, solver=solver)
    np.testing.assert_array_equal(fit.alpha, y)
    assert fit.relative_residual == 0.0


def _nan_on_call(k, A):
    """A matvec that returns A V until its k-th call, then NaN (a kernel that overflows mid-run)."""
    calls = {"n": 0}

    def mv(V):
        calls["n"] += 1
        out = A @ V
        return out * np.nan if calls["n"] >= k else out

    return mv


@pytest.mark.parametrize("method", ["cg", "richardson"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_every_convergence_test_fails_on_nan(method, k):
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    A = (Q * np.linspace(1, 10, 20)) @ Q.T
    Y = rng.normal(size=(20, 2))
    # a NaN residual compares False with every tolerance: it must raise, never return rel = nan
    with pytest.raises(NonFiniteResultError):
        refine(_nan_on_call(k, A), lambda R: 0.5 * R, Y, tol=1e-10, max_iter=50, method=method)


@pytest.mark.parametrize("method", ["cg", "richardson"])
def test_nan_preconditioner_fails(method):
    A = np.diag(np.linspace(1, 4, 10))
    with pytest.raises(NonFiniteResultError):
        refine(lambda V: A @ V, lambda R: R * np.nan, np.ones((10, 1)), method=method,
               alpha0=np.zeros((10, 1)))


# ============================================================================ 2. cancellation
K_IDX = np.arange(200)
Y_SIN = np.sin(K_IDX / 10)
S005 = 0.005
G005 = Gaussian(bandwidth=S005)


def _exact_difference_kernel(X):
    """Gaussian(0.005) on one feature from differences: (x_i - x_j) has no cancellation.

    Returns K and a bound B on each entry's rounding error: K_ij = exp(-E_ij) with E_ij computed
    to a few ulps relative, so |dK_ij| <= 4 eps K_ij max(1, E_ij) (<= 1.5 eps since E e^-E <= 1/e).
    """
    Dx = X - X.T
    E = Dx**2 / (2 * S005**2)
    K = np.exp(-E)
    return K, 4 * EPS * K * np.maximum(1.0, E)


def _accurate_system(X):
    """The oracle for data X far from the origin: X - mean(X) is exact (Sterbenz: all x within a factor 2
    of the mean), the same points translated, so the exact kernel is the same."""
    Xc = X - X.mean()
    K, B = _exact_difference_kernel(Xc)
    return K, B, sla.solve(K, Y_SIN, assume_a="pos")


ALL_COMBOS = [(b, s) for b in BACKENDS for s in SOLVERS]


def _combos(xfail=()):
    # (an earlier xfail list lived here: the JAX entries lacked the near-duplicate recomputation; fixed)
    return [pytest.param(b, s) for b, s in ALL_COMBOS]


def test_jax_kernel_entries_are_accurate_far_from_the_origin():
    from kernelgen._jax import enable_x64

    X = (1e4 + S005 * K_IDX)[:, None]
    Ke, B, _ = _accurate_system(X)
    with enable_x64():
        Kj = np.asarray(kernel_matrix_jax(X, kernel=G005))
    # each entry to its rounding bound (a few ulps of the exponent), plus 8 eps for the library's own rounding
    assert np.all(np.abs(Kj - Ke) <= B + 8 * EPS), np.abs(Kj - Ke).max()


def test_scipy_kernel_entries_are_accurate_far_from_the_origin():
    X = (1e4 + S005 * K_IDX)[:, None]
    Ke, B, _ = _accurate_system(X)
    K = kernel_matrix(X, kernel=G005)
    assert np.all(np.abs(K - Ke) <= B + 8 * EPS), np.abs(K - Ke).max()  # as above


@pytest.mark.parametrize("backend,solver", _combos({("jax", "cholesky"), ("jax", "min_norm")}))
def test_cancellation_offset_1e4_matches_the_centred_solve(backend, solver):
    X = (1e4 + S005 * K_IDX)[:, None]
    Ke, B, ref = _accurate_system(X)
    assert np.linalg.cond(Ke) < 70
    fit = kernel_interpolate(X, Y_SIN, kernel=G005, backend=backend, solver=solver)
    # Entries accurate to |dK_ij| <= 1.5 eps with random signs: ||dK||_2 ~ a few 1e-15, and alpha moves by
    # <= ||dK|| / lambda_min = ||dK|| / 0.036 ~ 1e-13; 1e-12 (the bound) leaves 10x. The solve's own
    # float64 residual (<= 1e-10 promised) is ~1e-16 in practice. Measured (scipy): 6e-16 / 2e-14 (min_norm).
    err = np.linalg.norm(fit.alpha - ref) / np.linalg.norm(ref)
    assert err <= 1e-12, err


@pytest.mark.parametrize("backend,solver", ALL_COMBOS)
def test_cancellation_offset_1e6_is_solved_within_c_eps_kappa(backend, solver):
    c = 1e6
    X = (c + S005 * K_IDX)[:, None]
    Ke, _, ref = _accurate_system(X)
    lam = np.linalg.eigvalsh(Ke)
    assert 60 < lam[-1] / lam[0] < 80  # the well-conditioned system of the issue (kappa ~ 69): solve, not refuse
    fit = kernel_interpolate(X, Y_SIN, kernel=G005, backend=backend, solver=solver)
    # Worst case for a computation done at the magnitude c: each coordinate moved independently by
    # eps * c (= 2.2e-10, i.e. 4.4e-8 bandwidths). Then |dK_ij| <= |t e^{-t^2/2}| * 2 eps c / s (t = |x_i -
    # x_j| / s, a multiple of 1 here), a row sum <= 2 * 0.92 * 2 eps c / s = 3.7 eps c / s, ||dK||_2 <= that
    # (Gershgorin), and ||d alpha|| / ||alpha|| <= ||dK||_2 / lambda_min (first order) -- the c eps kappa
    # term -- plus kappa * 1e-10 from the solve's own residual tolerance. Total ~4.6e-6 here; measured
    # ~1e-12. A kernel that does not centre errs by eps c^2 / s^2 ~ 9 in the exponent (garbage).
    tol = 3.7 * EPS * c / S005 / lam[0] + (lam[-1] / lam[0]) * 1e-10
    err = np.linalg.norm(fit.alpha - ref) / np.linalg.norm(ref)
    assert err <= tol, (err, tol)
    assert fit.relative_residual <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_norm_residual_is_recomputed_and_agrees_with_an_independent_one(backend):
    X = (1e4 + S005 * K_IDX)[:, None]
    fit = kernel_interpolate(X, Y_SIN, kernel=G005, backend=backend, solver="min_norm")
    assert fit.residual_mode == "recomputed"  # an independent float64 pass, not the eigendecomposition's
    K = kernel_matrix(X, kernel=G005)
    indep = np.linalg.norm(Y_SIN - K @ fit.alpha) / np.linalg.norm(Y_SIN)
    # two float64 evaluations of Y - K alpha (other summation order; entries each within 1.5 eps, see
    # _exact_difference_kernel) differ by <= ((n + 16) eps || |K| |alpha| ||) / ||Y|| (gamma_n, Higham
    # Thm 3.5) = 4.5e-14 absolute here, on a residual of ~2e-15.
    floor = (len(Y_SIN) + 16) * EPS * np.linalg.norm(np.abs(K) @ np.abs(fit.alpha)) / np.linalg.norm(Y_SIN)
    assert abs(fit.relative_residual - indep) <= floor, (fit.relative_residual, indep, floor)
    assert fit.relative_residual <= 1e-10


@pytest.mark.parametrize("backend,solver", _combos({("jax", "cholesky")}))
def test_reported_residual_is_the_residual_of_the_accurate_system(backend, solver):
    """The reported residual equals an independent one computed with exact-difference entries."""
    X = (1e4 + S005 * K_IDX)[:, None]
    Ke, B, _ = _accurate_system(X)
    fit = kernel_interpolate(X, Y_SIN, kernel=G005, backend=backend, solver=solver)
    indep = np.linalg.norm(Y_SIN - Ke @ fit.alpha) / np.linalg.norm(Y_SIN)
    # |reported - indep| <= ||(K_lib - Ke) alpha|| / ||Y|| + the rounding of the two products (n u each, u =
    # eps / 2, Higham Thm 3.5): (n + 16) eps || |Ke| |alpha| ||; entries of both within B (plus 8 eps absolute
    # where Ke is not negligible, as in the entry test above). Here ~5e-14 in all, on residuals ~1e-16.
    a = np.abs(fit.alpha)
    entry = 2 * B + 8 * EPS * (Ke > EPS)
    floor = ((len(Y_SIN) + 16) * EPS * np.linalg.norm(np.abs(Ke) @ a) + np.linalg.norm(entry @ a)) \
        / np.linalg.norm(Y_SIN)
    assert abs(fit.relative_residual - indep) <= floor, (fit.relative_residual, indep, floor)


# ============================================================================ 3. tolerances follow precision
def _float32_psd(seed=0):
    rng = np.random.default_rng(seed)
    J = rng.normal(size=(200, 50)).astype(np.float32)
    return J, J @ J.T  # product in float32: full rank in float64 (eigenvalues +-2e-5 from rounding)


@both
def test_float32_precomputed_kernel_rank_and_pinv(backend):
    J, K = _float32_psd()
    K64 = K.astype(np.float64)
    w = np.linalg.eigvalsh(K64)
    # the float32 rounding floor (|lambda| <= 2.4e-5) and the rank-50 spectrum (>= 46) are 6 decades apart:
    # any relative cut-off in [1e-6, 1e-2] of lambda_max = 424 gives the same oracle
    assert np.abs(w[:150]).max() < 1e-4 and w[150] > 40
    rng = np.random.default_rng(1)
    U = np.linalg.eigh(K64)[1][:, 150:]
    Y = U @ rng.normal(size=(50, 3))  # exactly (to float64 rounding) in the range of the rank-50 part
    with warnings.catch_warnings():
        warnings.simplefilter("error", InterpolationWarning)  # Y is in the range: no warning may fire
        fit = kernel_interpolate(K, Y, kernel="precomputed", solver="min_norm", backend=backend)
    assert fit.rank == 50  # float32's n * eps32 * lambda_max = 0.01 cut-off, not float64's (rank 200)
    oracle = np.linalg.pinv(K64, rcond=1e-4, hermitian=True) @ Y
    # kappa of the rank-50 part = 424 / 46 = 9.2; the eigensolver's backward error n eps ||K|| moves the
    # kept eigenspace by <= n eps ||K|| / gap (gap ~ 46): alpha within 100 * kappa * n * eps relative
    err = np.linalg.norm(fit.alpha - oracle) / np.linalg.norm(oracle)
    assert err <= 100 * 9.2 * 200 * EPS, err


@both
def test_float32_precomputed_kernel_does_not_call_its_own_rounding_inconsistency(backend):
    J, K = _float32_psd()
    Y = J.astype(np.float64) @ np.random.default_rng(2).normal(size=(50, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InterpolationWarning)
        kernel_interpolate(K, Y, kernel="precomputed", solver="min_norm", backend=backend)


# ============================================================================ 4. indefinite K, min_norm
@both
def test_min_norm_refuses_an_indefinite_precomputed_kernel(backend):
    K = np.array([[1.0, 2, 0], [2, 1, 0], [0, 0, 1]])  # eigenvalues 3, 1, -1: -1 is far beyond rounding
    with pytest.raises(NotPositiveDefiniteError):
        kernel_interpolate(K, np.ones(3), kernel="precomputed", solver="min_norm", backend=backend)


# ============================================================================ 7. guarded work
def test_kernel_matrix_refused_before_allocating():
    import tracemalloc

    X = np.zeros((30_000, 2))
    tracemalloc.start()
    try:
        with pytest.raises(MemoryBudgetError) as ei:
            kernel_matrix(X, kernel=Gaussian(bandwidth=1.0), memory_budget=10**9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ei.value.bytes_needed == 30_000**2 * 8 and ei.value.bytes_available == 10**9  # 7.2 GB > 1 GB
    assert peak < 10 * 2**20  # refused before any n x n (or n x tile) block: NumPy reports to tracemalloc


def _duplicates(consistent):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 3))
    X[7] = X[2]
    y = rng.normal(size=20)
    if consistent:
        y[7] = y[2]
    return X, y


@both
def test_conflicting_duplicates_warn_or_raise_under_min_norm(backend):
    X, y = _duplicates(consistent=False)
    with pytest.warns(InterpolationWarning, match="does not interpolate"):
        fit = kernel_interpolate(X, y, kernel=Gaussian(bandwidth=1.0), solver="min_norm", backend=backend)
    assert fit.rank == 19
    # the least-squares fit averages the two conflicting targets: its residual is (y2 - y7)/sqrt(2) / ||y||
    # in the duplicated direction (exact for min-norm least squares), to the solve's 1e-10
    expect = abs(y[2] - y[7]) / np.sqrt(2) / np.linalg.norm(y)
    assert fit.relative_residual == pytest.approx(expect, rel=1e-8)
    with pytest.raises(SingularSystemError):
        kernel_interpolate(X, y, kernel=Gaussian(bandwidth=1.0), solver="min_norm", backend=backend,
                           options=SolveOptions(require_interpolation=True))


@both
def test_consistent_duplicates_interpolate_and_split_evenly(backend):
    X, y = _duplicates(consistent=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InterpolationWarning)
        fit = kernel_interpolate(X, y, kernel=Gaussian(bandwidth=1.0), solver="min_norm", backend=backend,
                                 options=SolveOptions(require_interpolation=True))
    assert fit.rank == 19 and fit.relative_residual <= 1e-10
    # min-norm: alpha has no component along e_2 - e_7 (the null vector), so alpha_2 = alpha_7; relative
    # to |alpha|, kappa(rank-19 part) * 1e-10 at most -- measured ~1e-15
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=1.0))
    w = np.linalg.eigvalsh(K)
    assert abs(fit.alpha[2] - fit.alpha[7]) <= w[-1] / w[1] * 1e-10 * np.linalg.norm(fit.alpha)


# ============================================================================ 8. tests that notice a broken solver
def _spd(eigenvalues, seed):
    rng = np.random.default_rng(seed)
    n = len(eigenvalues)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = (Q * np.asarray(eigenvalues, dtype=float)) @ Q.T
    return (A + A.T) / 2


def _cg_bound(A, M_inv_diag, Y, alpha0, tol):
    """Passes PCG may use in exact arithmetic: initial + k + verifying, k from the textbook bound.

    PCG minimises the A-norm error over the Krylov space of the preconditioned operator:
    ||e_k||_A <= 2 rho^k ||e_0||_A, rho = (sqrt(k_M) - 1) / (sqrt(k_M) + 1) (Saad, Iterative Methods,
    Thm 6.29 / 9.x). With ||r||_2 <= sqrt(lambda_max) ||e||_A and ||e_0||_A <= ||r_0||_2 / sqrt(lambda_min):
    ||r_k|| <= 2 sqrt(kappa(A)) rho^k ||r_0||; kernelgen's inner loop stops at ||r_k|| <= tol / 2 ||Y||.
    """
    S = np.sqrt(M_inv_diag)
    kM = np.linalg.cond((A * S[:, None]) * S[None, :])
    rho = (math.sqrt(kM) - 1) / (math.sqrt(kM) + 1)
    r0 = np.linalg.norm(Y - A @ alpha0, axis=0).max() / np.linalg.norm(Y)
    k = math.ceil(math.log(2 * math.sqrt(np.linalg.cond(A)) * r0 / (0.5 * tol)) / math.log(1 / rho))
    textbook = math.ceil(math.log(2 / tol) / math.log(1 / rho))  # the A-norm form, for the report only
    return k + 2, textbook + 2, kM


def test_cg_terminates_in_m_steps_with_m_distinct_eigenvalues():
    A = _spd(np.repeat([1.0, 2.0, 5.0, 10.0, 50.0], 12), seed=5)  # n = 60, m = 5 distinct eigenvalues
    Y = np.random.default_rng(6).normal(size=(60, 2))
    res = refine(lambda V: A @ V, lambda R: R, Y, tol=1e-10, max_iter=100, method="cg")
    assert res.relative_residual <= 1e-10
    # exact-arithmetic CG ends in <= m = 5 steps; + initial + verifying pass; +1 for rounding (the
    # recursive residual can need one more step to reach tol / 2). Steepest descent contracts by
    # (50 - 1) / (50 + 1) per step: ~600 passes. Measured: 6.
    assert res.n_matvecs <= 5 + 2 + 1, res.n_matvecs


JACOBI_CASES = [(10.0, 7), (100.0, 8), (1e4, 9)]


def _jacobi_system(kappa, seed):
    rng = np.random.default_rng(seed)
    A0 = _spd(np.logspace(0, np.log10(kappa), 60), seed)
    S = np.sqrt(rng.uniform(1, 100, size=60))
    A = (A0 * S[:, None]) * S[None, :]  # badly scaled: Jacobi undoes most of it
    return A, 1.0 / np.diag(A), rng.normal(size=(60, 2))


@pytest.mark.parametrize("kappa,seed", JACOBI_CASES)
def test_pcg_passes_within_the_cg_bound(kappa, seed):
    A, dinv, Y = _jacobi_system(kappa, seed)
    res = refine(lambda V: A @ V, lambda R: R * dinv[:, None], Y, tol=1e-10, max_iter=2000, method="cg")
    bound, textbook, kM = _cg_bound(A, dinv, Y, Y * dinv[:, None], 1e-10)
    assert res.relative_residual <= 1e-10
    # +1 for rounding (recursive vs true residual); steepest descent needs ~k_M/2 ln(1/tol) ~ 11 k_M
    assert res.n_matvecs <= bound + 1, (res.n_matvecs, bound, textbook, kM)


def _steepest_descent_pcg(product, direct_product, precond, Y, alpha, R, normY, tol, budget, record, ritz, drift):
    """A mutation of kernelgen's _pcg: search direction P = Z (no conjugacy), exact line search."""
    used = 0
    while used < budget:
        Z = precond(R)
        Q, _ = product(Z)
        used += 1
        a = np.einsum("ij,ij->j", R, Z) / np.einsum("ij,ij->j", Z, Q)
        alpha = alpha + Z * a
        R = R - Q * a
        rel = float(np.linalg.norm(R) / normY)
        record("sd", rel)
        if rel <= 0.5 * tol:
            break
    KA, KabsA = direct_product(alpha)
    R = Y - KA
    rel = float(np.linalg.norm(R) / normY)
    record("verified", rel)
    return alpha, R, rel, used + 1, "direct", KabsA


def test_the_pass_bounds_reject_steepest_descent(monkeypatch):
    """Negative control: with kernelgen's CG replaced by steepest descent, both bounds above are violated."""
    monkeypatch.setattr(refine_mod, "_pcg", _steepest_descent_pcg)
    A = _spd(np.repeat([1.0, 2.0, 5.0, 10.0, 50.0], 12), seed=5)
    Y = np.random.default_rng(6).normal(size=(60, 2))
    res = refine(lambda V: A @ V, lambda R: R, Y, tol=1e-10, max_iter=5000, method="cg")
    assert res.n_matvecs > 5 + 2 + 1
    A, dinv, Y = _jacobi_system(100.0, 8)
    res = refine(lambda V: A @ V, lambda R: R * dinv[:, None], Y, tol=1e-10, max_iter=5000, method="cg")
    assert res.n_matvecs > _cg_bound(A, dinv, Y, Y * dinv[:, None], 1e-10)[0] + 1


# ---------------------------------------------------------------------------- scale invariance
def _min_norm_cases():
    rng = np.random.default_rng(10)
    yield "wide", rng.normal(size=(6, 15)), 6
    yield "tall", rng.normal(size=(15, 6)), 6
    yield "wide rank 3", rng.normal(size=(6, 3)) @ rng.normal(size=(3, 15)), 3
    yield "tall rank 3", rng.normal(size=(15, 3)) @ rng.normal(size=(3, 6)), 3


SCALES = (1e-150, 1e-8, 1e8, 1e150)


@pytest.mark.parametrize("case", list(_min_norm_cases()), ids=lambda c: c[0])
def test_min_norm_solve_is_scale_invariant(case):
    _, X, rank = case
    y = X @ np.random.default_rng(11).normal(size=X.shape[1])  # consistent: the min-norm solution interpolates
    base = min_norm_solve(X, y)
    assert base.rank == rank
    s = np.linalg.svd(X, compute_uv=False)
    kappa = s[0] / s[rank - 1]
    for c in SCALES:
        sol = min_norm_solve(c * X, y)
        # an absolute rank cut-off would lose all (c = 1e-150) or keep noise directions (c = 1e150)
        assert sol.rank == rank, (c, sol.rank)
        # c X carries a relative rounding of eps per entry; both solves are backward stable: the min-norm
        # solution of a consistent system moves by <= ~kappa * max(m, d) * eps relative (Golub & Van Loan
        # 5.5/5.6); 100x for constants. Measured <= 6e-15.
        err = np.linalg.norm(c * sol.coef - base.coef) / np.linalg.norm(base.coef)
        assert err <= 100 * kappa * max(X.shape) * EPS, (c, err)


@both
def test_precomputed_min_norm_is_scale_invariant(backend):
    rng = np.random.default_rng(12)
    J = rng.normal(size=(30, 10))
    K = J @ J.T  # rank 10
    Y = K @ rng.normal(size=(30, 2))
    base = kernel_interpolate(K, Y, kernel="precomputed", solver="min_norm", backend=backend)
    w = np.linalg.eigvalsh(K)
    kappa = w[-1] / w[-10]
    assert base.rank == 10
    for c in SCALES:
        fit = kernel_interpolate(c * K, Y, kernel="precomputed", solver="min_norm", backend=backend)
        assert fit.rank == 10, (c, fit.rank)
        # as above with the eigensolver's backward error n eps ||K||: kappa * n * eps relative, 100x constants
        err = np.linalg.norm(c * fit.alpha - base.alpha) / np.linalg.norm(base.alpha)
        assert err <= 100 * kappa * 30 * EPS, (c, err)
        assert fit.relative_residual <= 1e-10


# ---------------------------------------------------------------------------- cross-kernel blocks
def test_cross_kernel_block_of_differently_ranged_images_is_exact():
    rng = np.random.default_rng(13)
    Xi = rng.integers(0, 256, size=(40, 784))  # training "images", bytes / 255
    Zi = rng.integers(0, 101, size=(25, 784))  # darker test images
    X, Z = Xi / 255.0, Zi / 255.0
    V = rng.normal(size=(40, 3))
    D = ((Zi[:, None, :] - Xi[None, :, :]) ** 2).sum(-1)  # int64, exact (< 784 * 255^2 = 5.1e7)
    E = D / 255.0**2 / (2 * 25.0)  # ||z - x||^2 / (2 s^2), s = 5, to 2 ulps
    Ke = np.exp(-E)
    out = Gaussian(bandwidth=5.0).apply(Z, X, V)
    ref = Ke @ V
    # X / 255 and Z / 255 carry 1/2 ulp each and the library's exponent a few more roundings: E is exact to
    # <= 8 ulps, so entries agree within (4 + 8 E) eps relative (E <= 16 here; the oracle's exp adds 1 ulp);
    # the two products within 40 eps |K| |V| (gamma_40) + 16 eps for the blockwise sums.
    bound = ((40 + 16) * EPS * np.abs(Ke) + (4 + 8 * E) * EPS * Ke) @ np.abs(V)
    assert np.all(np.abs(out - ref) <= bound), np.max(np.abs(out - ref) / bound)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= 1e-13  # the figure; measured 6e-16
    from kernelgen._jax import enable_x64

    with enable_x64():  # the JAX block of the same pair, entry by entry (same per-entry bound as above)
        Kj = np.asarray(kernel_matrix_jax(Z, X, kernel=Gaussian(bandwidth=5.0)))
    assert np.all(np.abs(Kj - Ke) <= (4 + 8 * E) * EPS * Ke), np.max(np.abs(Kj - Ke) / Ke)
    Ks = kernel_matrix(Z, X, kernel=Gaussian(bandwidth=5.0))  # and SciPy's block (measured <= 1.7 (4 + 2 E) eps)
    assert np.all(np.abs(Ks - Ke) <= (4 + 8 * E) * EPS * Ke), np.max(np.abs(Ks - Ke) / Ke)


# ---------------------------------------------------------------------------- every result meets its tol
_A_INV = _spd(np.logspace(0, 2, 40), seed=14)  # kappa = 100: float64 floor eps * kappa ~ 2e-14 << 1e-12
# M = A + D, 0 <= D <= 0.3 I and A >= I: Richardson's iteration matrix M^-1 D has spectral radius <= ||D|| ||M^-1||
# <= 0.3, so every step at least halves the residual and the stall rule (no halving in 3 steps) cannot end a run
# that converges (with D up to 20 I the contraction reached ~0.95 and hypothesis found starts that stall)
_M_INV = sla.cho_factor(_A_INV + np.diag(np.random.default_rng(15).uniform(0, 0.3, 40)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["cg", "richardson"]), log_tol=st.floats(-12, -6),
       factor=st.floats(2, 50), seed=st.integers(0, 2**31 - 1))
def test_every_returned_result_meets_tol_from_starts_just_above_it(method, log_tol, factor, seed):
    tol = 10.0**log_tol
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(40, 2))
    exact = sla.solve(_A_INV, Y, assume_a="pos")
    P = rng.normal(size=(40, 2))
    # scale the perturbation so that ||Y - A alpha0|| / ||Y|| = factor * tol (2..50x tol): a loop that
    # stops at 10 tol (or compares the recursive residual only) returns without meeting tol
    P *= factor * tol * np.linalg.norm(Y) / np.linalg.norm(_A_INV @ P)
    alpha0 = exact + P
    r0 = np.linalg.norm(Y - _A_INV @ alpha0) / np.linalg.norm(Y)
    assert 1.5 * tol < r0 < 60 * tol  # the start is just above tol (exact's own residual is ~1e-15)
    res = refine(lambda V: _A_INV @ V, lambda R: sla.cho_solve(_M_INV, R), Y, tol=tol, max_iter=200,
                 method=method, alpha0=alpha0)
    assert res.relative_residual <= tol
    # the reported residual is the residual of the returned alpha (same float64 product, recomputed here)
    assert np.linalg.norm(Y - _A_INV @ res.alpha) / np.linalg.norm(Y) == pytest.approx(res.relative_residual,
                                                                                          rel=1e-6, abs=1e-15)


# ----------------------------------------------------------------------------- found by a newcomer's review
@pytest.mark.parametrize("scale", [1e-300, 1e-165, 1e155, 1e200])
def test_certificate_and_norm_at_extreme_target_scales(scale):
    """The residual and the RKHS norm are computed with scaled norms: never 0.0 from underflow, never a refusal from
    overflow of ||Y||^2 (the system is the same up to the scale: residual ~1e-12, norm scales with it)."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((50, 4)), rng.standard_normal((50, 2))
    ref = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0))
    fit = kernel_interpolate(X, Y * scale, kernel=Gaussian(bandwidth=2.0))
    assert 0.0 < fit.relative_residual <= 1e-10
    # the RKHS norm is homogeneous of degree 1 in Y (to the solve's accuracy, cond * 1e-10 here)
    assert fit.rkhs_norm == pytest.approx(ref.rkhs_norm * scale, rel=1e-6)


def test_conflicting_duplicates_at_tiny_scale_still_refused():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((50, 4)), rng.standard_normal((50, 2))
    X2, Y2 = np.vstack([X, X[:1]]), np.vstack([Y, Y[:1] + 1])
    with pytest.raises(SingularSystemError):
        kernel_interpolate(X2, Y2 * 1e-165, kernel=Gaussian(bandwidth=2.0), solver="min_norm",
                           options=SolveOptions(require_interpolation=True))


def test_saved_file_tampering_and_corruption_are_named(tmp_path):
    from kernelgen import load_interpolant
    from kernelgen.errors import CorruptFileError

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 3)), rng.standard_normal(30)
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.5))
    good = tmp_path / "a.npz"
    fit.save(good)
    arrays = dict(np.load(good))
    arrays["alpha"] = arrays["alpha"].copy()
    arrays["alpha"][0] += 1.0  # a changed coefficient would keep the old certificate: refused
    np.savez(tmp_path / "t.npz", **arrays)
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file" * 8)
    np.save(tmp_path / "single.npy", np.zeros(3))
    for name in ("t.npz", "trunc.npz", "empty.npz", "junk.npz", "single.npy"):
        with pytest.raises(CorruptFileError):  # corrupt/modified/foreign: not a version question
            load_interpolant(tmp_path / name, X)


def test_kernel_matrix_refuses_overflowing_entries():
    from kernelgen.errors import NonFiniteResultError
    from kernelgen.kernels import Linear

    X = np.random.default_rng(0).standard_normal((5, 3)) * 1e300
    with pytest.raises(NonFiniteResultError):
        kernel_matrix(X, kernel=Linear())


def test_convergence_error_carries_its_labelled_history():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(300, 2)), rng.normal(size=300)
    with pytest.raises((ConvergenceError, NotPositiveDefiniteError)) as ei:
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=3.0), options=SolveOptions(dtype="float32", max_iter=8))
    if isinstance(ei.value, ConvergenceError):
        assert ei.value.history and all("kind" in h for h in ei.value.history)
        assert "direct float64 residuals" in str(ei.value)
