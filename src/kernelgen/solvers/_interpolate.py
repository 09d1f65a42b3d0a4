"""Exact kernel interpolation K alpha = Y: the orchestration and the SciPy backend (private).

Dtype policy (options.dtype=None): the factor is float64 up to ``options.float64_max_n`` points
and float32 above; the residual Y - K alpha is *always* float64 with the float64 kernel (stored as
one lower triangle when it fits beside the factor, otherwise recomputed blockwise per pass, never
a dense float64 n x n), and preconditioned CG (or plain refinement) runs until the float64 relative
residual reaches ``options.tol``. If the float32 route fails (factor breakdown, no convergence),
the solve is redone with a float64 factor when memory allows, logged and reported.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import replace

import numpy as np

from .._jax import accelerator_available
from .._validation import as_float_array
from ..errors import (
    ConvergenceError,
    InvalidInputError,
    MemoryBudgetError,
    NonFiniteResultError,
    InterpolationWarning,
    NotPositiveDefiniteError,
    ShapeMismatchError,
    SingularSystemError,
)
from ..factors import CholeskyFactor, EighFactor, LowerPanels, symmetric_matvec_panels
from ..kernels import Precomputed, as_kernel
from ..numerics import check_symmetric, unit_roundoff
from ..options import SolveOptions
from ..provenance import provenance
from ._planner import plan_kernel_solve
from ._refine import refine
from ._result import KernelInterpolant, data_fingerprint

log = logging.getLogger(__name__)

__all__ = ["kernel_interpolate"]

SOLVERS = ("auto", "cholesky", "min_norm")
BACKENDS = ("auto", "scipy", "jax")


def _prepare_targets(Y, n):
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    if Y.shape[0] != n:
        raise ShapeMismatchError(f"X has {n} rows but Y has {Y.shape[0]}; they must match.")
    return Y.reshape(n, -1), Y.ndim == 1


class _System:
    """The float64 operator of one kernel system (K + ridge I), independent of any factor."""

    def __init__(self, kernel, X64, K, ridge, mode, tile, verbose, K64_panels=None):
        self.kernel, self.X64, self.K, self.ridge = kernel, X64, K, float(ridge)
        self.mode, self.tile, self.verbose, self.K64 = mode, tile, verbose, K64_panels

    def matvec(self, V):
        V = np.asarray(V, dtype=np.float64)
        if self.mode == "precomputed":
            out = self.K @ V
        elif self.mode == "stored":
            out = symmetric_matvec_panels(self.K64, V)
        elif self.mode == "device":
            out = self.K(V)
        else:
            out = self.kernel.symmetric_apply(self.X64, V, tile=self.tile, verbose=self.verbose)
        return out + self.ridge * V if self.ridge else out


def _certify(alpha, R, Y2, ridge):
    """alpha_j^T K alpha_j from the verified product K alpha = Y - R - ridge alpha."""
    KA = Y2 - R - ridge * alpha
    aka = np.einsum("ij,ij->j", alpha, KA)
    return KA, aka, float(np.sqrt(max(0.0, float(aka.sum()))))


def kernel_interpolate(
    X,
    Y,
    *,
    kernel="gaussian",
    ridge: float = 0.0,
    solver: str = "auto",
    backend: str = "auto",
    options: SolveOptions | dict | None = None,
    verbose: bool = False,
) -> KernelInterpolant:
    """Solve (K + ridge I) alpha = Y exactly and return the interpolant.

    With ``ridge=0`` (the default) this is the minimum-RKHS-norm interpolant of the data, the
    limit of (kernel) gradient descent from zero (Zhang et al. 2017, eq. 3).

    The exactness contract: ``fit.relative_residual`` = ||Y - (K + ridge I) alpha||_F / ||Y||_F is
    computed by a direct float64 product with kernel entries computed independently of the factor
    (recomputed blockwise with the kernel's accurate entries, or the caller's precomputed K), and
    the Cholesky solver returns only when it is <= ``options.tol`` (1e-10), otherwise raises
    :class:`~kernelgen.errors.ConvergenceError`. Below the float64 rounding floor of the residual
    itself (about eps * || |K| |alpha| || / ||Y||) no tolerance can be promised.

    Parameters
    ----------
    X : array of shape (n, d), or (n, n) for a precomputed kernel
    Y : array of shape (n,) or (n, n_targets)
    kernel : Kernel or str, default "gaussian"
        A :class:`kernelgen.kernels.Kernel` (``Gaussian(bandwidth=5.0)``, ``ReluNTK(depth=3)``,
        sums and products), or a family name with its documented defaults
        (``"gaussian"``: median-heuristic bandwidth), or ``"precomputed"`` (X is K).
    ridge : float, default 0
        Added to the diagonal *only* when asked (reported on the result).
    solver : {"auto", "cholesky", "min_norm"}
        ``"cholesky"``: positive-definite K (raises NotPositiveDefiniteError at the first failing
        pivot); ``"min_norm"``: alpha = K^+ Y by a rank-revealing eigendecomposition (the
        minimum-norm interpolant of a singular K; rank reported); ``"auto"``: Cholesky (logged).
    backend : {"auto", "scipy", "jax"}
        ``"auto"`` picks JAX when an accelerator is visible, else SciPy/LAPACK (tiled).
    options : SolveOptions or dict, optional
        The numerical knobs (tolerance, iteration, dtype policy, memory budget, tile, what to keep);
        see :class:`kernelgen.SolveOptions`.
    verbose : bool
        Progress bars for the kernel, the factor and every float64 pass.

    Returns
    -------
    KernelInterpolant

    Raises
    ------
    NonFiniteInputError, ShapeMismatchError, InvalidInputError
        Bad data or options.
    NotPositiveDefiniteError
        Cholesky met a non-positive pivot (global index on the exception), or min_norm found a
        negative eigenvalue beyond rounding.
    MemoryBudgetError
        The planner refused before allocating (bytes needed and available in the message).
    ConvergenceError
        The float64 iteration could not reach ``options.tol``.
    NonFiniteResultError
        A residual or the coefficients became NaN/inf (e.g. an overflowing kernel).

    References
    ----------
    Zhang, Bengio, Hardt, Recht, Vinyals. Understanding deep learning requires rethinking
    generalization. ICLR 2017, §5, eq. (3).
    Higham. Accuracy and Stability of Numerical Algorithms (2nd ed.), ch. 12.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelgen.kernels import Gaussian
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    >>> fit = kernel_interpolate(X, y, kernel=Gaussian(bandwidth=2.0))
    >>> bool(fit.relative_residual <= 1e-10), fit.solver, fit.ridge
    (True, 'cholesky', 0.0)
    """
    t_start = time.perf_counter()
    opts = SolveOptions.coerce(options)
    if solver not in SOLVERS:
        raise InvalidInputError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.floating, np.integer)):
        raise InvalidInputError(f"ridge must be a finite number >= 0, got {ridge!r}")
    ridge = float(ridge)
    if not np.isfinite(ridge) or ridge < 0:
        raise InvalidInputError(f"ridge must be a finite number >= 0, got {ridge}")
    kern = as_kernel(kernel)
    precomputed = isinstance(kern, Precomputed)
    if precomputed:
        K = as_float_array(X, "K", ndim=(2,))
        if K.shape[0] != K.shape[1]:
            raise ShapeMismatchError(f"a precomputed kernel must be square, got shape {K.shape}.")
        check_symmetric(K, rtol=opts.symmetry_rtol(K.dtype))
        n, d, A, X64 = K.shape[0], 0, K, None
    else:
        X64 = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        n, d = X64.shape
        kern = kern.resolve(X64)
        A = X64
        opts = _check_kernel_scale(kern, X64, opts)
    Y2, squeeze = _prepare_targets(Y, n)
    if solver == "auto":
        solver = "cholesky"
        log.info("solver='auto' chose 'cholesky' (raises NotPositiveDefiniteError if K is not positive definite)")
    if backend == "auto":
        backend = "jax" if accelerator_available() else "scipy"
        log.info("backend='auto' chose %r", backend)

    if backend == "jax":
        from ._jax_backend import solve_jax

        out = solve_jax(A, Y2, kernel=kern, precomputed=precomputed, solver=solver, ridge=ridge, opts=opts,
                        verbose=verbose)
    elif solver == "min_norm":
        out = _solve_min_norm(A, Y2, kernel=kern, precomputed=precomputed, ridge=ridge, opts=opts, verbose=verbose)
    else:
        out = _solve_cholesky(A, Y2, kernel=kern, precomputed=precomputed, n=n, d=d, ridge=ridge, opts=opts,
                              verbose=verbose)
    out["timings"]["total"] = time.perf_counter() - t_start
    fit = _build(out, Y2, squeeze, kern, X64, A if precomputed else None, ridge, opts, backend)
    log.info("kernel_interpolate: n=%d solver=%s backend=%s factor=%s residual %.3e in %.1f s",
             n, fit.solver, fit.backend, fit.factor_dtype, fit.relative_residual, fit.timings["total"])
    return fit


def _check_kernel_scale(kern, X64, opts):
    """The cheap O(n d) pre-check that predicts overflow: the kernel's diagonal.

    For a positive-definite kernel |k(x, z)| <= sqrt(k(x, x) k(z, z)) (Cauchy-Schwarz), so a finite
    diagonal bounds every entry. A diagonal beyond float64 is refused; one beyond float32 moves the
    dtype=None policy to a float64 factor (an explicit float32 factor is refused).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        dg = np.asarray(kern.diag(X64), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(dg) | (np.abs(dg) > np.finfo(np.float64).max / 4))
    if bad.size:
        i = int(bad[0])
        raise NonFiniteResultError(
            f"the kernel is not finite in float64 on these data: k(x_{i}, x_{i}) = {float(dg[i])!r} for {kern!r} "
            f"({bad.size} rows affected). Its entries overflow (|k(x, z)| can reach sqrt(k(x, x) k(z, z))). "
            "Remedy: rescale the data, change the kernel's scale (e.g. a larger polynomial bandwidth or a lower "
            "degree).")
    f32_limit = float(np.finfo(np.float32).max) / 4
    if float(np.max(np.abs(dg))) > f32_limit:
        if opts.dtype == "float32":
            raise NonFiniteResultError(
                f"the kernel reaches {np.max(np.abs(dg)):.3g} on these data, beyond float32: the float32 factor "
                "would overflow. Remedy: SolveOptions(dtype='float64'), or rescale the data / kernel.")
        if opts.dtype is None:
            log.info("kernel entries beyond float32's range: dtype=None policy uses a float64 factor")
            opts = replace(opts, dtype="float64")
    return opts


