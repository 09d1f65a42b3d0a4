"""Learning curves of exact kernel interpolation, at the price of one factor.

:func:`learning_curve` measures, for every training-set size ``n`` of a curve, the test error and
test MSE of the exact (ridge) interpolant on ``n`` training points, its RKHS norm and the certified
float64 relative residual -- each point certified as :func:`kernelgen.kernel_interpolate` certifies a
solve (a direct float64 product with the kernel's own entries, independent of the factor, to
``options.tol``; the same iteration, :class:`~kernelgen.solvers.Certificate` and
:class:`~kernelgen.KernelInterpolant`).

``subsets="nested"`` (one seeded permutation per seed, then its prefixes): the Cholesky factor of the
leading ``n x n`` block of ``K`` is the leading block of the factor of ``K`` (Golub & Van Loan, Matrix
Computations, 4th ed., §4.2.2), so ONE factor of the largest system
(:meth:`kernelgen.factors.CholeskyFactor.leading`) preconditions the float64 iteration of every smaller
prefix. And the prefixes' float64 products are nested too: ``K[:n, :n] v`` is the first ``n`` rows of ``K``
times ``v`` padded with zeros, so the iterations of all prefixes run in lockstep, each float64 pass ONE
product of the largest kernel with every prefix's column block (the same :func:`~kernelgen.solvers.refine`,
on an operator that is ``K[:n_j, :n_j] + ridge I`` on block j's first ``n_j`` rows and the identity below;
block j's targets scaled by a power of two to a norm in [0.5, 1), the joint tolerance ``tol / (2 sqrt(G))``
for G sizes bounds every block's own relative residual by ``tol``). Each point is then certified by its own
rows of the verifying direct float64 product -- computed from the kernel's entries independently of the
factor, as for a lone solve -- and packaged as :func:`kernelgen.kernel_interpolate` packages a solve (the
same ``build_interpolant``; its proven bound, where the products carry one, is the joint bound read for its
share). A curve therefore costs one kernel fill, one factorisation and about one solve's float64 passes at
the largest n (each pass a little dearer: more columns), plus every point's certification and test
predictions. If the shared passes do not converge, every prefix iterates alone (logged; ``notes``);
``SolveOptions(certificate="bound")`` (a bound carried per system) also iterates each prefix alone. The
factor's dtype is the one the dtype policy gives the LARGEST ``n`` (float32 above
``options.float64_max_n``): a small prefix is then preconditioned by a float32 block where a lone solve
would factor in float64 -- its certificate is the same. The float64 operator of a prefix iterating alone is
the leading block of the stored float64 triangle when the planner keeps one
(:meth:`kernelgen.factors.LowerPanels.leading`), else recomputed on the fly. If the float32 factor breaks
down or a prefix's iteration does not converge, the whole curve is refactored once in float64 where the
options and memory allow it (the rule of :func:`kernelgen.options.float64_retry_allowed`; logged and said in
``notes``). The nested route is the SciPy backend's in-RAM Cholesky: an out-of-core plan is refused (named
error with remedies).

``subsets="independent"`` (fresh draws per size and seed, as Spigler et al. average learning
curves): every point is its own :func:`kernelgen.kernel_interpolate` solve (its own factor,
``solver="auto"``, the backend ``"auto"`` picks).

Seeds. Nested, seed ``s``: rows ``numpy.random.default_rng(s).permutation(N)[:n]``. Independent,
seed ``s`` and size ``n``: ``numpy.random.default_rng([s, n]).choice(N, n, replace=False)`` (a
different stream for every pair; reproducible). The rows of every point are on the result.

Targets and metrics. Class labels (integer, boolean or string ``Y`` of shape (n,) or (n, 1)) are
one-hot encoded by the project's one rule (:func:`kernelgen.random_features.encode_targets`; the test
labels on the training classes) and make the task "classification". Float targets are solved as
given, and the task only decides which metrics are reported: ``task=None`` infers it from ``Y`` and
``Y_test`` (:func:`infer_target_task`): "classification" for one-hot rows (two distinct values over
all targets, exactly one row entry at the larger: also the shifted one-hot of Lee et al. 2018, -0.1 /
0.9) or a single column of +-a labels; "regression" otherwise. The test error of a classification is
the fraction of test points whose predicted class -- the argmax over columns, or the sign of a single
column -- differs from the target's; a regression has no test error (None). The test MSE is the mean
over test points of the squared error summed over target columns, ``mean_i ||f(x_i) - y_i||^2`` (of
the one-hot columns for class labels).

:func:`fit_exponent` fits the power law ``err ~ C n^slope`` by ordinary least squares on
``(log n, log err)``; :func:`plot_learning_curve` draws the curve log-log with that fit.

References
----------
S. Spigler, M. Geiger, M. Wyart. Asymptotic learning curves of kernel methods: empirical data versus
teacher-student paradigm. J. Stat. Mech. (2020) 124001 (arXiv:1905.10843), Fig. 1 (test MSE against
n, averaged over independent subsets; exponents fitted on the last decade).
B. Bordelon, A. Canatar, C. Pehlevan. Spectrum dependent learning curves in kernel regression and wide
neural networks. ICML 2020 (PMLR 119).

Length: one topic kept whole -- the two routes share their validation, metrics and result types, the
nested route its factor and shared-pass bookkeeping, and the exponent fit and figure read those types.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm.auto import tqdm

from . import cli
from ._validation import as_float_array, is_int
from .errors import (
    ConvergenceError,
    InvalidInputError,
    MemoryBudgetError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
    UnsupportedOptionError,
    restated,
)
from .kernels import Precomputed, as_kernel
from .numerics import relative_norm, safe_norm
from .options import SolveOptions, float64_retry_allowed
from .provenance import provenance
from .random_features import encode_targets
from .random_features import infer_task as label_task
from .solvers import Certificate, RefinementResult, ScipyBackend, kernel_interpolate, refine
from .solvers._backend import OperatorMode, Problem
from .solvers._interpolate import _check_supported, _validate_inputs
from .solvers._orchestrate import Solution, iterate
from .solvers._result import build_interpolant
from .solvers._system import KernelSystem

log = logging.getLogger(__name__)

__all__ = ["SUBSETS", "CurvePoint", "LearningCurve", "fit_exponent", "infer_target_task", "learning_curve",
           "plot_learning_curve"]

#: The two ways of drawing the training sets of a curve (module docstring).
SUBSETS = ("nested", "independent")
_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class CurvePoint:
    """One point of a learning curve: one exact solve on ``n`` training points.

    Attributes
    ----------
    n, seed : int
    test_error : float or None
        Fraction of misclassified test points (None for regression; module docstring).
    test_mse : float
        ``mean_i ||f(x_i) - y_i||^2`` over the test set.
    rkhs_norm : float
        ``sqrt(sum_j alpha_j^T K alpha_j)`` of the interpolant (:attr:`KernelInterpolant.rkhs_norm`).
    relative_residual : float
        The certified float64 ``||Y - (K + ridge I) alpha||_F / ||Y||_F``.
    float64_passes : int
        float64 kernel passes of the iteration (:attr:`KernelInterpolant.n_matvecs`; nested with shared
        passes: the passes every prefix shared, each one product with the largest kernel).
    seconds : float
        Wall time of this point: its certification and test predictions, and its own iteration where it
        had one (nested: the shared kernel, factor and shared passes are counted once, on the curve).
    factor_dtype, solver : str
        What preconditioned / solved it.
    rows : ndarray of shape (n,), int64
        The training rows of ``X`` used, in order (read-only).
    notes : tuple of str
    """

    n: int
    seed: int
    test_error: float | None
    test_mse: float
    rkhs_norm: float
    relative_residual: float
    float64_passes: int
    seconds: float
    factor_dtype: str
    solver: str
    rows: np.ndarray = field(repr=False, compare=False)
    notes: tuple = ()

    def to_dict(self) -> dict:
        """JSON-serialisable fields (without ``rows``)."""
        return {"n": self.n, "seed": self.seed, "test_error": self.test_error, "test_mse": self.test_mse,
                "rkhs_norm": self.rkhs_norm, "relative_residual": self.relative_residual,
                "float64_passes": self.float64_passes, "seconds": self.seconds, "factor_dtype": self.factor_dtype,
                "solver": self.solver, "notes": list(self.notes)}


@dataclass(frozen=True)
class LearningCurve:
    """The result of :func:`learning_curve` (immutable).

    Attributes
    ----------
    points : tuple of CurvePoint
        Seed by seed, each in increasing ``n``.
    sizes, seeds : tuple of int
    subsets : {"nested", "independent"}
    task : {"classification", "regression"}
    kernel : Kernel
        The kernel every point used (data-dependent defaults resolved once, on all of ``X``).
    ridge : float
    n_test : int
    n_factors : int
        Factorisations computed: nested, one per seed (plus one per float64 retry); independent, one per
        point (plus its retries).
    kernel_seconds, factor_seconds : float
        Nested: the shared kernel fill(s) and factorisation(s); independent: the sums over the solves.
    shared_iteration_seconds : float
        Nested: the float64 iteration shared by all prefixes (module docstring); 0 otherwise.
    total_seconds : float
        The whole call.
    options : SolveOptions
    notes : tuple of str
        Decisions taken for the curve (a float64 retry of the shared factor).
    """

    points: tuple
    sizes: tuple
    seeds: tuple
    subsets: str
    task: str
    kernel: object
    ridge: float
    n_test: int
    n_factors: int
    kernel_seconds: float
    factor_seconds: float
    shared_iteration_seconds: float
    total_seconds: float
    options: SolveOptions = field(repr=False, default_factory=SolveOptions)
    notes: tuple = ()

    def column(self, name: str) -> np.ndarray:
        """One attribute of every point, in the order of :attr:`points` (None becomes NaN).

        Raises
        ------
        InvalidInputError
            ``name`` is not a numeric field of :class:`CurvePoint`.
        """
        numeric = ("n", "seed", "test_error", "test_mse", "rkhs_norm", "relative_residual", "float64_passes",
                   "seconds")
        if name not in numeric:
            raise InvalidInputError(f"column name must be one of {numeric}, got {name!r}.")
        return np.array([np.nan if getattr(p, name) is None else getattr(p, name) for p in self.points],
                        dtype=np.float64)

    def mean_over_seeds(self, name: str):
        """(sizes, mean, standard deviation over seeds) of one numeric field, each of shape (len(sizes),).

        The standard deviation is the sample one (``ddof=1``), 0 with a single seed.
        """
        n, v = self.column("n"), self.column(name)
        means, stds = [], []
        for s in self.sizes:
            vals = v[n == s]
            means.append(float(np.mean(vals)))
            stds.append(float(np.std(vals, ddof=1)) if vals.size > 1 else 0.0)
        return np.array(self.sizes, dtype=np.float64), np.array(means), np.array(stds)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (the points without their rows)."""
        return {"subsets": self.subsets, "task": self.task, "kernel": self.kernel.to_dict(), "ridge": self.ridge,
                "sizes": list(self.sizes), "seeds": list(self.seeds), "n_test": self.n_test,
                "n_factors": self.n_factors, "kernel_seconds": self.kernel_seconds,
                "factor_seconds": self.factor_seconds, "shared_iteration_seconds": self.shared_iteration_seconds,
                "total_seconds": self.total_seconds,
                "notes": list(self.notes), "points": [p.to_dict() for p in self.points]}


