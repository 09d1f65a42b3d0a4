"""SolveOptions: the numerical knobs of a kernel solve, in one frozen, validated object.

Vary a knob per call with :func:`dataclasses.replace`::

    from dataclasses import replace
    opts = replace(SolveOptions(), tol=1e-12, dtype="float64")
    kernelgen.kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=5.0), options=opts)

Every field is checked once, here, with a named error (:class:`~kernelgen.errors.InvalidInputError`)
naming the field, the value and what is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import numpy as np

from ._validation import float_dtype_name, is_finite_real, is_int
from .errors import InvalidInputError
from .numerics import CALL_LIMITS, DEFAULT_TILE, EXACT_TOL

__all__ = ["AUTO_FLOAT64_MAX_N", "SolveOptions", "decide_factor_dtype", "float64_retry_allowed"]

#: ``SolveOptions(dtype=None)`` factors in float64 up to this n (cheap there: the float64 factor of
#: n = 4,096 takes 0.13 GB and well under a second), in float32 (mixed precision) above.
AUTO_FLOAT64_MAX_N = 4096

_REFINEMENTS = ("cg", "richardson")
_CERTIFICATES = ("direct", "bound")
_STORAGES = ("auto", "memory", "disk")


@dataclass(frozen=True)
class SolveOptions:
    """Numerical options of :func:`kernelgen.kernel_interpolate` (and of what reuses its factor).

    Parameters
    ----------
    tol : float, default 1e-10
        Target float64 relative residual ||Y - (K + ridge I) alpha||_F / ||Y||_F (the project's
        definition of exact, :data:`kernelgen.numerics.EXACT_TOL`). Must lie in (0, 1).
    max_iter : int, default 30
        Largest number of float64 kernel passes of the iteration (>= 1).
    refinement : {"cg", "richardson"}, default "cg"
        Float64 iteration preconditioned by the factor: conjugate gradients, or plain iterative
        refinement.
    dtype : None, "float32" or "float64", default None
        Dtype of the *factor*. None applies the dtype policy: float64 up to
        ``float64_max_n`` points, float32 (mixed precision, still exact in float64) above, and a
        float64 refactor when the float32 route fails and memory allows (``float64_retry``). The
        one rule for every backend is :func:`decide_factor_dtype`.
    float64_max_n : int, default :data:`AUTO_FLOAT64_MAX_N` (4096)
        Largest n factored in float64 under ``dtype=None`` (a backend may add a device rule above
        it: :func:`decide_factor_dtype`).
    rcond : float or None, default None
        ``solver="min_norm"``: eigenvalues at or below ``rcond * max|lambda|`` count as zero;
        None means ``n * eps`` of the precision the kernel matrix carries
        (:func:`kernelgen.numerics.spectral_cutoffs`).
    symmetry_rtol32, symmetry_rtol64 : float or None
        Tolerances of the symmetry check of a precomputed kernel, relative to max|diag K|, for a
        float32 / float64 matrix; None: ``1e3 * u`` of that precision
        (:func:`kernelgen.numerics.check_symmetric`).
    memory_budget : int or None, default None
        Bytes the solve may use; None: :data:`kernelgen.numerics.MEMORY_FRACTION` (85%) of the
        memory available now (which already excludes the running interpreter; nothing fixed is
        added on top).
    tile : int, default 2048
        Tile of the tiled Cholesky (1 <= tile; capped at the tested BLAS call limit, 8192).
    store_kernel : bool or None, default None
        Force (True) or forbid (False) keeping the float64 kernel triangle for the residual;
        None lets the memory planner decide.
    keep_factor : bool, default False
        Keep the factor on the result (``fit.factor``, ``fit.solve(Y_new)``, ``fit.save(...,
        include_factor=True)``).
    overwrite_kernel : bool, default False
        With a precomputed kernel, allow the solver to use the caller's K as workspace
        (``solver="min_norm"`` eigendecomposes it in place; K is destroyed).
    require_interpolation : bool, default False
        ``solver="min_norm"``: when Y is not in the range of K (e.g. repeated inputs with conflicting
        targets) the result is the minimum-norm least-squares solution, not an interpolant: by default
        an :class:`~kernelgen.errors.InterpolationWarning` says so; True raises
        :class:`~kernelgen.errors.SingularSystemError` instead.
    float64_retry : bool, default True
        Under ``dtype=None``: when the float32 factor breaks down or the float64 iteration stalls,
        redo the solve once with a float64 factor if the memory plan allows it (logged, and said in
        ``fit.notes``). False: raise the float32 route's error instead (:func:`float64_retry_allowed`).
    certificate : {"direct", "bound"}, default "direct"
        What ends the float64 iteration of a Cholesky solve. "direct": a direct float64 product
        verifies the final alpha; where that product has a proven error bound (Gaussian / Laplace
        kernels), ``fit.relative_residual_bound`` also reports a proven bound on the
        exact-arithmetic residual (the direct product applied to [alpha, |alpha|]). "bound": CG
        carries that proven bound through every pass (each applied to [p, |p|]) and stops, without
        the verifying pass, as soon as the bound reaches ``tol``; where it cannot (the worst-case
        rounding term gamma_D K|alpha| exceeds ``tol``, as on MNIST at n >= 3,000), the verifying
        pass is made as usual. See :mod:`kernelgen.solvers._refine`. "bound" is never ignored:
        :func:`kernelgen.kernel_interpolate` raises
        :class:`~kernelgen.errors.UnsupportedOptionError` before any n x n work where the bound
        cannot hold or is not implemented (``backend="jax"`` or ``"mpi"``, ``solver="min_norm"``, a
        precomputed K, a kernel without a proven entry bound on the data), and
        ``solver="auto"`` does not fall back to min_norm under it.
    storage : {"auto", "memory", "disk"}, default "auto"
        Where the Cholesky factor lives (SciPy backend). "auto": in RAM when the memory plan fits the
        budget, else in a scratch file (an out-of-core factor, :mod:`kernelgen.factors`), else a
        :class:`~kernelgen.errors.MemoryBudgetError` before anything is written. "memory" / "disk"
        force one (the planner still refuses what does not fit). The float64 iteration and its
        certificate are the same either way; a factor on disk costs two streams of the file per pass.
    scratch_dir : str or None, default None
        Directory of the out-of-core factor's scratch file; None: the ``KERNELGEN_SCRATCH``
        environment variable, else ``<platform cache dir>/kernelgen/scratch``. The file (n^2/2 entries
        of the factor's dtype, plus a small ``.json`` progress record) is removed when the factor is no
        longer needed; a run killed mid-factor leaves it, and the same solve rerun resumes from it.

    Raises
    ------
    InvalidInputError
        For any field outside its allowed range or type.
    """

    tol: float = EXACT_TOL
    max_iter: int = 30
    refinement: str = "cg"
    dtype: str | None = None
    float64_max_n: int = AUTO_FLOAT64_MAX_N
    rcond: float | None = None
    symmetry_rtol32: float | None = None
    symmetry_rtol64: float | None = None
    memory_budget: int | None = None
    tile: int = DEFAULT_TILE
    store_kernel: bool | None = None
    keep_factor: bool = False
    overwrite_kernel: bool = False
    require_interpolation: bool = False
    certificate: str = "direct"
    float64_retry: bool = True
    storage: str = "auto"
    scratch_dir: str | None = None

    def __post_init__(self):
        def bad(name, value, allowed):
            raise InvalidInputError(f"SolveOptions.{name} = {value!r} is invalid: {allowed}.")

        is_real = is_finite_real

        if not is_real(self.tol) or not (0.0 < float(self.tol) < 1.0):
            bad("tol", self.tol, "a float in (0, 1)")
        if not is_int(self.max_iter) or self.max_iter < 1:
            bad("max_iter", self.max_iter, "an integer >= 1")
        if self.refinement not in _REFINEMENTS:
            bad("refinement", self.refinement, f"one of {_REFINEMENTS}")
        if self.dtype is not None:
            object.__setattr__(self, "dtype", float_dtype_name(self.dtype, "SolveOptions.dtype"))
        if not is_int(self.float64_max_n) or self.float64_max_n < 0:
            bad("float64_max_n", self.float64_max_n, "an integer >= 0")
        if self.rcond is not None and (not is_real(self.rcond) or not (0.0 <= float(self.rcond) < 1.0)):
            bad("rcond", self.rcond, "None or a float in [0, 1)")
        for name in ("symmetry_rtol32", "symmetry_rtol64"):
            v = getattr(self, name)
            if v is not None and (not is_real(v) or not (0.0 <= float(v) < 1.0)):
                bad(name, v, "None or a float in [0, 1)")
        if self.memory_budget is not None and (not is_int(self.memory_budget) or self.memory_budget <= 0):
            bad("memory_budget", self.memory_budget, "None or a positive integer number of bytes")
        cap = CALL_LIMITS[np.dtype(np.float64)].potrf_n
        if not is_int(self.tile) or not (1 <= self.tile):
            bad("tile", self.tile, f"an integer >= 1 (values above {cap}, the tested call limit, are capped)")
        for name in ("keep_factor", "overwrite_kernel", "require_interpolation", "float64_retry"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                bad(name, getattr(self, name), "True or False")
        if self.certificate not in _CERTIFICATES:
            bad("certificate", self.certificate, f"one of {_CERTIFICATES}")
        if self.storage not in _STORAGES:
            bad("storage", self.storage, f"one of {_STORAGES}")
        if self.scratch_dir is not None:
            if not isinstance(self.scratch_dir, (str, os.PathLike)) or not str(self.scratch_dir):
                bad("scratch_dir", self.scratch_dir, "None or a directory path")
            object.__setattr__(self, "scratch_dir", str(os.fspath(self.scratch_dir)))
        if self.store_kernel is not None and not isinstance(self.store_kernel, (bool, np.bool_)):
            bad("store_kernel", self.store_kernel, "None, True or False")

    def symmetry_rtol(self, dtype) -> float | None:
        """The symmetry tolerance for a matrix of ``dtype`` (None: the precision's default)."""
        return self.symmetry_rtol32 if np.dtype(dtype) == np.float32 else self.symmetry_rtol64

    def to_dict(self) -> dict:
        """The options as a JSON-serialisable dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def coerce(cls, options) -> "SolveOptions":
        """``None`` -> defaults; a SolveOptions as is; a dict -> ``SolveOptions(**dict)``."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, dict):
            unknown = set(options) - {f.name for f in fields(cls)}
            if unknown:
                raise InvalidInputError(f"unknown SolveOptions field(s) {sorted(unknown)}; "
                                        f"known: {[f.name for f in fields(cls)]}.")
            return cls(**options)
        raise InvalidInputError(f"options must be None, a SolveOptions or a dict, got {type(options).__name__}.")


def decide_factor_dtype(options: SolveOptions, n: int, *, float64_fits: bool | None = None) -> np.dtype:
    """The dtype policy of the factor, the one rule every backend applies.

    ``options.dtype`` when given; else float64 for n <= ``options.float64_max_n`` and float32
    (mixed precision: the float64 iteration still certifies the float64 residual) above -- except
    where the backend states a *device rule*: ``float64_fits=True`` keeps float64 above the
    threshold. The JAX backend states one: a float64 factor whenever the float64 kernel, its float64
    factor and their workspace (3 n^2 x 8 bytes) fit in the device's memory (a float64 factor makes
    the float64 iteration converge in one or two passes; above that memory, float32).

    Parameters
    ----------
    options : SolveOptions
    n : int
        Order of the system.
    float64_fits : bool or None
        The backend's device rule (None: no device rule).

    Returns
    -------
    numpy.dtype
        float32 or float64.
    """
    if options.dtype is not None:
        return np.dtype(options.dtype)
    if n <= options.float64_max_n or float64_fits:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def float64_retry_allowed(options: SolveOptions, factor_dtype) -> bool:
    """Whether a failed float32 route (factor breakdown, stalled iteration) may be redone in float64.

    Only under the dtype policy (``options.dtype is None``), with ``options.float64_retry``, and
    when the failed factor was float32; the memory plan of the float64 route decides the rest.
    """
    return options.dtype is None and bool(options.float64_retry) and np.dtype(factor_dtype) == np.float32
