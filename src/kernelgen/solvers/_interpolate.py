"""Exact kernel interpolation K alpha = Y (private implementation of kernel_interpolate)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.linalg as sla

from .._jax import accelerator_available
from .._validation import as_float_array, check_same_rows
from ..errors import (
    ConvergenceError,
    InvalidInputError,
    MemoryBudgetError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
)
from ..kernels import kernel_matrix, resolve_kernel_params
from ._planner import MemoryPlan, plan_kernel_solve
from ._refine import refine
from ._tiled import (
    DEFAULT_TILE,
    LowerPanels,
    cholesky_solve_panels,
    fill_kernel_panels,
    kernel_matvec,
    symmetric_kernel_matvec,
    symmetric_matvec_panels,
    tiled_cholesky,
)

log = logging.getLogger(__name__)

__all__ = ["KernelInterpolant", "kernel_interpolate"]

SOLVERS = ("auto", "cholesky", "min_norm")
BACKENDS = ("auto", "scipy", "jax")


@dataclass
class KernelInterpolant:
    """The exact kernel interpolant returned by :func:`kernel_interpolate`.

    Attributes
    ----------
    alpha : ndarray of shape (n,) or (n, n_targets)
        Coefficients, float64.
    relative_residual : float
        ||Y - (K + ridge I) alpha||_F / ||Y||_F, computed in float64 with the float64 kernel.
    alpha_K_alpha : ndarray of shape (n_targets,)
        alpha_jᵀ K alpha_j per target (squared RKHS norm of each interpolating function).
    rkhs_norm : float
        sqrt(sum_j alpha_jᵀ K alpha_j).
    ridge : float
        The ridge added to the diagonal (0 unless asked). ``jitter`` is always 0: kernelgen never adds one.
    solver, backend : str
        What actually ran.
    factor_dtype : str
        dtype of the factor (float32 = mixed precision).
    residual_mode : str
        How the float64 residual was computed ("stored", "on-the-fly", "precomputed", "eigh").
    rank, rank_tol : int, float or None
        Numerical rank and its threshold (``min_norm`` solver); rank = n for Cholesky.
    condition_number : float or None
        ``min_norm``: largest / smallest kept eigenvalue of K + ridge I (None for Cholesky).
    history : list of dict
        Each float64 residual reached.
    fitted : ndarray of shape (n, n_targets)
        K alpha on the training points, from the final float64 product (train predictions).
    timings : dict
        Seconds per phase.
    plan : MemoryPlan or None
    """

    alpha: np.ndarray
    kernel_params: dict
    relative_residual: float
    alpha_K_alpha: np.ndarray
    rkhs_norm: float
    ridge: float
    solver: str
    backend: str
    factor_dtype: str
    residual_mode: str
    rank: int | None = None
    rank_tol: float | None = None
    condition_number: float | None = None
    history: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    n_matvecs: int = 0
    plan: MemoryPlan | None = None
    jitter: float = 0.0
    fitted: np.ndarray | None = field(default=None, repr=False)
    residual_matrix: np.ndarray | None = field(default=None, repr=False)
    X_train: np.ndarray | None = field(default=None, repr=False)
    _solve_fn: Callable | None = field(default=None, repr=False)
    _squeeze: bool = field(default=False, repr=False)

    @property
    def n_train(self) -> int:
        return self.alpha.shape[0]

    def predict(self, X_new, *, verbose: bool = False) -> np.ndarray:
        """Predictions k(X_new, X_train) @ alpha in float64, computed blockwise.

        Parameters
        ----------
        X_new : array of shape (m, n_features), or for ``kernel="precomputed"`` the
            kernel block K(X_new, X_train) of shape (m, n_train).

        Returns
        -------
        ndarray of shape (m,) or (m, n_targets)
        """
        t0 = time.perf_counter()
        A = self.alpha.reshape(self.n_train, -1)
        if self.kernel_params["kernel"] == "precomputed":
            Kn = as_float_array(X_new, "K_new", ndim=(2,), dtype=np.float64)
            if Kn.shape[1] != self.n_train:
                raise ShapeMismatchError(f"precomputed K_new must have {self.n_train} columns, got {Kn.shape[1]}.")
            P = Kn @ A
        else:
            Xn = as_float_array(X_new, "X_new", ndim=(2,), dtype=np.float64)
            if Xn.shape[1] != self.X_train.shape[1]:
                raise ShapeMismatchError(f"X_new has {Xn.shape[1]} features, training data had {self.X_train.shape[1]}.")
            if self.backend == "jax":
                from ._jax_backend import predict_jax

                P = predict_jax(Xn, self.X_train, A, self.kernel_params)
            else:
                P = kernel_matvec(Xn, self.X_train, A, self.kernel_params, verbose=verbose)
        self.timings["predict"] = time.perf_counter() - t0
        return P[:, 0] if self._squeeze else P

    def solve(self, Y_new, *, tol: float | None = None) -> "KernelInterpolant":
        """Interpolate new targets with the same factor (needs ``keep_factor=True``)."""
        if self._solve_fn is None:
            raise InvalidInputError("this interpolant did not keep its factor; refit with keep_factor=True.")
        return self._solve_fn(Y_new, tol)


def _prepare_targets(Y, n):
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    if Y.shape[0] != n:
        raise ShapeMismatchError(f"X has {n} rows but Y has {Y.shape[0]}; they must match.")
    return Y.reshape(n, -1), Y.ndim == 1


def kernel_interpolate(
    X,
    Y,
    *,
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    degree: int | None = None,
    coef0: float | None = None,
    ridge: float = 0.0,
    solver: str = "auto",
    backend: str = "auto",
    dtype=None,
    overwrite_kernel: bool = False,
    tol: float = 1e-10,
    rcond: float | None = None,
    refinement: str = "cg",
    max_iter: int = 30,
    memory_budget: int | None = None,
    tile: int = DEFAULT_TILE,
    store_kernel: bool | None = None,
    keep_factor: bool = False,
    verbose: bool = False,
) -> KernelInterpolant:
    """Solve (K + ridge I) alpha = Y exactly and return the interpolant.

    With ``ridge=0`` (the default) this is the minimum-RKHS-norm interpolant of the
    data, the limit of (kernel) gradient descent from zero (Zhang et al. 2017, eq. 3).

    Parameters
    ----------
    X : array of shape (n, d), or (n, n) when ``kernel="precomputed"``
    Y : array of shape (n,) or (n, n_targets)
    kernel : {"gaussian", "laplace", "linear", "polynomial", "precomputed"}
    bandwidth : float, optional
        Kernel scale s; None uses :func:`kernelgen.kernels.default_bandwidth`.
    degree, coef0 : polynomial kernel parameters.
    ridge : float
        Added to the diagonal *only* when asked (reported on the result).
    solver : {"auto", "cholesky", "min_norm"}
        ``"cholesky"`` for positive-definite K (raises :class:`NotPositiveDefiniteError`
        at the first failing pivot); ``"min_norm"`` computes alpha = K⁺Y by a
        rank-revealing eigendecomposition (exact minimum-norm interpolant of a singular
        K; the numerical rank is reported); ``"auto"`` picks Cholesky and logs it.
    backend : {"auto", "scipy", "jax"}
        ``"auto"`` picks JAX when an accelerator is visible, else SciPy/LAPACK.
    dtype : None, "float32", "float64"
        Dtype of the *factor*. None: float64 for n <= 4096, else float32 (mixed
        precision). The residual is always float64 and iteration continues to ``tol``.
    overwrite_kernel : bool
        With ``kernel="precomputed"``, allow the solver to use the caller's K as
        workspace (``min_norm``: eigendecompose it in place; K is destroyed). Otherwise
        the caller's K is never modified.
    tol : float
        Target float64 relative residual ||Y - (K + ridge I)alpha||_F / ||Y||_F
        (Cholesky path). Default 1e-10 (the project's definition of "exact").
    rcond : float, optional
        ``min_norm``: eigenvalues below ``rcond * max eigenvalue`` count as zero
        (default n * eps).
    refinement : {"cg", "richardson"}
        Float64 iteration preconditioned by the factor.
    max_iter : int
        Maximum float64 kernel passes.
    memory_budget : int, optional
        Bytes the solve may use (default 85% of available memory).
    tile : int
        Tile size of the tiled factor.
    store_kernel : bool, optional
        Force or forbid keeping the float64 kernel triangle for the residual (planner decides).
    keep_factor : bool
        Keep the factor so that :meth:`KernelInterpolant.solve` can solve new targets.
    verbose : bool
        Progress bars.

    Returns
    -------
    KernelInterpolant

    Raises
    ------
    NonFiniteInputError, ShapeMismatchError, InvalidInputError
    NotPositiveDefiniteError
        Cholesky met a non-positive pivot (index on the exception).
    MemoryBudgetError
        The planner refused before allocating (bytes needed and available in the message).
    ConvergenceError
        The float64 iteration could not reach ``tol``.

    References
    ----------
    Zhang, Bengio, Hardt, Recht, Vinyals. Understanding deep learning requires
    rethinking generalization. ICLR 2017, §5, eq. (3).
    Higham. Accuracy and Stability of Numerical Algorithms (2nd ed.), ch. 12
    (iterative refinement in mixed precision).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    >>> fit = kernel_interpolate(X, y, kernel="gaussian", bandwidth=2.0)
    >>> bool(fit.relative_residual <= 1e-10), fit.solver, fit.ridge
    (True, 'cholesky', 0.0)
    """
    t_start = time.perf_counter()
    if solver not in SOLVERS:
        raise InvalidInputError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    ridge = float(ridge)
    if not np.isfinite(ridge) or ridge < 0:
        raise InvalidInputError(f"ridge must be a finite number >= 0, got {ridge}")
    if not (tol > 0):
        raise InvalidInputError(f"tol must be positive, got {tol}")
    if dtype is not None and np.dtype(dtype).type not in (np.float32, np.float64):
        raise InvalidInputError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    precomputed = kernel == "precomputed"
    if precomputed:
        K = as_float_array(X, "K", ndim=(2,))
        if K.shape[0] != K.shape[1]:
            raise ShapeMismatchError(f"a precomputed kernel must be square, got shape {K.shape}.")
        _check_symmetric(K)
        n, d = K.shape[0], 0
        params = {"kernel": "precomputed"}
        X64 = None
    else:
        X64 = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        n, d = X64.shape
        params = resolve_kernel_params(kernel, bandwidth, X64, degree=degree, coef0=coef0)
    Y2, squeeze = _prepare_targets(Y, n)
    if solver == "auto":
        solver = "cholesky"
        log.info("solver='auto' chose 'cholesky' (raises NotPositiveDefiniteError if K is not positive definite)")
    if backend == "auto":
        backend = "jax" if accelerator_available() else "scipy"
        log.info("backend='auto' chose %r", backend)

    common = dict(params=params, ridge=ridge, tol=tol, max_iter=max_iter, refinement=refinement,
                  verbose=verbose, dtype=dtype, rcond=rcond, keep_factor=keep_factor)
    if backend == "jax":
        from ._jax_backend import solve_jax

        fit = solve_jax(K if precomputed else X64, Y2, precomputed=precomputed, solver=solver,
                        memory_budget=memory_budget, **common)
    elif solver == "min_norm":
        fit = _solve_min_norm_scipy(K if precomputed else X64, Y2, precomputed=precomputed,
                                    overwrite_kernel=overwrite_kernel, memory_budget=memory_budget, **common)
    else:
        fit = _solve_cholesky_scipy(K if precomputed else X64, Y2, precomputed=precomputed, n=n, d=d,
                                    memory_budget=memory_budget, tile=tile, store_kernel=store_kernel, **common)
    fit.X_train = X64
    fit._squeeze = squeeze
    if fit.fitted is None:
        fit.fitted = Y2 - fit.residual_matrix - ridge * fit.alpha
    if squeeze:
        fit.fitted = fit.fitted[:, 0]
    if squeeze:
        fit.alpha = fit.alpha[:, 0]
    fit.timings["total"] = time.perf_counter() - t_start
    log.info("kernel_interpolate: n=%d solver=%s backend=%s factor=%s residual %.3e in %.1f s",
             n, fit.solver, fit.backend, fit.factor_dtype, fit.relative_residual, fit.timings["total"])
    return fit


def _check_symmetric(K, rtol=1e-10):
    """Refuse a precomputed kernel that is not symmetric (checked in row blocks)."""
    n = K.shape[0]
    scale = float(np.max(np.abs(np.diagonal(K)))) or 1.0
    worst = 0.0
    for r0 in range(0, n, 1024):
        r1 = min(n, r0 + 1024)
        worst = max(worst, float(np.max(np.abs(K[r0:r1, :] - K[:, r0:r1].T))))
    tol = rtol * scale if K.dtype == np.float64 else 1e-5 * scale
    if worst > tol:
        raise InvalidInputError(
            f"the precomputed kernel is not symmetric (max |K - Kᵀ| = {worst:.3g}); pass (K + K.T) / 2 "
            "if the asymmetry is rounding.")


def _finish(alpha, R, Y2, ridge):
    """alpha_jᵀ K alpha_j from the verified product: K alpha = Y - R - ridge alpha."""
    KA = Y2 - R - ridge * alpha
    aka = np.einsum("ij,ij->j", alpha, KA)
    return aka, float(np.sqrt(max(0.0, aka.sum())))


def _scaled_precond(solve_fn):
    """Apply a low-precision solve to a float64 residual, scaled per column to avoid underflow."""
    def precond(R):
        s = np.max(np.abs(R), axis=0)
        s[s == 0] = 1.0
        return np.asarray(solve_fn(R / s), dtype=np.float64) * s
    return precond


def _solve_cholesky_scipy(A, Y2, *, precomputed, n, d, params, ridge, tol, max_iter, refinement,
                          verbose, dtype, rcond, keep_factor, memory_budget, tile, store_kernel):
    timings = {}
    plan = plan_kernel_solve(n, d, Y2.shape[1], solver="cholesky", dtype=dtype, precomputed=precomputed,
                             memory_budget=memory_budget, tile=tile, store_kernel=store_kernel)
    fdt = plan.factor_dtype
    t0 = time.perf_counter()
    K64 = None
    if precomputed:
        Kdense = A

        def matvec(V):
            return Kdense @ V + ridge * V
    elif plan.residual == "stored":
        K64 = LowerPanels(n, plan.tile, np.float64)
        fill_kernel_panels(K64, A, params, verbose=verbose, desc="kernel (float64)")

        def matvec(V):
            return symmetric_matvec_panels(K64, V) + ridge * V
    else:
        t_mv = plan.tile

        def matvec(V):
            return symmetric_kernel_matvec(A, V, params, tile=t_mv, verbose=verbose,
                                           desc="float64 K @ v") + ridge * V

    def build_factor_input(fdt):
        if precomputed:
            F = LowerPanels.from_dense(A, plan.tile, fdt)
        elif K64 is not None:
            F = LowerPanels(n, plan.tile, fdt)
            for p_src, p_dst in zip(K64.panels, F.panels):
                p_dst[...] = p_src
        else:
            F = LowerPanels(n, plan.tile, fdt)
            fill_kernel_panels(F, A.astype(fdt, copy=False), params, verbose=verbose, desc=f"kernel ({fdt.name})")
        if ridge:
            F.add_to_diagonal(ridge)
        return F

    F = build_factor_input(fdt)
    timings["kernel"] = time.perf_counter() - t0

    def factor_and_refine(F, fdt):
        t0 = time.perf_counter()
        tiled_cholesky(F, verbose=verbose, desc=f"cholesky ({fdt.name})")
        timings["factor"] = time.perf_counter() - t0
        precond = _scaled_precond(lambda R: cholesky_solve_panels(F, R))
        t0 = time.perf_counter()
        res = refine(matvec, precond, Y2, tol=tol, max_iter=max_iter, method=refinement)
        timings["refine"] = time.perf_counter() - t0
        return precond, res

    try:
        precond, res = factor_and_refine(F, fdt)
    except (NotPositiveDefiniteError, ConvergenceError) as exc:
        if dtype is not None or fdt == np.float64:
            raise
        # dtype policy (dtype=None): when the mixed-precision route fails on a kernel too
        # ill-conditioned for float32 (factor breakdown or no convergence), it is redone with a
        # float64 factor if memory allows -- logged, and reported in fit.factor_dtype.
        log.warning("mixed precision failed (%s: %s); dtype=None policy: refactoring in float64",
                    type(exc).__name__, str(exc).split(":")[0])
        del F
        try:
            plan = plan_kernel_solve(n, d, Y2.shape[1], solver="cholesky", dtype="float64",
                                     precomputed=precomputed, memory_budget=memory_budget, tile=tile,
                                     store_kernel=None if precomputed else (plan.residual == "stored"))
        except MemoryBudgetError as mem:
            raise type(exc)(f"{exc} The dtype=None fallback to a float64 factor was not possible: {mem}",
                            *([exc.index] if isinstance(exc, NotPositiveDefiniteError) else [])) from exc
        fdt = plan.factor_dtype
        t0 = time.perf_counter()
        F = build_factor_input(fdt)
        timings["kernel"] += time.perf_counter() - t0
        precond, res = factor_and_refine(F, fdt)
    aka, norm = _finish(res.alpha, res.residual, Y2, ridge)

    fit = KernelInterpolant(
        alpha=res.alpha, kernel_params=params, relative_residual=res.relative_residual, alpha_K_alpha=aka,
        rkhs_norm=norm, ridge=ridge, solver="cholesky", backend="scipy", factor_dtype=fdt.name,
        residual_mode=plan.residual, rank=n, rank_tol=None, history=res.history, timings=timings,
        n_matvecs=res.n_matvecs, plan=plan, residual_matrix=res.residual)
    if keep_factor:
        def solve_new(Y_new, tol_new):
            Yn, sq = _prepare_targets(Y_new, n)
            r = refine(matvec, precond, Yn, tol=tol_new or tol, max_iter=max_iter, method=refinement)
            a, nm = _finish(r.alpha, r.residual, Yn, ridge)
            out = KernelInterpolant(
                alpha=r.alpha[:, 0] if sq else r.alpha, kernel_params=params,
                relative_residual=r.relative_residual, alpha_K_alpha=a, rkhs_norm=nm, ridge=ridge,
                solver="cholesky", backend="scipy", factor_dtype=fdt.name, residual_mode=plan.residual,
                rank=n, history=r.history, n_matvecs=r.n_matvecs, plan=plan, X_train=fit.X_train,
                residual_matrix=r.residual, fitted=(Yn - r.residual - ridge * r.alpha)[:, 0] if sq else Yn - r.residual - ridge * r.alpha,
                _solve_fn=solve_new, _squeeze=sq)
            return out
        fit._solve_fn = solve_new
    return fit


def _solve_min_norm_scipy(A, Y2, *, precomputed, overwrite_kernel, params, ridge, tol, max_iter, refinement,
                          verbose, dtype, rcond, keep_factor, memory_budget):
    n = A.shape[0]
    plan = plan_kernel_solve(n, 0 if precomputed else A.shape[1], Y2.shape[1], solver="min_norm",
                             precomputed=precomputed, memory_budget=memory_budget)
    timings = {}
    t0 = time.perf_counter()
    if precomputed:
        K = np.asarray(A, dtype=np.float64)
    else:
        K = kernel_matrix(A, kernel=params["kernel"], bandwidth=params.get("bandwidth"),
                          degree=params.get("degree"), coef0=params.get("coef0"), dtype=np.float64)
    timings["kernel"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    in_place = (not precomputed) or (overwrite_kernel and K is A)
    work = K if in_place else K.copy()
    if ridge:
        work[np.diag_indices(n)] += ridge
    w, V = sla.eigh(work, overwrite_a=True, check_finite=False, driver="evd")
    del work
    timings["factor"] = time.perf_counter() - t0
    fit = _min_norm_from_eigh(w, V, Y2, K=None if in_place else K, params=params, ridge=ridge, rcond=rcond,
                              tol=tol)
    fit.timings.update(timings)
    fit.plan = plan
    if keep_factor:
        fit._solve_fn = lambda Y_new, _tol: _min_norm_from_eigh(
            w, V, _prepare_targets(Y_new, n)[0], K=None if in_place else K, params=params, ridge=ridge, rcond=rcond,
            tol=tol)
    return fit


def _min_norm_from_eigh(w, V, Y2, *, K, params, ridge, rcond, backend="scipy", tol=1e-10, max_iter=5):
    """alpha = (K + ridge)^+ Y from an eigendecomposition, with rank and residual."""
    n = w.shape[0]
    wmax = float(np.max(np.abs(w))) if n else 0.0
    rc = n * np.finfo(np.float64).eps if rcond is None else float(rcond)
    tol_abs = rc * wmax
    # eigh's eigenvalues carry absolute errors of order p(n) * eps * ||K||: rounding can push the
    # zero eigenvalues of a PSD kernel slightly negative. Only eigenvalues below -sqrt(eps) * ||K||
    # (far beyond rounding) mean the kernel is indefinite; the rest count as zero.
    neg_tol = max(tol_abs, np.sqrt(np.finfo(np.float64).eps) * wmax)
    if n and w.min() < -neg_tol:
        i = int(np.argmin(w))
        raise NotPositiveDefiniteError(
            f"the kernel has a negative eigenvalue {w[i]:.3g} (below -{neg_tol:.3g}): it is not positive "
            "semi-definite, so no minimum-norm interpolant in an RKHS exists. Check the kernel, or symmetrise "
            "and clip it yourself.", index=i)
    keep = w > tol_abs
    rank = int(keep.sum())
    Vr, wr = V[:, keep], w[keep]
    def pinv_apply(R):
        return Vr @ ((Vr.T @ R) / wr[:, None])

    ny = np.linalg.norm(Y2)

    def residual(alpha):
        # float64, with the kernel itself when we still have it, else with its eigendecomposition
        KA = (K @ alpha + ridge * alpha) if K is not None else Vr @ (wr[:, None] * (Vr.T @ alpha))
        R = Y2 - KA
        return R, (float(np.linalg.norm(R) / ny) if ny > 0 else float(np.linalg.norm(R)))

    alpha = pinv_apply(Y2)
    R, rel = residual(alpha)
    history = [{"step": 0, "kind": "eigh", "relative_residual": rel}]
    # iterative refinement with the pseudo-inverse keeps alpha in the range of the kept
    # eigenvectors (so it stays the minimum-norm solution) and removes the cond * eps error;
    # it stops when the residual stops shrinking (targets outside the range of K).
    while K is not None and rel > tol and len(history) <= max_iter:
        cand = alpha + pinv_apply(R)
        R2, rel2 = residual(cand)
        if rel2 > 0.5 * rel:
            break
        alpha, R, rel = cand, R2, rel2
        history.append({"step": len(history), "kind": "pinv refinement", "relative_residual": rel})
    aka, norm = _finish(alpha, R, Y2, ridge)
    if rank < n:
        log.info("min_norm: numerical rank %d of %d (tol %.3g)", rank, n, tol_abs)
    return KernelInterpolant(
        alpha=alpha, kernel_params=params, relative_residual=rel, alpha_K_alpha=aka, rkhs_norm=norm, ridge=ridge,
        solver="min_norm", backend=backend, factor_dtype="float64",
        residual_mode="eigh" if K is None else ("precomputed" if params["kernel"] == "precomputed" else "stored"),
        rank=rank, rank_tol=tol_abs, history=history, n_matvecs=len(history),
        condition_number=float(wmax / wr.min()) if rank else None,
        residual_matrix=R)
