"""Claims C11, C13: interpolation of noisy labels and learning-curve exponents of kernels on MNIST.

Same contract as :mod:`kernelgen.verify._claims_data`: ``run_cN(ctx) -> Result``; the claims are
registered here (``CLAIMS``) and collected by :mod:`kernelgen.verify._registry`.

C11 (Belkin, Ma & Mandal 2018) -- exact interpolation of MNIST with the Gaussian (s = 5) and Laplace
(s = 10) kernels on pixels / 255, one-hot targets, clean and 10%-flipped training labels, seeded random
subsets of 500 ... 15,000 images (and all 60,000 in ``full``); the test errors against the paper's
Tables 3, 6 and 7, and the growth of the interpolant's RKHS norm with n at 0%, 1% and 10% label noise
(their Theorem 1; reported, no published value).

C13 (Spigler, Geiger & Wyart 2020) -- the exponent beta of ``test MSE ~ n^-beta`` of ridgeless
regression of MNIST parity (+-1), Laplace and Gaussian kernels at sigma = 1000 on raw 0-255 pixels,
averaged over independent subsets (:func:`kernelgen.learning_curve.learning_curve`), and its kernel-PCA
prediction ``beta_hat = a - 1`` from the decay ``(u_rho^T y)^2 ~ rho^-a`` of the target's projections on
the eigenvectors of the uncentred Gram matrix (:mod:`kernelgen.spectral`).

Settings the sources leave open, chosen here before any result was seen (each also in its Scale's ``why``):

* C11, label flips: "10% of training labels flipped uniformly at random" is read as: exactly
  ``round(0.1 n)`` training points, drawn without replacement, each given a label drawn uniformly from the
  nine *other* classes (so exactly 10% of the training labels are wrong; :func:`flip_labels`). The 1% level
  uses the same rule. Test labels stay clean (the issue's reading); the error against test labels flipped by
  the same rule is reported beside (``details``), because the paper's tables do not say which test labels
  they scored -- it never enters a verdict.
* C11, subsets: seeded random subsets drawn independently per size and seed, rows
  ``numpy.random.default_rng([seed, n]).choice(60000, n, replace=False)`` (the rule of
  ``learning_curve(subsets="independent")``). The three label sets of one subset (0%, 1%, 10%) are solved
  in ONE exact solve with 30 target columns (one factor, one test-kernel product): ``learning_curve`` reports
  only the metrics of one target set, so C11 calls :func:`kernelgen.kernel_interpolate` directly.
* C11, criterion: for each kernel, noise level with a published value (0%, 10%) and size, the mean test
  error over seeds must lie within ``z sqrt(sd^2 + p (1 - p) / m)`` of the table value ``p`` -- ``sd`` the
  sample standard deviation of one seed's error (the spread of one seeded run such as the paper's), ``p (1 -
  p) / m`` the binomial noise of an ``m``-image test set, ``z`` the two-sided 95% normal quantile with a
  Bonferroni correction over the comparisons of the run (:func:`bonferroni_z`). The 60k errors (``full``):
  their Wilson 95% intervals must contain 1.24% and 1.57%.
* C13, pixel scale and kernels: sigma = 1000 on raw 0-255 pixels (the issue's reading: typical MNIST
  distances are ~2,500 in those units, so sigma = 1000 is an O(1) bandwidth; on pixels / 255 it would make
  both kernels constant). Gaussian ``exp(-||x - z||^2 / (2 sigma^2))``, Laplace ``exp(-||x - z|| /
  sigma)`` (kernelgen's conventions; the paper's Gaussian normalisation is not restated in the issue).
  Parity: +1 for odd digits, -1 for even ones. Test MSE on the 10,000 test images (``full``), mean over
  independent subsets, exponent by OLS on ``(log n, log mean MSE)`` over the fit range
  (:func:`kernelgen.learning_curve.fit_exponent`).
* C13, kernel PCA: the eigenvectors of the uncentred Gram matrix of ``n_eig`` random training images
  (:func:`kernelgen.spectral.kernel_spectrum`; ``n_eig`` <= ``EIGH_MAX_N`` = 8,192 on this machine -- the
  issue assumed 16,384, refused here since a float64 LAPACK crash was found at that size), the target's
  squared projections ``(u_rho^T y)^2`` (:func:`kernelgen.spectral.target_alignment`), and ``a`` of
  ``E (u_rho^T y)^2 ~ c rho^-a`` by maximum likelihood over ranks ``[n_eig / 100, n_eig / 10]``
  (:func:`decay_exponent`: each squared projection read as its mean times a chi-square variable with one
  degree of freedom, all ranks weighted alike; ``full`` pools three independent samples of ``n_eig`` images).
  The rank range is a decade ending a decade below ``n_eig``: eigenvectors of rank near the sample size are
  dominated by sampling noise, and the cumulative tail ``sum_{rho' > rho}`` that "the tail" could also mean
  is biased by its truncation at ``n_eig`` (for a - 1 = 0.36 the missing part beyond 8,192 is 44% of the tail
  at rank 819), so the density of the projections is fitted, not their tail sum.
* Fashion-MNIST (``full`` only): the same settings; C13's binary task is the parity of the class index.
  Reported beside, never judged (no published numbers). C11 on Fashion stops at 15,000 images (the 60k
  Fashion kernel may break the float32 factor, and the diagonal-shift preconditioner the issue names is not
  in kernelgen's solver options).

References
----------
[BMM18] M. Belkin, S. Ma, S. Mandal, "To understand deep learning we need to understand kernel learning",
ICML 2018 (PMLR 80), Tables 3, 6, 7 and Theorem 1.
[SGW20] S. Spigler, M. Geiger, M. Wyart, "Asymptotic learning curves of kernel methods: empirical data
versus teacher-student paradigm", J. Stat. Mech. (2020) 124001 (arXiv:1905.10843), Fig. 1 and the
kernel-PCA section (a = 1.36, beta = 0.37 for MNIST).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import optimize, stats
from scipy.linalg import cho_factor, cho_solve

from .. import cli, datasets, learning_curve, spectral
from ..errors import InvalidInputError
from ..factors import EIGH_MAX_N
from ..kernels import Gaussian, Laplace
from ..numerics import EXACT_TOL
from ..solvers import kernel_interpolate
from ._core import FAIL, PASS, Claim, Context, Result, Scale, wilson

__all__ = [
    "C11_BANDWIDTHS",
    "C11_TABLE",
    "C13_SIGMA",
    "CLAIMS",
    "bonferroni_z",
    "decay_exponent",
    "flip_labels",
    "parity",
    "run_c11",
    "run_c13",
]

log = logging.getLogger("kernelgen.verify")

_BMM = "Belkin, Ma & Mandal, ICML 2018"
_SGW = "Spigler, Geiger & Wyart, J. Stat. Mech. 2020"

#: C11's bandwidths on pixels / 255 (Belkin, Ma & Mandal 2018, §4: Gaussian s = 5, Laplace s = 10)
C11_BANDWIDTHS = {"gaussian": 5.0, "laplace": 10.0}
#: Published MNIST test errors (fractions), interpolated: kernel -> noise -> n -> error
#: (Tables 3, 6, 7 of [BMM18], as the issue quotes them; 60000 = the full training set, clean labels only)
C11_TABLE = {
    "gaussian": {0.0: {500: 0.0935, 1500: 0.0549, 3000: 0.0410, 7500: 0.0264, 15000: 0.0207, 60000: 0.0124},
                 0.1: {500: 0.2098, 1500: 0.1632, 3000: 0.1400, 7500: 0.1301, 15000: 0.1216}},
    "laplace": {0.0: {500: 0.1127, 1500: 0.0643, 3000: 0.0494, 7500: 0.0338, 15000: 0.0239, 60000: 0.0157},
                0.1: {500: 0.2108, 1500: 0.1549, 3000: 0.1385, 7500: 0.1238, 15000: 0.1141}},
}
#: C13's bandwidth on raw 0-255 pixels (module docstring)
C13_SIGMA = 1000.0
#: C13's published exponents: the regression's beta and the kernel-PCA a (beta_hat = a - 1)
C13_BETA, C13_A = 0.37, 1.36
#: C13's tolerances (the issue's): |beta - 0.37| <= se + 0.05 for both kernels; |beta_hat - beta| <= 0.08
C13_BETA_SLACK, C13_PCA_TOL = 0.05, 0.08
#: geometric rank bins of the kernel-PCA fit
N_RANK_BINS = 20


# ---------------------------------------------------------------------------------------------- helpers
def flip_labels(y, fraction: float, n_classes: int, seed) -> np.ndarray:
    """Flip exactly ``round(fraction n)`` labels, each to a uniformly drawn *different* class.

    Parameters
    ----------
    y : array of shape (n,), int
        Labels in ``[0, n_classes)``.
    fraction : float
        In [0, 1].
    n_classes : int
        At least 2.
    seed : int or sequence of int
        ``numpy.random.default_rng(seed)``: the flipped rows (without replacement), then one offset in
        ``[1, n_classes)`` per flipped row, added modulo ``n_classes``.

    Returns
    -------
    ndarray of shape (n,), int64
        A copy; exactly ``round(fraction n)`` entries differ from ``y``.

    Raises
    ------
    InvalidInputError
        ``fraction`` outside [0, 1], fewer than 2 classes, labels outside ``[0, n_classes)``.

    Examples
    --------
    >>> y = np.arange(10) % 3
    >>> z = flip_labels(y, 0.3, 3, seed=0)
    >>> int(np.sum(z != y))
    3
    """
    y = np.asarray(y, dtype=np.int64)
    if not 0.0 <= float(fraction) <= 1.0:
        raise InvalidInputError(f"fraction must lie in [0, 1], got {fraction!r}.")
    if int(n_classes) < 2:
        raise InvalidInputError(f"flipping needs at least 2 classes, got {n_classes!r}.")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise InvalidInputError(f"labels must lie in [0, {n_classes}); got {y.min()} ... {y.max()}.")
    rng = np.random.default_rng(seed)
    idx = rng.choice(y.size, round(float(fraction) * y.size), replace=False)
    out = y.copy()
    out[idx] = (y[idx] + rng.integers(1, n_classes, idx.size)) % n_classes
    return out


def bonferroni_z(k: int, level: float = 0.95) -> float:
    """Two-sided normal quantile for ``k`` comparisons at family-wise coverage ``level`` (Bonferroni).

    ``z = Phi^-1(1 - (1 - level) / (2 k))``: 1.96 for one comparison, 2.87 for 12, 3.02 for 16.
    """
    if int(k) < 1:
        raise InvalidInputError(f"need at least one comparison, got {k!r}.")
    return float(stats.norm.ppf(1.0 - (1.0 - level) / (2.0 * int(k))))


def parity(y) -> np.ndarray:
    """+1.0 for odd labels, -1.0 for even ones (MNIST's odd-vs-even task; float64, shape of ``y``)."""
    return np.where(np.asarray(y) % 2 == 1, 1.0, -1.0)


def decay_exponent(weights, lo: float, hi: float, n_bins: int = N_RANK_BINS):
    """The exponent ``a`` of ``E[w_rho] ~ c rho^-a`` by maximum likelihood, from squared projections.

    Each ``w_rho = (u_rho^T y)^2`` is read as ``mu_rho`` times a chi-square variable with one degree of
    freedom (a Gaussian projection of variance ``mu_rho = c rho^-a``), independent across ranks: the
    log-likelihood ``-1/2 sum_rho (log mu_rho + w_rho / mu_rho)`` (Whittle's likelihood for a spectrum) is
    maximised over ``c`` in closed form (``c = mean(w_rho rho^a)``) and over ``a`` by Brent's method; the
    standard error is the inverse Fisher information of the profile, ``sqrt(2 / sum (log rho - mean log
    rho)^2)``. It weights every rank alike -- unlike an OLS fit to bin means, whose few-element bins at low
    ranks dominate the noise. ``weights`` may hold several samples' projections stacked: pass them with
    ``ranks``-aligned rows, as a 2-D array (one row per sample); the likelihood pools them.

    Parameters
    ----------
    weights : array of shape (M,) or (S, M)
        Squared projections in decreasing-eigenvalue order (any positive scale), one row per sample.
    lo, hi : float
        Rank range (1-based, inclusive), ``1 <= lo < hi <= M``.
    n_bins : int
        Geometric bins for the returned bin means (for figures only; the fit uses every rank).

    Returns
    -------
    a, se, centres, means : float, float, ndarray, ndarray
        The exponent, its standard error, and the bins' geometric mean ranks and mean weights.

    Raises
    ------
    InvalidInputError
        A bad range, fewer than 3 ranks in it, or no positive weight.

    References
    ----------
    P. Whittle, "Curve and periodogram smoothing", JRSS B 19 (1957); the chi-square reading of squared
    projections as for a periodogram.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rho = np.arange(1, 20001.0)
    >>> w = rho ** -1.36 * rng.standard_normal(rho.size) ** 2
    >>> a, se, _, _ = decay_exponent(w, 100, 20000)
    >>> abs(a - 1.36) < 3 * se, round(se, 3)
    (True, 0.011)
    """
    W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    M = W.shape[1]
    if not 1 <= lo < hi <= M:
        raise InvalidInputError(f"rank range must satisfy 1 <= lo < hi <= {M}, got [{lo}, {hi}].")
    rank = np.arange(1, M + 1, dtype=np.float64)
    sel = (rank >= lo) & (rank <= hi)
    if int(np.sum(sel)) < 3:
        raise InvalidInputError(f"ranks [{lo:g}, {hi:g}] hold {int(np.sum(sel))} eigenvectors; the fit needs 3.")
    lr = np.broadcast_to(np.log(rank[sel]), (W.shape[0], int(np.sum(sel)))).ravel()
    w = W[:, sel].ravel()
    if not np.any(w > 0):
        raise InvalidInputError("the target has no power on the eigenvectors of this rank range.")
    lr0 = lr - lr.mean()

    def nll(a):  # profile negative log-likelihood (c maximised out), up to constants
        return float(np.log(np.mean(w * np.exp(a * lr0))))

    res = optimize.minimize_scalar(nll, bounds=(-10.0, 10.0), method="bounded", options={"xatol": 1e-10})
    a = float(res.x)
    se = float(np.sqrt(2.0 / float(lr0 @ lr0)))
    edges = np.geomspace(lo, hi, n_bins + 1)
    centres, means = [], []
    for b0, b1 in zip(edges[:-1], edges[1:]):
        m = (rank >= b0) & ((rank < b1) if b1 < edges[-1] else (rank <= b1))
        if np.any(m):
            centres.append(float(np.exp(np.mean(np.log(rank[m])))))
            means.append(float(np.mean(W[:, m])))
    return a, se, np.asarray(centres), np.asarray(means)


def _no_label(x, pos=None) -> str:  # minor log ticks without labels (they overlap); a FuncFormatter callable
    return ""


def _pool(ctx: Context, name: str):
    """The uint8 train / test arrays of ``"mnist"`` or ``"fashion_mnist"``, cached for the run."""
    def make():
        if name == "mnist":
            return datasets.load_mnist(data_home=ctx.data_home)
        return datasets.load_dataset(name, data_home=ctx.data_home)

    # the key's kind "mnist" keeps it for the whole run (the runner frees other kinds after their claims)
    return ctx.cached(("mnist", "uint8", name), make)


def _exact_ok(res: float) -> bool:
    return float(res) <= EXACT_TOL


# ---------------------------------------------------------------------------------------------- C11
def _textbook_kernel(A, B, kname: str, s: float):
    """Gaussian / Laplace matrix by the textbook float64 formulas (independent of :mod:`kernelgen.kernels`)."""
    d2 = np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T, 0.0)
    return np.exp(-d2 / (2.0 * s * s)) if kname == "gaussian" else np.exp(-np.sqrt(d2) / s)


