"""The SciPy/LAPACK backend: tiled Cholesky or eigendecomposition on the host (private).

Implements :class:`~kernelgen.solvers._backend.Backend`. The plan is the memory planner's
(:func:`~kernelgen.solvers.plan_kernel_solve`); the certifying operator keeps the float64 kernel as
one lower triangle when it fits beside the factor ("stored"), else recomputes it blockwise by the
fused pass ("on-the-fly"), never a dense float64 n x n; the factor is the tiled Cholesky of the
float32 (or float64) triangle -- copied from the stored float64 triangle when there is one, else
filled by the kernel's accurate entries -- or, for the minimum-norm route, a float64
eigendecomposition (:class:`~kernelgen.factors.EighFactor`).
"""

from __future__ import annotations

import logging

import numpy as np

from ..factors import CholeskyFactor, EighFactor, LowerPanels
from ._backend import OperatorMode
from ._out_of_core import disk_factor
from ._planner import plan_kernel_solve
from ._system import KernelSystem

log = logging.getLogger(__name__)

__all__ = ["ScipyBackend"]


class ScipyBackend:
    """The host backend (module docstring); one instance per solve (it keeps the stored triangle)."""

    name = "scipy"
    factor_kinds = ("cholesky", "eigh")
    storage_kinds = ("memory", "disk")  # where a Cholesky factor may live (SolveOptions.storage)
    bound_capable = True  # its products use the kernel's accurate entries (error_bound where proven)

    def __init__(self, *, precomputed: bool, options, verbose: bool = False):
        self.precomputed, self.options, self.verbose = precomputed, options, verbose
        self._K64 = None  # the stored float64 triangle (LowerPanels), shared by the operator and the factor
        self._operator = None

    def plan(self, n, d, k, options, *, solver="cholesky"):
        return plan_kernel_solve(n, d, k, solver=solver, precomputed=self.precomputed, options=options)

    def operator(self, A, kernel, plan, ridge):
        opts, v = self.options, self.verbose
        if plan.path == "eigh":
            if self.precomputed:
                in_place = opts.overwrite_kernel and A.dtype == np.float64
                # the caller's K may become the factor's workspace: then the products come from the factor
                op = KernelSystem(kernel, None, None, ridge, OperatorMode.FACTOR, opts.tile, v) if in_place \
                    else KernelSystem(kernel, None, A, ridge, OperatorMode.PRECOMPUTED, opts.tile, v)
            else:
                op = KernelSystem(kernel, A, None, ridge, OperatorMode.RECOMPUTED, opts.tile, v)
        elif self.precomputed:
            op = KernelSystem(kernel, None, A, ridge, OperatorMode.PRECOMPUTED, plan.tile, v)
        elif plan.residual == "stored":
            self._K64 = LowerPanels(A.shape[0], plan.tile, np.float64)
            kernel.fill_panels(self._K64, A, verbose=v, desc="kernel (float64)")
            op = KernelSystem(kernel, A, None, ridge, OperatorMode.STORED, plan.tile, v, self._K64)
        else:
            op = KernelSystem(kernel, A, None, ridge, OperatorMode.ON_THE_FLY, plan.tile, v)
        self._operator = op
        return op

    def factor(self, A, kernel, plan, ridge):
        if plan.path == "eigh":
            return self._eigh(A, kernel, ridge)
        if getattr(plan, "storage", "memory") == "disk":
            return disk_factor(A, kernel, plan, ridge, self.options, verbose=self.verbose)
        fdt, n = np.dtype(plan.factor_dtype), A.shape[0]
        if self.precomputed:
            F = LowerPanels.from_dense(A, plan.tile, fdt)
        elif self._K64 is not None and self._K64.tile == plan.tile:
            F = LowerPanels(n, plan.tile, fdt)
            for p_src, p_dst in zip(self._K64.panels, F.panels):
                p_dst[...] = p_src
        else:
            F = LowerPanels(n, plan.tile, fdt)
            kernel.fill_panels(F, A, verbose=self.verbose, desc=f"kernel ({fdt.name})")
        if ridge:
            F.add_to_diagonal(ridge)
        return CholeskyFactor.from_panels(F, verbose=self.verbose)

    def _eigh(self, A, kernel, ridge):
        opts, n = self.options, A.shape[0]
        if self.precomputed:
            mdt = A.dtype
            in_place = self._operator is not None and self._operator.mode == OperatorMode.FACTOR
            work = A if in_place else np.array(A, dtype=np.float64)
        else:
            mdt = np.dtype(np.float64)
            work = kernel.matrix(A, dtype=np.float64)
        if ridge:
            work[np.diag_indices(n)] += ridge
        f = EighFactor.factor(work, matrix_dtype=mdt, rcond=opts.rcond, overwrite=True, check_symmetric=False)
        if self._operator is not None and self._operator.mode == OperatorMode.FACTOR:
            self._operator.K = lambda V, f=f, r=ridge: f.apply(V) - r * V
        return f
