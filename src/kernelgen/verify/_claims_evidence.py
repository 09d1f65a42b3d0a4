"""Claim C21: the bandwidth of largest exact GP evidence generalizes as well as the best bandwidth.

Same contract as :mod:`kernelgen.verify._claims_data`: ``run_cN(ctx) -> Result``; the claim is
registered here (``CLAIMS``) and collected by :mod:`kernelgen.verify._registry`.

C21 is a hypothesis, worded by kernelgen's issue 24: MacKay (1992) and Smith & Le (2018) argue that
the Bayesian evidence tracks generalization; neither claims it for the bandwidth of a Gaussian kernel,
and no number is published. Settings fixed before any result was seen (and kept out of the
criterion):

- **Model.** Independent GPs per one-hot target column, amplitude ``a^2``, noise variance ``a^2 *
  ridge`` with ridge 0 (interpolation): ``y_j ~ N(0, a^2 K)`` (:mod:`kernelgen.evidence._exact`).
- **Which evidence ranks the bandwidths.** The evidence at the amplitude's closed-form type-II optimum
  ``a^2* = tr(Y^T K^-1 Y) / (n k)``: the prior scale is a nuisance hyper-parameter a bandwidth does
  not fix, and MacKay re-estimates such scales at the evidence maximum. The evidence at ``a^2 = 1``
  and its optimum are reported beside it (no verdict).
- **Best bandwidth.** The smallest test error on the 10,000 MNIST test images (ties: smaller test MSE).
- **The interval.** Paired (McNemar) 95%: the difference of the two bandwidths' error rates on the
  same test images has standard error ``sqrt(b + c - (b - c)^2 / m) / m`` (b, c the discordant counts;
  the Wald interval of a paired difference, Agresti, *Categorical Data Analysis*, 3rd ed., section
  11.1.1); pass when ``err(evidence optimum) <= err(best) + 1.96 se``.
- **Data.** MNIST pixels / 255, the first ``n`` training images, the full test set; Gaussian ``s``
  in {3, 4, 5, 6, 8} (the issue's bandwidths around Belkin et al.'s s = 5).

Each bandwidth's numbers are stored as it finishes (``<out>/C21_parts/``, keyed by the data's sha256,
n, the test set, the bandwidth and the ridge): an interrupted ``full`` run resumes with the bandwidths
still missing, so the 60,000-image run can be done one bandwidth per sitting.

References
----------
[M92] D. J. C. MacKay, "Bayesian interpolation", Neural Computation 4(3), 1992.
[SL18] S. L. Smith and Q. V. Le, "A Bayesian perspective on generalization and stochastic gradient
descent", ICLR 2018, section 2.
[BMM18] M. Belkin, S. Ma, S. Mandal, "To understand deep learning we need to understand kernel
learning", ICML 2018 (MNIST, Gaussian s = 5 on pixels / 255).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np

from .. import cli
from .._files import atomic_write
from .._version import __version__
from ..evidence import evidence_grid
from ..kernels import Gaussian
from ..numerics import EXACT_TOL
from ..options import SolveOptions
from ..solvers import data_fingerprint
from ._claims_data import mnist, synthetic_classes
from ._core import FAIL, PASS, Claim, Context, Result, Scale, spearman

__all__ = ["CLAIMS", "mcnemar_interval", "run_c21"]

log = logging.getLogger("kernelgen.verify")

#: two-sided 95% normal quantile
_Z95 = 1.959963984540054


def mcnemar_interval(wrong_a, wrong_b, level_z: float = _Z95) -> dict:
    """Paired comparison of two classifiers on the same test points (McNemar's discordant counts).

    Parameters
    ----------
    wrong_a, wrong_b : array of bool of shape (m,)
        Which test points each classifier gets wrong.
    level_z : float
        Normal quantile of the interval (1.96: 95%).

    Returns
    -------
    dict
        ``b`` (a wrong, b right), ``c`` (a right, b wrong), ``diff`` = err_a - err_b, ``se`` its
        standard error ``sqrt(b + c - (b - c)^2 / m) / m`` and ``interval`` = diff -+ z se.

    References
    ----------
    A. Agresti, *Categorical Data Analysis*, 3rd ed., 2013, section 11.1.1 (the Wald interval of a
    paired difference of proportions); Q. McNemar, Psychometrika 12 (1947).
    """
    a = np.asarray(wrong_a, dtype=bool)
    b_ = np.asarray(wrong_b, dtype=bool)
    m = a.size
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    diff = (b - c) / m
    se = math.sqrt(max(0.0, b + c - (b - c) ** 2 / m)) / m
    return {"b": b, "c": c, "m": m, "diff": diff, "se": se,
            "interval": (diff - level_z * se, diff + level_z * se)}


def _data(ctx: Context):
    P = ctx.params
    if P["data"] == "synthetic":
        return synthetic_classes(P["n_train"], P["n_test"], ctx.seed, d=P["d"], spread=P["spread"])
    return mnist(ctx, P["n_train"], P["n_test"])


def _part_path(ctx: Context, X, Y, Xt, Yt, s: float, ridge: float, opts) -> Path:
    """Where one bandwidth's numbers are kept (resumable runs): keyed by the inputs and targets (training and test),
    the setting, the solve's tolerance and tile, and the version."""
    o = SolveOptions.coerce(opts)
    key = json.dumps({"X": data_fingerprint(X), "Y": data_fingerprint(Y), "Xt": data_fingerprint(Xt),
                      "Yt": data_fingerprint(Yt), "s": float(s), "ridge": float(ridge), "tol": float(o.tol),
                      "tile": int(o.tile), "version": __version__}, sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    return ctx.out_dir / "C21_parts" / f"s{float(s):g}-{h}.json"


def _one_bandwidth(ctx: Context, X, Y, Xt, Yt, s: float, ridge: float) -> dict:
    """The exact evidence and the posterior mean's test numbers of one bandwidth (stored, or computed and stored)."""
    tile = ctx.params.get("tile")  # full: 1,024 keeps the 60k float64 factor in RAM on a quiet 24 GiB machine
    opts = None if tile is None else SolveOptions(tile=int(tile))
    path = _part_path(ctx, X, Y, Xt, Yt, s, ridge, opts)
    if ctx.params.get("resume", True) and path.exists():
        log.info("C21: bandwidth %g from %s (an earlier run of the same data and setting)", s, path)
        row = json.loads(path.read_text())
        # NaN (a number the route does not state, e.g. the Cholesky log-det's error) is None in a report
        row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        return dict(row, resumed=True)
    g = evidence_grid(X, Y, kernel=Gaussian(float(s)), ridges=[ridge], X_test=Xt, Y_test=Yt, options=opts)
    row = g.rows()[0]
    row.update(bandwidth=float(s), wrong=np.flatnonzero(g.test_wrong[0]).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(str(path), lambda f: f.write(json.dumps(row).encode()), prefix=".c21-")
    return dict(row, resumed=False)


def run_c21(ctx: Context) -> Result:
    """Exact GP evidence and test error per Gaussian bandwidth: is the evidence's choice as good as the best?"""
    P = ctx.params
    X, y, Xt, yt = _data(ctx)
    Y, Yt = cli.one_hot(y, 10), cli.one_hot(yt, 10)
    ridge = float(P.get("ridge", 0.0))
    rows = []
    for s in P["bandwidths"]:
        ctx.checkpoint()
        rows.append(_one_bandwidth(ctx, X, Y, Xt, Yt, float(s), ridge))
    ctx.checkpoint()
    m = Xt.shape[0]
    bws = [r["bandwidth"] for r in rows]
    ev = np.array([r["log_evidence_amplitude"] for r in rows], dtype=float)  # None (no value) -> NaN
    ev1 = np.array([r["log_evidence"] for r in rows], dtype=float)
    err = np.array([r["test_error"] for r in rows])
    mse = np.array([r["test_mse"] for r in rows])
    wrong = [np.isin(np.arange(m), r["wrong"]) for r in rows]
    problems = [f"s = {r['bandwidth']:g}: {r['status']}" for r in rows if r["status"] != "ok"]
    if not problems:
        problems += [f"s = {r['bandwidth']:g}: residual {r['relative_residual']:.1e} > {EXACT_TOL:.0e}"
                     for r in rows if not r["relative_residual"] <= EXACT_TOL]
        # a quadratic form of a positive definite matrix: -1/2 tr(Y^T K^-1 Y) < 0 (a sign error cannot hide here)
        problems += [f"s = {r['bandwidth']:g}: data-fit term {r['data_fit']:.4g} >= 0 (-1/2 tr(Y^T K^-1 Y) must "
                     "be negative)" for r in rows if not r["data_fit"] < 0]
    if problems or not all(r["log_evidence_amplitude"] is not None for r in rows):
        return Result(FAIL, None, "; ".join(problems) or "the evidence is not finite",
                      details={"rows": [{k: v for k, v in r.items() if k != "wrong"} for r in rows]})
    i_ev = int(np.argmax(ev))
    i_ev1 = int(np.argmax(ev1))
    i_best = min(range(len(rows)), key=lambda i: (err[i], mse[i]))
    i_mse = int(np.argmin(mse))
    pair = mcnemar_interval(wrong[i_ev], wrong[i_best])
    hi = err[i_best] + _Z95 * pair["se"]
    lo = max(0.0, err[i_best] - _Z95 * pair["se"])
    ok = bool(err[i_ev] <= hi)
    # beside the verdict: which bandwidths the test set cannot tell from the best (each paired with it)
    se_vs_best = [mcnemar_interval(wrong[i], wrong[i_best])["se"] for i in range(len(rows))]
    tied = [bws[i] for i in range(len(rows)) if err[i] <= err[i_best] + _Z95 * se_vs_best[i]]
    mse_rank = [bws[i] for i in np.argsort(mse, kind="stable")]
    ev_rank = [bws[i] for i in np.argsort(-ev, kind="stable")]
    rho = spearman(ev, -mse) if len(rows) > 2 else float("nan")
    reason = (f"evidence optimum s = {bws[i_ev]:g}: test error {100 * err[i_ev]:.2f}%; best s = {bws[i_best]:g}: "
              f"{100 * err[i_best]:.2f}%, paired (McNemar) 95% interval [{100 * lo:.2f}%, {100 * hi:.2f}%] "
              f"({pair['b']} / {pair['c']} discordant of {m}) {'contains' if ok else 'excludes'} it (bandwidths "
              f"within their paired 95% of the best: {tied}); "
              f"test-MSE ranking {mse_rank} (best s = {bws[i_mse]:g}), evidence ranking {ev_rank}")
    resumed = [r["bandwidth"] for r in rows if r.get("resumed")]
    if resumed:
        reason += f"; bandwidths {resumed} read from an earlier run's C21_parts (their seconds are not in this run's)"
    details = {
        "data": P["data"], "n_train": int(X.shape[0]), "n_test": int(m), "ridge": ridge, "bandwidths": bws,
        "evidence_optimum": bws[i_ev], "evidence_optimum_a2_1": bws[i_ev1], "best_by_error": bws[i_best],
        "best_by_mse": bws[i_mse], "mcnemar": {k: v for k, v in pair.items()}, "interval_best": [lo, hi],
        "mse_ranking": mse_rank, "evidence_ranking": ev_rank, "tied_with_best": tied, "resumed": resumed,
        "spearman_evidence_vs_minus_mse": None if not math.isfinite(rho) else rho,
        "rows": [{**{k: v for k, v in r.items() if k != "wrong"}, "paired_se_vs_best": se_vs_best[i]}
                 for i, r in enumerate(rows)],
    }
    fig = plot_c21(ctx.figure_path("C21"), details)
    return Result(PASS if ok else FAIL, float(err[i_ev]), reason, (lo, hi),
                  "paired (McNemar) 95% around the best bandwidth's error", "%", details, fig)


def plot_c21(path, details: dict):
    """C21's figure from ``details``: the evidence per target value (at a^2* and at a^2 = 1) against the
    bandwidth, the test error with each bandwidth's paired 95% interval against the best (a bar reaching
    the best's error: not distinguishable from it), and the test MSE. Also
    re-renders a stored run from its report.json. Returns the saved path."""
    plt = cli.pyplot()
    rows = details["rows"]
    s = [r["bandwidth"] for r in rows]
    nk = details["n_train"] * 10
    f, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 3.8))
    f.subplots_adjust(wspace=0.55)
    a1.plot(s, [r["log_evidence_amplitude"] / nk for r in rows], "o-", label="at a²* (ranks)")
    a1.set_ylabel("log evidence / (n k), at a²*")
    a1b = a1.twinx()
    a1b.plot(s, [r["log_evidence"] / nk for r in rows], "s--", color="0.5", label="at a² = 1")
    a1b.set_ylabel("at a² = 1 (grey, dashed)")
    a1.axvline(details["evidence_optimum"], color="C0", ls=":", lw=1)
    a1.set_title("exact GP log evidence (ridge 0)")
    err = [100 * r["test_error"] for r in rows]
    a2.errorbar(s, err, yerr=[100 * _Z95 * r["paired_se_vs_best"] for r in rows], fmt="o-", color="C3", capsize=3,
                label="test error, ± paired 95% vs the best")
    a2.axhline(100 * rows[s.index(details["best_by_error"])]["test_error"], color="0.5", ls=":", lw=1,
               label="best bandwidth's error")
    a2.plot([details["evidence_optimum"]], [err[s.index(details["evidence_optimum"])]], "*", ms=14, color="C0",
            label="evidence optimum")
    a2.set_ylabel("test error (%)")
    a2.legend(fontsize=8)
    data = {"mnist": "MNIST", "synthetic": "synthetic mixture"}.get(details.get("data"), details.get("data", ""))
    a2.set_title(f"{data}: n = {details['n_train']:,}, {details['n_test']:,} test points")
    a3.plot(s, [r["test_mse"] for r in rows], "o-", color="C2")
    a3.set_ylabel("test MSE (sum over 10 outputs)")
    for a in (a1, a2, a3):
        a.set_xlabel("Gaussian bandwidth s")
    f.suptitle("C21: does the bandwidth of largest evidence generalize as well as the best?", y=1.05)
    return cli.save_figure(f, path, bbox_inches="tight")


_BWS = (3.0, 4.0, 5.0, 6.0, 8.0)
_STATEMENT = ("The bandwidth of largest exact GP evidence generalizes as well as the best bandwidth (a hypothesis: "
              "MacKay 1992 and Smith & Le 2018 argue that the evidence tracks generalization; neither claims it "
              "for Gaussian bandwidths).")
_CRIT = ("the test error at the evidence optimum (amplitude at its type-II optimum) lies inside the paired "
         "(McNemar) 95% interval of the best bandwidth's; every residual <= 1e-10 and every data-fit term < 0; "
         "the test-MSE ranking reported beside it")

CLAIMS: list[Claim] = [
    Claim(
        "C21", "The evidence picks a bandwidth that generalizes",
        _STATEMENT,
        "MacKay, Neural Computation 1992; Smith & Le, ICLR 2018 §2 (argument); hypothesis worded by kernelgen "
        "issue 24", "— (a hypothesis; no published number)",
        "test error at the bandwidth of largest exact GP log evidence (Gaussian kernel, ridge 0, one-hot targets)",
        {
            "smoke": Scale({"data": "synthetic", "n_train": 300, "n_test": 1000, "d": 20, "spread": 1.5,
                            "bandwidths": [0.1, 0.3, 0.6, 1.0, 2.0], "ridge": 0.0},
                           _CRIT,
                           "machinery: a 10-class Gaussian mixture (d = 20, spread 1.5) where s = 0.1 is a "
                           "nearest-neighbour rule (~33% error) and mid bandwidths ~18%, so a wrong optimum is seen; "
                           "one eigendecomposition per bandwidth (n <= 8,192)", 5,
                           checked="synthetic 10-class mixture, n = 300 (machinery; not MNIST)",
                           source_tested=False),
            "quick": Scale({"data": "mnist", "n_train": 10000, "n_test": None, "bandwidths": list(_BWS),
                            "ridge": 0.0},
                           _CRIT,
                           "test error is nearly flat in s (issue 24's 10k: 2.68 / 2.66 / 2.71 / 2.77% for s = 4 / 5 "
                           "/ 6 / 8, standard error ~0.16%): the paired interval is "
                           "the honest tolerance; one float64 Cholesky per bandwidth (10,000 > EIGH_MAX_N); measured "
                           "262 s wall at load 8-13 (33% of the CPU), 88 s of CPU: ~100 s on the idle 2 cores", 45,
                           checked="MNIST n = 10,000, full test set, s in {3, 4, 5, 6, 8} (reduced scale)",
                           source_tested=False),
            "full": Scale({"data": "mnist", "n_train": 60000, "n_test": None, "bandwidths": list(_BWS),
                           "ridge": 0.0, "tile": 1024},
                          _CRIT,
                          "the issue's full scale: one float64 factor per bandwidth at 60,000 (tile 1,024: 16.0 GB "
                          "planned, in RAM on a quiet machine, else out of core); resumable per bandwidth (<out>/C21_parts); ~12 min per bandwidth "
                          "(float64 factor 7.2e13 flop at ~120 GFLOP/s, half RESULTS.md's float32 rate, + 3 passes)",
                          4200,
                          checked="MNIST n = 60,000, full test set, s in {3, 4, 5, 6, 8}",
                          source_tested=True),
        },
        run_c21,
    ),
]
