"""Run functions of C6 (random-feature double descent), C7 (asymptotic risk curves), C8 (Laplace =
exact evidence; evidence prefers informative labels), C9 (evidence against generalization across
label corruption) and C10 (the executable derivations in ``proofs/``).

Same contract as :mod:`kernelgen.verify._claims_data`: ``run_cN(ctx) -> Result``.

References
----------
[BHMM19] M. Belkin, D. Hsu, S. Ma, S. Mandal, "Reconciling modern machine-learning practice and the
classical bias-variance trade-off", PNAS 116 (2019), Fig. 2 (random Fourier features, peak at N = n).
[HMRT22] T. Hastie, A. Montanari, S. Rosset, R. Tibshirani, "Surprises in high-dimensional ridgeless
least squares interpolation", Ann. Statist. 50 (2022), Theorem 1.
[BHX20] M. Belkin, D. Hsu, J. Xu, "Two models of double descent for weak features", SIAM J. Math.
Data Sci. 2 (2020), Theorem 1.
[MM22] S. Mei, A. Montanari, "The generalization error of random features regression", CPAM 75
(2022), Theorem 1 and Definition 1.
[PRML] C. M. Bishop, Pattern Recognition and Machine Learning (2006), section 3.5, eq. 3.86.
[SL18] S. L. Smith, Q. V. Le, "A Bayesian perspective on generalization and stochastic gradient
descent", ICLR 2018, sections 2-3.
"""

from __future__ import annotations

import logging
import math
import pkgutil
import time

import numpy as np

from .. import cli, evidence, proofs, random_features, theory
from ..factors import EighFactor
from ..kernels import Gaussian, kernel_matrix
from ..options import SolveOptions
from ..solvers import kernel_interpolate
from ._claims_data import EXACT, corrupt_labels, mnist, synthetic_classes
from ._core import FAIL, PASS, Context, Result, spearman

__all__ = ["kernel_system", "nakkiran_risk", "run_c6", "run_c7", "run_c8", "run_c9", "run_c10"]

log = logging.getLogger("kernelgen.verify")

#: |z| above which a simulation contradicts an exact finite-n expectation (5 se: a 5.7e-7
#: two-sided false-alarm rate for a normal mean, the threshold tests/test_theory.py uses)
Z_MAX = 5.0
#: paired standard errors by which a simulated risk must rise for "more data hurts" (one-sided 3 se: a 1.3e-3
#: false-alarm rate; the exact formula must rise as well)
HURTS_Z = 3.0


def _data(ctx: Context, P):
    if P["data"] == "synthetic":
        return synthetic_classes(P["n_train"], P["n_test"], ctx.seed)
    return mnist(ctx, P["n_train"], P["n_test"])


