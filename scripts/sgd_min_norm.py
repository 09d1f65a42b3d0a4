#!/usr/bin/env python
"""SGD and GD against the minimum-norm limit on MNIST (Zhang et al. 2017, section 5), run to the limit
where the limit is reachable and measured against the predicted rate where it is not.

Three experiments, one-hot targets (10 right-hand sides), pixels / 255, iterates from ``w0 = 0``:

1. ``pixels-500``: linear least squares on the first 500 raw images (n = 500 < d = 784), primal form.
   kappa(X X^T) = 7.0e7: **this run does not reach its limit** in the default budget, and the script
   says so. SGD at B = 1, 10, 100 (2e6 samples each), SGD B = 1 at a quarter step, full-batch GD
   (2,000 steps) with its closed form extended until it reaches 1e-8.
2. ``pixels-200``: the same raw pixels, first 200 images. **This run reaches the limit** (relative
   distance <= 1e-8 to ``min_norm_solve``'s solution) with SGD B = 1 (primal form, so staying in
   the row space is measured), SGD B = 10 and full-batch GD (dual form, for speed).
   Why 200 and not 500: the first 500 images are nonzero on only 579 of the 784 pixels, so X is
   effectively a 500 x 579 matrix, nearly square, and its smallest singular value collapses
   (kappa(X X^T) = 7.0e7); the first 200 images touch 528 pixels (aspect 0.38) and
   kappa(X X^T) = 2.6e4. The number of steps is ~ln(1e8) / (eta lambda_min), proportional to
   kappa: 1.9e6 SGD B = 1 steps recorded at n = 200 (bound 4.2e6) against an estimated 6.3e9 (bound
   1.3e10) at n = 500 -- hours of computation, so it is not run. Nothing else changes: same pixels, same scaling, same targets,
   same step-size rule.
3. ``gaussian-2000``: Gaussian kernel (s = 5), n = 2,000, dual coordinates: kernel SGD at several
   batch sizes, kernel GD with its closed form; distance in alpha to ``kernel_interpolate``'s alpha.

Every run reports (JSON ``runs``): the final relative distance, ``converged`` (final distance
<= 1e-8: the limit counts as reached only then), the predicted per-step contraction
(``kernelgen.sgd.predicted_contraction``: GD ``max(|1 - eta lambda_min|, |1 - eta lambda_max|)``,
exact; SGD the factor of the mean error, same formula, and an upper bound on the factor of the
root-mean-square error ``sqrt(1 - eta (2 - eta c_B) lambda_min)``), the contraction measured on
the run (``measured_contraction``: slope of ln distance over the second half of the run, above a
1e-10 round-off floor), and the steps the limit needs (GD: first step of the closed form at
<= 1e-8; SGD: the bound from t = 0 and the estimate from the final distance at the mean rate).
A measured factor smaller than the predicted one on an unconverged run means the run is still
in its transient (faster modes decaying), not that the prediction failed.

Out of span: ``out_of_span = ||(I - P) w_t|| / ||w_t||`` of the float64
primal iterate. It is reported only for primal-form runs, where the updates themselves could
leave the row space; in the dual form and for kernel runs it is zero by construction and is
reported as ``null`` with that reason. One extra run shows that the metric detects an
out-of-span component: SGD (dual form) on pixels-200 from ``w0`` = a unit null-space vector of X
reports ``||(I - P) w_t||`` = 1 at every record (constant: every update lies in the row space, so the
limit keeps ``(I - X^+ X) w0``; derivation in ``proofs/gd_closed_form.py``).

    python scripts/sgd_min_norm.py            # MNIST defaults (minutes)
    python scripts/sgd_min_norm.py --smoke    # synthetic data, seconds
    python -m kernelgen.verify --only C1,C2   # the claims judged on the same code, with a verdict

The figure (PNG) goes to --out-dir. The last line of stdout is one JSON object with the per-run
fields above, kappas, the out-of-span demonstration and seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kernelgen import cli
from kernelgen.verify import synthetic_design  # shared with claims C1, C2

LIMIT = 1e-8  # relative distance at which the limit counts as reached
FLOOR = 1e-10  # contraction is measured above this (round-off floor ~ kappa * eps is below it)


def _records(steps: int, n_log: int = 150, n_lin: int = 41) -> np.ndarray:
    """Log-spaced records plus a linear grid (for the measured contraction)."""
    steps = int(steps)
    pts = np.r_[0, np.geomspace(1, steps, n_log), np.linspace(0, steps, n_lin)]
    return np.unique(np.round(pts).astype(np.int64))


def _far_steps(t_max: float) -> np.ndarray:
    return np.unique(np.round(np.geomspace(1, t_max, 400)).astype(np.int64))


def _first_below(steps, dist, level=LIMIT):
    hit = np.nonzero(np.asarray(dist) <= level)[0]
    return int(steps[hit[0]]) if hit.size else None


def _fmt(x, spec=".3e"):
    return "n/a" if x is None else format(x, spec)


def _run_record(experiment, name, tr, *, rate_distance=None, cf_steps=None, cf_dist=None, out_of_span=True):
    """Per-run fields: distance, converged, predicted / measured contraction, steps needed."""
    from kernelgen.sgd import measured_contraction, predicted_contraction

    dist = tr.distance if tr.distance_rkhs is None else np.maximum(tr.distance, tr.distance_rkhs)
    rd = tr.distance if rate_distance is None else rate_distance
    pc = predicted_contraction(tr)
    mc = measured_contraction(tr.steps, rd, floor=FLOOR)
    final = float(dist[-1])
    converged = bool(final <= LIMIT)
    T = int(tr.steps[-1])
    rec = {
        "experiment": experiment, "run": name, "method": tr.method, "form": tr.form, "batch_size": tr.batch_size,
        "step_size": float(tr.step_size), "steps": T, "seconds": tr.seconds,
        "final_distance": final, "converged": converged,
        "steps_to_1e-8_recorded": _first_below(tr.steps, dist),
        "predicted_contraction_mean": pc.mean, "predicted_contraction_rms_bound": pc.rms_bound,
        "predicted_is_exact": pc.exact, "measured_contraction": mc,
        "lambda_min_H": pc.lambda_min, "lambda_max_H": pc.lambda_max,
    }
    if tr.distance_rkhs is not None:
        rec["final_distance_alpha"] = float(tr.distance[-1])
        rec["final_distance_rkhs"] = float(tr.distance_rkhs[-1])
    if tr.method == "gd":
        # the closed form is exact: the first step at which it is <= 1e-8 (None: beyond the horizon)
        rec["steps_needed"] = _first_below(cf_steps, cf_dist) if cf_steps is not None else None
        rec["steps_needed_basis"] = "GD closed form (exact)"
    else:
        # bound: sqrt(E||e_t||^2) <= rms^t ||e_0|| from t = 0; estimate: final distance at the mean rate
        rec["steps_needed_bound"] = pc.steps_to(LIMIT, distance=1.0, rate="rms_bound")
        rec["steps_needed_estimate"] = None if converged else T + pc.steps_to(LIMIT, distance=final, rate="mean")
        rec["steps_needed"] = rec["steps_to_1e-8_recorded"] if converged else rec["steps_needed_estimate"]
        rec["steps_needed_basis"] = ("recorded" if converged else
                                     "estimate: final distance contracted at the predicted mean rate")
    if out_of_span and not tr.span_by_construction:
        rec["out_of_span_max"] = float(tr.out_of_span.max())
        rec["out_of_span_note"] = "primal float64 iterate, ||(I-P)w_t||/||w_t||"
    else:
        rec["out_of_span_max"] = None
        rec["out_of_span_note"] = "not measured: zero by construction (dual form / kernel coordinates)"
    return rec


def _print_runs(recs):
    print(f"  {'run':22} {'steps':>9} {'sec':>6} {'distance':>9} {'conv':>5} {'pred.mean':>12} {'pred.rms':>12} "
          f"{'measured':>12} {'steps needed':>12} {'out_of_span':>11}")
    for r in recs:
        print(f"  {r['run']:22} {r['steps']:>9d} {r['seconds']:>6.1f} {r['final_distance']:>9.2e} "
              f"{'yes' if r['converged'] else 'NO':>5} {1 - r['predicted_contraction_mean']:>12.3e} "
              f"{1 - r['predicted_contraction_rms_bound']:>12.3e} "
              f"{_fmt(None if r['measured_contraction'] is None else 1 - r['measured_contraction']):>12} "
              f"{_fmt(r['steps_needed'], '.2e'):>12} {_fmt(r['out_of_span_max'], '.1e'):>11}")
    print("  (contraction columns show 1 - factor per step; 'steps needed' to distance 1e-8: GD exact closed "
          "form, SGD recorded if converged, else the mean-rate estimate)")


def _linear_experiment(name, X, Y, *, batches, samples, gd_steps, gd_form, seed, quarter_step, replay_dual):
    """SGD (primal) at several batch sizes, optional quarter-step run and dual replay, GD + closed form."""
    from kernelgen.sgd import gd, gd_closed_form, sample_indices, sgd

    n = X.shape[0]
    lin = []
    for B in batches:
        steps = max(1, int(samples // B))
        lin.append((f"SGD B={B}, eta*", sgd(X, Y, steps=steps, key=seed, batch_size=B, form="primal",
                                            record_steps=_records(steps))))
    b1 = lin[0][1]
    T1 = int(b1.steps[-1])
    if quarter_step:
        lin.append(("SGD B=1, eta*/4", sgd(X, Y, steps=T1, key=seed, batch_size=1, step_size=b1.stability_bound / 8,
                                           form="primal", record_steps=_records(T1))))
    gap = None
    if replay_dual:  # the dual form replays the same indices: same trajectory
        idx = sample_indices(seed, n, T1, 1)
        dual = sgd(X, Y, steps=T1, indices=idx, batch_size=1, form="dual", record_steps=b1.steps)
        gap = float(np.linalg.norm(dual.iterates - b1.iterates) / np.linalg.norm(b1.iterates))
    g = gd(X, Y, steps=gd_steps, form=gd_form, record_steps=_records(gd_steps))
    far = _far_steps(max(1e13, 10 * gd_steps))
    cf = gd_closed_form(X, Y, step_size=g.step_size, steps=far)
    cf_dist = np.linalg.norm((cf - g.limit[None]).reshape(len(far), -1), axis=1) / np.linalg.norm(g.limit)
    recs = [_run_record(name, nm, tr) for nm, tr in lin]
    recs.append(_run_record(name, f"GD ({gd_form})", g, cf_steps=far, cf_dist=cf_dist))
    return lin, g, far, cf_dist, recs, gap


def build_parser():
    p = cli.make_parser(__doc__, script=__file__, data_home=True, out_dir="results/sgd_min_norm",
                        seed=0, seed_help="PRNG seed (jax.random key) of the sampled indices; the null-space start "
                                          "uses seed and seed + 1 (and the synthetic data seed .. seed + 2 in --smoke)",
                        smoke="tiny synthetic problems, seconds; no MNIST needed")
    p.add_argument("--n-linear", type=int, default=500, help="images for the ill-conditioned linear run")
    p.add_argument("--n-reach", type=int, default=200, help="images for the linear run taken to its limit")
    p.add_argument("--n-kernel", type=int, default=2000, help="images for the kernel run")
    p.add_argument("--bandwidth", type=float, default=5.0, help="Gaussian kernel scale s")
    p.add_argument("--linear-samples", type=float, default=2e6, help="samples per SGD run on pixels-500 (steps x B)")
    p.add_argument("--reach-steps", type=float, default=5e6, help="SGD B=1 steps on the reachable run")
    p.add_argument("--kernel-samples", type=float, default=5e6, help="steps of the kernel SGD B=1 run")
    p.add_argument("--kernel-batch-samples", type=float, default=2e6,
                   help="samples (steps x B) of each kernel SGD run with B > 1")
    p.add_argument("--kernel-batches", type=int, nargs="+", default=[1, 10], help="kernel batch sizes (first is 1)")
    p.add_argument("--gd-steps", type=int, default=2000, help="simulated GD steps (pixels-500 and kernel)")
    p.add_argument("--reach-gd-steps", type=int, default=500_000, help="GD steps on the reachable run (dual form)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100],
                   help="batch sizes of the pixels-500 SGD runs (first is 1)")
    return p


#: the options that size the MNIST runs; --smoke runs fixed tiny synthetic problems instead
MNIST_SIZES = ["n_linear", "n_reach", "n_kernel", "bandwidth", "linear_samples", "reach_steps", "kernel_samples",
               "kernel_batch_samples", "kernel_batches", "gd_steps", "reach_gd_steps", "batches"]


def check(args) -> None:
    """Refuse, before any data are loaded, options out of range or that do not apply."""
    import math

    from kernelgen.errors import InvalidInputError

    if args.seed < 0:
        raise InvalidInputError(f"--seed must be a non-negative integer, got {args.seed}.")
    if args.smoke:
        cli.refuse_options(args, ["data_home"] + MNIST_SIZES,
                           "with --smoke (it runs fixed tiny synthetic problems; no MNIST is read)")
        return
    for name in ("n_linear", "n_reach", "n_kernel"):
        if not 2 <= getattr(args, name) <= 60000:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be in [2, 60000], got {getattr(args, name)}.")
    if args.n_reach >= 784:  # the out-of-span demonstration starts in the null space of X (n < d = 784)
        raise InvalidInputError(f"--n-reach must be below the 784 pixels (X needs a null space), got {args.n_reach}.")
    lower = {"bandwidth": 0.0, "linear_samples": 1, "reach_steps": 5, "kernel_samples": 1, "kernel_batch_samples": 1}
    for name, lo in lower.items():  # reach_steps // 5 steps of the B = 10 run
        v = getattr(args, name)
        if not (math.isfinite(v) and v >= lo and v > 0):
            raise InvalidInputError(f"--{name.replace('_', '-')} must be a finite number "
                                    f"{'> 0' if lo == 0 else f'>= {lo}'}, got {v}.")
    for name in ("gd_steps", "reach_gd_steps"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    for name, n in (("batches", args.n_linear), ("kernel_batches", args.n_kernel)):
        b = getattr(args, name)
        if b[0] != 1 or min(b) < 1 or max(b) > n:
            raise InvalidInputError(f"--{name.replace('_', '-')} must start with 1 (the reference run) and lie in "
                                    f"[1, {n}], got {b}.")


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv, check=check)


def _main(args) -> dict:
    plt = cli.pyplot()
    import scipy.linalg

    from kernelgen import SolveOptions, kernel_interpolate
    from kernelgen.kernels import kernel_matrix
    from kernelgen.sgd import kernel_gd, kernel_sgd, sgd

    t_start, c_start = time.perf_counter(), time.process_time()
    sections: dict[str, dict[str, float]] = {}
    mark = [t_start, c_start]

    def lap(name):  # wall and process CPU seconds (all threads) since the previous lap; a phase ends here
        cli.check_interrupted()
        w, c = time.perf_counter(), time.process_time()
        sections[name] = {"wall": w - mark[0], "cpu": c - mark[1]}
        mark[:] = [w, c]
    out_dir = Path(args.out_dir)

    if args.smoke:
        X, Y = synthetic_design(30, 80, 1e2, args.seed)
        Xr, Yr = synthetic_design(20, 80, 30.0, args.seed + 2)
        rng = np.random.default_rng(args.seed + 1)
        Xk, Yk = rng.standard_normal((40, 6)), cli.one_hot(rng.integers(0, 10, 40), 10)
        bandwidth, lin_samples, ker_samples, gd_steps, batches = 1.0, 1e5, 1e5, 3000, [1, 5]
        ker_batch_samples, ker_batches = 1e5, [1, 5]
        reach_steps, reach_gd_steps = 100_000, 3000
        data = "synthetic (--smoke)"
    else:
        Xtr, ytr, _, _ = cli.load_mnist_scaled(n_train=max(args.n_linear, args.n_reach, args.n_kernel), n_test=0,
                                               data_home=args.data_home, verbose=not args.quiet)
        X, Y = Xtr[: args.n_linear], cli.one_hot(ytr[: args.n_linear], 10)
        Xr, Yr = Xtr[: args.n_reach], cli.one_hot(ytr[: args.n_reach], 10)
        Xk, Yk = Xtr[: args.n_kernel], cli.one_hot(ytr[: args.n_kernel], 10)
        bandwidth, lin_samples, ker_samples = args.bandwidth, args.linear_samples, args.kernel_samples
        ker_batch_samples, ker_batches = args.kernel_batch_samples, args.kernel_batches
        gd_steps, batches = args.gd_steps, args.batches
        reach_steps, reach_gd_steps = int(args.reach_steps), args.reach_gd_steps
        data = (f"MNIST first {args.n_linear} / {args.n_reach} (linear) and {args.n_kernel} (kernel) "
                f"training images, pixels/255")
    print(f"data: {data}")
    kind = "synthetic" if args.smoke else "pixels"
    ill = f"{kind}-{X.shape[0]}"
    reach = f"{kind}-{Xr.shape[0]}"

    lap("load")
    # ------------------------------------------------------------------ 1. ill-conditioned linear
    lin, g, far, cf_dist, recs_ill, primal_dual_gap = _linear_experiment(
        ill, X, Y, batches=batches, samples=lin_samples, gd_steps=gd_steps, gd_form="primal", seed=args.seed,
        quarter_step=True, replay_dual=True)
    kappa_lin = lin[0][1].condition_number
    n, d = X.shape
    active = int(np.sum(np.abs(X).max(axis=0) > 0))
    print(f"\n1. {ill}: linear least squares, n = {n}, d = {d} ({active} pixels nonzero in these images), "
          f"10 targets, kappa(X X^T) = {kappa_lin:.3e}, rank {lin[0][1].rank}")
    _print_runs(recs_ill)
    print(f"  GD closed form vs simulation: max gap {g.closed_form_gap.max():.2e} (relative to ||w*||); "
          f"primal vs dual SGD (same indices): max relative gap {primal_dual_gap:.2e}")
    n_conv = sum(r["converged"] for r in recs_ill)
    print(f"  {n_conv} of {len(recs_ill)} runs reached distance 1e-8"
          + ("; the limit is NOT reached here, the steps it needs are in the 'steps needed' column."
             if n_conv < len(recs_ill) else "."))

    lap(ill)
    # ------------------------------------------------------------------ 2. reachable linear
    from kernelgen.sgd import gd, gd_closed_form

    nr, dr = Xr.shape
    reach_runs = [
        ("SGD B=1, eta*", sgd(Xr, Yr, steps=reach_steps, key=args.seed, form="primal",
                              record_steps=_records(reach_steps))),
        ("SGD B=10, eta* (dual)", sgd(Xr, Yr, steps=reach_steps // 5, key=args.seed, batch_size=10, form="dual",
                                      record_steps=_records(reach_steps // 5))),
    ]
    rg = gd(Xr, Yr, steps=reach_gd_steps, form="dual", record_steps=_records(reach_gd_steps))
    far_r = _far_steps(max(1e10, 10 * reach_gd_steps))
    cf_r = gd_closed_form(Xr, Yr, step_size=rg.step_size, steps=far_r)
    cf_r_dist = np.linalg.norm((cf_r - rg.limit[None]).reshape(len(far_r), -1), axis=1) / np.linalg.norm(rg.limit)
    recs_reach = [_run_record(reach, nm, tr) for nm, tr in reach_runs]
    recs_reach.append(_run_record(reach, "GD (dual)", rg, cf_steps=far_r, cf_dist=cf_r_dist))
    kappa_reach = rg.condition_number
    active_r = int(np.sum(np.abs(Xr).max(axis=0) > 0))
    print(f"\n2. {reach}: the same pixels, n = {nr} ({active_r} pixels nonzero), kappa(X X^T) = {kappa_reach:.3e}")
    _print_runs(recs_reach)
    # out-of-span detection: start from a unit null-space vector of X (dual form: w = w0 + X^T alpha)
    _, _, Vt = scipy.linalg.svd(Xr, full_matrices=True)
    z = Vt[nr:].T @ np.random.default_rng(args.seed).standard_normal(dr - nr)
    z /= np.linalg.norm(z)
    w0 = np.repeat(z[:, None], Yr.shape[1], axis=1) / np.sqrt(Yr.shape[1])  # ||w0||_F = 1, X w0 = 0
    demo_steps = max(1000, reach_steps // 25)
    dz = sgd(Xr, Yr, steps=demo_steps, key=args.seed + 1, w0=w0, form="dual", record_steps=_records(demo_steps))
    null_abs = dz.out_of_span * np.linalg.norm(dz.iterates.reshape(len(dz.steps), -1), axis=1)
    demo = {
        "run": "SGD B=1 (dual) from a unit null-space w0", "steps": int(dz.steps[-1]),
        "null_component_start": float(null_abs[0]), "null_component_end": float(null_abs[-1]),
        "null_component_max_change": float(np.ptp(null_abs)),
        "out_of_span_start": float(dz.out_of_span[0]), "out_of_span_end": float(dz.out_of_span[-1]),
        "span_drift_max": float(dz.span_drift.max()),
    }
    print(f"  out-of-span detection: SGD from w0 in the null space of X (||w0|| = 1): ||(I-P)w_t|| = "
          f"{null_abs[0]:.15f} at t = 0 and {null_abs[-1]:.15f} at t = {demo_steps} (max change "
          f"{demo['null_component_max_change']:.1e}); out_of_span = ||(I-P)w_t||/||w_t|| falls "
          f"{dz.out_of_span[0]:.3f} -> {dz.out_of_span[-1]:.3f} as ||w_t|| grows")
    print("  out_of_span is reported for primal-form runs only (dual form / kernel: zero by construction)")

    lap(reach)
    # ------------------------------------------------------------------ 3. Gaussian kernel, dual
    t0 = time.perf_counter()
    K = kernel_matrix(Xk, kernel="gaussian", bandwidth=bandwidth, dtype=np.float64)
    # one eigendecomposition of K serves the reference solve, every kernel run and the closed forms
    ref = kernel_interpolate(K, Yk, kernel="precomputed", solver="min_norm", options=SolveOptions(keep_factor=True))
    eig = ref.factor
    nk = K.shape[0]
    ker = []
    for B in ker_batches:
        steps = max(1, int((ker_samples if B == 1 else ker_batch_samples) // B))
        ker.append((f"SGD B={B}, eta*", kernel_sgd(K, Yk, steps=steps, key=args.seed, batch_size=B,
                                                   reference=ref.alpha, record_steps=_records(steps, 80, 31),
                                                   factor=eig)))
    k1 = ker[0][1]
    T1 = int(k1.steps[-1])
    T4 = max(1, T1 // 2)
    ker.append(("SGD B=1, eta*/4", kernel_sgd(K, Yk, steps=T4, key=args.seed, step_size=k1.stability_bound / 8,
                                              reference=ref.alpha, record_steps=_records(T4, 80, 31),
                                              factor=eig)))
    kg = kernel_gd(K, Yk, steps=gd_steps, reference=ref.alpha, record_steps=_records(gd_steps), factor=eig)
    lam, Q = eig.eigenvalues, eig.eigenvectors
    c0 = Q.T @ (0.0 - ref.alpha)  # alpha0 = 0
    far_k = _far_steps(1e13)
    fac = np.power(1.0 - kg.step_size * np.clip(lam, 0, None)[None, :] / nk, far_k[:, None].astype(float))
    kcf_dist = np.sqrt(np.einsum("tr,rk->t", fac**2, c0**2)) / np.linalg.norm(ref.alpha)
    ker_name = f"gaussian-{nk}"
    recs_ker = [_run_record(ker_name, nm, tr, rate_distance=tr.distance_rkhs) for nm, tr in ker]
    recs_ker.append(_run_record(ker_name, "GD (kernel)", kg, rate_distance=kg.distance_rkhs, cf_steps=far_k,
                                cf_dist=kcf_dist))
    kappa_K = k1.condition_number
    print(f"\n3. {ker_name}: Gaussian kernel s = {bandwidth}, n = {nk}, kappa(K) = {kappa_K:.3e}; "
          f"kernel_interpolate solver {ref.solver}, relative residual {ref.relative_residual:.1e}")
    _print_runs(recs_ker)
    print(f"  distance = max(alpha distance, RKHS distance); contraction measured on the RKHS distance; "
          f"GD closed form vs simulation: max gap {kg.closed_form_gap.max():.2e}")
    kernel_seconds = time.perf_counter() - t0

    lap(f"gaussian-{nk}")
    # ------------------------------------------------------------------ figure
    fig, ax = plt.subplots(1, 3, figsize=(18, 4.8))

    def panel(a, runs, g_tr, cf_s, cf_d, title, key="distance"):
        for nm, tr in runs:
            m = tr.steps > 0
            a.loglog(tr.steps[m], getattr(tr, key)[m], label=f"{nm} ({tr.step_size:.2g})")
        m = g_tr.steps > 0
        a.loglog(g_tr.steps[m], getattr(g_tr, key)[m], "k-", lw=2.5, alpha=0.5, label="GD simulated")
        s, dd = cf_s, cf_d
        hit = np.nonzero(dd <= 1e-10)[0]
        k = hit[0] + 1 if hit.size else len(s)
        a.loglog(s[:k], dd[:k], "k--", lw=1, label="GD closed form")
        a.axhline(LIMIT, color="grey", lw=0.5)
        a.set(xlabel="step t", ylim=(1e-14, 3), title=title)
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=7)

    panel(ax[0], lin, g, far, cf_dist,
          f"{ill}: kappa(XX^T)={kappa_lin:.1e}, NOT at the limit")
    ax[0].set_ylabel(r"$\|w_t - w^*\| / \|w^*\|$")
    est = recs_ill[0]["steps_needed"]  # SGD B=1: final distance contracted at the predicted mean rate
    if not recs_ill[0]["converged"] and est is not None and np.isfinite(est):
        ax[0].axvline(est, color="C0", ls=":", lw=1)
        ax[0].text(est, 1e-3, f" SGD B=1 needs\n ~{est:.1e} steps\n (predicted)", color="C0", fontsize=7, ha="right")
    panel(ax[1], reach_runs, rg, far_r, cf_r_dist, f"{reach}: kappa(XX^T)={kappa_reach:.1e}, reaches 1e-8")
    b1r = reach_runs[0][1]
    from kernelgen.sgd import predicted_contraction

    pc = predicted_contraction(b1r)
    tt = np.geomspace(1, b1r.steps[-1], 200)
    ax[1].loglog(tt, pc.rms_bound**tt, ":", color="C0", label="SGD B=1: RMS bound (predicted)")
    ax[1].legend(fontsize=7)
    panel(ax[2], ker, kg, far_k, kcf_dist, f"Gaussian s={bandwidth:g}, n={nk}: kappa(K)={kappa_K:.1e}, B=1 reaches 1e-8")
    ax[2].set_ylabel(r"$\|\alpha_t - \alpha^*\| / \|\alpha^*\|$")
    fig.tight_layout()
    fig_path = cli.save_figure(fig, out_dir / "sgd_min_norm.png", dpi=110)

    lap("figure")
    runs = recs_ill + recs_reach + recs_ker
    seconds = time.perf_counter() - t_start
    cpu_seconds = time.process_time() - c_start
    metrics = {
        "data": data,
        "limit_level": LIMIT,
        "runs_converged": [f"{r['experiment']}: {r['run']}" for r in runs if r["converged"]],
        "runs_not_converged": [f"{r['experiment']}: {r['run']}" for r in runs if not r["converged"]],
        "min_distance_reachable_linear": min(r["final_distance"] for r in recs_reach),
        "kappa_linear_XXt": kappa_lin,
        "kappa_reachable_XXt": kappa_reach,
        "kappa_kernel": kappa_K,
        "active_pixels": {ill: active, reach: active_r},
        "primal_dual_gap": primal_dual_gap,
        "gd_closed_form_gap_linear": float(g.closed_form_gap.max()),
        "gd_closed_form_gap_reachable": float(rg.closed_form_gap.max()),
        "gd_closed_form_gap_kernel": float(kg.closed_form_gap.max()),
        "out_of_span_max_primal_runs": max(r["out_of_span_max"] for r in runs if r["out_of_span_max"] is not None),
        "out_of_span_detection": demo,
        "kernel_seconds": kernel_seconds,
        "runs": runs,
        "figures": [str(fig_path)],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "section_seconds": sections,
    }
    print(f"\n{len(metrics['runs_converged'])} of {len(runs)} runs reached relative distance {LIMIT:g} "
          f"(converged: {', '.join(metrics['runs_converged']) or 'none'}); "
          f"max out_of_span over primal runs {metrics['out_of_span_max_primal_runs']:.1e}; {seconds:.1f} s wall, "
          f"{cpu_seconds:.1f} s CPU; sections (wall/CPU s): "
          + ", ".join(f"{k} {v['wall']:.0f}/{v['cpu']:.0f}" for k, v in sections.items()) + "; "
          f"figure {fig_path}")
    seeds = {"sgd_indices": args.seed, "null_space_start": args.seed, "null_space_sgd": args.seed + 1}
    if args.smoke:
        seeds.update(synthetic_linear=args.seed, synthetic_reach=args.seed + 2, synthetic_kernel=args.seed + 1)
    return cli.emit(metrics, json_out=args.json_out, seeds=seeds)


if __name__ == "__main__":
    raise SystemExit(main())
