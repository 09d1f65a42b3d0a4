#!/usr/bin/env python
"""Double descent: random Fourier features on MNIST, and exact theory curves over simulations.

(a) MNIST, first ``--n-train`` (5,000) training images scaled to [0, 1], one-hot targets, full
    test set, random Fourier features with s = 5 over ``--n-feature-seeds`` (3) feature draws,
    minimum-norm fits Phi^+ Y for widths N from n/10 to 4n (33 widths, denser near n), computed
    from Phi at every width (QR / LQ of Phi, or CGLS on Phi preconditioned by the Gram factor where
    that factor is accurate; never a rank cut-off on the Gram matrix) and certified by residuals
    computed with Phi (:func:`kernelgen.random_features.double_descent_sweep`); the N -> infinity
    reference is the Gaussian-kernel interpolant from :func:`kernelgen.kernel_interpolate`.
    The figure shows the mean and the min-max band over feature seeds; it is also copied to
    ``--figure-copy`` (benchmarks/figures/double_descent.png, the README figure).
(b) Synthetic panels, each in its paper's own model, simulations over ``--seeds`` seeds
    against the asymptotic formulas of :mod:`kernelgen.theory`:
    Hastie et al. (isotropic Gaussian, p = 300 fixed, n varied; ridgeless and optimal ridge),
    Belkin-Hsu-Xu (weak features, D = 400, n = 150, p varied),
    Mei-Montanari (sphere of radius sqrt(d), d = 200, n = 2d, N varied, centred ReLU).

Figures (PNG) go to ``--out-dir``; the last stdout line is a JSON object of metrics (with
provenance: versions, machine and the seeds used).

    python scripts/double_descent.py                 # default run on MNIST (minutes; memory-heavy)
    python scripts/double_descent.py --smoke         # seconds, synthetic data only
    python -m kernelgen.verify --only C6,C7          # the claims judged, with verdicts
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from kernelgen import cli
from kernelgen import theory as T
from kernelgen.random_features import default_widths, double_descent_sweep

log = logging.getLogger("double_descent")


# ----------------------------------------------------------------------------- (a)
def load_data(args):
    """MNIST subset (default) or a synthetic classification problem (--smoke)."""
    if args.smoke:
        rng = np.random.default_rng(0)
        n, m, d, k = 150, 600, 20, 3
        centres = 1.5 * rng.standard_normal((k, d))
        yl, ytl = rng.integers(0, k, n), rng.integers(0, k, m)
        X = centres[yl] + rng.standard_normal((n, d))
        Xt = centres[ytl] + rng.standard_normal((m, d))
        flip = rng.random(n) < 0.2  # label noise makes the interpolation peak visible
        yl = np.where(flip, rng.integers(0, k, n), yl)
        return X, yl, Xt, ytl, "synthetic blobs (smoke)", 4.0
    n, m = args.n_train, args.n_test
    X, y, Xt, yt = cli.load_mnist_scaled(n_train=n, n_test=m, data_home=args.data_home, verbose=not args.quiet)
    return X, y, Xt, yt, f"MNIST (first {n} train, {m} test)", args.bandwidth


def plot_sweep(res, title, path):
    """Seed mean with the min-max band over seeds of test error, test squared loss, coefficient norm;
    the fourth panel shows cond(Phi) per seed and the rank at N = n."""
    plt = cli.pyplot()
    r = res.widths / res.n_train
    kl = res.kernel_limit
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    ns = len(res.seeds)
    lab = f"{ns} seed{'s' * (ns > 1)}: mean, min-max band, x = each seed"

    def curve(a, name, scale=1.0, **kw):
        v = scale * getattr(res, name)
        a.plot(r, v.mean(axis=0), "o-", ms=3, **kw)
        if ns > 1:
            c = a.lines[-1].get_color()
            a.fill_between(r, v.min(axis=0), v.max(axis=0), alpha=0.25, color=c)
            for row in v:  # each seed, so that the spread at the sharp peak N = n is visible
                a.plot(r, row, "x", ms=3, color=c, alpha=0.6)

    a = ax[0, 0]
    curve(a, "test_error", 100.0, label=f"RFF min-norm, test ({lab})")
    curve(a, "train_error", 100.0, label="train")
    if kl:
        a.axhline(100 * kl["test_error"], color="k", ls="--", label=f"kernel limit {100 * kl['test_error']:.2f}%")
    a.set(xscale="log", xlabel="N / n", ylabel="zero-one error (%)", title="classification error")
    a.axvline(1.0, color="grey", lw=0.5)
    a.legend(fontsize=8)
    a = ax[0, 1]
    curve(a, "test_sq", label="test")
    if kl:
        a.axhline(kl["test_sq"], color="k", ls="--", label="kernel limit (test)")
    a.set(xscale="log", yscale="log", xlabel="N / n", ylabel="squared loss", title="test squared loss")
    a.axvline(1.0, color="grey", lw=0.5)
    a.legend(fontsize=8)
    a = ax[1, 0]
    curve(a, "coef_norm", label="||a|| (RFF)")
    if kl:
        a.axhline(kl["rkhs_norm"], color="k", ls="--", label=f"kernel RKHS norm {kl['rkhs_norm']:.1f}")
    a.set(xscale="log", yscale="log", xlabel="N / n", ylabel="coefficient norm", title="norm of Phi^+ Y")
    a.axvline(1.0, color="grey", lw=0.5)
    a.legend(fontsize=8)
    a = ax[1, 1]
    i_n = int(np.argmin(np.abs(res.widths - res.n_train)))
    for j, sd in enumerate(res.seeds):
        a.plot(r, res.cond[j], "o-", ms=2, lw=0.8, label=f"seed {sd}: rank {res.rank[j, i_n]} / "
                                                          f"{min(res.n_train, res.widths[i_n])} at N = n")
    qr = np.isin(res.method[0], ["qr", "lq"])
    a.plot(r[qr], res.cond[0][qr], "k+", ms=7, label="QR / LQ of Phi (seed 0); others: Cholesky-CGLS")
    a.set(xscale="log", yscale="log", xlabel="N / n", ylabel="cond(Phi)", title="conditioning and rank of Phi")
    a.axvline(1.0, color="grey", lw=0.5)
    a.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    cli.save_figure(fig, path, dpi=110)


# ----------------------------------------------------------------------------- (b)
def theory_panels(args):
    """Simulations in each paper's model against the formulas; returns the panels, by paper."""
    seeds = list(range(args.seeds))
    smoke = args.smoke
    out = {}
    # Hastie et al.: p fixed, n varied; x-axis gamma = p / n
    p = 40 if smoke else 300
    r2, s2 = 1.0, 0.25
    gam_sim = np.array([0.25, 0.5, 0.8, 1.25, 2.0, 4.0] if smoke else
                       [0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0])
    sim0, simr = [], []
    lam_star = None
    for g in gam_sim:
        n = int(round(p / g))
        sim0.append(T.simulate_hmrt(n, p, r2=r2, sigma2=s2, seeds=seeds))
        lam_star = T.hmrt_optimal_ridge(p / n, r2=r2, sigma2=s2)
        simr.append(T.simulate_hmrt(n, p, r2=r2, sigma2=s2, lam=lam_star, seeds=seeds))
    g_th = np.geomspace(0.1, 5, 400)
    out["hmrt"] = dict(x_sim=np.array([p / round(p / g) for g in gam_sim]), sim=sim0, sim_ridge=simr,
                       x_th=g_th, th=T.hmrt_ridgeless_risk(g_th, r2=r2, sigma2=s2),
                       th_ridge=np.array([T.hmrt_ridge_risk(T.hmrt_optimal_ridge(g, r2=r2, sigma2=s2), g,
                                                            r2=r2, sigma2=s2) for g in g_th]),
                       th_at_sim=[T.hmrt_ridgeless_risk(p / round(p / g), r2=r2, sigma2=s2) for g in gam_sim],
                       label=f"Hastie et al., x ~ N(0, I_p), p = {p}, r^2 = 1, sigma^2 = 0.25")
    # Belkin-Hsu-Xu: D features in all, learner uses the first p
    D, n = (80, 30) if smoke else (400, 150)
    ps = np.array([5, 15, 25, 35, 50, 80] if smoke else
                  [10, 30, 60, 90, 110, 130, 140, 146, 155, 160, 175, 200, 250, 300, 350, 400])
    ps = ps[(ps <= n - 2) | (ps >= n + 2)]
    kw = dict(norm2_in=None, norm2_out=None, sigma2=0.25)
    sims, ths = [], []
    for pp in ps:
        # beta with equal energy per coordinate (||beta||^2 = 1): beta_T carries p / D of it
        kw.update(norm2_in=pp / D, norm2_out=1 - pp / D)
        sims.append(T.simulate_bhx(n, int(pp), D, seeds=seeds, **kw))
        ths.append(T.bhx_weak_features_risk(pp, n, **kw))
    p_th = np.arange(1, D + 1)
    out["bhx"] = dict(x_sim=ps, sim=sims, th_at_sim=ths, x_th=p_th,
                      th=np.array([T.bhx_weak_features_risk(q, n, norm2_in=q / D, norm2_out=1 - q / D,
                                                            sigma2=0.25) for q in p_th]),
                      label=f"Belkin-Hsu-Xu weak features, D = {D}, n = {n}, ||beta||^2 = 1, sigma^2 = 0.25")
    # Mei-Montanari: sphere of radius sqrt(d), centred ReLU, psi2 = n/d = 2
    d = 30 if smoke else 200
    zeta = T.relu_moments()["zeta"]
    psi2, tau2 = 2.0, 0.25
    psi1s = np.array([0.5, 1.5, 3.0, 5.0] if smoke else
                     [0.2, 0.5, 1.0, 1.5, 1.8, 1.9, 2.1, 2.2, 2.5, 3.0, 4.0, 5.0, 6.0])
    sims = [T.simulate_mei_montanari(d, int(round(q * d)), int(psi2 * d), tau2=tau2, seeds=seeds,
                                     n_test=500 if smoke else 2000) for q in psi1s]
    lam = 1e-3
    lam_bar = lam / T.relu_moments()["mu_star2"]
    q_th = np.geomspace(0.1, 6.5, 300)
    out["mm"] = dict(x_sim=psi1s, sim=sims, th_at_sim=[T.mm_risk(q, psi2, zeta, tau2=tau2) for q in psi1s],
                     x_th=q_th, th=np.array([T.mm_risk(q, psi2, zeta, tau2=tau2) for q in q_th]),
                     th_ridge=np.array([T.mm_risk(q, psi2, zeta, lam_bar=lam_bar, tau2=tau2) for q in q_th]),
                     lam=lam,
                     label=f"Mei-Montanari RF, sphere sqrt(d), d = {d}, n = {int(psi2 * d)}, centred ReLU, "
                           f"F1^2 = 1, tau^2 = 0.25")
    return out


