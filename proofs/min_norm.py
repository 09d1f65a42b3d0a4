"""The minimum-norm interpolant is X^T (X X^T)^{-1} y, and every other interpolant is longer.

KKT: minimise (1/2) w^T w subject to X w = y. The Lagrangian
L = (1/2) w^T w - lambda^T (X w - y) is stationary at w = X^T lambda (so w is in the row
space), and feasibility gives X X^T lambda = y, i.e. w* = X^T (X X^T)^{-1} y at full row
rank (= X^+ y). The objective is strictly convex, so this stationary point is the minimum.

Pythagoras: any interpolant is w* + v with X v = 0, and w*^T v = y^T (X X^T)^{-1} X v = 0,
so ||w* + v||^2 = ||w*||^2 + ||v||^2 > ||w*||^2 for v != 0.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import sympy as sp

from ._common import is_zero_matrix, random_problem, rel, symbolic_matrix


def check_kkt_min_norm_interpolant() -> str:
    """KKT: argmin ||w||^2 subject to X w = y is w* = X^T (X X^T)^{-1} y at full row rank."""
    X = symbolic_matrix("x", 2, 3)
    y = symbolic_matrix("y", 2, 1)
    w = symbolic_matrix("w", 3, 1)
    lam = symbolic_matrix("l", 2, 1)
    L = (w.T * w)[0, 0] / 2 - (lam.T * (X * w - y))[0, 0]
    unknowns = list(w) + list(lam)
    eqs = [sp.diff(L, u) for u in unknowns]  # stationarity in w, feasibility in lambda
    sol = sp.solve(eqs, unknowns, dict=True)
    assert len(sol) == 1, f"expected a unique KKT point, got {len(sol)}"
    w_kkt = w.subs(sol[0])
    w_star = X.T * (X * X.T).inv() * y
    assert is_zero_matrix(w_kkt - w_star), "KKT point != X^T (X X^T)^{-1} y"
    # second-order: the Hessian of (1/2)||w||^2 is the identity (positive definite)
    assert sp.hessian((w.T * w)[0, 0] / 2, list(w)) == sp.eye(3)
    # numerical: the library's minimum-norm solve against the formula and numpy's pinv
    from kernelgen import min_norm_solve

    worst = 0.0
    for seed, (n, d) in enumerate([(5, 12), (40, 100), (30, 31)]):
        Xn, yn = random_problem(n, d, seed=seed)
        coef = min_norm_solve(Xn, yn).coef
        formula = Xn.T @ scipy.linalg.solve(Xn @ Xn.T, yn, assume_a="pos")
        # both are backward stable: relative difference ~ kappa(X) * eps (kappa <= ~1e3 here)
        worst = max(worst, rel(coef, formula), rel(coef, np.linalg.pinv(Xn) @ yn))
        assert np.linalg.norm(Xn @ coef - yn) <= 1e-10 * np.linalg.norm(yn), "min_norm_solve does not interpolate"
    assert worst <= 1e-10, f"min_norm_solve differs from X^T (X X^T)^-1 y by {worst:.2e}"
    return f"KKT point = X^T(XX^T)^-1 y (sympy, 2x3 symbolic); min_norm_solve matches to {worst:.1e}"


def check_other_interpolants_are_longer() -> str:
    """Every other interpolant w* + v (X v = 0) has ||w* + v||^2 = ||w*||^2 + ||v||^2 > ||w*||^2."""
    X = symbolic_matrix("x", 2, 3)
    y = symbolic_matrix("y", 2, 1)
    t = sp.Symbol("t", real=True)
    v = X[0, :].T.cross(X[1, :].T)  # spans the null space of a generic 2 x 3 X
    assert is_zero_matrix(X * v), "v is not a null vector"
    w_star = X.T * (X * X.T).inv() * y
    assert is_zero_matrix(X * (w_star + t * v) - y), "w* + t v does not interpolate"
    assert sp.simplify((w_star.T * v)[0, 0]) == 0, "w* is not orthogonal to the null space"
    pyth = ((w_star + t * v).T * (w_star + t * v))[0, 0] - (w_star.T * w_star)[0, 0] - t**2 * (v.T * v)[0, 0]
    assert sp.simplify(pyth) == 0, "Pythagoras fails"
    # numerical: library min-norm solution vs random interpolants; and the SGD limit from w0 != 0
    from kernelgen import min_norm_solve
    from kernelgen.sgd import sgd

    Xn, yn = random_problem(20, 60, seed=3)
    w_mn = min_norm_solve(Xn, yn).coef
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
    tr = sgd(Xn, yn, steps=20000, key=0, w0=w0)
    assert np.linalg.norm(Xn @ tr.w - yn) <= 1e-8 * np.linalg.norm(yn), "SGD from w0 did not interpolate"
    assert np.linalg.norm(tr.w) > np.linalg.norm(w_mn), "SGD limit from w0 != 0 not longer than w*"
    return f"Pythagoras symbolic + numeric ({worst:.1e}); SGD from w0 != 0 interpolates with a longer w"


CHECKS = [check_kkt_min_norm_interpolant, check_other_interpolants_are_longer]