#: the independent dense check of C11 (as C3's): kernelgen's alpha solves the textbook system to this
#: relative residual, and its test errors are within this many images of a dense LAPACK solve's
DENSE_RESIDUAL, DENSE_TOLERANCE_IMAGES = 1e-6, 2


def _dense_check(A, Y, alpha, At, yt, kname, s, k, errors):
    """Textbook kernel + LAPACK Cholesky on the same subset; ``errors``: kernelgen's per label set."""
    K = _textbook_kernel(A, A, kname, s)
    resid = float(np.linalg.norm(K @ alpha - Y) / np.linalg.norm(Y))
    a_ref = cho_solve(cho_factor(K), Y)
    F = _textbook_kernel(At, A, kname, s) @ a_ref
    ref = [int(np.sum(F[:, j * k:(j + 1) * k].argmax(1) != yt)) for j in range(Y.shape[1] // k)]
    ok = resid <= DENSE_RESIDUAL and all(abs(e - r) <= DENSE_TOLERANCE_IMAGES for e, r in zip(errors, ref))
    return {"kernel": kname, "n": int(A.shape[0]), "textbook_residual": resid, "test_errors": errors,
            "dense_test_errors": ref, "pass": bool(ok)}


def _c11_curve(ctx: Context, dataset: str, kname: str, sizes, seeds, noises, n_test, bandwidth: float,
               dense_at=None):
    """Every (size, seed) point of one kernel: ONE exact solve for all noise levels (3 x 10 columns).

    ``dense_at = (n, seed)``: that point is also solved by the independent dense check (returned second).
    """
    Xtr, ytr, Xte, yte = _pool(ctx, dataset)
    m = yte.size if n_test is None else int(n_test)
    Xt, yt = Xte[:m] / 255.0, yte[:m].astype(np.int64)
    kernel = Gaussian(bandwidth) if kname == "gaussian" else Laplace(bandwidth)
    N, k = Xtr.shape[0], 10
    rows_out, dense = [], None
    for n in sizes:
        for s in seeds:
            ctx.checkpoint()
            rows = np.random.default_rng([s, n]).choice(N, n, replace=False) if n < N else np.arange(N)
            y = ytr[rows].astype(np.int64)
            labels = [y if p == 0 else flip_labels(y, p, k, [s, n, round(1000 * p)]) for p in noises]
            Y = np.hstack([cli.one_hot(lab, k) for lab in labels])
            A = Xtr[rows] / 255.0
            fit = kernel_interpolate(A, Y, kernel=kernel)
            F = np.asarray(fit.predict(Xt))
            aka = np.asarray(fit.alpha_K_alpha)
            fitted = np.asarray(fit.fitted)
            yt_noisy = flip_labels(yt, 0.1, k, [s, n, 7])  # the other reading of the tables (reported only)
            for j, (p, lab) in enumerate(zip(noises, labels)):
                cols = slice(j * k, (j + 1) * k)
                pred = F[:, cols].argmax(1)
                rows_out.append({
                    "dataset": dataset, "kernel": kname, "n": int(n), "seed": int(s), "noise": float(p),
                    "test_errors": int(np.sum(pred != yt)), "n_test": int(m),
                    "test_error": float(np.mean(pred != yt)),
                    "test_error_vs_flipped_test_labels": float(np.mean(pred != yt_noisy)),
                    "train_error": float(np.mean(fitted[:, cols].argmax(1) != lab)),
                    "rkhs_norm": float(np.sqrt(max(0.0, float(np.sum(aka[cols]))))),
                    "relative_residual": float(fit.relative_residual)})
            if dense_at is not None and (n, s) == tuple(dense_at):
                ctx.checkpoint()
                dense = _dense_check(A, Y, np.asarray(fit.alpha), Xt, yt, kname, bandwidth, k,
                                     [r["test_errors"] for r in rows_out[-len(noises):]])
            log.info("C11 %s %s n=%d seed=%d: errors %s, residual %.1e", dataset, kname, n, s,
                     [f"{100 * r['test_error']:.2f}%" for r in rows_out[-len(noises):]], fit.relative_residual)
    return rows_out, dense


def _c11_summary(rows, kname, noise, sizes):
    """(sizes, mean, sd over seeds, mean RKHS norm) of one kernel and noise level."""
    out = []
    for n in sizes:
        sel = [r for r in rows if r["kernel"] == kname and r["noise"] == noise and r["n"] == n]
        if not sel:
            continue
        e = np.array([r["test_error"] for r in sel])
        out.append((n, float(e.mean()), float(e.std(ddof=1)) if e.size > 1 else 0.0,
                    float(np.mean([r["rkhs_norm"] for r in sel])), int(sel[0]["n_test"])))
    return out


def run_c11(ctx: Context) -> Result:
    """Exact interpolation with clean and flipped labels against Belkin, Ma & Mandal's tables."""
    P = ctx.params
    sizes, seeds, noises = list(P["sizes"]), list(P["seeds"]), list(P["noises"])
    judged = [float(v) for v in P["judged_noises"]]
    rows, dense = [], []
    for kname in ("gaussian", "laplace"):
        r, d = _c11_curve(ctx, "mnist", kname, sizes, seeds, noises, P["n_test"], C11_BANDWIDTHS[kname],
                          dense_at=(sizes[0], seeds[0]))
        rows += r
        dense.append(d)
    comps = [(kn, p, n) for kn in ("gaussian", "laplace") for p in judged for n in sizes if n in C11_TABLE[kn][p]]
    z = bonferroni_z(len(comps)) if comps else None
    table = []
    for kn, p, n in comps:
        (_, mean, sd, _, m), = _c11_summary(rows, kn, p, [n])
        ref = C11_TABLE[kn][p][n]
        half = z * math.sqrt(sd * sd + ref * (1 - ref) / m)
        other = float(np.mean([r["test_error_vs_flipped_test_labels"] for r in rows
                               if r["kernel"] == kn and r["noise"] == p and r["n"] == n]))
        table.append({"kernel": kn, "noise": p, "n": n, "published": ref, "measured_mean": mean, "seed_sd": sd,
                      "half_width": half, "inside": bool(abs(mean - ref) <= half),
                      "measured_mean_on_flipped_test_labels": other})
    # smoke: kernelgen's own earlier exact values (not independent; the dense check is), 2 images per point
    recorded = []
    for kn, per_seed in (P.get("reference_errors") or {}).items():
        for s, want in per_seed.items():
            got = [r["test_errors"] for r in rows if r["kernel"] == kn and r["seed"] == int(s) and r["noise"] == 0
                   and r["n"] == sizes[0]]
            recorded.append({"kernel": kn, "seed": int(s), "n": sizes[0], "reference_errors": int(want),
                             "test_errors": got[0], "pass": abs(got[0] - int(want)) <= DENSE_TOLERANCE_IMAGES})
    full = []
    for kname in ("gaussian", "laplace") if P.get("full_60k") else ():
        ctx.checkpoint()
        r = _c11_curve(ctx, "mnist", kname, [60000], [0], [0.0], None, C11_BANDWIDTHS[kname])[0][0]
        lo, hi = wilson(r["test_errors"], r["n_test"])
        ref = C11_TABLE[kname][0.0][60000]
        full.append({**r, "published": ref, "wilson": [lo, hi], "inside": bool(lo <= ref <= hi)})
    fashion = []
    if P.get("fashion"):
        for kname in ("gaussian", "laplace"):
            ctx.checkpoint()
            try:
                fashion += _c11_curve(ctx, "fashion_mnist", kname, sizes, P.get("fashion_seeds", seeds), noises,
                                      P["n_test"], C11_BANDWIDTHS[kname])[0]
            except Exception as exc:  # noqa: BLE001 -- Fashion is reported beside, never judged
                log.warning("C11 Fashion-MNIST %s: %s", kname, exc)
                fashion.append({"kernel": kname, "error": f"{type(exc).__name__}: {exc}"[:300]})
    exact = all(_exact_ok(r["relative_residual"]) and r["train_error"] == 0 for r in rows + full)
    dense_ok = all(d["pass"] for d in dense)
    # Theorem 1 in numbers (reported): log-log slope of the mean RKHS norm against n per kernel and noise
    growth = {}
    for kn in ("gaussian", "laplace"):
        for p in noises:
            s = _c11_summary(rows, kn, p, sizes)
            if len(s) >= 2:
                ln, lr = np.log([t[0] for t in s]), np.log([t[3] for t in s])
                growth[f"{kn} {100 * p:g}%"] = float(np.polyfit(ln, lr, 1)[0])
    inside = sum(t["inside"] for t in table) + sum(t["inside"] for t in full)
    ok = exact and dense_ok and inside == len(table) + len(full) and all(t["pass"] for t in recorded)
    parts = []
    if table:
        worst = max(table, key=lambda t: abs(t["measured_mean"] - t["published"]) / t["half_width"])
        parts.append(f"{sum(t['inside'] for t in table)}/{len(table)} published values inside their intervals "
                     f"(z = {z:.2f}, Bonferroni over {len(comps)}; {len(seeds)} seeds, {rows[0]['n_test']} test "
                     f"images); worst: {worst['kernel']} {100 * worst['noise']:g}% noise n = {worst['n']}: measured "
                     f"{100 * worst['measured_mean']:.2f}% vs published {100 * worst['published']:.2f}% "
                     f"(+- {100 * worst['half_width']:.2f})")
    noisy = [t for t in table if t["noise"] > 0]
    if noisy:  # the other reading of the tables, reported beside the verdict (module docstring), never judged
        parts.append("not judged: the same predictions scored on test labels flipped by the training rule give "
                     + ", ".join(f"{t['kernel'][0].upper()} n = {t['n']}: "
                                 f"{100 * t['measured_mean_on_flipped_test_labels']:.2f}% vs "
                                 f"{100 * t['published']:.2f}%" for t in noisy))
    if recorded:
        parts.append("clean test errors vs recorded exact values " + ", ".join(
            f"{t['kernel']} seed {t['seed']}: {t['test_errors']} vs {t['reference_errors']}" for t in recorded)
            + f" (within {DENSE_TOLERANCE_IMAGES} images: {all(t['pass'] for t in recorded)})")
    if full:
        parts.append("60k: " + ", ".join(
            f"{t['kernel']} {100 * t['test_error']:.2f}% (Wilson [{100 * t['wilson'][0]:.2f}, "
            f"{100 * t['wilson'][1]:.2f}]) vs {100 * t['published']:.2f}%" for t in full))
    parts.append(f"independent dense float64 check at n = {sizes[0]} (both kernels, 3 label sets): "
                 + ", ".join(f"{d['kernel']} residual {d['textbook_residual']:.1e}, errors {d['test_errors']} vs "
                             f"{d['dense_test_errors']}" for d in dense) + f": {'ok' if dense_ok else 'FAILED'}")
    parts.append(f"every solve exact (residual <= 1e-10, train error 0): {exact}")
    big = max(sizes)
    g = _c11_summary(rows, "gaussian", 0.0, [big])[0]
    fig = _plot_c11(ctx, rows, full, fashion, sizes, noises)
    details = {"comparisons": table, "z": z, "recorded_references": recorded, "dense_checks": dense,
               "full_60k": full, "rkhs_norm_loglog_slope": growth, "points": rows, "fashion_mnist": fashion,
               "label_flip_rule": "exactly round(p n) labels, each to a uniformly drawn different class; test labels "
               "clean (the flipped-test reading reported per point)"}
    return Result(PASS if ok else FAIL, g[1], "; ".join(parts), (g[1] - g[2], g[1] + g[2]),
                  f"mean +- sd over {len(seeds)} seeds (Gaussian, clean labels, n = {big})", "%", details, fig)


def _plot_c11(ctx, rows, full, fashion, sizes, noises):
    plt = cli.pyplot()
    f, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5.2))
    styles = {"gaussian": ("C0", "o"), "laplace": ("C3", "s")}
    for kn, (col, mk) in styles.items():
        for p, ls in zip(noises, ("-", ":", "--")):
            s = _c11_summary(rows, kn, p, sizes)
            if not s:
                continue
            n, mean, sd = [t[0] for t in s], [100 * t[1] for t in s], [100 * t[2] for t in s]
            if p in (0.0, 0.1):
                a1.errorbar(n, mean, yerr=sd, color=col, ls=ls, marker=mk, ms=4, capsize=3,
                            label=f"{kn} {100 * p:g}% (mean +- sd)")
            a2.plot(n, [t[3] for t in s], color=col, ls=ls, marker=mk, ms=4, label=f"{kn} {100 * p:g}% noise")
            if p == 0.1:  # the other reading of the tables: the same predictions scored on flipped test labels
                other = [100 * np.mean([r["test_error_vs_flipped_test_labels"] for r in rows if r["kernel"] == kn
                                        and r["noise"] == p and r["n"] == k]) for k in n]
                a1.plot(n, other, color=col, ls=(0, (1, 3)), marker=mk, mfc="none", ms=4, alpha=0.6,
                        label=f"{kn} 10%, scored on flipped test labels (not judged)")
        for p, mk2 in ((0.0, "x"), (0.1, "+")):
            pub = C11_TABLE[kn][p]
            ns = sorted(k for k in pub if k <= max(sizes) or any(t["kernel"] == kn for t in full))
            a1.plot(ns, [100 * pub[k] for k in ns], mk2, color=col, ms=9, label=f"{kn} {100 * p:g}% published")
        for t in (t for t in full if t["kernel"] == kn):
            a1.errorbar([60000], [100 * t["test_error"]], yerr=[[100 * (t["test_error"] - t["wilson"][0])],
                                                                [100 * (t["wilson"][1] - t["test_error"])]],
                        color=col, marker=mk, capsize=3)
    fash = [r for r in fashion if "test_error" in r]
    for kn, (col, mk) in styles.items():
        for p in (0.0, 0.1):
            s = _c11_summary(fash, kn, p, sizes)
            if s:
                a1.plot([t[0] for t in s], [100 * t[1] for t in s], color=col, ls="-.", marker=mk, mfc="none",
                        label=f"Fashion {kn} {100 * p:g}% (no verdict)")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("training images n")
    a1.set_ylabel("test error (%), clean test labels")
    a1.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False, handlelength=4)
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("training images n")
    a2.set_ylabel("RKHS norm of the interpolant (one-hot, 10 columns)")
    a2.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False, handlelength=4)
    ticks = sorted(set(sizes) | ({60000} if full else set()))
    for ax in (a1, a2):
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.xaxis.set_minor_formatter(_no_label)
    f.suptitle("C11: exact interpolation of MNIST with clean and flipped labels (Belkin, Ma & Mandal 2018)")
    f.tight_layout()
    return cli.save_figure(f, ctx.figure_path("C11"), bbox_inches="tight")


