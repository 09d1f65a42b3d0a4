"""SGD, gradient descent and randomised Kaczmarz on least squares, primal and dual.

The claim this module makes visible (Zhang et al. 2017, section 5): gradient methods
started at ``w0 = 0`` keep ``w = X^T alpha`` in the row space of ``X``, and when they
interpolate, ``X w = y``, the limit is the minimum-norm interpolant ``X^+ y``. The same
iteration runs in *kernel (dual) coordinates* ``alpha`` with rows of ``K = X X^T`` (or of
any PSD kernel matrix), which moves ``n/d`` of the bytes per step when ``n < d``.

Loss scaling (used everywhere in this module)
---------------------------------------------
Full batch::

    L(w) = (1 / 2N) ||X w - y||^2,          grad L = X^T (X w - y) / N,   Hessian H = X^T X / N

Mini-batch of size B (indices ``i_1 .. i_B``, duplicates allowed)::

    L_B(w) = (1 / 2B) sum_b (x_{i_b}^T w - y_{i_b})^2,   w <- w - eta * grad L_B(w)

so B = 1 is ``w <- w - eta * x_i (x_i^T w - y_i)`` and full-batch GD is
``w <- w - (eta / N) X^T (X w - y)``. Randomised Kaczmarz (Strohmer & Vershynin 2009)
is B = 1 with rows drawn with probability ``||x_i||^2 / ||X||_F^2`` and the per-row step
``eta_i = omega / ||x_i||^2`` (relaxation ``omega``, classical ``omega = 1``).

Dual form: with ``w = w0 + X^T alpha`` the residual of sample ``i`` is
``x_i^T w0 + K_i alpha - y_i``, so the mini-batch step is
``alpha[i_b] -= (eta / B) r_b`` (scatter-add: a sample drawn twice is updated twice),
the same trajectory as the primal one in exact arithmetic.

Stability bound (:func:`stability_bound`), with ``beta = max_i ||x_i||^2`` (``max K_ii``)
and ``lambda_1 = lambda_max(H)`` (``lambda_max(K) / N``):

- full-batch GD: ``eta < 2 / lambda_1`` (necessary and sufficient: the error contracts by
  ``max |1 - eta lambda|`` over the nonzero spectrum of H);
- B = 1: ``eta < 2 / beta`` -- the per-sample step ``I - eta x_i x_i^T`` has eigenvalue
  ``1 - eta ||x_i||^2`` along ``x_i``;
- mini-batch B with replacement: ``eta < 2B / (beta + (B - 1) lambda_1)``, twice the
  step ``eta*(B)`` of Ma, Bassily & Belkin (2018, Theorem 2): below it the expected squared
  error contracts, because ``E[H_B^2] <= (beta + (B - 1) lambda_1) / B * H``;
- mini-batch B without replacement (uniform B-subsets):
  ``eta < 2B(N - 1) / ((N - B) beta + N (B - 1) lambda_1)``, which is ``2 / beta`` at B = 1
  and ``2 / lambda_1`` at B = N (full-batch GD).

For B > 1 the bounds are sufficient, not necessary. A step above the bound raises
:class:`~kernelgen.errors.UnstableStepSizeError` unless ``allow_unstable=True``.

Rates and the row space
-----------------------
:func:`predicted_contraction` gives the per-step factor theory predicts for a recorded GD or
SGD run (GD: ``max(|1 - eta lambda+_min|, |1 - eta lambda_max|)``, exact; SGD with replacement:
the same factor for the mean error and an upper bound on the root-mean-square error), and
:func:`measured_contraction` the factor fitted on the run's recorded distances. A run counts as
at its limit only when its distance is actually small; scripts report the steps still needed
otherwise. ``Trajectory.out_of_span`` measures the null-space component of the float64 primal
iterate (see :class:`Trajectory` for where that can and cannot be nonzero).

Default path
------------
``form="auto"`` runs the dual form when ``n < d`` and ``K`` fits in
:data:`DUAL_MAX_BYTES` (the primal form otherwise): the trajectory is the same, each step
gathers ``B n`` numbers instead of ``B d``. Measured here (``benchmarks/bench_sgd.py``,
n = 1,000, d = 5,000, float64): dual 1.79M steps/s at B = 1 (13.5x a NumPy loop, 9.6x the jit
primal form) and 17.2k at B = 100 (8.8x the NumPy loop, 9.3x the primal form).

Precision: every iteration runs in float64 (``kernelgen._jax.enable_x64``) with
``precision=HIGHEST`` matmuls; inputs of any float dtype are converted to float64.

References
----------
Zhang, Bengio, Hardt, Recht, Vinyals. Understanding deep learning requires rethinking
generalization. ICLR 2017, section 5.
Ma, Bassily, Belkin. The power of interpolation: understanding the effectiveness of SGD in
modern over-parametrized learning. ICML 2018, Theorem 2 (eta*(m) = m / (beta + (m - 1) lambda_1)).
Strohmer, Vershynin. A randomized Kaczmarz algorithm with exponential convergence.
J. Fourier Anal. Appl. 15 (2009), Algorithm 1.
Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein, Pennington. Wide neural networks of any
depth evolve as linear models under gradient descent. NeurIPS 2019, eq. (9)
(``f(t) = y + exp(-eta t Theta / N) (f0 - y)``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Callable, Literal

import numpy as np
import scipy.linalg

from ._jax import enable_x64
from ._validation import as_float_array, check_same_rows
from .errors import InvalidInputError, MemoryBudgetError, ShapeMismatchError, UnstableStepSizeError
from .factors import EighFactor

__all__ = [
    "DUAL_MAX_BYTES",
    "Trajectory",
    "stability_bound",
    "sample_indices",
    "sgd",
    "gd",
    "kaczmarz",
    "kernel_sgd",
    "kernel_gd",
    "kernel_kaczmarz",
    "gd_closed_form",
    "gradient_flow_predictions",
    "default_record_steps",
    "PredictedContraction",
    "predicted_contraction",
    "measured_contraction",
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
          whose numerator GD and SGD keep constant (FACTS.md: the limit is
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
    from . import min_norm_solve  # the foundation's solver (rank-revealing)

    return np.asarray(min_norm_solve(A, Y).coef, dtype=np.float64)


def _linear_problem(X, y, w0, reference=None, metrics: bool = True) -> _LinearProblem:
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    check_same_rows(X, y, "X", "y")
    n, d = X.shape
    wshape = (d,) + y.shape[1:]
    if w0 is None:
        w0 = np.zeros(wshape)
    else:
        w0 = as_float_array(w0, "w0", ndim=(y.ndim,), dtype=np.float64)
        if w0.shape != wshape:
            raise ShapeMismatchError(f"w0 has shape {w0.shape}; it must be {wshape} (n_features[, n_targets]).")
    beta = float(np.max(np.einsum("ij,ij->i", X, X)))
    if beta <= 0:
        raise InvalidInputError("X is all zeros: nothing to fit; check the data.")
    if reference is not None:
        limit = as_float_array(reference, "reference", ndim=(y.ndim,), dtype=np.float64)
        if limit.shape != wshape:
            raise ShapeMismatchError(f"reference has shape {limit.shape}, expected {wshape}.")
    else:
        limit = None
    if not metrics:
        return _LinearProblem(X, y, w0, None, None, limit, beta, _lambda_max_gram(X, gram=False) / n)
    # SVD for the row-space projector, spectrum and condition number (numpy's rank rule)
    _, s, Vt = scipy.linalg.svd(X, full_matrices=False, lapack_driver="gesdd")
    tol = s[0] * max(n, d) * np.finfo(np.float64).eps if s.size else 0.0
    r = int(np.sum(s > tol))
    if limit is None:
        # X^+ y + (I - X^+ X) w0 = w0 + X^+ (y - X w0)    (FACTS.md, GD on least squares)
        limit = w0 + _min_norm(X, y - X @ w0)
    return _LinearProblem(X, y, w0, Vt[:r], s[:r], limit, beta, float(s[0] ** 2 / n))


def _relnorm(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(a.reshape(a.shape[0], -1) ** 2, axis=1))


def _apply(M: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``M @ v`` for every record ``v = V[t]`` (V of shape (R, m) or (R, m, k)), through BLAS."""
    return V @ M.T if V.ndim == 2 else np.matmul(M, V)