# ---------------------------------------------------------------------------------------------- C6
def run_c6(ctx: Context) -> Result:
    """Double descent of minimum-norm random Fourier features, exact Phi^+ Y, over feature seeds."""
    P = ctx.params
    X, y, Xt, yt = _data(ctx, P)
    n = X.shape[0]
    widths = np.unique(np.round(np.asarray(P["width_ratios"]) * n).astype(int))
    res = random_features.double_descent_sweep(X, y, Xt, yt, widths, kind="fourier", task="classification",
                                               bandwidth=P["bandwidth"],
                                               seeds=tuple(range(ctx.seed, ctx.seed + P["n_seeds"])),
                                               kernel_limit=False)
    at = int(np.nonzero(res.widths == n)[0][0])
    peaks = [int(res.widths[np.argmax(res.test_error[s])]) for s in range(len(res.seeds))]
    peaks_sq = [int(res.widths[np.argmax(res.test_sq[s])]) for s in range(len(res.seeds))]
    e_n = res.test_error[:, at]
    e_wide = res.test_error[:, -1]
    ok = all(p == n for p in peaks) and all(p == n for p in peaks_sq) and bool(np.all(e_wide < e_n))
    opt = float(np.max(res.opt_residual))  # max, not nanmax: a NaN certificate must fail
    ok = ok and opt <= 1e-8  # every width certified as the minimum-norm least-squares fit
    reason = (f"peak of test error at N = {peaks} and of test loss at N = {peaks_sq} for {len(peaks)} seeds "
              f"(N = n = {n} needed for all); error at N = n {100 * e_n.mean():.1f}% (seeds "
              f"{', '.join(f'{100 * v:.1f}' for v in e_n)}) vs {100 * e_wide.mean():.1f}% at N = {res.widths[-1]}; "
              f"largest optimality certificate {opt:.1e}")
    plt = cli.pyplot()
    f, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    r = res.widths / n
    for s in range(len(res.seeds)):
        a1.plot(r, 100 * res.test_error[s], "-", lw=0.8, alpha=0.6, color=f"C{s}")
        a2.semilogy(r, res.test_sq[s], "-", lw=0.8, alpha=0.6, color=f"C{s}", label=f"seed {res.seeds[s]}")
    a1.errorbar(r, 100 * res.mean("test_error"), yerr=100 * res.std("test_error"), fmt="ko-", ms=3, capsize=2,
                label="mean ± sd over seeds")
    for a in (a1, a2):
        a.axvline(1.0, color="k", ls=":", lw=1)
        a.set_xscale("log")
        a.set_xlabel("features N / training points n")
    a1.set_ylabel("test error (%)")
    a2.set_ylabel("test squared loss")
    a1.legend(fontsize=8)
    a2.legend(fontsize=7)
    f.suptitle(f"C6: random Fourier features, exact Φ⁺Y ({P['data']}, n = {n})")
    fig = cli.save_figure(f, ctx.figure_path("C6"), bbox_inches="tight")
    return Result(PASS if ok else FAIL, float(e_n.mean()), reason, (float(e_n.min()), float(e_n.max())),
                  f"range over {len(peaks)} seeds", "%",
                  {"widths": res.widths, "test_error": res.test_error, "test_sq": res.test_sq,
                   "coef_norm": res.coef_norm, "cond": res.cond, "peaks": peaks, "peaks_sq": peaks_sq}, fig)


# ---------------------------------------------------------------------------------------------- C7
def _z(sim, expected) -> float:
    se = sim.std / math.sqrt(sim.risks.size)
    return (sim.mean - expected) / se


