"""The fused float64 pass and the proven residual bound, against extended-precision oracles.

Oracles: the kernel and its products recomputed in ``np.longdouble`` (x87 extended precision, unit
roundoff 2^-64 ~ 5.4e-20, 2,048 times finer than float64) from the same float64 data, so that the
oracle's own error is negligible against every float64 bound checked here. Skipped where longdouble
is no wider than float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import kernelgen.kernels._entries as E
from kernelgen import SolveOptions, kernel_interpolate
from kernelgen.kernels import Gaussian, Laplace, Linear, fused_summation_depth
from kernelgen.solvers._refine import refine
from kernelgen.solvers._system import KernelSystem

LD = np.longdouble
pytestmark = pytest.mark.skipif(np.finfo(LD).eps >= np.finfo(np.float64).eps,
                                reason="np.longdouble is not wider than float64 on this platform")
U = np.finfo(np.float64).eps / 2


@pytest.fixture
def small_blocks(monkeypatch):
    """Sub-blocks and chunks far smaller than the defaults: many items, several per worker, ragged edges."""
    monkeypatch.setattr(E, "_SUB_ROWS", 48)
    monkeypatch.setattr(E, "_SUB_COLS", 80)
    monkeypatch.setattr(E, "_CHUNK_ELEMS", 16 * 80)


def _digits(n, d=64, seed=0):
    """8-bit images / 255: the integer form (exact squared distances)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, d)).astype(np.float64) / 255.0


