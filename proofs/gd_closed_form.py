"""Closed-form gradient descent for any symmetric matrix, its limit, and its function-space form.

General statement (sympy ``MatrixSymbol`` of symbolic size d, scalar recursions with symbolic
lambda, eta, k). Let H be any real symmetric d x d matrix, H = Q Lambda Q^T with Q orthogonal and
Lambda diagonal (spectral theorem: assumed, not derived), and let b lie in the range of H
(b = H z, so beta = Q^T b = Lambda zeta with zeta = Q^T z). Gradient descent on
f(w) = (1/2) w^T H w - b^T w is w_{k+1} = w_k - eta (H w_k - b).

1. Eigen-coordinates (MatrixSymbol, Q^T Q = I): c = Q^T w obeys c_{k+1} = c_k - eta (Lambda c_k - beta);
   Lambda is diagonal, so component i is the scalar recursion c_{k+1} = (1 - eta lambda) c_k + eta lambda zeta.
2. sympy's ``rsolve`` solves it: c_k = zeta + (1 - eta lambda)^k (c_0 - zeta), valid for every lambda
   (at lambda = 0 it is c_k = c_0: that component never moves).
3. c_k -> zeta for every c_0 iff |1 - eta lambda| < 1 (|r|^k -> 0 for |r| < 1, |r|^k >= 1 otherwise):
   eta in (0, 2/lambda) for lambda > 0, (2/lambda, 0) for lambda < 0, never for lambda = 0.
4. So for 0 < eta < 2/lambda_max with H positive semi-definite, c_inf = Lambda^+ beta + (I - Lambda^+ Lambda) c_0
   (lambda^+ = 1/lambda or 0), i.e. w_inf = H^+ b + (I - H^+ H) w0 with H^+ = Q Lambda^+ Q^T, which
   satisfies the Moore-Penrose conditions (checked); the null-space component of w0 is preserved.
5. (Q M Q^T)^k = Q M^k Q^T (induction, MatrixSymbol), so w_k = w_inf + (I - eta H)^k (w0 - w_inf).

Least squares L(w) = (1/2N)||X w - y||^2 is H = X^T X / N, b = X^T y / N (in the range of H, as
range(X^T X) = range(X^T)); then H^+ b = X^+ y and H^+ H = X^+ X (standard pseudo-inverse identities,
stated and checked numerically), giving w_inf = X^+ y + (I - X^+ X) w0: the interpolant closest to w0
(Gunasekar, Lee, Soudry & Srebro 2018, "Characterizing implicit bias in terms of optimization geometry",
ICML, Sec. 2; for w0 = 0 it is X^+ y, Zhang et al. 2017, ICLR, Sec. 5).

In function space f_t = X w_t: f_{t+1} - y = (I - eta Theta / N)(f_t - y) exactly, with
Theta = X X^T (for any y); its continuous-time limit is the gradient flow
f(t) = y + exp(-eta t Theta / N)(f0 - y) (Lee et al. 2019, eq. 9).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import sympy as sp

from kernelgen import sgd

from ._common import expand_zero, mat_zero, orthogonal_reduce, random_problem, rel

__all__ = [
    "CHECKS",
    "scalar_recursion_solution",
    "check_closed_form_recursion",
    "check_limit",
    "check_function_space",
]


def _symbols():
    d = sp.Symbol("d", integer=True, positive=True)
    Q, L = sp.MatrixSymbol("Q", d, d), sp.MatrixSymbol("Lambda", d, d)
    return d, Q, L


def scalar_recursion_solution():
    """(k, eta, lambda, zeta, c0, c_k): sympy's rsolve of c_{k+1} = (1 - eta lambda) c_k + eta lambda zeta."""
    k = sp.Symbol("k", integer=True, nonnegative=True)
    eta, lam, zeta, c0 = sp.symbols("eta lambda zeta c0", real=True)
    c = sp.Function("c")
    sol = sp.rsolve(c(k + 1) - (1 - eta * lam) * c(k) - eta * lam * zeta, c(k), {c(0): c0})
    return k, eta, lam, zeta, c0, sol


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
    return X, y, w0


def _eig_closed_form(H, b, w0, eta, steps):
    """The proof's formula evaluated with numpy: w_inf + Q diag((1 - eta lambda)^k) Q^T (w0 - w_inf)."""
    lam, Q = np.linalg.eigh(H)
    Hp = np.linalg.pinv(H, hermitian=True)
    w_inf = Hp @ b + (np.eye(len(b)) - Hp @ H) @ w0
    fac = np.power(1.0 - eta * lam[None, :], np.asarray(steps, dtype=float)[:, None])
    return w_inf[None] + (fac * (Q.T @ (w0 - w_inf))[None]) @ Q.T


