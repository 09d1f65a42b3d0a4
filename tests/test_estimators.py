"""scikit-learn compatibility of the estimators, and their agreement with the solver."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from kernelgen import kernel_interpolate
from kernelgen.estimators import KernelInterpolationClassifier, KernelInterpolationRegressor

# Checks that cannot pass for an exact interpolator, with the reason.
EXPECTED_FAILED = {}


@parametrize_with_checks(
    [KernelInterpolationRegressor(bandwidth=1.0), KernelInterpolationClassifier(bandwidth=1.0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED.get(type(est).__name__, {}),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_classifier_matches_solver_and_interpolates():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = rng.integers(0, 3, size=80)
    clf = KernelInterpolationClassifier(bandwidth=1.5, solver="cholesky").fit(X, y)
    # exact interpolation of one-hot targets -> zero training error (invariant)
    assert (clf.predict(X) == y).all()
    fit = kernel_interpolate(X, np.eye(3)[y], bandwidth=1.5, solver="cholesky")
    Xn = rng.normal(size=(10, 4))
    # same solver, same data: identical up to rounding of one float64 pass
    np.testing.assert_allclose(clf.decision_function(Xn), fit.predict(Xn), rtol=0, atol=1e-9)
    assert clf.relative_residual_ <= 1e-10
