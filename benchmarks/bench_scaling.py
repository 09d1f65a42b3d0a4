#!/usr/bin/env python
"""Benchmark (c): exact-solve time against n, with the fitted exponent.

    python benchmarks/bench_scaling.py --sizes 5000 10000 20000 30000 40000 [60000]

Each size runs scripts/mnist_kernel.py in its own process (so peak RSS is per size);
the exponent is the least-squares slope of log(solve time) on log(n) over the sizes
given, solve time = kernel + factor + refinement. Each run uses mnist_kernel.py's defaults
(Gaussian(bandwidth=5.0), default SolveOptions, the first n training images: no seeds). The last
line is one JSON object, with ``provenance`` (and each size's own provenance in its row).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

import kernelgen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 30000, 40000])
    p.add_argument("--extra-json", nargs="*", default=[], help="JSON lines of mnist_kernel.py runs to include")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    if len(args.sizes) + len(args.extra_json) < 2:
        p.error("a fitted exponent needs at least two sizes")
    info = machine()
    rows = []
    for n in args.sizes:
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "mnist_kernel.py"), "--n-train", str(n), "--quiet"],
                           capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"n={n}: {rows[-1]['seconds']:.1f}s, test error {100 * rows[-1]['test_error']:.2f}%", flush=True)
    for path in args.extra_json:
        rows.append(json.loads(Path(path).read_text().strip().splitlines()[-1]))
    rows.sort(key=lambda r: r["n_train"])
    ns = np.array([r["n_train"] for r in rows], float)
    solve = np.array([sum(r["timings"][k] for k in ("kernel", "factor", "refine")) for r in rows])
    slope = float(np.polyfit(np.log(ns), np.log(solve), 1)[0])
    table = [{"n_train": r["n_train"], "solve_s": s, "seconds": r["seconds"], "peak_rss_gb": r["peak_rss_gb"],
              "test_error": r["test_error"], "relative_residual": r["relative_residual"],
              "float64_kernel_passes": r["float64_kernel_passes"], "residual_mode": r["residual_mode"],
              "kernel_spec": r.get("kernel_spec"), "provenance": r.get("provenance")}
             for r, s in zip(rows, solve)]
    out = {"benchmark": "scaling", "date": time.strftime("%Y-%m-%d"), "machine": info, "rows": table,
           "fitted_exponent": slope, "provenance": kernelgen.provenance(seeds={})}  # first-n subsets: no seeds
    print(f"fitted exponent of solve time in n: {slope:.2f}")
    line = json.dumps(out)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