def _linear_metrics(p: _LinearProblem, W: np.ndarray):
    """loss, distance, out_of_span, span_drift, predictions for recorded primal iterates W (R, d[, k])."""
    R = W.shape[0]
    F = _apply(p.X, W)  # predictions X w_t
    loss = 0.5 * np.sum((F - p.y[None]).reshape(R, -1) ** 2, axis=1) / p.X.shape[0]
    if p.limit is None:
        distance = np.full(R, np.nan)
    else:
        lim_norm = max(float(np.linalg.norm(p.limit)), np.finfo(float).tiny)
        distance = _relnorm(W - p.limit[None]) / lim_norm
    if p.Vr is None:
        return loss, distance, np.full(R, np.nan), np.full(R, np.nan), F

    def null_part(M):  # ||(I - P) m|| for every record, P = Vr^T Vr (orthonormal rows)
        return _relnorm(M - _apply(p.Vr.T, _apply(p.Vr, M)))

    wn = _relnorm(W)
    safe = np.where(wn > 0, wn, 1.0)
    # the iterate itself: nonzero when w0 has a null-space component (kept by GD/SGD), or
    # when the primal updates drift out of the row space
    out = np.where(wn > 0, null_part(W) / safe, 0.0)
    # the displacement w_t - w0 only: in the row space in exact arithmetic
    drift = np.where(wn > 0, null_part(W - p.w0[None]) / safe, 0.0)
    return loss, distance, out, drift, F


def _closed_form_linear(p: _LinearProblem, eta: float, steps_rec: np.ndarray) -> np.ndarray:
    """w_t = w_inf + V diag((1 - eta s^2 / N)^t) V^T (w0 - w_inf)   (proofs/gd_closed_form.py)."""
    n = p.X.shape[0]
    e0 = p.w0 - p.limit
    c0 = np.tensordot(p.Vr, e0, axes=(1, 0))  # (r[, k])
    lam = p.s**2 / n
    fac = np.power(1.0 - eta * lam[None, :], steps_rec[:, None].astype(np.float64))  # (R, r)
    if c0.ndim == 1:
        return p.limit[None] + (fac * c0[None]) @ p.Vr
    return p.limit[None] + np.matmul(p.Vr.T, fac[:, :, None] * c0[None])


