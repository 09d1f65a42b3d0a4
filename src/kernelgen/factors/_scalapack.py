"""ScaLAPACK through ctypes: the BLACS grid, block-cyclic layout and a distributed Cholesky factor.

ScaLAPACK is located at run time (:func:`load_scalapack`): the library named by the environment
variable ``KERNELGEN_SCALAPACK`` (a path or a soname: MKL's ``libmkl_scalapack_lp64.so``, Cray
LibSci, a site build), else the system's ``libscalapack-openmpi.so*`` (Debian/Ubuntu
``libscalapack-openmpi-dev``), else ``libscalapack.so*``. Only the LP64 interface (32-bit ``int``
indices) is used: every process's local matrix must stay below 2^31 entries
(:func:`check_int32_local`), which the MPI backend checks before allocating.

The layout is ScaLAPACK's 2-D block-cyclic one (Blackford et al. 1997, ch. 4): global block
``(I, J)`` of size ``nb x nb`` lives on process ``(I mod P_r, J mod P_c)`` of the ``P_r x P_c`` grid,
stored column-major with local leading dimension ``numroc(n, nb, myrow, 0, P_r)``.

:class:`ScalapackCholesky` is a :class:`~kernelgen.factors.Factor` whose ``solve`` and ``logdet`` are
*collective*: every process of the grid calls them with the same replicated right-hand side and
gets the same replicated float64 answer. Each process can write its local block to disk and read it
back (:meth:`ScalapackCholesky.save` / :meth:`ScalapackCholesky.load`), so a job that hits its
wall-time limit resumes the float64 phase without refactoring.

mpi4py is imported inside the functions that need it, through :func:`import_mpi` (an optional
dependency: a missing one is a :class:`ScalapackUnavailableError` saying how to install it).

References
----------
Blackford, Choi, Cleary, et al. ScaLAPACK Users' Guide. SIAM 1997, §4.3 (block-cyclic layout),
§4.4 (array descriptors), PDPOTRF / PDPOTRS.
Higham. Accuracy and Stability of Numerical Algorithms (2nd ed.), Thm 10.3 (Cholesky backward error).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import logging
import os
import time

import numpy as np

from ..errors import (
    DataIntegrityError,
    InvalidInputError,
    NotPicklableError,
    NotPositiveDefiniteError,
    ScalapackUnavailableError,
    ShapeMismatchError,
)
from ._cholesky import _CholeskyLogDet

log = logging.getLogger(__name__)

__all__ = [
    "INT32_MAX_LOCAL",
    "BlacsGrid",
    "ScalapackCholesky",
    "ScalapackUnavailableError",
    "check_int32_local",
    "default_grid",
    "import_mpi",
    "load_scalapack",
    "local_indices",
    "numroc",
]

#: A 32-bit-index (LP64) ScaLAPACK addresses a local array of at most 2^31 - 1 entries.
INT32_MAX_LOCAL = 2**31 - 1

_ENV = "KERNELGEN_SCALAPACK"
_LIB = None
_c_int_p = ctypes.POINTER(ctypes.c_int)


#: How to get the MPI backend's dependencies (every "not installed" message ends with it).
MPI_REMEDY = ("Remedy: pip install -e \".[mpi]\" in a kernelgen checkout (pip install 'kernelgen[mpi]' "
              "otherwise), with the Open MPI and ScaLAPACK system packages (Debian/Ubuntu: apt install openmpi-bin "
              "libopenmpi-dev libscalapack-openmpi-dev); then launch with mpiexec -n P.")


def import_mpi():
    """``mpi4py.MPI``, or :class:`ScalapackUnavailableError` saying how to install it (optional dependency).

    Raises
    ------
    ScalapackUnavailableError
        mpi4py is not installed, or cannot load its MPI library.
    """
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ScalapackUnavailableError(
            f"backend='mpi' needs mpi4py, which is not installed or cannot load its MPI library ({exc}). "
            + MPI_REMEDY) from exc
    return MPI


def load_scalapack():
    """The ScaLAPACK shared library (ctypes.CDLL), loaded once.

    Search order: ``$KERNELGEN_SCALAPACK`` (path or soname), ``libscalapack-openmpi.so*`` in the
    system library directories, then ``ctypes.util.find_library("scalapack")``.

    Raises
    ------
    ScalapackUnavailableError
        Nothing loadable, or a library without ``pdpotrf_`` / ``Cblacs_gridinit``.
    """
    global _LIB
    if _LIB is not None:
        return _LIB
    tried, cands = [], []
    env = os.environ.get(_ENV)
    if env:
        cands.append(env)
    else:
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                  "/usr/local/lib"):
            cands += sorted(glob.glob(os.path.join(d, "libscalapack-openmpi.so*")), key=len)
        found = ctypes.util.find_library("scalapack-openmpi") or ctypes.util.find_library("scalapack")
        if found:
            cands.append(found)
    for c in cands:
        try:
            lib = ctypes.CDLL(c, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            tried.append(f"{c} ({exc})")
            continue
        missing = [s for s in ("Cblacs_get", "Cblacs_gridinit", "descinit_", "numroc_", "pdpotrf_", "pspotrf_",
                               "pdpotrs_", "pspotrs_") if not hasattr(lib, s)]
        if missing:
            tried.append(f"{c} (lacks {', '.join(missing)})")
            continue
        _declare(lib)
        _LIB = lib
        log.info("ScaLAPACK: %s", c)
        return lib
    raise ScalapackUnavailableError(
        "ScaLAPACK could not be loaded (tried: " + ("; ".join(tried) or "nothing found") + "). Remedy: "
        "apt-get install libscalapack-openmpi-dev openmpi-bin (Debian/Ubuntu), or set "
        f"{_ENV}=/path/to/libscalapack.so (MKL: libmkl_scalapack_lp64.so, Cray LibSci).")


def _declare(lib):
    i, ip = ctypes.c_int, _c_int_p
    lib.Cblacs_get.argtypes = [i, i, ip]
    lib.Cblacs_gridinit.argtypes = [ip, ctypes.c_char_p, i, i]
    lib.Cblacs_gridinfo.argtypes = [i, ip, ip, ip, ip]
    lib.Cblacs_gridexit.argtypes = [i]
    lib.numroc_.restype = i
    lib.numroc_.argtypes = [ip] * 5
    lib.descinit_.argtypes = [ip] * 10
    for pre in ("d", "s"):
        getattr(lib, f"p{pre}potrf_").argtypes = [ctypes.c_char_p, ip, ctypes.c_void_p, ip, ip, ip, ip,
                                                  ctypes.c_size_t]
        getattr(lib, f"p{pre}potrs_").argtypes = [ctypes.c_char_p, ip, ip, ctypes.c_void_p, ip, ip, ip,
                                                  ctypes.c_void_p, ip, ip, ip, ip, ctypes.c_size_t]


def _ip(v: int):
    return ctypes.byref(ctypes.c_int(int(v)))


def numroc(n: int, nb: int, iproc: int, isrcproc: int, nprocs: int) -> int:
    """Rows (or columns) of an n-long block-cyclic dimension owned by process ``iproc`` (ScaLAPACK NUMROC)."""
    mydist = (nprocs + iproc - isrcproc) % nprocs
    nblocks = n // nb
    num = (nblocks // nprocs) * nb
    extra = nblocks % nprocs
    if mydist < extra:
        num += nb
    elif mydist == extra:
        num += n % nb
    return num


def local_indices(n: int, nb: int, iproc: int, nprocs: int) -> np.ndarray:
    """Global indices (int64, increasing) of the rows/columns process ``iproc`` owns, source process 0."""
    blocks = np.arange(iproc, -(-n // nb), nprocs)
    if blocks.size == 0:
        return np.zeros(0, dtype=np.int64)
    idx = (blocks[:, None] * nb + np.arange(nb)[None, :]).ravel()
    return idx[idx < n].astype(np.int64)


def default_grid(nprocs: int) -> tuple:
    """The most nearly square P_r x P_c = nprocs grid with P_r <= P_c."""
    pr = int(np.floor(np.sqrt(nprocs)))
    while nprocs % pr:
        pr -= 1
    return pr, nprocs // pr


def check_int32_local(n: int, nb: int, grid: tuple) -> int:
    """Largest local block (entries) of an n x n matrix on ``grid``; refuse beyond 2^31 - 1.

    Raises
    ------
    InvalidInputError
        Naming the smallest process count whose default grid fits (32-bit ScaLAPACK indices).
    """
    pr, pc = grid
    biggest = numroc(n, nb, 0, 0, pr) * numroc(n, nb, 0, 0, pc)
    if biggest <= INT32_MAX_LOCAL:
        return biggest
    p = pr * pc
    while True:
        p += 1
        g = default_grid(p)
        if numroc(n, nb, 0, 0, g[0]) * numroc(n, nb, 0, 0, g[1]) <= INT32_MAX_LOCAL:
            break
    raise InvalidInputError(
        f"n={n} on a {pr}x{pc} grid gives a local matrix of {biggest:,} entries per process, beyond the 2^31 - 1 "
        f"that a 32-bit-index ScaLAPACK (LP64: Debian's, MKL lp64) can address. Remedy: at least {p} processes "
        f"(mpiexec -n {p}; grid {g[0]}x{g[1]}).")


class BlacsGrid:
    """A BLACS process grid over MPI_COMM_WORLD (row-major: rank = myrow * npcol + mycol).

    Parameters
    ----------
    nprow, npcol : int
        Grid shape; nprow * npcol must equal the number of MPI processes.
    """

    def __init__(self, nprow: int, npcol: int):
        MPI = import_mpi()

        self.comm = MPI.COMM_WORLD
        if nprow * npcol != self.comm.Get_size():
            raise InvalidInputError(f"a {nprow}x{npcol} grid needs {nprow * npcol} processes, "
                                    f"mpiexec started {self.comm.Get_size()}.")
        lib = self.lib = load_scalapack()
        ctxt = ctypes.c_int(0)
        lib.Cblacs_get(-1, 0, ctypes.byref(ctxt))
        lib.Cblacs_gridinit(ctypes.byref(ctxt), b"R", nprow, npcol)
        self.ctxt = ctxt.value
        r, c, mr, mc = (ctypes.c_int() for _ in range(4))
        lib.Cblacs_gridinfo(self.ctxt, *(ctypes.byref(v) for v in (r, c, mr, mc)))
        self.nprow, self.npcol, self.myrow, self.mycol = r.value, c.value, mr.value, mc.value
        if (self.nprow, self.npcol) != (nprow, npcol) or self.myrow < 0:
            raise ScalapackUnavailableError(f"BLACS did not create the {nprow}x{npcol} grid (got "
                                            f"{self.nprow}x{self.npcol}, position {self.myrow},{self.mycol}).")

    @property
    def shape(self):
        return (self.nprow, self.npcol)

    def __reduce__(self):
        raise NotPicklableError("a BLACS process grid belongs to the MPI job that created it and cannot be pickled; "
                                "create one with BlacsGrid(nprow, npcol) in each process.")

    def local_shape(self, m: int, n: int, mb: int, nb: int) -> tuple:
        return numroc(m, mb, self.myrow, 0, self.nprow), numroc(n, nb, self.mycol, 0, self.npcol)

    def descriptor(self, m: int, n: int, mb: int, nb: int, lld: int) -> np.ndarray:
        """A ScaLAPACK array descriptor (DESCINIT), int32 array of 9 entries."""
        desc = np.zeros(9, dtype=np.int32)
        info = ctypes.c_int(0)
        self.lib.descinit_(desc.ctypes.data_as(_c_int_p), _ip(m), _ip(n), _ip(mb), _ip(nb), _ip(0), _ip(0),
                           _ip(self.ctxt), _ip(max(1, lld)), ctypes.byref(info))
        if info.value != 0:
            raise InvalidInputError(f"DESCINIT rejected argument {-info.value} (m={m}, n={n}, mb={mb}, nb={nb}, "
                                    f"lld={lld}).")
        return desc

    def numroc_lib(self, n: int, nb: int, iproc: int, nprocs: int) -> int:
        """The library's own NUMROC (to check :func:`numroc`)."""
        return int(self.lib.numroc_(_ip(n), _ip(nb), _ip(iproc), _ip(0), _ip(nprocs)))

    def exit(self):
        self.lib.Cblacs_gridexit(self.ctxt)


