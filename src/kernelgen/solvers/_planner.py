"""Memory planner: every n x n allocation in kernelgen is decided here (private).

The planner turns (n, d, targets, dtypes, memory available) into a path and block
sizes, or refuses *before* anything large is allocated, with the bytes needed, the
bytes available and a remedy.

Dtype policy (the "mixed" path is the default above ``AUTO_FLOAT64_MAX_N``; the one rule is
:func:`kernelgen.options.decide_factor_dtype`):
- the factor is float32 ("mixed") or float64 ("float64");
- the residual Y - K alpha is *always* computed in float64 with the float64 kernel,
  either stored as one lower triangle (when it fits beside the factor) or recomputed
  blockwise on the fly (never a dense float64 n x n);
- iteration (preconditioned CG on the float64 system, the factor as preconditioner)
  continues until the float64 relative residual reaches ``tol`` (default 1e-10).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import platformdirs

from ..errors import (
    InvalidInputError,
    MemoryBudgetError,
    ScratchStorageError,
    UnsupportedOptionError,
)
from ..factors import EIGH_MAX_N, LowerPanels
from ..factors._disk import READ_BUFFERS_BYTES
from ..numerics import CALL_LIMITS, MEMORY_FRACTION, available_memory
from ..options import AUTO_FLOAT64_MAX_N, SolveOptions, decide_factor_dtype

log = logging.getLogger(__name__)

__all__ = ["MemoryPlan", "Plan", "plan_kernel_solve", "check_scratch_directory", "scratch_directory", "disk_free",
           "DISK_WORKING_FRACTION", "available_memory", "AUTO_FLOAT64_MAX_N", "EIGH_MAX_N",
           "DEFAULT_MEMORY_FRACTION", "SMALL_TEMPORARIES", "expected_passes"]

_UNSET = object()  # a loose keyword left at its default (plan_kernel_solve with options=...)
#: Fraction of the available memory the planner lets one solve use by default (the one rule,
#: :data:`kernelgen.numerics.MEMORY_FRACTION`).
DEFAULT_MEMORY_FRACTION = MEMORY_FRACTION
#: The solve's own small temporaries (Python objects, LAPACK's workspaces, the fused passes'
#: cache-sized blocks). The interpreter and its libraries are *not* counted: they are resident
#: already, so the memory available now excludes them, and the default budget's margin
#: (1 - MEMORY_FRACTION) covers their growth. (Counting a fixed 600 MiB on top of that margin
#: refused even n = 50 on a node with 0.7 GB free.)
SMALL_TEMPORARIES = 64 * 2**20


def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB"


def expected_passes(factor_dtype) -> int:
    """Float64 kernel passes a Cholesky-preconditioned solve typically makes (a planning figure, not a limit).

    A float64 factor: 2 (the first product and the verifying one). A float32 factor: 6, what the
    Gaussian (s = 5) MNIST solves made at n = 20,000 to 60,000 (5 to 6; 4 at 10,000, 
    ``benchmarks/json/scaling.json``); ``SolveOptions.max_iter`` is the limit.
    """
    return 2 if np.dtype(factor_dtype) == np.float64 else 6


@dataclass(frozen=True)
class Plan:
    """What a solve will allocate, where, and how (one frozen type for every backend).

    Attributes
    ----------
    n, d, n_targets : int
    path : str
        ``"cholesky"`` or ``"eigh"`` (the minimum-norm route: a factor kind).
    factor_dtype : numpy dtype
        dtype of the Cholesky factor (float32 = mixed precision) or of the eigendecomposition.
    residual : str
        Where the certifying float64 kernel lives: ``"stored"`` (one lower triangle),
        ``"on-the-fly"`` (recomputed blockwise per product), ``"precomputed"`` (the caller's K),
        ``"device"`` (accelerator memory), ``"on-the-fly (distributed)"`` (MPI), ``"eigh"``.
    tile : int
    bytes_needed, bytes_available : int
        On the plan's place (host memory; device memory for JAX; one process's share for MPI).
    breakdown : dict[str, int]
        Bytes per object.
    backend : str
    places : dict[str, str]
        Where each n x n object lives ("host", "device", "distributed").
    passes_expected : int
        :func:`expected_passes`.
    storage : str
        Where the factor lives: ``"memory"`` (RAM) or ``"disk"`` (a scratch file, the out-of-core
        factor; ``SolveOptions(storage=...)``).
    scratch_dir : str or None
        The scratch file's directory (storage "disk").
    working_width : int
        Columns of the out-of-core factor's super-panel held in RAM (storage "disk"; 0 otherwise).
    disk_bytes, disk_free : int
        Bytes of the scratch file and bytes free on its file system when planned (storage "disk").
    """

    n: int
    d: int
    n_targets: int
    path: str
    factor_dtype: np.dtype
    residual: str
    tile: int
    bytes_needed: int
    bytes_available: int
    breakdown: dict
    backend: str = "scipy"
    places: dict = field(default_factory=dict)
    passes_expected: int = 0
    storage: str = "memory"
    scratch_dir: str | None = None
    working_width: int = 0
    disk_bytes: int = 0
    disk_free: int = 0

    def describe(self) -> str:
        parts = ", ".join(f"{k} {_gb(v)}" for k, v in self.breakdown.items())
        disk = (f"; factor on disk in {self.scratch_dir} ({_gb(self.disk_bytes)} of {_gb(self.disk_free)} free, "
                f"super-panel width {self.working_width})" if self.storage == "disk" else "")
        return (f"{self.backend} {self.path} n={self.n}: factor {np.dtype(self.factor_dtype).name}, float64 residual "
                f"{self.residual}, tile {self.tile}; needs {_gb(self.bytes_needed)} of "
                f"{_gb(self.bytes_available)} of RAM ({parts}){disk}")

    def to_dict(self) -> dict:
        """The plan as a JSON-serialisable dict (dtype as its name)."""
        out = asdict(self)
        out["factor_dtype"] = np.dtype(self.factor_dtype).name
        return out


#: The former name of :class:`Plan`.
MemoryPlan = Plan


def plan_kernel_solve(
    n: int,
    d: int,
    n_targets: int,
    *,
    solver: str = "cholesky",
    dtype=_UNSET,
    precomputed: bool = False,
    memory_budget=_UNSET,
    tile=_UNSET,
    store_kernel=_UNSET,
    float64_max_n=_UNSET,
    options: SolveOptions | None = None,
) -> Plan:
    """Choose the path for solving a kernel system of order n, or refuse.

    Parameters
    ----------
    n, d, n_targets : int
        Samples, features (ignored when ``precomputed``), right-hand sides.
    solver : {"cholesky", "min_norm"}
    dtype : None, "float32", "float64"
        Factor dtype; None applies the dtype policy (module docstring).
    precomputed : bool
        The caller supplies K (already in memory; not counted).
    memory_budget : int, optional
        Bytes this solve may use; default :data:`DEFAULT_MEMORY_FRACTION` (85%) of
        :func:`available_memory`.
    store_kernel : bool, optional
        Force (True) or forbid (False) keeping the float64 kernel triangle.
    tile, float64_max_n : int
        As in :class:`kernelgen.SolveOptions`.
    options : SolveOptions, optional
        The solve's options, passed whole: dtype, memory_budget, tile, store_kernel and
        float64_max_n are read from it (then none of those keywords may be given).

    Raises
    ------
    MemoryBudgetError
        With bytes needed, bytes available and a remedy that fits the cause: when even the
        smallest solve does not fit (too little memory free), freeing memory or a larger
        ``memory_budget``; otherwise a float32 factor (only when it would fit), the largest number
        of samples that fits, or more memory.
    """
    loose = {"dtype": dtype, "memory_budget": memory_budget, "tile": tile, "store_kernel": store_kernel,
             "float64_max_n": float64_max_n}
    given = sorted(k for k, v in loose.items() if v is not _UNSET)
    if options is not None:
        if given:
            raise InvalidInputError(f"plan_kernel_solve: pass either options=SolveOptions(...) or {given}, not both.")
        opts = SolveOptions.coerce(options)
    else:
        opts = SolveOptions(**{k: v for k, v in loose.items() if v is not _UNSET and k != "dtype"},
                            **({"dtype": dtype} if dtype is not _UNSET and dtype is not None else {}))
    dtype, memory_budget, tile = opts.dtype, opts.memory_budget, opts.tile
    store_kernel, float64_max_n = opts.store_kernel, opts.float64_max_n
    for name, v, lo in (("n", n, 1), ("d", d, 0), ("n_targets", n_targets, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InvalidInputError(f"plan_kernel_solve: {name} must be an integer >= {lo}, got {v!r}.")
    if solver == "min_norm" and dtype == "float32":
        raise InvalidInputError("plan_kernel_solve: solver='min_norm' eigendecomposes in float64; dtype='float32' "
                                "cannot hold (use dtype=None or 'float64', or solver='cholesky').")
    explicit = memory_budget is not None
    budget = int(memory_budget if explicit else DEFAULT_MEMORY_FRACTION * available_memory())
    k = max(1, int(n_targets))
    breakdown = _base_breakdown(n, d, k, precomputed)

    if solver == "min_norm":
        if n > EIGH_MAX_N:
            raise MemoryBudgetError(
                f"solver='min_norm' needs a dense float64 eigendecomposition of order {n}, above the "
                f"largest single LAPACK call kernelgen issues ({EIGH_MAX_N}). Remedy: solver='cholesky' "
                "(exact for positive-definite kernels), or a subset of at most "
                f"{EIGH_MAX_N} samples.", 0, budget)
        breakdown.update(_min_norm_parts(n, precomputed))
        need = sum(breakdown.values())
        if need > budget:
            raise MemoryBudgetError(
                f"solver='min_norm' at n={n} needs {_gb(need)} but {_gb(budget)} is available. Remedy: "
                + _remedy(budget, explicit, _largest_n(lambda m: _min_norm_need(m, d, k, precomputed), budget,
                                                       EIGH_MAX_N),
                          _min_norm_need(1, d, k, precomputed), "solver='cholesky' (a float32 triangle, n^2*2 bytes)",
                          _cholesky_need(n, d, k, np.dtype(np.float32), tile, precomputed, False) <= budget),
                need, budget)
        return Plan(n, d, k, "eigh", np.dtype(np.float64), "eigh", n, need, budget, breakdown,
                    places={"eigh": "host"}, passes_expected=2)

    if solver != "cholesky":
        raise InvalidInputError(f"unknown solver {solver!r}")
    fdt = decide_factor_dtype(opts, n)
    tile_req = int(tile)
    tile = int(min(tile, CALL_LIMITS[fdt].potrf_n, max(n, 1)))
    if opts.storage == "disk" and precomputed:
        raise UnsupportedOptionError(
            "SolveOptions(storage='disk') cannot hold with a precomputed kernel: the caller's K is in RAM already, "
            "and the out-of-core factor computes its entries from X. Remedy: pass X and the kernel, or "
            "storage='auto'.")
    if opts.storage == "disk":
        return _disk_plan(n, d, k, fdt, tile, budget, explicit, opts)
    breakdown.update(_cholesky_parts(n, tile, fdt))
    need_min = sum(breakdown.values())
    tri64 = LowerPanels.nbytes_for(n, tile, np.float64)
    if precomputed:
        residual = "precomputed"
    elif store_kernel is True or (store_kernel is None and need_min + tri64 <= budget):
        residual = "stored"
        breakdown["kernel float64"] = tri64
    else:
        residual = "on-the-fly"
    need = sum(breakdown.values())
    if need > budget and opts.storage == "auto" and not precomputed:
        try:
            return _disk_plan(n, d, k, fdt, tile, budget, explicit, opts, ram_need=need)
        except MemoryBudgetError as exc:
            log.info("the factor fits neither in RAM (%s of %s) nor on disk: %s", _gb(need), _gb(budget), exc)
            disk_refusal = exc
    else:
        disk_refusal = None
    if need > budget:
        f32_fits = fdt == np.float64 and _cholesky_need(n, d, k, np.dtype(np.float32), tile_req, precomputed,
                                                        False) <= budget
        def need_at(m, dt):
            return _cholesky_need(m, d, k, np.dtype(dt), tile_req, precomputed, False)

        if dtype is None:  # the policy: float64 up to float64_max_n, float32 above
            m32 = _largest_n(lambda m: need_at(m, np.float32), budget)
            m_max = m32 if m32 > float64_max_n else min(_largest_n(lambda m: need_at(m, np.float64), budget),
                                                         float64_max_n)
        else:
            m_max = _largest_n(lambda m: need_at(m, fdt), budget)
        remedy = _remedy(budget, explicit, m_max, need_at(1, fdt),
                         "dtype='float32' (mixed precision, still exact in float64) halves the factor", f32_fits)
        if opts.storage == "memory" and not precomputed:
            remedy = "SolveOptions(storage='auto' or 'disk') puts the factor in a scratch file; " + remedy
        if disk_refusal is not None:  # storage="auto": the in-RAM refusal, and why the disk could not take it
            remedy += " Out of core it does not fit either: " + str(disk_refusal).split(": ", 1)[-1]
        raise MemoryBudgetError(
            f"an exact kernel solve at n={n} needs {_gb(need)} ({', '.join(f'{a} {_gb(b)}' for a, b in breakdown.items())}) "
            f"but {_gb(budget)} is available. Remedy: {remedy}", need, budget)
    places = {"factor": "host"}
    if residual == "stored":
        places["kernel float64"] = "host"
    plan = Plan(n, d, k, "cholesky", fdt, residual, tile, need, budget, breakdown, places=places,
                passes_expected=expected_passes(fdt))
    log.info("memory plan: %s", plan.describe())
    return plan


# ----------------------------------------------------------------------------- the out-of-core plan
#: Fraction of the RAM budget (after the fixed parts) that the out-of-core factor's super-panel may
#: take; the rest stays free for the page cache, which the triangular solves' backward stream reuses.
#: Bytes read by the factor fall as 1/W ((2/3) n^3 / W in float32): at n = 120,000 and W = 16,384,
#: 70 GB, about 1 minute at 1.2 GB/s against ~47 minutes of SGEMM -- a wider W would not pay.
DISK_WORKING_FRACTION = 0.5


def scratch_directory(opts: SolveOptions) -> str:
    """The out-of-core factor's directory: ``opts.scratch_dir``, ``$KERNELGEN_SCRATCH``, or the platform cache."""
    if opts.scratch_dir:
        return os.path.abspath(os.path.expanduser(opts.scratch_dir))
    env = os.environ.get("KERNELGEN_SCRATCH")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(platformdirs.user_cache_dir("kernelgen"), "scratch")