def gd_closed_form(X, y, *, step_size: float, steps, w0=None) -> np.ndarray:
    """Closed-form full-batch GD iterates on ``L(w) = (1/2N)||Xw - y||^2``.

    ``w_t = w_inf + V (I - eta S^2 / N)^t V^T (w0 - w_inf)`` with ``X = U S V^T`` (nonzero
    singular values) and ``w_inf = X^+ y + (I - X^+ X) w0``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_targets)
    step_size : float
    steps : array of int, shape (R,)
    w0 : array of shape (n_features[, n_targets]), optional (default zeros)

    Returns
    -------
    ndarray of shape (R, n_features[, n_targets])

    References
    ----------
    FACTS.md "Gradient descent on least squares"; derivation in ``proofs/gd_closed_form.py``.
    """
    p = _linear_problem(X, y, w0)
    return _closed_form_linear(p, float(step_size), np.asarray(steps, dtype=np.int64).ravel())


def gradient_flow_predictions(Theta, y, f0, *, step_size: float, steps, discrete: bool = False,
                              factor=None) -> np.ndarray:
    """Function-space trajectory of GD on the squared loss with tangent kernel ``Theta``.

    ``discrete=False``: gradient flow ``f(t) = y + exp(-eta t Theta / N) (f0 - y)``
    (neural-tangents ``gradient_descent_mse`` convention, time measured in steps).
    ``discrete=True``: the exact GD iterates ``f_t = y + (I - eta Theta / N)^t (f0 - y)``.

    Parameters
    ----------
    Theta : array of shape (n, n), symmetric PSD
    y, f0 : arrays of shape (n,) or (n, k)
    step_size : float
    steps : array of shape (R,)
    factor : kernelgen.factors.EighFactor, optional
        The eigendecomposition of Theta, reused when given (default: computed here).

    Returns
    -------
    ndarray of shape (R, n[, k])

    References
    ----------
    Lee et al., NeurIPS 2019, eq. (9); derivation in ``proofs/gd_closed_form.py``.
    """
    Theta = as_float_array(Theta, "Theta", ndim=(2,), dtype=np.float64)
    y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    f0 = as_float_array(f0, "f0", ndim=(y.ndim,), dtype=np.float64)
    n = Theta.shape[0]
    if Theta.shape != (n, n) or y.shape[0] != n or f0.shape != y.shape:
        raise ShapeMismatchError(f"Theta {Theta.shape}, y {y.shape}, f0 {f0.shape} do not agree.")
    eig = _kernel_factor(Theta, factor)
    lam, Q = eig.eigenvalues, eig.eigenvectors
    lam = np.where(eig.keep, lam, 0.0)  # PSD: eigenvalues at or below the rank cut-off are zero
    t = np.asarray(steps, dtype=np.float64).ravel()
    eta = float(step_size)
    if discrete:
        fac = np.power(1.0 - eta * lam[None, :] / n, t[:, None])
    else:
        fac = np.exp(-eta * np.outer(t, lam) / n)
    c0 = Q.T @ (f0 - y)
    if c0.ndim == 1:
        return y[None] + (fac * c0[None]) @ Q.T
    return y[None] + np.matmul(Q, fac[:, :, None] * c0[None])


# ----------------------------------------------------------------------------- least squares


def _choose_form(form: str, n: int, d: int) -> str:
    if form not in ("auto", "primal", "dual"):
        raise InvalidInputError(f"form must be 'auto', 'primal' or 'dual', got {form!r}.")
    if form == "auto":
        return "dual" if (n < d and 8 * n * n <= DUAL_MAX_BYTES) else "primal"
    return form


def _gram(X: np.ndarray) -> np.ndarray:
    from .kernels import kernel_matrix  # blockwise: one giant X @ X.T can crash OpenBLAS

    return np.asarray(kernel_matrix(X, kernel="linear", dtype=np.float64), dtype=np.float64)


