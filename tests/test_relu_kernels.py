"""ReLU-network NNGP / NTK kernels (kernelgen.kernels._relu): closed forms, Gaussian
expectations by quadrature, wide random networks, and numerical invariants.

Convention under test (module docstring): depth L = number of hidden ReLU layers, NTK
parameterisation, the kernels of the scalar output: "nngp" = Sigma^(L), "ntk" = Theta^(L).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from kernelgen.errors import (
    InvalidInputError,
    MemoryBudgetError,
    NonFiniteInputError,
    ShapeMismatchError,
)
from kernelgen.kernels import _relu
from kernelgen.kernels._relu import (
    empirical_relu_kernels,
    relu_kernel_diag,
    relu_kernel_from_gram,
    relu_kernel_from_gram_jax,
)

WHICH = ("nngp", "ntk")


def kern(X, Z=None, *, dtype=np.float64, **kw):
    """K(X, Z) through relu_kernel_from_gram (diag_offset=0 when Z is None)."""
    X = np.asarray(X, dtype=dtype)
    Zc = X if Z is None else np.asarray(Z, dtype=dtype)
    G = X @ Zc.T
    if Z is None:
        G = 0.5 * (G + G.T)  # exactly symmetric input, whatever the BLAS does
    sx = np.einsum("ij,ij->i", X, X)
    sz = np.einsum("ij,ij->i", Zc, Zc)
    kw.setdefault("n_features", X.shape[1])
    return relu_kernel_from_gram(G, sx, sz, diag_offset=0 if Z is None else None, **kw)


# ------------------------------------------------------------------------------------------
# closed forms
# ------------------------------------------------------------------------------------------


def _angles(X, Z):
    nx = np.linalg.norm(X, axis=1)[:, None]
    nz = np.linalg.norm(Z, axis=1)[None, :]
    cos = np.clip((X @ Z.T) / (nx * nz), -1.0, 1.0)
    return nx, nz, cos, np.arccos(cos)


@pytest.mark.parametrize("sw2", [2.0, 1.3])
def test_depth1_nngp_is_cho_saul_arccos_kernel_of_degree_1(rng, sw2):
    d = 6
    X, Z = rng.standard_normal((7, d)), rng.standard_normal((5, d))
    nx, nz, _, th = _angles(X, Z)
    # Cho & Saul (2009) Section 2.1: k_1(x, z) = |x||z| (sin th + (pi - th) cos th) / pi;
    # our Sigma^(1) = sigma_w^2 E[relu(u) relu(v)] with Cov = (sigma_w^2/d) [<x,x>, <x,z>; ...]
    # = sigma_w^4 / (2d) k_1(x, z).
    k1 = nx * nz * (np.sin(th) + (np.pi - th) * np.cos(th)) / np.pi
    K = kern(X, Z, depth=1, weight_variance=sw2, bias_variance=0.0, which="nngp")
    # float64 elementwise arithmetic on O(1) numbers: 1e-13 relative covers ~100 ulps
    np.testing.assert_allclose(K, sw2**2 / (2 * d) * k1, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("sw2", [2.0, 0.7])
def test_depth1_ntk_is_bietti_mairal_two_layer_ntk(rng, sw2):
    d = 4
    X, Z = rng.standard_normal((6, d)), rng.standard_normal((8, d))
    nx, nz, u, _ = _angles(X, Z)
    # Bietti & Mairal (2019) Section 3: two-layer ReLU NTK |x||z| (u kappa0(u) + kappa1(u)),
    # kappa0 = (pi - arccos u)/pi, kappa1 = (u (pi - arccos u) + sqrt(1 - u^2))/pi; in our
    # scaling the factor is sigma_w^4 / (2d) (both terms carry sigma_w^2 * sigma_w^2 / d).
    k0 = (np.pi - np.arccos(u)) / np.pi
    k1 = (u * (np.pi - np.arccos(u)) + np.sqrt(1 - u * u)) / np.pi
    expected = sw2**2 / (2 * d) * nx * nz * (u * k0 + k1)
    K = kern(X, Z, depth=1, weight_variance=sw2, bias_variance=0.0, which="ntk")
    np.testing.assert_allclose(K, expected, rtol=1e-13, atol=1e-14)  # as above


def _direct(x, z, depth, sw2, sb2):
    """Sigma^(L), Theta^(L) for one pair, scalar Python, the recursion exactly as written."""
    d = len(x)
    a, b, c = (sw2 * float(np.dot(p, q)) / d + sb2 for p, q in ((x, x), (z, z), (x, z)))
    theta_ntk = c
    for _ in range(depth):
        th = math.acos(max(-1.0, min(1.0, c / math.sqrt(a * b))))
        k1 = math.sqrt(a * b) / (2 * math.pi) * (math.sin(th) + (math.pi - th) * math.cos(th))
        sdot = sw2 * (math.pi - th) / (2 * math.pi)
        a, b, c = sw2 * a / 2 + sb2, sw2 * b / 2 + sb2, sw2 * k1 + sb2
        theta_ntk = theta_ntk * sdot + c
    return c, theta_ntk


@pytest.mark.parametrize("sw2,sb2", [(2.0, 0.0), (1.3, 0.7)])
def test_deep_recursion_matches_direct_scalar_evaluation(rng, sw2, sb2):
    X, Z = rng.standard_normal((4, 5)), 2.0 * rng.standard_normal((6, 5))
    for depth in (0, 2, 4):
        kw = dict(depth=depth, weight_variance=sw2, bias_variance=sb2)
        ref = np.array([[_direct(x, z, depth, sw2, sb2) for z in Z] for x in X])
        dx = np.array([_direct(x, x, depth, sw2, sb2) for x in X])
        dz = np.array([_direct(z, z, depth, sw2, sb2) for z in Z])
        for i, which in enumerate(WHICH):
            # same formulas, different operation order (math.sin/cos vs sqrt((1-rho)(1+rho)); a GEMM vs a
            # scalar loop for <x, z>): a few ulps per layer of the scale sqrt(k(x,x) k(z,z)) (Cauchy-Schwarz),
            # amplified by 1/sin theta in Sigma_dot: 1e-12 of that scale. Relative to the entry alone it would
            # not do: at depth 0 the entry is sigma_w^2 <x, z>/d + sigma_b^2, which cancels to near zero.
            scale = np.sqrt(np.outer(dx[:, i], dz[:, i]))
            got = kern(X, Z, which=which, **kw)
            assert np.all(np.abs(got - ref[..., i]) <= 1e-12 * (np.abs(ref[..., i]) + scale))


def _pair(a, b, c):
    """x, z in R^2 with <x,x>/2 = a, <z,z>/2 = b, <x,z>/2 = c (Sigma^(0) with sigma_w^2 = 1, d = 2)."""
    rho = c / math.sqrt(a * b)
    x = math.sqrt(2 * a) * np.array([1.0, 0.0])
    z = math.sqrt(2 * b) * np.array([rho, math.sqrt(1 - rho * rho)])
    return x, z


COVARIANCES = [(1.0, 1.0, 0.3), (2.0, 0.5, -0.7), (1.0, 4.0, 1.9), (0.3, 0.3, -0.2997), (1.0, 1.0, 0.05)]


def _gauss_expectation(a, b, c, g):
    """E[g(u, v)] over (u, v) ~ N(0, [[a, c], [c, b]]) restricted to u > 0, v > 0, by 2-D quadrature.

    u = sqrt(a) z1, v = sqrt(b) (rho z1 + s z2); the quadrant is z1 > 0, z2 > -rho z1 / s.
    The integrand is smooth on that region (the kink of relu / step sits on its boundary).
    """
    rho = c / math.sqrt(a * b)
    s = math.sqrt(1 - rho * rho)
    phi = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # noqa: E731

    def f(z2, z1):
        u = math.sqrt(a) * z1
        v = math.sqrt(b) * (rho * z1 + s * z2)
        return g(u, v) * phi(z1) * phi(z2)

    val, err = integrate.dblquad(f, 0.0, 14.0, lambda z1: -rho * z1 / s, lambda z1: 14.0, epsabs=1e-13, epsrel=1e-11)
    return val, err


@pytest.mark.parametrize("a,b,c", COVARIANCES)
def test_kappa1_and_sigma_dot_are_gaussian_expectations(a, b, c):
    x, z = _pair(a, b, c)
    G = np.array([[x @ z]])
    sx, sz = np.array([x @ x]), np.array([z @ z])
    kw = dict(n_features=2, depth=1, weight_variance=1.0, bias_variance=0.0)
    sigma1 = relu_kernel_from_gram(G.copy(), sx, sz, which="nngp", **kw)[0, 0]  # = kappa1(a, b, c)
    theta1 = relu_kernel_from_gram(G.copy(), sx, sz, which="ntk", **kw)[0, 0]  # = c Sigma_dot + kappa1
    sigma_dot = (theta1 - sigma1) / c
    e_relu, err1 = _gauss_expectation(a, b, c, lambda u, v: u * v)
    e_step, err2 = _gauss_expectation(a, b, c, lambda u, v: 1.0)
    assert err1 < 1e-9 and err2 < 1e-9  # the quadrature itself reports convergence
    # quadrature accuracy (reported error < 1e-9, truncation at 14 sd ~ 1e-43) is the limit;
    # Sigma_dot is recovered through a division by |c| >= 0.05, hence 2e-8 there.
    assert abs(sigma1 - e_relu) <= 1e-9 * max(1.0, math.sqrt(a * b))
    assert abs(sigma_dot - e_step) <= 2e-8


# ------------------------------------------------------------------------------------------
# the diagonal
# ------------------------------------------------------------------------------------------


def test_diag_recursion_matches_geometric_closed_form(rng):
    sq = rng.uniform(0, 5, size=9)
    sq[0] = 0.0
    d, sw2, sb2 = 7, 1.7, 0.4
    s = sw2 / 2
    for L in range(5):
        q = [s**h * (sw2 * sq / d + sb2) + sb2 * (1 - s**h) / (1 - s) for h in range(L + 1)]
        theta = sum(q[h] * s ** (L - h) for h in range(L + 1))  # Theta^(L) = sum_h Sigma^(h) s^(L-h)
        kw = dict(n_features=d, depth=L, weight_variance=sw2, bias_variance=sb2)
        # two evaluation orders of the same sums: 1e-13 relative
        np.testing.assert_allclose(relu_kernel_diag(sq, which="nngp", **kw), q[L], rtol=1e-13)
        np.testing.assert_allclose(relu_kernel_diag(sq, which="ntk", **kw), theta, rtol=1e-13)


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_he_defaults_keep_the_second_moment(depth):
    sq, d = np.array([0.0, 1.0, 9.5]), 3
    # sigma_w^2 = 2, sigma_b^2 = 0: Sigma^(h)(x,x) = 2|x|^2/d for all h, Theta^(L) = (L+1) 2|x|^2/d;
    # the recursion multiplies by sigma_w^2/2 = 1 exactly; only 2|x|^2/d is rounded: 1e-15 relative.
    np.testing.assert_allclose(relu_kernel_diag(sq, n_features=d, depth=depth, which="nngp"), 2 * sq / d, rtol=1e-15)
    np.testing.assert_allclose(
        relu_kernel_diag(sq, n_features=d, depth=depth, which="ntk"), (depth + 1) * 2 * sq / d, rtol=1e-15
    )


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_diagonal_equals_diag_function_exactly(rng, which, dtype):
    X = rng.standard_normal((30, 9)).astype(dtype)
    X[3] = 0
    kw = dict(n_features=9, depth=3, weight_variance=1.6, bias_variance=0.2, which=which)
    K = kern(X, dtype=dtype, **kw)
    sq = np.einsum("ij,ij->i", X, X)
    np.testing.assert_array_equal(np.diag(K), relu_kernel_diag(sq, **kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_theta_zero_on_the_diagonal(rng, dtype):
    """With diag_offset the diagonal does not see G's rounding; without it the NTK does."""
    X = rng.standard_normal((12, 5))
    sq = np.einsum("ij,ij->i", X, X).astype(dtype)
    G = X @ X.T
    G[np.diag_indices(12)] *= 1 - 1e-6  # a rounding-sized inconsistency between G and sq
    G = G.astype(dtype)
    kw = dict(n_features=5, depth=2, which="ntk")
    exact = relu_kernel_diag(sq, **kw)
    with_off = relu_kernel_from_gram(G.copy(), sq, sq, diag_offset=0, **kw)
    without = relu_kernel_from_gram(G.copy(), sq, sq, **kw)
    np.testing.assert_array_equal(np.diag(with_off), exact)
    # without: theta ~ sqrt(2e-6) = 1.4e-3 makes Sigma_dot = 1 - theta/pi, so the diagonal drops
    # by ~ (L * theta/pi) * 2|x|^2/d ~ 1e-3 relative: clearly visible, i.e. the offset matters.
    rel = np.abs(np.diag(without) - exact) / exact
    assert rel.min() > 1e-4
    assert np.isfinite(without).all()


