"""The fitted kernel interpolant: immutable, certified, saveable, picklable (private; see kernelgen.solvers).

:func:`build_interpolant` packages the orchestration's :class:`~kernelgen.solvers._orchestrate.Solution`
into a :class:`KernelInterpolant` = (kernel, training data or its hash, alpha, certificate, factor,
options, provenance): the RKHS norm from the verified product, and ``solve`` for new targets (the
same orchestration's iteration) when the factor is kept;
:meth:`KernelInterpolant.load` and unpickling give a kept factor the same ``solve``
(:func:`attach_resolver`).

The fit owns what it certifies: ``alpha``, ``fitted`` and the training data ``X_train`` are
read-only arrays that nobody else can write (``X_train`` is copied once unless the caller's
array is already read-only float64 throughout). The file format (version :data:`FORMAT_VERSION`)
is written from the dataclass fields themselves: each field says in its metadata how it is
stored (``store``: "array", "kernel", "options", "certificate", "tuple", "json", or None for the transient ones:
the factor, the data, the memory plan and the resolver, which ``save`` writes only on request).
"""

from __future__ import annotations

import hashlib
import json
import copy
import logging
import os
import time
import zipfile
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import numpy as np

from .._files import atomic_write
from .._validation import as_float_array
from .._version import __version__
from ..errors import (
    CorruptFileError,
    DataMismatchError,
    FormatVersionError,
    InvalidInputError,
    KernelgenError,
    KernelIdentityError,
    NonFiniteResultError,
    NotPicklableError,
    ShapeMismatchError,
)
from ..factors import CholeskyFactor
from ..kernels import Kernel, Precomputed
from ..options import SolveOptions
from ..provenance import provenance
from ._backend import OperatorMode, data_fingerprint
from ._certificate import Certificate
from ._orchestrate import Solution, iterate
from ._system import KernelSystem, float64_refactor, prepare_targets

__all__ = ["KernelInterpolant", "FORMAT_VERSION", "attach_resolver", "build_interpolant", "data_fingerprint"]

log = logging.getLogger(__name__)

#: Version of the file format written by :meth:`KernelInterpolant.save` (2: data, preparation, rows, notes;
#: 3: the certificate as one field, ``SolveOptions.float64_retry``).
FORMAT_VERSION = 3
_FORMAT_NAME = "kernelgen.KernelInterpolant"


def _owned_readonly(X) -> np.ndarray:
    """X as a float64 array nobody can write: X itself when it and every array it views are read-only
    float64 over memory no one else can change (its own, or bytes), else a read-only C-contiguous copy.
    A memory-mapped file is copied: another process may write the file under a read-only map."""
    if isinstance(X, np.ndarray) and not isinstance(X, np.memmap) and X.dtype == np.float64 \
            and not X.flags.writeable:
        b = X.base
        while isinstance(b, np.ndarray) and not isinstance(b, np.memmap) and not b.flags.writeable:
            b = b.base
        if b is None or isinstance(b, bytes):
            return X
    A = np.array(X, dtype=np.float64, order="C", copy=True)
    A.setflags(write=False)
    return A


def _stored(how):
    """Field metadata: how :meth:`KernelInterpolant.save` stores the field (None: not stored)."""
    return {"store": how}


