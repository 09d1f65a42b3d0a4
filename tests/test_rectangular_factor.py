"""Rectangular factors (QR / LQ, SVD) of a feature matrix: Phi^+ against SVD / lstsq oracles, Penrose
conditions, rank decided on Phi (not on its Gram matrix), scaling, logdet, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernelgen.errors import InvalidInputError, NonFiniteInputError, ShapeMismatchError
from kernelgen.factors._base import Factor, LogDet
from kernelgen.factors._rectangular import (
    MAX_LAPACK_DIM,
    QRFactor,
    SVDFactor,
    qr_factor,
    svd_factor,
)

EPS = np.finfo(np.float64).eps

FACTORIES = {
    "qr_pivoted": lambda A, **kw: qr_factor(A, pivoting=True, **kw),
    "qr_plain": lambda A, **kw: qr_factor(A, pivoting=False, **kw),
    "svd": lambda A, **kw: svd_factor(A, **kw),
    "svd_gesvd": lambda A, **kw: svd_factor(A, driver="gesvd", **kw),
}


def _with_spectrum(n, N, s, seed):
    """U diag(s) V^T with Haar-random orthonormal U (n x r), V (N x r)."""
    rng = np.random.default_rng(seed)
    r = len(s)
    U = np.linalg.qr(rng.standard_normal((n, r)))[0]
    V = np.linalg.qr(rng.standard_normal((N, r)))[0]
    return (U * np.asarray(s)) @ V.T


def _rel(x, y):
    return np.linalg.norm(x - y) / max(np.linalg.norm(y), np.finfo(float).tiny)


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("shape", [(40, 15), (15, 40), (25, 25), (1, 7), (7, 1)])
def test_full_rank_solve_matches_lstsq_and_pinv(name, shape):
    rng = np.random.default_rng(sum(shape))
    A = rng.standard_normal(shape)
    B = rng.standard_normal((shape[0], 3))
    f = FACTORIES[name](A)
    X = f.solve(B)
    assert X.shape == (shape[1], 3) and X.dtype == np.float64
    s = np.linalg.svd(A, compute_uv=False)
    kappa = s[0] / s[-1]
    assert f.rank == min(shape)
    assert f.kind == ("svd" if name.startswith("svd") else ("qr" if shape[0] >= shape[1] else "lq"))
    # backward-stable solves differ by O(max(n, N) eps kappa (1 + kappa ||r|| / (||A|| ||x||))) (Higham 2002,
    # Thm 20.1); 10x that bound, and at most 1e-10 (kappa <= 548 for these Gaussian matrices).
    ref = np.linalg.lstsq(A, B, rcond=None)[0]
    ratio = np.linalg.norm(A @ ref - B) / (s[0] * np.linalg.norm(ref))
    tol = 10 * max(shape) * EPS * kappa * (1 + kappa * ratio)
    assert tol <= 1e-10
    assert _rel(X, ref) <= tol
    assert _rel(X, np.linalg.pinv(A) @ B) <= tol
    # 1-D right-hand side gives a 1-D solution equal to the first column
    np.testing.assert_allclose(f.solve(B[:, 0]), X[:, 0], rtol=0, atol=1e-14 * np.abs(X).max())


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (24, 24)])
def test_rank_deficient_is_truncated_pinv(name, shape):
    n, N = shape
    s = [3.0, 1.0, 0.2, 1e-3]  # rank 4, gap to the rounding floor ~1e-16: the truncation is well defined
    A = _with_spectrum(n, N, s, seed=n * N)
    B = np.random.default_rng(1).standard_normal((n, 2))
    f = FACTORIES[name](A)
    assert f.rank == 4
    assert f.rank_tol == pytest.approx(max(n, N) * EPS * 3.0, rel=1e-10)
    assert f.rank_decided_by in ("svd", "svd_of_R")
    ref = np.linalg.pinv(A, rcond=max(n, N) * EPS) @ B
    # truncated pseudo-inverse: sensitivity ~ kappa_r eps with kappa_r = 3e3 on the kept spectrum,
    # plus the dropped tail (~1e-16) over the gap 1e-3: both < 1e-11.
    assert _rel(f.solve(B), ref) <= 1e-10
    assert f.sigma_min_kept == pytest.approx(1e-3, rel=1e-10)
    # logdet: pseudo-determinant over the kept spectrum, sum log s_i^2
    ld = f.logdet()
    assert isinstance(ld, LogDet) and not ld.rigorous
    assert ld.value == pytest.approx(2 * np.sum(np.log(s)), abs=max(ld.error_bound, 1e-12))


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("shape", [(40, 40), (40, 39), (39, 40)])
def test_ill_conditioned_full_rank_kept_where_a_gram_cutoff_drops_it(name, shape):
    """kappa(Phi) = 1e9: a rank cut-off of n eps lambda_max on the Gram matrix (what the old sweep did)
    drops every singular value below sqrt(n eps) sigma_max ~ 1e-7 sigma_max; the factor keeps them."""
    n, N = shape
    p = min(shape)
    s = np.geomspace(1.0, 1e-9, p)
    A = _with_spectrum(n, N, s, seed=7)
    B = np.random.default_rng(2).standard_normal((n, 2))
    f = FACTORIES[name](A)
    assert f.rank == p
    G = A @ A.T if n <= N else A.T @ A
    lam = np.linalg.eigvalsh(G)
    gram_rank = int(np.sum(lam > G.shape[0] * EPS * lam[-1]))
    assert gram_rank < p - 5  # the Gram cut-off would truncate (measured: ~half the spectrum)
    ref = np.linalg.lstsq(A, B, rcond=None)[0]  # gelsd, rcond = eps: keeps the whole spectrum
    # backward-stable: forward error <~ p kappa eps (1 + kappa ||r|| / (||A|| ||x||)); here the Haar factors make
    # B's projection on the small singular directions O(1), so ||x|| ~ 1e9 and the second term is O(1) times
    # the first: p kappa eps ~ 40 * 1e9 * 2.2e-16 = 9e-6.
    assert _rel(f.solve(B), ref) <= p * 1e9 * EPS


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("shape", [(30, 12), (12, 30), (20, 20)])
def test_penrose_conditions(name, shape):
    n, N = shape
    p = min(shape)
    kappa = 1e6
    A = _with_spectrum(n, N, np.geomspace(1.0, 1.0 / kappa, p), seed=3)
    X = FACTORIES[name](A).solve(np.eye(n))  # Phi^+, N x n
    nA, nX = 1.0, kappa  # ||A||_2 = 1, ||A^+||_2 = kappa
    # Backward-stable pseudo-inverse: each Penrose residual, normalised, is O(max(n, N) eps kappa)
    # (Higham 2002, sec. 20.1; measured ~1e-12 here). 10 max(n, N) eps kappa = 6.7e-8 bounds it.
    tol = 10 * max(n, N) * EPS * kappa
    assert np.linalg.norm(A @ X @ A - A, 2) <= tol * nA
    assert np.linalg.norm(X @ A @ X - X, 2) <= tol * nX
    AX, XA = A @ X, X @ A
    assert np.linalg.norm(AX - AX.T, 2) <= tol
    assert np.linalg.norm(XA - XA.T, 2) <= tol


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("c", [2.0**-600, 1e-150, 3.7, 1e150, 2.0**600])
def test_scaling_keeps_rank_and_divides_coefficients(name, c):
    """Phi -> c Phi: the rank is relative (kept) and Phi^+ B -> Phi^+ B / c, also where c^2 over- or
    underflows (a Gram matrix of 2^600 Phi is inf)."""
    A = _with_spectrum(25, 35, np.geomspace(1.0, 1e-6, 25), seed=11)
    B = np.random.default_rng(4).standard_normal((25, 2))
    f1, fc = FACTORIES[name](A), FACTORIES[name](c * A)
    assert fc.rank == f1.rank == 25
    assert fc.sigma_max == pytest.approx(c * f1.sigma_max, rel=1e-12)
    # c A is A with every entry rounded once (exact for powers of 2): relative perturbation eps, so the
    # solutions agree to ~kappa eps = 2e-10; 1e-8 leaves a margin.
    assert _rel(fc.solve(B) * c, f1.solve(B)) <= 1e-8
    assert fc.logdet().value == pytest.approx(f1.logdet().value + 2 * 25 * np.log(c), abs=1e-6)


@pytest.mark.parametrize("shape", [(30, 30), (50, 20), (20, 50)])
def test_logdet_within_its_error_estimate(shape):
    A = _with_spectrum(*shape, np.geomspace(5.0, 1e-4, min(shape)), seed=5)
    ref = 2 * np.sum(np.log(np.linalg.svd(A, compute_uv=False)))
    for f in (qr_factor(A), qr_factor(A, pivoting=False), svd_factor(A)):
        ld = f.logdet()
        assert ld.dtype == "float64" and ld.error_bound is not None and ld.error_bound > 0
        # the estimate is first order in max(n, N) eps times kappa-weighted sums (~1e-9 here); the reference
        # (gesdd) carries the same order of error, so compare with twice the estimate.
        assert abs(ld.value - ref) <= 2 * ld.error_bound, (ld, ref)
        # and the estimate is not vacuous: well below one nat
        assert ld.error_bound < 1e-6


def test_leading_blocks_equal_fresh_factors():
    rng = np.random.default_rng(9)
    A = rng.standard_normal((50, 40)) @ np.diag(np.geomspace(1.0, 1e-5, 40))
    B = rng.standard_normal((50, 2))
    F = qr_factor(A, pivoting=False)
    for N in (1, 7, 25, 39, 40):
        f = F.leading(N)
        assert f.shape == (50, N) and f.rank == N and f.kind == "qr"
        ref = np.linalg.lstsq(A[:, :N], B, rcond=None)[0]
        # same Householder vectors as a fresh QR of A[:, :N] ([GVL] 5.2.2); forward error ~ kappa eps <= 1e-10
        assert _rel(f.solve(B), ref) <= 1e-9
        assert f.rtol == pytest.approx(50 * EPS)
    with pytest.raises(InvalidInputError):
        qr_factor(A, pivoting=True).leading(3)
    with pytest.raises(InvalidInputError):
        F.leading(41)
    # a leading block that is rank deficient is detected on its own R
    A2 = A.copy()
    A2[:, 5] = A2[:, 2]
    F2 = qr_factor(A2, pivoting=False)
    assert F2.rank == 39 and F2.rank_decided_by == "svd_of_R"
    f5 = F2.leading(5)  # columns 0-4 are independent: certified from the leading block of R^-1
    assert f5.rank == 5 and f5.rank_decided_by == "frobenius_bound"
    assert _rel(f5.solve(B), np.linalg.lstsq(A2[:, :5], B, rcond=None)[0]) <= 1e-9
    f = F2.leading(10)
    assert f.rank == 9 and f.rank_decided_by == "svd_of_R"
    assert _rel(f.solve(B), np.linalg.pinv(A2[:, :10], rcond=50 * EPS) @ B) <= 1e-9


def test_zero_matrix_rank_zero():
    for f in (qr_factor(np.zeros((4, 3))), svd_factor(np.zeros((3, 5))), qr_factor(np.zeros((3, 5)))):
        assert f.rank == 0
        X = f.solve(np.ones(f.shape[0]))
        np.testing.assert_array_equal(X, np.zeros(f.shape[1]))  # pinv(0) = 0 exactly
        assert f.logdet().value == 0.0


def test_protocol_describe_and_inputs_not_mutated():
    rng = np.random.default_rng(12)
    for A in (rng.standard_normal((20, 8)), np.asfortranarray(rng.standard_normal((8, 20))),
              rng.standard_normal((9, 9)).astype(np.float32)):
        A0 = A.copy()
        B = rng.standard_normal((A.shape[0], 2))
        B0 = B.copy()
        for f in (qr_factor(A), qr_factor(A, pivoting=False), svd_factor(A)):
            assert isinstance(f, Factor)
            assert f.backend == "scipy" and f.dtype == np.float64 and f.shape == A.shape
            f.solve(B)
            d = f.describe()
            json.dumps(d)
            assert d["rank"] == f.rank and d["kind"] == f.kind
        np.testing.assert_array_equal(A, A0)
        np.testing.assert_array_equal(B, B0)
    assert isinstance(qr_factor(np.eye(3)), QRFactor) and isinstance(svd_factor(np.eye(3)), SVDFactor)


@pytest.mark.parametrize("make", [qr_factor, svd_factor])
def test_named_errors(make):
    A = np.ones((4, 3))
    for bad in (np.nan, np.inf, -np.inf):
        A2 = A.copy()
        A2[1, 1] = bad
        with pytest.raises(NonFiniteInputError):
            make(A2)
    with pytest.raises(ShapeMismatchError):
        make(np.ones(5))
    with pytest.raises(InvalidInputError):
        make(np.ones((0, 3)))
    with pytest.raises(InvalidInputError):
        make(A, rtol=-1.0)
    with pytest.raises(InvalidInputError):
        make(np.ones((3, 40)), max_dim=39)
    with pytest.raises(InvalidInputError):
        make(np.array([["a", "b"]]))
    f = make(A)
    with pytest.raises(ShapeMismatchError):
        f.solve(np.ones(5))
    with pytest.raises(NonFiniteInputError):
        f.solve(np.array([1.0, np.nan, 0.0, 0.0]))
    assert MAX_LAPACK_DIM == 16384
