"""SGD, GD and randomised Kaczmarz on least squares ``X w = y``, primal or dual form (private; see
:mod:`kernelgen.sgd` for the loss scaling, the dual form and the stability bound).

:func:`sgd`, :func:`gd` and :func:`kaczmarz` run in the primal form (iterate ``w``, rows of ``X``) or
the dual form (``w = w0 + X^T alpha``, rows of ``K = X X^T``; same trajectory in exact arithmetic);
``form="auto"`` chooses as the package docstring says. Every run is measured against the limit
``X^+ y + (I - X^+ X) w0`` and carries its row-space metrics (:class:`~kernelgen.sgd.Trajectory`).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from ..errors import InvalidInputError, UnstableStepSizeError
from ..kernels import kernel_matrix
from ._closed_forms import _closed_form_linear, gradient_flow_predictions
from ._common import (
    DUAL_MAX_BYTES,
    Form,
    Trajectory,
    _apply,
    _bound_from,
    _check_step,
    _iterate,
    _linear_problem,
    _LinearProblem,
    _record_steps,
    _relnorm,
    _step_array,
    _with_params,
    sample_indices,
)

__all__ = ["gd", "kaczmarz", "sgd"]

log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------- least squares


def _choose_form(form: str, n: int, d: int) -> str:
    if form not in ("auto", "primal", "dual"):
        raise InvalidInputError(f"form must be 'auto', 'primal' or 'dual', got {form!r}.")
    if form == "auto":
        return "dual" if (n < d and 8 * n * n <= DUAL_MAX_BYTES) else "primal"
    return form


def _gram(X: np.ndarray) -> np.ndarray:
    """``X X^T`` in float64, built blockwise (one giant ``X @ X.T`` can crash OpenBLAS: FACTS.md)."""
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

_with_ls_params = _with_params("LS_PARAMS", _LS_PARAMS)


@_with_ls_params
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


@_with_ls_params
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


@_with_ls_params
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
