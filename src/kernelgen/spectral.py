"""The kernel's spectrum on a sample, the target's alignment with it, and the spectral theory of learning curves.

Three public functions, used together to predict a learning curve from one eigendecomposition
(Canatar, Bordelon & Pehlevan 2021, Fig. 1):

* :func:`kernel_spectrum` -- eigenvalues and eigenvectors of ``K / M`` on a sample of ``M`` points, one
  :class:`~kernelgen.factors.EighFactor` (``M <= EIGH_MAX_N``). The eigenvalues of ``K / M`` estimate
  those of the kernel's integral operator on the data distribution, ``eta_k`` (Koltchinskii & Giné 2000;
  the Nyström reading of Williams & Seeger 2001), and ``sqrt(M) u_k(x_i)`` its eigenfunctions at the
  sample points.
* :func:`target_alignment` -- the target's projections on those eigenvectors, the weights
  ``w_k = (u_k^T y)^2 / M`` (the squared coefficient of y on the L2-orthonormal eigenfunction
  ``phi_k``, as ``E[y^2] = sum_k w_k``), and their cumulative power ``C(k)`` (task-model alignment:
  Canatar et al. 2021, "cumulative power distribution", Fig. 1e).
* :func:`eigenlearning_curve` -- the spectral-theory generalisation error of kernel (ridge) regression
  from ``P`` samples, for a spectrum ``eta_k`` and target weights ``w_k``:

      kappa = lambda + kappa sum_k eta_k / (P eta_k + kappa)                      (implicit, kappa > 0)
      gamma = sum_k P eta_k^2 / (P eta_k + kappa)^2
      E_g   = kappa^2 / (1 - gamma) sum_k w_k / (P eta_k + kappa)^2

  (Bordelon, Canatar & Pehlevan, ICML 2020: their self-consistent kappa and E_g, without label noise;
  Canatar, Bordelon & Pehlevan, Nat. Commun. 12, 2914 (2021), eqs. (3)-(4) with noise variance 0, where
  ``w_k`` is written ``eta_k wbar_k^2``, ``wbar_k`` the target's coefficient on the feature ``sqrt(eta_k)
  phi_k``). The same numbers in the "eigenlearning" form (Simon, Dickens, Karkada & DeWeese, TMLR 2023,
  arXiv:2110.03922: the learnabilities and the test MSE), with ``k = kappa / P``: the learnability of mode k
  is ``L_k = eta_k / (eta_k + k)``, ``k`` solves the conservation law ``sum_k L_k + lambda / k = P``, ``1 -
  gamma = (lambda / k + sum_k L_k (1 - L_k)) / P`` and ``E_g = sum_k (1 - L_k)^2 w_k / (1 - gamma)``.

Numerics of :func:`eigenlearning_curve`: the conservation law ``h(k) = lambda / k + sum_k eta_k / (eta_k
+ k) - P = 0`` is strictly decreasing in ``k > 0`` (each term is), so its root is unique and bracketed:
``k <= (lambda + sum eta) / P`` (``eta / (eta + k) <= eta / k``); ``k >= lambda / P`` when ``lambda > 0``;
and when ``lambda = 0`` (and ``P < N_+``) ``k >= eta_(m) (m - P) / (2 P)`` with ``m = floor(P) + 1`` (the
``m`` largest modes alone then give ``h > 0``). Brent's method on ``log k`` (:func:`scipy.optimize.brentq`,
``xtol`` 1e-300, ``rtol`` 4 float64 eps) finds the root to a relative accuracy of about 1e-14 in ``k``
(checked against 50-digit arithmetic in the tests); it is not a fixed-point iteration, whose contraction
tends to 1 for power-law spectra. ``1 - gamma`` is evaluated in the cancellation-free form above (a sum of
non-negative terms), ``gamma`` itself as ``sum_k L_k^2 / P`` and ``1 - L_k`` as ``k / (eta_k + k)``.
Ridgeless with ``P >= N_+`` (the number of positive eigenvalues): no positive root, ``kappa = 0``
(interpolation recovers every mode with ``eta > 0``), ``gamma = N_+ / P`` and ``E_g = P / (P - N_+)
sum_{eta_k = 0} w_k`` -- 0 when the target lies in the kernel's span, ``inf`` at ``P = N_+`` otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from ._validation import as_float_array, is_int
from .errors import InvalidInputError, MemoryBudgetError, ShapeMismatchError
from .factors import EIGH_MAX_N, EighFactor
from .kernels import Precomputed, as_kernel
from .numerics import spectral_cutoffs
from .options import SolveOptions
from .solvers import plan_kernel_solve

log = logging.getLogger(__name__)

__all__ = ["EigenlearningCurve", "KernelSpectrum", "TargetAlignment", "eigenlearning_curve", "kernel_spectrum",
           "target_alignment"]

_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class KernelSpectrum:
    """The eigendecomposition of ``K / M`` on a sample (:func:`kernel_spectrum`).

    Attributes
    ----------
    eigenvalues : ndarray of shape (M,), float64
        Eigenvalues of ``K / M``, **descending** (as computed: tiny negative ones from rounding are
        kept, not clipped).
    eigenvectors : ndarray of shape (M, M), float64
        Unit eigenvectors of ``K`` as columns, in the order of ``eigenvalues``.
    rows : ndarray of shape (M,), int64
        The rows of ``X`` the sample holds, in the order of the eigenvectors' entries.
    rank : int
        Numerical rank of ``K`` (:class:`~kernelgen.factors.EighFactor`'s rule).
    kernel : Kernel
        The kernel, data-dependent defaults resolved on the sample.
    seconds : float
        Time of the kernel matrix and its eigendecomposition.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    rows: np.ndarray
    rank: int
    kernel: object
    seconds: float

    @property
    def n_sample(self) -> int:
        return int(self.eigenvalues.shape[0])


@dataclass(frozen=True)
class TargetAlignment:
    """The target's projections on the kernel's eigenvectors (:func:`target_alignment`).

    Attributes
    ----------
    projections : ndarray of shape (M,) or (M, n_targets)
        ``u_k^T y`` per eigenvector (rows) and target column.
    weights : ndarray of shape (M,)
        ``w_k = sum_j (u_k^T y_j)^2 / M``: the target's power on mode k (summed over target columns),
        the ``weights`` of :func:`eigenlearning_curve`.
    cumulative_power : ndarray of shape (M,)
        ``C(k) = sum_{i <= k} w_i / sum_i w_i`` (Canatar et al. 2021, Fig. 1e), non-decreasing, ending at 1.
    """

    projections: np.ndarray
    weights: np.ndarray
    cumulative_power: np.ndarray


@dataclass(frozen=True)
class EigenlearningCurve:
    """The spectral-theory learning curve (:func:`eigenlearning_curve`; module docstring for the equations).

    Attributes
    ----------
    P : ndarray of shape (m,), float64
        Training-set sizes.
    kappa : ndarray of shape (m,)
        Bordelon's ``kappa`` (the renormalised ridge; ``kappa / P`` is Simon et al.'s ``kappa``).
    gamma : ndarray of shape (m,)
    error : ndarray of shape (m,)
        Predicted generalisation error ``E_g`` (the test MSE on noiseless targets, summed over target
        columns when the weights were); ``inf`` only where the theory diverges (module docstring).
    ridge : float
    """

    P: np.ndarray
    kappa: np.ndarray
    gamma: np.ndarray
    error: np.ndarray
    ridge: float


def _rows(N: int, n_sample, seed) -> np.ndarray:
    """The sample's rows: all, the first ``n_sample``, or ``n_sample`` drawn without replacement with ``seed``."""
    if n_sample is None:
        if seed is not None:
            raise InvalidInputError("seed draws a random sample: give n_sample too (or neither for all rows).")
        return np.arange(N, dtype=np.int64)
    if not is_int(n_sample) or not 1 <= int(n_sample) <= N:
        raise InvalidInputError(f"n_sample must be an integer in [1, {N}] (the rows of X), got {n_sample!r}.")
    if seed is None:
        return np.arange(int(n_sample), dtype=np.int64)
    if not is_int(seed) or int(seed) < 0:
        raise InvalidInputError(f"seed must be None or an integer >= 0, got {seed!r}.")
    return np.random.default_rng(int(seed)).choice(N, int(n_sample), replace=False).astype(np.int64)


def kernel_spectrum(X, kernel, *, n_sample=None, seed=None, options=None) -> KernelSpectrum:
    """Eigenvalues and eigenvectors of ``K / M`` on a sample of ``M`` rows of ``X``.

    The eigenvalues of the normalised Gram matrix ``K / M`` of ``M`` i.i.d. points estimate the
    eigenvalues ``eta_k`` of the kernel's integral operator on the data distribution, and ``sqrt(M) u_k``
    its L2-orthonormal eigenfunctions at the sample points (Koltchinskii & Giné, Bernoulli 6(1), 2000;
    Williams & Seeger, NIPS 2001, §2): the inputs of :func:`target_alignment` and
    :func:`eigenlearning_curve`.

    Parameters
    ----------
    X : array of shape (N, d)
    kernel : Kernel or str
        A :class:`kernelgen.kernels.Kernel` or a family name; data-dependent defaults are resolved on the
        sample. A precomputed kernel is refused.
    n_sample : int, optional
        ``M``, at most :data:`~kernelgen.factors.EIGH_MAX_N` (the largest eigendecomposition issued as one
        LAPACK call); default all ``N`` rows.
    seed : int, optional
        With ``n_sample``: draw the sample without replacement by ``numpy.random.default_rng(seed)``;
        without a seed the first ``n_sample`` rows are used (no randomness).
    options : SolveOptions or dict, optional
        Only ``memory_budget`` and ``rcond`` are read (the planner's memory check of a float64
        eigendecomposition, and the rank rule).

    Returns
    -------
    KernelSpectrum
        Eigenvalues descending.

    Raises
    ------
    InvalidInputError, ShapeMismatchError, NonFiniteInputError
        Bad ``X``, ``n_sample`` or ``seed``; a precomputed kernel.
    MemoryBudgetError
        ``M > EIGH_MAX_N``, or the decomposition (about ``4 M^2`` float64) does not fit (the planner's
        refusal, :func:`kernelgen.solvers.plan_kernel_solve` with ``solver="min_norm"``).

    Examples
    --------
    >>> import numpy as np
    >>> from kernelgen.kernels import Linear
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> s = kernel_spectrum(X, Linear())
    >>> s.rank, bool(np.allclose(s.eigenvalues[:3], np.linalg.eigvalsh(X.T @ X / 200)[::-1]))
    (3, True)
    """
    X64 = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    kern = as_kernel(kernel)
    if isinstance(kern, Precomputed):
        raise InvalidInputError("kernel_spectrum needs the inputs X and a Kernel (a precomputed K has no sample to "
                                "draw): pass the kernel object, or eigendecompose K / M with "
                                "kernelgen.factors.EighFactor.factor.")
    rows = _rows(X64.shape[0], n_sample, seed)
    M, d = rows.size, X64.shape[1]
    opts = SolveOptions.coerce(options)
    if M > EIGH_MAX_N:
        raise MemoryBudgetError(
            f"kernel_spectrum eigendecomposes K / M on {M} points, above the largest eigendecomposition kernelgen "
            f"issues as one LAPACK call ({EIGH_MAX_N}). Remedy: n_sample <= {EIGH_MAX_N} with a seed (a random "
            "sample estimates the same operator's spectrum).", 0, 0)
    # the planner's memory check of a float64 eigendecomposition (the matrix and its workspace) against the budget
    plan_kernel_solve(M, d, 1, solver="min_norm", options=opts)
    Xs = X64[rows]
    kern = kern.resolve(Xs)
    t0 = time.perf_counter()
    K = kern.matrix(Xs, dtype=np.float64)
    K /= M
    f = EighFactor.factor(K, rcond=opts.rcond, overwrite=True, check_symmetric=False)
    seconds = time.perf_counter() - t0
    w = f.eigenvalues[::-1].copy()
    V = f.eigenvectors[:, ::-1]  # a view (no second M x M array), read-only below
    for a in (w, V, rows):
        a.setflags(write=False)
    log.info("kernel_spectrum: M=%d (%s), rank %d, top eigenvalue %.4g, %.1f s", M,
             "all rows" if n_sample is None else ("first rows" if seed is None else f"seed {seed}"), f.rank, w[0],
             seconds)
    return KernelSpectrum(eigenvalues=w, eigenvectors=V, rows=rows, rank=f.rank, kernel=kern, seconds=seconds)


def target_alignment(eigvecs, y) -> TargetAlignment:
    """The target's projections on the eigenvectors, its power per mode and the cumulative power.

    ``a_k = u_k^T y``; ``w_k = sum_j a_kj^2 / M`` (with ``sqrt(M) u_k`` the sampled eigenfunctions,
    ``w_k`` estimates the squared coefficient of the target on ``phi_k``, so ``sum_k w_k = ||y||^2 / M``
    estimates ``E[y^2]``); ``C(k) = sum_{i <= k} w_i / sum_i w_i``, the cumulative power distribution
    whose faster rise means better task-model alignment (Canatar, Bordelon & Pehlevan, Nat. Commun. 12,
    2914, 2021, Fig. 1e). The eigenvectors' order is kept: pass them sorted by decreasing eigenvalue
    (as :func:`kernel_spectrum` returns them).

    Parameters
    ----------
    eigvecs : array of shape (M, r)
        Orthonormal columns (r <= M eigenvectors; with r < M the weights cover only their span).
    y : array of shape (M,) or (M, n_targets)
        The target at the sample's points (e.g. ``Y[spectrum.rows]``).

    Returns
    -------
    TargetAlignment

    Raises
    ------
    ShapeMismatchError
        ``y`` does not have M rows; ``eigvecs`` not 2-D.
    InvalidInputError, NonFiniteInputError
        Non-numeric or non-finite input; ``y`` identically zero (no power to distribute).

    Examples
    --------
    >>> import numpy as np
    >>> a = target_alignment(np.eye(3), np.array([3.0, 0.0, 4.0]))
    >>> a.weights.tolist(), a.cumulative_power.round(2).tolist()
    ([3.0, 0.0, 5.333333333333333], [0.36, 0.36, 1.0])
    """
    U = as_float_array(eigvecs, "eigvecs", ndim=(2,), dtype=np.float64)
    Y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
    M = U.shape[0]
    if Y.shape[0] != M:
        raise ShapeMismatchError(f"y has {Y.shape[0]} rows but the eigenvectors have {M} entries; pass y at the "
                                 "sample's points (y[spectrum.rows]).")
    A = U.T @ Y
    w = np.sum(A.reshape(A.shape[0], -1) ** 2, axis=1) / M
    cs = np.cumsum(w)
    if not cs[-1] > 0:
        raise InvalidInputError("the target has no power on these eigenvectors (y is zero on their span): the "
                                "cumulative power is undefined.")
    C = cs / cs[-1]  # non-decreasing (w >= 0) and exactly 1 at the end
    return TargetAlignment(projections=A, weights=w, cumulative_power=C)


def _solve_k(eta: np.ndarray, P: float, ridge: float, eta_desc: np.ndarray) -> float:
    """Simon et al.'s ``k = kappa / P``: the root of ``ridge / k + sum eta / (eta + k) = P`` (0 when none)."""
    n_pos = eta_desc.size
    if ridge == 0.0 and P >= n_pos:
        return 0.0
    hi = (ridge + float(np.sum(eta))) / P
    if ridge > 0:
        lo = ridge / P
    else:  # the m = floor(P) + 1 largest modes alone exceed P for k < eta_(m) (m - P) / P (module docstring)
        m = int(np.floor(P)) + 1
        lo = eta_desc[m - 1] * (m - P) / (2.0 * P)

    def h(t):
        k = np.exp(t)
        return ridge / k + float(np.sum(eta / (eta + k))) - P

    lo_t, hi_t = np.log(lo), np.log(hi)
    if h(hi_t) >= 0.0:  # the root sits at the bracket's rounding edge
        return float(hi)
    if h(lo_t) <= 0.0:
        return float(lo)
    t = optimize.brentq(h, lo_t, hi_t, xtol=1e-300, rtol=4 * _EPS, maxiter=500)
    return float(np.exp(t))


def eigenlearning_curve(eigenvalues, weights, P, *, ridge: float = 0.0) -> EigenlearningCurve:
    """The spectral theory's generalisation error of kernel regression from P samples.

    Solves ``kappa = lambda + kappa sum_k eta_k / (P eta_k + kappa)`` for ``kappa`` and returns
    ``E_g = kappa^2 / (1 - gamma) sum_k w_k / (P eta_k + kappa)^2`` with ``gamma = sum_k P eta_k^2 / (P
    eta_k + kappa)^2`` (module docstring: sources, the solver, its accuracy, and the ridgeless ``P >=
    N_+`` case). The theory is the typical error of (ridge) regression on ``P`` i.i.d. samples for
    large ``P`` and many modes, without label noise.

    Parameters
    ----------
    eigenvalues : array of shape (N,)
        The kernel operator's eigenvalues ``eta_k >= 0`` (e.g. :attr:`KernelSpectrum.eigenvalues`, any order).
        Negatives within rounding (above ``-neg_tol`` of :func:`kernelgen.numerics.spectral_cutoffs`,
        ``sqrt(u) max(eta)``) are read as 0; rounding-level positives are kept as (unlearnable) modes.
    weights : array of shape (N,)
        The target's power ``w_k >= 0`` on each mode, in the order of ``eigenvalues``
        (:attr:`TargetAlignment.weights`).
    P : float or array of shape (m,)
        Training-set sizes, each > 0 (non-integers allowed: the theory is continuous in P); a scalar gives
        arrays of shape (1,).
    ridge : float
        ``lambda >= 0``, in the units of the eigenvalues (the ridge added to ``K`` is ``lambda``; with the
        spectrum of ``K / M`` that is the ridge of the unnormalised system).

    Returns
    -------
    EigenlearningCurve

    Raises
    ------
    InvalidInputError, ShapeMismatchError, NonFiniteInputError
        Negative eigenvalues beyond rounding, negative weights, lengths that differ, no positive
        eigenvalue, ``P <= 0``, a negative or non-finite ridge.

    References
    ----------
    B. Bordelon, A. Canatar, C. Pehlevan. Spectrum dependent learning curves in kernel regression and wide
    neural networks. ICML 2020 (PMLR 119).
    A. Canatar, B. Bordelon, C. Pehlevan. Spectral bias and task-model alignment explain generalization in
    kernel regression and infinitely wide neural networks. Nat. Commun. 12, 2914 (2021), eqs. (3)-(4).
    J. B. Simon, M. Dickens, D. Karkada, M. R. DeWeese. The eigenlearning framework: a conservation law
    perspective on kernel regression and wide neural networks. TMLR 2023 (arXiv:2110.03922).

    Examples
    --------
    One mode, ridgeless, learned exactly from one sample on: E_g = w at P -> 0, 0 for P >= 1.

    >>> c = eigenlearning_curve([1.0], [2.0], [0.5, 1.0, 3.0])
    >>> c.error.round(12).tolist()
    [1.0, 0.0, 0.0]

    ``N`` equal modes (isotropic linear regression): ``E_g = W (1 - P / N)`` below ``N``.

    >>> c = eigenlearning_curve(np.full(10, 0.1), np.full(10, 0.3), [2, 5])
    >>> c.error.round(12).tolist()
    [2.4, 1.5]
    """
    eta = as_float_array(eigenvalues, "eigenvalues", ndim=(1,), dtype=np.float64)
    w = as_float_array(weights, "weights", ndim=(1,), dtype=np.float64)
    if w.shape != eta.shape:
        raise ShapeMismatchError(f"weights has {w.shape[0]} entries, eigenvalues {eta.shape[0]}: one weight per mode.")
    top = float(np.max(eta))
    if not top > 0:
        raise InvalidInputError("eigenvalues must include a positive one (the kernel is zero on this spectrum).")
    _, neg_tol = spectral_cutoffs(eta)  # the project's PSD rule: rounding of a PSD matrix stays above -neg_tol
    if float(np.min(eta)) < -neg_tol:
        raise InvalidInputError(f"eigenvalues must be >= 0 (a kernel is positive semi-definite); the smallest is "
                                f"{float(np.min(eta)):.3g} against the largest {top:.3g}, beyond rounding "
                                f"(-{neg_tol:.2g}, kernelgen.numerics.spectral_cutoffs).")
    if float(np.min(w)) < 0:
        raise InvalidInputError("weights must be >= 0 (squared projections of the target).")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.integer, np.floating)) \
            or not np.isfinite(ridge) or ridge < 0:
        raise InvalidInputError(f"ridge must be a finite number >= 0, got {ridge!r}.")
    ridge = float(ridge)
    Ps = as_float_array(np.atleast_1d(P), "P", ndim=(1,), dtype=np.float64, copy=True)
    if float(np.min(Ps)) <= 0:
        raise InvalidInputError(f"P must be > 0 (training-set sizes), got a minimum of {float(np.min(Ps))!r}.")
    eta = np.where(eta > 0, eta, 0.0)  # rounding negatives are zero modes
    pos = eta > 0
    eta_desc = np.sort(eta[pos])[::-1]
    null_power = float(np.sum(w[~pos]))
    kappa, gamma, err = (np.empty_like(Ps) for _ in range(3))
    for i, p in enumerate(Ps):
        k = _solve_k(eta[pos], float(p), ridge, eta_desc)
        if k == 0.0:  # ridgeless, P >= N_+: every positive mode learned exactly (module docstring)
            n_pos = eta_desc.size
            kappa[i], gamma[i] = 0.0, n_pos / p
            err[i] = 0.0 if null_power == 0.0 else (np.inf if p == n_pos else p / (p - n_pos) * null_power)
            continue
        L = eta / (eta + k)  # learnabilities (0 for null modes)
        one_minus_L = k / (eta + k)
        one_minus_gamma = (ridge / k + float(np.sum(L * one_minus_L))) / p  # = 1 - sum L^2 / P at the root
        kappa[i] = k * p
        gamma[i] = float(np.sum(L * L)) / p  # (sum P eta^2 / (P eta + kappa)^2; not 1 - (1 - gamma), which cancels)
        err[i] = float(np.sum(one_minus_L**2 * w)) / one_minus_gamma
    for a in (Ps, kappa, gamma, err):
        a.setflags(write=False)
    return EigenlearningCurve(P=Ps, kappa=kappa, gamma=gamma, error=err, ridge=ridge)
