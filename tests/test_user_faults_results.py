"""Issue 21 (no silent wrong answer), the fitted result and its file: items 2, 6 (pickling), 8, 12; issue 20 item 3.

Each test is one example of the issue turned into a check against an oracle (the fit before the
caller's change, the original object before pickling, the file's own record, the process umask).
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from kernelgen import SolveOptions, kernel_interpolate, load_interpolant
from kernelgen.errors import (
    CorruptFileError,
    DataMismatchError,
    FormatVersionError,
    InvalidInputError,
    KernelIdentityError,
    NotPicklableError,
    NotPositiveDefiniteError,
)
from kernelgen.kernels import Gaussian, Kernel
from kernelgen.solvers import FORMAT_VERSION, KernelInterpolant


@pytest.fixture
def data():
    rng = np.random.default_rng(21)
    X = rng.standard_normal((80, 3))
    Y = np.sin(X[:, 0]) + X[:, 1] ** 2
    Xn = rng.standard_normal((13, 3))
    return X, Y, Xn


def _fit(X, Y, **kw):
    return kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.5), **kw)


# ---------------------------------------------------------------- item 2: a fit owns its training data
def test_centring_X_in_place_after_the_fit_changes_nothing(data):
    X, Y, Xn = data
    fit = _fit(X, Y)
    before, train = fit.predict(Xn), fit.predict(X)
    X -= X.mean(0)  # the issue's example: centring the caller's array after the fit
    # oracle: the fit's own predictions before the change; bit-identical (nothing it reads changed)
    np.testing.assert_array_equal(fit.predict(Xn), before)
    np.testing.assert_array_equal(fit.predict(fit.X_train), train)
    assert not fit.X_train.flags.writeable
    with pytest.raises(ValueError):
        fit.X_train[0, 0] = 1.0


def test_kept_factor_solves_against_the_fit_s_own_data_after_the_caller_changes_X(data):
    X, Y, Xn = data
    X0 = X.copy()
    fit = _fit(X, Y, options=SolveOptions(keep_factor=True))
    X *= 0.5
    again = fit.solve(Y)
    ref = _fit(X0, Y)  # oracle: a fresh fit on the original data
    # the same factor and float64 operator on the same data: equal to the tolerance of the certificate (1e-10)
    np.testing.assert_allclose(again.predict(Xn), ref.predict(Xn), rtol=1e-8, atol=1e-9)
    assert again.relative_residual <= 1e-10


def test_sklearn_estimator_score_unchanged_by_scaling_X_after_fit(data):
    from kernelgen.estimators import KernelInterpolationRegressor

    X, Y, Xn = data
    est = KernelInterpolationRegressor(kernel=Gaussian(bandwidth=1.5), solver="cholesky").fit(X, Y)
    s0 = est.score(Xn, np.sin(Xn[:, 0]) + Xn[:, 1] ** 2)
    p0 = est.predict(Xn)
    X *= 0.5  # the issue's example for the estimators
    np.testing.assert_array_equal(est.predict(Xn), p0)  # bit-identical: the fit reads its own copy
    assert est.score(Xn, np.sin(Xn[:, 0]) + Xn[:, 1] ** 2) == s0


def test_read_only_float64_input_is_kept_without_a_copy(data):
    X, Y, _ = data
    Xr = np.array(X)
    Xr.setflags(write=False)
    fit = _fit(Xr, Y)
    assert fit.X_train is Xr  # no n*d*8-byte copy when nobody can write the caller's array
    # a read-only view of a writable array can still change through its base: copied
    V = X.view()
    V.setflags(write=False)
    fit2 = _fit(V, Y)
    assert not np.shares_memory(fit2.X_train, X)


# ---------------------------------------------------------------- item 6: pickling
@pytest.mark.parametrize("solver", ["cholesky", "min_norm"])
def test_fit_with_kept_factor_pickles_to_bit_identical_predictions_and_solves(data, solver):
    X, Y, Xn = data
    fit = _fit(X, Y, solver=solver, options=SolveOptions(keep_factor=True))
    back = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(back.predict(Xn), fit.predict(Xn))  # bit-identical: same alpha, kernel, data
    assert not back.alpha.flags.writeable and not back.X_train.flags.writeable
    Y2 = np.cos(X[:, 2])
    a, b = fit.solve(Y2), back.solve(Y2)
    assert b.relative_residual <= 1e-10
    # same factor, same operator rebuilt on the same data (on-the-fly products are bitwise reproducible)
    np.testing.assert_allclose(b.alpha, a.alpha, rtol=1e-8, atol=1e-10)


def test_estimator_with_kept_factor_pickles_with_joblib(data, tmp_path):
    import joblib

    from kernelgen.estimators import KernelInterpolationRegressor

    X, Y, Xn = data
    est = KernelInterpolationRegressor(kernel=Gaussian(bandwidth=1.5), solver="cholesky",
                                       options=SolveOptions(keep_factor=True)).fit(X, Y)
    joblib.dump(est, tmp_path / "est.joblib")
    back = joblib.load(tmp_path / "est.joblib")
    np.testing.assert_array_equal(back.predict(Xn), est.predict(Xn))  # bit-identical predictions


def test_mpi_fit_and_distributed_factor_refuse_pickling(data):
    from dataclasses import replace

    from kernelgen.factors import ScalapackCholesky

    X, Y, _ = data
    fit0 = _fit(X, Y)
    fit = replace(fit0, certificate=replace(fit0.certificate, backend="mpi"))  # what backend="mpi" returns
    with pytest.raises(NotPicklableError, match=r"fit\.save\(path\)"):
        pickle.dumps(fit)
    fac = object.__new__(ScalapackCholesky)
    with pytest.raises(NotPicklableError, match=r"factor\.save\(directory\)"):
        pickle.dumps(fac)


# ---------------------------------------------------------------- item 8 (file part) and issue 20 item 3
def test_data_mismatch_is_its_own_error_naming_the_expected_data(data, tmp_path):
    X, Y, _ = data
    fit = _fit(X, Y)
    path = tmp_path / "fit.npz"
    prep = {"dataset": "toy", "transform": "pixels/255", "dtype": "float64"}
    fit.save(path, preparation=prep, rows=np.arange(10, 90))
    with pytest.raises(DataMismatchError, match="pixels/255") as e:
        load_interpolant(path, X / 255.0)
    assert not isinstance(e.value, FormatVersionError)
    assert "(80, 3)" in str(e.value)


def test_file_records_preparation_and_rows_so_a_script_reloads_its_own_output(data, tmp_path):
    X, Y, Xn = data
    full = np.vstack([np.zeros((5, 3)), X])
    rows = np.arange(5, 85)
    fit = _fit(full[rows], Y)
    prep = {"dataset": "toy", "transform": "none", "dtype": "float64"}
    fit.save(tmp_path / "f.npz", preparation=prep, rows=rows)
    meta = load_interpolant(tmp_path / "f.npz")
    assert meta.preparation == prep and meta.data_info["preparation"] == prep
    np.testing.assert_array_equal(meta.rows, rows)
    assert meta.data_shape == (80, 3)
    back = load_interpolant(tmp_path / "f.npz", full[meta.rows])  # rebuilt from the file's own record
    np.testing.assert_array_equal(back.predict(Xn), fit.predict(Xn))


def test_save_validates_preparation_and_rows_before_writing(data, tmp_path):
    X, Y, _ = data
    fit = _fit(X, Y)
    for kw in ({"preparation": {"f": object()}}, {"rows": np.arange(3)}, {"rows": np.ones(80, bool)},
               {"rows": -np.arange(80)}):
        with pytest.raises(InvalidInputError):
            fit.save(tmp_path / "x.npz", **kw)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_foreign_truncated_and_modified_files_are_corrupt_not_version_errors(data, tmp_path):
    X, Y, _ = data
    fit = _fit(X, Y)
    good = tmp_path / "a.npz"
    fit.save(good)
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["alpha"] = arrays["alpha"] + 1.0
    np.savez(tmp_path / "t.npz", **arrays)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip file" * 8)
    np.savez(tmp_path / "foreign.npz", alpha=np.zeros(3))
    np.save(tmp_path / "single.npy", np.zeros(3))
    for name in ("t.npz", "trunc.npz", "junk.npz", "foreign.npz", "single.npy"):
        with pytest.raises(CorruptFileError) as e:
            load_interpolant(tmp_path / name, X)
        assert not isinstance(e.value, FormatVersionError)


@pytest.mark.parametrize("version", [1, 999])
def test_other_format_version_names_both_versions_unwrapped(data, tmp_path, version):
    X, Y, _ = data
    fit = _fit(X, Y)
    path = tmp_path / "fit.npz"
    fit.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    meta["version"] = version
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v.npz", **arrays)
    with pytest.raises(FormatVersionError) as e:
        load_interpolant(tmp_path / "v.npz", X)
    msg = str(e.value)
    assert f"format version {version}" in msg and f"reads format version {FORMAT_VERSION}" in msg
    assert "corrupt" not in msg.lower() and not isinstance(e.value, CorruptFileError)
    assert FORMAT_VERSION == 3


def test_include_data_file_predicts_alone_in_a_fresh_process(data, tmp_path):
    X, Y, Xn = data
    fit = _fit(X, Y)
    fit.save(tmp_path / "hash.npz")
    fit.save(tmp_path / "self.npz", include_data=True)
    with pytest.raises(InvalidInputError, match=r"include_data=True"):
        load_interpolant(tmp_path / "hash.npz").predict(Xn)  # the default file: hash only, says how to fix
    np.save(tmp_path / "xn.npy", Xn)
    code = ("import numpy as np, sys; from kernelgen import load_interpolant; "
            "f = load_interpolant(sys.argv[1]); np.save(sys.argv[2], f.predict(np.load(sys.argv[3])))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "self.npz"), str(tmp_path / "p.npy"),
                    str(tmp_path / "xn.npy")], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), fit.predict(Xn))  # bit-identical across processes


def test_every_stored_field_roundtrips_including_notes(data, tmp_path):
    from dataclasses import fields, replace

    X, Y, _ = data
    fit = replace(_fit(X, Y), notes=("solver='auto': K is not positive definite (pivot 17); solved by min_norm",))
    fit.save(tmp_path / "f.npz", include_data=True)
    back = load_interpolant(tmp_path / "f.npz")
    for f in fields(KernelInterpolant):
        if f.metadata.get("store", "json") is None or f.name == "provenance":
            continue
        a, b = getattr(fit, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, f.name
    np.testing.assert_array_equal(back.X_train, fit.X_train)


def test_build_interpolant_keeps_the_solvers_notes(data):
    from dataclasses import replace

    from kernelgen.solvers import Solution
    from kernelgen.solvers._result import build_interpolant

    X, Y, _ = data
    fit = _fit(X, Y)
    cert = replace(fit.certificate, solver="min_norm")
    sol = Solution(alpha=fit.alpha[:, None], residual=np.zeros((80, 1)), certificate=cert, factor=None,
                   operator=None, plan=None, timings={}, notes=("solver='auto': fell back to min_norm",))
    b = build_interpolant(sol, Y[:, None], True, fit.kernel, X, None, 0.0, SolveOptions())
    assert b.notes == ("solver='auto': fell back to min_norm",) and b.solver == "min_norm"


def test_kernel_identity_error_from_the_file_is_not_wrapped(data, tmp_path, monkeypatch):
    X, Y, _ = data
    fit = _fit(X, Y)
    fit.save(tmp_path / "f.npz")

    def claim(d):  # a user class claiming the name "gaussian" (the kernels' registry raises this)
        raise KernelIdentityError("the file's kernel is kernelgen.kernels:Gaussian, 'gaussian' now denotes x:Fake")

    monkeypatch.setattr(Kernel, "from_dict", staticmethod(claim))
    with pytest.raises(KernelIdentityError):
        load_interpolant(tmp_path / "f.npz", X)


# ---------------------------------------------------------------- item 12: file mode
def test_saved_file_mode_follows_the_umask(data, tmp_path):
    X, Y, _ = data
    fit = _fit(X, Y)
    old = os.umask(0o022)
    try:
        fit.save(tmp_path / "f.npz")
        with open(tmp_path / "ref", "w"):
            pass
    finally:
        os.umask(old)
    # oracle: the mode a normal open() gives under the same umask (0644 here, not mkstemp's 0600)
    assert (tmp_path / "f.npz").stat().st_mode & 0o777 == (tmp_path / "ref").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "ref"]  # no temporary left


# ---------------------------------------------------------------- item 10 (factor part)
def test_factor_failure_message_gives_no_bandwidth_advice():
    from kernelgen.factors import CholeskyFactor

    A = np.ones((4, 4))  # rank 1: fails at pivot 1 whatever produced it
    with pytest.raises(NotPositiveDefiniteError) as e:
        CholeskyFactor.factor(A)
    msg = str(e.value)
    assert "bandwidth" not in msg and "min_norm" in msg and "ridge" in msg


def test_a_kernel_that_would_not_load_back_is_refused_before_writing(tmp_path):
    """An unnamed subclass is saved under its parent's name: refuse at save time, write nothing."""
    from kernelgen.errors import KernelIdentityError
    from kernelgen.kernels import Gaussian

    class HalfGaussian(Gaussian):  # no name of its own
        def from_sqdist(self, r2):
            return np.exp(-0.25 * r2)

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    fit = kernel_interpolate(X, y, kernel=HalfGaussian(bandwidth=2.0))
    path = tmp_path / "f.npz"
    with pytest.raises(KernelIdentityError, match="name of its own"):
        fit.save(path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- from the newcomer review
def test_changing_the_callers_kernel_after_the_fit_changes_nothing():
    """The fit owns its kernel: set_params / attribute assignment on the caller's object (or a part of a
    composite) must not move predictions that the certificate vouches for."""
    from kernelgen.kernels import Laplace

    rng = np.random.default_rng(0)
    X, y, Q = rng.normal(size=(40, 3)), rng.normal(size=40), rng.normal(size=(5, 3))
    k = Gaussian(bandwidth=0.5)
    fit = kernel_interpolate(X, y, kernel=k)
    p0 = fit.predict(Q)
    k.set_params(bandwidth=3.0)
    assert fit.kernel.bandwidth == 0.5
    assert np.array_equal(fit.predict(Q), p0)  # same kernel, same alpha: the same bits
    k2 = Gaussian(bandwidth=0.5)
    fit2 = kernel_interpolate(X, y, kernel=k2 + Laplace(bandwidth=1.0))
    p2 = fit2.predict(Q)
    k2.bandwidth = 2.0
    assert np.array_equal(fit2.predict(Q), p2)


@pytest.mark.parametrize("ridge", [1e6, 1e12, 1e17])
def test_rkhs_norm_and_fitted_values_are_accurate_when_the_ridge_dominates(ridge):
    """K alpha taken as Y - R - ridge alpha cancels when ridge |alpha| >> |K alpha| (all digits lost at 1e17):
    against a direct product K alpha, both must agree to float64 product accuracy."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    k = Gaussian(bandwidth=0.7)
    fit = kernel_interpolate(X, y, kernel=k, ridge=ridge)
    K = k.matrix(X)
    a = np.asarray(fit.alpha)
    KA = K @ a
    # a float64 product of 20 positive-weighted terms: error <= gamma_20 |K||a| ~ 2e-15 of it; 1e-12 leaves room
    assert np.allclose(fit.fitted, KA, rtol=1e-12, atol=1e-12 * np.max(np.abs(K) @ np.abs(a)))
    assert fit.rkhs_norm == pytest.approx(np.sqrt(a @ KA), rel=1e-12)
    assert np.all(np.asarray(fit.alpha_K_alpha) > 0)


def test_a_read_only_memory_map_is_copied(tmp_path):
    """A read-only map does not stop another writer changing the file: the fit must not read it later."""
    rng = np.random.default_rng(2)
    X, y, Q = rng.normal(size=(30, 3)), rng.normal(size=30), rng.normal(size=(4, 3))
    np.save(tmp_path / "X.npy", X)
    m = np.load(tmp_path / "X.npy", mmap_mode="r")
    fit = kernel_interpolate(m, y, kernel=Gaussian(bandwidth=1.0))
    p0 = fit.predict(Q)
    w = np.load(tmp_path / "X.npy", mmap_mode="r+")
    w[:] = 0.0
    w.flush()
    del w
    assert np.array_equal(fit.predict(Q), p0)


def test_save_into_a_missing_directory_names_the_users_path(tmp_path):
    rng = np.random.default_rng(3)
    fit = kernel_interpolate(rng.normal(size=(10, 2)), rng.normal(size=10), kernel=Gaussian(bandwidth=1.0))
    target = tmp_path / "no" / "such" / "f.npz"
    with pytest.raises(FileNotFoundError, match="does not exist") as e:
        fit.save(target)
    assert ".tmp" not in str(e.value) and str(target) in str(e.value)
