"""JAX helpers: local float64, device discovery (private module).

kernelgen never flips ``jax_enable_x64`` globally. Code that needs float64 in JAX
runs inside :func:`enable_x64`, a context manager that restores the previous state.
"""

from __future__ import annotations

import contextlib
import functools

__all__ = ["enable_x64", "accelerator_available", "default_device"]


@contextlib.contextmanager
def enable_x64():
    """Context manager: JAX float64 enabled inside, previous setting restored after."""
    import jax

    if hasattr(jax, "enable_x64"):  # jax >= 0.6: a config context manager
        with jax.enable_x64(True):
            yield
    else:  # pragma: no cover - older JAX
        from jax.experimental import enable_x64 as _ctx

        with _ctx():
            yield


@functools.lru_cache(maxsize=1)
def accelerator_available() -> bool:
    """True when JAX sees a GPU or TPU."""
    try:
        import jax

        return any(d.platform in ("gpu", "cuda", "rocm", "tpu") for d in jax.devices())
    except Exception:  # pragma: no cover - broken JAX install
        return False


def default_device():
    """The first JAX device (an accelerator if one is visible)."""
    import jax

    return jax.devices()[0]
