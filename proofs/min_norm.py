"""The minimum-norm interpolant is X^T (X X^T)^{-1} y, and every other interpolant is longer.

General statement, any n <= d (sympy ``MatrixSymbol`` of symbolic shape n x d), assuming only
that X X^T is invertible (X has full row rank):

KKT. Minimise (1/2) w^T w subject to X w = y. The Lagrangian L = (1/2) w^T w - l^T (X w - y)
has gradient dL/dw = w - X^T l (sympy's matrix calculus), so a stationary point has w = X^T l
(w lies in the row space); feasibility X w = y then reads X X^T l = y, whose unique solution is
l* = (X X^T)^{-1} y, hence w* = X^T (X X^T)^{-1} y. The Hessian of the objective is I.

Global minimality (Pythagoras). If X w = y then v = w - w* has X v = 0. Every such v is P v
with P = I - X^T (X X^T)^{-1} X (P v - v = -X^T (X X^T)^{-1} (X v)), and w*^T P u = 0 for every
u, so w*^T v = 0 and ||w||^2 = ||w*||^2 + ||v||^2 > ||w*||^2 unless v = 0.

Numerical cross-check: ``kernelgen.min_norm_solve(X, y).coef`` against X^T (X X^T)^{-1} y and
numpy's pinv, and against random interpolants w* + v.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import sympy as sp

from kernelgen import sgd, solvers

from ._common import mat_zero, random_problem, rel

__all__ = [
    "CHECKS",
    "lagrangian_gradient",
    "min_norm_formula",
    "check_kkt_min_norm_interpolant",
    "check_other_interpolants_are_longer",
]


def _setup():
    n, d = sp.symbols("n d", integer=True, positive=True)
    X = sp.MatrixSymbol("X", n, d)
    y = sp.MatrixSymbol("y", n, 1)
    return n, d, X, y


def lagrangian_gradient(X, y, w, lam):
    """dL/dw of L = (1/2) w^T w - lam^T (X w - y), by sympy's matrix calculus."""
    L = (w.T * w) / 2 - lam.T * (X * w - y)
    return sp.diff(L, w)


def min_norm_formula(X, y):
    """The KKT point w* = X^T (X X^T)^{-1} y."""
    return X.T * (X * X.T).I * y


def check_kkt_min_norm_interpolant() -> str:
    """KKT: argmin ||w||^2 subject to X w = y is w* = X^T (X X^T)^{-1} y for any full-row-rank X (symbolic n x d)."""
    n, d, X, y = _setup()
    w, lam = sp.MatrixSymbol("w", d, 1), sp.MatrixSymbol("l", n, 1)
    grad = lagrangian_gradient(X, y, w, lam)
    # stationarity: grad = w - X^T l, so w = X^T l (w is in the row space)
    assert mat_zero(grad - (w - X.T * lam)), f"dL/dw = {grad}, expected w - X^T l"
    assert sp.diff(grad, w) == sp.Identity(d), "Hessian of (1/2)||w||^2 is not I"
    # feasibility of w = X^T l: X X^T l = y; X X^T invertible gives l* = (X X^T)^{-1} y
    lam_star = (X * X.T).I * y
    assert mat_zero(X * X.T * lam_star - y), "l* does not solve X X^T l = y"
    w_star = X.T * lam_star
    assert mat_zero(grad.subs({w: w_star, lam: lam_star})), "(w*, l*) is not stationary"
    assert mat_zero(X * w_star - y), "w* is not feasible"
    assert mat_zero(w_star - min_norm_formula(X, y))
    # negative control: the symbolic machinery rejects a wrong candidate (w = X^T y is not feasible)
    assert not mat_zero(X * (X.T * y) - y), "mat_zero accepted a false identity"
    # --- numerical: the library's minimum-norm solve against the formula and numpy's pinv
    worst = 0.0
    for seed, (nn, dd) in enumerate([(5, 12), (40, 100), (30, 31)]):
        Xn, yn = random_problem(nn, dd, seed=seed)
        coef = solvers.min_norm_solve(Xn, yn).coef
        formula = Xn.T @ scipy.linalg.solve(Xn @ Xn.T, yn, assume_a="pos")
        # both are backward stable: relative difference ~ kappa(X) * eps (kappa <= ~1e3 here)
        worst = max(worst, rel(coef, formula), rel(coef, np.linalg.pinv(Xn) @ yn))
        assert np.linalg.norm(Xn @ coef - yn) <= 1e-10 * np.linalg.norm(yn), "min_norm_solve does not interpolate"
    assert worst <= 1e-10, f"min_norm_solve differs from X^T (X X^T)^-1 y by {worst:.2e}"
    return f"KKT point = X^T(XX^T)^-1 y (sympy, symbolic n x d); min_norm_solve matches to {worst:.1e}"