def _run_linear(
    X,
    y,
    *,
    method: str,
    steps: int,
    key,
    batch_size: int | None,
    step_size,
    replace: bool,
    relaxation: float,
    w0,
    record_steps,
    form: Form,
    allow_unstable: bool,
    reference,
    indices,
    metrics: bool = True,
) -> Trajectory:
    p = _linear_problem(X, y, w0, reference, metrics)
    n, d = p.X.shape
    steps = int(steps)
    if steps < 0:
        raise InvalidInputError(f"steps must be >= 0, got {steps}.")
    rec = _record_steps(record_steps, steps)
    form = _choose_form(form, n, d)
    row_sq = np.einsum("ij,ij->i", p.X, p.X)

    if method == "gd":
        bound = _bound_from(p.beta, p.lam1, n, None, True)
        etas, report = _step_array(step_size, steps, default=1.0 / p.lam1)
        _check_step(etas, bound, allow_unstable, "full-batch GD (2 / lambda_max(X^T X / N))")
        idx = np.zeros((steps, 1), np.int32)
        B = n
    else:
        if method == "kaczmarz":
            B = 1
            if np.any(row_sq == 0):
                raise InvalidInputError("Kaczmarz needs nonzero rows (step 1/||x_i||^2); drop zero rows of X.")
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
            report = etas
            bound = 2.0 / p.beta
        else:
            bound = _bound_from(p.beta, p.lam1, n, B, replace)
            etas, report = _step_array(step_size, steps, default=bound / 2)
            _check_step(etas, bound, allow_unstable, f"mini-batch SGD with B = {B}, replace={replace}")

    if form == "primal":
        kind = "gd_primal" if method == "gd" else "primal"
        final, recs, seconds = _iterate(kind, p.X, p.y, p.w0, idx, etas, rec)
        W, alpha = recs, None
        w_final = final
    else:
        K = _gram(p.X)
        b = p.y - p.X @ p.w0  # w = w0 + X^T alpha: residual x_i^T w0 + K_i alpha - y_i
        kind = "gd_dual" if method == "gd" else "dual"
        a0 = np.zeros((n,) + p.y.shape[1:])
        final, A_rec, seconds = _iterate(kind, K, b, a0, idx, etas, rec)
        W = p.w0[None] + _apply(p.X.T, A_rec)
        alpha = final
        w_final = p.w0 + np.tensordot(p.X, final, axes=(0, 0))

    loss, distance, out, drift, F = _linear_metrics(p, W)
    closed = gap = flow = None
    if method == "gd" and np.ndim(report) == 0 and metrics:
        closed = _closed_form_linear(p, float(report), rec)
        scale = max(float(np.linalg.norm(p.limit)), float(np.linalg.norm(p.w0)), np.finfo(float).tiny)
        gap = _relnorm(W - closed) / scale
        flow = gradient_flow_predictions(_gram(p.X), p.y, p.X @ p.w0, step_size=float(report), steps=rec)
    log.info(
        "%s (%s, B=%s) %d steps in %.3fs: distance %.3e, out_of_span %.3e",
        method, form, B, steps, seconds, distance[-1], out[-1],
    )
    return Trajectory(
        steps=rec,
        loss=loss,
        distance=distance,
        out_of_span=out,
        iterates=W,
        w=w_final,
        alpha=alpha,
        limit=p.limit,
        method=method,
        form=form,
        batch_size=int(B),
        replace=bool(replace) if method == "sgd" else True,
        step_size=report,
        stability_bound=float(bound),
        condition_number=p.kappa,
        rank=p.rank,
        predictions=F,
        closed_form=closed,
        closed_form_gap=gap,
        gradient_flow=flow,
        seconds=seconds,
        span_drift=drift,
        span_by_construction=form == "dual",
        lambda_min=float(p.s[-1] ** 2 / n) if p.s is not None and p.s.size else float("nan"),
        lambda_max=float(p.s[0] ** 2 / n) if p.s is not None and p.s.size else float("nan"),
        beta=p.beta,
    )


_LS_PARAMS = """
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_targets)
    steps : int
        Number of iterations.
    w0 : array of shape (n_features[, n_targets]), optional
        Start (default zeros). The limit is ``X^+ y + (I - X^+ X) w0``.
    record_steps : array of int, optional
        Iteration counts to record (default :func:`default_record_steps`).
    form : {"auto", "primal", "dual"}
        ``"auto"``: dual when ``n < d`` and K fits in :data:`DUAL_MAX_BYTES`.
    allow_unstable : bool
        Run a step above :func:`stability_bound` instead of raising.
    reference : array, optional
        The limit to measure distances to (default ``w0 + min_norm_solve(X, y - X w0).coef``).
    metrics : bool
        False skips the SVD and the minimum-norm solve (for timing): ``distance`` (unless
        ``reference`` is given), ``out_of_span`` and ``condition_number`` are NaN, ``rank`` is -1,
        no closed form; the loss and the iterates are still recorded.
"""


def _with_params(fn):
    """Insert the shared parameter descriptions into ``fn.__doc__`` (docstrings must be literals)."""
    doc = fn.__doc__
    if "<<LS_PARAMS>>" in doc:
        doc = doc.replace("    <<LS_PARAMS>>", _LS_PARAMS.strip("\n") + "\n")
    if "<<K_PARAMS>>" in doc:
        doc = doc.replace("    <<K_PARAMS>>", _K_PARAMS.strip("\n") + "\n")
    fn.__doc__ = doc
    return fn


@_with_params
def sgd(
    X,
    y,
    *,
    steps: int,
    key=0,
    batch_size: int = 1,
    step_size: float | np.ndarray | Callable | None = None,
    replace: bool = True,
    w0=None,
    record_steps=None,
    form: Form = "auto",
    allow_unstable: bool = False,
    reference=None,
    indices=None,
    metrics: bool = True,
) -> Trajectory:
    """Mini-batch SGD on ``L(w) = (1/2N)||Xw - y||^2``, primal or dual (same trajectory).

    Each step ``w <- w - (eta_t / B) X_B^T (X_B w - y_B)`` on B sampled rows.

    Parameters
    ----------
    key : jax PRNG key or int seed
        Drives :func:`sample_indices` (ignored when ``indices`` is given).
    batch_size : int
    step_size : float, array of shape (steps,), callable ``t -> eta_t``, or None
        None: half the stability bound (``eta*(B)`` of Ma et al. 2018; ``1 / max ||x_i||^2`` at B = 1).
    replace : bool
        Sample with replacement (default) or as a stream of random permutations.
    indices : array of shape (steps, batch_size), optional
        Replay these sampled rows instead of drawing them.
    <<LS_PARAMS>>
    Returns
    -------
    Trajectory

    Raises
    ------
    UnstableStepSizeError
        A step exceeds :func:`stability_bound` and ``allow_unstable`` is False.

    References
    ----------
    Zhang et al., ICLR 2017, section 5; Ma, Bassily, Belkin, ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((5, 12)); y = np.arange(5.0)
    >>> tr = sgd(X, y, steps=4000, key=0)
    >>> bool(tr.distance[-1] < 1e-8 and tr.out_of_span.max() < 1e-12)
    True
    """
    return _run_linear(
        X, y, method="sgd", steps=steps, key=key, batch_size=batch_size, step_size=step_size,
        replace=replace, relaxation=1.0, w0=w0, record_steps=record_steps, form=form,
        allow_unstable=allow_unstable, reference=reference, indices=indices, metrics=metrics,
    )