def _potrf(grid: BlacsGrid, local: np.ndarray, desc: np.ndarray, n: int) -> int:
    fn = grid.lib.pdpotrf_ if local.dtype == np.float64 else grid.lib.pspotrf_
    info = ctypes.c_int(0)
    fn(b"L", _ip(n), local.ctypes.data_as(ctypes.c_void_p), _ip(1), _ip(1), desc.ctypes.data_as(_c_int_p),
       ctypes.byref(info), 1)
    return info.value


class ScalapackCholesky(_CholeskyLogDet):
    """A distributed Cholesky factor L L^T = A (lower, ScaLAPACK p?potrf) on a BLACS grid.

    Every method but :meth:`describe` and :meth:`save` is collective over the grid's processes.
    Not picklable (:class:`~kernelgen.errors.NotPicklableError`): save it with :meth:`save`.

    Parameters
    ----------
    grid : BlacsGrid
    local : ndarray, Fortran order, float32 or float64
        This process's block-cyclic part of A on entry (lower triangle referenced), overwritten by L.
    n, nb : int
        Order of A and the (square) block size.

    Attributes
    ----------
    kind, backend, dtype, shape, rank, rank_tol
        ``"cholesky"``, ``"scalapack"``, the local block's dtype, (n, n), n, None.
    seconds : float
        Wall time of p?potrf (0 for a loaded factor).
    """

    kind = "cholesky"
    backend = "scalapack"
    rank_tol = None

    def __init__(self, grid: BlacsGrid, local: np.ndarray, n: int, nb: int, *, seconds: float = 0.0,
                 fingerprint: str = ""):
        self.grid, self.local, self.n, self.nb = grid, local, int(n), int(nb)
        self.dtype = local.dtype
        self.shape = (self.n, self.n)
        self.rank = self.n
        self.seconds = seconds
        self.fingerprint = fingerprint
        self.spectrum_estimate = None
        self.desc = grid.descriptor(n, n, nb, nb, local.shape[0])
        self.rows = local_indices(n, nb, grid.myrow, grid.nprow)

    @classmethod
    def factor(cls, grid: BlacsGrid, local: np.ndarray, n: int, nb: int, *, fingerprint: str = ""):
        """Factor the block-cyclic ``local`` in place (p?potrf, lower); collective.

        Raises
        ------
        NotPositiveDefiniteError
            On every process, with the zero-based GLOBAL index of the first non-positive pivot
            (ScaLAPACK's INFO, made identical on all processes by one reduction).
        """
        if not local.flags.f_contiguous or local.dtype not in (np.float32, np.float64):
            raise InvalidInputError("the local block must be a Fortran-ordered float32/float64 array.")
        self = cls(grid, local, n, nb, fingerprint=fingerprint)
        t0 = time.perf_counter()
        info = _potrf(grid, local, self.desc, n)
        self.seconds = time.perf_counter() - t0
        infos = np.array(grid.comm.allgather(int(info)))
        if np.any(infos < 0):
            raise InvalidInputError(f"p?potrf rejected argument {-int(infos.min())} (a kernelgen bug).")
        pos = infos[infos > 0]
        if pos.size:
            k = int(pos.min()) - 1
            grid.comm.Barrier()
            raise NotPositiveDefiniteError(
                f"the {self.dtype.name} kernel matrix is not positive definite: ScaLAPACK's Cholesky "
                f"(p{'d' if self.dtype == np.float64 else 's'}potrf on a {grid.nprow}x{grid.npcol} grid) met a "
                f"non-positive pivot at global index {k} (0-based; the leading {k + 1}x{k + 1} block is not "
                "positive definite). Remedies: solver='min_norm' (single process), an explicit ridge, "
                "SolveOptions(dtype='float64'), or remove duplicate inputs.", k)
        log.info("rank %d: p%spotrf n=%d nb=%d grid %dx%d in %.1f s", grid.comm.Get_rank(),
                 "d" if self.dtype == np.float64 else "s", n, nb, grid.nprow, grid.npcol, self.seconds)
        return self

    def __reduce__(self):
        raise NotPicklableError(
            "a ScaLAPACK factor is distributed over the MPI processes (each holds one block-cyclic part) and "
            "cannot be pickled: save the blocks with factor.save(directory) on every process (reloaded by "
            "ScalapackCholesky.load, or KERNELGEN_MPI_CHECKPOINT), and the fit with fit.save(path) (without "
            "the factor).")

    # -- the Factor protocol (collective)
    def solve(self, B) -> np.ndarray:
        """(L L^T)^-1 B for a replicated B (n, k): replicated float64 (n, k), column-scaled for float32.

        One p?potrs on the grid and one MPI Allreduce of the (n, k) result.
        """
        MPI = import_mpi()

        B = np.asarray(B, dtype=np.float64)
        if B.shape[0] != self.n:
            raise ShapeMismatchError(f"B has {B.shape[0]} rows, the factor has order {self.n}.")
        B2 = B.reshape(self.n, -1)
        k = B2.shape[1]
        s = np.max(np.abs(B2), axis=0) if B2.size else np.ones(k)
        s[~(s > 0)] = 1.0
        g = self.grid
        mine = g.mycol == 0  # the k columns form one column block, held by process column 0
        rows = self.rows
        if mine and rows.size:
            loc = np.asfortranarray(B2[rows] / s, dtype=self.dtype)
        else:
            loc = np.zeros((max(1, rows.size), 1), dtype=self.dtype, order="F")
        descb = g.descriptor(self.n, k, self.nb, max(k, 1), rows.size)
        fn = g.lib.pdpotrs_ if self.dtype == np.float64 else g.lib.pspotrs_
        info = ctypes.c_int(0)
        fn(b"L", _ip(self.n), _ip(k), self.local.ctypes.data_as(ctypes.c_void_p), _ip(1), _ip(1),
           self.desc.ctypes.data_as(_c_int_p), loc.ctypes.data_as(ctypes.c_void_p), _ip(1), _ip(1),
           descb.ctypes.data_as(_c_int_p), ctypes.byref(info), 1)
        if info.value != 0:
            raise InvalidInputError(f"p?potrs returned INFO={info.value} (a kernelgen bug).")
        out = np.zeros((self.n, k), dtype=np.float64)
        if mine and rows.size:
            out[rows] = loc[: rows.size, :k]
        g.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        out *= s
        return out.reshape(B.shape)

    def diagonal(self) -> np.ndarray:
        """diag(L), float64 (n,), replicated (one Allreduce; collective)."""
        MPI = import_mpi()

        g = self.grid
        d = np.zeros(self.n, dtype=np.float64)
        cols = local_indices(self.n, self.nb, g.mycol, g.npcol)
        common, ir, ic = np.intersect1d(self.rows, cols, assume_unique=True, return_indices=True)
        d[common] = self.local[ir, ic]
        g.comm.Allreduce(MPI.IN_PLACE, d, op=MPI.SUM)
        return d

    def logdet(self):
        """log det A = 2 sum log diag(L), with its precision (see :class:`~kernelgen.factors.LogDet`); collective."""
        return self._logdet_from_diag(self.diagonal())

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "dtype": self.dtype.name, "shape": list(self.shape),
                "rank": self.rank, "block": self.nb, "grid": [self.grid.nprow, self.grid.npcol],
                "seconds": self.seconds,
                "spectrum_estimate": None if self.spectrum_estimate is None else list(self.spectrum_estimate)}

    # -- persistence: one file per process
    @staticmethod
    def path_for(directory: str, rank: int, size: int) -> str:
        return os.path.join(directory, f"factor.rank{rank}of{size}.npz")

    def save(self, directory: str) -> str:
        """Write this process's local block of L (and what it factors) to ``directory``; returns the path.

        Not collective: each process writes its own file ``factor.rank{r}of{P}.npz``.
        """
        os.makedirs(directory, exist_ok=True)
        g = self.grid
        meta = {"format": 1, "n": self.n, "nb": self.nb, "grid": [g.nprow, g.npcol], "pos": [g.myrow, g.mycol],
                "dtype": self.dtype.name, "fingerprint": self.fingerprint, "seconds": self.seconds}
        path = self.path_for(directory, g.comm.Get_rank(), g.comm.Get_size())
        tmp = path + ".tmp.npz"
        try:
            np.savez(tmp, local=self.local, meta=np.array(json.dumps(meta)))
            os.replace(tmp, path)
        except BaseException:  # nothing half-written is left
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        log.info("rank %d: factor block %s saved to %s", g.comm.Get_rank(), self.local.shape, path)
        return path

    @classmethod
    def load(cls, grid: BlacsGrid, directory: str, *, n: int, nb: int, dtype, fingerprint: str):
        """Read every process's block written by :meth:`save` (collective); None on every process if any is missing.

        Raises
        ------
        DataIntegrityError
            A block exists but belongs to another problem, grid, block size or dtype (on every process).
        """
        path = cls.path_for(directory, grid.comm.Get_rank(), grid.comm.Get_size())
        problem, local = "", None
        if not os.path.exists(path):
            problem = "missing"
        else:
            try:
                with np.load(path, allow_pickle=False) as z:
                    meta = json.loads(str(z["meta"]))
                    want = {"n": int(n), "nb": int(nb), "grid": [grid.nprow, grid.npcol],
                            "pos": [grid.myrow, grid.mycol], "dtype": np.dtype(dtype).name,
                            "fingerprint": fingerprint}
                    bad = [k for k, v in want.items() if meta.get(k) != v]
                    if bad:
                        problem = f"{path}: saved {', '.join(f'{k}={meta.get(k)!r}' for k in bad)} does not match"
                    else:
                        local = np.asfortranarray(z["local"])
                        if local.shape != grid.local_shape(n, n, nb, nb) or local.dtype != np.dtype(dtype):
                            problem = f"{path}: local block of shape {local.shape} {local.dtype}, not as planned"
            except (OSError, ValueError, KeyError) as exc:
                problem = f"{path}: unreadable ({exc})"
        problems = grid.comm.allgather(problem)
        if all(p == "missing" for p in problems):
            return None
        bad = [f"rank {r}: {p}" for r, p in enumerate(problems) if p]
        if bad:
            raise DataIntegrityError("cannot resume from the saved distributed factor in " + directory + ": "
                                     + "; ".join(bad) + ". Remedy: delete that directory to refactor.")
        self = cls(grid, local, n, nb, fingerprint=fingerprint)
        log.info("rank %d: factor block loaded from %s", grid.comm.Get_rank(), path)
        return self
