"""kernel_interpolate against independent dense solves; solvers, backends, errors."""

import numpy as np
import pytest
import scipy.linalg as sla

from kernelgen import SolveOptions, kernel_interpolate, kernel_matrix
from kernelgen.kernels import Gaussian, Linear, Polynomial, as_kernel
from kernelgen.errors import (
    ConvergenceError,
    InvalidInputError,
    MemoryBudgetError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
)


@pytest.fixture
def data(rng):
    X = rng.normal(size=(400, 6))
    Y = rng.normal(size=(400, 3))
    return X, Y


def dense_solution(X, Y, **kw):
    K = kernel_matrix(X, **kw)
    return K, sla.solve(K, Y, assume_a="pos")


@pytest.mark.parametrize("kernel,bw", [("gaussian", 2.0), ("laplace", 3.0)])
@pytest.mark.parametrize("dtype", [None, "float32", "float64"])
def test_matches_dense_solve(kernel, bw, dtype, data):
    X, Y = data
    K, ref = dense_solution(X, Y, kernel=kernel, bandwidth=bw)
    fit = kernel_interpolate(X, Y, kernel=as_kernel(kernel, bandwidth=bw), options=SolveOptions(dtype=dtype, tile=96))
    assert fit.relative_residual <= 1e-10 and fit.ridge == 0.0
    # two solutions of the same system with residual <= 1e-10 differ by <= cond(K) * 1e-10 (relative)
    cond = np.linalg.cond(K)
    assert np.linalg.norm(fit.alpha - ref) <= 10 * cond * 1e-10 * np.linalg.norm(ref) + 1e-12
    # the reported residual is the float64 residual: two float64 evaluations of Y - K alpha
    # (different summation orders) differ by at most ~n eps |K||alpha| (the rounding floor)
    R = Y - K @ fit.alpha
    floor = 400 * np.finfo(float).eps * np.linalg.norm(np.abs(K) @ np.abs(fit.alpha)) / np.linalg.norm(Y)
    assert abs(np.linalg.norm(R) / np.linalg.norm(Y) - fit.relative_residual) <= floor
    aka = np.einsum("ij,ij->j", fit.alpha, K @ fit.alpha)
    np.testing.assert_allclose(fit.alpha_K_alpha, aka, rtol=1e-8)
    assert fit.rkhs_norm == pytest.approx(np.sqrt(aka.sum()), rel=1e-8)
    Xn = np.random.default_rng(1).normal(size=(17, 6))
    np.testing.assert_allclose(fit.predict(Xn), kernel_matrix(Xn, X, kernel=kernel, bandwidth=bw) @ fit.alpha,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("store", [True, False])
def test_mixed_precision_reaches_exact_on_ill_conditioned(store, rng):
    # cond(K) ~ 3e5: the float32 factor alone leaves a residual ~ cond * eps32 ~ 1e-2..1e-6
    X = rng.normal(size=(600, 8))
    Y = rng.normal(size=(600, 2))
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), options=SolveOptions(dtype="float32", tile=128, store_kernel=store))
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=2.0))
    assert np.linalg.cond(K) > 1e5
    assert fit.factor_dtype == "float32" and fit.relative_residual <= 1e-10
    # independent float64 evaluation of the residual (tolerance: its rounding, ~1%)
    assert np.linalg.norm(Y - K @ fit.alpha) / np.linalg.norm(Y) <= 1.01e-10
    assert fit.residual_mode == ("stored" if store else "on-the-fly")
    steps = [h["relative_residual"] for h in fit.history]
    assert steps[0] > 1e-8  # the float32 factor alone is not exact; iteration did the work


@pytest.mark.parametrize("method", ["cg", "richardson"])
def test_honest_failure_when_iteration_cannot_converge(method, rng):
    X = rng.normal(size=(600, 8))
    Y = rng.normal(size=600)
    # too few float64 passes allowed: a named failure with the history, not a silent inexact answer
    with pytest.raises(ConvergenceError) as ei:
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), options=SolveOptions(dtype="float32", refinement=method, max_iter=1))
    assert "Remed" in str(ei.value) and "residuals:" in str(ei.value)
    # cond(K) ~ 1e19 (2-d points, wide bandwidth): beyond float64 too -> named error, never a wrong answer
    X2 = rng.normal(size=(300, 2))
    with pytest.raises((ConvergenceError, NotPositiveDefiniteError)):
        kernel_interpolate(X2, rng.normal(size=300), kernel=Gaussian(bandwidth=3.0), options=SolveOptions(dtype="float32", refinement=method, max_iter=8))


