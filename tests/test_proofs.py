"""Every check of every module in proofs/ (sympy derivation + numerical cross-check)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from proofs import claim, discover
from proofs.__main__ import run

ROOT = Path(__file__).resolve().parents[1]
CHECKS = discover()


@pytest.mark.parametrize("module, name, check", CHECKS, ids=[f"{m}::{n}" for m, n, _ in CHECKS])
def test_proof(module, name, check):
    summary = check()
    assert isinstance(summary, str) and summary, f"{module}::{name} returned no summary"
    assert claim(check) != name, f"{module}::{name} has no docstring stating its claim"


def test_discovery_finds_the_core_proofs():
    mods = {m for m, _, _ in CHECKS}
    assert {"row_space", "min_norm", "gd_closed_form", "step_size"} <= mods
    assert not any(m.startswith("_") for m in mods)


def test_runner_exit_code_on_failure():
    def check_fails():
        """A claim that is false."""
        raise AssertionError("deliberately false")

    def check_passes():
        """A claim that is true."""
        return "ok"

    buf = io.StringIO()
    assert run([("fake", "check_passes", check_passes)], stream=buf) == 0
    assert run([("fake", "check_passes", check_passes), ("fake", "check_fails", check_fails)], stream=buf) == 1
    assert "FAIL" in buf.getvalue() and "deliberately false" in buf.getvalue()


def test_python_m_proofs_exit_code():
    # the command-line entry point on the fast modules (every check already ran above)
    res = subprocess.run(
        [sys.executable, "-m", "proofs", "step_size", "min_norm"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 passed, 0 failed" in res.stdout
    listed = subprocess.run([sys.executable, "-m", "proofs", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == len(CHECKS)


@pytest.mark.slow
def test_python_m_proofs_all():
    res = subprocess.run([sys.executable, "-m", "proofs"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