@dataclass(frozen=True)
class KernelInterpolant:
    """The exact kernel interpolant returned by :func:`kernelgen.kernel_interpolate` (immutable).

    Every array on it is read-only and owned by it: the training inputs are copied once at the
    fit (a float64 copy of n * d * 8 bytes: 376 MB for MNIST's 60,000 x 784), unless they are
    already a read-only float64 array (e.g. ``X.setflags(write=False)`` on an array that owns its
    memory), which is kept without a copy; a memory-mapped file is copied (another writer may change it).
    The kernel is a private deep copy too (``set_params`` on the caller's kernel afterwards changes
    nothing here). Changing the caller's X or kernel after the fit therefore changes neither
    predictions nor certificate.

    Fitted objects pickle (``pickle``, ``joblib``, ``cross_validate(..., n_jobs=2)``) and unpickle
    to bit-identical predictions; a kept factor is pickled with them and ``solve`` is rebuilt on
    load. A fit from ``backend="mpi"`` (collective, its factor distributed over the processes)
    raises :class:`~kernelgen.errors.NotPicklableError`: save it with :meth:`save`.

    Attributes
    ----------
    alpha : ndarray of shape (n,) or (n, n_targets)
        Coefficients, float64.
    kernel : Kernel
        The kernel, with every data-dependent default resolved (e.g. the bandwidth chosen).
    certificate : Certificate
        What certifies alpha and what ran (:class:`~kernelgen.solvers.Certificate`); its fields are
        also read as properties of the fit: ``relative_residual`` (||Y - (K + ridge I) alpha||_F /
        ||Y||_F, by a direct float64 product independent of the factor, or with
        ``residual_certificate == "bound"`` a proven bound on it in exact arithmetic),
        ``relative_residual_bound`` (the proven bound where the products have one, else None:
        ``certificate.bound_reason`` says why), ``residual_certificate``, ``last_direct_residual``,
        ``history``, ``n_matvecs``, ``solver``, ``backend``, ``factor_dtype``, ``residual_mode``
        ("stored", "on-the-fly", "precomputed", "recomputed", "device", "on-the-fly (distributed)"),
        ``rank``, ``rank_tol``, ``condition_number``.
    alpha_K_alpha : ndarray of shape (n_targets,)
        alpha_j^T K alpha_j per target (squared RKHS norm of each interpolating function).
    rkhs_norm : float
        sqrt(sum_j alpha_j^T K alpha_j).
    ridge : float
        What was added to the diagonal (0 unless asked; kernelgen never adds jitter).
    timings : dict
        Seconds per phase.
    plan : Plan or None
        Not saved.
    fitted : ndarray of shape (n,) or (n, n_targets)
        K alpha on the training points from the final float64 product.
    options : SolveOptions
    factor : Factor or None
        Kept when ``options.keep_factor`` (or loaded with the file).
    provenance : dict
        Package versions, BLAS and threads, CPU, git commit, date (:func:`kernelgen.provenance`).
    X_train : ndarray of shape (n, d), float64, read-only, or None
        The training inputs (None for a precomputed kernel, or a file loaded without its data).
    data_sha256 : str
        :func:`data_fingerprint` of the training inputs (of K for a precomputed kernel).
    data_shape : tuple of int or None
        Shape of the training inputs (of K for a precomputed kernel).
    notes : tuple of str
        Decisions taken during the solve that changed what ran (e.g. ``solver="auto"`` falling back
        to ``min_norm``); empty when nothing was decided for the caller.
    factor_info : dict
        What the factor reported of itself (``factor.describe()``): kind, dtype, tile, seconds; for an
        out-of-core factor also ``storage="disk"``, its file's bytes, the bytes read and written, the
        seconds the factorisation waited on the file, the super-panel width and the solves' reads.
        Kept when the factor itself is not.
    preparation : dict, str or None
        How the training inputs were prepared (e.g. ``{"dataset": "mnist", "transform":
        "pixels/255", "dtype": "float64"}``), as given to :meth:`save` (or to
        :meth:`with_data_info`); None when unknown.
    rows : ndarray of shape (n,), int64, or None
        Indices of the rows of the prepared data set that were used for training, in order.
    """

    alpha: np.ndarray = field(metadata=_stored("array"))
    kernel: Kernel = field(metadata=_stored("kernel"))
    certificate: Certificate = field(metadata=_stored("certificate"))
    alpha_K_alpha: np.ndarray = field(metadata=_stored("array"))
    rkhs_norm: float
    ridge: float
    timings: dict = field(default_factory=dict)
    plan: Any = field(default=None, metadata=_stored(None))
    fitted: np.ndarray | None = field(default=None, repr=False, metadata=_stored("array"))
    options: SolveOptions = field(default_factory=SolveOptions, repr=False, metadata=_stored("options"))
    factor: Any = field(default=None, repr=False, metadata=_stored(None))
    provenance: dict = field(default_factory=dict, repr=False)
    X_train: np.ndarray | None = field(default=None, repr=False, compare=False, metadata=_stored(None))
    data_sha256: str | None = field(default=None, repr=False)
    data_shape: tuple | None = field(default=None, repr=False, metadata=_stored("tuple"))
    notes: tuple = field(default=(), metadata=_stored("tuple"))
    factor_info: dict = field(default_factory=dict, repr=False)
    preparation: Any = field(default=None, repr=False)
    rows: np.ndarray | None = field(default=None, repr=False, compare=False, metadata=_stored("array"))
    _resolve: Callable | None = field(default=None, repr=False, compare=False, metadata=_stored(None))

    def __post_init__(self):
        # the fit owns its kernel: the caller's object may be changed in place later (set_params, attributes)
        object.__setattr__(self, "kernel", copy.deepcopy(self.kernel))
        for name in ("alpha", "fitted", "alpha_K_alpha"):
            a = getattr(self, name)
            if a is not None:
                a = np.asarray(a)
                a.setflags(write=False)
                object.__setattr__(self, name, a)
        if self.X_train is not None:
            object.__setattr__(self, "X_train", _owned_readonly(self.X_train))
            if self.data_shape is None:
                object.__setattr__(self, "data_shape", tuple(self.X_train.shape))
        if self.data_shape is not None:
            object.__setattr__(self, "data_shape", tuple(int(v) for v in self.data_shape))
        object.__setattr__(self, "notes", tuple(str(v) for v in self.notes))
        if self.rows is not None:
            object.__setattr__(self, "rows", _check_rows(self.rows, self.n_train))
        if self.preparation is not None:
            _check_preparation(self.preparation)
        if not np.all(np.isfinite(self.alpha)):
            raise NonFiniteResultError("the coefficients alpha are not finite; nothing is returned.")

    @property
    def n_train(self) -> int:
        return self.alpha.shape[0]

    # ---------------------------------------------------------------- the certificate's fields, as users read them
    relative_residual = property(lambda self: self.certificate.relative_residual,
                                 doc="The certified relative residual (:class:`Certificate`).")
    relative_residual_bound = property(lambda self: self.certificate.relative_residual_bound,
                                       doc="The proven bound on the exact-arithmetic relative residual, or None.")
    residual_certificate = property(lambda self: self.certificate.method, doc='"direct" or "bound".')
    last_direct_residual = property(lambda self: self.certificate.last_direct_residual,
                                    doc="The last relative residual computed by a direct product.")
    history = property(lambda self: self.certificate.history, doc="Each float64 residual reached.")
    n_matvecs = property(lambda self: self.certificate.n_matvecs, doc="float64 kernel passes.")
    solver = property(lambda self: self.certificate.solver, doc='"cholesky" or "min_norm".')
    backend = property(lambda self: self.certificate.backend, doc='"scipy", "jax" or "mpi".')
    factor_dtype = property(lambda self: self.certificate.factor_dtype, doc="dtype of the factor.")
    residual_mode = property(lambda self: self.certificate.residual_mode,
                             doc="How the certifying float64 product was computed.")
    rank = property(lambda self: self.certificate.rank, doc="Numerical rank (n for Cholesky).")
    rank_tol = property(lambda self: self.certificate.rank_tol, doc="min_norm's rank threshold.")
    condition_number = property(lambda self: self.certificate.condition_number,
                                doc="min_norm: condition number of the kept spectrum.")

    @property
    def data_info(self) -> dict:
        """What identifies the training data: ``{"sha256", "shape", "preparation", "rows", "included"}``.

        ``included``: whether the training inputs are attached to this fit (so it predicts alone).
        """
        return {"sha256": self.data_sha256, "shape": self.data_shape, "preparation": self.preparation,
                "rows": self.rows, "included": self.X_train is not None}

    def with_data_info(self, *, preparation=None, rows=None) -> "KernelInterpolant":
        """This fit recording how its training data were prepared and which rows were used.

        Parameters
        ----------
        preparation : dict or str, optional
            A short JSON-serialisable description (e.g. ``{"dataset": "mnist", "transform":
            "pixels/255", "dtype": "float64"}``).
        rows : array of int of shape (n,), optional
            Indices of the training rows in the prepared data set, in the order used.

        Returns
        -------
        KernelInterpolant
            A new fit (same arrays, same factor and ``solve``); this one is unchanged.

        Raises
        ------
        InvalidInputError
            ``preparation`` not JSON-serialisable; ``rows`` not n non-negative integers.
        """
        prep = self.preparation if preparation is None else _check_preparation(preparation)
        rws = self.rows if rows is None else _check_rows(rows, self.n_train)
        new = replace(self, preparation=prep, rows=rws)
        object.__setattr__(new, "_resolve", self._resolve)
        return new

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        if self.backend == "mpi":
            raise NotPicklableError(
                "a fit from backend='mpi' cannot be pickled: it is collective (its solve and a kept factor are "
                "distributed over the MPI processes). Save it with fit.save(path) (without the factor; "
                "include_data=True to make the file self-contained) and load it with load_interpolant(path); the "
                "factor blocks are saved per process by factor.save(directory) / KERNELGEN_MPI_CHECKPOINT.")
        state = dict(self.__dict__)
        state["_resolve"] = None  # a closure over the solve's operator: rebuilt on load (attach_resolver)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in ("alpha", "fitted", "alpha_K_alpha", "X_train", "rows"):
            a = self.__dict__.get(name)
            if isinstance(a, np.ndarray):
                a.setflags(write=False)  # a fresh array from the pickle: owned, made read-only again
        if self.factor is not None and self.X_train is not None:
            attach_resolver(self)

    # ---------------------------------------------------------------- prediction
    def predict(self, X_new, *, verbose: bool = False) -> np.ndarray:
        """Predictions k(X_new, X_train) @ alpha in float64, computed blockwise. Changes nothing.

        Parameters
        ----------
        X_new : array of shape (m, n_features), or for a precomputed kernel the block
            K(X_new, X_train) of shape (m, n_train).
        verbose : bool
            Progress bar.

        Returns
        -------
        ndarray of shape (m,) or (m, n_targets), float64

        Raises
        ------
        ShapeMismatchError, NonFiniteInputError, NonFiniteResultError
        InvalidInputError
            No training inputs attached (a file saved without them and loaded without X_train).
        """
        A = np.asarray(self.alpha).reshape(self.n_train, -1)
        if isinstance(self.kernel, Precomputed):
            Kn = as_float_array(X_new, "K_new", ndim=(2,), dtype=np.float64)
            if Kn.shape[1] != self.n_train:
                raise ShapeMismatchError(f"precomputed K_new must have {self.n_train} columns, got {Kn.shape[1]}.")
            P = Kn @ A
        else:
            if self.X_train is None:
                raise InvalidInputError(
                    f"this interpolant has no training inputs attached (the file holds their sha256 only): load it "
                    f"with load_interpolant(path, X_train) passing the same {self.data_shape} data"
                    + (f" (prepared as {self.preparation!r})" if self.preparation is not None else "")
                    + ", or save a self-contained file with fit.save(path, include_data=True).")
            Xn = as_float_array(X_new, "X_new", ndim=(2,), dtype=np.float64)
            if Xn.shape[1] != self.X_train.shape[1]:
                raise ShapeMismatchError(f"X_new has {Xn.shape[1]} features, training data had {self.X_train.shape[1]}.")
            P = self.kernel.apply(Xn, self.X_train, A, verbose=verbose, desc="predict")
        if not np.all(np.isfinite(P)):
            raise NonFiniteResultError("predictions are not finite (the kernel overflowed on X_new).")
        return P[:, 0] if self.alpha.ndim == 1 else P

    # ---------------------------------------------------------------- factor reuse
    def solve(self, Y_new, *, tol: float | None = None) -> "KernelInterpolant":
        """Interpolate new targets with the same factor (needs ``options.keep_factor=True``).

        Returns a new KernelInterpolant (float64 iteration to ``tol``, default ``options.tol``).

        Raises
        ------
        InvalidInputError
            No factor kept; or a loaded / unpickled fit without its training inputs (or, for a
            precomputed kernel, without K), which the float64 iteration needs.
        """
        if self._resolve is None:
            if self.factor is None:
                raise InvalidInputError("this interpolant did not keep its factor; refit with "
                                        "options=SolveOptions(keep_factor=True).")
            what = ("K (a precomputed kernel is not stored): refit with kernel_interpolate(K, Y_new, "
                    "kernel='precomputed')" if isinstance(self.kernel, Precomputed) else
                    "its training inputs: load it with load_interpolant(path, X_train), or save it with "
                    "include_data=True")
            raise InvalidInputError(f"this interpolant has its factor but not {what}.")
        return self._resolve(Y_new, tol)

    def logdet(self, *, float64: bool = False, verbose: bool = False):
        """log det (K + ridge I), with its precision (:class:`kernelgen.factors.LogDet`).

        From the kept factor (``options.keep_factor=True``): a float32 factor's value comes with a
        Ritz-value *estimate* of its error; ``float64=True`` gives the float64 value instead.

        Parameters
        ----------
        float64 : bool
            The value from a float64 factor: the kept one when it is float64, else a float64 tiled
            Cholesky of K + ridge I refactored from ``X_train``, the kernel and the ridge
            (:func:`~kernelgen.solvers._system.float64_refactor`: planner-checked, in RAM where it fits,
            else out of core in a scratch file, removed once its diagonal is read). Works without a kept
            factor; a kept float32 factor stays in memory beside the refactor (the planner counts only
            the memory available now: drop the fit's factor first, e.g. refit with ``keep_factor=False``,
            where both do not fit).
        verbose : bool
            Progress of the refactor.

        Returns
        -------
        LogDet

        Raises
        ------
        InvalidInputError
            No factor kept and ``float64=False``; or ``float64=True`` without the training data (a
            precomputed kernel, or a file loaded without X_train).
        MemoryBudgetError
            The float64 factor fits neither in RAM nor on the scratch disk (before allocating).
        NotPositiveDefiniteError
            K + ridge I is not positive definite in float64 (e.g. a min_norm fit of a singular K).
        """
        kept = self.factor
        if kept is not None and (not float64 or kept.dtype == np.float64 or kept.kind != "cholesky"):
            return kept.logdet()
        if not float64:
            raise InvalidInputError("no factor kept: refit with options=SolveOptions(keep_factor=True), or call "
                                    "fit.logdet(float64=True), which refactors in float64 from X_train.")
        factor = float64_refactor(self, verbose=verbose)
        try:
            return factor.logdet()
        finally:
            if callable(getattr(factor, "close", None)):
                factor.close()  # an out-of-core factor's scratch file is removed as soon as it is read

    # ---------------------------------------------------------------- persistence
    def save(self, path, *, include_factor: bool = False, include_data: bool = False, preparation=None,
             rows=None) -> None:
        """Write the interpolant to ``path`` (NumPy ``.npz`` without pickles, format version 3), atomically.

        Stored: format name and version, kernelgen version, every field of the dataclass that has
        a ``store`` in its metadata (the kernel as ``Kernel.to_dict``, alpha, fitted values, the
        certificate and history, what ran, options, notes, provenance), the sha256 and shape of
        the training data, ``preparation`` and ``rows``, and a sha256 of the whole content.

        Parameters
        ----------
        path : str or path-like
        include_factor : bool
            Store the SciPy Cholesky factor (n^2/2 entries of its dtype) so the loaded fit can
            ``solve`` without refactoring.
        include_data : bool
            Store the training inputs X_train (n * d float64: 376 MB at 60,000 x 784) so that
            ``load_interpolant(path)`` predicts alone. Default: only their sha256 (then pass the same
            X_train to :meth:`load`). A precomputed kernel's K is never stored (predicting needs
            only K(X_new, X_train)).
        preparation : dict or str, optional
            How the training inputs were prepared (JSON-serialisable, e.g. ``{"dataset": "mnist",
            "transform": "pixels/255", "dtype": "float64"}``); default: the fit's ``preparation``.
        rows : array of int of shape (n,), optional
            Indices of the training rows in the prepared data set; default: the fit's ``rows``.

        Raises
        ------
        InvalidInputError
            ``include_factor`` without a kept SciPy Cholesky factor; ``include_data`` without
            training inputs attached; ``preparation`` not JSON-serialisable; ``rows`` not n
            non-negative integers. Raised before anything is written.

        Notes
        -----
        The file is written under a temporary name in the same directory and renamed: nothing
        half-written is left. It is created like any ``open(path, "w")`` (mode 0666 less the umask).
        """
        fit = self.with_data_info(preparation=preparation, rows=rows)
        if include_factor and (self.factor is None or not hasattr(self.factor, "to_arrays")):
            raise InvalidInputError("include_factor=True needs a kept SciPy Cholesky factor "
                                    "(options=SolveOptions(keep_factor=True), backend='scipy', solver='cholesky').")
        if include_data and self.X_train is None and not isinstance(self.kernel, Precomputed):
            raise InvalidInputError("include_data=True but this interpolant has no training inputs attached; "
                                    "load it with load_interpolant(path, X_train) first.")
        _check_kernel_round_trips(self.kernel)
        arrays, values = {}, {}
        for f in fields(fit):
            how, v = f.metadata.get("store", "json"), getattr(fit, f.name)
            if how == "array":
                if v is not None:
                    arrays[f.name] = np.asarray(v)
            elif how is not None:
                values[f.name] = _ENCODE[how](v)
        fac_meta = None
        if include_factor:
            arrays.update(self.factor.to_arrays())
            fac_meta = {"kind": self.factor.kind, "n": self.factor.shape[0], "tile": self.factor.panels.tile,
                        "dtype": self.factor.dtype.name}
        if include_data and self.X_train is not None:
            arrays["X_train"] = np.asarray(self.X_train)
        meta = {"format": _FORMAT_NAME, "version": FORMAT_VERSION, "kernelgen_version": __version__,
                "fields": values, "factor": fac_meta, "data_included": "X_train" in arrays}
        meta = json.loads(json.dumps(meta, default=_json_default))
        meta["content_sha256"] = _content_hash(arrays, meta)
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        _atomic_savez(os.fspath(path), arrays)

    @classmethod
    def load(cls, path, X_train=None) -> "KernelInterpolant":
        """Read a file written by :meth:`save`, checking format, version, content and training data.

        Parameters
        ----------
        path : str or path-like
        X_train : array of shape (n, d), optional
            The training data (or, for a precomputed kernel, K itself); its sha256 must match the
            file's. Needed to predict with a computed kernel unless the file holds the data
            (``save(..., include_data=True)``).

        Returns
        -------
        KernelInterpolant
            With ``preparation``, ``rows`` and ``notes`` as saved, and ``provenance["loaded"]``.

        Raises
        ------
        CorruptFileError
            Not a kernelgen interpolant file (foreign, empty, truncated, holding pickles), or
            modified since it was written (content sha256).
        FormatVersionError
            Another format version (the message names the file's and this kernelgen's).
        DataMismatchError
            X_train is not the data the interpolant was fitted on.
        KernelIdentityError
            The kernel class recorded in the file is not the one its name denotes now.
        """
        meta, arrays = _read_file(path)
        try:
            values = meta["fields"]
            kw = {}
            for f in fields(cls):
                how = f.metadata.get("store", "json")
                if how == "array":
                    kw[f.name] = arrays.get(f.name)
                elif how is not None and f.name in values:
                    kw[f.name] = _DECODE[how](values[f.name])
            fm = meta.get("factor")
            factor = None if fm is None else CholeskyFactor.from_arrays(arrays, fm["n"], fm["tile"], fm["dtype"])
            X_file = arrays.get("X_train")
        except KernelgenError:
            raise  # named already (e.g. KernelIdentityError from Kernel.from_dict)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptFileError(f"{path} has a valid checksum but unreadable fields ({type(exc).__name__}: "
                                   f"{exc}): not written by kernelgen {__version__}'s save. Refit.") from exc
        X64 = None
        if X_train is not None:
            X64 = as_float_array(X_train, "X_train", ndim=(2,), dtype=np.float64)
            if data_fingerprint(X64) != kw.get("data_sha256"):
                prep, rws = kw.get("preparation"), kw.get("rows")
                raise DataMismatchError(
                    f"X_train (shape {X64.shape}) is not the data this interpolant was fitted on (sha256 differs): "
                    f"the file expects shape {kw.get('data_shape')}"
                    + (f", prepared as {prep!r}" if prep is not None else "")
                    + (f", rows {rws[:5].tolist()}{'...' if rws.size > 5 else ''} of the prepared set"
                       if rws is not None else "")
                    + ". Pass the same training data, in the same order and with the same values.")
        if isinstance(kw["kernel"], Precomputed):
            X64 = None
        elif X64 is None and X_file is not None:
            X64 = X_file
        prov = dict(kw.get("provenance") or {})
        prov["loaded"] = {"path": os.fspath(path), "by": provenance()}
        kw.update(provenance=prov, factor=factor, X_train=X64, plan=None)
        fit = cls(**kw)
        if factor is not None and fit.X_train is not None:
            fit = attach_resolver(fit)
        return fit


