"""The shape of the house: kernelgen's import graph has no cycles and points downwards only.

Every module under ``src/kernelgen`` is parsed with :mod:`ast` (nothing is imported), and the graph
of imports between kernelgen modules is built from top-level *and* function-level import
statements. The checks:

1. the graph has no cycle (a function-level import closes a cycle as surely as a top-level one);
2. no module imports a module of a higher layer (:data:`LAYERS` below), so ``sgd`` never reaches
   for the package root and ``solvers`` never reaches for an experiment;
3. kernelgen modules are imported at the top of a module, never inside a function (a function-level
   import hides a dependency; where it would create a cycle, the layering is what needs fixing).
   Function-level imports stay only for optional heavy third-party dependencies (jax, matplotlib,
   mpi4py), which this test does not restrict;
4. every public module (no path component starting with ``_``) declares ``__all__``;
5. no module is longer than :data:`MAX_LINES` unless its docstring says why ("Length: ...").

The test is its own oracle check: :func:`test_checker_detects_violations` feeds the checker a
small synthetic package with a cycle, an upward import, a function-level sibling import, a public
module without ``__all__`` and an over-long module, and asserts that each is reported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Subpackages installed from a folder outside ``src/kernelgen`` (``package-dir`` in pyproject.toml):
#: dotted name -> folder. ``kernelgen.proofs`` is the repository's top-level ``proofs/``.
MAPPED: dict[str, Path] = {"kernelgen.proofs": SRC.parent / "proofs"}

#: The layer of every top-level kernelgen module or subpackage, bottom (0) to top. A module may
#: import modules of its own layer or of lower layers only. Submodules (``kernelgen.sgd._dual``)
#: take the layer of their top-level package (``kernelgen.sgd``).
#:
#: 0  foundation  -- errors, input validation, numerical rules, options, provenance, JAX helpers,
#:                   the version string: depend on nothing else in kernelgen (but each other)
#: 1  kernels     -- kernel objects and their accurate entries;
#:    datasets    -- the data layer (MNIST, IDX), which needs only the foundation
#: 2  factors     -- factorisations computed once (Cholesky, eigh, QR/SVD, tiled storage)
#: 3  solvers     -- exact minimum-norm solvers built on kernels and factors
#: 4  experiments -- estimators, sgd, evidence, random_features, theory, features: each built on
#:                   the layers below, none on another experiment (same layer: allowed by rule 2,
#:                   but none does today)
#: 5  the package root ``kernelgen`` (re-exports; imported by nothing inside the package) and
#:    ``kernelgen.verify`` (the claims registry: runs experiments of every layer below)
LAYERS: dict[str, int] = {
    "kernelgen.errors": 0,
    "kernelgen._validation": 0,
    "kernelgen.numerics": 0,
    "kernelgen.options": 0,
    "kernelgen.provenance": 0,
    "kernelgen._jax": 0,
    "kernelgen._version": 0,
    "kernelgen._interrupt": 0,
    "kernelgen._files": 0,
    "kernelgen.kernels": 1,
    "kernelgen.datasets": 1,
    "kernelgen.factors": 2,
    "kernelgen.solvers": 3,
    "kernelgen.estimators": 4,
    "kernelgen.sgd": 4,
    "kernelgen.evidence": 4,
    "kernelgen.random_features": 4,
    "kernelgen.theory": 4,
    "kernelgen.features": 4,
    "kernelgen.cli": 4,
    "kernelgen.proofs": 4,  # the executable derivations: check sgd, evidence, random_features, solvers, kernels
    "kernelgen.learning_curve": 4,  # nested prefixes share one factor (kernel_interpolate's pieces)
    "kernelgen.spectral": 4,  # kernel spectrum, task-model alignment, eigenlearning theory
    "kernelgen.networks": 4,  # finite ReLU networks (JAX) against their kernels: NTK parameterisation, linearisation
    "kernelgen.verify": 5,
    "kernelgen": 5,
}

#: Function-level imports of kernelgen modules that are allowed for a technical reason, as
#: (importer, imported) pairs, each with its reason. None today: every function-level import of a
#: kernelgen module either closed a cycle (fixed by layering) or was a lower layer (moved up).
FUNCTION_LEVEL_ALLOWED: set[tuple[str, str]] = set()


# ----------------------------------------------------------------------------- the checker


def discover(src: Path, package: str = "kernelgen",
             mapped: dict[str, Path] | None = None) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is_package) for every ``.py`` file under ``src/package`` and under
    each ``mapped`` folder (installed as the dotted name it maps to)."""
    mods = {}
    roots = [(src / package, package.split("."))] + [(f, name.split(".")) for name, f in (mapped or {}).items()]
    for root, prefix in roots:
        for path in sorted(root.rglob("*.py")):
            parts = prefix + list(path.relative_to(root).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            mods[".".join(parts)] = (path, is_pkg)
    return mods


def _targets(node, module: str, is_pkg: bool, mods, package: str) -> list[str]:
    """The kernelgen modules an import statement names (``from . import x`` -> ``pkg.x`` if a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == package or a.name.startswith(package + ".")]
    if node.level == 0:
        base = node.module or ""
        if not (base == package or base.startswith(package + ".")):
            return []
    else:
        here = module.split(".") if is_pkg else module.split(".")[:-1]
        here = here[: len(here) - (node.level - 1)]
        base = ".".join(here + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in mods else base)
    return out


def import_graph(src: Path, package: str = "kernelgen", mapped: dict[str, Path] | None = None):
    """(mods, edges, function_level): edges[m] is the set of kernelgen modules m imports anywhere;
    function_level is the list of (m, target, line) imports found inside a function or method."""
    mods = discover(src, package, mapped)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    function_level: list[tuple[str, str, int]] = []
    for m, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        inside = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inside.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(node, m, is_pkg, mods, package):
                    if t != m:
                        edges[m].add(t)
                        if id(node) in inside and (m, t, node.lineno) not in function_level:
                            function_level.append((m, t, node.lineno))
    return mods, edges, function_level


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes (first == last), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {m: WHITE for m in edges}
    stack: list[str] = []

    def visit(m):
        colour[m] = GREY
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if colour.get(t, BLACK) == GREY:
                return stack[stack.index(t):] + [t]
            if colour.get(t) == WHITE:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        colour[m] = BLACK
        return None

    for m in sorted(edges):
        if colour[m] == WHITE:
            found = visit(m)
            if found:
                return found
    return None


def layer_of(module: str, layers: dict[str, int], package: str = "kernelgen") -> int:
    """The layer of ``module``: that of its top-level package or module (KeyError if unmapped)."""
    if module == package:
        return layers[package]
    top = ".".join(module.split(".")[:2])
    return layers[top]


def upward_imports(edges, layers, package: str = "kernelgen") -> list[str]:
    out = []
    for m, ts in sorted(edges.items()):
        for t in sorted(ts):
            if layer_of(t, layers, package) > layer_of(m, layers, package):
                out.append(f"{m} (layer {layer_of(m, layers, package)}) imports {t} "
                           f"(layer {layer_of(t, layers, package)})")
    return out


def missing_all(mods) -> list[str]:
    """Public modules (no ``_``-prefixed path component after the package) without ``__all__``."""
    out = []
    for m, (path, _) in sorted(mods.items()):
        if any(p.startswith("_") for p in m.split(".")[1:]):
            continue
        tree = ast.parse(path.read_text())
        has = any(isinstance(n, (ast.Assign, ast.AnnAssign)) and any(
            isinstance(t, ast.Name) and t.id == "__all__"
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])) for n in tree.body)
        if not has:
            out.append(m)
    return out


# ----------------------------------------------------------------------------- the checks on kernelgen

MODS, EDGES, FUNCTION_LEVEL = import_graph(SRC, mapped=MAPPED)


def test_every_module_has_a_layer():
    unmapped = sorted({".".join(m.split(".")[:2]) for m in MODS if m != "kernelgen"} - set(LAYERS))
    assert not unmapped, f"add these to LAYERS (with the reason for their layer): {unmapped}"


def test_no_import_cycles():
    cycle = find_cycle(EDGES)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_upward_imports():
    bad = upward_imports(EDGES, LAYERS)
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_no_function_level_imports_of_kernelgen_modules():
    bad = [f"{m}:{line} imports {t} inside a function" for m, t, line in FUNCTION_LEVEL
           if (m, t) not in FUNCTION_LEVEL_ALLOWED]
    assert not bad, "\n".join(bad)


def test_function_level_allow_list_is_not_stale():
    found = {(m, t) for m, t, _ in FUNCTION_LEVEL}
    stale = sorted(FUNCTION_LEVEL_ALLOWED - found)
    assert not stale, f"these allow-list entries no longer occur; remove them: {stale}"


def test_public_modules_declare_all():
    assert not missing_all(MODS), f"public modules without __all__: {missing_all(MODS)}"


#: Longest module a newcomer is expected to read in one sitting, in lines. A longer module must say
#: why in its docstring, in a line starting with "Length:".
MAX_LINES = 800


def long_modules(mods, max_lines: int = MAX_LINES) -> list[str]:
    """Modules over ``max_lines`` lines whose docstring gives no "Length:" reason."""
    out = []
    for m, (path, _) in sorted(mods.items()):
        text = path.read_text()
        n = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if n > max_lines and not any(line.strip().startswith("Length:") for line in doc.splitlines()):
            out.append(f"{m} ({n} lines)")
    return out


def test_modules_readable_in_one_sitting():
    bad = long_modules(MODS)
    assert not bad, f"split these modules or state the reason in a 'Length:' docstring line: {bad}"


def test_all_names_exist():
    """Every name in a public module's ``__all__`` is importable from it (imports the package)."""
    import importlib

    for m in MODS:
        if any(p.startswith("_") for p in m.split(".")[1:]):
            continue
        mod = importlib.import_module(m)
        missing = [n for n in getattr(mod, "__all__", ()) if not hasattr(mod, n)]
        assert not missing, f"{m}.__all__ names missing attributes: {missing}"


# ----------------------------------------------------------------------------- the checker can fail


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_checker_detects_violations(tmp_path):
    _write(tmp_path, {
        "kernelgen/__init__.py": "from . import low, high\n__all__ = ['low', 'high']\n",
        "kernelgen/low.py": "from .high import f\n__all__ = ['g']\ndef g():\n    return f\n",
        "kernelgen/high.py": "def f():\n    from .low import g\n    return g\n",
        "kernelgen/sub/__init__.py": "__all__ = []\n",
        "kernelgen/sub/_a.py": "from .. import low\n",
    })
    mods, edges, fn = import_graph(tmp_path)
    assert set(mods) == {"kernelgen", "kernelgen.low", "kernelgen.high", "kernelgen.sub", "kernelgen.sub._a"}
    cycle = find_cycle(edges)
    assert cycle is not None and set(cycle) == {"kernelgen.low", "kernelgen.high"}
    layers = {"kernelgen": 2, "kernelgen.low": 0, "kernelgen.high": 1, "kernelgen.sub": 1}
    assert upward_imports(edges, layers) == ["kernelgen.low (layer 0) imports kernelgen.high (layer 1)"]
    assert fn == [("kernelgen.high", "kernelgen.low", 2)]
    assert missing_all(mods) == ["kernelgen.high"]
    assert long_modules(mods, max_lines=3) == ["kernelgen.low (4 lines)"]
    _write(tmp_path, {"kernelgen/low.py": '"""Low.\n\nLength: one idea, kept whole."""\n' + "x = 1\n" * 5})
    assert long_modules(import_graph(tmp_path)[0], max_lines=3) == []
    # and a clean graph passes
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("stmt, expected", [
    ("import kernelgen", ["kernelgen"]),
    ("from kernelgen import errors", ["kernelgen.errors"]),
    ("from . import errors", ["kernelgen.errors"]),
    ("from . import __version__", ["kernelgen"]),
    ("from ..numerics import x", ["kernelgen.numerics"]),
    ("import numpy", []),
])
def test_import_resolution(stmt, expected):
    mods = {"kernelgen": None, "kernelgen.errors": None, "kernelgen.numerics": None, "kernelgen.sgd": None,
            "kernelgen.sgd._common": None}
    node = ast.parse(stmt).body[0]
    module, is_pkg = ("kernelgen.sgd._common", False) if stmt.startswith("from ..") else ("kernelgen.sgd", False)
    if stmt.startswith("from . "):
        module = "kernelgen.sgd"
    assert _targets(node, module, is_pkg, mods, "kernelgen") == expected
