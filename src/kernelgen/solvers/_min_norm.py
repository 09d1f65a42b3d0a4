"""Minimum-norm solution of a linear system X w = y (private)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from .._validation import as_float_array, check_same_rows
from ..numerics import relative_norm, singular_value_cutoff
from ..errors import InvalidInputError, NonFiniteResultError

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
        Absolute threshold below which singular values (or pivoted-QR diagonal
        entries) were treated as zero: ``rcond * (largest one)``.
    method : str
        ``"lq"`` (full row rank, underdetermined), ``"qr"`` (full column rank) or
        ``"svd"`` (rank-deficient; LAPACK gesdd SVD).
    relative_residual : float
        ||X coef - y||_F / ||y||_F in float64 (0 up to rounding for consistent systems).
    """

    coef: np.ndarray
    rank: int
    tol: float
    method: str
    relative_residual: float

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.coef, dtype=dtype)


def min_norm_solve(X, y, *, rcond: float | None = None) -> MinNormSolution:
    """Minimum-l2-norm solution of X w = y, i.e. ``pinv(X) @ y``.

    For a consistent system this is the minimum-norm interpolant Xᵀ(XXᵀ)⁻¹y (full row
    rank); for an inconsistent one, the minimum-norm least-squares solution. The
    computation never forms XXᵀ (which squares the condition number): a full-rank X
    is solved by an LQ (QR of Xᵀ) or QR factorisation with column pivoting, accurate
    to about κ(X)·u; a rank-deficient X by the SVD (LAPACK gesdd), whose rank is reported.

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

    References
    ----------
    Golub & Van Loan, Matrix Computations (4th ed.), §5.5 (rank-deficient least
    squares) and §5.6.2 (minimum-norm solution of underdetermined systems via QR of Xᵀ).
    Zhang et al., ICLR 2017, §5: the SGD limit from w0 = 0 is this solution.

    Examples
    --------
    >>> import numpy as np
    >>> sol = min_norm_solve(np.array([[1.0, 1.0]]), np.array([2.0]))
    >>> sol.coef.tolist(), sol.rank
    ([1.0, 1.0], 1)
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    check_same_rows(X, y, "X", "y")
    m, d = X.shape
    if rcond is not None and not (0 <= rcond < 1):
        raise InvalidInputError(f"rcond must lie in [0, 1), got {rcond}")
    Y2 = y.reshape(m, -1)
    if m <= d:
        # LQ: Xᵀ Π = Q R  =>  Πᵀ X = Rᵀ Qᵀ ; min-norm w = Q z with Rᵀ z = Πᵀ y
        Q, R, piv = sla.qr(X.T, mode="economic", pivoting=True)
        diag = np.abs(np.diag(R))
        tol = singular_value_cutoff(diag[:1], X.shape, rcond=rcond)  # |R_11| = max |R_ii| (pivoted QR)
        rank = int((diag > tol).sum())
        if rank == m:
            z = sla.solve_triangular(R, Y2[piv], trans="T", lower=False)
            with np.errstate(over="ignore", invalid="ignore"):
                W, method = Q @ z, "lq"
        else:
            W, method, rank, tol = _svd_path(X, Y2, rcond)
    else:
        Q, R, piv = sla.qr(X, mode="economic", pivoting=True)
        diag = np.abs(np.diag(R))
        tol = singular_value_cutoff(diag[:1], X.shape, rcond=rcond)  # |R_11| = max |R_ii| (pivoted QR)
        rank = int((diag > tol).sum())
        if rank == d:
            z = sla.solve_triangular(R, Q.T @ Y2, lower=False)
            W = np.empty_like(z)
            W[piv] = z
            method = "qr"
        else:
            W, method, rank, tol = _svd_path(X, Y2, rcond)
    if not np.all(np.isfinite(W)):
        raise NonFiniteResultError(
            f"the minimum-norm solution is not representable in float64 (entries overflow or are NaN): the "
            f"rank-{rank} part of X is too small for targets of size {float(np.abs(Y2).max()):.3g} (cut-off {tol:.3g}). "
            "Remedy: rescale X (the solution scales as 1/c when X -> cX), or raise rcond to drop those directions.")
    res = X @ W - Y2
    rel = relative_norm(res, Y2)
    coef = W.reshape((d,) + y.shape[1:])
    if method == "svd":
        log.info("min_norm_solve: X is rank-deficient (rank %d of %s, tol %.3g); used the SVD", rank, X.shape, tol)
    return MinNormSolution(coef=coef, rank=rank, tol=float(tol), method=method, relative_residual=rel)


def _svd_path(X, Y2, rcond):
    U, s, Vt = sla.svd(X, full_matrices=False, lapack_driver="gesdd")
    tol = singular_value_cutoff(s, X.shape, rcond=rcond)
    r = int((s > tol).sum())
    W = Vt[:r].T @ ((U[:, :r].T @ Y2) / s[:r, None])
    return W, "svd", r, float(tol)
