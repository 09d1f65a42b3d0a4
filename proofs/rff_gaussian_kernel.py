"""Random Fourier features reproduce the Gaussian kernel in expectation (Rahimi & Recht 2007).

Claim: for v ~ N(0, s^-2 I_d) and b ~ U[0, 2 pi), independent, and any x, z in R^d,

    E_{v,b}[ 2 cos(v^T x + b) cos(v^T z + b) ] = E_v[ cos(v^T (x - z)) ] = exp(-||x - z||^2 / (2 s^2)).

Derivation (sympy does every integral; what is stated rather than computed is marked):
1. The b-integral: (1/2pi) int_0^{2pi} 2 cos(A + b) cos(B + b) db = cos(A - B) for all real A, B
   (sympy integrates), and A - B = v^T x - v^T z = v^T (x - z) (MatrixSymbol). Integrating b first
   is Fubini for a bounded integrand and independent v, b [stated].
2. One coordinate, t ~ N(0, s^-2) with density s / sqrt(2 pi) exp(-s^2 t^2 / 2): sympy integrates
   the characteristic function E exp(i w t) = exp(-w^2 / (2 s^2)), and E cos(w t) (the same) and
   E sin(w t) = 0 directly.
3. d coordinates, by induction on d: exp(i (T + t w)) = exp(i T) exp(i t w) (sympy); with t = v_{d+1}
   independent of T = v_1 u_1 + ... + v_d u_d the expectation of the product is the product of the
   expectations [independence: stated]; so phi_{d+1} = phi_d * phi_1, and with phi_d =
   exp(-S_d / (2 s^2)), S_d = u_1^2 + ... + u_d^2, sympy reduces phi_d * phi_1(u_{d+1}) to
   exp(-S_{d+1} / (2 s^2)). The base case is step 2. At d = 2 sympy also does the double integral
   against the product density directly, as a confirmation.
4. E cos(v^T u) = Re E exp(i v^T u) = Re exp(-||u||^2 / (2 s^2)) = exp(-||u||^2 / (2 s^2)).

The kernel compared with the library below is the expression *derived* in steps 2-3 (the exponent
of sympy's 1-D integral, summed over coordinates), not a typed-in formula.

Numerical cross-check: ``kernelgen.random_features.random_fourier_features`` (features
sqrt(2/N) cos(v^T x + b)) with N = 200,000 give Phi Phi^T within a 6-sigma Monte-Carlo band of
``kernelgen.kernel_matrix(X, X, kernel="gaussian", bandwidth=s)``, and the derived expression
equals ``kernel_matrix`` to round-off.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from kernelgen import kernels, random_features

__all__ = [
    "CHECKS",
    "gaussian_density",
    "phase_average",
    "characteristic_function_1d",
    "check_rff_expectation_is_gaussian_kernel",
]


def gaussian_density(t, s):
    """Density of N(0, s^-2): s / sqrt(2 pi) exp(-s^2 t^2 / 2) (Rahimi & Recht, Alg. 1: v ~ N(0, s^-2 I))."""
    return s / sp.sqrt(2 * sp.pi) * sp.exp(-(s**2) * t**2 / 2)


def phase_average(A, B):
    """(1/2pi) int_0^{2pi} 2 cos(A + b) cos(B + b) db, integrated by sympy."""
    b = sp.Symbol("b", real=True)
    return sp.simplify(sp.integrate(2 * sp.cos(A + b) * sp.cos(B + b), (b, 0, 2 * sp.pi)) / (2 * sp.pi))


def characteristic_function_1d(w, s):
    """E exp(i w t) for t ~ N(0, s^-2), integrated by sympy."""
    t = sp.Symbol("t", real=True)
    return sp.simplify(sp.integrate(sp.exp(sp.I * w * t) * gaussian_density(t, s), (t, -sp.oo, sp.oo)))


def check_rff_expectation_is_gaussian_kernel() -> str:
    """E[2 cos(v.x+b) cos(v.z+b)] = E cos(v.(x-z)) = exp(-|x-z|^2/(2 s^2)), v ~ N(0, s^-2 I_d), b ~ U[0, 2pi): derived by sympy, any d."""
    A, B, w, t = sp.symbols("A B w t", real=True)
    s = sp.Symbol("s", positive=True)
    # 1. the b-integral, and A - B = v^T (x - z)
    avg = phase_average(A, B)
    assert sp.simplify(avg - sp.cos(A - B)) == 0, f"phase average gave {avg}"
    d = sp.Symbol("d", integer=True, positive=True)
    v, x, z = (sp.MatrixSymbol(n, d, 1) for n in "vxz")
    assert sp.expand(v.T * x - v.T * z - v.T * (x - z)) == sp.ZeroMatrix(1, 1), "v^T x - v^T z != v^T (x - z)"
    # 2. one coordinate: normalised density, characteristic function, E cos, E sin
    dens = gaussian_density(t, s)
    assert sp.simplify(sp.integrate(dens, (t, -sp.oo, sp.oo)) - 1) == 0, "density not normalised"
    phi1 = characteristic_function_1d(w, s)
    exponent = sp.expand(sp.expand_log(sp.log(phi1), force=True))  # derived, -w^2/(2 s^2) if all is right
    assert sp.simplify(phi1 - sp.exp(exponent)) == 0 and not exponent.has(sp.I), f"phi_1 = {phi1}"
    Ecos = sp.simplify(sp.integrate(sp.cos(w * t) * dens, (t, -sp.oo, sp.oo)))
    Esin = sp.simplify(sp.integrate(sp.sin(w * t) * dens, (t, -sp.oo, sp.oo)))
    assert sp.simplify(Ecos - phi1) == 0 and Esin == 0, f"E cos = {Ecos}, E sin = {Esin}"
    # 3. induction on d: exp(i(T + t w)) factorises; phi_d * phi_1 = phi_{d+1}
    T, S_d, u_next = sp.symbols("T S_d u_next", real=True)
    assert sp.simplify(sp.exp(sp.I * (T + t * w)) - sp.exp(sp.I * T) * sp.exp(sp.I * t * w)) == 0
    per_coord = sp.Lambda(w, exponent)  # exponent as a function of the coordinate: derived, not typed
    phi_d = sp.exp(-S_d / (2 * s**2))  # induction hypothesis, S_d = sum of squares of the first d u_j
    step = sp.powsimp(phi_d * sp.exp(per_coord(u_next)))
    assert sp.simplify(step - sp.exp(-(S_d + u_next**2) / (2 * s**2))) == 0, f"induction step gave {step}"
    assert sp.simplify(sp.exp(per_coord(w)) - phi_d.subs(S_d, w**2)) == 0, "base case d = 1"
    # confirmation at d = 2: the double integral against the product density, done by sympy
    t1, t2, u1, u2 = sp.symbols("t1 t2 u1 u2", real=True)
    inner = sp.integrate(sp.cos(t1 * u1 + t2 * u2) * gaussian_density(t1, s) * gaussian_density(t2, s), (t1, -sp.oo, sp.oo))
    two = sp.simplify(sp.integrate(sp.simplify(inner), (t2, -sp.oo, sp.oo)))
    assert sp.simplify(two - sp.exp(per_coord(u1) + per_coord(u2))) == 0, f"d = 2 integral gave {two}"
    # 4. real part: the derived kernel is real, so E cos = Re E exp(i v^T u) = itself
    us = sp.symbols("u1:4", real=True)
    kernel3 = sp.exp(sum(per_coord(uj) for uj in us))
    assert sp.simplify(sp.re(kernel3) - kernel3) == 0

    # --- numerical: the derived expression and kernelgen's features against kernelgen's Gaussian kernel
    rng = np.random.default_rng(0)
    dd, bw, N = 6, 1.5, 200_000
    X = rng.standard_normal((5, dd))
    K = kernels.kernel_matrix(X, X, kernel="gaussian", bandwidth=bw)
    derived = sp.lambdify((w, s), exponent)
    diff = X[:, None, :] - X[None, :, :]
    K_derived = np.exp(derived(diff, bw).sum(axis=2))  # exp(sum_j exponent(u_j)): steps 2-4
    # two float64 evaluations of exp of the same O(10) exponent: ~1e-15 relative
    assert np.allclose(K_derived, K, rtol=1e-13, atol=1e-15), "kernel_matrix differs from the derived kernel"
    Phi = random_features.random_fourier_features(X, N, bandwidth=bw, seed=1)
    K_mc = Phi @ Phi.T
    # Per feature, E_b[(2 cos cos)^2] = cos^2(A-B) + 1/2 <= 3/2: sd <= sqrt(1.5/N); 15 distinct
    # entries at 6 sigma fail with probability < 1e-7.
    err = float(np.max(np.abs(K_mc - K)))
    tol = 6 * np.sqrt(1.5 / N)
    assert err <= tol, f"RFF Gram differs from the Gaussian kernel by {err:.3g} > {tol:.3g}"
    return f"b-integral, 1-D char. function, induction on d (sympy); derived K = kernel_matrix; RFF N={N} max err {err:.2e} <= {tol:.2e}"


CHECKS = [check_rff_expectation_is_gaussian_kernel]
