"""Stability bounds of the step size for the loss (1/2N)||X w - y||^2 (kernelgen.sgd).

Full-batch GD (general, exact "iff"): the error e = w - w_inf evolves as e' = (I - eta H) e,
H = X^T X / N; on the row space it contracts iff |1 - eta lambda| < 1 for every nonzero
eigenvalue, i.e. 0 < eta < 2 / lambda_max(H) (see also proofs/gd_closed_form.py).

B = 1 (general d, MatrixSymbol): the step is e' = (I - eta x_i x_i^T) e, with eigenvalue
1 - eta ||x_i||^2 along x_i and 1 on x_i-perp; it is non-expansive for every row iff
eta <= 2 / max_i ||x_i||^2 (contracting along x_i iff eta < 2/||x_i||^2).

Mini-batch B, with replacement, H_B = (1/B) sum_b x_{i_b} x_{i_b}^T, interpolation (X w_inf = y):

  (a) e' = (I - eta H_B) e exactly                                    [general, MatrixSymbol]
  (b) ||e'||^2 = ||e||^2 - 2 eta e^T H_B e + eta^2 e^T H_B^2 e        [general, MatrixSymbol, H_B symmetric]
  (c) E[H_B] = H and E[H_B^2] = (1/B) E[(x x^T)^2] + (1 - 1/B) H^2     [the algebra is general in B (sympy,
      noncommutative symbols); the pair count -- B equal pairs with E = E[A^2], B(B-1) independent
      pairs with E = H^2 -- is STATED, and confirmed by exact enumeration of every batch at N = 3,
      B = 2 (symbolic vectors) and numerically at N = 6, B in {1, 3, 6}]
  (d) (x x^T)^2 = ||x||^2 x x^T, so E[(x x^T)^2] <= beta H, beta = max ||x_i||^2  [general]
  (e) H^2 <= lambda_1 H (eigenbasis: lambda (lambda_1 - lambda) >= 0)               [general]
  (f) hence E[H_B^2] <= c H, c = (beta + (B - 1) lambda_1) / B, and
      E||e'||^2 <= ||e||^2 - eta (2 - eta c) e^T H e, which decreases iff 0 < eta < 2/c
      = 2B / (beta + (B - 1) lambda_1) (Ma, Bassily & Belkin 2018, Theorem 2, whose eta*(B) is half this).

What is NOT proved: the mini-batch bound is sufficient, not necessary (the Loewner bounds (d), (e)
are not tight in general; it is tight at B = 1 with orthogonal rows and equals the GD bound for
B = N subsets); step (c)'s pair count is stated, not derived from a probability model; and the
contraction is of the mean square E||e||^2, not of every trajectory. Uniform B-subsets
(without replacement): E[H_B^2] = (N - B)/(B N (N - 1)) sum_i (x_i x_i^T)^2 + N (B - 1)/(B (N - 1)) H^2
(algebra general, pair probabilities stated, enumeration at N = 3, B = 2), giving
2B(N - 1) / ((N - B) beta + N (B - 1) lambda_1).
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from kernelgen import errors, sgd

from ._common import is_zero_matrix, mat_zero, orthogonal_reduce, random_problem, symbolic_matrix

__all__ = [
    "CHECKS",
    "check_gd_bound",
    "check_single_sample_bound",
    "minibatch_second_moment",
    "check_minibatch_bound",
]


def check_gd_bound() -> str:
    """Full-batch GD on (1/2N)||Xw - y||^2 is stable iff 0 < eta < 2 / lambda_max(X^T X / N)."""
    eta = sp.Symbol("eta", real=True)
    lam = sp.Symbol("lambda", positive=True)
    region = sp.solve_univariate_inequality(sp.Abs(1 - eta * lam) < 1, eta, relational=False)
    assert region == sp.Interval.open(0, 2 / lam), f"stability region {region}"
    X, y = random_problem(20, 50, seed=4)
    N = X.shape[0]
    lmax = np.linalg.norm(X, 2) ** 2 / N
    bound = sgd.stability_bound(X)
    # two eigen-solvers of the same symmetric matrix agree to ~1e-15 relative
    assert abs(bound - 2 / lmax) <= 1e-12 * bound, f"stability_bound {bound} != 2/lambda_max {2 / lmax}"
    try:
        sgd.gd(X, y, steps=10, step_size=1.01 * bound)
        raise AssertionError("no UnstableStepSizeError above the bound")
    except errors.UnstableStepSizeError:
        pass
    steps = np.arange(0, 201, 50)
    below = sgd.gd(X, y, steps=200, step_size=0.99 * bound, record_steps=steps, form="primal")
    above = sgd.gd(X, y, steps=200, step_size=1.01 * bound, record_steps=steps, form="primal", allow_unstable=True)
    # above the bound the top component grows by |1 - eta lambda_max| = 1.02 per step
    rate = (above.distance[-1] / above.distance[-2]) ** (1 / 50)
    assert above.distance[-1] > above.distance[0] and abs(rate - 1.02) < 1e-3, f"no divergence (rate {rate:.4f})"
    assert below.distance[-1] < below.distance[1], "no progress below the bound"
    return f"region (0, 2/lambda) (sympy); library bound = 2/lambda_max to 1e-12; growth {rate:.4f}/step at 1.01x"


def check_single_sample_bound() -> str:
    """B = 1: I - eta x x^T has eigenvalue 1 - eta ||x||^2 on x and 1 on x-perp (any d), so the bound is 2 / max ||x_i||^2."""
    d = sp.Symbol("d", integer=True, positive=True)
    x, u = sp.MatrixSymbol("x", d, 1), sp.MatrixSymbol("u", d, 1)
    eta, q = sp.Symbol("eta", real=True), sp.Symbol("q", positive=True)  # q = x^T x = ||x||^2
    S = sp.Identity(d) - eta * x * x.T
    Sx = sp.expand(S * x).subs(x.T * x, q * sp.Identity(1))
    assert mat_zero(Sx - (1 - eta * q) * x), f"S x = {Sx}, expected (1 - eta ||x||^2) x"
    Su = sp.expand(S * u).subs(x.T * u, sp.ZeroMatrix(1, 1))  # u orthogonal to x
    assert mat_zero(Su - u), "x-perp is not fixed"
    region = sp.solve_univariate_inequality(sp.Abs(1 - eta * q) < 1, eta, relational=False)
    assert region == sp.Interval.open(0, 2 / q), f"region {region}"
    rng = np.random.default_rng(5)
    n, dd = 8, 20
    Qo = np.linalg.qr(rng.standard_normal((dd, n)))[0].T  # orthonormal rows
    X = Qo * rng.uniform(1.0, 3.0, size=(n, 1))  # orthogonal rows, norms in [1, 3]
    y = rng.standard_normal(n)
    beta = float(np.max(np.sum(X**2, axis=1)))
    bound = sgd.stability_bound(X, batch_size=1)
    # 2 / beta computed two ways from the same float64 squares: a few ulps
    assert abs(bound - 2 / beta) <= 1e-14 * bound, f"bound {bound} != 2/beta {2 / beta}"
    # orthogonal rows decouple: row i's error is multiplied by (1 - eta ||x_i||^2) when i is drawn
    above = sgd.sgd(X, y, steps=4000, key=5, step_size=1.05 * bound, allow_unstable=True, form="primal")
    below = sgd.sgd(X, y, steps=4000, key=5, step_size=0.95 * bound, form="primal")
    assert above.distance[-1] > 1e3, f"no divergence at 1.05x the bound (distance {above.distance[-1]:.2e})"
    assert below.distance[-1] < 1e-6, f"no convergence at 0.95x the bound (distance {below.distance[-1]:.2e})"
    return f"eigen-structure of I - eta x x^T (sympy, any d); orthogonal rows: 1.05x diverges ({above.distance[-1]:.0e}), 0.95x converges ({below.distance[-1]:.0e})"


def _expected_HB2(As, B, replace):
    """E[H_B^2] by enumerating every batch (ordered with replacement, subsets without)."""
    N = len(As)
    batches = list(itertools.product(range(N), repeat=B)) if replace else list(itertools.combinations(range(N), B))
    tot = None
    for bt in batches:
        HB = sum((As[i] for i in bt[1:]), As[bt[0]]) / B
        tot = HB @ HB if tot is None else tot + HB @ HB
    return tot / len(batches)


def minibatch_second_moment(B, N, replace: bool):
    """E[H_B^2] in noncommutative symbols S2 = E[A^2] = (1/N) sum_i A_i^2 and H = E[A] (general B, N).

    With replacement: B equal pairs (E = S2) and B(B-1) independent pairs (E = H^2).
    Without: a pair of distinct positions is a uniform pair of distinct indices, so
    E[A_i A_j] = (sum_{i != j} A_i A_j) / (N (N - 1)) = (N^2 H^2 - N S2) / (N (N - 1)).
    """
    S2, H = sp.symbols("S2 H", commutative=False)
    off = H * H if replace else (N**2 * H * H - N * S2) / (N * (N - 1))
    return S2, H, (B * S2 + B * (B - 1) * off) / B**2


def check_minibatch_bound() -> str:
    """Mini-batch B: E[H_B^2] <= ((beta + (B-1) lambda_1)/B) H, so eta < 2B/(beta + (B-1) lambda_1) contracts E||e||^2 (sufficient, not necessary)."""
    d, n = sp.symbols("d n", integer=True, positive=True)
    Bs, Ns = sp.symbols("B N", integer=True, positive=True)
    eta = sp.Symbol("eta", real=True)
    # (a) interpolation X_B w_inf = y_B makes the error recursion exact: e' = (I - eta X_B^T X_B / B) e
    XB, w, w_inf = sp.MatrixSymbol("X_B", n, d), sp.MatrixSymbol("w", d, 1), sp.MatrixSymbol("w_inf", d, 1)
    w_next = w - (eta / Bs) * XB.T * (XB * w - XB * w_inf)
    assert mat_zero(w_next - w_inf - (sp.Identity(d) - (eta / Bs) * XB.T * XB) * (w - w_inf)), "(a) error recursion"
    # (b) ||(I - eta H_B) e||^2 with H_B symmetric
    HB, e = sp.MatrixSymbol("H_B", d, d), sp.MatrixSymbol("e", d, 1)
    sq = sp.refine(sp.expand(((sp.Identity(d) - eta * HB) * e).T * ((sp.Identity(d) - eta * HB) * e)), sp.Q.symmetric(HB))
    assert mat_zero(sq - (e.T * e - 2 * eta * e.T * HB * e + eta**2 * e.T * HB * HB * e)), "(b) expansion"
    # (c) the second moment, general B and N (noncommutative algebra)
    S2, Hn, EB = minibatch_second_moment(Bs, Ns, replace=True)
    assert sp.expand(EB - (S2 / Bs + (1 - 1 / Bs) * Hn * Hn)) == 0, "(c) E[H_B^2] with replacement"
    _, _, EBs = minibatch_second_moment(Bs, Ns, replace=False)
    sub_formula = (Ns - Bs) / (Bs * Ns * (Ns - 1)) * Ns * S2 + Ns * (Bs - 1) / (Bs * (Ns - 1)) * Hn * Hn
    assert sp.simplify(sp.expand(EBs - sub_formula)) == 0, "(c) E[H_B^2] for subsets"
    # ... and the pair count confirmed by exact enumeration of every batch, N = 3, B = 2, symbolic vectors
    N, B = 3, 2
    xs = [symbolic_matrix(f"x{i}_", 2, 1) for i in range(N)]
    As = [x * x.T for x in xs]
    H = sum(As[1:], As[0]) / N
    sumA2 = sum((A * A for A in As[1:]), As[0] * As[0])
    for rep, E_formula in [(True, EB), (False, EBs)]:
        want = E_formula.subs({Bs: B, Ns: N})
        want = sp.expand(want).subs({S2: sp.Symbol("s2"), Hn: sp.Symbol("h")})  # to commutative placeholders
        a2, a1 = sp.Poly(want, sp.Symbol("s2"), sp.Symbol("h")).coeff_monomial(sp.Symbol("s2")), \
            sp.Poly(want, sp.Symbol("s2"), sp.Symbol("h")).coeff_monomial(sp.Symbol("h") ** 2)
        assert is_zero_matrix(_expected_HB2(As, B, replace=rep) - (a2 * sumA2 / N + a1 * H * H)), f"(c) enumeration, replace={rep}"
    # (d) (x x^T)^2 = ||x||^2 x x^T (any d), and (beta - ||x||^2)(x^T z)^2 >= 0 gives E[A^2] <= beta H
    x = sp.MatrixSymbol("x", d, 1)
    q = sp.Symbol("q", positive=True)
    assert mat_zero(sp.expand(x * x.T * x * x.T).subs(x.T * x, q * sp.Identity(1)) - q * x * x.T), "(d)"
    gap, proj = sp.Symbol("g", nonnegative=True), sp.Symbol("p", real=True)  # g = beta - ||x_i||^2
    assert (gap * proj**2).is_nonnegative, "(d) z^T (beta A - A^2) z >= 0"
    # (e) lambda_1 H - H^2 = Q (lambda_1 Lambda - Lambda^2) Q^T, entries lambda (lambda_1 - lambda) >= 0
    Q, L = sp.MatrixSymbol("Q", d, d), sp.MatrixSymbol("Lambda", d, d)
    lam1 = sp.Symbol("lambda_1", positive=True)
    Hm = Q * L * Q.T
    diff = orthogonal_reduce(lam1 * Hm - sp.MatMul(Q, L, Q.T, Q, L, Q.T), Q)
    assert mat_zero(diff - Q * (lam1 * L - L * L) * Q.T), "(e) eigenbasis"
    lam_i, slack = sp.Symbol("lambda", nonnegative=True), sp.Symbol("s", nonnegative=True)
    assert (lam_i * ((lam_i + slack) - lam_i)).is_nonnegative, "(e) lambda (lambda_1 - lambda) >= 0"
    # (f) combine: coefficients 1/B, 1 - 1/B >= 0 for B >= 1
    beta = sp.Symbol("beta", positive=True)
    c = beta / Bs + (1 - 1 / Bs) * lam1
    assert sp.simplify(c - (beta + (Bs - 1) * lam1) / Bs) == 0
    assert sp.expand(-2 * eta + eta**2 * c + eta * (2 - eta * c)) == 0, "(f) -2 eta + eta^2 c = -eta (2 - eta c)"
    cc = sp.Symbol("c", positive=True)
    region = sp.solve_univariate_inequality(eta * (2 - eta * cc) > 0, eta, relational=False)
    assert region == sp.Interval.open(0, 2 / cc), f"region {region}"
    c_sub = ((Ns - Bs) * beta + Ns * (Bs - 1) * lam1) / (Bs * (Ns - 1))
    assert sp.simplify(c_sub.subs(Bs, Ns) - lam1) == 0, "subsets at B = N: the GD constant"
    # --- numerical: library bound = formula; exact mean-square operator contracts just below it
    Xn, _ = random_problem(6, 10, seed=6)
    nn = Xn.shape[0]
    beta_v = float(np.max(np.sum(Xn**2, axis=1)))
    Hv = Xn.T @ Xn / nn
    lam1_v = float(np.linalg.eigvalsh(Hv)[-1])
    As_n = [np.outer(r, r) for r in Xn]
    S2_v = sum(A @ A for A in As_n) / nn
    worst = 0.0
    for Bv, rep in [(1, True), (3, True), (3, False), (6, False)]:
        bound = sgd.stability_bound(Xn, batch_size=Bv, replace=rep)
        cv = float(c.subs({beta: beta_v, lam1: lam1_v, Bs: Bv})) if rep else \
            float(c_sub.subs({beta: beta_v, lam1: lam1_v, Bs: Bv, Ns: nn}))
        # the same formula evaluated by sympy and by the library in float64
        assert abs(bound - 2 / cv) <= 1e-12 * bound, f"B={Bv} replace={rep}: bound {bound} != {2 / cv}"
        EH2 = _expected_HB2(As_n, Bv, rep)
        _, _, Ef = minibatch_second_moment(Bv, nn, rep)
        Ef = sp.expand(Ef).subs({S2: sp.Symbol("s2"), Hn: sp.Symbol("h")})
        co = sp.Poly(Ef, sp.Symbol("s2"), sp.Symbol("h"))
        formula = float(co.coeff_monomial(sp.Symbol("s2"))) * S2_v + float(co.coeff_monomial(sp.Symbol("h") ** 2)) * Hv @ Hv
        # enumeration vs (c): float64 sums of <= 6^3 terms of O(10) entries
        assert np.abs(EH2 - formula).max() <= 1e-10 * np.abs(EH2).max(), f"(c) numerically, B={Bv} replace={rep}"
        assert np.linalg.eigvalsh(cv * Hv - EH2)[0] >= -1e-10 * cv * lam1_v, f"(f) E[H_B^2] <= c H fails, B={Bv}"
        eta_v = 0.999 * bound
        T = np.eye(10) - 2 * eta_v * Hv + eta_v**2 * EH2  # E||e'||^2 = e^T T e
        Vr = np.linalg.svd(Xn, full_matrices=False)[2]  # errors live in the row space
        top = float(np.linalg.eigvalsh(Vr @ T @ Vr.T)[-1])
        assert top < 1, f"B={Bv} replace={rep}: mean-square operator not contracting ({top})"
        worst = max(worst, top)
    return f"(a),(b),(d),(e),(f) general (sympy); (c) algebra general, pair count by enumeration; at 0.999x bound E||e||^2 contracts by <= {worst:.6f}"


CHECKS = [check_gd_bound, check_single_sample_bound, check_minibatch_bound]
