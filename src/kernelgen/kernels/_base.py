"""The Kernel base class, composition (sum, product, positive scaling) and ``Precomputed``.

A kernel is a small object with named hyper-parameters (``bandwidth``, ``degree``, ...), the
field's names. It says how its entries are computed from inner products (``_from_gram``) or,
for a translation-invariant kernel, from squared distances (``_from_sqdist``); everything
else -- bounded blocks, accurate entries (centring, exact integer inner products), symmetric
products K V in float64, the JAX versions -- is inherited from this base and from
:class:`kernelgen.kernels.KernelEntries`, so that a faster apply (fused, per-process) replaces
one implementation without touching callers.

Parameters follow scikit-learn's convention (``get_params`` / ``set_params``, nested names
such as ``kernel__bandwidth`` in :class:`~sklearn.model_selection.GridSearchCV`, ``clone``,
pickling), as in ``sklearn.gaussian_process.kernels``.
"""

from __future__ import annotations

import inspect
import numbers
from typing import ClassVar

import numpy as np

from ..errors import InvalidInputError
from ..numerics import DEFAULT_TILE
from . import _entries
from . import _jax as _jax_entries

__all__ = ["Kernel", "Precomputed", "Product", "Scaled", "Sum"]

_REGISTRY: dict[str, type] = {}


