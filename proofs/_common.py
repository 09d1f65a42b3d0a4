"""Helpers shared by proof modules (private: not a proof itself)."""

from __future__ import annotations

import numpy as np
import sympy as sp


def is_zero_matrix(M) -> bool:
    """True when every entry of the sympy matrix expression ``M`` simplifies to 0."""
    M = sp.Matrix(M) if not isinstance(M, sp.MatrixBase) else M
    return all(sp.simplify(sp.expand(e)) == 0 for e in M)


def expand_zero(expr) -> bool:
    """True when a MatrixSymbol expression expands to the zero matrix."""
    e = sp.expand(expr)
    return e == 0 or isinstance(e, sp.ZeroMatrix) or e.is_ZeroMatrix is True


def symbolic_matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    """A ``rows x cols`` sympy matrix of real symbols ``name_ij``."""
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}{i}{j}", real=True))


def random_problem(n: int, d: int, seed: int, k: int | None = None):
    """Gaussian X (n, d) and y (n,) or (n, k) from an explicit seed."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal((n,) if k is None else (n, k))
    return X, y


def rel(a, b) -> float:
    """||a - b|| / ||b||."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), np.finfo(float).tiny))


def mat_zero(expr) -> bool:
    """True when a MatrixSymbol expression expands and simplifies to the zero matrix (or 0)."""
    e = sp.expand(expr)
    if e == 0 or isinstance(e, sp.ZeroMatrix) or e.is_ZeroMatrix is True:
        return True
    e = sp.simplify(e)
    return e == 0 or isinstance(e, sp.ZeroMatrix) or e.is_ZeroMatrix is True


def orthogonal_reduce(expr, Q):
    """Expand ``expr`` and cancel every adjacent ``Q.T * Q`` (``Q`` assumed orthogonal: QᵀQ = I).

    The assumption is passed to sympy's ``refine`` as ``Q.orthogonal(Q)``; nothing else is assumed.
    """
    from sympy.assumptions import Q as ask_Q

    return sp.expand(sp.refine(sp.expand(expr), ask_Q.orthogonal(Q)).doit())
