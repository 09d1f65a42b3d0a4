"""Exact kernel interpolation K alpha = Y: the public entry point (private module).

:func:`kernel_interpolate` validates its arguments, picks a backend (:class:`ScipyBackend`,
:class:`JaxBackend` or :class:`MpiBackend`, each a :class:`~kernelgen.solvers._backend.Backend`),
refuses what cannot be honoured, hands the :class:`~kernelgen.solvers._backend.Problem` to the one
orchestration (:func:`~kernelgen.solvers._orchestrate.orchestrate`) and packages its
:class:`~kernelgen.solvers._orchestrate.Solution` as a :class:`~kernelgen.KernelInterpolant`.

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
from dataclasses import replace

import numpy as np

from .._jax import accelerator_available
from .._validation import as_float_array
from ..errors import InvalidInputError, NonFiniteResultError, ShapeMismatchError, UnsupportedOptionError
from ..kernels import Precomputed, as_kernel
from ..numerics import check_symmetric
from ..options import SolveOptions
from ._backend import Problem
from ._jax_backend import JaxBackend
from ._mpi_backend import MpiBackend, mpi_agree
from ._orchestrate import orchestrate, refuse_unsupported
from ._result import KernelInterpolant, build_interpolant
from ._scipy_backend import ScipyBackend
from ._system import prepare_targets

log = logging.getLogger(__name__)

__all__ = ["kernel_interpolate", "make_backend"]

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
    backend : {"auto", "scipy", "jax", "mpi"} or Backend
        ``"auto"`` picks JAX when an accelerator is visible, the kernel has a JAX implementation
        (``Kernel.has_jax``) and no ``certificate="bound"`` is asked; else SciPy/LAPACK (tiled); the
        choice and its reason are logged. ``"mpi"``: ScaLAPACK under ``mpiexec -n P`` (collective;
        every process passes the same X, Y and sees the same ``KERNELGEN_MPI_*`` settings). An object
        implementing :class:`kernelgen.solvers.Backend` (``plan``, ``operator``, ``factor``) is
        driven by the same orchestration (see ARCHITECTURE.md, "A new backend").
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
        ``backend="jax"`` or a backend whose products prove no bound, with ``solver="min_norm"``, a
        precomputed K, or a kernel without a proven entry error bound; ``backend="mpi"`` with a
        precomputed K or ``solver="min_norm"``).
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
    >>> fit = kernel_interpolate(X, y, kernel=Gaussian(bandwidth=0.5))
    >>> bool(fit.relative_residual <= 1e-10), fit.solver, fit.ridge, fit.residual_certificate
    (True, 'cholesky', 0.0, 'direct')
    >>> bool(fit.relative_residual_bound <= 1e-10)  # the proven bound on the exact-arithmetic residual
    True

    A bandwidth large against the spacing of the points makes K ill-conditioned (here cond(K) is
    about 3e7 at s = 2 and the float64 residual's own rounding floor is near 1e-10): the solver then
    says so with :class:`~kernelgen.errors.ConvergenceError` and its remedies instead of returning.
    """
    custom = not isinstance(backend, str)
    if custom and (not all(callable(getattr(backend, m, None)) for m in ("plan", "operator", "factor"))
                   or not isinstance(getattr(backend, "name", None), str) or isinstance(backend, type)):
        raise InvalidInputError(f"backend must be one of {BACKENDS} or an object implementing the Backend protocol "
                                f"(an instance with a str name, plan, operator, factor; kernelgen.solvers.Backend), "
                                f"got {backend!r}")
    if not custom and backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")

    def validate():
        v = _validate_inputs(X, Y, kernel=kernel, ridge=ridge, solver=solver, options=options)
        bk = backend if custom else make_backend(_choose_backend(backend, v[1], v[2], v[0]), precomputed=v[2],
                                                  options=v[0], verbose=verbose)
        problem = Problem(A=v[3], Y=v[8], kernel=v[1], ridge=v[7], precomputed=v[2], solver=solver, options=v[0],
                          verbose=verbose)
        _check_supported(bk, problem)
        return v + (bk, problem)

    # under mpiexec every process validates its own copy, and they agree: one refusing alone would hang the others
    opts, kern, precomputed, A, X64, n, d, ridge, Y2, squeeze, bk, problem = (
        mpi_agree(validate) if backend == "mpi" else validate())
    sol = orchestrate(bk, problem)
    fit = build_interpolant(sol, Y2, squeeze, kern, X64, A if precomputed else None, ridge, opts)
    log.info("kernel_interpolate: n=%d solver=%s backend=%s factor=%s residual %.3e in %.1f s",
             n, fit.solver, fit.backend, fit.factor_dtype, fit.relative_residual, fit.timings["total"])
    return fit


def make_backend(name: str, *, precomputed: bool, options, verbose: bool = False):
    """A fresh backend instance of ``name`` ("scipy", "jax" or "mpi") for one solve."""
    if name == "jax":
        return JaxBackend(precomputed=precomputed, options=options, verbose=verbose)
    if name == "mpi":
        return MpiBackend(options=options, verbose=verbose)
    return ScipyBackend(precomputed=precomputed, options=options, verbose=verbose)


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
        log.info("backend='auto' chose 'scipy': SolveOptions(certificate='bound') needs products with a proven "
                 "error bound, which the JAX backend's device entries do not have")
        return "scipy"
    log.info("backend='auto' chose 'jax' (an accelerator is visible)")
    return "jax"


def _check_supported(bk, problem):
    """Refuse, before any n x n work, an option the backend, solver or kernel cannot honour (never ignore it)."""
    refuse_unsupported(bk, problem)  # the route's and the backend's own refusals
    name, opts, kern, solver = bk.name, problem.options, problem.kernel, problem.solver
    precomputed, A = problem.precomputed, problem.A
    if opts.certificate != "bound":
        return
    what = "SolveOptions(certificate='bound')"
    if not getattr(bk, "bound_capable", False):
        why = ("its float64 kernel entries come from matrix_jax, which has no proven error bound" if name == "jax"
               else "its operator does not declare products with a proven error bound (bound_capable)")
        raise UnsupportedOptionError(
            f"{what} cannot hold on backend={name!r}: {why}. Remedy: backend='scipy' or 'mpi' (entries with a "
            "proven bound), or certificate='direct' (the direct float64 residual).")
    if opts.refinement != "cg":
        raise UnsupportedOptionError(
            f"{what} cannot hold with SolveOptions(refinement={opts.refinement!r}): the bound is carried through the "
            "CG recursion only (plain refinement verifies each step by a direct product). Remedy: refinement='cg', "
            "or certificate='direct'.")
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
