"""Claims C17, C18, C20: expressivity construction, early stopping against ridge, effective dimensionality.

Same contract as :mod:`kernelgen.verify._claims_data`: ``run_cN(ctx) -> Result``; the claims are
registered here (``CLAIMS``) and collected by :mod:`kernelgen.verify._registry`.

* **C17** -- the two-layer ReLU construction of Zhang et al. (2017), Theorem 1 / Lemma 1:
  ``c(x) = sum_j w_j max(<a, x> - b_j, 0)``. With ``z_i = <a, x_i>`` sorted and ``b_1 < z_1 < b_2 <
  z_2 < ... < b_n < z_n`` (interleaved), the matrix ``A_ij = max(z_i - b_j, 0)`` is lower triangular
  with diagonal ``z_i - b_i > 0``, so ``w = A^{-1} y`` by forward substitution fits any labels with
  ``2n + d`` weights (``a``: d, ``b``: n, ``w``: n). Row ``i`` of ``A`` below the diagonal is
  ``z_i - b_j``, so the substitution is the O(n) recurrence ``w_i = (y_i - z_i S_{i-1} + T_{i-1}) /
  (z_i - b_i)`` with ``S = sum w_j``, ``T = sum w_j b_j`` (no n x n matrix is stored: n = 60,000
  fits). The system is astronomically conditioned (slopes of a piecewise-linear interpolant over
  gaps ~ 1/n^2), so both the solve and the network's evaluation are done twice: in plain float64 and
  in compensated arithmetic (error-free transformations TwoSum / TwoProduct: Knuth, TAOCP vol. 2
  §4.2.2; Dekker 1971; the "Dot2" of Ogita, Rump & Oishi, SIAM J. Sci. Comput. 26 (2005), Alg. 5.3,
  here with a pairwise tree), which behaves like arithmetic in twice the working precision.
* **C18** -- kernel gradient flow ``d alpha/dt = Y - K alpha`` from ``alpha_0 = 0`` has the whole path
  ``alpha_t = U diag((1 - e^{-lambda t}) / lambda) U^T Y`` from one eigendecomposition ``K = U diag(lambda)
  U^T``, as has ridge ``alpha_r = U diag(1 / (lambda + r)) U^T Y``; the random-feature width is swept
  exactly (:func:`kernelgen.random_features.double_descent_sweep`). Each is chosen on a validation
  split and the test errors compared with paired (McNemar) intervals.
* **C20** -- ``N_eff(H, z) = sum_i lambda_i / (lambda_i + z)`` of ``H = Phi^T Phi`` (its nonzero
  eigenvalues are those of ``Phi Phi^T``) against the exact random-feature test loss, widths ``N >= 2n``.

References
----------
[ZBHRV17] C. Zhang, S. Bengio, M. Hardt, B. Recht, O. Vinyals, "Understanding deep learning requires
rethinking generalization", ICLR 2017, section 4 (Theorem 1, Lemma 1) and section 5 (norms ~220 / ~390).
[YRC07] Y. Yao, L. Rosasco, A. Caponnetto, "On early stopping in gradient descent learning", Constr.
Approx. 26 (2007). [RWY14] G. Raskutti, M. J. Wainwright, B. Yu, "Early stopping and non-parametric
regression: an optimal data-dependent stopping rule", JMLR 15 (2014).
[MBW20] W. J. Maddox, G. Benton, A. G. Wilson, "Rethinking parameter counting in deep models: effective
dimensionality revisited", arXiv:2003.02139 (2020), eq. 2 (N_eff), section 5.
[McN47] Q. McNemar, Psychometrika 12 (1947); the paired-difference Wald interval: A. Agresti,
Categorical Data Analysis, 3rd ed., §11.1.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.linalg as sla
from scipy import stats

from .. import cli, evidence, features, random_features
from ..errors import InvalidInputError
from ..factors import EIGH_MAX_N, EighFactor
from ..features import GaborOptions
from ..kernels import Gaussian, kernel_matrix, median_distance
from ..options import SolveOptions
from ..solvers import kernel_interpolate
from ._claims_data import (BANDWIDTH, EXACT, GABOR_BANDWIDTH_MULT, corrupt_labels, gabor_selection, mnist,
                           synthetic_classes)
from ._core import FAIL, NOT_REPRODUCED, PASS, Claim, Context, Result, Scale, spearman

__all__ = [
    "CLAIMS",
    "gradient_flow_filter",
    "interleaved_offsets",
    "mcnemar_interval",
    "network_outputs",
    "run_c17",
    "run_c18",
    "run_c20",
    "zhang_construction",
]

log = logging.getLogger("kernelgen.verify")

_ZHANG = "Zhang, Bengio, Hardt, Recht, Vinyals, ICLR 2017"


# ---------------------------------------------------------------------------------------------- error-free arithmetic
def _two_sum(a, b):
    """``s + e = a + b`` exactly, ``s = fl(a + b)`` (Knuth's TwoSum, TAOCP vol. 2, §4.2.2, Thm B)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


_SPLIT = 134217729.0  # 2^27 + 1: Veltkamp's splitting constant for float64 (Dekker 1971)


def _two_prod(a, b):
    """``p + e = a b`` exactly, ``p = fl(a b)`` (Dekker's TwoProduct; no overflow at these magnitudes)."""
    p = a * b
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    return p, al * bl - (((p - ah * bh) - al * bh) - ah * bl)


def _sum2_rows(P, E):
    """Row sums of ``P + E`` with every addition of ``P``'s entries error-free (pairwise TwoSum tree);
    the collected rounding errors and ``E`` are added in plain float64 (Ogita-Rump-Oishi Sum2)."""
    err = E.sum(axis=1)
    while P.shape[1] > 1:
        if P.shape[1] % 2:
            P = np.concatenate([P, np.zeros((P.shape[0], 1))], axis=1)
        P, e = _two_sum(P[:, 0::2], P[:, 1::2])
        err += e.sum(axis=1)
    return P[:, 0] + err


# ---------------------------------------------------------------------------------------------- C17
def interleaved_offsets(z_sorted):
    """Offsets ``b`` with ``b_1 < z_1 < b_2 < z_2 < ... < b_n < z_n`` (midpoints; ``b_1`` half a gap below).

    Parameters
    ----------
    z_sorted : array of shape (n,), strictly increasing, n >= 2

    Returns
    -------
    b : ndarray of shape (n,)

    Raises
    ------
    InvalidInputError
        ``z`` not strictly increasing, or two neighbours so close that no float64 lies between them
        (draw another direction ``a``).

    References
    ----------
    [ZBHRV17] Lemma 1 (the interleaving) and the proof of Theorem 1.
    """
    z = np.asarray(z_sorted, dtype=np.float64)
    gaps = np.diff(z)
    if z.size < 2 or np.any(gaps <= 0):
        raise InvalidInputError("the projections <a, x_i> must be distinct (sorted strictly increasing); remove "
                                "duplicate points or draw another direction a.")
    b = np.empty_like(z)
    b[0] = z[0] - gaps[0] / 2
    b[1:] = z[:-1] + gaps / 2
    if not (np.all(b < z) and np.all(b[1:] > z[:-1])):
        raise InvalidInputError("two projections are within one rounding unit: no offset fits between them; draw "
                                "another direction a.")
    return b


def zhang_construction(X, y, *, seed: int, compensated: bool = False):
    """The two-layer ReLU network of [ZBHRV17] Theorem 1 that fits ``y`` on ``X``: ``2n + d`` weights.

    Parameters
    ----------
    X : array of shape (n, d), distinct rows
    y : array of shape (n,)
    seed : int
        ``numpy.random.default_rng(seed)`` draws the direction ``a ~ N(0, I_d)`` (distinct projections
        with probability 1 for distinct points).
    compensated : bool
        Forward substitution with ``S = sum w_j`` and ``T = sum w_j b_j`` carried as unevaluated sums of
        two float64 (double-double, error-free transformations) and one Newton correction of each quotient;
        otherwise plain float64. Compensated, row ``i`` is then exact up to the rounding of the stored
        ``w_i`` itself: ``|c(x_i) - y_i| <= u |w_i| (z_i - b_i)``, ``u = 2^-53`` (float64 weights cannot do better).

    Returns
    -------
    dict
        ``a`` (d,), ``order`` (n,) (the sorting permutation), ``z`` (n,) sorted projections, ``b`` (n,),
        ``w`` (n,), ``y`` (n,) labels in sorted order.

    Raises
    ------
    InvalidInputError
        Non-distinct projections (see :func:`interleaved_offsets`).

    References
    ----------
    [ZBHRV17] Theorem 1 and Lemma 1 (``A = [max(z_i - b_j, 0)]`` lower triangular, full rank).
    """
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(X.shape[1])
    zall = X @ a
    order = np.argsort(zall, kind="stable")
    z = zall[order]
    ys = np.asarray(y, dtype=np.float64)[order]
    b = interleaved_offsets(z)
    w = _forward_substitution(z, b, ys, compensated)
    return {"a": a, "order": order, "z": z, "b": b, "w": w, "y": ys}


def _forward_substitution(z, b, y, compensated: bool):
    """``w = A^{-1} y`` for ``A_ij = (z_i - b_j) [j <= i]``: ``w_i = (y_i - (z_i S - T)) / (z_i - b_i)``."""
    n = z.size
    w = np.empty(n)
    if not compensated:
        S = T = 0.0
        for i in range(n):
            w[i] = (y[i] - (z[i] * S - T)) / (z[i] - b[i])
            S += w[i]
            T += w[i] * b[i]
        return w
    zl, bl, yl = z.tolist(), b.tolist(), y.tolist()
    Sh = Sl = Th = Tl = 0.0
    for i in range(n):
        zi, bi = zl[i], bl[i]
        # r = y_i - z_i S + T in double-double: every product and sum error-free, tails in plain float64
        p, pe = _two_prod(zi, Sh)
        r, re = _two_sum(yl[i], -p)
        r, re2 = _two_sum(r, Th)
        tail = re + re2 - pe - zi * Sl + Tl
        d, de = _two_sum(zi, -bi)  # the diagonal z_i - b_i (exact up to its own tail de)
        wi = (r + tail) / d
        # one Newton correction of the quotient with the exact diagonal: (r + tail - wi d - wi de) / d
        q, qe = _two_prod(wi, d)
        corr, ce = _two_sum(r, -q)
        wi += (corr + ce + tail - qe - wi * de) / d
        w[i] = wi
        Sh, se = _two_sum(Sh, wi)
        Sl += se
        q, qe = _two_prod(wi, bi)
        Th, te = _two_sum(Th, q)
        Tl += te + qe
    return w


def network_outputs(z, b, w, *, compensated: bool = False, block_rows: int = 256):
    """``c_i = sum_j w_j max(z_i - b_j, 0)``, the network on its training points, in row blocks.

    Plain: float64 BLAS products. Compensated: each difference by TwoSum, each product by TwoProduct,
    the row sums by a TwoSum tree (:func:`_sum2_rows`), so the result is as if computed in about twice
    the working precision (Ogita, Rump & Oishi 2005). Only ``j <= i`` can be nonzero (``z`` sorted).

    Parameters
    ----------
    z, b, w : arrays of shape (n,)
    compensated : bool
    block_rows : int

    Returns
    -------
    c : ndarray of shape (n,)
    """
    n = z.size
    out = np.empty(n)
    for r0 in range(0, n, block_rows):
        r1 = min(n, r0 + block_rows)
        zr = z[r0:r1, None]
        D = zr - b[None, :r1]
        pos = D > 0  # fl(z - b) has the sign of z - b (correct rounding)
        if not compensated:
            out[r0:r1] = np.where(pos, D, 0.0) @ w[:r1]
            continue
        _, De = _two_sum(zr, -b[None, :r1])
        P, Pe = _two_prod(np.where(pos, D, 0.0), w[None, :r1])
        out[r0:r1] = _sum2_rows(P, Pe + np.where(pos, De, 0.0) * w[None, :r1])
    return out


def _relres(c, y) -> float:
    return float(np.linalg.norm(c - y) / np.linalg.norm(y))


def _construction_residuals(X, y, seed: int) -> dict:
    """Residuals ``||c(X) - y|| / ||y||`` of the construction, solve x evaluation in {plain, compensated}."""
    out = {}
    for solve in ("plain", "compensated"):
        net = zhang_construction(X, y, seed=seed, compensated=solve == "compensated")
        for ev in ("plain", "compensated"):
            c = network_outputs(net["z"], net["b"], net["w"], compensated=ev == "compensated")
            out[f"solve_{solve}_eval_{ev}"] = _relres(c, net["y"])
        out[f"max_abs_w_solve_{solve}"] = float(np.max(np.abs(net["w"])))
    out["min_gap"] = float(np.min(np.diff(net["z"])))
    out["n_weights"] = int(2 * X.shape[0] + X.shape[1])
    return out


def _norms(ctx: Context, n: int) -> dict:
    """kernelgen's RKHS norms of the exact interpolants on raw pixels (Gaussian s = 5) and Gabor features
    (C4's chosen features and bandwidth), first ``n`` MNIST images, one-hot targets."""
    X, y, _, _ = mnist(ctx, n, 1)
    Y = cli.one_hot(y, 10)
    pix = kernel_interpolate(X, Y, kernel=Gaussian(BANDWIDTH), options=SolveOptions())
    F = features.gabor_features(X, options=GaborOptions.from_dict(gabor_selection()["chosen"]["features"]))
    bw = GABOR_BANDWIDTH_MULT * median_distance(F, m=2000, seed=ctx.seed)
    gab = kernel_interpolate(F, Y, kernel=Gaussian(bw), options=SolveOptions())
    for name, fit in (("pixels", pix), ("gabor", gab)):
        if fit.relative_residual > EXACT:
            raise ArithmeticError(f"{name} interpolant not exact: residual {fit.relative_residual:.1e}")
    return {"n": n, "rkhs_norm_pixels": float(pix.rkhs_norm), "rkhs_norm_gabor": float(gab.rkhs_norm),
            "ratio": float(gab.rkhs_norm / pix.rkhs_norm), "source_ratio": 390 / 220, "gabor_bandwidth": bw}


def _c17_data(ctx: Context, P, n: int):
    if P["data"] == "synthetic":
        rng = np.random.default_rng(ctx.seed)
        return rng.standard_normal((n, 20))
    return mnist(ctx, n, 1)[0]


def run_c17(ctx: Context) -> Result:
    """Zhang et al.'s construction fits random labels (compensated residual <= tol at ``n_check``); the
    residual at ``n_report`` (no verdict) and the section-5 norms (not reproduced: setting undetermined)."""
    P = ctx.params
    tol = float(P["tolerance"])
    rows = {}
    for n in [P["n_check"]] + ([P["n_report"]] if P.get("n_report") else []):
        ctx.checkpoint()
        X = _c17_data(ctx, P, n)
        y = np.random.default_rng(ctx.seed + 17).integers(0, 10, n).astype(np.float64)  # random labels 0..9
        rows[n] = _construction_residuals(X, y, ctx.seed)
        rows[n]["n"] = n
    chk = rows[P["n_check"]]
    measured = chk["solve_compensated_eval_compensated"]
    ok = measured <= tol
    reason = (f"n = {P['n_check']} random labels ({P['data']}), {chk['n_weights']} weights: relative residual "
              f"{measured:.1e} with compensated solve and evaluation (<= {tol:g} needed); plain float64 "
              f"{chk['solve_plain_eval_plain']:.1e}")
    if P.get("n_report"):
        r = rows[P["n_report"]]
        reason += (f"; n = {P['n_report']} (no verdict): plain {r['solve_plain_eval_plain']:.1e}, compensated "
                   f"{r['solve_compensated_eval_compensated']:.1e}")
    norms = None
    if P.get("norms_n"):
        ctx.checkpoint()
        norms = _norms(ctx, int(P["norms_n"]))
        reason += (f"; §5 norms not reproduced (setting undetermined: the paper states neither the norm nor the "
                   f"kernel): kernelgen's RKHS norms at n = {norms['n']}: pixels {norms['rkhs_norm_pixels']:.0f}, "
                   f"Gabor {norms['rkhs_norm_gabor']:.0f}, ratio {norms['ratio']:.2f} vs 390/220 = 1.77")
    plt = cli.pyplot()
    f, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    keys = ["solve_plain_eval_plain", "solve_plain_eval_compensated", "solve_compensated_eval_plain",
            "solve_compensated_eval_compensated"]
    labels = ["plain / plain", "plain / comp.", "comp. / plain", "comp. / comp."]
    width = 0.8 / len(rows)
    for k, (n, r) in enumerate(rows.items()):
        a1.bar(np.arange(4) + k * width, [max(r[q], 1e-18) for q in keys], width, label=f"n = {n}")
    a1.set_yscale("log")
    a1.axhline(tol, color="k", ls=":", lw=1, label=f"criterion {tol:g} (n = {P['n_check']})")
    a1.set_xticks(np.arange(4) + 0.4 - width / 2, labels, fontsize=8)
    a1.set_xlabel("solve / evaluation arithmetic")
    a1.set_ylabel("relative residual ||c(X) - y|| / ||y||")
    a1.legend(fontsize=8)
    if norms:
        a2.bar(["pixels", "Gabor"], [norms["rkhs_norm_pixels"], norms["rkhs_norm_gabor"]], color=["C0", "C3"])
        a2.set_title(f"kernelgen n = {norms['n']}: ratio {norms['ratio']:.2f} (paper 390/220 = 1.77)", fontsize=9)
        a2.set_ylabel("RKHS norm of the exact interpolant")
    else:
        a2.text(0.5, 0.5, "§5 norms: not run at this budget", ha="center", va="center")
        a2.set_axis_off()
    f.suptitle("C17: Zhang et al. Theorem 1, two-layer ReLU construction (2n + d weights)")
    fig = cli.save_figure(f, ctx.figure_path("C17"), bbox_inches="tight")
    details = {"residuals": list(rows.values()), "tolerance": tol, "norms": norms,
               "norms_verdict": "not reproduced (setting undetermined)" if norms else "not run"}
    return Result(PASS if ok else FAIL, measured, reason, None, "", "relative residual", details, fig)


# ---------------------------------------------------------------------------------------------- C18
def gradient_flow_filter(lam, t):
    """Spectral filter of kernel gradient flow at time ``t``: ``(1 - exp(-lam t)) / lam`` (``t`` at ``lam = 0``).

    ``alpha_t = U diag(filter) U^T Y`` solves ``d alpha / dt = Y - K alpha``, ``alpha_0 = 0`` [YRC07, §2].

    Parameters
    ----------
    lam : array of shape (n,)
        Eigenvalues of K (tiny negative rounding values are allowed).
    t : float, > 0

    Returns
    -------
    ndarray of shape (n,)
    """
    lam = np.asarray(lam, dtype=np.float64)
    x = lam * t
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(np.abs(x) < 1e-8, t * (1 - x / 2), -np.expm1(-x) / lam)
    return g


def mcnemar_interval(wrong_a, wrong_b, level: float = 0.95):
    """Paired difference of error rates ``err_a - err_b`` on the same test points, with its Wald interval.

    ``b`` = points only ``a`` gets wrong, ``c`` = only ``b`` gets wrong, ``m`` points:
    ``d = (b - c) / m``, ``se = sqrt(b + c - (b - c)^2 / m) / m`` (the variance estimate behind McNemar's
    test; Agresti, Categorical Data Analysis, §11.1).

    Returns
    -------
    dict
        ``diff``, ``lo``, ``hi``, ``b``, ``c``, ``m``.
    """
    wa, wb = np.asarray(wrong_a, bool), np.asarray(wrong_b, bool)
    m = wa.size
    b, c = int(np.sum(wa & ~wb)), int(np.sum(~wa & wb))
    zq = float(stats.norm.ppf(0.5 + level / 2))
    d = (b - c) / m
    se = math.sqrt(max(b + c - (b - c) ** 2 / m, 0.0)) / m
    return {"diff": d, "lo": d - zq * se, "hi": d + zq * se, "b": b, "c": c, "m": m}


def _c18_split(ctx: Context, P):
    """Fit / validation / test sets: the validation images follow the fitted ones in the training set."""
    if P["data"] == "synthetic":
        X, y, Xt, yt = synthetic_classes(P["n_fit"] + P["n_val"], P["n_test"], ctx.seed)
    else:
        X, y, Xt, yt = mnist(ctx, P["n_fit"] + P["n_val"], P["n_test"])
    nf = P["n_fit"]
    return X[:nf], y[:nf], X[nf:], y[nf:], Xt, yt


def _select(val_errors):
    """Index of the smallest validation error; ties go to the first (most regularised) grid point."""
    return int(np.argmin(np.asarray(val_errors)))


def _c18_check_disjoint(Xf, Xv, Xt) -> None:
    """A label leak guard: no validation image may also be a fitted or a test image."""
    def keys(A):
        return {np.ascontiguousarray(r).tobytes() for r in np.asarray(A)}

    kv = keys(Xv)
    shared = len(kv & keys(Xt)) + len(kv & keys(Xf))
    if shared:
        raise InvalidInputError(f"{shared} validation images also appear in the fitted or test set (a label "
                                "leak): the selection would be judged on the data it was chosen on.")


def run_c18(ctx: Context) -> Result:
    """Early stopping vs ridge vs random-feature width, each chosen on validation; paired test comparison."""
    P = ctx.params
    Xf, yf, Xv, yv, Xt, yt = _c18_split(ctx, P)
    _c18_check_disjoint(Xf, Xv, Xt)
    n = Xf.shape[0]
    if n > EIGH_MAX_N:
        raise InvalidInputError(f"n_fit = {n} exceeds EIGH_MAX_N = {EIGH_MAX_N} (the gradient-flow path needs one "
                                "eigendecomposition)")
    kern = Gaussian(P["bandwidth"])
    K = kernel_matrix(Xf, kernel=kern)
    fac = EighFactor.factor(K)
    lam, U = fac.eigenvalues, fac.eigenvectors
    Bv = kernel_matrix(Xv, Xf, kernel=kern) @ U
    Bt = kernel_matrix(Xt, Xf, kernel=kern) @ U
    ctx.checkpoint()
    noises = list(P["noise"])
    Ys = [cli.one_hot(corrupt_labels(np.concatenate([yf, yv]), p, 10, ctx.seed + 18), 10) for p in noises]
    ts = np.logspace(*P["time_grid"])
    rs = np.logspace(*P["ridge_grid"])
    # random-feature widths: one exact sweep for all noise levels (targets stacked as columns)
    widths = np.unique(np.round(np.asarray(P["width_ratios"]) * n).astype(int))
    Yf_all = np.concatenate([Y[:n] for Y in Ys], axis=1)
    Yv_all = np.concatenate([Y[n:] for Y in Ys], axis=1)
    sweep = random_features.double_descent_sweep(
        Xf, Yf_all, Xv, Yv_all, widths, kind="fourier", bandwidth=P["bandwidth"], seeds=(ctx.seed,),
        kernel_limit=False, options=random_features.SweepOptions(keep_coef=True), task="regression")
    fm = random_features.draw_random_features(Xf.shape[1], int(widths[-1]), kind="fourier",
                                              bandwidth=P["bandwidth"], seed=ctx.seed)
    Phi_v = {int(N): fm.transform(Xv, n_features=int(N)) for N in widths}
    # the replayed feature map is the sweep's own: its validation loss, recomputed here, must agree
    replay_gap = max(abs(float(np.mean(np.sum((Phi_v[int(N)] @ sweep.coef[0][j] - Yv_all) ** 2, axis=1)))
                         / float(sweep.test_sq[0, j]) - 1) for j, N in enumerate(widths))
    levels, verdicts = [], []
    for k, p in enumerate(noises):
        ctx.checkpoint()
        Y = Ys[k]
        Yfit, yval = Y[:n], Y[n:].argmax(1)
        c = U.T @ Yfit

        def val_err(filt):
            return float(np.mean((Bv @ (filt[:, None] * c)).argmax(1) != yval))

        e_t = [val_err(gradient_flow_filter(lam, t)) for t in ts]
        e_r = [val_err(1.0 / (lam + r)) for r in rs[::-1]]  # ordered from the largest ridge
        rs_desc = rs[::-1]
        it, ir = _select(e_t), _select(e_r)
        t_star, r_star = float(ts[it]), float(rs_desc[ir])
        coefs = [sweep.coef[0][j][:, 10 * k:10 * (k + 1)] for j in range(widths.size)]
        e_w = [float(np.mean((Phi_v[int(N)] @ coefs[j]).argmax(1) != yval)) for j, N in enumerate(widths)]
        iw = _select(e_w)
        N_star = int(widths[iw])
        # test predictions of the three selected models and the interpolant
        a_es = U @ (gradient_flow_filter(lam, t_star)[:, None] * c)
        a_rd = U @ ((1.0 / (lam + r_star))[:, None] * c)
        wrong_es = (Bt @ (gradient_flow_filter(lam, t_star)[:, None] * c)).argmax(1) != yt
        wrong_rd = (Bt @ ((1.0 / (lam + r_star))[:, None] * c)).argmax(1) != yt
        wrong_rf = (fm.transform(Xt, n_features=N_star) @ coefs[iw]).argmax(1) != yt
        # the interpolant (t -> infinity, r = 0) from the same eigendecomposition, its residual checked directly
        c_in = c / lam[:, None]
        interp_res = float(np.linalg.norm(K @ (U @ c_in) - Yfit) / np.linalg.norm(Yfit))
        if not interp_res <= EXACT:
            raise ArithmeticError(f"interpolant at noise {p} not exact: residual {interp_res:.1e}")
        wrong_in = (Bt @ c_in).argmax(1) != yt
        # oracles: the ridge path against an independent Cholesky solve of (K + r I) alpha = Y; the
        # gradient-flow path against its ODE d(K alpha)/dt = K (Y - K alpha) by a central difference
        ridge_fit = kernel_interpolate(K, Yfit, kernel="precomputed", ridge=r_star, solver="cholesky",
                                       options=SolveOptions(dtype="float64"))
        ridge_gap = float(np.linalg.norm(a_rd - ridge_fit.alpha) / np.linalg.norm(ridge_fit.alpha))
        h = 1e-4 * t_star
        fp = K @ (U @ (gradient_flow_filter(lam, t_star + h)[:, None] * c))
        fm_ = K @ (U @ (gradient_flow_filter(lam, t_star - h)[:, None] * c))
        rhs = K @ (Yfit - K @ a_es)
        ode_gap = float(np.linalg.norm((fp - fm_) / (2 * h) - rhs) / np.linalg.norm(rhs))
        cmp_r, cmp_w = mcnemar_interval(wrong_es, wrong_rd), mcnemar_interval(wrong_es, wrong_rf)
        cmp_i = mcnemar_interval(wrong_es, wrong_in)
        levels.append({
            "noise": float(p), "t_star": t_star, "ridge_star": r_star, "width_star": N_star,
            "t_at_grid_edge": it in (0, ts.size - 1), "ridge_at_grid_edge": ir in (0, rs.size - 1),
            "val_error_es": e_t[it], "val_error_ridge": e_r[ir], "val_error_width": e_w[iw],
            "test_error_es": float(wrong_es.mean()), "test_error_ridge": float(wrong_rd.mean()),
            "test_error_width": float(wrong_rf.mean()), "test_error_interpolant": float(wrong_in.mean()),
            "es_minus_ridge": cmp_r, "es_minus_width": cmp_w, "es_minus_interpolant": cmp_i,
            "val_curve_es": e_t, "val_curve_ridge": e_r[::-1], "val_curve_width": e_w,
            "ridge_oracle_gap": ridge_gap, "ode_gap": ode_gap, "interpolant_residual": interp_res,
        })
        verdicts += [cmp_r, cmp_w]
    oracle_ok = replay_gap <= P["oracle_tol"] and all(
        r["ridge_oracle_gap"] <= P["oracle_tol"] and r["ode_gap"] <= P["oracle_tol"] for r in levels)
    better = all(v["hi"] < 0 for v in verdicts)
    worse = any(v["lo"] > 0 for v in verdicts)
    if P["judge"] == "oracles":  # smoke: the machinery only; the comparison is reported
        verdict = PASS if oracle_ok else FAIL
    else:
        verdict = FAIL if (worse or not oracle_ok) else PASS if better else NOT_REPRODUCED
    parts = []
    for r in levels:
        cr, cw = r["es_minus_ridge"], r["es_minus_width"]
        parts.append(f"{100 * r['noise']:.0f}% noise: early stopping {100 * r['test_error_es']:.2f}% (t = "
                     f"{r['t_star']:.3g}), ridge {100 * r['test_error_ridge']:.2f}% (r = {r['ridge_star']:.3g}), "
                     f"width {100 * r['test_error_width']:.2f}% (N = {r['width_star']}), interpolant "
                     f"{100 * r['test_error_interpolant']:.2f}%; ES - ridge {100 * cr['diff']:+.2f} "
                     f"[{100 * cr['lo']:+.2f}, {100 * cr['hi']:+.2f}], ES - width {100 * cw['diff']:+.2f} "
                     f"[{100 * cw['lo']:+.2f}, {100 * cw['hi']:+.2f}] points (McNemar 95%)")
    oracle = (f"path oracles: ridge vs Cholesky gap <= {max(r['ridge_oracle_gap'] for r in levels):.1e}, "
              f"gradient-flow ODE gap <= {max(r['ode_gap'] for r in levels):.1e}, random-feature replay gap "
              f"{replay_gap:.1e} (each <= {P['oracle_tol']:g} needed)")
    rule = ("machinery only at this budget (oracles judged, comparison reported)" if P["judge"] == "oracles" else
            "early stopping significantly better than both in every comparison" if verdict == PASS else
            "significantly worse in a comparison, or a path oracle broken" if verdict == FAIL else
            "no significant difference in some comparison: the tie the theory predicts, so not reproduced")
    reason = f"n = {n} fitted, {Xv.shape[0]} validation, {yt.size} test; " + "; ".join(parts) + f"; {oracle}; {rule}"
    last = levels[-1]["es_minus_ridge"]
    fig = _plot_c18(ctx, levels, ts, rs, widths, n)
    return Result(verdict, last["diff"], reason, (last["lo"], last["hi"]), "McNemar 95% (paired)", "%",
                  {"levels": levels, "time_grid": ts, "ridge_grid": rs, "widths": widths, "n_fit": n,
                   "n_val": int(Xv.shape[0]), "n_test": int(yt.size), "eigh_max_n": EIGH_MAX_N,
                   "feature_replay_gap": replay_gap}, fig)


def _plot_c18(ctx, levels, ts, rs, widths, n):
    plt = cli.pyplot()
    f, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k, r in enumerate(levels):
        col = f"C{k}"
        lab = f"{100 * r['noise']:.0f}% noise"
        axes[0].semilogx(ts, 100 * np.asarray(r["val_curve_es"]), "-", color=col, label=lab)
        axes[0].axvline(r["t_star"], color=col, ls=":", lw=1)
        axes[1].semilogx(rs, 100 * np.asarray(r["val_curve_ridge"]), "-", color=col, label=lab)
        axes[1].axvline(r["ridge_star"], color=col, ls=":", lw=1)
        axes[2].semilogx(widths / n, 100 * np.asarray(r["val_curve_width"]), "o-", ms=3, color=col, label=lab)
    axes[0].set_xlabel("gradient-flow time t")
    axes[1].set_xlabel("ridge r")
    axes[2].set_xlabel("random features N / n")
    for a in axes:
        a.set_ylabel("validation error (%)")
        a.legend(fontsize=8)
    txt = "\n".join(f"{100 * r['noise']:.0f}%: test ES {100 * r['test_error_es']:.2f} | ridge "
                    f"{100 * r['test_error_ridge']:.2f} | width {100 * r['test_error_width']:.2f} | interp "
                    f"{100 * r['test_error_interpolant']:.2f}" for r in levels)
    f.text(0.5, -0.02, "test error (%) of the chosen models:\n" + txt, ha="center", va="top", fontsize=8)
    f.suptitle(f"C18: early stopping vs ridge vs model size (n = {n}, exact paths; dotted: chosen on validation)")
    return cli.save_figure(f, ctx.figure_path("C18"), bbox_inches="tight")


# ---------------------------------------------------------------------------------------------- C20
def _effective_dims(Phis, z: float):
    """``N_eff(Phi^T Phi, z)`` for each feature matrix: from the eigenvalues of ``Phi Phi^T`` (the nonzero
    eigenvalues of ``Phi^T Phi``; its zero eigenvalues add nothing)."""
    out = []
    for Phi in Phis:
        lam = np.linalg.eigvalsh(Phi @ Phi.T)
        out.append(float(evidence.effective_dimension(lam, z)))
    return out


#: relative agreement of the two N_eff routes: cond(H + zI) <= 1 + lambda_max(Phi Phi^T) ~ 1e3 at z = 1 and the
#: subtraction N - z tr(.) loses at most N / N_eff <= 10x, so rounding stays ~1e-12; 1e-9 leaves a margin
IDENTITY_TOL = 1e-9


def _neff_by_trace(Phi, z: float) -> float:
    """``N - z tr((Phi^T Phi + z I)^{-1})`` from a Cholesky factor of the N x N matrix (the oracle route)."""
    H = Phi.T @ Phi
    H[np.diag_indices_from(H)] += z
    L = np.linalg.cholesky(H)
    Linv = sla.solve_triangular(L, np.eye(H.shape[0]), lower=True, check_finite=False)
    return float(H.shape[0] - z * np.sum(Linv * Linv))


def run_c20(ctx: Context) -> Result:
    """Spearman(N_eff(Phi^T Phi, z), exact test MSE) across widths N >= 2n, seed means."""
    P = ctx.params
    if P["data"] == "synthetic":
        X, y, Xt, yt = synthetic_classes(P["n_train"], P["n_test"], ctx.seed)
    else:
        X, y, Xt, yt = mnist(ctx, P["n_train"], P["n_test"])
    n = X.shape[0]
    widths = np.unique(np.round(np.asarray(P["width_ratios"]) * n).astype(int))
    if widths[0] < 2 * n:
        raise InvalidInputError(f"C20 judges widths N >= 2n only; got {widths[0]} < {2 * n}")
    seeds = tuple(range(ctx.seed, ctx.seed + P["n_seeds"]))
    Y, Yt = cli.one_hot(y, 10), cli.one_hot(yt, 10)
    sweep = random_features.double_descent_sweep(X, Y, Xt, Yt, widths, kind="fourier", bandwidth=P["bandwidth"],
                                                 seeds=seeds, kernel_limit=False, task="regression")
    opt = float(np.max(sweep.opt_residual))
    neff = []
    for s in seeds:
        ctx.checkpoint()
        fm = random_features.draw_random_features(X.shape[1], int(widths[-1]), kind="fourier",
                                                  bandwidth=P["bandwidth"], seed=s)
        neff.append(_effective_dims((fm.transform(X, n_features=int(N)) for N in widths), P["z"]))
    neff = np.asarray(neff)
    # oracle: N_eff = N - z tr((H + z I)^{-1}) on the N x N Hessian itself (Cholesky, not the Gram eigenvalues)
    ident = []
    fm = random_features.draw_random_features(X.shape[1], int(widths[-1]), kind="fourier", bandwidth=P["bandwidth"],
                                              seed=seeds[0])
    for j, N in enumerate(widths):
        if N <= P["identity_max_n"]:
            ctx.checkpoint()
            ident.append(abs(_neff_by_trace(fm.transform(X, n_features=int(N)), P["z"]) / neff[0, j] - 1))
    ident_gap = max(ident)
    mse = np.asarray(sweep.test_sq)
    rho = spearman(neff.mean(0), mse.mean(0))
    rho_seeds = [spearman(neff[i], mse[i]) for i in range(len(seeds))]
    machinery = opt <= 1e-8 and ident_gap <= IDENTITY_TOL
    judged = P["min_spearman"] is not None
    # a constant sequence (e.g. N_eff = rank at z -> 0) has no rank correlation: undefined, never a pass
    defined = bool(np.isfinite(rho)) and all(np.isfinite(rho_seeds))
    ok = machinery and defined and (rho >= P["min_spearman"] if judged else True)
    rho_seeds = [float(r) if np.isfinite(r) else None for r in rho_seeds]
    per_seed = ", ".join(f"{r:.2f}" if r is not None else "undefined" for r in rho_seeds)
    reason = ("machinery only at this budget (Spearman reported, not judged): " if not judged else "") + (
              f"Spearman(N_eff, test MSE) over {widths.size} widths N/n = "
              f"{', '.join(f'{w / n:g}' for w in widths)} (seed means, {len(seeds)} seeds, z = {P['z']:g}) = "
              f"{rho:.3f} (>= {P['min_spearman']} needed); per seed {per_seed}; "
              f"N_eff {neff.mean(0)[0]:.1f} -> {neff.mean(0)[-1]:.1f}, test MSE {mse.mean(0)[0]:.4f} -> "
              f"{mse.mean(0)[-1]:.4f}; largest optimality certificate {opt:.1e} (<= 1e-8); N_eff against "
              f"N - z tr((H + zI)^-1) at {len(ident)} widths: largest relative gap {ident_gap:.1e} "
              f"(<= {IDENTITY_TOL:g})")
    plt = cli.pyplot()
    f, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"wspace": 0.55})
    r = widths / n
    for i in range(len(seeds)):
        a1.plot(r, neff[i], "-", color="C0", alpha=0.4, lw=0.8)
        a2.plot(neff[i], mse[i], "o", color=f"C{i}", ms=3, alpha=0.6)
    a1.plot(r, neff.mean(0), "o-", color="C0", label="N_eff (mean)")
    a1.set_xlabel("features N / training points n")
    a1.set_ylabel(f"N_eff(Φ^TΦ, z = {P['z']:g})", color="C0")
    b1 = a1.twinx()
    b1.plot(r, mse.mean(0), "s--", color="C3", label="test MSE (mean)")
    b1.set_ylabel("test MSE (exact Φ⁺Y)", color="C3")
    a2.plot(neff.mean(0), mse.mean(0), "k-", lw=1)
    a2.set_xlabel("N_eff")
    a2.set_ylabel("test MSE")
    a2.set_title(f"Spearman ρ = {rho:.2f} (seed means)")
    f.suptitle(f"C20: effective dimensionality vs test loss, random Fourier features ({P['data']}, n = {n})")
    fig = cli.save_figure(f, ctx.figure_path("C20"), bbox_inches="tight")
    interval = (min(rho_seeds), max(rho_seeds)) if defined else None
    return Result(PASS if ok else FAIL, rho if defined else None, reason, interval, "range over seeds",
                  "Spearman ρ", {"widths": widths, "n_eff": neff, "test_mse": mse, "spearman_per_seed": rho_seeds,
                                 "z": P["z"], "opt_residual": opt, "identity_gap": ident_gap,
                                 "spearman_judged": judged}, fig)


