"""The tiled engine: factor against LAPACK, solves, symmetric products, planner."""

from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg as sla

from kernelgen.errors import MemoryBudgetError, NotPositiveDefiniteError
from kernelgen.factors import (
    EIGH_MAX_N,
    LowerPanels,
    cholesky_solve_panels,
    symmetric_matvec_panels,
    tiled_cholesky,
)
from kernelgen.kernels import Gaussian, exact_integer_form, kernel_matrix
from kernelgen.options import SolveOptions
from kernelgen.solvers import AUTO_FLOAT64_MAX_N, plan_kernel_solve

KERN = Gaussian(bandwidth=2.0)


def spd(rng, n, cond=1e3):
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (Q * np.logspace(0, -np.log10(cond), n)) @ Q.T


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,tile", [(300, 64), (257, 100), (100, 128), (513, 512)])
def test_tiled_cholesky_matches_lapack(dtype, n, tile, rng):
    A = spd(rng, n).astype(dtype)
    P = LowerPanels.from_dense(A, tile, dtype)
    tiled_cholesky(P)
    L = np.tril(P.to_dense(symmetric=False))
    Lref = sla.cholesky(A, lower=True)
    # both are backward stable: factors agree to ~cond * n * eps (relative to |L|)
    eps = np.finfo(dtype).eps
    assert np.abs(L - Lref).max() <= 1e3 * n * eps * np.abs(Lref).max() * 10
    B = rng.normal(size=(n, 3))
    X = cholesky_solve_panels(P, B)
    Xref = sla.cho_solve((Lref, True), B.astype(dtype))
    np.testing.assert_allclose(X, Xref, rtol=1e4 * n * eps, atol=1e4 * n * eps * np.abs(Xref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_pd_reports_failing_index(dtype, rng):
    n, bad = 200, 137
    A = spd(rng, n, cond=10).astype(dtype)
    # make the leading (bad+1) x (bad+1) block indefinite at exactly pivot `bad`
    A = A.astype(np.float64)
    L = np.linalg.cholesky(A)
    L[bad, bad] = 0.0
    A = (L @ L.T).astype(dtype)
    A[bad, bad] -= 0.5
    P = LowerPanels.from_dense(A, 64, dtype)
    with pytest.raises(NotPositiveDefiniteError) as ei:
        tiled_cholesky(P)
    assert ei.value.index == bad
    assert "pivot 137" in str(ei.value)


def test_panels_storage_and_symmetric_matvec(rng):
    X = rng.normal(size=(301, 4))
    K = kernel_matrix(X, kernel=KERN)
    P = LowerPanels(301, 64, np.float64)
    KERN.fill_panels(P, X)
    np.testing.assert_allclose(P.to_dense(), K, rtol=1e-13, atol=1e-14)
    assert P.nbytes == LowerPanels.nbytes_for(301, 64, np.float64) < K.nbytes
    V = rng.normal(size=(301, 3))
    np.testing.assert_allclose(symmetric_matvec_panels(P, V), K @ V, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tile", [50, 64, 512])
def test_on_the_fly_products(tile, rng):
    X, Z = rng.normal(size=(333, 5)), rng.normal(size=(77, 5))
    V = rng.normal(size=(333, 2))
    K = kernel_matrix(X, kernel=KERN)
    # each off-diagonal block used twice (symmetry) must equal the dense product
    np.testing.assert_allclose(KERN.symmetric_apply(X, V, tile=tile), K @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(KERN.apply(Z, X, V), kernel_matrix(Z, X, kernel=KERN) @ V,
                               rtol=1e-12, atol=1e-12)


def test_planner_paths_and_refusals():
    GB = 10**9
    # small n: float64 factor by policy, float64 kernel stored
    p = plan_kernel_solve(AUTO_FLOAT64_MAX_N, 784, 10, memory_budget=8 * GB)
    assert p.factor_dtype == np.float64 and p.residual == "stored"
    p = plan_kernel_solve(AUTO_FLOAT64_MAX_N + 1, 784, 10, memory_budget=8 * GB)
    assert p.factor_dtype == np.float32
    # 60k in 20 GB: float32 triangle fits, float64 triangle beside it does not -> on the fly
    p = plan_kernel_solve(60000, 784, 10, memory_budget=20 * GB)
    assert p.residual == "on-the-fly" and p.bytes_needed < 16 * GB
    # 20k: float64 triangle (1.6 GB) beside the float32 factor -> stored
    assert plan_kernel_solve(20000, 784, 10, memory_budget=20 * GB).residual == "stored"
    with pytest.raises(MemoryBudgetError) as ei:  # the factor forced into RAM: refused, disk suggested
        plan_kernel_solve(60000, 784, 10, options=SolveOptions(memory_budget=4 * GB, storage="memory"))
    assert ei.value.bytes_needed > 4 * GB and "Remedy" in str(ei.value) and "storage='auto' or 'disk'" in str(ei.value)
    # storage="auto" (the default): the same budget plans the factor on disk (tests/test_out_of_core.py)
    p = plan_kernel_solve(60000, 784, 10, memory_budget=4 * GB)
    assert p.storage == "disk" and p.bytes_needed <= 4 * GB and p.working_width % p.tile == 0
    with pytest.raises(MemoryBudgetError):
        plan_kernel_solve(EIGH_MAX_N + 1, 10, 1, solver="min_norm", memory_budget=10**13)
    # the boundary: exactly the bytes needed is accepted, one byte less is refused
    need = plan_kernel_solve(5000, 10, 1, memory_budget=10**12, store_kernel=False).bytes_needed
    mem = SolveOptions(memory_budget=need, store_kernel=False, storage="memory")
    assert plan_kernel_solve(5000, 10, 1, options=mem).storage == "memory"
    with pytest.raises(MemoryBudgetError):
        plan_kernel_solve(5000, 10, 1, options=replace(mem, memory_budget=need - 1))


def test_exact_integer_inner_products_for_8bit_images(rng):
    """pixels/255 data: the float64 kernel built from an exact float32 GEMM of centred integers
    equals an exact integer (int64) computation up to the final rounding of exp."""
    K8 = rng.integers(0, 256, size=(300, 784))
    X = K8 / 255.0
    Kc, c, center = exact_integer_form(X)
    assert c == 255.0 and center in (127.0, 128.0) and Kc.dtype == np.float32
    # the float32 Gram of the centred integers is exact: compare with int64 arithmetic
    Ki = K8 - int(center)
    np.testing.assert_array_equal((Kc @ Kc.T).astype(np.int64), Ki @ Ki.T)
    kern = Gaussian(bandwidth=5.0)
    V = rng.normal(size=(300, 2))
    d2 = ((K8[:, None, :] - K8[None, :, :]) ** 2).sum(-1) / 255.0**2  # exact integers / c^2
    K_exact = np.exp(-d2 / 50.0)
    got = kern.symmetric_apply(X, V, tile=64)
    # exact d^2 -> each kernel entry within an ulp or two; the product within n * eps
    np.testing.assert_allclose(got, K_exact @ V, rtol=1e-13, atol=1e-13)
    Z = rng.integers(0, 256, size=(40, 784)) / 255.0
    dz = ((np.rint(Z * 255)[:, None, :] - K8[None]) ** 2).sum(-1) / 255.0**2
    np.testing.assert_allclose(kern.apply(Z, X, V), np.exp(-dz / 50.0) @ V, rtol=1e-13, atol=1e-13)
    # not integer-valued, or too wide for exact float32 sums: no integer form (the float64 GEMM is used)
    assert exact_integer_form(X + 1e-3) is None
    assert exact_integer_form(rng.integers(0, 256, size=(5, 1100)) / 255.0) is None  # 1100 * 128^2 > 2^24
