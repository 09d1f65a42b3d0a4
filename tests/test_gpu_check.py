"""benchmarks/gpu_check.py: the no-GPU exit, --prepare without the network, the MNIST file check,
and a dry run of its phases on JAX's CPU device (synthetic data; nothing is downloaded)."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernelgen import SolveOptions, kernel_interpolate
from kernelgen._jax import accelerator_available
from kernelgen.errors import DataIntegrityError, DataUnavailableError, InvalidInputError
from kernelgen.kernels import Gaussian

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gc():
    return _load(SCRIPT, "_gpu_check_under_test")


def _synthetic(rng, n_train=40, n_test=10, d=6):
    """Small uint8 arrays with the MNIST names, and the sha256 / shapes that describe them."""
    arrays = {"X_train": rng.integers(0, 256, size=(n_train, d), dtype=np.uint8),
              "y_train": rng.integers(0, 10, size=n_train, dtype=np.uint8),
              "X_test": rng.integers(0, 256, size=(n_test, d), dtype=np.uint8),
              "y_test": rng.integers(0, 10, size=n_test, dtype=np.uint8)}
    kw = {"expected": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()},
          "shapes": {k: v.shape for k, v in arrays.items()}}
    return arrays, kw


def _run(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env, check=False)


@pytest.mark.skipif(accelerator_available(), reason="a GPU is visible: the script would run the whole check")
def test_without_a_gpu_it_says_so_writes_no_gpu_json_and_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_PLATFORMS"))}
    r = _run("--out", str(tmp_path / "out"), "--json-out", str(tmp_path / "line.json"), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("gpu_check: no GPU:")  # one human line, then the JSON line
    last = json.loads(lines[-1])
    assert last["status"] == "no-gpu" and last == json.loads((tmp_path / "line.json").read_text())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    detect = json.loads((tmp_path / "out" / "phase_detect.json").read_text())
    assert summary["status"] == "no-gpu" and summary["phases"] == {"detect": "no-gpu"}
    assert not any(d.split(":")[0] in ("gpu", "cuda", "rocm") for d in detect["devices"])
    # JAX was imported with preallocation off, as the 60k solve needs
    assert detect["environment"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["phase_detect.json", "summary.json"]


@pytest.mark.parametrize("args", [["--n", "60001"], ["--mem-fraction", "1.5"]])
def test_an_option_out_of_range_is_a_named_error_exit_2(args, tmp_path):
    r = _run(*args, "--out", str(tmp_path))
    assert r.returncode == 2 and "InvalidInputError" in r.stderr and r.stdout == ""


def test_help_follows_the_scripts_rules():
    # the rule test_cli applies to every script's parser (defaults shown, no machine figures), here too
    test_cli = _load(ROOT / "tests" / "test_cli.py", "_test_cli_rules")
    test_cli.test_help_shows_defaults_and_no_internal_notes(SCRIPT)


def test_mnist_file_round_trip_and_refusals(gc, rng, tmp_path):
    arrays, kw = _synthetic(rng)
    path = gc.write_mnist(tmp_path / "mnist.npz", arrays, **kw)
    back = gc.read_mnist(path, **kw)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)  # exact: uint8 through a lossless zip
    with pytest.raises(DataUnavailableError, match="--prepare"):
        gc.read_mnist(tmp_path / "missing" / "mnist.npz", **kw)
    bad = dict(arrays, X_test=arrays["X_test"].copy())
    bad["X_test"][0, 0] ^= 1  # one bit
    np.savez_compressed(tmp_path / "bad.npz", **bad)
    with pytest.raises(DataIntegrityError, match="X_test has sha256"):
        gc.read_mnist(tmp_path / "bad.npz", **kw)
    with pytest.raises(DataIntegrityError, match="uint8"):
        gc.verify_mnist(dict(arrays, y_test=arrays["y_test"].astype(np.int64)), **kw)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataIntegrityError, match="cannot be read"):
        gc.read_mnist(tmp_path / "junk.npz", **kw)
    with pytest.raises(DataIntegrityError):  # the real MNIST's recorded hashes refuse the synthetic arrays
        gc.verify_mnist(arrays)


def test_prepare_writes_data_wheels_and_the_device_command_without_the_network(gc, rng, tmp_path):
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    arrays, kw = _synthetic(rng)
    wheels = root / ".gpu_check" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "pooch-0.1.0-py3-none-any.whl").write_bytes(b"old")  # another version: must go
    calls = []

    def fake_download(spec, dest):
        calls.append(spec)
        name, version = spec.split("==")
        (Path(dest) / f"{name}-{version}-py3-none-any.whl").write_bytes(b"wheel")

    info = gc.prepare(root / ".gpu_check", arrays=arrays, download=fake_download, root=root, verify_kw=kw,
                      wheels=("pooch", "platformdirs"))
    from importlib.metadata import version

    pins = [f"pooch=={version('pooch')}", f"platformdirs=={version('platformdirs')}"]
    assert calls == pins
    assert info["wheels"] == sorted(f"{p.replace('==', '-')}-py3-none-any.whl" for p in pins)
    assert not (wheels / "pooch-0.1.0-py3-none-any.whl").exists()
    gc.read_mnist(root / ".gpu_check" / "mnist.npz", **kw)  # written and verifiable
    assert info["git_ignored"] is True and info["carry"] == [".gpu_check"] and info["fits"]
    assert info["tree_bytes"] == len("x = 1\n")  # only the untracked, not ignored source file travels besides DIR
    assert info["dir_bytes"] == sum(p.stat().st_size for p in (root / ".gpu_check").rglob("*") if p.is_file())
    cmd = info["command"]
    assert "pip install" in cmd and ".gpu_check/wheels/*.whl" in cmd and "--no-index" in cmd
    assert cmd.endswith("benchmarks/gpu_check.py --data .gpu_check --out $OUT --budget-s 280")
    # a second preparation finds everything in place: no download
    gc.prepare(root / ".gpu_check", arrays=arrays, download=fake_download, root=root, verify_kw=kw,
               wheels=("pooch", "platformdirs"))
    assert calls == pins
    with pytest.raises(InvalidInputError, match="inside the repository"):
        gc.prepare(tmp_path / "elsewhere", arrays=arrays, download=fake_download, root=root, verify_kw=kw)
    with pytest.raises(InvalidInputError, match="folder of its own"):
        gc.prepare(root, arrays=arrays, download=fake_download, root=root, verify_kw=kw)


def test_gpu_environment_sets_only_what_is_unset(gc):
    env = {"JAX_PLATFORMS": "cpu"}
    changed = gc.gpu_environment(0.9, env)
    assert env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_CLIENT_MEM_FRACTION": "0.9",
                   "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9"}
    assert changed["JAX_PLATFORMS (removed)"] == "cpu"
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": ".5"}
    assert gc.gpu_environment(0.9, env) == {} and env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "true",
                                                           "XLA_PYTHON_CLIENT_MEM_FRACTION": ".5"}


def test_jax_test_files_finds_every_file_selecting_the_jax_backend(gc, tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_gpu.py").write_text("")
    (tmp_path / "tests" / "test_other.py").write_text("fit(X, y, backend='jax')\n")
    (tmp_path / "tests" / "test_plain.py").write_text("fit(X, y, backend='scipy')\n")
    assert gc.jax_test_files(tmp_path) == ["tests/test_gpu.py", "tests/test_other.py"]
    (tmp_path / "tests" / "test_gpu_check.py").write_text("fit(X, y, backend='jax')\n")
    assert gc.jax_test_files(tmp_path) == ["tests/test_gpu.py", "tests/test_other.py"]  # the check's own: never
    assert "tests/test_gpu.py" in gc.jax_test_files()  # the real tree's GPU tests are always run


def test_dry_run_on_cpu_writes_each_phase_and_a_certified_solve(gc, rng, monkeypatch, tmp_path, capsys):
    arrays, _ = _synthetic(rng, n_train=120, n_test=30, d=784)  # MNIST-like distances for Gaussian(5.0)
    ran_tests = []
    real_env = gc.gpu_environment
    monkeypatch.setattr(gc, "_load_arrays", lambda data: (arrays, "synthetic"))
    monkeypatch.setattr(gc, "gpu_environment", lambda f: real_env(f, dict(os.environ)))  # leave os.environ alone
    monkeypatch.setattr(gc, "_run_tests", lambda rec, args, dry_run=False: (
        ran_tests.append(dry_run), rec.done("tests", "passed", 0.0)))
    rc = gc.main(["--allow-cpu", "--quiet", "--n", "100", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and ran_tests == [True]
    line = json.loads(out[-1])
    assert line["status"] == "complete" and line["phases"] == {p: "passed" for p in
                                                               ("detect", "tests", "warmup", "solve")}
    solve = json.loads((tmp_path / "out" / "phase_solve.json").read_text())
    assert solve == line["solve"] and solve["n"] == 100 and solve["relative_residual"] <= 1e-10
    assert set(solve["phase_s"]) == {"data", "fit", "predict"} and "reference_test_error" not in solve  # 60k only
    # oracle: the SciPy backend's certified solve on the same data gives the same test error (both residuals
    # <= 1e-10 on a well-conditioned K: predictions agree far below the class-score gaps of these 30 images)
    X = arrays["X_train"][:100] / 255.0
    Y = np.eye(10)[arrays["y_train"][:100]]
    ref = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=5.0), backend="scipy", options=SolveOptions())
    err = np.mean(ref.predict(arrays["X_test"] / 255.0).argmax(1) != arrays["y_test"])
    assert solve["test_error"] == err and solve["test_errors"] == round(err * 30)
    warm = json.loads((tmp_path / "out" / "phase_warmup.json").read_text())
    assert warm["n"] == 100 and warm["relative_residual"] <= 1e-10 and warm["data_source"] == "synthetic"


def test_phases_the_budget_cannot_hold_are_skipped_and_the_exit_is_1(gc, rng, monkeypatch, tmp_path, capsys):
    arrays, _ = _synthetic(rng)
    real_env = gc.gpu_environment
    monkeypatch.setattr(gc, "_load_arrays", lambda data: (arrays, "synthetic"))
    monkeypatch.setattr(gc, "gpu_environment", lambda f: real_env(f, dict(os.environ)))
    rc = gc.main(["--allow-cpu", "--quiet", "--budget-s", "5", "--out", str(tmp_path / "out")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 1 and line["status"] == "partial"
    assert line["phases"] == {"detect": "passed", "tests": "skipped", "warmup": "skipped", "solve": "skipped"}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "partial"
