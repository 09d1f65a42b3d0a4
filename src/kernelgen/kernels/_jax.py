"""JAX versions of the kernel blocks (same formulas and centring as the NumPy entries).

Runs on JAX's default device inside :func:`kernelgen._jax.enable_x64`; matmuls at
``precision=HIGHEST`` (no silent TF32 on GPUs).
"""

from __future__ import annotations

import numpy as np

from .._jax import enable_x64
from ..errors import UnsupportedOptionError
from ._entries import _CLOSE, _power_of_two_scale, _safe_mean, _validate_pair

__all__ = ["apply_jax", "block_jax", "matrix_jax", "require_jax"]

#: Registered names of the kernels whose entries combine their components' (``Sum``, ``Product``).
_COMBINED = ("sum", "product")


def block_jax(kernel, Ab, B, diag_offset, log2_scale: int = 0):
    """k(Ab, B) for JAX arrays already centred and scaled by 2^-log2_scale (stationary kernels) by the caller.

    Composites are told apart by their registered ``name`` (``"scaled"``, ``"sum"``, ``"product"``), not
    by class: :mod:`kernelgen.kernels._base` imports this module, so this one does not import it.
    """
    import jax.numpy as jnp
    from jax import lax

    if kernel.name == "scaled":
        return kernel.scale * block_jax(kernel.kernel, Ab, B, diag_offset, log2_scale)
    if kernel.name in _COMBINED:
        out = block_jax(kernel.kernels[0], Ab, B, diag_offset, log2_scale)
        for k in kernel.kernels[1:]:
            out = kernel._combine_jax(out, block_jax(k, Ab, B, diag_offset, log2_scale))
        return out
    G = jnp.matmul(Ab, B.T, precision=lax.Precision.HIGHEST)
    sq_r = jnp.sum(Ab * Ab, axis=1)
    sq_c = jnp.sum(B * B, axis=1)
    mask = None
    if diag_offset is not None:
        r = jnp.arange(Ab.shape[0])[:, None]
        c = jnp.arange(B.shape[0])[None, :]
        mask = c == r + diag_offset
    if kernel.stationary:
        d2 = jnp.maximum(sq_r[:, None] + sq_c[None, :] - 2.0 * G, 0.0)
        d2 = _near_duplicates_by_differences(d2, Ab, B, sq_r, sq_c)
        if mask is not None:
            d2 = jnp.where(mask, 0.0, d2)
        return kernel._entries_from_sqdist_jax(d2, log2_scale)
    return kernel.from_gram_jax(G, sq_r, sq_c, mask, Ab.shape[1])


def _near_duplicates_by_differences(d2, Ab, B, sq_r, sq_c):
    """Recompute by differences the squared distances that the expansion cannot resolve (as the NumPy entries do).

    The expansion's error is ~u (|x - c|^2 + |z - c|^2); entries below ``_CLOSE`` times the block's scale are
    gathered (their count is data-dependent, so this runs eagerly) and recomputed as sum (x - z)^2 on the device.
    """
    import jax.numpy as jnp

    thr = _CLOSE * (jnp.max(sq_r) + jnp.max(sq_c))
    close = d2 < thr
    count = int(jnp.sum(close))
    if count == 0:
        return d2
    rr, cc = jnp.nonzero(close, size=count)
    diff = Ab[rr] - B[cc]
    return d2.at[rr, cc].set(jnp.sum(diff * diff, axis=1))


def _centred(kernel, A, B, dtype=np.float64):
    """Centre (and power-of-two scale) both operands at A's mean when every component is stationary."""
    def all_stationary(k):
        if k.name == "scaled":
            return all_stationary(k.kernel)
        if k.name in _COMBINED:
            return all(all_stationary(x) for x in k.kernels)
        return k.stationary

    if all_stationary(kernel):
        c = _safe_mean(np.asarray(A, dtype=np.float64))
        Ac, Bc = np.asarray(A, np.float64) - c, np.asarray(B, np.float64) - c
        k = _power_of_two_scale(Ac, Bc, dtype)
        return (np.ldexp(Ac, -k), np.ldexp(Bc, -k), k) if k else (Ac, Bc, 0)
    return A, B, 0


def require_jax(kernel) -> None:
    """Raise UnsupportedOptionError (kernel class, remedy) unless the kernel has a JAX implementation (``has_jax``)."""
    if not getattr(kernel, "has_jax", True):
        raise UnsupportedOptionError(kernel._no_jax_message())


def matrix_jax(kernel, A, B=None, *, dtype=np.float64, block_rows=4096):
    """k(A, B) as a jax.Array in ``dtype``.

    Raises
    ------
    UnsupportedOptionError
        The kernel (or a part of a composite) has no JAX implementation; raised before any work.
    """
    require_jax(kernel)
    import jax
    import jax.numpy as jnp

    A, Bc, same, dtype = _validate_pair(A, B, dtype)
    Ac, Bc, k = _centred(kernel, A, Bc, dtype)
    with enable_x64():
        Aj = jnp.asarray(Ac, dtype=dtype)
        Bj = Aj if same else jnp.asarray(Bc, dtype=dtype)
        blocks = [block_jax(kernel, Aj[r0:r0 + block_rows], Bj, r0 if same else None, k)
                  for r0 in range(0, A.shape[0], block_rows)]
        K = jnp.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
        return jax.block_until_ready(K)


def apply_jax(kernel, A, B, V, *, block_rows=4096) -> np.ndarray:
    """k(A, B) @ V on the JAX device in float64, in row blocks; returns NumPy (UnsupportedOptionError as matrix_jax)."""
    require_jax(kernel)
    import jax.numpy as jnp
    from jax import lax

    A, Bc, same, _ = _validate_pair(A, B, np.float64)
    Ac, Bc, k = _centred(kernel, A, Bc)
    with enable_x64():
        Bj = jnp.asarray(Bc, jnp.float64)
        Vj = jnp.asarray(V, jnp.float64)
        out = [np.asarray(jnp.matmul(block_jax(kernel, jnp.asarray(Ac[r0:r0 + block_rows], jnp.float64), Bj,
                                               r0 if same else None, k), Vj, precision=lax.Precision.HIGHEST))
               for r0 in range(0, A.shape[0], block_rows)]
    return np.concatenate(out, axis=0)
