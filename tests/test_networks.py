"""kernelgen.networks: finite ReLU networks, their kernels, gradient descent and the Boolean-cube tools.

Oracles: JAX's own Jacobian for the per-layer NTK formula; the analytic ReluNNGP / ReluNTK (right depth
and variances against wrong ones) for the parameterisation; parameter-space gradient descent on the JAX
linearisation for the closed-form linearised dynamics; an explicit Hadamard matrix, an explicit
covariance matrix and brute-force searches for the cube functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from kernelgen import networks as N
from kernelgen._jax import enable_x64
from kernelgen.errors import InvalidInputError, NonFiniteResultError, ShapeMismatchError
from kernelgen.kernels import ReluNNGP, ReluNTK, kernel_matrix

jax = pytest.importorskip("jax")


def _jacobian_ntk(net, params, X, Z):
    """NTK from JAX's full Jacobian (an independent route to the same numbers)."""
    with enable_x64():
        jx = jax.jacrev(lambda q: net.apply(q, X))(params)
        jz = jax.jacrev(lambda q: net.apply(q, Z))(params)
        k = net.n_outputs
        return sum(np.einsum("xip,zjp->xizj", np.asarray(a).reshape(X.shape[0], k, -1),
                             np.asarray(b).reshape(Z.shape[0], k, -1))
                   for a, b in zip(jax.tree_util.tree_leaves(jx), jax.tree_util.tree_leaves(jz)))


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_empirical_ntk_equals_the_jacobian_inner_product(parameterization):
    rng = np.random.default_rng(1)
    X, Z = rng.standard_normal((5, 7)), rng.standard_normal((4, 7))
    net = N.ReluMLP(7, depth=3, width=16, n_outputs=3, bias_variance=0.1, parameterization=parameterization)
    p = net.init(0)
    nngp, ntk = net.empirical_kernels(p, X, Z)
    ref = _jacobian_ntk(net, p, X, Z)
    # the same float64 sums in another order: a few ulps of the largest entry
    assert np.abs(ntk - ref).max() <= 1e-12 * np.abs(ref).max()
    assert nngp.shape == (5, 4) and ntk.shape == (5, 3, 4, 3)


def test_standard_parameterisation_is_the_same_function_at_initialisation():
    X = np.random.default_rng(2).standard_normal((6, 5))
    kw = dict(depth=2, width=32, n_outputs=2, bias_variance=0.3)
    ntk_net, sp_net = N.ReluMLP(5, **kw), N.ReluMLP(5, **kw, parameterization="standard")
    f_ntk = np.asarray(ntk_net.apply(ntk_net.init(3), X))
    f_sp = np.asarray(sp_net.apply(sp_net.init(3), X))
    # same draws, the variance moved from the forward pass into the weights: equal up to rounding
    np.testing.assert_allclose(f_sp, f_ntk, rtol=1e-12, atol=1e-12)
    # but the tangent kernel is not: the standard one carries the width (here 32x larger per hidden layer)
    t_ntk = ntk_net.empirical_kernels(ntk_net.init(3), X)[1]
    t_sp = sp_net.empirical_kernels(sp_net.init(3), X)[1]
    assert np.trace(t_sp.reshape(12, 12)) > 5 * np.trace(t_ntk.reshape(12, 12))


