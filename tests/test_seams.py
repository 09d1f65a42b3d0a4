"""The typed seams: Kernel objects, SolveOptions, the Factor protocol, immutable saveable results."""

import dataclasses
import json
import pickle

import numpy as np
import pytest

import kernelgen
from kernelgen import SolveOptions, kernel_interpolate, kernel_matrix
from kernelgen.errors import (
    CorruptFileError,
    DataMismatchError,
    FormatVersionError,
    InvalidInputError,
    NotPositiveDefiniteError,
)
from kernelgen.factors import CholeskyFactor, EighFactor, Factor, JaxCholeskyFactor
from kernelgen.kernels import (
    Gaussian,
    Kernel,
    Laplace,
    Linear,
    Polynomial,
    Precomputed,
    Product,
    ReluNNGP,
    ReluNTK,
    Scaled,
    Sum,
    as_kernel,
)
from kernelgen.solvers import KernelInterpolant, load_interpolant

ALL_KERNELS = [Gaussian(bandwidth=1.5), Laplace(bandwidth=2.0), Linear(), Polynomial(degree=2, bandwidth=2.0),
               ReluNNGP(depth=2), ReluNTK(depth=3, bias_variance=0.1),
               Gaussian(bandwidth=1.0) + 0.5 * Linear(), Gaussian(bandwidth=2.0) * Polynomial(degree=2)]


# ----------------------------------------------------------------------------- SolveOptions
@pytest.mark.parametrize("bad", [dict(tile=0), dict(tile=-5), dict(max_iter=-1), dict(max_iter=0), dict(tol=0.0),
                                 dict(tol=float("nan")), dict(tol=2.0), dict(dtype="float16"), dict(refinement="gmres"),
                                 dict(memory_budget=-1), dict(rcond=-1e-3), dict(keep_factor="yes"),
                                 dict(max_iter=2.5), dict(float64_max_n=-1)])
def test_bad_options_raise_named_errors_naming_the_field(bad):
    (name, value), = bad.items()
    with pytest.raises(InvalidInputError) as ei:
        SolveOptions(**bad)
    assert f"SolveOptions.{name}" in str(ei.value)


def test_options_are_frozen_varied_by_replace_and_coerced():
    o = SolveOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.tol = 1e-3
    o2 = dataclasses.replace(o, tol=1e-12, dtype=np.float64)
    assert o2.tol == 1e-12 and o2.dtype == "float64" and o.tol == kernelgen.numerics.EXACT_TOL
    assert SolveOptions.coerce({"max_iter": 5}).max_iter == 5
    with pytest.raises(InvalidInputError):
        SolveOptions.coerce({"nope": 1})
    with pytest.raises(InvalidInputError):  # validation also through replace
        dataclasses.replace(o, tile=0)


def test_old_loose_keywords_are_gone(rng):
    """One way in for each knob: kernel parameters on the Kernel, numerical knobs on SolveOptions."""
    X, y = rng.normal(size=(10, 2)), rng.normal(size=10)
    for kw in (dict(bandwidth=1.0), dict(tol=1e-8), dict(dtype="float64"), dict(tile=64)):
        with pytest.raises(TypeError):
            kernel_interpolate(X, y, **kw)


# ----------------------------------------------------------------------------- Kernel objects
def test_string_names_map_to_families_with_documented_defaults():
    assert as_kernel("gaussian") == Gaussian() and Gaussian().bandwidth is None
    assert as_kernel("polynomial") == Polynomial(degree=3, bandwidth=1.0, coef0=1.0)
    assert as_kernel("relu_ntk") == ReluNTK(depth=2, weight_variance=2.0, bias_variance=0.0)
    assert isinstance(as_kernel("precomputed"), Precomputed)
    with pytest.raises(InvalidInputError):
        as_kernel("rbf")
    with pytest.raises(InvalidInputError):
        as_kernel("gaussian", width=3.0)


