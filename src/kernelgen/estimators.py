"""scikit-learn estimators over :func:`kernelgen.kernel_interpolate` (thin shells).

``KernelInterpolationRegressor`` interpolates real targets exactly; the classifier
one-hot encodes the labels, interpolates the 10 (or C) columns exactly and predicts
by argmax — the procedure of Zhang et al. (2017, §5) on MNIST.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.validation import check_is_fitted, validate_data

from .solvers import kernel_interpolate

__all__ = ["KernelInterpolationClassifier", "KernelInterpolationRegressor"]


class _KernelInterpolationBase(BaseEstimator):
    def __init__(self, *, kernel="gaussian", ridge=0.0, solver="min_norm", backend="auto", options=None,
                 verbose=False):
        self.kernel = kernel
        self.ridge = ridge
        self.solver = solver
        self.backend = backend
        self.options = options
        self.verbose = verbose

    def _fit_targets(self, X, Y):
        # a fresh kernel object per fit: the fitted kernel (bandwidth resolved) lives on interpolant_
        kernel = self.kernel if isinstance(self.kernel, str) else clone(self.kernel)
        self.interpolant_ = kernel_interpolate(
            X, Y, kernel=kernel, ridge=self.ridge, solver=self.solver, backend=self.backend, options=self.options,
            verbose=self.verbose)
        self.dual_coef_ = self.interpolant_.alpha
        self.relative_residual_ = self.interpolant_.relative_residual
        self.rkhs_norm_ = self.interpolant_.rkhs_norm
        return self

    def _decision(self, X):
        check_is_fitted(self, "interpolant_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.interpolant_.predict(X)


class KernelInterpolationRegressor(RegressorMixin, _KernelInterpolationBase):
    """Exact (minimum-RKHS-norm) kernel interpolation regressor.

    Parameters
    ----------
    kernel : Kernel or str, default "gaussian"
        As in :func:`kernelgen.kernel_interpolate`. With a Kernel object, its hyper-parameters are
        nested parameters of the estimator (``kernel__bandwidth`` in ``GridSearchCV``).
    ridge, backend, options, verbose :
        As in :func:`kernelgen.kernel_interpolate` (``options``: a :class:`kernelgen.SolveOptions`).
    solver : {"min_norm", "cholesky", "auto"}, default "min_norm"
        The estimator defaults to the rank-revealing minimum-norm solve, which is
        defined for repeated samples too (a singular K); use ``"cholesky"`` for large n.

    Attributes
    ----------
    interpolant_ : KernelInterpolant
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
    relative_residual_, rkhs_norm_ : float
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        return self._fit_targets(X, np.asarray(y, dtype=np.float64))

    def predict(self, X):
        return self._decision(X)


class KernelInterpolationClassifier(ClassifierMixin, _KernelInterpolationBase):
    """Classifier by exact kernel interpolation of one-hot targets; prediction = argmax.

    Parameters are those of :class:`KernelInterpolationRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    interpolant_ : KernelInterpolant
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        self._binarizer = LabelBinarizer(pos_label=1, neg_label=0)
        Y = self._binarizer.fit_transform(y).astype(np.float64)
        self.classes_ = self._binarizer.classes_
        if Y.shape[1] == 1:  # binary: LabelBinarizer gives one column; use both one-hot columns
            Y = np.hstack([1.0 - Y, Y])
        return self._fit_targets(X, Y)

    def decision_function(self, X):
        D = self._decision(X)
        return D[:, 1] - D[:, 0] if len(self.classes_) == 2 else D

    def predict(self, X):
        D = self._decision(X)
        return self.classes_[np.argmax(D, axis=1)]
