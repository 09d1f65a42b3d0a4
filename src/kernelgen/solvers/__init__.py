"""Exact minimum-norm solvers: linear (X w = y) and kernel (K alpha = Y).

Public API
----------
min_norm_solve       minimum-l2-norm (least-squares) solution of X w = y, ``pinv(X) @ y``
kernel_interpolate   exact kernel interpolation (Cholesky / rank-revealing eigh; SciPy or JAX)
plan_kernel_solve    the memory planner every kernel solve uses
tiled_cholesky       the bounded-call tiled Cholesky factor on lower row panels
"""

from ._interpolate import KernelInterpolant, kernel_interpolate
from ._min_norm import MinNormSolution, min_norm_solve
from ._planner import AUTO_FLOAT64_MAX_N, EIGH_MAX_N, MemoryPlan, available_memory, plan_kernel_solve
from ._refine import RefinementResult, refine
from ._tiled import (
    CALL_LIMITS,
    DEFAULT_TILE,
    CallLimits,
    LowerPanels,
    cholesky_solve_panels,
    exact_integer_form,
    fill_kernel_panels,
    kernel_matvec,
    symmetric_kernel_matvec,
    symmetric_matvec_panels,
    tiled_cholesky,
)

__all__ = [
    "AUTO_FLOAT64_MAX_N",
    "CALL_LIMITS",
    "CallLimits",
    "DEFAULT_TILE",
    "EIGH_MAX_N",
    "KernelInterpolant",
    "LowerPanels",
    "MemoryPlan",
    "MinNormSolution",
    "RefinementResult",
    "available_memory",
    "cholesky_solve_panels",
    "exact_integer_form",
    "fill_kernel_panels",
    "kernel_interpolate",
    "kernel_matvec",
    "min_norm_solve",
    "plan_kernel_solve",
    "refine",
    "symmetric_kernel_matvec",
    "symmetric_matvec_panels",
    "tiled_cholesky",
]