# ---------------------------------------------------------------------------------------------- validation
def infer_target_task(Y, Y_test=None) -> str:
    """"classification" or "regression" for float targets (the rule of the module docstring).

    Parameters
    ----------
    Y : array of shape (n,) or (n, k)
    Y_test : array of shape (m,) or (m, k), optional
        Judged together with ``Y`` (both must look like class targets).

    Returns
    -------
    {"classification", "regression"}

    Examples
    --------
    >>> import numpy as np
    >>> [infer_target_task(y) for y in (np.eye(3), np.array([-1.0, 1.0, 1.0]), np.array([0.5, 2.0]))]
    ['classification', 'classification', 'regression']
    """
    parts = [np.asarray(a, dtype=np.float64) for a in (Y, Y_test) if a is not None]
    parts = [a.reshape(a.shape[0], -1) for a in parts]
    vals = np.unique(np.concatenate([np.unique(a) for a in parts]))
    if vals.size != 2:
        return "regression"
    if parts[0].shape[1] == 1:
        return "classification" if vals[0] == -vals[1] else "regression"
    hi = vals[1]
    ok = all(np.all(np.count_nonzero(a == hi, axis=1) == 1) for a in parts)
    return "classification" if ok else "regression"


def _sizes(sizes, N: int) -> tuple:
    vals = list(sizes) if isinstance(sizes, (list, tuple, range, np.ndarray)) else None
    if not vals or not all(is_int(v) for v in vals):
        raise InvalidInputError(f"sizes must be a non-empty sequence of integers, got {sizes!r}.")
    vals = [int(v) for v in vals]
    if any(b <= a for a, b in itertools.pairwise(vals)):
        raise InvalidInputError(f"sizes must be strictly increasing, got {vals}.")
    if vals[0] < 1 or vals[-1] > N:
        raise InvalidInputError(f"sizes must lie in [1, {N}] (the rows of X), got {vals[0]} ... {vals[-1]}.")
    return tuple(vals)


