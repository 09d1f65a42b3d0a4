"""Exact kernel interpolation K alpha = Y: the orchestration and the SciPy backend (private).

Dtype policy (options.dtype=None): the factor is float64 up to ``options.float64_max_n`` points
and float32 above; the residual Y - K alpha is *always* float64 with the float64 kernel (stored as
one lower triangle when it fits beside the factor, otherwise recomputed blockwise per pass, never
a dense float64 n x n), and preconditioned CG (or plain refinement) runs until the float64 relative
residual reaches ``options.tol``. If the float32 route fails (factor breakdown, no convergence),
the solve is redone with a float64 factor when memory allows, logged and reported.

``solver="auto"`` (the default) is Cholesky; when the *float64* factor meets a non-positive pivot
(K is not positive definite to working precision: duplicate points, a bandwidth too large for the
data), the same K^+ Y is computed by ``min_norm`` when the planner allows it, logged at WARNING and
recorded on the result (``fit.solver == "min_norm"``, ``fit.notes``). Every option is honoured or
refused before any n x n work (:class:`~kernelgen.errors.UnsupportedOptionError`), never ignored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from .._jax import accelerator_available
from .._validation import as_float_array
from ..errors import (
    ConvergenceError,
    InvalidInputError,
    MemoryBudgetError,
    NonFiniteResultError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
    UnsupportedOptionError,
)
from ..factors import CholeskyFactor, EighFactor, LowerPanels
from ..kernels import Precomputed, as_kernel
from ..numerics import check_symmetric
from ..options import SolveOptions
from ._jax_backend import solve_jax
from ._mpi_backend import mpi_agree, solve_mpi
from ._planner import plan_kernel_solve
from ._refine import refine
from ._result import KernelInterpolant, build_interpolant
from ._system import KernelSystem, check_interpolates, pinv_refine, prepare_targets

log = logging.getLogger(__name__)

__all__ = ["kernel_interpolate"]

SOLVERS = ("auto", "cholesky", "min_norm")
BACKENDS = ("auto", "scipy", "jax", "mpi")


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
        minimum-norm interpolant of a singular K; rank reported); ``"auto"``: Cholesky (with the
        dtype=None float32 -> float64 retry), and when the float64 factor finds K not positive
        definite, ``"min_norm"`` if the planner allows it (the same K^+ Y; logged at WARNING,
        ``fit.solver == "min_norm"`` and the reason in ``fit.notes``); not on ``backend="mpi"``
        (Cholesky only) nor with ``SolveOptions(certificate="bound")``, where the
        NotPositiveDefiniteError is raised with the reason.
    backend : {"auto", "scipy", "jax", "mpi"}
        ``"auto"`` picks JAX when an accelerator is visible, the kernel has a JAX implementation
        (``Kernel.has_jax``) and no ``certificate="bound"`` is asked; else SciPy/LAPACK (tiled); the
        choice and its reason are logged. ``"mpi"``: ScaLAPACK under ``mpiexec -n P`` (collective;
        every process passes the same X, Y and sees the same ``KERNELGEN_MPI_*`` settings).
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
        Bad data or options (a scipy.sparse X is refused: pass ``X.toarray()``).
    UnsupportedOptionError
        Before any n x n work: an option the chosen backend, solver or kernel cannot honour
        (``backend="jax"`` with a kernel without a JAX implementation; ``certificate="bound"`` on
        ``backend="jax"``/``"mpi"``, with ``solver="min_norm"``, a precomputed K, or a kernel without
        a proven entry error bound; ``backend="mpi"`` with a precomputed K or ``solver="min_norm"``).
    SettingsMismatchError
        ``backend="mpi"``: the processes see different ``KERNELGEN_*`` environment settings.
    NotPositiveDefiniteError
        Cholesky met a non-positive pivot (global index on the exception; the message ends with a
        remedy for the kernel: a smaller bandwidth for a stationary kernel, ``ridge``, or
        ``solver="min_norm"``), or min_norm found a negative eigenvalue beyond rounding.
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
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")

    def validate():
        v = _validate_inputs(X, Y, kernel=kernel, ridge=ridge, solver=solver, options=options)
        chosen = _choose_backend(backend, v[1], v[2], v[0])
        _check_supported(chosen, solver, opts=v[0], kern=v[1], precomputed=v[2], A=v[3])
        return v + (chosen,)

    # under mpiexec every process validates its own copy, and they agree: one refusing alone would hang the others
    opts, kern, precomputed, A, X64, n, d, ridge, Y2, squeeze, backend = (
        mpi_agree(validate) if backend == "mpi" else validate())
    requested = solver
    if solver == "auto":
        solver = "cholesky"
        log.info("solver='auto' starts with 'cholesky' (min_norm if the float64 factor finds K not positive definite)")

    trace = {}  # the backends record the dtype of each factor they attempt
    try:
        if backend == "jax":
            out = solve_jax(A, Y2, kernel=kern, precomputed=precomputed, solver=solver, ridge=ridge, opts=opts,
                            verbose=verbose, trace=trace)
        elif backend == "mpi":  # under mpiexec: every process returns the same fit (see solvers/_mpi_backend.py)
            out = solve_mpi(A, Y2, kernel=kern, precomputed=precomputed, solver=solver, ridge=ridge, opts=opts,
                            verbose=verbose)
        elif solver == "min_norm":
            out = _solve_min_norm(A, Y2, kernel=kern, precomputed=precomputed, ridge=ridge, opts=opts,
                                  verbose=verbose)
        else:
            out = _solve_cholesky(A, Y2, kernel=kern, precomputed=precomputed, n=n, d=d, ridge=ridge, opts=opts,
                                  verbose=verbose, trace=trace)
    except NotPositiveDefiniteError as exc:
        if solver != "cholesky":
            raise
        why = _auto_refusal(requested, backend, opts, trace)
        if why:
            raise NotPositiveDefiniteError(f"{exc}{why} {_not_pd_remedy(kern, precomputed, opts, backend)}",
                                           exc.index) from exc
        pivot = "unknown" if exc.index is None else exc.index
        note = (f"solver='auto': K is not positive definite (first failing pivot {pivot}); solved by min_norm")
        log.info("solver='auto': the float64 Cholesky factor failed (%s); trying min_norm", str(exc).split(". ")[0])
        try:
            if backend == "jax":
                out = solve_jax(A, Y2, kernel=kern, precomputed=precomputed, solver="min_norm", ridge=ridge,
                                opts=opts, verbose=verbose)
            else:
                out = _solve_min_norm(A, Y2, kernel=kern, precomputed=precomputed, ridge=ridge, opts=opts,
                                      verbose=verbose)
        except MemoryBudgetError as mem:
            raise NotPositiveDefiniteError(
                f"{exc} solver='auto' could not take the min-norm route: {mem} "
                f"{_not_pd_remedy(kern, precomputed, opts, backend, min_norm=False)}", exc.index) from exc
        except NotPositiveDefiniteError as indefinite:  # K is indefinite, not only singular: report both findings
            raise NotPositiveDefiniteError(f"{exc} solver='auto' then tried min_norm: {indefinite}",
                                           exc.index) from indefinite
        log.warning("%s (the same K^+ Y)", note)
        out["notes"] = tuple(out.get("notes", ())) + (note,)
    out["timings"]["total"] = time.perf_counter() - t_start
    fit = build_interpolant(out, Y2, squeeze, kern, X64, A if precomputed else None, ridge, opts, backend)
    log.info("kernel_interpolate: n=%d solver=%s backend=%s factor=%s residual %.3e in %.1f s",
             n, fit.solver, fit.backend, fit.factor_dtype, fit.relative_residual, fit.timings["total"])
    return fit


def _choose_backend(backend, kern, precomputed, opts):
    """``backend="auto"``: JAX when an accelerator is visible and the kernel and options allow it (logged)."""
    if backend != "auto":
        return backend
    if not accelerator_available():
        log.info("backend='auto' chose 'scipy' (no accelerator visible)")
        return "scipy"
    if not precomputed and not getattr(kern, "has_jax", True):
        log.info("backend='auto' chose 'scipy': %r has no JAX implementation (an accelerator is visible)", kern)
        return "scipy"
    if opts.certificate == "bound":
        log.info("backend='auto' chose 'scipy': SolveOptions(certificate='bound') is implemented there only")
        return "scipy"
    log.info("backend='auto' chose 'jax' (an accelerator is visible)")
    return "jax"


def _check_supported(backend, solver, *, opts, kern, precomputed, A):
    """Refuse, before any n x n work, an option the backend, solver or kernel cannot honour (never ignore it)."""
    if backend == "jax" and not precomputed and not getattr(kern, "has_jax", True):
        raise UnsupportedOptionError(
            f"backend='jax' needs a kernel with a JAX implementation; {kern!r} has none: {kern._no_jax_message()} "
            "(backend='auto' picks 'scipy' for this kernel.)")
    if backend == "mpi":
        if precomputed:
            raise UnsupportedOptionError("backend='mpi' computes its kernel tiles from X: a precomputed K is not "
                                         "supported (use backend='scipy').")
        if solver == "min_norm":
            raise UnsupportedOptionError("backend='mpi' solves by Cholesky only, got solver='min_norm' (use "
                                         "backend='scipy' for the minimum-norm solve).")
    if backend == "jax" and opts.store_kernel is False:
        raise UnsupportedOptionError(
            "SolveOptions(store_kernel=False) cannot hold on backend='jax': its float64 residual uses the float64 K "
            "kept on the device. Remedy: backend='scipy' (recomputes the float64 kernel on the fly), or "
            "store_kernel=None.")
    if backend == "mpi" and opts.store_kernel is True:
        raise UnsupportedOptionError(
            "SolveOptions(store_kernel=True) cannot hold on backend='mpi': each pass recomputes its share of the "
            "float64 kernel tiles. Remedy: store_kernel=None, or backend='scipy'.")
    if opts.certificate != "bound":
        return
    what = "SolveOptions(certificate='bound')"
    if backend in ("jax", "mpi"):
        raise UnsupportedOptionError(
            f"{what} is not implemented on backend={backend!r}: its float64 products carry no proven error bound "
            "through CG. Remedy: backend='scipy', or certificate='direct' (the direct float64 residual).")
    if solver == "min_norm":
        raise UnsupportedOptionError(
            f"{what} cannot hold with solver='min_norm': the bound is carried through the Cholesky-preconditioned "
            "CG; the eigendecomposition's pseudo-inverse refinement has none. Remedy: certificate='direct', or "
            "solver='cholesky'.")
    if precomputed:
        raise UnsupportedOptionError(
            f"{what} needs kernel entries with a proven error bound; a precomputed K has none (its entries' errors "
            "are unknown to kernelgen). Remedy: certificate='direct', or pass X with a Kernel object.")
    if kern.entries(A, None, dtype=np.float64).entry_error_bound() is None:  # O(n d): copies and norms of X
        raise UnsupportedOptionError(
            f"{what} needs kernel entries with a proven error bound, and {kern!r} has none on these data (proven: "
            "Gaussian, Laplace on integer data, at bandwidths inside the float range). Remedy: "
            "certificate='direct' (the direct float64 residual certifies alpha).")


def _auto_refusal(requested, backend, opts, trace) -> str:
    """Why the solve cannot take the min-norm route after a NotPositiveDefiniteError ('' when it can: solver='auto'
    after a float64 factor, on a backend with min_norm, with an option min_norm honours)."""
    if requested != "auto":
        return f" (solver={requested!r}: no other route is tried.)"
    if backend == "mpi":
        return " solver='auto' cannot take the min-norm route on backend='mpi' (Cholesky only)."
    if trace.get("factor_dtype") != "float64":
        if opts.dtype == "float32":
            return (" solver='auto' takes the min-norm route only when a float64 factor fails, and "
                    "SolveOptions(dtype='float32') asked for a float32 one.")
        return (" solver='auto' could not take the min-norm route: it needs more memory than the float64 factor, "
                "which did not fit.")
    if opts.certificate == "bound":
        return (" solver='auto' cannot take the min-norm route with SolveOptions(certificate='bound'), which the "
                "min-norm solve cannot honour.")
    return ""


def _not_pd_remedy(kern, precomputed, opts, backend, *, min_norm=True) -> str:
    """The kernel-aware remedy of a Cholesky breakdown (the factor's message does not know the kernel)."""
    mn = (["solver='min_norm' (the minimum-norm interpolant K^+ Y" + (", on backend='scipy')" if backend == "mpi"
                                                                      else ")")] if min_norm else [])
    ridge = ["an explicit ridge=... (reported on the result)"]
    f32 = ["SolveOptions(dtype='float64')"] if opts.dtype == "float32" else []
    if precomputed:
        return "Remedy for this precomputed K: " + ", ".join(f32 + mn + ridge) + "."
    if getattr(kern, "stationary", False) and getattr(kern, "bandwidth", None) is not None:
        return (f"Remedy for {kern!r}: K of a stationary kernel is numerically singular when the bandwidth is "
                "large against the distances between points (K tends to all ones) or points repeat: a SMALLER "
                "bandwidth, " + ", ".join(f32 + ridge + mn) + ".")
    return f"Remedy for {kern!r}: " + ", ".join(f32 + ridge + mn) + "."


def _validate_inputs(X, Y, *, kernel, ridge, solver, options):
    """The checks of kernel_interpolate's arguments (module-private; raise named errors, allocate nothing big)."""
    opts = SolveOptions.coerce(options)
    if solver not in SOLVERS:
        raise InvalidInputError(f"solver must be one of {SOLVERS}, got {solver!r}")
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
    Y2, squeeze = prepare_targets(Y, n)
    return opts, kern, precomputed, A, X64, n, d, ridge, Y2, squeeze


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


# ----------------------------------------------------------------------------- Cholesky (SciPy)
def _solve_cholesky(A, Y2, *, kernel, precomputed, n, d, ridge, opts, verbose, trace=None):
    trace = {} if trace is None else trace
    timings = {}
    plan = plan_kernel_solve(n, d, Y2.shape[1], solver="cholesky", dtype=opts.dtype, precomputed=precomputed,
                             memory_budget=opts.memory_budget, tile=opts.tile, store_kernel=opts.store_kernel,
                             float64_max_n=opts.float64_max_n)
    fdt = plan.factor_dtype
    t0 = time.perf_counter()
    K64 = None
    if precomputed:
        system = KernelSystem(kernel, None, A, ridge, "precomputed", plan.tile, verbose)
    elif plan.residual == "stored":
        K64 = LowerPanels(n, plan.tile, np.float64)
        kernel.fill_panels(K64, A, verbose=verbose, desc="kernel (float64)")
        system = KernelSystem(kernel, A, None, ridge, "stored", plan.tile, verbose, K64)
    else:
        system = KernelSystem(kernel, A, None, ridge, "on-the-fly", plan.tile, verbose)

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
        trace["factor_dtype"] = np.dtype(F.dtype).name
        factor = CholeskyFactor.from_panels(F, verbose=verbose)
        timings["factor"] = factor.seconds
        t0 = time.perf_counter()
        res = refine(system.matvec, factor.solve, Y2, tol=opts.tol, max_iter=opts.max_iter, method=opts.refinement,
                     verbose=verbose, matvec_error=system.matvec_error(), stop_on_bound=opts.certificate == "bound")
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
        system = KernelSystem(kernel, None, None if in_place else A, ridge, "precomputed", opts.tile, verbose)
    else:
        mdt = np.dtype(np.float64)
        work = kernel.matrix(A, dtype=np.float64)
        system = KernelSystem(kernel, A, None, ridge, "on-the-fly", opts.tile, verbose)
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
        system = KernelSystem(kernel, None, None, ridge, "device", opts.tile, verbose)
        system.K = lambda V: factor.apply(V) - ridge * V
        mode = "eigh (K overwritten)"
    else:
        mode = "precomputed" if precomputed else "recomputed"
    t0 = time.perf_counter()
    res = pinv_refine(factor, system, Y2, opts.tol)
    timings["refine"] = time.perf_counter() - t0
    check_interpolates(res, factor, opts)
    if factor.rank < n:
        log.info("min_norm: numerical rank %d of %d (tol %.3g)", factor.rank, n, factor.rank_tol)
    return {"result": res, "solver": "min_norm", "factor_dtype": "float64", "residual_mode": mode,
            "rank": factor.rank, "rank_tol": factor.rank_tol, "condition_number": factor.condition_number,
            "timings": timings, "plan": plan, "factor": factor, "system": system}


