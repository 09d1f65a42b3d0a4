#!/usr/bin/env python
"""SGD trajectories against the minimum-norm limit on MNIST (Zhang et al. 2017, section 5).

Two experiments, one-hot targets (10 right-hand sides), pixels / 255:

1. Linear least squares on pixels, n = 500 < d = 784, in the *primal* form (so that
   staying in the row space is measured, not built in): SGD at several batch sizes and
   step sizes, full-batch GD with its closed form overlaid (extended far beyond the
   simulated steps), the relative distance to ``min_norm_solve``'s solution and the
   relative component outside the row span.
2. Gaussian kernel (s = 5) in dual coordinates, n = 2,000: kernel SGD on K alpha = Y at
   several batch sizes and steps, kernel GD with its closed form, distance in alpha to
   ``kernel_interpolate``'s alpha; kappa(K) reported.

    python scripts/sgd_min_norm.py            # MNIST defaults (a few minutes on 2 cores)
    python scripts/sgd_min_norm.py --smoke    # seconds, synthetic data (used by the tests)

Figures (PNG) go to --out-dir (default results/sgd_min_norm/). The last line of stdout is
one JSON object: max_distance_to_min_norm and max_out_of_span (final values over all runs),
seconds, kappas, per-run finals and the GD closed form's steps to reach 1e-8.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np


def _synthetic(n: int, d: int, kappa: float, seed: int):
    """X (n, d) with kappa(X X^T) = kappa, one-hot-like targets (n, 10), from a seed."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    V = np.linalg.qr(rng.standard_normal((d, n)))[0]
    X = (U * np.geomspace(1.0, kappa**-0.5, n)) @ V.T
    return X, np.eye(10)[rng.integers(0, 10, n)]


def _far_steps(t_max: float) -> np.ndarray:
    return np.unique(np.round(np.geomspace(1, t_max, 300)).astype(np.int64))


def _until_below(steps, dist, level=1e-10):
    """The closed-form curve up to (and including) its first point below ``level``."""
    hit = np.nonzero(dist <= level)[0]
    k = hit[0] + 1 if hit.size else len(steps)
    return steps[:k], dist[:k]