def _seeds(seeds) -> tuple:
    vals = [seeds] if is_int(seeds) else list(seeds) if isinstance(seeds, (list, tuple, np.ndarray)) else None
    if not vals or not all(is_int(s) and int(s) >= 0 for s in vals):
        raise InvalidInputError(f"seeds must be an integer >= 0 or a non-empty sequence of them, got {seeds!r}.")
    vals = [int(s) for s in vals]
    if len(set(vals)) != len(vals):
        raise InvalidInputError(f"seeds must be distinct (a repeated seed repeats its curve), got {vals}.")
    return tuple(vals)


def _validate(X, Y, X_test, Y_test, kernel, sizes, ridge, subsets, seeds, options, task):
    if subsets not in SUBSETS:
        raise InvalidInputError(f"subsets must be one of {SUBSETS}, got {subsets!r}.")
    if task is not None and task not in _TASKS:
        raise InvalidInputError(f"task must be None, 'classification' or 'regression', got {task!r}.")
    X64 = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    Xt = as_float_array(X_test, "X_test", ndim=(2,), dtype=np.float64)
    if task != "regression" and label_task(np.asarray(Y)) == "classification":
        # class labels (integer, boolean, string): one-hot by the project's one rule, test labels on the same classes
        enc = encode_targets(Y, task="classification", name="Y")
        Y2, task = enc.Y, "classification"
        Yt = encode_targets(Y_test, task="classification", classes=enc.classes, name="Y_test").Y
    else:
        Y2 = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
        Yt = as_float_array(Y_test, "Y_test", ndim=(1, 2), dtype=np.float64)
    Y2, Yt = Y2.reshape(Y2.shape[0], -1), Yt.reshape(Yt.shape[0], -1)
    if Y2.shape[0] != X64.shape[0]:
        raise ShapeMismatchError(f"X has {X64.shape[0]} rows but Y has {Y2.shape[0]}; they must match.")
    if Yt.shape[0] != Xt.shape[0]:
        raise ShapeMismatchError(f"X_test has {Xt.shape[0]} rows but Y_test has {Yt.shape[0]}; they must match.")
    if Xt.shape[1] != X64.shape[1]:
        raise ShapeMismatchError(f"X_test has {Xt.shape[1]} features, X has {X64.shape[1]}.")
    if Yt.shape[1] != Y2.shape[1]:
        raise ShapeMismatchError(f"Y_test has {Yt.shape[1]} target columns, Y has {Y2.shape[1]}.")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.integer, np.floating)) \
            or not np.isfinite(ridge) or ridge < 0:
        raise InvalidInputError(f"ridge must be a finite number >= 0, got {ridge!r}.")
    kern = as_kernel(kernel)
    if isinstance(kern, Precomputed):
        raise InvalidInputError("learning_curve needs X and a Kernel (it draws subsets of X and predicts X_test); a "
                                "precomputed K is not supported.")
    kern = kern.resolve(X64)  # data-dependent defaults chosen once, on all of X: the same kernel at every n
    task = infer_target_task(Y2, Yt) if task is None else task
    if task == "classification" and Yt.shape[1] == 1 and np.any(Yt == 0):
        raise InvalidInputError("task='classification' with one target column reads the class as the sign of "
                                "Y_test, and Y_test has zeros: use +-1 labels or one-hot columns.")
    return (X64, Y2, Xt, Yt, kern, _sizes(sizes, X64.shape[0]), float(ridge), _seeds(seeds),
            SolveOptions.coerce(options), task)