def _existing_ancestor(path: str) -> str:
    """``path`` or its nearest existing ancestor (absolute): what can be inspected without creating anything."""
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def disk_free(path: str) -> int:
    """Bytes free on the file system of ``path`` (its nearest existing parent: nothing is created)."""
    return int(shutil.disk_usage(_existing_ancestor(path)).free)


def check_scratch_directory(directory: str) -> None:
    """Refuse, before anything is written, a scratch directory that cannot hold the factor's file.

    ``directory`` must be a directory or creatable (its nearest existing ancestor a directory), and
    writable (``os.access``; a read-only file system counts).

    Raises
    ------
    ScratchStorageError
        Naming the path and the remedy.
    """
    p = _existing_ancestor(directory)
    why = None
    if not os.path.isdir(p):
        why = f"{p} is not a directory"
    elif not os.access(p, os.W_OK | os.X_OK):
        why = f"{p} is not writable (permissions or a read-only file system)"
    if why:
        raise ScratchStorageError(
            f"the out-of-core factor's scratch directory {directory} cannot be used: {why}. Remedy: "
            "SolveOptions(scratch_dir=...) (or KERNELGEN_SCRATCH) naming a writable directory with room for the "
            "factor. Nothing was written.")


def _size(b: float) -> str:
    return _gb(b) if b >= 1e8 else f"{b / 1e6:.1f} MB"