def run_c7(ctx: Context) -> Result:
    """Simulations against exact finite-n expectations (HMRT, BHX); Mei-Montanari exact limits."""
    P = ctx.params
    seeds = range(ctx.seed, ctx.seed + P["n_seeds"])
    n = P["n"]
    rows = []
    for p in P["hmrt_p"]:
        sim = theory.simulate_hmrt(n, p, r2=1.0, sigma2=0.5, seeds=seeds)
        E = theory.hmrt_ridgeless_risk_finite(n, p, r2=1.0, sigma2=0.5)
        rows.append({"model": "HMRT ridgeless", "p": p, "sim": sim.mean, "exact": float(E), "z": _z(sim, E)})
    kw = {"norm2_in": 0.5, "norm2_out": 0.5, "sigma2": 0.25}
    for p in P["bhx_p"]:
        ctx.checkpoint()
        sim = theory.simulate_bhx(n, p, 3 * n, seeds=seeds, **kw)
        E = theory.bhx_weak_features_risk(p, n, **kw)
        rows.append({"model": "BHX weak features", "p": p, "sim": sim.mean, "exact": float(E), "z": _z(sim, E)})
    nk = _nakkiran(ctx, P["nakkiran"], seeds) if P.get("nakkiran") else None
    if nk:
        rows += nk["rows"]
    zmax = max(abs(r["z"]) for r in rows)
    # Mei-Montanari: as psi1 -> oo its bias/variance are Hastie et al.'s ridge risk with gamma = 1/psi2,
    # lambda = (1 + psi2 lam_bar)/(psi2 zeta^2) (tests/test_theory.py::test_mm_psi1_to_infinity_is_hmrt_ridge);
    # checked at psi = 1e7, where the O(1/psi) gap is ~5e-8
    gaps = []
    for psi2, zeta, lam_bar in [(2.0, 1.659, 0.0), (0.5, 1.0, 0.1), (3.0, 0.7, 1.0)]:
        lam = (1 + psi2 * lam_bar) / (psi2 * zeta**2)
        B, V = theory.mm_bias_variance(1e7, psi2, zeta, lam_bar)
        gaps += [abs(B - theory.hmrt_ridge_risk(lam, 1 / psi2, r2=1.0, sigma2=0.0)),
                 abs(V - theory.hmrt_ridge_risk(lam, 1 / psi2, r2=0.0, sigma2=1.0))]
    gap = float(max(gaps))
    mm = {}
    if P.get("mm_d"):
        d = P["mm_d"]
        zeta = float(theory.relu_moments()["zeta"])
        for psi in [(3, 2), (6, 2)]:
            sim = theory.simulate_mei_montanari(d, psi[0] * d, psi[1] * d, tau2=0.25, seeds=seeds, n_test=2000)
            R = theory.mm_risk(*psi, zeta, tau2=0.25)
            mm[str(psi)] = {"sim": sim.mean, "theory": R, "rel_dev": sim.mean / R - 1}
    mm_dev = max((abs(v["rel_dev"]) for v in mm.values()), default=0.0)
    ok = zmax <= Z_MAX and gap <= 1e-6 and mm_dev <= 0.10 and (nk is None or nk["hurts_ok"])
    reason = (f"max |z| {zmax:.2f} over {len(rows)} simulation-vs-exact comparisons ({P['n_seeds']} seeds, "
              f"n = {n}; <= {Z_MAX:g} needed); Mei-Montanari exact-limit gap {gap:.1e} (<= 1e-6)"
              + (f"; MM simulation at d = {P['mm_d']} within {100 * mm_dev:.1f}% of theory (<= 10%)" if mm else "")
              + (f"; {nk['reason']}" if nk else ""))
    plt = cli.pyplot()
    if nk:
        f, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4))
        _plot_nakkiran(ax2, nk)
    else:
        f, ax = plt.subplots(figsize=(6.4, 4))
    g = np.r_[np.linspace(0.1, 0.95, 40), np.linspace(1.05, 4, 60)]
    ax.plot(g, theory.hmrt_ridgeless_risk(g, r2=1.0, sigma2=0.5), "k-", lw=1, label="HMRT limit (σ² = 0.5)")
    hm = [r for r in rows if r["model"].startswith("HMRT")]
    ax.plot([r["p"] / n for r in hm], [r["exact"] for r in hm], "o", mfc="none", color="C0", ms=9,
            label=f"exact finite-n expectation (n = {n})")
    ax.plot([r["p"] / n for r in hm], [r["sim"] for r in hm], "x", color="C3", ms=8, label="simulation mean")
    ax.set_ylim(0, 5)
    ax.set_xlabel("γ = p / n")
    ax.set_ylabel("excess risk")
    ax.set_title("C7: ridgeless least squares, theory vs simulation")
    ax.legend(fontsize=8)
    fig = cli.save_figure(f, ctx.figure_path("C7"), bbox_inches="tight")
    details = {"comparisons": rows, "mm_limit_gap": gap, "mm_simulation": mm}
    if nk:
        details["nakkiran"] = {k: v for k, v in nk.items() if k not in ("rows", "reason")}
    return Result(PASS if ok else FAIL, zmax, reason, None, "", "max |z|", details, fig)


def nakkiran_risk(n, d, *, sigma: float):
    """Exact expected excess risk ``E ||beta_hat - beta||^2`` of the minimum-norm fit from ``n`` samples in ``d``
    dimensions (Nakkiran 2019, sample-wise double descent), ``x ~ N(0, I_d)``, ``||beta|| = 1``, noise ``sigma``.

    ``n <= d - 2``: ``(1 - n/d) + sigma^2 n / (d - n - 1)``; ``n >= d + 2``: ``sigma^2 d / (n - d - 1)``; ``inf``
    in between. This is :func:`kernelgen.theory.hmrt_ridgeless_risk_finite` with ``p = d`` features (its
    docstring derives both branches from the inverse-Wishart mean, Muirhead Thm 3.2.12); the test MSE of the
    paper adds the constant ``sigma^2``.

    Parameters
    ----------
    n, d : int or array_like of int
    sigma : float

    Returns
    -------
    float or ndarray

    References
    ----------
    P. Nakkiran, "More data can hurt for linear regression: sample-wise double descent", arXiv:1912.07242
    (2019), section 3 (bias and variance of the min-norm estimator, Fig. 1 at d = 1000, sigma = 0.1).
    """
    return theory.hmrt_ridgeless_risk_finite(n, d, r2=1.0, sigma2=sigma * sigma)