# ---------------------------------------------------------------------------------------------- C13
def _c13_task(ctx: Context, dataset: str, n_test):
    Xtr, ytr, Xte, yte = _pool(ctx, dataset)
    m = yte.size if n_test is None else int(n_test)
    # raw 0-255 pixels as float64 (module docstring: sigma = 1000 is read in these units)
    return Xtr, parity(ytr), Xte[:m].astype(np.float64), parity(yte[:m])


def _c13_kernel(kname: str, sigma: float):
    return Gaussian(sigma) if kname == "gaussian" else Laplace(sigma)


def _c13_one(ctx: Context, dataset: str, kname: str, P) -> dict:
    """One kernel on one dataset: the independent-subset curve, its exponent, and the kernel-PCA a."""
    X, y, Xt, yt = _c13_task(ctx, dataset, P["n_test"])
    kernel = _c13_kernel(kname, float(P.get("sigma", C13_SIGMA)))
    ctx.checkpoint()
    lc = learning_curve.learning_curve(X.astype(np.float64), y, Xt, yt, kernel=kernel, sizes=list(P["sizes"]),
                                       subsets="independent", seeds=list(P["seeds"]), task="regression")
    sizes, mean, sd = lc.mean_over_seeds("test_mse")
    lo, hi = P["fit_range"]
    slope, se = learning_curve.fit_exponent(sizes, mean, lo, hi)
    exact = bool(np.all(lc.column("relative_residual") <= EXACT_TOL))
    n_eig = int(P["n_eig"])
    W, eig_seconds, ranks = [], 0.0, []
    for es in P.get("eig_seeds", [0]):  # independent samples of n_eig training images, pooled in the likelihood
        ctx.checkpoint()
        spec = spectral.kernel_spectrum(X.astype(np.float64), kernel, n_sample=n_eig, seed=int(es))
        W.append(spectral.target_alignment(spec.eigenvectors, y[spec.rows]).weights)
        eig_seconds += spec.seconds
        ranks.append(int(spec.rank))
        del spec
    r_lo, r_hi = n_eig / 100.0, n_eig / 10.0
    a, a_se, centres, means = decay_exponent(np.asarray(W), max(1.0, r_lo), r_hi)
    out = {"dataset": dataset, "kernel": kname, "beta": -slope, "beta_se": se, "fit_range": [lo, hi],
           "sizes": sizes.tolist(), "mse_mean": mean.tolist(), "mse_sd": sd.tolist(), "exact": exact,
           "max_relative_residual": float(np.max(lc.column("relative_residual"))),
           "curve_seconds": lc.total_seconds, "n_eig": n_eig, "rank_range": [r_lo, r_hi], "a": a, "a_se": a_se,
           "beta_hat": a - 1.0, "bin_centres": centres.tolist(), "bin_means": means.tolist(),
           "eig_seconds": eig_seconds, "gram_rank": ranks, "eig_samples": len(W)}
    log.info("C13 %s %s: beta %.3f +- %.3f on [%g, %g]; a %.3f (beta_hat %.3f) on ranks [%g, %g]", dataset, kname,
             out["beta"], se, lo, hi, a, a - 1, r_lo, r_hi)
    if P.get("nested_to"):
        ctx.checkpoint()
        nsz = list(P["nested_sizes"])
        nl = learning_curve.learning_curve(X.astype(np.float64), y, Xt, yt, kernel=kernel, sizes=nsz,
                                           subsets="nested", seeds=[0], task="regression")
        mse = nl.column("test_mse")
        local = [float(-np.log(mse[i + 1] / mse[i]) / np.log(nsz[i + 1] / nsz[i])) for i in range(len(nsz) - 1)]
        out["nested"] = {"sizes": nsz, "test_mse": mse.tolist(), "local_beta": local,
                         "seconds": nl.total_seconds, "n_factors": nl.n_factors,
                         "max_relative_residual": float(np.max(nl.column("relative_residual")))}
    return out


