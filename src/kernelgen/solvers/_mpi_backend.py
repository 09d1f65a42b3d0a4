"""The distributed backend: ``kernel_interpolate(..., backend="mpi")`` under ``mpiexec -n P`` (private).

Every process calls :func:`kernel_interpolate` with the same X and Y (checked). Then

1. **plan** (per process, before allocating): the local block-cyclic block of the float32 (or
   float64) factor as ScaLAPACK stores it, the copies of X the kernel entries hold, the entry and
   tile workspaces and the vectors of the iteration, against this process's share of the node's
   memory (``MEMORY_FRACTION (0.85) * MemAvailable / processes on the node``, or ``SolveOptions.memory_budget`` per
   process); and the 32-bit index limit of LP64 ScaLAPACK (local block < 2^31 entries, else the
   smallest P that fits is named). Any process refusing makes every process raise the same error.
2. **kernel**: each process computes only its own ``nb x nb`` block-cyclic tiles of the lower
   triangle with the kernel's accurate entries (:meth:`Kernel.entries`), NaN/inf checked per tile.
3. **factor**: ScaLAPACK ``p?potrf`` (:class:`~kernelgen.factors.ScalapackCholesky`); a non-positive
   pivot raises :class:`~kernelgen.errors.NotPositiveDefiniteError` with its global index on every
   process. Optionally saved per process and reloaded on the next run (``KERNELGEN_MPI_CHECKPOINT``).
4. **float64 iteration**: the same :func:`~kernelgen.solvers._refine.refine` as on one machine, on
   replicated (n, k) vectors. The float64 operator (:class:`DistributedKernelSystem`) recomputes
   this process's share of the float64 lower-triangle tiles on the fly and sums the shares with
   ONE ``MPI_Allreduce`` of n x k float64 per kernel pass; the preconditioner is one ``p?potrs`` and
   one Allreduce of n x k. The stopping rule is the recomputed float64 residual <= ``tol``, or with
   ``SolveOptions(certificate="bound")`` the proven bound carried through CG (every pass applied to
   [p, |p|] in the same Allreduce of n x 2k; the products' error bound counts the tile sums and the
   Allreduce's P - 1 additions, :meth:`DistributedKernelSystem.error_bound`).

The backend is :class:`MpiBackend` (the :class:`~kernelgen.solvers._backend.Backend` protocol): the
one orchestration plans, factors, iterates, retries in float64 and certifies, as on one machine.

Every process returns the same :class:`~kernelgen.KernelInterpolant` (alpha checked bit-identical
across processes); its ``predict`` is local (no communication); :func:`predict_mpi` spreads a
prediction over the processes. With ``SolveOptions(keep_factor=True)`` the fit's factor is the
distributed :class:`~kernelgen.factors.ScalapackCholesky`: ``fit.solve`` and ``fit.factor.logdet()``
are then collective (every process calls them), and ``fit.save(include_factor=True)`` cannot store
it -- the per-process blocks are saved with ``KERNELGEN_MPI_CHECKPOINT`` / ``factor.save(dir)``. Every process logs (``rank r/P`` in each message); scripts print on
rank 0 only. An unexpected exception on one process (not one of kernelgen's named errors, which
are raised on all processes alike) is logged and ends the whole job with ``MPI_Abort``, so that a
failure cannot leave the other processes waiting forever in a collective.

Settings (environment, so that they pass through ``mpiexec -x``): ``KERNELGEN_MPI_GRID`` (e.g.
``2x1``; default the most nearly square P_r <= P_c), ``KERNELGEN_MPI_BLOCK`` (block size nb,
default 256), ``KERNELGEN_MPI_CHECKPOINT`` (a directory for the per-process factor blocks),
``KERNELGEN_SCALAPACK`` (the library, see :func:`~kernelgen.factors.load_scalapack`). Every process
reads them (:data:`MPI_ENV_SETTINGS`) and they are agreed in the first collective, together with the
validation of X, Y, kernel and options (:func:`mpi_agree`): processes that see different values all
raise :class:`~kernelgen.errors.SettingsMismatchError` naming the setting and the ranks (a differing
grid would otherwise leave every process waiting in the factorization, a differing block size make
ScaLAPACK reject an argument); a malformed value is an :class:`~kernelgen.errors.InvalidInputError`
on every process, never silently replaced by the default.

References
----------
Blackford et al. ScaLAPACK Users' Guide, SIAM 1997, §4 (block-cyclic layout), PDPOTRF/PDPOTRS.
Higham. Accuracy and Stability of Numerical Algorithms (2nd ed.), ch. 12 (iterative refinement).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array
from ..errors import (
    DataIntegrityError,
    InvalidInputError,
    KernelgenError,
    MemoryBudgetError,
    NonFiniteResultError,
    SettingsMismatchError,
    ShapeMismatchError,
    UnsupportedOptionError,
)
from ..factors._scalapack import (
    BlacsGrid,
    ScalapackCholesky,
    check_int32_local,
    default_grid,
    import_mpi,
    load_scalapack,
    numroc,
)
from ..numerics import CALL_LIMITS, MEMORY_FRACTION, available_memory
from ..options import decide_factor_dtype
from ._backend import OperatorMode, no_entry_bound_reason, product_error_bound, products_with_abs
from ._planner import Plan, expected_passes

log = logging.getLogger(__name__)

__all__ = [
    "DistributedKernelSystem", "MPIPlan", "MPI_ENV_SETTINGS", "MpiBackend", "mpi_agree", "mpi_plan", "mpi_settings",
    "predict_mpi"]

DEFAULT_BLOCK = 256
#: Every environment setting the MPI path reads; all processes of a run must see the same values.
MPI_ENV_SETTINGS = ("KERNELGEN_MPI_GRID", "KERNELGEN_MPI_BLOCK", "KERNELGEN_MPI_CHECKPOINT", "KERNELGEN_SCALAPACK")
_GRIDS: dict = {}


def _world():
    """MPI_COMM_WORLD (mpi4py imported here: optional dependency)."""
    return import_mpi().COMM_WORLD


def mpi_settings(nprocs: int) -> dict:
    """Grid, block size and checkpoint directory from the environment (see the module docstring).

    Raises
    ------
    InvalidInputError
        A malformed ``KERNELGEN_MPI_GRID`` or ``KERNELGEN_MPI_BLOCK``, or a grid of another size than
        the number of processes.
    """
    g = os.environ.get("KERNELGEN_MPI_GRID", "").strip().lower()
    if g:
        try:
            pr, pc = (int(v) for v in g.split("x"))
        except ValueError:
            raise InvalidInputError(f"KERNELGEN_MPI_GRID must look like 2x1, got {g!r}.") from None
        if pr < 1 or pc < 1 or pr * pc != nprocs:
            raise InvalidInputError(f"KERNELGEN_MPI_GRID={g} needs {pr * pc} processes; mpiexec started {nprocs}.")
        grid = (pr, pc)
    else:
        grid = default_grid(nprocs)
    b = os.environ.get("KERNELGEN_MPI_BLOCK", "").strip()
    if b and not (b.isdigit() and int(b) > 0):
        raise InvalidInputError(f"KERNELGEN_MPI_BLOCK must be a positive integer (the block size nb), got {b!r}; "
                                f"unset it for the default {DEFAULT_BLOCK}.")
    nb = int(b) if b else DEFAULT_BLOCK
    return {"grid": grid, "nb": nb, "checkpoint": os.environ.get("KERNELGEN_MPI_CHECKPOINT") or None}


def mpi_plan(n: int, d: int, k: int, *, grid: tuple, nb: int, rank: int, factor_dtype, tile: int) -> dict:
    """Bytes one process needs (pure arithmetic; no MPI): see the module docstring, step 1.

    Returns
    -------
    dict with ``local_shape``, ``local_entries`` and ``bytes`` (total) and its parts.
    """
    pr, pc = grid
    myrow, mycol = divmod(rank, pc)
    locr, locc = numroc(n, nb, myrow, 0, pr), numroc(n, nb, mycol, 0, pc)
    fdt = np.dtype(factor_dtype)
    lim32 = CALL_LIMITS[np.dtype(np.float32)]
    parts = {
        "factor_local_block": max(1, locr) * max(1, locc) * fdt.itemsize,
        "scalapack_workspace": 2 * nb * (locr + locc + nb) * fdt.itemsize,
        # the caller's float64 X, the factor entries' copy (factor dtype; freed after the fill) and the
        # float64 entries' copy (float64, or float32 integers), with squared norms. Counting both
        # entries copies keeps a margin for the interpreter and the caller's other arrays: at 60k on
        # 2 processes this plan says 8.99 GB, the measured peak RSS was 8.99 / 8.96 GB.
        "X_copies": n * d * (8 + fdt.itemsize + 8) + 3 * n * 8,
        # the float64 entries' integer-GEMM buffer (CALL_LIMITS-sized) and the fill / pass tiles
        # (the GEMM buffer is sized by the largest block asked, never more than n x n)
        "entry_workspace": min(n, lim32.gemm_rows) * min(n, lim32.gemm_cols) * 4 + nb * nb * 8 + tile * tile * 8,
        "vectors": 16 * n * k * 8,
    }
    return {"local_shape": (locr, locc), "local_entries": locr * locc, "bytes": int(sum(parts.values())),
            "parts": parts, "grid": list(grid), "nb": nb, "factor_dtype": fdt.name}


def _node_share(comm) -> int:
    """Processes of this job on this node (they share its memory)."""
    MPI = import_mpi()

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()


def _hash(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _env_settings() -> dict:
    """This process's values of :data:`MPI_ENV_SETTINGS` (None when unset; surrounding blanks ignored)."""
    out = {}
    for var in MPI_ENV_SETTINGS:
        v = os.environ.get(var)
        out[var] = None if v is None or not v.strip() else v.strip()
    return out


