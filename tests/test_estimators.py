"""scikit-learn compatibility of the estimators, and their agreement with the solver."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from kernelgen import kernel_interpolate
from kernelgen.estimators import KernelInterpolationClassifier, KernelInterpolationRegressor
from kernelgen.kernels import Gaussian, Laplace

# Checks that cannot pass for an exact interpolator, with the reason.
EXPECTED_FAILED = {}


@parametrize_with_checks(
    [KernelInterpolationRegressor(kernel=Gaussian(bandwidth=1.0)),
     KernelInterpolationClassifier(kernel=Gaussian(bandwidth=1.0))],
    expected_failed_checks=lambda est: EXPECTED_FAILED.get(type(est).__name__, {}),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_classifier_matches_solver_and_interpolates():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = rng.integers(0, 3, size=80)
    clf = KernelInterpolationClassifier(kernel=Gaussian(bandwidth=1.5), solver="cholesky").fit(X, y)
    # exact interpolation of one-hot targets -> zero training error (invariant)
    assert (clf.predict(X) == y).all()
    fit = kernel_interpolate(X, np.eye(3)[y], kernel=Gaussian(bandwidth=1.5), solver="cholesky")
    Xn = rng.normal(size=(10, 4))
    # same solver, same data: identical up to rounding of one float64 pass
    np.testing.assert_allclose(clf.decision_function(Xn), fit.predict(Xn), rtol=0, atol=1e-9)
    assert clf.relative_residual_ <= 1e-10


def test_grid_search_over_nested_kernel_parameters():
    """GridSearchCV reaches the kernel's bandwidth through the nested name kernel__bandwidth."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = np.sin(X[:, 0]) + 0.1 * X[:, 1]
    est = KernelInterpolationRegressor(kernel=Gaussian(bandwidth=1.0), solver="cholesky")
    assert est.get_params()["kernel__bandwidth"] == 1.0
    grid = [0.3, 0.5, 0.8]  # small enough that every fold's K is well conditioned (no failed fits)
    gs = GridSearchCV(est, {"kernel__bandwidth": grid}, cv=3, error_score="raise").fit(X, y)
    assert gs.best_params_["kernel__bandwidth"] in grid
    # the refitted best estimator carries that bandwidth on its fitted kernel
    assert gs.best_estimator_.interpolant_.kernel == Gaussian(bandwidth=gs.best_params_["kernel__bandwidth"])
    # and the estimator's own kernel object was not mutated by fitting
    assert est.kernel == Gaussian(bandwidth=1.0)


def test_clone_and_pickle_roundtrip():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 2, size=40)
    est = KernelInterpolationClassifier(kernel=Laplace(bandwidth=2.0) + Gaussian(bandwidth=1.0))
    c = clone(est)
    assert c.kernel == est.kernel and c.kernel is not est.kernel
    fitted = est.fit(X, y)
    back = pickle.loads(pickle.dumps(fitted))
    Xn = rng.normal(size=(7, 3))
    # pickling is bit-for-bit: the same alpha and kernel give the same float64 products
    np.testing.assert_array_equal(back.decision_function(Xn), fitted.decision_function(Xn))


def test_string_kernel_resolves_default_bandwidth():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 2))
    est = KernelInterpolationRegressor(kernel="gaussian").fit(X, X[:, 0])
    from kernelgen.kernels import default_bandwidth

    assert est.interpolant_.kernel.bandwidth == pytest.approx(default_bandwidth(X), rel=1e-12)
