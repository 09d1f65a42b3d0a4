"""Exact GP log evidence from data, and over a grid of kernel hyper-parameters (private; see :mod:`kernelgen.evidence`).

The model
---------
Every target column ``j = 1..k`` is an independent Gaussian process regression with the same
kernel, amplitude ``a^2`` and noise::

    f_j ~ GP(0, a^2 k),   y_j = f_j(X) + e_j,   e_j ~ N(0, a^2 * ridge * I),

so ``y_j ~ N(0, a^2 (K + ridge I))``: the ridge is the noise variance in units of the amplitude
(at ``a^2 = 1`` the noise variance *is* the ridge; ``ridge = 0`` is noise-free interpolation). With
``alpha = (K + ridge I)^-1 Y`` the log evidence summed over the columns is (Rasmussen & Williams
eq. 2.30, per column)::

    log p(Y | X, a^2) = -1/(2 a^2) tr(Y^T alpha) - k/2 log|K + ridge I| - n k/2 log a^2 - n k/2 log 2 pi.

At ``a^2 = 1`` its three parts are the **data fit** ``-1/2 tr(Y^T alpha)``, the **complexity**
``-k/2 log|K + ridge I|`` and the **constant** ``-n k/2 log 2 pi``. Because the noise scales with
``a^2``, the amplitude's type-II maximum is closed form (set d/d a^2 = 0)::

    a^2* = tr(Y^T alpha) / (n k),   log p* = -n k/2 (1 + log 2 pi + log a^2*) - k/2 log|K + ridge I|

(MacKay 1992's re-estimation of a scale hyper-parameter; :func:`kernelgen.evidence.gp_type2_ml`'s
profile at a fixed noise-to-signal ratio). It does *not* apply to a noise variance fixed in absolute
units while ``a^2`` varies, except at ``ridge = 0``, where both models coincide.

What is computed, and how exactly
---------------------------------
:func:`kernel_log_evidence` factors ``K + ridge I`` once in float64 (the tiled Cholesky of
:func:`kernelgen.kernel_interpolate` with ``SolveOptions(dtype="float64")``: planned by the memory
planner, which refuses with :class:`~kernelgen.errors.MemoryBudgetError` before allocating, and puts
the factor in a scratch file when RAM does not suffice), solves for ``alpha`` with the certified
float64 residual (<= 1e-10 by a direct product independent of the factor), and reads the
log-determinant from the float64 factor's diagonal (backward stable: Higham, *Accuracy and
Stability*, Thm 10.3).

:func:`evidence_grid` evaluates it over kernel hyper-parameters and ridges, sharing what can be
shared: for ``n <= EIGH_MAX_N`` (8,192) one kernel matrix and one float64 eigendecomposition per
kernel setting serve every ridge (``log|K + r I| = sum log(lambda_i + r)``; ``alpha`` by the
eigenvectors, then refined against a direct float64 product with ``K`` to the same tolerance; a row
whose refinement stalls above it is redone by the float64 Cholesky route); above it, one float64 Cholesky per (kernel setting, ridge) through :func:`kernel_log_evidence` (the kernel
entries are recomputed per ridge: a dense n x n float64 K does not fit beside the factor at 60,000).

References
----------
.. [1] C. E. Rasmussen and C. K. I. Williams, *Gaussian Processes for Machine Learning*, 2006, eq. 2.30
   and section 5.4.1.
.. [2] D. J. C. MacKay, "Bayesian interpolation", Neural Computation 4(3), 1992, section 4.
.. [3] S. L. Smith and Q. V. Le, "A Bayesian perspective on generalization and stochastic gradient
   descent", ICLR 2018, section 2.
.. [4] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002, Theorem 10.3.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import time

import numpy as np

from .._validation import as_float_array
from ..errors import (ConvergenceError, InvalidInputError, NonFiniteResultError, NotPositiveDefiniteError,
                      ShapeMismatchError, restated)
from ..factors import EIGH_MAX_N, EighFactor, LogDet
from ..kernels import Kernel
from ..numerics import check_allocation, safe_norm, unit_roundoff
from ..options import SolveOptions
from ..solvers import KernelInterpolant, kernel_interpolate
from ._common import LOG_2PI

__all__ = [
    "EvidenceGrid",
    "KernelEvidence",
    "evidence_grid",
    "kernel_log_evidence",
    "plot_evidence_grid",
]

logger = logging.getLogger(__name__)

#: at most this many refinement steps of the eigendecomposition's solution (each one product with K)
_EIGH_REFINE_STEPS = 5


# ----------------------------------------------------------------------------------------------
# the evidence from its two data-dependent numbers
# ----------------------------------------------------------------------------------------------
def _trace_parts(Y, A) -> tuple:
    """tr(Y^T A) as (scaled sum S, log of its scale): tr = S * exp(log_scale), with neither under- nor overflow."""
    sy = float(np.max(np.abs(Y)))
    sa = float(np.max(np.abs(A)))
    if sy == 0.0 or sa == 0.0 or not (np.isfinite(sy) and np.isfinite(sa)):
        raise NonFiniteResultError(f"tr(Y^T alpha) cannot be formed: max|Y| = {sy:g}, max|alpha| = {sa:g}.")
    S = float(np.sum((Y / sy) * (A / sa)))
    return S, float(np.log(sy) + np.log(sa))


def _evidence_parts(trace, logdet: float, n: int, k: int) -> dict:
    """The log evidence and its parts from ``tr(Y^T alpha)`` and ``log|K + ridge I|`` (module docstring).

    Every exact evidence in this module goes through here (one formula, one place). ``trace`` is
    :func:`_trace_parts`' (S, log scale), so that the amplitude's profiled evidence is formed in the log
    domain for targets of any representable size; a part that is not a finite float64 raises
    :class:`~kernelgen.errors.NonFiniteResultError` (never a NaN or inf result).
    """
    S, log_scale = trace
    if not S > 0:
        raise NonFiniteResultError(f"tr(Y^T alpha) = {S:g} x exp({log_scale:g}) is not positive: K + ridge I is not "
                                   "positive definite to working precision (use a ridge).")
    with np.errstate(over="ignore", under="ignore"):
        tr = S * float(np.exp(log_scale))
    data_fit = -0.5 * tr                          # R&W eq. 2.30, first term, summed over columns
    complexity = -0.5 * k * logdet                # R&W eq. 2.30, second term, k columns
    constant = -0.5 * n * k * LOG_2PI             # R&W eq. 2.30, third term
    log_a2 = float(np.log(S)) + log_scale - float(np.log(n * k))  # d/d a^2 log p = 0 (closed form), in logs
    profiled = -0.5 * n * k * (1.0 + LOG_2PI + log_a2) + complexity
    with np.errstate(over="ignore", under="ignore"):
        a2 = float(np.exp(log_a2))
    parts = {"data_fit": data_fit, "complexity": complexity, "constant": constant,
             "log_evidence": data_fit + complexity + constant, "amplitude2": a2, "log_evidence_amplitude": profiled}
    bad = [name for name, v in parts.items() if not np.isfinite(v)]
    if bad or not (a2 >= np.finfo(np.float64).tiny):
        raise NonFiniteResultError(
            f"the evidence's {', '.join(bad) or 'amplitude2'} is not a normal float64 (tr(Y^T alpha) = {S:.6g} x "
            f"exp({log_scale:.6g})): the targets are too large or too small for these parts. The evidence is "
            "not scale-free: rescale Y (e.g. to unit variance) and account for the scale in the comparison.")
    return parts


def _targets(Y, n: int) -> np.ndarray:
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    if Y.shape[0] != n:
        raise ShapeMismatchError(f"X has {n} rows but Y has {Y.shape[0]}; they must match.")
    Y2 = Y.reshape(n, -1)
    if not np.any(Y2):
        raise InvalidInputError("Y is identically zero: its evidence has no finite amplitude optimum "
                                "(tr(Y^T alpha) = 0); pass the targets.")
    return Y2


@dataclasses.dataclass(frozen=True)
class KernelEvidence:
    """The exact GP log evidence of one kernel and ridge on data (:func:`kernel_log_evidence`).

    Attributes
    ----------
    log_evidence : float
        ``log p(Y | X)`` at amplitude ``a^2 = 1`` (noise variance = ridge), summed over the columns:
        ``data_fit + complexity + constant``.
    data_fit : float
        ``-1/2 tr(Y^T alpha)``, ``alpha = (K + ridge I)^-1 Y`` (<= 0).
    complexity : float
        ``-k/2 log|K + ridge I|``.
    constant : float
        ``-n k/2 log 2 pi``.
    amplitude2 : float
        The type-II optimum ``a^2* = tr(Y^T alpha) / (n k)`` (module docstring).
    log_evidence_amplitude : float
        ``log p(Y | X, a^2*)``, the evidence at that optimum.
    logdet : kernelgen.factors.LogDet
        ``log|K + ridge I|`` from the float64 factor, with how it was obtained.
    relative_residual : float
        Certified ``||Y - (K + ridge I) alpha||_F / ||Y||_F`` (direct float64 product).
    n, n_targets : int
    ridge : float
    fit : kernelgen.solvers.KernelInterpolant
        The exact posterior mean ``k(x, X) alpha`` (``fit.predict``), without its factor (the float64
        factor is released once the log-determinant is read; an out-of-core one's file is removed).
    seconds : float
    """

    log_evidence: float
    data_fit: float
    complexity: float
    constant: float
    amplitude2: float
    log_evidence_amplitude: float
    logdet: LogDet
    relative_residual: float
    n: int
    n_targets: int
    ridge: float
    fit: KernelInterpolant = dataclasses.field(repr=False)
    seconds: float = 0.0


def kernel_log_evidence(X, Y, *, kernel, ridge: float = 0.0, options=None, verbose: bool = False) -> KernelEvidence:
    """Exact GP log evidence of ``Y`` given ``X`` under ``kernel`` and ``ridge``, from one float64 factor.

    Factors ``K + ridge I`` once in float64 (tiled Cholesky, planner-checked; on disk when RAM does not
    suffice), solves ``(K + ridge I) alpha = Y`` with a certified float64 residual and returns the log
    evidence of the model in :mod:`kernelgen.evidence._exact` (independent GPs per target column,
    amplitude ``a^2``, noise variance ``a^2 * ridge``) with its parts and the amplitude's closed-form
    type-II optimum. For a kernel matrix already in memory use :func:`gp_log_evidence`.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    Y : array of shape (n_samples,) or (n_samples, n_targets)
        Targets (e.g. one-hot class indicators); not all zero.
    kernel : Kernel or str
        As in :func:`kernelgen.kernel_interpolate` (data-dependent defaults are resolved on X).
    ridge : float, default 0.0
        ``>= 0``; 0 is noise-free interpolation (then ``K`` itself must be positive definite in float64).
    options : SolveOptions or dict, optional
        Numerical knobs (memory budget, tile, storage, scratch directory, tol). ``dtype`` is forced to
        float64 (``dtype="float32"`` is refused: a float32 factor's log-determinant is an estimate, not
        the exact value) and the factor is kept only until its log-determinant is read.
    verbose : bool

    Returns
    -------
    KernelEvidence

    Raises
    ------
    MemoryBudgetError
        The float64 factor fits neither in RAM nor on the scratch disk (before anything is allocated).
    NotPositiveDefiniteError
        ``K + ridge I`` is not positive definite in float64 (kernelgen adds no jitter: pass a ridge).
    InvalidInputError
        ``options.dtype == "float32"``, ``solver``-incompatible options, or ``Y`` identically zero.

    References
    ----------
    Rasmussen & Williams (2006), eq. 2.30 and section 5.4.1; MacKay (1992).

    Examples
    --------
    >>> import numpy as np
    >>> from kernelgen.kernels import Gaussian
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    >>> ev = kernel_log_evidence(X, Y, kernel=Gaussian(1.0), ridge=0.1)
    >>> bool(np.isclose(ev.log_evidence, ev.data_fit + ev.complexity + ev.constant))
    True
    """
    t0 = time.perf_counter()
    opts = SolveOptions.coerce(options)
    if opts.dtype == "float32":
        raise InvalidInputError("kernel_log_evidence factors in float64 (a float32 factor's log-determinant is an "
                                "estimate, not the exact value): pass options without dtype='float32'.")
    opts = dataclasses.replace(opts, dtype="float64", keep_factor=True)
    Y2 = _targets(Y, np.shape(X)[0])  # refused before any n x n work
    try:
        fit = kernel_interpolate(X, Y, kernel=kernel, ridge=ridge, solver="cholesky", options=opts, verbose=verbose)
    except (NotPositiveDefiniteError, ConvergenceError) as exc:
        # the solver's own remedies (min_norm, a float64 factor) do not apply here: the evidence needs the float64
        # Cholesky factor of a positive definite K + ridge I
        raise restated(
            exc, f"the exact evidence needs K + ridge I positive definite to float64 working precision, and it is not here "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]}). Remedies: a ridge > 0 (the noise variance of "
            "the GP), fewer near-duplicate inputs, or a bandwidth at which K is better conditioned. (The factor is "
            "already float64; solver='min_norm' gives no log-determinant.)") from exc
    factor = fit.factor
    try:
        if np.dtype(factor.dtype) != np.float64:  # pragma: no cover - dtype="float64" has no float32 route
            raise AssertionError(f"the evidence's factor is {factor.dtype}, not float64")
        ld = factor.logdet()
    finally:
        if callable(getattr(factor, "close", None)):
            factor.close()  # an out-of-core factor's scratch file goes as soon as its diagonal is read
    # the fit without the factor, nor the resolver's closure over it: the float64 factor is released here
    bare = dataclasses.replace(fit, factor=None, _resolve=None)
    n = bare.n_train
    A2 = np.asarray(bare.alpha).reshape(n, -1)
    parts = _evidence_parts(_trace_parts(Y2, A2), float(ld.value), n, Y2.shape[1])
    return KernelEvidence(**parts, logdet=ld, relative_residual=float(bare.relative_residual), n=n,
                          n_targets=Y2.shape[1], ridge=float(bare.ridge), fit=bare,
                          seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------
# a grid of kernel hyper-parameters and ridges
# ----------------------------------------------------------------------------------------------
_COLUMNS = ("log_evidence", "log_evidence_amplitude", "amplitude2", "data_fit", "complexity", "constant",
            "logdet_error", "relative_residual", "test_error", "test_mse", "seconds")


@dataclasses.dataclass(frozen=True)
class EvidenceGrid:
    """The exact log evidence over kernel settings x ridges (:func:`evidence_grid`): one row per pair.

    Rows run over the kernel settings (outer) and the ridges (inner). Numbers of a row whose
    ``K + ridge I`` is not positive definite in float64 are NaN, its ``status`` says so.

    Attributes
    ----------
    params : tuple of dict
        The kernel hyper-parameters of each row (the grid's keys only).
    kernels : tuple of Kernel
        The kernel of each row (resolved on X).
    ridge : ndarray of shape (rows,)
    log_evidence, log_evidence_amplitude, amplitude2, data_fit, complexity, constant : ndarray of shape (rows,)
        As :class:`KernelEvidence` (at ``a^2 = 1``; at the closed-form ``a^2*``).
    logdet_error : ndarray of shape (rows,)
        The log-determinant's error estimate in nats (eigh: Weyl's inequality with ``n u ||K||``;
        Cholesky: NaN, backward stable but no number is stated, :class:`~kernelgen.factors.LogDet`).
    relative_residual : ndarray of shape (rows,)
        Certified float64 relative residual of ``alpha``.
    test_error, test_mse : ndarray of shape (rows,)
        Of the exact posterior mean on the test data (NaN without test data; ``test_error`` NaN unless the test
        targets encode classes -- two values with one high per row, e.g. one-hot, or one column of -c / +c): error
        = argmax mismatch for several columns, sign mismatch for one; MSE =
        mean over test points of the squared Euclidean error over the columns.
    test_wrong : ndarray of shape (rows, n_test), bool, or None
        Which test points each row misclassifies (for paired comparisons, e.g. McNemar); all False
        on a row without a value; None without test data or for a regression target.
    status : tuple of str
        ``"ok"`` or why the row has no value.
    method : str
        ``"eigh"`` (one eigendecomposition per kernel setting, n <= 8,192) or ``"cholesky"`` (one per row).
    route : tuple of str
        What gave each row: ``"eigh"``, ``"cholesky"`` (also where the eigendecomposition's refinement
        stalled above ``tol`` and the row was redone by a float64 Cholesky), or ``""`` (no value).
    seconds : ndarray of shape (rows,)
        Wall time of each row (an eigendecomposition's time is charged to its setting's first row).
    n, n_targets : int
    """

    params: tuple
    kernels: tuple
    ridge: np.ndarray
    log_evidence: np.ndarray
    log_evidence_amplitude: np.ndarray
    amplitude2: np.ndarray
    data_fit: np.ndarray
    complexity: np.ndarray
    constant: np.ndarray
    logdet_error: np.ndarray
    relative_residual: np.ndarray
    test_error: np.ndarray
    test_mse: np.ndarray
    test_wrong: np.ndarray | None
    status: tuple
    method: str
    route: tuple
    seconds: np.ndarray
    n: int
    n_targets: int

    def __len__(self) -> int:
        return len(self.params)

    def best(self, by: str = "log_evidence_amplitude") -> int:
        """Row index of the largest ``by`` (an evidence) or, for ``test_error`` / ``test_mse``, the smallest,
        among the certified rows (status "ok"; a row whose solve was not certified never wins).

        Raises
        ------
        InvalidInputError
            ``by`` is not a numeric column, or no certified row has a finite value.
        """
        if by not in _COLUMNS:
            raise InvalidInputError(f"by must be one of {_COLUMNS}, got {by!r}.")
        v = np.asarray(getattr(self, by), dtype=np.float64).copy()
        v[np.asarray([st != "ok" for st in self.status])] = np.nan
        if not np.any(np.isfinite(v)):
            raise InvalidInputError(f"no certified row (status 'ok') has a finite {by}.")
        sign = 1.0 if by in ("test_error", "test_mse", "logdet_error", "relative_residual", "seconds") else -1.0
        return int(np.nanargmin(sign * v))

    def rows(self) -> list[dict]:
        """One JSON-able dict per row (parameters, ridge, every numeric column -- None where NaN -- status, route)."""
        out = []
        for i in range(len(self)):
            r = {"params": dict(self.params[i]), "ridge": float(self.ridge[i]), "status": self.status[i],
                 "route": self.route[i]}
            r.update({c: _finite_or_none(getattr(self, c)[i]) for c in _COLUMNS})
            out.append(r)
        return out


def _finite_or_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def _settings(kernel, grid):
    """[(params, kernel)] for every combination of ``grid`` applied to a copy of ``kernel``."""
    if not isinstance(kernel, Kernel):
        raise InvalidInputError(f"kernel must be a kernelgen Kernel (e.g. Gaussian(5.0)), got {type(kernel).__name__}.")
    if grid is None:
        return [({}, copy.deepcopy(kernel))]
    if not isinstance(grid, dict) or not grid:
        raise InvalidInputError(f"grid must be a non-empty dict of parameter name -> values, got {grid!r}.")
    names = list(grid)
    values = []
    for name in names:
        v = grid[name]
        v = [v] if np.isscalar(v) else list(v)
        if not v:
            raise InvalidInputError(f"grid[{name!r}] is empty.")
        values.append(v)
    out = []
    for combo in itertools.product(*values):
        p = dict(zip(names, combo))
        out.append((p, copy.deepcopy(kernel).set_params(**p)))
    return out


def _ridges(ridges) -> np.ndarray:
    r = np.atleast_1d(np.asarray(ridges, dtype=np.float64))
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise InvalidInputError(f"ridges must be a non-empty list of finite numbers >= 0, got {ridges!r}.")
    return r


def _class_encoded(Yt) -> bool:
    """True when the test targets encode classes: two values, one "high" per row (one-hot, possibly shifted as
    -0.1 / 0.9), or one column of -c / +c labels. Anything else is regression (no zero-one error)."""
    vals = np.unique(Yt)
    if vals.size != 2:
        return False
    lo, hi = float(vals[0]), float(vals[1])
    if Yt.shape[1] == 1:
        return lo == -hi
    return bool(np.all(np.sum(Yt == hi, axis=1) == 1))


def _test_metrics(P, Yt):
    """(wrong, error, mse) of predictions P against test targets Yt (both (m, k))."""
    mse = float(np.mean(np.sum((P - Yt) ** 2, axis=1)))
    if not _class_encoded(Yt):
        return None, float("nan"), mse  # a regression target: no class to count
    if Yt.shape[1] == 1:
        wrong = np.sign(P[:, 0]) != np.sign(Yt[:, 0])
    else:
        wrong = np.argmax(P, axis=1) != np.argmax(Yt, axis=1)
    return wrong, float(np.mean(wrong)), mse


def _eigh_rows(kern, X, Y2, ridges, Xt, opts, verbose):
    """Rows of one kernel setting from one kernel matrix and one float64 eigendecomposition."""
    n, k = Y2.shape
    # K, its eigenvectors and LAPACK's evd workspace (~ n^2 more): planner-style refusal before allocating
    check_allocation(3 * n * n * 8, what=f"the evidence grid's eigendecomposition at n={n}",
                     memory_budget=opts.memory_budget,
                     remedy=f"fewer samples (above {EIGH_MAX_N} the grid uses one float64 Cholesky per ridge)")
    t0 = time.perf_counter()
    K = kern.matrix(X, dtype=np.float64)
    fac = EighFactor.factor(K, check_symmetric=False)  # a copy: K stays for the certifying products
    lam, U = fac.eigenvalues, fac.eigenvectors
    C = U.T @ Y2
    # Weyl: each computed eigenvalue is within n u ||K|| of one of K (EighFactor.logdet's estimate)
    delta = n * unit_roundoff(np.float64) * float(np.max(np.abs(lam)))
    ny = safe_norm(Y2)
    rows, alphas = [], []
    for r in ridges:
        v = lam + r
        if float(v.min()) <= delta:
            rows.append({"status": f"not positive definite in float64: min eigenvalue of K + ridge I {v.min():.3g} "
                                   f"<= n u ||K|| = {delta:.3g}", "seconds": 0.0})
            alphas.append(np.zeros_like(Y2))
            continue
        alpha = U @ (C / v[:, None])
        R = Y2 - (K @ alpha + r * alpha)  # the certifying float64 product, independent of the eigenvectors
        rel = safe_norm(R) / ny
        for _ in range(_EIGH_REFINE_STEPS):  # iterative refinement with the same factor (Higham ch. 12)
            if rel <= opts.tol:
                break
            cand = alpha + U @ ((U.T @ R) / v[:, None])
            R2 = Y2 - (K @ cand + r * cand)
            rel2 = safe_norm(R2) / ny
            if not rel2 < rel:
                break
            alpha, R, rel = cand, R2, rel2
        logdet = float(np.sum(np.log(v)))
        row = _evidence_parts(_trace_parts(Y2, alpha), logdet, n, k)
        row.update(logdet_error=float(np.sum(np.log1p(delta / v))), relative_residual=rel, status="ok", seconds=0.0,
                   route="eigh")
        if rel > opts.tol:  # at the float64 floor of this route: the row is redone by a float64 Cholesky (CG)
            row["status"] = "redo"
        rows.append(row)
        alphas.append(alpha)
    del K, fac, U
    P = None
    if Xt is not None:  # one pass over k(X_test, X) for every ridge's posterior mean
        A = np.concatenate(alphas, axis=1)
        PA = kern.apply(Xt, X, A, verbose=verbose, desc="posterior means")
        P = [PA[:, i * k:(i + 1) * k] for i in range(len(ridges))]
    for i, r in enumerate(ridges):
        rows[i].setdefault("seconds", 0.0)
        if rows[i]["status"] == "redo":
            logger.info("evidence grid: eigh + refinement did not reach tol %.0e at ridge %g; float64 Cholesky "
                        "instead", opts.tol, r)
            redo, Pi = _cholesky_row(kern, X, Y2, r, Xt, opts, verbose)
            if redo["status"] == "ok":
                rows[i] = redo
                if P is not None:
                    P[i] = Pi
            else:  # both routes at the float64 floor: the eigh values, marked as not certified
                rows[i]["status"] = (f"not certified: residual {rows[i]['relative_residual']:.2g} > tol "
                                     f"{opts.tol:.0e} by eigh + refinement; float64 Cholesky: {redo['status']}")
                rows[i]["seconds"] = redo["seconds"]
    rows[0]["seconds"] += time.perf_counter() - t0 - sum(r["seconds"] for r in rows)  # the shared work
    return rows, P


def _cholesky_row(kern, X, Y2, r, Xt, opts, verbose):
    t0 = time.perf_counter()
    try:
        ev = kernel_log_evidence(X, Y2, kernel=kern, ridge=float(r), options=opts, verbose=verbose)
    except NotPositiveDefiniteError as exc:
        return {"status": f"not positive definite in float64: {str(exc).splitlines()[0][:200]}",
                "seconds": time.perf_counter() - t0}, None
    except ConvergenceError as exc:  # tol below the float64 floor of the residual (cond(K + ridge I) ~ 1e8+)
        return {"status": f"not certified: {str(exc).splitlines()[0][:200]}",
                "seconds": time.perf_counter() - t0}, None
    row = {name: getattr(ev, name) for name in ("data_fit", "complexity", "constant", "log_evidence",
                                                 "amplitude2", "log_evidence_amplitude", "relative_residual")}
    row.update(logdet_error=float("nan") if ev.logdet.error_bound is None else float(ev.logdet.error_bound),
               status="ok", route="cholesky")
    P = None if Xt is None else np.asarray(ev.fit.predict(Xt, verbose=verbose)).reshape(Xt.shape[0], -1)
    row["seconds"] = time.perf_counter() - t0
    return row, P


def evidence_grid(X, Y, *, kernel, grid=None, ridges=(0.0,), X_test=None, Y_test=None, options=None,
                  verbose: bool = False) -> EvidenceGrid:
    """The exact GP log evidence over a grid of kernel hyper-parameters and ridges, beside the test error.

    For every combination of ``grid`` (applied to a copy of ``kernel`` with ``set_params``) and every
    ridge, the exact log evidence of the model in :mod:`kernelgen.evidence._exact` (independent GPs per
    target column; amplitude ``a^2``; noise variance ``a^2 * ridge``) at ``a^2 = 1`` and at the
    amplitude's closed-form type-II optimum, with its parts; with test data, the test error and test MSE
    of the exact posterior mean ``k(x, X) (K + ridge I)^-1 Y`` of each row.

    Shared work: one kernel matrix and one float64 eigendecomposition per kernel setting serve every
    ridge when ``n <= EIGH_MAX_N`` (8,192); above it, one float64 Cholesky per (setting, ridge)
    (:func:`kernel_log_evidence`: planner-checked, on disk when RAM does not suffice). Every ``alpha`` is
    certified by a direct float64 product to ``options.tol`` (1e-10).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    Y : array of shape (n_samples,) or (n_samples, n_targets)
    kernel : Kernel
        The template, e.g. ``Gaussian(5.0)``, ``Laplace(10.0)``, ``ReluNNGP()``, ``ReluNTK()``.
    grid : dict of str to sequence, optional
        Hyper-parameter values, e.g. ``{"bandwidth": [3, 4, 5, 6, 8]}`` or ``{"depth": [1, 2, 3],
        "weight_variance": [1.0, 2.0], "bias_variance": [0.0, 0.1]}``; every combination is evaluated.
        None: the template alone.
    ridges : sequence of float, default (0.0,)
        Ridges ``>= 0`` (down to 0: interpolation).
    X_test : array of shape (n_test, n_features), optional
    Y_test : array of shape (n_test,) or (n_test, n_targets), optional
        Test targets in the form of ``Y`` (one-hot columns: error by argmax; one column of +-1: by sign).
    options : SolveOptions or dict, optional
        ``tol`` (the certified residual), ``memory_budget``, ``tile``, ``storage``, ``scratch_dir``.
    verbose : bool

    Returns
    -------
    EvidenceGrid

    Raises
    ------
    InvalidInputError
        A bad grid, ridge or test set; a kernel that is not a ``Kernel``.
    MemoryBudgetError
        A kernel matrix / eigendecomposition (``n <= 8,192``) or a float64 factor that cannot fit,
        before it is allocated.

    Notes
    -----
    A row whose ``K + ridge I`` is not positive definite in float64 gets NaN numbers and a ``status``
    saying so (logged); one whose residual cannot reach ``tol`` on either route (``tol`` below the
    float64 floor, cond ~ 1e8 or more) keeps the eigendecomposition's numbers (NaN on the Cholesky
    route) with status ``"not certified: ..."``. The other rows are still evaluated.

    References
    ----------
    Rasmussen & Williams (2006), eq. 2.30, section 5.4; MacKay (1992); Smith & Le (2018).

    Examples
    --------
    >>> import numpy as np
    >>> from kernelgen.kernels import Gaussian
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.standard_normal((50, 2)), rng.standard_normal((50, 1))
    >>> g = evidence_grid(X, Y, kernel=Gaussian(1.0), grid={"bandwidth": [0.5, 1.0, 2.0]}, ridges=[0.1, 1.0])
    >>> len(g), g.method
    (6, 'eigh')
    """
    X64 = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    n = X64.shape[0]
    Y2 = _targets(Y, n)
    k = Y2.shape[1]
    opts = SolveOptions.coerce(options)
    if opts.dtype == "float32":
        raise InvalidInputError("evidence_grid works in float64 (a float32 factor's log-determinant is an estimate, "
                                "not the exact value): pass options without dtype='float32'.")
    settings = _settings(kernel, grid)
    rs = _ridges(ridges)
    Xt = Yt = None
    if (X_test is None) != (Y_test is None):
        raise InvalidInputError("pass both X_test and Y_test, or neither.")
    if X_test is not None:
        Xt = as_float_array(X_test, "X_test", ndim=(2,), dtype=np.float64)
        if Xt.shape[1] != X64.shape[1]:
            raise ShapeMismatchError(f"X_test has {Xt.shape[1]} features, X has {X64.shape[1]}.")
        Yt = as_float_array(Y_test, "Y_test", ndim=(1, 2), dtype=np.float64)
        if Yt.shape[0] != Xt.shape[0]:
            raise ShapeMismatchError(f"X_test has {Xt.shape[0]} rows but Y_test has {Yt.shape[0]}; they must match.")
        Yt = Yt.reshape(Xt.shape[0], -1)
        if Yt.shape[1] != k:
            raise ShapeMismatchError(f"Y_test has {Yt.shape[1]} columns, Y has {k}.")
    method = "eigh" if n <= EIGH_MAX_N else "cholesky"
    classify = Yt is not None and _class_encoded(Yt)
    rows, params, kernels, wrong_rows = [], [], [], []
    for p, kern in settings:
        kern = kern.resolve(X64)
        logger.info("evidence grid: %s (%d ridges, %s)", kern, rs.size, method)
        if method == "eigh":
            got, preds = _eigh_rows(kern, X64, Y2, rs, Xt, opts, verbose)
        else:
            got, preds = [], []
            for r in rs:
                row, P = _cholesky_row(kern, X64, Y2, r, Xt, opts, verbose)
                got.append(row)
                preds.append(P)
        for r, row, P in zip(rs, got, preds if preds is not None else [None] * rs.size):
            wrong = np.zeros(0 if Xt is None else Xt.shape[0], dtype=bool)
            row.setdefault("test_error", float("nan"))
            row.setdefault("test_mse", float("nan"))
            if row["status"] != "ok":
                logger.warning("evidence grid: %s, ridge %g: %s", kern, float(r), row["status"])
            if P is not None and not row["status"].startswith("not positive definite"):
                w, row["test_error"], row["test_mse"] = _test_metrics(P, Yt)
                wrong = wrong if w is None else w
            rows.append(row)
            params.append(dict(p))
            kernels.append(kern)
            wrong_rows.append(wrong)
    wrong_all = np.array(wrong_rows, dtype=bool) if classify else None
    col = {c: np.array([float(r.get(c, float("nan"))) for r in rows]) for c in _COLUMNS}
    return EvidenceGrid(params=tuple(params), kernels=tuple(kernels), ridge=np.tile(rs, len(settings)),
                        test_wrong=wrong_all, status=tuple(r["status"] for r in rows), method=method,
                        route=tuple(r.get("route", "") for r in rows), n=n,
                        n_targets=k, **col)


def plot_evidence_grid(table: EvidenceGrid, param: str, *, ax=None, evidence: str = "log_evidence_amplitude",
                       per_sample: bool = True):
    """Draw the exact log evidence against one hyper-parameter, and the test error beside it.

    One line per ridge (and per combination of the other hyper-parameters); the test error (%) on a
    second y-axis (dashed) when the table has test data.

    Parameters
    ----------
    table : EvidenceGrid
    param : str
        A key of ``table.params`` (e.g. ``"bandwidth"``, ``"depth"``), or ``"ridge"``.
    ax : matplotlib Axes, optional
    evidence : {"log_evidence_amplitude", "log_evidence"}
    per_sample : bool
        Divide the evidence by ``n * n_targets`` (nats per target value).

    Returns
    -------
    matplotlib Axes
        ``ax`` (the evidence axis; the test-error axis is ``ax.right_ax`` when drawn).
    """
    if evidence not in ("log_evidence_amplitude", "log_evidence"):
        raise InvalidInputError(f"evidence must be 'log_evidence_amplitude' or 'log_evidence', got {evidence!r}.")
    if param != "ridge" and not all(param in p for p in table.params):
        raise InvalidInputError(f"{param!r} is not a grid parameter of this table ({sorted(table.params[0])}).")
    import matplotlib.pyplot as plt  # optional heavy dependency, imported where it is used

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))

    def x_of(i):
        return float(table.ridge[i]) if param == "ridge" else float(table.params[i][param])

    def group_of(i):
        other = {k: v for k, v in table.params[i].items() if k != param}
        if param != "ridge":
            other["ridge"] = float(table.ridge[i])
        return tuple(sorted(other.items()))

    groups: dict = {}
    for i in range(len(table)):
        groups.setdefault(group_of(i), []).append(i)
    scale = table.n * table.n_targets if per_sample else 1.0
    has_test = bool(np.any(np.isfinite(table.test_error)))
    ax2 = ax.twinx() if has_test else None
    for j, (g, idx) in enumerate(groups.items()):
        idx = sorted(idx, key=x_of)
        xs = [x_of(i) for i in idx]
        label = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in g) or "evidence"
        ax.plot(xs, [getattr(table, evidence)[i] / scale for i in idx], "o-", color=f"C{j}", label=label)
        if ax2 is not None:
            ax2.plot(xs, [100 * table.test_error[i] for i in idx], "s--", color=f"C{j}", alpha=0.6)
    ax.set_xlabel(param)
    ax.set_ylabel(("log evidence / (n k)" if per_sample else "log evidence")
                  + (" at a²*" if evidence == "log_evidence_amplitude" else " at a² = 1"))
    if ax2 is not None:
        ax2.set_ylabel("test error (%), dashed")
        ax.right_ax = ax2
    ax.legend(fontsize=8)
    return ax