def _nakkiran(ctx: Context, Q, seeds) -> dict:
    """Sample-wise sweep at fixed ``d``: simulation against :func:`nakkiran_risk` (C7's 5-se rule), and for each
    pair ``(n_lo, n_hi)`` in ``Q["hurts"]`` more data hurting: exact risk and simulated mean both larger at
    ``n_hi``, the simulated increase >= ``HURTS_Z`` paired standard errors (the seeds are shared)."""
    d, sigma = int(Q["d"]), float(Q["sigma"])
    seeds = list(seeds) if "n_seeds" not in Q else list(range(ctx.seed, ctx.seed + int(Q["n_seeds"])))
    rows, sims = [], {}
    for m in Q["n"]:
        ctx.checkpoint()
        sim = theory.simulate_hmrt(int(m), d, r2=1.0, sigma2=sigma * sigma, seeds=seeds)
        E = float(nakkiran_risk(int(m), d, sigma=sigma))
        sims[int(m)] = sim
        rows.append({"model": "Nakkiran sample-wise", "n": int(m), "d": d, "sim": sim.mean, "exact": E,
                     "z": _z(sim, E)})
    pairs = []
    for lo, hi in Q.get("hurts", []):
        diff = sims[int(hi)].risks - sims[int(lo)].risks
        zd = float(diff.mean() / (diff.std(ddof=1) / math.sqrt(diff.size)))
        e_lo, e_hi = float(nakkiran_risk(int(lo), d, sigma=sigma)), float(nakkiran_risk(int(hi), d, sigma=sigma))
        pairs.append({"n_lo": int(lo), "n_hi": int(hi), "exact_lo": e_lo, "exact_hi": e_hi,
                      "sim_lo": sims[int(lo)].mean, "sim_hi": sims[int(hi)].mean, "paired_z": zd,
                      "ok": e_hi > e_lo and zd >= HURTS_Z})
    zmax = max(abs(r["z"]) for r in rows)
    hurts = "; ".join(f"risk({p['n_hi']}) > risk({p['n_lo']}): exact {p['exact_hi']:.3f} vs {p['exact_lo']:.3f}, "
                      f"simulated {p['sim_hi']:.3f} vs {p['sim_lo']:.3f} (paired z {p['paired_z']:.1f}, >= "
                      f"{HURTS_Z:g} needed)" for p in pairs)
    reason = (f"Nakkiran sample-wise (d = {d}, sigma = {sigma:g}, {len(seeds)} seeds): max |z| {zmax:.2f} over "
              f"{len(rows)} sample sizes" + (f"; {hurts}" if pairs else ""))
    n_star = d - 1 - sigma * math.sqrt(d * (d - 1))  # where d risk / dn = 0 below d (exact formula)
    return {"rows": rows, "pairs": pairs, "hurts_ok": all(p["ok"] for p in pairs), "reason": reason, "d": d,
            "sigma": sigma, "n_seeds": len(seeds), "risk_minimum_n": n_star}


def _plot_nakkiran(ax, nk):
    d, sigma = nk["d"], nk["sigma"]
    g = np.r_[np.linspace(1, d - 15, 200), np.linspace(d + 15, 2.5 * d, 150)].round()
    ax.plot(g, nakkiran_risk(g.astype(int), d, sigma=sigma), "k-", lw=1, label="exact finite-n risk")
    rows = nk["rows"]
    ax.plot([r["n"] for r in rows], [r["sim"] for r in rows], "x", color="C3", ms=8, label="simulation mean")
    ax.axvline(d, color="k", ls=":", lw=1)
    ax.set_ylim(0, 1.5)
    ax.set_xlabel("training samples n")
    ax.set_ylabel("excess risk")
    ax.set_title(f"Nakkiran 2019: sample-wise double descent (d = {d}, σ = {sigma:g})", fontsize=9)
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------- C8, C9
def kernel_system(ctx: Context, P):
    """Data, Gaussian kernel matrices and their eigendecomposition, cached (C8 and C9 share them)."""
    def make():
        X, y, Xt, yt = _data(ctx, P)
        kern = Gaussian(P["bandwidth"])
        K = kernel_matrix(X, kernel=kern)
        return {"X": X, "y": y, "yt": yt, "K": K, "Kt": kernel_matrix(Xt, X, kernel=kern),
                "fac": EighFactor.factor(K)}

    return ctx.cached(("kernel_system", P["data"], P["n_train"], P["n_test"], P["bandwidth"]), make)


