"""Stability bounds of the step size for the loss (1/2N)||X w - y||^2 (kernelgen.sgd).

Full-batch GD: the error e = w - w_inf evolves as e' = (I - eta H) e, H = X^T X / N; on the
row space it contracts iff |1 - eta lambda| < 1 for every nonzero eigenvalue, i.e.
0 < eta < 2 / lambda_max(H).

B = 1: the step is e' = (I - eta x_i x_i^T) e, with eigenvalue 1 - eta ||x_i||^2 along x_i and
1 elsewhere; it is non-expansive for every row iff eta < 2 / max_i ||x_i||^2.

Mini-batch B (with replacement), H_B = (1/B) sum_b x_{i_b} x_{i_b}^T:
E[H_B^2] = (1/B) E[(x x^T)^2] + (1 - 1/B) H^2 <= ((beta + (B - 1) lambda_1) / B) H, so
E||e'||^2 <= ||e||^2 - eta (2 - eta c) e^T H e with c = (beta + (B-1) lambda_1)/B: the expected
squared error contracts for eta < 2/c = 2B / (beta + (B - 1) lambda_1) (Ma, Bassily & Belkin
2018, Theorem 2, whose eta*(B) is half this). Uniform B-subsets (without replacement):
E[H_B^2] = (N - B)/(B N (N - 1)) sum_i (x_i x_i^T)^2 + N (B - 1)/(B (N - 1)) H^2.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from ._common import is_zero_matrix, random_problem, symbolic_matrix


def check_gd_bound() -> str:
    """Full-batch GD on (1/2N)||Xw - y||^2 is stable iff 0 < eta < 2 / lambda_max(X^T X / N)."""
    eta = sp.Symbol("eta", real=True)
    lam = sp.Symbol("lambda", positive=True)
    region = sp.solve_univariate_inequality(sp.Abs(1 - eta * lam) < 1, eta, relational=False)
    assert region == sp.Interval.open(0, 2 / lam), f"stability region {region}"
    from kernelgen.errors import UnstableStepSizeError
    from kernelgen.sgd import gd, stability_bound

    X, y = random_problem(20, 50, seed=4)
    N = X.shape[0]
    lmax = np.linalg.norm(X, 2) ** 2 / N
    bound = stability_bound(X)
    # two eigen-solvers of the same symmetric matrix agree to ~1e-15 relative
    assert abs(bound - 2 / lmax) <= 1e-12 * bound, f"stability_bound {bound} != 2/lambda_max {2 / lmax}"
    try:
        gd(X, y, steps=10, step_size=1.01 * bound)
        raise AssertionError("no UnstableStepSizeError above the bound")
    except UnstableStepSizeError:
        pass
    steps = np.arange(0, 201, 50)
    below = gd(X, y, steps=200, step_size=0.99 * bound, record_steps=steps, form="primal")
    above = gd(X, y, steps=200, step_size=1.01 * bound, record_steps=steps, form="primal", allow_unstable=True)
    # above the bound the top component grows by |1 - eta lambda_max| = 1.02 per step
    rate = (above.distance[-1] / above.distance[-2]) ** (1 / 50)
    assert above.distance[-1] > above.distance[0] and abs(rate - 1.02) < 1e-3, f"no divergence (rate {rate:.4f})"
    assert below.distance[-1] < below.distance[1], "no progress below the bound"
    return f"region (0, 2/lambda) (sympy); library bound = 2/lambda_max to 1e-12; growth {rate:.4f}/step at 1.01x"


def check_single_sample_bound() -> str:
    """B = 1: I - eta x x^T has eigenvalue 1 - eta ||x||^2 on x and 1 on x-perp, so the bound is 2 / max ||x_i||^2."""
    x = symbolic_matrix("x", 3, 1)
    eta = sp.Symbol("eta", real=True)
    S = sp.eye(3) - eta * x * x.T
    s2 = (x.T * x)[0, 0]
    assert is_zero_matrix(S * x - (1 - eta * s2) * x), "x is not an eigenvector with 1 - eta ||x||^2"
    u = x.cross(sp.Matrix([1, 0, 0]))  # orthogonal to x
    assert is_zero_matrix(S * u - u), "x-perp is not fixed"
    q = sp.Symbol("q", positive=True)  # q = ||x||^2
    region = sp.solve_univariate_inequality(sp.Abs(1 - eta * q) < 1, eta, relational=False)
    assert region == sp.Interval.open(0, 2 / q), f"region {region}"
    from kernelgen.sgd import sgd, stability_bound

    rng = np.random.default_rng(5)
    n, d = 8, 20
    Q = np.linalg.qr(rng.standard_normal((d, n)))[0].T  # orthonormal rows
    X = Q * rng.uniform(1.0, 3.0, size=(n, 1))  # orthogonal rows, norms in [1, 3]
    y = rng.standard_normal(n)
    beta = float(np.max(np.sum(X**2, axis=1)))
    bound = stability_bound(X, batch_size=1)
    assert abs(bound - 2 / beta) <= 1e-14 * bound, f"bound {bound} != 2/beta {2 / beta}"
    # orthogonal rows decouple: row i's error is multiplied by (1 - eta ||x_i||^2) when i is drawn
    above = sgd(X, y, steps=4000, key=5, step_size=1.05 * bound, allow_unstable=True, form="primal")
    below = sgd(X, y, steps=4000, key=5, step_size=0.95 * bound, form="primal")
    assert above.distance[-1] > 1e3, f"no divergence at 1.05x the bound (distance {above.distance[-1]:.2e})"
    assert below.distance[-1] < 1e-6, f"no convergence at 0.95x the bound (distance {below.distance[-1]:.2e})"
    return f"eigen-structure of I - eta x x^T (sympy); orthogonal rows: 1.05x diverges ({above.distance[-1]:.0e}), 0.95x converges ({below.distance[-1]:.0e})"


def _expected_HB2(As, B, replace):
    """E[H_B^2] by enumerating every batch (ordered with replacement, subsets without)."""
    N = len(As)
    batches = list(itertools.product(range(N), repeat=B)) if replace else list(itertools.combinations(range(N), B))
    tot = None
    for bt in batches:
        HB = sum((As[i] for i in bt[1:]), As[bt[0]]) / B
        tot = HB @ HB if tot is None else tot + HB @ HB
    return tot / len(batches)


def check_minibatch_bound() -> str:
    """Mini-batch B: E[H_B^2] <= ((beta + (B-1) lambda_1)/B) H, so eta < 2B/(beta + (B-1) lambda_1) contracts E||e||^2."""
    N, B = 3, 2
    xs = [symbolic_matrix(f"x{i}_", 2, 1) for i in range(N)]
    As = [x * x.T for x in xs]
    H = sum(As[1:], As[0]) / N
    sumA2 = sum((A * A for A in As[1:]), As[0] * As[0])
    E_rep = _expected_HB2(As, B, replace=True)
    assert is_zero_matrix(E_rep - (sumA2 / (B * N) + (1 - sp.Rational(1, B)) * H * H)), "E[H_B^2] (replace) wrong"
    E_sub = _expected_HB2(As, B, replace=False)
    formula_sub = sp.Rational(N - B, B * N * (N - 1)) * sumA2 + sp.Rational(N * (B - 1), B * (N - 1)) * H * H
    assert is_zero_matrix(E_sub - formula_sub), "E[H_B^2] (subsets) wrong"
    assert is_zero_matrix(As[0] * As[0] - (xs[0].T * xs[0])[0, 0] * As[0]), "(x x^T)^2 != ||x||^2 x x^T"
    eta, c = sp.Symbol("eta", real=True), sp.Symbol("c", positive=True)
    region = sp.solve_univariate_inequality(eta * (2 - eta * c) > 0, eta, relational=False)
    assert region == sp.Interval.open(0, 2 / c), f"region {region}"
    beta, lam1, Bs = sp.symbols("beta lambda_1 B", positive=True)
    assert sp.simplify(2 / ((beta + (Bs - 1) * lam1) / Bs) - 2 * Bs / (beta + (Bs - 1) * lam1)) == 0
    # --- numerical: library bound = formula; exact mean-square operator contracts just below it
    from kernelgen.sgd import stability_bound

    Xn, _ = random_problem(6, 10, seed=6)
    n = Xn.shape[0]
    beta_v = float(np.max(np.sum(Xn**2, axis=1)))
    Hn = Xn.T @ Xn / n
    lam1_v = float(np.linalg.eigvalsh(Hn)[-1])
    As_n = [np.outer(r, r) for r in Xn]
    worst = 0.0
    for Bv, rep in [(1, True), (3, True), (3, False), (6, False)]:
        bound = stability_bound(Xn, batch_size=Bv, replace=rep)
        if rep:
            want = 2 * Bv / (beta_v + (Bv - 1) * lam1_v)
        else:
            want = 2 * Bv * (n - 1) / ((n - Bv) * beta_v + n * (Bv - 1) * lam1_v)
        assert abs(bound - want) <= 1e-12 * want, f"B={Bv} replace={rep}: bound {bound} != {want}"
        EH2 = _expected_HB2(As_n, Bv, rep)
        eta_v = 0.999 * bound
        T = np.eye(10) - 2 * eta_v * Hn + eta_v**2 * EH2  # E||e'||^2 = e^T T e
        Vr = np.linalg.svd(Xn, full_matrices=False)[2]  # errors live in the row space
        top = float(np.linalg.eigvalsh(Vr @ T @ Vr.T)[-1])
        assert top < 1, f"B={Bv} replace={rep}: mean-square operator not contracting ({top})"
        worst = max(worst, top)
    return f"E[H_B^2] identities by exact enumeration (sympy); at 0.999x bound E||e||^2 contracts by <= {worst:.6f}"


CHECKS = [check_gd_bound, check_single_sample_bound, check_minibatch_bound]
