"""scikit-learn estimators over :func:`kernelgen.kernel_interpolate` and random features (thin shells).

``KernelInterpolationRegressor`` interpolates real targets exactly; the classifier
one-hot encodes the labels, interpolates the 10 (or C) columns exactly and predicts
by argmax — the procedure of Zhang et al. (2017, §5) on MNIST. ``RandomFeaturesRegressor`` /
``RandomFeaturesClassifier`` are the minimum-norm fits ``Phi^+ Y`` on random features.

Conventions shared by the four (each passes scikit-learn's ``parametrize_with_checks``):

* inputs are validated by :func:`sklearn.utils.validation.validate_data` (number of features checked at
  predict time, sparse, complex and object input refused); predicting before ``fit`` raises
  :class:`sklearn.exceptions.NotFittedError`;
* class labels go through :func:`kernelgen.random_features.encode_targets` with
  ``task="classification"``: continuous or non-finite targets are refused ("Unknown label type"), never
  turned into classes; a binary ``decision_function`` has shape ``(n_samples,)`` (positive: ``classes_[1]``);
* ``kernel="precomputed"`` declares scikit-learn's ``pairwise`` input tag, so ``cross_val_score`` and
  ``GridSearchCV`` slice the kernel matrix by rows *and* columns;
* a failed ``fit`` leaves the estimator as it was (all fitted attributes or none);
* fitted estimators pickle to bit-identical predictions.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import ConvergenceError, InvalidInputError
from .options import SolveOptions
from .kernels import as_kernel
from .random_features import draw_random_features, encode_targets, min_norm_fit
from .solvers import kernel_interpolate

__all__ = ["KernelInterpolationClassifier", "KernelInterpolationRegressor", "RandomFeaturesClassifier",
           "RandomFeaturesRegressor"]

log = logging.getLogger(__name__)


@contextmanager
def _all_or_nothing(est):
    """Restore the estimator's attributes if the block raises (no half-fitted estimator)."""
    saved = dict(est.__dict__)
    try:
        yield
    except BaseException:
        est.__dict__.clear()
        est.__dict__.update(saved)
        raise


def _class_targets(y):
    """One-hot targets and classes of 1-D labels (the shared rule; continuous labels refused)."""
    enc = encode_targets(y, task="classification", name="y")
    return enc.Y, enc.classes


def _binary_decision(D, classes):
    """scikit-learn's convention: a binary decision function is one column, positive for ``classes[1]``."""
    return D[:, 1] - D[:, 0] if len(classes) == 2 else D


