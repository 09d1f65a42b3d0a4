"""Double-descent sweeps over the width: Phi_N^+ Y at every N, computed from Phi_N and certified with it.

The algorithm (one QR below n, Gram-preconditioned CGLS above, QR/LQ near N = n) and its references are in
:mod:`kernelgen.random_features`.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.linalg import blas, solve_triangular
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .._validation import as_float_array, check_same_rows
from ..errors import (
    InvalidInputError,
    KernelgenError,
    MemoryBudgetError,
    NonFiniteResultError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
)
from ..factors import CholeskyFactor, qr_factor
from ..kernels import ArcCosine, Gaussian
from ..numerics import CALL_LIMITS
from ..solvers import kernel_interpolate
from ._features import draw_random_features
from ._targets import encode_targets, infer_task

__all__ = ["SweepOptions", "SweepResult", "default_widths", "double_descent_sweep"]

log = logging.getLogger(__name__)

_EPS = np.finfo(np.float64).eps
#: Tile of the Gram matrix's Cholesky factor: the largest bounded potrf (one LAPACK call up to that order).
_GRAM_TILE = CALL_LIMITS[np.dtype(np.float64)].potrf_n

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
        Largest dimension of one LAPACK call (QR / LQ of ``Phi``; the Gram factor is tiled in bounded calls):
        see docs/numerics.md, "BLAS and LAPACK call limits" (float64 ``potrf`` ran at 21,500 and crashed at
        23,000 with the bundled OpenBLAS).
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
    task : {"classification", "regression"}
        The question the sweep answered (``double_descent_sweep``'s ``task``, or the one inferred from ``y``).
    test_error, train_error : ndarray or None
        Zero-one error of ``argmax`` predictions; None for a regression sweep (no class to compare with:
        never NaN). ``mean``, ``std`` and ``peak_width`` of them raise :class:`InvalidInputError` there.
    test_sq, train_sq : ndarray
        Mean over samples of ``||f(x) - y||^2`` (summed over targets).
    coef_norm : ndarray
        ``||a||_F`` of the coefficients on the normalised features ``sqrt(2/N) cos(.)``.
    cond : ndarray
        Condition number of ``Phi_N`` (2-norm): ``sqrt`` of LAPACK's 1-norm estimate of the Gram
        condition (:meth:`kernelgen.factors.CholeskyFactor.rcond`, ``dpocon`` on one tile) on the
        Cholesky-CGLS path; ``sigma_max / sigma_min`` of the QR factor ``R`` (power and inverse iteration,
        an estimate from below) on the QR / LQ path.
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
        ``test_error``, ``test_sq``, ``train_error``, ``train_sq``, ``rkhs_norm``, ``solver``; the two
        errors are None for a regression sweep).
    seconds : float
    coef : list or None
        With ``SweepOptions.keep_coef``: ``coef[seed][width]`` is ``a_N = Phi_N^+ Y``, shape (N, k).
    """

    widths: np.ndarray
    n_train: int
    seeds: list
    test_error: np.ndarray | None
    train_error: np.ndarray | None
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
    task: str = "classification"

    def _metric(self, name: str) -> np.ndarray:
        a = getattr(self, name)
        if a is None:
            raise InvalidInputError(f"{name} is not defined for a {self.task} sweep (zero-one errors need class "
                                    "labels); use test_sq / train_sq, or sweep with task='classification'.")
        return a

    def mean(self, name: str) -> np.ndarray:
        """Mean over seeds of a metric: shape (n_widths,)."""
        return np.mean(self._metric(name), axis=0)

    def std(self, name: str) -> np.ndarray:
        """Standard deviation over seeds (ddof=1; zeros for one seed): shape (n_widths,)."""
        a = self._metric(name)
        return np.std(a, axis=0, ddof=1) if a.shape[0] > 1 else np.zeros(a.shape[1])

    def peak_width(self, name: str = "test_error") -> int:
        """Width of the largest seed-mean of ``name``."""
        return int(self.widths[int(np.argmax(self.mean(name)))])

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
    return _power_lmax(lambda x: blas.dsymm(1.0, Lw[:m, :m], x, lower=1), m, iters)


