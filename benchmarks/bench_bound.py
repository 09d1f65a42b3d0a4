#!/usr/bin/env python
"""Benchmark: the proven residual bound -- its value against n, and the cost of its certifying pass.

    python benchmarks/bench_bound.py --table 1000 3000 8000 20000     # bound and direct residual per n
    python benchmarks/bench_bound.py --passes 20000 --reps 3          # plain pass vs bounded pass, alternated

``--table``: for each n, the exact MNIST solve (first n images, pixels / 255, Gaussian s = 5, float32
factor above 4,096 images as the solver chooses) with ``certificate="direct"`` and with
``certificate="bound"``: the direct float64 residual, the proven bound, the passes each made and the
seconds. (The 60,000 run is ``benchmarks/bench_mnist_full.py --script-args "--certificate bound"``.)

``--passes``: at one n, the float64 kernel pass on V of shape (n, 10) timed three ways, alternated
``--reps`` times in this process: the plain pass (``entries_symmetric_apply``: what a CG step costs
under certificate="direct"), the scalar-bound pass it replaces (the plain pass on [V, |V|]), and the
bounded pass (``entries_bounded_symmetric_apply``: segmented dot products, compensated accumulation,
K|V| and (T o K)|V|). Floor: one pass computes n^2 d / 2 inner products at the SGEMM rate (exact
integer form) -- 2 n^2 d / 2 flops -- measured in the same run.

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import gemm_rate, machine  # noqa: E402

from kernelgen import cli  # noqa: E402


def build_parser():
    p = cli.make_parser(__doc__, script=__file__)
    p.add_argument("--table", type=int, nargs="*", default=None, metavar="N", help="sizes of the bound table")
    p.add_argument("--passes", type=int, default=None, metavar="N", help="time one pass of each kind at this n")
    p.add_argument("--reps", type=int, default=3, help="alternations of the pass timing (default 3)")
    p.add_argument("--bandwidth", type=float, default=5.0)
    p.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="factor dtype of the table's solves (default: the solver's choice, float64 up to 4,096)")
    return p


def _mnist(n):
    from kernelgen.datasets import load_mnist

    Xtr, ytr, _, _ = load_mnist()
    if n > Xtr.shape[0]:
        raise SystemExit(f"n = {n} exceeds the 60,000 training images")
    return Xtr[:n].reshape(n, -1).astype(np.float64) / 255.0, np.eye(10)[ytr[:n]]


def _table(sizes, s, dtype=None):
    import kernelgen
    from kernelgen.kernels import Gaussian

    rows = []
    for n in sizes:
        X, Y = _mnist(n)
        row = {"n": n}
        for cert in ("direct", "bound"):
            t0 = time.perf_counter()
            fit = kernelgen.kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=s),
                                               options=kernelgen.SolveOptions(certificate=cert, dtype=dtype))
            row[cert] = {"seconds": time.perf_counter() - t0, "direct_residual": fit.certificate.last_direct_residual,
                         "relative_residual": fit.relative_residual, "bound": fit.relative_residual_bound,
                         "certified_by": fit.residual_certificate, "passes": fit.n_matvecs,
                         "factor_dtype": fit.factor_dtype, "history": [h["relative_residual"] for h in fit.history]}
            print(f"n = {n:6d} {cert:6s}: direct residual {row[cert]['direct_residual']:.2e}, proven bound "
                  f"{fit.relative_residual_bound:.2e}, certified by {fit.residual_certificate}, {fit.n_matvecs} passes, "
                  f"{row[cert]['seconds']:.1f} s ({fit.factor_dtype} factor)", flush=True)
        rows.append(row)
    return rows


def _passes(n, reps, s):
    from kernelgen.kernels import Gaussian, entries_bounded_symmetric_apply, entries_symmetric_apply

    X, _ = _mnist(n)
    src = Gaussian(bandwidth=s).entries(X, None, dtype=np.float64)
    V = np.random.default_rng(0).standard_normal((n, 10))
    VV = np.concatenate([V, np.abs(V)], axis=1)
    kinds = {"plain": lambda: entries_symmetric_apply(src, V), "scalar_bound": lambda: entries_symmetric_apply(src, VV),
             "bounded": lambda: entries_bounded_symmetric_apply(src, V)}
    times = {k: [] for k in kinds}
    r_s = gemm_rate(np.float32)
    for rep in range(reps):
        for k, f in kinds.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
            print(f"rep {rep}: {k:12s} {times[k][-1]:7.2f} s", flush=True)
    r_s = max(r_s, gemm_rate(np.float32))
    floor = n * n * 784 / (r_s * 1e9)  # 2 n^2 d / 2 flops at the SGEMM rate
    best = {k: min(v) for k, v in times.items()}
    out = {"n": n, "reps": reps, "seconds": times, "best_s": best, "sgemm_gflops": r_s, "floor_s": floor,
           "bounded_over_plain": best["bounded"] / best["plain"],
           "scalar_bound_over_plain": best["scalar_bound"] / best["plain"],
           "over_floor": {k: v / floor for k, v in best.items()}}
    print(f"n = {n}: best of {reps}: plain {best['plain']:.2f} s, [V,|V|] {best['scalar_bound']:.2f} s, bounded "
          f"{best['bounded']:.2f} s = {out['bounded_over_plain']:.3f} x plain; floor {floor:.2f} s at SGEMM "
          f"{r_s:.0f} GFLOP/s")
    return out


def _main(args):
    if args.table is None and args.passes is None:
        raise SystemExit("give --table N [N ...] and/or --passes N")
    out = {"benchmark": "proven_bound", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
           "bandwidth": args.bandwidth}
    if args.table:
        out["table"] = _table(args.table, args.bandwidth, args.dtype)
    if args.passes:
        out["passes"] = _passes(args.passes, args.reps, args.bandwidth)
    return cli.emit(out, json_out=args.json_out)


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
