"""Gradient iterates started at zero stay in the row space of X (Zhang et al. 2017, section 5).

Induction: w_0 = 0 = X^T 0. If w_t = X^T a_t, a mini-batch step with batch weights
D = diag(c_i) / B (c_i = how often sample i was drawn) gives

    w_{t+1} = w_t - eta X^T D (X w_t - y) = X^T (a_t - eta D (X X^T a_t - y)) = X^T a_{t+1},

so the dual step ``a_{i_b} -= (eta/B)(K_{i_b} a - y_{i_b})`` (scatter-add over the batch)
reproduces the primal trajectory, and every iterate is orthogonal to the null space of X.
Full-batch GD is D = I / N.
"""

from __future__ import annotations

import sympy as sp

from kernelgen import sgd

from ._common import expand_zero, is_zero_matrix, random_problem, rel, symbolic_matrix

__all__ = ["CHECKS", "check_step_stays_in_row_space", "check_dual_equals_primal"]


def check_step_stays_in_row_space() -> str:
    """A gradient step from w = X^T a is X^T a' with a' = a - eta D (X X^T a - y): iterates from 0 stay in the row space."""
    # --- symbolic, any shapes: MatrixSymbol algebra
    n, d = sp.symbols("n d", integer=True, positive=True)
    X = sp.MatrixSymbol("X", n, d)
    a = sp.MatrixSymbol("a", n, 1)
    y = sp.MatrixSymbol("y", n, 1)
    D = sp.MatrixSymbol("D", n, n)  # batch weights diag(c_i)/B; GD: I/N
    eta = sp.Symbol("eta", real=True)
    w = X.T * a
    w_next = w - eta * X.T * D * (X * w - y)
    a_next = a - eta * D * (X * X.T * a - y)
    assert expand_zero(w_next - X.T * a_next), "w_{t+1} != X^T a_{t+1} in the induction step"
    # --- symbolic, concrete 2 x 3: the step is orthogonal to the null vector v = x_1 x x_2 (Xv = 0)
    Xc = symbolic_matrix("x", 2, 3)
    ac, yc = symbolic_matrix("a", 2, 1), symbolic_matrix("y", 2, 1)
    c = sp.symbols("c0 c1", nonnegative=True)
    Dc = sp.diag(*c)
    wc = Xc.T * ac
    wc_next = wc - eta * Xc.T * Dc * (Xc * wc - yc)
    v = Xc[0, :].T.cross(Xc[1, :].T)
    assert is_zero_matrix(Xc * v), "v is not in the null space of X"
    assert is_zero_matrix(v.T * wc_next), "the step left the row space (v . w_{t+1} != 0)"
    # --- numerical: the library's SGD and GD from zero, out-of-span component
    X_, y_ = random_problem(15, 40, seed=0)
    worst = 0.0
    for tr in (
        sgd.sgd(X_, y_, steps=3000, key=0, batch_size=1, form="primal"),
        sgd.sgd(X_, y_, steps=1000, key=1, batch_size=4, replace=False, form="primal"),
        sgd.gd(X_, y_, steps=500, form="primal"),
    ):
        worst = max(worst, float(tr.out_of_span.max()))
    # float64 round-off per step is ~1e-16 relative and does not accumulate along the null space
    assert worst <= 1e-12, f"kernelgen.sgd iterates left the row space: relative component {worst:.2e}"
    return f"symbolic induction step holds; sgd/gd out-of-span max {worst:.1e} (<= 1e-12)"


def check_dual_equals_primal() -> str:
    """The dual step a[i_b] -= (eta/B)(K_{i_b} a - y_{i_b}) with scatter-add equals the primal mini-batch step, duplicates included."""
    Xc = symbolic_matrix("x", 3, 2)  # n = 3 samples, d = 2 (any shape works)
    yc = symbolic_matrix("y", 3, 1)
    ac = symbolic_matrix("a", 3, 1)
    eta = sp.Symbol("eta", real=True)
    batch = [0, 2, 0]  # sample 0 drawn twice
    B = len(batch)
    w = Xc.T * ac
    K = Xc * Xc.T
    # primal: w - (eta/B) sum_b x_{i_b} (x_{i_b}^T w - y_{i_b})
    w_next = w - (eta / B) * sum(
        (Xc[i, :].T * (Xc[i, :] * w - yc[i, :]) for i in batch), sp.zeros(2, 1)
    )
    # dual: residuals at the old a, then scatter-add (a sample drawn twice moves twice)
    r = [(K[i, :] * ac)[0, 0] - yc[i, 0] for i in batch]
    a_next = ac.copy()
    for i, ri in zip(batch, r):
        a_next[i, 0] -= eta / B * ri
    assert is_zero_matrix(w_next - Xc.T * a_next), "dual scatter-add step != primal step"
    # without accumulation (a[i] set once) the equality fails: the scatter-add matters
    a_bad = ac.copy()
    for i, ri in zip(batch, r):
        a_bad[i, 0] = ac[i, 0] - eta / B * ri
    assert not is_zero_matrix(w_next - Xc.T * a_bad), "expected overwrite-instead-of-add to differ"
    # numerical: library primal and dual trajectories, batch 8 from 10 samples (duplicates certain)
    X_, y_ = random_problem(10, 30, seed=1)
    idx = sgd.sample_indices(3, 10, 2000, 8)
    assert any(len(set(row)) < 8 for row in idx), "no duplicate in any batch"
    tp = sgd.sgd(X_, y_, steps=2000, batch_size=8, indices=idx, form="primal")
    td = sgd.sgd(X_, y_, steps=2000, batch_size=8, indices=idx, form="dual")
    gap = rel(td.iterates, tp.iterates)
    # two float64 evaluation orders of the same iteration: differences at round-off level
    assert gap <= 1e-12, f"primal and dual trajectories differ by {gap:.2e} (relative)"
    return f"symbolic scatter-add step = primal step; library trajectories agree to {gap:.1e}"


CHECKS = [check_step_stays_in_row_space, check_dual_equals_primal]
