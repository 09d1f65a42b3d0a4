"""Kernel functions, computed in bounded row blocks (NumPy) or on a JAX device.

Kernels
-------
``"gaussian"``   k(x, z) = exp(-||x - z||^2 / (2 s^2))
``"laplace"``    k(x, z) = exp(-||x - z|| / s)
``"linear"``     k(x, z) = <x, z>
``"polynomial"`` k(x, z) = (<x, z> / s^2 + coef0)^degree      (s = bandwidth, default 1)

Every matrix is built in row blocks whose GEMM never exceeds
:data:`kernelgen.kernels.MAX_GEMM_ELEMENTS` output elements: one giant ``X @ Z.T``
segfaults the OpenBLAS bundled with NumPy/SciPy at MNIST scale (FACTS.md: a
60,000 x 60,000 float32 product crashed; 4,000-row blocks ran).

Default bandwidth rule (:func:`default_bandwidth`): the median pairwise Euclidean
distance over a seeded sample of at most 1,000 rows, divided by sqrt(2) for the
Gaussian kernel (so a typical pair has k = exp(-1)) and undivided for the Laplace
kernel. On MNIST pixels scaled to [0, 1] this gives s ~ 7.2; the literature value
s = 5 (EigenPro convention, FACTS.md) must be passed explicitly.

References
----------
Zhang, Bengio, Hardt, Recht, Vinyals. Understanding deep learning requires rethinking
generalization. ICLR 2017, section 5.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ._validation import as_float_array
from .errors import InvalidInputError, ShapeMismatchError

__all__ = [
    "KERNELS",
    "MAX_GEMM_ELEMENTS",
    "default_bandwidth",
    "kernel_matrix",
    "kernel_matrix_jax",
    "resolve_kernel_params",
]

log = logging.getLogger(__name__)

KERNELS = ("gaussian", "laplace", "linear", "polynomial")

#: Largest GEMM output (rows x cols) issued by kernel code: 4,096 x 65,536. FACTS.md
#: measured 4,000 x 60,000 blocks running safely on the bundled OpenBLAS. (The solver's
#: own, smaller limits are kernelgen.solvers.CALL_LIMITS, run in tests/test_blas_limits.py.)
MAX_GEMM_ELEMENTS = 4096 * 65536

#: Default working memory for one block of temporaries, in bytes.
DEFAULT_BLOCK_BYTES = 256 * 2**20

KernelName = Literal["gaussian", "laplace", "linear", "polynomial"]


def resolve_kernel_params(kernel: str, bandwidth, X=None, *, degree=None, coef0=None) -> dict:
    """Validate the kernel name and fill in defaults; returns ``{"kernel", "bandwidth", ...}``."""
    if kernel not in KERNELS:
        raise InvalidInputError(f"unknown kernel {kernel!r}; choose one of {KERNELS} or 'precomputed'.")
    params: dict = {"kernel": kernel}
    if kernel in ("gaussian", "laplace"):
        if bandwidth is None:
            if X is None:
                raise InvalidInputError(f"the {kernel} kernel needs a bandwidth (or data to choose one).")
            bandwidth = default_bandwidth(X, kernel=kernel)
            log.info("no bandwidth given: default rule chose s = %.6g", bandwidth)
        bandwidth = float(bandwidth)
        if not np.isfinite(bandwidth) or bandwidth <= 0:
            raise InvalidInputError(f"bandwidth must be a positive finite number, got {bandwidth}.")
        params["bandwidth"] = bandwidth
    elif kernel == "polynomial":
        params["bandwidth"] = 1.0 if bandwidth is None else float(bandwidth)
        params["degree"] = 3 if degree is None else int(degree)
        params["coef0"] = 1.0 if coef0 is None else float(coef0)
        if params["degree"] < 1 or params["bandwidth"] <= 0:
            raise InvalidInputError("polynomial kernel needs degree >= 1 and bandwidth > 0.")
    return params


def default_bandwidth(X, *, kernel: str = "gaussian", max_samples: int = 1000, seed: int = 0) -> float:
    """Median-heuristic bandwidth (see module docstring for the rule).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    kernel : {"gaussian", "laplace"}
    max_samples : int
        Rows sampled (without replacement, with ``seed``) when X is larger.
    seed : int

    Returns
    -------
    float
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    if X.shape[0] < 2:
        raise InvalidInputError("default_bandwidth needs at least two rows; pass bandwidth explicitly.")
    if X.shape[0] > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_samples, replace=False))
        X = X[idx]
    sq = np.einsum("ij,ij->i", X, X)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (X @ X.T), 0.0)
    med = float(np.median(np.sqrt(d2[np.triu_indices(X.shape[0], 1)])))
    if med <= 0:
        raise InvalidInputError("all sampled rows coincide; pass bandwidth explicitly.")
    return med / np.sqrt(2.0) if kernel == "gaussian" else med


