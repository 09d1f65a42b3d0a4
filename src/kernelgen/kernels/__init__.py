"""Kernels as objects: named hyper-parameters, accurate blockwise entries, composition.

Families
--------
:class:`Gaussian`    exp(-||x - z||^2 / (2 s^2))              ``"gaussian"``
:class:`Laplace`     exp(-||x - z|| / s)                       ``"laplace"``
:class:`Linear`      <x, z>                                    ``"linear"``
:class:`Polynomial`  (<x, z> / s^2 + coef0)^degree              ``"polynomial"``
:class:`ReluNNGP`    NNGP of a deep fully connected ReLU net    ``"relu_nngp"``
:class:`ReluNTK`     NTK of a deep fully connected ReLU net     ``"relu_ntk"``
:class:`ArcCosine`   degree-1 arc-cosine kernel (random ReLU features' limit)  ``"arccos"``
:class:`Precomputed` the caller's matrix                       ``"precomputed"``
:class:`Stationary`  base of distance kernels f(||x - z||^2 / s^2) with a bandwidth s (docs/kernels.md)

Median heuristics: :func:`default_bandwidth` (what ``bandwidth=None`` uses) and
:func:`median_distance` (the seeded-sample median distance that the Gabor run's bandwidth multiplies).

Kernels compose: ``Gaussian(5.0) + 0.5 * Linear()``, ``Gaussian(5.0) * Polynomial(2)``.
A string names a family with its documented defaults (:func:`as_kernel`); parameters go through
the object (``Gaussian(bandwidth=5.0)``).

What a new kernel must provide (docs/kernels.md, with a worked Matérn-3/2 kernel): subclass
:class:`Stationary` (distance kernels with a bandwidth s) and implement the public hook
:meth:`Kernel.from_sqdist` on r2 = ||x - z||^2 / s^2, or subclass :class:`Kernel` and implement
:meth:`Kernel.from_gram` (inner products, squared norms, ``diag_offset`` marking the diagonal) and
:meth:`Kernel.diag`; set a ``name`` of its own (registered once: a clash is refused with
:class:`~kernelgen.errors.KernelIdentityError`) and validate hyper-parameters in ``_check``. The JAX
twins :meth:`Kernel.from_sqdist_jax` / :meth:`Kernel.from_gram_jax` are optional
(:attr:`Kernel.has_jax`; without them the JAX backend refuses the kernel with
:class:`~kernelgen.errors.UnsupportedOptionError`). Blocks, centring, power-of-two scaling at the float
range's edges, exact integer inner products, bounded calls, symmetric float64 products, the JAX path,
save/load (``to_dict`` records ``module:qualname``) and pickling come from the base.

Every matrix is built in blocks whose GEMMs stay within
:data:`kernelgen.numerics.CALL_LIMITS` (one giant ``X @ Z.T`` segfaults the OpenBLAS bundled with
NumPy/SciPy at MNIST scale; see docs/numerics.md, "BLAS and LAPACK call limits").

References
----------
Zhang, Bengio, Hardt, Recht, Vinyals. Understanding deep learning requires rethinking
generalization. ICLR 2017, section 5.
"""

from __future__ import annotations

import numpy as np

from .._validation import as_float_array
from ..errors import InvalidInputError, NonFiniteResultError
from ..numerics import check_allocation
from ._base import _REGISTRY, Kernel, Precomputed, Product, Scaled, Sum, class_identity
from ._bounded import BoundedProducts, bounded_summation_depth, entries_bounded_symmetric_apply
from ._entries import (
    CompositeEntries,
    EntryErrorModel,
    KernelEntries,
    entries_apply,
    entries_symmetric_apply,
    exact_integer_form,
    exponent_scale,
    fused_summation_depth,
)
from ._families import Gaussian, Laplace, Linear, Polynomial, Stationary, default_bandwidth, median_distance
from ._network import ArcCosine, ReluNNGP, ReluNTK

__all__ = [
    "ArcCosine",
    "BoundedProducts",
    "EntryErrorModel",
    "bounded_summation_depth",
    "entries_bounded_symmetric_apply",
    "exponent_scale",
    "KERNELS",
    "Gaussian",
    "Kernel",
    "KernelEntries",
    "CompositeEntries",
    "Laplace",
    "Linear",
    "Polynomial",
    "Precomputed",
    "Product",
    "ReluNNGP",
    "ReluNTK",
    "Scaled",
    "Stationary",
    "Sum",
    "as_kernel",
    "class_identity",
    "default_bandwidth",
    "entries_apply",
    "entries_symmetric_apply",
    "exact_integer_form",
    "fused_summation_depth",
    "kernel_matrix",
    "kernel_matrix_jax",
    "median_distance",
]

#: The kernel families a string may name (plus "precomputed").
KERNELS = ("gaussian", "laplace", "linear", "polynomial", "relu_nngp", "relu_ntk", "arccos")


#: Registered names that cannot be built from a name alone (they combine other kernels).
_COMPOSITE_NAMES = ("sum", "product", "scaled")