def _build(out, Y2, squeeze, kern, X64, K, ridge, opts, backend, *, prov=None, data_sha=None):
    res = out["result"]
    KA, aka, norm = _certify(res.alpha, res.residual, Y2, ridge)
    fit = KernelInterpolant(
        alpha=res.alpha[:, 0] if squeeze else res.alpha, kernel=kern, relative_residual=res.relative_residual,
        alpha_K_alpha=aka, rkhs_norm=norm, ridge=ridge, solver=out["solver"], backend=backend,
        factor_dtype=out["factor_dtype"], residual_mode=out["residual_mode"], rank=out.get("rank"),
        rank_tol=out.get("rank_tol"), condition_number=out.get("condition_number"), history=tuple(res.history),
        n_matvecs=res.n_matvecs, timings=out["timings"], plan=out.get("plan"),
        fitted=KA[:, 0] if squeeze else KA, options=opts,
        factor=out.get("factor") if opts.keep_factor else None,
        provenance=prov if prov is not None else provenance(),
        X_train=X64, data_sha256=data_sha or data_fingerprint(K if X64 is None else X64))
    if opts.keep_factor and out.get("system") is not None:
        fit = _with_resolver(fit, out["system"], out["factor"], out.get("precond"))
    return fit


def _with_resolver(fit, system, factor, precond=None):
    opts = fit.options
    precond = precond or factor.solve

    def resolve(Y_new, tol_new):
        t0 = time.perf_counter()
        Yn, sq = _prepare_targets(Y_new, fit.n_train)
        if fit.solver == "min_norm":
            r = _pinv_refine(factor, system, Yn, opts.tol if tol_new is None else tol_new)
            check_interpolates(r, factor, opts if tol_new is None else replace(opts, tol=tol_new))
        else:
            r = refine(system.matvec, precond, Yn, tol=opts.tol if tol_new is None else tol_new,
                       max_iter=opts.max_iter, method=opts.refinement)
        out = {"result": r, "solver": fit.solver, "factor_dtype": fit.factor_dtype, "residual_mode": fit.residual_mode,
               "rank": fit.rank, "rank_tol": fit.rank_tol, "condition_number": fit.condition_number,
               "timings": {"refine": time.perf_counter() - t0}, "plan": fit.plan, "factor": factor, "system": system,
               "precond": precond}
        return _build(out, Yn, sq, fit.kernel, fit.X_train, system.K, fit.ridge, opts, fit.backend,
                      data_sha=fit.data_sha256)

    object.__setattr__(fit, "_resolve", resolve)
    return fit


