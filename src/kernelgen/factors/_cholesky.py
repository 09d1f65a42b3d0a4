"""Cholesky factors of a symmetric positive-definite matrix: tiled on SciPy/LAPACK, dense on JAX."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from scipy.linalg import blas, lapack
from scipy.sparse.linalg import LinearOperator, onenormest

from .._jax import enable_x64
from ..errors import InvalidInputError, NotPositiveDefiniteError, ShapeMismatchError
from ._base import LogDet
from ._tiled import LowerPanels, cholesky_solve_panels, tiled_cholesky

log = logging.getLogger(__name__)

__all__ = ["CholeskyFactor", "JaxCholeskyFactor"]


def _scaled(solve_fn, B):
    """Apply a (possibly float32) solve to float64 B, scaled per column so float32 cannot under/overflow."""
    B = np.asarray(B, dtype=np.float64)
    B2 = B.reshape(B.shape[0], -1)
    s = np.max(np.abs(B2), axis=0)
    s[~(s > 0)] = 1.0
    X = np.asarray(solve_fn(B2 / s), dtype=np.float64) * s
    return X.reshape(B.shape)


def _check_anorm(anorm) -> float:
    anorm = float(anorm)
    if not (np.isfinite(anorm) and anorm >= 0):
        raise InvalidInputError(f"anorm must be a finite number >= 0 (||A||_1), got {anorm!r}.")
    return anorm


def rcond_by_solves(solve, n: int, anorm) -> float:
    """``1 / (anorm * est(||A^-1||_1))`` with ``A^-1`` applied by ``solve`` (Higham & Tisseur's block 1-norm
    estimator, ``scipy.sparse.linalg.onenormest``); 0 for ``anorm = 0``. Shared by the in-RAM and disk factors.

    Raises
    ------
    InvalidInputError
        ``anorm`` negative or not finite.
    """
    anorm = _check_anorm(anorm)
    if anorm == 0.0:
        return 0.0
    op = LinearOperator((n, n), matvec=lambda v: solve(v.reshape(n, -1)), matmat=solve,
                        rmatvec=lambda v: solve(v.reshape(n, -1)), rmatmat=solve, dtype=np.float64)
    inv = float(onenormest(op))
    return 1.0 / (anorm * inv) if inv > 0 else 0.0


class _CholeskyLogDet:
    """Shared log-determinant logic: 2 sum log diag(L), with its precision."""

    spectrum_estimate: tuple | None = None

    def _logdet_from_diag(self, diag: np.ndarray) -> LogDet:
        diag = np.asarray(diag, dtype=np.float64)
        value = 2.0 * float(np.sum(np.log(diag)))
        n = diag.size
        if self.dtype == np.float64 and self.spectrum_estimate is None:
            return LogDet(value, None, False, "float64",
                          "2 sum log diag(L) of a float64 Cholesky factor (backward stable: the exact "
                          "log-determinant of K + E with |E| <= gamma_{n+1} |L||L^T|, Higham Thm 10.3)")
        if self.spectrum_estimate is None:
            return LogDet(value, None, False, self.dtype.name,
                          f"2 sum log diag(L) of a {self.dtype.name} factor: NOT the float64 log-determinant "
                          "(at 60k it can be off by hundreds of nats); no spectrum estimate available -- "
                          "refactor in float64 for an exact value")
        lo, hi = self.spectrum_estimate
        e = max(abs(math.log(lo)), abs(math.log(hi))) if lo > 0 and hi > 0 else float("inf")
        return LogDet(value, n * e, False, self.dtype.name,
                      f"2 sum log diag(L) of a {self.dtype.name} factor; |log det K - value| <= n max|log mu| "
                      f"with the eigenvalues mu of (LL^T)^-1 K estimated in [{lo:.4g}, {hi:.4g}] from the Ritz "
                      "values of the float64 CG (an estimate: Ritz values lie inside the spectrum)")


class CholeskyFactor(_CholeskyLogDet):
    """A tiled Cholesky factor L L^T = A on SciPy/LAPACK, every call bounded (see ``_tiled``).

    Build with :meth:`factor` (copies the lower triangle of a dense matrix) or
    :meth:`from_panels` (factors tiled storage in place). Picklable (the panels are pickled as
    arrays; pickling a factor of order n copies its n^2/2 entries).

    Attributes
    ----------
    panels : LowerPanels
        L, in the factor's dtype.
    kind, backend, dtype, shape, rank, rank_tol
        See :class:`kernelgen.factors.Factor`; rank = n, rank_tol = None.
    seconds : float
        Time the factorisation took.
    spectrum_estimate : (float, float) or None
        Estimated extreme eigenvalues of (L L^T)^-1 A, set by the float64 iteration that uses
        this factor as its preconditioner (feeds :meth:`logdet`'s error estimate).
    """

    kind = "cholesky"
    backend = "scipy"

    def __init__(self, panels: LowerPanels, *, seconds: float = 0.0, stats: dict | None = None):
        self.panels = panels
        self.dtype = panels.dtype
        self.shape = (panels.n, panels.n)
        self.rank = panels.n
        self.rank_tol = None
        self.seconds = float(seconds)
        self.stats = dict(stats or {})
        self.spectrum_estimate = None
        self.leading_of = None  # the order of the factor this one is the leading block of (see leading)

    @classmethod
    def from_panels(cls, panels: LowerPanels, *, verbose: bool = False, desc: str | None = None) -> "CholeskyFactor":
        """Factor tiled storage in place (raises NotPositiveDefiniteError at the first bad pivot)."""
        t0 = time.perf_counter()
        stats: dict = {}
        tiled_cholesky(panels, verbose=verbose, desc=desc or f"cholesky ({panels.dtype.name})", stats=stats)
        return cls(panels, seconds=time.perf_counter() - t0, stats=stats)

    @classmethod
    def factor(cls, A, *, dtype=np.float64, tile: int = 2048, verbose: bool = False) -> "CholeskyFactor":
        """Cholesky factor of a dense symmetric positive-definite A (lower triangle read).

        Parameters
        ----------
        A : ndarray of shape (n, n)
        dtype : float32 or float64
            Precision of the factor.
        tile : int

        Raises
        ------
        ShapeMismatchError, NotPositiveDefiniteError
        """
        A = np.asarray(A)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ShapeMismatchError(f"a Cholesky factor needs a square matrix, got shape {A.shape}.")
        return cls.from_panels(LowerPanels.from_dense(A, tile, dtype), verbose=verbose)

    def solve(self, B) -> np.ndarray:
        """(L L^T)^-1 B, computed in the factor's dtype, returned float64 (column-scaled)."""
        B = np.asarray(B)
        if B.shape[0] != self.shape[0]:
            raise ShapeMismatchError(f"B has {B.shape[0]} rows, the factor has order {self.shape[0]}.")
        return _scaled(lambda R: cholesky_solve_panels(self.panels, R), B)

    def leading(self, m: int) -> "CholeskyFactor":
        """The Cholesky factor of the leading ``m x m`` block of A, from this factor's panels (no copy).

        ``A[:m, :m] = L[:m, :m] L[:m, :m]^T``: the leading block of the factor is the factor of the
        leading block (Golub & Van Loan, Matrix Computations, 4th ed., §4.2.2), so one factor of the
        largest system preconditions every prefix (``kernelgen.learning_curve``, ``subsets="nested"``).
        The new factor reads :meth:`LowerPanels.leading` views of these panels (read-only; they keep
        this factor's storage alive); ``m`` need not be a multiple of the tile.

        Parameters
        ----------
        m : int
            ``1 <= m <= n``.

        Returns
        -------
        CholeskyFactor
            Order ``m``, this factor's dtype and tile; ``seconds`` 0 (nothing was factored),
            ``leading_of`` = n (in :meth:`describe`); its own ``spectrum_estimate``.

        Raises
        ------
        InvalidInputError
            ``m`` is not an integer in ``[1, n]``.

        Examples
        --------
        >>> import numpy as np
        >>> A = np.array([[4.0, 2.0, 0.0], [2.0, 5.0, 1.0], [0.0, 1.0, 3.0]])
        >>> f = CholeskyFactor.factor(A, tile=2).leading(2)
        >>> np.allclose(f.solve(np.eye(2)) @ A[:2, :2], np.eye(2)), f.describe()["leading_of"]
        (True, 3)
        """
        f = CholeskyFactor(self.panels.leading(m))
        f.leading_of = self.shape[0]
        return f

    def solve_triangular(self, B, *, trans: bool = False) -> np.ndarray:
        """``L^-1 B`` (``trans=False``) or ``L^-T B`` (``trans=True``): one half of :meth:`solve`.

        Tile by tile with bounded calls (``trsm`` on diagonal tiles, GEMM on panels), in the factor's
        dtype; with ``M = L^-1 Phi`` this is the split preconditioner of CGLS on ``Phi`` when
        ``A = Phi Phi^T`` (Björck, Numerical Methods for Least Squares Problems, SIAM 1996, §7.4).

        Parameters
        ----------
        B : array_like of shape (n,) or (n, k)
        trans : bool

        Returns
        -------
        ndarray of the shape of ``B``, float64

        Raises
        ------
        ShapeMismatchError
            ``B`` does not have n rows.
        """
        B = np.asarray(B)
        if B.shape[0] != self.shape[0]:
            raise ShapeMismatchError(f"B has {B.shape[0]} rows, the factor has order {self.shape[0]}.")
        return _scaled(lambda R: _half_solve(self.panels, R, trans), B)

    def rcond(self, anorm: float) -> float:
        """Reciprocal 1-norm condition estimate ``1 / (||A||_1 est(||A^-1||_1))`` of ``A = L L^T``.

        One tile: LAPACK ``?pocon`` on the factor (Hager-Higham estimator, Higham, Accuracy and Stability of
        Numerical Algorithms, 2nd ed., 2002, Alg. 15.4). Several tiles: the same estimator through
        :meth:`solve` (``scipy.sparse.linalg.onenormest``, Higham & Tisseur 2000). Both give a lower bound of
        ``||A^-1||_1`` in practice, so the returned value tends to over-estimate ``1 / kappa_1(A)``.

        Parameters
        ----------
        anorm : float
            ``||A||_1`` of the matrix that was factored (the factor does not keep ``A``).

        Returns
        -------
        float
            In ``[0, 1]``; 0 for ``anorm = 0``.

        Raises
        ------
        InvalidInputError
            ``anorm`` negative or not finite.
        """
        if self.panels.n_tiles == 1 and _check_anorm(anorm) > 0.0:
            pocon = lapack.spocon if self.dtype == np.float32 else lapack.dpocon
            rc, info = pocon(np.asfortranarray(self.panels.tile_view(0, 0)), float(anorm), uplo="L")
            if info != 0:  # pragma: no cover - LAPACK argument errors only
                raise InvalidInputError(f"LAPACK pocon returned info={info}.")
            return float(rc)
        return rcond_by_solves(self.solve, self.shape[0], anorm)

    def logdet(self) -> LogDet:
        """log det A from the factor's diagonal, with its precision (see :class:`LogDet`)."""
        return self._logdet_from_diag(self.panels.diagonal())

    def describe(self) -> dict:
        out = {"kind": self.kind, "backend": self.backend, "storage": "memory", "dtype": self.dtype.name, "shape": list(self.shape),
               "rank": self.rank, "tile": self.panels.tile, "seconds": self.seconds,
               "spectrum_estimate": None if self.spectrum_estimate is None else list(self.spectrum_estimate)}
        if getattr(self, "leading_of", None) is not None:  # (a factor pickled before the attribute has none)
            out["leading_of"] = int(self.leading_of)
        return out

    # -- persistence (used by KernelInterpolant.save/load)
    def to_arrays(self) -> dict:
        return {f"factor_panel_{i}": np.ascontiguousarray(p.T) for i, p in enumerate(self.panels.panels)}

    @classmethod
    def from_arrays(cls, arrays: dict, n: int, tile: int, dtype) -> "CholeskyFactor":
        P = LowerPanels(n, tile, dtype)
        for i in range(P.n_tiles):
            src = arrays[f"factor_panel_{i}"]
            if src.shape != P.panels[i].T.shape or src.dtype != P.dtype:
                raise InvalidInputError(f"stored factor panel {i} has shape {src.shape}/{src.dtype}, "
                                        f"expected {P.panels[i].T.shape}/{P.dtype}.")
            P.panels[i].T[...] = src
        return cls(P)


def _half_solve(L: LowerPanels, B: np.ndarray, trans: bool) -> np.ndarray:
    """``L^-1 B`` or ``L^-T B`` for a factor in tiled storage (the two sweeps of ``cholesky_solve_panels``)."""
    trsm = blas.strsm if L.dtype == np.float32 else blas.dtrsm
    b, T = L.bounds, L.n_tiles
    Y = np.asfortranarray(B, dtype=L.dtype).copy(order="F")
    if not trans:  # forward: L y = B, by panel rows
        for i in range(T):
            r0, r1 = b[i], b[i + 1]
            if r0 > 0:
                Y[r0:r1] -= L.panels[i][:, :r0] @ Y[:r0]
            Y[r0:r1] = trsm(1.0, L.tile_view(i, i), np.asfortranarray(Y[r0:r1]), side=0, lower=1, trans_a=0,
                            overwrite_b=1)
        return Y
    for i in range(T - 1, -1, -1):  # backward: L^T x = y
        r0, r1 = b[i], b[i + 1]
        Y[r0:r1] = trsm(1.0, L.tile_view(i, i), np.asfortranarray(Y[r0:r1]), side=0, lower=1, trans_a=1,
                        overwrite_b=1)
        if r0 > 0:
            Y[:r0] -= L.panels[i][:, :r0].T @ Y[r0:r1]
    return Y


class JaxCholeskyFactor(_CholeskyLogDet):
    """A dense Cholesky factor on a JAX device (``jnp.linalg.cholesky``), NaN-checked.

    JAX returns NaN instead of raising on a matrix that is not positive definite (jax issues
    775, 10825, 15769): the diagonal is checked and the first failing pivot is located exactly
    (by a SciPy ``potrf`` on the host, paid only when the factor failed).
    """

    kind = "cholesky"
    backend = "jax"

    def __init__(self, L, *, seconds: float = 0.0):
        self.L = L
        self.dtype = np.dtype(L.dtype)
        n = int(L.shape[0])
        self.shape = (n, n)
        self.rank = n
        self.rank_tol = None
        self.seconds = float(seconds)
        self.spectrum_estimate = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["L"] = np.asarray(self.L)  # pickled as a host array, put back on the default device on load
        return state

    def __setstate__(self, state):
        import jax.numpy as jnp

        self.__dict__.update(state)
        with enable_x64():
            self.L = jnp.asarray(state["L"])

    @classmethod
    def factor(cls, A) -> "JaxCholeskyFactor":
        """Factor a jax.Array (or array) A; raises NotPositiveDefiniteError with the first failing pivot."""
        import jax.numpy as jnp

        t0 = time.perf_counter()
        with enable_x64():
            Aj = jnp.asarray(A)
            L = jnp.linalg.cholesky(Aj)
            diag = np.asarray(jnp.diagonal(L))
        bad = np.flatnonzero(~np.isfinite(diag) | (diag <= 0))
        if bad.size:
            idx = _first_bad_pivot(np.asarray(Aj), int(bad[0]))
            raise NotPositiveDefiniteError(
                f"JAX Cholesky ({np.dtype(Aj.dtype).name}) failed at pivot {idx} of {diag.size} (JAX returns NaN "
                "instead of raising): the matrix is not positive definite to working precision. Remedies: "
                "solver='min_norm', options with dtype='float64', or an explicit ridge.", index=idx)
        return cls(L, seconds=time.perf_counter() - t0)

    def solve(self, B) -> np.ndarray:
        import jax.numpy as jnp
        from jax.scipy.linalg import cho_solve

        B = np.asarray(B)
        if B.shape[0] != self.shape[0]:
            raise ShapeMismatchError(f"B has {B.shape[0]} rows, the factor has order {self.shape[0]}.")
        with enable_x64():
            return _scaled(lambda R: np.asarray(cho_solve((self.L, True), jnp.asarray(R, dtype=self.L.dtype))), B)

    def logdet(self) -> LogDet:
        import jax.numpy as jnp

        with enable_x64():
            return self._logdet_from_diag(np.asarray(jnp.diagonal(self.L), dtype=np.float64))

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "dtype": self.dtype.name, "shape": list(self.shape),
                "rank": self.rank, "seconds": self.seconds,
                "spectrum_estimate": None if self.spectrum_estimate is None else list(self.spectrum_estimate)}


def _first_bad_pivot(A: np.ndarray, jax_index: int) -> int:
    """The first failing pivot as LAPACK defines it, located on the host by the bounded tiled Cholesky.

    JAX's blocked Cholesky propagates NaN through whole blocks, so the first NaN on its diagonal
    can precede the first failing pivot (e.g. index 0 for [[1, 2, 0], [2, 1, 0], [0, 0, 1]], where
    the failing pivot is 1). Paid only when the factor failed.
    """
    P = LowerPanels.from_dense(A, 2048, A.dtype if A.dtype in (np.float32, np.float64) else np.float64)
    try:
        tiled_cholesky(P)
    except NotPositiveDefiniteError as exc:
        return int(exc.index)
    log.warning("JAX Cholesky failed but the host factor did not; reporting JAX's first NaN index %d", jax_index)
    return jax_index
