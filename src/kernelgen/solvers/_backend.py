"""The seams of a kernel solve: the Backend protocol, the KernelOperator protocol and the Problem (private).

One orchestration (:func:`kernelgen.solvers._orchestrate.orchestrate`) drives every backend through
three calls, in the spirit of FALKON's one conjugate-gradient loop over a matrix-vector product and of
linear_operator's operators (Meanti et al. 2020; Gardner et al. 2018):

- ``plan(n, d, k, options, solver=...) -> Plan`` -- decide before anything n x n is allocated: the
  factor's dtype (through the one policy, :func:`kernelgen.options.decide_factor_dtype`), the tile,
  where each n x n object lives and its bytes, or refuse with
  :class:`~kernelgen.errors.MemoryBudgetError`;
- ``operator(A, kernel, plan, ridge) -> KernelOperator`` -- the float64 product (K + ridge I) V that
  certifies the result, independent of any factor;
- ``factor(A, kernel, plan, ridge) -> Factor`` -- a :class:`kernelgen.factors.Factor` of K + ridge I
  in the plan's dtype (a Cholesky factor, or for ``plan.path == "eigh"`` an eigendecomposition: the
  minimum-norm route is a factor kind, not another path).

Optional: ``refuse(problem)`` refuses, before any n x n work and without any collective, an option
the backend cannot honour (:class:`~kernelgen.errors.UnsupportedOptionError`); ``check(problem)`` does
the backend's own set-up checks (MPI: the inputs agreed across processes); ``guard(phase)`` is a context manager around the
iteration (MPI: an unexpected error on one process aborts the job); ``finish(solution)`` checks the
result across processes (MPI); ``factor_kinds`` (default both) and ``bound_capable`` (default False)
say whether the backend has the minimum-norm route and products with a proven error bound. A backend needs nothing else: the orchestration does the iteration, the float32 ->
float64 retry, the ``solver="auto"`` fallback and the :class:`~kernelgen.solvers.Certificate`.
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..options import SolveOptions

__all__ = ["Backend", "KernelOperator", "OperatorMode", "Problem", "no_entry_bound_reason", "product_error_bound",
           "products_with_abs", "data_fingerprint"]


class OperatorMode(str, Enum):
    """How the certifying float64 product (K + ridge I) V is computed (``fit.residual_mode``).

    A ``str`` enum: ``OperatorMode.STORED == "stored"``, and it is written to JSON as its value.
    """

    STORED = "stored"  #: the float64 kernel kept as one lower triangle (tiled panels)
    ON_THE_FLY = "on-the-fly"  #: float64 kernel blocks recomputed by the fused pass, per product
    PRECOMPUTED = "precomputed"  #: the caller's K
    RECOMPUTED = "recomputed"  #: min_norm: the kernel recomputed blockwise, independently of the factor
    DEVICE = "device"  #: the float64 kernel kept in accelerator memory (JAX)
    DISTRIBUTED = "on-the-fly (distributed)"  #: each MPI process recomputes its share of the tiles
    FACTOR = "eigh (K overwritten)"  #: the caller's K was the factor's workspace: products from the factor

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec) -> str:
        return format(self.value, spec)


_U = float(np.finfo(np.float64).eps) / 2.0


def products_with_abs(matvec, V) -> tuple:
    """(A V, A|V|) from one call of ``matvec`` on [V, |V|] (one pass over the kernel, one Allreduce under MPI)."""
    V = np.asarray(V, dtype=np.float64)
    k = V.shape[1]
    both = matvec(np.concatenate([V, np.abs(V)], axis=1))
    return both[:, :k], both[:, k:]


def scalar_bounded_product(pair, g: float):
    """V -> ((K + ridge I) V, an upper bound on the exact (K + ridge I)|V|, a bound on the product's error).

    The form every bound-capable operator supports: ``pair(V)`` gives the computed products of [V, |V|]
    (:func:`products_with_abs`) and ``g`` bounds |computed (K + ridge I) v - exact| <= g (K + ridge I)|v|
    componentwise for an operator with non-negative entries, so the exact (K + ridge I)|v| is at most the
    computed one over (1 - g) (rounded upward) and the error at most g times that.
    """
    up = (1.0 + 8.0 * _U) / (1.0 - g)

    def product(V):
        AV, Aabs = pair(V)
        upper = Aabs * up
        return AV, upper, g * upper

    return product


def product_error_bound(eta: float, depth: int) -> float:
    """g with |computed (K + ridge I) v - exact| <= g (K + ridge I)|v| componentwise, for a float64 product.

    Each entry carries the kernel's proven relative error ``eta``
    (:meth:`KernelEntries.entry_error_bound`); a sum of terms in any order added at most ``depth``
    deep errs by gamma_D = D u / (1 - D u) of the sum of magnitudes (Higham, Accuracy and Stability,
    §4.2); one more rounding for the ridge: g = (1 + eta)(1 + gamma_D)(1 + u)^2 - 1.
    """
    u = float(np.finfo(np.float64).eps) / 2.0
    gamma = depth * u / (1.0 - depth * u)
    return float((1.0 + eta) * (1.0 + gamma) * (1.0 + u) ** 2 - 1.0)


def no_entry_bound_reason(kernel) -> str:
    """Why products of ``kernel``'s entries carry no proven error bound (the kernel proves none on these data)."""
    return (f"{kernel!r} has no proven entry error bound on these data (proven: the exact Gaussian, Laplace on "
            "integer data, at bandwidths inside the float range)")


@runtime_checkable
class KernelOperator(Protocol):
    """The float64 operator of one kernel system, (K + ridge I) V, independent of any factor.

    Attributes
    ----------
    mode : OperatorMode
    ridge : float
    """

    mode: OperatorMode
    ridge: float

    def matvec(self, V: np.ndarray) -> np.ndarray:
        """(K + ridge I) V for V of shape (n, k), float64."""

    def matvec_with_error(self, V: np.ndarray) -> tuple:
        """((K + ridge I) V, (K + ridge I)|V|) from one pass (the products of [V, |V|])."""

    def error_bound(self) -> float | None:
        """g with |computed (K + ridge I) v - exact| <= g (K + ridge I)|v| componentwise; None when unproven."""

    # Optional: ``matvec_bounded(V) -> (AV, upper, err)`` (where error_bound() is not None), a componentwise bound ``err``
    # on |AV - (K + ridge I) V| and an upper bound ``upper`` on the exact (K + ridge I)|V|, tighter than the
    # scalar ``error_bound()``; the float64 iteration uses it when present (see _refine).

    def no_bound_reason(self) -> str | None:
        """Why :meth:`error_bound` is None (None when a bound exists)."""


@runtime_checkable
class Backend(Protocol):
    """What a solve backend provides to the orchestration (module docstring).

    Attributes
    ----------
    name : str
        Reported as ``fit.backend``.
    """

    name: str

    def plan(self, n: int, d: int, k: int, options: SolveOptions, *, solver: str = "cholesky") -> Any:
        """A frozen :class:`~kernelgen.solvers.Plan`, or MemoryBudgetError before allocating."""

    def operator(self, A, kernel, plan, ridge: float) -> KernelOperator:
        """The certifying float64 operator."""

    def factor(self, A, kernel, plan, ridge: float) -> Any:
        """A Factor of K + ridge I in ``plan.factor_dtype`` (``plan.path``: "cholesky" or "eigh")."""


@dataclass(frozen=True)
class Problem:
    """One validated kernel system (K + ridge I) alpha = Y, as the orchestration receives it.

    Attributes
    ----------
    A : ndarray (n, d) float64 training inputs, or (n, n) the caller's precomputed K
    Y : ndarray (n, k) float64 targets
    kernel : Kernel (resolved; :class:`~kernelgen.kernels.Precomputed` when A is K)
    ridge : float
    precomputed : bool
    solver : {"auto", "cholesky", "min_norm"}
    options : SolveOptions
    verbose : bool
    """

    A: np.ndarray
    Y: np.ndarray
    kernel: Any
    ridge: float
    precomputed: bool
    solver: str
    options: SolveOptions
    verbose: bool = False

    @property
    def n(self) -> int:
        return int(self.A.shape[0])

    @property
    def d(self) -> int:
        return 0 if self.precomputed else int(self.A.shape[1])

    @property
    def k(self) -> int:
        return int(self.Y.shape[1])


def data_fingerprint(X) -> str:
    """sha256 of a float64 C-ordered copy of X, prefixed by its shape (identifies training data)."""
    A = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    h = hashlib.sha256(str(A.shape).encode())
    h.update(memoryview(A.reshape(-1)).cast("B"))  # the same bytes as A.tobytes(), without the copy
    return h.hexdigest()
