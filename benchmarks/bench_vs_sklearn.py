#!/usr/bin/env python
"""Benchmark (b): kernelgen against scikit-learn KernelRidge at n = 20,000, each in its own process.

    python benchmarks/bench_vs_sklearn.py            # parent: runs both sides, compares

Both sides load the same data (first n MNIST images, pixels/255, one-hot), then time
fit + predict on the full test set. scikit-learn: KernelRidge(kernel="rbf", gamma=1/50,
alpha=1e-10); kernelgen: ``kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=5.0), ridge=1e-10)``
(gamma = 1/(2 s^2) = 1/50) with default SolveOptions. Neither side draws random numbers. Peak RSS
is per process. Prints the time ratio, the peak-memory ratio and
max|P_kernelgen - P_sklearn| / max|P_sklearn|; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

import kernelgen  # noqa: E402
from kernelgen.cli import peak_rss_gb  # noqa: E402


def side(name: str, n: int, out: str, blas_threads: int | None = None):
    from threadpoolctl import threadpool_limits

    from kernelgen.datasets import load_mnist

    if blas_threads:
        threadpool_limits(limits=blas_threads, user_api="blas")

    Xtr, ytr, Xte, yte = load_mnist()
    X = Xtr[:n].astype(np.float64) / 255.0
    Xt = Xte.astype(np.float64) / 255.0
    Y = np.eye(10)[ytr[:n]]
    t0 = time.perf_counter()
    if name == "sklearn":
        from sklearn.kernel_ridge import KernelRidge

        model = KernelRidge(kernel="rbf", gamma=1 / 50, alpha=1e-10).fit(X, Y)
        t_fit = time.perf_counter() - t0
        P = model.predict(Xt)
        extra = {}
    else:
        from kernelgen.kernels import Gaussian

        fit = kernelgen.kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=5.0), ridge=1e-10,
                                           options=kernelgen.SolveOptions())
        t_fit = time.perf_counter() - t0
        P = fit.predict(Xt)
        extra = {"relative_residual": fit.relative_residual, "factor_dtype": fit.factor_dtype,
                 "residual_mode": fit.residual_mode, "timings": fit.timings,
                 "kernel_spec": fit.kernel.to_dict(), "solve_options": fit.options.to_dict()}
    t = time.perf_counter() - t0
    np.save(out, P)
    print(json.dumps({"side": name, "blas_threads": blas_threads or "default", "fit_s": t_fit, "fit_predict_s": t, "peak_rss_gb": peak_rss_gb(),
                      "test_error": float(np.mean(P.argmax(1) != yte)), **extra}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--side", choices=["sklearn", "kernelgen"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--blas-threads", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    if args.side:
        return side(args.side, args.n_train, args.out, args.blas_threads)
    info = machine()
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        crashes = []
        for name in ("kernelgen", "sklearn"):
            out = str(Path(tmp) / f"{name}.npy")
            base = [sys.executable, __file__, "--side", name, "--n-train", str(args.n_train), "--out", out]
            r = subprocess.run(base, capture_output=True, text=True)
            if r.returncode != 0 and name == "sklearn":
                # the stock threaded OpenBLAS can segfault in KernelRidge's float64 dposv at this size
                # (docs/numerics.md, "BLAS and LAPACK call limits"); record it, then measure scikit-learn
                # with one BLAS thread, which does not crash
                crashes.append({"side": name, "returncode": r.returncode, "stderr_tail": r.stderr[-300:]})
                print(f"scikit-learn crashed (exit {r.returncode}); retrying with one BLAS thread", flush=True)
                r = subprocess.run(base + ["--blas-threads", "1"], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{name} side failed ({r.returncode}): {r.stderr[-2000:]}")
            res[name] = json.loads(r.stdout.strip().splitlines()[-1])
            res[name]["P"] = np.load(out)
    Pk, Ps = res["kernelgen"].pop("P"), res["sklearn"].pop("P")
    summary = {
        "benchmark": "vs_sklearn", "date": time.strftime("%Y-%m-%d"), "machine": info, "n_train": args.n_train,
        "kernelgen": res["kernelgen"], "sklearn": res["sklearn"],
        "time_ratio": res["kernelgen"]["fit_predict_s"] / res["sklearn"]["fit_predict_s"],
        "memory_ratio": res["kernelgen"]["peak_rss_gb"] / res["sklearn"]["peak_rss_gb"],
        "max_rel_prediction_diff": float(np.max(np.abs(Pk - Ps)) / np.max(np.abs(Ps))),
        "crashes": crashes,
        "provenance": kernelgen.provenance(seeds={}),  # no random numbers on either side
    }
    print(f"n={args.n_train}: kernelgen {res['kernelgen']['fit_predict_s']:.1f}s / {res['kernelgen']['peak_rss_gb']:.2f} GB,"
          f" sklearn {res['sklearn']['fit_predict_s']:.1f}s / {res['sklearn']['peak_rss_gb']:.2f} GB: time ratio "
          f"{summary['time_ratio']:.2f}, memory ratio {summary['memory_ratio']:.2f}, "
          f"max rel prediction diff {summary['max_rel_prediction_diff']:.1e}")
    line = json.dumps(summary)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