def _power_lmax(apply, m: int, iters: int) -> float:
    """Rayleigh quotient after ``iters`` power-iteration steps of a PSD operator of order m, from the all-ones start."""
    x = np.ones((m, 1)) / np.sqrt(m)
    lam = 0.0
    for _ in range(iters):
        y = apply(x)
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
    while it < maxiter and (it == 0 or not (best_eta <= tol)) and it - best_it < 2:
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
    return _power_lmax(lambda x: P.T @ (P @ x), P.shape[1], iters)


def _certify(Psi_N, u, Y, ynorm, lmax):
    """Optimality residuals of ``u`` computed with the feature matrix itself (scale-free in ``Psi``)."""
    r = Y - Psi_N @ u
    opt = np.linalg.norm(Psi_N.T @ r) / (np.sqrt(lmax) * ynorm)
    return float(opt), float(np.linalg.norm(r) / ynorm), Y - r  # Y - r = Psi_N u (train predictions)


def _gram_metrics(pred_tr, Y, lab, pred_te, Yt, labt):
    out = {
        "train_sq": float(np.mean(np.sum((pred_tr - Y) ** 2, axis=1))),
        "test_sq": float(np.mean(np.sum((pred_te - Yt) ** 2, axis=1))),
        "train_error": None,
        "test_error": None,
    }
    if lab is not None:
        out["train_error"] = float(np.mean(np.argmax(pred_tr, axis=1) != lab))
    if labt is not None:
        out["test_error"] = float(np.mean(np.argmax(pred_te, axis=1) != labt))
    return out


def _solve_qr(Psi_N, Y, opts):
    """``Psi_N^+ Y`` from a QR (tall / square) or LQ (wide) factor of ``Psi_N``; rank decided on it."""

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
            try:  # S = Psi_N Psi_N^T = L L^T (tiled, bounded calls; the lower triangle of S is read)
                L = CholeskyFactor.factor(S, tile=_GRAM_TILE)
                rcond_est = L.rcond(anorm)
            except NotPositiveDefiniteError:
                L, rcond_est = None, 0.0
            u = None
            if L is not None and rcond_est > thr * n:
                PN = Psi[:, :N]
                # start u0 = Psi^T S^-1 Y (in range(Psi^T)); CGLS on M = L^-1 Psi_N keeps the iterates
                # there, so it converges to the minimum-norm solution of Psi_N u = Y.
                u0 = PN.T @ L.solve(Y)
                LY = L.solve_triangular(Y)

                def op(v, L=L, PN=PN):
                    return L.solve_triangular(PN @ v)

                def rop(r, L=L, PN=PN):
                    return PN.T @ L.solve_triangular(r, trans=True)

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
    """``N -> infinity``: the kernel interpolant of the limit kernel via kernel_interpolate (the tiled solver).

    The limit kernel is :class:`~kernelgen.kernels.Gaussian` for Fourier features and
    :class:`~kernelgen.kernels.ArcCosine` for ReLU features, both with the map's bandwidth.
    """
    kernel = Gaussian(bandwidth=fm.bandwidth) if fm.kind == "fourier" else ArcCosine(bandwidth=fm.bandwidth)
    fit = kernel_interpolate(X, Y, kernel=kernel)
    pred_tr = np.asarray(fit.predict(X)).reshape(Y.shape)
    pred_te = np.asarray(fit.predict(Xt)).reshape(Yt.shape)
    out = _gram_metrics(pred_tr, Y, lab, pred_te, Yt, labt)
    out["rkhs_norm"] = float(np.linalg.norm(np.atleast_1d(fit.rkhs_norm)))
    out["solver"] = str(fit.solver)
    return out


