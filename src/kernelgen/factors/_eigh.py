"""Symmetric eigendecomposition A = U diag(lambda) U^T as a factor: pseudo-inverse, rank, evidence."""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.linalg as sla

from ..errors import InvalidInputError, NonFiniteResultError, NotPositiveDefiniteError, ShapeMismatchError
from ..numerics import CALL_LIMITS, spectral_cutoffs
from ..numerics import check_symmetric as _check_sym
from ._base import LogDet

log = logging.getLogger(__name__)

__all__ = ["EighFactor"]

LOG_2PI = float(np.log(2.0 * np.pi))


class EighFactor:
    """A = U diag(lambda) U^T of a symmetric matrix, computed once and reused.

    The rank and PSD rules are :func:`kernelgen.numerics.spectral_cutoffs`, following the
    precision the matrix carries (``matrix_dtype``): eigenvalues at or below ``rank_tol`` count as
    zero; one below ``-neg_tol`` proves the matrix indefinite (checked by :meth:`require_psd`).

    Build with :meth:`factor` (the one constructor: from a matrix, or from eigenpairs computed
    elsewhere, e.g. on a JAX device).

    Attributes
    ----------
    eigenvalues : ndarray of shape (n,)
        Ascending, float64, as computed (never clipped).
    eigenvectors : ndarray of shape (n, n)
    rank : int
    rank_tol, neg_tol : float
    matrix_dtype : numpy.dtype
        Precision of the matrix that was decomposed (float32 data carry float32 rounding).
    kind, backend, dtype, shape
        See :class:`kernelgen.factors.Factor` (dtype float64).
    """

    kind = "eigh"

    def __init__(self, eigenvalues, eigenvectors, *, matrix_dtype=np.float64, rcond=None, backend="scipy",
                 seconds: float = 0.0):
        w = np.asarray(eigenvalues, dtype=np.float64)
        if not np.all(np.isfinite(w)):
            raise NonFiniteResultError("the eigendecomposition produced non-finite eigenvalues: the matrix holds "
                                       "NaN/inf or overflowed.")
        self.eigenvalues = w
        self.eigenvectors = eigenvectors
        self.backend = backend
        self.dtype = np.dtype(np.float64)
        self.matrix_dtype = np.dtype(matrix_dtype)
        n = w.shape[0]
        self.shape = (n, n)
        self.rank_tol, self.neg_tol = spectral_cutoffs(w, dtype=self.matrix_dtype, rcond=rcond)
        self.keep = w > self.rank_tol
        self.rank = int(self.keep.sum())
        self.seconds = float(seconds)

    @classmethod
    def factor(cls, A=None, *, eigenpairs=None, matrix_dtype=None, rcond=None, overwrite: bool = False,
               check_symmetric: bool = True, backend: str | None = None, seconds: float | None = None
               ) -> "EighFactor":
        """The one constructor: eigendecompose a symmetric A, or wrap eigenpairs computed elsewhere (JAX).

        With ``A``: SciPy ``syevd`` in float64 (bounded: n <= ``EIGH_MAX_N``). With
        ``eigenpairs=(w, V)`` (``w`` ascending, ``A = V diag(w) V^T``; NumPy or ``jax.Array``, copied to
        host float64): no decomposition, only the checks and the rank / PSD rules.

        Parameters
        ----------
        A : ndarray of shape (n, n), float32 or float64, optional
            Decomposed in float64; its dtype sets the precision of the rank / PSD rules (unless
            ``matrix_dtype`` is given). Exactly one of ``A`` and ``eigenpairs``.
        eigenpairs : (array of shape (n,), array of shape (n, n)), optional
            Eigenvalues (ascending) and eigenvectors (columns) of the matrix, e.g. from ``jnp.linalg.eigh``.
        matrix_dtype : float32 or float64, optional
            Precision the decomposed matrix carries (default: A's dtype; float64 for eigenpairs). A float64
            copy of a float32 matrix still carries float32 rounding: pass ``matrix_dtype=np.float32``.
        rcond : float, optional
            Relative rank threshold (default n * eps of ``matrix_dtype``).
        overwrite : bool
            Allow A (float64) to be used as workspace.
        check_symmetric : bool
            Check A's symmetry (:func:`kernelgen.numerics.check_symmetric`); not applied to eigenpairs.
        backend : str, optional
            Recorded in :meth:`describe` (default ``"scipy"``; e.g. ``"jax"`` for device eigenpairs).
        seconds : float, optional
            Time the decomposition took when computed elsewhere (default: timed here).

        Returns
        -------
        EighFactor

        Raises
        ------
        ShapeMismatchError
            A not square; eigenpairs of inconsistent shapes.
        InvalidInputError
            Neither or both of A and eigenpairs; A not symmetric or too large for one LAPACK call.
        NonFiniteResultError
            Non-finite eigenvalues (A holds NaN / inf or the decomposition overflowed).

        References
        ----------
        Golub & Van Loan, Matrix Computations, 4th ed., §8.1.2 (Weyl) and §5.4.1 (numerical rank), the
        basis of :func:`kernelgen.numerics.spectral_cutoffs`.

        Examples
        --------
        >>> import numpy as np
        >>> f = EighFactor.factor(np.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> f.eigenvalues.round(12).tolist(), f.rank
        ([1.0, 3.0], 2)
        >>> g = EighFactor.factor(eigenpairs=(f.eigenvalues, f.eigenvectors), backend="jax")
        >>> bool(np.allclose(g.solve(np.array([3.0, 3.0])), [1.0, 1.0])), g.backend
        (True, 'jax')
        """
        if (A is None) == (eigenpairs is None):
            raise InvalidInputError("pass exactly one of A (a symmetric matrix) and eigenpairs=(w, V).")
        if eigenpairs is not None:
            t0 = time.perf_counter()
            try:
                w, V = eigenpairs
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"eigenpairs must be a pair (w, V), got {type(eigenpairs).__name__}.") from exc
            w = np.asarray(w, dtype=np.float64)
            V = np.asarray(V, dtype=np.float64)
            if w.ndim != 1 or V.shape != (w.shape[0], w.shape[0]):
                raise ShapeMismatchError(f"eigenpairs need w of shape (n,) and V of shape (n, n), got {w.shape} and "
                                         f"{V.shape}.")
            mdt = np.dtype(np.float64 if matrix_dtype is None else matrix_dtype)
            took = time.perf_counter() - t0 if seconds is None else seconds
            return cls(w, V, matrix_dtype=mdt, rcond=rcond, backend=backend or "scipy", seconds=took)
        A = np.asarray(A)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ShapeMismatchError(f"an eigendecomposition needs a square matrix, got shape {A.shape}.")
        if matrix_dtype is not None:
            mdt = np.dtype(matrix_dtype)
        else:
            mdt = A.dtype if A.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        if A.shape[0] > EIGH_MAX_N:
            raise InvalidInputError(f"a dense eigendecomposition of order {A.shape[0]} exceeds the largest single "
                                    f"LAPACK call kernelgen issues ({EIGH_MAX_N}); use a Cholesky factor.")
        if check_symmetric:
            _check_sym(A)
        t0 = time.perf_counter()
        work = A if (overwrite and A.dtype == np.float64) else np.array(A, dtype=np.float64)
        w, U = sla.eigh(work, overwrite_a=True, check_finite=False, driver="evd")
        took = time.perf_counter() - t0 if seconds is None else seconds
        return cls(w, U, matrix_dtype=mdt, rcond=rcond, backend=backend or "scipy", seconds=took)

    # ---------------------------------------------------------------- Factor protocol
    def require_psd(self, what: str = "the kernel") -> None:
        """Raise NotPositiveDefiniteError when an eigenvalue lies below -neg_tol (indefinite beyond rounding)."""
        w = self.eigenvalues
        if w.size and w.min() < -self.neg_tol:
            i = int(np.argmin(w))
            raise NotPositiveDefiniteError(
                f"{what} has a negative eigenvalue {w[i]:.3g} (below -{self.neg_tol:.3g}, beyond the rounding of "
                f"its {self.matrix_dtype.name} entries): it is not positive semi-definite, so no minimum-norm "
                "interpolant in an RKHS exists. Check the kernel, or symmetrise and clip it yourself.", index=i)

    def solve(self, B) -> np.ndarray:
        """A^+ B over the kept spectrum (the minimum-norm solution), float64."""
        B = np.asarray(B, dtype=np.float64)
        if B.shape[0] != self.shape[0]:
            raise ShapeMismatchError(f"B has {B.shape[0]} rows, the factor has order {self.shape[0]}.")
        U = self.eigenvectors[:, self.keep]
        B2 = B.reshape(B.shape[0], -1)
        X = U @ ((U.T @ B2) / self.eigenvalues[self.keep][:, None])
        return X.reshape(B.shape)

    def apply(self, V) -> np.ndarray:
        """A V reconstructed from the kept spectrum (for analysis; not a certificate)."""
        U = self.eigenvectors[:, self.keep]
        V2 = np.asarray(V, dtype=np.float64).reshape(self.shape[0], -1)
        return (U @ (self.eigenvalues[self.keep][:, None] * (U.T @ V2))).reshape(np.shape(V))

    def logdet(self) -> LogDet:
        """Sum of log eigenvalues over the kept spectrum (the pseudo-determinant when rank < n)."""
        w = self.eigenvalues[self.keep]
        value = float(np.sum(np.log(w)))
        # Weyl: each computed eigenvalue is within p(n) u ||A|| of an exact one of the stored matrix
        u = float(np.finfo(self.matrix_dtype).eps) / 2
        wmax = float(np.max(np.abs(self.eigenvalues))) if self.eigenvalues.size else 0.0
        delta = self.shape[0] * u * wmax
        bound = float(np.sum(np.log1p(delta / w))) if w.size and delta < w.min() else None
        return LogDet(value, bound, False, "float64",
                      f"sum of log of the {self.rank} kept eigenvalues (of {self.shape[0]}); error estimated by Weyl's "
                      f"inequality with |perturbation| <= n u ||A||, u of {self.matrix_dtype.name}")

    @property
    def condition_number(self) -> float | None:
        """Largest / smallest kept eigenvalue (None when rank is 0)."""
        w = self.eigenvalues[self.keep]
        return float(np.max(np.abs(self.eigenvalues)) / w.min()) if w.size else None

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "dtype": "float64", "matrix_dtype": self.matrix_dtype.name,
                "shape": list(self.shape), "rank": self.rank, "rank_tol": self.rank_tol,
                "condition_number": self.condition_number, "seconds": self.seconds}

    # ---------------------------------------------------------------- analysis (factor once, solve many)
    @property
    def n(self) -> int:
        return self.shape[0]

    def project(self, Y) -> np.ndarray:
        """U^T Y of shape (n, n_targets)."""
        Y = np.asarray(Y, dtype=np.float64)
        if Y.shape[0] != self.n:
            raise ShapeMismatchError(f"Y has {Y.shape[0]} rows, the factor has order {self.n}.")
        return self.eigenvectors.T @ Y.reshape(self.n, -1)

    def log_evidence(self, Y=None, *, amplitude2: float, noise_var: float, projected=None) -> np.ndarray:
        """Per-column GP log evidence log N(y | 0, a^2 K + sigma^2 I) in O(n k) (Rasmussen & Williams eq. 2.30).

        Pass ``projected = self.project(Y)`` to reuse the projection across many calls.

        Raises
        ------
        NotPositiveDefiniteError
            When a^2 lambda + sigma^2 <= 0 for some eigenvalue.
        """
        c = self.project(Y) if projected is None else np.asarray(projected, dtype=np.float64)
        v = amplitude2 * self.eigenvalues + noise_var
        if np.any(v <= 0):
            raise NotPositiveDefiniteError(
                f"a^2 K + sigma^2 I has a non-positive eigenvalue ({v.min():.3g}); increase noise_var.")
        return -0.5 * np.sum(c * c / v[:, None], axis=0) - 0.5 * np.sum(np.log(v)) - 0.5 * self.n * LOG_2PI

    def effective_dim(self, z):
        """N_eff(A, z) = sum_i lambda_i / (lambda_i + z) (Maddox et al. 2020; PRML's gamma, eq. 3.91)."""
        lam = self.eigenvalues
        z = np.asarray(z, dtype=np.float64)
        out = np.sum(lam[:, None] / (lam[:, None] + z.reshape(1, -1)), axis=0)
        return float(out[0]) if z.ndim == 0 else out.reshape(z.shape)


#: Largest eigendecomposition issued as one LAPACK call: the tested float64 call limit (8,192). The
#: float64 potrf crash point was ~23,000 on the AMD EPYC but 16,384 on the Intel Xeon of 2026-12-05
#: (docs/numerics.md, "BLAS and LAPACK call limits"); syevd itself was not measured, so the limit is
#: the one the test suite runs, not the machine-dependent crash point.
EIGH_MAX_N = 8192
assert EIGH_MAX_N >= CALL_LIMITS[np.dtype(np.float64)].potrf_n