def attach_resolver(fit):
    """After loading a saved factor: rebuild the float64 operator and allow ``fit.solve``."""
    opts = fit.options
    system = _System(fit.kernel, fit.X_train, None, fit.ridge, "on-the-fly", opts.tile, False)
    return _with_resolver(fit, system, fit.factor)


def float64_refactor(fit, *, verbose=False):
    """A float64 tiled Cholesky factor of the fit's K + ridge I (planner-checked), for an exact log-det."""
    if fit.X_train is None:
        raise InvalidInputError("a float64 refactor needs the training data (or refit a precomputed K in float64).")
    n, d = fit.X_train.shape
    plan = plan_kernel_solve(n, d, 1, solver="cholesky", dtype="float64", memory_budget=fit.options.memory_budget,
                             tile=fit.options.tile, store_kernel=False)
    P = LowerPanels(n, plan.tile, np.float64)
    fit.kernel.fill_panels(P, fit.X_train, verbose=verbose, desc="kernel (float64)")
    if fit.ridge:
        P.add_to_diagonal(fit.ridge)
    return CholeskyFactor.from_panels(P, verbose=verbose)


# ----------------------------------------------------------------------------- Cholesky (SciPy)
def _solve_cholesky(A, Y2, *, kernel, precomputed, n, d, ridge, opts, verbose):
    timings = {}
    plan = plan_kernel_solve(n, d, Y2.shape[1], solver="cholesky", dtype=opts.dtype, precomputed=precomputed,
                             memory_budget=opts.memory_budget, tile=opts.tile, store_kernel=opts.store_kernel,
                             float64_max_n=opts.float64_max_n)
    fdt = plan.factor_dtype
    t0 = time.perf_counter()
    K64 = None
    if precomputed:
        system = _System(kernel, None, A, ridge, "precomputed", plan.tile, verbose)
    elif plan.residual == "stored":
        K64 = LowerPanels(n, plan.tile, np.float64)
        kernel.fill_panels(K64, A, verbose=verbose, desc="kernel (float64)")
        system = _System(kernel, A, None, ridge, "stored", plan.tile, verbose, K64)
    else:
        system = _System(kernel, A, None, ridge, "on-the-fly", plan.tile, verbose)

    def build_factor_input(fdt):
        if precomputed:
            F = LowerPanels.from_dense(A, plan.tile, fdt)
        elif K64 is not None:
            F = LowerPanels(n, plan.tile, fdt)
            for p_src, p_dst in zip(K64.panels, F.panels):
                p_dst[...] = p_src
        else:
            F = LowerPanels(n, plan.tile, fdt)
            kernel.fill_panels(F, A, verbose=verbose, desc=f"kernel ({fdt.name})")
        if ridge:
            F.add_to_diagonal(ridge)
        return F

    F = build_factor_input(fdt)
    timings["kernel"] = time.perf_counter() - t0

    def factor_and_refine(F):
        factor = CholeskyFactor.from_panels(F, verbose=verbose)
        timings["factor"] = factor.seconds
        t0 = time.perf_counter()
        res = refine(system.matvec, factor.solve, Y2, tol=opts.tol, max_iter=opts.max_iter, method=opts.refinement,
                     verbose=verbose)
        timings["refine"] = time.perf_counter() - t0
        factor.spectrum_estimate = res.spectrum_estimate
        return factor, res

    try:
        factor, res = factor_and_refine(F)
    except (NotPositiveDefiniteError, ConvergenceError) as exc:
        if opts.dtype is not None or fdt == np.float64:
            raise
        # dtype policy (dtype=None): when the mixed-precision route fails on a kernel too
        # ill-conditioned for float32, it is redone with a float64 factor if memory allows.
        log.warning("mixed precision failed (%s: %s); dtype=None policy: refactoring in float64",
                    type(exc).__name__, str(exc).split(":")[0])
        del F
        try:
            plan = plan_kernel_solve(n, d, Y2.shape[1], solver="cholesky", dtype="float64", precomputed=precomputed,
                                     memory_budget=opts.memory_budget, tile=opts.tile,
                                     store_kernel=None if precomputed else (plan.residual == "stored"))
        except MemoryBudgetError as mem:
            raise type(exc)(f"{exc} The dtype=None fallback to a float64 factor was not possible: {mem}",
                            *([exc.index] if isinstance(exc, NotPositiveDefiniteError) else [])) from exc
        fdt = plan.factor_dtype
        t0 = time.perf_counter()
        F = build_factor_input(fdt)
        timings["kernel"] += time.perf_counter() - t0
        factor, res = factor_and_refine(F)
    return {"result": res, "solver": "cholesky", "factor_dtype": fdt.name, "residual_mode": plan.residual,
            "rank": n, "timings": timings, "plan": plan, "factor": factor, "system": system}