def _metrics(P, Yt, task):
    mse = float(np.mean(np.sum((P - Yt) ** 2, axis=1)))
    if task == "regression":
        return None, mse
    if Yt.shape[1] == 1:
        wrong = np.sign(P[:, 0]) != np.sign(Yt[:, 0])
    else:
        wrong = np.argmax(P, axis=1) != np.argmax(Yt, axis=1)
    return float(np.mean(wrong)), mse


def _readonly(a):
    a = np.asarray(a, dtype=np.int64)
    a.setflags(write=False)
    return a


# ---------------------------------------------------------------------------------------------- the curve
def learning_curve(X, Y, X_test, Y_test, *, kernel, sizes, ridge: float = 0.0, subsets: str = "nested",
                   seeds=(0,), options: SolveOptions | dict | None = None, task: str | None = None,
                   verbose: bool = False) -> LearningCurve:
    """Test error, test MSE, RKHS norm and certified residual of the exact interpolant at every n of a curve.

    ``subsets="nested"`` shares one Cholesky factor of the largest system among all sizes (per
    seed); ``"independent"`` solves every size and seed on its own draw (module docstring: the
    factor, the dtype, the seeds, the task rule and the metrics).

    Parameters
    ----------
    X : array of shape (N, d)
        Training pool; the curve's subsets are drawn from its rows.
    Y : array of shape (N,) or (N, k)
        Float targets (one-hot or +-1 rows for a classification, any real values for a regression), or
        class labels (integer, boolean, string), one-hot encoded (module docstring).
    X_test : array of shape (m, d)
    Y_test : array of shape (m,) or (m, k)
    kernel : Kernel or str
        Resolved once on all of ``X`` (e.g. the median-heuristic bandwidth of ``"gaussian"``).
    sizes : sequence of int
        Strictly increasing, in ``[1, N]``.
    ridge : float
        Added to the diagonal at every size (0: interpolation).
    subsets : {"nested", "independent"}
    seeds : int or sequence of int
        Distinct, >= 0: one curve per seed.
    options : SolveOptions or dict, optional
        Passed whole to every solve (tolerance, dtype policy, memory budget, certificate, ...).
    task : {None, "classification", "regression"}
        None infers it (:func:`infer_target_task`).
    verbose : bool
        Progress bars (the curve's points; with the solves' own bars).

    Returns
    -------
    LearningCurve

    Raises
    ------
    InvalidInputError, ShapeMismatchError, NonFiniteInputError
        Bad shapes, NaN or infinity, sizes not strictly increasing or outside ``[1, N]``, unknown
        ``subsets`` or ``task``, repeated or negative seeds, a precomputed kernel, a negative ridge, test
        labels outside the training classes.
    UnsupportedOptionError
        An option a solve cannot honour (as :func:`kernelgen.kernel_interpolate` refuses it); nested:
        a plan that puts the factor on disk (``SolveOptions(storage="disk")``, or too little RAM).
    MemoryBudgetError, NotPositiveDefiniteError, ConvergenceError, NonFiniteResultError
        As :func:`kernelgen.kernel_interpolate` raises them (nested: for the largest system; the
        shared float32 factor is retried once in float64 where allowed).

    References
    ----------
    Spigler, Geiger & Wyart, J. Stat. Mech. (2020) 124001, Fig. 1; Bordelon, Canatar & Pehlevan, ICML 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelgen.kernels import Gaussian
    >>> rng = np.random.default_rng(0)
    >>> X, Xt = rng.normal(size=(300, 10)), rng.normal(size=(100, 10))
    >>> y, yt = np.sign(X[:, 0] + 0.3 * X[:, 1]), np.sign(Xt[:, 0] + 0.3 * Xt[:, 1])
    >>> lc = learning_curve(X, y, Xt, yt, kernel=Gaussian(bandwidth=2.0), sizes=[50, 100, 300])
    >>> lc.task, lc.n_factors, [p.n for p in lc.points]
    ('classification', 1, [50, 100, 300])
    >>> all(p.relative_residual <= 1e-10 for p in lc.points)
    True
    """
    t_start = time.perf_counter()
    X64, Y2, Xt, Yt, kern, sizes, ridge, seeds, opts, task = _validate(
        X, Y, X_test, Y_test, kernel, sizes, ridge, subsets, seeds, options, task)
    prov = provenance()
    log.info("learning_curve: %s subsets, sizes %s, %d seed(s), %r, ridge %g, task %s, %d test points",
             subsets, list(sizes), len(seeds), kern, ridge, task, Xt.shape[0])
    points: list = []
    notes: list = []
    totals = {"kernel": 0.0, "factor": 0.0, "iteration": 0.0, "factors": 0}
    with tqdm(total=len(sizes) * len(seeds), desc=f"learning curve ({subsets})", unit="point",
              disable=not verbose) as bar:
        for seed in seeds:
            if subsets == "nested":
                _nested(X64, Y2, Xt, Yt, kern, sizes, seed, ridge, opts, task, verbose, prov, points, notes, totals,
                        bar)
            else:
                _independent(X64, Y2, Xt, Yt, kern, sizes, seed, ridge, opts, task, verbose, points, totals, bar)
    total = time.perf_counter() - t_start
    log.info("learning_curve: %d points, %d factor(s), %.1f s", len(points), totals["factors"], total)
    return LearningCurve(points=tuple(points), sizes=sizes, seeds=seeds, subsets=subsets, task=task, kernel=kern,
                         ridge=ridge, n_test=int(Xt.shape[0]), n_factors=int(totals["factors"]),
                         kernel_seconds=float(totals["kernel"]), factor_seconds=float(totals["factor"]),
                         shared_iteration_seconds=float(totals["iteration"]), total_seconds=float(total),
                         options=opts, notes=tuple(notes))