def _sweep_targets(y, y_test, task):
    """Train and test targets under one task: (Y, labels, Y_test, test labels, task)."""
    if task is None:
        kinds = (infer_task(y), infer_task(y_test))
        if kinds[0] != kinds[1]:
            raise InvalidInputError(
                f"y looks like {kinds[0]} targets but y_test like {kinds[1]} ones (dtypes "
                f"{np.asarray(y).dtype}, {np.asarray(y_test).dtype}); pass task='classification' or "
                "task='regression' to say which question the sweep answers.")
    tr = encode_targets(y, task=task, name="y")
    te = encode_targets(y_test, task=tr.task, classes=tr.classes, name="y_test")
    return tr.Y, tr.labels, te.Y, te.labels, tr.task


_METRICS = ("test_error", "train_error", "test_sq", "train_sq", "coef_norm", "opt_residual", "fit_residual")


def _check_metrics(per_seed, klim, seeds) -> None:
    """Raise :class:`NonFiniteResultError` for a NaN / infinite metric (never reported as a value).

    ``cond`` may be infinite (a rank-0 ``Phi``) but not NaN.
    """
    for seed, rows in zip(seeds, per_seed):
        for r in rows:
            bad = [k for k in _METRICS if r[k] is not None and not np.isfinite(r[k])]
            bad += ["cond"] if np.isnan(r["cond"]) else []
            if bad:
                raise NonFiniteResultError(
                    f"width N={r['width']} (seed {seed}): {', '.join(bad)} = "
                    f"{', '.join(repr(r[k]) for k in bad)}; the features or targets overflow float64 "
                    "(scale X or y to moderate magnitudes).")
    if klim is not None:
        bad = [k for k, v in klim.items() if isinstance(v, float) and not np.isfinite(v)]
        if bad:
            raise NonFiniteResultError(f"kernel limit: {', '.join(bad)} not finite "
                                       f"({', '.join(repr(klim[k]) for k in bad)}); scale X or y.")


def _check_widths(widths) -> np.ndarray:
    """The user's widths as a sorted int64 array; non-integral, non-positive or repeated widths are refused.

    Never rounds or drops a width silently: ``[10.5, 40]`` or ``[40, 40]`` would otherwise sweep
    something other than what was asked.
    """
    w = np.atleast_1d(np.asarray(widths))
    if w.ndim != 1 or w.size == 0 or w.dtype.kind not in "iuf":
        raise InvalidInputError(f"widths must be a non-empty 1-D sequence of positive integers, got {widths!r}.")
    vals = w.tolist()
    bad = [v for v in vals if not (np.isfinite(v) and v >= 1 and v == np.floor(v) and v < 2**62)]
    if bad:
        raise InvalidInputError(f"widths must be positive integers; got {bad} (not rounded: pass the integer "
                                "widths to sweep).")
    wi = np.asarray(vals, dtype=np.float64).astype(np.int64) if w.dtype.kind == "f" else w.astype(np.int64)
    uniq, counts = np.unique(wi, return_counts=True)
    if np.any(counts > 1):
        raise InvalidInputError(f"widths must be distinct; repeated: {uniq[counts > 1].tolist()}.")
    return uniq


def _from_kernel_limit(exc: KernelgenError) -> KernelgenError:
    """``exc`` (same class and attributes) with a message saying it came from the kernel-limit fit."""
    new = copy.copy(exc)
    new.args = (f"{exc} [raised by the sweep's kernel-limit fit (kernel_interpolate of the N -> infinity kernel, "
                "after every width was solved); double_descent_sweep(..., kernel_limit=False) skips it]",)
    return new