@pytest.mark.parametrize("bad", [lambda: Gaussian(bandwidth=0.0), lambda: Gaussian(bandwidth=-1.0),
                                 lambda: Laplace(bandwidth=float("inf")), lambda: Polynomial(degree=0),
                                 lambda: Polynomial(degree=2.5), lambda: Polynomial(coef0=-1.0),
                                 lambda: ReluNTK(depth=0), lambda: ReluNNGP(weight_variance=0.0),
                                 lambda: Scaled(Gaussian(1.0), -2.0), lambda: Sum([]),
                                 lambda: Sum([Gaussian(1.0), Precomputed()])])
def test_bad_kernel_parameters_raise_named_errors(bad):
    with pytest.raises(InvalidInputError):
        bad()


def test_set_params_validates_and_nests():
    k = Gaussian(bandwidth=1.0) + Polynomial(degree=2)
    params = k.get_params()
    assert params["k0__bandwidth"] == 1.0 and params["k1__degree"] == 2
    k.set_params(k0__bandwidth=3.0)
    assert k.kernels[0].bandwidth == 3.0
    with pytest.raises(InvalidInputError):
        Gaussian(1.0).set_params(bandwidth=-1.0)
    with pytest.raises(InvalidInputError):
        Gaussian(1.0).set_params(degree=2)


@pytest.mark.parametrize("kern", ALL_KERNELS, ids=repr)
def test_kernel_description_roundtrips(kern):
    d = kern.to_dict()
    back = Kernel.from_dict(json.loads(json.dumps(d)))
    assert back == kern and repr(back) == repr(kern)
    assert pickle.loads(pickle.dumps(kern)) == kern