def _independent(X64, Y2, Xt, Yt, kern, sizes, seed, ridge, opts, task, verbose, points, totals, bar):
    """Every size its own kernel_interpolate solve on a fresh draw (module docstring: the seeds)."""
    N = X64.shape[0]
    for n in sizes:
        t0 = time.perf_counter()
        rows = np.random.default_rng([seed, n]).choice(N, n, replace=False)
        fit = kernel_interpolate(X64[rows], Y2[rows], kernel=kern, ridge=ridge, options=opts, verbose=verbose)
        err, mse = _metrics(np.asarray(fit.predict(Xt, verbose=verbose)).reshape(Xt.shape[0], -1), Yt, task)
        retried = sum(1 for s in fit.notes if s.startswith(("dtype=None: the float32 route failed", "solver='auto'")))
        totals["factors"] += 1 + retried
        totals["kernel"] += float(fit.timings.get("kernel", 0.0))
        totals["factor"] += float(fit.timings.get("factor", 0.0))
        points.append(CurvePoint(n=n, seed=seed, test_error=err, test_mse=mse, rkhs_norm=float(fit.rkhs_norm),
                                 relative_residual=float(fit.relative_residual), float64_passes=int(fit.n_matvecs),
                                 seconds=time.perf_counter() - t0, factor_dtype=str(fit.factor_dtype),
                                 solver=str(fit.solver), rows=_readonly(rows), notes=tuple(fit.notes)))
        _log_point(points[-1])
        bar.update(1)


def _log_point(p: CurvePoint) -> None:
    err = "" if p.test_error is None else f"test error {100 * p.test_error:.2f}%, "
    log.info("  n=%d seed=%d: %stest MSE %.4g, RKHS norm %.4g, residual %.2e, %d passes, %.1f s", p.n, p.seed, err,
             p.test_mse, p.rkhs_norm, p.relative_residual, p.float64_passes, p.seconds)


class _Shared:
    """The nested curve's shared objects: the backend, the largest system's operator and its factor."""

    def __init__(self, X, Y, kern, ridge, opts, verbose, totals, notes, *, columns):
        self.X, self.kern, self.ridge, self.verbose = X, kern, ridge, verbose
        self.totals, self.notes = totals, notes
        # the plan counts the iteration's vectors for every column it will carry (all prefixes' when shared)
        self.n, self.d, self.k = X.shape[0], X.shape[1], int(columns)
        self.backend = ScipyBackend(precomputed=False, options=opts, verbose=verbose)
        _check_supported(self.backend, Problem(A=X, Y=Y, kernel=kern, ridge=ridge, precomputed=False,
                                               solver="cholesky", options=opts, verbose=verbose))
        self.plan = self._plan(opts)
        t0 = time.perf_counter()
        self.operator = self.backend.operator(X, kern, self.plan, ridge)
        totals["kernel"] += time.perf_counter() - t0
        self.retried = False
        try:
            self.factor = self._factor(self.plan)
        except NotPositiveDefiniteError as exc:
            self.refactor64(opts, exc)

    def _plan(self, opts):
        plan = self.backend.plan(self.n, self.d, self.k, opts, solver="cholesky")
        if getattr(plan, "storage", "memory") == "disk":
            raise UnsupportedOptionError(
                f"a nested learning curve shares one in-RAM Cholesky factor of its largest system (n={self.n}), and "
                f"the planner put that factor on disk (SolveOptions(storage={opts.storage!r}); in RAM it needs "
                "more memory than the budget). Remedy: subsets='independent' (each size its own solve, out of core "
                "where needed), a smaller largest size, or more memory / memory_budget.")
        return plan

    def _factor(self, plan):
        t0 = time.perf_counter()
        f = self.backend.factor(self.X, self.kern, plan, self.ridge)
        built = time.perf_counter() - t0
        secs = float(getattr(f, "seconds", None) or built)
        self.totals["factor"] += secs
        self.totals["kernel"] += max(0.0, built - secs)
        self.totals["factors"] += 1
        if not callable(getattr(f, "leading", None)):  # pragma: no cover - the in-RAM plan gives a CholeskyFactor
            raise UnsupportedOptionError(f"the {type(f).__name__} factor has no leading block to share.")
        return f

    def refactor64(self, opts, exc):
        """The one float64 retry of a failed float32 route (the orchestration's rule), for the whole curve."""
        dtype = np.dtype(self.plan.factor_dtype)
        if self.retried or not float64_retry_allowed(opts, dtype):
            raise exc
        log.warning("learning curve: the shared %s factor failed (%s: %s); refactoring the largest system in "
                    "float64 (dtype=None policy)", dtype.name, type(exc).__name__, str(exc).split(":")[0])
        opts64 = replace(opts, dtype="float64", store_kernel=self.operator.mode == OperatorMode.STORED)
        self.factor = None  # free the float32 factor first
        try:
            self.plan = self._plan(opts64)
        except (MemoryBudgetError, UnsupportedOptionError) as mem:
            raise restated(exc, f"{exc} The dtype=None fallback to a float64 factor was not possible: {mem}") from exc
        self.factor = self._factor(self.plan)
        self.retried = True
        self.notes.append(f"dtype=None: the shared {dtype.name} factor failed ({type(exc).__name__}); the curve was "
                          "refactored in float64")

    def operator_for(self, n):
        """The float64 operator of the leading n x n system (the stored triangle's leading block, or on the fly)."""
        if n == self.n:
            return self.operator
        Xn = self.X[:n]
        if self.operator.mode == OperatorMode.STORED:
            return KernelSystem(self.kern, Xn, None, self.ridge, OperatorMode.STORED, self.plan.tile, self.verbose,
                                self.operator.K64.leading(n))
        return KernelSystem(self.kern, Xn, None, self.ridge, OperatorMode.ON_THE_FLY, self.plan.tile, self.verbose)