@_with_params
def gd(
    X,
    y,
    *,
    steps: int,
    step_size: float | np.ndarray | Callable | None = None,
    w0=None,
    record_steps=None,
    form: Form = "auto",
    allow_unstable: bool = False,
    reference=None,
    metrics: bool = True,
) -> Trajectory:
    """Full-batch gradient descent ``w <- w - (eta/N) X^T (X w - y)``, with its closed form.

    The result carries ``closed_form`` (exact iterates, :func:`gd_closed_form`),
    ``closed_form_gap`` and ``gradient_flow`` (``y + exp(-eta t X X^T / N)(f0 - y)``) when the
    step is constant.

    Parameters
    ----------
    step_size : float, array of shape (steps,), callable or None
        None: ``1 / lambda_max(X^T X / N)`` (half the bound ``2 / lambda_max``).
    <<LS_PARAMS>>
    Returns
    -------
    Trajectory

    References
    ----------
    FACTS.md "Gradient descent on least squares"; Lee et al., NeurIPS 2019, eq. (9).
    """
    return _run_linear(
        X, y, method="gd", steps=steps, key=None, batch_size=None, step_size=step_size,
        replace=True, relaxation=1.0, w0=w0, record_steps=record_steps, form=form,
        allow_unstable=allow_unstable, reference=reference, indices=None, metrics=metrics,
    )


@_with_params
def kaczmarz(
    X,
    y,
    *,
    steps: int,
    key=0,
    relaxation: float = 1.0,
    w0=None,
    record_steps=None,
    form: Form = "auto",
    allow_unstable: bool = False,
    reference=None,
    indices=None,
    metrics: bool = True,
) -> Trajectory:
    """Randomised Kaczmarz: row i with probability ``||x_i||^2 / ||X||_F^2``, then
    ``w <- w + omega (y_i - x_i^T w) / ||x_i||^2 x_i``.

    Parameters
    ----------
    relaxation : float
        ``omega``, stable in (0, 2); 1 projects onto the hyperplane of row i.
    indices : array of shape (steps, 1), optional
        Replay these rows.
    <<LS_PARAMS>>
    Returns
    -------
    Trajectory

    References
    ----------
    Strohmer, Vershynin, J. Fourier Anal. Appl. 15 (2009), Algorithm 1.
    """
    return _run_linear(
        X, y, method="kaczmarz", steps=steps, key=key, batch_size=1, step_size=None,
        replace=True, relaxation=float(relaxation), w0=w0, record_steps=record_steps, form=form,
        allow_unstable=allow_unstable, reference=reference, indices=indices, metrics=metrics,
    )


# ----------------------------------------------------------------------------- kernel (dual only)


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


