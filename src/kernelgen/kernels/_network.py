"""Infinitely wide fully connected ReLU networks: the NNGP (arc-cosine) kernel and the NTK.

The recursions (Σ^(h), Σ̇^(h), Θ^(h)) and the convention -- NTK parameterisation, weight
variance σ_w², bias variance σ_b², ``depth`` hidden layers -- are written out in
:mod:`kernelgen.kernels._relu`, which computes them from inner products and squared norms.
Both kernels are functions of <x, z>, |x|² and |z|² only, so they plug into the same accurate
blockwise entries, tiled factor and float64 iteration as every other kernel.

References
----------
Cho & Saul, "Kernel methods for deep learning", NeurIPS 2009 (arc-cosine kernels; :class:`ArcCosine`
is their degree-1 kernel, eq. 6-7 with J_1, the limit of random ReLU features).
Lee et al., "Deep neural networks as Gaussian processes", ICLR 2018 (NNGP).
Jacot, Gabriel & Hongler, "Neural tangent kernel", NeurIPS 2018.
Arora et al., "On exact computation with an infinitely wide neural net", NeurIPS 2019, §3.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._validation import as_float_array
from ..errors import InvalidInputError
from ._base import Kernel
from ._relu import relu_kernel_diag, relu_kernel_from_gram, relu_kernel_from_gram_jax

__all__ = ["ArcCosine", "ReluNNGP", "ReluNTK"]


class _ReluNetwork(Kernel):
    which = ""

    def __init__(self, depth=2, weight_variance=2.0, bias_variance=0.0):
        self.depth = depth
        self.weight_variance = weight_variance
        self.bias_variance = bias_variance
        self._check()

    def _check(self):
        d = self.depth
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise InvalidInputError(f"{type(self).__name__}.depth must be an integer >= 1 (hidden layers), got {d!r}.")
        for name, lo_ok in (("weight_variance", False), ("bias_variance", True)):
            v = getattr(self, name)
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and (v >= 0 if lo_ok else v > 0)
            if not ok:
                raise InvalidInputError(f"{type(self).__name__}.{name} must be a finite number "
                                        f"{'>= 0' if lo_ok else '> 0'}, got {v!r}.")

    def _kw(self, n_features):
        return dict(n_features=int(n_features), depth=int(self.depth), weight_variance=float(self.weight_variance),
                    bias_variance=float(self.bias_variance), which=self.which)

    def from_gram(self, G, sq_rows, sq_cols, diag_offset, n_features):
        return relu_kernel_from_gram(G, sq_rows, sq_cols, diag_offset=diag_offset, **self._kw(n_features))

    def from_gram_jax(self, G, sq_rows, sq_cols, diag_mask, n_features):
        import jax.numpy as jnp

        K = relu_kernel_from_gram_jax(G, sq_rows, sq_cols, **self._kw(n_features))
        if diag_mask is not None:  # exact diagonal (theta = 0), as in the NumPy entries
            d = relu_kernel_diag(np.asarray(sq_rows), **self._kw(n_features))
            K = jnp.where(diag_mask, jnp.asarray(d, K.dtype)[:, None], K)
        return K

    def diag(self, X):
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        return relu_kernel_diag(np.einsum("ij,ij->i", X, X), **self._kw(X.shape[1]))


class ReluNNGP(_ReluNetwork):
    """NNGP kernel of a fully connected ReLU network with ``depth`` hidden layers (arc-cosine recursion).

    Parameters
    ----------
    depth : int >= 1, default 2
        Number of hidden ReLU layers.
    weight_variance : float > 0, default 2.0
        σ_w² (2 = He initialisation: the diagonal is preserved layer to layer).
    bias_variance : float >= 0, default 0.0
        σ_b².

    References
    ----------
    Cho & Saul 2009, §2 (the degree-1 arc-cosine kernel); Lee et al., ICLR 2018, §2.
    """

    name = "relu_nngp"
    which = "nngp"


class ReluNTK(_ReluNetwork):
    """Neural tangent kernel of a fully connected ReLU network with ``depth`` hidden layers (NTK parameterisation).

    Parameters
    ----------
    depth : int >= 1, default 2
    weight_variance : float > 0, default 2.0
    bias_variance : float >= 0, default 0.0

    References
    ----------
    Jacot et al., NeurIPS 2018, §4 and Thm. 1; Arora et al., NeurIPS 2019, §3.
    """

    name = "relu_ntk"
    which = "ntk"


class ArcCosine(Kernel):
    """Degree-1 arc-cosine kernel: the limit of random ReLU features ``sqrt(2/N) relu(V^T x)``.

    ``k(x, z) = s^-2 |x| |z| (sin t + (pi - t) cos t) / pi``, ``t`` the angle between ``x`` and ``z``
    (Cho & Saul 2009, eq. 6-7 with ``J_1``); it equals ``2 E[relu(v^T x) relu(v^T z)]`` for
    ``v ~ N(0, s^-2 I)``, the kernel of :func:`kernelgen.random_features.draw_random_features` with
    ``kind="relu"``. It is the one-hidden-layer :class:`ReluNNGP` (He initialisation, no bias) rescaled:
    ``k = d / (2 s^2) * ReluNNGP(depth=1)(x, z)`` (``d`` = n_features), so it shares that kernel's accurate
    entries (``sin t`` without cancellation, the diagonal ``|x|^2 / s^2`` set exactly, zero vectors giving 0)
    and its JAX twin.

    Parameters
    ----------
    bandwidth : float > 0, default 1.0
        ``s``, the scale of the random weights ``v ~ N(0, s^-2 I)``.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelgen.kernels import kernel_matrix
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> kernel_matrix(X, kernel=ArcCosine(bandwidth=1.0)).round(12).tolist()  # t = pi/2: |x||z| / pi
    [[1.0, 0.636619772368], [0.636619772368, 4.0]]

    References
    ----------
    Cho & Saul, NeurIPS 2009, §2 (eq. 6-7: k_1 with J_1(t) = sin t + (pi - t) cos t).
    """

    name = "arccos"

    def __init__(self, bandwidth=1.0):
        self.bandwidth = bandwidth
        self._check()

    def _check(self):
        s = self.bandwidth
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not (np.isfinite(s) and s > 0):
            raise InvalidInputError(f"ArcCosine.bandwidth must be a positive finite number, got {s!r}.")

    @staticmethod
    def _kw(n_features):
        return dict(n_features=int(n_features), depth=1, weight_variance=2.0, bias_variance=0.0, which="nngp")

    def _factor(self, n_features) -> float:
        return float(n_features) / (2.0 * float(self.bandwidth) ** 2)

    def from_gram(self, G, sq_rows, sq_cols, diag_offset, n_features):
        K = relu_kernel_from_gram(G, sq_rows, sq_cols, diag_offset=diag_offset, **self._kw(n_features))
        K *= K.dtype.type(self._factor(n_features))
        return K

    def from_gram_jax(self, G, sq_rows, sq_cols, diag_mask, n_features):
        import jax.numpy as jnp

        K = relu_kernel_from_gram_jax(G, sq_rows, sq_cols, **self._kw(n_features))
        if diag_mask is not None:  # exact diagonal (theta = 0), as in the NumPy entries
            d = relu_kernel_diag(np.asarray(sq_rows), **self._kw(n_features))
            K = jnp.where(diag_mask, jnp.asarray(d, K.dtype)[:, None], K)
        return K * self._factor(n_features)

    def diag(self, X):
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        return relu_kernel_diag(np.einsum("ij,ij->i", X, X), **self._kw(X.shape[1])) * self._factor(X.shape[1])
