"""Random Fourier features reproduce the Gaussian kernel in expectation (Rahimi & Recht 2007).

Claim: for v ~ N(0, s^-2 I_d) and b ~ U[0, 2 pi), independent,

    E[ sqrt(2) cos(v^T x + b) * sqrt(2) cos(v^T z + b) ] = exp(-||x - z||^2 / (2 s^2)).

Derivation (each step done by sympy below):
1. Product to sum: 2 cos(A + b) cos(B + b) = cos(A - B) + cos(A + B + 2b).
2. The phase average: (1/2pi) int_0^{2pi} cos(A + B + 2b) db = 0, so the expectation is
   E_v cos(v^T u) with u = x - z.
3. One coordinate, t ~ N(0, s^-2): E cos(t w) = exp(-w^2 / (2 s^2)) and E sin(t w) = 0
   (the characteristic function of a centred Gaussian).
4. Independent coordinates: cos(a + c) = cos a cos c - sin a sin c, so
   E cos(t_1 u_1 + ... + t_k u_k) factorises into the product of step 3 (induction on k; the
   sin terms vanish); the product of exp(-u_j^2/(2 s^2)) is exp(-||u||^2/(2 s^2)).

Numerical cross-check: ``kernelgen.random_features`` features ``sqrt(2/N) cos(v^T x + b)``
with N = 200,000 give Phi Phi^T within a 6-sigma Monte-Carlo band of
``kernelgen.kernels.kernel_matrix(kernel="gaussian")``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp


def check_rff_expectation_is_gaussian_kernel() -> str:
    """E[sqrt2 cos(v.x+b) sqrt2 cos(v.z+b)] = exp(-|x-z|^2/(2 s^2)) for v ~ N(0, s^-2 I), b ~ U[0, 2pi)."""
    A, B, b, w, t = sp.symbols("A B b w t", real=True)
    s = sp.Symbol("s", positive=True)
    # 1. product to sum
    lhs = 2 * sp.cos(A + b) * sp.cos(B + b)
    rhs = sp.cos(A - B) + sp.cos(A + B + 2 * b)
    assert sp.simplify(sp.expand_trig(lhs - rhs)) == 0, "product-to-sum identity failed"
    # 2. the phase average kills the second term: E_b[2 cos(A+b) cos(B+b)] = cos(A - B)
    phase_avg = sp.integrate(lhs, (b, 0, 2 * sp.pi)) / (2 * sp.pi)
    assert sp.simplify(phase_avg - sp.cos(A - B)) == 0, f"phase average gave {phase_avg}"
    # 3. one coordinate: t ~ N(0, s^-2), density s/sqrt(2pi) exp(-s^2 t^2 / 2)
    dens = s / sp.sqrt(2 * sp.pi) * sp.exp(-(s**2) * t**2 / 2)
    assert sp.simplify(sp.integrate(dens, (t, -sp.oo, sp.oo)) - 1) == 0, "density not normalised"
    Ecos = sp.simplify(sp.integrate(sp.cos(w * t) * dens, (t, -sp.oo, sp.oo)))
    Esin = sp.simplify(sp.integrate(sp.sin(w * t) * dens, (t, -sp.oo, sp.oo)))
    assert sp.simplify(Ecos - sp.exp(-(w**2) / (2 * s**2))) == 0, f"E cos(tw) = {Ecos}"
    assert Esin == 0, f"E sin(tw) = {Esin}"
    # 4. induction step: if E cos(a) = C_a, E sin(a) = 0 for the partial sum a and c = t_k u_k is
    #    independent with E cos(c) = C_c, E sin(c) = 0, then E cos(a + c) = C_a C_c.
    a_, c_ = sp.symbols("a c", real=True)
    Ca, Cc = sp.symbols("C_a C_c", real=True)
    expanded = sp.expand_trig(sp.cos(a_ + c_))  # cos a cos c - sin a sin c
    # expectation of a product of independent factors = product of expectations
    E_sum = expanded.subs({sp.cos(a_) * sp.cos(c_): Ca * Cc, sp.sin(a_) * sp.sin(c_): 0 * 0})
    assert sp.simplify(E_sum - Ca * Cc) == 0, f"induction step gave {E_sum}"
    u = sp.symbols("u1:4", real=True)
    prod = sp.Mul(*[Ecos.subs(w, uj) for uj in u])
    assert sp.simplify(prod - sp.exp(-sum(uj**2 for uj in u) / (2 * s**2))) == 0, "product of factors"

    # --- numerical: kernelgen features against kernelgen's Gaussian kernel
    from kernelgen.kernels import kernel_matrix
    from kernelgen.random_features import draw_random_features

    rng = np.random.default_rng(0)
    d, bw, N = 6, 1.5, 200_000
    X = rng.standard_normal((5, d))
    fm = draw_random_features(d, N, kind="fourier", bandwidth=bw, seed=1)
    Phi = fm.transform(X)
    K_mc = Phi @ Phi.T
    K = kernel_matrix(X, kernel="gaussian", bandwidth=bw)
    # symbolic formula evaluated numerically agrees with the library kernel
    f = sp.lambdify((w, s), Ecos)
    D = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=2)
    assert np.allclose(f(D, bw), K, rtol=1e-13, atol=1e-15), "kernel_matrix differs from the derived formula"
    # Per feature, E_b[(2 cos cos)^2] = cos^2(A-B) + 1/2 <= 3/2: sd <= sqrt(1.5/N); 15 distinct
    # entries at 6 sigma fail with probability < 1e-7.
    err = float(np.max(np.abs(K_mc - K)))
    tol = 6 * np.sqrt(1.5 / N)
    assert err <= tol, f"RFF Gram differs from the Gaussian kernel by {err:.3g} > {tol:.3g}"
    return f"symbolic E = exp(-|u|^2/(2s^2)) holds; RFF N={N} max |Phi Phi^T - K| = {err:.2e} <= {tol:.2e}"


CHECKS = [check_rff_expectation_is_gaussian_kernel]
