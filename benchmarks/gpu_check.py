#!/usr/bin/env python
"""The prepared GPU check: JAX-backend tests and the 60,000-image exact MNIST solve on a JAX GPU.

    python benchmarks/gpu_check.py --prepare       # here, online: MNIST + missing wheels into .gpu_check/
    python benchmarks/gpu_check.py --data .gpu_check --out results/gpu_check   # on the GPU machine

Where JAX sees no GPU it prints one line saying so, writes summary.json with status "no-gpu" and
exits 0. Where it sees one it runs, stopping before a phase that the time budget cannot hold:

1. tests:  the JAX-backend tests (tests/test_gpu.py and the tests that select backend="jax"),
   in a subprocess with a timeout, JAX_PLATFORMS unset;
2. warmup: the MNIST arrays, checked against their recorded sha256, and a small backend="jax" solve;
3. solve:  kernel_interpolate(X / 255, one_hot(y), kernel=Gaussian(5.0), backend="jax") on the
   first --n training images, with the solver's own dtype policy (dtype=None): the factor dtype
   it chose, the certified float64 residual, the test error on the 10,000 test images, the
   device, its peak memory and the time of every phase.

Each phase writes <out>/phase_<name>.json as soon as it ends and rewrites <out>/summary.json,
so a run cut off by its time limit still reports what it finished. A path the device cannot
hold is reported as such (the solver's named error or the allocator's), not worked around.
The last line of stdout is one JSON object. Exit status: 0 when every phase passed or there is
no GPU, 1 when a phase failed or was skipped for time, 2 for a bad option.

--prepare DIR (online to PyPI) writes DIR/mnist.npz (the four uint8 arrays, compressed, checked
against their sha256), DIR/wheels/ (the pure-Python dependencies the GPU machine's image lacks,
for CPython 3.12) and DIR/.gitignore (so DIR stays out of git), then prints what travels and
the device command to run. JAX is imported with XLA_PYTHON_CLIENT_PREALLOCATE=false and a
memory fraction of --mem-fraction (unless already set): without preallocation JAX's allocator
keeps its default limit of 75% of the device memory (JAX documentation, "GPU memory
allocation"), which can be too little for the 60,000-image solve.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "src" / "kernelgen").is_dir():  # this tree's kernelgen (the GPU machine has no installed one)
    sys.path.insert(0, str(ROOT / "src"))

from kernelgen import cli  # noqa: E402
from kernelgen._files import atomic_write  # noqa: E402
from kernelgen.datasets import MNIST_SHA256  # noqa: E402
from kernelgen.errors import DataIntegrityError, DataUnavailableError, InvalidInputError  # noqa: E402

log = logging.getLogger("gpu_check")

DEFAULT_PREPARED = ".gpu_check"
MNIST_NAMES = ("X_train", "y_train", "X_test", "y_test")
MNIST_SHAPES = {"X_train": (60000, 784), "y_train": (60000,), "X_test": (10000, 784), "y_test": (10000,)}
#: kernelgen's dependencies (pyproject.toml) that the GPU machine's image lacks: its package list, read
#: 2026-12-05 from the notes of the workplace that lends the machine, has numpy, scipy, jax, scikit-learn,
#: sympy, matplotlib, tqdm and threadpoolctl, and neither of these (pooch's own needs, packaging and
#: requests, are there). Both are pure Python, so one wheel serves any platform.
DEVICE_WHEELS = ("platformdirs", "pooch")
#: the GPU machine's Python, for ``pip download``
DEVICE_PYTHON = "3.12"
#: the device tool sends the working tree and the carried paths together, up to this many MiB
TRAVEL_LIMIT_MIB = 64
#: the published reference: 1.22% test error for the exact Gaussian-kernel interpolant on 60k MNIST
#: (docs/data.md, "Reference test errors"); compared only when --n is 60,000
REFERENCE_TEST_ERROR_60K = 0.0122
#: a certified solve (float64 residual <= 1e-10) can differ from the reference's alpha only by cond(K)·1e-10
#: relative, which flips the arg-max only of near-tied test images: allow 5 of the 10,000 (0.05 points)
REFERENCE_SLACK = 0.0005
#: seconds a phase is expected to need at least; a phase is not started with less left in the budget
PHASE_RESERVE_S = {"tests": 30.0, "warmup": 20.0, "solve": 90.0}
WARMUP_N = 2000
BANDWIDTH = 5.0
#: selects, in the test files below, the tests that run the JAX backend or JAX kernels
TEST_KEYWORDS = "jax or gpu or backends_agree"
TEST_FILES = ("tests/test_gpu.py", "tests/test_interpolate.py", "tests/test_kernels.py", "tests/test_seams.py",
              "tests/test_user_faults_solvers.py", "tests/test_user_faults_kernels.py")

__all__ = ["build_parser", "main", "prepare", "verify_mnist", "read_mnist", "write_mnist", "device_command",
           "travelling_bytes", "jax_test_files", "gpu_environment"]


# ---------------------------------------------------------------------------------------------- parser
def build_parser():
    p = cli.make_parser(__doc__, script=__file__)
    p.add_argument("--prepare", nargs="?", const=DEFAULT_PREPARED, default=None, metavar="DIR",
                   help="write the MNIST arrays and the wheels the GPU machine lacks into DIR (a folder inside the "
                        f"repository; {DEFAULT_PREPARED} when DIR is left out), print the device command, and exit "
                        "(default: run the check)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help=f"folder holding the mnist.npz that --prepare wrote (default: {DEFAULT_PREPARED}/ in the "
                        "repository when it holds one, else kernelgen's MNIST loader: its cache, then a download)")
    p.add_argument("--out", type=cli.OutputPath(directory=True), default=Path("results/gpu_check"), metavar="DIR",
                   help="folder for phase_<name>.json, summary.json and tests.log (created if missing)")
    p.add_argument("--n", type=int, default=60000, help="training images in the exact solve (1 to 60000)")
    p.add_argument("--budget-s", type=float, default=280.0,
                   help="seconds for the whole check; a phase is not started when what is left cannot hold it")
    p.add_argument("--tests-timeout-s", type=float, default=120.0,
                   help="most seconds the JAX-backend tests may run (less when the budget leaves less)")
    p.add_argument("--mem-fraction", type=float, default=0.95,
                   help="fraction of the device memory JAX's allocator may use, unless the environment sets one")
    p.add_argument("--allow-cpu", action="store_true",
                   help="without a GPU, run the phases on JAX's CPU device instead of stopping (a dry run of this "
                        "script; use a small --n)")
    return p


def _check(args):
    if not 1 <= args.n <= 60000:
        raise InvalidInputError(f"--n must be between 1 and 60000 (MNIST's training images), got {args.n}.")
    if not args.budget_s > 0 or not args.tests_timeout_s > 0:
        raise InvalidInputError(f"--budget-s and --tests-timeout-s must be positive, got {args.budget_s} and "
                                f"{args.tests_timeout_s}.")
    if not 0 < args.mem_fraction <= 1:
        raise InvalidInputError(f"--mem-fraction must be in (0, 1], got {args.mem_fraction}.")
    data = getattr(args, "data", None)
    if data is not None and args.prepare is None and not (Path(data) / "mnist.npz").is_file():
        # checked before any device time is spent: a folder git ignores travels only when named in carry
        raise InvalidInputError(f"--data {data}: no {Path(data) / 'mnist.npz'} (run `python benchmarks/gpu_check.py "
                                "--prepare` where PyPI is reachable, and carry the folder to the GPU machine).")


# ---------------------------------------------------------------------------------------------- MNIST files
def verify_mnist(arrays: dict, expected: dict | None = None, shapes: dict | None = None, source: str = "arrays"):
    """Check the four MNIST arrays: uint8, their shapes, the sha256 of their C-order bytes.

    Parameters
    ----------
    arrays : dict of str to ndarray
        ``X_train`` (60000, 784), ``y_train`` (60000,), ``X_test`` (10000, 784), ``y_test`` (10000,), uint8.
    expected, shapes : dict, optional
        The sha256 and shapes to meet (default: the recorded ones, ``kernelgen.datasets.MNIST_SHA256``;
        docs/data.md, "MNIST files and hashes").
    source : str
        Named in the error.

    Raises
    ------
    DataIntegrityError
        A member missing, of another dtype or shape, or with another sha256.
    """
    expected = MNIST_SHA256 if expected is None else expected
    shapes = MNIST_SHAPES if shapes is None else shapes
    for name in expected:
        a = arrays.get(name)
        if a is None:
            raise DataIntegrityError(f"{source}: no {name}. Remedy: write it again with "
                                     "python benchmarks/gpu_check.py --prepare.")
        if a.dtype != np.uint8 or tuple(a.shape) != tuple(shapes[name]):
            raise DataIntegrityError(f"{source}: {name} is {a.dtype} {a.shape}, expected uint8 {shapes[name]}. "
                                     "Remedy: write it again with python benchmarks/gpu_check.py --prepare.")
        got = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        if got != expected[name]:
            raise DataIntegrityError(f"{source}: {name} has sha256 {got}, the recorded one is {expected[name]}. "
                                     "Remedy: write it again with python benchmarks/gpu_check.py --prepare.")


def write_mnist(path: Path, arrays: dict, **verify_kw) -> Path:
    """Write the arrays as a compressed ``.npz`` atomically, then read it back and verify it (:func:`verify_mnist`)."""
    verify_mnist(arrays, source="the arrays to write", **verify_kw)
    atomic_write(path, lambda f: np.savez_compressed(f, **{k: arrays[k] for k in arrays}), make_parents=True)
    read_mnist(path, **verify_kw)
    return path


def read_mnist(path: Path, **verify_kw) -> dict:
    """Read and verify the ``.npz`` that :func:`write_mnist` wrote.

    Raises
    ------
    DataUnavailableError
        No file at ``path`` (the remedy: run ``--prepare``).
    DataIntegrityError
        The file is unreadable or an array differs from the recorded one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"{path} does not exist. Remedy: python benchmarks/gpu_check.py --prepare "
                                   f"{path.parent} on a machine online, and carry that folder with the tree.")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataIntegrityError(f"{path} cannot be read ({type(exc).__name__}: {exc}). Remedy: write it again "
                                 "with python benchmarks/gpu_check.py --prepare.") from exc
    verify_mnist(arrays, source=str(path), **verify_kw)
    return arrays


