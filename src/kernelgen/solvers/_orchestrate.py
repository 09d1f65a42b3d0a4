"""The one orchestration of a kernel solve, written once for every backend (private; see kernelgen.solvers).

plan -> operator -> factor -> float64 iteration -> :class:`~kernelgen.solvers.Certificate`:

1. ``backend.plan(n, d, k, options)`` decides the factor's dtype (the one policy,
   :func:`kernelgen.options.decide_factor_dtype`), the tile and where each n x n object lives, or
   refuses before allocating;
2. ``backend.operator(...)`` builds the certifying float64 product, ``backend.factor(...)`` the
   factor (Cholesky, or an eigendecomposition for the minimum-norm route);
3. the iteration: preconditioned CG / refinement (:func:`~kernelgen.solvers.refine`) for a Cholesky
   factor, pseudo-inverse refinement for an eigendecomposition, until the float64 residual (or its
   proven bound, ``certificate="bound"``) reaches ``options.tol``;
4. on a failed float32 route (factor breakdown, stalled iteration) one float64 retry through
   ``dataclasses.replace(options, dtype="float64")`` where :func:`kernelgen.options.float64_retry_allowed`
   and the backend's plan allow it (logged, and said in the notes) -- not for a factor out of core
   (``plan.storage == "disk"``), whose fallback is a diagonal shift inside the backend's factor;
5. ``solver="auto"``: when the *float64* Cholesky factor finds K not positive definite, the
   minimum-norm route (the same K^+ Y) on a backend whose factors include an eigendecomposition
   (``backend.factor_kinds``), unless an option forbids it; logged at WARNING and said in the notes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import (
    ConvergenceError,
    InvalidInputError,
    MemoryBudgetError,
    NotPositiveDefiniteError,
    UnsupportedOptionError,
    restated,
)
from ..options import float64_retry_allowed
from ._backend import Problem
from ._certificate import Certificate
from ._planner import Plan
from ._refine import refine
from ._system import check_interpolates, pinv_refine

log = logging.getLogger(__name__)

__all__ = ["Solution", "iterate", "orchestrate", "refuse_unsupported"]


@dataclass(frozen=True)
class Solution:
    """What the orchestration returns (no string-keyed outcome crosses a module boundary).

    Attributes
    ----------
    alpha, residual : ndarray (n, k) float64
        The coefficients and the residual that certifies them (direct, or recursive under a bound).
    certificate : Certificate
    factor : Factor
    operator : KernelOperator
    plan : Plan
    timings : dict[str, float]
        Seconds per phase: kernel, factor, refine, total.
    notes : tuple of str
        Decisions taken for the caller (a float64 retry, the min-norm fallback).
    """

    alpha: np.ndarray
    residual: np.ndarray
    certificate: Certificate
    factor: Any
    operator: Any
    plan: Any
    timings: dict = field(default_factory=dict)
    notes: tuple = ()


def iterate(operator, factor, Y, opts, *, backend_name, verbose=False, stacklevel=5):
    """The float64 iteration for ``factor``'s kind, and its certificate: (RefinementResult, Certificate).

    An eigendecomposition (``factor.kind == "eigh"``): pseudo-inverse refinement (it stays the
    minimum-norm solution) and the interpolation check; else preconditioned CG / refinement
    (:func:`~kernelgen.solvers.refine`), the proven bound carried where the operator has one.
    """
    kind = getattr(factor, "kind", "cholesky")
    if kind == "eigh":
        if hasattr(factor, "require_psd"):
            factor.require_psd()
        res = pinv_refine(factor, operator, Y, opts.tol)
        check_interpolates(res, factor, opts, stacklevel=stacklevel)
        cert = Certificate.from_refinement(
            res, operator=operator, tol=opts.tol, solver="min_norm", backend=backend_name, factor_dtype="float64",
            rank=factor.rank, rank_tol=factor.rank_tol, condition_number=factor.condition_number,
            bound_reason="the minimum-norm route's pseudo-inverse refinement carries no proven bound")
        return res, cert
    res = refine(operator, factor, Y, options=opts, verbose=verbose)
    if hasattr(factor, "spectrum_estimate"):  # the factor's logdet uses it (factors/_cholesky.py)
        factor.spectrum_estimate = res.spectrum_estimate
    cert = Certificate.from_refinement(res, operator=operator, tol=opts.tol, solver="cholesky", backend=backend_name,
                                       factor_dtype=np.dtype(factor.dtype).name, rank=int(Y.shape[0]))
    return res, cert


def orchestrate(backend, problem: Problem) -> Solution:
    """Solve ``problem`` through ``backend`` (module docstring); the one path of every backend.

    Raises
    ------
    MemoryBudgetError, NotPositiveDefiniteError, ConvergenceError, NonFiniteResultError,
    SingularSystemError
        As :func:`kernelgen.kernel_interpolate` documents them.
    """
    t_start = time.perf_counter()
    refuse_unsupported(backend, problem)
    check = getattr(backend, "check", None)
    if check is not None:
        check(problem)
    route = "min_norm" if problem.solver == "min_norm" else "cholesky"
    if problem.solver == "auto":
        log.info("solver='auto' starts with 'cholesky' (min_norm if the float64 factor finds K not positive definite)")
    trace: dict = {}
    try:
        sol = _run(backend, problem, route, trace)
    except NotPositiveDefiniteError as exc:
        if route != "cholesky":
            raise
        why = _auto_refusal(problem, backend, trace)
        if why:
            raise NotPositiveDefiniteError(f"{exc}{why} {not_pd_remedy(problem, backend)}", exc.index) from exc
        pivot = "unknown" if exc.index is None else exc.index
        note = f"solver='auto': K is not positive definite (first failing pivot {pivot}); solved by min_norm"
        log.info("solver='auto': the float64 Cholesky factor failed (%s); trying min_norm", str(exc).split(". ")[0])
        try:
            sol = _run(backend, problem, "min_norm", {})
        except MemoryBudgetError as mem:
            raise NotPositiveDefiniteError(
                f"{exc} solver='auto' could not take the min-norm route: {mem} "
                f"{not_pd_remedy(problem, backend, min_norm=False)}", exc.index) from exc
        except NotPositiveDefiniteError as indefinite:  # K is indefinite, not only singular: report both
            raise NotPositiveDefiniteError(f"{exc} solver='auto' then tried min_norm: {indefinite}",
                                           exc.index) from indefinite
        log.warning("%s (the same K^+ Y)", note)
        sol = replace(sol, notes=sol.notes + (note,))
    finish = getattr(backend, "finish", None)
    if finish is not None:
        finish(sol)
    sol.timings["total"] = time.perf_counter() - t_start
    return sol


def refuse_unsupported(backend, problem: Problem) -> None:
    """Refuse what the route or the backend cannot honour, with no n x n work and no collective (named errors).

    The solver's own rules (min_norm needs a backend whose factors include "eigh", and eigendecomposes in float64
    only), then the backend's ``refuse(problem)`` hook where it has one. :func:`kernelgen.kernel_interpolate` calls it
    while validating (under MPI, inside the first collective's agreement); :func:`orchestrate` calls it again for a
    backend driven directly (O(1)).

    Raises
    ------
    UnsupportedOptionError
    """
    name, opts = getattr(backend, "name", backend), problem.options
    if problem.solver == "min_norm" and "eigh" not in getattr(backend, "factor_kinds", ("cholesky", "eigh")):
        raise UnsupportedOptionError(f"backend={name!r} solves by Cholesky only, got solver='min_norm' (use "
                                     "backend='scipy' for the minimum-norm solve).")
    if problem.solver == "min_norm" and opts.dtype == "float32":
        raise UnsupportedOptionError(
            "SolveOptions(dtype='float32') cannot hold with solver='min_norm': the eigendecomposition is float64 "
            "(a float32 one would not separate the null space at float64's resolution). Remedy: dtype=None or "
            "'float64', or solver='cholesky' for a float32 factor.")
    if opts.storage == "disk":
        if "disk" not in getattr(backend, "storage_kinds", ("memory",)):
            raise UnsupportedOptionError(f"SolveOptions(storage='disk') cannot hold on backend={name!r}: its factor "
                                         "lives in its own memory. Remedy: backend='scipy' (the out-of-core factor), "
                                         "or storage='auto'.")
        if problem.solver == "min_norm":
            raise UnsupportedOptionError("SolveOptions(storage='disk') cannot hold with solver='min_norm': the "
                                         "eigendecomposition is in RAM (n <= EIGH_MAX_N). Remedy: solver='cholesky' "
                                         "or 'auto', or storage='auto'.")
    hook = getattr(backend, "refuse", None)
    if hook is not None:
        hook(problem)


def _run(backend, problem: Problem, route: str, trace: dict) -> Solution:
    """plan -> operator -> factor -> iterate, with the one float64 retry of a failed float32 route."""
    opts, n, d, k = problem.options, problem.n, problem.d, problem.k
    A, kern, ridge = problem.A, problem.kernel, problem.ridge
    timings = {"kernel": 0.0}
    plan = _check_plan(backend, backend.plan(n, d, k, opts, solver=route), problem, route, opts)
    t0 = time.perf_counter()
    operator = _checked(backend, "operator", backend.operator(A, kern, plan, ridge), None, ("matvec",))
    timings["kernel"] += time.perf_counter() - t0
    _check_operator(backend, operator, ridge, opts)

    def attempt(plan, opts):
        trace["factor_dtype"] = np.dtype(plan.factor_dtype).name
        t0 = time.perf_counter()
        factor = _checked(backend, "factor", backend.factor(A, kern, plan, ridge), None, ("solve",))
        _check_factor(backend, factor, plan)
        built = time.perf_counter() - t0
        secs = float(getattr(factor, "seconds", None) or built)
        timings["factor"] = secs
        timings["kernel"] += max(0.0, built - secs)
        t0 = time.perf_counter()
        with _guard(backend, "the float64 iteration"):
            res, cert = iterate(operator, factor, problem.Y, opts, backend_name=backend.name,
                                verbose=problem.verbose, stacklevel=7)
        timings["refine"] = time.perf_counter() - t0
        return factor, res, cert

    notes: tuple = ()
    try:
        factor, res, cert = attempt(plan, opts)
    except (NotPositiveDefiniteError, ConvergenceError) as exc:
        if route != "cholesky" or not float64_retry_allowed(opts, plan.factor_dtype):
            raise
        if getattr(plan, "storage", "memory") == "disk":
            # a float64 factor on disk takes twice the disk and the time: the out-of-core factor's own fallback
            # is the diagonal shift (solvers/_scipy_backend.DISK_SHIFTS), already tried when it breaks down
            raise restated(exc, f"{exc} (The factor was out of core: no float64 refactor is tried, it would need "
                                 "twice the disk and the time; the diagonal-shift preconditioner was the fallback.)"
                            ) from exc
        log.warning("mixed precision failed (%s: %s); dtype=None policy: refactoring in float64",
                    type(exc).__name__, str(exc).split(":")[0])
        # the operator is kept (its storage stays counted); only the factor changes dtype
        opts64 = replace(opts, dtype="float64", store_kernel=None if problem.precomputed else (
            str(operator.mode) == "stored"))
        try:
            plan = _check_plan(backend, backend.plan(n, d, k, opts64, solver=route), problem, route, opts64)
        except MemoryBudgetError as mem:
            raise restated(exc, f"{exc} The dtype=None fallback to a float64 factor was not possible: {mem}") from exc
        factor, res, cert = attempt(plan, opts)
        notes = (f"dtype=None: the float32 route failed ({type(exc).__name__}); solved with a float64 factor",)
    shift = float(getattr(factor, "diagonal_shift", 0.0) or 0.0)
    if shift:
        notes += (f"the out-of-core float32 factor broke down on K; K + {shift:.3g} I (a diagonal shift) was factored "
                  "instead and used as the preconditioner: alpha solves the unshifted system (certified below)",)
    if opts.certificate == "bound" and cert.method == "direct":
        bound = "none" if cert.relative_residual_bound is None else f"{cert.relative_residual_bound:.2e}"
        notes += (f"certificate='bound': the proven bound carried through CG did not reach tol {opts.tol:.1e} "
                  f"before the iteration ended; alpha is certified by the verifying direct product "
                  f"(residual {cert.relative_residual:.2e}, proven bound {bound})",)
    return Solution(alpha=res.alpha, residual=res.residual, certificate=cert, factor=factor, operator=operator,
                    plan=plan, timings=timings, notes=notes)


def _checked(backend, method: str, value, kind, callables):
    """``value`` when ``backend.<method>()`` returned what the Backend protocol asks, else InvalidInputError."""
    ok = (kind is None or isinstance(value, kind)) and all(callable(getattr(value, c, None)) for c in callables)
    if not ok:
        want = kind.__name__ if kind is not None else "an object with " + ", ".join(f".{c}()" for c in callables)
        raise InvalidInputError(
            f"backend {getattr(backend, 'name', backend)!r}: {method}() returned {type(value).__name__}, not {want} "
            "(the Backend protocol: plan -> kernelgen.solvers.Plan, operator -> a KernelOperator with matvec, "
            "factor -> a Factor with solve).")
    return value


def _protocol_error(backend, what: str) -> InvalidInputError:
    return InvalidInputError(f"backend {getattr(backend, 'name', backend)!r} breaks the Backend protocol: {what} "
                             "(kernelgen.solvers.Backend; ARCHITECTURE.md, 'A new backend').")


def _check_plan(backend, plan, problem: Problem, route: str, opts):
    """The plan is a Plan for this problem, on this route, in the dtype the options ask (nothing asked is ignored)."""
    plan = _checked(backend, "plan", plan, Plan, ())
    path = "eigh" if route == "min_norm" else "cholesky"
    if plan.path != path or plan.n != problem.n:
        raise _protocol_error(backend, f"plan() returned path {plan.path!r} for n = {plan.n}; the solve asked for "
                                       f"{path!r} at n = {problem.n}")
    fdt = np.dtype(plan.factor_dtype)
    if fdt not in (np.float32, np.float64) or (path == "cholesky" and opts.dtype is not None
                                               and fdt != np.dtype(opts.dtype)):
        raise _protocol_error(backend, f"plan() chose a {fdt.name} factor where SolveOptions(dtype={opts.dtype!r}) "
                                       "asks for float32/float64 as given")
    return plan


def _check_operator(backend, operator, ridge: float, opts) -> None:
    """The operator applies K + ridge I for the ridge asked, and proves a bound where certificate='bound' needs one."""
    op_ridge = getattr(operator, "ridge", None)
    if op_ridge is None or float(op_ridge) != float(ridge):
        raise _protocol_error(backend, f"operator() has ridge {op_ridge!r}, the solve asked for ridge={ridge!r}: the "
                                       "certifying product must be (K + ridge I) V with the ridge asked")
    if opts.certificate == "bound":
        g = operator.error_bound() if callable(getattr(operator, "error_bound", None)) else None
        if g is None:
            why = getattr(operator, "no_bound_reason", lambda: None)() or "its error_bound() is None"
            raise UnsupportedOptionError(f"SolveOptions(certificate='bound') cannot hold on backend "
                                         f"{getattr(backend, 'name', backend)!r}: {why}. Remedy: "
                                         "certificate='direct'.")
        if not (0.0 <= float(g) < 0.5):
            raise _protocol_error(backend, f"operator().error_bound() returned {g!r}, not a relative error in [0, 0.5)")


def _check_factor(backend, factor, plan) -> None:
    """The factor is of the plan's kind (Cholesky / eigh) and dtype."""
    kind = getattr(factor, "kind", None)
    want = "eigh" if plan.path == "eigh" else "cholesky"
    if kind != want:
        raise _protocol_error(backend, f"factor() returned a factor of kind {kind!r}; the plan's path needs {want!r}")
    if want == "cholesky" and np.dtype(getattr(factor, "dtype", None) or "O") != np.dtype(plan.factor_dtype):
        raise _protocol_error(backend, f"factor() returned dtype {getattr(factor, 'dtype', None)!r}; the plan "
                                       f"chose {np.dtype(plan.factor_dtype).name}")
    if want == "eigh" and not all(hasattr(factor, a) for a in ("rank", "rank_tol", "condition_number",
                                                                 "matrix_dtype", "shape")):
        raise _protocol_error(backend, "factor() returned an eigh factor without rank, rank_tol, condition_number, "
                                       "matrix_dtype and shape (use kernelgen.factors.EighFactor.factor)")


def _guard(backend, phase: str):
    """The backend's guard around a phase the orchestration runs (MPI: an unexpected error on one process aborts
    the job instead of leaving the others waiting in a collective); a no-op by default."""
    guard = getattr(backend, "guard", None)
    return guard(phase) if guard is not None else contextlib.nullcontext()


def _auto_refusal(problem: Problem, backend, trace) -> str:
    """Why the solve cannot take the min-norm route after a NotPositiveDefiniteError ('' when it can)."""
    opts = problem.options
    if problem.solver != "auto":
        return f" (solver={problem.solver!r}: no other route is tried.)"
    if "eigh" not in getattr(backend, "factor_kinds", ("cholesky", "eigh")):
        return f" solver='auto' cannot take the min-norm route on backend={backend.name!r} (Cholesky only)."
    if trace.get("factor_dtype") != "float64":
        if opts.dtype == "float32":
            return (" solver='auto' takes the min-norm route only when a float64 factor fails, and "
                    "SolveOptions(dtype='float32') asked for a float32 one.")
        if not opts.float64_retry:
            return (" solver='auto' takes the min-norm route only when a float64 factor fails, and "
                    "SolveOptions(float64_retry=False) forbade the float64 retry of the float32 factor.")
        return (" solver='auto' could not take the min-norm route: it needs more memory than the float64 factor, "
                "which did not fit.")
    if opts.certificate == "bound":
        return (" solver='auto' cannot take the min-norm route with SolveOptions(certificate='bound'), which the "
                "min-norm solve cannot honour.")
    if opts.storage == "disk":
        return (" solver='auto' cannot take the min-norm route with SolveOptions(storage='disk'): the "
                "eigendecomposition is in RAM.")
    return ""


def not_pd_remedy(problem: Problem, backend, *, min_norm=True) -> str:
    """The kernel-aware remedy of a Cholesky breakdown (the factor's message does not know the kernel)."""
    kern, opts = problem.kernel, problem.options
    eigh_here = "eigh" in getattr(backend, "factor_kinds", ("cholesky", "eigh"))
    mn = (["solver='min_norm' (the minimum-norm interpolant K^+ Y" + (")" if eigh_here else ", on backend='scipy')")]
          if min_norm else [])
    ridge = ["an explicit ridge=... (reported on the result)"]
    f32 = ["SolveOptions(dtype='float64')"] if opts.dtype == "float32" else []
    if problem.precomputed:
        return "Remedy for this precomputed K: " + ", ".join(f32 + mn + ridge) + "."
    if getattr(kern, "stationary", False) and getattr(kern, "bandwidth", None) is not None:
        return (f"Remedy for {kern!r}: K of a stationary kernel is numerically singular when the bandwidth is "
                "large against the distances between points (K tends to all ones) or points repeat: a SMALLER "
                "bandwidth, " + ", ".join(f32 + ridge + mn) + ".")
    return f"Remedy for {kern!r}: " + ", ".join(f32 + ridge + mn) + "."
