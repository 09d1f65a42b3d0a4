"""Random-feature models, minimum-norm fits and double-descent sweeps over the width.

Features
--------
``"fourier"`` (Rahimi & Recht): ``phi_j(x) = sqrt(2/N) cos(v_j^T x + b_j)``,
``v_j ~ N(0, s^{-2} I_d)``, ``b_j ~ U[0, 2 pi)``. Then ``E[Phi Phi^T] = K`` with the Gaussian
kernel ``K(x, z) = exp(-||x - z||^2 / (2 s^2))`` (proof: ``proofs/rff_gaussian_kernel.py``),
the coefficient norm is comparable with the kernel interpolant's RKHS norm, and the
interpolation threshold sits at ``N = n`` (Belkin, Hsu, Ma, Mandal 2019).

``"relu"``: ``phi_j(x) = sqrt(2/N) max(0, v_j^T x)``, ``v_j ~ N(0, s^{-2} I_d)``; the limit
kernel is the order-1 arc-cosine kernel ``s^{-2} ||x|| ||z|| (sin t + (pi - t) cos t) / pi``
(Cho & Saul 2009), :func:`arccos_kernel`.

A drawn map (:class:`RandomFeatureMap`) holds ``N_max`` features; the model of width ``N``
uses its first ``N`` columns rescaled to ``sqrt(2/N)`` ("nested features"), so a sweep
over ``N`` reuses one draw. Features are generated in row x column blocks whose
temporaries stay below ``block_bytes``.

Minimum-norm fits
-----------------
:func:`min_norm_fit` is ``a = Phi^+ Y`` through :func:`kernelgen.min_norm_solve`: least
squares below ``N = n``, minimum-norm interpolation above, rank-revealing throughout.

:func:`double_descent_sweep` returns ``Phi_N^+ Y`` at every width, computed from ``Phi_N`` (a rank
cut-off on a Gram matrix would act on ``kappa(Phi)^2`` and discard singular values of ``Phi`` below
``sqrt(cutoff) sigma_max``: at ``N = n`` on the first 3,000 MNIST images that changed the test error
from 89.2% to 83.6% and the coefficient norm from 13,580 to 1,056). It reuses work across widths:

* ``N <= n``: the leading ``N x N`` block of ``A = Psi^T Psi`` (``Psi`` the unnormalised
  features of the widest draw) is the Gram matrix of width ``N``, and the leading block of
  the Cholesky factor ``A = R^T R`` is its factor: one ``potrf`` serves every width below ``n``.
  ``R`` is used only as a right preconditioner: CGLS on ``Phi_N R^-1`` from the seminormal
  solution (Bjorck 1996, sec. 7.4) converges to ``Phi_N^+ Y`` with the accuracy of a
  backward-stable solve on ``Phi_N``.
* ``N > n``: ``S_N = Psi_N Psi_N^T = L L^T`` is accumulated column block by column block (``syrk``)
  and factored once per width; CGLS on ``L^-1 Phi_N`` from ``Phi_N^T S_N^-1 Y`` stays in the row
  space of ``Phi_N`` and converges to the minimum-norm interpolant.
* The Gram factor is used only where LAPACK's condition estimate says it is a good
  preconditioner (``SweepOptions.chol_rcond_factor``); near ``N = n`` (and wherever CGLS does not
  converge) a Householder QR / LQ of ``Phi_N`` solves and decides the rank on the singular values
  of ``Phi_N`` (:class:`kernelgen.factors._rectangular.QRFactor`).
* Every width is certified with ``Phi_N`` itself, independently of the factor used:
  ``||Phi^T (Y - Phi a)|| / (||Phi|| ||Y||)`` and ``||Y - Phi a|| / ||Y||``.

Dtype policy: everything is float64 (inputs are converted); ``Phi`` at ``N ~ n`` has condition
numbers of 1e5 - 1e7 (MNIST), its Gram matrices their squares, far beyond float32's reach.

References
----------
.. [RR] A. Rahimi, B. Recht. Random features for large-scale kernel machines. NIPS 2007.
.. [BHMM] M. Belkin, D. Hsu, S. Ma, S. Mandal. Reconciling modern machine-learning practice
   and the classical bias-variance trade-off. PNAS 116(32), 2019, Fig. 2 (RFF on MNIST).
.. [CS] Y. Cho, L. Saul. Kernel methods for deep learning. NIPS 2009, eq. (6)-(7).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.linalg import blas, lapack, solve_triangular
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ._validation import as_float_array, check_same_rows
from .errors import InvalidInputError, MemoryBudgetError, ShapeMismatchError

__all__ = [
    "FEATURE_KINDS",
    "MinNormFit",
    "RandomFeatureMap",
    "RandomFeaturesClassifier",
    "RandomFeaturesRegressor",
    "SweepOptions",
    "SweepResult",
    "arccos_kernel",
    "default_widths",
    "double_descent_sweep",
    "draw_random_features",
    "min_norm_fit",
    "random_fourier_features",
]

log = logging.getLogger(__name__)

FEATURE_KINDS = ("fourier", "relu")

_EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------------
# Feature maps
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomFeatureMap:
    """A drawn random-feature map with ``n_features`` columns.

    Attributes
    ----------
    kind : {"fourier", "relu"}
    weights : ndarray of shape (n_inputs, n_features)
        Column ``j`` is the frequency / weight vector ``v_j ~ N(0, s^{-2} I)``.
    offsets : ndarray of shape (n_features,)
        Phases ``b_j ~ U[0, 2 pi)`` (zeros for ``"relu"``).
    bandwidth : float
        ``s``.
    seed : int
    """

    kind: str
    weights: np.ndarray
    offsets: np.ndarray
    bandwidth: float
    seed: int

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_inputs(self) -> int:
        return int(self.weights.shape[0])

    def transform(self, X, *, n_features: int | None = None, normalize: bool = True,
                  block_bytes: int = 256 * 2**20, order: str = "C") -> np.ndarray:
        """Features of the width-``N`` model: the first ``N`` columns of this draw.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_inputs)
        n_features : int, optional
            Width ``N <= self.n_features`` (default: all).
        normalize : bool
            ``True``: ``sqrt(2/N) cos(v^T x + b)`` (``Phi``); ``False``: ``sqrt(2) cos(v^T x + b)``
            (``Psi = sqrt(N) Phi``, the same for every width; what sweeps store).
        block_bytes : int
            Bound on the temporaries of one block (rows x columns x 8 bytes).
        order : {"C", "F"}
            Memory order of the returned array.

        Returns
        -------
        Phi : ndarray of shape (n_samples, N), float64
        """
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        if X.shape[1] != self.n_inputs:
            raise ShapeMismatchError(
                f"X has {X.shape[1]} columns but the feature map was drawn for {self.n_inputs} inputs."
            )
        N = self.n_features if n_features is None else int(n_features)
        if not 1 <= N <= self.n_features:
            raise InvalidInputError(f"n_features must be in [1, {self.n_features}], got {N}; draw a wider map.")
        n = X.shape[0]
        out = np.empty((n, N), dtype=np.float64, order=order)
        elems = max(1, int(block_bytes) // 8)
        rows = min(n, 8192, max(1, elems // 1024))  # GEMM rows within kernelgen's tested call limits
        cols = min(N, max(1, elems // rows))
        scale = np.sqrt(2.0 / N) if normalize else np.sqrt(2.0)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            for c0 in range(0, N, cols):
                c1 = min(N, c0 + cols)
                t = X[r0:r1] @ self.weights[:, c0:c1]
                if self.kind == "fourier":
                    t += self.offsets[c0:c1]
                    np.cos(t, out=t)
                else:
                    np.maximum(t, 0.0, out=t)
                t *= scale
                out[r0:r1, c0:c1] = t
        return out

    def kernel(self, X, Z=None) -> np.ndarray:
        """The limit kernel ``E[phi(x)^T phi(z)]`` as ``N -> infinity``.

        Returns
        -------
        K : ndarray of shape (n_x, n_z)
            Gaussian ``exp(-||x - z||^2 / (2 s^2))`` for ``"fourier"``; :func:`arccos_kernel`
            for ``"relu"``.
        """
        if self.kind == "fourier":
            from .kernels import kernel_matrix

            return kernel_matrix(X, Z, kernel="gaussian", bandwidth=self.bandwidth)
        return arccos_kernel(X, Z, bandwidth=self.bandwidth)


def draw_random_features(n_inputs: int, n_features: int, *, kind: str = "fourier",
                         bandwidth: float = 5.0, seed: int) -> RandomFeatureMap:
    """Draw a random-feature map (explicit seed, NumPy ``default_rng``).

    Parameters
    ----------
    n_inputs : int
        Input dimension ``d``.
    n_features : int
        Number of features ``N`` (the widest model; narrower ones use leading columns).
    kind : {"fourier", "relu"}
    bandwidth : float
        ``s``: weights ``v ~ N(0, s^{-2} I_d)``.
    seed : int

    Returns
    -------
    RandomFeatureMap

    Examples
    --------
    >>> fm = draw_random_features(3, 5, bandwidth=2.0, seed=0)
    >>> fm.transform([[0.0, 1.0, 2.0]]).shape
    (1, 5)
    """
    if kind not in FEATURE_KINDS:
        raise InvalidInputError(f"unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}.")
    n_inputs, n_features = int(n_inputs), int(n_features)
    if n_inputs < 1 or n_features < 1:
        raise InvalidInputError(f"n_inputs and n_features must be >= 1, got {n_inputs}, {n_features}.")
    bandwidth = float(bandwidth)
    if not np.isfinite(bandwidth) or bandwidth <= 0:
        raise InvalidInputError(f"bandwidth must be positive and finite, got {bandwidth}.")
    if seed is None:
        raise InvalidInputError("pass an explicit integer seed (kernelgen has no global RNG).")
    # Two independent streams, each filled feature by feature, so that the first N features
    # of a draw do not depend on n_features (nested widths: a draw of N_max extends one of N).
    rng_w, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
    W = rng_w.standard_normal((n_features, n_inputs)).T / bandwidth  # [RR] Alg. 1: v ~ N(0, s^-2 I)
    W = np.ascontiguousarray(W)
    if kind == "fourier":
        b = rng_b.uniform(0.0, 2.0 * np.pi, size=n_features)  # [RR] Alg. 1: b ~ U[0, 2 pi)
    else:
        b = np.zeros(n_features)
    return RandomFeatureMap(kind, W, b, bandwidth, int(seed))


def random_fourier_features(X, n_features: int, *, bandwidth: float = 5.0, seed: int) -> np.ndarray:
    """``sqrt(2/N) cos(X V + b)`` for a fresh draw: shape (n_samples, n_features)."""
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    return draw_random_features(X.shape[1], n_features, kind="fourier", bandwidth=bandwidth,
                                seed=seed).transform(X)


def arccos_kernel(X, Z=None, *, bandwidth: float = 1.0) -> np.ndarray:
    """Order-1 arc-cosine kernel, the limit of :func:`draw_random_features` with ``"relu"``.

    ``k(x, z) = s^{-2} ||x|| ||z|| (sin t + (pi - t) cos t) / pi``, ``t`` the angle between
    ``x`` and ``z`` ([CS] eq. 6-7 with ``J_1``; ``2 E[relu(v^T x) relu(v^T z)]`` for
    ``v ~ N(0, s^{-2} I)``).

    Returns
    -------
    K : ndarray of shape (n_x, n_z)
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    Z = X if Z is None else as_float_array(Z, "Z", ndim=(2,), dtype=np.float64)
    nx = np.linalg.norm(X, axis=1)
    nz = np.linalg.norm(Z, axis=1)
    denom = np.outer(nx, nz)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(denom > 0, (X @ Z.T) / denom, 1.0)
    c = np.clip(c, -1.0, 1.0)
    t = np.arccos(c)
    return denom * (np.sin(t) + (np.pi - t) * c) / (np.pi * bandwidth**2)


