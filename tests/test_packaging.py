"""What an installed kernelgen contains: every module of src/kernelgen, the proofs as ``kernelgen.proofs``,
and nothing named ``proofs`` at the top of site-packages (issue 20, item 8).

The repository keeps the executable proofs in its top-level ``proofs/`` folder; ``pyproject.toml`` maps
that folder to the subpackage ``kernelgen.proofs`` (``package-dir``) and lists the packages by hand (a
mapped folder outside ``src/kernelgen`` is invisible to ``find``). The fast test checks that list against
the source tree; the wheel test builds a wheel from a copy of the sources, reads its file list, installs
it (not editable) into a fresh directory and runs ``python -m kernelgen.proofs --list`` from there
(``tests/test_proofs.py`` runs the checks through ``python -m kernelgen.proofs``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _source_files() -> set[str]:
    """The files a wheel must hold, as wheel paths: src/kernelgen/**.py and *.json, and proofs/*.py."""
    src = ROOT / "src"
    files = {p.relative_to(src).as_posix() for p in (src / "kernelgen").rglob("*")
             if p.suffix in (".py", ".json") and "__pycache__" not in p.parts}
    files |= {f"kernelgen/proofs/{p.name}" for p in (ROOT / "proofs").glob("*.py")}
    return files


def test_pyproject_lists_every_package_and_maps_proofs_into_kernelgen():
    tool = _pyproject()["tool"]["setuptools"]
    assert tool["package-dir"] == {"kernelgen": "src/kernelgen", "kernelgen.proofs": "proofs"}
    src = ROOT / "src"
    # every folder of src/kernelgen holding modules or package data (no __pycache__), plus the mapped proofs
    expected = {".".join(d.relative_to(src).parts) for d in [src / "kernelgen", *(src / "kernelgen").rglob("*")]
                if d.is_dir() and d.name != "__pycache__" and any(f.suffix in (".py", ".json") for f in d.iterdir())}
    expected.add("kernelgen.proofs")
    assert set(tool["packages"]) == expected, (
        f"pyproject.toml [tool.setuptools] packages: add {sorted(expected - set(tool['packages']))}, "
        f"remove {sorted(set(tool['packages']) - expected)}")
    assert not any(p == "proofs" or p.startswith("proofs.") for p in tool["packages"])


def _build_wheel(tmp_path: Path) -> Path:
    """Build a wheel from a copy of the sources (the checkout gets no build/ or egg-info)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
    shutil.copytree(ROOT / "proofs", tree / "proofs", ignore=ignore)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(tree)]
    try:  # the build-system's own requirement (PEP 639 license string); else pip builds in isolation
        import setuptools

        if int(setuptools.__version__.split(".")[0]) >= 77:
            cmd.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = (tmp_path / "dist").glob("kernelgen-*.whl")
    return wheel


def test_wheel_holds_kernelgen_proofs_and_no_top_level_proofs(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"kernelgen", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    assert "kernelgen/proofs/__main__.py" in names and "kernelgen/proofs/min_norm.py" in names
    missing = _source_files() - set(names)
    assert not missing, f"the wheel lacks {sorted(missing)}"
    # installed (not editable) into a fresh directory that comes first on the path
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                          "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (target / "proofs").exists() and (target / "kernelgen" / "proofs" / "__main__.py").is_file()
    run_dir = tmp_path / "elsewhere"  # no proofs/ folder in the working directory
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import kernelgen.proofs as p; print(p.__file__)"],
                           cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr
    # --list imports every proof module from the installed copy (running them is test_proofs.py's job)
    res = subprocess.run([sys.executable, "-m", "kernelgen.proofs", "--list"], cwd=run_dir, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    from kernelgen.proofs import discover

    assert len(res.stdout.strip().splitlines()) == len(discover()), res.stdout