def plot_theory(panels, n_seeds, path):
    """Three panels: each paper's formula (lines) against its simulations (mean +- sd over seeds)."""
    plt = cli.pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    h = panels["hmrt"]
    a = ax[0]
    a.plot(h["x_th"], h["th"], "b-", label="theory, ridgeless")
    a.plot(h["x_th"], h["th_ridge"], "g-", label="theory, optimal ridge")
    a.errorbar(h["x_sim"], [s.mean for s in h["sim"]], yerr=[s.std for s in h["sim"]], fmt="bo", ms=4,
               capsize=2, label=f"simulation min-norm ({n_seeds} seeds, mean +- sd)")
    a.errorbar(h["x_sim"], [s.mean for s in h["sim_ridge"]], yerr=[s.std for s in h["sim_ridge"]], fmt="gs",
               ms=4, capsize=2, label="simulation ridge lambda*")
    a.set(xscale="log", ylim=(0, 3), xlabel="gamma = p / n", ylabel="excess risk", title="Hastie et al.")
    a.legend(fontsize=7, loc="upper right")
    a.text(0.02, 0.02, h["label"], transform=a.transAxes, fontsize=6)
    b = panels["bhx"]
    a = ax[1]
    th = np.where(np.isfinite(b["th"]), b["th"], np.nan)
    a.plot(b["x_th"], th, "b-", label="theory (exact expectation)")
    a.errorbar(b["x_sim"], [s.mean for s in b["sim"]], yerr=[s.std for s in b["sim"]], fmt="bo", ms=4, capsize=2,
               label=f"simulation ({n_seeds} seeds)")
    a.set(ylim=(0, 6), xlabel="p (features used)", ylabel="risk (incl. noise)", title="Belkin-Hsu-Xu")
    a.legend(fontsize=7)
    a.text(0.02, 0.02, b["label"], transform=a.transAxes, fontsize=6)
    m = panels["mm"]
    a = ax[2]
    a.plot(m["x_th"], m["th"], "b-", label="theory, ridgeless")
    a.plot(m["x_th"], m["th_ridge"], "g--", label=f"theory, lambda = {m['lam']:g}")
    a.errorbar(m["x_sim"], [s.mean for s in m["sim"]], yerr=[s.std for s in m["sim"]], fmt="bo", ms=4, capsize=2,
               label=f"simulation min-norm ({n_seeds} seeds)")
    a.set(xscale="log", ylim=(0, 4), xlabel="psi1 = N / d", ylabel="test risk", title="Mei-Montanari")
    a.legend(fontsize=7)
    a.text(0.02, 0.02, m["label"], transform=a.transAxes, fontsize=6)
    fig.tight_layout()
    cli.save_figure(fig, path, dpi=110)