def _blr_laplace_gap(seed: int) -> float:
    """|Laplace - exact| / |exact| log evidence of a Bayesian linear regression (PRML eq. 3.86)."""
    import jax.numpy as jnp  # optional heavy dependency

    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((40, 6))
    t = Phi @ rng.standard_normal(6) + 0.4 * rng.standard_normal(40)
    alpha, beta = 0.5, 4.0
    N, M = Phi.shape

    def loglik(w):
        r = jnp.asarray(t) - jnp.asarray(Phi) @ w
        return 0.5 * N * jnp.log(beta / (2 * jnp.pi)) - 0.5 * beta * jnp.sum(r * r)

    def logprior(w):
        return 0.5 * M * jnp.log(alpha / (2 * jnp.pi)) - 0.5 * alpha * jnp.sum(w * w)

    exact = evidence.blr_log_evidence(Phi, t, alpha=alpha, beta=beta).log_evidence
    lap = evidence.laplace_evidence(loglik, logprior, np.zeros(M)).log_evidence
    return abs(lap - exact) / abs(exact)


def run_c8(ctx: Context) -> Result:
    """Laplace = exact evidence for BLR; the GP evidence prefers informative to random labels."""
    P = ctx.params
    gap = max(_blr_laplace_gap(ctx.seed + s) for s in range(3))
    S = kernel_system(ctx, P)
    y, n = S["y"], S["y"].size
    info = evidence.gp_type2_ml(S["fac"], cli.one_hot(y, 10)).log_evidence
    rnd = []
    for r in range(P["n_random"]):
        ctx.checkpoint()
        yr = np.random.default_rng(ctx.seed + 100 + r).integers(0, 10, n)
        rnd.append(evidence.gp_type2_ml(S["fac"], cli.one_hot(yr, 10)).log_evidence)
    margin = (info - max(rnd)) / n
    ok = gap <= 1e-10 and margin > 0
    reason = (f"Laplace vs exact BLR log evidence: largest relative gap {gap:.1e} (<= 1e-10, float64 rounding); "
              f"GP log evidence per sample: informative {info / n:.3f} vs best of {len(rnd)} random labellings "
              f"{max(rnd) / n:.3f} (margin {margin:.3f} > 0 needed; {P['data']}, n = {n})")
    plt = cli.pyplot()
    f, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.bar(["informative"] + [f"random {r}" for r in range(len(rnd))], [info / n] + [v / n for v in rnd],
           color=["C2"] + ["C7"] * len(rnd))
    ax.set_ylabel("GP log evidence per sample (type-II ML)")
    ax.set_title(f"C8: evidence prefers informative labels (Laplace gap {gap:.0e})")
    fig = cli.save_figure(f, ctx.figure_path("C8"), bbox_inches="tight")
    return Result(PASS if ok else FAIL, gap, reason, None, "", "relative gap",
                  {"laplace_relative_gap": gap, "log_evidence_informative": info, "log_evidence_random": rnd,
                   "margin_per_sample": margin}, fig)