def _load_arrays(data):
    if data is None and (ROOT / DEFAULT_PREPARED / "mnist.npz").is_file():
        data = ROOT / DEFAULT_PREPARED
    if data is not None:
        return read_mnist(Path(data) / "mnist.npz"), str(Path(data) / "mnist.npz")
    from kernelgen.datasets import load_mnist

    return dict(zip(MNIST_NAMES, load_mnist())), "kernelgen.load_mnist()"


# ---------------------------------------------------------------------------------------------- prepare
def _pip_download(spec: str, dest: Path) -> None:
    """``pip download`` one pinned wheel for the GPU machine's CPython into ``dest``."""
    platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
                 for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
           DEVICE_PYTHON, "--implementation", "cp", *platforms, "-d", str(dest), spec]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if r.returncode != 0:
        raise DataUnavailableError(f"pip download {spec} failed (exit {r.returncode}): "
                                   f"{(r.stderr or r.stdout).strip()[-800:]} Remedy: run --prepare on a machine "
                                   f"online to PyPI, or put a py3-none-any wheel of {spec} into {dest} by hand.")


def _wheel_name(path: Path) -> str:
    return re.sub(r"[-_.]+", "_", path.name.split("-")[0]).lower()


def _pins(names) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def travelling_bytes(root: Path = ROOT) -> int | None:
    """Bytes of the files the device tool sends with the tree: tracked and untracked-not-ignored (None without git)."""
    try:
        r = subprocess.run(["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=root,
                           capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    total = 0
    for name in filter(None, r.stdout.decode(errors="surrogateescape").split("\0")):
        p = root / name
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def _dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file())


def device_command(rel_dir: str, *, wheels: bool, budget_s: float) -> str:
    """The shell command that runs the check on the GPU machine from a copy of the tree carrying ``rel_dir``."""
    d = shlex.quote(rel_dir)
    install = (f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "
               f"{d}/wheels/*.whl && export PYTHONPATH=/tmp/site && " if wheels else "")
    return (f"{install}PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --data {d} --out $OUT "
            f"--budget-s {budget_s:g}")


def prepare(directory, *, arrays: dict | None = None, data_home=None, wheels=DEVICE_WHEELS, download=_pip_download,
            root: Path = ROOT, budget_s: float = 280.0, verify_kw: dict | None = None) -> dict:
    """Write what the offline GPU machine needs into ``directory`` (inside ``root``) and describe the run.

    Parameters
    ----------
    directory : path-like
        Folder inside the repository (it travels with the tree when the device command carries it).
    arrays : dict of ndarray, optional
        The four MNIST arrays (default: ``kernelgen.load_mnist(data_home=data_home)``).
    wheels : sequence of str
        Packages to download as wheels, pinned to the versions installed here.
    download : callable
        ``download(spec, dest)`` fetches one wheel (default: ``pip download``); replaced in tests.
    verify_kw : dict, optional
        ``expected`` / ``shapes`` for :func:`verify_mnist` (tests use synthetic arrays).

    Returns
    -------
    dict
        ``dir``, ``mnist_bytes``, ``wheels`` (file names), ``dir_bytes``, ``tree_bytes`` (None without git),
        ``travel_mib``, ``fits``, ``command``, ``carry``, ``timeout_s``, ``git_ignored``.

    Raises
    ------
    InvalidInputError
        ``directory`` is not inside the repository.
    DataUnavailableError, DataIntegrityError
        MNIST or a wheel could not be had, or the arrays differ from the recorded ones.
    """
    root = Path(root).resolve()
    d = Path(directory).expanduser().resolve()
    try:
        rel = d.relative_to(root).as_posix()
    except ValueError:
        raise InvalidInputError(f"--prepare {directory}: the folder must be inside the repository ({root}) to "
                                f"travel with the tree. Remedy: --prepare {DEFAULT_PREPARED}.") from None
    if rel in ("", "."):
        raise InvalidInputError(f"--prepare needs a folder of its own inside the repository, not its root. "
                                f"Remedy: --prepare {DEFAULT_PREPARED}.")
    d.mkdir(parents=True, exist_ok=True)
    (d / ".gitignore").write_text("# written by benchmarks/gpu_check.py --prepare: nothing here goes into git\n*\n")
    if arrays is None:
        from kernelgen.datasets import load_mnist

        arrays = dict(zip(MNIST_NAMES, load_mnist(data_home=data_home)))
    write_mnist(d / "mnist.npz", arrays, **(verify_kw or {}))
    wdir = d / "wheels"
    wdir.mkdir(exist_ok=True)
    for spec in _pins(wheels):
        name = re.sub(r"[-_.]+", "_", spec.split("==")[0]).lower()
        version = spec.split("==")[1] if "==" in spec else None
        for old in wdir.glob("*.whl"):  # one version of each: two stop the whole install
            if _wheel_name(old) == name and (version is None or old.name.split("-")[1] != version):
                old.unlink()
        if not any(_wheel_name(w) == name for w in wdir.glob("*.whl")):
            download(spec, wdir)
        if not any(_wheel_name(w) == name for w in wdir.glob("*.whl")):
            raise DataUnavailableError(f"no wheel of {spec} in {wdir} after the download. Remedy: put a "
                                       f"py3-none-any wheel of {spec} there by hand.")
    wheel_files = sorted(w.name for w in wdir.glob("*.whl"))
    tree = travelling_bytes(root)
    dir_bytes = _dir_bytes(d)
    travel_mib = ((tree or 0) + dir_bytes) / 2**20
    ignored = subprocess.run(["git", "check-ignore", "-q", str(d / "mnist.npz")], cwd=root,
                             capture_output=True, check=False).returncode == 0 if (root / ".git").exists() else None
    return {"dir": rel, "mnist_bytes": (d / "mnist.npz").stat().st_size, "wheels": wheel_files,
            "dir_bytes": dir_bytes, "tree_bytes": tree, "travel_mib": round(travel_mib, 2),
            "fits": travel_mib <= TRAVEL_LIMIT_MIB,
            "command": device_command(rel, wheels=bool(wheel_files), budget_s=budget_s), "carry": [rel],
            "timeout_s": int(budget_s + 80), "git_ignored": ignored}


def _prepare_main(args):
    info = prepare(args.prepare, data_home=None, budget_s=args.budget_s)
    mib = 2**20
    print(f"prepared {info['dir']}/: mnist.npz {info['mnist_bytes'] / mib:.1f} MiB, wheels {', '.join(info['wheels'])}")
    tree = "unknown (no git)" if info["tree_bytes"] is None else f"{info['tree_bytes'] / mib:.1f} MiB"
    print(f"travels: working tree {tree} + {info['dir']}/ {info['dir_bytes'] / mib:.1f} MiB = "
          f"{info['travel_mib']:.1f} MiB (limit {TRAVEL_LIMIT_MIB} MiB){'' if info['fits'] else ' -- TOO LARGE'}")
    if info["git_ignored"] is False:
        print(f"warning: git does not ignore {info['dir']}/; the device tool carries only ignored paths")
    print("device run (the run tool's arguments):")
    print(f"  command: {info['command']}")
    print(f"  carry:   {json.dumps(info['carry'])}")
    print(f"  timeout_s: {info['timeout_s']}")
    cli.emit({"status": "prepared", **info}, json_out=args.json_out)


# ---------------------------------------------------------------------------------------------- the check
def gpu_environment(mem_fraction: float, environ=None) -> dict:
    """Set the JAX allocator's variables (before JAX is imported) and unset JAX_PLATFORMS; return what changed.

    ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (allocate as needed) and the memory fraction
    (``XLA_CLIENT_MEM_FRACTION`` and its older name ``XLA_PYTHON_CLIENT_MEM_FRACTION``) are set only
    where the environment sets neither; ``JAX_PLATFORMS`` is removed so that JAX looks for every device.
    """
    env = os.environ if environ is None else environ
    changed = {}
    if "XLA_PYTHON_CLIENT_PREALLOCATE" not in env:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = changed["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if "XLA_CLIENT_MEM_FRACTION" not in env and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env:
        for name in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"):
            env[name] = changed[name] = f"{mem_fraction:g}"
    if "JAX_PLATFORMS" in env:
        changed["JAX_PLATFORMS (removed)"] = env.pop("JAX_PLATFORMS")
    return changed


def jax_test_files(root: Path = ROOT) -> list[str]:
    """The test files that hold JAX-backend tests: the listed ones that exist, and any other that selects
    backend='jax' (this script's own tests excepted: they run it)."""
    files = [f for f in TEST_FILES if (root / f).is_file()]
    for p in sorted((root / "tests").glob("test_*.py")):
        rel = p.relative_to(root).as_posix()
        if rel not in files and rel != "tests/test_gpu_check.py" and re.search(r"""backend\s*=\s*["']jax["']""", p.read_text(errors="replace")):
            files.append(rel)
    return files


class _Record:
    """Phase results, each written to <out>/phase_<name>.json when it ends; summary.json rewritten each time."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.t0, self.budget_s = Path(out), time.monotonic(), budget_s
        self.phases: dict[str, dict] = {}
        self.out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def _write(self, name: str, obj: dict) -> None:
        text = json.dumps(obj, indent=1, default=str, allow_nan=False)
        atomic_write(self.out / name, lambda f: f.write(text.encode() + b"\n"))

    def done(self, name: str, status: str, seconds: float, **data) -> dict:
        rec = _clean({"phase": name, "status": status, "seconds": round(seconds, 3), **data})
        self.phases[name] = rec
        self._write(f"phase_{name}.json", rec)
        self._write("summary.json", self.summary())
        log.info("phase %s: %s in %.1f s", name, status, seconds)
        return rec

    def status(self) -> str:
        sts = [p["status"] for p in self.phases.values()]
        if "failed" in sts or "interrupted" in sts:
            return "failed"
        return "partial" if "skipped" in sts else "complete"

    def summary(self) -> dict:
        return {"status": self.status(), "elapsed_s": round(time.monotonic() - self.t0, 3),
                "budget_s": self.budget_s, "phases": {k: v["status"] for k, v in self.phases.items()}}


def _finite(x):
    x = float(x)
    return x if np.isfinite(x) else None


def _clean(obj):
    """JSON-ready copy: NumPy scalars as Python numbers, NaN/inf as None, unknown objects as their str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return _finite(obj)
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    return str(obj)


def _error(exc: BaseException) -> dict:
    return {"error": f"{type(exc).__name__}: {exc}"[:3000], "traceback": traceback.format_exc()[-4000:]}


def _memory(device) -> dict:
    try:
        s = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a device without statistics
        return {}
    return {k: int(s[k]) for k in ("bytes_limit", "bytes_in_use", "peak_bytes_in_use") if k in s}


def _detect(allow_cpu: bool = False):
    try:
        import jax

        devices = jax.devices()
    except Exception as exc:  # noqa: BLE001 - no JAX, or JAX without a working platform: no GPU either way
        return None, {"error": f"{type(exc).__name__}: {exc}"[:500]}
    gpus = [d for d in devices if d.platform in ("gpu", "cuda", "rocm")]
    info = {"jax": jax.__version__, "devices": [f"{d.platform}:{d.id} ({getattr(d, 'device_kind', '?')})"
                                                for d in devices]}
    if not gpus and allow_cpu and devices:
        gpus, info["dry_run_on_cpu"] = devices[:1], True
    if gpus:
        info.update(device=gpus[0].device_kind, memory=_memory(gpus[0]))
    return (gpus[0] if gpus else None), info


def _run_tests(rec: _Record, args, dry_run: bool = False) -> None:
    reserve = PHASE_RESERVE_S["warmup"] + PHASE_RESERVE_S["solve"]
    timeout = min(args.tests_timeout_s, rec.left() - reserve)
    if timeout < PHASE_RESERVE_S["tests"]:
        rec.done("tests", "skipped", 0.0, reason=f"{rec.left():.0f} s left of the budget, the solve needs {reserve:.0f}")
        return
    files = jax_test_files()
    env = dict(os.environ)
    env.pop("JAX_PLATFORMS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", TEST_KEYWORDS, *files]
    t = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        output, rc = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        rc = None
    except KeyboardInterrupt:
        rec.done("tests", "interrupted", time.monotonic() - t, files=files)
        raise
    seconds = time.monotonic() - t
    (rec.out / "tests.log").write_text(" ".join(map(shlex.quote, cmd)) + "\n" + output[-200_000:])
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}
    # on a GPU, tests/test_gpu.py must run (its skip means the pytest process saw no accelerator)
    gpu_skipped = bool(re.search(r"SKIPPED.*test_gpu\.py", output))
    status = "passed" if rc == 0 and (dry_run or not gpu_skipped) else "failed"
    rec.done("tests", status, seconds, returncode=rc, timed_out=rc is None, timeout_s=round(timeout, 1),
             counts=counts, gpu_tests_skipped=gpu_skipped, files=files, keywords=TEST_KEYWORDS,
             tail=output.strip().splitlines()[-3:])


def _fit_record(fit, n) -> dict:
    return {"n": n, "factor_dtype": fit.factor_dtype, "relative_residual": _finite(fit.relative_residual),
            "certified": bool(fit.relative_residual <= fit.options.tol), "tol": fit.options.tol,
            "solver": fit.solver, "backend": fit.backend, "residual_mode": fit.residual_mode,
            "n_matvecs": int(fit.n_matvecs), "history": _clean(fit.history),
            "solver_timings_s": _clean(fit.timings), "notes": _clean(fit.notes)}


def _solve_phases(rec: _Record, args, device) -> None:
    from kernelgen import SolveOptions, kernel_interpolate
    from kernelgen.kernels import Gaussian

    if rec.left() < PHASE_RESERVE_S["warmup"] + PHASE_RESERVE_S["solve"]:
        for name in ("warmup", "solve"):
            rec.done(name, "skipped", 0.0, reason=f"{max(rec.left(), 0):.0f} s left of the budget")
        return
    t = time.monotonic()
    arrays = None
    try:
        arrays, source = _load_arrays(args.data)
        data_s = time.monotonic() - t
        X = arrays["X_train"][:min(WARMUP_N, args.n)].astype(np.float64) / 255.0
        m = X.shape[0]
        t1 = time.monotonic()
        fit = kernel_interpolate(X, cli.one_hot(arrays["y_train"][:m], 10), kernel=Gaussian(bandwidth=BANDWIDTH),
                                 backend="jax", options=SolveOptions(dtype=None))
        rec.done("warmup", "passed" if fit.relative_residual <= fit.options.tol else "failed",
                 time.monotonic() - t, data_source=source, data_s=round(data_s, 3),
                 fit_s=round(time.monotonic() - t1, 3), memory=_memory(device), **_fit_record(fit, m))
    except KeyboardInterrupt:
        rec.done("warmup", "interrupted", time.monotonic() - t)
        raise
    except Exception as exc:  # noqa: BLE001 - reported in the phase file, the check goes on to its summary
        rec.done("warmup", "failed", time.monotonic() - t, **_error(exc))
        if arrays is None:
            rec.done("solve", "skipped", 0.0, reason="no MNIST arrays (see phase_warmup.json)")
            return
    if rec.left() < PHASE_RESERVE_S["solve"]:
        rec.done("solve", "skipped", 0.0, reason=f"{max(rec.left(), 0):.0f} s left of the budget, "
                                                 f"the solve is given {PHASE_RESERVE_S['solve']:.0f}")
        return
    n = args.n
    # what the paths hold, for reading a failure: one n x n float64 matrix and one float32 matrix
    sizes = {"n": n, "float64_matrix_bytes": 8 * n * n, "float32_matrix_bytes": 4 * n * n}
    t = time.monotonic()
    phase_s = {}
    try:
        X = arrays["X_train"][:n].astype(np.float64) / 255.0
        Y = cli.one_hot(arrays["y_train"][:n], 10)
        n = X.shape[0]
        sizes.update(n=n, float64_matrix_bytes=8 * n * n, float32_matrix_bytes=4 * n * n)
        Xte = arrays["X_test"].astype(np.float64) / 255.0
        phase_s["data"] = time.monotonic() - t
        t1 = time.monotonic()
        fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=BANDWIDTH), backend="jax",
                                 options=SolveOptions(dtype=None))
        phase_s["fit"] = time.monotonic() - t1
        mem_after_fit = _memory(device)
        t1 = time.monotonic()
        pred = np.asarray(fit.predict(Xte))
        phase_s["predict"] = time.monotonic() - t1
        errors = int(np.count_nonzero(pred.argmax(axis=1) != arrays["y_test"]))
        err = errors / len(arrays["y_test"])
        ref = {}
        if n == 60000:
            ref = {"reference_test_error": REFERENCE_TEST_ERROR_60K,
                   "matches_reference": abs(err - REFERENCE_TEST_ERROR_60K) <= REFERENCE_SLACK}
        ok = fit.relative_residual <= fit.options.tol and ref.get("matches_reference", True)
        rec.done("solve", "passed" if ok else "failed", time.monotonic() - t, **_fit_record(fit, n),
                 test_error=err, test_errors=errors, n_test=len(arrays["y_test"]), **ref,
                 phase_s={k: round(v, 3) for k, v in phase_s.items()}, memory_after_fit=mem_after_fit,
                 memory=_memory(device), sizes=sizes, device=device.device_kind)
    except KeyboardInterrupt:
        rec.done("solve", "interrupted", time.monotonic() - t, phase_s=phase_s, memory=_memory(device))
        raise
    except Exception as exc:  # noqa: BLE001 - reported: a path that does not fit is a finding, not worked around
        text = f"{type(exc).__name__}: {exc}"
        log.error("solve failed: %s", text[:500])
        fits = not (type(exc).__name__ == "MemoryBudgetError" or re.search(r"RESOURCE_EXHAUSTED|out of memory",
                                                                            text, re.IGNORECASE))
        verdict = None if fits else (f"the JAX backend's path for n={n} (dtype=None: the solver's own dtype policy) "
                                     f"does not fit this device: see error and memory")
        rec.done("solve", "failed", time.monotonic() - t, **_error(exc), does_not_fit=not fits, verdict=verdict,
                 phase_s={k: round(v, 3) for k, v in phase_s.items()}, memory=_memory(device), sizes=sizes,
                 device=device.device_kind)


