"""Executable proofs: sympy derivations tied to the kernelgen functions they justify.

Each proof is a module ``proofs/<name>.py`` with a module-level list ``CHECKS`` of
zero-argument callables. A check does the sympy derivation *and* a numerical
cross-check against the library function it justifies; it raises ``AssertionError``
(with a message) on failure and returns a one-line summary string on success. The
first line of its docstring states the claim.

Adding a module is all it takes: :func:`discover` finds every module of this package
whose name does not start with ``_``. Run them all with ``python -m kernelgen.proofs``
(``python -m proofs`` from the repository root runs the same files); ``tests/test_proofs.py``
runs each check as its own test.

Packaging and layers: this folder is the repository's top-level ``proofs/``; ``pyproject.toml``
installs it as the subpackage ``kernelgen.proofs`` (``package-dir``), so nothing named ``proofs``
is installed at the top of site-packages. Its modules import kernelgen's lower layers by absolute
name at the top of the module (``from kernelgen import sgd``; never the package root's re-exports,
never inside a function), which works under both names. Within kernelgen it sits in layer 4,
beside the experiments whose functions it checks; :mod:`kernelgen.verify` (layer 5) imports it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

__all__ = ["discover", "claim"]


def discover(names: list[str] | None = None) -> list[tuple[str, str, Callable[[], str]]]:
    """Every check of every proof module, as ``(module_name, check_name, callable)``.

    Parameters
    ----------
    names : list of str, optional
        Only these module names (default: every module not starting with ``_``).

    Returns
    -------
    list of (str, str, callable), sorted by module name, checks in ``CHECKS`` order.
    """
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or (names is not None and info.name not in names):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        checks = getattr(module, "CHECKS", None)
        if checks is None:
            raise AttributeError(f"proofs/{info.name}.py defines no CHECKS list of zero-argument callables.")
        for check in checks:
            found.append((info.name, check.__name__, check))
    return found


def claim(check: Callable) -> str:
    """The claim of a check: the first line of its docstring."""
    doc = (check.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else check.__name__
