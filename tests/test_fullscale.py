"""Full-scale runs (slow; run by hand with `pytest -m slow`)."""

import numpy as np
import pytest
import scipy.linalg as sla

from kernelgen import SolveOptions, kernel_interpolate, kernel_matrix
from kernelgen.kernels import Gaussian, Linear, Polynomial, as_kernel
from kernelgen.factors import LowerPanels, tiled_cholesky

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("n,dtype", [(40000, np.float32), (24000, np.float64)])
def test_tiled_factor_beyond_stock_lapack_crash_points(n, dtype):
    """Sizes where one stock cho_factor call crashed factor without crashing.

    The crash points: docs/numerics.md, "BLAS and LAPACK call limits".
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 20)).astype(dtype)
    P = LowerPanels(n, 2048, dtype)
    Gaussian(bandwidth=1.0).fill_panels(P, X)  # cond ~ 10: well within float32
    tiled_cholesky(P)
    # direct check on the leading block, cheap and exact: L11 L11^T = K11
    b1 = P.bounds[1]
    L11 = np.tril(P.tile_view(0, 0)).astype(np.float64)
    K11 = kernel_matrix(X[:b1].astype(np.float64), kernel=Gaussian(bandwidth=1.0))
    # Cholesky backward error is O(n eps |K|) in the worst case, far smaller in practice
    assert np.abs(L11 @ L11.T - K11).max() < 1e3 * np.finfo(dtype).eps
    # and the last diagonal tile: row block T-1 of L L^T = K
    i0, i1 = P.bounds[-2], P.bounds[-1]
    Lrow = np.asarray(P.panels[-1], dtype=np.float64).copy()
    Lrow[:, i0:] = np.tril(Lrow[:, i0:])
    K_last = kernel_matrix(X[i0:i1].astype(np.float64), kernel=Gaussian(bandwidth=1.0))
    assert np.abs(Lrow @ Lrow.T - K_last).max() < 1e4 * np.finfo(dtype).eps  # K_ii = sum_j L_ij L_ij^T


def test_real_mnist_subset_2000():
    """Real MNIST, first 2,000 images, exact Gaussian s = 5 against an independent float64 dense solve."""
    from kernelgen.datasets import load_mnist

    Xtr, ytr, Xte, yte = load_mnist()
    X = Xtr[:2000] / 255.0
    Y = np.eye(10)[ytr[:2000]]
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=5.0), options=SolveOptions(dtype="float32"))
    assert fit.relative_residual <= 1e-10
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=5.0))
    ref = sla.solve(K, Y, assume_a="pos")
    # both solve the same float64 system; cond(K) ~ 1e4 here, so they agree to ~1e-6 relative
    assert np.linalg.norm(fit.alpha - ref) <= 1e-5 * np.linalg.norm(ref)
    err = np.mean(fit.predict(Xte / 255.0).argmax(1) != yte)
    # the interpolant must classify far better than chance; the n=2,000 reference measured here is ~7%
    assert err < 0.10
