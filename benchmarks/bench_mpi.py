#!/usr/bin/env python
"""Benchmark: the distributed backend (MPI + ScaLAPACK) -- factor rates, the 60k MNIST run, a cost model.

    python benchmarks/bench_mpi.py rate --n 12000 --procs 2            # p?potrf GFLOP/s (OpenBLAS vs reference)
    python benchmarks/bench_mpi.py mnist --procs 2                     # the full 60k MNIST solve on 2 processes
    python benchmarks/bench_mpi.py model --rate-json benchmarks/json/mpi_mnist_60k_P2.json

``rate`` starts ``mpiexec -n P`` workers that fill a Gaussian kernel (d = 10, bandwidth 2, seed 0;
positive definite) block-cyclically and time ScaLAPACK's Cholesky on it, once with the BLAS the
system library resolves (``libblas.so.3``: OpenBLAS once ``libopenblas0-serial`` is installed) and
once with Debian's reference BLAS forced by ``LD_PRELOAD`` (``--reference-blas``), one BLAS thread per
process. Rate = (n^3 / 3) / seconds (all processes together).

``mnist`` runs the README's MNIST problem (all 60,000 training images, Gaussian s = 5 on pixels / 255,
exact interpolation, the 10,000 test images; as ``scripts/mnist_kernel.py --backend mpi``) under
``mpiexec -n P`` (one BLAS thread per process) and records time per phase, the peak RSS of every
process, the residual and the test error; ``--memory-budget-gb`` sets the per-process budget.

``model`` turns the 60k run's measured per-node rates into the cost of n = 1e5, 3e5, 1e6 on P nodes
(see :func:`cost_model`; the efficiency across nodes is an assumption, ``--efficiency``). Each mode prints a summary and ends with one JSON line (``--json-out``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

from kernelgen import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_BLAS = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def build_parser():
    p = cli.make_parser(__doc__, script=__file__)
    p.add_argument("mode", choices=["rate", "mnist", "model", "worker-rate", "worker-mnist"])
    p.add_argument("--procs", type=int, default=2, help="MPI processes")
    p.add_argument("--n", type=int, default=12000, help="order of the matrix for 'rate'")
    p.add_argument("--nb", type=int, default=256, help="ScaLAPACK block size")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--reference-blas", action="store_true", help="'rate': also run with the reference BLAS")
    p.add_argument("--n-train", type=int, default=60000, help="'mnist': training images")
    p.add_argument("--memory-budget-gb", type=float, default=None,
                   help="'mnist': per-process memory budget (SolveOptions.memory_budget) instead of the "
                        "planner's 0.85 x MemAvailable / processes-per-node (stated in the JSON when used)")
    p.add_argument("--rate-json", default=None, help="'model': JSON written by 'mnist'")
    p.add_argument("--efficiency", type=float, default=0.5,
                   help="'model': assumed parallel efficiency of p?potrf across nodes")
    return p


def _mpiexec(procs, args, extra_env=None, timeout=3600):
    env = dict(os.environ, **MPI_ENV, **(extra_env or {}))
    cmd = ["mpiexec", "-n", str(procs), "--oversubscribe", "--bind-to", "none", sys.executable, "-m", "mpi4py",
           *args]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), wall


def _worker_rate(args):
    from mpi4py import MPI

    from kernelgen.factors._scalapack import ScalapackCholesky, default_grid
    from kernelgen.kernels import Gaussian
    from kernelgen.solvers._mpi_backend import _fill_local, _grid

    comm = MPI.COMM_WORLD
    n, nb, fdt = args.n, args.nb, np.dtype(args.dtype)
    X = np.random.default_rng(0).normal(size=(n, 10))
    shape = default_grid(comm.Get_size())
    t0 = time.perf_counter()
    local, bad = _fill_local(Gaussian(bandwidth=2.0), X, n, nb, shape, fdt, 0.0, comm.Get_rank(), False)
    t_fill = time.perf_counter() - t0
    grid = _grid(shape)
    comm.Barrier()
    t0 = time.perf_counter()
    f = ScalapackCholesky.factor(grid, local, n, nb)
    comm.Barrier()
    t = time.perf_counter() - t0
    if comm.Get_rank() == 0:
        print(json.dumps({"n": n, "nb": nb, "dtype": fdt.name, "grid": list(shape), "seconds": t,
                          "fill_seconds": t_fill, "gflops": n**3 / 3 / t / 1e9, "factor_seconds_rank0": f.seconds}))


def _rate(args):
    res = {"machine": machine(), "procs": args.procs, "runs": []}
    blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    variants = [("system libblas.so.3 -> " + blas, {})]
    if args.reference_blas:
        variants.append((f"reference BLAS ({REFERENCE_BLAS}, LD_PRELOAD)", {"LD_PRELOAD": REFERENCE_BLAS}))
    for name, env in variants:
        out, wall = _mpiexec(args.procs, [__file__, "worker-rate", "--n", str(args.n), "--nb", str(args.nb),
                                          "--dtype", args.dtype], env)
        out.update(blas=name, wall=wall)
        res["runs"].append(out)
        print(f"p{'s' if args.dtype == 'float32' else 'd'}potrf n={args.n} nb={args.nb} P={args.procs} "
              f"grid {out['grid']}: {out['seconds']:.2f} s = {out['gflops']:.1f} GFLOP/s with {name}")
    return res


def _worker_mnist(args):
    """One process of the MNIST run: the script's problem (Gaussian s = 5, pixels / 255, one-hot targets)."""
    from mpi4py import MPI

    import kernelgen
    from kernelgen.kernels import Gaussian
    from kernelgen.solvers._mpi_backend import predict_mpi

    comm = MPI.COMM_WORLD
    t0 = time.perf_counter()
    Xtr, ytr, Xte, yte = cli.load_mnist_scaled(n_train=args.n_train, n_test=None, seed=None, data_home=None,
                                               verbose=False)
    t_load = time.perf_counter() - t0
    budget = None if args.memory_budget_gb is None else int(args.memory_budget_gb * 1e9)
    fit = kernelgen.kernel_interpolate(Xtr, cli.one_hot(ytr, 10), kernel=Gaussian(bandwidth=5.0), backend="mpi",
                                       options=kernelgen.SolveOptions(memory_budget=budget))
    t0 = time.perf_counter()
    P = predict_mpi(fit, Xte, comm=comm)
    t_pred = time.perf_counter() - t0
    rss = comm.allgather(cli.peak_rss_gb())
    if comm.Get_rank() == 0:
        plan = {k: v for k, v in fit.plan.to_dict().items() if k in ("grid", "nb", "local_shape", "bytes", "budget", "parts")}
        print(json.dumps({
            "n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]), "kernel": repr(fit.kernel),
            "test_error": float(np.mean(np.argmax(P, axis=1) != yte)),
            "train_error": float(np.mean(np.argmax(fit.fitted, axis=1) != ytr)),
            "relative_residual": fit.relative_residual, "factor_dtype": fit.factor_dtype,
            "float64_kernel_passes": fit.n_matvecs,
            "residual_history": [h["relative_residual"] for h in fit.history],
            "timings": {"load": t_load, **fit.timings, "predict": t_pred},
            "peak_rss_gb_per_process": rss, "mpi_processes": comm.Get_size(), "mpi_plan": plan,
            "memory_budget_override_gb": args.memory_budget_gb}))