@pytest.mark.parametrize("which", WHICH)
def test_diag_without_offset_close_to_diag_function(rng, which):
    X = rng.standard_normal((20, 8))
    sq = np.einsum("ij,ij->i", X, X)
    G = X @ X.T
    K = relu_kernel_from_gram(G, sq, sq, n_features=8, depth=2, which=which)
    # G_ii vs |x_i|^2 differ by ~ d ulps; nngp is Lipschitz in rho (1e-13); the NTK's Sigma_dot
    # moves by sqrt(2 * 8 eps)/pi ~ 2e-8 per layer: 1e-7 relative.
    tol = 1e-13 if which == "nngp" else 1e-7
    np.testing.assert_allclose(np.diag(K), relu_kernel_diag(sq, n_features=8, depth=2, which=which), rtol=tol)


# ------------------------------------------------------------------------------------------
# wide random networks
# ------------------------------------------------------------------------------------------


def _network_inputs():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((6, 3))
    X[1] = 0.8 * X[0] + 0.3 * X[2]  # a correlated pair
    X[5] = 0.0  # a zero input
    return X


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("sw2,sb2", [(2.0, 0.0), (1.5, 0.5)])
def test_matches_wide_random_network(which, depth, sw2, sb2):
    X = _network_inputs()
    d = X.shape[1]
    n_seeds, width = 16, 1024
    est = np.stack(
        [
            empirical_relu_kernels(X, depth=depth, width=width, seed=s, weight_variance=sw2, bias_variance=sb2)[
                WHICH.index(which)
            ]
            for s in range(n_seeds)
        ]
    )
    mean = est.mean(0)
    se = est.std(0, ddof=1) / math.sqrt(n_seeds)
    kw = dict(n_features=d, weight_variance=sw2, bias_variance=sb2, which=which)
    K = kern(X, depth=depth, **kw)
    # Each network's kernel is the infinite-width value plus an O(1/sqrt(width)) fluctuation
    # (per-entry relative sd ~ 2/sqrt(1024) ~ 6%) and an O(1/width) bias (~0.1%, negligible).
    # The mean of 16 independent networks has standard error se (estimated from the seeds);
    # 5 se is a two-sided tail of 1.6e-4 for Student t with 15 dof. The zero input gives exact
    # equality (0 = 0 with sigma_b^2 = 0); 1e-12 absolute covers that and rounding.
    assert np.all(np.abs(mean - K) <= 5 * se + 1e-12 * np.abs(K).max())
    # The test has power: se is at most ~3% of the kernel scale, and the kernel of one hidden
    # layer more or fewer lies outside the 5-se band somewhere (a convention error would fail).
    assert se.max() <= 0.03 * np.abs(K).max()
    for other in (depth - 1, depth + 1):
        K_other = kern(X, depth=other, **kw)
        assert np.any(np.abs(mean - K_other) > 5 * se + 1e-12 * np.abs(K).max())