def _first_below(steps, dist, level=1e-8):
    hit = np.nonzero(dist <= level)[0]
    return int(steps[hit[0]]) if hit.size else None


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-linear", type=int, default=500, help="images for the linear run (n < d = 784)")
    p.add_argument("--n-kernel", type=int, default=2000, help="images for the kernel run")
    p.add_argument("--bandwidth", type=float, default=5.0, help="Gaussian kernel scale s")
    p.add_argument("--linear-samples", type=float, default=2e6, help="samples visited per linear SGD run (steps x B)")
    p.add_argument("--kernel-samples", type=float, default=5e6, help="samples visited per kernel SGD run (steps x B)")
    p.add_argument("--gd-steps", type=int, default=2000, help="simulated full-batch GD steps")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100], help="batch sizes")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (jax.random key) for the sampled indices")
    p.add_argument("--out-dir", default="results/sgd_min_norm", help="where the PNG figures go")
    p.add_argument("--json-out", default=None, help="also write the JSON metrics here")
    p.add_argument("--smoke", action="store_true", help="tiny synthetic run in seconds (no MNIST)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.linalg

    from kernelgen import kernel_interpolate
    from kernelgen.kernels import kernel_matrix
    from kernelgen.sgd import gd, gd_closed_form, kernel_gd, kernel_sgd, sample_indices, sgd

    t_start = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if args.smoke:
        X, Y = _synthetic(30, 80, 1e2, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        Xk, Yk = rng.standard_normal((40, 6)), np.eye(10)[rng.integers(0, 10, 40)]
        bandwidth, lin_samples, ker_samples, gd_steps, batches = 1.0, 1e5, 1e5, 3000, [1, 5]
        data = "synthetic (--smoke)"
    else:
        from kernelgen.datasets import load_mnist

        Xtr, ytr, _, _ = load_mnist()
        X = Xtr[: args.n_linear].astype(np.float64) / 255.0
        Y = np.eye(10)[ytr[: args.n_linear]]
        Xk = Xtr[: args.n_kernel].astype(np.float64) / 255.0
        Yk = np.eye(10)[ytr[: args.n_kernel]]
        bandwidth, lin_samples, ker_samples = args.bandwidth, args.linear_samples, args.kernel_samples
        gd_steps, batches = args.gd_steps, args.batches
        data = f"MNIST first {args.n_linear} (linear) / {args.n_kernel} (kernel) training images, pixels/255"
    print(f"data: {data}")
    runs = []

    # ------------------------------------------------------------------ linear, primal form
    n, d = X.shape
    lin = []
    for B in batches:
        steps = max(1, int(lin_samples // B))
        lin.append((f"SGD B={B}, eta*", sgd(X, Y, steps=steps, key=args.seed, batch_size=B, form="primal")))
    b1 = lin[0][1]
    steps1 = b1.steps[-1]
    lin.append((
        "SGD B=1, eta*/4",
        sgd(X, Y, steps=int(steps1), key=args.seed, batch_size=1, step_size=b1.stability_bound / 8, form="primal"),
    ))
    # the dual form replays the same indices: same trajectory
    idx = sample_indices(args.seed, n, int(steps1), 1)
    dual = sgd(X, Y, steps=int(steps1), indices=idx, batch_size=1, form="dual")
    primal_dual_gap = float(np.linalg.norm(dual.iterates - b1.iterates) / np.linalg.norm(b1.iterates))
    g = gd(X, Y, steps=gd_steps, form="primal")
    t_far = 1e13
    far = _far_steps(t_far)
    cf = gd_closed_form(X, Y, step_size=g.step_size, steps=far)
    cf_dist = np.linalg.norm((cf - g.limit[None]).reshape(len(far), -1), axis=1) / np.linalg.norm(g.limit)
    lin_gd_steps_to_1e8 = _first_below(far, cf_dist)
    kappa_lin = b1.condition_number
    print(f"\nlinear least squares, n = {n}, d = {d}, 10 targets, kappa(X X^T) = {kappa_lin:.3e}, rank {b1.rank}")
    print(f"  {'run':22} {'steps':>9} {'seconds':>8} {'distance':>10} {'out_of_span(max)':>17} {'loss':>10}")
    for name, tr in lin + [("GD eta=1/lambda_max", g)]:
        print(f"  {name:22} {tr.steps[-1]:>9d} {tr.seconds:>8.2f} {tr.distance[-1]:>10.3e} "
              f"{tr.out_of_span.max():>17.3e} {tr.loss[-1]:>10.3e}")
        runs.append({"experiment": "linear", "run": name, "steps": int(tr.steps[-1]), "batch_size": tr.batch_size,
                     "final_distance": float(tr.distance[-1]), "final_out_of_span": float(tr.out_of_span[-1]),
                     "max_out_of_span": float(tr.out_of_span.max()), "seconds": tr.seconds})
    print(f"  GD closed form vs simulation: max gap {g.closed_form_gap.max():.2e} (relative to ||w*||)")
    print(f"  primal vs dual SGD (same indices): max relative gap {primal_dual_gap:.2e}")
    print(f"  GD closed form reaches distance 1e-8 at t = {lin_gd_steps_to_1e8} steps"
          f" (distance at t = {g.steps[-1]}: {g.distance[-1]:.3e})")

    fig, ax = plt.subplots(1, 3, figsize=(18, 4.8))
    ynorm = np.linalg.norm(Y)

    def resid(tr, m):
        return np.linalg.norm((tr.predictions[m] - Y[None]).reshape(m.sum(), -1), axis=1) / ynorm

    for name, tr in lin:
        m = tr.steps > 0
        ax[0].loglog(tr.steps[m], tr.distance[m], label=f"{name} ({tr.step_size:.2g})")
        ax[1].loglog(tr.steps[m], resid(tr, m), label=name)
        ax[2].semilogy(tr.steps[m], np.maximum(tr.out_of_span[m], 1e-18), label=name)
    m = g.steps > 0
    ax[0].loglog(g.steps[m], g.distance[m], "k-", lw=2.5, alpha=0.5, label="GD simulated")
    ax[0].loglog(*_until_below(far, cf_dist), "k--", lw=1, label="GD closed form")
    ax[1].loglog(g.steps[m], resid(g, m), "k-", lw=2.5, alpha=0.5, label="GD simulated")
    flow = np.linalg.norm((g.gradient_flow[m] - Y[None]).reshape(m.sum(), -1), axis=1) / ynorm
    ax[1].loglog(g.steps[m], flow, "k:", lw=1.5, label=r"gradient flow $y+e^{-\eta t XX^T/N}(f_0-y)$")
    ax[2].semilogy(g.steps[m], np.maximum(g.out_of_span[m], 1e-18), "k-", label="GD")
    ax[2].set_xscale("log")
    ax[0].set(xlabel="step t", ylabel=r"$\|w_t - w^*\| / \|w^*\|$", ylim=(1e-9, 3),
              title=f"linear, n={n}, d={d}: distance to min-norm ($\\kappa(XX^T)$={kappa_lin:.1e})")
    ax[1].set(xlabel="step t", ylabel=r"$\|Xw_t - Y\| / \|Y\|$", title="training residual (function space)")
    ax[2].set(xlabel="step t", ylabel=r"$\|(I-P_{row})w_t\| / \|w_t\|$", title="component outside the row span (primal form)")
    ax[0].axhline(1e-8, color="grey", lw=0.5)
    for a in ax:
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "sgd_min_norm_linear.png", dpi=120)
    plt.close(fig)

    # ------------------------------------------------------------------ Gaussian kernel, dual
    t0 = time.perf_counter()
    K = kernel_matrix(Xk, kernel="gaussian", bandwidth=bandwidth, dtype=np.float64)
    ref = kernel_interpolate(K, Yk, kernel="precomputed")
    nk = K.shape[0]
    ker = []
    for B in batches:
        steps = max(1, int(ker_samples // B))
        ker.append((f"SGD B={B}, eta*", kernel_sgd(K, Yk, steps=steps, key=args.seed, batch_size=B, reference=ref.alpha)))
    k1 = ker[0][1]
    ker.append((
        "SGD B=1, eta*/4",
        kernel_sgd(K, Yk, steps=int(k1.steps[-1]), key=args.seed, step_size=k1.stability_bound / 8, reference=ref.alpha),
    ))
    kg = kernel_gd(K, Yk, steps=gd_steps, reference=ref.alpha)
    lam, Q = scipy.linalg.eigh(K)
    c0 = Q.T @ (0.0 - ref.alpha)  # alpha0 = 0
    fac = np.power(1.0 - kg.step_size * np.clip(lam, 0, None)[None, :] / nk, far[:, None].astype(float))
    kcf_dist = np.sqrt(np.einsum("tr,rk->t", fac**2, c0**2)) / np.linalg.norm(ref.alpha)
    ker_gd_steps_to_1e8 = _first_below(far, kcf_dist)
    kappa_K = k1.condition_number
    print(f"\nGaussian kernel s = {bandwidth}, n = {nk}, 10 targets, kappa(K) = {kappa_K:.3e}; "
          f"kernel_interpolate solver {ref.solver}, relative residual {ref.relative_residual:.1e}")
    print(f"  {'run':22} {'steps':>9} {'seconds':>8} {'dist(alpha)':>11} {'dist(RKHS)':>10} {'loss':>10}")
    for name, tr in ker + [("GD eta=1/lambda_max", kg)]:
        print(f"  {name:22} {tr.steps[-1]:>9d} {tr.seconds:>8.2f} {tr.distance[-1]:>11.3e} "
              f"{tr.distance_rkhs[-1]:>10.3e} {tr.loss[-1]:>10.3e}")
        runs.append({"experiment": "kernel", "run": name, "steps": int(tr.steps[-1]), "batch_size": tr.batch_size,
                     "final_distance": float(tr.distance[-1]), "final_distance_rkhs": float(tr.distance_rkhs[-1]),
                     "final_out_of_span": float(tr.out_of_span[-1]), "max_out_of_span": float(tr.out_of_span.max()),
                     "seconds": tr.seconds})
    print(f"  GD closed form vs simulation: max gap {kg.closed_form_gap.max():.2e}; closed form reaches 1e-8 at "
          f"t = {ker_gd_steps_to_1e8}")
    kernel_seconds = time.perf_counter() - t0

    fig, ax = plt.subplots(1, 2, figsize=(13, 4.8))
    for name, tr in ker:
        m = tr.steps > 0
        ax[0].loglog(tr.steps[m], tr.distance[m], label=f"{name} ({tr.step_size:.2g})")
        res = np.linalg.norm((tr.predictions[m] - Yk[None]).reshape(m.sum(), -1), axis=1) / np.linalg.norm(Yk)
        ax[1].loglog(tr.steps[m], res, label=name)
    m = kg.steps > 0
    ax[0].loglog(kg.steps[m], kg.distance[m], "k-", lw=2.5, alpha=0.5, label="GD simulated")
    ax[0].loglog(*_until_below(far, kcf_dist), "k--", lw=1, label="GD closed form")
    res = np.linalg.norm((kg.predictions[m] - Yk[None]).reshape(m.sum(), -1), axis=1) / np.linalg.norm(Yk)
    flow = np.linalg.norm((kg.gradient_flow[m] - Yk[None]).reshape(m.sum(), -1), axis=1) / np.linalg.norm(Yk)
    ax[1].loglog(kg.steps[m], res, "k-", lw=2.5, alpha=0.5, label="GD simulated")
    ax[1].loglog(kg.steps[m], flow, "k:", lw=1.5, label=r"gradient flow $y+e^{-\eta t K/N}(f_0-y)$")
    ax[0].axhline(1e-8, color="grey", lw=0.5)
    ax[0].set(xlabel="step t", ylabel=r"$\|\alpha_t - \alpha^*\| / \|\alpha^*\|$", ylim=(1e-9, 3),
              title=f"Gaussian kernel s={bandwidth:g}, n={nk}: distance in $\\alpha$ ($\\kappa(K)$={kappa_K:.1e})")
    ax[1].set(xlabel="step t", ylabel=r"$\|K\alpha_t - Y\| / \|Y\|$", title="training residual (function space)")
    for a in ax:
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "sgd_min_norm_kernel.png", dpi=120)
    plt.close(fig)

    seconds = time.perf_counter() - t_start
    metrics = {
        "data": data,
        "max_distance_to_min_norm": max(r["final_distance"] for r in runs),
        "max_out_of_span": max(r["final_out_of_span"] for r in runs),
        "max_out_of_span_all_records": max(r["max_out_of_span"] for r in runs),
        "min_distance_to_min_norm": min(r["final_distance"] for r in runs),
        "kappa_linear_XXt": kappa_lin,
        "kappa_kernel": kappa_K,
        "primal_dual_gap": primal_dual_gap,
        "gd_closed_form_gap_linear": float(g.closed_form_gap.max()),
        "gd_closed_form_gap_kernel": float(kg.closed_form_gap.max()),
        "linear_gd_steps_to_1e-8": lin_gd_steps_to_1e8,
        "kernel_gd_steps_to_1e-8": ker_gd_steps_to_1e8,
        "kernel_seconds": kernel_seconds,
        "runs": runs,
        "figures": [str(out_dir / "sgd_min_norm_linear.png"), str(out_dir / "sgd_min_norm_kernel.png")],
        "seconds": seconds,
    }
    print(f"\nfinal distance to the min-norm limit over all runs: max {metrics['max_distance_to_min_norm']:.3e}, "
          f"min {metrics['min_distance_to_min_norm']:.3e}; max out-of-span {metrics['max_out_of_span_all_records']:.2e}; "
          f"{seconds:.1f} s; figures in {out_dir}/")
    line = json.dumps(metrics)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line)
    return metrics


if __name__ == "__main__":
    main()
