"""The JAX backend of kernel_interpolate: kernel, factor and float64 residual on a JAX device (private).

Implements :class:`~kernelgen.solvers._backend.Backend`. Dtype policy on the device (the one rule,
:func:`kernelgen.options.decide_factor_dtype`, with this backend's *device rule*): the factor is
float64 when n <= ``float64_max_n`` or when the float64 kernel, its factor and workspace fit in
device memory (3 n^2 x 8 bytes), else float32 with the float64 kernel kept for the residual
(n^2 x (8 + 4) bytes), else the solve is refused with a remedy (backend="scipy", which tiles and
recomputes on the fly). A failed float32 route is redone in float64 by the orchestration when the
plan allows it. Matmuls run at ``precision=HIGHEST`` (no silent TF32 on GPUs).
JAX's Cholesky returns NaN instead of raising (jax issues 775, 10825, 15769): the factor is checked
and the first failing pivot located exactly (:class:`kernelgen.factors.JaxCholeskyFactor`).

Device memory: JAX preallocates 75% of GPU memory by default, and with preallocation off the
allocator keeps the same 75% limit; for a 60k solve set both ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
and ``XLA_CLIENT_MEM_FRACTION=.95`` (named ``XLA_PYTHON_CLIENT_MEM_FRACTION`` before JAX deprecated
it; JAX documentation, "GPU memory allocation"), as ``benchmarks/gpu_check.py`` does.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._jax import default_device, enable_x64
from ..errors import MemoryBudgetError, UnsupportedOptionError
from ..factors import EighFactor, JaxCholeskyFactor
from ..numerics import MEMORY_FRACTION, available_memory
from ..options import decide_factor_dtype
from ._backend import OperatorMode
from ._planner import Plan, expected_passes
from ._system import KernelSystem

log = logging.getLogger(__name__)

__all__ = ["JaxBackend", "device_memory"]


def device_memory(device=None) -> int:
    """Bytes usable on ``device`` (GPU: the allocator's limit; CPU: :data:`~kernelgen.numerics.MEMORY_FRACTION`
    of the host memory available now, which already excludes the running interpreter)."""
    device = device or default_device()
    try:
        stats = device.memory_stats()
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # CPU devices have no memory_stats
        pass
    return int(MEMORY_FRACTION * available_memory())


def _build_kernel(A, kernel, precomputed, dtype):
    import jax.numpy as jnp

    if precomputed:
        with enable_x64():
            return jnp.asarray(A, dtype=dtype)
    return kernel.matrix_jax(A, dtype=dtype)


class JaxBackend:
    """The device backend (module docstring); one instance per solve (it keeps the float64 kernel on the device)."""

    name = "jax"
    factor_kinds = ("cholesky", "eigh")
    bound_capable = False  # matrix_jax's entries have no proven error bound

    def __init__(self, *, precomputed: bool, options, verbose: bool = False):
        self.precomputed, self.options, self.verbose = precomputed, options, verbose
        self._K64 = None

    def refuse(self, problem):
        """What this backend cannot honour, refused before any n x n work: a kernel without a JAX implementation,
        ``SolveOptions(store_kernel=False)`` (the residual uses the float64 K kept on the device)."""
        if not self.precomputed and not getattr(problem.kernel, "has_jax", True):
            raise UnsupportedOptionError(
                f"backend='jax' needs a kernel with a JAX implementation; {problem.kernel!r} has none: "
                f"{problem.kernel._no_jax_message()} (backend='auto' picks 'scipy' for this kernel.)")
        if problem.options.store_kernel is False:
            raise UnsupportedOptionError(
                "SolveOptions(store_kernel=False) cannot hold on backend='jax': its float64 residual uses the float64 "
                "K kept on the device. Remedy: backend='scipy' (recomputes the float64 kernel on the fly), or "
                "store_kernel=None.")

    def plan(self, n, d, k, options, *, solver="cholesky"):
        avail = int(options.memory_budget) if options.memory_budget is not None else device_memory()
        n2 = n * n
        if solver == "min_norm":
            need = 3 * n2 * 8
            if need > avail:
                raise MemoryBudgetError(
                    f"JAX min_norm at n={n} needs {need / 1e9:.2f} GB of device memory, {avail / 1e9:.2f} GB "
                    "available. Remedy: solver='cholesky', or fewer samples.", need, avail)
            return Plan(n, d, k, "eigh", np.dtype(np.float64), "eigh", n, need, avail,
                        {"eigh (K, vectors, workspace)": need}, backend=self.name, places={"eigh": "device"},
                        passes_expected=2)
        fdt = decide_factor_dtype(options, n, float64_fits=3 * n2 * 8 <= avail)
        parts = {"kernel float64": n2 * 8, "factor and workspace": 2 * n2 * fdt.itemsize}
        need = sum(parts.values())
        if need > avail:
            raise MemoryBudgetError(
                f"the JAX path at n={n} needs {need / 1e9:.2f} GB of device memory ({fdt.name} factor beside the "
                f"float64 kernel), {avail / 1e9:.2f} GB available. Remedy: backend='scipy' (tiled, recomputes the "
                "float64 kernel on the fly), options with dtype='float32', or fewer samples.", need, avail)
        residual = OperatorMode.PRECOMPUTED if self.precomputed else OperatorMode.DEVICE
        return Plan(n, d, k, "cholesky", fdt, str(residual), n, need, avail, parts, backend=self.name,
                    places={"kernel float64": "device", "factor": "device"}, passes_expected=expected_passes(fdt))

    def operator(self, A, kernel, plan, ridge):
        opts, v = self.options, self.verbose
        if plan.path == "eigh":
            if self.precomputed:
                return KernelSystem(kernel, None, np.asarray(A), ridge, OperatorMode.PRECOMPUTED, opts.tile, v)
            return KernelSystem(kernel, A, None, ridge, OperatorMode.RECOMPUTED, opts.tile, v)
        import jax.numpy as jnp
        from jax import lax

        with enable_x64():
            self._K64 = K64 = _build_kernel(A, kernel, self.precomputed, np.float64)

        def device_matvec(V):
            with enable_x64():
                Vj = jnp.asarray(V, dtype=jnp.float64)
                return np.asarray(jnp.matmul(K64, Vj, precision=lax.Precision.HIGHEST))

        mode = OperatorMode.PRECOMPUTED if self.precomputed else OperatorMode.DEVICE
        return KernelSystem(kernel, None, device_matvec, ridge, mode, opts.tile, v)

    def factor(self, A, kernel, plan, ridge):
        import jax
        import jax.numpy as jnp

        n = A.shape[0]
        with enable_x64():
            if plan.path == "eigh":
                K = _build_kernel(A, kernel, self.precomputed, np.float64)
                t0 = time.perf_counter()
                w, V = jnp.linalg.eigh(K + ridge * jnp.eye(n, dtype=K.dtype))
                mdt = A.dtype if self.precomputed else np.dtype(np.float64)
                return EighFactor.factor(eigenpairs=(w, V), matrix_dtype=mdt, rcond=self.options.rcond, backend="jax",
                                         seconds=time.perf_counter() - t0)
            fdt = np.dtype(plan.factor_dtype)
            Kf = self._K64 if fdt == np.float64 else self._K64.astype(jnp.float32)
            if ridge:
                Kf = Kf + jnp.asarray(ridge, Kf.dtype) * jnp.eye(n, dtype=Kf.dtype)
            jax.block_until_ready(Kf)
            return JaxCholeskyFactor.factor(Kf)