class _Regression(RegressorMixin):
    """What the two regressors share: real targets of shape (n,) or (n, n_targets), fitted all or nothing.

    The base class provides ``_validate_fit(X, y, **validate_data_kwargs)``, ``_fit_targets(X, Y)`` and
    ``_scores(X)`` (see :class:`_Shell`).
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """Fit ``y`` of shape (n,) or (n, n_targets): the interpolant (kernel interpolation) or
        ``coef_ = Phi(X)^+ y`` (random features). Returns self."""
        with _all_or_nothing(self):
            X, y = self._validate_fit(X, y, multi_output=True, y_numeric=True)
            return self._fit_targets(X, np.asarray(y, dtype=np.float64))

    def predict(self, X):
        """Predictions at ``X``, the interpolant or ``Phi(X) coef_``: shape (n_samples,) or (n_samples, n_targets)."""
        return self._decision(X)


class _Classification(ClassifierMixin):
    """What the two classifiers share: one-hot targets of the labels (:func:`_class_targets`), argmax.

    The base class provides ``_validate_fit``, ``_fit_targets`` and ``_scores`` (see :class:`_Regression`).
    """

    def fit(self, X, y):
        """Fit the one-hot encoded labels (1-D ``y`` of shape (n_samples,)). Returns self."""
        with _all_or_nothing(self):
            X, y = self._validate_fit(X, y)
            Y, classes = _class_targets(y)
            self._fit_targets(X, Y)
            self.classes_ = classes
            return self

    def decision_function(self, X):
        """The fitted one-hot scores at ``X``: shape (n_samples, n_classes), or (n_samples,) for two classes
        (positive: ``classes_[1]``)."""
        return _binary_decision(self._decision(X), self.classes_)

    def predict(self, X):
        """Class of the largest score: shape (n_samples,)."""
        D = self._decision(X)  # first: NotFittedError before classes_ is looked up
        return self.classes_[np.argmax(D, axis=1)]


class _Shell(BaseEstimator):
    """Prediction of the four estimators: refused before ``fit`` (``NotFittedError``), then ``X`` validated
    against the fit and passed to ``_scores``."""

    _fitted_attribute: str  # set by ``fit``; its absence means "not fitted"

    def _decision(self, X):
        check_is_fitted(self, self._fitted_attribute)
        return self._scores(validate_data(self, X, reset=False, dtype=np.float64))


class _KernelInterpolationBase(_Shell):
    _fitted_attribute = "interpolant_"

    def __init__(self, *, kernel="gaussian", ridge=0.0, solver="auto", backend="auto", options=None,
                 verbose=False):
        self.kernel = kernel
        self.ridge = ridge
        self.solver = solver
        self.backend = backend
        self.options = options
        self.verbose = verbose

    def _precomputed(self) -> bool:
        return isinstance(self.kernel, str) and self.kernel == "precomputed"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # K is sliced by rows and columns in cross-validation (as for KernelRidge / SVC)
        tags.input_tags.pairwise = self._precomputed()
        return tags

    def _validate_fit(self, X, y, **kwargs):
        X, y = validate_data(self, X, y, dtype=np.float64, **kwargs)
        if X.shape[0] < 2 and not self._precomputed() and not as_kernel(self.kernel).is_resolved:
            raise InvalidInputError(
                f"n_samples={X.shape[0]}: the default bandwidth of kernel {self.kernel!r} is computed from the "
                "distances between samples and needs at least 2 samples; pass a kernel with an explicit "
                "bandwidth (e.g. Gaussian(bandwidth=1.0)) or more samples.")
        return X, y

    def _fit_targets(self, X, Y):
        def solve(solver):
            # a fresh kernel object per fit: the fitted kernel (bandwidth resolved) lives on interpolant_
            kernel = self.kernel if isinstance(self.kernel, str) else clone(self.kernel)
            return kernel_interpolate(X, Y, kernel=kernel, ridge=self.ridge, solver=solver, backend=self.backend,
                                      options=self.options, verbose=self.verbose)

        try:
            fit = solve(self.solver)
        except ConvergenceError as exc:
            # "auto": a K positive definite in float64 but too ill-conditioned for the Cholesky route to certify
            # tol is numerically singular for this question: the rank-revealing route gives its K^+ Y
            opts = SolveOptions.coerce(self.options)
            # only where the min-norm route can honour every option asked (kernel_interpolate would refuse it)
            if self.solver != "auto" or opts.certificate == "bound" or opts.dtype == "float32" \
                    or self.backend == "mpi":
                raise
            fit = solve("min_norm")
            note = f"solver='auto': the Cholesky route did not converge ({str(exc).split(';')[0]}); solved by min_norm"
            log.warning(note)
            fit = replace(fit, notes=fit.notes + (note,))  # recorded in the result, as kernel_interpolate does
        self.interpolant_ = fit
        self.dual_coef_ = fit.alpha
        self.relative_residual_ = fit.relative_residual
        self.rkhs_norm_ = fit.rkhs_norm
        self.solver_ = fit.solver
        return self

    def _scores(self, X):
        return self.interpolant_.predict(X)


class KernelInterpolationRegressor(_Regression, _KernelInterpolationBase):
    """Exact (minimum-RKHS-norm) kernel interpolation regressor.

    Parameters
    ----------
    kernel : Kernel or str, default "gaussian"
        As in :func:`kernelgen.kernel_interpolate`. With a Kernel object, its hyper-parameters are
        nested parameters of the estimator (``kernel__bandwidth`` in ``GridSearchCV``). With
        ``"precomputed"``, ``X`` is the kernel matrix: ``(n_samples, n_samples)`` in ``fit``,
        ``(n_test, n_samples)`` in ``predict`` (the estimator declares scikit-learn's ``pairwise`` tag).
    ridge, backend, options, verbose :
        As in :func:`kernelgen.kernel_interpolate` (``options``: a :class:`kernelgen.SolveOptions`).
    solver : {"auto", "cholesky", "min_norm"}, default "auto"
        ``"auto"`` tries the Cholesky factorisation and takes the rank-revealing minimum-norm route when K
        is not positive definite (repeated samples, a linear kernel with more samples than features) or too
        ill-conditioned for the Cholesky route to reach ``options.tol`` (:class:`kernelgen.errors.ConvergenceError`,
        logged at WARNING); the route taken is ``solver_``.

    Attributes
    ----------
    interpolant_ : KernelInterpolant
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
    relative_residual_, rkhs_norm_ : float
    solver_ : str
        The solver that ran.

    Raises
    ------
    InvalidInputError
        (``fit``) one sample with a data-dependent default bandwidth; invalid options.
    ValueError
        scikit-learn's input validation (sparse, complex, NaN, wrong number of features at predict).
    """


class KernelInterpolationClassifier(_Classification, _KernelInterpolationBase):
    """Classifier by exact kernel interpolation of one-hot targets; prediction = argmax.

    Parameters are those of :class:`KernelInterpolationRegressor`. Labels: integers, booleans, strings or
    floats holding integers (1-D, or a column with a ``DataConversionWarning``); continuous targets raise
    :class:`kernelgen.errors.InvalidInputError` ("Unknown label type").

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    interpolant_ : KernelInterpolant
    dual_coef_ : ndarray of shape (n_samples, n_classes)
    """



class _RandomFeaturesBase(_Shell):
    _fitted_attribute = "coef_"

    def __init__(self, n_features: int = 1000, *, kind: str = "fourier", bandwidth: float = 5.0,
                 seed: int = 0, rcond=None, block_bytes: int = 256 * 2**20):
        self.n_features = n_features
        self.kind = kind
        self.bandwidth = bandwidth
        self.seed = seed
        self.rcond = rcond
        self.block_bytes = block_bytes

    def _validate_fit(self, X, y, **kwargs):
        return validate_data(self, X, y, dtype=np.float64, **kwargs)

    def _fit_targets(self, X, Y):
        fm = draw_random_features(X.shape[1], self.n_features, kind=self.kind, bandwidth=self.bandwidth,
                                  seed=self.seed)
        fit = min_norm_fit(fm.transform(X, block_bytes=self.block_bytes), Y, rcond=self.rcond)
        self.feature_map_ = fm
        self.coef_ = fit.coef
        self.rank_ = fit.rank
        self.relative_residual_ = fit.relative_residual
        return self

    def _scores(self, X):
        return self.feature_map_.transform(X, block_bytes=self.block_bytes) @ self.coef_


class RandomFeaturesRegressor(_Regression, _RandomFeaturesBase):
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

    Raises
    ------
    InvalidInputError
        (``fit``) invalid ``kind``, ``n_features`` or ``bandwidth``.
    ValueError
        scikit-learn's input validation (sparse, complex, NaN, wrong number of features at predict).
    """


class RandomFeaturesClassifier(_Classification, _RandomFeaturesBase):
    """Minimum-norm random-feature classifier: one-hot targets, squared loss, ``argmax``.

    Parameters are those of :class:`RandomFeaturesRegressor`; labels as for
    :class:`KernelInterpolationClassifier`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_features, n_classes)
    feature_map_, rank_, relative_residual_, n_features_in_ :
        As for :class:`RandomFeaturesRegressor`.
    """