# ----------------------------------------------------------------------------- min_norm (eigh)
def _pinv_refine(factor: EighFactor, system: _System, Y2, tol, max_steps: int = 5):
    """alpha = A^+ Y from the eigendecomposition, refined with the pseudo-inverse.

    Refinement keeps alpha in the span of the kept eigenvectors (so it stays the minimum-norm
    solution) and removes the cond * eps error; it stops when the residual stops shrinking
    (targets outside the range of K). The residual is the system's independent float64 product.
    """
    from ._refine import RefinementResult, _rel

    t0 = time.perf_counter()
    ny = float(np.linalg.norm(Y2))
    alpha = factor.solve(Y2)
    R = Y2 - system.matvec(alpha)
    rel = _rel(R, ny)
    history = [{"step": 0, "kind": "eigh", "relative_residual": rel, "seconds": time.perf_counter() - t0}]
    while rel > tol and len(history) <= max_steps:
        cand = alpha + factor.solve(R)
        R2 = Y2 - system.matvec(cand)
        rel2 = _rel(R2, ny)
        if rel2 > 0.5 * rel:
            break
        alpha, R, rel = cand, R2, rel2
        history.append({"step": len(history), "kind": "pinv refinement", "relative_residual": rel,
                        "seconds": time.perf_counter() - t0})
    return RefinementResult(alpha=alpha, residual=R, relative_residual=rel, history=history,
                            n_matvecs=len(history))


