"""Helpers every evidence computation shares (private): positive scalars, float64 Cholesky
factors without jitter, square float64 matrices, ``log(2 pi)``."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla

from .._validation import as_float_array
from ..errors import (
    InvalidInputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
)

__all__ = ["LOG_2PI"]

LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _positive_scalar(x, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a positive real number, got {x!r}.") from exc
    if not math.isfinite(v):
        raise NonFiniteInputError(f"{name} = {v} is not finite; pass a positive finite number.")
    if v <= 0.0:
        raise InvalidInputError(f"{name} must be > 0 (a proper Gaussian), got {v}.")
    return v


def _cholesky_lower(A: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor in float64, or NotPositiveDefiniteError (no jitter added)."""
    try:
        return sla.cholesky(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        # LAPACK reports the order of the leading minor that failed: "... leading minor of order k"
        idx = None
        digits = [int(s) for s in str(exc).replace(".", " ").split() if s.isdigit()]
        if digits:
            idx = digits[0] - 1
        raise NotPositiveDefiniteError(
            f"{what} is not positive definite in float64 (Cholesky failed: {exc}). kernelgen adds no "
            "jitter; increase the prior precision / noise variance explicitly if that is intended.",
            index=idx,
        ) from exc


def _logdet_from_cholesky(L: np.ndarray) -> float:
    return 2.0 * float(np.sum(np.log(np.diag(L))))


def _as_square(K, name="K") -> np.ndarray:
    K = as_float_array(K, name, ndim=(2,), dtype=np.float64)
    if K.shape[0] != K.shape[1]:
        raise ShapeMismatchError(f"{name} must be square (n, n), got shape {K.shape}.")
    return K
