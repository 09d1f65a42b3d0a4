"""One path per factorisation, one kernel matrix, one median distance (issue 20, item 5).

Each test compares the one remaining path with an independent oracle (a closed form, NumPy/SciPy
dense linear algebra, or the formula that the removed duplicate used).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import scipy.linalg as sla

from kernelgen import min_norm_solve
from kernelgen.errors import InvalidInputError, ShapeMismatchError
from kernelgen.factors import CholeskyFactor, EighFactor, qr_factor
from kernelgen.kernels import ArcCosine, as_kernel, kernel_matrix, median_distance
from kernelgen.solvers import MinNormSolution

EPS = np.finfo(np.float64).eps


def _arccos_dense(X, Z, s):
    """The degree-1 arc-cosine kernel by its textbook formula (Cho & Saul 2009, eq. 6-7), independent of kernels/."""
    nx, nz = np.linalg.norm(X, axis=1), np.linalg.norm(Z, axis=1)
    denom = np.outer(nx, nz)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.clip(np.where(denom > 0, (X @ Z.T) / denom, 1.0), -1.0, 1.0)
    t = np.arccos(c)
    return denom * (np.sin(t) + (np.pi - t) * c) / (np.pi * s**2)


# ------------------------------------------------------------------ min_norm_solve = qr_factor + solve
@pytest.mark.parametrize("shape,rank", [((12, 30), 12), ((30, 12), 12), ((20, 25), 6), ((25, 20), 6)])
def test_min_norm_solve_is_the_qr_factor(shape, rank):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1]))
    y = rng.normal(size=(shape[0], 2))
    sol = min_norm_solve(X, y)
    f = qr_factor(X)
    # the same factorisation and the same solve: bit-for-bit equal coefficients, rank and tolerance
    np.testing.assert_array_equal(sol.coef, f.solve(y))
    assert sol.rank == f.rank == rank and sol.tol == f.rank_tol
    assert sol.method == (f.kind if rank == min(shape) else "svd")
    # oracle: pinv; the rank-r part is a product of Gaussian factors (kappa ~ 10-100): 1e-10 is ~1e5 eps of room
    ref = np.linalg.pinv(X, rcond=1e-10) @ y
    np.testing.assert_allclose(sol.coef, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_min_norm_solution_is_not_an_array():
    sol = min_norm_solve(np.array([[1.0, 1.0]]), np.array([2.0]))
    assert not hasattr(MinNormSolution, "__array__")  # callers use .coef
    # exact: the min-norm solution of x1 + x2 = 2 is (1, 1), up to the rounding of one Householder step
    np.testing.assert_allclose(sol.coef, [1.0, 1.0], rtol=4 * EPS)


# ------------------------------------------------------------------ the arc-cosine kernel is a Kernel
def test_arccos_kernel_closed_forms_and_registry():
    s = 1.5
    x, z = np.array([[3.0, 0.0]]), np.array([[0.0, 2.0]])
    k = ArcCosine(bandwidth=s)
    assert isinstance(as_kernel("arccos"), ArcCosine)
    # t = pi/2: k = |x||z| / (pi s^2); t = 0: |x|^2 / s^2; t = pi: 0 (Cho & Saul J_1 values 1, pi, 0)
    assert kernel_matrix(x, z, kernel=k)[0, 0] == pytest.approx(6.0 / (np.pi * s**2), rel=4 * EPS)
    assert kernel_matrix(x, kernel=k)[0, 0] == 9.0 / s**2  # the diagonal is set exactly (theta = 0)
    assert abs(kernel_matrix(x, -x, kernel=k)[0, 0]) <= 1e-15 * 9.0 / s**2  # sin(pi) rounding only
    rng = np.random.default_rng(0)
    X, Z = rng.normal(size=(25, 4)), rng.normal(size=(9, 4))
    # against the textbook formula: both are a few roundings of the same expression (measured <= 3e-16)
    np.testing.assert_allclose(kernel_matrix(X, Z, kernel=k), _arccos_dense(X, Z, s), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(k.diag(X), np.sum(X * X, axis=1) / s**2, rtol=4 * EPS)
    from kernelgen import random_features as R

    np.testing.assert_array_equal(R.arccos_kernel(X, Z, bandwidth=s), kernel_matrix(X, Z, kernel=k))
    with pytest.raises(InvalidInputError):
        ArcCosine(bandwidth=0.0)


def test_arccos_jax_twin_matches_numpy():
    pytest.importorskip("jax")
    from kernelgen.kernels import kernel_matrix_jax

    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 5))
    k = ArcCosine(bandwidth=0.8)
    assert k.has_jax
    # float64 both ways; the arccos of a cosine near 1 costs sqrt(eps) at most off the diagonal (module notes)
    np.testing.assert_allclose(np.asarray(kernel_matrix_jax(X, kernel=k)), kernel_matrix(X, kernel=k),
                               rtol=1e-7, atol=1e-12)


def test_relu_kernel_limit_uses_the_tiled_solver():
    from kernelgen import random_features as R
    from kernelgen.random_features import _sweep

    assert "precomputed" not in inspect.getsource(_sweep._kernel_limit)
    rng = np.random.default_rng(14)
    X, Xt = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    Y, Yt = rng.normal(size=(40, 1)), rng.normal(size=(30, 1))
    res = R.double_descent_sweep(X, Y, Xt, Yt, [10, 80], kind="relu", bandwidth=1.0, seeds=[0])
    # oracle: the textbook kernel, dense LAPACK solve (K is well conditioned at n = 40, kappa ~ 1e3)
    a = np.linalg.solve(_arccos_dense(X, X, 1.0), Y)
    ref = float(np.mean(np.sum((_arccos_dense(Xt, X, 1.0) @ a - Yt) ** 2, axis=1)))
    assert res.kernel_limit["test_sq"] == pytest.approx(ref, rel=1e-8)  # kappa * 1e-10 residual, with room


# ------------------------------------------------------------------ the sweep's Cholesky is a CholeskyFactor
def test_sweep_cholesky_goes_through_cholesky_factor(monkeypatch):
    from kernelgen import random_features as R
    from kernelgen.random_features import _sweep

    src = inspect.getsource(_sweep)
    assert "lapack." not in src  # no hand-called LAPACK (dpotrf / dpocon / dpotrs) left in the sweep
    calls = []
    orig = CholeskyFactor.factor.__func__

    def counting(cls, A, **kw):
        calls.append(A.shape)
        return orig(cls, A, **kw)

    monkeypatch.setattr(CholeskyFactor, "factor", classmethod(counting))
    rng = np.random.default_rng(3)
    X, Xt = rng.normal(size=(30, 4)), rng.normal(size=(10, 4))
    y, yt = rng.integers(0, 3, 30), rng.integers(0, 3, 10)
    res = R.double_descent_sweep(X, y, Xt, yt, [60, 120], bandwidth=2.0, seeds=[0], kernel_limit=False)
    assert calls == [(30, 30), (30, 30)]  # one Gram factor per width above n
    assert np.all(res.opt_residual <= 1e-10)  # each width certified with Phi itself


@pytest.mark.parametrize("tile", [64, 16])  # one tile (LAPACK pocon) and four tiles (onenormest)
def test_cholesky_half_solves_and_condition_estimate(tile):
    rng = np.random.default_rng(tile)
    n = 50
    P = rng.normal(size=(n, 2 * n))
    A = P @ P.T
    f = CholeskyFactor.factor(A, tile=tile)
    L = sla.cholesky(A, lower=True)
    B = rng.normal(size=(n, 3))
    # triangular solves of a kappa(L) ~ 30 factor: agreement to ~1e3 eps
    np.testing.assert_allclose(f.solve_triangular(B), sla.solve_triangular(L, B, lower=True), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(f.solve_triangular(B, trans=True), sla.solve_triangular(L, B, lower=True, trans="T"),
                               rtol=1e-12, atol=1e-13)
    anorm = np.abs(A).sum(axis=0).max()
    true = 1.0 / (anorm * np.abs(np.linalg.inv(A)).sum(axis=0).max())
    rc = f.rcond(anorm)
    # the Hager-Higham estimate of ||A^-1||_1 is a lower bound, usually within a factor 3 (Higham 2002, sec. 15.3)
    assert true * (1 - 1e-10) <= rc <= 3 * true
    if tile > n:  # one tile: the LAPACK routine itself
        assert rc == sla.lapack.dpocon(L, anorm, uplo="L")[0]


# ------------------------------------------------------------------ one median distance
def _old_median_distance(F, seed, m=2000):
    """The formula verify/_claims_data.py and scripts/mnist_gabor.py used before (the Gabor run's bandwidth)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(F.shape[0], size=min(m, F.shape[0]), replace=False)
    S = F[idx]
    sq = (S * S).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * S @ S.T, 0)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(idx), 1)])))