def test_analytic_kernels_describe_this_network_depth_and_variances():
    """kernelgen's ReluNNGP / ReluNTK are the limits of ReluMLP: the right depth and variances beat wrong ones."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 10))
    X *= math.sqrt(10) / np.linalg.norm(X, axis=1, keepdims=True)
    depth, sw2, sb2 = 2, 2.0, 0.5
    net = N.ReluMLP(10, depth=depth, width=2048, bias_variance=sb2, weight_variance=sw2)
    emp = [net.empirical_kernels(net.init(s), X) for s in range(4)]
    nngp = np.mean([e[0] for e in emp], axis=0)
    ntk = np.mean([e[1][:, 0, :, 0] for e in emp], axis=0)

    def err(K, emp_K):
        return np.linalg.norm(emp_K - K) / np.linalg.norm(K)

    right = (err(kernel_matrix(X, kernel=ReluNNGP(depth, sw2, sb2)), nngp),
             err(kernel_matrix(X, kernel=ReluNTK(depth, sw2, sb2)), ntk))
    # fluctuations ~ 1/sqrt(width * seeds) ~ 1%; 0.05 leaves a factor 5
    assert max(right) < 0.05, right
    for wrong in ((depth + 1, sw2, sb2), (depth - 1, sw2, sb2), (depth, 1.1 * sw2, sb2), (depth, sw2, 0.0)):
        e = (err(kernel_matrix(X, kernel=ReluNNGP(*wrong)), nngp), err(kernel_matrix(X, kernel=ReluNTK(*wrong)), ntk))
        # a wrong depth or a variance 10% off moves the kernel by >= 10%: at least 2x the right one's error
        assert max(e) > 2 * max(right), (wrong, e, right)


def test_gradient_descent_first_step_matches_an_independent_gradient():
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    net = N.ReluMLP(4, depth=2, width=12, n_outputs=2, bias_variance=0.2)
    p0 = net.init(1)
    tr = N.gradient_descent(net, p0, X, Y, learning_rate=0.5, record_steps=[0, 1, 3])
    with enable_x64():
        def loss(p):
            return 0.5 * jax.numpy.mean((net.apply(p, X) - Y) ** 2)

        p = p0
        outs = []
        for _ in range(3):
            g = jax.grad(loss)(p)
            p = jax.tree_util.tree_map(lambda a, b: a - 0.5 * b, p, g)
            outs.append(np.asarray(net.apply(p, X)))
    # the same arithmetic in float64 (fori_loop vs a Python loop): agreement to rounding
    np.testing.assert_allclose(tr.outputs[1], outs[0], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(tr.outputs[2], outs[2], rtol=1e-11, atol=1e-12)
    assert tr.param_distance[0] == 0 and tr.loss[2] < tr.loss[0]
    assert tr.steps.tolist() == [0, 1, 3]


def test_closed_form_linearised_gd_equals_parameter_space_gd_on_the_linearisation():
    rng = np.random.default_rng(6)
    X, Xt, Y = rng.standard_normal((7, 5)), rng.standard_normal((3, 5)), rng.standard_normal((7, 2))
    net = N.ReluMLP(5, depth=2, width=10, n_outputs=2, bias_variance=0.1)
    p0 = net.init(2)
    f_lin = net.linearize(p0)
    eta, T = 0.7, 40
    with enable_x64():
        def loss(p):
            return jax.numpy.sum((f_lin(p, jax.numpy.asarray(X)) - Y) ** 2) / (2 * Y.size)

        grad = jax.jit(jax.grad(loss))
        p = p0
        for _ in range(T):
            p = jax.tree_util.tree_map(lambda a, b: a - eta * b, p, grad(p))
        ref_tr, ref_te = np.asarray(f_lin(p, jax.numpy.asarray(X))), np.asarray(f_lin(p, jax.numpy.asarray(Xt)))
    _, ntk = net.empirical_kernels(p0, X)
    _, ntk_te = net.empirical_kernels(p0, Xt, X)
    f0, f0t = np.asarray(net.apply(p0, X)), np.asarray(net.apply(p0, Xt))
    tr, te = N.linearized_gd_outputs(ntk, f0, Y, learning_rate=eta, steps=[0, T], ntk_eval_train=ntk_te, f0_eval=f0t)
    # the linear model's GD is exactly the function-space recursion: agreement to float64 rounding
    np.testing.assert_allclose(tr[1], ref_tr, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(te[1], ref_te, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(tr[0], f0, atol=1e-12)


def test_divergence_is_a_named_error_and_bad_input_is_refused():
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((4, 3)), rng.standard_normal((4, 1))
    net = N.ReluMLP(3, depth=1, width=8)
    with pytest.raises(NonFiniteResultError, match="lower the learning rate"):
        N.gradient_descent(net, net.init(0), X, Y, learning_rate=1e6, record_steps=[2000])
    with pytest.raises(InvalidInputError, match="width"):
        N.ReluMLP(3, width=0)
    with pytest.raises(InvalidInputError, match="parameterization"):
        N.ReluMLP(3, parameterization="mup")
    with pytest.raises(InvalidInputError, match="weight_variance"):
        N.ReluMLP(3, weight_variance=-1.0)
    with pytest.raises(ShapeMismatchError):
        net.apply(net.init(0), np.ones((2, 4)))
    with pytest.raises(ShapeMismatchError):
        N.gradient_descent(net, net.init(0), X, np.ones((4, 2)), learning_rate=0.1, record_steps=[1])
    with pytest.raises(InvalidInputError, match="learning_rate"):
        N.gradient_descent(net, net.init(0), X, Y, learning_rate=0.0, record_steps=[1])


# ---------------------------------------------------------------------------------------------- cube
def test_fwht_is_the_hadamard_matrix():
    a = np.random.default_rng(8).standard_normal((32, 3))
    H = scipy.linalg.hadamard(32)  # Sylvester order: H_xy = (-1)^popcount(x & y)
    np.testing.assert_allclose(N.fwht(a), H @ a, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(N.fwht(N.fwht(a)), 32 * a, rtol=1e-13, atol=1e-12)
    with pytest.raises(ShapeMismatchError):
        N.fwht(np.ones(12))


def test_cube_strings_index_hamming_distance_by_xor():
    S = N.cube_strings(5)
    for x, y in [(0, 31), (3, 5), (7, 7), (12, 17)]:
        assert np.sum(S[x] != S[y]) == bin(x ^ y).count("1")


def _explicit_K(g):
    n = len(g) - 1
    idx = np.arange(1 << n)
    pc = np.array([bin(v).count("1") for v in range(1 << n)])
    return np.asarray(g)[pc[idx[:, None] ^ idx[None, :]]]


def test_cube_gp_eigenvalues_diagonalise_the_explicit_covariance():
    g = kernel_matrix(np.ones((1, 6)), N.cube_strings(6)[[0, 1, 3, 7, 15, 31, 63]], kernel=ReluNNGP(2))[0]
    K = _explicit_K(g)
    mu = N.cube_gp_eigenvalues(g)
    H = scipy.linalg.hadamard(64)
    # K = H diag(mu) H / 2^n exactly; eigenvalues agree with LAPACK's
    np.testing.assert_allclose(H @ np.diag(mu) @ H / 64, K, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.sort(mu), np.linalg.eigvalsh(K), rtol=1e-10, atol=1e-12)


def test_sample_cube_gp_has_the_kernel_as_covariance():
    g = np.array([1.0, 0.6, 0.45, 0.3, 0.25])
    F = N.sample_cube_gp(g, 20000, seed=0)
    C = F.T @ F / F.shape[0]
    K = _explicit_K(g)
    # Monte Carlo: sd of an entry of the sample covariance <= sqrt(2/S) ~ 0.01; 0.05 is 5 sd
    assert np.abs(C - K).max() < 0.05
    with pytest.raises(InvalidInputError, match="positive semi-definite"):
        N.sample_cube_gp(np.array([1.0, 2.0, 1.0]), 1, seed=0)


def _brute_distance(labels, n):
    out = []
    for x in range(1 << n):
        out.append(min(bin(x ^ y).count("1") for y in range(1 << n) if labels[y] != labels[x]))
    return np.array(out)


def test_nearest_disagreement_distance_matches_brute_force():
    rng = np.random.default_rng(9)
    n = 7
    smooth = N.sample_cube_gp(np.linspace(1.0, 0.2, n + 1), 1, seed=3)[0] > 0.3  # a biased, smooth function
    for labels in (rng.random(1 << n) < 0.5, smooth, N.cube_strings(n)[:, 0] > 0):
        np.testing.assert_array_equal(N.nearest_disagreement_distance(labels), _brute_distance(labels, n))
    assert (N.nearest_disagreement_distance(np.ones(1 << n, bool)) == -1).all()


def test_random_flip_counts_on_known_functions():
    n = 10
    S = N.cube_strings(n)
    parity = np.prod(S, axis=1) > 0  # every flip changes it: exactly 1
    c, ch = N.random_flip_counts(parity, 500, seed=0)
    assert (c == 1).all() and ch.all()
    # changes when bit 3 is flipped: with distinct bits in random order its position is uniform on 1..n
    dictator = S[:, 3] > 0
    c, ch = N.random_flip_counts(dictator, 20000, seed=1)
    # sd of the mean = sqrt((n^2 - 1)/12 / 20000) ~ 0.02; 0.1 is 5 sd
    assert ch.all() and abs(c.mean() - (n + 1) / 2) < 0.1 and set(np.unique(c)) == set(range(1, n + 1))
    c, ch = N.random_flip_counts(np.zeros(1 << n, bool), 10, seed=2)
    assert (c == n + 1).all() and not ch.any()
    rnd = np.random.default_rng(3).random(1 << 16) < 0.5
    c, _ = N.random_flip_counts(rnd, 20000, seed=4)
    # a random classifier: Geometric(1/2), mean 2, sd of the mean sqrt(2/20000) = 0.01 (plus the one function's
    # own fluctuation ~ 1/sqrt(2^16)); 0.06 is ~5 sd
    assert abs(c.mean() - 2.0) < 0.06