# ---------------------------------------------------------------------------------------
# Minimum-norm fit for one width
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinNormFit:
    """Result of :func:`min_norm_fit`.

    Attributes
    ----------
    coef : ndarray of shape (N,) or (N, n_targets)
        ``Phi^+ Y``.
    rank : int
        Numerical rank of ``Phi`` reported by the solver.
    method : str
        Solver that ran.
    relative_residual : float
        ``||Phi coef - Y|| / ||Y||`` (zero up to rounding when ``N >= n`` at full rank).
    """

    coef: np.ndarray
    rank: int
    method: str
    relative_residual: float


def min_norm_fit(Phi, Y, *, rcond=None) -> MinNormFit:
    """Minimum-norm least-squares coefficients ``Phi^+ Y`` for any width.

    Least squares when ``N < n``, minimum-norm interpolation when ``N > n``; the solve is
    :func:`kernelgen.min_norm_solve` (rank-revealing), so ``N ~ n`` is handled too.

    Parameters
    ----------
    Phi : array_like of shape (n_samples, N)
    Y : array_like of shape (n_samples,) or (n_samples, n_targets)
    rcond : float, optional
        Relative singular-value cutoff passed to :func:`kernelgen.min_norm_solve`.

    Returns
    -------
    MinNormFit
    """
    from .solvers import min_norm_solve

    Phi = as_float_array(Phi, "Phi", ndim=(2,), dtype=np.float64)
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    check_same_rows(Phi, Y, "Phi", "Y")
    sol = min_norm_solve(Phi, Y, rcond=rcond)
    res = np.linalg.norm(Phi @ sol.coef - Y) / max(np.linalg.norm(Y), np.finfo(float).tiny)
    return MinNormFit(sol.coef, int(sol.rank), str(sol.method), float(res))