def _check_settings_agree(per_rank: list) -> None:
    """Raise SettingsMismatchError (the same on every process) when the ranks' settings differ."""
    diffs = []
    for var in MPI_ENV_SETTINGS:
        groups: dict = {}
        for r, st in enumerate(per_rank):
            groups.setdefault(st[var], []).append(r)
        if len(groups) > 1:
            diffs.append(f"{var} is " + ", ".join(
                f"{'unset' if v is None else repr(v)} on rank(s) {ranks}" for v, ranks in groups.items()))
    if diffs:
        raise SettingsMismatchError(
            "backend='mpi': the processes disagree on their environment settings: " + "; ".join(diffs)
            + ". Every process must see the same values (a different grid or block size would hang or break the "
            "distributed factorization). Remedy: pass each to every process (mpiexec -x VAR=value), or unset it "
            "on all of them.")


def mpi_agree(validate):
    """Run ``validate()`` on every process and agree on the outcome and the settings (collective).

    Input checks can fail on some processes only (NaN in one process's copy of X, a different
    shape): the processes that passed would then wait forever in the solve's first collective.
    Here each process reports whether its ``validate()`` raised a kernelgen error, together with its
    environment settings (:data:`MPI_ENV_SETTINGS`, parsed and the library loaded on every process
    before any collective depends on them). If the settings differ, every process raises
    :class:`SettingsMismatchError` naming the settings and the ranks; else if any validation failed,
    every process raises -- the failing ones their own error, the others an
    :class:`InvalidInputError` naming the failing ranks and the first message. Returns
    ``validate()``'s value.

    Raises
    ------
    SettingsMismatchError
        The processes see different values of a ``KERNELGEN_*`` setting.
    KernelgenError
        ``validate()``'s error, or a malformed setting, on some process (InvalidInputError on the others).
    """
    comm = _world()
    err, value = None, None
    settings = _env_settings()
    try:
        value = validate()
        load_scalapack()
        mpi_settings(comm.Get_size())
    except KernelgenError as exc:
        err = exc
    gathered = comm.allgather((None if err is None else f"{type(err).__name__}: {err}", settings))
    _check_settings_agree([st for _, st in gathered])
    outcomes = [o for o, _ in gathered]
    bad = [r for r, o in enumerate(outcomes) if o is not None]
    if err is not None:
        raise err
    if bad:
        raise InvalidInputError(f"backend='mpi': the input was refused on rank(s) {bad} (first: {outcomes[bad[0]]}); "
                                "every process must pass the same, valid X, Y, kernel, ridge and options.")
    return value