class _PrefixStack:
    """Every prefix system at once: column group j holds (K + ridge I)[:n_j, :n_j] on its first n_j rows and the
    identity below them, so ONE float64 pass over the largest K multiplies every prefix (zeros below n_j add
    nothing). It implements the KernelOperator protocol over the largest system's operator ``base``; the
    identity rows are exact, so ``base``'s proven componentwise bound holds for the whole product."""

    def __init__(self, base, groups):
        self.base, self.groups = base, groups
        self.ridge, self.mode = base.ridge, base.mode
        width = max((c.stop for _, c in groups), default=0)
        self._extent = np.zeros(width, dtype=np.int64)  # column -> its prefix's n (groups in increasing n)
        for n, cols in groups:
            self._extent[cols] = n
        # the base serves a pass by prefix (matvec_prefix, and matvec_bounded's extent) when it can
        self._by_prefix = callable(getattr(base, "matvec_prefix", None)) and bool(np.all(np.diff(self._extent) >= 0))

    def _mask(self, W, V, absolute=False):
        for n, cols in self.groups:
            W[n:, cols] = np.abs(V[n:, cols]) if absolute else V[n:, cols]
        return W

    def _prefix_ok(self, V) -> bool:
        """Group j's columns are zero below n_j -- exactly so: Y, the preconditioner's identity rows and the
        CG recurrences keep them zero -- so each block of a pass need serve only the prefixes reaching its rows."""
        return (self._by_prefix and V.ndim == 2 and V.shape[1] == self._extent.size
                and not any(V[n:, cols].any() for n, cols in self.groups))

    def matvec(self, V):
        V = np.asarray(V, dtype=np.float64)
        if self._prefix_ok(V):
            return self._mask(self.base.matvec_prefix(V, self._extent), V)
        return self._mask(np.array(self.base.matvec(V)), V)

    def matvec_with_error(self, V):
        V = np.asarray(V, dtype=np.float64)
        W, Wabs = self.base.matvec_with_error(V)
        return self._mask(np.array(W), V), self._mask(np.array(Wabs), V, absolute=True)

    def matvec_bounded(self, V):
        """The base's bounded pass (componentwise error model), the identity rows exact (error 0)."""
        V = np.asarray(V, dtype=np.float64)
        got = self.base.matvec_bounded(V, extent=self._extent) if self._prefix_ok(V) else self.base.matvec_bounded(V)
        AV, upper, err = (np.array(a) for a in got)
        for n, cols in self.groups:
            AV[n:, cols] = V[n:, cols]
            upper[n:, cols] = np.abs(V[n:, cols])
            err[n:, cols] = 0.0
        return AV, upper, err

    def error_bound(self):
        return self.base.error_bound()

    def no_bound_reason(self):
        return self.base.no_bound_reason()


def _shared_passes(shared, Ys, sizes, opts, verbose, totals):
    """Every prefix's float64 iteration in lockstep, each pass ONE pass over the largest kernel (module docstring).

    Column group j is prefix n_j's targets scaled by a power of two to a norm in [0.5, 1) (exact); the one
    refinement runs to a joint tol / (2 sqrt(G)), which bounds each group's own relative residual by tol. Each
    prefix is then certified by its own part of the verifying direct float64 product (recomputed independently
    of the factor, as for a lone solve). Returns {n: RefinementResult}; a prefix whose own residual is not below
    tol is left out (it then iterates alone).
    """
    G, k, n_max = len(sizes), Ys.shape[1], sizes[-1]
    groups, blocks, scales = [], [], []
    Ystack = np.zeros((n_max, G * k))
    for j, n in enumerate(sizes):
        cols = slice(j * k, (j + 1) * k)
        nrm = safe_norm(Ys[:n])
        e = int(np.frexp(nrm)[1]) if nrm > 0 else 0
        Ystack[:n, cols] = np.ldexp(Ys[:n], -e)
        groups.append((n, cols))
        blocks.append((n, cols, shared.factor.leading(n)))
        scales.append(e)

    def precond(R):  # the leading block's solve per group, the identity below it
        Z = np.array(R, dtype=np.float64)
        for n, cols, lead in blocks:
            Z[:n, cols] = lead.solve(R[:n, cols])
        return Z

    t0 = time.perf_counter()
    res = refine(_PrefixStack(shared.operator, groups), precond, Ystack,
                 options=replace(opts, tol=opts.tol / (2.0 * np.sqrt(G))), verbose=verbose)
    totals["iteration"] += time.perf_counter() - t0
    norm_stack = safe_norm(Ystack)
    out = {}
    for (n, cols), e in zip(groups, scales):
        alpha, R = np.ldexp(res.alpha[:n, cols], e), np.ldexp(res.residual[:n, cols], e)
        rel = relative_norm(R, Ys[:n])
        bound = None
        if res.relative_residual_bound is not None:  # the joint proven bound, read for this group's share
            ng = safe_norm(Ystack[:, cols])
            bound = res.relative_residual_bound * norm_stack / ng if ng > 0 else res.relative_residual_bound
        if not rel <= opts.tol:  # pragma: no cover - excluded by the joint tolerance; kept as a guard
            log.warning("shared passes: prefix n=%d reached %.3e > tol; it iterates alone", n, rel)
            continue
        out[n] = RefinementResult(alpha=alpha, residual=R, relative_residual=rel, history=list(res.history),
                                  n_matvecs=res.n_matvecs, spectrum_estimate=res.spectrum_estimate,
                                  relative_residual_bound=bound, certificate="direct", last_direct_residual=rel)
    log.info("shared passes: %d prefixes certified by %d float64 passes over the n = %d kernel (%.1f s)", len(out),
             res.n_matvecs, n_max, time.perf_counter() - t0)
    return out