def _check_preparation(prep):
    """``prep`` when it is a JSON-serialisable dict or str (InvalidInputError otherwise)."""
    try:
        ok = isinstance(prep, (dict, str)) and json.loads(json.dumps(prep, allow_nan=False)) == prep
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidInputError(f"preparation must be a short JSON-serialisable dict or str (string keys; e.g. "
                                f"{{'dataset': 'mnist', 'transform': 'pixels/255'}}), got {prep!r}.")
    return prep


def _check_rows(rows, n: int) -> np.ndarray:
    """``rows`` as a read-only int64 array of n non-negative indices (InvalidInputError otherwise)."""
    r = np.asarray(rows)
    if r.dtype.kind not in "iu" or r.ndim != 1 or r.shape[0] != n or (r.size and r.min() < 0):
        raise InvalidInputError(f"rows must be the {n} non-negative integer indices of the training rows (1-D; a "
                                f"boolean mask m becomes np.flatnonzero(m)), got {r.dtype} of shape {r.shape}.")
    r = np.array(r, dtype=np.int64)
    r.setflags(write=False)
    return r


_ENCODE = {"json": lambda v: v, "tuple": lambda v: None if v is None else list(v),
           "kernel": lambda k: k.to_dict(), "options": lambda o: o.to_dict(),
           "certificate": lambda c: c.to_dict()}