def _run_kernel(
    K, y, *, method, steps, key, batch_size, step_size, replace, relaxation, alpha0, record_steps,
    allow_unstable, reference, indices, factor=None,
) -> Trajectory:
    K = as_float_array(K, "K", ndim=(2,), dtype=np.float64)
    y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    n = K.shape[0]
    if K.shape != (n, n):
        raise ShapeMismatchError(f"K must be square (n, n), got {K.shape}.")
    check_same_rows(K, y, "K", "y")
    eig = _kernel_factor(K, factor)
    ashape = y.shape
    if alpha0 is None:
        alpha0 = np.zeros(ashape)
    else:
        alpha0 = as_float_array(alpha0, "alpha0", ndim=(y.ndim,), dtype=np.float64)
        if alpha0.shape != ashape:
            raise ShapeMismatchError(f"alpha0 has shape {alpha0.shape}, expected {ashape}.")
    steps = int(steps)
    rec = _record_steps(record_steps, steps)
    lam, Q = eig.eigenvalues, eig.eigenvectors
    pos = eig.keep
    rank = eig.rank
    kappa = float(lam[-1] / lam[pos][0]) if rank else float("nan")
    beta = float(np.max(np.diag(K)))
    lam1 = float(lam[-1] / n)
    if reference is None:
        limit = alpha0 + _min_norm(K, y - K @ alpha0)
    else:
        limit = as_float_array(reference, "reference", ndim=(y.ndim,), dtype=np.float64)

    if method == "gd":
        B = n
        bound = _bound_from(beta, lam1, n, None, True)
        etas, report = _step_array(step_size, steps, default=1.0 / lam1)
        _check_step(etas, bound, allow_unstable, "full-batch GD (2 / lambda_max(K / N))")
        idx = np.zeros((steps, 1), np.int32)
        kind = "gd_dual"
    else:
        diag = np.diag(K).copy()
        if method == "kaczmarz":
            B = 1
            if np.any(diag <= 0):
                raise InvalidInputError("Kaczmarz needs K_ii > 0 (step 1 / K_ii).")
            if not (0 < relaxation < 2):
                msg = f"Kaczmarz relaxation {relaxation} is outside (0, 2), where it is stable."
                if not allow_unstable:
                    raise UnstableStepSizeError(msg + " Pass allow_unstable=True to study divergence.")
                log.info("allow_unstable=True: %s", msg)
            probs = diag
        else:
            B = int(batch_size)
            probs = None
        if indices is None:
            idx = sample_indices(key, n, steps, B, replace=replace, probabilities=probs)
        else:
            idx = np.asarray(indices, dtype=np.int32)
            if idx.shape != (steps, B):
                raise InvalidInputError(f"indices must have shape ({steps}, {B}).")
        if method == "kaczmarz":
            etas = relaxation / diag[idx[:, 0]]
            report = etas
            bound = 2.0 / beta
        else:
            bound = _bound_from(beta, lam1, n, B, replace)
            etas, report = _step_array(step_size, steps, default=bound / 2)
            _check_step(etas, bound, allow_unstable, f"kernel SGD with B = {B}, replace={replace}")
        kind = "dual"

    final, A, seconds = _iterate(kind, K, y, alpha0, idx, etas, rec)
    R = A.shape[0]
    F = _apply(K, A)
    loss = 0.5 * np.sum((F - y[None]).reshape(R, -1) ** 2, axis=1) / n
    distance = _relnorm(A - limit[None]) / max(float(np.linalg.norm(limit)), np.finfo(float).tiny)
    E = (A - limit[None]).reshape(R, n, -1)
    knorm = lambda M: np.sqrt(np.clip(np.sum(M * np.matmul(K, M), axis=(1, 2)), 0, None))  # noqa: E731
    lim_k = float(knorm(limit.reshape(1, n, -1))[0])
    dist_k = knorm(E) / max(lim_k, np.finfo(float).tiny)
    Qn = Q[:, ~pos]  # numerical null space of K (empty when K has full numerical rank)

    def null_part(M):
        M = M.reshape(R, n, -1)
        return np.sqrt(np.sum(np.matmul(Qn.T, M) ** 2, axis=(1, 2))) if Qn.shape[1] else np.zeros(R)

    an = _relnorm(A)
    safe = np.where(an > 0, an, 1.0)
    out = np.where(an > 0, null_part(A) / safe, 0.0)
    drift = np.where(an > 0, null_part(A - alpha0[None]) / safe, 0.0)
    closed = gap = flow = None
    if method == "gd" and np.ndim(report) == 0:
        eta = float(report)
        # eigen-coordinates c = Q^T alpha: c_{t+1} = (1 - eta lam / N) c_t + (eta / N) Q^T y
        c0 = np.tensordot(Q, alpha0, axes=(0, 0))
        qy = np.tensordot(Q, y, axes=(0, 0))
        t = rec.astype(np.float64)[:, None]
        lp = np.where(pos, lam, 1.0)
        fac = np.where(pos[None], np.power(1.0 - eta * lam[None] / n, t), 1.0)
        cstar = qy / (lp if qy.ndim == 1 else lp[:, None])
        if qy.ndim == 1:
            C = np.where(pos[None], cstar[None] + fac * (c0 - cstar)[None], c0[None] + t * eta / n * qy[None])
            closed = C @ Q.T
        else:
            C = np.where(
                pos[None, :, None],
                cstar[None] + fac[..., None] * (c0 - cstar)[None],
                c0[None] + (t * eta / n)[..., None] * qy[None],
            )
            closed = np.matmul(Q, C)
        scale = max(float(np.linalg.norm(limit)), float(np.linalg.norm(alpha0)), np.finfo(float).tiny)
        gap = _relnorm(A - closed) / scale
        flow = gradient_flow_predictions(K, y, K @ alpha0, step_size=eta, steps=rec, factor=eig)
    return Trajectory(
        steps=rec,
        loss=loss,
        distance=distance,
        out_of_span=out,
        iterates=A,
        w=None,
        alpha=final,
        limit=limit,
        method=method,
        form="dual",
        batch_size=int(B),
        replace=bool(replace) if method == "sgd" else True,
        step_size=report,
        stability_bound=float(bound),
        condition_number=kappa,
        rank=rank,
        predictions=F,
        closed_form=closed,
        closed_form_gap=gap,
        gradient_flow=flow,
        distance_rkhs=dist_k,
        seconds=seconds,
        span_drift=drift,
        span_by_construction=True,
        lambda_min=float(lam[pos][0] / n) if rank else float("nan"),
        lambda_max=float(lam[-1] / n),
        beta=beta,
    )


_K_PARAMS = """
    K : array of shape (n_samples, n_samples)
        Symmetric PSD kernel matrix (e.g. :func:`kernelgen.kernels.kernel_matrix`).
    y : array of shape (n_samples,) or (n_samples, n_targets)
    steps : int
    alpha0 : array like y, optional
        Start (default zeros).
    record_steps : array of int, optional
    allow_unstable : bool
    reference : array like y, optional
        Limit for the distance (default ``alpha0 + min_norm_solve(K, y - K alpha0).coef``,
        i.e. ``K^{-1} y`` for positive-definite K; pass ``kernel_interpolate(...).alpha``).
    factor : kernelgen.factors.EighFactor, optional
        The eigendecomposition of this K, computed once and reused (e.g. ``fit.factor`` of
        ``kernel_interpolate(K, y, kernel="precomputed", solver="min_norm",
        options=SolveOptions(keep_factor=True))``); default: computed here.
"""


