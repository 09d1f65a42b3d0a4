"""Every check of every module of kernelgen.proofs (the repository's proofs/: sympy derivation + numerical
cross-check), and proof that they can fail.

The mutation tests at the end break one derivation step or one library function by hand
(monkeypatch, undone after the test) and assert that the corresponding check then raises
AssertionError: a proof that passed whatever its steps said would be caught here.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from kernelgen.proofs import claim, discover
from kernelgen.proofs.__main__ import run

ROOT = Path(__file__).resolve().parents[1]
CHECKS = discover()


@pytest.mark.parametrize("module, name, check", CHECKS, ids=[f"{m}::{n}" for m, n, _ in CHECKS])
def test_proof(module, name, check):
    summary = check()
    assert isinstance(summary, str) and summary, f"{module}::{name} returned no summary"
    assert claim(check) != name, f"{module}::{name} has no docstring stating its claim"


def test_discovery_finds_the_core_proofs():
    mods = {m for m, _, _ in CHECKS}
    assert {"row_space", "min_norm", "gd_closed_form", "step_size", "rff_gaussian_kernel"} <= mods
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


def test_python_m_kernelgen_proofs_exit_code(tmp_path):
    # the installed entry point, run away from the checkout (cwd without proofs/), on the fastest
    # module (every check already ran above; tests/test_packaging.py runs it from a built wheel)
    res = subprocess.run([sys.executable, "-m", "kernelgen.proofs", "min_norm"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed, 0 failed" in res.stdout


def test_python_m_proofs_from_the_checkout_runs_the_same_checks():
    # `python -m proofs` from the repository root imports the same files as the top-level package
    res = subprocess.run([sys.executable, "-m", "proofs", "--list"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines() == [f"{m}::{n}  {claim(c)}" for m, n, c in CHECKS]


def test_proof_modules_import_kernelgen_layers_at_the_top():
    """kernelgen.proofs sits in layer 4: its modules import kernelgen's modules (never the package root's
    re-exports) and only at the top of the module, so the import graph tests/test_layers.py checks is the
    real one and `python -m proofs` / `python -m kernelgen.proofs` import the same things."""
    import ast

    def is_module(dotted):  # a module or subpackage of src/kernelgen (not a name re-exported by a package)
        path = ROOT / "src" / dotted.replace(".", "/")
        return path.is_dir() or path.with_suffix(".py").exists()

    bad = []
    for path in sorted((ROOT / "proofs").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] == "kernelgen"]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "kernelgen":
                names = [f"kernelgen.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("kernelgen."):
                names = [node.module]
            else:
                continue
            for name in names:
                if id(node) not in top:
                    bad.append(f"proofs/{path.name}:{node.lineno} imports {name} inside a function")
                if not is_module(name):
                    bad.append(f"proofs/{path.name}:{node.lineno} imports {name}: not a kernelgen module")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_python_m_proofs_all():
    res = subprocess.run([sys.executable, "-m", "kernelgen.proofs"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------------------
# Mutations: a wrong step (symbolic) or a wrong library function (numerical) must fail.
# --------------------------------------------------------------------------------------


def test_wrong_min_norm_formula_fails(monkeypatch):
    import kernelgen.proofs.min_norm as m

    # the pseudo-inverse of X^T written as if X^T X were invertible: not the KKT point
    monkeypatch.setattr(m, "min_norm_formula", lambda X, y: X.T * y)
    with pytest.raises(AssertionError):
        m.check_kkt_min_norm_interpolant()


def test_wrong_gd_recursion_fails(monkeypatch):
    import kernelgen.proofs.gd_closed_form as g

    def wrong():  # eta*zeta instead of eta*lambda*zeta: b not in the range form
        k = sp.Symbol("k", integer=True, nonnegative=True)
        eta, lam, zeta, c0 = sp.symbols("eta lambda zeta c0", real=True)
        c = sp.Function("c")
        return k, eta, lam, zeta, c0, sp.rsolve(c(k + 1) - (1 - eta * lam) * c(k) - eta * zeta, c(k), {c(0): c0})

    monkeypatch.setattr(g, "scalar_recursion_solution", wrong)
    with pytest.raises(AssertionError):
        g.check_closed_form_recursion()


def test_wrong_minibatch_pair_count_fails(monkeypatch):
    import kernelgen.proofs.step_size as st

    real = st.minibatch_second_moment

    def wrong(B, N, replace):  # treats the B equal pairs as independent too: E[H_B^2] = H^2
        S2, H, _ = real(B, N, replace)
        return S2, H, H * H

    monkeypatch.setattr(st, "minibatch_second_moment", wrong)
    with pytest.raises(AssertionError):
        st.check_minibatch_bound()


def test_wrong_rff_frequency_law_fails(monkeypatch):
    import kernelgen.proofs.rff_gaussian_kernel as r

    # v ~ N(0, s^2) instead of N(0, s^-2): the derived kernel becomes exp(-s^2 |u|^2 / 2)
    monkeypatch.setattr(r, "gaussian_density", lambda t, s: sp.exp(-(t**2) / (2 * s**2)) / (s * sp.sqrt(2 * sp.pi)))
    with pytest.raises(AssertionError):
        r.check_rff_expectation_is_gaussian_kernel()


def test_library_kernel_with_wrong_bandwidth_convention_fails(monkeypatch):
    import kernelgen.proofs.rff_gaussian_kernel as r

    import kernelgen.kernels

    real = kernelgen.kernels.kernel_matrix

    def wrong(X, Z=None, *, kernel="gaussian", bandwidth=1.0, **kw):  # exp(-|u|^2 / s^2)
        return real(X, Z, kernel=kernel, bandwidth=bandwidth / np.sqrt(2.0), **kw)

    monkeypatch.setattr(kernelgen.kernels, "kernel_matrix", wrong)  # the name the proof calls
    with pytest.raises(AssertionError):
        r.check_rff_expectation_is_gaussian_kernel()


def test_library_stability_bound_off_by_5_percent_fails(monkeypatch):
    import kernelgen.proofs.step_size as st

    import kernelgen.sgd

    real = kernelgen.sgd.stability_bound
    monkeypatch.setattr(kernelgen.sgd, "stability_bound", lambda *a, **k: 1.05 * real(*a, **k))
    with pytest.raises(AssertionError):
        st.check_minibatch_bound()
