"""The Laplace approximation of a Gaussian log joint equals the exact evidence of Bayesian linear regression.

Claim. For ``w ~ N(0, alpha^{-1} I_M)`` and ``t | w ~ N(Phi w, beta^{-1} I_N)`` the log joint
``L(w) = ln p(t|w) + ln p(w)`` is a quadratic in ``w`` with constant Hessian
``-A = -(alpha I + beta Phi^T Phi)`` and maximiser ``m_N = beta A^{-1} Phi^T t``. Quadratic
completion gives ``L(w) = L(m_N) - 1/2 (w - m_N)^T A (w - m_N)`` exactly, so
``ln int exp L(w) dw = L(m_N) + (M/2) ln 2 pi - 1/2 ln|A|`` -- which is the Laplace formula at the
MAP with no remainder, and which equals Bishop PRML eq. 3.86,
``(M/2) ln alpha + (N/2) ln beta - E(m_N) - 1/2 ln|A| - (N/2) ln 2 pi``.

The symbolic steps are done in sympy at M = 2, N = 3 with every entry of Phi, t and w a free
symbol (general positive alpha, beta); the Gaussian integral itself is done symbolically in one and
two dimensions. Each check then compares against :mod:`kernelgen.evidence` numerically.

References: Bishop PRML eqs. 3.77-3.86 and 4.133-4.135; MacKay (1992).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from kernelgen import evidence

__all__ = ["CHECKS", "check_quadratic_completion", "check_laplace_equals_eq_3_86", "check_gaussian_integral"]

M_SYM, N_SYM = 2, 3


def _model(M: int = M_SYM, N: int = N_SYM):
    alpha, beta = sp.symbols("alpha beta", positive=True)
    Phi = sp.Matrix(N, M, lambda i, j: sp.Symbol(f"phi_{i}{j}", real=True))
    t = sp.Matrix(N, 1, lambda i, _: sp.Symbol(f"t_{i}", real=True))
    w = sp.Matrix(M, 1, lambda i, _: sp.Symbol(f"w_{i}", real=True))
    r = t - Phi * w
    # ln p(t|w) + ln p(w)  (PRML eqs. 3.10 and 3.52)
    L = (
        sp.Rational(N, 2) * sp.log(beta / (2 * sp.pi))
        - beta / 2 * (r.T * r)[0]
        + sp.Rational(M, 2) * sp.log(alpha / (2 * sp.pi))
        - alpha / 2 * (w.T * w)[0]
    )
    A = alpha * sp.eye(M) + beta * Phi.T * Phi  # eq. 3.81
    return alpha, beta, Phi, t, w, L, A


def check_quadratic_completion() -> str:
    """The log joint is exactly L(m_N) - 1/2 (w - m_N)^T A (w - m_N) with A = alpha I + beta Phi^T Phi."""
    alpha, beta, Phi, t, w, L, A = _model()
    ws = list(w)
    H = -sp.hessian(L, ws)
    assert sp.simplify(H - A) == sp.zeros(M_SYM, M_SYM), "Hessian of -L is not A"
    # third derivatives vanish: the Laplace expansion has no remainder
    for wi in ws:
        assert all(sp.simplify(sp.diff(h, wi)) == 0 for h in H), "third derivative non-zero"
    Ainv = A.inv()
    mN = beta * Ainv * Phi.T * t  # eq. 3.84
    sub = dict(zip(ws, list(mN)))
    grad_at_m = [sp.cancel(sp.together(sp.diff(L, wi).subs(sub))) for wi in ws]
    assert all(g == 0 for g in grad_at_m), "m_N is not stationary"
    # Exact second-order Taylor identity about a generic point m (a polynomial identity in all
    # symbols, checked by expansion): L(w) = L(m) + grad L(m)^T (w - m) - 1/2 (w - m)^T A (w - m).
    # At m = m_N the linear term vanishes (above), which is the quadratic completion.
    m = sp.Matrix(M_SYM, 1, lambda i, _: sp.Symbol(f"m_{i}", real=True))
    at_m = dict(zip(ws, list(m)))
    d = w - m
    grad_m = sp.Matrix([sp.diff(L, wi).subs(at_m) for wi in ws])
    taylor = L.subs(at_m) + (grad_m.T * d)[0] - sp.Rational(1, 2) * (d.T * A * d)[0]
    assert sp.expand(L - taylor) == 0, "quadratic completion fails"
    # numerical cross-check against kernelgen.evidence.blr_log_evidence
    rng = np.random.default_rng(0)
    vals = {alpha: 0.7, beta: 3.0}
    Pn = rng.normal(size=(N_SYM, M_SYM))
    tn = rng.normal(size=N_SYM)
    vals.update({Phi[i, j]: Pn[i, j] for i in range(N_SYM) for j in range(M_SYM)})
    vals.update({t[i]: tn[i] for i in range(N_SYM)})
    m_num = np.array([float(x.subs(vals)) for x in mN])
    res = evidence.blr_log_evidence(Pn, tn, alpha=0.7, beta=3.0)
    err = float(np.max(np.abs(m_num - res.mean)))
    assert err < 1e-12, f"posterior mean differs from kernelgen by {err}"
    return f"-Hess L = A, d^3 L = 0, grad L(m_N) = 0, completion exact (M={M_SYM}, N={N_SYM}); m_N vs kernelgen {err:.1e}"


def check_laplace_equals_eq_3_86() -> str:
    """Laplace at the MAP, L(m_N) + (M/2) ln 2pi - 1/2 ln|A|, equals PRML eq. 3.86 symbolically and in kernelgen."""
    alpha, beta, Phi, t, w, L, A = _model()
    mN = beta * A.inv() * Phi.T * t
    sub = dict(zip(list(w), list(mN)))
    detA = A.det()
    laplace = L.subs(sub) + sp.Rational(M_SYM, 2) * sp.log(2 * sp.pi) - sp.log(detA) / 2
    r = t - Phi * mN
    E = beta / 2 * (r.T * r)[0] + alpha / 2 * (mN.T * mN)[0]  # eq. 3.82
    eq386 = (
        sp.Rational(M_SYM, 2) * sp.log(alpha)
        + sp.Rational(N_SYM, 2) * sp.log(beta)
        - E
        - sp.log(detA) / 2
        - sp.Rational(N_SYM, 2) * sp.log(2 * sp.pi)
    )
    diff = sp.expand_log(laplace - eq386, force=True)
    assert sp.cancel(sp.together(sp.expand(diff))) == 0, "Laplace != eq. 3.86"
    # numerical: the sympy expression, kernelgen's exact evidence and kernelgen's Laplace (JAX Hessian)
    import jax.numpy as jnp


    rng = np.random.default_rng(1)
    Pn = rng.normal(size=(N_SYM, M_SYM))
    tn = rng.normal(size=N_SYM)
    a_, b_ = 0.7, 3.0
    vals = {alpha: a_, beta: b_}
    vals.update({Phi[i, j]: Pn[i, j] for i in range(N_SYM) for j in range(M_SYM)})
    vals.update({t[i]: tn[i] for i in range(N_SYM)})
    sym_val = float(eq386.subs(vals).evalf(30))
    exact = evidence.blr_log_evidence(Pn, tn, alpha=a_, beta=b_).log_evidence

    def loglik(wv):
        r_ = jnp.asarray(tn) - jnp.asarray(Pn) @ wv
        return 0.5 * N_SYM * jnp.log(b_ / (2 * jnp.pi)) - 0.5 * b_ * jnp.sum(r_ * r_)

    def logprior(wv):
        return 0.5 * M_SYM * jnp.log(a_ / (2 * jnp.pi)) - 0.5 * a_ * jnp.sum(wv * wv)

    lap = evidence.laplace_evidence(loglik, logprior, np.ones(M_SYM)).log_evidence
    e1 = abs(sym_val - exact) / abs(exact)
    e2 = abs(lap - exact) / abs(exact)
    assert e1 < 1e-12 and e2 < 1e-10, (e1, e2)
    # a larger random problem: Laplace (JAX Hessian) vs exact, 1e-10 relative
    rng = np.random.default_rng(2)
    N, M = 60, 8
    P2 = rng.normal(size=(N, M))
    t2 = P2 @ rng.normal(size=M) + 0.5 * rng.normal(size=N)
    ex2 = evidence.blr_log_evidence(P2, t2, alpha=1.3, beta=2.5).log_evidence

    def ll2(wv):
        r_ = jnp.asarray(t2) - jnp.asarray(P2) @ wv
        return 0.5 * N * jnp.log(2.5 / (2 * jnp.pi)) - 1.25 * jnp.sum(r_ * r_)

    def lp2(wv):
        return 0.5 * M * jnp.log(1.3 / (2 * jnp.pi)) - 0.65 * jnp.sum(wv * wv)

    lap2 = evidence.laplace_evidence(ll2, lp2, np.zeros(M)).log_evidence
    e3 = abs(lap2 - ex2) / abs(ex2)
    assert e3 < 1e-10, e3
    return (
        f"Laplace == eq. 3.86 symbolically (M={M_SYM}, N={N_SYM}); rel. gaps sympy/kernelgen {e1:.1e}, "
        f"Laplace/exact {e2:.1e} (M=2), {e3:.1e} (N=60, M=8)"
    )


def check_gaussian_integral() -> str:
    """The evidence integral int exp L(w) dw is done symbolically (1-D model; 2-D Gaussian) and matches the Laplace formula."""
    # (a) the whole 1-D model, N = 2: integrate the joint over w
    alpha, beta = sp.symbols("alpha beta", positive=True)
    x1, x2, t1, t2, w = sp.symbols("x1 x2 t1 t2 w", real=True)
    L = (
        sp.log(beta / (2 * sp.pi))
        - beta / 2 * ((t1 - x1 * w) ** 2 + (t2 - x2 * w) ** 2)
        + sp.log(alpha / (2 * sp.pi)) / 2
        - alpha / 2 * w**2
    )
    integral = sp.integrate(sp.exp(sp.expand(L)), (w, -sp.oo, sp.oo), conds="none")
    A = alpha + beta * (x1**2 + x2**2)
    mN = beta * (x1 * t1 + x2 * t2) / A
    laplace = L.subs(w, mN) + sp.log(2 * sp.pi) / 2 - sp.log(A) / 2
    vals = {alpha: sp.Rational(7, 10), beta: 3, x1: sp.Rational(1, 3), x2: -2, t1: sp.Rational(1, 2), t2: 1}
    num_int = float(sp.log(integral.subs(vals)).evalf(30))
    num_lap = float(laplace.subs(vals).evalf(30))
    assert abs(num_int - num_lap) < 1e-14, (num_int, num_lap)
    ratio = sp.simplify(sp.expand_log(sp.log(integral.rewrite(sp.erf)) - laplace, force=True))
    assert ratio == 0, ratio
    # (b) 2-D Gaussian integral int exp(-u^T A u / 2) du = 2 pi / sqrt(det A), A = [[a, b], [b, c]] > 0,
    # parametrised by a > 0 and e = det(A) / a > 0 (so c = e + b^2 / a): positive definiteness exactly.
    a, e = sp.symbols("a e", positive=True)
    b = sp.Symbol("b", real=True)
    u, v = sp.symbols("u v", real=True)
    c = e + b**2 / a
    inner = sp.integrate(sp.exp(-(a * u**2 + 2 * b * u * v + c * v**2) / 2), (u, -sp.oo, sp.oo), conds="none")
    inner = sp.simplify(inner.rewrite(sp.erf))
    outer = sp.integrate(inner, (v, -sp.oo, sp.oo), conds="none")
    target = 2 * sp.pi / sp.sqrt(a * c - b**2)
    assert sp.simplify(outer / target) == 1, sp.simplify(outer / target)
    # numerical cross-check of (a) against kernelgen
    fv = {k: float(v_) for k, v_ in vals.items()}
    ev = evidence.blr_log_evidence(
        np.array([[fv[x1]], [fv[x2]]]), np.array([fv[t1], fv[t2]]), alpha=fv[alpha], beta=fv[beta]
    ).log_evidence
    assert abs(ev - num_int) < 1e-13 * max(1.0, abs(ev)), (ev, num_int)
    return f"ln int exp L dw == Laplace (1-D, symbolic); 2-D Gaussian integral = 2pi/sqrt(det A); kernelgen {ev:.15f}"


CHECKS = [check_quadratic_completion, check_laplace_equals_eq_3_86, check_gaussian_integral]


if __name__ == "__main__":  # pragma: no cover - run by hand
    import time

    for chk in CHECKS:
        t0 = time.perf_counter()
        print(f"{chk.__name__}: {chk()}  [{time.perf_counter() - t0:.1f} s]")