# ---------------------------------------------------------------------------------------
# Sweeps over the width
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOptions:
    """Numerical knobs of :func:`double_descent_sweep` (vary with ``dataclasses.replace``).

    Attributes
    ----------
    block_bytes : int
        Bound on the temporaries of one feature block.
    max_bytes : int
        Refuse a sweep whose arrays (train and test features of the widest model, plus five
        matrices of the largest Gram order: below n the QR copy of Phi, R and R^-1; above n the
        Gram matrix, its factor and, near N = n, the LQ copy of Phi) exceed this; the error gives
        the number and a remedy. MNIST n = 10^4, N <= 4n: ~9.7 GiB; n = 5,000: ~3.2 GiB.
    chol_rcond_factor : float
        The Gram Cholesky factor is used (as a preconditioner of CGLS on ``Phi``) for width
        ``N`` only if LAPACK's reciprocal condition estimate of the Gram matrix exceeds
        ``chol_rcond_factor * m * eps`` (``m`` its order), i.e. ``kappa(Phi)^2 m eps`` below
        ``1 / chol_rcond_factor``: then ``Phi R^-1`` has singular values within a few per cent of 1,
        CGLS converges in a handful of steps, and ``kappa(Phi) <= (m eps chol_rcond_factor)^-1/2``
        (2e5 at m = 10^4) is more than a million times below the rank threshold
        ``1 / (max(n, N) eps)``: full rank is not in doubt. Otherwise a QR / LQ factor of ``Phi``
        decides the rank and solves (:func:`kernelgen.factors._rectangular.qr_factor`).
    rtol : float or None
        Relative rank threshold on the singular values of ``Phi`` for the QR / LQ path (None:
        ``max(n, N) eps``).
    qr_pivoting : bool
        Column pivoting in the QR / LQ path (``dgeqp3``) or plain Householder (``dgeqrf``, ~2.5x
        faster here); the rank decision is the same either way (singular values of ``R``).
    cgls_tol : float or None
        Tolerance on the backward-error criterion ``||Phi^T r|| / (||Phi|| (||r|| + ||Phi|| ||a||))``
        (computed with ``Phi``, columnwise max) that the preconditioned CGLS must reach; None:
        ``max(n, N) eps``, the level of a backward-stable solve.
    cgls_maxiter : int
        Iteration cap; a width whose CGLS does not meet ``cgls_tol`` goes to the QR / LQ path.
    max_dense_n : int
        Largest dimension of one LAPACK call (Gram factor or QR / LQ of ``Phi``); FACTS.md measured
        float64 ``potrf`` running at 21,500 and crashing at 23,000 with the bundled OpenBLAS.
    single_thread_below : int
        Gram orders below this run BLAS/LAPACK on one thread (threaded OpenBLAS is slower
        than serial on small matrices, catastrophically so on a loaded machine).
    keep_coef : bool
        Keep every coefficient matrix ``a_N`` in ``SweepResult.coef`` (for tests and small runs).
    """

    block_bytes: int = 256 * 2**20
    max_bytes: int = 14 * 2**30
    chol_rcond_factor: float = 10.0
    rtol: float | None = None
    qr_pivoting: bool = False
    cgls_tol: float | None = None
    cgls_maxiter: int = 20
    max_dense_n: int = 16384
    single_thread_below: int = 2048
    keep_coef: bool = False