def _disk_parts(n, d, k, fdt, tile, width) -> dict:
    parts = _base_breakdown(n, d, k, False)
    parts["super-panel"] = n * width * fdt.itemsize + width * tile * fdt.itemsize
    parts["read-ahead buffers"] = READ_BUFFERS_BYTES(tile, fdt)
    parts["blocks"] = 2 * tile * CALL_LIMITS[np.dtype(np.float64)].gemm_cols * 8
    return parts


def _disk_plan(n, d, k, fdt, tile, budget, explicit, opts, *, ram_need=None) -> Plan:
    """The out-of-core plan: a super-panel width that fits the RAM budget, a scratch file that fits the disk."""
    s = fdt.itemsize
    fixed = sum(_disk_parts(n, d, k, fdt, tile, 0).values())
    cap = min(CALL_LIMITS[fdt].gemm_cols // tile * tile, -(-n // tile) * tile)
    width = int(max(0, DISK_WORKING_FRACTION * (budget - fixed)) // (n * s + tile * s) // tile * tile)
    width = min(width, cap)
    directory = scratch_directory(opts)
    check_scratch_directory(directory)
    file_bytes = LowerPanels.nbytes_for(n, tile, fdt) + 4096
    free = disk_free(directory)
    ram_min = sum(_disk_parts(n, d, k, fdt, tile, tile).values())
    memory_line = (f"RAM: the factor in memory needs {_size(ram_need)}, " if ram_need else "RAM: ")
    ram_short, disk_short = width < tile, file_bytes > free
    if ram_short or disk_short:
        why, remedy = [], []
        if ram_short:
            why.append(f"even a one-tile super-panel needs {_size(ram_min)} of RAM")
            remedy.append("raise SolveOptions(memory_budget=...)" if explicit else "free memory (end other processes)")
        if disk_short:
            why.append(f"the scratch file needs {_size(file_bytes)} of disk in {directory}")
            remedy.append("free disk space or SolveOptions(scratch_dir=...) on a larger disk (or KERNELGEN_SCRATCH)")
        remedy += ["fewer samples", "the MPI backend across machines (backend='mpi')"]
        raise MemoryBudgetError(
            f"an exact kernel solve at n={n} fits neither in RAM nor out of core: {'; '.join(why)}. "
            f"{memory_line}out of core needs at least {_size(ram_min)}; {_size(budget)} available"
            f"{' (memory_budget)' if explicit else ''}. Disk: {_size(file_bytes)} needed, {_size(free)} free in "
            f"{directory}. Remedy: {'; '.join(remedy)}. Nothing was written.", max(ram_min, file_bytes), budget)
    breakdown = _disk_parts(n, d, k, fdt, tile, width)
    need = int(sum(breakdown.values()))
    plan = Plan(n, d, k, "cholesky", fdt, "on-the-fly", tile, need, budget, breakdown,
                places={"factor": "disk"}, passes_expected=expected_passes(fdt), storage="disk",
                scratch_dir=directory, working_width=int(width), disk_bytes=int(file_bytes), disk_free=int(free))
    log.info("memory plan (out of core): %s", plan.describe())
    return plan


# ----------------------------------------------------------------------------- the parts and the remedy
def _base_breakdown(n, d, k, precomputed) -> dict:
    """The parts every path needs: the solve's small temporaries, the float64 vectors, the copies of X."""
    breakdown = {"temporaries": SMALL_TEMPORARIES,
                 "vectors": 8 * n * k * 8}  # alpha, residual, CG directions and products, float64
    if not precomputed:
        breakdown["X"] = n * d * (8 + 4)  # float64 X and a float32 copy
    return breakdown


def _cholesky_parts(n, tile, fdt) -> dict:
    return {"factor": LowerPanels.nbytes_for(n, tile, fdt),
            "blocks": n * tile * fdt.itemsize + 2 * tile * CALL_LIMITS[np.dtype(np.float64)].gemm_cols * 8}


def _min_norm_parts(n, precomputed) -> dict:
    parts = {"eigh (K copy, vectors, workspace)": 3 * n * n * 8}
    if not precomputed:
        parts["K float64"] = n * n * 8
    return parts


def _cholesky_need(n, d, k, fdt, tile, precomputed, stored) -> int:
    """Bytes of the Cholesky path at n (the float64 triangle only when ``stored``)."""
    tile = max(1, int(min(tile, CALL_LIMITS[fdt].potrf_n, max(n, 1))))
    parts = {**_base_breakdown(n, d, k, precomputed), **_cholesky_parts(n, tile, fdt)}
    if stored:
        parts["kernel float64"] = LowerPanels.nbytes_for(n, tile, np.float64)
    return int(sum(parts.values()))


def _min_norm_need(n, d, k, precomputed) -> int:
    return int(sum({**_base_breakdown(n, d, k, precomputed), **_min_norm_parts(n, precomputed)}.values()))


def _largest_n(need_at, budget, cap=2**40) -> int:
    """The largest m <= cap with need_at(m) <= budget (need_at grows with m), 0 when none."""
    if need_at(1) > budget:
        return 0
    lo, hi = 1, 2
    while hi <= cap and need_at(hi) <= budget:
        lo, hi = hi, hi * 2
    hi = min(hi, cap + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if need_at(mid) <= budget else (lo, mid)
    return lo


def _remedy(budget, explicit, m_max, need_one, alternative, alternative_fits) -> str:
    """A remedy that fits the cause of a refusal.

    When not even one sample fits (``m_max == 0``), the cause is the memory free, not the problem's
    size: the remedy is to free memory (or to raise an explicit budget); a float32 factor or fewer
    samples cannot help. Otherwise: ``alternative`` (e.g. a float32 factor) only when it would fit,
    the largest number of samples that fits (``m_max``), more memory.
    """
    if m_max < 1:
        where = (f"SolveOptions(memory_budget={budget}) leaves too little for any solve (the smallest needs "
                 f"{_gb(need_one)}): raise memory_budget" if explicit else
                 f"too little memory is free for any solve ({_gb(budget / DEFAULT_MEMORY_FRACTION)} available "
                 f"now, the smallest solve needs {_gb(need_one)}): free memory (end other processes on this "
                 "machine) or run on a machine with more free memory")
        return where + "; a float32 factor or fewer samples would not help."
    parts = [alternative] if alternative_fits else []
    parts.append(f"use at most {m_max} training samples (what fits in {_gb(budget)})")
    parts.append("free memory, or a machine with more memory")
    return "; ".join(parts) + "."
