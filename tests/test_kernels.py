"""Kernels: blockwise NumPy against the textbook formula, JAX against NumPy."""

import numpy as np
import pytest

from kernelgen.errors import InvalidInputError, NonFiniteInputError, ShapeMismatchError
from kernelgen.kernels import Gaussian, as_kernel, default_bandwidth, kernel_matrix, kernel_matrix_jax


def reference(X, Z, kernel, s=2.0, degree=3, coef0=1.0):
    """Direct pairwise formula (no |x|^2 + |z|^2 - 2<x,z> expansion)."""
    D = X[:, None, :] - Z[None, :, :]
    if kernel == "gaussian":
        return np.exp(-np.sum(D * D, -1) / (2 * s * s))
    if kernel == "laplace":
        return np.exp(-np.sqrt(np.sum(D * D, -1)) / s)
    if kernel == "linear":
        return X @ Z.T
    return (X @ Z.T / s**2 + coef0) ** degree


KERNELS = ["gaussian", "laplace", "linear", "polynomial"]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("block", [(5, 4), None])  # tiny blocks (many) and one block
def test_numpy_matches_formula(kernel, block, rng):
    X, Z = rng.normal(size=(37, 5)), rng.normal(size=(23, 5))
    kern = as_kernel(kernel) if kernel == "linear" else as_kernel(kernel, bandwidth=2.0)
    if block is None:
        K = kernel_matrix(X, Z, kernel=kern)
    else:  # many tiny blocks through the entries engine (the same path as the tiled solver)
        src, K = kern.entries(X, Z), np.empty((37, 23))
        for r0 in range(0, 37, block[0]):
            for c0 in range(0, 23, block[1]):
                r1, c1 = min(37, r0 + block[0]), min(23, c0 + block[1])
                src.block(r0, r1, c0, c1, None, K[r0:r1, c0:c1])
    # float64 expansion |x|^2+|z|^2-2<x,z> vs direct differences: rounding of O(|x|^2 eps)
    np.testing.assert_allclose(K, reference(X, Z, kernel), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_jax_matches_numpy(kernel, dtype, tol, rng):
    # float32 tolerance: a few ulps (1.2e-7) of |x|^2 ~ 5 amplified through exp
    X, Z = rng.normal(size=(40, 6)), rng.normal(size=(30, 6))
    kern = as_kernel(kernel) if kernel == "linear" else as_kernel(kernel, bandwidth=2.0)
    Kn = kernel_matrix(X, Z, kernel=kern, dtype=dtype)
    Kj = np.asarray(kernel_matrix_jax(X, Z, kernel=kern, dtype=dtype, block_rows=16))
    assert Kj.dtype == dtype
    np.testing.assert_allclose(Kj, Kn, rtol=tol, atol=tol)


def test_symmetric_diagonal_exact(rng):
    X = rng.normal(size=(50, 784)) * 3  # large norms: rounding of the expansion would show on the diagonal
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        K = kernel_matrix(X, kernel=Gaussian(bandwidth=40.0), dtype=dtype)
        assert (np.diag(K) == 1).all()
        # rows are separate GEMMs, so K_ij and K_ji may differ in the last bits only
        np.testing.assert_allclose(K, K.T, rtol=tol, atol=0)


def test_default_bandwidth_rule(rng):
    X = rng.normal(size=(300, 4))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    med = np.median(D[np.triu_indices(300, 1)])
    assert default_bandwidth(X) == pytest.approx(med / np.sqrt(2), rel=1e-12)
    assert default_bandwidth(X, kernel="laplace") == pytest.approx(med, rel=1e-12)
    # subsampling is seeded: same seed, same answer
    Xb = rng.normal(size=(3000, 4))
    assert default_bandwidth(Xb, seed=3) == default_bandwidth(Xb, seed=3)


def test_kernel_errors(rng):
    X = rng.normal(size=(5, 3))
    with pytest.raises(ShapeMismatchError):
        kernel_matrix(X, rng.normal(size=(4, 2)), bandwidth=1.0)
    with pytest.raises(InvalidInputError):
        kernel_matrix(X, kernel="sigmoid", bandwidth=1.0)
    with pytest.raises(InvalidInputError):  # parameters belong to the kernel object, not beside it
        kernel_matrix(X, kernel=Gaussian(1.0), bandwidth=1.0)
    with pytest.raises(InvalidInputError):
        kernel_matrix(X, bandwidth=-1.0)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteInputError):
        kernel_matrix(bad, bandwidth=1.0)
