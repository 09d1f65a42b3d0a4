"""Input validation shared by every public function (private module)."""

from __future__ import annotations

import numbers
import sys

import numpy as np

from .errors import InvalidInputError, NonFiniteInputError, ShapeMismatchError

__all__ = ["as_float_array", "check_not_sparse", "check_same_rows", "float_dtype_name", "is_finite_real", "is_int",
           "is_sparse"]

_FLOAT_DTYPES = (np.float32, np.float64)


def as_float_array(
    a,
    name: str,
    *,
    ndim: tuple[int, ...] = (2,),
    dtype=None,
    allow_empty: bool = False,
    copy: bool = False,
    check_finite: bool = True,
) -> np.ndarray:
    """Return ``a`` as a floating NumPy array, or raise a named error.

    Integer, boolean and unsigned arrays are converted to float64 (``dtype=None``);
    float32/float64 keep their dtype unless ``dtype`` is given. Complex or object
    arrays are refused. The input is never modified (a copy is made when needed).

    Raises
    ------
    InvalidInputError
        A scipy.sparse matrix or array (:func:`check_not_sparse`), complex, object or string
        dtypes, or an empty array.
    ShapeMismatchError
        A number of dimensions outside ``ndim``.
    NonFiniteInputError
        NaN or infinity (with ``check_finite``).
    """
    check_not_sparse(a, name)
    if hasattr(a, "__array__") and not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # pragma: no cover - numpy message is clear enough
            raise InvalidInputError(f"{name} could not be converted to an array: {exc}") from exc
    if a.dtype.kind in "cO" or a.dtype.kind in "SUV":
        raise InvalidInputError(
            f"{name} has dtype {a.dtype}; kernelgen needs real numbers "
            "(float32/float64, or integers which are converted to float64)."
        )
    if a.ndim not in ndim:
        raise ShapeMismatchError(
            f"{name} must have {' or '.join(map(str, ndim))} dimension(s), got shape {a.shape}."
        )
    if not allow_empty and a.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {a.shape}); pass at least one sample.")
    if dtype is None:
        target = a.dtype if a.dtype.type in _FLOAT_DTYPES else np.dtype(np.float64)
    else:
        target = np.dtype(dtype)
        if target.type not in _FLOAT_DTYPES:
            raise InvalidInputError(f"dtype must be float32 or float64, got {target}.")
    out = np.array(a, dtype=target, copy=True) if copy else np.asarray(a, dtype=target)
    if check_finite:
        _check_finite(out, name)
    return out


def is_sparse(a) -> bool:
    """True for a scipy.sparse matrix or array (scipy is not imported for the check)."""
    sp = sys.modules.get("scipy.sparse")  # a scipy.sparse object exists only once scipy.sparse is imported
    return bool(sp is not None and sp.issparse(a))


def check_not_sparse(a, name: str) -> None:
    """Refuse a scipy.sparse input with a remedy (NumPy would see it as a 0-d object array).

    Raises
    ------
    InvalidInputError
        Naming the input, its sparse format and shape, and the remedy ``.toarray()``.
    """
    if is_sparse(a):
        raise InvalidInputError(
            f"{name} is a scipy.sparse {type(a).__name__} of shape {a.shape}: sparse matrices are not supported "
            f"(kernelgen's kernels and solvers work on dense arrays); pass {name}.toarray().")


def _check_finite(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        n_nan = int(np.isnan(a).sum())
        n_inf = int(np.isinf(a).sum())
        raise NonFiniteInputError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite value(s); "
            "remove or impute them before solving."
        )


def check_same_rows(X: np.ndarray, Y: np.ndarray, xname: str = "X", yname: str = "y") -> None:
    """Raise :class:`ShapeMismatchError` unless X and Y have the same number of rows."""
    if X.shape[0] != Y.shape[0]:
        raise ShapeMismatchError(
            f"{xname} has {X.shape[0]} rows but {yname} has {Y.shape[0]}; they must match."
        )


def is_int(v) -> bool:
    """True for an integer that is not a bool (options validation)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def is_finite_real(v) -> bool:
    """True for a finite real number that is not a bool (options validation)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and bool(np.isfinite(v))


def float_dtype_name(value, field: str) -> str:
    """'float32' or 'float64' from any dtype-like, else InvalidInputError naming ``field`` (options validation)."""
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.type not in _FLOAT_DTYPES:
        raise InvalidInputError(f"{field} = {value!r} is invalid: None, 'float32' or 'float64'.")
    return dt.name