@_with_params
def kernel_sgd(
    K,
    y,
    *,
    steps: int,
    key=0,
    batch_size: int = 1,
    step_size=None,
    replace: bool = True,
    alpha0=None,
    record_steps=None,
    allow_unstable: bool = False,
    reference=None,
    indices=None,
    factor=None,
) -> Trajectory:
    """Mini-batch SGD in kernel (dual) coordinates: ``f = K alpha``, loss ``(1/2N)||K alpha - y||``^2
    in function space, step ``alpha[i_b] -= (eta / B)(K_{i_b} alpha - y_{i_b})`` (scatter-add).

    This is SGD on least squares in the feature space of the kernel (``w = Phi^T alpha``),
    so :func:`stability_bound` applies with ``beta = max K_ii`` and ``lambda_1 = lambda_max(K)/N``.

    Parameters
    ----------
    key, batch_size, step_size, replace, indices
        As in :func:`sgd`.
    <<K_PARAMS>>
    Returns
    -------
    Trajectory
        ``distance`` is relative in alpha; ``distance_rkhs`` in the RKHS norm.

    References
    ----------
    Zhang et al., ICLR 2017, section 5 (SGD on K alpha = y).
    """
    return _run_kernel(
        K, y, method="sgd", steps=steps, key=key, batch_size=batch_size, step_size=step_size,
        replace=replace, relaxation=1.0, alpha0=alpha0, record_steps=record_steps,
        allow_unstable=allow_unstable, reference=reference, indices=indices, factor=factor,
    )


@_with_params
def kernel_gd(
    K, y, *, steps: int, step_size=None, alpha0=None, record_steps=None, allow_unstable: bool = False,
    reference=None, factor=None,
) -> Trajectory:
    """Full-batch GD in kernel coordinates ``alpha <- alpha - (eta/N)(K alpha - y)``, with its
    closed form in the eigenbasis of K and the gradient flow ``y + exp(-eta t K / N)(f0 - y)``.

    Parameters
    ----------
    step_size : float, array, callable or None (default ``1 / lambda_max(K / N)``)
    <<K_PARAMS>>
    Returns
    -------
    Trajectory
    """
    return _run_kernel(
        K, y, method="gd", steps=steps, key=None, batch_size=None, step_size=step_size, replace=True,
        relaxation=1.0, alpha0=alpha0, record_steps=record_steps, allow_unstable=allow_unstable,
        reference=reference, indices=None, factor=factor,
    )


@_with_params
def kernel_kaczmarz(
    K, y, *, steps: int, key=0, relaxation: float = 1.0, alpha0=None, record_steps=None,
    allow_unstable: bool = False, reference=None, indices=None, factor=None,
) -> Trajectory:
    """Randomised Kaczmarz in kernel coordinates: i with probability ``K_ii / tr K``, then
    ``alpha_i += omega (y_i - K_i alpha) / K_ii``.

    Parameters
    ----------
    relaxation : float in (0, 2)
    <<K_PARAMS>>
    Returns
    -------
    Trajectory

    References
    ----------
    Strohmer, Vershynin (2009), Algorithm 1, in the feature space of K.
    """
    return _run_kernel(
        K, y, method="kaczmarz", steps=steps, key=key, batch_size=1, step_size=None, replace=True,
        relaxation=float(relaxation), alpha0=alpha0, record_steps=record_steps,
        allow_unstable=allow_unstable, reference=reference, indices=indices, factor=factor,
    )


# ----------------------------------------------------------------------------- rates


@dataclasses.dataclass(frozen=True)
class PredictedContraction:
    """Predicted per-step contraction of the distance to the limit (see :func:`predicted_contraction`).

    Attributes
    ----------
    mean : float
        ``max(|1 - eta lambda_min|, |1 - eta lambda_max|)`` over the nonzero spectrum of H. For
        full-batch GD this is the exact asymptotic factor of ``||w_t - w_inf||`` (FACTS.md); for
        SGD with replacement it is the factor of the *mean* error, since
        ``E[w_{t+1} - w_inf | w_t] = (I - eta H)(w_t - w_inf)``.
    rms_bound : float
        GD: equal to ``mean``. SGD with replacement: an upper bound on the factor of the root
        mean square error ``sqrt(E ||w_t - w_inf||^2)``,
        ``sqrt(1 - eta (2 - eta c_B) lambda_min)`` with ``c_B = (beta + (B - 1) lambda_max) / B``,
        from ``E[H_B^2] <= c_B H`` (the module docstring's stability bound). By Jensen the root mean
        square decays no faster than the mean, so in expectation the factor lies in
        ``[mean, rms_bound]``; a single trajectory scatters around it.
    exact : bool
        True for GD (``mean`` is the exact asymptotic factor), False for SGD (expectations).
    lambda_min, lambda_max, beta, step_size : float
        The quantities used.
    """

    mean: float
    rms_bound: float
    exact: bool
    lambda_min: float
    lambda_max: float
    beta: float
    step_size: float

    def steps_to(self, level: float, *, distance: float = 1.0, rate: str = "mean") -> float:
        """Further steps for the distance to fall from ``distance`` to ``level`` at ``rate``.

        Parameters
        ----------
        level, distance : float
            Target and current relative distance.
        rate : {"mean", "rms_bound"}

        Returns
        -------
        float
            ``ln(level / distance) / ln(factor)`` (0 if already below; ``inf`` if the factor is 1).
        """
        if rate not in ("mean", "rms_bound"):
            raise InvalidInputError(f"rate must be 'mean' or 'rms_bound', got {rate!r}.")
        f = self.mean if rate == "mean" else self.rms_bound
        if distance <= level:
            return 0.0
        if f >= 1.0:
            return float("inf")
        return float(np.log(level / distance) / np.log(f))


