"""Named exceptions raised by kernelgen.

Every error says what went wrong and what to do about it. Each subclasses the
closest built-in exception so that generic ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "KernelgenError",
    "InvalidInputError",
    "NonFiniteInputError",
    "ShapeMismatchError",
    "NotPositiveDefiniteError",
    "SingularSystemError",
    "MemoryBudgetError",
    "ConvergenceError",
    "DataIntegrityError",
    "MalformedIDXError",
    "DataUnavailableError",
    "UnstableStepSizeError",
    "NonFiniteResultError",
    "FormatVersionError",
    "InterpolationWarning",
]


class KernelgenError(Exception):
    """Base class of every error kernelgen raises on purpose."""


class InvalidInputError(KernelgenError, ValueError):
    """An argument has the wrong type, dtype, size or value."""


class NonFiniteInputError(InvalidInputError):
    """An input array contains NaN or infinity."""


class ShapeMismatchError(InvalidInputError):
    """Array shapes do not agree (e.g. rows of X vs rows of Y)."""


class NotPositiveDefiniteError(KernelgenError, ValueError):
    """A Cholesky factorisation met a non-positive pivot.

    Attributes
    ----------
    index : int or None
        Zero-based index of the first pivot that was not positive (None if unknown).
    """

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


class SingularSystemError(KernelgenError, ValueError):
    """The system is (numerically) singular for what was asked: e.g. Y lies outside the range of a singular K,
    so no interpolant exists (``SolveOptions(require_interpolation=True)``)."""


class MemoryBudgetError(KernelgenError, MemoryError):
    """The requested computation would not fit in the memory available.

    Attributes
    ----------
    bytes_needed, bytes_available : int
    """

    def __init__(self, message: str, bytes_needed: int = 0, bytes_available: int = 0):
        super().__init__(message)
        self.bytes_needed = int(bytes_needed)
        self.bytes_available = int(bytes_available)


class ConvergenceError(KernelgenError, RuntimeError):
    """An iteration (e.g. float64 refinement) did not reach its tolerance.

    Attributes
    ----------
    history : list of dict
        Each residual reached (step, kind, relative_residual, seconds); "kind" says whether it is a
        direct float64 product or CG's recursive estimate.
    """

    def __init__(self, message: str, history: list | None = None):
        super().__init__(message)
        self.history = list(history or [])


class DataIntegrityError(KernelgenError, ValueError):
    """Data failed verification (wrong sha256, truncated, corrupt)."""


class MalformedIDXError(DataIntegrityError):
    """An IDX file has a bad magic number, dimensions or size."""


class DataUnavailableError(KernelgenError, OSError):
    """No source could provide a dataset; the message lists every source tried."""


class UnstableStepSizeError(KernelgenError, ValueError):
    """A step size exceeds the stability bound of the iteration."""


class NonFiniteResultError(KernelgenError, ArithmeticError):
    """A computed quantity (kernel entry, factor, residual, coefficient, prediction) is NaN or infinite.

    Raised instead of returning it: NaN/inf is never a result.
    """


class FormatVersionError(DataIntegrityError):
    """A saved file has another format or version than this kernelgen reads, or belongs to other data."""


class InterpolationWarning(UserWarning):
    """The minimum-norm solution does not interpolate (Y is not in the range of K): a least-squares fit."""
