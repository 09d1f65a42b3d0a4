#!/usr/bin/env python
"""Benchmark: the exact MNIST solve, phase by phase, against the floor of this machine.

    python benchmarks/bench_mnist_full.py                  # n = 60,000 (the full job)
    python benchmarks/bench_mnist_full.py --n-train 20000

It measures the SGEMM and DGEMM rates, then runs ``scripts/mnist_kernel.py`` (the README's
main job, unchanged, in its own process so peak RSS is its own) and reads its JSON line.
The floor (FACTS.md), each term at the rates measured in this run: float32 kernel triangle
n^2 d flop at the SGEMM rate + factor n^3/3 at the SGEMM rate + 5 float64 residuals of
n^2 d flop each (symmetry) at the DGEMM rate + test predictions 2 m n d flop at the DGEMM
rate. The last line of stdout is one JSON object (with the measured rates in its provenance).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import gemm_rate, machine  # noqa: E402

from kernelgen import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_parser():
    p = cli.make_parser(__doc__, script=__file__)
    p.add_argument("--n-train", type=int, default=60000, help="training images passed to scripts/mnist_kernel.py")
    p.add_argument("--script-args", default="", help="extra arguments for scripts/mnist_kernel.py (default: none)")
    return p


def _main(args):
    info = machine()
    sgemm = gemm_rate(np.float32)
    dgemm = gemm_rate(np.float64)
    # at the default size this is exactly the README's main job: python scripts/mnist_kernel.py
    extra = ([] if args.n_train == 60000 else ["--n-train", str(args.n_train)]) + args.script_args.split()
    cmd = [sys.executable, str(ROOT / "scripts" / "mnist_kernel.py"), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"mnist_kernel.py failed ({r.returncode}):\n{r.stderr[-3000:]}")
    run = json.loads(r.stdout.strip().splitlines()[-1])
    n, d, m = run["n_train"], 784, run["n_test"]
    t = run["timings"]
    floor = {
        "kernel_f32": n * n * d / (sgemm * 1e9),
        "factor": n**3 / 3 / (sgemm * 1e9),
        "residuals_5x": 5 * n * n * d / (dgemm * 1e9),
        "predict": 2 * m * n * d / (dgemm * 1e9),
    }
    floor["total"] = sum(floor.values())
    factor_gflops = n**3 / 3 / t["factor"] / 1e9
    out = {
        "benchmark": "mnist_full", "date": time.strftime("%Y-%m-%d"), "machine": info,
        "command": " ".join(["python", "scripts/mnist_kernel.py", *extra]),
        "n_train": n, "sgemm_gflops": sgemm, "dgemm_gflops": dgemm,
        "phases_s": {k: t[k] for k in ("load", "kernel", "factor", "refine", "predict")},
        "factor_gflops": factor_gflops, "factor_fraction_of_sgemm": factor_gflops / sgemm,
        "floor_s": floor, "end_to_end_s": run["seconds"], "time_over_floor": run["seconds"] / floor["total"],
        "run": run,
    }
    print(f"n={n}: test error {100 * run['test_error']:.2f}%, residual {run['relative_residual']:.2e}, end to end "
          f"{run['seconds']:.1f}s = {out['time_over_floor']:.2f} x floor {floor['total']:.1f}s; factor "
          f"{factor_gflops:.0f} GFLOPS = {100 * factor_gflops / sgemm:.0f}% of SGEMM {sgemm:.0f} (DGEMM {dgemm:.0f}); "
          f"peak RSS {run['peak_rss_gb']:.2f} GB")
    return cli.emit(out, json_out=args.json_out, rates={"sgemm_gflops": sgemm, "dgemm_gflops": dgemm})


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