class Kernel:
    """Base class of kernelgen's kernels (see the module docstring).

    Subclasses set ``name`` (the string alias, e.g. ``"gaussian"``), ``stationary`` (True when
    k(x, z) depends on x - z only: the data are then centred and squared distances computed
    accurately) and implement :meth:`_from_sqdist` (stationary) or :meth:`_from_gram`
    (inner-product kernels), their JAX twins, and :meth:`diag`.
    """

    name: ClassVar[str] = ""
    stationary: ClassVar[bool] = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            _REGISTRY[cls.name] = cls

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict:
        """Hyper-parameters by name (nested ``name__param`` entries when ``deep``)."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def set_params(self, **params) -> "Kernel":
        """Set hyper-parameters (nested names allowed); validated; returns self."""
        valid = self._param_names()
        nested: dict = {}
        for key, value in params.items():
            head, _, sub = key.partition("__")
            if head not in valid:
                raise InvalidInputError(f"{type(self).__name__} has no parameter {head!r}; it has {valid}.")
            if sub:
                nested.setdefault(head, {})[sub] = value
            else:
                setattr(self, head, value)
        for head, sub in nested.items():
            getattr(self, head).set_params(**sub)
        self._check()
        return self

    def _check(self) -> None:
        """Validate the hyper-parameters (raise InvalidInputError); subclasses extend."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_params(deep=False) == other.get_params(deep=False)

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))

    def to_dict(self) -> dict:
        """A JSON-serialisable description: ``{"kernel": name, "params": {...}}`` (nested for composites)."""
        params = {}
        for k, v in self.get_params(deep=False).items():
            if isinstance(v, Kernel):
                v = v.to_dict()
            elif isinstance(v, (list, tuple)) and v and isinstance(v[0], Kernel):
                v = [x.to_dict() for x in v]
            elif isinstance(v, np.generic):
                v = v.item()
            params[k] = v
        return {"kernel": self.name or type(self).__name__, "params": params}

    @staticmethod
    def from_dict(d: dict) -> "Kernel":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "kernel" not in d:
            raise InvalidInputError(f"not a kernel description: {d!r}")
        cls = _REGISTRY.get(d["kernel"])
        if cls is None:
            raise InvalidInputError(f"unknown kernel {d['kernel']!r}; known: {sorted(_REGISTRY)}.")
        params = {}
        for k, v in d.get("params", {}).items():
            if isinstance(v, dict) and "kernel" in v:
                v = Kernel.from_dict(v)
            elif isinstance(v, list) and v and isinstance(v[0], dict) and "kernel" in v[0]:
                v = [Kernel.from_dict(x) for x in v]
            params[k] = v
        return cls(**params)

    # ------------------------------------------------------------------ defaults
    def resolve(self, X) -> "Kernel":
        """This kernel with data-dependent defaults filled in from X (self when there are none)."""
        return self

    @property
    def is_resolved(self) -> bool:
        """True when no hyper-parameter still waits for data (e.g. ``bandwidth=None``)."""
        return True

    # ------------------------------------------------------------------ entries
    def _from_sqdist(self, D: np.ndarray, log2_scale: int = 0) -> np.ndarray:
        """Stationary kernels: squared distances (clipped >= 0) -> kernel values, in place.

        D holds ||x - z||^2 / 4^log2_scale (data far outside the float range are scaled by an exact
        power of two); the kernel must give the right limits when the scale over- or underflows.
        """
        raise NotImplementedError

    def _from_gram(self, G, sq_rows, sq_cols, diag_offset, n_features) -> np.ndarray:
        """Inner-product kernels: G = A B^T -> kernel values (in place when possible; returned)."""
        raise NotImplementedError

    def _from_sqdist_jax(self, D, log2_scale: int = 0):
        raise NotImplementedError

    def _from_gram_jax(self, G, sq_rows, sq_cols, diag_mask, n_features):
        raise NotImplementedError

    def diag(self, X) -> np.ndarray:
        """The diagonal k(x_i, x_i), float64 array of shape (n,)."""
        raise NotImplementedError

    def entries(self, A, B=None, *, dtype=np.float64):
        """A :class:`~kernelgen.kernels.KernelEntries` computing blocks of k(A, B) accurately.

        B=None means B = A (diagonal entries of distance kernels are then exactly 1 / k(0)).
        """
        return _entries.KernelEntries(self, A, B, dtype=dtype)

    def matrix(self, A, B=None, *, dtype=np.float64, out=None) -> np.ndarray:
        """Dense k(A, B) of shape (n_A, n_B) in ``dtype``, built in bounded blocks (see :func:`kernel_matrix`)."""
        return _entries.dense_matrix(self, A, B, dtype=dtype, out=out)

    def symmetric_apply(self, X, V, *, tile: int = DEFAULT_TILE, verbose: bool = False,
                        desc: str = "float64 K @ V") -> np.ndarray:
        """k(X, X) @ V in float64, the kernel recomputed blockwise, each off-diagonal block used twice.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        V : ndarray of shape (n, k)

        Returns
        -------
        ndarray of shape (n, k), float64
        """
        return _entries.symmetric_apply(self, X, V, tile=tile, verbose=verbose, desc=desc)

    def apply(self, A, B, V, *, verbose: bool = False, desc: str = "K @ V") -> np.ndarray:
        """k(A, B) @ V in float64, blockwise, without forming k(A, B). V: (n_B, k) -> (n_A, k)."""
        return _entries.apply(self, A, B, V, verbose=verbose, desc=desc)

    def fill_panels(self, P, X, *, verbose: bool = False, desc: str = "kernel") -> None:
        """Fill tiled lower-triangle storage P (a ``LowerPanels``) with k(X, X) in P's dtype."""
        _entries.fill_panels(self, P, X, verbose=verbose, desc=desc)

    def matrix_jax(self, A, B=None, *, dtype=np.float64, block_rows: int = 4096):
        """k(A, B) as a ``jax.Array`` on JAX's default device (matmuls at precision HIGHEST)."""
        return _jax_entries.matrix_jax(self, A, B, dtype=dtype, block_rows=block_rows)

    def apply_jax(self, A, B, V, *, block_rows: int = 4096) -> np.ndarray:
        """k(A, B) @ V on the JAX device in float64, in row blocks; returns NumPy."""
        return _jax_entries.apply_jax(self, A, B, V, block_rows=block_rows)

    # ------------------------------------------------------------------ composition
    def __add__(self, other):
        if isinstance(other, numbers.Real) and other == 0:
            return self
        if not isinstance(other, Kernel):
            return NotImplemented
        return Sum([self, other])

    def __radd__(self, other):
        return self.__add__(other)

    def __mul__(self, other):
        if isinstance(other, Kernel):
            return Product([self, other])
        if isinstance(other, numbers.Real):
            return Scaled(self, float(other))
        return NotImplemented

    def __rmul__(self, other):
        return self.__mul__(other)


def _check_kernels(kernels, what):
    if not isinstance(kernels, (list, tuple)) or len(kernels) < 1 or not all(isinstance(k, Kernel) for k in kernels):
        raise InvalidInputError(f"{what} needs a non-empty list of Kernel objects, got {kernels!r}.")
    if any(isinstance(k, Precomputed) for k in kernels):
        raise InvalidInputError(f"{what} cannot contain a precomputed kernel; add the matrices yourself.")


