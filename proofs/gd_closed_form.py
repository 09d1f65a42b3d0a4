"""Closed-form gradient descent on least squares, its limit, and its function-space form.

Loss L(w) = (1/2N)||X w - y||^2, Hessian H = X^T X / N, b = X^T y / N. GD
w_{t+1} = w_t - eta (H w_t - b) has the closed form

    w_t = w_inf + (I - eta H)^t (w0 - w_inf),       w_inf = X^+ y + (I - X^+ X) w0,

because H w_inf = b (normal equations; H (I - X^+ X) = 0) and w0 - w_inf lies in the row
space. In the eigenbasis of H each component is multiplied by (1 - eta lambda)^t, which
tends to 0 for 0 < eta lambda < 2; components with lambda = 0 (the null space of X) stay
at those of w0 -- hence the limit (FACTS.md, "Gradient descent on least squares").

In function space f_t = X w_t: f_{t+1} - y = (I - eta Theta / N)(f_t - y) exactly, with
Theta = X X^T (for any y); its continuous-time limit is the gradient flow
f(t) = y + exp(-eta t Theta / N)(f0 - y) (Lee et al. 2019, eq. 9).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import sympy as sp

from ._common import expand_zero, is_zero_matrix, random_problem, rel


def _cayley(A: sp.Matrix) -> sp.Matrix:
    """A rational orthogonal matrix (I - A)(I + A)^{-1} from a rational skew matrix A."""
    I = sp.eye(A.shape[0])
    return (I - A) * (I + A).inv()


def _rational_problem():
    """X (3 x 3, rank 2, rational SVD), inconsistent y, w0: exact data with a null space."""
    R = sp.Rational
    V = _cayley(sp.Matrix([[0, R(1, 2), R(1, 3)], [-R(1, 2), 0, R(1, 4)], [-R(1, 3), -R(1, 4), 0]]))
    U = _cayley(sp.Matrix([[0, R(1, 5), -R(2, 3)], [-R(1, 5), 0, R(1, 2)], [R(2, 3), -R(1, 2), 0]]))
    X = U * sp.diag(2, 1, 0) * V.T
    y = sp.Matrix([1, -2, R(1, 2)])
    w0 = sp.Matrix([R(1, 3), 1, -1])
    return X, y, w0, V, sp.Matrix([4, 1, 0]) / 3  # eigenvalues of H = X^T X / 3


def check_closed_form_recursion() -> str:
    """GD on (1/2N)||Xw - y||^2 is w_t = w_inf + (I - eta H)^t (w0 - w_inf), w_inf = X^+ y + (I - X^+ X) w0."""
    # --- symbolic, any shapes: w_{t+1} = w_inf + M P e0 satisfies the GD map when H w_inf = b
    d = sp.Symbol("d", integer=True, positive=True)
    H, P = sp.MatrixSymbol("H", d, d), sp.MatrixSymbol("P", d, d)  # P stands for M^t
    w_inf, e0 = sp.MatrixSymbol("w_inf", d, 1), sp.MatrixSymbol("e0", d, 1)
    eta = sp.Symbol("eta", real=True)
    M = sp.Identity(d) - eta * H
    w_t = w_inf + P * e0
    gd_map = w_t - eta * (H * w_t - H * w_inf)  # b replaced by H w_inf (normal equations)
    assert expand_zero((w_inf + M * P * e0) - gd_map), "closed form does not satisfy the GD recursion"
    # --- exact rational instance with a null space and inconsistent y, symbolic t
    X, y, w0, V, lam = _rational_problem()
    N = X.shape[0]
    Hx, bx = X.T * X / N, X.T * y / N
    Xp = X.pinv()
    w_lim = Xp * y + (sp.eye(3) - Xp * X) * w0
    assert is_zero_matrix(Hx * w_lim - bx), "w_inf does not solve the normal equations"
    assert is_zero_matrix(Hx - V * sp.diag(*lam) * V.T), "H != V diag(lambda) V^T"
    t = sp.Symbol("t", integer=True, nonnegative=True)
    eta_v = sp.Rational(1, 2)  # below 2 / lambda_max = 3/2
    w_t = w_lim + V * sp.diag(*[(1 - eta_v * l) ** t for l in lam]) * V.T * (w0 - w_lim)
    step = w_t - eta_v * (Hx * w_t - bx)
    assert is_zero_matrix(w_t.subs(t, t + 1) - step), "rational closed form violates the recursion"
    assert is_zero_matrix(w_t.subs(t, 0) - w0), "closed form does not start at w0"
    # --- numerical: the library's simulated GD against its closed form (and the exact one)
    from kernelgen.sgd import gd, gd_closed_form

    Xf, yf, w0f = (np.array(A, dtype=float) for A in (X, y, w0))
    steps = np.array([0, 1, 2, 5, 10, 20])
    exact = np.stack([np.array(w_t.subs(t, int(s)), dtype=float).ravel() for s in steps])
    cf = gd_closed_form(Xf, yf.ravel(), step_size=0.5, steps=steps, w0=w0f.ravel())
    e1 = rel(cf, exact)
    worst = e1
    for seed, (n, dd) in enumerate([(12, 30), (30, 12)]):
        Xn, yn = random_problem(n, dd, seed=seed)
        w0n = np.random.default_rng(seed).standard_normal(dd)
        tr = gd(Xn, yn, steps=2000, w0=w0n, form="primal")
        worst = max(worst, float(tr.closed_form_gap.max()))
    # closed form vs simulation: round-off accumulates ~ steps * eps (2000 * 1e-16)
    assert worst <= 1e-10, f"library GD differs from the closed form by {worst:.2e}"
    return f"recursion holds (MatrixSymbol + exact rational, symbolic t); library gap {worst:.1e}"


def check_limit() -> str:
    """For 0 < eta < 2/lambda_max(H) GD converges to X^+ y + (I - X^+ X) w0 (exact limit t -> oo)."""
    X, y, w0, V, lam = _rational_problem()
    Xp = X.pinv()
    w_lim = Xp * y + (sp.eye(3) - Xp * X) * w0
    t = sp.Symbol("t", integer=True, positive=True)
    eta_v = sp.Rational(1, 2)
    factors = [(1 - eta_v * l) ** t for l in lam]
    limits = [sp.limit(f, t, sp.oo) for f in factors]
    assert limits == [0, 0, 1], f"per-eigenvalue limits {limits}, expected [0, 0, 1]"
    w_t = w_lim + V * sp.diag(*factors) * V.T * (w0 - w_lim)
    w_inf = V * sp.diag(*limits) * V.T * (w0 - w_lim) + w_lim
    assert is_zero_matrix(w_inf - w_lim), "limit of the closed form != X^+ y + (I - X^+ X) w0"
    # the null-space component of w0 - w_lim vanishes: (w0 - w_lim) is in the row space
    assert is_zero_matrix(V[:, 2].T * (w0 - w_lim)), "w0 - w_inf has a null-space component"
    assert is_zero_matrix(w_t.subs(t, 1) - (w0 - eta_v * (X.T * (X * w0 - y)) / 3)), "closed form at t=1 wrong"
    # --- numerical: library GD and SGD from w0 != 0 reach the exact limit
    from kernelgen.sgd import gd, sgd

    Xf, yf, w0f = (np.array(A, dtype=float) for A in (X, y, w0))
    wl = np.array(w_lim, dtype=float).ravel()
    tr = gd(Xf, yf.ravel(), steps=200, step_size=0.5, w0=w0f.ravel(), form="primal")
    e_gd = rel(tr.w, wl)
    Xn, yn = random_problem(10, 25, seed=7)
    w0n = np.random.default_rng(7).standard_normal(25)
    ts = sgd(Xn, yn, steps=20000, key=7, w0=w0n)
    Xpn = np.linalg.pinv(Xn)
    e_sgd = rel(ts.w, Xpn @ yn + (np.eye(25) - Xpn @ Xn) @ w0n)
    # contraction (1 - eta lambda_min)^200 = (5/6)^200 ~ 1e-16; float64 round-off ~1e-15
    assert e_gd <= 1e-12, f"library GD limit differs from the exact one by {e_gd:.2e}"
    assert e_sgd <= 1e-8, f"library SGD limit from w0 differs from X^+y + (I-X^+X)w0 by {e_sgd:.2e}"
    return f"limits (1-eta*lambda)^t -> [0,0,1]; GD {e_gd:.1e}, SGD from w0 {e_sgd:.1e} to the exact limit"


def check_function_space() -> str:
    """f_t = y + (I - eta Theta/N)^t (f0 - y) exactly, and its continuous limit f(t) = y + exp(-eta t Theta/N)(f0 - y)."""
    n, d = sp.symbols("n d", integer=True, positive=True)
    X, w, y = sp.MatrixSymbol("X", n, d), sp.MatrixSymbol("w", d, 1), sp.MatrixSymbol("y", n, 1)
    eta, N = sp.symbols("eta N", positive=True)
    w_next = w - (eta / N) * X.T * (X * w - y)
    lhs = X * w_next - y
    rhs = (sp.Identity(n) - (eta / N) * X * X.T) * (X * w - y)
    assert expand_zero(lhs - rhs), "f_{t+1} - y != (I - eta Theta / N)(f_t - y)"
    # gradient flow per eigenvalue: f' = -(eta lambda / N)(f - y), f(0) = f0
    lam, tau, f0, yy = sp.symbols("lambda tau f0 y", real=True)
    f = yy + sp.exp(-eta * tau * lam / N) * (f0 - yy)
    assert sp.simplify(sp.diff(f, tau) + eta * lam / N * (f - yy)) == 0 and f.subs(tau, 0) == f0
    # discrete -> continuous: m steps of size eta/m per unit time
    m = sp.Symbol("m", positive=True)
    disc = (1 - (eta / m) * lam / N) ** (m * tau)
    assert sp.simplify(sp.limit(disc, m, sp.oo) - sp.exp(-eta * tau * lam / N)) == 0, "discrete !-> flow"
    # --- numerical: library function-space predictions
    from kernelgen.sgd import gd, gradient_flow_predictions

    Xn, yn = random_problem(15, 40, seed=2)
    Theta = Xn @ Xn.T
    w0 = np.random.default_rng(2).standard_normal(40)
    f0 = Xn @ w0
    steps = np.array([0, 1, 3, 10, 30, 100])
    eta_v = 0.5 * 15 / np.linalg.eigvalsh(Theta)[-1]
    flow = gradient_flow_predictions(Theta, yn, f0, step_size=eta_v, steps=steps)
    ref = np.stack([yn + scipy.linalg.expm(-eta_v * s * Theta / 15) @ (f0 - yn) for s in steps])
    e_flow = rel(flow, ref)
    disc = gradient_flow_predictions(Theta, yn, f0, step_size=eta_v, steps=steps, discrete=True)
    tr = gd(Xn, yn, steps=100, step_size=eta_v, w0=w0, record_steps=steps, form="primal")
    e_disc = rel(tr.predictions, disc)
    # expm (Pade) and eigh agree to ~1e-14; GD vs its closed form to round-off over 100 steps
    assert e_flow <= 1e-12, f"gradient flow differs from scipy expm by {e_flow:.2e}"
    assert e_disc <= 1e-10, f"GD predictions differ from the discrete function-space form by {e_disc:.2e}"
    return f"function-space recursion + flow ODE + limit (sympy); flow vs expm {e_flow:.1e}, GD vs discrete {e_disc:.1e}"


CHECKS = [check_closed_form_recursion, check_limit, check_function_space]
