"""What every SGD / GD / Kaczmarz run shares (private; the public names are in :mod:`kernelgen.sgd`).

The recorded result (:class:`Trajectory`), record schedules and step sizes, the stability bound
(:func:`stability_bound`, derivation in the :mod:`kernelgen.sgd` docstring), sampling
(:func:`sample_indices`, from an explicit JAX key), the jit-compiled iterations (one ``lax.scan`` over
record segments), the problem setup (row-space SVD and the minimum-norm limit of a least-squares
problem; the eigendecomposition of a kernel matrix), and what the least-squares and the kernel runs
share (:func:`_schedule`: sampled rows, step sizes and the stability check; the loss, distance and
span metrics of the records).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Literal

import numpy as np
import scipy.linalg

from .._jax import enable_x64
from .._validation import as_float_array, check_same_rows
from ..errors import (
    InvalidInputError,
    MemoryBudgetError,
    ShapeMismatchError,
    UnstableStepSizeError,
)
from ..factors import EighFactor
from ..solvers import min_norm_solve

__all__ = [
    "DUAL_MAX_BYTES",
    "MAX_INDEX_BYTES",
    "Trajectory",
    "default_record_steps",
    "sample_indices",
    "stability_bound",
]

log = logging.getLogger(__name__)

#: ``form="auto"`` picks the dual form only when the float64 Gram matrix fits in this budget.
DUAL_MAX_BYTES = 2 * 2**30

#: Sampled indices are materialised up front (so that a NumPy loop can replay them);
#: refuse beyond this many bytes of int32 indices.
MAX_INDEX_BYTES = 1 * 2**30

Form = Literal["auto", "primal", "dual"]


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A recorded optimisation trajectory.

    Attributes
    ----------
    steps : ndarray of shape (R,), int64
        Iteration counts at which the iterate was recorded (0 = the start).
    loss : ndarray of shape (R,)
        Documented loss ``(1/2N) ||X w - y||^2`` (``(1/2N) ||K alpha - y||^2`` for kernel runs).
    distance : ndarray of shape (R,)
        Relative distance to the limit, ``||w_t - limit|| / ||limit||`` (in alpha for kernel runs).
    out_of_span : ndarray of shape (R,)
        ``||(I - P) w_t|| / ||w_t||``: the component of the float64 primal iterate outside the
        row space of X (P the orthogonal projector on it, from an SVD of X), relative to
        ``||w_t||``. In the dual form ``w_t`` is reconstructed as ``w0 + X^T alpha_t`` before it is
        projected. What it measures:

        - from ``w0 = 0`` in the **primal** form: the null-space component the iteration itself
          produced (round-off of the primal updates; Zhang et al.'s claim is that it stays 0);
        - from ``w0 = 0`` in the **dual** form: nothing about the iteration -- the iterate is
          ``X^T alpha`` by construction, and the value is the round-off of the reconstruction and
          the projector (~1e-16). ``span_by_construction`` is True for such runs;
        - from a start with a null-space component (either form): ``||(I - X^+ X) w0|| / ||w_t||``,
          whose numerator GD and SGD keep constant (``proofs/gd_closed_form.py``: the limit is
          ``X^+ y + (I - X^+ X) w0``). This is how a test checks that the metric detects an
          out-of-span component.

        Kernel runs: ``||P_0 alpha_t|| / ||alpha_t||`` with ``P_0`` the projector on the numerical
        null space of K; identically 0 when K has full numerical rank (nothing to measure: the
        function ``sum_i alpha_i k(x_i, .)`` is in the span of the data by construction).
        NaN when ``metrics=False``.
    span_drift : ndarray of shape (R,) or None
        ``||(I - P)(w_t - w0)|| / ||w_t||``: the out-of-span part of the displacement only (the
        start's own null-space component removed). Zero by construction (round-off of the
        reconstruction) in the dual form and for kernel runs; in the primal form it measures the
        drift the updates produce. NaN when ``metrics=False``.
    span_by_construction : bool
        True when the displacement ``w_t - w0`` is ``X^T alpha_t`` by construction (dual form,
        kernel runs): ``span_drift`` then cannot detect anything and ``out_of_span`` only reports
        the start's null-space component. Report the "stays in the span" claim only from runs
        where this is False.
    lambda_min, lambda_max : float
        Smallest nonzero and largest eigenvalue of the Hessian ``H = X^T X / N`` (``K / N``),
        over the numerical rank; NaN when ``metrics=False`` (no SVD).
    beta : float
        ``max_i ||x_i||^2`` (``max K_ii``), the B = 1 curvature in :func:`stability_bound`.
    iterates : ndarray of shape (R, d) or (R, d, k)
        Recorded primal iterates ``w_t`` (least squares) or ``alpha_t`` (kernel runs).
    w, alpha : ndarray or None
        Final primal iterate (least squares) and final dual iterate (dual form / kernel runs).
    limit : ndarray or None
        The limit the distance is measured to: ``X^+ y + (I - X^+ X) w0`` computed as
        ``w0 + min_norm_solve(X, y - X w0).coef`` (kernel runs: ``alpha0 + K^+ (y - K alpha0)``).
    method : str
        ``"sgd"``, ``"gd"`` or ``"kaczmarz"``.
    form : str
        ``"primal"`` or ``"dual"``.
    batch_size : int
    replace : bool
        Sampling with replacement (True) or as a stream of random permutations (False).
    step_size : float or ndarray of shape (steps,)
        The step used (an array when scheduled or per-row as in Kaczmarz).
    stability_bound : float
        :func:`stability_bound` for this method and batch size.
    condition_number : float
        ``lambda_max / lambda_min`` of the Gram matrix ``X X^T`` (or K) over its numerical rank.
    rank : int
        Numerical rank of X (or K) used for the projector.
    closed_form : ndarray or None
        Full-batch GD only: the closed-form iterates at ``steps``, same shape as ``iterates``.
    closed_form_gap : ndarray of shape (R,) or None
        ``||iterate - closed_form|| / max(||limit||, ||start||)``.
    predictions : ndarray of shape (R, n) or (R, n, k)
        Training predictions ``f_t = X w_t`` (``K alpha_t``).
    gradient_flow : ndarray or None
        Full-batch GD only: ``y + exp(-eta t Theta / N) (f0 - y)`` with ``Theta = X X^T`` (or K),
        the continuous-time function-space trajectory at ``t = steps``.
    distance_rkhs : ndarray of shape (R,) or None
        Kernel runs: ``||alpha_t - limit||_K / ||limit||_K`` (the feature-space distance).
    seconds : float
        Wall time of the iteration itself (excluding metrics).
    """

    steps: np.ndarray
    loss: np.ndarray
    distance: np.ndarray
    out_of_span: np.ndarray
    iterates: np.ndarray
    w: np.ndarray | None
    alpha: np.ndarray | None
    limit: np.ndarray | None
    method: str
    form: str
    batch_size: int
    replace: bool
    step_size: float | np.ndarray
    stability_bound: float
    condition_number: float
    rank: int
    predictions: np.ndarray
    closed_form: np.ndarray | None = None
    closed_form_gap: np.ndarray | None = None
    gradient_flow: np.ndarray | None = None
    distance_rkhs: np.ndarray | None = None
    seconds: float = 0.0
    span_drift: np.ndarray | None = None
    span_by_construction: bool = False
    lambda_min: float = float("nan")
    lambda_max: float = float("nan")
    beta: float = float("nan")


