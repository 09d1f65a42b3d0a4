#!/usr/bin/env python
"""Benchmark: an exact solve whose factor lives on disk, against the floor of this machine.

    python benchmarks/bench_out_of_core.py                          # n = 120,000: MNIST + one-pixel shifts
    python benchmarks/bench_out_of_core.py --n-train 60000 --augment-shifts 0 --storage disk
    python benchmarks/bench_out_of_core.py --n-train 60000 --augment-shifts 0 --storage disk --kill-after 200

It measures the SGEMM rate (all cores, 4096^3, best of 3) before and after the run (the higher is
kept) and the scratch disk's sequential rates (``dd`` with direct I/O, 2 GiB), then runs
``scripts/mnist_kernel.py`` in its own process (so that peak RSS is its own) and reads its JSON line.

The floor (the out-of-core issue's definition), n training points, m test points, d = 784:

- kernel: n^2 d / r_s (the float32 entries of the lower triangle);
- factor: n^3 / (3 r_s);
- float64 passes: each priced at the same day's in-RAM 60k pass (``--pass-60k-seconds``) x (n / 60,000)^2,
  or, when not given, n^2 d / r_s (the in-RAM benchmark's pass term); the triangular solves' I/O is not
  in the floor;
- predictions: 2 m n d / r_s.

I/O overhead of the factor = (seconds it waited on reads + seconds spent writing and syncing) / factor
seconds. Bytes read and written are the factor's own counts; the expected read volume is
sum over super-panels of (n - c0) c0 entries (``kernelgen.factors._disk.disk_read_bytes``).

``--kill-after S`` runs the resume experiment instead: start the solve, SIGKILL it S seconds in (during
the factor), rerun the same command (it resumes from the scratch file) and report both times.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import gemm_rate, machine  # noqa: E402

from kernelgen import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_parser():
    p = cli.make_parser(__doc__, script=__file__)
    p.add_argument("--n-train", type=int, default=60000, help="MNIST training images (before augmentation)")
    p.add_argument("--augment-shifts", type=int, default=1, choices=[0, 1], help="passed to the script (default 1)")
    p.add_argument("--storage", default="auto", choices=["auto", "memory", "disk"], help="passed to the script")
    p.add_argument("--scratch-dir", default=None, help="passed to the script")
    p.add_argument("--pass-60k-seconds", type=float, default=None,
                   help="seconds of one float64 pass of the same day's in-RAM 60k run (prices the passes)")
    p.add_argument("--kill-after", type=float, default=None,
                   help="resume experiment: SIGKILL the run after this many seconds, then rerun it")
    p.add_argument("--no-disk-rate", action="store_true", help="skip the dd measurement of the disk")
    p.add_argument("--script-args", default="", help="extra arguments for the script (e.g. '--save fit.npz')")
    return p


def disk_rates(directory: str) -> dict:
    """Sequential write and read rates of ``directory``'s disk (dd, direct I/O, 2 GiB), GB/s."""
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=directory, prefix="kernelgen-dd-")
    os.close(fd)
    out = {}
    try:
        for what, cmd in (("write", ["dd", "if=/dev/zero", f"of={path}", "bs=16M", "count=128", "oflag=direct"]),
                          ("read", ["dd", f"if={path}", "of=/dev/null", "bs=16M", "iflag=direct"])):
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            out[what + "_gbps"] = (128 * 16 * 2**20 / dt / 1e9) if r.returncode == 0 else None
    finally:
        os.unlink(path)
    return out


def _script_cmd(args):
    cmd = [sys.executable, str(ROOT / "scripts" / "mnist_kernel.py"), "--n-train", str(args.n_train),
           "--augment-shifts", str(args.augment_shifts), "--storage", args.storage]
    if args.scratch_dir:
        cmd += ["--scratch-dir", args.scratch_dir]
    return cmd + args.script_args.split()


def _run(cmd, kill_after=None):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return None, time.perf_counter() - t0
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"mnist_kernel.py failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), wall


