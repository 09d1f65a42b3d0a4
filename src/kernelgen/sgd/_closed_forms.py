"""Closed forms and rates: what theory predicts for a GD or SGD run (private; see :mod:`kernelgen.sgd`).

:func:`gd_closed_form` (exact full-batch GD iterates on least squares), :func:`gradient_flow_predictions`
(the function-space trajectory with a tangent kernel), :func:`predicted_contraction` (the per-step factor
theory predicts for a recorded run) and :func:`measured_contraction` (the factor fitted on its distances).
Derivations in ``proofs/gd_closed_form.py`` and ``proofs/step_size.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._validation import as_float_array
from ..errors import InvalidInputError, ShapeMismatchError
from ..numerics import check_finite_iterates
from ._common import Trajectory, _kernel_factor, _linear_problem, _LinearProblem

__all__ = [
    "PredictedContraction",
    "gd_closed_form",
    "gradient_flow_predictions",
    "measured_contraction",
    "predicted_contraction",
]


# ----------------------------------------------------------------------------- closed forms


def _closed_form_linear(p: _LinearProblem, eta: float, steps_rec: np.ndarray) -> np.ndarray:
    """w_t = w_inf + V diag((1 - eta s^2 / N)^t) V^T (w0 - w_inf)   (proofs/gd_closed_form.py)."""
    n = p.X.shape[0]
    e0 = p.w0 - p.limit
    c0 = np.tensordot(p.Vr, e0, axes=(1, 0))  # (r[, k])
    lam = p.s**2 / n
    fac = np.power(1.0 - eta * lam[None, :], steps_rec[:, None].astype(np.float64))  # (R, r)
    if c0.ndim == 1:
        out = p.limit[None] + (fac * c0[None]) @ p.Vr
    else:
        out = p.limit[None] + np.matmul(p.Vr.T, fac[:, :, None] * c0[None])
    check_finite_iterates([out], eta * lam, eta, what="gd_closed_form")
    return out


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

    Raises
    ------
    NonFiniteResultError
        The iterates overflow (``step_size * s_max^2 / N > 2``: GD diverges;
        :func:`kernelgen.numerics.check_finite_iterates`).

    References
    ----------
    Gunasekar, Lee, Soudry, Srebro, ICML 2018, section 2 (the limit ``w_inf``); derivation in
    ``proofs/gd_closed_form.py``.
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

    Raises
    ------
    NonFiniteResultError
        The iterates overflow (``discrete=True`` with ``step_size * lambda_max / N > 2``: GD diverges).

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
        out = y[None] + (fac * c0[None]) @ Q.T
    else:
        out = y[None] + np.matmul(Q, fac[:, :, None] * c0[None])
    check_finite_iterates([out], eta * lam / n, eta, what="gradient_flow_predictions")
    return out


# ----------------------------------------------------------------------------- rates


@dataclasses.dataclass(frozen=True)
class PredictedContraction:
    """Predicted per-step contraction of the distance to the limit (see :func:`predicted_contraction`).

    Attributes
    ----------
    mean : float
        ``max(|1 - eta lambda_min|, |1 - eta lambda_max|)`` over the nonzero spectrum of H. For
        full-batch GD this is the exact asymptotic factor of ``||w_t - w_inf||``
        (``proofs/gd_closed_form.py``, item 5); for SGD with replacement it is the factor of the *mean* error, since
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
    ``proofs/step_size.py`` (the GD factor); Ma, Bassily, Belkin, ICML 2018, Theorem 1 and
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