def test_composition_equals_the_algebra_of_matrices(rng):
    X, Z = rng.normal(size=(30, 4)), rng.normal(size=(12, 4))
    G, L, P = Gaussian(bandwidth=1.3), Linear(), Polynomial(degree=2, bandwidth=2.0)
    KG, KL, KP = (kernel_matrix(X, Z, kernel=k) for k in (G, L, P))
    # each composite entry is the sum / product of the components' entries computed the same way
    np.testing.assert_allclose(kernel_matrix(X, Z, kernel=G + L), KG + KL, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(kernel_matrix(X, Z, kernel=G * P), KG * KP, rtol=1e-15, atol=0)
    np.testing.assert_allclose(kernel_matrix(X, Z, kernel=2.5 * G), 2.5 * KG, rtol=1e-15, atol=0)
    assert isinstance(G + L, Sum) and isinstance(G * P, Product) and sum([G, L]) == G + L
    np.testing.assert_allclose((G + 2.0 * L).diag(X), np.diag(kernel_matrix(X, kernel=G + 2.0 * L)), rtol=1e-13)


@pytest.mark.parametrize("kern", ALL_KERNELS, ids=repr)
def test_every_kernel_agrees_across_paths(kern, rng):
    """Dense matrix, symmetric apply, cross apply, tiled panels, JAX and diag: one set of entries."""
    X, V = rng.normal(size=(70, 5)), rng.normal(size=(70, 2))
    K = kernel_matrix(X, kernel=kern)
    # all paths compute the same float64 entries up to GEMM summation order: ~n eps |K||V|
    tol = 1e-12 * max(1.0, np.abs(K).max())
    np.testing.assert_allclose(kern.symmetric_apply(X, V, tile=16), K @ V, rtol=1e-11, atol=tol * 10)
    # cross blocks (rows of X against X): duplicates are not flagged as diagonal there. Distance kernels
    # recompute near-duplicate distances by differences; the ReLU NTK's arccos of a cosine ~1 carries
    # ~sqrt(eps) relative error for identical inputs (kernels/_relu.py), hence its wider tolerance.
    ctol = 1e-7 if isinstance(kern, ReluNTK) else 1e-11
    np.testing.assert_allclose(kern.apply(X[:9], X, V), K[:9] @ V, rtol=ctol, atol=ctol * np.abs(K[:9] @ V).max())
    np.testing.assert_allclose(np.asarray(kern.matrix_jax(X)), K, rtol=1e-11, atol=tol)
    np.testing.assert_allclose(kern.diag(X), np.diag(K), rtol=1e-12, atol=tol)
    np.testing.assert_allclose(K, K.T, rtol=0, atol=tol)
    from kernelgen.factors import LowerPanels

    P = LowerPanels(70, 16, np.float64)
    kern.fill_panels(P, X)
    np.testing.assert_allclose(P.to_dense(), K, rtol=1e-12, atol=tol)


def test_distance_kernels_are_centred_far_from_the_origin(rng):
    """Translation invariance: the entries do not depend on where the data sit.

    docs/numerics.md, "Summation and rounding": the distance expansion cancels far from the origin.
    """
    X = rng.normal(size=(40, 3))
    K0 = kernel_matrix(X, kernel=Gaussian(bandwidth=0.7))
    Kc = kernel_matrix(X + 1e6, kernel=Gaussian(bandwidth=0.7))
    # fl(X + 1e6) moves each coordinate by <= ulp(1e6)/2 = 5.8e-11; the entries move by ~ that / s^2 * |x - z|
    np.testing.assert_allclose(Kc, K0, rtol=0, atol=1e-8)
    Ku = kernel_matrix(X + 1e6, kernel=Linear())  # not translation invariant: no centring (a different kernel)
    assert not np.allclose(Ku, kernel_matrix(X, kernel=Linear()))


# ----------------------------------------------------------------------------- Factor protocol
def test_factors_follow_the_protocol_and_their_logdets(rng):
    Q, _ = np.linalg.qr(rng.normal(size=(120, 120)))
    A = (Q * np.logspace(0, -3, 120)) @ Q.T
    A = (A + A.T) / 2
    sign, ref = np.linalg.slogdet(A)
    for fac in (CholeskyFactor.factor(A, tile=32), EighFactor.factor(A), JaxCholeskyFactor.factor(A)):
        assert isinstance(fac, Factor) and fac.rank == 120 and fac.shape == (120, 120)
        # float64 factors of a cond-1e3 matrix: log det to ~n * cond * eps absolute
        assert fac.logdet().value == pytest.approx(ref, abs=1e-9)
        B = rng.normal(size=(120, 3))
        np.testing.assert_allclose(A @ fac.solve(B), B, rtol=0, atol=1e-9)
        json.dumps(fac.describe())
    f32 = CholeskyFactor.factor(A, dtype=np.float32, tile=32)
    ld = f32.logdet()
    assert ld.dtype == "float32" and not ld.rigorous and "NOT the float64" in ld.how


def test_eigh_factor_rank_follows_the_precision_of_the_matrix(rng):
    """A float32 PSD J J^T (rank 50): its rounding (~1e-7 ||K||) is judged by float32's rule."""
    J = rng.normal(size=(200, 50)).astype(np.float32)
    K = J @ J.T
    fac = EighFactor.factor(K)
    fac.require_psd()  # the negative eigenvalues are float32 rounding, not indefiniteness
    assert fac.rank == 50
    with pytest.raises(NotPositiveDefiniteError):
        EighFactor.factor(np.diag([1.0, -0.5, 1.0])).require_psd()


def test_jax_reports_the_first_failing_pivot_like_lapack():
    K = np.array([[1.0, 2, 0], [2, 1, 0], [0, 0, 1]])
    for backend in ("scipy", "jax"):
        with pytest.raises(NotPositiveDefiniteError) as ei:
            kernel_interpolate(K, np.ones(3), kernel="precomputed", solver="cholesky", backend=backend)
        assert ei.value.index == 1  # pivot 0 is 1 > 0; pivot 1 is 1 - 4 < 0


def test_float32_factor_logdet_estimate_and_exact_float64_refactor(rng):
    X = rng.normal(size=(600, 5))
    # bandwidth 1.0, not 1.5: at 1.5 this K is so ill-conditioned that the float64 residual's own rounding
    # floor (~eps || |K| |alpha| || / ||Y||) sits at ~1e-10 and CG reaches tol or stalls depending on the
    # summation order of the product; this test is about the log-determinant, not that edge
    fit = kernel_interpolate(X, rng.normal(size=600), kernel=Gaussian(bandwidth=1.0),
                             options=SolveOptions(dtype="float32", keep_factor=True, tile=128))
    ld32 = fit.logdet()
    assert ld32.dtype == "float32" and ld32.error_bound is not None and ld32.error_bound > 0
    exact = fit.logdet(float64=True)
    ref = np.linalg.slogdet(kernel_matrix(X, kernel=Gaussian(bandwidth=1.0)))[1]
    assert exact.dtype == "float64" and exact.value == pytest.approx(ref, abs=1e-8 * abs(ref) + 1e-8)
    # the float32 value is off by more than float64 rounding, and within its stated estimate here
    assert abs(ld32.value - ref) <= ld32.error_bound


# ----------------------------------------------------------------------------- results
@pytest.fixture
def fitted(rng):
    X = rng.normal(size=(150, 4))
    Y = rng.normal(size=(150, 2))
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.2) + 0.1 * Linear(),
                             options=SolveOptions(keep_factor=True, dtype="float32", tile=64))
    return X, Y, fit