def theory_summary(panels):
    """Largest |sim - theory| / theory per panel, and in units of the standard error."""
    out = {}
    for key, p in panels.items():
        rel, z = [], []
        for s, t in zip(p["sim"], p["th_at_sim"]):
            if np.isfinite(t) and t > 0:
                rel.append(abs(s.mean - t) / t)
                se = s.std / np.sqrt(len(s.risks)) if len(s.risks) > 1 else 0.0
                if se > 0:  # one seed (or identical risks): no standard error, so no deviation in its units
                    z.append(abs(s.mean - t) / se)
        # None, never NaN, where a number is undefined
        out[key] = {"max_rel_dev": float(np.max(rel)) if rel else None,
                    "median_rel_dev": float(np.median(rel)) if rel else None,
                    "max_dev_in_se": float(np.max(z)) if z else None}
    return out


# ----------------------------------------------------------------------------- main
def build_parser():
    p = cli.make_parser(
        __doc__, script=__file__, data_home=True, out_dir="results/double_descent",
        smoke="seconds-long run: synthetic blobs (150 training points, 3 classes, s = 4) instead of MNIST, "
              "small theory panels, at most 2 seeds per simulation point")
    p.add_argument("--n-train", type=int, default=5_000, help="training images (the first N)")
    p.add_argument("--n-test", type=int, default=10_000, help="test images (the first N)")
    p.add_argument("--bandwidth", type=float, default=5.0,
                   help="scale s of the random Fourier features and of the Gaussian kernel limit")
    p.add_argument("--max-ratio", type=float, default=4.0, help="largest width / n")
    p.add_argument("--feature-seed", type=int, default=0,
                   help="first feature seed (seeds FEATURE_SEED, FEATURE_SEED + 1, ... are used)")
    p.add_argument("--n-feature-seeds", type=int, default=3, help="feature draws in (a) (spread shown)")
    p.add_argument("--figure-copy", default="benchmarks/figures/double_descent.png",
                   help="also save the MNIST figure here (the README figure; '' to skip; not in --smoke)")
    p.add_argument("--seeds", type=int, default=5,
                   help="seeds per synthetic simulation point in (b) (seeds 0, 1, ..., SEEDS - 1)")
    p.add_argument("--skip-theory", action="store_true", help="skip the synthetic theory panels (b)")
    p.add_argument("--skip-mnist", action="store_true", help="skip the random-feature sweep (a)")
    return p