_DECODE = {"json": lambda v: v, "tuple": lambda v: None if v is None else tuple(v),
           "kernel": lambda d: Kernel.from_dict(d), "options": lambda d: SolveOptions(**d),
           "certificate": lambda d: Certificate.from_dict(d)}


def _read_file(path):
    """(metadata, arrays) of a kernelgen interpolant file, or CorruptFileError / FormatVersionError."""
    try:
        loaded = np.load(os.fspath(path), allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(f"{path} is not a readable kernelgen interpolant file (empty, truncated, not an "
                               f".npz, or holding pickled objects): {type(exc).__name__}: {exc}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise CorruptFileError(f"{path} holds a single array (.npy), not a kernelgen interpolant (.npz).")
    try:
        with loaded as z:
            if "__meta__" not in z.files:
                raise CorruptFileError(f"{path} is not a kernelgen interpolant file (no metadata).")
            meta = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except (ValueError, EOFError, zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path} is corrupt (truncated or damaged): {type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise CorruptFileError(f"{path} holds {meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}"
                               f", not a {_FORMAT_NAME} file.")
    if meta.get("version") != FORMAT_VERSION:
        raise FormatVersionError(
            f"{path} has format version {meta.get('version')!r} (written by kernelgen "
            f"{meta.get('kernelgen_version')}); "
            f"this kernelgen ({__version__}) reads format version {FORMAT_VERSION}. Refit, or load it with the "
            "kernelgen version that wrote it.")
    stored = meta.pop("content_sha256", None)
    if stored is None or stored != _content_hash(arrays, meta):
        raise CorruptFileError(
            f"{path} has been modified since it was written (its content sha256 does not match): the arrays or "
            "the certificate were changed. Refit, or restore the original file.")
    return meta, arrays


def _atomic_savez(path: str, arrays: dict) -> None:
    """np.savez to a fresh temporary file beside ``path`` (mode 0666 less the umask), then rename."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise FileNotFoundError(f"cannot save to {path}: the directory {d} does not exist; create it first.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a directory; name a file (e.g. {path}/fit.npz).")
    atomic_write(path, lambda f: np.savez(f, **arrays), prefix=".kernelgen-")
    log.debug("saved %s", path)


# ---------------------------------------------------------------- building from a solve
def _kernel_times(kern, X64, K, alpha) -> np.ndarray:
    """K alpha by a direct float64 product of the kernel alone (the caller's K in row blocks, else recomputed)."""
    if K is not None:
        K = np.asarray(K)
        out = np.empty((K.shape[0], alpha.shape[1]), dtype=np.float64)
        step = 4096  # row blocks: every GEMM far inside the BLAS call limits (kernelgen.numerics.CALL_LIMITS)
        for i in range(0, K.shape[0], step):
            out[i:i + step] = np.asarray(K[i:i + step], dtype=np.float64) @ alpha
        return out
    return kern.symmetric_apply(X64, alpha, desc="float64 K alpha (ridge > 0)")


def _certify(alpha, R, Y2, ridge, KA=None):
    """alpha_j^T K alpha_j from the verified product K alpha = Y - R - ridge alpha (or ``KA`` when given).

    With a ridge, Y - R - ridge alpha cancels as ridge |alpha| outgrows K alpha (it lost all digits at
    ridge = 1e17 with a unit kernel): :func:`build_interpolant` then passes a direct product K alpha.
    """
    if KA is None:
        KA = Y2 - R - ridge * alpha
    # scaled: alpha^T K alpha can under- or overflow where the norm itself is representable
    sa = float(np.max(np.abs(alpha))) if alpha.size else 0.0
    sk = float(np.max(np.abs(KA))) if KA.size else 0.0
    if sa == 0.0 or sk == 0.0:
        return KA, np.zeros(alpha.shape[1]), 0.0
    scaled = np.einsum("ij,ij->j", alpha / sa, KA / sk)
    total = float(scaled.sum())
    if not np.isfinite(total):
        raise NonFiniteResultError("alpha^T K alpha is not finite: the coefficients or K alpha overflowed.")
    with np.errstate(over="ignore", under="ignore"):
        aka = scaled * (sa * sk)
        norm = float(np.sqrt(max(0.0, total)) * np.sqrt(sa) * np.sqrt(sk))
    return KA, aka, norm


def build_interpolant(sol: Solution, Y2, squeeze, kern, X64, K, ridge, opts, *, prov=None, data_sha=None):
    """The KernelInterpolant of the orchestration's :class:`Solution` (certified norms; ``solve`` when the factor is kept).

    ``X64`` (the validated training inputs; the solvers pass the caller's float64 array without a
    copy) is copied once into a read-only array the fit owns (:func:`_owned_readonly`: n * d * 8
    bytes), unless it is already read-only float64; a kept operator is pointed at that copy.
    """
    KA = None
    if ridge > 0:
        # one more float64 pass: K alpha itself, not Y - R - ridge alpha, which cancels when the ridge dominates
        log.info("ridge > 0: K alpha for the RKHS norm and fitted values by one direct float64 product")
        KA = _kernel_times(kern, X64, K, sol.alpha)
    KA, aka, norm = _certify(sol.alpha, sol.residual, Y2, ridge, KA)
    fit = KernelInterpolant(
        alpha=sol.alpha[:, 0] if squeeze else sol.alpha, kernel=kern, certificate=sol.certificate,
        alpha_K_alpha=aka, rkhs_norm=norm, ridge=ridge, timings=dict(sol.timings), plan=sol.plan,
        fitted=KA[:, 0] if squeeze else KA, options=opts, factor=sol.factor if opts.keep_factor else None,
        provenance=prov if prov is not None else provenance(),
        X_train=X64, data_sha256=data_sha or data_fingerprint(K if X64 is None else X64),
        data_shape=None if K is None else tuple(np.shape(K)), notes=tuple(sol.notes),
        factor_info=_factor_info(sol.factor))
    if not opts.keep_factor and callable(getattr(sol.factor, "close", None)):
        sol.factor.close()  # an out-of-core factor's scratch file is removed as soon as it is not needed
    op = sol.operator
    if opts.keep_factor and op is not None:
        if X64 is not None and getattr(op, "X64", None) is X64 and fit.X_train is not X64 and hasattr(op, "rebind"):
            op.rebind(fit.X_train)  # the kept operator must read the fit's own copy, not the caller's array
        fit = _with_resolver(fit, op, sol.factor)
    return fit


def _factor_info(factor) -> dict:
    """What the factorisation reports about itself (kind, dtype, storage; bytes and I/O for a factor on disk)."""
    describe = getattr(factor, "describe", None)
    if not callable(describe):
        return {}
    try:
        info = describe()
    except Exception:  # pragma: no cover - a custom factor's describe is informative only
        return {}
    return json.loads(json.dumps(info, default=_json_default)) if isinstance(info, dict) else {}


def _with_resolver(fit, operator, factor):
    """Give ``fit`` its ``solve`` for new targets: the kept factor and the float64 operator, through the
    orchestration's own iteration (:func:`~kernelgen.solvers._orchestrate.iterate`).

    The closure holds the fit's fields, never the fit itself: a fit -> closure -> fit cycle would keep
    the factor and the operator (gigabytes at n = 60,000) alive after the last reference to the fit
    is gone, until a garbage collection happens to run -- so the next solve's memory plan would see
    them still allocated.
    """
    opts, n_train, backend, plan = fit.options, fit.n_train, fit.backend, fit.plan
    kernel, X_train, ridge, data_sha = fit.kernel, fit.X_train, fit.ridge, fit.data_sha256
    K = getattr(operator, "K", None) if fit.residual_mode == "precomputed" else None

    def resolve(Y_new, tol_new):
        t0 = time.perf_counter()
        Yn, sq = prepare_targets(Y_new, n_train)
        o = opts if tol_new is None else replace(opts, tol=tol_new)
        res, cert = iterate(operator, factor, Yn, o, backend_name=backend)
        sol = Solution(alpha=res.alpha, residual=res.residual, certificate=cert, factor=factor, operator=operator,
                       plan=plan, timings={"refine": time.perf_counter() - t0})
        return build_interpolant(sol, Yn, sq, kernel, X_train, K, ridge, opts, data_sha=data_sha)

    object.__setattr__(fit, "_resolve", resolve)
    return fit


def attach_resolver(fit):
    """After loading a saved factor: rebuild the float64 operator and allow ``fit.solve``."""
    opts = fit.options
    system = KernelSystem(fit.kernel, fit.X_train, None, fit.ridge, OperatorMode.ON_THE_FLY, opts.tile, False)
    return _with_resolver(fit, system, fit.factor)


def _check_kernel_round_trips(kernel) -> None:
    """Refuse, before writing, a kernel that a later load would not rebuild as the same class and parameters."""
    try:
        back = Kernel.from_dict(json.loads(json.dumps(kernel.to_dict(), default=_json_default)))
    except KernelgenError as exc:
        raise KernelIdentityError(
            f"{type(kernel).__name__} cannot be saved: its description does not load back ({exc}). Give the class a "
            "name of its own (class attribute `name`), so that the file can record and find it.") from exc
    if type(back) is not type(kernel) or back != kernel:
        raise KernelIdentityError(
            f"{kernel!r} would load back as {back!r}: a subclass without a `name` of its own is saved under its "
            "parent's name. Give the class a name of its own (class attribute `name`); nothing was written.")


def _content_hash(arrays: dict, meta: dict) -> str:
    """sha256 over every stored array (name, dtype, shape, bytes) and the metadata (canonical JSON)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True, default=_json_default).encode())
    return h.hexdigest()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.dtype, type)):
        return str(o)
    return repr(o)


