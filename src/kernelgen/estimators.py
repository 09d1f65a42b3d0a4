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

from ._validation import as_float_array, check_same_rows
from .errors import ShapeMismatchError
from .random_features import draw_random_features, min_norm_fit
from .solvers import kernel_interpolate

__all__ = ["KernelInterpolationClassifier", "KernelInterpolationRegressor", "RandomFeaturesClassifier",
           "RandomFeaturesRegressor"]


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


class RandomFeaturesRegressor(RegressorMixin, BaseEstimator):
    """Minimum-norm regression on random features (scikit-learn estimator).

    Parameters
    ----------
    n_features : int
        Width ``N``.
    kind : {"fourier", "relu"}
    bandwidth : float
    seed : int
    rcond : float, optional
        Cutoff for :func:`kernelgen.min_norm_solve`.
    block_bytes : int

    Attributes
    ----------
    feature_map_ : RandomFeatureMap
    coef_ : ndarray of shape (n_features,) or (n_features, n_targets)
    rank_ : int
    relative_residual_ : float
    n_features_in_ : int
    """

    def __init__(self, n_features: int = 1000, *, kind: str = "fourier", bandwidth: float = 5.0,
                 seed: int = 0, rcond=None, block_bytes: int = 256 * 2**20):
        self.n_features = n_features
        self.kind = kind
        self.bandwidth = bandwidth
        self.seed = seed
        self.rcond = rcond
        self.block_bytes = block_bytes

    def _fit_targets(self, X, Y):
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        check_same_rows(X, Y, "X", "y")
        self.feature_map_ = draw_random_features(X.shape[1], self.n_features, kind=self.kind,
                                                 bandwidth=self.bandwidth, seed=self.seed)
        Phi = self.feature_map_.transform(X, block_bytes=self.block_bytes)
        fit = min_norm_fit(Phi, Y, rcond=self.rcond)
        self.coef_ = fit.coef
        self.rank_ = fit.rank
        self.relative_residual_ = fit.relative_residual
        self.n_features_in_ = X.shape[1]
        return self

    def fit(self, X, y):
        """Fit ``coef_ = Phi(X)^+ y``. Returns self."""
        Y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
        return self._fit_targets(X, Y)

    def _decision(self, X):
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("call fit before predict.")
        return self.feature_map_.transform(X, block_bytes=self.block_bytes) @ self.coef_

    def predict(self, X):
        """Predictions ``Phi(X) coef_``: shape (n_samples,) or (n_samples, n_targets)."""
        return self._decision(X)


class RandomFeaturesClassifier(ClassifierMixin, RandomFeaturesRegressor):
    """Minimum-norm random-feature classifier: one-hot targets, squared loss, ``argmax``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_features, n_classes)
    """

    def fit(self, X, y):
        """Fit on one-hot encoded labels. Returns self."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise ShapeMismatchError(f"y must be 1-D labels, got shape {y.shape}.")
        self.classes_ = np.unique(y)
        Y = (y[:, None] == self.classes_[None, :]).astype(np.float64)
        return self._fit_targets(X, Y)

    def decision_function(self, X):
        """Scores ``Phi(X) coef_``: shape (n_samples, n_classes)."""
        return self._decision(X)

    def predict(self, X):
        """Class of the largest score."""
        return self.classes_[np.argmax(self._decision(X), axis=1)]