def test_median_distance_keeps_the_gabor_value():
    rng = np.random.default_rng(2)
    F = np.abs(rng.normal(size=(2500, 40)))
    F /= np.linalg.norm(F, axis=1, keepdims=True)  # l2-normalised, non-negative: like the Gabor features
    for seed in (0, 1):
        new, old = median_distance(F, m=2000, seed=seed), _old_median_distance(F, seed)
        # same sample, same median of squared distances; only the centring changes rounding: a few ulp
        assert new == pytest.approx(old, rel=8 * EPS), seed
    # any scale: exact powers of two keep the value (1e200 would overflow the old formula)
    assert median_distance(F * 2.0**600, seed=0) == median_distance(F, seed=0) * 2.0**600
    from kernelgen import verify

    assert verify.median_distance is median_distance
    with pytest.raises(InvalidInputError):
        median_distance(F, m=1)
    with pytest.raises(InvalidInputError):
        median_distance(np.ones((5, 2)))


# ------------------------------------------------------------------ one EighFactor constructor
def test_eigh_factor_from_a_matrix_or_from_eigenpairs():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 3))
    K = (X @ X.T).astype(np.float32)
    f = EighFactor.factor(K)
    w, V = np.linalg.eigh(K.astype(np.float64))
    g = EighFactor.factor(eigenpairs=(w, V), matrix_dtype=np.float32, backend="jax", seconds=0.5)
    # rank 3 of 20 under float32 rules (rank_tol = n eps32 max|lambda|): both routes agree
    assert f.rank == g.rank == 3 and f.matrix_dtype == g.matrix_dtype == np.float32
    assert g.backend == "jax" and g.seconds == 0.5 and f.backend == "scipy"
    y = X @ rng.normal(size=3)
    # pinv solve on the range of K: two eigensolvers, kappa of the kept part ~ 10: 1e-6 (float32-rounded K)
    np.testing.assert_allclose(g.solve(y), f.solve(y), rtol=1e-6, atol=1e-8 * np.abs(f.solve(y)).max())
    with pytest.raises(InvalidInputError):
        EighFactor.factor()
    with pytest.raises(InvalidInputError):
        EighFactor.factor(K, eigenpairs=(w, V))
    with pytest.raises(ShapeMismatchError):
        EighFactor.factor(eigenpairs=(w, V[:, :5]))


def test_eigh_factor_takes_jax_eigenpairs():
    jnp = pytest.importorskip("jax.numpy")
    from kernelgen._jax import enable_x64

    rng = np.random.default_rng(6)
    A = rng.normal(size=(8, 8))
    A = A @ A.T + np.eye(8)
    with enable_x64():
        w, V = jnp.linalg.eigh(jnp.asarray(A))
        f = EighFactor.factor(eigenpairs=(w, V), backend="jax")
    b = rng.normal(size=8)
    # A is positive definite with kappa ~ 1e2: the pseudo-inverse is the inverse to ~1e3 eps
    np.testing.assert_allclose(f.solve(b), np.linalg.solve(A, b), rtol=1e-11)
    assert isinstance(f.eigenvalues, np.ndarray) and f.rank == 8