# ----------------------------------------------------------------------------- helpers


def _as_key(key):
    """A JAX PRNG key from a key or an int seed."""
    import jax

    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    return key


def default_record_steps(steps: int, n_records: int = 60) -> np.ndarray:
    """``0`` and about ``n_records`` log-spaced iteration counts up to ``steps`` (inclusive)."""
    steps = int(steps)
    if steps <= 0:
        return np.array([0], dtype=np.int64)
    pts = np.geomspace(1, steps, num=max(2, n_records - 1))
    return np.unique(np.r_[0, np.round(pts).astype(np.int64), steps])


def _record_steps(record_steps, steps: int) -> np.ndarray:
    if record_steps is None:
        return default_record_steps(steps)
    r = np.unique(np.asarray(record_steps, dtype=np.int64).ravel())
    if r.size == 0 or r[0] < 0 or r[-1] > steps:
        raise InvalidInputError(
            f"record_steps must lie in [0, steps={steps}], got range "
            f"[{r.min() if r.size else None}, {r.max() if r.size else None}]; pass iteration counts."
        )
    return r


def _step_array(step_size, steps: int, default: float) -> tuple[np.ndarray, float | np.ndarray]:
    """Per-step learning rates (steps,), and the value to report (float if constant)."""
    if step_size is None:
        step_size = default
    if callable(step_size):
        etas = np.asarray(step_size(np.arange(steps)), dtype=np.float64)
        etas = np.broadcast_to(etas, (steps,)).copy()
        report: float | np.ndarray = etas
    elif np.ndim(step_size) == 0:
        etas = np.full(steps, float(step_size))
        report = float(step_size)
    else:
        etas = np.asarray(step_size, dtype=np.float64).ravel()
        if etas.shape != (steps,):
            raise ShapeMismatchError(
                f"step_size array has shape {np.shape(step_size)}; it must have one entry per step "
                f"({steps},), or pass a float or a callable t -> eta_t."
            )
        report = etas
    if not np.all(np.isfinite(etas)) or np.any(etas <= 0):
        raise InvalidInputError("step sizes must be finite and positive; check step_size / the schedule.")
    return etas, report


