"""The Kernel base class, composition (sum, product, positive scaling) and ``Precomputed``.

A kernel is a small object with named hyper-parameters (``bandwidth``, ``degree``, ...), the
field's names. It says how its entries are computed from inner products (:meth:`Kernel.from_gram`)
or, for a translation-invariant kernel, from squared distances (:meth:`Kernel.from_sqdist`, in
units of the kernel's length scale: the base class does every rescaling); everything else -- bounded blocks, accurate entries (centring, exact integer inner products), symmetric
products K V in float64, the JAX versions -- is inherited from this base and from
:class:`kernelgen.kernels.KernelEntries`, so that a faster apply (fused, per-process) replaces
one implementation without touching callers.

Parameters follow scikit-learn's convention (``get_params`` / ``set_params``, nested names
such as ``kernel__bandwidth`` in :class:`~sklearn.model_selection.GridSearchCV`, ``clone``,
pickling), as in ``sklearn.gaussian_process.kernels``.

Names are identities: a class that sets ``name`` registers it once (:data:`_REGISTRY`); another
class claiming a registered name, or one differing from it only in case (``"Gaussian"`` beside
``"gaussian"``), is refused at its definition (:class:`KernelIdentityError`; lookups by name stay
exact), the
same ``module:qualname`` re-registers (a notebook cell run again). :meth:`Kernel.to_dict` records
the class's ``module:qualname`` and :meth:`Kernel.from_dict` refuses a different class. A subclass
that does not set its own ``name`` is not registered (it is never found by its parent's name).
The extension API is described in ``docs/kernels.md``.
"""

from __future__ import annotations

import inspect
import numbers
from typing import ClassVar

import numpy as np

from .._validation import as_float_array
from ..errors import InvalidInputError, KernelIdentityError, NonFiniteResultError, UnsupportedOptionError
from ..numerics import DEFAULT_TILE
from . import _entries
from . import _jax as _jax_entries

__all__ = ["Kernel", "Precomputed", "Product", "Scaled", "Sum"]

#: Registered kernel classes by ``name`` (one class per name: see the module docstring).
_REGISTRY: dict[str, type] = {}

_LN2 = float(np.log(2.0))


def class_identity(cls) -> str:
    """``"module:qualname"`` of a class: what a saved kernel description records and checks."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _definer(cls, attr):
    """The class of ``cls``'s MRO whose own namespace defines ``attr`` (None when none does)."""
    for c in cls.__mro__:
        if attr in c.__dict__:
            return c
    return None