def run_c13(ctx: Context) -> Result:
    """Learning-curve exponents of ridgeless regression on MNIST parity, and their kernel-PCA prediction."""
    P = ctx.params
    if int(P["n_eig"]) > EIGH_MAX_N:
        raise InvalidInputError(f"n_eig = {P['n_eig']} exceeds EIGH_MAX_N = {EIGH_MAX_N}")
    res = {kn: _c13_one(ctx, "mnist", kn, P) for kn in ("laplace", "gaussian")}
    fashion = {}
    if P.get("fashion"):
        for kn in ("laplace", "gaussian"):
            try:
                fashion[kn] = _c13_one(ctx, "fashion_mnist", kn, {**P, "seeds": P.get("fashion_seeds", P["seeds"]),
                                                                  "nested_to": None, "eig_seeds": [0]})
            except Exception as exc:  # noqa: BLE001 -- Fashion is reported beside, never judged
                log.warning("C13 Fashion-MNIST %s: %s", kn, exc)
                fashion[kn] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    exact = all(r["exact"] for r in res.values())
    mode = P["criterion"]
    if mode == "source":
        checks = {kn: {"beta_within": abs(r["beta"] - C13_BETA) <= r["beta_se"] + C13_BETA_SLACK,
                       "pca_within": abs(r["beta_hat"] - r["beta"]) <= C13_PCA_TOL} for kn, r in res.items()}
        ok = exact and all(all(c.values()) for c in checks.values())
        reason = "; ".join(
            f"{kn}: beta {r['beta']:.3f} +- {r['beta_se']:.3f} on [{r['fit_range'][0]:g}, {r['fit_range'][1]:g}] "
            f"vs published {C13_BETA} (|diff| <= se + {C13_BETA_SLACK} needed: {checks[kn]['beta_within']}), "
            f"beta_hat = a - 1 = {r['beta_hat']:.3f} (a {r['a']:.3f} vs published {C13_A}; |beta_hat - beta| <= "
            f"{C13_PCA_TOL} needed: {checks[kn]['pca_within']})" for kn, r in res.items())
    else:  # reduced scale: the exponent's value is not judged (module docstring, Scale.why)
        bmin, amin = float(P["min_beta"]), float(P["min_a"])
        checks = {kn: {"beta_positive": r["beta"] > bmin, "a_decays": r["a"] > amin} for kn, r in res.items()}
        ok = exact and all(all(c.values()) for c in checks.values())
        reason = "; ".join(
            f"{kn}: beta {r['beta']:.3f} +- {r['beta_se']:.3f} on [{r['fit_range'][0]:g}, {r['fit_range'][1]:g}] "
            f"(> {bmin:g} needed: {checks[kn]['beta_positive']}), a {r['a']:.3f} +- {r['a_se']:.3f} (ranks "
            f"[{r['rank_range'][0]:g}, {r['rank_range'][1]:g}] of n_eig = {r['n_eig']}; > {amin:g} needed: "
            f"{checks[kn]['a_decays']}; beta_hat = {r['beta_hat']:.3f})" for kn, r in res.items())
        reason += (f" (published beta {C13_BETA} on [3k, 30k] and a - 1 = {C13_A - 1:.2f} are not tested at this "
                   "scale)")
    reason += f"; every solve exact (residual <= 1e-10): {exact}"
    measured = float(np.mean([r["beta"] for r in res.values()]))
    fig = _plot_c13(ctx, res, fashion)
    return Result(PASS if ok else FAIL, measured, reason, (min(r["beta"] for r in res.values()),
                                              max(r["beta"] for r in res.values())),
                  "range over the two kernels", "", {"kernels": res, "checks": checks, "fashion_mnist": fashion},
                  fig)


