#!/usr/bin/env python
"""Benchmark: the float32 factor's log-determinant estimate against the exact float64 value.

    python benchmarks/bench_logdet.py --sizes 2000 5000 10000
    python benchmarks/bench_logdet.py --sizes 60000 --tile 1024      # the full MNIST system (about 20 min)

For each n: the exact solve (first n MNIST images, pixels / 255, Gaussian s = 5, one-hot targets) with a
kept float32 factor; ``fit.logdet()`` (the float32 value and its Ritz-value error estimate); the float32
factor is then dropped and ``fit.logdet(float64=True)`` refactors K in float64 from the training data
(``float64_refactor``: in RAM where the plan fits with ``--tile``, else out of core). Reported: both
values, the error of the estimate and whether its stated error covers it, the seconds of each, and the
process's peak RSS after the solve and at the end.

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

from kernelgen import cli  # noqa: E402


def build_parser():
    p = cli.make_parser(__doc__, script=__file__)
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000], metavar="N")
    p.add_argument("--tile", type=int, default=2048, help="tile of the float64 refactor (1024: the lean 60k plan)")
    p.add_argument("--bandwidth", type=float, default=5.0)
    return p


def _main(args):
    from kernelgen.kernels import Gaussian
    from kernelgen.options import SolveOptions
    from kernelgen.solvers import kernel_interpolate

    rows = []
    for n in args.sizes:
        X, y, _, _ = cli.load_mnist_scaled(n_train=n, n_test=1)
        Y = cli.one_hot(y, 10)
        t0 = time.perf_counter()
        fit32 = kernel_interpolate(X, Y, kernel=Gaussian(args.bandwidth),
                                   options=SolveOptions(dtype="float32", keep_factor=True))
        t_solve = time.perf_counter() - t0
        ld32 = fit32.logdet()
        # drop the float32 factor before the refactor, which plans with the fit's options (its tile: --tile)
        bare = dataclasses.replace(fit32, factor=None, _resolve=None,
                                   options=dataclasses.replace(fit32.options, tile=args.tile))
        del fit32
        gc.collect()
        rss_solve = cli.peak_rss_gb()
        t0 = time.perf_counter()
        ld64 = bare.logdet(float64=True)
        t_64 = time.perf_counter() - t0
        err = ld32.value - ld64.value
        row = {"n": n, "logdet_float32": ld32.value, "stated_error": ld32.error_bound, "logdet_float64": ld64.value,
               "error": err, "covered": bool(ld32.error_bound is not None and abs(err) <= ld32.error_bound),
               "solve_float32_s": t_solve, "refactor_float64_s": t_64, "residual": float(bare.relative_residual),
               "peak_rss_solve_gb": rss_solve, "peak_rss_gb": cli.peak_rss_gb(), "tile64": args.tile,
               "how64": ld64.how}
        print(f"n = {n}: float32 {ld32.value:.6f} (stated error {ld32.error_bound}), float64 {ld64.value:.6f}, error "
              f"{err:+.3e} ({'covered' if row['covered'] else 'NOT covered'}); solve {t_solve:.1f} s, float64 "
              f"refactor {t_64:.1f} s; peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)
        rows.append(row)
    out = {"benchmark": "logdet", "date": time.strftime("%Y-%m-%d"), "machine": machine(), "rows": rows}
    return cli.emit(out, json_out=args.json_out)


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
