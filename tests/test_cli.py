"""kernelgen.cli: the scripts' shared layer (parser, JSON line with provenance, clean named errors, helpers)."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernelgen import cli
from kernelgen.errors import (
    InvalidInputError,
    NonFiniteResultError,
    NotPositiveDefiniteError,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["mnist_kernel", "mnist_gabor", "label_noise", "smith_le", "sgd_min_norm"]
PARSERS = [ROOT / "scripts" / f"{s}.py" for s in SCRIPTS] + [ROOT / "benchmarks" / "bench_mnist_full.py"]


def _load(path: Path):
    """Import a script as a module (its main() does not run)."""
    spec = importlib.util.spec_from_file_location(f"_cli_test_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    added = str(path.parent) not in sys.path
    if added:  # the benchmark imports its sibling _common
        sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        if added:
            sys.path.remove(str(path.parent))
    return mod


@pytest.fixture
def restore_loggers():
    """run() sets levels on named loggers; put them back afterwards."""
    names = ["kernelgen", "my_script"]
    before = {n: logging.getLogger(n).level for n in names}
    yield
    for n, lvl in before.items():
        logging.getLogger(n).setLevel(lvl)


# ---------------------------------------------------------------------------------------------- helpers
def test_one_hot_matches_identity_rows(rng):
    y = rng.integers(0, 7, size=50)
    Y = cli.one_hot(y, 10)
    assert Y.dtype == np.float64 and Y.shape == (50, 10)
    np.testing.assert_array_equal(Y, np.eye(10)[y])  # exact: both are 0.0 / 1.0
    np.testing.assert_array_equal(cli.one_hot(y), np.eye(int(y.max()) + 1)[y])
    assert cli.one_hot(np.array([], dtype=np.int64), 3).shape == (0, 3)


@pytest.mark.parametrize("bad, n", [([0, 3], 3), ([-1, 0], 3), ([0.0, 1.0], None), ([[0, 1]], None),
                                    (np.array([], dtype=int), None)])
def test_one_hot_refuses(bad, n):
    with pytest.raises(InvalidInputError):
        cli.one_hot(np.asarray(bad), n)


@pytest.fixture
def fake_mnist(monkeypatch):
    """A small stand-in for load_mnist: uint8 images with every byte value, int labels (uint8 like IDX)."""
    rng = np.random.default_rng(3)
    Xa = rng.integers(0, 256, size=(60, 784), dtype=np.uint8)
    Xa[0, :256] = np.arange(256, dtype=np.uint8)
    ya = rng.integers(0, 10, size=60).astype(np.uint8)
    Xb = rng.integers(0, 256, size=(20, 784), dtype=np.uint8)
    yb = rng.integers(0, 10, size=20).astype(np.uint8)
    calls = []

    def load_mnist(*, data_home=None, idx_dir=None, verbose=False):
        calls.append(data_home)
        return Xa, ya, Xb, yb

    import kernelgen.datasets

    monkeypatch.setattr(kernelgen.cli, "load_mnist", load_mnist)  # the name cli imported at its top
    return Xa, ya, Xb, yb, calls


def test_load_mnist_scaled_first_n(fake_mnist):
    Xa, ya, Xb, yb, calls = fake_mnist
    Xtr, ytr, Xte, yte = cli.load_mnist_scaled(n_train=10, n_test=5, data_home="somewhere")
    assert calls == ["somewhere"]
    assert Xtr.dtype == np.float64 and ytr.dtype == np.int64 and Xtr.shape == (10, 784) and Xte.shape == (5, 784)
    # byte / 255 exactly as the scripts computed it; the extremes map to 0 and 1
    np.testing.assert_array_equal(Xtr, Xa[:10] / 255.0)
    np.testing.assert_array_equal(Xte, Xb[:5] / 255.0)
    assert Xtr.min() == 0.0 and Xtr.max() == 1.0
    np.testing.assert_array_equal(ytr, ya[:10])
    np.testing.assert_array_equal(yte, yb[:5])
    Xall, _, Xt0, yt0 = cli.load_mnist_scaled(n_test=0)
    assert Xall.shape == (60, 784) and Xt0.shape == (0, 784) and yt0.shape == (0,)


def test_load_mnist_scaled_seeded_subset_and_index(fake_mnist):
    Xa, ya, Xb, _, _ = fake_mnist
    Xtr, ytr, _, _ = cli.load_mnist_scaled(n_train=12, seed=7)
    idx = np.sort(np.random.default_rng(7).choice(60, 12, replace=False))  # the draw mnist_kernel documents
    np.testing.assert_array_equal(Xtr, Xa[idx] / 255.0)
    np.testing.assert_array_equal(ytr, ya[idx])
    # a callable index sees the split's labels (as smith_le selects zeros and ones)
    _, yz, Xt, _ = cli.load_mnist_scaled(train_index=lambda y: np.flatnonzero(y == 3),
                                           test_index=np.array([4, 1]))
    np.testing.assert_array_equal(yz, ya[ya == 3])
    np.testing.assert_array_equal(Xt, Xb[[4, 1]] / 255.0)


@pytest.mark.parametrize("kw", [dict(n_train=61), dict(n_train=-1), dict(n_test=21), dict(seed=1),
                                dict(n_train=3, train_index=[0, 1]), dict(train_index=[60]),
                                dict(train_index=[0.5])])
def test_load_mnist_scaled_refuses(fake_mnist, kw):
    with pytest.raises(InvalidInputError):
        cli.load_mnist_scaled(**kw)


def test_peak_rss_matches_proc_status():
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc")

    def vmhwm_gb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
        pytest.skip("no VmHWM")

    lo = vmhwm_gb()
    got = cli.peak_rss_gb()
    hi = vmhwm_gb()
    # the kernel's high-water mark of this process, read before and after (1 MB slack: page accounting)
    assert lo - 1e-3 <= got <= hi + 1e-3


def test_save_figure_png_and_directories(tmp_path):
    plt = cli.pyplot()
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = cli.save_figure(fig, tmp_path / "a" / "b" / "fig.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the PNG signature
    assert not plt.fignum_exists(fig.number)  # closed
    fig2, _ = plt.subplots()
    with pytest.raises(InvalidInputError):
        cli.save_figure(fig2, tmp_path / "fig.pdf")
    plt.close(fig2)


# ---------------------------------------------------------------------------------------------- emit
def test_emit_last_line_equals_json_out_with_provenance(tmp_path, capsys):
    out = tmp_path / "deep" / "m.json"
    print("a human summary line")
    obj = cli.emit({"error": np.float64(0.25), "n": np.int64(3), "v": np.arange(3), "p": Path("x/y")},
                   json_out=out, seeds={"data": 4}, rates={"sgemm_gflops": 300.0})
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "a human summary line"
    last = json.loads(lines[-1])
    assert last == json.loads(out.read_text()) == obj
    assert out.read_text() == lines[-1] + "\n"  # the same line, byte for byte
    assert last["error"] == 0.25 and last["n"] == 3 and last["v"] == [0, 1, 2] and last["p"] == "x/y"
    prov = last["provenance"]
    assert prov["seeds"] == {"data": 4} and prov["rates"] == {"sgemm_gflops": 300.0}
    for key in ("kernelgen", "numpy", "cpu", "date", "git_commit"):
        assert key in prov


@pytest.mark.parametrize("value", [float("nan"), float("inf"), np.float32("-inf")])
def test_emit_refuses_non_finite_and_writes_nothing(tmp_path, capsys, value):
    out = tmp_path / "m.json"
    with pytest.raises(NonFiniteResultError, match=r"\['rows'\]\[1\]\['x'\]"):
        cli.emit({"rows": [{"x": 1.0}, {"x": value}]}, json_out=out)
    assert not out.exists() and capsys.readouterr().out == ""


def test_emit_refuses_own_provenance_and_unknown_types(capsys):
    with pytest.raises(InvalidInputError):
        cli.emit({"provenance": {}})
    with pytest.raises(InvalidInputError):
        cli.emit({"x": object()})
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------------------------- run
def _parser():
    p = cli.make_parser("A test script.", script="my_script.py", seed=0)
    p.add_argument("--n", type=int, default=5, help="a size")
    return p


def test_run_named_error_is_one_line_exit_2(capsys, restore_loggers):
    def main(args):
        raise InvalidInputError("n must be positive,\n  got -1.")

    assert cli.run(main, _parser(), ["--n", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: InvalidInputError: n must be positive, got -1."]


def test_run_debug_shows_named_error_and_other_errors_propagate(restore_loggers):
    def named(args):
        raise NotPositiveDefiniteError("pivot 3 is not positive", index=3)

    with pytest.raises(NotPositiveDefiniteError):
        cli.run(named, _parser(), ["--debug"])

    def bug(args):
        raise ZeroDivisionError("a bug keeps its traceback")

    with pytest.raises(ZeroDivisionError):
        cli.run(bug, _parser(), [])


def test_run_passes_args_and_sets_log_levels(restore_loggers):
    seen = {}

    def main(args):
        seen.update(vars(args))
        seen["levels"] = (logging.getLogger("kernelgen").getEffectiveLevel(),
                          logging.getLogger("my_script").getEffectiveLevel())

    assert cli.run(main, _parser(), ["--n", "7", "--seed", "3"]) == 0
    assert seen["n"] == 7 and seen["seed"] == 3 and seen["json_out"] is None and seen["quiet"] is False
    assert seen["levels"] == (logging.INFO, logging.INFO)
    assert cli.run(main, _parser(), ["--quiet"]) == 0
    assert seen["levels"] == (logging.WARNING, logging.WARNING)


def test_format_error():
    assert cli.format_error(InvalidInputError("bad")) == "error: InvalidInputError: bad"
    assert cli.format_error(InvalidInputError("")) == "error: InvalidInputError"


# ---------------------------------------------------------------------------------------------- --help
# internal notes (work items, the shared-machine lock) and machine-specific memory figures, which go stale
FORBIDDEN = [r"\bissue\b", r"\bf?lock\b", r"\bTODO\b", r"\bitem \d", r"\d\s*GB\b", r"\bGiB\b"]


@pytest.mark.parametrize("path", PARSERS, ids=lambda p: p.stem)
def test_help_shows_defaults_and_no_internal_notes(path):
    parser = _load(path).build_parser()
    text = " ".join(parser.format_help().split())  # whitespace-normalised: argparse wraps lines
    for pat in FORBIDDEN:
        assert not re.search(pat, text, flags=re.IGNORECASE), (pat, path.name)
    assert "default: None" not in text  # a None default is explained in words
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:  # flags (--smoke, --quiet, --help) take no value
            continue
        assert action.help, f"{path.name}: {action.option_strings} has no help"
        if action.default is None:
            # None must be explained in words
            assert "default" in action.help.lower(), f"{path.name}: {action.option_strings}"
        elif "default" not in action.help.lower():
            assert f"(default: {action.default})" in text, f"{path.name}: {action.option_strings}"


def test_common_options_everywhere():
    for path in PARSERS:
        opts = {o for a in _load(path).build_parser()._actions for o in a.option_strings}
        assert {"--json-out", "--quiet", "--debug"} <= opts, path.name
        if path.parent.name == "scripts":
            assert {"--smoke", "--data-home", "--seed"} <= opts, path.name


# ---------------------------------------------------------------------------------------------- a real script
def _script(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "mnist_kernel.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def test_mnist_kernel_json_last_line_and_provenance(tmp_path):
    out = tmp_path / "sub" / "m.json"
    r = _script("--smoke", "--n-train", "60", "--n-test", "40", "--seed", "2", "--json-out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) > 1  # the human summary comes first
    m = json.loads(lines[-1])
    assert m == json.loads(out.read_text())
    assert m["provenance"]["seeds"] == {"synthetic_data": 2}
    assert m["n_train"] == 60 and m["n_test"] == 40
    assert all(math.isfinite(m[k]) for k in ("test_error", "relative_residual", "rkhs_norm"))
    # without --quiet, kernelgen's INFO messages go to stderr (never stdout)
    assert "kernelgen.solvers" in r.stderr and "kernelgen.solvers" not in r.stdout


def test_mnist_kernel_named_error_one_line_exit_2():
    r = _script("--smoke", "--quiet", "--n-train", "5", "--solver", "cholesky", "--bandwidth", "-1")
    assert r.returncode == 2
    assert r.stdout == ""  # no summary, no JSON line
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: InvalidInputError: ") and "bandwidth" in lines[-1]
    assert sum(line.startswith("error:") for line in lines) == 1
    d = _script("--smoke", "--quiet", "--n-train", "5", "--bandwidth", "-1", "--debug")
    assert d.returncode == 1 and "Traceback" in d.stderr and "InvalidInputError" in d.stderr


def test_mnist_kernel_help_subprocess():
    r = _script("--help", timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("usage: mnist_kernel.py")
    assert "(default: 60000)" in r.stdout and "(default: gaussian)" in r.stdout
