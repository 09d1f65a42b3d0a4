"""The SciPy/LAPACK backend: tiled Cholesky or eigendecomposition on the host (private).

Implements :class:`~kernelgen.solvers._backend.Backend`. The plan is the memory planner's
(:func:`~kernelgen.solvers.plan_kernel_solve`); the certifying operator keeps the float64 kernel as
one lower triangle when it fits beside the factor ("stored"), else recomputes it blockwise by the
fused pass ("on-the-fly"), never a dense float64 n x n; the factor is the tiled Cholesky of the
float32 (or float64) triangle -- copied from the stored float64 triangle when there is one, else
filled by the kernel's accurate entries -- or, for the minimum-norm route, a float64
eigendecomposition (:class:`~kernelgen.factors.EighFactor`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time

import numpy as np

from ..errors import NotPositiveDefiniteError, ScratchStorageError
from ..factors import CholeskyFactor, EighFactor, LowerPanels
from ..factors._disk import DiskCholeskyFactor, out_of_core_cholesky
from ..kernels._entries import fill_columns
from ._backend import OperatorMode
from ._planner import plan_kernel_solve
from ._result import data_fingerprint
from ._system import KernelSystem

log = logging.getLogger(__name__)

__all__ = ["ScipyBackend"]


class ScipyBackend:
    """The host backend (module docstring); one instance per solve (it keeps the stored triangle)."""

    name = "scipy"
    factor_kinds = ("cholesky", "eigh")
    storage_kinds = ("memory", "disk")  # where a Cholesky factor may live (SolveOptions.storage)
    bound_capable = True  # its products use the kernel's accurate entries (error_bound where proven)

    def __init__(self, *, precomputed: bool, options, verbose: bool = False):
        self.precomputed, self.options, self.verbose = precomputed, options, verbose
        self._K64 = None  # the stored float64 triangle (LowerPanels), shared by the operator and the factor
        self._operator = None

    def plan(self, n, d, k, options, *, solver="cholesky"):
        return plan_kernel_solve(n, d, k, solver=solver, precomputed=self.precomputed, options=options)

    def operator(self, A, kernel, plan, ridge):
        opts, v = self.options, self.verbose
        if plan.path == "eigh":
            if self.precomputed:
                in_place = opts.overwrite_kernel and A.dtype == np.float64
                # the caller's K may become the factor's workspace: then the products come from the factor
                op = KernelSystem(kernel, None, None, ridge, OperatorMode.FACTOR, opts.tile, v) if in_place \
                    else KernelSystem(kernel, None, A, ridge, OperatorMode.PRECOMPUTED, opts.tile, v)
            else:
                op = KernelSystem(kernel, A, None, ridge, OperatorMode.RECOMPUTED, opts.tile, v)
        elif self.precomputed:
            op = KernelSystem(kernel, None, A, ridge, OperatorMode.PRECOMPUTED, plan.tile, v)
        elif plan.residual == "stored":
            self._K64 = LowerPanels(A.shape[0], plan.tile, np.float64)
            kernel.fill_panels(self._K64, A, verbose=v, desc="kernel (float64)")
            op = KernelSystem(kernel, A, None, ridge, OperatorMode.STORED, plan.tile, v, self._K64)
        else:
            op = KernelSystem(kernel, A, None, ridge, OperatorMode.ON_THE_FLY, plan.tile, v)
        self._operator = op
        return op

    def factor(self, A, kernel, plan, ridge):
        if plan.path == "eigh":
            return self._eigh(A, kernel, ridge)
        if getattr(plan, "storage", "memory") == "disk":
            return disk_factor(A, kernel, plan, ridge, self.options, verbose=self.verbose)
        fdt, n = np.dtype(plan.factor_dtype), A.shape[0]
        if self.precomputed:
            F = LowerPanels.from_dense(A, plan.tile, fdt)
        elif self._K64 is not None and self._K64.tile == plan.tile:
            F = LowerPanels(n, plan.tile, fdt)
            for p_src, p_dst in zip(self._K64.panels, F.panels):
                p_dst[...] = p_src
        else:
            F = LowerPanels(n, plan.tile, fdt)
            kernel.fill_panels(F, A, verbose=self.verbose, desc=f"kernel ({fdt.name})")
        if ridge:
            F.add_to_diagonal(ridge)
        return CholeskyFactor.from_panels(F, verbose=self.verbose)

    def _eigh(self, A, kernel, ridge):
        opts, n = self.options, A.shape[0]
        if self.precomputed:
            mdt = A.dtype
            in_place = self._operator is not None and self._operator.mode == OperatorMode.FACTOR
            work = A if in_place else np.array(A, dtype=np.float64)
        else:
            mdt = np.dtype(np.float64)
            work = kernel.matrix(A, dtype=np.float64)
        if ridge:
            work[np.diag_indices(n)] += ridge
        f = EighFactor.factor(work, matrix_dtype=mdt, rcond=opts.rcond, overwrite=True, check_symmetric=False)
        if self._operator is not None and self._operator.mode == OperatorMode.FACTOR:
            self._operator.K = lambda V, f=f, r=ridge: f.apply(V) - r * V
        return f


#: Diagonal shifts (relative to the mean diagonal of K) tried, in order, when the out-of-core float32
#: factor breaks down: K + delta mean(diag K) I stays positive definite for delta above the float32 rounding of
#: the factorisation (Higham & Pranesh, SIAM J. Sci. Comput. 43(1), 2021, section 3: "shifting"); the
#: float64 iteration still solves the unshifted K + ridge I. A float64 factor on disk would take twice
#: the disk and time: it is not the fallback.
DISK_SHIFTS = (1e-6, 1e-4, 1e-2)


def _problem_fingerprint(A, kernel, ridge, plan) -> dict:
    """What identifies an out-of-core factor: the data's bytes, the kernel, the ridge and the layout."""
    desc = json.dumps(kernel.to_dict(), sort_keys=True, default=repr)
    return {"data": data_fingerprint(A), "kernel": f"{type(kernel).__module__}:{type(kernel).__qualname__}:{desc}",
            "ridge": float(ridge), "tile": int(plan.tile), "dtype": np.dtype(plan.factor_dtype).name}