def _mnist(args):
    cmd = [__file__, "worker-mnist", "--n-train", str(args.n_train)]
    if args.memory_budget_gb is not None:
        cmd += ["--memory-budget-gb", str(args.memory_budget_gb)]
    run, wall = _mpiexec(args.procs, cmd, timeout=4 * 3600)
    res = {"machine": machine(), "procs": args.procs, "wall_seconds_mpiexec": wall, "run": run}
    print(f"MNIST n={run['n_train']} on {args.procs} processes (grid {run['mpi_plan']['grid']}, nb "
          f"{run['mpi_plan']['nb']}): test error {100 * run['test_error']:.2f}%, residual "
          f"{run['relative_residual']:.2e}, wall {wall:.1f} s, peak RSS per process "
          + ", ".join(f"{g:.2f}" for g in run["peak_rss_gb_per_process"]) + " GB")
    return res


def cost_model(node_gflops: float, pass_seconds_60k: float, efficiency: float, *, d: int = 784, k: int = 10,
               procs_per_node: int = 2, sizes=(100_000, 300_000, 1_000_000), nodes=(4, 16, 64, 256, 1024)) -> list:
    """Memory per node, factor time, float64 pass time and bytes communicated for n points on P nodes.

    Inputs are measured on one node of this machine (2 processes, one BLAS thread each):
    ``node_gflops`` = (n^3 / 3) / (p?potrf seconds) of the 60k run and ``pass_seconds_60k`` = its float64
    iteration time / passes (kernel tiles recomputed + K V + preconditioner solve). Then

    - memory per node: 4 n^2 / P bytes (the float32 block-cyclic blocks ScaLAPACK stores, both
      triangles) + per process 20 n d bytes (X and two entries copies) + 0.57 GB entry workspace;
    - factor: (n^3 / 3) / (P * node_gflops * efficiency);
    - one float64 pass: pass_seconds_60k * (n / 60000)^2 / (P * efficiency) (n^2 d work per pass);
    - bytes per float64 pass: two Allreduces of 8 n k bytes (K V and the preconditioner's solution),
      a ring Allreduce sending 2 (P - 1) / P * 8 n k bytes per node each;
    - ``int32_min_processes``: local blocks < 2^31 entries need n^2 / (processes) < 2^31.
    """
    rows = []
    for n in sizes:
        for p in nodes:
            mem = 4.0 * n * n / p + procs_per_node * (20.0 * n * d + 0.57e9)
            rows.append({"n": n, "nodes": p, "memory_per_node_gb": mem / 1e9,
                         "factor_hours": n**3 / 3 / (p * node_gflops * 1e9 * efficiency) / 3600,
                         "float64_pass_seconds": pass_seconds_60k * (n / 60000) ** 2 / (p * efficiency),
                         "bytes_sent_per_node_per_pass": 2 * 2 * (p - 1) / p * 8 * n * k,
                         "int32_min_processes": int(np.ceil(n * n / (2**31 - 1)))})
    return rows