@dataclass
class SweepResult:
    """Metrics of a width sweep; arrays have shape (n_seeds, n_widths).

    Every width holds ``Phi_N^+ Y`` computed from ``Phi_N`` (never from a rank cut-off on a Gram
    matrix), with its optimality certified by residuals computed with ``Phi_N`` itself.

    Attributes
    ----------
    widths : ndarray of shape (n_widths,)
    n_train : int
    seeds : list of int
    test_error, train_error : ndarray
        Zero-one error of ``argmax`` predictions (NaN for regression targets).
    test_sq, train_sq : ndarray
        Mean over samples of ``||f(x) - y||^2`` (summed over targets).
    coef_norm : ndarray
        ``||a||_F`` of the coefficients on the normalised features ``sqrt(2/N) cos(.)``.
    cond : ndarray
        Condition number of ``Phi_N`` (2-norm): ``sqrt`` of LAPACK's 1-norm estimate of the Gram
        condition (``dpocon``) on the Cholesky-CGLS path; ``sigma_max / sigma_min`` of the QR
        factor ``R`` (power and inverse iteration, an estimate from below) on the QR / LQ path.
    rank : ndarray of int
        Numerical rank of ``Phi_N`` at ``max(n, N) eps sigma_max`` (see ``SweepOptions``).
    method : ndarray of str
        ``"cholesky_cgls"`` (CGLS on ``Phi`` preconditioned by the Gram Cholesky factor),
        ``"qr"`` (``N <= n``) or ``"lq"`` (``N > n``).
    cgls_iters : ndarray of int
        CGLS iterations (0 on the QR / LQ path).
    opt_residual : ndarray
        ``||Phi^T (Y - Phi a)||_F / (||Phi||_2 ||Y||_F)``, the least-squares optimality residual
        (``||Phi||_2`` from 8 power iterations with ``Phi`` or its Gram matrix, a lower bound, so this is
        an upper estimate).
    fit_residual : ndarray
        ``||Y - Phi a||_F / ||Y||_F`` (the interpolation residual for ``N >= n``).
    kernel_limit : dict or None
        ``N -> infinity`` reference from :func:`kernelgen.kernel_interpolate` (keys
        ``test_error``, ``test_sq``, ``train_error``, ``train_sq``, ``rkhs_norm``, ``solver``).
    seconds : float
    coef : list or None
        With ``SweepOptions.keep_coef``: ``coef[seed][width]`` is ``a_N = Phi_N^+ Y``, shape (N, k).
    """

    widths: np.ndarray
    n_train: int
    seeds: list
    test_error: np.ndarray
    train_error: np.ndarray
    test_sq: np.ndarray
    train_sq: np.ndarray
    coef_norm: np.ndarray
    cond: np.ndarray
    rank: np.ndarray
    method: np.ndarray
    cgls_iters: np.ndarray
    opt_residual: np.ndarray
    fit_residual: np.ndarray
    kernel_limit: dict | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    coef: list | None = None

    def mean(self, name: str) -> np.ndarray:
        """Mean over seeds of a metric: shape (n_widths,)."""
        return np.mean(getattr(self, name), axis=0)

    def std(self, name: str) -> np.ndarray:
        """Standard deviation over seeds (ddof=1; zeros for one seed): shape (n_widths,)."""
        a = getattr(self, name)
        return np.std(a, axis=0, ddof=1) if a.shape[0] > 1 else np.zeros(a.shape[1])

    def peak_width(self, name: str = "test_error") -> int:
        """Width of the largest seed-mean of ``name``."""
        return int(self.widths[int(np.nanargmax(self.mean(name)))])

    def to_dict(self) -> dict:
        """JSON-ready dict (lists instead of arrays)."""
        d = asdict(self)
        if d.get("coef") is not None:
            d["coef"] = [[np.asarray(c).tolist() for c in row] for row in d["coef"]]
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def default_widths(n: int, *, max_ratio: float = 4.0, min_ratio: float = 0.1) -> np.ndarray:
    """Widths from ``min_ratio * n`` to ``max_ratio * n``, denser near ``N = n`` (33 by default).

    Returns
    -------
    widths : ndarray of int, sorted, unique, always containing ``n``
    """
    ratios = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99,
                       1.0, 1.01, 1.02, 1.03, 1.05, 1.07, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0,
                       2.5, 3.0, 3.5, 4.0])
    ratios = ratios[(ratios >= min_ratio - 1e-12) & (ratios <= max_ratio + 1e-12)]
    w = np.unique(np.maximum(1, np.round(ratios * n)).astype(np.int64))
    return w


def _encode_targets(y, name):
    """Labels (1-D ints) -> (one-hot float64, labels, classes); float 2-D -> (Y, None, None)."""
    y = np.asarray(y)
    if y.ndim == 1 and y.dtype.kind in "iub":
        classes = np.unique(y)
        Y = (y[:, None] == classes[None, :]).astype(np.float64)
        return Y, y, classes
    Y = as_float_array(y, name, ndim=(1, 2), dtype=np.float64)
    return (Y[:, None] if Y.ndim == 1 else Y), None, None


def _sym_lower_norm1(Lw: np.ndarray, m: int) -> float:
    """1-norm of the symmetric matrix whose lower triangle is ``Lw[:m, :m]``.

    ``Lw`` must hold zeros above the diagonal (true of every Gram matrix built here:
    ``dsyrk`` into a zero matrix writes the lower triangle only).
    """
    B = np.abs(Lw[:m, :m])
    return float(np.max(B.sum(axis=0) + B.sum(axis=1) - np.diag(B)))


