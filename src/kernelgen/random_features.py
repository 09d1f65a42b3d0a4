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

:func:`double_descent_sweep` reuses work across widths (factor once, solve many):

* ``N <= n``: the leading ``N x N`` block of ``A = Psi^T Psi`` (``Psi`` the unnormalised
  features of the widest draw) is the Gram matrix of width ``N``, and the leading block of
  the Cholesky factor of ``A`` is its Cholesky factor: one ``potrf`` serves every width below
  ``n``; each width costs two triangular solves.
* ``N > n``: ``S_N = Psi_N Psi_N^T`` is accumulated column block by column block (``syrk``),
  ``G_N = S_N / N = Phi_N Phi_N^T`` is factored once per width, ``alpha = G_N^{-1} Y``,
  ``a = Phi_N^T alpha``.
* Rank-aware path. A width is solved by Cholesky only when the factorisation succeeds and
  LAPACK's condition estimate certifies full numerical rank with a margin
  (``rcond_est > SweepOptions.chol_rcond_factor * N * eps``); otherwise (near ``N = n``) the
  Gram system goes to ``kernel_interpolate(G, ., kernel="precomputed", solver="min_norm")``, the
  rank-revealing eigendecomposition, and the numerical rank is reported. Both paths compute
  ``Phi^+ Y``; each width records which ran, its rank, condition number and residual.

Dtype policy: everything is float64 (inputs are converted); the Gram matrices at ``N ~ n``
have condition numbers far beyond float32's reach.

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
    "RandomFeatureMap",
    "draw_random_features",
    "random_fourier_features",
    "arccos_kernel",
    "MinNormFit",
    "min_norm_fit",
    "SweepOptions",
    "SweepResult",
    "double_descent_sweep",
    "default_widths",
    "RandomFeaturesRegressor",
    "RandomFeaturesClassifier",
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
        Refuse a sweep whose arrays (train and test features of the widest model, plus four
        matrices of the largest Gram order: Gram, factor, two transient copies) exceed this;
        the error gives the number and a remedy. MNIST n = 10^4, N <= 4n: ~9.6 GB.
    chol_rcond_factor : float
        Cholesky is accepted for width ``N`` only if LAPACK's reciprocal condition
        estimate exceeds ``chol_rcond_factor * m * eps`` (``m`` the Gram order): then the
        rank-revealing solver would keep every eigenvalue and both paths give ``Phi^+ Y``.
    rcond : float or None
        Cutoff handed to the rank-revealing solver (None: its default).
    max_dense_n : int
        Largest Gram order factored by one LAPACK call; FACTS.md measured float64
        ``potrf`` running at 21,500 and crashing at 23,000 with the bundled OpenBLAS.
    single_thread_below : int
        Gram orders below this run BLAS/LAPACK on one thread (threaded OpenBLAS is slower
        than serial on small matrices, catastrophically so on a loaded machine).
    """

    block_bytes: int = 256 * 2**20
    max_bytes: int = 14 * 2**30
    chol_rcond_factor: float = 10.0
    rcond: float | None = None
    max_dense_n: int = 16384
    single_thread_below: int = 2048


@dataclass
class SweepResult:
    """Metrics of a width sweep; arrays have shape (n_seeds, n_widths).

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
        Condition number of the Gram matrix (``Phi^T Phi`` for ``N <= n``, ``Phi Phi^T``
        above): LAPACK's 1-norm estimate ``1/rcond`` from the Cholesky factor (``dpocon``);
        NaN where the factorisation itself failed (the Gram is then numerically singular).
    rank : ndarray of int
        Numerical rank (the Gram order on the Cholesky path).
    method : ndarray of str
        ``"cholesky"`` or ``"min_norm"`` (rank-aware eigendecomposition).
    residual : ndarray
        Relative residual of the Gram system actually solved.
    kernel_limit : dict or None
        ``N -> infinity`` reference from :func:`kernelgen.kernel_interpolate` (keys
        ``test_error``, ``test_sq``, ``train_error``, ``train_sq``, ``rkhs_norm``, ``solver``).
    seconds : float
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
    residual: np.ndarray
    kernel_limit: dict | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

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


def _symmetrise_lower(Lw: np.ndarray, m: int) -> np.ndarray:
    """Full symmetric ``m x m`` copy from a lower triangle (zeros above the diagonal)."""
    T = np.array(Lw[:m, :m], order="F")
    T += Lw[:m, :m].T
    T[np.diag_indices(m)] *= 0.5
    return T


def _rank_aware(Gfull: np.ndarray, B: np.ndarray, rcond):
    """``G^+ B`` by kernelgen's rank-revealing eigendecomposition (``Gfull`` is consumed).

    Returns ``(x, rank, rank_tol)``.
    """
    from .solvers import kernel_interpolate

    fit = kernel_interpolate(Gfull, B, kernel="precomputed", solver="min_norm", rcond=rcond,
                             overwrite_kernel=True)
    return np.asarray(fit.alpha).reshape(B.shape), int(fit.rank), float(fit.rank_tol)


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


