"""The fitted kernel interpolant: immutable, certified, saveable (private; see kernelgen.solvers).

:func:`build_interpolant` packages a backend's raw outcome into a :class:`KernelInterpolant` (the
RKHS norm from the verified product, and ``solve`` for new targets when the factor is kept);
:meth:`KernelInterpolant.load` gives a loaded factor the same ``solve`` (:func:`attach_resolver`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from .._validation import as_float_array
from .._version import __version__
from ..errors import FormatVersionError, InvalidInputError, NonFiniteResultError, ShapeMismatchError
from ..factors import CholeskyFactor
from ..kernels import Kernel, Precomputed
from ..options import SolveOptions
from ..provenance import provenance
from ._refine import refine
from ._system import KernelSystem, check_interpolates, float64_refactor, pinv_refine, prepare_targets

__all__ = ["KernelInterpolant", "FORMAT_VERSION", "attach_resolver", "build_interpolant", "data_fingerprint"]

#: Version of the file format written by :meth:`KernelInterpolant.save`.
FORMAT_VERSION = 1
_FORMAT_NAME = "kernelgen.KernelInterpolant"


def data_fingerprint(X) -> str:
    """sha256 of a float64 C-ordered copy of X, prefixed by its shape (identifies training data)."""
    A = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    h = hashlib.sha256(str(A.shape).encode())
    h.update(A.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class KernelInterpolant:
    """The exact kernel interpolant returned by :func:`kernelgen.kernel_interpolate` (immutable).

    Attributes
    ----------
    alpha : ndarray of shape (n,) or (n, n_targets)
        Coefficients, float64.
    kernel : Kernel
        The kernel, with every data-dependent default resolved (e.g. the bandwidth chosen).
    relative_residual : float
        The certificate of ||Y - (K + ridge I) alpha||_F / ||Y||_F, independent of the factor it
        certifies. With ``residual_certificate == "direct"``: that residual computed by a direct
        float64 product (the kernel recomputed blockwise, or the caller's precomputed K). With
        ``"bound"``: a proven upper bound on it in exact arithmetic (equal to
        ``relative_residual_bound``; see :mod:`kernelgen.solvers._refine`).
    relative_residual_bound : float or None
        The proven bound on the exact-arithmetic relative residual, where the float64 product has
        one (on-the-fly Gaussian / Laplace, ``SolveOptions(certificate="auto")``); else None.
    residual_certificate : {"direct", "bound"}
        What certifies alpha (above).
    last_direct_residual : float or None
        The last relative residual computed by a direct product (the starting point's when the
        bound certified the final alpha).
    alpha_K_alpha : ndarray of shape (n_targets,)
        alpha_j^T K alpha_j per target (squared RKHS norm of each interpolating function).
    rkhs_norm : float
        sqrt(sum_j alpha_j^T K alpha_j).
    ridge : float
        What was added to the diagonal (0 unless asked; kernelgen never adds jitter).
    solver, backend : str
        What ran.
    factor_dtype : str
        dtype of the factor (float32 = mixed precision with a float64 iteration).
    residual_mode : str
        How the float64 residual was computed: "stored" (float64 kernel triangle), "on-the-fly"
        (recomputed blockwise per pass), "precomputed" (the caller's K), "recomputed" (min_norm:
        one independent blockwise pass).
    rank, rank_tol, condition_number
        Numerical rank and its threshold (``min_norm``), rank = n for Cholesky; condition number
        of the kept spectrum (``min_norm``), None for Cholesky.
    history : tuple of dict
        Each float64 residual reached (step, kind, relative_residual, seconds).
    n_matvecs : int
        float64 kernel passes.
    timings : dict
        Seconds per phase.
    plan : MemoryPlan or None
    fitted : ndarray of shape (n,) or (n, n_targets)
        K alpha on the training points from the final float64 product.
    options : SolveOptions
    factor : Factor or None
        Kept when ``options.keep_factor`` (or loaded with the file).
    provenance : dict
        Package versions, BLAS and threads, CPU, git commit, date (:func:`kernelgen.provenance`).
    """

    alpha: np.ndarray
    kernel: Kernel
    relative_residual: float
    alpha_K_alpha: np.ndarray
    rkhs_norm: float
    ridge: float
    solver: str
    backend: str
    factor_dtype: str
    residual_mode: str
    rank: int | None = None
    rank_tol: float | None = None
    condition_number: float | None = None
    history: tuple = ()
    n_matvecs: int = 0
    relative_residual_bound: float | None = None
    residual_certificate: str = "direct"
    last_direct_residual: float | None = None
    timings: dict = field(default_factory=dict)
    plan: Any = None
    fitted: np.ndarray | None = field(default=None, repr=False)
    options: SolveOptions = field(default_factory=SolveOptions, repr=False)
    factor: Any = field(default=None, repr=False)
    provenance: dict = field(default_factory=dict, repr=False)
    X_train: np.ndarray | None = field(default=None, repr=False, compare=False)
    data_sha256: str | None = field(default=None, repr=False)
    _resolve: Callable | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        for name in ("alpha", "fitted", "alpha_K_alpha"):
            a = getattr(self, name)
            if a is not None:
                a = np.asarray(a)
                a.setflags(write=False)
                object.__setattr__(self, name, a)
        if not np.all(np.isfinite(self.alpha)):
            raise NonFiniteResultError("the coefficients alpha are not finite; nothing is returned.")

    @property
    def n_train(self) -> int:
        return self.alpha.shape[0]

    @property
    def jitter(self) -> float:
        """Always 0.0: kernelgen never adds jitter (``ridge`` is what was asked)."""
        return 0.0

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
        """
        A = np.asarray(self.alpha).reshape(self.n_train, -1)
        if isinstance(self.kernel, Precomputed):
            Kn = as_float_array(X_new, "K_new", ndim=(2,), dtype=np.float64)
            if Kn.shape[1] != self.n_train:
                raise ShapeMismatchError(f"precomputed K_new must have {self.n_train} columns, got {Kn.shape[1]}.")
            P = Kn @ A
        else:
            if self.X_train is None:
                raise InvalidInputError("this interpolant has no training data attached; load it with X_train.")
            Xn = as_float_array(X_new, "X_new", ndim=(2,), dtype=np.float64)
            if Xn.shape[1] != self.X_train.shape[1]:
                raise ShapeMismatchError(f"X_new has {Xn.shape[1]} features, training data had {self.X_train.shape[1]}.")
            if self.backend == "jax":
                P = self.kernel.apply_jax(Xn, self.X_train, A)
            else:
                P = self.kernel.apply(Xn, self.X_train, A, verbose=verbose, desc="predict")
        if not np.all(np.isfinite(P)):
            raise NonFiniteResultError("predictions are not finite (the kernel overflowed on X_new).")
        return P[:, 0] if self.alpha.ndim == 1 else P

    # ---------------------------------------------------------------- factor reuse
    def solve(self, Y_new, *, tol: float | None = None) -> "KernelInterpolant":
        """Interpolate new targets with the same factor (needs ``options.keep_factor=True``).

        Returns a new KernelInterpolant (float64 iteration to ``tol``, default ``options.tol``).
        """
        if self._resolve is None:
            raise InvalidInputError("this interpolant did not keep its factor; refit with "
                                    "options=SolveOptions(keep_factor=True).")
        return self._resolve(Y_new, tol)

    def logdet(self, *, float64: bool = False, verbose: bool = False):
        """log det (K + ridge I) from the factor, with its precision (:class:`kernelgen.factors.LogDet`).

        Parameters
        ----------
        float64 : bool
            Refactor in float64 when the kept factor is float32 (planner-checked; raises
            MemoryBudgetError when it cannot fit), so the value is the float64 one.
        """
        if self.factor is None:
            raise InvalidInputError("no factor kept; refit with options=SolveOptions(keep_factor=True).")
        if not float64 or self.factor.dtype == np.float64 or self.factor.kind != "cholesky":
            return self.factor.logdet()
        return float64_refactor(self, verbose=verbose).logdet()

    # ---------------------------------------------------------------- persistence
    def save(self, path, *, include_factor: bool = False) -> None:
        """Write the interpolant to ``path`` (NumPy ``.npz``; format below), atomically.

        Stored: format name and version, kernelgen version, the kernel (``Kernel.to_dict``), the
        sha256 of the training data (:func:`data_fingerprint`; the data themselves are not stored),
        alpha, fitted values and the certificate (residual, history, rank, what ran, options,
        provenance); with ``include_factor`` the Cholesky factor (n^2/2 entries of its dtype).
        The file is written to a temporary name and renamed: nothing half-written is left.

        Raises
        ------
        InvalidInputError
            ``include_factor`` without a kept factor, or a factor kind that cannot be stored.
        """
        arrays = {"alpha": np.asarray(self.alpha), "fitted": np.asarray(self.fitted),
                  "alpha_K_alpha": np.asarray(self.alpha_K_alpha)}
        fac_meta = None
        if include_factor:
            if self.factor is None or not hasattr(self.factor, "to_arrays"):
                raise InvalidInputError("include_factor=True needs a kept SciPy Cholesky factor "
                                        "(options=SolveOptions(keep_factor=True), backend='scipy', solver='cholesky').")
            arrays.update(self.factor.to_arrays())
            fac_meta = {"kind": self.factor.kind, "n": self.factor.shape[0], "tile": self.factor.panels.tile,
                        "dtype": self.factor.dtype.name}
        meta = {
            "format": _FORMAT_NAME, "version": FORMAT_VERSION, "kernelgen_version": __version__,
            "kernel": self.kernel.to_dict(), "data_sha256": self.data_sha256,
            "n_features": None if self.X_train is None else int(self.X_train.shape[1]),
            "relative_residual": self.relative_residual, "rkhs_norm": self.rkhs_norm, "ridge": self.ridge,
            "solver": self.solver, "backend": self.backend, "factor_dtype": self.factor_dtype,
            "residual_mode": self.residual_mode, "rank": self.rank, "rank_tol": self.rank_tol,
            "condition_number": self.condition_number, "history": list(self.history), "n_matvecs": self.n_matvecs,
            "relative_residual_bound": self.relative_residual_bound,
            "residual_certificate": self.residual_certificate, "last_direct_residual": self.last_direct_residual,
            "timings": self.timings, "options": self.options.to_dict(), "provenance": self.provenance,
            "factor": fac_meta,
        }
        meta_json = json.dumps(meta, default=_json_default)
        meta["content_sha256"] = _content_hash(arrays, json.loads(meta_json))
        arrays["__meta__"] = np.frombuffer(json.dumps(meta, default=_json_default).encode(), dtype=np.uint8)
        path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".kernelgen-", suffix=".npz.tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path, X_train=None) -> "KernelInterpolant":
        """Read a file written by :meth:`save`, checking format, version and training data.

        Parameters
        ----------
        path : str or path-like
        X_train : array of shape (n, d), optional
            The training data (or, for a precomputed kernel, K itself). Required to predict with a
            computed kernel; its sha256 must match the file's.

        Raises
        ------
        FormatVersionError
            Not a kernelgen interpolant, another format version, or X_train differs from the data
            the interpolant was fitted on.
        """
        try:
            loaded = np.load(os.fspath(path), allow_pickle=False)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise FormatVersionError(f"{path} is not a readable kernelgen interpolant file (empty, truncated, not an "
                                     f".npz, or holding pickled objects): {type(exc).__name__}: {exc}") from exc
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise FormatVersionError(f"{path} holds a single array (.npy), not a kernelgen interpolant (.npz).")
        try:
            with loaded as z:
                if "__meta__" not in z.files:
                    raise FormatVersionError(f"{path} is not a kernelgen interpolant file (no metadata).")
                meta = json.loads(bytes(z["__meta__"]).decode())
                if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
                    raise FormatVersionError(f"{path} holds {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                                             f"not a {_FORMAT_NAME}.")
                if meta.get("version") != FORMAT_VERSION:
                    raise FormatVersionError(
                        f"{path} has format version {meta.get('version')} (written by kernelgen "
                        f"{meta.get('kernelgen_version')}); this kernelgen reads version {FORMAT_VERSION}. Refit, or "
                        "load it with the kernelgen version that wrote it.")
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except (ValueError, EOFError, zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
            raise FormatVersionError(f"{path} is corrupt: {type(exc).__name__}: {exc}") from exc
        stored = meta.pop("content_sha256", None)
        if stored is None or stored != _content_hash(arrays, meta):
            raise FormatVersionError(
                f"{path} has been modified since it was written (its content sha256 does not match): the arrays or "
                "the certificate were changed. Refit, or restore the original file.")
        kernel = Kernel.from_dict(meta["kernel"])
        X64 = None
        if X_train is not None:
            X64 = as_float_array(X_train, "X_train", ndim=(2,), dtype=np.float64)
            if data_fingerprint(X64) != meta["data_sha256"]:
                raise FormatVersionError(
                    f"X_train (shape {X64.shape}) is not the data this interpolant was fitted on (sha256 differs); "
                    "pass the same training data, in the same order and dtype values.")
            if isinstance(kernel, Precomputed):
                X64 = None
        factor = None
        fm = meta.get("factor")
        if fm is not None:
            factor = CholeskyFactor.from_arrays(arrays, fm["n"], fm["tile"], fm["dtype"])
        prov = dict(meta.get("provenance") or {})
        prov["loaded"] = {"path": os.fspath(path), "by": provenance()}
        fit = cls(
            alpha=arrays["alpha"], kernel=kernel, relative_residual=meta["relative_residual"],
            alpha_K_alpha=arrays["alpha_K_alpha"], rkhs_norm=meta["rkhs_norm"], ridge=meta["ridge"],
            solver=meta["solver"], backend=meta["backend"], factor_dtype=meta["factor_dtype"],
            residual_mode=meta["residual_mode"], rank=meta["rank"], rank_tol=meta["rank_tol"],
            condition_number=meta["condition_number"], history=tuple(meta["history"]), n_matvecs=meta["n_matvecs"],
            relative_residual_bound=meta.get("relative_residual_bound"),
            residual_certificate=meta.get("residual_certificate", "direct"),
            last_direct_residual=meta.get("last_direct_residual"), timings=dict(meta["timings"]), plan=None, fitted=arrays["fitted"],
            options=SolveOptions(**meta["options"]), factor=factor, provenance=prov, X_train=X64,
            data_sha256=meta["data_sha256"])
        if factor is not None and X64 is not None:
            fit = attach_resolver(fit)
        return fit


# ---------------------------------------------------------------- building from a solve
def _certify(alpha, R, Y2, ridge):
    """alpha_j^T K alpha_j from the verified product K alpha = Y - R - ridge alpha."""
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


def build_interpolant(out, Y2, squeeze, kern, X64, K, ridge, opts, backend, *, prov=None, data_sha=None):
    """The KernelInterpolant of a backend's raw outcome ``out`` (certified norms; a resolver when the factor is kept)."""
    res = out["result"]
    KA, aka, norm = _certify(res.alpha, res.residual, Y2, ridge)
    fit = KernelInterpolant(
        alpha=res.alpha[:, 0] if squeeze else res.alpha, kernel=kern, relative_residual=res.relative_residual,
        alpha_K_alpha=aka, rkhs_norm=norm, ridge=ridge, solver=out["solver"], backend=backend,
        factor_dtype=out["factor_dtype"], residual_mode=out["residual_mode"], rank=out.get("rank"),
        rank_tol=out.get("rank_tol"), condition_number=out.get("condition_number"), history=tuple(res.history),
        n_matvecs=res.n_matvecs, relative_residual_bound=res.relative_residual_bound,
        residual_certificate=res.certificate, last_direct_residual=res.last_direct_residual,
        timings=out["timings"], plan=out.get("plan"),
        fitted=KA[:, 0] if squeeze else KA, options=opts,
        factor=out.get("factor") if opts.keep_factor else None,
        provenance=prov if prov is not None else provenance(),
        X_train=X64, data_sha256=data_sha or data_fingerprint(K if X64 is None else X64))
    if opts.keep_factor and out.get("system") is not None:
        fit = _with_resolver(fit, out["system"], out["factor"], out.get("precond"))
    return fit


def _with_resolver(fit, system, factor, precond=None):
    """Give ``fit`` its ``solve`` for new targets: the kept factor and the float64 operator of its system."""
    opts = fit.options
    precond = precond or factor.solve

    def resolve(Y_new, tol_new):
        t0 = time.perf_counter()
        Yn, sq = prepare_targets(Y_new, fit.n_train)
        if fit.solver == "min_norm":
            r = pinv_refine(factor, system, Yn, opts.tol if tol_new is None else tol_new)
            check_interpolates(r, factor, opts if tol_new is None else replace(opts, tol=tol_new))
        else:
            r = refine(system.matvec, precond, Yn, tol=opts.tol if tol_new is None else tol_new,
                       max_iter=opts.max_iter, method=opts.refinement,
                       matvec_error=system.matvec_error(), stop_on_bound=opts.certificate == "bound")
        out = {"result": r, "solver": fit.solver, "factor_dtype": fit.factor_dtype, "residual_mode": fit.residual_mode,
               "rank": fit.rank, "rank_tol": fit.rank_tol, "condition_number": fit.condition_number,
               "timings": {"refine": time.perf_counter() - t0}, "plan": fit.plan, "factor": factor, "system": system,
               "precond": precond}
        return build_interpolant(out, Yn, sq, fit.kernel, fit.X_train, system.K, fit.ridge, opts, fit.backend,
                      data_sha=fit.data_sha256)

    object.__setattr__(fit, "_resolve", resolve)
    return fit


def attach_resolver(fit):
    """After loading a saved factor: rebuild the float64 operator and allow ``fit.solve``."""
    opts = fit.options
    system = KernelSystem(fit.kernel, fit.X_train, None, fit.ridge, "on-the-fly", opts.tile, False)
    return _with_resolver(fit, system, fit.factor)


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


