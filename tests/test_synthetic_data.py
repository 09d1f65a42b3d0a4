"""Tests of kernelgen.datasets' synthetic generators against closed forms of the distributions they sample.

Every Monte-Carlo check compares an average of M independent draws with its exact expectation, with a
tolerance of Z = 5 standard errors computed from the exact variance (written beside each check). For a
correct generator one such check fails with probability 5.7e-7 (two-sided normal tail at 5); the
largest test below makes 63 checks, so a correct implementation fails it with probability < 4e-5 at any
seed, while the wrong generators each check is aimed at (unnormalised or non-uniform directions,
covariance K^2 instead of K, noise variance instead of standard deviation, means off the simplex) miss
by tens of standard errors. The seeds are fixed, so the outcome is also reproducible.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kernelgen.datasets import gaussian_mixture, mixture_means, sample_gp, sphere_uniform, teacher_student
from kernelgen.errors import InvalidInputError
from kernelgen.kernels import Gaussian, Laplace, Linear, Stationary

Z = 5.0  # standard errors allowed in every Monte-Carlo check (see the module docstring)


class _OneMinusR2(Stationary):
    """k = 1 - ||x - z||^2 / s^2: not positive semi-definite (a GP with this covariance does not exist)."""

    name = "test_synthetic_one_minus_r2"

    def from_sqdist(self, r2):
        return 1.0 - r2


# ---------------------------------------------------------------------------------------------
# Uniform on the sphere
# ---------------------------------------------------------------------------------------------


def test_sphere_unit_norm_and_shape():
    X = sphere_uniform(1000, 7, seed=3)
    assert X.shape == (1000, 7) and X.dtype == np.float64
    # x = g / ||g||: the norm of the computed quotient is 1 to a few ulps (d + 2 roundings of size u each);
    # 1e-14 is ~50 u.
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=0, atol=1e-14)


def test_sphere_moments_match_closed_form():
    # Uniform on S^{d-1}: E[x] = 0, E[x x^T] = I/d, E[x_i^4] = 3/(d(d+2)), E[x_i^2 x_j^2] = 1/(d(d+2)) (i != j).
    n, d = 200_000, 5
    X = sphere_uniform(n, d, seed=11)
    m2, m4, m22 = 1.0 / d, 3.0 / (d * (d + 2)), 1.0 / (d * (d + 2))
    # E[x]: each coordinate has variance 1/d, so its mean has standard error sqrt(1/(d n)).
    assert np.all(np.abs(X.mean(axis=0)) <= Z * np.sqrt(m2 / n))
    S = X.T @ X / n
    # Diagonal of E[x x^T]: Var(x_i^2) = m4 - m2^2; off-diagonal: Var(x_i x_j) = E[x_i^2 x_j^2] = m22.
    se = np.where(np.eye(d, dtype=bool), np.sqrt((m4 - m2**2) / n), np.sqrt(m22 / n))
    assert np.all(np.abs(S - np.eye(d) / d) <= Z * se)
    # Fourth moment (tells uniform directions from, e.g., normalised points of a cube, whose covariance is
    # also I/d): Var(x_i^4) = E[x_i^8] - m4^2 with E[x_i^8] = 105/(d(d+2)(d+4)(d+6)).
    m8 = 105.0 / (d * (d + 2) * (d + 4) * (d + 6))
    assert np.all(np.abs((X**4).mean(axis=0) - m4) <= Z * np.sqrt((m8 - m4**2) / n))


def test_sphere_in_three_dimensions_has_uniform_coordinates():
    # Archimedes' hat-box theorem: on S^2 each coordinate is uniform on [-1, 1]. A Kolmogorov-Smirnov test
    # at level 1e-6 (n = 20,000: it detects a CDF off by ~0.02 anywhere).
    X = sphere_uniform(20_000, 3, seed=5)
    for j in range(3):
        assert stats.kstest(X[:, j], stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-6


def test_sphere_reproducible_and_seed_dependent():
    a, b = sphere_uniform(50, 4, seed=123), sphere_uniform(50, 4, seed=123)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sphere_uniform(50, 4, seed=124))
    # The documented draw: g is the first n * d standard normals of default_rng(seed), normalised by row.
    g = np.random.default_rng(123).standard_normal((50, 4))
    np.testing.assert_array_equal(a, g / np.linalg.norm(g, axis=1)[:, None])


def test_sphere_d1_is_plus_minus_one():
    x = sphere_uniform(10_000, 1, seed=0)[:, 0]
    assert set(np.unique(x)) == {-1.0, 1.0}
    # P(+1) = 1/2: Binomial(n, 1/2) count, standard error sqrt(n)/2.
    assert abs(np.sum(x > 0) - 5000) <= Z * np.sqrt(10_000) / 2


# ---------------------------------------------------------------------------------------------
# Gaussian mixture
# ---------------------------------------------------------------------------------------------


def test_mixture_means_are_a_centred_regular_simplex():
    M = mixture_means(4, 6, 3.0)
    assert M.shape == (4, 6)
    D = np.linalg.norm(M[:, None, :] - M[None, :, :], axis=2)
    # Closed form: every pairwise distance is the separation (float64 rounding of a few entries: 1e-14).
    np.testing.assert_allclose(D[~np.eye(4, dtype=bool)], 3.0, rtol=1e-14)
    np.testing.assert_allclose(M.sum(axis=0), 0.0, atol=1e-14)
    assert np.all(M[:, 4:] == 0.0)


def test_mixture_proportions_means_and_covariance():
    n, d, C, sep = 60_000, 4, 3, 2.5
    X, y = gaussian_mixture(n, d, n_classes=C, separation=sep, seed=7)
    assert X.shape == (n, d) and X.dtype == np.float64 and y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(C))
    counts = np.bincount(y, minlength=C)
    # Each count is Binomial(n, 1/C): standard error sqrt(n (1/C)(1 - 1/C)).
    assert np.all(np.abs(counts - n / C) <= Z * np.sqrt(n * (1 / C) * (1 - 1 / C)))
    means = mixture_means(C, d, sep)
    for c in range(C):
        Xc = X[y == c]
        # The class mean of N(mu_c, I): each coordinate has standard error 1/sqrt(n_c).
        assert np.all(np.abs(Xc.mean(axis=0) - means[c]) <= Z / np.sqrt(len(Xc)))
        # Within-class covariance I: sample variance of N(., 1) has standard error sqrt(2/n_c); the
        # off-diagonal sample covariance sqrt(1/n_c).
        S = np.cov(Xc, rowvar=False)
        se = np.where(np.eye(d, dtype=bool), np.sqrt(2.0 / len(Xc)), np.sqrt(1.0 / len(Xc)))
        assert np.all(np.abs(S - np.eye(d)) <= Z * se)


def test_mixture_documented_draw_order_and_reproducibility():
    X, y = gaussian_mixture(20, 3, n_classes=2, separation=1.0, seed=9)
    X2, y2 = gaussian_mixture(20, 3, n_classes=2, separation=1.0, seed=9)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    rng = np.random.default_rng(9)
    y_ref = rng.integers(0, 2, size=20)
    X_ref = mixture_means(2, 3, 1.0)[y_ref] + rng.standard_normal((20, 3))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(X, X_ref)
    assert not np.array_equal(X, gaussian_mixture(20, 3, n_classes=2, separation=1.0, seed=10)[0])


# ---------------------------------------------------------------------------------------------
# Gaussian-process draws and the teacher-student setting
# ---------------------------------------------------------------------------------------------


def test_sample_gp_covariance_matches_kernel():
    X = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 1.0], [1.5, 1.0], [3.0, -1.0], [0.5, 0.1]])
    k = Gaussian(bandwidth=1.0)
    K = k.matrix(X)
    M = 40_000
    F = sample_gp(X, kernel=k, n_functions=M, seed=2)
    assert F.shape == (6, M) and F.dtype == np.float64
    S = F @ F.T / M
    # f ~ N(0, K): Var(f_i f_l) = K_ii K_ll + K_il^2 (Isserlis), so the mean over M draws has standard
    # error sqrt((K_ii K_ll + K_il^2) / M). 36 checks at 5 standard errors.
    se = np.sqrt((np.outer(np.diag(K), np.diag(K)) + K**2) / M)
    assert np.all(np.abs(S - K) <= Z * se)
    # The mean is 0: standard error sqrt(K_ii / M).
    assert np.all(np.abs(F.mean(axis=1)) <= Z * np.sqrt(np.diag(K) / M))


def test_sample_gp_singular_kernel_needs_no_jitter():
    # A rank-2 kernel (Linear in d = 2) on 5 points, with a repeated point: K is singular, and the draw
    # lies in its range exactly: f = X w with w ~ N(0, I_2), so f at the repeated points is equal and f
    # is in the column space of X.
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0], [1.0, 0.0]])
    F = sample_gp(X, kernel=Linear(), n_functions=3, seed=0)
    # The three zero eigenvalues are dropped, so what is left is rounding of V sqrt(w) Z: a few u ||K||^(1/2)
    # |z| ~ 1e-15 (||K|| ~ 8, |z| < 5); 1e-12 leaves a margin and is far below the ~3e-8 that keeping
    # rounding-level eigenvalues (sqrt(u ||K||)) would give.
    np.testing.assert_allclose(F[0], F[4], rtol=0, atol=1e-12)
    coef, *_ = np.linalg.lstsq(X, F, rcond=None)
    np.testing.assert_allclose(X @ coef, F, rtol=0, atol=1e-12)


def test_sample_gp_refuses_an_indefinite_kernel():
    X = np.array([[0.0], [1.0], [2.0]])  # k = 1 - r^2: [[1, 0, -3], [0, 1, 0], [-3, 0, 1]] has eigenvalue -2
    with pytest.raises(InvalidInputError, match="not positive semi-definite"):
        sample_gp(X, kernel=_OneMinusR2(bandwidth=1.0), seed=0)
    with pytest.raises(InvalidInputError, match="not positive semi-definite"):
        teacher_student(3, 1, kernel=_OneMinusR2(bandwidth=1.0), seed=0)


def test_teacher_student_covariance_over_seeds():
    # Over seeds both X and y vary; the closed form E[y y^T - K(X, X)] = noise^2 I holds unconditionally.
    n, d, noise, S = 4, 2, 0.3, 4000
    k = Gaussian(bandwidth=1.0)
    acc = np.zeros((n, n))
    for s in range(S):
        X, y = teacher_student(n, d, kernel=k, noise=noise, seed=s)
        acc += np.outer(y, y) - k.matrix(X)
    D = acc / S
    # With A = K + s2 I (s2 = noise^2), Isserlis gives E[(y_i y_l - K_il)^2 | X] = A_ii A_ll + 2 A_il^2
    # - 2 K_il A_il + K_il^2 <= 3 (1 + s2)^2 since 0 <= K <= 1 (Gaussian kernel): the standard error is at
    # most sqrt(3) (1 + s2) / sqrt(S) = 0.030. The off-diagonal signal E[K_il] = 1/3 (what f ~ N(0, I) would
    # miss) is 11 standard errors; a noise variance of 0.3 instead of 0.09 is 7.
    se = np.sqrt(3.0) * (1 + noise**2) / np.sqrt(S)
    assert np.all(np.abs(D - noise**2 * np.eye(n)) <= Z * se)


def test_teacher_student_documented_stream_and_noise():
    k = Laplace(bandwidth=2.0)
    X0, y0 = teacher_student(30, 3, kernel=k, noise=0.0, seed=4)
    X1, y1 = teacher_student(30, 3, kernel=k, noise=0.25, seed=4)
    # Same seed: the same inputs and the same f; the noise is 0.25 times the last 30 normals of the stream.
    rng = np.random.default_rng(4)
    np.testing.assert_array_equal(X0, rng.standard_normal((30, 3)))
    np.testing.assert_array_equal(X1, X0)
    rng.standard_normal(30)  # the GP draw's normals
    eps = rng.standard_normal(30)
    np.testing.assert_allclose(y1 - y0, 0.25 * eps, rtol=0, atol=1e-14)  # one rounding of y0 + 0.25 eps
    X2, y2 = teacher_student(30, 3, kernel=k, noise=0.25, seed=4)
    np.testing.assert_array_equal(X2, X1)
    np.testing.assert_array_equal(y2, y1)
    assert not np.array_equal(y1, teacher_student(30, 3, kernel=k, noise=0.25, seed=5)[1])


def test_teacher_student_on_the_sphere():
    X, y = teacher_student(40, 5, kernel="gaussian", seed=8, inputs="sphere")
    np.testing.assert_array_equal(X, sphere_uniform(40, 5, seed=8))  # the same stream: the inputs come first
    assert y.shape == (40,) and np.all(np.isfinite(y))


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda: sphere_uniform(0, 3, seed=0), "n must be an integer >= 1"),
    (lambda: sphere_uniform(5, 2.0, seed=0), "d must be an integer >= 1"),
    (lambda: sphere_uniform(5, 2, seed=-1), "seed must be a non-negative integer"),
    (lambda: sphere_uniform(5, 2, seed=1.5), "seed must be a non-negative integer"),
    (lambda: sphere_uniform(5, 2, seed=None), "seed must be a non-negative integer"),
    (lambda: gaussian_mixture(5, 2, n_classes=3, separation=1.0, seed=0), "needs d >= 3"),
    (lambda: gaussian_mixture(5, 2, n_classes=1, separation=1.0, seed=0), "n_classes must be an integer >= 2"),
    (lambda: gaussian_mixture(5, 2, n_classes=2, separation=-1.0, seed=0), "separation must be a finite"),
    (lambda: gaussian_mixture(5, 2, n_classes=2, separation=float("nan"), seed=0), "separation must be a finite"),
    (lambda: sample_gp(np.zeros((3, 2)), kernel="gaussian", n_functions=0, seed=0), "n_functions must be"),
    (lambda: sample_gp(np.zeros((3, 2)), kernel="no_such_kernel", seed=0), "unknown kernel"),
    (lambda: sample_gp(np.eye(3), kernel="precomputed", seed=0), "not 'precomputed'"),
    (lambda: sample_gp(np.zeros(3), kernel="gaussian", seed=0), "dimension"),
    (lambda: sample_gp(np.full((2, 2), np.nan), kernel="gaussian", seed=0), "NaN"),
    (lambda: teacher_student(5, 2, kernel="gaussian", noise=-0.1, seed=0), "noise must be a finite number >= 0"),
    (lambda: teacher_student(5, 2, kernel="gaussian", seed=0, inputs="cube"), "inputs must be one of"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()
