"""The Factor protocol: what every factorisation kernelgen computes provides (private base).

A factor is computed once and reused: a solve for new right-hand sides, a log-determinant with
its precision, the numerical rank it justifies, and a record of what ran. Symmetric factors
(tiled Cholesky on SciPy, Cholesky on JAX, symmetric eigendecomposition) factor an n x n kernel
matrix; rectangular factors (QR / LQ, SVD) factor a feature matrix Phi of shape (n, N) and apply
its pseudo-inverse, which the double-descent work needs at N = n, where the Gram matrix squares
the condition number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Factor", "LogDet"]


@dataclass(frozen=True)
class LogDet:
    """A log-determinant and how far it can be trusted.

    Attributes
    ----------
    value : float
        log |det A| in nats; for a rank-deficient factor, the sum over the kept spectrum
        (a pseudo-determinant), as ``rank`` on the factor says.
    error_bound : float or None
        A bound (``rigorous=True``) or an estimate (``rigorous=False``) of |value - log det A|
        in nats. None when nothing can be said.
    rigorous : bool
        Whether ``error_bound`` is a proven bound rather than an estimate.
    dtype : str
        Precision of the factor the value came from.
    how : str
        One line: what was summed, and where the bound comes from.
    """

    value: float
    error_bound: float | None
    rigorous: bool
    dtype: str
    how: str


@runtime_checkable
class Factor(Protocol):
    """What a factorisation provides (structural protocol; see :mod:`kernelgen.factors`).

    Attributes
    ----------
    kind : str
        ``"cholesky"``, ``"eigh"``, ``"qr"``, ``"lq"`` or ``"svd"``.
    backend : str
        ``"scipy"`` or ``"jax"``.
    dtype : numpy.dtype
        Precision of the stored factor (float32 = a preconditioner for a float64 iteration).
    shape : tuple of int
        Shape of the factored matrix.
    rank : int
        Numerical rank the factor justifies (n for a successful Cholesky).
    rank_tol : float or None
        Threshold used to decide the rank (None for Cholesky).
    """

    kind: str
    backend: str
    dtype: np.dtype
    shape: tuple
    rank: int
    rank_tol: float | None

    def solve(self, B: np.ndarray) -> np.ndarray:
        """A^+ B (= A^-1 B when A is square and non-singular), float64 of shape (A.shape[1], k)."""
        ...

    def logdet(self) -> LogDet:
        """log |det A| (or the pseudo-determinant over the kept spectrum) with its precision."""
        ...

    def describe(self) -> dict:
        """A JSON-serialisable record of what ran (kind, backend, dtype, shape, rank, timings)."""
        ...
