"""Rectangular factors of a feature matrix Phi (n x N): pseudo-inverse solves decided on Phi itself.

A factor of the Gram matrix (``Phi^T Phi`` or ``Phi Phi^T``) squares the condition number, so any
rank cut-off applied to it discards singular values of ``Phi`` below ``sqrt(cutoff) * sigma_max``
(for a cut-off of ``n eps`` on the Gram: ``sqrt(n eps) sigma_max ~ 1e-6 sigma_max``). Near the
interpolation threshold ``N = n`` of a random-feature model ``Phi`` has condition numbers of
1e5 - 1e7, so such a cut-off changes the answer. The factors here work on ``Phi``:

* :class:`QRFactor` -- Householder QR of the tall one of ``Phi`` / ``Phi^T`` (``kind="qr"`` when
  ``n >= N``, ``kind="lq"`` when ``n < N``, i.e. ``Phi = L Q`` through a QR of ``Phi^T``), with or
  without column pivoting (LAPACK ``dgeqp3`` / ``dgeqrf``), ``Q`` kept as Householder reflectors
  (``dormqr``), never formed. The triangular factor ``R`` has the singular values of ``Phi`` (up to
  the backward error of Householder QR). Full rank is certified from ``R``:
  ``sigma_min(R) >= 1 / ||R^-1||_F`` and ``sigma_max(R) <= ||R||_F``, so
  ``||R||_F ||R^-1||_F <= 1 / rtol`` proves that no singular value falls below
  ``rtol * sigma_max``. Otherwise the singular values of ``R`` (an SVD of the ``p x p`` factor,
  ``p = min(n, N)``) decide the rank and the pseudo-inverse is applied through that SVD.
* :class:`SVDFactor` -- a thin SVD of ``Phi`` (``gesdd``, ``gesvd`` on request or when ``gesdd``
  does not converge, which is recorded).

Both give ``solve(B) = Phi^+ B`` (the minimum-norm least-squares solution; the truncated
pseudo-inverse over the kept singular values when ``Phi`` is numerically rank-deficient), and
``logdet() = sum_i log sigma_i^2`` over the kept spectrum (the log pseudo-determinant of
``Phi^T Phi``, equal to that of ``Phi Phi^T``).

Rank tolerance
--------------
Singular values ``sigma_i <= rank_tol = rtol * sigma_max`` are treated as zero, with the default
``rtol = max(n, N) * eps`` (``eps = 2.2e-16``): a backward-stable factorisation of ``Phi`` returns
the singular values of ``Phi + E`` with ``||E|| ~ max(n, N) eps ||Phi||``, so singular values
below that level are not determined by the data (the convention of ``numpy.linalg.matrix_rank``
and of ``numpy.linalg.pinv``'s default, Golub & Van Loan 2013, sec. 5.4.1).

Dtype policy: float64 throughout (float32 input is converted; inputs are never modified).

LAPACK call limit: one call on a matrix with a dimension above ``max_dim`` (default
:data:`MAX_LAPACK_DIM` = 16,384) is refused with :class:`~kernelgen.errors.InvalidInputError`
unless ``max_dim`` is raised explicitly, in which case a warning is logged: the bundled OpenBLAS
has crashed on single float64 calls of order 23,000 on these machines (see docs/numerics.md, "BLAS
and LAPACK call limits"), and a dense
SVD of a 10^4 x 10^4 matrix takes minutes.

References
----------
.. [GVL] G. H. Golub, C. F. Van Loan. Matrix Computations, 4th ed., 2013: sec. 5.2 (Householder
   QR), 5.4.1-5.4.2 (rank, QR with column pivoting), 5.5 (rank-deficient least squares).
.. [H] N. J. Higham. Accuracy and Stability of Numerical Algorithms, 2nd ed., 2002: Thm 19.4
   (backward error of Householder QR), sec. 20.1 (perturbation of least squares).
.. [P] R. Penrose. A generalized inverse for matrices. Proc. Cambridge Philos. Soc. 51, 1955
   (the four conditions that define Phi^+).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.linalg import lapack, solve_triangular
from scipy.linalg import svd as _svd

from .._validation import as_float_array
from ..errors import InvalidInputError, ShapeMismatchError
from ._base import LogDet

__all__ = ["MAX_LAPACK_DIM", "QRFactor", "SVDFactor", "qr_factor", "svd_factor"]

log = logging.getLogger(__name__)

MAX_LAPACK_DIM = 16384
"""Largest dimension of a matrix handed to one LAPACK call without an explicit ``max_dim``."""

_EPS = float(np.finfo(np.float64).eps)


def _fro(a: np.ndarray) -> float:
    """Frobenius norm without overflow or underflow (scaled by the largest entry)."""
    s = float(np.max(np.abs(a))) if a.size else 0.0
    if s == 0.0 or not np.isfinite(s):
        return s
    return s * float(np.linalg.norm(a / s))


def _check_matrix(Phi, max_dim: int) -> np.ndarray:
    if Phi is None:
        raise InvalidInputError("Phi is None; pass a 2-D array of shape (n, N).")
    Phi = as_float_array(Phi, "Phi", ndim=(2,), dtype=np.float64)  # raises NonFiniteInputError
    max_dim = int(max_dim)
    if max_dim < 1:
        raise InvalidInputError(f"max_dim must be >= 1, got {max_dim}.")
    big = max(Phi.shape)
    if big > max_dim:
        raise InvalidInputError(
            f"Phi has shape {Phi.shape}: one LAPACK call on a dimension of {big} exceeds max_dim={max_dim} "
            "(the bundled OpenBLAS crashed on float64 calls of order ~23,000 here: docs/numerics.md, 'BLAS and "
            "LAPACK call limits'); subsample, or "
            "pass a larger max_dim explicitly to accept the risk."
        )
    if max_dim > MAX_LAPACK_DIM and big > MAX_LAPACK_DIM:
        log.warning("factoring Phi of shape %s: a single LAPACK call beyond the tested limit %d (max_dim=%d)",
                    Phi.shape, MAX_LAPACK_DIM, max_dim)
    return Phi


def _check_rtol(rtol, shape) -> float:
    if rtol is None:
        return max(shape) * _EPS
    rtol = float(rtol)
    if not np.isfinite(rtol) or rtol < 0 or rtol >= 1:
        raise InvalidInputError(f"rtol must be a finite number in [0, 1), got {rtol}.")
    return rtol


def _check_rhs(B, n: int) -> tuple[np.ndarray, bool]:
    B = as_float_array(B, "B", ndim=(1, 2), dtype=np.float64, allow_empty=True)
    if B.shape[0] != n:
        raise ShapeMismatchError(f"B has {B.shape[0]} rows but Phi has {n}; they must match.")
    vec = B.ndim == 1
    return (B[:, None] if vec else B), vec


class _Rectangular:
    """Shared parts of the rectangular factors (private)."""

    backend = "scipy"
    dtype = np.dtype(np.float64)

    def _finish_logdet(self, s_kept: np.ndarray, how: str) -> LogDet:
        if s_kept.size == 0:
            return LogDet(0.0, 0.0, False, "float64", "empty product (rank 0): " + how)
        value = float(2.0 * np.sum(np.log(s_kept)))
        # sigma_i is computed with absolute error ~ max(n, N) eps sigma_max (backward stability and
        # Weyl's inequality, [H] Thm 19.4 / [GVL] 8.6.1): |d log sigma_i^2| <= 2 delta / sigma_i, first order.
        delta = max(self.shape) * _EPS * float(self.sigma_max)
        err = float(np.sum(2.0 * delta / s_kept))
        return LogDet(value, err, False, "float64", how)

    def _base_record(self) -> dict:
        return {
            "kind": self.kind, "backend": self.backend, "dtype": str(self.dtype), "shape": list(self.shape),
            "rank": int(self.rank), "rank_tol": float(self.rank_tol), "rtol": float(self.rtol),
            "sigma_max": float(self.sigma_max), "sigma_min_kept": float(self.sigma_min_kept),
            "rank_decided_by": self.rank_decided_by, "timings": dict(self.timings),
        }


class QRFactor(_Rectangular):
    """Householder QR / LQ factor of ``Phi`` (n x N) applying ``Phi^+``.

    Use :func:`qr_factor` to build one.

    Attributes
    ----------
    kind : {"qr", "lq"}
        ``"qr"``: ``Phi P = Q R`` (``n >= N``); ``"lq"``: ``Phi^T P = Q R``, i.e. ``P^T Phi = R^T Q^T``
        (``n < N``).
    backend : str
        ``"scipy"``.
    dtype : numpy.dtype
        float64.
    shape : tuple of int
        ``(n, N)``.
    rank : int
        Numerical rank of ``Phi`` at ``rank_tol``.
    rank_tol : float
        Absolute threshold ``rtol * sigma_max``; singular values at or below it are dropped.
    rtol : float
        Relative threshold (default ``max(n, N) eps``).
    sigma_max : float
        Largest singular value of ``Phi`` (10 power-iteration steps on ``R``, a lower bound, or the SVD of ``R``).
    sigma_min_kept : float
        Smallest kept singular value, or its certified lower bound ``1 / ||R^-1||_F`` when full rank
        was certified without an SVD (``rank_decided_by = "frobenius_bound"``).
    rank_decided_by : {"frobenius_bound", "svd_of_R", "zero"}
    pivoting : bool
    """

    def __init__(self, Phi, *, rtol=None, pivoting: bool = True, max_dim: int = MAX_LAPACK_DIM):
        t0 = time.perf_counter()
        Phi = _check_matrix(Phi, max_dim)
        n, N = Phi.shape
        self.shape = (int(n), int(N))
        self.rtol = _check_rtol(rtol, self.shape)
        self._explicit_rtol = rtol is not None
        self.pivoting = bool(pivoting)
        self.kind = "qr" if n >= N else "lq"
        A = np.array(Phi if n >= N else Phi.T, dtype=np.float64, order="F", copy=True)  # Phi untouched
        m, p = A.shape
        self._m, self._p = m, p
        lwork = 2 * p + (p + 1) * 64  # blocked code (LAPACK's default lwork selects the unblocked path)
        if self.pivoting:
            qr, jpvt, tau, _, info = lapack.dgeqp3(A, lwork=lwork, overwrite_a=1)  # [GVL] Alg. 5.4.1
            perm = np.asarray(jpvt, dtype=np.int64) - 1
        else:
            qr, tau, _, info = lapack.dgeqrf(A, lwork=lwork, overwrite_a=1)  # [GVL] Alg. 5.2.2
            perm = np.arange(p)
        if info != 0:  # pragma: no cover - LAPACK argument errors only
            raise InvalidInputError(f"LAPACK QR returned info={info}.")
        self._qr, self._tau, self._perm = qr, tau, perm
        R = np.triu(qr[:p, :p])
        self.timings = {"qr": time.perf_counter() - t0}
        t1 = time.perf_counter()
        self._R = R
        self._U = self._s = self._Vt = self._Rinv = self._Rinv_blocks = None
        fro_R = _fro(R)
        if fro_R == 0.0:
            self.rank, self.sigma_max, self.sigma_min_kept, self.rank_decided_by = 0, 0.0, 0.0, "zero"
            self.rank_tol = 0.0
            self.timings["rank"] = time.perf_counter() - t1
            return
        certified = False
        if np.all(np.diag(R) != 0.0):
            Rinv, info = lapack.dtrtri(R, lower=0)
            if info == 0 and np.all(np.isfinite(Rinv)):
                self._Rinv_blocks = Rinv  # leading blocks certify leading() factors even if this one fails
                fro_inv = _fro(Rinv)
                # sigma_min(R) >= 1/||R^-1||_F, sigma_max(R) <= ||R||_F  ([GVL] 2.3.2)
                if np.isfinite(fro_inv) and fro_R * fro_inv * self.rtol < 1.0:
                    certified = True
                    self.sigma_min_kept = 1.0 / fro_inv
                    self._Rinv = Rinv
        if certified:
            self.rank = p
            self.sigma_max = self._power_sigma_max(R, fro_R)
            self.rank_decided_by = "frobenius_bound"
        else:
            self._svd_of_R(R)
        self.rank_tol = self.rtol * self.sigma_max
        self.timings["rank"] = time.perf_counter() - t1
        log.info("%s factor of %s: rank %d (%s), sigma_max %.3g", self.kind, self.shape, self.rank,
                 self.rank_decided_by, self.sigma_max)

    def leading(self, N: int) -> QRFactor:
        """The factor of the first ``N`` columns of ``Phi``, from this one (no new QR).

        For unpivoted QR of a tall ``Phi`` (``kind="qr"``, ``pivoting=False``) the first ``N``
        Householder reflectors and ``R[:N, :N]`` are the QR factorisation of ``Phi[:, :N]``
        ([GVL] 5.2.2), and ``(R^-1)[:N, :N] = (R[:N, :N])^-1``: a width sweep over nested columns
        factors once. The rank of ``Phi[:, :N]`` is decided afresh on ``R[:N, :N]`` (the same
        Frobenius certificate, else an SVD of ``R[:N, :N]``), with the default ``rtol`` of that
        shape unless this factor was given an explicit one.

        Raises
        ------
        InvalidInputError
            For a pivoted or LQ factor, or ``N`` outside ``[1, p]``.
        """
        N = int(N)
        if self.kind != "qr" or self.pivoting:
            raise InvalidInputError("leading() needs an unpivoted QR factor of a tall Phi (pivoting=False, n >= N).")
        if not 1 <= N <= self._p:
            raise InvalidInputError(f"N must be in [1, {self._p}], got {N}.")
        t0 = time.perf_counter()
        f = object.__new__(QRFactor)
        f.shape = (self.shape[0], N)
        f.rtol = self.rtol if self._explicit_rtol else _check_rtol(None, f.shape)
        f._explicit_rtol = self._explicit_rtol
        f.pivoting, f.kind = False, "qr"
        f._m, f._p = self._m, N
        f._qr, f._tau, f._perm = self._qr[:, :N], self._tau[:N], np.arange(N)
        R = self._R[:N, :N]
        f._R = R
        f._U = f._s = f._Vt = f._Rinv = f._Rinv_blocks = None
        f.timings = {}
        fro_R = _fro(R)
        Rinv = self._Rinv_blocks[:N, :N] if self._Rinv_blocks is not None else None
        if fro_R == 0.0:
            f.rank, f.sigma_max, f.sigma_min_kept, f.rank_decided_by, f.rank_tol = 0, 0.0, 0.0, "zero", 0.0
            return f
        if Rinv is not None and fro_R * _fro(Rinv) * f.rtol < 1.0:
            f.rank, f._Rinv, f._Rinv_blocks, f.rank_decided_by = N, Rinv, Rinv, "frobenius_bound"
            f.sigma_min_kept = 1.0 / _fro(Rinv)
            f.sigma_max = self._power_sigma_max(R, fro_R)
        else:
            f._svd_of_R(np.array(R))
        f.rank_tol = f.rtol * f.sigma_max
        f.timings["rank"] = time.perf_counter() - t0
        return f

    @staticmethod
    def _power_sigma_max(R: np.ndarray, upper: float) -> float:
        """||R||_2 by power iteration on R^T R (10 steps; a lower bound), clipped to the bound ||R||_F."""
        c = float(np.max(np.abs(R)))  # work on R / c: no overflow or underflow at any scale of Phi
        if c == 0.0:
            return 0.0
        R = R / c
        upper = upper / c
        x = np.ones(R.shape[1]) / np.sqrt(R.shape[1])
        est = 0.0
        for _ in range(10):
            y = R @ x
            est = float(np.linalg.norm(y))
            z = R.T @ y
            nz = float(np.linalg.norm(z))
            if nz == 0.0:
                break
            x = z / nz
        return c * min(est, upper)

    def _svd_of_R(self, R: np.ndarray) -> None:
        try:
            U, s, Vt = _svd(R, full_matrices=False, lapack_driver="gesdd", check_finite=False)
            drv = "gesdd"
        except np.linalg.LinAlgError:
            U, s, Vt = _svd(R, full_matrices=False, lapack_driver="gesvd", check_finite=False)
            drv = "gesvd"
            log.warning("gesdd did not converge on R; used gesvd")
        self.sigma_max = float(s[0])
        self.rank = int(np.sum(s > self.rtol * s[0]))
        self._U, self._s, self._Vt = U[:, : self.rank], s[: self.rank], Vt[: self.rank]
        self._s_all = s
        self.sigma_min_kept = float(s[self.rank - 1]) if self.rank else 0.0
        self.rank_decided_by = "svd_of_R"
        self._svd_driver = drv

    def singular_values(self) -> np.ndarray:
        """Singular values of ``Phi`` (those of ``R``), descending: shape (min(n, N),).

        Computes an SVD of ``R`` (``p^3`` work) if the rank was certified without one.
        """
        if self.rank_decided_by == "zero":
            return np.zeros(self._p)
        if self._s is None:
            return _svd(self._R, compute_uv=False, check_finite=False)
        return self._s_all.copy()

    def _core(self, C: np.ndarray, transpose: bool) -> np.ndarray:
        """``R^+ C`` (transpose=False) or ``(R^T)^+ C`` (transpose=True), over the kept spectrum."""
        if self._s is None:
            return solve_triangular(self._R, C, lower=False, trans="T" if transpose else "N", check_finite=False)
        if not transpose:  # R^+ = V_r S_r^-1 U_r^T
            return self._Vt.T @ ((self._U.T @ C) / self._s[:, None])
        return self._U @ ((self._Vt @ C) / self._s[:, None])  # (R^T)^+ = U_r S_r^-1 V_r^T

    def _apply_q(self, C: np.ndarray, trans: str) -> np.ndarray:
        lwork = max(1, C.shape[1] * 64)
        out, _, info = lapack.dormqr("L", trans, self._qr, self._tau, C, lwork, overwrite_c=1)
        if info != 0:  # pragma: no cover
            raise InvalidInputError(f"LAPACK dormqr returned info={info}.")
        return out

    def solve(self, B) -> np.ndarray:
        """``Phi^+ B``: the minimum-norm least-squares solution (float64).

        Parameters
        ----------
        B : array_like of shape (n,) or (n, k)

        Returns
        -------
        X : ndarray of shape (N,) or (N, k), float64

        Raises
        ------
        NonFiniteInputError, ShapeMismatchError
        """
        B2, vec = _check_rhs(B, self.shape[0])
        N = self.shape[1]
        k = B2.shape[1]
        p = self._p
        if self.rank == 0 or k == 0:
            X = np.zeros((N, k))
        elif self.kind == "qr":  # Phi P = Q R: Phi^+ B = P R^+ (Q^T B)[:p]
            C = self._apply_q(np.array(B2, order="F", copy=True), "T")
            Z = self._core(C[:p], transpose=False)
            X = np.empty((N, k))
            X[self._perm] = Z
        else:  # Phi^T P = Q R, Phi = P R^T Q^T: Phi^+ B = Q [(R^T)^+ P^T B; 0]
            W = self._core(B2[self._perm], transpose=True)
            C = np.zeros((N, k), order="F")
            C[:p] = W
            X = self._apply_q(C, "N")
        return X[:, 0] if vec else X

    def logdet(self) -> LogDet:
        """``sum_i log sigma_i^2`` over the kept singular values of ``Phi``, with an error estimate.

        On a certified full-rank factor this is ``sum_i log r_ii^2`` (``|det R| = prod sigma_i``); the error
        estimate is first order in the backward error of Householder QR, ``||dPhi||_F <= max(n, N) eps
        ||Phi||_F`` ([H] Thm 19.4 with its dimension constant taken as ``max(n, N)``):
        ``|d logdet| <= 2 ||R^-1||_F ||dPhi||_F`` (``rigorous=False``).
        """
        if self.rank_decided_by == "zero":
            return LogDet(0.0, 0.0, False, "float64", "rank 0: empty product")
        if self._s is not None:
            return self._finish_logdet(self._s, "sum of log sigma_i^2 over the kept singular values of R "
                                                "(SVD of the QR factor); first-order error estimate")
        d = np.abs(np.diag(self._R))
        value = float(2.0 * np.sum(np.log(d)))
        err = 2.0 * (1.0 / self.sigma_min_kept) * max(self.shape) * _EPS * _fro(self._R)
        return LogDet(value, float(err), False, "float64",
                      "sum of log r_ii^2 of Householder R; estimate 2 ||R^-1||_F max(n,N) eps ||R||_F")

    def describe(self) -> dict:
        """JSON-serialisable record: kind, backend, dtype, shape, rank, tolerances, LAPACK routines, timings."""
        d = self._base_record()
        d["pivoting"] = self.pivoting
        d["lapack"] = ("dgeqp3" if self.pivoting else "dgeqrf") + ", dormqr" + (
            ", dtrtri" if self.rank_decided_by == "frobenius_bound" else
            f", {getattr(self, '_svd_driver', 'none')} on R" if self.rank_decided_by == "svd_of_R" else "")
        return d


class SVDFactor(_Rectangular):
    """Thin SVD ``Phi = U diag(s) V^T`` applying the (truncated) pseudo-inverse.

    Use :func:`svd_factor` to build one. Attributes as :class:`QRFactor` (``kind = "svd"``,
    ``rank_decided_by = "svd"``); ``s`` holds every singular value, descending.
    """

    kind = "svd"

    def __init__(self, Phi, *, rtol=None, driver: str = "gesdd", max_dim: int = MAX_LAPACK_DIM):
        t0 = time.perf_counter()
        Phi = _check_matrix(Phi, max_dim)
        self.shape = tuple(int(v) for v in Phi.shape)
        self.rtol = _check_rtol(rtol, self.shape)
        if driver not in ("gesdd", "gesvd"):
            raise InvalidInputError(f"driver must be 'gesdd' or 'gesvd', got {driver!r}.")
        try:
            U, s, Vt = _svd(Phi, full_matrices=False, lapack_driver=driver, check_finite=False)
        except np.linalg.LinAlgError:
            if driver == "gesvd":
                raise
            log.warning("gesdd did not converge; using gesvd")
            driver = "gesvd"
            U, s, Vt = _svd(Phi, full_matrices=False, lapack_driver=driver, check_finite=False)
        self.driver = driver
        self.s = s
        self.sigma_max = float(s[0]) if s.size else 0.0
        self.rank = int(np.sum(s > self.rtol * self.sigma_max)) if self.sigma_max > 0 else 0
        self.rank_tol = self.rtol * self.sigma_max
        self.sigma_min_kept = float(s[self.rank - 1]) if self.rank else 0.0
        self.rank_decided_by = "svd" if self.rank else "zero"
        r = self.rank
        self._U, self._s, self._Vt = U[:, :r], s[:r], Vt[:r]
        self.timings = {"svd": time.perf_counter() - t0}

    def singular_values(self) -> np.ndarray:
        """All singular values of ``Phi``, descending: shape (min(n, N),)."""
        return self.s.copy()

    def solve(self, B) -> np.ndarray:
        """``Phi^+ B = V_r diag(1/s_r) U_r^T B``; shapes and errors as :meth:`QRFactor.solve`."""
        B2, vec = _check_rhs(B, self.shape[0])
        X = self._Vt.T @ ((self._U.T @ B2) / self._s[:, None]) if self.rank else np.zeros((self.shape[1], B2.shape[1]))
        return X[:, 0] if vec else X

    def logdet(self) -> LogDet:
        """``sum_i log s_i^2`` over the kept singular values; first-order error estimate (``rigorous=False``)."""
        return self._finish_logdet(self._s, "sum of log s_i^2 over the kept singular values; estimate "
                                            "sum 2 max(n,N) eps s_max / s_i")

    def describe(self) -> dict:
        """JSON-serialisable record (as :meth:`QRFactor.describe`)."""
        d = self._base_record()
        d["lapack"] = self.driver
        return d


def qr_factor(Phi, *, rtol=None, pivoting: bool = True, max_dim: int = MAX_LAPACK_DIM) -> QRFactor:
    """Householder QR (``n >= N``) or LQ (``n < N``) factor of ``Phi``, rank decided on ``Phi``.

    Parameters
    ----------
    Phi : array_like of shape (n, N)
        Feature matrix; converted to float64, never modified.
    rtol : float, optional
        Relative rank threshold: singular values ``<= rtol * sigma_max`` are dropped
        (default ``max(n, N) * eps``).
    pivoting : bool
        Column pivoting (``dgeqp3``, rank-revealing in practice) or plain Householder QR
        (``dgeqrf``, ~2.5x faster here). The rank decision does not depend on it: full rank is
        certified by ``||R||_F ||R^-1||_F <= 1/rtol``, otherwise by the singular values of ``R``.
    max_dim : int
        Largest dimension of one LAPACK call (see module docstring).

    Returns
    -------
    QRFactor

    Raises
    ------
    NonFiniteInputError
        If ``Phi`` holds NaN or inf.
    ShapeMismatchError
        If ``Phi`` is not 2-D.
    InvalidInputError
        For an empty ``Phi``, a bad ``rtol`` or a dimension above ``max_dim``.

    Examples
    --------
    >>> import numpy as np
    >>> Phi = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> f = qr_factor(Phi)
    >>> f.kind, f.rank
    ('qr', 2)
    >>> bool(np.allclose(f.solve(np.eye(3)), np.linalg.pinv(Phi)))
    True
    """
    return QRFactor(Phi, rtol=rtol, pivoting=pivoting, max_dim=max_dim)


def svd_factor(Phi, *, rtol=None, driver: str = "gesdd", max_dim: int = MAX_LAPACK_DIM) -> SVDFactor:
    """Thin SVD factor of ``Phi``; parameters, errors as :func:`qr_factor` (``driver``: LAPACK routine).

    Examples
    --------
    >>> import numpy as np
    >>> f = svd_factor(np.array([[1.0, 0.0, 0.0], [0.0, 1e-20, 0.0]]))
    >>> f.rank, f.kind
    (1, 'svd')
    """
    return SVDFactor(Phi, rtol=rtol, driver=driver, max_dim=max_dim)