def test_empirical_ntk_equals_autodiff_gradient_inner_products(x64):
    """The analytic backward pass of empirical_relu_kernels is the true parameter Jacobian."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(3)
    X, Z = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    depth, width, seed, sw2, sb2 = 2, 7, 11, 1.7, 0.3
    Ws, bs = _relu._network_params(3, depth, width, seed)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(Ws, bs)]

    def f(params, x):
        a = x
        for l, (W, b) in enumerate(params):
            h = math.sqrt(sw2) / math.sqrt(a.shape[0]) * (W @ a) + math.sqrt(sb2) * b
            a = jax.nn.relu(h) if l < depth else h
        return a[0]

    def flat_grad(x):
        g = jax.grad(f)(params, x)
        return jnp.concatenate([jnp.ravel(t) for t in jax.tree_util.tree_leaves(g)])

    JX = np.stack([np.asarray(flat_grad(jnp.asarray(x))) for x in X])
    JZ = np.stack([np.asarray(flat_grad(jnp.asarray(z))) for z in Z])
    nngp, ntk = empirical_relu_kernels(
        X, Z, depth=depth, width=width, seed=seed, weight_variance=sw2, bias_variance=sb2
    )
    # float64, sums of ~100 products: 1e-12 relative
    np.testing.assert_allclose(ntk, JX @ JZ.T, rtol=1e-12, atol=1e-12)
    # nngp: E over the readout of f(x) f(z) given the hidden layers = feature inner product
    feats = []
    for x in (X, Z):
        a = x
        for l in range(depth):
            a = np.maximum(math.sqrt(sw2 / a.shape[1]) * a @ Ws[l].T + math.sqrt(sb2) * bs[l], 0)
        feats.append(a)
    np.testing.assert_allclose(nngp, sw2 / width * feats[0] @ feats[1].T + sb2, rtol=1e-12)


def test_empirical_refuses_huge_networks():
    with pytest.raises(MemoryBudgetError):
        empirical_relu_kernels(np.ones((2, 3)), depth=3, width=30_000)


# ------------------------------------------------------------------------------------------
# invariants
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sb2", [0.0, 0.3])
@pytest.mark.parametrize("data", ["duplicates", "clustered"])
def test_psd_and_exactly_symmetric(rng, which, dtype, sb2, data):
    n, depth = 80, 3
    X = rng.standard_normal((n, 6))
    if data == "duplicates":
        X[10] = X[11]  # a duplicate row: K is singular, the smallest eigenvalue is 0 + rounding
        X[20] = 0.0
    else:  # half the points within 1e-3 of one point: many eigenvalues near 0
        X[40:] = X[0] + 1e-3 * rng.standard_normal((40, 6))
    K = kern(X, dtype=dtype, depth=depth, bias_variance=sb2, which=which)
    np.testing.assert_array_equal(K, K.T)
    ev = np.linalg.eigvalsh(K.astype(np.float64))
    eps = np.finfo(dtype).eps
    # A symmetric perturbation E moves eigenvalues by <= ||E||_2 <= n max|E_ij|, and
    # |K|max <= ||K||_2. NNGP entries (Lipschitz in rho) carry O(10 eps |K|max) rounding per layer:
    # c = 30 n eps. NTK entries of near-parallel pairs also carry the Sigma_dot error
    # sqrt(8 u)/pi per layer (u = eps/2; module docstring): add n L sqrt(8u)/pi.
    c = 30 * n * eps
    if which == "ntk":
        c += n * depth * math.sqrt(4 * eps) / math.pi
    assert ev.min() >= -c * ev.max()


@pytest.mark.parametrize("which", WHICH)
def test_float32_agrees_with_float64(rng, which):
    d = 20
    X = rng.standard_normal((40, d)).astype(np.float32)
    K32 = kern(X, dtype=np.float32, depth=2, which=which)
    K64 = kern(X.astype(np.float64), depth=2, which=which)
    assert K32.dtype == np.float32
    _, _, cos, _ = _angles(X.astype(np.float64), X.astype(np.float64))
    sin_min = np.sqrt(1 - cos[~np.eye(40, dtype=bool)] ** 2).min()
    # float32 inner products err by ~ d u32 (u32 = 6e-8) relative: delta rho ~ 1.2e-6. Sigma is
    # Lipschitz in rho; Sigma_dot amplifies by 1/sin theta (>= sin_min, deeper layers only
    # raise the correlation a little here); <= 3 layers of terms, 10x margin.
    tol = 10 * 3 * d * 6e-8 / sin_min
    assert tol < 1e-3  # the data are not near-parallel, so the bound is meaningful
    np.testing.assert_allclose(K32, K64, rtol=0, atol=tol * np.abs(K64).max())


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("c", [0.37, 3.0])
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_homogeneity_without_bias(rng, which, c, depth):
    X, Z = rng.standard_normal((5, 4)), rng.standard_normal((6, 4))
    kw = dict(depth=depth, weight_variance=1.8, bias_variance=0.0, which=which)
    K = kern(X, Z, **kw)
    # a few ulps of change in rho from scaling G and |x|^2; Sigma_dot amplifies by 1/sin theta
    # (random 4-d Gaussians: sin theta >~ 0.05): 1e-12 relative to the largest entry.
    np.testing.assert_allclose(kern(c * X, Z, **kw), c * K, rtol=0, atol=1e-12 * np.abs(K).max())
    np.testing.assert_allclose(kern(X, c * Z, **kw), c * K, rtol=0, atol=1e-12 * np.abs(K).max())


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("sb2", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_rows_are_the_limit(rng, which, sb2, dtype):
    X = rng.standard_normal((4, 5))
    X[2] = 0.0
    Z = rng.standard_normal((3, 5))
    kw = dict(depth=2, weight_variance=2.0, bias_variance=sb2, which=which)
    K = kern(X, Z, dtype=dtype, **kw)
    Kxx = kern(X, dtype=dtype, **kw)
    assert np.isfinite(K).all() and np.isfinite(Kxx).all()
    if sb2 == 0.0:
        # the limit x -> 0: every Sigma^(h)(0, z) = 0 and every term of Theta has such a factor
        assert np.all(K[2] == 0) and np.all(Kxx[2] == 0) and np.all(Kxx[:, 2] == 0)
    Xe = X.copy()
    Xe[2] = 1e-4 * rng.standard_normal(5)
    Ke = kern(Xe, Z, dtype=dtype, **kw)
    # continuity at 0: K(eps x, z) - K(0, z) = O(eps |x| * scale) (eps = 1e-4); Sigma_dot is bounded
    # and the variance a stays away from 0 for sb2 > 0; float32 rounding adds ~1e-6: tolerance 1e-3.
    np.testing.assert_allclose(Ke[2], K[2], rtol=0, atol=1e-3 * np.abs(K).max())
    allzero = np.zeros((3, 5), dtype=dtype)
    K0 = kern(allzero, dtype=dtype, **kw)
    assert np.isfinite(K0).all()
    # every pair is (0, 0): rho = 1 up to rounding (sb2 > 0) or the zero-vector limit (sb2 = 0).
    # The diagonal is exact (diag_offset). Off-diagonal duplicates are not flagged: rho = 1 - O(u)
    # gives theta ~ sqrt(8u), so Sigma_dot (NTK only) is off by <= sqrt(8u)/pi per layer (the
    # documented sqrt(eps) limit); the NNGP is Lipschitz in rho: 1e-6 relative.
    k00 = relu_kernel_diag(np.zeros(1), n_features=5, **kw)[0]
    np.testing.assert_array_equal(np.diag(K0), np.full(3, k00, dtype=dtype))
    u = np.finfo(dtype).eps / 2
    tol = 1e-6 if which == "nngp" else 2 * math.sqrt(8 * u) / math.pi
    np.testing.assert_allclose(K0, np.full((3, 3), k00), rtol=tol, atol=0)


def test_zero_rows_jax(x64):
    X = np.zeros((3, 4))
    X[0] = 1.0
    sq = np.einsum("ij,ij->i", X, X)
    for which in WHICH:
        K = np.asarray(relu_kernel_from_gram_jax(X @ X.T, sq, sq, n_features=4, which=which, diag_offset=0))
        assert np.isfinite(K).all()
        assert np.all(K[1:] == 0) and np.all(K[:, 1:] == 0)


# ------------------------------------------------------------------------------------------
# memory layout, tiles, offsets
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", WHICH)
def test_tiles_layouts_and_offsets_give_identical_numbers(rng, which, monkeypatch):
    X = rng.standard_normal((37, 6))
    sq = np.einsum("ij,ij->i", X, X)
    G = X @ X.T
    G = 0.5 * (G + G.T)
    kw = dict(n_features=6, depth=2, weight_variance=1.4, bias_variance=0.1, which=which)
    full = relu_kernel_from_gram(G.copy(), sq, sq, diag_offset=0, **kw)
    # Fortran order, a strided view, and row blocks with offsets: the same entrywise arithmetic
    f = relu_kernel_from_gram(np.asfortranarray(G), sq, sq, diag_offset=0, **kw)
    np.testing.assert_array_equal(f, full)
    big = np.zeros((74, 111))
    big[::2, ::3] = G
    view = big[::2, ::3]
    relu_kernel_from_gram(view, sq, sq, diag_offset=0, **kw)
    np.testing.assert_array_equal(view, full)
    assert np.all(big[1::2] == 0)  # nothing outside the view was touched
    for r0, r1, c0, c1 in [(5, 12, 0, 37), (0, 37, 9, 20), (30, 37, 0, 10)]:
        blk = relu_kernel_from_gram(G[r0:r1, c0:c1].copy(), sq[r0:r1], sq[c0:c1], diag_offset=r0 - c0, **kw)
        np.testing.assert_array_equal(blk, full[r0:r1, c0:c1])
    # many small tiles (including ragged edges) give the same numbers as one tile
    monkeypatch.setattr(_relu, "_TILE_COLS", 5)
    monkeypatch.setattr(_relu, "_TILE_ELEMENTS", 17)
    np.testing.assert_array_equal(relu_kernel_from_gram(G.copy(), sq, sq, diag_offset=0, **kw), full)
    np.testing.assert_array_equal(relu_kernel_from_gram(np.asfortranarray(G), sq, sq, diag_offset=0, **kw), full)


def test_in_place_and_dtype_preserved(rng):
    X = rng.standard_normal((5, 3)).astype(np.float32)
    sq = np.einsum("ij,ij->i", X, X)
    G = X @ X.T
    out = relu_kernel_from_gram(G, sq, sq, n_features=3, which="ntk")
    assert out is G and out.dtype == np.float32


# ------------------------------------------------------------------------------------------
# JAX
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("offset", [None, 4])
def test_jax_matches_numpy_float64(rng, which, offset, x64):
    import functools

    import jax

    X = rng.standard_normal((20, 7))
    A, B = X[4:14], X  # row r of A is row r + 4 of B: offset 4 marks the true diagonal entries
    G = A @ B.T
    sa, sb = np.einsum("ij,ij->i", A, A), np.einsum("ij,ij->i", B, B)
    kw = dict(n_features=7, depth=3, weight_variance=1.9, bias_variance=0.05, which=which)
    Kn = relu_kernel_from_gram(G.copy(), sa, sb, diag_offset=offset, **kw)
    Kj = np.asarray(relu_kernel_from_gram_jax(G, sa, sb, diag_offset=offset, **kw))
    fj = jax.jit(functools.partial(relu_kernel_from_gram_jax, **kw))
    Kjit = np.asarray(fj(G, sa, sb, diag_offset=offset))  # an int offset is traced here
    assert Kj.dtype == np.float64
    # different libm/XLA arccos and operation order: a few ulps in rho; Sigma_dot amplifies by
    # 1/sin theta (random 7-d data, off-diagonal): 1e-12 relative to the largest entry.
    scale = np.abs(Kn).max()
    r = np.arange(10)
    same = np.zeros(G.shape, dtype=bool)
    same[r, r + 4] = True  # pairs of identical vectors
    # flagged identical pairs (offset 4) are the exact recursion everywhere: 1e-15. Unflagged ones
    # have rho = 1 - O(u): Sigma_dot is off by <= sqrt(8u)/pi per layer (NTK; 3 layers).
    if offset is not None or which == "nngp":
        tol_same = 1e-12
    else:
        tol_same = 3 * math.sqrt(8 * 2.0**-53) / math.pi
    for K in (Kj, Kjit):
        np.testing.assert_allclose(K[~same], Kn[~same], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(K[same], Kn[same], rtol=tol_same)


@pytest.mark.parametrize("which", WHICH)
def test_jax_matches_numpy_float32(rng, which):
    X = rng.standard_normal((25, 10)).astype(np.float32)
    sq = np.einsum("ij,ij->i", X, X)
    G = X @ X.T
    kw = dict(n_features=10, depth=2, which=which, diag_offset=0)
    Kn = relu_kernel_from_gram(G.copy(), sq, sq, **kw)
    Kj = np.asarray(relu_kernel_from_gram_jax(G, sq, sq, **kw))
    assert Kj.dtype == np.float32
    # same float32 inputs; JAX runs the per-row recursion in float32 (NumPy in float64) and a
    # different arccos: a few u32 in rho, amplified by 1/sin theta <~ 3 on the NTK: 2e-5.
    np.testing.assert_allclose(Kj, Kn, rtol=0, atol=2e-5 * np.abs(Kn).max())


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


def test_errors():
    G = np.ones((2, 3))
    s2, s3 = np.ones(2), np.ones(3)
    kw = dict(n_features=2, which="ntk")
    with pytest.raises(InvalidInputError):
        relu_kernel_from_gram(G.copy(), s2, s3, n_features=2, which="relu")
    with pytest.raises(InvalidInputError):
        relu_kernel_from_gram(G.copy(), s2, s3, depth=-1, **kw)
    with pytest.raises(InvalidInputError):
        relu_kernel_from_gram(G.copy(), s2, s3, weight_variance=0.0, **kw)
    with pytest.raises(InvalidInputError):
        relu_kernel_from_gram(G.copy(), s2, s3, bias_variance=-1.0, **kw)
    with pytest.raises(InvalidInputError):
        relu_kernel_from_gram(G.copy(), -s2, s3, **kw)
    with pytest.raises(ShapeMismatchError):
        relu_kernel_from_gram(G.copy(), s3, s3, **kw)
    with pytest.raises(InvalidInputError):
        relu_kernel_from_gram(G.astype(np.int64), s2, s3, **kw)
    ro = G.copy()
    ro.flags.writeable = False
    with pytest.raises(InvalidInputError):
        relu_kernel_from_gram(ro, s2, s3, **kw)
    bad = G.copy()
    bad[1, 2] = np.nan
    with pytest.raises(NonFiniteInputError):
        relu_kernel_from_gram(bad, s2, s3, **kw)
    with pytest.raises(NonFiniteInputError):
        relu_kernel_diag(np.array([1.0, np.inf]), **kw)