def test_min_norm_on_singular_kernel_equals_pinv(rng):
    X = rng.normal(size=(60, 8))  # cond of the distinct points' kernel ~ 1e2
    X = np.vstack([X, X[:10]])  # repeated points: K singular, Cholesky impossible
    Y = rng.normal(size=(70, 2))
    Y[60:] = Y[:10]  # consistent targets on the repeats
    with pytest.raises(NotPositiveDefiniteError):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), solver="cholesky")
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), solver="min_norm")
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=1.0))
    ref = np.linalg.pinv(K, rcond=70 * np.finfo(float).eps, hermitian=True) @ Y
    assert fit.rank == 60 and fit.relative_residual < 1e-9
    np.testing.assert_allclose(fit.alpha, ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("kernel,degree,rank", [("linear", None, 6), ("polynomial", 2, 28), ("polynomial", 3, 84)])
def test_min_norm_rank_of_finite_dimensional_kernels(kernel, degree, rank, data):
    # a degree-p polynomial kernel on R^6 has feature dimension C(6 + p, p): 28 for p=2, 84 for p=3
    X, Y = data
    kern = Linear() if kernel == "linear" else Polynomial(degree=degree, bandwidth=3.0)
    fit = kernel_interpolate(X, Y, kernel=kern, solver="min_norm")
    assert fit.rank == rank
    K = kernel_matrix(X, kernel=kern)
    ref = np.linalg.pinv(K, rcond=400 * np.finfo(float).eps, hermitian=True) @ Y
    np.testing.assert_allclose(fit.alpha, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())


def test_min_norm_matches_cholesky_on_pd(data):
    X, Y = data
    a = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), solver="min_norm")
    b = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), solver="cholesky")
    assert a.rank == 400
    np.testing.assert_allclose(a.alpha, b.alpha, rtol=1e-6, atol=1e-9 * np.abs(b.alpha).max())


@pytest.mark.parametrize("solver", ["cholesky", "min_norm"])
@pytest.mark.parametrize("dtype", [None, "float32"])
def test_backends_agree(solver, dtype, data):
    X, Y = data
    if solver == "min_norm" and dtype == "float32":
        pytest.skip("min_norm is float64 only")
    s = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), solver=solver, backend="scipy", options=SolveOptions(dtype=dtype))
    j = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), solver=solver, backend="jax", options=SolveOptions(dtype=dtype))
    assert j.backend == "jax" and j.relative_residual <= 1e-10
    # both reach residual <= 1e-10 of the same system -> alphas agree to cond * 1e-10 (cond ~ 1e3 here)
    np.testing.assert_allclose(j.alpha, s.alpha, rtol=1e-5, atol=1e-6 * np.abs(s.alpha).max())
    Xn = X[:20] + 0.1
    np.testing.assert_allclose(j.predict(Xn), s.predict(Xn), rtol=1e-6, atol=1e-8)


def test_jax_nan_factor_raises_named_error(rng):
    X = rng.normal(size=(50, 2))
    X = np.vstack([X, X[:5]])
    with pytest.raises(NotPositiveDefiniteError) as ei:
        kernel_interpolate(X, rng.normal(size=55), kernel=Gaussian(bandwidth=1.0), solver="cholesky", backend="jax")
    assert ei.value.index is not None


@pytest.mark.parametrize("solver", ["cholesky", "min_norm"])
def test_precomputed_not_modified_unless_allowed(solver, data):
    X, Y = data
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=2.0))
    K0 = K.copy()
    fit = kernel_interpolate(K, Y, kernel="precomputed", solver=solver)
    np.testing.assert_array_equal(K, K0)
    ref = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), solver=solver)
    np.testing.assert_allclose(fit.alpha, ref.alpha, rtol=1e-6, atol=1e-9 * np.abs(ref.alpha).max())
    Kn = kernel_matrix(X[:5] + 0.2, X, kernel=Gaussian(bandwidth=2.0))
    # alphas agree to 1e-6 (relative, above), so predictions agree to the same relative order
    np.testing.assert_allclose(fit.predict(Kn), ref.predict(X[:5] + 0.2), rtol=1e-6, atol=1e-8)
    if solver == "min_norm":
        fit2 = kernel_interpolate(K, Y, kernel="precomputed", solver=solver, options=SolveOptions(overwrite_kernel=True))
        # in place the kernel is gone, so no refinement: accurate to ~cond(K) * eps (cond ~ 1e3 here)
        np.testing.assert_allclose(fit2.alpha, fit.alpha, rtol=1e-7, atol=1e-9 * np.abs(fit.alpha).max())
        assert fit2.residual_mode == "eigh (K overwritten)"


def test_ridge_is_explicit_and_reported(data):
    X, Y = data
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), ridge=1e-3)
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=2.0))
    ref = sla.solve(K + 1e-3 * np.eye(400), Y)
    assert fit.ridge == 1e-3
    np.testing.assert_allclose(fit.alpha, ref, rtol=1e-8, atol=1e-10)