class _Composite(Kernel):
    """Shared code of Sum and Product: entries combine the components' accurate entries."""

    def __init__(self, kernels):
        self.kernels = kernels  # stored as given (scikit-learn's clone checks identity)
        self._check()

    def _check(self):
        _check_kernels(self.kernels, type(self).__name__)

    def get_params(self, deep: bool = True) -> dict:
        out = {"kernels": self.kernels}
        if deep:
            for i, k in enumerate(self.kernels):
                out.update({f"k{i}__{p}": v for p, v in k.get_params(deep=True).items()})
        return out

    def set_params(self, **params):
        for key, value in params.items():
            head, _, sub = key.partition("__")
            if head == "kernels" and not sub:
                self.kernels = value
            elif head.startswith("k") and head[1:].isdigit() and sub and int(head[1:]) < len(self.kernels):
                self.kernels[int(head[1:])].set_params(**{sub: value})
            else:
                raise InvalidInputError(f"{type(self).__name__} has no parameter {key!r}.")
        self._check()
        return self

    def __eq__(self, other):
        return type(self) is type(other) and self.kernels == other.kernels

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.kernels)))

    def resolve(self, X):
        ks = [k.resolve(X) for k in self.kernels]
        return self if all(a is b for a, b in zip(ks, self.kernels)) else type(self)(ks)

    def __getstate__(self):
        return {"kernels": list(self.kernels)}

    def __setstate__(self, state):
        self.kernels = state["kernels"]

    @property
    def is_resolved(self):
        return all(k.is_resolved for k in self.kernels)

    def entries(self, A, B=None, *, dtype=np.float64):
        return _entries.CompositeEntries(self, A, B, dtype=dtype)


class Sum(_Composite):
    """k(x, z) = sum_i k_i(x, z): a positive-definite kernel when every k_i is (Schur/closure rules).

    Parameters
    ----------
    kernels : list of Kernel
    """

    name = "sum"

    def _combine(self, acc, blk):
        acc += blk

    def _combine_jax(self, acc, blk):
        return acc + blk

    def diag(self, X):
        return sum(k.diag(X) for k in self.kernels)

    def __repr__(self):
        return " + ".join(repr(k) for k in self.kernels)


class Product(_Composite):
    """k(x, z) = prod_i k_i(x, z) (positive definite by the Schur product theorem).

    Parameters
    ----------
    kernels : list of Kernel
    """

    name = "product"

    def _combine(self, acc, blk):
        acc *= blk

    def _combine_jax(self, acc, blk):
        return acc * blk

    def diag(self, X):
        out = self.kernels[0].diag(X)
        for k in self.kernels[1:]:
            out = out * k.diag(X)
        return out

    def __repr__(self):
        return " * ".join(f"({k!r})" if isinstance(k, Sum) else repr(k) for k in self.kernels)


class Scaled(Kernel):
    """k(x, z) = scale * base(x, z) with scale > 0 (an amplitude).

    Parameters
    ----------
    kernel : Kernel
    scale : float, > 0
    """

    name = "scaled"

    def __init__(self, kernel, scale=1.0):
        self.kernel = kernel
        self.scale = scale
        self._check()

    def _check(self):
        _check_kernels([self.kernel], "Scaled")
        s = self.scale
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not (np.isfinite(s) and s > 0):
            raise InvalidInputError(f"Scaled.scale must be a positive finite number, got {s!r} "
                                    "(a negative or zero scale is not a positive-definite kernel).")

    def resolve(self, X):
        k = self.kernel.resolve(X)
        return self if k is self.kernel else Scaled(k, self.scale)

    @property
    def is_resolved(self):
        return self.kernel.is_resolved

    def diag(self, X):
        return self.scale * self.kernel.diag(X)

    def entries(self, A, B=None, *, dtype=np.float64):
        return _entries.CompositeEntries(self, A, B, dtype=dtype)

    def __repr__(self):
        return f"{self.scale!r} * {self.kernel!r}"


class Precomputed(Kernel):
    """Marker: the solver's X *is* the kernel matrix K (shape (n, n)); predictions take K(X_new, X_train)."""

    name = "precomputed"

    def __init__(self):
        pass

    def entries(self, A, B=None, *, dtype=np.float64):
        raise InvalidInputError("a precomputed kernel has no entries to compute: pass the matrix itself.")

    def diag(self, X):
        return np.asarray(np.diagonal(X), dtype=np.float64)