def _main(args):
    from kernelgen.factors._disk import disk_read_bytes
    from kernelgen.solvers._planner import scratch_directory
    from kernelgen.options import SolveOptions

    info = machine()
    directory = scratch_directory(SolveOptions(scratch_dir=args.scratch_dir))
    rates_disk = {} if args.no_disk_rate else disk_rates(directory)
    s0 = gemm_rate(np.float32)
    cmd = _script_cmd(args)
    command = " ".join(["python", "scripts/mnist_kernel.py", *cmd[2:]])
    killed = None
    if args.kill_after is not None:
        _, t_killed = _run(cmd, kill_after=args.kill_after)
        left = sorted(p for p in os.listdir(directory) if p.startswith("kernelgen-factor-"))
        killed = {"killed_after_s": t_killed, "scratch_files_left": left}
        print(f"killed after {t_killed:.1f} s; left in {directory}: {left}")
    run, wall = _run(cmd)
    s1 = gemm_rate(np.float32)
    r_s = max(s0, s1)
    n, m, d = run["n_train"], run["n_test"], 784
    t = dict(run["timings"])
    passes = run["float64_kernel_passes"]
    fi = run.get("factor_info") or {}
    st = fi.get("stats", {})
    pass_price = (args.pass_60k_seconds * (n / 60000) ** 2 if args.pass_60k_seconds
                  else n * n * d / (r_s * 1e9))
    fl = {"kernel": n * n * d / (r_s * 1e9), "factor": n ** 3 / 3 / (r_s * 1e9), "one_pass": pass_price,
          "passes_made": passes * pass_price, "predict": 2 * m * n * d / (r_s * 1e9)}
    floor = fl["kernel"] + fl["factor"] + fl["passes_made"] + fl["predict"]
    io_wait = st.get("io_wait", 0.0) + st.get("write", 0.0)
    factor_s = t.get("factor", 0.0) + t.get("kernel", 0.0)
    out = {
        "benchmark": "out_of_core", "date": time.strftime("%Y-%m-%d"), "machine": info, "command": command,
        "n_train": n, "n_test": m, "d": d, "sgemm_gflops": r_s, "rates_before_after": {"sgemm": [s0, s1]},
        "disk": {"directory": directory, **rates_disk}, "storage": run.get("factor_storage"),
        "phases_s": t, "float64_passes": passes, "seconds_per_pass": t["refine"] / passes,
        "floor_terms_s": fl, "floor_s": floor, "pass_price_from": ("in-RAM 60k pass x (n/60000)^2"
                                                                    if args.pass_60k_seconds else "n^2 d / r_s"),
        "end_to_end_s": run["seconds"], "subprocess_wall_s": wall, "time_over_floor": run["seconds"] / floor,
        "factor_over_term": t.get("factor", 0.0) / fl["factor"],
        "io": {"bytes_read": st.get("bytes_read"), "bytes_written": st.get("bytes_written"),
               "bytes_read_expected": (disk_read_bytes(n, fi.get("tile", 2048), st.get("width", 0), fi.get("dtype"))
                                       if st.get("width") else None),
               "read_wait_s": st.get("io_wait"), "write_s": st.get("write"), "factor_phase_s": factor_s,
               "overhead_fraction": io_wait / factor_s if factor_s else None,
               "solve_bytes_read": st.get("solve_bytes_read"), "solve_seconds": st.get("solve_seconds"),
               "solves": st.get("solves"), "file_bytes": fi.get("file_bytes"), "width": st.get("width"),
               "resumed_superpanels": st.get("resumed_superpanels"), "superpanels": st.get("superpanels")},
        "relative_residual": run["relative_residual"], "test_error": run["test_error"],
        "peak_rss_gb": run["peak_rss_gb"], "killed": killed, "run": run,
    }
    print(f"mnist_kernel.py n={n} ({run.get('factor_storage')}): test error {100 * run['test_error']:.2f}%, residual "
          f"{run['relative_residual']:.2e}, {passes} float64 passes; end to end {run['seconds']:.1f} s = "
          f"{out['time_over_floor']:.3f} x floor {floor:.1f} s; peak RSS {run['peak_rss_gb']:.2f} GB")
    print(f"  SGEMM {r_s:.0f} GFLOP/s (before {s0:.0f}, after {s1:.0f}); disk {rates_disk}")
    print(f"  factor {t.get('factor', 0):.1f} s (term {fl['factor']:.1f} s, ratio {out['factor_over_term']:.3f}); "
          f"I/O wait {io_wait:.1f} s = {100 * (out['io']['overhead_fraction'] or 0):.1f}% of the factor phase; read "
          f"{(st.get('bytes_read') or 0) / 1e9:.1f} GB, wrote {(st.get('bytes_written') or 0) / 1e9:.1f} GB")
    print(f"  per pass {out['seconds_per_pass']:.1f} s (price {pass_price:.1f} s); solves read "
          f"{(st.get('solve_bytes_read') or 0) / 1e9:.1f} GB in {st.get('solve_seconds', 0):.1f} s")
    return cli.emit(out, json_out=args.json_out, rates={"sgemm_gflops": r_s})


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
