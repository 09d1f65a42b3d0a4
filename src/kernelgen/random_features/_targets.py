"""Targets of a fit: class labels or regression values, decided once by one rule.

Every experiment that takes labels (:func:`kernelgen.random_features.double_descent_sweep`, the estimators of
:mod:`kernelgen.estimators`, ``scripts/label_noise.py``, ``scripts/smith_le.py``) encodes them here, so that the
question asked (classification or regression) is never decided by accident of dtype or shape:

* ``task=None`` infers **classification** from integer, unsigned, boolean or string labels only, as a vector
  ``(n,)`` or a column ``(n, 1)``; anything else is **regression**. Float labels are regression targets even
  when every value is an integer (logged as a warning): pass ``task="classification"`` to treat them as labels.
* ``task="classification"`` accepts labels of any of those dtypes and floats that are integers; continuous
  values, NaN / infinity, complex values and matrices with more than one column are refused by name.
* ``task="regression"`` accepts real values of shape ``(n,)`` or ``(n, k)`` (finite).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array
from ..errors import InvalidInputError, NonFiniteInputError, ShapeMismatchError

__all__ = ["TASKS", "EncodedTargets", "encode_targets", "infer_task"]

log = logging.getLogger(__name__)

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class EncodedTargets:
    """Targets as the solvers see them.

    Attributes
    ----------
    task : {"classification", "regression"}
    Y : ndarray of shape (n_samples, n_targets), float64
        One-hot rows over ``classes`` (classification) or the regression values as columns.
    labels : ndarray of shape (n_samples,), int64, or None
        Index of each sample's class in ``classes`` (classification only).
    classes : ndarray of shape (n_classes,) or None
        Sorted distinct labels (classification only), in the labels' dtype.
    """

    task: str
    Y: np.ndarray
    labels: np.ndarray | None
    classes: np.ndarray | None


def _is_label_dtype(y: np.ndarray) -> bool:
    if y.dtype.kind in "iubUS":
        return True
    return y.dtype.kind == "O" and y.size > 0 and all(isinstance(v, str) for v in y.ravel())


def infer_task(y) -> str:
    """The task ``task=None`` means for ``y``: ``"classification"`` or ``"regression"``.

    Parameters
    ----------
    y : array_like of shape (n_samples,) or (n_samples, n_targets)

    Returns
    -------
    {"classification", "regression"}
        Classification only for integer, unsigned, boolean or string labels of shape ``(n,)`` or ``(n, 1)``.
    """
    y = np.asarray(y)
    if _is_label_dtype(y) and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        return "classification"
    return "regression"


def _labels_1d(y: np.ndarray, name: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ShapeMismatchError(
            f"{name} must hold class labels of shape (n,) or (n, 1), got shape {y.shape}; "
            "for several real-valued targets pass task='regression'.")
    if y.size == 0:
        raise InvalidInputError(f"{name} is empty; pass at least one label.")
    kind = y.dtype.kind
    if kind == "c":
        raise InvalidInputError(f"Complex data not supported: {name} has dtype {y.dtype}; class labels are "
                                "integers, booleans or strings.")
    if kind == "f":
        if not np.all(np.isfinite(y)):
            raise NonFiniteInputError(f"Input {name} contains NaN or infinity; class labels must be finite.")
        if not np.all(y == np.round(y)):
            raise InvalidInputError(
                f"Unknown label type: {name} holds continuous values (e.g. {y[y != np.round(y)][0]!r}), not class "
                "labels; pass integer labels, or use task='regression' / a regressor for real-valued targets.")
    elif kind == "O" and not all(isinstance(v, str) for v in y):
        raise InvalidInputError(f"Unknown label type: {name} has dtype object with non-string entries; pass "
                                "integer, boolean or string labels.")
    elif kind not in "iubUSOf":
        raise InvalidInputError(f"Unknown label type: {name} has dtype {y.dtype}; pass integer, boolean or "
                                "string labels.")
    return y


def encode_targets(y, *, task: str | None = None, classes=None, name: str = "y") -> EncodedTargets:
    """Encode ``y`` as one-hot class targets or as regression columns (module docstring: the rule).

    Parameters
    ----------
    y : array_like of shape (n_samples,) or (n_samples, n_targets)
    task : {None, "classification", "regression"}
        None infers the task with :func:`infer_task`.
    classes : array_like of shape (n_classes,), optional
        Classification only: the classes the labels must come from (e.g. the training classes for test
        labels, or ``arange(C)``); default the distinct values of ``y``.
    name : str
        Name used in error messages.

    Returns
    -------
    EncodedTargets

    Raises
    ------
    InvalidInputError
        Unknown ``task``; continuous, complex or empty labels under classification ("Unknown label type");
        labels outside ``classes``; non-numeric regression targets.
    NonFiniteInputError
        NaN or infinity in ``y``.
    ShapeMismatchError
        Class labels with more than one column, or regression targets with more than two dimensions.
    """
    if task is not None and task not in TASKS:
        raise InvalidInputError(f"task must be None, 'classification' or 'regression', got {task!r}.")
    arr = np.asarray(y)
    if task is None:
        task = infer_task(arr)
        if (task == "regression" and arr.dtype.kind == "f" and arr.size and arr.ndim in (1, 2)
                and (arr.ndim == 1 or arr.shape[1] == 1) and np.all(np.isfinite(arr))
                and np.all(arr == np.round(arr))):
            log.warning("%s is float but every value is an integer (%d distinct): treated as regression targets; "
                        "pass task='classification' to treat them as class labels.", name, np.unique(arr).size)
    if task == "regression":
        Y = as_float_array(arr, name, ndim=(1, 2), dtype=np.float64)
        return EncodedTargets("regression", Y[:, None] if Y.ndim == 1 else Y, None, None)
    lab = _labels_1d(arr, name)
    if classes is None:
        cls = np.unique(lab)
    else:
        cls = np.unique(np.asarray(classes))
        if cls.size == 0:
            raise InvalidInputError("classes is empty.")
        unknown = ~np.isin(lab, cls)
        if np.any(unknown):
            raise InvalidInputError(
                f"{name} holds labels not among the classes {cls.tolist()[:20]}: e.g. {lab[unknown][0]!r}; "
                "pass labels of the same classes (test labels must be among the training classes).")
    index = np.searchsorted(cls, lab).astype(np.int64)
    Y = (index[:, None] == np.arange(cls.size)[None, :]).astype(np.float64)
    return EncodedTargets("classification", Y, index, cls)