def _plot_c13(ctx, res, fashion):
    plt = cli.pyplot()
    f, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    cols = {"laplace": "C3", "gaussian": "C0"}
    for kn, r in res.items():
        n, mse = np.asarray(r["sizes"]), np.asarray(r["mse_mean"])
        a1.errorbar(n, mse, yerr=r["mse_sd"], fmt="o-", color=cols[kn], ms=4, capsize=2,
                    label=f"{kn}: beta {r['beta']:.3f} +- {r['beta_se']:.3f}")
        lo, hi = r["fit_range"]
        m = (n >= lo) & (n <= hi)
        if np.any(m):
            c = np.exp(np.mean(np.log(mse[m]) + r["beta"] * np.log(n[m])))
            xs = np.geomspace(lo, hi, 20)
            a1.plot(xs, c * xs ** -r["beta"], "--", color=cols[kn], lw=1)
            a1.plot(xs, c * xs[0] ** (C13_BETA - r["beta"]) * xs ** -C13_BETA, ":", color="k", lw=1)
        if "nested" in r:
            a1.plot(r["nested"]["sizes"], r["nested"]["test_mse"], "^-", color=cols[kn], mfc="none", ms=4,
                    label=f"{kn}: nested curve to {r['nested']['sizes'][-1]}")
        a2.plot(r["bin_centres"], r["bin_means"], "o-", color=cols[kn], ms=4,
                label=f"{kn}: a = {r['a']:.3f} (beta_hat {r['beta_hat']:.3f}), n_eig {r['n_eig']}")
    for kn, r in fashion.items():
        if "sizes" in r:
            a1.plot(r["sizes"], r["mse_mean"], "s-.", color=cols[kn], mfc="none", ms=4,
                    label=f"Fashion {kn}: beta {r['beta']:.3f} (no verdict)")
    a1.plot([], [], ":", color="k", label=f"published slope -{C13_BETA}")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("training points n (independent subsets)")
    a1.set_ylabel("test MSE, MNIST parity (+-1)")
    a1.legend(fontsize=7)
    for ax in (a1, a2):
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_minor_formatter(_no_label)
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("eigenvector rank rho (uncentred Gram matrix)")
    a2.set_ylabel("(u_rho^T y)^2 / n_eig, mean in geometric bins")
    a2.legend(fontsize=7)
    f.suptitle(f"C13: learning-curve exponents, sigma = {C13_SIGMA:g} on raw pixels (Spigler, Geiger & Wyart 2020)")
    f.tight_layout()
    return cli.save_figure(f, ctx.figure_path("C13"), bbox_inches="tight")