def _spec(kernel, ridge, solver, opts) -> str:
    """What must agree across processes besides X and Y: kernel, ridge, solver, options."""
    return json.dumps({"kernel": kernel.to_dict(), "ridge": float(ridge), "solver": solver,
                       "options": dataclasses.asdict(opts)}, sort_keys=True, default=str)


@contextlib.contextmanager
def _abort_on_unexpected(comm, where: str):
    """Named kernelgen errors pass (raised on every process alike); anything else aborts the job."""
    try:
        yield
    except KernelgenError:
        raise
    except BaseException as exc:  # noqa: BLE001 -- one process failing alone would hang the others
        r, p = comm.Get_rank(), comm.Get_size()
        log.critical("rank %d/%d: unexpected %s during %s: %s -- aborting all %d processes (MPI_Abort)\n%s",
                     r, p, type(exc).__name__, where, exc, p, traceback.format_exc())
        sys.stderr.write(f"kernelgen backend='mpi': rank {r}/{p} failed during {where} ({type(exc).__name__}: "
                         f"{exc}); calling MPI_Abort so that no process waits forever.\n")
        sys.stderr.flush()
        comm.Abort(70)
        raise  # pragma: no cover -- Abort does not return


def _grid(shape) -> BlacsGrid:
    if shape not in _GRIDS:
        _GRIDS[shape] = BlacsGrid(*shape)
    return _GRIDS[shape]


