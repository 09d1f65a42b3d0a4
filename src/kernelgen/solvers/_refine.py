"""Float64 iteration to the exact residual, preconditioned by a (possibly float32) factor.

Two iterations are provided, both driven by float64 products with the float64 kernel:

- ``"cg"`` (default): conjugate gradients on the float64 system (K + ridge I) alpha = Y,
  one independent CG per target column sharing each kernel pass, preconditioned by
  the factor (Hestenes & Stiefel 1952; Saad, Iterative Methods, Alg. 9.1). With a float32
  Cholesky factor the preconditioned spectrum lies in [1 - rho, 1 + rho] where rho is
  the contraction of plain refinement, so CG contracts faster per kernel pass.
- ``"richardson"``: classical iterative refinement alpha <- alpha + P^-1 (Y - K alpha)
  (Wilkinson 1963; Higham, Accuracy and Stability, ch. 12).

The stopping rule is a float64 residual that cannot share the fault it checks: either a direct
product Y - K alpha recomputed from the kernel's entries (independently of the factor), or -- when the
caller supplies ``matvec_error`` -- a *proven* componentwise bound on the true residual of the
returned alpha, carried through the iteration (:class:`_DriftBound`), which saves the separate
verifying pass.

The bound (a componentwise form of the residual-gap analysis of Greenbaum 1997, "Estimating the
attainable accuracy of recursive residual methods", SIMAX 18(3), and van der Vorst & Ye 2000,
"Residual replacement strategies", SISC 22(3), eq. 2.6): let K be the *exact* kernel matrix (entries
in exact arithmetic, plus ridge), g the componentwise relative error of one computed product, so
that |fl(K v) - K v| <= g K|v| for a kernel with non-negative entries, and u = 2^-53. The recursion
updates alpha_{j+1} = fl(alpha_j + fl(p_j a_j)) and r_{j+1} = fl(r_j - fl(q_j a_j)), q_j = fl(K p_j),
with the same a_j in both. The gap e_j = (Y - K alpha_j) - r_j then obeys

    |e_{j+1}| <= |e_j| + |a_j| g K|p_j| + u |q_j a_j| + u |a_j| K|p_j| + u' K|alpha_{j+1}| + u' |r_{j+1}|,

u' = u (1 + 2u), with K|alpha_{j+1}| <= (K|alpha_j| + (1 + u) |a_j| K|p_j|)(1 + u); and for the direct
start r_0 = fl(Y - fl(K alpha_0)): |e_0| <= g K|alpha_0| + u' |r_0|. Each pass computes K|p_j| alongside
K p_j (the same pass applied to [p_j, |p_j|]: K >= 0 means |K||p| = K|p|), and a computed K|v| is at
least (1 - g) times the exact one. So ||Y - K alpha_k||_F <= || |r_k| + |e_k| ||_F, a bound on the
*exact-arithmetic* residual of the returned alpha, which is what is reported as
``relative_residual_bound``. The bookkeeping itself is rounded upward by a factor (1 + 8u) per step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConvergenceError, InvalidInputError, NonFiniteResultError, ShapeMismatchError
from ..numerics import safe_norm
from ..options import SolveOptions
from ._backend import products_with_abs, scalar_bounded_product

log = logging.getLogger(__name__)

__all__ = ["RefinementResult", "refine"]


@dataclass
class RefinementResult:
    """What the float64 iteration returns.

    Attributes
    ----------
    alpha : ndarray of shape (n, k)
    residual : ndarray of shape (n, k)
        Y - (K + ridge I) alpha, recomputed directly in float64.
    relative_residual : float
    history : list of dict
        step, kind, relative_residual, seconds.
    n_matvecs : int
        float64 kernel passes.
    spectrum_estimate : (float, float) or None
        Extreme Ritz values of the preconditioned operator from the CG coefficients (Lanczos
        connection, Saad, Iterative Methods, §6.7.3): an estimate of its spectral interval.
    relative_residual_bound : float or None
        Proven upper bound on the exact-arithmetic relative residual of ``alpha`` (module
        docstring); None when the operator gave no error bound.
    certificate : {"direct", "bound"}
        What certifies ``alpha``: a direct float64 product (``residual`` is Y - K alpha recomputed,
        ``relative_residual`` its norm) or the proven bound (``residual`` is the recursive residual,
        ``relative_residual`` equals ``relative_residual_bound``).
    last_direct_residual : float
        The relative residual of the last direct product (the starting point's when certified by
        the bound).
    """

    alpha: np.ndarray
    residual: np.ndarray
    relative_residual: float
    history: list = field(default_factory=list)
    n_matvecs: int = 0
    spectrum_estimate: tuple | None = None
    relative_residual_bound: float | None = None
    certificate: str = "direct"
    last_direct_residual: float | None = None


_U = float(np.finfo(np.float64).eps) / 2.0  # unit roundoff of float64
_UP = 1.0 + 8.0 * _U  # upward rounding of the bound's own arithmetic


class _DriftBound:
    """Componentwise bound on the gap between the true and the recursive residual (module docstring).

    Each product comes with ``upper`` >= the exact (K + ridge I)|v| and ``err`` >= |computed - exact|
    componentwise (from the operator's ``matvec_bounded``, or ``g`` times ``upper`` for a scalar bound g).
    """

    def __init__(self):
        self.gap = None  # |e_j| bound, (n, k)
        self.k_abs_alpha = None  # bound on K|alpha_j|, (n, k)

    def start(self, info, R0):
        upper, err = info
        self.k_abs_alpha = upper
        self.gap = (err + _U * (1.0 + 2.0 * _U) * np.abs(R0)) * _UP

    def step(self, a, Q, info, R_new):
        Kp, err = info
        aa = np.abs(a)[None, :]
        self.k_abs_alpha = (self.k_abs_alpha + (1.0 + _U) * aa * Kp) * ((1.0 + _U) * _UP)
        u2 = _U * (1.0 + 2.0 * _U)
        self.gap = (self.gap + aa * err + _U * aa * Kp + _U * np.abs(Q) * aa + u2 * self.k_abs_alpha
                    + u2 * np.abs(R_new)) * _UP

    def relative(self, R, normY):
        """|| |R| + gap ||_F / ||Y||_F, rounded upward (a bound, never an estimate)."""
        n = R.size
        tot = safe_norm(np.abs(R) + self.gap) * (1.0 + 2.0 * (n + 8) * _U)
        return float(tot / normY) if normY > 0 else float(tot)


def _rel(R, normY):
    nr = safe_norm(R)
    rel = float(nr / normY) if normY > 0 else float(nr)
    if not np.isfinite(rel):
        raise NonFiniteResultError(
            "the float64 residual is not finite (NaN/inf): the kernel, the factor or the iterate overflowed. "
            "Check the kernel's scale (e.g. a polynomial of high degree) and the data.")
    return rel


def refine(
    operator,
    precond,
    Y: np.ndarray,
    *,
    options: SolveOptions | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    method: str | None = None,
    alpha0: np.ndarray | None = None,
    on_step: Callable[[dict], None] | None = None,
    verbose: bool = False,
    matvec_error: float | None = None,
    stop_on_bound: bool | None = None,
) -> RefinementResult:
    """Iterate to ||Y - A alpha||_F <= tol ||Y||_F with A applied in float64 by ``operator``.

    Parameters
    ----------
    operator : KernelOperator or callable
        A :class:`~kernelgen.solvers._backend.KernelOperator` (its ``matvec``, its
        ``matvec_with_error`` for the products of [V, |V|], and its ``error_bound()`` as
        ``matvec_error``), or a callable V (n, k) float64 -> A V (n, k) float64.
    precond : Factor or callable
        A factor (its ``solve``) or a callable R (n, k) float64 -> approximately A^-1 R, float64
        (e.g. a float32 Cholesky solve).
    Y : ndarray of shape (n, k)
    options : SolveOptions, optional
        Passed whole: ``tol`` (default :data:`kernelgen.numerics.EXACT_TOL`), ``max_iter``,
        ``refinement`` (the method) and ``certificate`` ("bound": ``stop_on_bound``) are read from it.
        The keywords below, when given, override it.
    tol : float, optional
        Target relative Frobenius residual.
    max_iter : int, optional
        Maximum number of kernel passes after the first.
    method : {"cg", "richardson"}, optional
    alpha0 : ndarray of shape (n, k), optional
        Starting point (default: the preconditioner applied to Y).
    on_step : callable, optional
        Called with each history entry.
    verbose : bool
        A progress bar over the float64 passes (the longest phase at 60k).
    matvec_error : float, optional
        g with |matvec(v) - A v| <= g A|v| componentwise for the exact operator A >= 0 (entrywise);
        default: the operator's ``error_bound()``. When known, every direct product is applied to
        [alpha, |alpha|] and the result carries the proven bound ``relative_residual_bound`` on the
        exact-arithmetic residual.
    stop_on_bound : bool, optional
        With ``matvec_error`` and CG: every pass is applied to [p, |p|], the gap bound of the module
        docstring is carried, and CG stops, certified, as soon as the bound reaches ``tol`` (no
        verifying pass); when it does not, the verifying pass is made as usual.

    Raises
    ------
    ConvergenceError
        When the residual stops decreasing or ``max_iter`` is reached; the message
        carries the history and remedies.
    """
    t0 = time.perf_counter()
    opts = SolveOptions.coerce(options)
    tol = opts.tol if tol is None else tol
    max_iter = opts.max_iter if max_iter is None else max_iter
    method = opts.refinement if method is None else method
    stop_on_bound = (opts.certificate == "bound") if stop_on_bound is None else stop_on_bound
    given_g = matvec_error is not None
    if callable(operator) and not hasattr(operator, "matvec"):
        matvec, pair, fine = operator, None, None
    else:
        matvec, pair = operator.matvec, getattr(operator, "matvec_with_error", None)
        fine = getattr(operator, "matvec_bounded", None)  # the operator's own componentwise model, when it has one
        if matvec_error is None and hasattr(operator, "error_bound"):
            matvec_error = operator.error_bound()
    float64_factor = False
    if hasattr(precond, "solve"):  # a Factor (its dtype decides which remedies the failure message offers)
        float64_factor = np.dtype(getattr(precond, "dtype", None) or "O") == np.float64
        precond = precond.solve
    Y = np.asarray(Y, dtype=np.float64)
    # the problem is linear: solve it for Y / 2^k with max|Y / 2^k| in [0.5, 1) (an exact scaling), so that CG's
    # inner products of residuals cannot underflow or overflow for targets of any representable size
    ymax = float(np.max(np.abs(Y))) if Y.size else 0.0
    k2 = int(np.frexp(ymax)[1]) if ymax > 0 and np.isfinite(ymax) else 0
    Y = np.ldexp(Y, -k2)
    normY = safe_norm(Y)
    history: list = []
    n_mv = 0

    bar = tqdm(total=max_iter + 1, desc="float64 passes", unit="pass", disable=not verbose)

    def record(kind, rel):
        h = {"step": len(history), "kind": kind, "relative_residual": rel,
             "seconds": time.perf_counter() - t0}
        history.append(h)
        bar.update(1)
        bar.set_postfix(residual=f"{rel:.2e}")
        log.info("refinement step %d (%s): relative residual %.3e", h["step"], kind, rel)
        if on_step is not None:
            on_step(h)

    if method not in ("cg", "richardson"):
        raise InvalidInputError(f"unknown refinement method {method!r}")
    if matvec_error is not None and not (0.0 <= matvec_error < 0.5):
        raise InvalidInputError(f"matvec_error must lie in [0, 0.5), got {matvec_error!r}")
    drift = _DriftBound() if matvec_error is not None else None
    track = drift is not None and stop_on_bound and method == "cg"

    def with_abs(V):
        return pair(V) if pair is not None else products_with_abs(matvec, V)

    # V -> (A V, (upper bound on the exact A|V|, bound on the product's error)): the operator's componentwise
    # model where it has one (and no scalar g was imposed), else the scalar g applied to the products of [V, |V|]
    if drift is None:
        bounded = None
    elif callable(fine) and not given_g:
        bounded = fine
    else:
        bounded = scalar_bounded_product(with_abs, matvec_error)

    def with_info(V):
        AV, upper, err = bounded(V)
        return AV, (upper, err)

    def direct_product(V):
        """A V, and its error information from the same pass when there is a bound to compute."""
        return with_info(V) if drift is not None else (matvec(V), None)

    def cg_product(V):
        return with_info(V) if track else (matvec(V), None)

    def direct_bound(info, R):
        if drift is None:
            return None
        drift.start(info, R)
        return drift.relative(R, normY)

    alpha = precond(Y) if alpha0 is None else np.ldexp(np.array(alpha0, dtype=np.float64), -k2)
    if np.shape(alpha) != Y.shape:
        raise ShapeMismatchError(f"the preconditioner returned shape {np.shape(alpha)} for targets of shape {Y.shape}.")
    KA, infoA = direct_product(alpha)
    if np.shape(KA) != Y.shape:
        raise ShapeMismatchError(f"the operator returned shape {np.shape(KA)} for V of shape {Y.shape}: it must "
                                 "return (K + ridge I) V of the same shape.")
    n_mv += 1
    R = Y - KA
    rel = _rel(R, normY)
    last_direct = rel
    record("initial", rel)
    bound = direct_bound(infoA, R)
    best = rel
    stalls = 0
    ritz: list = []
    certified_by = "direct"

    while not (rel <= tol):
        if n_mv > max_iter:
            bar.close()
            raise ConvergenceError(_fail_msg(history, tol, "reached max_iter", float64_factor), history=history)
        if method == "richardson":
            alpha = alpha + precond(R)
            KA, infoA = direct_product(alpha)
            n_mv += 1
            R = Y - KA
            rel = last_direct = _rel(R, normY)
            bound = direct_bound(infoA, R)
            record("richardson", rel)
        else:
            alpha, R, rel, used, certified_by, infoA = _pcg(
                cg_product, direct_product, precond, Y, alpha, R, normY, tol, max_iter - n_mv + 1, record, ritz,
                drift if track else None)
            n_mv += used
            if certified_by == "direct":
                last_direct = rel
                bound = direct_bound(infoA, R)
            else:
                bound = rel
        if rel < 0.5 * best:
            best, stalls = rel, 0
        else:
            stalls += 1
            if stalls >= 3:
                bar.close()
                raise ConvergenceError(_fail_msg(history, tol, "the residual stopped decreasing",
                                                 float64_factor), history=history)
    bar.close()
    spec = (min(r[0] for r in ritz), max(r[1] for r in ritz)) if ritz else None
    alpha_s = alpha
    alpha, R = np.ldexp(alpha, k2), np.ldexp(R, k2)
    if k2 < 0 and not np.array_equal(np.ldexp(alpha, -k2), alpha_s):
        # the certificate holds for alpha_s (the solution for Y / 2^k2); scaled back, alpha fell below float64's
        # normal range and lost bits, so the returned coefficients are not the certified ones: refuse
        raise NonFiniteResultError(
            f"the coefficients underflow: with targets as small as max|Y| = 2^{k2 - 1}..2^{k2}, alpha falls below the "
            "float64 normal range (~2.2e-308) and would lose the digits the certificate is about. The problem is "
            "linear: scale Y up by a power of two (alpha and the predictions scale with it) and scale them back "
            "yourself.")
    if certified_by == "bound":
        log.info("certified by the proven residual bound %.3e (recursive residual %.3e; last direct product %.3e)",
                 bound, _rel(R, np.ldexp(normY, k2)), last_direct)
    elif track:
        log.info("certificate='bound': the proven bound (%s) did not reach tol %.1e; certified by the verifying "
                 "direct product %.3e instead", "n/a" if bound is None else f"{bound:.3e}", tol, rel)
    return RefinementResult(alpha=alpha, residual=R, relative_residual=rel, history=history, n_matvecs=n_mv,
                            spectrum_estimate=spec, relative_residual_bound=bound, certificate=certified_by,
                            last_direct_residual=last_direct)


def _ritz_interval(alphas, betas):
    """Extreme eigenvalues of the Lanczos tridiagonal built from CG coefficients (per column)."""
    a = np.asarray(alphas)  # (m, k)
    b = np.asarray(betas).reshape(max(a.shape[0] - 1, 0), a.shape[1])  # (m - 1, k)
    lo, hi = np.inf, -np.inf
    for j in range(a.shape[1]):
        aj = a[:, j]
        if not np.all(aj > 0):
            continue
        diag = 1.0 / aj
        diag[1:] += b[:, j] / aj[:-1]
        off = np.sqrt(np.maximum(b[:, j], 0.0)) / aj[:-1]
        T = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
        w = np.linalg.eigvalsh(T)
        lo, hi = min(lo, float(w[0])), max(hi, float(w[-1]))
    return (lo, hi) if np.isfinite(lo) else None


def _pcg(product, direct_product, precond, Y, alpha, R, normY, tol, budget, record, ritz, drift):
    """One preconditioned CG run from (alpha, true residual R).

    With ``drift`` (a started :class:`_DriftBound`) it ends certified by the proven bound as soon
    as that reaches ``tol``; otherwise by one direct verifying product. Returns (alpha, R, rel,
    passes used, "bound" | "direct", the verifying pass's error information or None).
    """
    Z = precond(R)
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    used = 0
    Rrec = R.copy()
    alphas, betas = [], []
    while used < budget:
        Q, infoP = product(P)
        used += 1
        pq = np.einsum("ij,ij->j", P, Q)
        a = np.divide(rz, pq, out=np.zeros_like(rz), where=pq > 0)
        alphas.append(a)
        alpha = alpha + P * a
        Rrec = Rrec - Q * a
        rel_rec = _rel(Rrec, normY)
        record("cg (recursive residual)", rel_rec)
        if drift is not None:
            drift.step(a, Q, infoP, Rrec)
            bound = drift.relative(Rrec, normY)
            if not np.isfinite(bound):
                raise NonFiniteResultError("the residual bound is not finite: the iterate overflowed.")
            if bound <= tol:
                record("certified (proven bound)", bound)
                _ritz_append(ritz, alphas, betas)
                return alpha, Rrec, bound, used, "bound", None
        if rel_rec <= 0.5 * tol or used >= budget:
            break
        Z = precond(Rrec)
        rz_new = np.einsum("ij,ij->j", Rrec, Z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        betas.append(beta)
        P = Z + P * beta
        rz = rz_new
    _ritz_append(ritz, alphas, betas)
    # verify with a direct float64 product
    KA, infoA = direct_product(alpha)
    used += 1
    R = Y - KA
    rel = _rel(R, normY)
    record("verified", rel)
    return alpha, R, rel, used, "direct", infoA


def _ritz_append(ritz, alphas, betas):
    if alphas:
        iv = _ritz_interval(alphas, betas[: len(alphas) - 1])
        if iv is not None:
            ritz.append(iv)


def _fail_msg(history, tol, why, float64_factor=False):
    direct = [h["relative_residual"] for h in history if "recursive" not in h["kind"] and "bound" not in h["kind"]]
    recursive = [h["relative_residual"] for h in history if "recursive" in h["kind"]]
    shown = direct if len(direct) <= 12 else direct[:6] + direct[-6:]
    steps = ", ".join(f"{r:.2e}" for r in shown) + (f" (of {len(direct)})" if len(direct) > 12 else "")
    rec = (f" CG's recursive residual estimates went as low as {min(recursive):.1e}, but they are not "
           "certificates: the direct products above are." if recursive else "")
    return (f"float64 refinement did not reach relative residual {tol:.1e} ({why}); direct float64 residuals: "
            f"{steps}.{rec} Either the system is too ill-conditioned for the preconditioner, or tol lies below the "
            "float64 rounding floor of the residual itself (about eps * || |K| |alpha| || / ||Y||, which "
            "exceeds 1e-10 when cond(K) is ~1e8 or more). Remedies: " + (
                "" if float64_factor else "SolveOptions(dtype='float64') (a float64 factor), ")
            + "a looser tol, solver='min_norm' (rank-revealing), or an explicit ridge."
            + (" (The factor was already float64.)" if float64_factor else "") + " The full history is "
            "on the exception's .history.")