def _human(rec: _Record) -> None:
    for name, p in rec.phases.items():
        extra = ""
        if name == "tests":
            extra = f" {p.get('counts')}"
        elif p.get("relative_residual") is not None:
            extra = (f" n={p['n']} factor {p['factor_dtype']} residual {p['relative_residual']:.2e}"
                     + (f" test error {100 * p['test_error']:.2f}%" if "test_error" in p else "")
                     + (f" peak {p['memory'].get('peak_bytes_in_use', 0) / 2**30:.1f} GiB" if p.get("memory") else ""))
        elif p.get("error") or p.get("reason"):
            extra = " " + (p.get("error") or p.get("reason"))[:300]
        print(f"{name:7s} {p['status']:8s} {p['seconds']:8.1f} s{extra}")
    print(f"gpu_check: {rec.status()} in {time.monotonic() - rec.t0:.1f} s; files in {rec.out}")


_OUTCOME = {}


def _main(args):
    if args.prepare is not None:
        return _prepare_main(args)
    rec = _Record(args.out, args.budget_s)
    env = gpu_environment(args.mem_fraction)
    t = time.monotonic()
    device, info = _detect(args.allow_cpu)
    if device is None:
        rec.done("detect", "no-gpu", time.monotonic() - t, environment=env, **info)
        seen = ", ".join(info.get("devices", [])) or info.get("error", "nothing")
        print(f"gpu_check: no GPU: JAX sees {seen}; where JAX sees a GPU this runs the JAX-backend tests, a warm-up "
              f"solve and the {args.n}-image exact MNIST solve (backend='jax'); nothing to do here (--allow-cpu: a dry run).")
        summary = {**rec.summary(), "status": "no-gpu"}
        rec._write("summary.json", summary)
        cli.emit({**summary, "detect": rec.phases["detect"]}, json_out=args.json_out)
        return
    rec.done("detect", "passed", time.monotonic() - t, environment=env, **info)
    try:
        _run_tests(rec, args, dry_run=bool(info.get("dry_run_on_cpu")))
        _solve_phases(rec, args, device)
    finally:
        _human(rec)
    _OUTCOME["status"] = rec.status()
    cli.emit({**rec.summary(), **{name: p for name, p in rec.phases.items()}}, json_out=args.json_out)


def main(argv=None):
    _OUTCOME.clear()
    rc = cli.run(_main, build_parser(), argv, check=_check)
    if rc == 0 and _OUTCOME.get("status") in ("failed", "partial"):
        return 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