def run_c9(ctx: Context) -> Result:
    """Spearman(log evidence, test error) across label corruption <= -0.8; N_eff reported."""
    P = ctx.params
    S = kernel_system(ctx, P)
    y, yt = S["y"], S["yt"]
    rows = []
    for p in P["corruptions"]:
        ctx.checkpoint()
        yp = corrupt_labels(y, p, 10, ctx.seed)
        Y = cli.one_hot(yp, 10)
        gp = evidence.gp_type2_ml(S["fac"], Y)
        fit = kernel_interpolate(S["K"], Y, kernel="precomputed", solver="cholesky",
                                 options=SolveOptions(dtype="float64"))
        if fit.relative_residual > EXACT:
            raise ArithmeticError(f"interpolant at p = {p} not exact: residual {fit.relative_residual:.1e}")
        err = float(np.mean((S["Kt"] @ fit.alpha).argmax(1) != yt))
        rows.append({"corruption": float(p), "log_evidence": float(gp.log_evidence), "test_error": err,
                     "effective_dim": float(gp.effective_dim)})
    rho = spearman([r["log_evidence"] for r in rows], [r["test_error"] for r in rows])
    rho_eff = spearman([r["effective_dim"] for r in rows], [r["test_error"] for r in rows])
    ok = rho <= -0.8
    reason = (f"Spearman(log evidence, test error) = {rho:.3f} over {len(rows)} corruption levels (<= -0.8 "
              f"needed); Spearman(N_eff, test error) = {rho_eff:.3f} (reported, not judged)")
    plt = cli.pyplot()
    f, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    a1.plot([100 * r["test_error"] for r in rows], [r["log_evidence"] / y.size for r in rows], "o-")
    for r in rows:
        a1.annotate(f"p={r['corruption']:.1f}", (100 * r["test_error"], r["log_evidence"] / y.size), fontsize=7)
    a1.set_xlabel("test error (%)")
    a1.set_ylabel("GP log evidence per sample")
    a1.set_title(f"ρ = {rho:.2f}")
    a2.plot([r["corruption"] for r in rows], [r["effective_dim"] for r in rows], "s-", color="C1")
    a2.set_xlabel("label corruption p")
    a2.set_ylabel("effective dimensionality N_eff")
    f.suptitle(f"C9: evidence vs generalization ({P['data']}, n = {y.size})")
    fig = cli.save_figure(f, ctx.figure_path("C9"), bbox_inches="tight")
    return Result(PASS if ok else FAIL, rho, reason, None, "", "Spearman ρ",
                  {"levels": rows, "spearman_effective_dim": rho_eff}, fig)


# ---------------------------------------------------------------------------------------------- C10
def run_c10(ctx: Context) -> Result:
    """Every derivation in :mod:`kernelgen.proofs` (the repository's ``proofs/``) runs and its numerical
    cross-check holds."""
    checks = proofs.discover(ctx.params.get("modules"))
    rows, failed = [], []
    for module, name, check in checks:
        ctx.checkpoint()  # a Ctrl-C swallowed inside the previous check (a JAX callback) ends the claim here
        t0 = time.perf_counter()
        try:
            summary, ok = str(check()), True
        except Exception as exc:  # noqa: BLE001 -- a proof that raises anything has failed
            summary, ok = f"{type(exc).__name__}: {exc}".splitlines()[0], False
            failed.append(f"{module}::{name}")
        rows.append({"check": f"{module}::{name}", "pass": ok, "seconds": time.perf_counter() - t0,
                     "summary": summary[:300]})
    ok = bool(rows) and not failed
    modules = sorted({m for m, _, _ in checks})
    every = sorted(m.name for m in pkgutil.iter_modules(proofs.__path__) if not m.name.startswith("_"))
    scope = ("every proof module" if set(every) <= set(modules) else
             f"{len(modules)} of {len(every)} proof modules ({', '.join(modules)}); the others run at quick and full")
    reason = (f"{len(rows) - len(failed)} of {len(rows)} checks passed; {scope}"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    plt = cli.pyplot()
    f, ax = plt.subplots(figsize=(6.4, 0.3 * len(rows) + 1.2))
    ax.barh([r["check"] for r in rows], [r["seconds"] for r in rows],
            color=["C2" if r["pass"] else "C3" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("seconds (green: pass, red: fail)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("C10: executable derivations (python -m kernelgen.proofs)")
    fig = cli.save_figure(f, ctx.figure_path("C10"), bbox_inches="tight")
    unit = (f"checks passed of {len(rows)}" if set(every) <= set(modules) else
            f"checks passed of {len(rows)} run; {len(modules)} of {len(every)} modules")
    return Result(PASS if ok else FAIL, float(len(rows) - len(failed)), reason, None, "", unit,
                  {"checks": rows, "modules": modules, "modules_in_proofs": every}, fig)