def _seeds(args) -> dict:
    """Every seed that entered the run, by use (for the provenance of the JSON line)."""
    seeds: dict = {}
    if not args.skip_mnist:
        seeds["features"] = list(range(args.feature_seed, args.feature_seed + args.n_feature_seeds))
        if args.smoke:
            seeds["smoke_data"] = 0
    if not args.skip_theory:
        seeds["theory_simulations"] = list(range(args.seeds))
    return seeds


def _main(args):
    if args.smoke:
        args.seeds = min(args.seeds, 2)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    metrics: dict = {}

    if not args.skip_mnist:
        X, y, Xt, yt, name, bw = load_data(args)
        n = X.shape[0]
        widths = default_widths(n, max_ratio=args.max_ratio)
        log.info("(a) %s: %d widths from %d to %d, %d feature seeds", name, len(widths), widths[0], widths[-1],
                 args.n_feature_seeds)
        # the task is stated, not inferred: the figure and metrics are zero-one errors of class labels (a
        # regression sweep would have none); NaN metrics raise NonFiniteResultError in the sweep (exit 2)
        res = double_descent_sweep(X, y, Xt, yt, widths, kind="fourier", bandwidth=bw, task="classification",
                                   seeds=list(range(args.feature_seed, args.feature_seed + args.n_feature_seeds)),
                                   verbose=not args.quiet)
        fig_path = out_dir / ("mnist_double_descent.png" if not args.smoke else "smoke_double_descent.png")
        plot_sweep(res, f"Random Fourier features, s = {bw:g}, {name}, exact Phi^+ Y, seeds {res.seeds}", fig_path)
        te = res.mean("test_error")
        ip = int(np.argmax(te))
        i_n = int(np.argmin(np.abs(res.widths - n)))
        i4 = int(np.argmin(np.abs(res.widths - args.max_ratio * n)))
        kl = res.kernel_limit
        print(f"{name}: RFF s = {bw:g}, {len(widths)} widths from {widths[0]} to {widths[-1]}, "
              f"feature seeds {res.seeds}; Phi^+ Y from Phi at every width")
        print(f"{'N':>7} {'N/n':>6} {'test err (min-max)':>22} {'test sq':>10} {'||a||':>10} {'cond(Phi)':>9} "
              f"{'rank':>6} {'opt res':>8} {'fit res':>8} method")
        for i, N in enumerate(res.widths):
            e = 100 * res.test_error[:, i]
            print(f"{N:7d} {N / n:6.2f} {e.mean():7.2f}% ({e.min():5.2f}-{e.max():5.2f}) {res.mean('test_sq')[i]:10.4g} "
                  f"{res.mean('coef_norm')[i]:10.4g} {res.cond[0, i]:9.2e} {res.rank[0, i]:6d} "
                  f"{res.opt_residual[:, i].max():8.1e} {res.fit_residual[:, i].max():8.1e} {res.method[0, i]}")
        per_seed = []
        for j, sd in enumerate(res.seeds):
            jp = int(np.argmax(res.test_error[j]))
            per_seed.append({
                "seed": sd, "peak_width": int(res.widths[jp]),
                "test_error_at_n": float(res.test_error[j, i_n]), "test_sq_at_n": float(res.test_sq[j, i_n]),
                "coef_norm_at_n": float(res.coef_norm[j, i_n]), "rank_at_n": int(res.rank[j, i_n]),
                "cond_at_n": float(res.cond[j, i_n]), "method_at_n": str(res.method[j, i_n]),
                "opt_residual_at_n": float(res.opt_residual[j, i_n]), "fit_residual_at_n": float(res.fit_residual[j, i_n]),
            })
            print(f"seed {sd}: N = n: test error {100 * res.test_error[j, i_n]:.2f}%, test sq {res.test_sq[j, i_n]:.4g}, "
                  f"||a|| {res.coef_norm[j, i_n]:.5g}, rank {res.rank[j, i_n]}, cond {res.cond[j, i_n]:.3g} "
                  f"({res.method[j, i_n]}); largest test error at N = {res.widths[jp]}")

        def spread(key):
            v = res.__dict__[key][:, i_n]
            return {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
                    "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0}

        for key in ("test_error", "test_sq", "coef_norm"):
            sp = spread(key)
            print(f"spread over seeds at N = n, {key}: {sp['min']:.4g} - {sp['max']:.4g} (mean {sp['mean']:.4g}, "
                  f"sd {sp['sd']:.3g})")
        print(f"kernel limit (N -> inf): test error {100 * kl['test_error']:.2f}%, RKHS norm {kl['rkhs_norm']:.2f}, "
              f"solver {kl['solver']}")
        print("timings:", {k: round(v, 1) for k, v in res.timings.items()})
        meth, counts = np.unique(res.method, return_counts=True)
        metrics.update(
            dataset=name, n_train=n, n_test=int(Xt.shape[0]), bandwidth=bw, n_widths=len(widths),
            feature_seeds=res.seeds, peak_width=int(res.widths[ip]), peak_ratio=float(res.widths[ip] / n),
            test_error_at_peak=float(te[ip]), test_sq_at_peak=float(res.mean("test_sq")[ip]),
            coef_norm_at_peak=float(res.mean("coef_norm")[ip]), rank_at_peak=int(res.rank[0, ip]),
            at_n_per_seed=per_seed, at_n_spread={k: spread(k) for k in ("test_error", "test_sq", "coef_norm")},
            rank_at_n=[int(v) for v in res.rank[:, i_n]],
            width_4n=int(res.widths[i4]), test_error_at_4n=float(te[i4]),
            coef_norm_at_4n=float(res.mean("coef_norm")[i4]),
            test_error_kernel_limit=float(kl["test_error"]), kernel_rkhs_norm=float(kl["rkhs_norm"]),
            coef_norm_peak_width=int(res.peak_width("coef_norm")),
            methods={str(m): int(c) for m, c in zip(meth, counts)},
            max_opt_residual=float(np.max(res.opt_residual)),
            max_fit_residual_interpolating=float(np.max(res.fit_residual[:, res.widths >= n])),
            sweep_seconds=float(res.seconds), sweep_timings={k: float(v) for k, v in res.timings.items()},
        )
        if not args.smoke and args.figure_copy:
            Path(args.figure_copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fig_path, args.figure_copy)
            log.info("figure copied to %s", args.figure_copy)

    if not args.skip_theory:
        t1 = time.perf_counter()
        log.info("(b) theory panels: %d seeds per simulation point", args.seeds)
        panels = theory_panels(args)
        plot_theory(panels, args.seeds, out_dir / ("theory_vs_simulation.png" if not args.smoke
                                                   else "smoke_theory_vs_simulation.png"))
        summ = theory_summary(panels)
        for k, v in summ.items():
            if v["max_rel_dev"] is None:
                print(f"theory vs simulation [{k}]: no simulation point with a finite positive theory value")
                continue
            in_se = "n/a (one seed)" if v["max_dev_in_se"] is None else f"{v['max_dev_in_se']:.1f}"
            print(f"theory vs simulation [{k}]: max rel. deviation {100 * v['max_rel_dev']:.1f}%, "
                  f"median {100 * v['median_rel_dev']:.1f}%, max {in_se} standard errors")
        metrics["theory"] = summ
        metrics["theory_seeds"] = args.seeds
        metrics["theory_seconds"] = time.perf_counter() - t1

    metrics["seconds"] = time.perf_counter() - t0
    return cli.emit(metrics, json_out=args.json_out, seeds=_seeds(args))


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
