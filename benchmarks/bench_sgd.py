#!/usr/bin/env python
"""SGD steps/s on least squares, n = 1,000, d = 5,000, float64: NumPy loop vs jit primal vs dual.

One trajectory per path, all replaying the same sampled indices (``kernelgen.sgd.sample_indices``),
at B = 1 and B = 100. Each path is set against its bytes-per-step floor: the bytes a step must
move (gathered rows of X or of K = X X^T, plus the iterate read and written), divided by the
memory bandwidth measured in the same run with a large NumPy copy. The package's default path
(``form="auto"``) is the dual form here (n < d). Checks that the trajectories agree.

    flock /tmp/kernelgen-heavy.lock python benchmarks/bench_sgd.py        # ~1-2 min
    python benchmarks/bench_sgd.py --quick                               # smaller, seconds

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def bandwidth_gbs(nbytes: int = 400 * 2**20, repeats: int = 5) -> float:
    """Memory bandwidth (GB/s) of a large NumPy copy, counting bytes read + written."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def numpy_loop(X, y, idx, eta):
    """Plain NumPy mini-batch SGD on (1/2N)||Xw - y||^2 with the given indices (steps, B)."""
    w = np.zeros(X.shape[1])
    B = idx.shape[1]
    if B == 1:
        for (i,) in idx:
            x = X[i]
            w -= (eta * (x @ w - y[i])) * x
    else:
        c = eta / B
        for rows in idx:
            Xb = X[rows]
            w -= c * (Xb.T @ (Xb @ w - y[rows]))
    return w


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--d", type=int, default=5000)
    p.add_argument("--quick", action="store_true", help="fewer steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from kernelgen.kernels import kernel_matrix
    from kernelgen.sgd import DUAL_MAX_BYTES, sample_indices, sgd, stability_bound

    n, d = args.n, args.d
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    bw = bandwidth_gbs()
    t = time.perf_counter()
    kernel_matrix(X, kernel="linear", dtype=np.float64)
    gram_seconds = time.perf_counter() - t
    print(f"least squares n = {n}, d = {d}, float64; memory bandwidth (NumPy copy) {bw:.1f} GB/s; "
          f"K = X X^T built in {gram_seconds:.3f} s")
    default_form = "dual" if (n < d and 8 * n * n <= DUAL_MAX_BYTES) else "primal"
    rows = []
    scale = 0.1 if args.quick else 1.0
    for B, np_steps, jit_steps in [(1, 100_000, 1_000_000), (100, 4_000, 40_000)]:
        np_steps, jit_steps = int(np_steps * scale), int(jit_steps * scale)
        eta = 0.5 * stability_bound(X, batch_size=B)
        idx = sample_indices(args.seed, n, jit_steps, B)
        # NumPy baseline: best of 2 runs with the default BLAS threads and with one thread
        # (OpenBLAS's threaded gemv on a 100 x 5000 block is slower than one thread here)
        np_times = {}
        for threads in (None, 1):
            with threadpool_limits(threads):
                for _ in range(2):
                    t = time.perf_counter()
                    w_np = numpy_loop(X, y, idx[:np_steps], eta)
                    np_times[threads] = min(np_times.get(threads, np.inf), time.perf_counter() - t)
        np_threads = min(np_times, key=np_times.get)
        np_rate = np_steps / np_times[np_threads]
        rec = [np_steps, jit_steps]
        res = {}
        for form in ("primal", "auto"):
            kw = dict(steps=jit_steps, indices=idx, batch_size=B, step_size=eta, form=form, record_steps=rec,
                      metrics=False)  # metrics=False: no SVD / min-norm solve around the timed iteration
            sgd(X, y, **kw)  # compile
            best = None
            for _ in range(3):
                tr = sgd(X, y, **kw)
                best = tr if best is None or tr.seconds < best.seconds else best
            res[tr.form] = (jit_steps / best.seconds, best)
        assert default_form in res, f"form='auto' ran {list(res)}"
        w_p, w_d = res["primal"][1].iterates, res["dual"][1].iterates
        gap_np = float(np.linalg.norm(w_p[0] - w_np) / np.linalg.norm(w_np))
        gap_pd = float(np.linalg.norm(w_d - w_p) / np.linalg.norm(w_p))
        # bytes a step must move: gathered rows + iterate read and written
        bytes_primal = 8 * (B * d + 2 * d)
        bytes_dual = 8 * (B * n + n + B)
        for path, rate, nbytes in [
            (f"numpy loop (primal, BLAS threads {np_threads or 'default'})", np_rate, bytes_primal),
            ("numpy loop (primal, other thread setting)", np_steps / np_times[1 if np_threads is None else None],
             bytes_primal),
            ("jit primal", res["primal"][0], bytes_primal),
            ("jit dual", res["dual"][0], bytes_dual),
        ]:
            floor = bw * 1e9 / nbytes
            rows.append({
                "B": B, "path": path, "steps_per_s": rate, "bytes_per_step": nbytes, "floor_steps_per_s": floor,
                "fraction_of_floor": rate / floor, "speedup_vs_numpy": rate / np_rate,
                "default": path == f"jit {default_form}",
            })
        dual_total = jit_steps / (res["dual"][1].seconds + gram_seconds)
        rows.append({"B": B, "path": "jit dual incl. building K", "steps_per_s": dual_total, "bytes_per_step": None,
                     "floor_steps_per_s": None, "fraction_of_floor": None, "speedup_vs_numpy": dual_total / np_rate,
                     "default": False})
        print(f"B = {B}: {np_steps} NumPy steps, {jit_steps} jit steps; trajectories: |w_jit - w_numpy| / |w_numpy| "
              f"= {gap_np:.1e} at step {np_steps}, |w_dual - w_primal| / |w_primal| = {gap_pd:.1e}")
        rows[-1]["gap_numpy"] = gap_np
        rows[-1]["gap_primal_dual"] = gap_pd
    print(f"\n| B | path | steps/s | bytes/step | floor steps/s | of floor | vs NumPy |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        fl = f"{r['floor_steps_per_s']:,.0f}" if r["floor_steps_per_s"] else "-"
        of = f"{r['fraction_of_floor']:.2f}" if r["fraction_of_floor"] else "-"
        by = f"{r['bytes_per_step']:,}" if r["bytes_per_step"] else "-"
        mark = " (default)" if r["default"] else ""
        print(f"| {r['B']} | {r['path']}{mark} | {r['steps_per_s']:,.0f} | {by} | {fl} | {of} | {r['speedup_vs_numpy']:.1f}x |")
    out = {"n": n, "d": d, "bandwidth_gbs": bw, "gram_seconds": gram_seconds, "default_form": default_form, "rows": rows}
    line = json.dumps(out)
    if args.json_out:
        open(args.json_out, "w").write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
