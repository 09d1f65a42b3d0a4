"""min_norm_solve against numpy.linalg.pinv, and the mission's SGD test."""

import numpy as np
import pytest

from kernelgen import min_norm_solve
from kernelgen.errors import InvalidInputError, NonFiniteInputError, ShapeMismatchError


def _matrix(rng, m, d, cond):
    """m x d matrix with singular values log-spaced from 1 to 1/cond."""
    r = min(m, d)
    U, _ = np.linalg.qr(rng.normal(size=(m, r)))
    V, _ = np.linalg.qr(rng.normal(size=(d, r)))
    return (U * np.logspace(0, -np.log10(cond), r)) @ V.T


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (40, 40)])
@pytest.mark.parametrize("cond", [1e1, 1e6])
@pytest.mark.parametrize("k", [None, 3])
def test_matches_pinv(shape, cond, k, rng):
    X = _matrix(rng, *shape, cond)
    y = rng.normal(size=shape[0] if k is None else (shape[0], k))
    X0, y0 = X.copy(), y.copy()
    sol = min_norm_solve(X, y)
    ref = np.linalg.pinv(X) @ y
    # backward-stable solvers agree to ~cond * eps (relative), times a modest constant
    tol = 100 * cond * np.finfo(float).eps
    assert np.linalg.norm(sol.coef - ref) <= tol * np.linalg.norm(ref)
    assert sol.rank == min(shape)
    assert sol.coef.shape == ref.shape
    np.testing.assert_array_equal(X, X0)  # inputs not mutated
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("shape", [(30, 60), (60, 30)])
def test_rank_deficient(shape, rng):
    r = 7
    X = rng.normal(size=(shape[0], r)) @ rng.normal(size=(r, shape[1]))
    y = rng.normal(size=shape[0])
    sol = min_norm_solve(X, y)
    assert sol.rank == r and sol.method == "svd"
    ref = np.linalg.pinv(X, rcond=1e-10) @ y
    # rank-r part is well conditioned here (Gaussian factors): agreement to ~1e3 eps
    np.testing.assert_allclose(sol.coef, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
    # minimum norm: orthogonal to the null space of X
    _, s, Vt = np.linalg.svd(X)
    null = Vt[r:]
    assert np.abs(null @ sol.coef).max() <= 1e-10 * np.linalg.norm(sol.coef)


def test_underdetermined_interpolates_with_min_norm(rng):
    X, y = rng.normal(size=(10, 40)), rng.normal(size=10)
    sol = min_norm_solve(X, y)
    assert sol.relative_residual < 1e-13
    # any other interpolant w + n (n in null(X)) is longer (Pythagoras)
    n = np.linalg.svd(X)[2][10:].T @ rng.normal(size=30)
    assert np.linalg.norm(sol.coef + n) > np.linalg.norm(sol.coef)
    # closed form X^T (X X^T)^-1 y, well conditioned here
    np.testing.assert_allclose(sol.coef, X.T @ np.linalg.solve(X @ X.T, y), rtol=1e-10)


def test_sgd_from_zero_converges_to_min_norm(rng):
    """The mission's test: plain SGD from w0 = 0 on an underdetermined least-squares
    problem converges to the minimum-norm solution (relative distance <= 1e-8, float64)."""
    n, d = 20, 60
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    y = rng.normal(size=n)
    target = min_norm_solve(X, y).coef
    w = np.zeros(d)
    sgd_rng = np.random.default_rng(7)
    for _ in range(60000):
        i = sgd_rng.integers(n)
        w -= 0.5 * (X[i] @ w - y[i]) * X[i] / (X[i] @ X[i])  # step 0.5 / |x_i|^2: stable (< 2)
    assert np.linalg.norm(w - target) <= 1e-8 * np.linalg.norm(target)


@pytest.mark.parametrize(
    "X,y,err",
    [
        (np.array([[1.0, np.nan]]), np.array([1.0]), NonFiniteInputError),
        (np.array([[1.0, 2.0]]), np.array([np.inf]), NonFiniteInputError),
        (np.ones((3, 2)), np.ones(4), ShapeMismatchError),
        (np.ones((0, 2)), np.ones(0), InvalidInputError),
        (np.ones((2, 2), dtype=complex), np.ones(2), InvalidInputError),
        (np.array([["a", "b"]]), np.ones(1), InvalidInputError),
        (np.ones(3), np.ones(3), ShapeMismatchError),
    ],
)
def test_named_errors(X, y, err):
    with pytest.raises(err):
        min_norm_solve(X, y)