def _rows_per_block(n_cols: int, itemsize: int, block_bytes: int) -> int:
    rows = max(1, min(block_bytes // max(1, n_cols * itemsize * 2), MAX_GEMM_ELEMENTS // max(1, n_cols)))
    return int(min(rows, 4096))


def _apply_kernel_inplace(G, sq_rows, sq_cols, params, *, same_diag_offset=None, distances_ready=False):
    """Turn a block of inner products G (modified in place) into kernel values.

    With ``distances_ready`` G already holds squared distances (distance kernels only).
    """
    kernel = params["kernel"]
    if kernel == "linear":
        return G
    if kernel == "polynomial":
        G *= 1.0 / params["bandwidth"] ** 2
        G += params["coef0"]
        np.power(G, params["degree"], out=G)
        return G
    if not distances_ready:
        # squared distances: |x|^2 + |z|^2 - 2 <x, z>, clipped at 0 (rounding)
        G *= -2.0
        G += sq_rows[:, None]
        G += sq_cols[None, :]
    np.maximum(G, 0.0, out=G)
    if same_diag_offset is not None:
        # exact zeros on the diagonal of K(X, X): avoid rounding in |x|^2 + |x|^2 - 2|x|^2
        r = np.arange(G.shape[0])
        c = r + same_diag_offset
        ok = (c >= 0) & (c < G.shape[1])
        G[r[ok], c[ok]] = 0.0
    s = params["bandwidth"]
    if kernel == "gaussian":
        G *= -1.0 / (2.0 * s * s)
    else:  # laplace
        np.sqrt(G, out=G)
        G *= -1.0 / s
    np.exp(G, out=G)
    return G


def kernel_matrix(
    X,
    Z=None,
    *,
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    degree: int | None = None,
    coef0: float | None = None,
    dtype=np.float64,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Kernel matrix K[i, j] = k(X[i], Z[j]) computed in bounded row blocks.

    Parameters
    ----------
    X : array of shape (n, d)
    Z : array of shape (m, d), optional
        Defaults to X (then the diagonal of a distance kernel is exactly 1).
    kernel : {"gaussian", "laplace", "linear", "polynomial"}
    bandwidth : float, optional
        s in the formulas above; None applies :func:`default_bandwidth` to X.
    degree, coef0 : polynomial kernel parameters (defaults 3 and 1).
    dtype : float32 or float64
        Arithmetic and output dtype. Inputs are cast to it.
    block_bytes : int
        Working-memory budget for one block of temporaries.
    out : ndarray of shape (n, m), optional
        Written in place when given (C-contiguous, ``dtype``).

    Returns
    -------
    K : ndarray of shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> kernel_matrix(X, kernel="laplace", bandwidth=5.0).round(6).tolist()
    [[1.0, 0.367879], [0.367879, 1.0]]
    """
    dtype = np.dtype(dtype)
    if dtype.type not in (np.float32, np.float64):
        raise InvalidInputError(f"dtype must be float32 or float64, got {dtype}.")
    X = as_float_array(X, "X", ndim=(2,), dtype=dtype)
    same = Z is None
    Zc = X if same else as_float_array(Z, "Z", ndim=(2,), dtype=dtype)
    if Zc.shape[1] != X.shape[1]:
        raise ShapeMismatchError(f"X has {X.shape[1]} features but Z has {Zc.shape[1]}.")
    params = resolve_kernel_params(kernel, bandwidth, X, degree=degree, coef0=coef0)
    n, m = X.shape[0], Zc.shape[0]
    if out is None:
        out = np.empty((n, m), dtype=dtype)
    elif out.shape != (n, m) or out.dtype != dtype or not out.flags.c_contiguous:
        raise InvalidInputError(f"out must be C-contiguous {dtype} of shape {(n, m)}.")
    sqX = np.einsum("ij,ij->i", X, X)
    sqZ = sqX if same else np.einsum("ij,ij->i", Zc, Zc)
    rows = _rows_per_block(m, dtype.itemsize, block_bytes)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        blk = out[r0:r1]
        np.matmul(X[r0:r1], Zc.T, out=blk)
        _apply_kernel_inplace(blk, sqX[r0:r1], sqZ, params, same_diag_offset=r0 if same else None)
    return out


def kernel_matrix_jax(
    X,
    Z=None,
    *,
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    degree: int | None = None,
    coef0: float | None = None,
    dtype=np.float64,
    block_rows: int = 4096,
):
    """JAX version of :func:`kernel_matrix` (same formulas, same numbers).

    Runs on JAX's default device; matmuls use ``precision=HIGHEST`` (no silent TF32 on
    GPUs). float64 is enabled locally for the computation. Returns a ``jax.Array``.
    """
    import jax
    import jax.numpy as jnp

    from ._jax import enable_x64

    dtype = np.dtype(dtype)
    Xn = as_float_array(X, "X", ndim=(2,), dtype=dtype)
    Zn = Xn if Z is None else as_float_array(Z, "Z", ndim=(2,), dtype=dtype)
    if Zn.shape[1] != Xn.shape[1]:
        raise ShapeMismatchError(f"X has {Xn.shape[1]} features but Z has {Zn.shape[1]}.")
    params = resolve_kernel_params(kernel, bandwidth, Xn, degree=degree, coef0=coef0)
    with enable_x64():
        Xj = jnp.asarray(Xn, dtype=dtype)
        Zj = jnp.asarray(Zn, dtype=dtype)
        blocks = [
            _jax_block(Xj[r0:r0 + block_rows], Zj, params, r0 if Z is None else None)
            for r0 in range(0, Xn.shape[0], block_rows)
        ]
        K = jnp.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
        return jax.block_until_ready(K)


def _jax_block(Xb, Z, params, diag_offset):
    import jax.numpy as jnp
    from jax import lax

    G = jnp.matmul(Xb, Z.T, precision=lax.Precision.HIGHEST)
    kernel = params["kernel"]
    if kernel == "linear":
        return G
    if kernel == "polynomial":
        return (G / params["bandwidth"] ** 2 + params["coef0"]) ** params["degree"]
    d2 = jnp.sum(Xb * Xb, axis=1)[:, None] + jnp.sum(Z * Z, axis=1)[None, :] - 2.0 * G
    d2 = jnp.maximum(d2, 0.0)
    if diag_offset is not None:
        r = jnp.arange(Xb.shape[0])[:, None]
        c = jnp.arange(Z.shape[0])[None, :]
        d2 = jnp.where(c == r + diag_offset, 0.0, d2)
    s = params["bandwidth"]
    if kernel == "gaussian":
        return jnp.exp(-d2 / (2.0 * s * s))
    return jnp.exp(-jnp.sqrt(d2) / s)