def _sym_lower_lmax(Lw: np.ndarray, m: int, iters: int = 8) -> float:
    """Largest eigenvalue of the PSD matrix with lower triangle ``Lw[:m, :m]`` (power iteration).

    A Rayleigh quotient, so a lower bound of ``lambda_max``; used only to normalise residuals. From the
    all-ones start 8 steps reach 1e-6 relative on MNIST RFF Gram matrices (measured: 3e-7 after 6 steps).
    """
    x = np.ones((m, 1)) / np.sqrt(m)
    lam = 0.0
    for _ in range(iters):
        y = blas.dsymm(1.0, Lw[:m, :m], x, lower=1)
        lam = float(x[:, 0] @ y[:, 0])
        ny = float(np.linalg.norm(y))
        if ny == 0.0:
            break
        x = y / ny
    return lam


def _cgls(op, rop, Y, x0, eta, *, tol, maxiter):
    """CGLS for ``min ||Y - M x||_F`` columnwise from ``x0`` (``M`` given by ``op``, ``M^T`` by ``rop``).

    From ``x0`` in ``range(M^T)`` the iterates stay there, so on a consistent system the limit is the
    minimum-norm solution. At least one step is taken (the seminormal start refined once is
    Bjorck's CSNE); the iteration stops when ``eta(x) <= tol``, where ``eta`` is the backward-error
    criterion of the *unpreconditioned* problem computed with ``Phi`` (see :func:`_eta`), or when
    ``eta`` has not improved for two steps (CGLS at the rounding level drifts upwards; measured on
    MNIST), or after ``maxiter`` steps. The iterate with the smallest ``eta`` is returned.

    Returns ``(x, iterations, converged, eta_best)``.

    References
    ----------
    A. Bjorck. Numerical Methods for Least Squares Problems, SIAM 1996, sec. 6.6.5 (CSNE),
    sec. 7.4 (CGLS).
    """
    x = x0.copy()
    r = Y - op(x)
    s = rop(r)
    p = s.copy()
    gamma = np.sum(s * s, axis=0)
    tiny = np.finfo(float).tiny
    best_x, best_eta, best_it = x.copy(), eta(x), 0
    it = 0
    while it < maxiter and (it == 0 or best_eta > tol) and it - best_it < 2:
        it += 1
        q = op(p)
        qq = np.sum(q * q, axis=0)
        alpha = np.where(qq > 0, gamma / np.maximum(qq, tiny), 0.0)
        x += alpha * p
        r -= alpha * q
        s = rop(r)
        gnew = np.sum(s * s, axis=0)
        beta = np.where(gamma > 0, gnew / np.maximum(gamma, tiny), 0.0)
        p = s + beta * p
        gamma = gnew
        e = eta(x)
        if e < best_eta:
            best_x, best_eta, best_it = x.copy(), e, it
    return best_x, it, bool(best_eta <= tol), best_eta


def _eta(Psi_N, u, Y, sig):
    """Backward-error criterion of ``u`` for ``min ||Y - Psi_N u||`` computed with ``Psi_N`` itself:

    ``max_j ||Psi^T r_j|| / (sigma (||r_j|| + sigma ||u_j||))``, ``r = Y - Psi_N u``, ``sigma ~ ||Psi_N||_2``.
    A backward-stable solution (exact for ``Psi + E``, ``||E|| <= eps' ||Psi||``) has ``eta <~ eps'``
    (from ``(Psi + E)^T (Y - (Psi + E) u) = 0``); it covers least squares and, as ``r -> 0``,
    consistent systems.
    """
    r = Y - Psi_N @ u
    num = np.linalg.norm(Psi_N.T @ r, axis=0)
    den = sig * (np.linalg.norm(r, axis=0) + sig * np.linalg.norm(u, axis=0))
    return float(np.max(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)))


def _qr_cond(f) -> float:
    """``sigma_max / sigma_min`` of a QR factor's ``R`` (exact after an SVD of ``R``; otherwise the factor's
    power-iteration ``sigma_max`` over 10 steps of inverse iteration for ``sigma_min``: an estimate from below)."""
    if f.rank == 0:
        return np.inf
    if f.rank_decided_by == "svd_of_R":
        s = f.singular_values()
        return float(s[0] / s[-1]) if s[-1] > 0 else np.inf
    R = f._R
    x = np.ones((R.shape[0], 1)) / np.sqrt(R.shape[0])
    inv = 0.0
    for _ in range(10):  # inverse power iteration on R^T R: ||R^-1 R^-T x|| -> 1 / sigma_min^2
        y = solve_triangular(R, solve_triangular(R, x, trans="T", check_finite=False), check_finite=False)
        inv = float(np.linalg.norm(y))
        x = y / inv
    return float(f.sigma_max * np.sqrt(inv))


def _lmax_of(P: np.ndarray, iters: int = 8) -> float:
    """``||P||_2^2`` by power iteration with ``P`` (a Rayleigh quotient: a lower bound; see
    :func:`_sym_lower_lmax` for the number of steps)."""
    x = np.ones((P.shape[1], 1)) / np.sqrt(P.shape[1])
    lam = 0.0
    for _ in range(iters):
        y = P.T @ (P @ x)
        lam = float(x[:, 0] @ y[:, 0])
        ny = float(np.linalg.norm(y))
        if ny == 0.0:
            break
        x = y / ny
    return lam


def _certify(Psi_N, u, Y, ynorm, lmax):
    """Optimality residuals of ``u`` computed with the feature matrix itself (scale-free in ``Psi``)."""
    r = Y - Psi_N @ u
    opt = np.linalg.norm(Psi_N.T @ r) / (np.sqrt(lmax) * ynorm)
    return float(opt), float(np.linalg.norm(r) / ynorm), Y - r  # Y - r = Psi_N u (train predictions)


