#!/usr/bin/env python
"""Benchmark (a): the exact MNIST solve, phase by phase, against the floor of this machine.

    python benchmarks/bench_mnist_full.py                # n = 60,000 (~10-15 min, < 16 GB)
    python benchmarks/bench_mnist_full.py --n-train 20000

The floor uses the SGEMM and DGEMM rates measured at the start of the same run
(FACTS.md): float32 kernel triangle n^2 d flop at the SGEMM rate + factor n^3/3 at the
SGEMM rate + 5 float64 residuals of n^2 d flop each (symmetry) at the DGEMM rate + test
predictions 2 m n d flop at the DGEMM rate. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import gemm_rate, machine, peak_rss_gb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--bandwidth", type=float, default=5.0)
    p.add_argument("--dtype", default=None)
    p.add_argument("--refinement", default="cg", choices=["cg", "richardson"])
    p.add_argument("--store-kernel", default="auto", choices=["auto", "yes", "no"])
    p.add_argument("--json-out", default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    info = machine()
    t_all = time.perf_counter()
    sgemm = gemm_rate(np.float32)
    dgemm = gemm_rate(np.float64)

    import kernelgen
    from kernelgen.datasets import load_mnist

    t0 = time.perf_counter()
    Xtr, ytr, Xte, yte = load_mnist()
    n = args.n_train
    X = Xtr[:n].astype(np.float64) / 255.0
    Xt = Xte.astype(np.float64) / 255.0
    Y = np.eye(10)[ytr[:n]]
    t_load = time.perf_counter() - t0
    store = {"auto": None, "yes": True, "no": False}[args.store_kernel]
    fit = kernelgen.kernel_interpolate(X, Y, bandwidth=args.bandwidth, dtype=args.dtype, refinement=args.refinement,
                                       store_kernel=store, verbose=not args.quiet)
    P = fit.predict(Xt, verbose=not args.quiet)
    test_error = float(np.mean(P.argmax(1) != yte))
    train_error = float(np.mean(fit.fitted.argmax(1) != ytr[:n]))
    total = time.perf_counter() - t_all
    d, m = X.shape[1], Xt.shape[0]
    floor = {
        "kernel_f32": n * n * d / (sgemm * 1e9),
        "factor": n**3 / 3 / (sgemm * 1e9),
        "residuals_5x": 5 * n * n * d / (dgemm * 1e9),
        "predict": 2 * m * n * d / (dgemm * 1e9),
    }
    floor["total"] = sum(floor.values())
    phases = {"load": t_load, **{k: fit.timings[k] for k in ("kernel", "factor", "refine", "predict")}}
    solve_and_predict = sum(phases[k] for k in ("kernel", "factor", "refine", "predict"))
    out = {
        "benchmark": "mnist_full", "date": time.strftime("%Y-%m-%d"), "machine": info, "n_train": n,
        "sgemm_gflops": sgemm, "dgemm_gflops": dgemm, "phases_s": phases,
        "factor_gflops": n**3 / 3 / fit.timings["factor"] / 1e9,
        "factor_fraction_of_sgemm": n**3 / 3 / fit.timings["factor"] / 1e9 / sgemm,
        "floor_s": floor, "end_to_end_s": total, "time_over_floor": total / floor["total"],
        "solve_and_predict_over_floor": solve_and_predict / floor["total"],
        "float64_kernel_passes": fit.n_matvecs, "residual_history": [h["relative_residual"] for h in fit.history],
        "relative_residual": fit.relative_residual, "residual_mode": fit.residual_mode,
        "factor_dtype": fit.factor_dtype, "test_error": test_error, "train_error": train_error,
        "rkhs_norm": fit.rkhs_norm, "peak_rss_gb": peak_rss_gb(),
    }
    print(f"n={n}: test error {100 * test_error:.2f}%, residual {fit.relative_residual:.2e}, "
          f"end to end {total:.1f}s = {out['time_over_floor']:.2f} x floor {floor['total']:.1f}s, "
          f"factor {out['factor_gflops']:.0f} GFLOPS ({100 * out['factor_fraction_of_sgemm']:.0f}% of SGEMM "
          f"{sgemm:.0f}), peak RSS {out['peak_rss_gb']:.2f} GB")
    line = json.dumps(out)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