def check_closed_form_recursion() -> str:
    """For any symmetric H = Q Lambda Q^T, GD w <- w - eta(Hw - b) is w_k = w_inf + (I - eta H)^k (w0 - w_inf), per eigenvalue c_k = zeta + (1 - eta lambda)^k (c0 - zeta)."""
    d, Q, L = _symbols()
    w, b = sp.MatrixSymbol("w", d, 1), sp.MatrixSymbol("b", d, 1)
    eta_m = sp.Symbol("eta", real=True)
    H = Q * L * Q.T
    # 1. eigen-coordinates: Q^T (w - eta (H w - b)) = c - eta (Lambda c - beta), c = Q^T w, beta = Q^T b
    step = Q.T * (w - eta_m * (H * w - b))
    c, beta = Q.T * w, Q.T * b
    assert mat_zero(orthogonal_reduce(step, Q) - (c - eta_m * (L * c - beta))), "eigen-coordinate step"
    assert not mat_zero(sp.expand(step) - (c - eta_m * (L * c - beta))), "reduction holds without Q^T Q = I?"
    z = sp.MatrixSymbol("z", d, 1)  # b = H z in the range: beta = Lambda zeta, zeta = Q^T z
    assert mat_zero(orthogonal_reduce(Q.T * H * z, Q) - L * Q.T * z), "beta != Lambda zeta"
    # 2. the scalar recursion, solved by sympy (general lambda, eta, k)
    k, eta, lam, zeta, c0, sol = scalar_recursion_solution()
    assert sp.simplify(sol - (zeta + (1 - eta * lam) ** k * (c0 - zeta))) == 0, f"rsolve gave {sol}"
    assert sp.simplify(sol.subs(k, k + 1) - ((1 - eta * lam) * sol + eta * lam * zeta)) == 0
    assert sp.simplify(sol.subs(k, 0) - c0) == 0
    assert sp.simplify(sol.subs(lam, 0) - c0) == 0, "lambda = 0 component moves"
    # 5. (Q D Q^T)^k = Q D^k Q^T by induction; D = I - eta Lambda, so (I - eta H)^k = Q (I - eta Lambda)^k Q^T
    D = sp.MatrixSymbol("D", d, d)
    kk = sp.Symbol("k", integer=True, nonnegative=True)
    ind = orthogonal_reduce(Q * sp.MatPow(D, kk) * Q.T * (Q * D * Q.T), Q)
    assert mat_zero(ind - Q * sp.MatPow(D, kk + 1) * Q.T), "(Q D Q^T)^{k+1} != Q D^{k+1} Q^T"
    assert mat_zero(orthogonal_reduce(Q * (sp.Identity(d) - eta_m * L) * Q.T, Q) - (sp.Identity(d) - eta_m * H))
    # the matrix closed form satisfies the GD map once H w_inf = b (MatrixSymbol, any shapes)
    Hs, P = sp.MatrixSymbol("H", d, d), sp.MatrixSymbol("P", d, d)  # P stands for (I - eta H)^k
    w_inf, e0 = sp.MatrixSymbol("w_inf", d, 1), sp.MatrixSymbol("e0", d, 1)
    w_k = w_inf + P * e0
    gd_map = w_k - eta_m * (Hs * w_k - Hs * w_inf)
    assert expand_zero((w_inf + (sp.Identity(d) - eta_m * Hs) * P * e0) - gd_map), "closed form vs GD map"
    # --- numerical: kernelgen.sgd.gd_closed_form against exact rational GD iterates and the eigen formula
    Xr, yr, w0r = _rational_problem()  # rank 2, inconsistent y, w0 with a null-space component
    Hr, br, eta_r = Xr.T * Xr / 3, Xr.T * yr / 3, sp.Rational(1, 2)
    steps = [0, 1, 2, 5, 10, 20]
    wk, exact = w0r, []
    for s in range(steps[-1] + 1):  # exact rational recursion, no closed form involved
        if s in steps:
            exact.append(np.array(wk, dtype=float).ravel())
        wk = wk - eta_r * (Hr * wk - br)
    Xf, yf, w0f = (np.array(A, dtype=float) for A in (Xr, yr, w0r))
    cf = sgd.gd_closed_form(Xf, yf.ravel(), step_size=0.5, steps=np.array(steps), w0=w0f.ravel())
    worst = rel(cf, np.stack(exact))
    for seed, (n, dd) in enumerate([(12, 30), (30, 12)]):
        Xn, yn = random_problem(n, dd, seed=seed)
        w0n = np.random.default_rng(seed).standard_normal(dd)
        st = np.array([0, 3, 50, 400])
        eta_n = 0.9 * n / np.linalg.norm(Xn, 2) ** 2
        mine = _eig_closed_form(Xn.T @ Xn / n, Xn.T @ yn / n, w0n, eta_n, st)
        worst = max(worst, rel(sgd.gd_closed_form(Xn, yn, step_size=eta_n, steps=st, w0=w0n), mine))
        tr = sgd.gd(Xn, yn, steps=2000, w0=w0n, form="primal")
        worst = max(worst, float(tr.closed_form_gap.max()))
    # eigh vs SVD of the same data and simulation vs closed form: round-off, ~steps * eps at most
    assert worst <= 1e-10, f"library GD / closed form differ from the derivation by {worst:.2e}"
    return f"eigen-coordinates + rsolve + (QDQ^T)^k (sympy, any symmetric H, symbolic d, k); library gap {worst:.1e}"