def _scale_factor(log_c: float) -> float:
    """exp(log_c) without raising: +inf when it overflows, 0 when it underflows (scales far from the data)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.exp(np.float64(log_c)))


class Kernel:
    """Base class of kernelgen's kernels (see the module docstring and ``docs/kernels.md``).

    Subclasses set ``name`` (the string alias, e.g. ``"gaussian"``: registered once, see the module
    docstring), ``stationary`` (True when k(x, z) depends on x - z only: the data are then centred,
    scaled by a power of two where needed, and squared distances computed accurately) and implement
    the public hooks :meth:`from_sqdist` (stationary) or :meth:`from_gram` (inner-product kernels),
    optionally their JAX twins :meth:`from_sqdist_jax` / :meth:`from_gram_jax` (:attr:`has_jax`),
    :meth:`diag` (inner-product kernels; a stationary kernel's diagonal is k(0)) and :meth:`_check`
    for the hyper-parameters. Distance kernels with a bandwidth subclass
    :class:`~kernelgen.kernels.Stationary` instead.

    Raises
    ------
    KernelIdentityError
        At class definition, when ``name`` (compared ignoring case) is already registered by a different class.
    """

    name: ClassVar[str] = ""
    stationary: ClassVar[bool] = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "name" not in cls.__dict__ or not cls.name:
            return  # an inherited name is the parent's identity, not this class's: not registered
        if not isinstance(cls.name, str):
            raise KernelIdentityError(f"{class_identity(cls)}.name must be a string, got {cls.name!r}.")
        # clashes are case-insensitive ("Gaussian" beside "gaussian" would be two kernels one letter apart);
        # lookups stay exact
        key = cls.name.casefold()
        for taken, prev in _REGISTRY.items():
            if taken.casefold() == key and class_identity(prev) != class_identity(cls):
                same = ("is already registered" if taken == cls.name
                        else f"differs only in case from {taken!r}, registered")
                raise KernelIdentityError(
                    f"kernel name {cls.name!r} {same} by {class_identity(prev)}; {class_identity(cls)} cannot take it "
                    "(a name denotes one kernel, in kernel=... and in saved files; names are compared ignoring case). "
                    "Remedy: give the new class its own name (e.g. name = 'my_" + cls.name + "').")
        _REGISTRY[cls.name] = cls  # new, or the same module:qualname defined again (a notebook cell re-run)

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
        """A JSON-serialisable description: ``{"kernel": name, "class": "module:qualname", "params": {...}}``.

        Nested for composites. ``"class"`` is the identity :meth:`from_dict` checks.
        """
        params = {}
        for k, v in self.get_params(deep=False).items():
            if isinstance(v, Kernel):
                v = v.to_dict()
            elif isinstance(v, (list, tuple)) and v and isinstance(v[0], Kernel):
                v = [x.to_dict() for x in v]
            elif isinstance(v, np.generic):
                v = v.item()
            params[k] = v
        return {"kernel": self.name or type(self).__name__, "class": class_identity(type(self)), "params": params}

    @staticmethod
    def from_dict(d: dict) -> "Kernel":
        """Inverse of :meth:`to_dict`: the registered class of ``d["kernel"]`` with ``d["params"]``.

        Raises
        ------
        InvalidInputError
            Not a kernel description, or a name no class registers now.
        KernelIdentityError
            ``d["class"]`` (when recorded) is not the ``module:qualname`` of the class the name resolves to.
        """
        if not isinstance(d, dict) or "kernel" not in d:
            raise InvalidInputError(f"not a kernel description: {d!r}")
        cls = _REGISTRY.get(d["kernel"])
        want = d.get("class")
        if cls is None:
            where = f" (written by {want}: import the module that defines it first)" if want else ""
            raise InvalidInputError(f"unknown kernel {d['kernel']!r}{where}; known: {sorted(_REGISTRY)}.")
        if want is not None and want != class_identity(cls):
            raise KernelIdentityError(
                f"the kernel description was written by {want}, but the name {d['kernel']!r} denotes "
                f"{class_identity(cls)} now: they may compute different entries. Remedy: import or define the class "
                f"that wrote it (a subclass needs its own registered name to be saved and loaded), or refit.")
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

    # ------------------------------------------------------------------ the extension hooks
    def from_sqdist(self, r2: np.ndarray) -> np.ndarray:
        """Stationary kernels: squared distances in units of the length scale -> kernel values.

        Parameters
        ----------
        r2 : ndarray of float32 or float64, any shape
            ||x - z||^2 / length^2, >= 0 (0 exactly on the diagonal of k(X, X)); ``length`` is the
            bandwidth of a :class:`~kernelgen.kernels.Stationary` kernel, 1 for a plain ``Kernel``.
            The base computes it accurately at any data scale (centring, power-of-two scaling);
            entries may be +inf where the distance is beyond the float range in these units.
            May be overwritten (work in place and return it).

        Returns
        -------
        ndarray of the same shape and dtype: k at those distances; must be finite (a NaN or inf is
        refused with :class:`NonFiniteResultError`).
        """
        raise UnsupportedOptionError(f"{type(self).__name__} is stationary but implements no from_sqdist(r2) "
                                     "(squared distances / length^2 -> values); see docs/kernels.md.")

    def from_gram(self, G: np.ndarray, sq_rows: np.ndarray, sq_cols: np.ndarray, diag_offset, n_features: int):
        """Inner-product kernels: inner products and squared norms -> kernel values.

        Parameters
        ----------
        G : ndarray of shape (r, c), float32 or float64
            <a_i, b_j> of the block's rows and columns (may be overwritten: work in place and return it).
        sq_rows : ndarray of shape (r,)
            |a_i|^2.
        sq_cols : ndarray of shape (c,)
            |b_j|^2.
        diag_offset : int or None
            When not None (k(X, X)), entry (i, i + diag_offset) is a diagonal entry k(x, x): a kernel
            whose formula loses accuracy there (e.g. arccos near 1) may set it exactly.
        n_features : int
            d, the data's dimension.

        Returns
        -------
        ndarray of shape (r, c), G's dtype.
        """
        raise UnsupportedOptionError(f"{type(self).__name__} implements no from_gram(G, sq_rows, sq_cols, "
                                     "diag_offset, n_features) (and is not stationary); see docs/kernels.md.")

    def from_sqdist_jax(self, r2):
        """JAX twin of :meth:`from_sqdist` (a ``jax.Array`` in, one out; not in place)."""
        raise UnsupportedOptionError(self._no_jax_message())

    def from_gram_jax(self, G, sq_rows, sq_cols, diag_mask, n_features):
        """JAX twin of :meth:`from_gram`; ``diag_mask`` is a boolean (r, c) array of the diagonal entries, or None."""
        raise UnsupportedOptionError(self._no_jax_message())

    @property
    def has_jax(self) -> bool:
        """True when this kernel's class (every part, for composites) implements the JAX twin of its hook.

        A twin inherited from a parent whose NumPy hook this class overrides does not count (it would
        compute the parent's kernel).
        """
        cls = type(self)
        hook = "from_sqdist" if self.stationary else "from_gram"
        cpu, dev = _definer(cls, hook), _definer(cls, hook + "_jax")
        return dev is not None and dev is not Kernel and cpu is not None and issubclass(dev, cpu)

    def _no_jax_message(self) -> str:
        hook = "from_sqdist_jax" if self.stationary else "from_gram_jax"
        return (f"the kernel {type(self).__name__} has no JAX implementation ({hook} is not implemented by its "
                f"class). Remedy: backend='scipy', or implement {hook} (docs/kernels.md).")

    def _length_scale(self) -> float:
        """The unit of the distances :meth:`from_sqdist` receives (1 here; the bandwidth of a Stationary kernel)."""
        return 1.0

    def _entries_from_sqdist(self, D: np.ndarray, log2_scale: int = 0, dscale=1.0, t_out=None) -> np.ndarray:
        """The entries' call: D holds ||x - z||^2 / (4^log2_scale dscale); in place -> values (finite or refused).

        ``t_out`` (the exponent of the proven built-ins, :class:`~kernelgen.kernels.Gaussian` and
        :class:`~kernelgen.kernels.Laplace`) is refused here: a general kernel has no exponent.

        Forms r2 = D 4^log2_scale dscale / length^2 with one scale factor c (exp of a sum of logarithms:
        no overflow in the factor itself; inf or 0 when it leaves the float range, with the limits right:
        r2 = 0 at distance 0, +inf elsewhere), then calls :meth:`from_sqdist`.
        """
        if t_out is not None:
            raise InvalidInputError(f"{type(self).__name__} has no proven exponent form (t_out is for the built-in "
                                    "Gaussian and Laplace kernels).")
        c = _scale_factor(2.0 * log2_scale * _LN2 - 2.0 * np.log(self._length_scale()))
        c = c * float(dscale) if dscale != 1.0 else c
        if np.isinf(c):
            np.copyto(D, np.where(D > 0, np.inf, 0.0))
        elif c != 1.0:
            with np.errstate(over="ignore", under="ignore"):
                D *= c
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            out = self.from_sqdist(D)
        if out is None or np.shape(out) != D.shape:
            raise InvalidInputError(f"{type(self).__name__}.from_sqdist must return an array of shape {D.shape}, "
                                    f"got {type(out).__name__}.")
        if not np.all(np.isfinite(out)):
            raise NonFiniteResultError(
                f"{type(self).__name__}.from_sqdist returned non-finite values (NaN or inf) for squared distances in "
                f"[{float(np.min(D)):.3g}, {float(np.max(D)):.3g}] (units of the length scale; +inf means beyond "
                "the float range). Remedy: make the formula finite there (its limit as r2 -> inf), or rescale "
                "the data or the bandwidth.")
        return out

    def _entries_from_sqdist_jax(self, D, log2_scale: int = 0):
        """JAX twin of :meth:`_entries_from_sqdist` (no integer form: dscale is 1)."""
        import jax.numpy as jnp

        c = _scale_factor(2.0 * log2_scale * _LN2 - 2.0 * np.log(self._length_scale()))
        r2 = jnp.where(D > 0, jnp.inf, 0.0).astype(D.dtype) if np.isinf(c) else (D * c if c != 1.0 else D)
        out = self.from_sqdist_jax(r2)
        if not bool(jnp.all(jnp.isfinite(out))):
            raise NonFiniteResultError(f"{type(self).__name__}.from_sqdist_jax returned non-finite values (NaN or "
                                       "inf). Remedy: make the formula finite (its limit as r2 -> inf), or rescale.")
        return out

    def diag(self, X) -> np.ndarray:
        """The diagonal k(x_i, x_i), float64 array of shape (n,) (stationary kernels: k at distance 0).

        Raises
        ------
        UnsupportedOptionError
            An inner-product kernel that does not implement it.
        """
        X = as_float_array(X, "X", ndim=(2,))
        if not self.stationary:
            raise UnsupportedOptionError(f"{type(self).__name__} implements no diag(X) (k(x_i, x_i)); "
                                         "see docs/kernels.md.")
        k0 = float(np.asarray(self.from_sqdist(np.zeros(1)))[0])
        return np.full(X.shape[0], k0)

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

    @property
    def has_jax(self) -> bool:
        return all(k.has_jax for k in self.kernels)

    def _no_jax_message(self) -> str:
        return next(k._no_jax_message() for k in self.kernels if not k.has_jax)

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

    @property
    def has_jax(self) -> bool:
        return self.kernel.has_jax

    def _no_jax_message(self) -> str:
        return self.kernel._no_jax_message()

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

    #: the JAX backend takes the matrix itself
    has_jax = True

    def entries(self, A, B=None, *, dtype=np.float64):
        raise InvalidInputError("a precomputed kernel has no entries to compute: pass the matrix itself.")

    def diag(self, X):
        return np.asarray(np.diagonal(X), dtype=np.float64)