def double_descent_sweep(X, y, X_test, y_test, widths=None, *, kind: str = "fourier",
                         bandwidth: float = 5.0, seeds=(0,), kernel_limit: bool = True,
                         options: SweepOptions | None = None, verbose: bool = False,
                         task: str | None = None) -> SweepResult:
    """Minimum-norm random-feature fits of every width in ``widths``, reusing work.

    For each seed one map of ``max(widths)`` features is drawn and the width-``N`` model uses
    its first ``N`` columns (nested features). Gram matrices are updated, not rebuilt
    (module docstring); near ``N = n`` the rank-aware solver runs and its rank is reported.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_inputs)
    y : array_like of shape (n_samples,) or (n_samples, 1) of labels, or (n_samples, n_targets) of reals
        Class labels are one-hot encoded (classification: zero-one error by argmax); see ``task``.
    X_test : array_like of shape (n_test, n_inputs)
    y_test : like ``y``
        Under classification, labels among the classes of ``y``.
    widths : array_like of int, optional
        Distinct positive integers, in any order (swept sorted); default :func:`default_widths`
        (``0.1 n`` ... ``4 n``, 33 widths).
    kind : {"fourier", "relu"}
    bandwidth : float
    seeds : sequence of int
    kernel_limit : bool
        Also fit the ``N -> infinity`` kernel interpolant (:func:`kernelgen.kernel_interpolate`).
    options : SweepOptions, optional
    verbose : bool
        tqdm progress over widths.
    task : {None, "classification", "regression"}
        None: classification for integer, boolean or string labels (a column ``(n, 1)`` of them too),
        regression otherwise (:func:`kernelgen.random_features.encode_targets`); float labels holding
        integers are regression targets unless ``task="classification"``.

    Returns
    -------
    SweepResult

    Raises
    ------
    InvalidInputError
        ``y`` and ``y_test`` of different kinds under ``task=None`` (pass ``task``), continuous labels
        under classification, test labels outside the training classes, targets whose norm overflows;
        widths that are not positive integers (never rounded) or not distinct (never dropped).
    KernelgenError
        From the kernel-limit fit (e.g. :class:`~kernelgen.errors.ConvergenceError`): its own class, the
        message saying it came from that fit and that ``kernel_limit=False`` skips it.
    MemoryBudgetError
        When the stored features and Gram matrices exceed ``options.max_bytes``.
    NonFiniteResultError
        A metric came out NaN or infinite (overflowing features or targets): never reported as a value.

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
    Y, lab, Yt, labt, task = _sweep_targets(y, y_test, task)
    for name, T in (("y", Y), ("y_test", Yt)):
        with np.errstate(over="ignore"):
            overflow = not np.isfinite(np.linalg.norm(T))
        if overflow:  # every residual and squared loss would be inf or NaN
            raise InvalidInputError(f"{name} is too large: its norm overflows float64 ({np.max(np.abs(T)):.3g} "
                                    "in absolute value); scale the targets.")
    check_same_rows(X, Y, "X", "y")
    check_same_rows(Xt, Yt, "X_test", "y_test")
    if Yt.shape[1] != Y.shape[1]:
        raise ShapeMismatchError(f"y has {Y.shape[1]} targets but y_test has {Yt.shape[1]}.")
    n = X.shape[0]
    widths = default_widths(n) if widths is None else _check_widths(widths)
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
    _check_metrics(per_seed, None, seeds)
    klim = None
    if kernel_limit:
        t0 = time.perf_counter()
        with threadpool_limits(limits=1 if n < opts.single_thread_below else None, user_api="blas"):
            try:
                klim = _kernel_limit(fm, X, Ys, lab, Xt, Yt, labt)
            except KernelgenError as exc:
                raise _from_kernel_limit(exc) from exc
        timings["kernel_limit"] = time.perf_counter() - t0
        _check_metrics([], klim, seeds)

    def stack(key, dtype=np.float64):
        return np.array([[r[key] for r in rows] for rows in per_seed], dtype=dtype)

    errors = task == "classification"
    return SweepResult(
        widths=widths, n_train=n, seeds=seeds, task=task,
        test_error=stack("test_error") if errors else None, train_error=stack("train_error") if errors else None,
        test_sq=stack("test_sq"), train_sq=stack("train_sq"), coef_norm=stack("coef_norm"),
        cond=stack("cond"), rank=stack("rank", np.int64), method=stack("method", object).astype(str),
        cgls_iters=stack("cgls_iters", np.int64), opt_residual=stack("opt_residual"),
        fit_residual=stack("fit_residual"), kernel_limit=klim, seconds=time.perf_counter() - t_start,
        timings=timings, coef=[[r["coef"] for r in rows] for rows in per_seed] if opts.keep_coef else None,
    )