def check_other_interpolants_are_longer() -> str:
    """Every other interpolant w* + v (X v = 0) has ||w* + v||^2 = ||w*||^2 + ||v||^2 > ||w*||^2 (symbolic n x d)."""
    n, d, X, y = _setup()
    w_star = min_norm_formula(X, y)
    u, v, z = sp.MatrixSymbol("u", d, 1), sp.MatrixSymbol("v", d, 1), sp.MatrixSymbol("z", n, 1)
    P = sp.Identity(d) - X.T * (X * X.T).I * X
    # every null vector is P v: P v - v = -X^T (XX^T)^{-1} (X v); substitute z for X v
    Pv = sp.expand(P * v).subs(X * v, z)
    assert mat_zero(Pv - v + X.T * (X * X.T).I * z), "P v - v is not a function of X v alone"
    assert mat_zero(Pv.subs(z, sp.ZeroMatrix(n, 1)) - v), "X v = 0 does not give P v = v"
    # and every P u is a null vector, so w* + P u interpolates
    assert mat_zero(X * P * u), "X P u != 0"
    assert mat_zero(X * (w_star + P * u) - y), "w* + P u does not interpolate"
    # orthogonality and Pythagoras
    assert mat_zero(w_star.T * P * u) and mat_zero((P * u).T * w_star), "w* is not orthogonal to the null space"
    cross = sp.expand((w_star + v).T * (w_star + v)) - w_star.T * w_star - v.T * v
    assert mat_zero(cross - w_star.T * v - v.T * w_star), "||w* + v||^2 expansion"
    # --- numerical: library min-norm solution vs random interpolants; and the SGD limit from w0 != 0
    Xn, yn = random_problem(20, 60, seed=3)
    w_mn = solvers.min_norm_solve(Xn, yn).coef
    N = scipy.linalg.null_space(Xn)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(20):
        v_ = N @ rng.standard_normal(N.shape[1])
        lhs = np.linalg.norm(w_mn + v_) ** 2
        rhs = np.linalg.norm(w_mn) ** 2 + np.linalg.norm(v_) ** 2
        worst = max(worst, abs(lhs - rhs) / rhs)
        assert lhs > np.linalg.norm(w_mn) ** 2, "a perturbed interpolant is not longer"
    # round-off in squared norms of O(1) vectors: ~1e-15
    assert worst <= 1e-12, f"Pythagoras violated numerically by {worst:.1e}"
    w0 = rng.standard_normal(60)
    tr = sgd.sgd(Xn, yn, steps=20000, key=0, w0=w0)
    assert np.linalg.norm(Xn @ tr.w - yn) <= 1e-8 * np.linalg.norm(yn), "SGD from w0 did not interpolate"
    assert np.linalg.norm(tr.w) > np.linalg.norm(w_mn), "SGD limit from w0 != 0 not longer than w*"
    return f"null space = range of P, w* _|_ P u, Pythagoras (sympy, symbolic n x d); numeric {worst:.1e}"


CHECKS = [check_kkt_min_norm_interpolant, check_other_interpolants_are_longer]
