"""The JAX backend of kernel_interpolate: kernel, factor and float64 residual on a JAX device (private).

Dtype policy on the device: the factor is float64 when the float64 kernel, its factor and
workspace fit in device memory (3 n^2 x 8 bytes), else float32 with the float64 kernel kept for the
residual (n^2 x (8 + 4) bytes), else the solve is refused with a remedy (backend="scipy", which
tiles and recomputes on the fly). Matmuls run at ``precision=HIGHEST`` (no silent TF32 on GPUs).
JAX's Cholesky returns NaN instead of raising (jax issues 775, 10825, 15769): the factor is checked
and the first failing pivot located exactly (:class:`kernelgen.factors.JaxCholeskyFactor`).

Device memory: JAX preallocates 75% of GPU memory by default; set
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` or ``XLA_PYTHON_CLIENT_MEM_FRACTION=.95`` for a 60k
float64 solve (see README).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._jax import default_device, enable_x64
from ..errors import MemoryBudgetError, UnsupportedOptionError
from ..factors import EighFactor, JaxCholeskyFactor
from ..numerics import MEMORY_FRACTION, available_memory
from ._refine import refine
from ._system import KernelSystem, check_interpolates, pinv_refine

log = logging.getLogger(__name__)

__all__ = ["solve_jax", "device_memory"]


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


def solve_jax(A, Y2, *, kernel, precomputed, solver, ridge, opts, verbose, trace=None):
    """The JAX path (module docstring); returns the raw outcome dict that kernel_interpolate packages.

    ``trace`` (a dict, optional) receives ``factor_dtype``, the dtype of the Cholesky factor attempted
    (kernel_interpolate's solver="auto" reads it when the factor fails).

    Raises
    ------
    UnsupportedOptionError
        A kernel without a JAX implementation (``Kernel.has_jax`` False), before any n x n work.
    MemoryBudgetError
        The device memory cannot hold the path (before allocating).
    """
    if not precomputed and not getattr(kernel, "has_jax", True):
        raise UnsupportedOptionError(
            f"backend='jax' needs a kernel with a JAX implementation; {kernel!r} has none: "
            f"{kernel._no_jax_message()} (backend='auto' picks 'scipy' for this kernel.)")
    trace = {} if trace is None else trace
    import jax
    import jax.numpy as jnp
    from jax import lax

    n = A.shape[0]
    avail = int(opts.memory_budget) if opts.memory_budget is not None else device_memory()
    n2 = n * n
    timings = {}
    with enable_x64():
        if solver == "min_norm":
            need = 3 * n2 * 8
            if need > avail:
                raise MemoryBudgetError(
                    f"JAX min_norm at n={n} needs {need / 1e9:.2f} GB of device memory, {avail / 1e9:.2f} GB "
                    "available. Remedy: solver='cholesky', or fewer samples.", need, avail)
            t0 = time.perf_counter()
            K = _build_kernel(A, kernel, precomputed, np.float64)
            timings["kernel"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            w, V = jnp.linalg.eigh(K + ridge * jnp.eye(n, dtype=K.dtype))
            mdt = A.dtype if precomputed else np.dtype(np.float64)
            factor = EighFactor(np.asarray(w), np.asarray(V), matrix_dtype=mdt, rcond=opts.rcond, backend="jax",
                                seconds=time.perf_counter() - t0)
            timings["factor"] = factor.seconds
            factor.require_psd()
            if precomputed:
                system = KernelSystem(kernel, None, np.asarray(A), ridge, "precomputed", opts.tile, verbose)
            else:
                system = KernelSystem(kernel, A, None, ridge, "on-the-fly", opts.tile, verbose)
            t0 = time.perf_counter()
            res = pinv_refine(factor, system, Y2, opts.tol)
            timings["refine"] = time.perf_counter() - t0
            check_interpolates(res, factor, opts)
            return {"result": res, "solver": "min_norm", "factor_dtype": "float64",
                    "residual_mode": "precomputed" if precomputed else "recomputed", "rank": factor.rank,
                    "rank_tol": factor.rank_tol, "condition_number": factor.condition_number, "timings": timings,
                    "factor": factor, "system": system}

        if opts.dtype is None:
            fdt = np.dtype(np.float64) if 3 * n2 * 8 <= avail else np.dtype(np.float32)
        else:
            fdt = np.dtype(opts.dtype)
        need = n2 * 8 + (2 * n2 * fdt.itemsize if fdt == np.float32 else 2 * n2 * 8)
        if need > avail:
            raise MemoryBudgetError(
                f"the JAX path at n={n} needs {need / 1e9:.2f} GB of device memory ({fdt.name} factor beside the "
                f"float64 kernel), {avail / 1e9:.2f} GB available. Remedy: backend='scipy' (tiled, recomputes the "
                "float64 kernel on the fly), options with dtype='float32', or fewer samples.", need, avail)
        t0 = time.perf_counter()
        K64 = _build_kernel(A, kernel, precomputed, np.float64)
        Kf = K64 if fdt == np.float64 else K64.astype(jnp.float32)
        if ridge:
            Kf = Kf + jnp.asarray(ridge, Kf.dtype) * jnp.eye(n, dtype=Kf.dtype)
        jax.block_until_ready(Kf)
        timings["kernel"] = time.perf_counter() - t0
        trace["factor_dtype"] = fdt.name
        factor = JaxCholeskyFactor.factor(Kf)
        timings["factor"] = factor.seconds
        del Kf

        def device_matvec(V):
            with enable_x64():
                Vj = jnp.asarray(V, dtype=jnp.float64)
                return np.asarray(jnp.matmul(K64, Vj, precision=lax.Precision.HIGHEST))

        system = KernelSystem(kernel, None, device_matvec, ridge, "device", opts.tile, verbose)
        t0 = time.perf_counter()
        res = refine(system.matvec, factor.solve, Y2, tol=opts.tol, max_iter=opts.max_iter, method=opts.refinement,
                     verbose=verbose)
        timings["refine"] = time.perf_counter() - t0
        factor.spectrum_estimate = res.spectrum_estimate
    return {"result": res, "solver": "cholesky", "factor_dtype": fdt.name,
            "residual_mode": "precomputed" if precomputed else "stored", "rank": n, "timings": timings,
            "factor": factor, "system": system}