def check_limit() -> str:
    """c_k -> zeta iff |1 - eta lambda| < 1; for PSD H and 0 < eta < 2/lambda_max, w_k -> H^+ b + (I - H^+ H) w0 (null-space part of w0 kept)."""
    k, eta, lam, zeta, c0, sol = scalar_recursion_solution()
    p = sp.Symbol("p", positive=True)
    kk = sp.Symbol("k", integer=True, positive=True)
    # |r| < 1 <=> |r| = 1/(1+p), p > 0: |r|^k -> 0;  |r| = 1 + p: |r|^k -> oo;  |r| = 1: |r|^k = 1
    assert sp.limit((1 + p) ** (-kk), kk, sp.oo) == 0 and sp.limit((1 + p) ** kk, kk, sp.oo) == sp.oo
    err = sp.expand(sol - zeta)  # = (1 - eta lambda)^k (c0 - zeta): -> 0 for c0 != zeta iff |1 - eta lambda|^k -> 0
    assert sp.simplify(err - (1 - eta * lam) ** k * (c0 - zeta)) == 0
    e_r = sp.Symbol("eta", real=True)
    lp, ln = sp.Symbol("lambda", positive=True), sp.Symbol("lambda", negative=True)
    rp = sp.solve_univariate_inequality(sp.Abs(1 - e_r * lp) < 1, e_r, relational=False)
    rn = sp.solve_univariate_inequality(sp.Abs(1 - e_r * ln) < 1, e_r, relational=False)
    assert rp == sp.Interval.open(0, 2 / lp) and rn == sp.Interval.open(2 / ln, 0), f"regions {rp}, {rn}"
    # the limit per component: zeta = beta/lambda (lambda != 0), c0 (lambda = 0) = lambda^+ beta + (1 - lambda^+ lambda) c0
    beta = lam * zeta
    for lam_v, lam_plus, want in [(lam, 1 / lam, zeta), (0, 0, c0)]:
        got = (lam_plus * beta + (1 - lam_plus * lam) * c0).subs(lam, lam_v)
        assert sp.simplify(got - want) == 0, f"limit component at lambda={lam_v}: {got}"
        # Moore-Penrose, scalar: lambda lambda^+ lambda = lambda, lambda^+ lambda lambda^+ = lambda^+
        assert sp.simplify((lam * lam_plus * lam - lam).subs(lam, lam_v)) == 0
        assert sp.simplify((lam_plus * lam * lam_plus - lam_plus).subs(lam, lam_v)) == 0
    # lift to matrices (Lambda, Lambda^+ diagonal: the scalar identities hold entrywise)
    d, Q, L = _symbols()
    Lp = sp.MatrixSymbol("Lambda_plus", d, d)
    b, w0 = sp.MatrixSymbol("b", d, 1), sp.MatrixSymbol("w0", d, 1)
    H, Hp = Q * L * Q.T, Q * Lp * Q.T
    w_inf = Q * (Lp * Q.T * b + (sp.Identity(d) - Lp * L) * Q.T * w0)
    assert mat_zero(orthogonal_reduce(w_inf - (Hp * b + (sp.Identity(d) - Hp * H) * w0), Q)), "w_inf != H^+b + (I-H^+H)w0"
    mp1 = orthogonal_reduce(H * Hp * H, Q).subs(L * Lp * L, L)
    mp2 = orthogonal_reduce(Hp * H * Hp, Q).subs(Lp * L * Lp, Lp)
    assert mat_zero(mp1 - H) and mat_zero(mp2 - Hp), "H^+ = Q Lambda^+ Q^T fails Moore-Penrose"
    # H H^+ = Q (Lambda Lambda^+) Q^T is symmetric (product of diagonals), so H^+ is the pseudo-inverse
    assert mat_zero(orthogonal_reduce(H * Hp, Q) - Q * L * Lp * Q.T)
    # --- numerical: library GD and SGD from w0 != 0 reach X^+ y + (I - X^+ X) w0 = H^+ b + (I - H^+ H) w0
    Xr, yr, w0r = _rational_problem()
    Xp = Xr.pinv()
    wl_exact = Xp * yr + (sp.eye(3) - Xp * Xr) * w0r
    Xf, yf, w0f = (np.array(A, dtype=float) for A in (Xr, yr, w0r))
    Hn, bn = Xf.T @ Xf / 3, Xf.T @ yf.ravel() / 3
    Hpn = np.linalg.pinv(Hn, hermitian=True)
    wl = Hpn @ bn + (np.eye(3) - Hpn @ Hn) @ w0f.ravel()
    e_id = rel(wl, np.array(wl_exact, dtype=float).ravel())  # H^+ b = X^+ y, H^+ H = X^+ X
    tr = sgd.gd(Xf, yf.ravel(), steps=200, step_size=0.5, w0=w0f.ravel(), form="primal")
    e_gd = rel(tr.w, wl)
    Xn, yn = random_problem(10, 25, seed=7)
    w0n = np.random.default_rng(7).standard_normal(25)
    ts = sgd.sgd(Xn, yn, steps=20000, key=7, w0=w0n)
    Xpn = np.linalg.pinv(Xn)
    e_sgd = rel(ts.w, Xpn @ yn + (np.eye(25) - Xpn @ Xn) @ w0n)
    # pinv identities in float64: round-off ~1e-15; contraction (5/6)^200 ~ 1e-16 for GD
    assert e_id <= 1e-12, f"H^+ b + (I - H^+ H) w0 differs from X^+ y + (I - X^+ X) w0 by {e_id:.2e}"
    assert e_gd <= 1e-12, f"library GD limit differs from the derived one by {e_gd:.2e}"
    assert e_sgd <= 1e-8, f"library SGD limit from w0 differs from X^+y + (I-X^+X)w0 by {e_sgd:.2e}"
    return f"|1-eta*lambda|<1 regions, limit = H^+b + (I-H^+H)w0, Moore-Penrose (sympy, general); GD {e_gd:.1e}, SGD {e_sgd:.1e}"


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
    Xn, yn = random_problem(15, 40, seed=2)
    Theta = Xn @ Xn.T
    w0 = np.random.default_rng(2).standard_normal(40)
    f0 = Xn @ w0
    steps = np.array([0, 1, 3, 10, 30, 100])
    eta_v = 0.5 * 15 / np.linalg.eigvalsh(Theta)[-1]
    flow = sgd.gradient_flow_predictions(Theta, yn, f0, step_size=eta_v, steps=steps)
    ref = np.stack([yn + scipy.linalg.expm(-eta_v * s * Theta / 15) @ (f0 - yn) for s in steps])
    e_flow = rel(flow, ref)
    disc = sgd.gradient_flow_predictions(Theta, yn, f0, step_size=eta_v, steps=steps, discrete=True)
    tr = sgd.gd(Xn, yn, steps=100, step_size=eta_v, w0=w0, record_steps=steps, form="primal")
    e_disc = rel(tr.predictions, disc)
    # expm (Pade) and eigh agree to ~1e-14; GD vs its closed form to round-off over 100 steps
    assert e_flow <= 1e-12, f"gradient flow differs from scipy expm by {e_flow:.2e}"
    assert e_disc <= 1e-10, f"GD predictions differ from the discrete function-space form by {e_disc:.2e}"
    return f"function-space recursion + flow ODE + limit (sympy); flow vs expm {e_flow:.1e}, GD vs discrete {e_disc:.1e}"


CHECKS = [check_closed_form_recursion, check_limit, check_function_space]
