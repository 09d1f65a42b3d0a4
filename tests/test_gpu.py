"""The JAX path on an accelerator (skipped without one; the same code runs on JAX's CPU
backend in tests/test_interpolate.py)."""

import numpy as np
import pytest

from kernelgen import SolveOptions, kernel_interpolate, kernel_matrix
from kernelgen.kernels import Gaussian, Linear, Polynomial, as_kernel
from kernelgen._jax import accelerator_available

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not accelerator_available(), reason="no JAX accelerator")]


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_gpu_matches_scipy(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 10))
    Y = rng.normal(size=(3000, 4))
    g = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=3.0), backend="jax", options=SolveOptions(dtype=dtype))
    s = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=3.0), backend="scipy")
    assert g.backend == "jax" and g.relative_residual <= 1e-10
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=3.0))
    # the residual reported on the device equals a host float64 evaluation (rounding floor)
    assert np.linalg.norm(Y - K @ g.alpha) / np.linalg.norm(Y) <= 2e-10
    np.testing.assert_allclose(g.alpha, s.alpha, rtol=1e-5, atol=1e-6 * np.abs(s.alpha).max())