# ---------------------------------------------------------------------------------------------- registry
_C11_CRIT = ("for each kernel, noise level with a published value and size: the mean test error over seeds within "
             "z sqrt(sd^2 + p(1-p)/m) of the table value p (sd over seeds, m test images, z two-sided 95% Bonferroni "
             "over the comparisons); every solve exact (residual <= 1e-10, train error 0)")
_C13_QUICK_CRIT = ("both kernels: beta (OLS on the mean test MSE over independent subsets) > 0.1, and the target's "
                   "squared projections decay with rank, a > 0.5 (a target unrelated to the inputs gives a = 0); "
                   "every solve exact; beta and beta_hat = a - 1 reported beside 0.37 / 0.36, not judged")

CLAIMS: list[Claim] = [
    Claim(
        "C11", "Interpolating noisy labels generalizes",
        "Kernel machines that interpolate MNIST exactly generalize well, also with 10% of the training labels "
        "flipped (test error close to the noise level); the interpolant's RKHS norm grows with n much faster with "
        "label noise than without.",
        f"{_BMM}, Tables 3, 6, 7; Theorem 1",
        "Gaussian 9.35/5.49/4.10/2.64/2.07% (clean), 20.98/16.32/14.00/13.01/12.16% (10% noise) at n = 500/1500/"
        "3000/7500/15000; 1.24% (Gaussian) and 1.57% (Laplace) at 60k",
        "mean |measured - published| test error over the judged comparisons (pixels / 255, one-hot, exact solve)",
        {
            "smoke": Scale({"sizes": [500], "seeds": [0, 1], "noises": [0.0, 0.01, 0.1], "judged_noises": [],
                            "n_test": 2000,
                            "reference_errors": {"gaussian": {0: 283, 1: 263}, "laplace": {0: 308, 1: 289}}},
                           "every solve exact (residual <= 1e-10, train error 0 on its own labels); an independent "
                           "dense float64 solve (textbook kernels, LAPACK) at n = 500 gives kernelgen's test errors "
                           "within 2 images for all 3 label sets; the clean test errors within 2 images of the "
                           "recorded exact values (first 2,000 test images)",
                           "machinery: an exact solve is unique, so only argmax ties near round-off may move; the "
                           "recorded values are kernelgen's own (the dense solve is the independent check); no "
                           "table value is judged at 2 seeds and 2,000 test images", 6,
                           checked=("MNIST n = 500, 2 seeds, 2,000 test images vs independent dense solve + recorded "
                                    "values (machinery; not the tables)"),
                           source_tested=False),
            "quick": Scale({"sizes": [500, 1500, 3000], "seeds": [0, 1, 2], "noises": [0.0, 0.01, 0.1],
                            "judged_noises": [0.0, 0.1], "n_test": None},
                           _C11_CRIT,
                           "the paper's own sizes, test set and labels rule at n <= 3,000 (3 seeds instead of 5); "
                           "Bonferroni over 12 comparisons: z = 2.87; subsets and flips chosen before any run "
                           "(module docstring)", 15,
                           checked="MNIST n = 500/1500/3000, 3 seeds, 10,000 test images vs Tables 3, 6, 7",
                           source_tested=True),
            "full": Scale({"sizes": [500, 1500, 3000, 7500, 15000], "seeds": [0, 1, 2, 3, 4],
                           "noises": [0.0, 0.01, 0.1], "judged_noises": [0.0, 0.1], "n_test": None, "full_60k": True,
                           "fashion": True, "fashion_seeds": [0, 1]},
                          _C11_CRIT + "; the 60k errors' Wilson 95% intervals contain 1.24% / 1.57%",
                          "the paper's scale: 5 seeds per size up to 15k, one run at 60k; Fashion-MNIST to 15k "
                          "reported beside (no verdict)", 1260,
                          checked="MNIST n = 500...15,000 (5 seeds) and 60,000 vs Tables 3, 6, 7; Fashion reported",
                          source_tested=True),
        },
        run_c11,
    ),
    Claim(
        "C13", "Learning-curve exponent of kernels on MNIST",
        "The test MSE of ridgeless kernel regression on MNIST parity decays as n^-beta with beta = 0.37 for both "
        "the Laplace and the Gaussian kernel (sigma = 1000); the kernel-PCA tail of the target predicts it, "
        "beta_hat = a - 1 = 0.36.",
        f"{_SGW}, Fig. 1 and the kernel-PCA section",
        "beta = 0.37; a = 1.36 (beta_hat = 0.36)",
        "mean over the two kernels of beta, the fitted exponent of the mean test MSE",
        {
            "smoke": Scale({"sizes": [100, 200, 400, 800], "seeds": [0, 1], "n_test": 1000, "fit_range": [100, 800],
                            "n_eig": 2000, "criterion": "reduced", "min_beta": 0.1, "min_a": 0.5},
                           _C13_QUICK_CRIT,
                           "machinery: permuted targets give beta ~ 0 and a ~ 0, a shuffled eigenbasis a ~ 0; the "
                           "thresholds judge a decaying curve and spectrum, not their values (se of a ~ 0.17 at "
                           "n_eig = 2,000)", 10,
                           checked="MNIST parity n = 100...800, 2 seeds, n_eig = 2,000 (machinery; not the exponent)",
                           source_tested=False),
            "quick": Scale({"sizes": [500, 750, 1000, 1500, 2000, 3000, 4000], "seeds": [0, 1], "n_test": 5000,
                            "fit_range": [500, 4000], "n_eig": 4096, "criterion": "reduced", "min_beta": 0.1,
                            "min_a": 0.5},
                           _C13_QUICK_CRIT,
                           "the source fits [3k, 30k], out of the quick budget: the quick range [500, 4000] and "
                           "n_eig = 4,096 (ranks [41, 410]) check the computation (a decaying curve, a decaying "
                           "target spectrum) and report the exponents beside 0.37 / 0.36", 30,
                           checked="MNIST parity n = 500...4,000, 2 seeds, 5,000 test images, n_eig = 4,096",
                           source_tested=False),
            "full": Scale({"sizes": [1000, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000], "seeds": [0, 1, 2],
                           "n_test": None, "fit_range": [3000, 30000], "n_eig": EIGH_MAX_N, "eig_seeds": [0, 1, 2],
                           "criterion": "source",
                           "nested_to": 60000,
                           "nested_sizes": [3000, 7500, 15000, 30000, 45000, 60000], "fashion": True,
                           "fashion_seeds": [0]},
                          "both kernels: |beta - 0.37| <= se + 0.05 (beta on [3k, 30k], mean test MSE over 3 "
                          "independent subsets); |beta_hat - beta| <= 0.08 (a by maximum likelihood on ranks [82, "
                          "819] of 3 samples of n_eig = 8,192 = EIGH_MAX_N); every solve exact; the nested 60k "
                          "curve's local slopes reported (no verdict)",
                          "the issue's tolerances; n_eig limited to EIGH_MAX_N = 8,192 (the issue assumed 16,384: "
                          "refused here, a float64 LAPACK crash was found there); Fashion reported beside", 4500,
                          checked="MNIST parity n = 1,000...30,000 (3 seeds), n_eig = 8,192; nested to 60k reported",
                          source_tested=True),
        },
        run_c13,
        ("mnist",),
    ),
]
