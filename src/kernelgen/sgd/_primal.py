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

from ..errors import InvalidInputError
from ..kernels import kernel_matrix
from ._closed_forms import _closed_form_linear, gradient_flow_predictions
from ._common import (DUAL_MAX_BYTES, Form, Trajectory, _apply, _distance, _iterate, _linear_problem, _LinearProblem,
                      _loss, _record_steps, _relnorm, _schedule, _span_metrics, _with_params)

__all__ = ["gd", "kaczmarz", "sgd"]

log = logging.getLogger(__name__)


def _linear_metrics(p: _LinearProblem, W: np.ndarray):
    """loss, distance, out_of_span, span_drift, predictions for recorded primal iterates W (R, d[, k])."""
    R = W.shape[0]
    F = _apply(p.X, W)  # predictions X w_t
    loss = _loss(F, p.y)
    distance = np.full(R, np.nan) if p.limit is None else _distance(W, p.limit)
    if p.Vr is None:
        return loss, distance, np.full(R, np.nan), np.full(R, np.nan), F

    def null_part(M):  # ||(I - P) m|| for every record, P = Vr^T Vr (orthonormal rows)
        return _relnorm(M - _apply(p.Vr.T, _apply(p.Vr, M)))

    # out: the iterate itself, nonzero when w0 has a null-space component (kept by GD/SGD) or when the
    # primal updates drift out of the row space; drift: the displacement w_t - w0 only, in the row space
    # in exact arithmetic
    out, drift = _span_metrics(W, p.w0, null_part)
    return loss, distance, out, drift, F


# ----------------------------------------------------------------------------- least squares


def _choose_form(form: str, n: int, d: int) -> str:
    if form not in ("auto", "primal", "dual"):
        raise InvalidInputError(f"form must be 'auto', 'primal' or 'dual', got {form!r}.")
    if form == "auto":
        return "dual" if (n < d and 8 * n * n <= DUAL_MAX_BYTES) else "primal"
    return form


def _gram(X: np.ndarray) -> np.ndarray:
    """``X X^T`` in float64, built blockwise (one giant ``X @ X.T`` can crash OpenBLAS: see docs/numerics.md, 'BLAS and LAPACK call limits')."""
    return np.asarray(kernel_matrix(X, kernel="linear", dtype=np.float64), dtype=np.float64)


def _run_linear(
    method: str, X, y, *, steps: int, w0=None, record_steps=None, form: Form = "auto", allow_unstable: bool = False,
    reference=None, metrics: bool = True, **sampling,
) -> Trajectory:
    """The run behind :func:`sgd`, :func:`gd` and :func:`kaczmarz`: their arguments, ``method`` first
    (``sampling``: ``key``, ``batch_size``, ``step_size``, ``replace``, ``relaxation``, ``indices``)."""
    p = _linear_problem(X, y, w0, reference, metrics)
    n, d = p.X.shape
    steps = int(steps)
    if steps < 0:
        raise InvalidInputError(f"steps must be >= 0, got {steps}.")
    rec = _record_steps(record_steps, steps)
    form = _choose_form(form, n, d)
    row_sq = np.einsum("ij,ij->i", p.X, p.X)
    if method == "kaczmarz" and np.any(row_sq == 0):
        raise InvalidInputError("Kaczmarz needs nonzero rows (step 1/||x_i||^2); drop zero rows of X.")
    sched = _schedule(method, n=n, beta=p.beta, lam1=p.lam1, row_sq=row_sq, steps=steps,
                      allow_unstable=allow_unstable, hessian="X^T X / N", name="mini-batch SGD", **sampling)
    kind = "gd_" if method == "gd" else ""
    if form == "primal":
        final, recs, seconds = _iterate(kind + "primal", p.X, p.y, p.w0, sched.indices, sched.etas, rec)
        W, alpha = recs, None
        w_final = final
    else:
        K = _gram(p.X)
        b = p.y - p.X @ p.w0  # w = w0 + X^T alpha: residual x_i^T w0 + K_i alpha - y_i
        a0 = np.zeros((n,) + p.y.shape[1:])
        final, A_rec, seconds = _iterate(kind + "dual", K, b, a0, sched.indices, sched.etas, rec)
        W = p.w0[None] + _apply(p.X.T, A_rec)
        alpha = final
        w_final = p.w0 + np.tensordot(p.X, final, axes=(0, 0))

    loss, distance, out, drift, F = _linear_metrics(p, W)
    closed = gap = flow = None
    if method == "gd" and np.ndim(sched.report) == 0 and metrics:
        eta = float(sched.report)
        closed = _closed_form_linear(p, eta, rec)
        scale = max(float(np.linalg.norm(p.limit)), float(np.linalg.norm(p.w0)), np.finfo(float).tiny)
        gap = _relnorm(W - closed) / scale
        flow = gradient_flow_predictions(_gram(p.X), p.y, p.X @ p.w0, step_size=eta, steps=rec)
    log.info(
        "%s (%s, B=%s) %d steps in %.3fs: distance %.3e, out_of_span %.3e",
        method, form, sched.batch_size, steps, seconds, distance[-1], out[-1],
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
        form=form,
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
        **sched.fields(),
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
    X, y, *, steps: int, key=0, batch_size: int = 1, step_size: float | np.ndarray | Callable | None = None,
    replace: bool = True, w0=None, record_steps=None, form: Form = "auto", allow_unstable: bool = False,
    reference=None, indices=None, metrics: bool = True,
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
    return _run_linear("sgd", **locals())  # locals() is exactly the arguments here


@_with_ls_params
def gd(
    X, y, *, steps: int, step_size: float | np.ndarray | Callable | None = None, w0=None, record_steps=None,
    form: Form = "auto", allow_unstable: bool = False, reference=None, metrics: bool = True,
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
        With ``closed_form``, ``closed_form_gap`` and ``gradient_flow`` when the step is constant
        (and ``metrics`` is True).

    References
    ----------
    Gunasekar, Lee, Soudry, Srebro, ICML 2018, section 2 (the limit); Lee et al., NeurIPS 2019, eq. (9)
    (the gradient flow); derivations in ``proofs/gd_closed_form.py`` and ``proofs/step_size.py``.
    """
    return _run_linear("gd", **locals())


@_with_ls_params
def kaczmarz(
    X, y, *, steps: int, key=0, relaxation: float = 1.0, w0=None, record_steps=None, form: Form = "auto",
    allow_unstable: bool = False, reference=None, indices=None, metrics: bool = True,
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
        ``step_size`` holds the per-step ``omega / ||x_i||^2``, ``batch_size`` is 1.

    References
    ----------
    Strohmer, Vershynin, J. Fourier Anal. Appl. 15 (2009), Algorithm 1.
    """
    return _run_linear("kaczmarz", **locals())