def _lambda_max_gram(A: np.ndarray, *, gram: bool) -> float:
    """Largest eigenvalue of ``A A^T`` (of A itself when ``gram``), float64."""
    if gram:
        n = A.shape[0]
        return float(scipy.linalg.eigh(A, eigvals_only=True, subset_by_index=[n - 1, n - 1])[0])
    # ||A||_2^2 via the smaller Gram matrix
    G = A @ A.T if A.shape[0] <= A.shape[1] else A.T @ A
    m = G.shape[0]
    return float(scipy.linalg.eigh(G, eigvals_only=True, subset_by_index=[m - 1, m - 1])[0])


def _bound_from(beta: float, lam1: float, n: int, batch_size: int | None, replace: bool) -> float:
    if batch_size is None:  # full-batch GD: eta < 2 / lambda_max(H)
        return 2.0 / lam1
    B = int(batch_size)
    if replace:  # Ma, Bassily & Belkin (2018) Thm 2: 2 * eta*(B)
        return 2.0 * B / (beta + (B - 1) * lam1)
    if n == 1:
        return 2.0 / beta
    # uniform B-subsets: E[H_B^2] <= ((N-B) beta + N (B-1) lambda_1) / (B (N-1)) * H
    return 2.0 * B * (n - 1) / ((n - B) * beta + n * (B - 1) * lam1)


def stability_bound(A, *, batch_size: int | None = None, replace: bool = True, gram: bool = False) -> float:
    """Largest stable step size for the loss scaling of this module.

    Parameters
    ----------
    A : array of shape (n_samples, n_features), or (n, n) PSD kernel matrix when ``gram``
    batch_size : int or None
        None: full-batch GD, bound ``2 / lambda_max(X^T X / N)``. An integer B: mini-batch SGD,
        ``2B / (beta + (B - 1) lambda_1)`` with replacement (``2 / max_i ||x_i||^2`` at B = 1).
    replace : bool
        Sampling with replacement; False uses the uniform-subset bound (equal to the GD bound
        at B = N).
    gram : bool
        ``A`` is a kernel matrix K: ``beta = max K_ii``, ``lambda_1 = lambda_max(K) / N``.

    Returns
    -------
    float

    References
    ----------
    Ma, Bassily, Belkin, ICML 2018, Theorem 2 (eta*(m)); the bound returned is 2 eta*(m).
    """
    A = as_float_array(A, "A", ndim=(2,), dtype=np.float64)
    n = A.shape[0]
    if gram and A.shape[1] != n:
        raise ShapeMismatchError(f"gram=True needs a square kernel matrix, got shape {A.shape}.")
    beta = float(np.max(np.diag(A))) if gram else float(np.max(np.einsum("ij,ij->i", A, A)))
    lam1 = _lambda_max_gram(A, gram=gram) / n
    if beta <= 0 or lam1 <= 0:
        raise InvalidInputError("A is zero: every step size is stable and nothing moves; check the data.")
    return _bound_from(beta, lam1, n, batch_size, replace)


