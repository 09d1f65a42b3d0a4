"""Memory planner: every n x n allocation in kernelgen is decided here (private).

The planner turns (n, d, targets, dtypes, memory available) into a path and block
sizes, or refuses *before* anything large is allocated, with the bytes needed, the
bytes available and a remedy.

Dtype policy (the "mixed" path is the default above ``AUTO_FLOAT64_MAX_N``):
- the factor is float32 ("mixed") or float64 ("float64");
- the residual Y - K alpha is *always* computed in float64 with the float64 kernel,
  either stored as one lower triangle (when it fits beside the factor) or recomputed
  blockwise on the fly (never a dense float64 n x n);
- iteration (preconditioned CG on the float64 system, the factor as preconditioner)
  continues until the float64 relative residual reaches ``tol`` (default 1e-10).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, MemoryBudgetError
from ..factors import EIGH_MAX_N, LowerPanels
from ..numerics import CALL_LIMITS, DEFAULT_TILE, available_memory

log = logging.getLogger(__name__)

__all__ = ["MemoryPlan", "plan_kernel_solve", "available_memory", "AUTO_FLOAT64_MAX_N", "EIGH_MAX_N"]

#: dtype=None factors in float64 up to this n (cheap there), in float32 above
#: (the default of :attr:`kernelgen.SolveOptions.float64_max_n`).
AUTO_FLOAT64_MAX_N = 4096
#: Fraction of the available memory the planner lets one solve use by default.
DEFAULT_MEMORY_FRACTION = 0.85
#: Fixed allowance for the interpreter, libraries and small temporaries.
BASE_OVERHEAD = 600 * 2**20


def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB"


@dataclass(frozen=True)
class MemoryPlan:
    """What the solver will allocate and how.

    Attributes
    ----------
    path : str
        ``"cholesky"`` or ``"eigh"``.
    factor_dtype : numpy dtype
        dtype of the Cholesky factor (float32 = mixed precision) or of the eigendecomposition.
    residual : str
        ``"stored"`` (float64 kernel kept as one lower triangle), ``"on-the-fly"``
        (float64 kernel blocks recomputed per product) or ``"precomputed"`` (the caller's K).
    tile : int
    bytes_needed, bytes_available : int
    breakdown : dict[str, int]
    """

    n: int
    d: int
    n_targets: int
    path: str
    factor_dtype: np.dtype
    residual: str
    tile: int
    bytes_needed: int
    bytes_available: int
    breakdown: dict

    def describe(self) -> str:
        parts = ", ".join(f"{k} {_gb(v)}" for k, v in self.breakdown.items())
        return (f"{self.path} n={self.n}: factor {np.dtype(self.factor_dtype).name}, float64 residual "
                f"{self.residual}, tile {self.tile}; needs {_gb(self.bytes_needed)} of "
                f"{_gb(self.bytes_available)} ({parts})")


def plan_kernel_solve(
    n: int,
    d: int,
    n_targets: int,
    *,
    solver: str = "cholesky",
    dtype=None,
    precomputed: bool = False,
    memory_budget: int | None = None,
    tile: int = DEFAULT_TILE,
    store_kernel: bool | None = None,
    float64_max_n: int = AUTO_FLOAT64_MAX_N,
) -> MemoryPlan:
    """Choose the path for solving a kernel system of order n, or refuse.

    Parameters
    ----------
    n, d, n_targets : int
        Samples, features (ignored when ``precomputed``), right-hand sides.
    solver : {"cholesky", "min_norm"}
    dtype : None, "float32", "float64"
        Factor dtype; None applies the dtype policy (module docstring).
    precomputed : bool
        The caller supplies K (already in memory; not counted).
    memory_budget : int, optional
        Bytes this solve may use; default 85% of :func:`available_memory`.
    store_kernel : bool, optional
        Force (True) or forbid (False) keeping the float64 kernel triangle.

    Raises
    ------
    MemoryBudgetError
        With bytes needed, bytes available and a remedy.
    """
    if n < 1:
        raise InvalidInputError("n must be positive")
    budget = int(memory_budget if memory_budget is not None
                 else DEFAULT_MEMORY_FRACTION * available_memory())
    k = max(1, int(n_targets))
    vec = 8 * n * k * 8  # alpha, residual, CG directions and products, float64
    x_bytes = 0 if precomputed else n * d * (8 + 4)  # float64 X and a float32 copy
    breakdown = {"overhead": BASE_OVERHEAD, "vectors": vec}
    if x_bytes:
        breakdown["X"] = x_bytes

    if solver == "min_norm":
        if n > EIGH_MAX_N:
            raise MemoryBudgetError(
                f"solver='min_norm' needs a dense float64 eigendecomposition of order {n}, above the "
                f"largest single LAPACK call kernelgen issues ({EIGH_MAX_N}). Remedy: solver='cholesky' "
                "(exact for positive-definite kernels), or a subset of at most "
                f"{EIGH_MAX_N} samples.", 0, budget)
        breakdown["eigh (K copy, vectors, workspace)"] = 3 * n * n * 8
        if not precomputed:
            breakdown["K float64"] = n * n * 8
        need = sum(breakdown.values())
        if need > budget:
            raise MemoryBudgetError(
                f"solver='min_norm' at n={n} needs {_gb(need)} but {_gb(budget)} is available. "
                "Remedy: solver='cholesky' (a float32 triangle, n^2*2 bytes), fewer samples, or more memory.",
                need, budget)
        return MemoryPlan(n, d, k, "eigh", np.dtype(np.float64), "eigh", n, need, budget, breakdown)

    if solver != "cholesky":
        raise InvalidInputError(f"unknown solver {solver!r}")
    if dtype is None:
        fdt = np.dtype(np.float64) if n <= float64_max_n else np.dtype(np.float32)
    else:
        fdt = np.dtype(dtype)
        if fdt.type not in (np.float32, np.float64):
            raise InvalidInputError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    if int(tile) < 1:
        raise InvalidInputError(f"tile must be a positive integer, got {tile!r}")
    tile = int(min(tile, CALL_LIMITS[fdt].potrf_n, max(n, 1)))
    breakdown["factor"] = LowerPanels.nbytes_for(n, tile, fdt)
    breakdown["blocks"] = n * tile * fdt.itemsize + 2 * tile * CALL_LIMITS[np.dtype(np.float64)].gemm_cols * 8
    need_min = sum(breakdown.values())
    tri64 = LowerPanels.nbytes_for(n, tile, np.float64)
    if precomputed:
        residual = "precomputed"
    elif store_kernel is True or (store_kernel is None and need_min + tri64 <= budget):
        residual = "stored"
        breakdown["kernel float64"] = tri64
    else:
        residual = "on-the-fly"
    need = sum(breakdown.values())
    if need > budget:
        alt = ""
        if fdt == np.float64:
            alt = " dtype='float32' (mixed precision, still exact in float64) halves the factor;"
        raise MemoryBudgetError(
            f"an exact kernel solve at n={n} needs {_gb(need)} ({', '.join(f'{a} {_gb(b)}' for a, b in breakdown.items())}) "
            f"but {_gb(budget)} is available. Remedy:{alt} use fewer training samples, or a machine with more memory.",
            need, budget)
    plan = MemoryPlan(n, d, k, "cholesky", fdt, residual, tile, need, budget, breakdown)
    log.info("memory plan: %s", plan.describe())
    return plan