def _gram_metrics(pred_tr, Y, lab, pred_te, Yt, labt):
    out = {
        "train_sq": float(np.mean(np.sum((pred_tr - Y) ** 2, axis=1))),
        "test_sq": float(np.mean(np.sum((pred_te - Yt) ** 2, axis=1))),
        "train_error": np.nan,
        "test_error": np.nan,
    }
    if lab is not None:
        out["train_error"] = float(np.mean(np.argmax(pred_tr, axis=1) != lab))
    if labt is not None:
        out["test_error"] = float(np.mean(np.argmax(pred_te, axis=1) != labt))
    return out


def _solve_qr(Psi_N, Y, opts):
    """``Psi_N^+ Y`` from a QR (tall / square) or LQ (wide) factor of ``Psi_N``; rank decided on it."""
    from .factors._rectangular import qr_factor

    f = qr_factor(Psi_N, rtol=opts.rtol, pivoting=opts.qr_pivoting, max_dim=opts.max_dense_n)
    return f.solve(Y), f.rank, _qr_cond(f), f.kind


def _sweep_one(fm, X, Y, lab, Xt, Yt, labt, widths, opts, verbose, timings):
    """One seed: ``u_N = Psi_N^+ Y`` for every width, ``a_N = sqrt(N) u_N`` (``Phi_N = Psi_N / sqrt(N)``)."""
    n = X.shape[0]
    Nmax = int(widths[-1])
    t0 = time.perf_counter()
    Psi = fm.transform(X, n_features=Nmax, normalize=False, block_bytes=opts.block_bytes, order="F")
    Psit = fm.transform(Xt, n_features=Nmax, normalize=False, block_bytes=opts.block_bytes, order="F")
    timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t0
    rows = []
    lows = [int(N) for N in widths if N <= n]
    highs = [int(N) for N in widths if N > n]
    bar = tqdm(total=len(widths), desc=f"widths (seed {fm.seed})", disable=not verbose)
    thr = opts.chol_rcond_factor * _EPS
    ynorm = float(np.linalg.norm(Y))

    def tol(N):  # backward-error level of a stable solve on an n x N matrix
        return opts.cgls_tol if opts.cgls_tol is not None else max(n, N) * _EPS

    def finish(N, u, method, rank, cond, iters, lmax, t_start, key):
        t1 = time.perf_counter()
        opt, fit, pred_tr = _certify(Psi[:, :N], u, Y, ynorm, lmax)
        timings["certify"] = timings.get("certify", 0.0) + time.perf_counter() - t1
        pred_te = Psit[:, :N] @ u
        coef_norm = float(np.sqrt(N) * np.linalg.norm(u))  # a = sqrt(N) u for sqrt(2/N) features
        rows.append({"width": N, "method": method, "rank": int(rank), "cond": float(cond), "cgls_iters": int(iters),
                     "opt_residual": opt, "fit_residual": fit, "coef_norm": coef_norm,
                     **_gram_metrics(pred_tr, Y, lab, pred_te, Yt, labt)})
        if opts.keep_coef:
            rows[-1]["coef"] = np.sqrt(N) * u
        log.info("N=%d %s rank=%d cond=%.3g iters=%d opt=%.1e fit=%.1e", N, method, rank, cond, iters, opt, fit)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t_start
        bar.update(1)

    # ---- N <= n: one Householder QR of Psi[:, :Nlo]; its leading blocks factor every narrower width ----
    if lows:
        from .factors._rectangular import qr_factor

        t0 = time.perf_counter()
        Nlo = lows[-1]
        F = qr_factor(Psi[:, :Nlo], rtol=opts.rtol, pivoting=False, max_dim=opts.max_dense_n)
        timings["qr_low"] = timings.get("qr_low", 0.0) + time.perf_counter() - t0
        for N in lows:
            t0 = time.perf_counter()
            f = F if N == Nlo else F.leading(N)
            u = f.solve(Y)
            # ||Psi_N||_2 for the certificate: power iteration on Psi_N^T Psi_N through Psi_N itself
            lmax = _lmax_of(Psi[:, :N])
            finish(N, u, "qr", f.rank, _qr_cond(f), 0, lmax, t0, "solve_low")
        del F

    # ---- N > n: accumulate S = Psi_N Psi_N^T column block by column block ----
    if highs:
        S = np.zeros((n, n), order="F")
        done = 0
        step = max(1, opts.block_bytes // (8 * n))
        for N in highs:
            t0 = time.perf_counter()
            for c0 in range(done, N, step):
                c1 = min(N, c0 + step)
                S = blas.dsyrk(1.0, Psi[:, c0:c1], beta=1.0, c=S, trans=0, lower=1, overwrite_c=1)
            done = N
            timings["gram_high"] = timings.get("gram_high", 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            lmax = _sym_lower_lmax(S, n)
            anorm = _sym_lower_norm1(S, n)
            L, info = lapack.dpotrf(S, lower=1, clean=1, overwrite_a=0)  # S = Psi_N Psi_N^T = L L^T
            rcond_est = lapack.dpocon(L, anorm, uplo="L")[0] if info == 0 else 0.0
            u = None
            if info == 0 and rcond_est > thr * n:
                PN = Psi[:, :N]
                # start u0 = Psi^T S^-1 Y (in range(Psi^T)); CGLS on M = L^-1 Psi_N keeps the iterates
                # there, so it converges to the minimum-norm solution of Psi_N u = Y.
                u0 = PN.T @ lapack.dpotrs(L, Y, lower=1)[0]
                LY = solve_triangular(L, Y, lower=True, check_finite=False)
                def op(v, L=L, PN=PN):
                    return solve_triangular(L, PN @ v, lower=True, check_finite=False)

                def rop(r, L=L, PN=PN):
                    return PN.T @ solve_triangular(L, r, lower=True, trans="T", check_finite=False)

                sig = float(np.sqrt(lmax))

                def eta(v, PN=PN, sig=sig):
                    return _eta(PN, v, Y, sig)

                uu, iters, ok, e = _cgls(op, rop, LY, u0, eta, tol=tol(N), maxiter=opts.cgls_maxiter)
                if ok:
                    u, method, rank, cond = uu, "cholesky_cgls", n, float(np.sqrt(1.0 / rcond_est))
                else:
                    log.info("N=%d: CGLS reached eta=%.1e > %.1e in %d steps; LQ of Phi instead", N, e, tol(N), iters)
            del L
            if u is None:
                u, rank, cond, method = _solve_qr(Psi[:, :N], Y, opts)
                iters = 0
            finish(N, u, method, rank, cond, iters, lmax, t0, "solve_high")
        del S
    bar.close()
    return rows


def _kernel_limit(fm, X, Y, lab, Xt, Yt, labt) -> dict:
    """``N -> infinity``: the kernel interpolant of the limit kernel via kernel_interpolate."""
    from .solvers import kernel_interpolate

    if fm.kind == "fourier":
        from .kernels import Gaussian

        fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=fm.bandwidth))
        pred_tr = fit.predict(X)
        pred_te = fit.predict(Xt)
    else:
        K = arccos_kernel(X, bandwidth=fm.bandwidth)
        fit = kernel_interpolate(K, Y, kernel="precomputed")
        pred_tr = K @ np.asarray(fit.alpha).reshape(Y.shape)
        pred_te = fit.predict(arccos_kernel(Xt, X, bandwidth=fm.bandwidth))
    pred_tr = np.asarray(pred_tr).reshape(Y.shape)
    pred_te = np.asarray(pred_te).reshape(Yt.shape)
    out = _gram_metrics(pred_tr, Y, lab, pred_te, Yt, labt)
    out["rkhs_norm"] = float(np.linalg.norm(np.atleast_1d(fit.rkhs_norm)))
    out["solver"] = str(fit.solver)
    return out