# ---------------------------------------------------------------------------------------------- registry
_GRIDS = {"time_grid": (-3.0, 7.0, 41), "ridge_grid": (-7.0, 3.0, 41), "noise": [0.1, 0.3], "oracle_tol": 1e-5}
_C20_WIDTHS = [2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0]

#: the claims of this module, each with its smoke / quick / full scales
CLAIMS: list[Claim] = [
    Claim(
        "C17", "A two-layer ReLU net with 2n + d weights fits any labels",
        "The construction c(x) = sum_j w_j max(<a, x> - b_j, 0) with interleaved offsets b_j and a lower-triangular "
        "solve fits any labels of n distinct points in d dimensions with 2n + d weights; §5: the minimum-norm "
        "solution's norm is ~220 on raw MNIST and ~390 with wavelet preprocessing.",
        f"{_ZHANG}, §4 Theorem 1 and Lemma 1; §5 (norms)", "exact fit; norms 220 / 390 (ratio 1.77)",
        "relative residual ||c(X) - y|| / ||y|| on random labels at n_check (compensated solve and evaluation)",
        {
            "smoke": Scale({"data": "synthetic", "n_check": 200, "n_report": None, "tolerance": 1e-10,
                            "norms_n": None},
                           "compensated residual <= 1e-10 at n = 200 (plain float64 reported)",
                           "the theorem is exact arithmetic; compensated (~2x float64 precision) arithmetic leaves "
                           "~1e-14, so 1e-10 is the exactness rule with margin; a non-interleaved b breaks it", 2,
                           checked="200 Gaussian points in 20 dimensions (machinery; not MNIST, no norms)",
                           source_tested=False),
            "quick": Scale({"data": "mnist", "n_check": 1000, "n_report": 5000, "tolerance": 1e-10, "norms_n": 2000},
                           "compensated residual <= 1e-10 at n = 1,000 random MNIST labels; residuals at n = 5,000 "
                           "and the §5 norms (n = 2,000) reported without a verdict",
                           "the issue's 1e-10 at n = 1,000; the §5 norms' kernel and norm are not stated (not "
                           "reproduced: setting undetermined)", 10,
                           checked="first 1,000 MNIST images, random labels 0-9; norms at n = 2,000 (not 60k)",
                           source_tested=True),
            "full": Scale({"data": "mnist", "n_check": 1000, "n_report": 60000, "tolerance": 1e-10,
                           "norms_n": 60000},
                          "compensated residual <= 1e-10 at n = 1,000; at n = 60,000 plain and compensated residuals "
                          "reported (no verdict); §5 norms at n = 60,000 reported (not reproduced)",
                          "60k: the issue asks for the residual, not a verdict; the norms' setting is undetermined",
                          2040,
                          checked="MNIST 1,000 (verdict) and 60,000 (reported); norms at 60,000 (reported)",
                          source_tested=True),
        },
        run_c17,
    ),
    Claim(
        "C18", "Early stopping vs ridge vs model size",
        "Early stopping is better regularization than any hand-picked a priori regularization (reading-list claim); "
        "theory: early-stopped gradient descent and ridge reach the same rates.",
        "Yao, Rosasco & Caponnetto, Constr. Approx. 2007; Raskutti, Wainwright & Yu, JMLR 2014", "a tie (theory)",
        "test-error difference early stopping - best ridge at the highest label noise (paired, McNemar 95%)",
        {
            "smoke": Scale({"data": "synthetic", "n_fit": 300, "n_val": 100, "n_test": 500, "bandwidth": 0.5,
                            "width_ratios": [0.1, 0.3, 0.5, 1.0, 2.0], "judge": "oracles", **_GRIDS},
                           "path oracles hold: ridge path vs an independent Cholesky solve, gradient-flow path vs its "
                           "ODE (central difference), replayed random features vs the sweep's loss (each <= 1e-5); "
                           "no validation image among fitted/test images; the comparison is reported",
                           "rounding leaves ~1e-9 (ODE) and ~1e-14 (ridge); a path 10% off or a leak fails", 5,
                           checked="synthetic 10-class mixture, n = 300 (machinery; the comparison not judged)",
                           source_tested=False),
            "quick": Scale({"data": "mnist", "n_fit": 4000, "n_val": 1000, "n_test": None, "bandwidth": 5.0,
                            "width_ratios": [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.1, 1.5, 2.0],
                            "judge": "comparison", **_GRIDS},
                           "pass if early stopping is significantly better (McNemar 95%) than the best ridge and the "
                           "best width at 10% and 30% noise; fail if significantly worse in any comparison or an "
                           "oracle breaks; otherwise not reproduced",
                           "the issue's rule; n = 4,000 + 1,000 validation (not 10,000: the quick share), Gaussian "
                           "s = 5, validation labels as noisy as the fitted ones", 30,
                           checked="MNIST 4,000 fitted + 1,000 validation, full test set, 10% / 30% noise",
                           source_tested=True),
            "full": Scale({"data": "mnist", "n_fit": EIGH_MAX_N, "n_val": 2000, "n_test": None, "bandwidth": 5.0,
                           "width_ratios": [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.1, 1.5, 2.0],
                           "judge": "comparison", **_GRIDS},
                          "as quick",
                          f"n = EIGH_MAX_N = {EIGH_MAX_N} (one eigendecomposition; the issue's 16,384 / 60,000 exceed "
                          "this machine's eigh limit)", 200,
                          checked=f"MNIST {EIGH_MAX_N} fitted + 2,000 validation, full test set, 10% / 30% noise",
                          source_tested=True),
        },
        run_c18,
    ),
    Claim(
        "C20", "Effective dimensionality follows the test loss",
        "N_eff(H, z) = sum lambda_i / (lambda_i + z) of the Hessian tracks generalization across model sizes "
        "beyond the interpolation threshold (shown for networks; here the random-feature least-squares fit).",
        "Maddox, Benton & Wilson, arXiv:2003.02139 (2020), eq. 2, §5", "N_eff tracks test loss",
        "Spearman correlation of N_eff(Phi^T Phi, z = 1) and the exact test MSE over widths N >= 2n (seed means)",
        {
            "smoke": Scale({"data": "synthetic", "n_train": 60, "n_test": 500, "bandwidth": 0.5,
                            "width_ratios": _C20_WIDTHS, "n_seeds": 3, "z": 1.0, "min_spearman": None,
                            "identity_max_n": 10_000},
                           "machinery: N_eff from the Gram eigenvalues equals N - z tr((H + zI)^-1) on the N x N "
                           "Hessian at every width (<= 1e-9); sweep certificate <= 1e-8; Spearman reported",
                           "two independent routes to one number; a z = 0 or a shuffled N_eff fails", 2,
                           checked="synthetic mixture, n = 60 (machinery; Spearman not judged)",
                           source_tested=False),
            "quick": Scale({"data": "mnist", "n_train": 1000, "n_test": 2000, "bandwidth": 5.0,
                            "width_ratios": _C20_WIDTHS, "n_seeds": 3, "z": 1.0, "min_spearman": 0.8,
                            "identity_max_n": 3000},
                           "Spearman >= 0.8; the N_eff identity at N <= 3,000 (<= 1e-9); certificate <= 1e-8",
                           "the issue's threshold; z = 1 as the authors' code; one-hot targets, test MSE summed over "
                           "the 10 outputs", 20,
                           checked="MNIST n = 1,000, 2,000 test images, 3 feature seeds, N/n = 2 ... 8",
                           source_tested=True),
            "full": Scale({"data": "mnist", "n_train": 3000, "n_test": None, "bandwidth": 5.0,
                           "width_ratios": _C20_WIDTHS, "n_seeds": 3, "z": 1.0, "min_spearman": 0.8,
                           "identity_max_n": 6000},
                          "as quick (identity at N <= 6,000)", "the issue's threshold at C6's quick n", 180,
                          checked="MNIST n = 3,000, full test set, 3 feature seeds, N/n = 2 ... 8",
                          source_tested=True),
        },
        run_c20,
    ),
]