def _warn_stale(directory: str, keep: str) -> None:
    """Log the other factors left in the scratch directory (killed runs of other problems are never reused)."""
    now = time.time()
    stale = []
    for entry in os.scandir(directory):
        if entry.name.startswith("kernelgen-factor-") and not entry.name.startswith(keep) \
                and not entry.name.endswith(".json"):
            with contextlib.suppress(OSError):
                st = entry.stat()
                stale.append(f"{entry.name} ({st.st_size / 1e9:.2f} GB, {(now - st.st_mtime) / 3600:.1f} h old)")
    if stale:
        log.warning("the scratch directory %s holds %d other factor file(s), left by killed runs of other problems "
                    "or by running solves; they are not reused: %s. Delete them (with their .json) when no solve "
                    "uses them.", directory, len(stale), "; ".join(stale))


def disk_factor(A, kernel, plan, ridge, options, *, verbose=False) -> DiskCholeskyFactor:
    """The out-of-core Cholesky factor of K + ridge I in a scratch file (resumes a killed run of the same problem).

    A float32 breakdown is retried with a diagonal shift (:data:`DISK_SHIFTS`), logged and kept on the
    factor (``diagonal_shift``); a float64 factor breaks down for real (NotPositiveDefiniteError).
    """
    fdt, n = np.dtype(plan.factor_dtype), A.shape[0]
    fp = _problem_fingerprint(A, kernel, ridge, plan)
    name = "kernelgen-factor-" + hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:20]
    try:
        os.makedirs(plan.scratch_dir, exist_ok=True)
    except OSError as exc:
        raise ScratchStorageError(f"cannot create the scratch directory {plan.scratch_dir}: {exc.strerror or exc}. "
                                  "Remedy: SolveOptions(scratch_dir=...) (or KERNELGEN_SCRATCH) naming a writable "
                                  "directory. Nothing was written.") from exc
    _warn_stale(plan.scratch_dir, name)

    def path_of(attempt):  # one file name per shift: a run killed during a shifted refactor resumes that one
        return os.path.join(plan.scratch_dir, name + (f"-shift{attempt}" if attempt else "") + f".{fdt.name}")
    src = kernel.entries(A, None, dtype=fdt)

    def fill(r0, r1, c0, c1, out):
        fill_columns(src, r0, r1, c0, c1, out)

    mean_diag = None
    shifts = (0.0,) + (DISK_SHIFTS if fdt == np.float32 else ())
    # a killed run left the file of the attempt it was in (earlier attempts broke down and were removed)
    first = max([a for a in range(len(shifts)) if os.path.exists(path_of(a) + ".json")], default=0)
    if first:
        log.info("resuming the out-of-core factor with the diagonal shift of a killed run (attempt %d)", first)
    for attempt, rel in enumerate(shifts):
        if attempt < first:
            continue
        path = path_of(attempt)
        shift = 0.0
        if rel:
            if mean_diag is None:
                mean_diag = float(np.mean(kernel.diag(A))) if hasattr(kernel, "diag") else 1.0
            shift = rel * mean_diag
        t0 = time.perf_counter()
        try:
            P, stats = out_of_core_cholesky(path, n, plan.tile, plan.working_width, fdt, fill, fingerprint=fp,
                                            diagonal_add=float(ridge) + shift, verbose=verbose,
                                            desc=f"cholesky ({fdt.name}, out of core)")
        except NotPositiveDefiniteError as exc:
            if attempt + 1 >= len(shifts):
                raise
            log.warning("the out-of-core %s factor broke down (%s); refactoring with a diagonal shift of %.0e "
                        "mean(diag K) I (the float64 iteration still solves the unshifted system)", fdt.name,
                        str(exc).split(":")[0], shifts[attempt + 1])
            continue
        total = time.perf_counter() - t0
        f = DiskCholeskyFactor(P, seconds=total - stats["kernel"], stats=stats, diagonal_shift=shift)
        if shift:
            log.warning("out-of-core factor of K + %.3g I (diagonal shift) used as the preconditioner", shift)
        return f
    raise AssertionError("unreachable")  # pragma: no cover