def _sweep_one(fm, X, Y, lab, Xt, Yt, labt, widths, opts, verbose, timings):
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

    # ---- N <= n: leading blocks of A = Psi^T Psi and of its Cholesky factor ----
    if lows:
        t0 = time.perf_counter()
        Nlo = lows[-1]
        P = Psi[:, :Nlo]
        A = blas.dsyrk(1.0, P, trans=1, lower=1)  # lower triangle of Psi^T Psi (Nlo x Nlo)
        C = P.T @ Y  # (Nlo, k)
        L, info = lapack.dpotrf(A, lower=1, clean=1, overwrite_a=0)
        valid = Nlo if info == 0 else max(0, info - 1)  # leading minors of order < info are PD
        Z = solve_triangular(L[:valid, :valid], C[:valid], lower=True, check_finite=False) if valid else None
        timings["gram_low"] = timings.get("gram_low", 0.0) + time.perf_counter() - t0
        for N in lows:
            t0 = time.perf_counter()
            method, rcond_est = "min_norm", 0.0
            if N <= valid:
                rcond_est, _ = lapack.dpocon(L[:N, :N], _sym_lower_norm1(A, N), uplo="L")
            if N <= valid and rcond_est > thr * N:
                b = solve_triangular(L[:N, :N], Z[:N], lower=True, trans="T", check_finite=False)
                method, rank, cond = "cholesky", N, 1.0 / rcond_est
            else:
                b, rank, _ = _rank_aware(_symmetrise_lower(A, N), C[:N], opts.rcond)
                cond = 1.0 / rcond_est if rcond_est > 0 else np.nan  # estimate; NaN if potrf failed
            # residual of the normal equations Psi_N^T Psi_N b = Psi_N^T Y (A's lower triangle)
            Ab = blas.dsymm(1.0, A[:N, :N], b, lower=1)
            res = np.linalg.norm(Ab - C[:N]) / max(np.linalg.norm(C[:N]), np.finfo(float).tiny)
            pred_tr = Psi[:, :N] @ b
            pred_te = Psit[:, :N] @ b
            coef_norm = float(np.sqrt(N) * np.linalg.norm(b))  # a = sqrt(N) b for sqrt(2/N) features
            rows.append({"width": N, "method": method, "rank": int(rank), "cond": float(cond),
                         "residual": float(res), "coef_norm": coef_norm,
                         **_gram_metrics(pred_tr, Y, lab, pred_te, Yt, labt)})
            log.info("N=%d %s rank=%d cond=%.3g res=%.2e", N, method, rank, cond, res)
            timings["solve_low"] = timings.get("solve_low", 0.0) + time.perf_counter() - t0
            bar.update(1)
        del A, L, C, Z

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
            G = S / N  # lower triangle of Phi_N Phi_N^T (Fortran order kept)
            anorm = _sym_lower_norm1(G, n)
            L, info = lapack.dpotrf(G, lower=1, clean=1, overwrite_a=1)
            rcond_est = lapack.dpocon(L, anorm, uplo="L")[0] if info == 0 else 0.0
            if info == 0 and rcond_est > thr * n:
                alpha = lapack.dpotrs(L, Y, lower=1)[0]
                method, rank, cond = "cholesky", n, 1.0 / rcond_est
            else:
                del L
                Gfull = _symmetrise_lower(S, n) / N
                alpha, rank, _ = _rank_aware(Gfull, Y, opts.rcond)
                del Gfull
                method = "min_norm"
                cond = 1.0 / rcond_est if rcond_est > 0 else np.nan  # estimate; NaN if potrf failed
            L = G = None
            pred_tr = blas.dsymm(1.0 / N, S, alpha, lower=1)  # G alpha = S alpha / N
            res = np.linalg.norm(pred_tr - Y) / np.linalg.norm(Y)
            a = Psi[:, :N].T @ alpha / np.sqrt(N)  # a = Phi_N^T alpha
            pred_te = Psit[:, :N] @ a / np.sqrt(N)
            rows.append({"width": N, "method": method, "rank": int(rank), "cond": float(cond),
                         "residual": float(res), "coef_norm": float(np.linalg.norm(a)),
                         **_gram_metrics(pred_tr, Y, lab, pred_te, Yt, labt)})
            log.info("N=%d %s rank=%d cond=%.3g res=%.2e", N, method, rank, cond, res)
            timings["solve_high"] = timings.get("solve_high", 0.0) + time.perf_counter() - t0
            bar.update(1)
        del S
    bar.close()
    return rows


def _kernel_limit(fm, X, Y, lab, Xt, Yt, labt) -> dict:
    """``N -> infinity``: the kernel interpolant of the limit kernel via kernel_interpolate."""
    from .solvers import kernel_interpolate

    if fm.kind == "fourier":
        fit = kernel_interpolate(X, Y, kernel="gaussian", bandwidth=fm.bandwidth)
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
    # stored: train + test features; peak besides them: Gram, factor and two transient copies
    # (condition estimate / rank-aware workspace), each of the largest Gram order.
    need = 8 * ((n + Xt.shape[0]) * Nmax + 4 * max(n, m_low) ** 2)
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
        residual=stack("residual"), kernel_limit=klim, seconds=time.perf_counter() - t_start,
        timings=timings,
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