def predicted_contraction(tr: Trajectory) -> PredictedContraction:
    """The per-step contraction that theory predicts for a recorded GD or SGD run.

    Parameters
    ----------
    tr : Trajectory
        From :func:`gd`, :func:`sgd`, :func:`kernel_gd` or :func:`kernel_sgd` with a constant step
        size (and, for SGD, sampling with replacement) and metrics on (the spectrum comes from the
        run's SVD / eigendecomposition: ``tr.lambda_min``, ``tr.lambda_max``, ``tr.beta``).

    Returns
    -------
    PredictedContraction

    Raises
    ------
    InvalidInputError
        Kaczmarz, a scheduled step, sampling without replacement (consecutive batches are not
        independent, so the one-step expectations do not chain), or a run without metrics.

    Notes
    -----
    Error ``e = w - w_inf`` in the row space (``w_inf`` keeps the start's null-space component,
    which no step touches). GD: ``e_{t+1} = (I - eta H) e_t``, factor
    ``max |1 - eta lambda|`` over the nonzero spectrum. SGD with replacement, batch B:
    ``E[e_{t+1}] = (I - eta H) E[e_t]`` and
    ``E||e_{t+1}||^2 = e^T (I - 2 eta H + eta^2 E[H_B^2]) e <= (1 - eta (2 - eta c_B) lambda_min) ||e||^2``
    (``1 - eta (2 - eta c_B) lambda`` is decreasing in lambda for ``eta < 2 / c_B``). Kernel runs use
    ``H = K / N``; their ``distance_rkhs`` is the feature-space error the bound is about, and the
    distance in alpha has the same asymptotic factor (the slowest eigen-direction).

    References
    ----------
    FACTS.md "Gradient descent on least squares"; Ma, Bassily, Belkin, ICML 2018, Theorem 1 and
    the bound ``E[H_m^2] <= (beta + (m - 1) lambda_1) / m * H`` behind it.
    """
    if tr.method not in ("gd", "sgd"):
        raise InvalidInputError(f"predicted_contraction covers gd and sgd, not {tr.method!r}.")
    if np.ndim(tr.step_size) != 0:
        raise InvalidInputError("predicted_contraction needs a constant step size (got a schedule).")
    if tr.method == "sgd" and not tr.replace:
        raise InvalidInputError("predicted_contraction covers SGD with replacement only (replace=True).")
    lmin, lmax, beta, eta = float(tr.lambda_min), float(tr.lambda_max), float(tr.beta), float(tr.step_size)
    if not (np.isfinite(lmin) and np.isfinite(lmax) and lmin > 0):
        raise InvalidInputError("the run has no spectrum (metrics=False?); rerun with metrics=True.")
    mean = max(abs(1.0 - eta * lmin), abs(1.0 - eta * lmax))
    if tr.method == "gd":
        return PredictedContraction(mean, mean, True, lmin, lmax, beta, eta)
    B = int(tr.batch_size)
    c_b = (beta + (B - 1) * lmax) / B
    rho2 = 1.0 - eta * (2.0 - eta * c_b) * lmin
    return PredictedContraction(mean, float(np.sqrt(max(rho2, 0.0))), False, lmin, lmax, beta, eta)


def measured_contraction(steps, distance, *, floor: float = 1e-10, start_fraction: float = 0.5) -> float | None:
    """Per-step contraction factor measured on a recorded run.

    ``exp(slope)`` of a least-squares line through ``(t, ln distance_t)`` over the records with
    ``t`` in ``[start_fraction * t_b, t_b]``, where ``t_b`` is the last record before the distance
    first falls to ``floor`` (below it round-off, not the iteration, sets the distance).

    Parameters
    ----------
    steps : array of int, shape (R,)
    distance : array of float, shape (R,)
        Relative distances to the limit (``Trajectory.distance`` or ``distance_rkhs``).
    floor : float
        Records at or below it are excluded (default 1e-10: above the float64 round-off floor
        ``~kappa * eps`` of the problems in this package's scripts).
    start_fraction : float in [0, 1)
        The window starts at this fraction of ``t_b``.

    Returns
    -------
    float or None
        None when fewer than two records fall in the window (record more steps in the tail).

    Raises
    ------
    InvalidInputError
        Shapes differ, or a distance is not finite (a NaN/inf distance is an error, not a rate).
    """
    t = np.asarray(steps, dtype=np.float64).ravel()
    d = np.asarray(distance, dtype=np.float64).ravel()
    if t.shape != d.shape:
        raise InvalidInputError(f"steps {t.shape} and distance {d.shape} differ in shape.")
    if not np.all(np.isfinite(d)):
        raise InvalidInputError("distance has NaN/inf entries (metrics=False, or a diverged run).")
    below = np.nonzero(d <= floor)[0]
    end = below[0] if below.size else d.size  # records [0, end) are above the floor
    if end < 2:
        return None
    t_b = t[end - 1]
    m = (t[:end] >= start_fraction * t_b) & (d[:end] > 0)
    if m.sum() < 2 or np.ptp(t[:end][m]) == 0:
        return None
    slope = np.polyfit(t[:end][m], np.log(d[:end][m]), 1)[0]
    return float(np.exp(slope))
