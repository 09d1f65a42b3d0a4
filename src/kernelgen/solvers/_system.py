"""The float64 operator of one kernel system, and the solves every backend shares (private).

:class:`KernelSystem` is ``(K + ridge I) V`` computed independently of any factor (the certificate's
product); :func:`pinv_refine` and :func:`check_interpolates` are the minimum-norm (eigh) solve and its
interpolation check, used by the SciPy and the JAX backends alike; :func:`float64_refactor` builds a
float64 tiled Cholesky factor of a fitted system (an exact log-determinant). Both
:mod:`._interpolate` and :mod:`._jax_backend` import this module, and it imports neither.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import replace

import numpy as np

from .._validation import as_float_array
from ..errors import InterpolationWarning, InvalidInputError, ShapeMismatchError, SingularSystemError
from ..factors import CholeskyFactor, EighFactor, LowerPanels, symmetric_matvec_panels
from ..kernels import (bounded_summation_depth, entries_bounded_symmetric_apply, entries_symmetric_apply,
                       fused_summation_depth)
from ..kernels._entries import checked_extent
from ..numerics import safe_norm, unit_roundoff
from ._backend import OperatorMode, no_entry_bound_reason, product_error_bound, products_with_abs
from ._out_of_core import disk_factor
from ._planner import plan_kernel_solve
from ._refine import RefinementResult, _rel

log = logging.getLogger(__name__)

_U = float(np.finfo(np.float64).eps) / 2.0


def _gamma(m: int) -> float:
    return m * _U / (1.0 - m * _U)

__all__ = ["KernelSystem", "check_interpolates", "float64_refactor", "pinv_refine", "prepare_targets"]


def prepare_targets(Y, n):
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    if Y.shape[0] != n:
        raise ShapeMismatchError(f"the system has {n} rows (training points) but Y has {Y.shape[0]}; they must match.")
    return Y.reshape(n, -1), Y.ndim == 1

class KernelSystem:
    """The float64 operator of one kernel system (K + ridge I), independent of any factor.

    Implements :class:`~kernelgen.solvers._backend.KernelOperator` for the SciPy and JAX backends.

    Parameters
    ----------
    kernel : Kernel
    X64 : ndarray (n, d) float64 or None
        The training inputs (modes "on-the-fly" and "stored").
    K : ndarray (n, n), callable or None
        The caller's K ("precomputed"), or V -> K V on a device ("device").
    ridge : float
    mode : OperatorMode or str
    tile : int
    verbose : bool
    K64_panels : LowerPanels, optional
        The stored float64 triangle ("stored").
    """

    def __init__(self, kernel, X64, K, ridge, mode, tile, verbose, K64_panels=None):
        self.kernel, self.X64, self.K, self.ridge = kernel, X64, K, float(ridge)
        self.mode, self.tile, self.verbose, self.K64 = OperatorMode(mode), tile, verbose, K64_panels
        self._entries = None  # the float64 entries of k(X, X), built once and reused by every pass

    def rebind(self, X64):
        """Point the operator at ``X64`` (the same values, e.g. the fit's own read-only copy)."""
        if self.X64 is not None:
            self.X64, self._entries = X64, None

    def matvec(self, V):
        return self._product(np.asarray(V, dtype=np.float64))

    def _product(self, V, extent=None):
        """(K + ridge I) V for a float64 V (:meth:`matvec`'s body; :meth:`matvec_prefix` passes ``extent``)."""
        if self.mode == OperatorMode.PRECOMPUTED:  # the caller's K, on the host or on a device (a callable)
            out = self.K(V) if callable(self.K) else self.K @ V
        elif self.mode == OperatorMode.STORED:
            out = symmetric_matvec_panels(self.K64, V)
        elif self.mode in (OperatorMode.DEVICE, OperatorMode.FACTOR):
            out = self.K(V)
        else:
            if self._entries is None:
                self._entries = self.kernel.entries(self.X64, None, dtype=np.float64)
            out = entries_symmetric_apply(self._entries, V, verbose=self.verbose, extent=extent)
            extent = None  # the fused pass served only the wanted rows (the others are 0)
        if extent is not None:  # the other modes computed the whole product: zero the unwanted rows
            out = np.array(out)
            for j, e in enumerate(extent.tolist()):
                out[e:, j] = 0.0
        return out + self.ridge * V if self.ridge else out

    def matvec_prefix(self, V, extent):
        """Rows ``< extent[j]`` of column j of (K + ridge I) V, for V zero in rows ``>= extent[j]`` (other rows 0).

        The stacked prefix systems of :func:`kernelgen.learning_curve`: computed on the fly, a block serves
        only the columns whose prefix reaches its rows (:func:`~kernelgen.kernels.entries_symmetric_apply`'s
        ``extent``); the wanted entries are the same sums as :meth:`matvec`'s. Other modes compute the
        whole product and zero the unwanted rows.
        """
        V = np.asarray(V, dtype=np.float64)
        if V.ndim != 2:
            raise InvalidInputError("extent needs a 2-D V (one extent per column)")
        return self._product(V, checked_extent(extent, V.shape[1]))

    def matvec_with_error(self, V):
        """((K + ridge I) V, (K + ridge I)|V|) from one pass over the kernel (the products of [V, |V|])."""
        return products_with_abs(self.matvec, V)

    def matvec_bounded(self, V, extent=None):
        """((K + ridge I) V, U, E) from one bounded pass: U >= the exact (K + ridge I)|V| and
        E >= |computed - exact (K + ridge I) V| componentwise, K the kernel of the given data in exact arithmetic.

        The kernel's per-entry model (:meth:`~kernelgen.kernels.KernelEntries.entry_error_model`:
        |k_hat - k| <= a0 k_hat + a1 t_hat k_hat + mu, k <= kappa k_hat + mu) and the pass's summation
        (:func:`~kernelgen.kernels.entries_bounded_symmetric_apply`: segmented dot products of height h,
        compensated accumulation of N partial sums) give, per column v, with g = gamma_h + (u + 4 N^2 u^2)
        (1 + gamma_h) and M = K_hat o (1 + tau T_hat), tau = a1 / (g + a0):

            E = (g + a0) M|v| + mu ||v||_1     and     U = kappa M|v| + mu ||v||_1,

        since (g + a0) K_hat|v| + a1 (T_hat o K_hat)|v| = (g + a0) M|v| and K_hat <= M entrywise; the
        computed M|v| is a plain sum of terms >= 0, each entry of M formed with two roundings:
        M|v| <= fl(M|v|) / ((1 - u)^2 (1 - gamma_D)). The ridge adds u ridge|v| + u |result| (two
        roundings). Available where :meth:`error_bound` is (else InvalidInputError): the float64
        products of a kernel with a proven entry model (modes on-the-fly, stored and recomputed all use
        this pass: it recomputes the entries, independently of any stored triangle).
        """
        model = self._entries.entry_error_model() if self.error_bound() is not None else None
        if model is None:
            raise InvalidInputError(f"no proven product bound for this operator: {self.no_bound_reason()}")
        V = np.asarray(V, dtype=np.float64)
        n = self.X64.shape[0]
        u = _U
        h, N, D = bounded_summation_depth(n)
        g_sum = _gamma(h) + (u + 4.0 * N * N * u * u) * (1.0 + _gamma(h))
        c0 = g_sum + model.a0
        if extent is not None and V.ndim != 2:
            raise InvalidInputError("extent needs a 2-D V (one extent per column)")
        bp = entries_bounded_symmetric_apply(self._entries, V, tau=model.a1 / c0, verbose=self.verbose, extent=extent)
        up = 1.0 + 8.0 * u
        m_abs = bp.M_abs * (up / ((1.0 - u) ** 2 * (1.0 - _gamma(D))))
        V2 = V.reshape(n, -1)
        l1 = (np.sum(np.abs(V2), axis=0) * (1.0 + (n + 2) * u)).reshape((1,) * (V.ndim - 1) + V.shape[1:])
        err = c0 * m_abs + model.mu * l1
        upper = model.kappa * m_abs + model.mu * l1
        out = bp.KV
        if self.ridge:
            rv = self.ridge * np.abs(V)
            err = err + u * rv + u * (upper + err + rv * (1.0 + u))
            upper = upper + rv * (1.0 + u)
            out = out + self.ridge * V
        return out, upper * up, err * up

    def no_bound_reason(self):
        """Why this operator's products carry no proven error bound (None when they do)."""
        if self.mode == OperatorMode.PRECOMPUTED:
            return "a precomputed K: its entries' errors are unknown to kernelgen"
        if self.mode == OperatorMode.DEVICE:
            return "the JAX backend's entries (matrix_jax) carry no proven error bound"
        if self.mode == OperatorMode.FACTOR:
            return "the products come from the eigendecomposition that used the caller's K as workspace"
        if self.mode not in (OperatorMode.ON_THE_FLY, OperatorMode.STORED, OperatorMode.RECOMPUTED):
            return f"the {self.mode} products carry no proven error bound"
        if self._entry_bound() is None:
            return no_entry_bound_reason(self.kernel)
        return None

    def _entry_bound(self):
        if self._entries is None:
            self._entries = self.kernel.entries(self.X64, None, dtype=np.float64)
        return self._entries.entry_error_bound()

    def error_bound(self):
        """g with |matvec(v) - (K + ridge I) v| <= g (K + ridge I)|v| componentwise, K the exact kernel; or None.

        Available for the float64 product (on-the-fly or from the stored float64 triangle, both filled
        by the kernel's own entries) of a kernel with a proven entry bound eta
        (:meth:`KernelEntries.entry_error_bound`): g = (1 + eta)(1 + gamma_D)(1 + u)^2 - 1 with D the
        summation depth of the product (:func:`kernelgen.kernels.fused_summation_depth`, or n plus
        the panel accumulations for the stored triangle) and one more rounding for the ridge. None
        (with :meth:`no_bound_reason`) for precomputed and device products, whose float64 iteration
        is verified by a direct product instead.
        """
        if self.no_bound_reason() is not None or self.ridge < 0:
            return None
        n = self.X64.shape[0]
        if self.mode == OperatorMode.STORED:  # symmetric_matvec_panels: a panel's dot (<= n terms), mirrors, sum
            depth = n + 2 * (n // max(1, self.K64.tile) + 2) + 4
        else:
            depth = fused_summation_depth(n)
        return product_error_bound(self._entry_bound(), depth)


def float64_refactor(fit, *, verbose=False):
    """A float64 tiled Cholesky factor of the fit's K + ridge I (planner-checked), for an exact log-det.

    In RAM where the plan fits, else out of core (``plan.storage == "disk"``; removed when dropped)."""
    if fit.X_train is None:
        raise InvalidInputError("a float64 refactor needs the training data (or refit a precomputed K in float64).")
    n, d = fit.X_train.shape
    opts = replace(fit.options, dtype="float64", store_kernel=False)
    plan = plan_kernel_solve(n, d, 1, solver="cholesky", options=opts)
    if plan.storage == "disk":  # the float64 factor does not fit in RAM: out of core, as the solve would
        return disk_factor(fit.X_train, fit.kernel, plan, fit.ridge, opts, verbose=verbose)
    P = LowerPanels(n, plan.tile, np.float64)
    fit.kernel.fill_panels(P, fit.X_train, verbose=verbose, desc="kernel (float64)")
    if fit.ridge:
        P.add_to_diagonal(fit.ridge)
    return CholeskyFactor.from_panels(P, verbose=verbose)

def pinv_refine(factor: EighFactor, system: KernelSystem, Y2, tol, max_steps: int = 5):
    """alpha = A^+ Y from the eigendecomposition, refined with the pseudo-inverse.

    Refinement keeps alpha in the span of the kept eigenvectors (so it stays the minimum-norm
    solution) and removes the cond * eps error; it stops when the residual stops shrinking
    (targets outside the range of K). The residual is the system's independent float64 product.
    """
    t0 = time.perf_counter()
    ny = safe_norm(Y2)
    alpha = factor.solve(Y2)
    R = Y2 - system.matvec(alpha)
    rel = _rel(R, ny)
    history = [{"step": 0, "kind": "eigh", "relative_residual": rel, "seconds": time.perf_counter() - t0}]
    while not (rel <= tol) and len(history) <= max_steps:  # (rel is finite: _rel refuses NaN)
        cand = alpha + factor.solve(R)
        R2 = Y2 - system.matvec(cand)
        rel2 = _rel(R2, ny)
        if rel2 > 0.5 * rel:
            break
        alpha, R, rel = cand, R2, rel2
        history.append({"step": len(history), "kind": "pinv refinement", "relative_residual": rel,
                        "seconds": time.perf_counter() - t0})
    return RefinementResult(alpha=alpha, residual=R, relative_residual=rel, history=history,
                            n_matvecs=len(history), last_direct_residual=rel)


def check_interpolates(res, factor, opts, *, stacklevel: int = 4):
    """min_norm: warn (or raise, by option) when the minimum-norm solution is not an interpolant.

    The :class:`~kernelgen.errors.InterpolationWarning` is emitted once, by :func:`warnings.warn`
    (attributed to the caller of kernel_interpolate), and logged at DEBUG only.

    The threshold follows the precision the kernel matrix carries: ``opts.tol`` for float64; for a
    float32 matrix its own rounding (~u32 * cond of the kept spectrum) already limits how well any Y
    in its range can be reproduced, so max(tol, 10 * u32 * cond) is used.
    """
    tol = opts.tol
    if factor.matrix_dtype != np.float64 and factor.condition_number is not None:
        tol = max(tol, 10.0 * unit_roundoff(factor.matrix_dtype) * factor.condition_number)
    if res.relative_residual <= tol:
        return
    if factor.rank < factor.shape[0]:
        why = ("Y is not in the range of K (for example repeated inputs with conflicting targets), so this is the "
               "minimum-norm least-squares fit.")
    else:
        cond = factor.condition_number
        why = (f"K has full numerical rank but condition number {cond:.2g}: the residual sits at the float64 "
               "rounding floor (about eps * cond), below which no tolerance can be promised; loosen tol, or add an "
               "explicit ridge.")
    what = "does not interpolate" if factor.rank < factor.shape[0] else "does not reach tol"
    msg = (f"the minimum-norm solution {what}: relative residual {res.relative_residual:.3g} > tol "
           f"{tol:.1e} with numerical rank {factor.rank} of {factor.shape[0]}. " + why)
    if opts.require_interpolation:
        raise SingularSystemError(msg + " (SolveOptions(require_interpolation=True))")
    # emitted once, through warnings only (so that warnings.filterwarnings can silence it); the log keeps a
    # DEBUG line, never a second WARNING
    log.debug("InterpolationWarning: %s", msg)
    warnings.warn(msg, InterpolationWarning, stacklevel=stacklevel)
