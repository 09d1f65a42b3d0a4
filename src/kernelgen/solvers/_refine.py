"""Float64 iteration to the exact residual, preconditioned by a (possibly float32) factor.

Two iterations are provided, both driven by float64 products with the float64 kernel:

- ``"cg"`` (default): conjugate gradients on the float64 system (K + ridge I) alpha = Y,
  one independent CG per target column sharing each kernel pass, preconditioned by
  the factor (Hestenes & Stiefel 1952; Saad, Iterative Methods, Alg. 9.1). With a float32
  Cholesky factor the preconditioned spectrum lies in [1 - rho, 1 + rho] where rho is
  the contraction of plain refinement, so CG contracts faster per kernel pass.
- ``"richardson"``: classical iterative refinement alpha <- alpha + P^-1 (Y - K alpha)
  (Wilkinson 1963; Higham, Accuracy and Stability, ch. 12).

The stopping rule is always the *recomputed* float64 residual: a CG run that
believes it has converged is verified by one more direct product Y - K alpha.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConvergenceError, InvalidInputError, NonFiniteResultError
from ..numerics import safe_norm

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
    """

    alpha: np.ndarray
    residual: np.ndarray
    relative_residual: float
    history: list = field(default_factory=list)
    n_matvecs: int = 0
    spectrum_estimate: tuple | None = None


def _rel(R, normY):
    nr = safe_norm(R)
    rel = float(nr / normY) if normY > 0 else float(nr)
    if not np.isfinite(rel):
        raise NonFiniteResultError(
            "the float64 residual is not finite (NaN/inf): the kernel, the factor or the iterate overflowed. "
            "Check the kernel's scale (e.g. a polynomial of high degree) and the data.")
    return rel


def refine(
    matvec: Callable[[np.ndarray], np.ndarray],
    precond: Callable[[np.ndarray], np.ndarray],
    Y: np.ndarray,
    *,
    tol: float = 1e-10,
    max_iter: int = 30,
    method: str = "cg",
    alpha0: np.ndarray | None = None,
    on_step: Callable[[dict], None] | None = None,
    verbose: bool = False,
) -> RefinementResult:
    """Iterate to ||Y - A alpha||_F <= tol ||Y||_F with A applied by ``matvec`` in float64.

    Parameters
    ----------
    matvec : callable
        V (n, k) float64 -> A V (n, k) float64 (the float64 kernel, plus ridge).
    precond : callable
        R (n, k) float64 -> approximately A^-1 R, float64 (e.g. a float32 Cholesky solve).
    Y : ndarray of shape (n, k)
    tol : float
        Target relative Frobenius residual.
    max_iter : int
        Maximum number of kernel passes after the first.
    method : {"cg", "richardson"}
    alpha0 : ndarray of shape (n, k), optional
        Starting point (default: the preconditioner applied to Y).
    on_step : callable, optional
        Called with each history entry.
    verbose : bool
        A progress bar over the float64 passes (the longest phase at 60k).

    Raises
    ------
    ConvergenceError
        When the residual stops decreasing or ``max_iter`` is reached; the message
        carries the history and remedies.
    """
    t0 = time.perf_counter()
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

    alpha = precond(Y) if alpha0 is None else np.ldexp(np.array(alpha0, dtype=np.float64), -k2)
    KA = matvec(alpha)
    n_mv += 1
    R = Y - KA
    rel = _rel(R, normY)
    record("initial", rel)
    best = rel
    stalls = 0
    if method not in ("cg", "richardson"):
        raise InvalidInputError(f"unknown refinement method {method!r}")
    ritz: list = []

    while not (rel <= tol):
        if n_mv > max_iter:
            bar.close()
            raise ConvergenceError(_fail_msg(history, tol, "reached max_iter"), history=history)
        if method == "richardson":
            alpha = alpha + precond(R)
            KA = matvec(alpha)
            n_mv += 1
            R = Y - KA
            rel = _rel(R, normY)
            record("richardson", rel)
        else:
            alpha, KA, R, rel, used = _pcg(matvec, precond, Y, alpha, R, normY, tol, max_iter - n_mv + 1, record,
                                           ritz)
            n_mv += used
        if rel < 0.5 * best:
            best, stalls = rel, 0
        else:
            stalls += 1
            if stalls >= 3:
                bar.close()
                raise ConvergenceError(_fail_msg(history, tol, "the residual stopped decreasing"), history=history)
    bar.close()
    spec = (min(r[0] for r in ritz), max(r[1] for r in ritz)) if ritz else None
    alpha, R = np.ldexp(alpha, k2), np.ldexp(R, k2)
    return RefinementResult(alpha=alpha, residual=R, relative_residual=rel, history=history, n_matvecs=n_mv,
                            spectrum_estimate=spec)


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


def _pcg(matvec, precond, Y, alpha, R, normY, tol, budget, record, ritz):
    """One preconditioned CG run from (alpha, true residual R), ended by a verified residual."""
    Z = precond(R)
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    used = 0
    Rrec = R.copy()
    alphas, betas = [], []
    while used < budget:
        Q = matvec(P)
        used += 1
        pq = np.einsum("ij,ij->j", P, Q)
        a = np.divide(rz, pq, out=np.zeros_like(rz), where=pq > 0)
        alphas.append(a)
        alpha = alpha + P * a
        Rrec = Rrec - Q * a
        rel_rec = _rel(Rrec, normY)
        record("cg (recursive residual)", rel_rec)
        if rel_rec <= 0.5 * tol or used >= budget:
            break
        Z = precond(Rrec)
        rz_new = np.einsum("ij,ij->j", Rrec, Z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        betas.append(beta)
        P = Z + P * beta
        rz = rz_new
    if alphas:
        iv = _ritz_interval(alphas, betas[: len(alphas) - 1])
        if iv is not None:
            ritz.append(iv)
    # verify with a direct float64 product
    KA = matvec(alpha)
    used += 1
    R = Y - KA
    rel = _rel(R, normY)
    record("verified", rel)
    return alpha, KA, R, rel, used


def _fail_msg(history, tol, why):
    direct = [h["relative_residual"] for h in history if "recursive" not in h["kind"]]
    recursive = [h["relative_residual"] for h in history if "recursive" in h["kind"]]
    shown = direct if len(direct) <= 12 else direct[:6] + direct[-6:]
    steps = ", ".join(f"{r:.2e}" for r in shown) + (f" (of {len(direct)})" if len(direct) > 12 else "")
    rec = (f" CG's recursive residual estimates went as low as {min(recursive):.1e}, but they are not "
           "certificates: the direct products above are." if recursive else "")
    return (f"float64 refinement did not reach relative residual {tol:.1e} ({why}); direct float64 residuals: "
            f"{steps}.{rec} Either the system is too ill-conditioned for the preconditioner, or tol lies below the "
            "float64 rounding floor of the residual itself (about eps * || |K| |alpha| || / ||Y||, which "
            "exceeds 1e-10 when cond(K) is ~1e8 or more). Remedies: SolveOptions(dtype='float64') (a float64 "
            "factor), a looser tol, solver='min_norm' (rank-revealing), or an explicit ridge. The full history is "
            "on the exception's .history.")
