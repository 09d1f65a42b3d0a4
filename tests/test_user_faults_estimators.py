"""Reliability issue 21, items 3, 6 (scikit-learn) and 12 (estimator default): no silent wrong answer.

* Labels of the wrong kind never change the question: one rule (``kernelgen.random_features.encode_targets``)
  decides class labels vs regression targets for the sweep, the estimators and the scripts; a NaN metric is an
  error, never a reported value.
* The four estimators pass scikit-learn's estimator checks, pickle to bit-identical predictions, run in
  ``cross_validate(n_jobs=2)``, and slice precomputed kernels by rows and columns (``pairwise`` tag).
* The kernel-interpolation estimators default to ``solver="auto"``.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.utils.estimator_checks import parametrize_with_checks

import kernelgen.random_features as R
from kernelgen.errors import ConvergenceError, InterpolationWarning, InvalidInputError, NonFiniteResultError
from kernelgen.estimators import (
    KernelInterpolationClassifier,
    KernelInterpolationRegressor,
    RandomFeaturesClassifier,
    RandomFeaturesRegressor,
)
from kernelgen.kernels import Gaussian, Linear, kernel_matrix

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _blobs(n, m, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((k, d))
    y, yt = rng.integers(0, k, n), rng.integers(0, k, m)
    return centres[y] + rng.standard_normal((n, d)), y, centres[yt] + rng.standard_normal((m, d)), yt


WIDTHS = [10, 30, 60]


def _sweep(X, y, Xt, yt, **kw):
    return R.double_descent_sweep(X, y, Xt, yt, WIDTHS, bandwidth=2.0, kernel_limit=False, **kw)


# ------------------------------------------------------------------ item 3: labels of the wrong kind
def test_float_labels_are_regression_and_report_no_nan_error():
    """Issue example: y.astype(float) reported test_error = [nan, nan, nan]."""
    X, y, Xt, yt = _blobs(30, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _sweep(X, y.astype(float), Xt, yt.astype(float))
    assert res.task == "regression"
    assert res.test_error is None and res.train_error is None  # undefined: None, never NaN
    with pytest.raises(InvalidInputError, match="task='classification'"):
        res.mean("test_error")
    for key in ("test_sq", "train_sq", "coef_norm", "opt_residual", "fit_residual"):
        assert np.isfinite(getattr(res, key)).all(), key


def test_integral_float_labels_with_task_classification_equal_integer_labels():
    X, y, Xt, yt = _blobs(30, 20)
    ref = _sweep(X, y, Xt, yt)
    res = _sweep(X, y.astype(float), Xt, yt.astype(float), task="classification")
    assert res.task == ref.task == "classification"
    # the same one-hot targets and the same solves: identical to the last bit
    np.testing.assert_array_equal(res.test_error, ref.test_error)
    np.testing.assert_array_equal(res.test_sq, ref.test_sq)


def test_column_vector_of_integer_labels_is_classification():
    """Issue example: integer labels of shape (n, 1) became regression."""
    X, y, Xt, yt = _blobs(30, 20)
    ref = _sweep(X, y, Xt, yt)
    res = _sweep(X, y[:, None], Xt, yt[:, None])
    assert res.task == "classification"
    np.testing.assert_array_equal(res.test_error, ref.test_error)  # same targets, same solves: bitwise
    np.testing.assert_array_equal(res.test_sq, ref.test_sq)


def test_continuous_labels_refused_under_classification():
    X, y, Xt, yt = _blobs(30, 20)
    with pytest.raises(InvalidInputError, match="Unknown label type"):
        _sweep(X, y + 0.5, Xt, yt, task="classification")
    with pytest.raises(InvalidInputError, match="among the classes"):  # a test class never trained on
        _sweep(X, y, Xt, np.where(yt == 0, 7, yt))
    with pytest.raises(InvalidInputError, match="pass task="):  # int train labels, float test values
        _sweep(X, y, Xt, yt.astype(float))


def test_nan_metric_is_an_error_not_a_value(monkeypatch):
    """A NaN metric (here injected into the metric function) raises NonFiniteResultError naming it."""
    X, y, Xt, yt = _blobs(30, 20)
    real = R._sweep._gram_metrics

    def nan_test_sq(*a):
        out = real(*a)
        out["test_sq"] = float("nan")
        return out

    monkeypatch.setattr(R._sweep, "_gram_metrics", nan_test_sq)
    with pytest.raises(NonFiniteResultError, match="test_sq"):
        _sweep(X, y, Xt, yt)


def test_overflowing_targets_refused_before_the_sweep():
    X, y, Xt, yt = _blobs(30, 20)
    with pytest.raises(InvalidInputError, match="overflows"):
        _sweep(X, 1e200 * y.astype(float), Xt, 1e200 * yt.astype(float))


@pytest.mark.parametrize("widths, match", [
    ([10.5, 40], r"positive integers; got \[10.5\]"),  # was silently swept as [10, 40]
    ([0, 40], r"positive integers; got \[0\]"),
    ([-5, 40], r"positive integers; got \[-5\]"),
    ([np.nan, 40], r"positive integers; got \[nan\]"),
    ([40, 10, 40], r"widths must be distinct; repeated: \[40\]"),  # was silently swept as [10, 40]
    ([10.0, 10], r"widths must be distinct; repeated: \[10\]"),
    ([], "non-empty"),
    (["10", "40"], "positive integers"),
])
def test_bad_widths_are_refused_not_rounded_or_dropped(widths, match):
    X, y, Xt, yt = _blobs(30, 20)
    with pytest.raises(InvalidInputError, match=match):
        R.double_descent_sweep(X, y, Xt, yt, widths, bandwidth=2.0, kernel_limit=False)


def test_integral_float_and_unsorted_widths_are_accepted():
    """Integral floats and any order are the widths asked for (sorted): bitwise the integer sweep."""
    X, y, Xt, yt = _blobs(30, 20)
    ref = _sweep(X, y, Xt, yt)
    res = R.double_descent_sweep(X, y, Xt, yt, [60.0, 10.0, 30.0], bandwidth=2.0, kernel_limit=False)
    assert res.widths.dtype == np.int64 and res.widths.tolist() == WIDTHS
    np.testing.assert_array_equal(res.test_sq, ref.test_sq)  # same widths, same draws, same solves


def test_kernel_limit_failure_says_where_and_how_to_skip(monkeypatch):
    """A failure of the kernel-limit fit keeps its class (and attributes) and says kernel_limit=False skips it."""
    X, y, Xt, yt = _blobs(30, 20)
    history = [{"step": 1, "relative_residual": 1e-3}]

    def fail(*a, **kw):
        raise ConvergenceError("float64 refinement stalled at 1e-3", history=history)

    monkeypatch.setattr(R._sweep, "kernel_interpolate", fail)
    with pytest.raises(ConvergenceError, match=r"stalled at 1e-3 \[raised by the sweep's kernel-limit fit.*"
                                               r"kernel_limit=False\) skips it\]") as info:
        R.double_descent_sweep(X, y, Xt, yt, WIDTHS, bandwidth=2.0)
    assert info.value.history == history
    assert isinstance(info.value.__cause__, ConvergenceError)
    assert str(info.value.__cause__) == "float64 refinement stalled at 1e-3"
    _sweep(X, y, Xt, yt)  # kernel_limit=False: the same sweep runs


def test_encode_targets_rule():
    """The shared rule itself: dtype and shape decide under task=None, nothing else."""
    assert R.infer_task(np.array([0, 1, 1])) == "classification"
    assert R.infer_task(np.array([[0], [1]])) == "classification"
    assert R.infer_task(np.array([True, False])) == "classification"
    assert R.infer_task(np.array(["a", "b"])) == "classification"
    assert R.infer_task(np.array([0.0, 1.0])) == "regression"
    assert R.infer_task(np.array([[0, 1], [1, 0]])) == "regression"  # two integer columns: targets
    enc = R.encode_targets(np.array([[2], [5], [2]]))
    np.testing.assert_array_equal(enc.labels, [0, 1, 0])
    np.testing.assert_array_equal(enc.Y, [[1, 0], [0, 1], [1, 0]])
    with pytest.raises(InvalidInputError, match="NaN or infinity"):
        R.encode_targets(np.array([0.0, np.inf]), task="classification")


def test_label_noise_metrics_with_column_labels():
    """scripts/label_noise.py: a column of labels broadcast (n, n) inside argmax(...) == y: a wrong accuracy."""
    ln = _script("label_noise")
    rng = np.random.default_rng(0)
    F, w, y = rng.normal(size=(50, 5)), rng.normal(size=5 * 3), rng.integers(0, 3, 50)
    ref = ln.softmax_metrics(F, y, w, 3)
    # oracle: the 1-D labels; the same arithmetic on the same labels gives identical floats
    assert ln.softmax_metrics(F, y[:, None], w, 3) == ref
    scores = rng.normal(size=(50, 3))
    assert ln.zero_one_error(scores, y[:, None], 3) == np.mean(np.argmax(scores, 1) != y)
    with pytest.raises(InvalidInputError, match="Unknown label type"):
        ln.zero_one_error(scores, y + 0.25, 3)


def test_smith_le_sweep_with_column_test_labels():
    """scripts/smith_le.py: test accuracy with (m, 1) test labels equals that with (m,) labels."""
    sl = _script("smith_le")
    rng = np.random.default_rng(1)
    F, Ft = rng.normal(size=(16, 6)), rng.normal(size=(40, 6))
    y, yt = np.repeat([0, 1], 8), rng.integers(0, 2, 40)
    G, C = F @ F.T, Ft @ F.T
    ref = sl.sweep(G, C, y, yt, [1.0, 10.0])
    col = sl.sweep(G, C, y.astype(float), yt[:, None], [1.0, 10.0])
    # identical inputs to the same Newton iterations: identical rows
    assert col == ref


# ------------------------------------------------------------------ item 6: scikit-learn integration
ESTIMATORS = [KernelInterpolationRegressor(), KernelInterpolationClassifier(),
              RandomFeaturesRegressor(n_features=50), RandomFeaturesClassifier(n_features=50)]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InterpolationWarning)  # sklearn's data repeat points: least squares
        check(estimator)


def test_random_feature_classifier_faults_from_the_issue():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    clf = RandomFeaturesClassifier(n_features=80, bandwidth=1.0)
    with pytest.raises(NotFittedError):  # was AttributeError
        clf.predict(X)
    with pytest.raises(ValueError, match="Unknown label type|continuous"):  # was: 60 classes
        clf.fit(X, rng.normal(size=60))
    with pytest.raises(ValueError):  # was: inf became a class
        clf.fit(X, np.where(np.arange(60) < 30, 0.0, np.inf))
    y = (X[:, 0] > 0).astype(int)
    clf.fit(X, y)
    d = clf.decision_function(X)
    assert d.shape == (60,)  # was (60, 2)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(d > 0).astype(int)])


def test_one_sample_with_default_bandwidth_says_so():
    with pytest.raises(InvalidInputError, match="n_samples=1"):
        KernelInterpolationRegressor().fit(np.ones((1, 3)), [1.0])


def test_failed_refit_leaves_the_fitted_estimator_unchanged():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    for est in (KernelInterpolationClassifier(kernel=Gaussian(bandwidth=1.0)),
                RandomFeaturesClassifier(n_features=60, bandwidth=1.0)):
        est.fit(X, y)
        before = est.decision_function(X)
        with pytest.raises(ValueError):
            est.fit(rng.normal(size=(30, 5)), rng.normal(size=30))  # other width, continuous labels
        # all fitted attributes or none: the old fit still answers, bit for bit
        np.testing.assert_array_equal(est.decision_function(X), before)


def _fit_data(est, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, 40) if "Classifier" in type(est).__name__ else np.sin(X[:, 0]) + X[:, 1]
    return X, y


FITTABLE = [KernelInterpolationClassifier(),  # string kernel: the default bandwidth resolved at fit
            KernelInterpolationRegressor(kernel=Gaussian(bandwidth=0.8)),
            KernelInterpolationClassifier(kernel=Gaussian(bandwidth=0.8)),
            RandomFeaturesRegressor(n_features=120, bandwidth=1.0),
            RandomFeaturesClassifier(n_features=120, bandwidth=1.0)]


def _id(est):
    return f"{type(est).__name__}-{est.kernel if hasattr(est, 'kernel') else est.n_features}"


@pytest.mark.parametrize("est", FITTABLE, ids=_id)
def test_fitted_estimator_pickles_to_bit_identical_predictions(est):
    X, y = _fit_data(est)
    fitted = clone(est).fit(X, y)
    back = pickle.loads(pickle.dumps(fitted))
    Xn = np.random.default_rng(5).normal(size=(9, 3))
    # the same stored coefficients and kernel / feature map: the same float64 operations, bit for bit
    np.testing.assert_array_equal(back.predict(Xn), fitted.predict(Xn))


@pytest.mark.parametrize("est", FITTABLE, ids=_id)
def test_cross_validate_in_two_processes(est):
    X, y = _fit_data(est)
    cv = KFold(4)
    par = cross_validate(est, X, y, cv=cv, n_jobs=2, return_estimator=True, error_score="raise")
    seq = cross_validate(est, X, y, cv=cv, n_jobs=1, return_estimator=True, error_score="raise")
    # fits in worker processes (pickled there and back) are the fits made here: identical scores
    np.testing.assert_array_equal(par["test_score"], seq["test_score"])
    assert len(par["estimator"]) == 4
    for e_par, (_, test) in zip(par["estimator"], cv.split(X)):
        np.testing.assert_array_equal(e_par.predict(X[test]), clone(est).fit(
            X[np.setdiff1d(np.arange(len(X)), test)], y[np.setdiff1d(np.arange(len(X)), test)]).predict(X[test]))


@pytest.mark.parametrize("cls", [KernelInterpolationRegressor, KernelInterpolationClassifier])
def test_precomputed_kernel_in_cross_validation_matches_kernel_from_x(cls):
    """Issue example: every fold failed with ShapeMismatchError (K sliced by rows only)."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(45, 3))
    y = rng.integers(0, 3, 45) if cls is KernelInterpolationClassifier else np.sin(X[:, 0]) + X[:, 1] ** 2
    kern = Gaussian(bandwidth=0.7)
    K = kernel_matrix(X, kernel=kern)
    assert cls(kernel="precomputed").__sklearn_tags__().input_tags.pairwise
    assert not cls(kernel=kern).__sklearn_tags__().input_tags.pairwise
    cv = KFold(3, shuffle=True, random_state=0)
    s_pre = cross_val_score(cls(kernel="precomputed", solver="cholesky"), K, y, cv=cv, error_score="raise")
    s_ker = cross_val_score(cls(kernel=kern, solver="cholesky"), X, y, cv=cv, error_score="raise")
    # oracle: the same folds fitted with the kernel computed from X. Both solves are certified to relative
    # residual 1e-10 on K(train) with cond(K) < 1e4 here, so predictions agree to ~1e-6 at most; R^2 and
    # accuracy are then equal to well below 1e-6
    assert np.linalg.cond(K) < 1e4
    np.testing.assert_allclose(s_pre, s_ker, rtol=0, atol=1e-6)
    gs_pre = GridSearchCV(cls(kernel="precomputed"), {"ridge": [0.0, 1e-3]}, cv=cv, error_score="raise").fit(K, y)
    gs_ker = GridSearchCV(cls(kernel=kern), {"ridge": [0.0, 1e-3]}, cv=cv, error_score="raise").fit(X, y)
    np.testing.assert_allclose(gs_pre.cv_results_["mean_test_score"], gs_ker.cv_results_["mean_test_score"],
                               rtol=0, atol=1e-6)
    assert gs_pre.best_params_ == gs_ker.best_params_