def double_descent_sweep(X, y, X_test, y_test, widths=None, *, kind: str = "fourier",
                         bandwidth: float = 5.0, seeds=(0,), kernel_limit: bool = True,
                         options: SweepOptions | None = None, verbose: bool = False) -> SweepResult:
    """Minimum-norm random-feature fits of every width in ``widths``, reusing work.

    For each seed one map of ``max(widths)`` features is drawn and the width-``N`` model uses
    its first ``N`` columns (nested features). Gram matrices are updated, not rebuilt
    (module docstring); near ``N = n`` the rank-aware solver runs and its rank is reported.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_inputs)
    y : array_like of shape (n_samples,) of int labels, or (n_samples, n_targets) floats
        Integer labels are one-hot encoded (classification: zero-one error by argmax).
    X_test : array_like of shape (n_test, n_inputs)
    y_test : like ``y``
    widths : array_like of int, optional
        Default :func:`default_widths` (``0.1 n`` ... ``4 n``, 33 widths).
    kind : {"fourier", "relu"}
    bandwidth : float
    seeds : sequence of int
    kernel_limit : bool
        Also fit the ``N -> infinity`` kernel interpolant (:func:`kernelgen.kernel_interpolate`).
    options : SweepOptions, optional
    verbose : bool
        tqdm progress over widths.

    Returns
    -------
    SweepResult

    Raises
    ------
    MemoryBudgetError
        When the stored features and Gram matrices exceed ``options.max_bytes``.

    References
    ----------
    [BHMM] Fig. 2 and section "Random Fourier features".
    """
    t_start = time.perf_counter()
    opts = options or SweepOptions()
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    Xt = as_float_array(X_test, "X_test", ndim=(2,), dtype=np.float64)
    if Xt.shape[1] != X.shape[1]:
        raise ShapeMismatchError(f"X has {X.shape[1]} columns but X_test has {Xt.shape[1]}.")
    Y, lab, classes = _encode_targets(y, "y")
    Yt, labt, classes_t = _encode_targets(y_test, "y_test")
    check_same_rows(X, Y, "X", "y")
    check_same_rows(Xt, Yt, "X_test", "y_test")
    if classes is not None:
        if classes_t is None or not np.all(np.isin(classes_t, classes)):
            raise InvalidInputError("y_test must hold integer labels from the classes of y.")
        Yt = (labt[:, None] == classes[None, :]).astype(np.float64)
        lab = np.searchsorted(classes, lab)
        labt = np.searchsorted(classes, labt)
    if Yt.shape[1] != Y.shape[1]:
        raise ShapeMismatchError(f"y has {Y.shape[1]} targets but y_test has {Yt.shape[1]}.")
    n = X.shape[0]
    widths = default_widths(n) if widths is None else np.unique(np.asarray(widths, dtype=np.int64))
    if widths.size == 0 or widths[0] < 1:
        raise InvalidInputError("widths must be positive integers.")
    Nmax = int(widths[-1])
    m_low = int(max([w for w in widths if w <= n], default=0))
    if max(n, m_low) > opts.max_dense_n:
        raise MemoryBudgetError(
            f"Gram order {max(n, m_low)} exceeds SweepOptions.max_dense_n={opts.max_dense_n} "
            "(largest single LAPACK factorisation allowed); subsample the training set."
        )
    # stored: train + test features; peak besides them: five matrices of the largest Gram order
    # (QR copy of Phi, R, R^-1 below n; Gram, factor, LQ copy of Phi and its R above n).
    need = 8 * ((n + Xt.shape[0]) * Nmax + 5 * max(n, m_low) ** 2)
    if need > opts.max_bytes:
        raise MemoryBudgetError(
            f"the sweep needs ~{need / 2**30:.1f} GiB (train/test features for {Nmax} widths and Gram "
            f"matrices) but SweepOptions.max_bytes = {opts.max_bytes / 2**30:.1f} GiB; reduce the largest "
            "width or the test set, or raise max_bytes.",
            bytes_needed=need, bytes_available=opts.max_bytes,
        )
    seeds = [int(s) for s in np.atleast_1d(seeds)]
    if not seeds:
        raise InvalidInputError("pass at least one seed.")
    Ys = Y
    timings: dict = {}
    per_seed = []
    # Small Gram matrices: one BLAS thread. Threaded OpenBLAS potrf on a 150 x 150 matrix took
    # 0.6 s instead of 0.1 ms on the shared 2-core machine under load (measured); large ones
    # keep the default threads.
    blas_threads = 1 if max(n, m_low) < opts.single_thread_below else None
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        for seed in seeds:
            fm = draw_random_features(X.shape[1], Nmax, kind=kind, bandwidth=bandwidth, seed=seed)
            per_seed.append(_sweep_one(fm, X, Ys, lab, Xt, Yt, labt, widths, opts, verbose, timings))
    klim = None
    if kernel_limit:
        t0 = time.perf_counter()
        with threadpool_limits(limits=1 if n < opts.single_thread_below else None, user_api="blas"):
            klim = _kernel_limit(fm, X, Ys, lab, Xt, Yt, labt)
        timings["kernel_limit"] = time.perf_counter() - t0

    def stack(key, dtype=np.float64):
        return np.array([[r[key] for r in rows] for rows in per_seed], dtype=dtype)

    return SweepResult(
        widths=widths, n_train=n, seeds=seeds,
        test_error=stack("test_error"), train_error=stack("train_error"),
        test_sq=stack("test_sq"), train_sq=stack("train_sq"), coef_norm=stack("coef_norm"),
        cond=stack("cond"), rank=stack("rank", np.int64), method=stack("method", object).astype(str),
        cgls_iters=stack("cgls_iters", np.int64), opt_residual=stack("opt_residual"),
        fit_residual=stack("fit_residual"), kernel_limit=klim, seconds=time.perf_counter() - t_start,
        timings=timings, coef=[[r["coef"] for r in rows] for rows in per_seed] if opts.keep_coef else None,
    )