class DistributedKernelSystem:
    """(K + ridge I) V in float64, this process's share of the lower-triangle tiles, summed by one Allreduce.

    The tiles (``tile x tile``, lower triangle) are dealt out greedily by cost so that each process
    computes about 1/P of the entries; every off-diagonal tile is used for both K_IJ V_J and
    K_IJ^T V_I (as :meth:`Kernel.symmetric_apply`). ``matvec`` is collective.
    """

    def __init__(self, kernel, X64, ridge, comm, tile):
        self.kernel, self.X64, self.ridge, self.comm = kernel, X64, float(ridge), comm
        self.K, self.mode, self.tile = None, OperatorMode.DISTRIBUTED, int(tile)
        n = X64.shape[0]
        b = list(range(0, n, self.tile)) + [n]
        items = [(b[i], b[i + 1], b[j], b[j + 1]) for i in range(len(b) - 1) for j in range(i + 1)]
        load = np.zeros(comm.Get_size())
        mine = []
        for it in items:
            cost = (it[1] - it[0]) * (it[3] - it[2])
            owner = int(np.argmin(load))
            load[owner] += cost
            if owner == comm.Get_rank():
                mine.append(it)
        self.items, self.bytes_per_pass = mine, 0
        self._src = None
        self.n_passes = 0

    def rebind(self, X64):
        """Point the operator at ``X64`` (the same values, e.g. the fit's own read-only copy)."""
        self.X64, self._src = X64, None

    def _entries(self):
        if self._src is None:
            self._src = self.kernel.entries(self.X64, None, dtype=np.float64)
        return self._src

    def matvec(self, V):
        MPI = import_mpi()

        V = np.asarray(V, dtype=np.float64)
        src = self._entries()
        out = np.zeros_like(V)
        buf = np.empty((self.tile, self.tile), dtype=np.float64)
        for r0, r1, c0, c1 in self.items:
            Kb = buf[: r1 - r0, : c1 - c0]
            src.block(r0, r1, c0, c1, r0 - c0, Kb)
            if r0 == c0:
                out[r0:r1] += Kb @ V[c0:c1]
            else:
                out[r0:r1] += Kb @ V[c0:c1]
                out[c0:c1] += Kb.T @ V[r0:r1]
        self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        self.n_passes += 1
        self.bytes_per_pass = out.nbytes
        # every process takes the iteration's decisions on its own copy: they must agree bit for bit
        s = float(np.sum(out)) if np.all(np.isfinite(out)) else 0.0
        chk = np.array([s, -s])
        self.comm.Allreduce(MPI.IN_PLACE, chk, op=MPI.MAX)
        if chk[0] != -chk[1]:
            raise DataIntegrityError("the processes' copies of K V differ after the Allreduce (MPI returned "
                                     "rank-dependent sums); the replicated iteration cannot continue.")
        return out + self.ridge * V if self.ridge else out

    def matvec_with_error(self, V):
        """((K + ridge I) V, (K + ridge I)|V|) from one pass and one Allreduce of n x 2k (collective)."""
        return products_with_abs(self.matvec, V)

    def no_bound_reason(self):
        """Why the distributed products carry no proven error bound (None when they do)."""
        if self._entries().entry_error_bound() is None:
            return no_entry_bound_reason(self.kernel)
        return None

    def error_bound(self):
        """g with |computed (K + ridge I) v - exact| <= g (K + ridge I)|v| componentwise, or None.

        Each output entry is a sum of the n products k_ij v_j (each entry with the kernel's proven
        relative error eta, :meth:`KernelEntries.entry_error_bound`), added in some order: a GEMM over
        one tile's columns (<= tile terms), the accumulation of the <= 2 (n / tile + 1) tile results
        into this process's share, and the Allreduce's P - 1 additions of the shares. Whatever the
        order, a sum of m terms has relative error <= gamma_{m-1} of the sum of the magnitudes
        (Higham, Accuracy and Stability, §4.2), so D = n + 2 (n // tile + 2) + P + 4 bounds the
        summation depth; one more rounding for the ridge: g = (1 + eta)(1 + gamma_D)(1 + u)^2 - 1.
        """
        if self.no_bound_reason() is not None:
            return None
        n = self.X64.shape[0]
        depth = n + 2 * (n // max(1, self.tile) + 2) + self.comm.Get_size() + 4
        return product_error_bound(self._entries().entry_error_bound(), depth)


def _fill_local(kernel, X64, n, nb, grid, fdt, ridge, rank, verbose):
    """This process's block-cyclic tiles of the lower triangle of K (+ ridge I), Fortran order."""
    from tqdm.auto import tqdm

    pr, pc = grid
    myrow, mycol = divmod(rank, pc)
    locr, locc = numroc(n, nb, myrow, 0, pr), numroc(n, nb, mycol, 0, pc)
    local = np.zeros((max(1, locr), max(1, locc)), dtype=fdt, order="F")
    src = kernel.entries(X64, None, dtype=fdt)
    nblk = -(-n // nb)
    buf = np.empty((nb, nb), dtype=fdt)
    bad = None
    for I in tqdm(range(myrow, nblk, pr), desc=f"kernel tiles (rank {rank})", unit="row", disable=not verbose):
        r0, r1 = I * nb, min(n, I * nb + nb)
        lr0 = (I // pr) * nb
        for J in range(mycol, I + 1, pc):
            c0, c1 = J * nb, min(n, J * nb + nb)
            lc0 = (J // pc) * nb
            Kb = buf[: r1 - r0, : c1 - c0]
            src.block(r0, r1, c0, c1, r0 - c0, Kb)
            if bad is None and not np.all(np.isfinite(Kb)):
                rr, cc = np.nonzero(~np.isfinite(Kb))
                bad = (r0 + int(rr[0]), c0 + int(cc[0]))
            if I == J and ridge:
                Kb[np.diag_indices(r1 - r0)] += ridge
            local[lr0: lr0 + r1 - r0, lc0: lc0 + c1 - c0] = Kb
    return local, bad


@dataclass(frozen=True)
class MPIPlan(Plan):
    """The plan of one process of an MPI solve: the common :class:`~kernelgen.solvers.Plan` (bytes on this
    process, against its share of the node) extended with the process grid and the local block.

    Attributes
    ----------
    grid : tuple of int
        (P_r, P_c).
    nb : int
        ScaLAPACK's block size.
    local_shape : tuple of int
        This process's block-cyclic block of the factor.
    processes_on_node : int
    """

    grid: tuple = (1, 1)
    nb: int = DEFAULT_BLOCK
    local_shape: tuple = (0, 0)
    processes_on_node: int = 1
    checkpoint: str | None = None

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update(grid=list(self.grid), local_shape=list(self.local_shape), bytes=self.bytes_needed,
                   budget=self.bytes_available, parts=dict(self.breakdown),
                   bytes_per_pass={"allreduce_Kv": self.n * self.n_targets * 8,
                                   "allreduce_precond": self.n * self.n_targets * 8})
        return out


class MpiBackend:
    """The distributed backend (module docstring): every method is collective over MPI_COMM_WORLD."""

    name = "mpi"
    factor_kinds = ("cholesky",)
    bound_capable = True  # its products use the kernel's accurate entries (error_bound where proven)

    def __init__(self, *, options, verbose: bool = False):
        self.comm = _world()
        self.options, self.verbose = options, verbose
        self.settings = None

    def refuse(self, problem):
        """What the distributed solve cannot honour (no collective): a precomputed K,
        ``SolveOptions(store_kernel=True)``; min_norm is refused by the orchestration (``factor_kinds``)."""
        if problem.precomputed:
            raise UnsupportedOptionError("backend='mpi' computes its kernel tiles from X: a precomputed K is not "
                                         "supported (use backend='scipy').")
        if problem.options.store_kernel is True:
            raise UnsupportedOptionError(
                "SolveOptions(store_kernel=True) cannot hold on backend='mpi': each pass recomputes its share of the "
                "float64 kernel tiles. Remedy: store_kernel=None, or backend='scipy'.")

    def check(self, problem):
        """Agree the inputs across processes (collective).

        Raises
        ------
        InvalidInputError
            X, Y, kernel, ridge, solver or options differing between processes.
        """
        comm = self.comm
        rank, size = comm.Get_rank(), comm.Get_size()
        with _abort_on_unexpected(comm, "set-up"):
            load_scalapack()
            self.settings = mpi_settings(size)
            hashes = comm.allgather(_hash(problem.A, problem.Y))
            if len(set(hashes)) != 1:
                raise InvalidInputError("backend='mpi' needs the same X and Y on every process; ranks "
                                        f"{[r for r, h in enumerate(hashes) if h != hashes[0]]} differ from rank 0.")
            specs = comm.allgather(_spec(problem.kernel, problem.ridge, problem.solver, problem.options))
            if len(set(specs)) != 1:
                mine, first = json.loads(specs[rank]), json.loads(specs[0])
                what = sorted(key for key in first if first[key] != mine.get(key)) or ["(see the other ranks)"]
                raise InvalidInputError(
                    "backend='mpi' needs the same kernel, ridge, solver and options on every process; ranks "
                    f"{[r for r, sp in enumerate(specs) if sp != specs[0]]} differ from rank 0"
                    + (f" in {', '.join(what)}" if specs[rank] != specs[0] else "") + ".")

    def plan(self, n, d, k, options, *, solver="cholesky"):
        comm = self.comm
        with _abort_on_unexpected(comm, "planning"):
            st = self.settings or mpi_settings(comm.Get_size())
            fdt = decide_factor_dtype(options, n)
            tile = max(1, min(int(options.tile), CALL_LIMITS[np.dtype(np.float64)].potrf_n))
            nb = max(1, min(st["nb"], n))
            check_int32_local(n, nb, st["grid"])
            return _check_memory(comm, n, d, k, st["grid"], nb, fdt, tile, options, st["checkpoint"])

    def operator(self, A, kernel, plan, ridge):
        with _abort_on_unexpected(self.comm, "the float64 operator"):
            return DistributedKernelSystem(kernel, A, ridge, self.comm, plan.tile)

    def factor(self, A, kernel, plan, ridge):
        return _factor(self.comm, _grid(plan.grid), A, plan.n, plan.nb, np.dtype(plan.factor_dtype), ridge, kernel,
                       plan.checkpoint, self.verbose)

    def guard(self, phase: str):
        """Named kernelgen errors pass (raised on every process alike); anything else aborts the job."""
        return _abort_on_unexpected(self.comm, phase)

    def finish(self, solution):
        """Every process must end with the same alpha (the iteration is replicated)."""
        comm = self.comm
        with _abort_on_unexpected(comm, "the final check"):
            digests = comm.allgather(_hash(solution.alpha))
            if len(set(digests)) != 1:
                raise DataIntegrityError("the processes ended with different alpha; the replicated iteration "
                                         "diverged.")
        rank, size = comm.Get_rank(), comm.Get_size()
        p = solution.plan
        log.info("rank %d/%d: mpi solve n=%d grid %dx%d nb=%d factor %s: residual %.3e after %d passes", rank, size,
                 p.n, p.grid[0], p.grid[1], p.nb, np.dtype(p.factor_dtype).name,
                 solution.certificate.relative_residual, solution.certificate.n_matvecs)


def _check_memory(comm, n, d, k, grid_shape, nb, fdt, tile, opts, checkpoint):
    rank, size = comm.Get_rank(), comm.Get_size()
    plan = mpi_plan(n, d, k, grid=grid_shape, nb=nb, rank=rank, factor_dtype=fdt, tile=tile)
    share = _node_share(comm)
    budget = (int(opts.memory_budget) if opts.memory_budget is not None
              else int(MEMORY_FRACTION * available_memory() / share))
    verdicts = comm.allgather((plan["bytes"], budget))
    over = [(r, need, have) for r, (need, have) in enumerate(verdicts) if need > have]
    log.info("rank %d/%d: plan %s local block %s (%s), %.2f GB needed, %.2f GB budget (%d processes on this node)",
             rank, size, "x".join(map(str, grid_shape)), plan["local_shape"], fdt.name, plan["bytes"] / 1e9,
             budget / 1e9, share)
    if over:
        r, need, have = max(over, key=lambda t: t[1] - t[2])
        f32 = ", or SolveOptions(dtype='float32') (halves the factor block)" if fdt == np.float64 else ""
        raise MemoryBudgetError(
            f"backend='mpi': rank {r} of {size} needs {need / 1e9:.2f} GB (its {fdt.name} local factor block "
            f"{plan['local_shape'] if r == rank else ''} as ScaLAPACK stores it, its copies of X, workspaces) but "
            f"{have / 1e9:.2f} GB is its share of the node ({len(over)} process(es) over). Remedy: more nodes "
            f"(more processes, fewer per node), free memory on the node{f32}.", need, have)
    return MPIPlan(n, d, k, "cholesky", fdt, str(OperatorMode.DISTRIBUTED), tile, plan["bytes"], budget,
                   dict(plan["parts"]), backend="mpi", places={"factor": "distributed",
                                                              "kernel float64": "distributed (recomputed)"},
                   passes_expected=expected_passes(fdt), grid=tuple(grid_shape), nb=nb,
                   local_shape=tuple(plan["local_shape"]), processes_on_node=share, checkpoint=checkpoint)


def _factor(comm, grid, A, n, nb, fdt, ridge, kernel, checkpoint, verbose):
    rank, size = comm.Get_rank(), comm.Get_size()
    fp = ""
    if checkpoint:
        with _abort_on_unexpected(comm, "loading the checkpoint"):
            fp = _hash(A, np.array([ridge, nb, *grid.shape]), np.frombuffer(repr(kernel).encode(), np.uint8),
                       np.frombuffer(fdt.name.encode(), np.uint8))
            f = ScalapackCholesky.load(grid, checkpoint, n=n, nb=nb, dtype=fdt, fingerprint=fp)
            if f is not None:
                log.info("rank %d/%d: resumed from the saved factor in %s (no refactoring)", rank, size, checkpoint)
                return f
    with _abort_on_unexpected(comm, "the kernel tiles"):
        local, bad = _fill_local(kernel, A, n, nb, grid.shape, fdt, ridge, rank, verbose and rank == 0)
        bads = [b for b in comm.allgather(bad) if b is not None]
    if bads:
        i, j = min(bads)
        raise NonFiniteResultError(f"the {fdt.name} kernel entry K[{i}, {j}] is not finite (NaN/inf) for {kernel!r}. "
                                   "Remedy: rescale the data or the kernel, or SolveOptions(dtype='float64').")
    with _abort_on_unexpected(comm, "the factorization"):
        f = ScalapackCholesky.factor(grid, local, n, nb, fingerprint=fp)
        if checkpoint:
            f.save(checkpoint)
    return f


def predict_mpi(fit, X_test, *, comm=None) -> np.ndarray:
    """fit.predict(X_test) with the training points split over the processes; one Allreduce (collective).

    Parameters
    ----------
    fit : KernelInterpolant
        The same fit on every process (as ``kernel_interpolate(..., backend="mpi")`` returns).
    X_test : ndarray (m, d)
        The same on every process.

    Returns
    -------
    ndarray (m,) or (m, k), float64, replicated.

    Raises
    ------
    NonFiniteResultError
        A NaN/inf prediction (on every process).
    """
    MPI = import_mpi()

    comm = comm or _world()
    X = fit.X_train
    if X is None:
        raise InvalidInputError("predict_mpi needs the training inputs on the fit.")
    Xt = as_float_array(X_test, "X_test", ndim=(2,), dtype=np.float64)
    if Xt.shape[1] != X.shape[1]:
        raise ShapeMismatchError(f"X_test has {Xt.shape[1]} features but the fit was trained on {X.shape[1]}.")
    alpha = np.asarray(fit.alpha, dtype=np.float64)
    a2 = alpha.reshape(alpha.shape[0], -1)
    n, r, p = X.shape[0], comm.Get_rank(), comm.Get_size()
    lo, hi = (r * n) // p, ((r + 1) * n) // p
    with _abort_on_unexpected(comm, "predict_mpi"):
        out = np.zeros((Xt.shape[0], a2.shape[1]), dtype=np.float64)
        if hi > lo:
            out += fit.kernel.apply(Xt, X[lo:hi], a2[lo:hi])
        comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        ok = bool(np.all(np.isfinite(out)))
    if not ok:
        raise NonFiniteResultError("predict_mpi: NaN/inf predictions (the kernel overflowed on the test inputs).")
    return out[:, 0] if alpha.ndim == 1 else out
