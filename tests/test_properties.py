"""Property-based tests of kernel_interpolate across kernels x backends x solvers x factor dtypes.

Properties: translation invariance of distance kernels, permutation equivariance, linearity in Y,
the four Penrose conditions of min_norm's implied pseudo-inverse, inputs never mutated, and
every non-finite input refused with a named error.

How the tolerances are built (used throughout): two computed solutions alpha_1, alpha_2 of systems
with the same K (up to dK) whose float64 residuals are r_i = ||Y_i - K alpha_i|| / ||Y_i|| satisfy
||K (alpha_1 - alpha_2)|| <= r_1 ||Y_1|| + r_2 ||Y_2|| + ||dK|| ||alpha||, hence
||alpha_1 - alpha_2|| <= (r_1 ||Y_1|| + r_2 ||Y_2|| + ||dK|| ||alpha||) / lambda_min(K) -- "cond * tol".
The residuals used are the reported ones; test_exactness.py checks those against independent ones.

Shapes are fixed per test (n = 24, d = 4) so that JAX compiles once; hypothesis draws seeds and
scalars with few examples (the file runs in well under a minute on 2 cores).
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelgen import SolveOptions, kernel_interpolate, kernel_matrix, min_norm_solve
from kernelgen.errors import InterpolationWarning, KernelgenError, NonFiniteInputError
from kernelgen.kernels import Gaussian, Laplace, Polynomial, ReluNTK

EPS = float(np.finfo(np.float64).eps)
N, D = 24, 4

KERNELS = {
    "gaussian": Gaussian(bandwidth=2.0),
    "laplace": Laplace(bandwidth=3.0),
    "polynomial": Polynomial(degree=3, bandwidth=2.0),
    "relu_ntk": ReluNTK(depth=2),
}
DISTANCE = ("gaussian", "laplace")
BACKENDS = ("scipy", "jax")
SOLVERS = ("cholesky", "min_norm")
DTYPES = ("float32", "float64")

FEW = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**31 - 1)


def _data(seed, n=N, d=D, k=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, k))


def _fit(X, Y, name, backend, solver, dtype, **kw):
    return kernel_interpolate(X, Y, kernel=KERNELS[name], backend=backend, solver=solver,
                              options=SolveOptions(dtype=dtype), **kw)


def _spectrum(K):
    w = np.linalg.eigvalsh(K)
    assert w[0] > 0, "the property tests use positive-definite kernels (random data, n <= feature dim)"
    return w[0], w[-1]


def _agree(a1, a2, slack, lam_min, what):
    err = np.linalg.norm(a1 - a2)
    bound = slack / lam_min
    assert err <= bound, f"{what}: ||d alpha|| = {err:.3g} > bound {bound:.3g}"


# min_norm eigendecomposes in float64 only: SolveOptions(dtype="float32") with it is refused (UnsupportedOptionError)
combos = pytest.mark.parametrize("backend,solver,dtype",
                                 [(b, s, t) for b in BACKENDS for s in SOLVERS for t in DTYPES
                                  if not (s == "min_norm" and t == "float32")])


# ============================================================================ translation invariance
@pytest.mark.parametrize("name", DISTANCE)
@combos
@FEW
@given(seed=seeds, log_rel_offset=st.floats(0, 6))
def test_translation_invariance_of_distance_kernels(name, backend, solver, dtype, seed, log_rel_offset):
    # float64 factor: offsets up to 1e6 x the data's spread; float32 factor: up to 1e2 (the float64
    # iteration still certifies the float64 system, so the alpha tolerances below are float64 ones)
    top = 6 if dtype == "float64" else 2
    X, Y = _data(seed)
    spread = float(np.ptp(X))
    c = spread * 10.0 ** min(log_rel_offset, top)
    Xs = X + c
    Xo = Xs - c  # fl(X + c) - c is exact (Sterbenz): the very points the library sees, near the origin
    fo = _fit(Xo, Y, name, backend, solver, dtype)
    fs = _fit(Xs, Y, name, backend, solver, dtype)
    K = kernel_matrix(Xo, kernel=KERNELS[name])
    lam_min, lam_max = _spectrum(K)
    s = KERNELS[name].bandwidth
    ny = np.linalg.norm(Y)
    # dK: a computation at magnitude c may move each coordinate by eps * c independently, each entry by
    # <= 2 eps c / s (|d/dr e^{-r^2/2s^2}| <= 0.61 / s, |d/dr e^{-r/s}| <= 1 / s; r moves by <= 2 eps c *
    # sqrt(d)/sqrt(d)), so ||dK||_2 <= n * 2 sqrt(d) eps c / s (the c eps kappa term); plus each kernel
    # matrix's own rounding 64 n eps ||K||. A kernel that does not centre errs by ~eps c^2 / s^2 in the
    # exponent: ~1e-3 at c = 1e6 spread, far outside.
    dK = N * 2 * np.sqrt(D) * EPS * c / s + 64 * N * EPS * lam_max
    slack = (fo.relative_residual + fs.relative_residual) * ny + dK * np.linalg.norm(fo.alpha)
    _agree(fs.alpha, fo.alpha, slack, lam_min, f"offset {c:.3g}")
    assert fs.relative_residual <= 1e-10 and fo.relative_residual <= 1e-10


# ============================================================================ permutation equivariance
@pytest.mark.parametrize("name", list(KERNELS))
@combos
@FEW
@given(seed=seeds)
def test_permutation_equivariance(name, backend, solver, dtype, seed):
    X, Y = _data(seed)
    perm = np.random.default_rng(seed + 1).permutation(N)
    f = _fit(X, Y, name, backend, solver, dtype)
    fp = _fit(X[perm], Y[perm], name, backend, solver, dtype)
    K = kernel_matrix(X, kernel=KERNELS[name])
    lam_min, lam_max = _spectrum(K)
    # permuted K is P K P^T exactly in exact arithmetic; computed entries differ by rounding (64 n eps ||K||)
    slack = (f.relative_residual + fp.relative_residual) * np.linalg.norm(Y) \
        + 64 * N * EPS * lam_max * np.linalg.norm(f.alpha)
    _agree(fp.alpha, f.alpha[perm], slack, lam_min, "permutation")


# ============================================================================ linearity in Y
# |a|, |b| >= 1e-150 (or 0): targets scaled towards 2^-1022 are refused by name (alpha would leave float64's normal
# range: NonFiniteResultError "underflow", tested in tests/test_bound_tight.py); a fresh hypothesis database drew
# b = 2.2e-308 once (2026-12-06)
coefficients = st.floats(-10, 10).filter(lambda v: v == 0 or abs(v) >= 1e-150)


@pytest.mark.parametrize("name", list(KERNELS))
@combos
@FEW
@given(seed=seeds, a=coefficients, b=coefficients)
def test_linearity_in_y(name, backend, solver, dtype, seed, a, b):
    X, Y = _data(seed)
    Y1, Y2 = Y[:, :1], Y[:, 1:]
    Y3 = a * Y1 + b * Y2
    f1, f2 = _fit(X, Y1, name, backend, solver, dtype), _fit(X, Y2, name, backend, solver, dtype)
    f3 = _fit(X, Y3, name, backend, solver, dtype)
    K = kernel_matrix(X, kernel=KERNELS[name])
    lam_min, lam_max = _spectrum(K)
    # K (alpha_3 - a alpha_1 - b alpha_2) = -R_3 + a R_1 + b R_2, plus rounding of a Y1 + b Y2 itself
    slack = (f3.relative_residual * np.linalg.norm(Y3) + abs(a) * f1.relative_residual * np.linalg.norm(Y1)
             + abs(b) * f2.relative_residual * np.linalg.norm(Y2) + 4 * EPS * (abs(a) * np.linalg.norm(Y1)
                                                                              + abs(b) * np.linalg.norm(Y2)))
    _agree(f3.alpha, a * f1.alpha + b * f2.alpha, slack, lam_min, f"linearity a={a}, b={b}")


# ============================================================================ Penrose conditions (min_norm)
def _penrose_systems():
    rng = np.random.default_rng(77)
    X = rng.normal(size=(N, D))
    for name in KERNELS:
        yield name, X, KERNELS[name], None
    # singular: degree-2 polynomial features of 3 inputs span C(5, 2) = 10 dimensions < n = 24
    yield "polynomial2 (rank 10)", rng.normal(size=(N, 3)), Polynomial(degree=2, bandwidth=2.0), 10


@pytest.mark.parametrize("case", list(_penrose_systems()), ids=lambda c: c[0])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stored", ["float64", "float32 precomputed"])
def test_min_norm_satisfies_the_penrose_conditions(case, backend, stored):
    name, X, kern, rank = case
    K = kernel_matrix(X, kernel=kern)
    if stored == "float64":
        Kin, kw = X, dict(kernel=kern)
        Kref = K
    else:  # a float32 matrix: its rank cut-off follows float32 (n eps32 ||K||), the arithmetic is float64
        Kin, kw = K.astype(np.float32), dict(kernel="precomputed")
        Kref = Kin.astype(np.float64)  # the matrix as stored, exactly
    w = np.linalg.eigvalsh(Kref)

    def G(Y):  # alpha = G Y, G the implied pseudo-inverse; Y outside the range only warns (least squares)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InterpolationWarning)
            fit = kernel_interpolate(Kin, Y, solver="min_norm", backend=backend, **kw)
        return fit.alpha, fit

    GK, fit = G(Kref)
    r = fit.rank
    if rank is not None:
        assert r == rank
    lam_r = np.sort(np.abs(w))[::-1][r - 1]
    kappa = w[-1] / lam_r
    # G is the pseudo-inverse of the rank-r truncation of the stored matrix, computed in float64: the
    # float64 eigensolver is backward stable (error ~ n u ||K||), so (2)-(4) hold to ~kappa_r n u relative
    # (10x for constants; Golub & Van Loan 8.1, 5.5.4), and (1) K G K = K also misses the discarded
    # eigenvalues, <= rank_tol = n eps(stored dtype) ||K||: that term is where the precision shows.
    tol = 10 * kappa * N * EPS / 2
    nK = np.linalg.norm(Kref, 2)
    rng = np.random.default_rng(5)
    Y1, Y2 = rng.normal(size=(N, 3)), rng.normal(size=(N, 3))
    a1, _ = G(Y1)
    a2, _ = G(Y2)
    # (1) K G K = K
    assert np.linalg.norm(Kref @ GK - Kref, 2) <= tol * nK + fit.rank_tol
    # (2) G K G = G, on random Y: G (K (G Y)) = G Y
    aa, _ = G(Kref @ a1)
    assert np.linalg.norm(aa - a1) <= tol * np.linalg.norm(a1)
    # (3) (K G)^T = K G: <Y2, K G Y1> = <K G Y2, Y1>
    lhs, rhs = np.sum(Y2 * (Kref @ a1)), np.sum((Kref @ a2) * Y1)
    assert abs(lhs - rhs) <= tol * np.linalg.norm(Y1) * np.linalg.norm(Y2)
    # (4) (G K)^T = G K
    assert np.linalg.norm(GK - GK.T, 2) <= tol * np.linalg.norm(GK, 2)


# ============================================================================ inputs never mutated
@pytest.mark.parametrize("layout", ["C float64", "F float64", "C float32"])
@combos
def test_inputs_are_never_mutated(layout, backend, solver, dtype):
    X, Y = _data(3)
    K = kernel_matrix(X, kernel=KERNELS["gaussian"])
    dt = np.float32 if "float32" in layout else np.float64
    order = "F" if layout.startswith("F") else "C"
    X, Y, K = (np.array(A, dtype=dt, order=order) for A in (X, Y, K))
    before = [A.copy(order="A") for A in (X, Y, K)]
    fit = kernel_interpolate(X, Y, kernel=KERNELS["gaussian"], backend=backend, solver=solver,
                             options=SolveOptions(dtype=dtype))
    fit.predict(X)
    kernel_interpolate(K, Y, kernel="precomputed", backend=backend, solver=solver, options=SolveOptions(dtype=dtype))
    for A, B in zip((X, Y, K), before):  # bit for bit, same dtype and layout
        assert A.dtype == B.dtype and A.flags.f_contiguous == B.flags.f_contiguous
        np.testing.assert_array_equal(A, B)


# ============================================================================ non-finite inputs
BAD = st.sampled_from([np.nan, np.inf, -np.inf])


@pytest.mark.parametrize("where", ["X", "Y", "K"])
@combos
@settings(max_examples=2, deadline=None)
@given(bad=BAD, i=st.integers(0, N - 1), j=st.integers(0, 1))
def test_every_non_finite_input_raises_a_named_error(where, backend, solver, dtype, bad, i, j):
    X, Y = _data(4)
    K = kernel_matrix(X, kernel=KERNELS["gaussian"])
    if where == "X":
        X[i, j] = bad
        args = (X, Y, dict(kernel=KERNELS["gaussian"]))
    elif where == "Y":
        Y[i, j] = bad
        args = (X, Y, dict(kernel=KERNELS["gaussian"]))
    else:
        K[i, j] = bad
        K[j, i] = bad
        args = (K, Y, dict(kernel="precomputed"))
    with pytest.raises(NonFiniteInputError):
        kernel_interpolate(args[0], args[1], backend=backend, solver=solver, options=SolveOptions(dtype=dtype),
                           **args[2])


@settings(max_examples=5, deadline=None)
@given(bad=BAD, i=st.integers(0, N - 1), j=st.integers(0, 1))
def test_non_finite_inputs_elsewhere_raise_named_errors(bad, i, j):
    X, Y = _data(5)
    g = KERNELS["gaussian"]
    fit = kernel_interpolate(X, Y, kernel=g)
    Xb = X.copy()
    Xb[i, j] = bad
    Yb = Y.copy()
    Yb[i, j] = bad
    for call in (lambda: fit.predict(Xb), lambda: kernel_matrix(Xb, kernel=g), lambda: kernel_matrix(X, Xb, kernel=g),
                 lambda: min_norm_solve(Xb, Y), lambda: min_norm_solve(X, Yb), lambda: g.apply(Xb, X, Y),
                 lambda: g.apply(X, Xb, Y), lambda: g.symmetric_apply(Xb, Y)):
        with pytest.raises(NonFiniteInputError):
            call()


@pytest.mark.parametrize("method", ["apply", "symmetric_apply"])
def test_kernel_products_refuse_a_non_finite_vector(method):
    X, Y = _data(6)
    Y[0, 0] = np.nan
    g = KERNELS["gaussian"]
    with pytest.raises(KernelgenError):
        g.apply(X, X, Y) if method == "apply" else g.symmetric_apply(X, Y)
