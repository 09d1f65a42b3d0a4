#!/usr/bin/env python
"""Benchmark: the exact Gaussian MNIST learning curve at the price of one factor, against one solve.

    python benchmarks/bench_learning_curve.py                                   # n = 1k ... 60k (issue 22)
    python benchmarks/bench_learning_curve.py --sizes 1000 2000 5000 --separate run   # a small check
    python benchmarks/bench_learning_curve.py --figure benchmarks/figures/learning_curve_mnist.png

Gaussian kernel s = 5 on pixels / 255, one-hot targets, the full test set (or ``--n-test``). Three phases,
each in its own process (so that each peak RSS is its own), all on this machine in this run:

- **nested**: ``kernelgen.learning_curve(..., subsets="nested")`` at every size: one seeded permutation
  of the 60,000 training images (``numpy.random.default_rng(seed).permutation``), its prefixes, ONE
  Cholesky factor of the largest prefix preconditioning the certified float64 iteration of every size;
  every point's test error, residual, float64 passes and seconds (including its test predictions);
- **single** (``--skip-single`` to skip): ``kernelgen.kernel_interpolate`` on the largest prefix (the
  same rows) plus its test predictions -- the solve the curve is compared with;
- **separate**: ``--separate price`` (default) prices one solve per size from this run's own numbers:
  the largest system's kernel fill, factorisation and float64 iteration scaled by (n / N)^2, (n / N)^3
  and (n / N)^2 (the single solve's when it ran, else the curve's shared ones), plus the point's own
  measured certification and predictions (a separate solve at n <= 4,096 would factor in float64 and
  need fewer passes -- the price is an estimate). ``--separate run`` runs every size as its own
  ``kernel_interpolate`` (timed); ``none`` skips it.

The summary prints the curve and the times; the last line of stdout is one JSON object (with the
SGEMM rate measured in this run in its provenance).
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import gemm_rate, machine  # noqa: E402

from kernelgen import cli, kernel_interpolate  # noqa: E402
from kernelgen.errors import InvalidInputError  # noqa: E402
from kernelgen.kernels import Gaussian  # noqa: E402
from kernelgen.learning_curve import learning_curve, plot_learning_curve  # noqa: E402

log = logging.getLogger("bench_learning_curve")

SIZES = [1000, 2000, 5000, 10000, 20000, 30000, 45000, 60000]


def build_parser():
    p = cli.make_parser(__doc__, script=__file__, seed=0, seed_help="seed of the permutation of the training set",
                        data_home=True)
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="training-set sizes of the curve")
    p.add_argument("--bandwidth", type=float, default=5.0, help="Gaussian bandwidth s (pixels / 255)")
    p.add_argument("--n-test", type=int, default=None, help="first test images used (default: all 10,000)")
    p.add_argument("--skip-single", action="store_true", help="do not run the single solve of the largest size")
    p.add_argument("--separate", choices=("price", "run", "none"), default="price",
                   help="separate solves per size: priced from this run, run, or neither")
    p.add_argument("--figure", type=cli.OutputPath(), default=None, metavar="PNG",
                   help="also draw the curve (log-log, slope fitted on the last decade of sizes) to this PNG")
    p.add_argument("--phase", choices=("all", "nested", "single", "separate"), default="all",
                   help="internal: run one phase in this process (the benchmark runs each in its own)")
    return p


def _check(args):
    s = args.sizes
    if any(b <= a for a, b in itertools.pairwise(s)) or s[0] < 1 or s[-1] > 60000:
        raise InvalidInputError(f"--sizes must be strictly increasing in [1, 60000], got {s}")


def _data(args):
    X, y, Xt, yt = cli.load_mnist_scaled(n_test=args.n_test, data_home=args.data_home, verbose=not args.quiet)
    return X, cli.one_hot(y, 10), Xt, cli.one_hot(yt, 10)


def _timed_solve(X, Y, Xt, Yt, rows, kern, verbose):
    """kernel_interpolate on ``rows`` plus the test predictions, timed (what one point of a curve costs alone)."""
    t0 = time.perf_counter()
    fit = kernel_interpolate(X[rows], Y[rows], kernel=kern, verbose=verbose)
    t_solve = time.perf_counter() - t0
    P = fit.predict(Xt, verbose=verbose)
    wall = time.perf_counter() - t0
    return {"n": int(rows.size), "seconds": wall, "solve_seconds": t_solve, "predict_seconds": wall - t_solve,
            "timings": {k: float(v) for k, v in fit.timings.items()},
            "test_error": float(np.mean(P.argmax(1) != Yt.argmax(1))),
            "relative_residual": float(fit.relative_residual), "float64_passes": int(fit.n_matvecs),
            "factor_dtype": str(fit.factor_dtype), "residual_mode": str(fit.residual_mode),
            "rkhs_norm": float(fit.rkhs_norm)}


def _phase(args):
    """One phase in this process; its JSON line is read by the parent."""
    X, Y, Xt, Yt = _data(args)
    kern = Gaussian(bandwidth=args.bandwidth)
    verbose = not args.quiet
    if args.phase == "nested":
        t0 = time.perf_counter()
        lc = learning_curve(X, Y, Xt, Yt, kernel=kern, sizes=args.sizes, seeds=(args.seed,), verbose=verbose)
        out = {"phase": "nested", "wall_seconds": time.perf_counter() - t0, "curve": lc.to_dict()}
        if args.figure is not None:
            lo = max(args.sizes[0], args.sizes[-1] / 10)
            fits = [n for n in args.sizes if n >= lo]
            plot_learning_curve(lc, args.figure, fit_range=(lo, args.sizes[-1]) if len(fits) >= 3 else None)
            out["figure"] = str(args.figure)
    else:
        perm = np.random.default_rng(args.seed).permutation(X.shape[0])
        sizes = [args.sizes[-1]] if args.phase == "single" else args.sizes
        runs = [_timed_solve(X, Y, Xt, Yt, perm[:n], kern, verbose) for n in sizes]
        out = {"phase": args.phase, "runs": runs}
    out["peak_rss_gb"] = cli.peak_rss_gb()
    return cli.emit(out, json_out=args.json_out, seeds={"permutation": args.seed})


def _run_phase(args, phase):
    cmd = [sys.executable, __file__, "--phase", phase, "--seed", str(args.seed), "--bandwidth", str(args.bandwidth),
           "--sizes", *map(str, args.sizes), *(["--quiet"] if args.quiet else [])]
    if args.n_test is not None:
        cmd += ["--n-test", str(args.n_test)]
    if args.data_home is not None:
        cmd += ["--data-home", str(args.data_home)]
    if phase == "nested" and args.figure is not None:
        cmd += ["--figure", str(args.figure)]
    log.info("phase %s: %s", phase, " ".join(cmd))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # stderr (progress, log) passes through
    if r.returncode != 0:
        sys.exit(f"phase {phase} failed ({r.returncode})")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["subprocess_wall_seconds"] = time.perf_counter() - t0
    return out


def _priced_separate(curve, single):
    """Seconds of one separate solve per size, priced from this run (module docstring)."""
    n_max = curve["sizes"][-1]
    if single is not None:
        t = single["timings"]
        kernel_s, factor_s, iter_s, source = t["kernel"], t["factor"], t["refine"], "the single solve"
    else:
        kernel_s, factor_s = curve["kernel_seconds"], curve["factor_seconds"]
        iter_s, source = curve["shared_iteration_seconds"], "the curve's shared phases"
    rows = []
    for p in curve["points"]:
        r = p["n"] / n_max
        parts = {"kernel_s": kernel_s * r**2, "factor_s": factor_s * r**3, "iteration_s": iter_s * r**2,
                 "certify_and_predict_s": p["seconds"]}
        rows.append({"n": p["n"], **parts, "seconds": sum(parts.values())})
    return {"source": source, "rows": rows, "total_seconds": float(sum(r["seconds"] for r in rows))}


def _main(args):
    if args.phase != "all":
        return _phase(args)
    info = machine()
    r_s = gemm_rate(np.float32)
    nested = _run_phase(args, "nested")
    single = None if args.skip_single else _run_phase(args, "single")
    s_run = single["runs"][0] if single else None
    separate_run = _run_phase(args, "separate") if args.separate == "run" else None
    curve = nested["curve"]
    separate = _priced_separate(curve, s_run) if args.separate == "price" else None
    t_curve = nested["wall_seconds"]
    print(f"nested Gaussian (s = {args.bandwidth:g}) MNIST curve, {curve['n_test']} test images, seed {args.seed}, "
          f"{curve['n_factors']} factor(s): shared kernel {curve['kernel_seconds']:.1f} s, factor "
          f"{curve['factor_seconds']:.1f} s, shared float64 passes {curve['shared_iteration_seconds']:.1f} s")
    print(f"  {'n':>6} {'test err':>9} {'residual':>9} {'passes':>6} {'dtype':>7} {'seconds':>8}")
    for p in curve["points"]:
        print(f"  {p['n']:6d} {100 * p['test_error']:8.2f}% {p['relative_residual']:9.2e} {p['float64_passes']:6d} "
              f"{p['factor_dtype']:>7} {p['seconds']:8.1f}")
    worst = max(p["relative_residual"] for p in curve["points"])
    print(f"  every point certified: largest residual {worst:.2e} ({'<=' if worst <= 1e-10 else '>'} 1e-10); "
          f"curve {t_curve:.1f} s, peak RSS {nested['peak_rss_gb']:.2f} GB")
    out = {"benchmark": "learning_curve_nested", "date": time.strftime("%Y-%m-%d"), "machine": info,
           "command": " ".join(["python", "benchmarks/bench_learning_curve.py", *sys.argv[1:]]),
           "sizes": args.sizes, "bandwidth": args.bandwidth, "seed": args.seed, "sgemm_gflops": r_s,
           "nested": nested, "curve_seconds": t_curve, "largest_residual": worst}
    if s_run is not None:
        ratio = t_curve / s_run["seconds"]
        last = curve["points"][-1]
        print(f"single solve n={s_run['n']} (+ predictions): {s_run['seconds']:.1f} s (solve "
              f"{s_run['solve_seconds']:.1f} s, {s_run['float64_passes']} passes, test error "
              f"{100 * s_run['test_error']:.2f}% against the curve's {100 * last['test_error']:.2f}%), peak RSS "
              f"{single['peak_rss_gb']:.2f} GB")
        print(f"  curve / single = {ratio:.3f} (issue 22 target: <= 1.3)")
        out.update(single=single, curve_over_single=ratio)
    if separate is not None:
        print(f"separate solves, priced from {separate['source']}: {separate['total_seconds']:.1f} s = "
              f"{separate['total_seconds'] / t_curve:.2f} x the curve"
              + (f" = {separate['total_seconds'] / s_run['seconds']:.2f} x the single solve" if s_run else ""))
        out["separate_priced"] = separate
    if separate_run is not None:
        tot = float(sum(r["seconds"] for r in separate_run["runs"]))
        print(f"separate solves, run: {tot:.1f} s = {tot / t_curve:.2f} x the curve")
        out.update(separate_run=separate_run, separate_run_seconds=tot)
    return cli.emit(out, json_out=args.json_out, seeds={"permutation": args.seed}, rates={"sgemm_gflops": r_s})


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv, check=_check)


if __name__ == "__main__":
    raise SystemExit(main())