def test_factor_once_solve_many(data, rng):
    X, Y = data
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), options=SolveOptions(keep_factor=True, dtype="float32"))
    Y2 = rng.normal(size=(400, 2))
    fit2 = fit.solve(Y2)
    assert fit2.relative_residual <= 1e-10
    np.testing.assert_allclose(fit2.alpha, kernel_interpolate(X, Y2, kernel=Gaussian(bandwidth=2.0)).alpha, rtol=1e-6, atol=1e-9)
    with pytest.raises(InvalidInputError):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0)).solve(Y2)


def test_vector_target_keeps_shape(data):
    X, Y = data
    fit = kernel_interpolate(X, Y[:, 0], kernel=Gaussian(bandwidth=2.0))
    assert fit.alpha.shape == (400,) and fit.predict(X[:3]).shape == (3,)


def test_bad_inputs_give_named_errors(rng):
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(NonFiniteInputError):
        kernel_interpolate(Xn, y, kernel=Gaussian(bandwidth=1.0))
    yi = y.copy()
    yi[0] = np.inf
    with pytest.raises(NonFiniteInputError):
        kernel_interpolate(X, yi, kernel=Gaussian(bandwidth=1.0))
    with pytest.raises(ShapeMismatchError):
        kernel_interpolate(X, y[:-1], kernel=Gaussian(bandwidth=1.0))
    with pytest.raises(InvalidInputError):
        kernel_interpolate(X[:0], y[:0], kernel=Gaussian(bandwidth=1.0))
    with pytest.raises(InvalidInputError):
        kernel_interpolate(X.astype(complex), y, kernel=Gaussian(bandwidth=1.0))
    with pytest.raises(InvalidInputError):
        kernel_interpolate(X, y, kernel=Gaussian(bandwidth=1.0), options=SolveOptions(dtype="float16"))
    with pytest.raises(InvalidInputError):
        kernel_interpolate(X, y, kernel=Gaussian(bandwidth=1.0), ridge=-1.0)
    with pytest.raises(ShapeMismatchError):
        kernel_interpolate(np.ones((3, 4)), np.ones(3), kernel="precomputed")
    with pytest.raises(InvalidInputError):
        kernel_interpolate(np.triu(np.ones((3, 3))), np.ones(3), kernel="precomputed")
    with pytest.raises(MemoryBudgetError) as ei:
        kernel_interpolate(X, y, kernel=Gaussian(bandwidth=1.0), options=SolveOptions(memory_budget=10**6))
    assert ei.value.bytes_available == 10**6
    # a non-PD (indefinite) precomputed kernel under Cholesky: named error with the index
    K = np.eye(20)
    K[5, 5] = -1.0
    with pytest.raises(NotPositiveDefiniteError) as ei:
        kernel_interpolate(K, y, kernel="precomputed", solver="cholesky")
    assert ei.value.index == 5
    with pytest.raises(NotPositiveDefiniteError):
        kernel_interpolate(K, y, kernel="precomputed", solver="min_norm")


def test_auto_dtype_refactors_in_float64_when_mixed_precision_fails(rng, caplog):
    # cond(K) ~ 1e8 > 1/eps32: the float32-preconditioned CG needs ~10 float64 passes here,
    # a float64 factor ~2; with max_iter=4 only the float64 route can reach tol
    X = rng.normal(size=(4200, 16))  # above AUTO_FLOAT64_MAX_N, so dtype=None starts in float32
    Y = rng.normal(size=(4200, 1))
    with pytest.raises((NotPositiveDefiniteError, ConvergenceError)):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=4.5), options=SolveOptions(dtype="float32", max_iter=4))  # explicit dtype: no fallback
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=4.5), options=SolveOptions(max_iter=4))
    assert fit.factor_dtype == "float64" and fit.relative_residual <= 1e-10
    assert "refactoring in float64" in caplog.text


def test_min_norm_reports_condition_number(data):
    X, Y = data
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), solver="min_norm")
    # all eigenvalues kept (PD kernel): the 2-norm condition number of K
    assert fit.condition_number == pytest.approx(np.linalg.cond(kernel_matrix(X, kernel=Gaussian(bandwidth=2.0))), rel=1e-6)


def test_auto_dtype_fallback_refused_by_memory_keeps_the_original_error(rng):
    X = rng.normal(size=(4200, 16))
    Y = rng.normal(size=(4200, 1))
    # budget for the float32 route (660 MiB planned) but not for a float64 refactor (742 MiB):
    # the original named error comes back, with the planner's numbers
    with pytest.raises(ConvergenceError) as ei:
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=4.5), options=SolveOptions(max_iter=4, memory_budget=700 * 2**20, store_kernel=False))
    assert "fallback to a float64 factor was not possible" in str(ei.value)
    # the re-raised error keeps the refinement's history (callers redo a stalled solve from it)
    assert len(ei.value.history) >= 2 and all("relative_residual" in h for h in ei.value.history)