# ---------------------------------------------------------------------------------------
# scikit-learn estimators
# ---------------------------------------------------------------------------------------


class RandomFeaturesRegressor(RegressorMixin, BaseEstimator):
    """Minimum-norm regression on random features (scikit-learn estimator).

    Parameters
    ----------
    n_features : int
        Width ``N``.
    kind : {"fourier", "relu"}
    bandwidth : float
    seed : int
    rcond : float, optional
        Cutoff for :func:`kernelgen.min_norm_solve`.
    block_bytes : int

    Attributes
    ----------
    feature_map_ : RandomFeatureMap
    coef_ : ndarray of shape (n_features,) or (n_features, n_targets)
    rank_ : int
    relative_residual_ : float
    n_features_in_ : int
    """

    def __init__(self, n_features: int = 1000, *, kind: str = "fourier", bandwidth: float = 5.0,
                 seed: int = 0, rcond=None, block_bytes: int = 256 * 2**20):
        self.n_features = n_features
        self.kind = kind
        self.bandwidth = bandwidth
        self.seed = seed
        self.rcond = rcond
        self.block_bytes = block_bytes

    def _fit_targets(self, X, Y):
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        check_same_rows(X, Y, "X", "y")
        self.feature_map_ = draw_random_features(X.shape[1], self.n_features, kind=self.kind,
                                                 bandwidth=self.bandwidth, seed=self.seed)
        Phi = self.feature_map_.transform(X, block_bytes=self.block_bytes)
        fit = min_norm_fit(Phi, Y, rcond=self.rcond)
        self.coef_ = fit.coef
        self.rank_ = fit.rank
        self.relative_residual_ = fit.relative_residual
        self.n_features_in_ = X.shape[1]
        return self

    def fit(self, X, y):
        """Fit ``coef_ = Phi(X)^+ y``. Returns self."""
        Y = as_float_array(y, "y", ndim=(1, 2), dtype=np.float64)
        return self._fit_targets(X, Y)

    def _decision(self, X):
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("call fit before predict.")
        return self.feature_map_.transform(X, block_bytes=self.block_bytes) @ self.coef_

    def predict(self, X):
        """Predictions ``Phi(X) coef_``: shape (n_samples,) or (n_samples, n_targets)."""
        return self._decision(X)


class RandomFeaturesClassifier(ClassifierMixin, RandomFeaturesRegressor):
    """Minimum-norm random-feature classifier: one-hot targets, squared loss, ``argmax``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_features, n_classes)
    """

    def fit(self, X, y):
        """Fit on one-hot encoded labels. Returns self."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise ShapeMismatchError(f"y must be 1-D labels, got shape {y.shape}.")
        self.classes_ = np.unique(y)
        Y = (y[:, None] == self.classes_[None, :]).astype(np.float64)
        return self._fit_targets(X, Y)

    def decision_function(self, X):
        """Scores ``Phi(X) coef_``: shape (n_samples, n_classes)."""
        return self._decision(X)

    def predict(self, X):
        """Class of the largest score."""
        return self.classes_[np.argmax(self._decision(X), axis=1)]