def _check_step(etas: np.ndarray, bound: float, allow_unstable: bool, what: str) -> None:
    eta_max = float(np.max(etas))
    # 1e-12 relative slack: a step set to exactly the bound computed in floating point
    # (e.g. 2 / beta) must not be refused for rounding.
    if eta_max > bound * (1 + 1e-12):
        msg = (
            f"step size {eta_max:.6g} exceeds the stability bound {bound:.6g} of {what} "
            f"(loss (1/2N)||Xw - y||^2, see kernelgen.sgd); use a step below the bound "
            f"(kernelgen.sgd.stability_bound) or pass allow_unstable=True to study divergence."
        )
        if not allow_unstable:
            raise UnstableStepSizeError(msg)
        log.info("allow_unstable=True: %s", msg)


def sample_indices(
    key,
    n_samples: int,
    steps: int,
    batch_size: int = 1,
    *,
    replace: bool = True,
    probabilities=None,
) -> np.ndarray:
    """Sampled row indices for every step, drawn with ``jax.random`` from an explicit key.

    Parameters
    ----------
    key : jax PRNG key or int seed
    n_samples, steps, batch_size : int
    replace : bool
        True: i.i.d. uniform draws (or from ``probabilities``). False: a stream of independent
        random permutations of ``range(n_samples)`` cut into consecutive batches, so every epoch
        visits each sample once (a batch straddling two epochs may repeat a sample).
    probabilities : array of shape (n_samples,), optional
        Sampling weights (with replacement only), e.g. ``||x_i||^2`` for Kaczmarz.

    Returns
    -------
    ndarray of shape (steps, batch_size), int32
    """
    import jax
    import jax.numpy as jnp

    n_samples, steps, batch_size = int(n_samples), int(steps), int(batch_size)
    if n_samples < 1 or steps < 0 or batch_size < 1:
        raise InvalidInputError(
            f"need n_samples >= 1, steps >= 0, batch_size >= 1; got {n_samples}, {steps}, {batch_size}."
        )
    nbytes = 4 * steps * batch_size
    if nbytes > MAX_INDEX_BYTES:
        raise MemoryBudgetError(
            f"{steps} steps x batch {batch_size} needs {nbytes / 2**20:.0f} MiB of sampled indices "
            f"(limit {MAX_INDEX_BYTES / 2**20:.0f} MiB); run fewer steps per call and continue from w0.",
            bytes_needed=nbytes,
            bytes_available=MAX_INDEX_BYTES,
        )
    key = _as_key(key)
    total = steps * batch_size
    if probabilities is not None:
        if not replace:
            raise InvalidInputError("probabilities need replace=True (weighted sampling is i.i.d.).")
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != (n_samples,) or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise InvalidInputError("probabilities must be finite, non-negative, of shape (n_samples,), not all zero.")
        with enable_x64():
            idx = jax.random.choice(key, n_samples, shape=(total,), replace=True, p=jnp.asarray(p / p.sum()))
    elif replace:
        idx = jax.random.randint(key, (total,), 0, n_samples, dtype=jnp.int32)
    else:
        n_epochs = -(-total // n_samples) if total else 0
        if n_epochs == 0:
            idx = jnp.zeros((0,), jnp.int32)
        else:
            keys = jax.random.split(key, n_epochs)
            perms = jax.vmap(lambda k: jax.random.permutation(k, n_samples))(keys)
            idx = perms.reshape(-1)[:total]
    return np.asarray(idx, dtype=np.int32).reshape(steps, batch_size)


# ----------------------------------------------------------------------------- jit cores


@functools.lru_cache(maxsize=None)
def _compiled(kind: str):
    """The jit-compiled iteration for ``kind`` in {"primal", "dual", "gd_primal", "gd_dual"}.

    Signature ``(A, b, x0, indices, etas, seg_bounds) -> (x_final, records)``: an outer
    ``lax.scan`` over record segments ``[start, end)``, each a ``fori_loop`` over steps
    (dynamic bounds, so one compilation serves every record schedule).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    hi = lax.Precision.HIGHEST

    # Multi-target iterates are stored transposed, (k, m), and targets as (k, n): the
    # per-step products then read contiguous rows (measured ~3x faster than (m, k) on CPU).
    def resid(x, rows, b, idx):  # residuals of the sampled rows: (B,) or (k, B)
        if x.ndim == 1:
            return jnp.matmul(rows, x, precision=hi) - b[idx]
        return jnp.matmul(x, rows.T, precision=hi) - b[:, idx]

    if kind == "primal":
        # w <- w - (eta / B) X_B^T (X_B w - y_B)                       (module docstring)
        def step(t, w, A, b, indices, etas):
            idx = indices[t]
            if idx.shape[0] == 1 and w.ndim == 1:  # B = 1: one dynamic row slice, an axpy
                i = idx[0]
                x = lax.dynamic_index_in_dim(A, i, keepdims=False)
                return w - (etas[t] * (jnp.dot(x, w, precision=hi) - b[i])) * x
            rows = A[idx]  # (B, d) gather
            r = resid(w, rows, b, idx)
            c = etas[t] / idx.shape[0]
            if w.ndim == 1:
                return w - c * jnp.matmul(rows.T, r, precision=hi)
            return w - c * jnp.matmul(r, rows, precision=hi)

    elif kind == "dual":
        # alpha[i_b] -= (eta / B) (K_{i_b} alpha - y'_{i_b}), scatter-add for duplicates
        def step(t, a, A, b, indices, etas):
            idx = indices[t]
            rows = A[idx]  # (B, n) rows of K
            r = resid(a, rows, b, idx)
            c = etas[t] / idx.shape[0]
            if a.ndim == 1:
                return a.at[idx].add(-c * r)
            return a.at[:, idx].add(-c * r)

    elif kind == "gd_primal":
        # w <- w - (eta / N) X^T (X w - y)
        def step(t, w, A, b, indices, etas):
            c = etas[t] / A.shape[0]
            if w.ndim == 1:
                return w - c * jnp.matmul(A.T, jnp.matmul(A, w, precision=hi) - b, precision=hi)
            return w - c * jnp.matmul(jnp.matmul(w, A.T, precision=hi) - b, A, precision=hi)

    elif kind == "gd_dual":
        # alpha <- alpha - (eta / N) (K alpha - y')   (K symmetric: alpha^T K = (K alpha)^T)
        def step(t, a, A, b, indices, etas):
            c = etas[t] / A.shape[0]
            if a.ndim == 1:
                return a - c * (jnp.matmul(A, a, precision=hi) - b)
            return a - c * (jnp.matmul(a, A, precision=hi) - b)

    else:  # pragma: no cover - internal
        raise ValueError(kind)

    def run(A, b, x0, indices, etas, seg_bounds):
        def segment(x, se):
            x = lax.fori_loop(se[0], se[1], lambda t, x: step(t, x, A, b, indices, etas), x)
            return x, x

        return lax.scan(segment, x0, seg_bounds)

    return jax.jit(run)


def _iterate(kind, A, b, x0, indices, etas, record):
    """Run the compiled iteration; return (final, records (R, ...)) as NumPy float64."""
    import jax
    import jax.numpy as jnp

    starts = np.r_[0, record[:-1]]
    seg = np.stack([starts, record], axis=1).astype(np.int32)
    multi = np.ndim(b) == 2
    if multi:  # transposed layout for multi-target runs (see _compiled)
        b, x0 = np.asarray(b).T, np.asarray(x0).T
    with enable_x64():
        fn = _compiled(kind)
        args = (
            jnp.asarray(A, dtype=jnp.float64),
            jnp.asarray(b, dtype=jnp.float64),
            jnp.asarray(x0, dtype=jnp.float64),
            jnp.asarray(indices, dtype=jnp.int32),
            jnp.asarray(etas, dtype=jnp.float64),
            jnp.asarray(seg),
        )
        t0 = time.perf_counter()
        final, recs = fn(*args)
        final = jax.block_until_ready(final)
        seconds = time.perf_counter() - t0
        final, recs = np.asarray(final), np.asarray(recs)
    if multi:
        final, recs = final.T.copy(), np.ascontiguousarray(recs.transpose(0, 2, 1))
    return final, recs, seconds


# ----------------------------------------------------------------------------- problem setup


@dataclasses.dataclass
class _LinearProblem:
    X: np.ndarray
    y: np.ndarray
    w0: np.ndarray
    Vr: np.ndarray | None  # (rank, d) orthonormal rows spanning the row space (None: metrics off)
    s: np.ndarray | None  # (rank,) nonzero singular values
    limit: np.ndarray | None
    beta: float
    lam1: float

    @property
    def rank(self) -> int:
        return int(self.s.size) if self.s is not None else -1

    @property
    def kappa(self) -> float:
        return float((self.s[0] / self.s[-1]) ** 2) if self.s is not None and self.s.size else float("nan")


def _min_norm(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``A^+ Y`` in float64 by the foundation's rank-revealing solver (:func:`kernelgen.solvers.min_norm_solve`)."""
    return np.asarray(min_norm_solve(A, Y).coef, dtype=np.float64)


def _shaped(a, shape: tuple, name: str, what: str) -> np.ndarray:
    """``a`` as float64 of exactly ``shape`` (``what`` names the axes in the error)."""
    a = as_float_array(a, name, ndim=(len(shape),), dtype=np.float64)
    if a.shape != shape:
        raise ShapeMismatchError(f"{name} has shape {a.shape}; it must be {shape} ({what}).")
    return a


def _start(x0, shape: tuple, name: str, what: str) -> np.ndarray:
    """The start of a run: zeros of ``shape`` by default, else ``x0`` checked by :func:`_shaped`."""
    return np.zeros(shape) if x0 is None else _shaped(x0, shape, name, what)


def _linear_problem(X, y, w0, reference=None, metrics: bool = True) -> _LinearProblem:
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    check_same_rows(X, y, "X", "y")
    n, d = X.shape
    wshape = (d,) + y.shape[1:]
    w0 = _start(w0, wshape, "w0", "n_features[, n_targets]")
    beta = float(np.max(np.einsum("ij,ij->i", X, X)))
    if beta <= 0:
        raise InvalidInputError("X is all zeros: nothing to fit; check the data.")
    limit = None if reference is None else _shaped(reference, wshape, "reference", "n_features[, n_targets]")
    if not metrics:
        return _LinearProblem(X, y, w0, None, None, limit, beta, _lambda_max_gram(X, gram=False) / n)
    # SVD for the row-space projector, spectrum and condition number (numpy's rank rule)
    _, s, Vt = scipy.linalg.svd(X, full_matrices=False, lapack_driver="gesdd")
    tol = s[0] * max(n, d) * np.finfo(np.float64).eps if s.size else 0.0
    r = int(np.sum(s > tol))
    if limit is None:
        # X^+ y + (I - X^+ X) w0 = w0 + X^+ (y - X w0)    (proofs/gd_closed_form.py)
        limit = w0 + _min_norm(X, y - X @ w0)
    return _LinearProblem(X, y, w0, Vt[:r], s[:r], limit, beta, float(s[0] ** 2 / n))


def _relnorm(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(a.reshape(a.shape[0], -1) ** 2, axis=1))


def _apply(M: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``M @ v`` for every record ``v = V[t]`` (V of shape (R, m) or (R, m, k)), through BLAS."""
    return V @ M.T if V.ndim == 2 else np.matmul(M, V)


# ----------------------------------------------------------------------------- what every run shares


@dataclasses.dataclass(frozen=True)
class _Schedule:
    """The sampled rows, the per-step rates and the stability bound of one run (least squares or kernel)."""

    method: str
    indices: np.ndarray  # (steps, B) int32; (steps, 1) zeros for full-batch GD
    etas: np.ndarray  # (steps,)
    report: float | np.ndarray  # the step as recorded in the Trajectory
    bound: float
    batch_size: int
    replace: bool

    def fields(self) -> dict:
        """The :class:`Trajectory` fields that describe the schedule."""
        return dict(
            method=self.method,
            batch_size=int(self.batch_size),
            replace=bool(self.replace) if self.method == "sgd" else True,
            step_size=self.report,
            stability_bound=float(self.bound),
        )


def _schedule(
    method: str, *, n: int, beta: float, lam1: float, row_sq: np.ndarray, steps: int, allow_unstable: bool,
    hessian: str, name: str, key=None, batch_size: int = 1, step_size=None, replace: bool = True,
    relaxation: float = 1.0, indices=None,
) -> _Schedule:
    """Rows, rates and bound of ``method`` in {"sgd", "gd", "kaczmarz"} (the rules of :mod:`kernelgen.sgd`).

    ``row_sq`` holds ``||x_i||^2`` (``K_ii`` for kernel runs, positive for Kaczmarz: the caller checks);
    ``hessian`` and ``name`` word the error of a step above the bound (``"X^T X / N"``, ``"mini-batch SGD"``);
    the sampling arguments from ``key`` on are those of the public functions.
    """
    relaxation = float(relaxation)
    if method == "gd":
        bound = _bound_from(beta, lam1, n, None, True)
        etas, report = _step_array(step_size, steps, default=1.0 / lam1)
        _check_step(etas, bound, allow_unstable, f"full-batch GD (2 / lambda_max({hessian}))")
        return _Schedule(method, np.zeros((steps, 1), np.int32), etas, report, bound, n, replace)
    if method == "kaczmarz":
        B = 1
        if not (0 < relaxation < 2):
            msg = f"Kaczmarz relaxation {relaxation} is outside (0, 2), where it is stable."
            if not allow_unstable:
                raise UnstableStepSizeError(msg + " Pass allow_unstable=True to study divergence.")
            log.info("allow_unstable=True: %s", msg)
        probs = row_sq
    else:
        B = int(batch_size)
        if B < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {B}.")
        probs = None
    if indices is None:
        idx = sample_indices(key, n, steps, B, replace=replace, probabilities=probs)
    else:
        idx = np.asarray(indices, dtype=np.int32)
        if idx.shape != (steps, B) or idx.min(initial=0) < 0 or idx.max(initial=0) >= n:
            raise InvalidInputError(f"indices must have shape ({steps}, {B}) with values in [0, {n}).")
    if method == "kaczmarz":
        etas = relaxation / row_sq[idx[:, 0]]  # eta_i = omega / ||x_i||^2 (Strohmer & Vershynin Alg. 1)
        return _Schedule(method, idx, etas, etas, 2.0 / beta, B, replace)
    bound = _bound_from(beta, lam1, n, B, replace)
    etas, report = _step_array(step_size, steps, default=bound / 2)
    _check_step(etas, bound, allow_unstable, f"{name} with B = {B}, replace={replace}")
    return _Schedule(method, idx, etas, report, bound, B, replace)


def _loss(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The documented loss ``(1/2N) ||f_t - y||^2`` of every record of the predictions F (R, n[, k])."""
    return 0.5 * np.sum((F - y[None]).reshape(F.shape[0], -1) ** 2, axis=1) / y.shape[0]


def _distance(V: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """``||v_t - limit|| / ||limit||`` for every record (the denominator kept away from 0)."""
    return _relnorm(V - limit[None]) / max(float(np.linalg.norm(limit)), np.finfo(float).tiny)


def _span_metrics(V: np.ndarray, v0: np.ndarray, null_part) -> tuple[np.ndarray, np.ndarray]:
    """``out_of_span`` and ``span_drift`` of the records V: ``null_part(V)`` and ``null_part(V - v0)``
    relative to ``||v_t||`` (0 where ``v_t = 0``); ``null_part`` maps records to the norms of their
    null-space components."""
    vn = _relnorm(V)
    safe = np.where(vn > 0, vn, 1.0)
    out = np.where(vn > 0, null_part(V) / safe, 0.0)
    drift = np.where(vn > 0, null_part(V - v0[None]) / safe, 0.0)
    return out, drift


# ----------------------------------------------------------------------------- kernel matrices


def _kernel_factor(K, factor):
    """The eigendecomposition of K: the one given (checked to be of this K's order), or computed once here.

    The symmetry and PSD rules are kernelgen.numerics' (via :class:`kernelgen.factors.EighFactor`).
    """
    if factor is None:
        fac = EighFactor.factor(K)
    else:
        if not isinstance(factor, EighFactor) or factor.shape != K.shape:
            raise InvalidInputError(f"factor must be the EighFactor of this K (order {K.shape[0]}), "
                                    f"got {type(factor).__name__} of shape {getattr(factor, 'shape', None)}.")
        fac = factor
    fac.require_psd("K")
    return fac


def _with_params(placeholder: str, text: str):
    """Decorator: replace the line ``<<placeholder>>`` of ``fn.__doc__`` by the shared ``text``.

    Docstrings must be literals, so the parameter descriptions shared by several functions are
    inserted at import time.
    """

    def insert(fn):
        fn.__doc__ = fn.__doc__.replace(f"    <<{placeholder}>>", text.strip("\n") + "\n")
        return fn

    return insert
