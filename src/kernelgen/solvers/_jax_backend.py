"""The JAX path of kernel_interpolate: kernel, factor and float64 residual on a JAX device.

Dtype policy on the device: the factor is float64 when the float64 kernel, its
factor and workspace fit in device memory (3 n^2 x 8 bytes), else float32 with the
float64 kernel kept for the residual (n^2 x (8 + 4) bytes), else the solve is refused
with a remedy (backend="scipy", which tiles and recomputes on the fly). Matmuls run at
``precision=HIGHEST`` (no silent TF32 on GPUs). JAX's Cholesky returns NaN instead of
raising on a non-positive-definite matrix (jax issues 775, 10825, 15769): the factor's
diagonal is checked and the first bad index is raised as NotPositiveDefiniteError.

Device memory: JAX preallocates 75% of GPU memory by default; set
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` or ``XLA_PYTHON_CLIENT_MEM_FRACTION=.95`` for a
60k float64 solve (see README).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._jax import default_device, enable_x64
from ..errors import InvalidInputError, MemoryBudgetError, NotPositiveDefiniteError
from ._planner import BASE_OVERHEAD, available_memory

log = logging.getLogger(__name__)

__all__ = ["solve_jax", "predict_jax", "device_memory"]


def device_memory(device=None) -> int:
    """Bytes usable on ``device`` (GPU: the allocator's limit; CPU: available host memory)."""
    device = device or default_device()
    try:
        stats = device.memory_stats()
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # CPU devices have no memory_stats
        pass
    return int(0.85 * available_memory()) - BASE_OVERHEAD


def _build_kernel(X, params, dtype):
    import jax.numpy as jnp

    from ..kernels import kernel_matrix_jax

    if params["kernel"] == "precomputed":
        return jnp.asarray(X, dtype=dtype)
    return kernel_matrix_jax(X, kernel=params["kernel"], bandwidth=params.get("bandwidth"),
                             degree=params.get("degree"), coef0=params.get("coef0"), dtype=dtype)


def solve_jax(A, Y2, *, precomputed, solver, params, ridge, tol, max_iter, refinement, verbose, dtype,
              rcond, keep_factor, memory_budget):
    """JAX implementation (see module docstring); returns a KernelInterpolant."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.scipy.linalg import cho_solve

    from ._interpolate import KernelInterpolant, _finish, _min_norm_from_eigh, _scaled_precond
    from ._refine import refine

    n = A.shape[0]
    dev = default_device()
    avail = int(memory_budget) if memory_budget is not None else device_memory(dev)
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
            K = _build_kernel(A, params, np.float64)
            timings["kernel"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            w, V = jnp.linalg.eigh(K + ridge * jnp.eye(n, dtype=K.dtype))
            w, V = np.asarray(w), np.asarray(V)
            timings["factor"] = time.perf_counter() - t0
            fit = _min_norm_from_eigh(w, V, Y2, K=np.asarray(K), params=params, ridge=ridge, rcond=rcond,
                                      backend="jax", tol=tol)
            fit.timings.update(timings)
            return fit

        if dtype is None:
            fdt = np.dtype(np.float64) if 3 * n2 * 8 <= avail else np.dtype(np.float32)
        else:
            fdt = np.dtype(dtype)
        need = n2 * 8 + (2 * n2 * fdt.itemsize if fdt == np.float32 else 2 * n2 * 8)
        if need > avail:
            raise MemoryBudgetError(
                f"the JAX path at n={n} needs {need / 1e9:.2f} GB of device memory ({fdt.name} factor beside the "
                f"float64 kernel), {avail / 1e9:.2f} GB available. Remedy: backend='scipy' (tiled, recomputes the "
                "float64 kernel on the fly), dtype='float32', or fewer samples.", need, avail)
        t0 = time.perf_counter()
        K64 = _build_kernel(A, params, np.float64)
        Kf = K64 if fdt == np.float64 else K64.astype(jnp.float32)
        if ridge:
            Kf = Kf + jnp.asarray(ridge, Kf.dtype) * jnp.eye(n, dtype=Kf.dtype)
        jax.block_until_ready(Kf)
        timings["kernel"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        L = jnp.linalg.cholesky(Kf)
        diag = np.asarray(jnp.diagonal(L))
        timings["factor"] = time.perf_counter() - t0
        bad = np.flatnonzero(~np.isfinite(diag) | (diag <= 0))
        if bad.size:
            idx = int(bad[0])
            raise NotPositiveDefiniteError(
                f"JAX Cholesky ({fdt.name}) failed at pivot {idx} of {n} (JAX returns NaN instead of raising): "
                "the kernel is not positive definite to working precision. Remedies: solver='min_norm', "
                "dtype='float64', or an explicit ridge.", index=idx)
        del Kf

        def matvec(V):
            Vj = jnp.asarray(V, dtype=jnp.float64)
            return np.asarray(jnp.matmul(K64, Vj, precision=lax.Precision.HIGHEST) + ridge * Vj)

        def lowp_solve(R):
            return np.asarray(cho_solve((L, True), jnp.asarray(R, dtype=L.dtype)))

        precond = _scaled_precond(lowp_solve)
        t0 = time.perf_counter()
        res = refine(matvec, precond, Y2, tol=tol, max_iter=max_iter, method=refinement)
        timings["refine"] = time.perf_counter() - t0
    aka, norm = _finish(res.alpha, res.residual, Y2, ridge)
    fit = KernelInterpolant(
        alpha=res.alpha, kernel_params=params, relative_residual=res.relative_residual, alpha_K_alpha=aka,
        rkhs_norm=norm, ridge=ridge, solver="cholesky", backend="jax", factor_dtype=fdt.name,
        residual_mode="precomputed" if precomputed else "stored", rank=n, history=res.history,
        timings=timings, n_matvecs=res.n_matvecs, residual_matrix=res.residual)
    if keep_factor:
        def solve_new(Y_new, tol_new):
            from ._interpolate import _prepare_targets

            Yn, sq = _prepare_targets(Y_new, n)
            with enable_x64():
                r = refine(matvec, precond, Yn, tol=tol_new or tol, max_iter=max_iter, method=refinement)
            a, nm = _finish(r.alpha, r.residual, Yn, ridge)
            return KernelInterpolant(
                alpha=r.alpha[:, 0] if sq else r.alpha, kernel_params=params, relative_residual=r.relative_residual,
                alpha_K_alpha=a, rkhs_norm=nm, ridge=ridge, solver="cholesky", backend="jax",
                factor_dtype=fdt.name, residual_mode=fit.residual_mode, rank=n, history=r.history,
                n_matvecs=r.n_matvecs, X_train=fit.X_train, _solve_fn=solve_new, _squeeze=sq,
                residual_matrix=r.residual)
        fit._solve_fn = solve_new
    return fit


def predict_jax(X_new, X_train, A, params, block_rows: int = 4096) -> np.ndarray:
    """k(X_new, X_train) @ A on the JAX device, float64, in row blocks."""
    import jax.numpy as jnp
    from jax import lax

    if params["kernel"] == "precomputed":  # pragma: no cover - handled by the caller
        raise InvalidInputError("predict_jax needs features, not a precomputed kernel")
    from ..kernels import _jax_block

    with enable_x64():
        Xt = jnp.asarray(X_train, jnp.float64)
        Aj = jnp.asarray(A, jnp.float64)
        out = [np.asarray(jnp.matmul(_jax_block(jnp.asarray(X_new[r0:r0 + block_rows], jnp.float64), Xt, params, None),
                                     Aj, precision=lax.Precision.HIGHEST))
               for r0 in range(0, X_new.shape[0], block_rows)]
    return np.concatenate(out, axis=0)