def test_interpolant_is_immutable_and_predict_changes_nothing(fitted, rng):
    X, Y, fit = fitted
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.relative_residual = 0.0
    with pytest.raises(ValueError):
        fit.alpha[0, 0] = 1.0
    before = (dict(fit.timings), fit.alpha.copy())
    Xn = rng.normal(size=(9, 4))
    p1, p2 = fit.predict(Xn), fit.predict(Xn)
    np.testing.assert_array_equal(p1, p2)
    assert dict(fit.timings) == before[0]
    np.testing.assert_array_equal(fit.alpha, before[1])


def test_result_carries_provenance(fitted):
    prov = fitted[2].provenance
    for key in ("kernelgen", "numpy", "scipy", "jax", "cpu", "blas", "date", "git_commit"):
        assert key in prov
    assert prov["numpy"] == np.__version__


@pytest.mark.parametrize("include_factor", [False, True])
def test_save_load_predict_roundtrip_bit_for_bit(fitted, tmp_path, include_factor, rng):
    X, Y, fit = fitted
    path = tmp_path / "fit.npz"
    fit.save(path, include_factor=include_factor)
    back = load_interpolant(path, X)
    Xn = rng.normal(size=(11, 4))
    np.testing.assert_array_equal(back.predict(Xn), fit.predict(Xn))
    np.testing.assert_array_equal(back.alpha, fit.alpha)
    assert back.kernel == fit.kernel and back.relative_residual == fit.relative_residual
    assert back.history == fit.history and back.options == fit.options
    if include_factor:
        Y2 = rng.normal(size=(150, 1))
        again = back.solve(Y2)  # the loaded factor is reused: no refactorisation
        assert again.relative_residual <= 1e-10
        np.testing.assert_allclose(again.alpha, fit.solve(Y2).alpha, rtol=1e-8, atol=1e-10)
    assert not list(tmp_path.glob(".kernelgen-*"))  # nothing half-written left behind


def test_load_refuses_other_data_and_other_versions(fitted, tmp_path):
    X, Y, fit = fitted
    path = tmp_path / "fit.npz"
    fit.save(path)
    X2 = X.copy()
    X2[0, 0] += 1e-12
    with pytest.raises(DataMismatchError):
        load_interpolant(path, X2)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    meta["version"] = 999
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    bad = tmp_path / "future.npz"
    np.savez(bad, **arrays)
    with pytest.raises(FormatVersionError):
        load_interpolant(bad, X)
    np.savez(tmp_path / "other.npz", alpha=np.zeros(3))
    with pytest.raises(CorruptFileError):
        load_interpolant(tmp_path / "other.npz", X)


def test_precomputed_roundtrip(rng, tmp_path):
    X = rng.normal(size=(60, 3))
    K = kernel_matrix(X, kernel=Laplace(bandwidth=1.0))
    fit = kernel_interpolate(K, rng.normal(size=60), kernel="precomputed")
    fit.save(tmp_path / "p.npz")
    back = KernelInterpolant.load(tmp_path / "p.npz", K)
    Kn = kernel_matrix(X[:4] + 0.1, X, kernel=Laplace(bandwidth=1.0))
    np.testing.assert_array_equal(back.predict(Kn), fit.predict(Kn))
