"""Minimum-norm solution of a linear system X w = y (private)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array, check_same_rows
from ..errors import InvalidInputError, NonFiniteResultError
from ..factors import qr_factor
from ..numerics import relative_norm

log = logging.getLogger(__name__)

__all__ = ["MinNormSolution", "min_norm_solve"]


@dataclass(frozen=True)
class MinNormSolution:
    """Result of :func:`min_norm_solve`.

    Attributes
    ----------
    coef : ndarray of shape (n_features,) or (n_features, n_targets)
        The minimum-l2-norm (least-squares) solution, float64.
    rank : int
        Numerical rank of X found.
    tol : float
        Absolute threshold below which singular values were treated as zero:
        ``rcond * sigma_max`` (the factor's ``rank_tol``).
    method : str
        ``"lq"`` (full row rank, underdetermined), ``"qr"`` (full column rank) or
        ``"svd"`` (rank-deficient: the pseudo-inverse through the SVD (gesdd) of the QR
        factor's triangle R, whose singular values are those of X).
    relative_residual : float
        ||X coef - y||_F / ||y||_F in float64 (0 up to rounding for consistent systems).
    """

    coef: np.ndarray
    rank: int
    tol: float
    method: str
    relative_residual: float


def min_norm_solve(X, y, *, rcond: float | None = None) -> MinNormSolution:
    """Minimum-l2-norm solution of X w = y, i.e. ``pinv(X) @ y``.

    For a consistent system this is the minimum-norm interpolant Xᵀ(XXᵀ)⁻¹y (full row
    rank); for an inconsistent one, the minimum-norm least-squares solution. The
    computation never forms XXᵀ (which squares the condition number). It is
    :func:`kernelgen.factors.qr_factor` (QR with column pivoting of X, or of Xᵀ: LQ) and its
    ``solve``: full rank is certified on R (accurate to about κ(X)·u); otherwise the
    singular values of R decide the rank and X⁺ is applied through that SVD.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_targets)
    rcond : float, optional
        Relative threshold for the numerical rank; default ``max(X.shape) * eps``
        (NumPy's ``lstsq``/``matrix_rank`` convention).

    Returns
    -------
    MinNormSolution

    Raises
    ------
    NonFiniteInputError, ShapeMismatchError, InvalidInputError
        Bad X, y (NaN/inf, shapes, empty) or ``rcond`` outside [0, 1).
    NonFiniteResultError
        The solution overflows float64.

    References
    ----------
    Golub & Van Loan, Matrix Computations (4th ed.), §5.5 (rank-deficient least
    squares) and §5.6.2 (minimum-norm solution of underdetermined systems via QR of Xᵀ).
    Zhang et al., ICLR 2017, §5: the SGD limit from w0 = 0 is this solution.

    Examples
    --------
    >>> import numpy as np
    >>> sol = min_norm_solve(np.array([[1.0, 1.0]]), np.array([2.0]))
    >>> sol.coef.round(12).tolist(), sol.rank, sol.method
    ([1.0, 1.0], 1, 'lq')
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    check_same_rows(X, y, "X", "y")
    m, d = X.shape
    if rcond is not None and not (0 <= rcond < 1):
        raise InvalidInputError(f"rcond must lie in [0, 1), got {rcond}")
    Y2 = y.reshape(m, -1)
    # one path: the QR (m >= d) / LQ (m < d) factor of X decides the rank on X itself (full rank certified by
    # ||R||_F ||R^-1||_F, else by the singular values of R, which are X's) and applies X^+ (kernelgen.factors).
    f = qr_factor(X, rtol=rcond, pivoting=True, max_dim=max(X.shape))
    method = f.kind if f.rank == min(m, d) else "svd"
    rank, tol = int(f.rank), float(f.rank_tol)
    with np.errstate(over="ignore", invalid="ignore"):
        W = f.solve(Y2)
    if not np.all(np.isfinite(W)):
        raise NonFiniteResultError(
            f"the minimum-norm solution is not representable in float64 (entries overflow or are NaN): the "
            f"rank-{rank} part of X is too small for targets of size {float(np.abs(Y2).max()):.3g} "
            f"(cut-off {tol:.3g}). "
            "Remedy: rescale X (the solution scales as 1/c when X -> cX), or raise rcond to drop those directions.")
    res = X @ W - Y2
    rel = relative_norm(res, Y2)
    coef = W.reshape((d,) + y.shape[1:])
    if method == "svd":
        log.info("min_norm_solve: X is rank-deficient (rank %d of %s, tol %.3g); used the SVD", rank, X.shape, tol)
    return MinNormSolution(coef=coef, rank=rank, tol=tol, method=method, relative_residual=rel)