def _nested(X64, Y2, Xt, Yt, kern, sizes, seed, ridge, opts, task, verbose, prov, points, notes, totals, bar):
    """One seed's nested curve: one factor of the largest prefix, its leading blocks for the others."""
    N, n_max = X64.shape[0], sizes[-1]
    rows = _readonly(np.random.default_rng(seed).permutation(N)[:n_max])
    # kernel_interpolate's own validation of the largest system (overflow pre-check, dtype adjustments)
    opts_s, _, _, _, Xs, _, _, _, Ys, _ = _validate_inputs(X64[rows], Y2[rows], kernel=kern, ridge=ridge,
                                                           solver="cholesky", options=opts)
    lockstep = len(sizes) > 1 and opts_s.certificate != "bound"
    shared = _Shared(Xs, Ys, kern, ridge, opts_s, verbose, totals, notes,
                     columns=Ys.shape[1] * (len(sizes) if lockstep else 1))
    solved = {}
    if lockstep:
        try:
            solved = _shared_passes(shared, Ys, sizes, opts_s, verbose, totals)
        except ConvergenceError as exc:
            log.warning("shared passes did not reach tol / (2 sqrt(G)) (%s); every prefix iterates alone",
                        str(exc).split(";")[0])
            notes.append(f"seed {seed}: the shared passes did not converge; every prefix iterated alone")
    for n in sizes:
        t0 = time.perf_counter()
        op = shared.operator_for(n)
        lead = shared.factor.leading(n)
        f = shared.factor
        pnotes = () if n == n_max else ((f"preconditioned by the leading {n} x {n} block of the {f.dtype.name} "
                                         f"factor of the n = {n_max} system"),)
        if n in solved:
            res = solved[n]
            cert = Certificate.from_refinement(res, operator=op, tol=opts_s.tol, solver="cholesky", backend="scipy",
                                               factor_dtype=f.dtype.name, rank=n)
            pnotes += ((f"float64 passes shared by all {len(solved)} prefixes (each pass one product with the "
                        f"n = {n_max} kernel); certified by its own rows of the verifying direct product"),)
        else:
            try:
                res, cert = iterate(op, lead, Ys[:n], opts_s, backend_name="scipy", verbose=verbose)
            except ConvergenceError as exc:
                lead = None
                shared.refactor64(opts_s, exc)
                lead = shared.factor.leading(n)
                res, cert = iterate(op, lead, Ys[:n], opts_s, backend_name="scipy", verbose=verbose)
        sol = Solution(alpha=res.alpha, residual=res.residual, certificate=cert, factor=lead, operator=op,
                       plan=shared.plan, timings={"refine": time.perf_counter() - t0}, notes=pnotes)
        fit = build_interpolant(sol, Ys[:n], False, kern, Xs[:n], None, ridge, replace(opts_s, keep_factor=False),
                                prov=prov)
        err, mse = _metrics(np.asarray(fit.predict(Xt, verbose=verbose)).reshape(Xt.shape[0], -1), Yt, task)
        points.append(CurvePoint(n=n, seed=seed, test_error=err, test_mse=mse, rkhs_norm=float(fit.rkhs_norm),
                                 relative_residual=float(fit.relative_residual), float64_passes=int(fit.n_matvecs),
                                 seconds=time.perf_counter() - t0, factor_dtype=str(fit.factor_dtype),
                                 solver=str(fit.solver), rows=rows[:n], notes=tuple(fit.notes)))
        _log_point(points[-1])
        bar.update(1)


# ---------------------------------------------------------------------------------------------- exponents and plot
def _ols_loglog(n, err, lo, hi):
    """(slope, standard error, intercept, points used) of the OLS line through (log n, log err) on [lo, hi]."""
    n = as_float_array(n, "n", ndim=(1,), dtype=np.float64)
    e = as_float_array(err, "err", ndim=(1,), dtype=np.float64)
    if n.shape != e.shape:
        raise ShapeMismatchError(f"n has {n.size} entries and err {e.size}; one error per size.")
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise InvalidInputError(f"{name} must be a finite number, got {v!r}.")
    if not 0 < lo < hi:
        raise InvalidInputError(f"the fit range needs 0 < lo < hi, got [{lo}, {hi}].")
    m = (n >= lo) & (n <= hi)
    x, y = n[m], e[m]
    if np.unique(x).size < 3:
        raise InvalidInputError(f"fitting a slope with its standard error needs at least 3 distinct sizes in "
                                f"[{lo:g}, {hi:g}]; there are {np.unique(x).size}.")
    if np.any(x <= 0) or np.any(y <= 0):
        bad = x[(x <= 0) | (y <= 0)]
        raise InvalidInputError(f"a log-log fit needs positive sizes and errors; non-positive at n = "
                                f"{bad[:5].tolist()} (a zero test error cannot be logged: narrow the range or use "
                                "the test MSE).")
    lx, ly = np.log(x), np.log(y)
    xm = lx - lx.mean()
    sxx = float(xm @ xm)
    slope = float(xm @ (ly - ly.mean())) / sxx
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - (intercept + slope * lx)
    dof = lx.size - 2
    stderr = float(np.sqrt(float(resid @ resid) / dof / sxx))
    return slope, stderr, intercept, int(lx.size)


