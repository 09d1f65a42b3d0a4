"""Named exceptions raised by kernelgen.

Every error says what went wrong and what to do about it. Each subclasses the
closest built-in exception so that generic ``except ValueError`` code keeps working.
"""

from __future__ import annotations

import pickle

__all__ = [
    "KernelgenError",
    "restated",
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
    "CorruptFileError",
    "DataMismatchError",
    "KernelIdentityError",
    "UnsupportedOptionError",
    "SettingsMismatchError",
    "NotPicklableError",
    "ScalapackUnavailableError",
    "ScratchStorageError",
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
    """A saved file has another format or another format version than this kernelgen reads.

    The message names both versions (the file's and the one this kernelgen reads) and what to do.
    """


class CorruptFileError(DataIntegrityError):
    """A saved file is truncated, unreadable, not a kernelgen file, or was modified after it was written."""


class DataMismatchError(KernelgenError, ValueError):
    """Data passed to a saved or fitted object are not the data it was fitted on (sha256, shape or preparation).

    The message says which data were expected (shape, preparation, rows used) and how to supply them.
    """


class KernelIdentityError(KernelgenError, TypeError):
    """A kernel class is not the one a name or a saved file denotes.

    Raised when a second class claims a registered kernel name (at class definition), or when a saved
    file records a kernel class (``module:qualname``) other than the one the name resolves to now.
    """


class UnsupportedOptionError(InvalidInputError):
    """An option, or a combination of options, that the chosen backend, solver or kernel cannot honour.

    Raised before any n x n work; the message names the option, the backend or kernel, and the reason.
    """


class SettingsMismatchError(KernelgenError, RuntimeError):
    """Processes of one MPI run disagree on a setting (an environment variable, an option).

    Raised on every process, naming the setting and the ranks that differ.
    """


class NotPicklableError(KernelgenError, pickle.PicklingError):
    """An object that cannot be pickled faithfully (a factor distributed over MPI processes or kept on disk).

    The message says what to save instead (e.g. ``fit.save(path)`` without the factor).
    """


class InterpolationWarning(UserWarning):
    """The minimum-norm solution does not interpolate (Y is not in the range of K): a least-squares fit."""


class ScalapackUnavailableError(InvalidInputError, OSError):
    """ScaLAPACK or MPI (mpi4py) could not be found or loaded for ``backend="mpi"``; the message says what was tried
    and how to install them."""


class ScratchStorageError(KernelgenError, OSError):
    """The out-of-core factor's scratch directory or file cannot be used (not a directory, read-only, full).

    The message names the path and the remedy (another ``SolveOptions(scratch_dir=...)`` or
    ``KERNELGEN_SCRATCH``, free disk space); nothing half-written is left.
    """


def restated(exc: Exception, message: str) -> Exception:
    """A new exception of ``exc``'s type with ``message``, keeping the attributes callers read from it.

    Used where a library layer adds context to an error and re-raises it (``raise restated(exc, msg) from exc``):
    :class:`NotPositiveDefiniteError` keeps its ``index``, :class:`ConvergenceError` its ``history``.
    """
    if isinstance(exc, NotPositiveDefiniteError):
        return type(exc)(message, exc.index)
    if isinstance(exc, ConvergenceError):
        return type(exc)(message, history=exc.history)
    return type(exc)(message)
