"""The out-of-core Cholesky factor of a kernel matrix, built from X in a scratch file (private).

:func:`disk_factor` is what a plan with ``storage == "disk"`` factors: the SciPy backend's ``factor()``
for a solve, and :func:`~kernelgen.solvers._system.float64_refactor` for an exact log-determinant. The
file layout, the algorithm and the resume rules are :mod:`kernelgen.factors._disk`'s.
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
from ..factors._disk import DiskCholeskyFactor, out_of_core_cholesky
from ..kernels._entries import fill_columns
from ._backend import data_fingerprint

log = logging.getLogger(__name__)

__all__ = ["DISK_SHIFTS", "disk_factor"]


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