def _model(args):
    with open(args.rate_json) as f:
        run = json.load(f)["run"]
    n0, t = run["n_train"], run["timings"]
    node = n0**3 / 3 / t["factor"] / 1e9
    pass_s = t["refine"] / run["float64_kernel_passes"]
    rows = cost_model(node, pass_s, args.efficiency)
    print(f"per-node p?potrf rate {node:.1f} GFLOP/s and {pass_s:.1f} s per float64 pass at n = {n0} (measured, "
          f"{run['mpi_processes']} processes on one node); assumed efficiency across nodes {args.efficiency}")
    print(f"{'n':>9} {'nodes':>5} {'GB/node':>9} {'factor h':>9} {'pass s':>8} {'MB/pass':>8} {'P>=(int32)':>10}")
    for r in rows:
        print(f"{r['n']:>9} {r['nodes']:>5} {r['memory_per_node_gb']:>9.1f} {r['factor_hours']:>9.2f} "
              f"{r['float64_pass_seconds']:>8.1f} {r['bytes_sent_per_node_per_pass'] / 1e6:>8.1f} "
              f"{r['int32_min_processes']:>10}")
    return {"node_gflops": node, "pass_seconds_60k": pass_s, "efficiency": args.efficiency, "from": args.rate_json,
            "rows": rows}


def _main(args):
    if args.mode == "worker-rate":
        return _worker_rate(args)
    if args.mode == "worker-mnist":
        return _worker_mnist(args)
    res = {"rate": _rate, "mnist": _mnist, "model": _model}[args.mode](args)
    return cli.emit(res, json_out=args.json_out)


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