# ------------------------------------------------------------------ item 12: estimator default solver
def test_default_solver_is_auto_and_equals_min_norm_on_a_pd_kernel():
    assert KernelInterpolationRegressor().solver == "auto" == KernelInterpolationClassifier().solver
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 3))
    y = np.sin(X[:, 0]) + X[:, 2]
    kern = Gaussian(bandwidth=0.5)
    cond = np.linalg.cond(kernel_matrix(X, kernel=kern))
    auto = KernelInterpolationRegressor(kernel=kern).fit(X, y)
    ref = KernelInterpolationRegressor(kernel=kern, solver="min_norm").fit(X, y)
    assert auto.solver_ == "cholesky"
    # both certified to relative residual 1e-10: the coefficients differ by at most ~cond(K) * 1e-10 relative
    assert cond < 1e3
    np.testing.assert_allclose(auto.dual_coef_, ref.dual_coef_, rtol=0,
                               atol=10 * cond * 1e-10 * np.linalg.norm(ref.dual_coef_))


@pytest.mark.parametrize("case", ["duplicate_rows", "linear_n_gt_d"])
def test_default_solver_on_singular_kernel_gives_pinv(case):
    """Needs kernel_interpolate(solver="auto") to take the min-norm route on a non-PD K (solvers helper)."""
    rng = np.random.default_rng(8)
    if case == "duplicate_rows":
        X0 = rng.normal(size=(20, 3))
        X = np.vstack([X0, X0[:5]])
        kern = Gaussian(bandwidth=0.7)
        y = np.cos(X[:, 0]) + X[:, 1]  # equal targets at equal points: y is in the range of K
    else:
        X = rng.normal(size=(30, 4))
        kern = Linear()
        y = X @ np.array([1.0, -2.0, 0.5, 3.0])  # in the range of K = X X^T (rank 4 < 30)
    est = KernelInterpolationRegressor(kernel=kern).fit(X, y)
    K = kernel_matrix(X, kernel=kern)
    ref = np.linalg.pinv(K, rcond=1e-10, hermitian=True) @ y
    assert est.solver_ == "min_norm"
    # K^+ y through the rank-revealing solve: equal to numpy's pinv up to the conditioning of K on its range
    # (< 1e3 here) times the 1e-10 certificate
    np.testing.assert_allclose(est.dual_coef_, ref, rtol=0, atol=1e-6 * np.linalg.norm(ref))
    np.testing.assert_allclose(est.predict(X), y, rtol=0, atol=1e-8 * np.linalg.norm(y))


def test_auto_fallback_after_a_stalled_cholesky_route_is_recorded_in_the_fit(monkeypatch):
    """The estimator's own fallback (a ConvergenceError of the Cholesky route) says so in fit.notes, as the
    solver's fallback (K not positive definite) does."""
    import kernelgen.estimators as est_mod
    from kernelgen.estimators import KernelInterpolationRegressor
    from kernelgen.kernels import Gaussian

    real = est_mod.kernel_interpolate

    def stalled(X, Y, *, solver, **kw):
        if solver == "auto":
            raise ConvergenceError("float64 refinement stalled at 3e-9; tol 1e-10", history=())
        return real(X, Y, solver=solver, **kw)

    monkeypatch.setattr(est_mod, "kernel_interpolate", stalled)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    est = KernelInterpolationRegressor(kernel=Gaussian(bandwidth=1.0)).fit(X, y)
    assert est.solver_ == "min_norm"
    assert any("did not converge" in n and "min_norm" in n for n in est.interpolant_.notes)