def fit_exponent(n, err, lo, hi) -> tuple:
    """The slope of ``log err`` against ``log n`` on ``lo <= n <= hi``, and its standard error.

    Ordinary least squares on the logarithms (the base does not change the slope): ``log err_i = a +
    b log n_i + e_i``; ``b`` is returned with the classical standard error ``sqrt(s^2 / S_xx)``, ``s^2 =
    RSS / (m - 2)``, ``S_xx = sum (log n_i - mean)^2`` (``m`` points in the range; repeated sizes, e.g.
    several seeds, each count as a point). A curve ``err ~ n^-beta`` gives ``b = -beta``.

    Parameters
    ----------
    n, err : array of shape (p,)
        Sizes and errors (test error or MSE), positive inside the range.
    lo, hi : float
        The fit range, ``0 < lo < hi`` (inclusive).

    Returns
    -------
    (slope, standard_error) : tuple of float

    Raises
    ------
    InvalidInputError, ShapeMismatchError
        Fewer than 3 distinct sizes in the range, a non-positive size or error inside it, a bad range,
        arrays of different lengths.

    Examples
    --------
    >>> import numpy as np
    >>> n = np.array([1e3, 2e3, 5e3, 1e4])
    >>> slope, se = fit_exponent(n, 3.0 * n ** -0.37, 1e3, 1e4)
    >>> round(slope, 12), se < 1e-12
    (-0.37, True)
    """
    slope, stderr, _, _ = _ols_loglog(n, err, lo, hi)
    return slope, stderr


def _two_and_five(x, _pos=None) -> str:
    """Minor tick label on a log axis: only 2 and 5 times a power of ten, as a plain number."""
    m = x / 10.0 ** np.floor(np.log10(x)) if x > 0 else 0.0
    return f"{x:g}" if np.isclose(m, 2.0) or np.isclose(m, 5.0) else ""


def plot_learning_curve(result: LearningCurve, path=None, *, fit_range=None, fig=None):
    """Draw the curve log-log, with the fitted power law and its standard error in the legend.

    One panel for the test error (classification only) and one for the test MSE. Every point is
    drawn (several seeds: light dots, and their mean joined by a line); the dashed line is the
    :func:`fit_exponent` fit over ``fit_range`` on all points in it, and the legend says ``slope
    b +- se on [lo, hi]``. A fit that cannot be made (fewer than 3 sizes in range, a zero error) is
    left out, said in the legend and logged at WARNING. Zero errors are not drawn (log axes).

    Parameters
    ----------
    result : LearningCurve
    path : str or path-like, optional
        Where to save the PNG (atomically, directories created; :func:`kernelgen.cli.save_figure`).
    fit_range : (float, float), optional
        ``(lo, hi)`` of the fit; default the curve's smallest and largest sizes.
    fig : matplotlib.figure.Figure, optional
        Drawn on (cleared first); a new one otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        Left open (also when saved).

    Raises
    ------
    InvalidInputError
        ``result`` is not a LearningCurve; a bad ``fit_range``; ``path`` not ending in ``.png``.
    """
    if not isinstance(result, LearningCurve):
        raise InvalidInputError(f"result must be a LearningCurve (from learning_curve), got {type(result).__name__}.")
    lo, hi = (result.sizes[0], result.sizes[-1]) if fit_range is None else tuple(fit_range)
    if not (isinstance(lo, (int, float, np.integer, np.floating)) and isinstance(hi, (int, float, np.integer,
                                                                                      np.floating)) and 0 < lo < hi):
        raise InvalidInputError(f"fit_range must be (lo, hi) with 0 < lo < hi, got {fit_range!r}.")
    plt = cli.pyplot()
    from matplotlib.ticker import FuncFormatter

    metrics = (["test_error"] if result.task == "classification" else []) + ["test_mse"]
    if fig is None:
        fig = plt.figure(figsize=(5.6 * len(metrics), 4.6))
    else:
        fig.clear()
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    n_all = result.column("n")
    for ax, name in zip(axes, metrics):
        scale = 100.0 if name == "test_error" else 1.0
        v = result.column(name)
        pos = v > 0
        sizes, mean, _ = result.mean_over_seeds(name)
        if len(result.seeds) > 1:
            ax.plot(n_all[pos], scale * v[pos], ".", color="0.6", ms=4, label=f"{len(result.seeds)} seeds")
        mp = mean > 0
        ax.plot(sizes[mp], scale * mean[mp], "o-", color="C0",
                label="mean over seeds" if len(result.seeds) > 1 else f"{result.subsets} subsets")
        try:
            slope, se, a, m = _ols_loglog(n_all, v, lo, hi)
        except InvalidInputError as exc:
            log.warning("plot_learning_curve: no %s fit on [%g, %g]: %s", name, lo, hi, exc)
            ax.plot([], [], " ", label=f"no fit on [{lo:g}, {hi:g}]")
        else:
            xs = np.geomspace(lo, hi, 50)
            ax.plot(xs, scale * np.exp(a) * xs**slope, "--", color="C3",
                    label=f"slope {slope:.3f} ± {se:.3f} on [{lo:g}, {hi:g}] ({m} pts, OLS on logs)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(FuncFormatter(_two_and_five))  # all minor labels of a decade overlap
        ax.set_xlabel("training points n")
        ax.set_ylabel("test error (%)" if name == "test_error" else "test MSE (summed over targets)")
        ax.grid(True, which="both", alpha=0.3)
        # below the axes: never over a point
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.suptitle(f"learning curve: {result.kernel!r}, ridge {result.ridge:g}, {result.subsets} subsets, "
                 f"{result.n_factors} factor(s), {result.total_seconds:.0f} s", fontsize=9)
    fig.tight_layout()
    if path is not None:
        cli.save_figure(fig, path, close=False)
    return fig