def as_kernel(kernel, **params) -> Kernel:
    """A Kernel object from a Kernel (returned as is) or a registered name (with ``params``).

    Parameters
    ----------
    kernel : Kernel or str
        One of :data:`KERNELS`, ``"precomputed"``, or the ``name`` of a user kernel class (each
        name denotes exactly one registered class).
    **params
        Hyper-parameters for the family's constructor; only with a name.

    Raises
    ------
    InvalidInputError
        Unknown name, unknown parameter, or parameters given with a Kernel object.
    """
    if isinstance(kernel, Kernel):
        if params:
            raise InvalidInputError(f"pass hyper-parameters to the kernel object itself, not beside it: "
                                    f"{type(kernel).__name__}({', '.join(f'{k}=...' for k in params)}).")
        return kernel
    if isinstance(kernel, str):
        cls = _REGISTRY.get(kernel) if kernel not in _COMPOSITE_NAMES else None
        if cls is None:
            user = sorted(set(_REGISTRY) - set(KERNELS) - set(_COMPOSITE_NAMES) - {"precomputed"})
            raise InvalidInputError(f"unknown kernel {kernel!r}; choose one of {KERNELS + ('precomputed',)}"
                                    f"{' or ' + str(tuple(user)) if user else ''}, or pass a kernelgen.kernels.Kernel "
                                    "object.")
        try:
            return cls(**params)
        except TypeError as exc:
            raise InvalidInputError(f"{cls.__name__} does not take {sorted(params)}: {exc}") from exc
    raise InvalidInputError(f"kernel must be a Kernel object or a name, got {type(kernel).__name__}.")


def kernel_matrix(X, Z=None, *, kernel="gaussian", dtype=np.float64, out: np.ndarray | None = None,
                  memory_budget: int | None = None, **kernel_params) -> np.ndarray:
    """Kernel matrix K[i, j] = k(X[i], Z[j]) computed in bounded blocks, accurately.

    Parameters
    ----------
    X : array of shape (n, d)
    Z : array of shape (m, d), optional
        Defaults to X (then the diagonal of a distance kernel is exactly k(0)).
    kernel : Kernel or str
        A kernel object, or a family name whose hyper-parameters are given as ``**kernel_params``
        (``kernel_matrix(X, kernel="gaussian", bandwidth=5.0)`` is
        ``kernel_matrix(X, kernel=Gaussian(bandwidth=5.0))``). Data-dependent defaults
        (``bandwidth=None``) are filled from X.
    dtype : float32 or float64
        Arithmetic and output dtype.
    out : ndarray of shape (n, m), optional
        Written in place when given (C-contiguous, ``dtype``).
    memory_budget : int, optional
        Bytes the matrix may take (default: 85% of the memory available now); a larger one is
        refused before anything is allocated.

    Returns
    -------
    K : ndarray of shape (n, m)

    Raises
    ------
    InvalidInputError, NonFiniteInputError, ShapeMismatchError
    MemoryBudgetError
        The n x m matrix would not fit (bytes needed and available in the message).
    NonFiniteResultError
        An entry overflows the dtype (e.g. a linear kernel on data of size 1e300).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> kernel_matrix(X, kernel=Laplace(bandwidth=5.0)).round(6).tolist()
    [[1.0, 0.367879], [0.367879, 1.0]]
    """
    k = as_kernel(kernel, **kernel_params)
    if isinstance(k, Precomputed):
        raise InvalidInputError("kernel_matrix needs a kernel to compute, not 'precomputed'.")
    X = as_float_array(X, "X", ndim=(2,))
    if out is None:
        m = X.shape[0] if Z is None else np.shape(Z)[0]
        check_allocation(X.shape[0] * m * np.dtype(dtype).itemsize, what=f"a {X.shape[0]} x {m} {np.dtype(dtype).name} "
                         "kernel matrix", memory_budget=memory_budget,
                         remedy="kernel.apply / kernel.symmetric_apply (blockwise products, no n x n matrix), "
                                "kernelgen.kernel_interpolate (tiled, planned), or fewer rows")
    K = k.resolve(X).matrix(X, Z, dtype=dtype, out=out)
    if not np.all(np.isfinite(K)):  # the dense matrix was asked for: one check over it is part of its price
        raise NonFiniteResultError(
            f"the {K.dtype.name} kernel matrix of {k!r} on these data is not finite (entries overflow the dtype). "
            "Remedy: rescale the data or the kernel, or use float64.")
    return K


def kernel_matrix_jax(X, Z=None, *, kernel="gaussian", dtype=np.float64, block_rows: int = 4096,
                      **kernel_params):
    """JAX version of :func:`kernel_matrix` (same formulas and centring); returns a ``jax.Array``.

    Raises
    ------
    UnsupportedOptionError
        The kernel has no JAX implementation (:attr:`Kernel.has_jax` is False), before any work.
    """
    k = as_kernel(kernel, **kernel_params)
    X = as_float_array(X, "X", ndim=(2,))
    return k.resolve(X).matrix_jax(X, Z, dtype=dtype, block_rows=block_rows)

