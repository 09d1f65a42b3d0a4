"""Exact minimum-norm solvers: linear (X w = y) and kernel (K alpha = Y).

Public API
----------
min_norm_solve       minimum-l2-norm (least-squares) solution of X w = y, ``pinv(X) @ y``
kernel_interpolate   exact kernel interpolation (Cholesky / rank-revealing eigh; SciPy or JAX)
KernelInterpolant    the fitted, immutable, saveable result (``load_interpolant`` reads it back)
plan_kernel_solve    the memory planner every kernel solve uses (``Plan``; ``MemoryPlan`` is its former name)
refine               the float64 iteration preconditioned by a factor (``RefinementResult``)
Certificate          what certifies a fit's alpha and what ran (``fit.certificate``)
Backend              the protocol a solve backend implements (plan, operator, factor); with
                     ``KernelOperator``, ``OperatorMode``, ``Plan`` and ``Problem`` the seams of the one
                     orchestration (``orchestrate``) that every backend shares

Tiled storage and factors live in :mod:`kernelgen.factors`; kernels in :mod:`kernelgen.kernels`;
numerical knobs in :class:`kernelgen.SolveOptions`.
"""

from ._backend import Backend, KernelOperator, OperatorMode, Problem
from ._certificate import Certificate
from ._interpolate import kernel_interpolate, make_backend
from ._jax_backend import JaxBackend
from ._min_norm import MinNormSolution, min_norm_solve
from ._orchestrate import Solution, orchestrate
from ._mpi_backend import MPIPlan, MpiBackend
from ._planner import AUTO_FLOAT64_MAX_N, MemoryPlan, Plan, available_memory, plan_kernel_solve
from ._refine import RefinementResult, refine
from ._result import FORMAT_VERSION, KernelInterpolant, data_fingerprint
from ._scipy_backend import ScipyBackend

load_interpolant = KernelInterpolant.load

__all__ = [
    "AUTO_FLOAT64_MAX_N",
    "Backend",
    "Certificate",
    "FORMAT_VERSION",
    "JaxBackend",
    "KernelInterpolant",
    "KernelOperator",
    "MPIPlan",
    "MemoryPlan",
    "MinNormSolution",
    "MpiBackend",
    "OperatorMode",
    "Plan",
    "Problem",
    "RefinementResult",
    "ScipyBackend",
    "Solution",
    "available_memory",
    "data_fingerprint",
    "kernel_interpolate",
    "load_interpolant",
    "make_backend",
    "min_norm_solve",
    "orchestrate",
    "plan_kernel_solve",
    "refine",
]