def check_interpolates(res, factor, opts):
    """min_norm: warn (or raise, by option) when the minimum-norm solution is not an interpolant.

    The threshold follows the precision the kernel matrix carries: ``opts.tol`` for float64; for a
    float32 matrix its own rounding (~u32 * cond of the kept spectrum) already limits how well any Y
    in its range can be reproduced, so max(tol, 10 * u32 * cond) is used.
    """
    tol = opts.tol
    if factor.matrix_dtype != np.float64 and factor.condition_number is not None:
        tol = max(tol, 10.0 * unit_roundoff(factor.matrix_dtype) * factor.condition_number)
    if res.relative_residual <= tol:
        return
    msg = (f"the minimum-norm solution does not interpolate: relative residual {res.relative_residual:.3g} > tol "
           f"{tol:.1e} with numerical rank {factor.rank} of {factor.shape[0]}. Y is not in the range of K (for "
           "example repeated inputs with conflicting targets), so this is the minimum-norm least-squares fit.")
    if opts.require_interpolation:
        raise SingularSystemError(msg + " (SolveOptions(require_interpolation=True))")
    log.warning(msg)
    warnings.warn(msg, InterpolationWarning, stacklevel=4)


def _solve_min_norm(A, Y2, *, kernel, precomputed, ridge, opts, verbose):
    n = A.shape[0]
    plan = plan_kernel_solve(n, 0 if precomputed else A.shape[1], Y2.shape[1], solver="min_norm",
                             precomputed=precomputed, memory_budget=opts.memory_budget)
    timings = {}
    t0 = time.perf_counter()
    if precomputed:
        mdt = A.dtype
        in_place = opts.overwrite_kernel and A.dtype == np.float64
        work = A if in_place else np.array(A, dtype=np.float64)
        system = _System(kernel, None, None if in_place else A, ridge, "precomputed", opts.tile, verbose)
    else:
        mdt = np.dtype(np.float64)
        work = kernel.matrix(A, dtype=np.float64)
        system = _System(kernel, A, None, ridge, "on-the-fly", opts.tile, verbose)
    timings["kernel"] = time.perf_counter() - t0
    if ridge:
        work[np.diag_indices(n)] += ridge
    t0 = time.perf_counter()
    factor = EighFactor.factor(work, rcond=opts.rcond, overwrite=True, check_symmetric=False)
    factor = EighFactor(factor.eigenvalues, factor.eigenvectors, matrix_dtype=mdt, rcond=opts.rcond,
                        seconds=factor.seconds)
    del work
    timings["factor"] = time.perf_counter() - t0
    factor.require_psd()
    if system.mode == "precomputed" and system.K is None:
        # the caller's K was used as workspace: the residual can only come from the factor (reported)
        system = _System(kernel, None, None, ridge, "device", opts.tile, verbose)
        system.K = lambda V: factor.apply(V) - ridge * V
        mode = "eigh (K overwritten)"
    else:
        mode = "precomputed" if precomputed else "recomputed"
    t0 = time.perf_counter()
    res = _pinv_refine(factor, system, Y2, opts.tol)
    timings["refine"] = time.perf_counter() - t0
    check_interpolates(res, factor, opts)
    if factor.rank < n:
        log.info("min_norm: numerical rank %d of %d (tol %.3g)", factor.rank, n, factor.rank_tol)
    return {"result": res, "solver": "min_norm", "factor_dtype": "float64", "residual_mode": mode,
            "rank": factor.rank, "rank_tol": factor.rank_tol, "condition_number": factor.condition_number,
            "timings": timings, "plan": plan, "factor": factor, "system": system}