def _floats(n, d=7, seed=0):
    """General float data, off the origin (the centred float form)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * 0.7 + 3.0


def _kernel_ld(kern, A, B):
    """k(A, B) in extended precision from differences (no cancellation: the Laplace kernel's sqrt near 0)."""
    A, B = A.astype(LD), B.astype(LD)
    D = np.empty((A.shape[0], B.shape[0]), dtype=LD)
    for i in range(0, A.shape[0], 64):
        diff = A[i:i + 64, None, :] - B[None, :, :]
        D[i:i + 64] = (diff * diff).sum(-1)
    s = LD(kern.bandwidth)
    if kern.name == "gaussian":
        return np.exp(-D / (2 * s * s))
    return np.exp(-np.sqrt(D) / s)


CASES = [
    ("gaussian-int", Gaussian(bandwidth=2.0), _digits),
    ("laplace-int", Laplace(bandwidth=4.0), _digits),
    ("gaussian-float", Gaussian(bandwidth=1.3), _floats),
]


# ----------------------------------------------------------------------------- the fused pass
@pytest.mark.parametrize("name,kern,data", CASES, ids=[c[0] for c in CASES])
def test_fused_symmetric_apply_matches_extended_precision(name, kern, data, small_blocks):
    X = data(333)
    V = np.random.default_rng(1).normal(size=(333, 3))
    got = kern.symmetric_apply(X, V)
    K = _kernel_ld(kern, X, X)
    ref = K @ V.astype(LD)
    bound = K @ np.abs(V).astype(LD)
    # the entries' and the summation's proven error (the bound under test below) and a 1e-13 slack
    assert np.all(np.abs(got - ref) <= 1e-13 * bound)


def test_fused_pass_is_bitwise_deterministic_and_thread_count_free_of_races(small_blocks):
    X, V = _digits(400), np.random.default_rng(2).normal(size=(400, 4))
    k = Gaussian(bandwidth=2.0)
    a, b = k.symmetric_apply(X, V), k.symmetric_apply(X, V)
    assert np.array_equal(a, b)  # items are dealt to workers round-robin, each in order: same bits
    c = k.apply(X[:150], X, V)
    # The rectangular pass sums the same rows in another order. Each result is within g |K| |V| of the
    # exact K V (Higham, Accuracy and Stability, Lemma 3.1 and §4.2): g = (1 + eta)(1 + gamma_D) - 1 with eta the
    # entries' proven relative error and D the height of the summation tree. D = n bounds the height of any order
    # of n terms (plus the zero each accumulator starts from), so it holds for both passes whatever the BLAS
    # kernel; two such results differ by at most 2 g |K||V|. A purely relative tolerance would not do: entries
    # of K V that cancel to near zero differ by far more than 1e-13 of themselves (seen with OpenBLAS's Haswell
    # kernels).
    n, u = X.shape[0], np.finfo(np.float64).eps / 2
    eta = k.entries(X, None, dtype=np.float64).entry_error_bound()
    gamma = (n + 1) * u / (1 - (n + 1) * u)
    g = (1 + eta) * (1 + gamma) - 1
    KabsV = np.abs(k.matrix(X[:150], X)) @ np.abs(V) * (1 + 2 * eta)  # |K exact| <= |K computed| (1 + 2 eta)
    assert np.all(np.abs(c - a[:150]) <= 2 * g * KabsV)
    # and the bound is not vacuous: it is far below the size of the terms summed
    assert 2 * g < 1e-12


def test_fused_pass_works_for_every_kernel_family(small_blocks):
    X = _floats(130)
    V = np.random.default_rng(3).normal(size=130)
    for k in (Linear(), Gaussian(bandwidth=1.0) + 0.5 * Linear()):
        K = k.matrix(X)
        # float64 dense product as oracle: both sides are float64 sums of the same entries
        assert np.allclose(k.symmetric_apply(X, V), K @ V, rtol=1e-12, atol=1e-12 * np.abs(K) @ np.abs(V))


def test_float32_entries_of_integer_data_are_the_rounded_float64_entries():
    X = _digits(300)
    k = Gaussian(bandwidth=2.0)
    k32, k64 = k.matrix(X, dtype=np.float32), k.matrix(X, dtype=np.float64)
    # the float32 kernel is the float64 value rounded once: within one float32 half-ulp of it (+ float64 error)
    assert np.all(np.abs(k32.astype(np.float64) - k64) <= (2.0**-24 + 1e-15) * k64)


# ----------------------------------------------------------------------------- the entry bound
@pytest.mark.parametrize("name,kern,data", CASES, ids=[c[0] for c in CASES])
def test_entry_error_bound_holds_against_extended_precision(name, kern, data):
    X = data(250)
    src = kern.entries(X, None, dtype=np.float64)
    eta = src.entry_error_bound()
    assert eta is not None and 0 < eta < 1e-12
    K = kern.matrix(X, dtype=np.float64)
    ref = _kernel_ld(kern, X, X)
    rel = np.max(np.abs(K.astype(LD) - ref) / ref)
    assert rel <= eta, (rel, eta)


def test_entry_bound_is_absent_where_it_is_not_proven():
    X = _floats(50)
    assert Laplace(bandwidth=1.0).entries(X, None, dtype=np.float64).entry_error_bound() is None  # sqrt near 0
    assert Linear().entries(X, None, dtype=np.float64).entry_error_bound() is None
    assert (Gaussian(bandwidth=1.0) + Linear()).entries(X, None, dtype=np.float64).entry_error_bound() is None
    assert Gaussian(bandwidth=1.0).entries(X, None, dtype=np.float32).entry_error_bound() is None


def test_numpy_exp_is_as_accurate_as_the_bound_assumes():
    """The entry bound takes NumPy's float64 exp to be within _MATH_ULPS ulps: measured on the kernel's range."""
    t = -np.random.default_rng(4).uniform(0, 40, size=200_000)
    got = np.exp(t).astype(LD)
    ref = np.exp(t.astype(LD))
    ulps = np.abs(got - ref) / (np.spacing(np.exp(t)).astype(LD))
    assert float(ulps.max()) <= E._MATH_ULPS


def test_product_bound_holds_componentwise(small_blocks):
    """|fl(K v) - K v| <= g K|v| for the system's g, K the extended-precision kernel."""
    X = _digits(420, seed=5)
    k = Gaussian(bandwidth=2.0)
    system = KernelSystem(k, X, None, 0.0, "on-the-fly", 2048, False)
    g = system.error_bound()
    assert g is not None and g >= fused_summation_depth(420) * U
    V = np.random.default_rng(6).normal(size=(420, 2))
    K = _kernel_ld(k, X, X)
    err = np.abs(system.matvec(V).astype(LD) - K @ V.astype(LD))
    assert np.all(err <= g * (K @ np.abs(V).astype(LD)))


# ----------------------------------------------------------------------------- the residual bound
def _exact_residual(kern, X, Y, alpha):
    K = _kernel_ld(kern, X, X)
    R = Y.astype(LD) - K @ alpha.astype(LD)
    return float(np.sqrt((R * R).sum()) / np.sqrt((Y.astype(LD) ** 2).sum()))


@pytest.mark.parametrize("n", [120, 300, 600])
@pytest.mark.parametrize("name,kern,data", CASES, ids=[c[0] for c in CASES])
def test_bound_certificate_bounds_the_exact_residual(n, name, kern, data):
    X = data(n, seed=n)
    Y = np.random.default_rng(n).normal(size=(n, 2))
    opts = SolveOptions(dtype="float32", certificate="bound", tol=1e-8)
    fit = kernel_interpolate(X, Y, kernel=kern, options=opts)
    exact = _exact_residual(kern, X, Y, fit.alpha)
    assert fit.relative_residual_bound is not None
    assert exact <= fit.relative_residual_bound  # the bound's claim, against the extended-precision residual
    assert fit.relative_residual <= 1e-8
    direct = kernel_interpolate(X, Y, kernel=kern, options=SolveOptions(dtype="float32", tol=1e-8))
    assert direct.residual_certificate == "direct"
    assert _exact_residual(kern, X, Y, direct.alpha) <= direct.relative_residual_bound
    if fit.residual_certificate == "bound":  # the verifying pass was saved
        assert fit.n_matvecs == direct.n_matvecs - 1
        assert fit.relative_residual == fit.relative_residual_bound


def test_bound_certifies_a_well_conditioned_system_without_the_verifying_pass():
    X = _digits(500, seed=9)
    Y = np.random.default_rng(9).normal(size=(500, 3))
    kern = Gaussian(bandwidth=1.0)  # narrow: K close to I, alpha ~ Y, the rounding term far below tol
    fit = kernel_interpolate(X, Y, kernel=kern, options=SolveOptions(dtype="float32", certificate="bound"))
    assert fit.residual_certificate == "bound"
    assert fit.history[-1]["kind"] == "certified (proven bound)"
    assert _exact_residual(kern, X, Y, fit.alpha) <= fit.relative_residual_bound <= 1e-10


def test_an_understated_matvec_error_is_caught_by_the_oracle():
    """Negative control: a product 100x less accurate than the g it claims breaks the bound's claim."""
    rng = np.random.default_rng(11)
    n = 200
    X = _digits(n, seed=11)
    kern = Gaussian(bandwidth=1.0)
    K = kern.matrix(X)
    Y = rng.normal(size=(n, 1))
    g = 1e-15
    noise = np.random.default_rng(12)

    def noisy(V):  # relative error ~ 1e-9 per product: far above the claimed 1e-15
        out = K @ V
        return out * (1.0 + 1e-9 * noise.choice([-1.0, 1.0], size=out.shape))

    res = refine(noisy, lambda R: np.linalg.solve(K, R), Y, tol=1e-14, max_iter=6, method="cg",
                 matvec_error=g, stop_on_bound=True)
    exact = _exact_residual(kern, X, Y, res.alpha)
    assert exact > res.relative_residual_bound


def test_certificate_option_is_validated():
    from kernelgen.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="certificate"):
        SolveOptions(certificate="maybe")


