"""SGD, GD and randomised Kaczmarz in kernel (dual) coordinates ``K alpha = y`` (private; see
:mod:`kernelgen.sgd`).

:func:`kernel_sgd`, :func:`kernel_gd` and :func:`kernel_kaczmarz` iterate on ``alpha`` with rows of a
PSD kernel matrix K (least squares in the kernel's feature space, ``w = Phi^T alpha``); distances are
measured in alpha and in the RKHS norm, against ``alpha0 + K^+ (y - K alpha0)``. Full-batch GD carries
its closed form in the eigenbasis of K and the gradient flow. One eigendecomposition of K (an
:class:`~kernelgen.factors.EighFactor`, passed as ``factor=`` or computed once here) serves the spectrum,
the null-space metric and the closed forms.
"""

from __future__ import annotations

import logging

import numpy as np

from .._validation import as_float_array, check_same_rows
from ..errors import InvalidInputError, ShapeMismatchError
from ._closed_forms import gradient_flow_predictions
from ._common import (Trajectory, _apply, _distance, _iterate, _kernel_factor, _loss, _min_norm, _record_steps,
                      _relnorm, _schedule, _shaped, _span_metrics, _start, _with_params)

__all__ = ["kernel_gd", "kernel_kaczmarz", "kernel_sgd"]

log = logging.getLogger(__name__)


def _run_kernel(
    method: str, K, y, *, steps: int, alpha0=None, record_steps=None, allow_unstable: bool = False,
    reference=None, factor=None, **sampling,
) -> Trajectory:
    """The run behind :func:`kernel_sgd`, :func:`kernel_gd` and :func:`kernel_kaczmarz`: their arguments,
    ``method`` first (``sampling`` as in :func:`kernelgen.sgd._primal._run_linear`)."""
    K = as_float_array(K, "K", ndim=(2,), dtype=np.float64)
    y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    n = K.shape[0]
    if K.shape != (n, n):
        raise ShapeMismatchError(f"K must be square (n, n), got {K.shape}.")
    check_same_rows(K, y, "K", "y")
    eig = _kernel_factor(K, factor)
    alpha0 = _start(alpha0, y.shape, "alpha0", "n_samples[, n_targets]")
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
        limit = _shaped(reference, y.shape, "reference", "n_samples[, n_targets]")

    diag = np.diag(K).copy()
    if method == "kaczmarz" and np.any(diag <= 0):
        raise InvalidInputError("Kaczmarz needs K_ii > 0 (step 1 / K_ii).")
    sched = _schedule(method, n=n, beta=beta, lam1=lam1, row_sq=diag, steps=steps, allow_unstable=allow_unstable,
                      hessian="K / N", name="kernel SGD", **sampling)
    kind = "gd_dual" if method == "gd" else "dual"
    final, A, seconds = _iterate(kind, K, y, alpha0, sched.indices, sched.etas, rec)
    R = A.shape[0]
    F = _apply(K, A)
    loss = _loss(F, y)
    distance = _distance(A, limit)
    E = (A - limit[None]).reshape(R, n, -1)
    knorm = lambda M: np.sqrt(np.clip(np.sum(M * np.matmul(K, M), axis=(1, 2)), 0, None))  # noqa: E731
    lim_k = float(knorm(limit.reshape(1, n, -1))[0])
    dist_k = knorm(E) / max(lim_k, np.finfo(float).tiny)
    Qn = Q[:, ~pos]  # numerical null space of K (empty when K has full numerical rank)

    def null_part(M):
        M = M.reshape(R, n, -1)
        return np.sqrt(np.sum(np.matmul(Qn.T, M) ** 2, axis=(1, 2))) if Qn.shape[1] else np.zeros(R)

    out, drift = _span_metrics(A, alpha0, null_part)
    closed = gap = flow = None
    if method == "gd" and np.ndim(sched.report) == 0:
        eta = float(sched.report)
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
        form="dual",
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
        **sched.fields(),
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

_with_k_params = _with_params("K_PARAMS", _K_PARAMS)


@_with_k_params
def kernel_sgd(
    K, y, *, steps: int, key=0, batch_size: int = 1, step_size=None, replace: bool = True, alpha0=None,
    record_steps=None, allow_unstable: bool = False, reference=None, indices=None, factor=None,
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
    return _run_kernel("sgd", **locals())  # locals() is exactly the arguments here


@_with_k_params
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
    return _run_kernel("gd", **locals())


@_with_k_params
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
    return _run_kernel("kaczmarz", **locals())