# ----------------------------------------------------------------------------- what counts as integer data
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6, 1e9])
def test_rounded_k_over_255_far_from_the_origin_is_the_given_data(offset):
    """X = fl(k / 255) + offset round-trips as k'/255, but is not k'/255: the kernel must be the given data's.

    From a newcomer's review: at offset 1e9 the integer form computed the kernel of k'/255 (entries off by 4e-7
    relative, residual certificate 1.6e-15 against a true 6.9e-8). The oracle takes distances of the float64 values
    themselves in extended precision."""
    X = _digits(200, d=32, seed=3) + offset
    kern = Gaussian(bandwidth=2.0)
    src = kern.entries(X, None, dtype=np.float64)
    assert (src.int_form is not None) == (offset == 0.0)  # far from the origin: the float path, exact on X
    Xl = X.astype(LD)
    Xl -= Xl.mean(axis=0)  # exact shift in extended precision: the same distances as the given data
    ref = _kernel_ld(kern, Xl.astype(LD), Xl.astype(LD))
    got = kern.matrix(X).astype(LD)
    eta = src.entry_error_bound()
    assert eta is not None and np.max(np.abs(got - ref) / ref) <= eta


def test_raw_8_bit_values_use_the_integer_form():
    """Pixels 0..255 (uint8 or float) are integers over scale 1: exact squared distances, a proven entry bound."""
    rng = np.random.default_rng(4)
    U8 = rng.integers(0, 256, size=(150, 64)).astype(np.uint8)
    for X in (U8, U8.astype(np.float64)):
        for kern in (Gaussian(bandwidth=500.0), Laplace(bandwidth=1000.0)):
            src = kern.entries(X, None, dtype=np.float64)
            assert src.int_form is not None and src.int_form[2] == 1.0
            ref = _kernel_ld(kern, np.asarray(X, dtype=np.float64), np.asarray(X, dtype=np.float64))
            assert np.max(np.abs(kern.matrix(X).astype(LD) - ref) / ref) <= src.entry_error_bound()
