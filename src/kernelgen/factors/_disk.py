"""An out-of-core Cholesky factor: the tiled panels in a scratch file (private).

Storage
-------
:class:`DiskPanels` keeps :class:`~kernelgen.factors.LowerPanels`' layout in a file: panel i (rows
[b_i, b_{i+1}), columns [0, b_{i+1})) is stored column-major, so that any column range of a panel --
a tile, a super-panel's share of it, the prefix a triangular solve needs -- is one contiguous byte
range, read or written with one ``pread``/``pwrite`` into a NumPy buffer (no ``np.memmap``: mapped
file pages would count in the process's resident set). Pages read are advised away
(``posix_fadvise(DONTNEED)``) after the factorisation's reads, so the page cache does not grow with
the file either.

Algorithm (left-looking by super-panels; Toledo, "A survey of out-of-core algorithms in numerical
linear algebra", DIMACS 1999, section 2; the blocked Cholesky of Golub & Van Loan, Matrix
Computations, 4th ed., Alg. 4.2.2, with a column block of W = ``width`` columns held in RAM):

for each super-panel of columns [c0, c1) (c1 - c0 = W, a multiple of the tile):

1. compute its kernel entries, rows [c0, n), into RAM (the matrix itself is never written to disk);
2. subtract the contributions of the columns already factored: for each factored tile column
   [k0, k1), stream L[c0:n, k0:k1] from the file (one contiguous read per row panel) and apply
   S -= L[c0:n, k0:k1] L[c0:c1, k0:k1]^T (GEMM, outputs at most tile x W);
3. factor the super-panel in RAM (right-looking tiled Cholesky restricted to its columns:
   potrf, trsm, GEMM/SYRK per tile, every call within :data:`kernelgen.numerics.CALL_LIMITS`);
4. write it to the file, ``fsync``, then record the progress (and the CRC-32 of what was written)
   in the sidecar JSON (written to a temporary file and renamed: atomic).

Bytes read: sum over super-panels of (n - c0) c0 entries, about n^3 / (6 W) entries -- (2/3) n^3 / W
bytes in float32 (n = 120,000, W = 12,288: 94 GB); written: the factor once, n^2 / 2 entries. A run
killed (SIGKILL, power loss) after k super-panels resumes from the sidecar, with any super-panel width
(left-looking: the columns still to factor need only the finished ones): the fingerprint of the
problem (data, kernel, ridge, shift, tile, dtype) and the CRC-32 of every finished super-panel
are checked, and a file of another problem, truncated or corrupt, is refused
(:class:`~kernelgen.errors.DataIntegrityError`), never reused. An exception or Ctrl-C
(``KeyboardInterrupt``) removes the file: nothing half-written is left.

The triangular solves (:meth:`DiskCholeskyFactor.solve`) stream the file twice (forward by panel
rows, backward in the reverse order, so that the most recently read panels are still in the page
cache), reading ahead in a background thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import sys
import threading
import time
import weakref
import zlib

import numpy as np
from tqdm.auto import tqdm

from ..errors import (
    DataIntegrityError,
    InvalidInputError,
    NotPicklableError,
    NotPositiveDefiniteError,
    ScratchStorageError,
    ShapeMismatchError,
)
from ..numerics import CALL_LIMITS, empty_hugepages
from ._base import LogDet
from ._cholesky import _CholeskyLogDet, _scaled, rcond_by_solves
from ._tiled import LowerPanels, _blas, _bounds, _check_inplace

log = logging.getLogger(__name__)

__all__ = ["DiskPanels", "DiskCholeskyFactor", "out_of_core_cholesky", "disk_read_bytes", "FORMAT",
           "READ_BUFFERS_BYTES"]

#: Version of the scratch file's layout and sidecar.
FORMAT = 1
_MAX_IO = 1 << 30  # bytes per pread/pwrite call (Linux caps one call at 0x7ffff000 bytes)
_READ_AHEAD = 3  # blocks read ahead by the background reader
_SOLVE_CHUNK = 16 << 20  # bytes per block the triangular solves read


def READ_BUFFERS_BYTES(tile: int, dtype) -> int:  # noqa: N802 - a planning constant of (tile, dtype)
    """RAM the background reader's blocks take at most (queued, in use, being read)."""
    return (_READ_AHEAD + 2) * max(int(tile) ** 2 * np.dtype(dtype).itemsize, _SOLVE_CHUNK)


def disk_read_bytes(n: int, tile: int, width: int, dtype) -> int:
    """Bytes the out-of-core factorisation reads: sum over super-panels of (n - c0) c0 entries."""
    b = _bounds(int(n), int(tile))
    w_tiles = max(1, int(width) // int(tile))
    total = 0
    for J0 in range(0, len(b) - 1, w_tiles):
        c0 = b[J0]
        total += (n - c0) * c0
    return int(total * np.dtype(dtype).itemsize)


def _advise_dontneed(fd: int, offset: int, length: int) -> None:
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class DiskPanels:
    """The layout of :class:`LowerPanels` (row panels, column-major) in a file.

    Parameters
    ----------
    path : str
        The data file (created, or opened for resuming).
    n, tile : int
    dtype : float32 or float64
    create : bool
        Create (truncate) the file and reserve its size; else open an existing one.

    Attributes
    ----------
    bytes_read, bytes_written : int
        Counted over the object's life (every read and write).
    """

    def __init__(self, path: str, n: int, tile: int, dtype, *, create: bool, fd: int | None = None):
        self.path = str(path)
        self.n = int(n)
        self.dtype = np.dtype(dtype)
        self.tile = int(min(tile, CALL_LIMITS[self.dtype].potrf_n))
        self.bounds = _bounds(self.n, self.tile)
        s = self.dtype.itemsize
        self.offsets = [0]
        for i in range(self.n_tiles):
            self.offsets.append(self.offsets[-1] + self.rows(i) * self.bounds[i + 1] * s)
        self.nbytes = self.offsets[-1]
        self.fd = fd if fd is not None else _open(self.path, create)
        if create:
            _reserve(self.fd, self.path, self.nbytes)
        self.bytes_read = 0
        self.bytes_written = 0
        self.read_seconds = 0.0
        self.write_seconds = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def nbytes_for(n: int, tile: int, dtype) -> int:
        return LowerPanels.nbytes_for(n, tile, dtype)

    @property
    def n_tiles(self) -> int:
        return len(self.bounds) - 1

    def rows(self, i: int) -> int:
        return self.bounds[i + 1] - self.bounds[i]

    def _span(self, i: int, c0: int, c1: int) -> tuple[int, int]:
        if not (0 <= c0 <= c1 <= self.bounds[i + 1]):
            raise IndexError(f"columns [{c0}, {c1}) outside panel {i} (width {self.bounds[i + 1]})")
        s = self.dtype.itemsize
        return self.offsets[i] + c0 * self.rows(i) * s, (c1 - c0) * self.rows(i) * s

    def read(self, i: int, c0: int, c1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Columns [c0, c1) of panel i as a Fortran (rows_i, c1 - c0) array (into ``out`` when given)."""
        off, length = self._span(i, c0, c1)
        if out is None:
            out = np.empty((c1 - c0, self.rows(i)), dtype=self.dtype).T
        buf = memoryview(out.T.reshape(-1)).cast("B")
        if buf.nbytes != length:
            raise InvalidInputError("read buffer of the wrong size")  # pragma: no cover - internal
        t0 = time.perf_counter()
        done = 0
        while done < length:
            got = os.preadv(self.fd, [buf[done:done + _MAX_IO]], off + done)
            if got <= 0:
                raise DataIntegrityError(f"{self.path}: the scratch file ends at byte {off + done}, expected "
                                         f"{self.nbytes} bytes (truncated). Remedy: delete it to refactor.")
            done += got
        with self._lock:
            self.bytes_read += length
            self.read_seconds += time.perf_counter() - t0
        return out

    def write(self, i: int, c0: int, block: np.ndarray) -> int:
        """Write a Fortran (rows_i, w) block as columns [c0, c0 + w) of panel i; returns its CRC-32."""
        off, length = self._span(i, c0, c0 + block.shape[1])
        data = np.asarray(block, dtype=self.dtype).T  # C-order view of the column-major bytes
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        buf = memoryview(data.reshape(-1)).cast("B")
        t0 = time.perf_counter()
        done = 0
        try:
            while done < length:
                done += os.pwritev(self.fd, [buf[done:done + _MAX_IO]], off + done)
        except OSError as exc:
            raise _storage_error(self.path, exc, "write") from exc
        crc = zlib.crc32(buf)
        with self._lock:
            self.bytes_written += length
            self.write_seconds += time.perf_counter() - t0
        return crc

    def crc(self, i: int, c0: int, c1: int) -> int:
        """CRC-32 of columns [c0, c1) of panel i as stored."""
        return zlib.crc32(memoryview(self.read(i, c0, c1).T.reshape(-1)).cast("B"))

    def sync(self) -> None:
        t0 = time.perf_counter()
        os.fsync(self.fd)
        self.write_seconds += time.perf_counter() - t0

    def drop_cache(self) -> None:
        _advise_dontneed(self.fd, 0, 0)

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _storage_error(path: str, exc: OSError, what: str) -> ScratchStorageError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    remedy = ("free disk space, or choose a larger disk with SolveOptions(scratch_dir=...) or KERNELGEN_SCRATCH"
              if full else "choose a writable directory with SolveOptions(scratch_dir=...) or KERNELGEN_SCRATCH")
    return ScratchStorageError(f"the out-of-core factor cannot {what} {path}: {exc.strerror or exc}. Remedy: "
                               f"{remedy}. Nothing half-written is left.")


def _open(path: str, create: bool) -> int:
    try:
        return os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
    except OSError as exc:
        raise _storage_error(path, exc, "open") from exc


def _reserve(fd: int, path: str, nbytes: int) -> None:
    """Reserve the file's blocks now (a full disk fails here, not mid-factor); sparse only where unsupported."""
    try:
        os.posix_fallocate(fd, 0, max(1, nbytes))
    except AttributeError:  # pragma: no cover - no posix_fallocate on this platform
        os.ftruncate(fd, nbytes)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise _storage_error(path, exc, f"reserve {nbytes / 1e9:.2f} GB for") from exc
        os.ftruncate(fd, nbytes)  # a file system without fallocate: a sparse file


class _Reader:
    """Read a known sequence of blocks ahead of their use in a background thread (bounded queue)."""

    def __init__(self, panels: DiskPanels, items):
        self.panels, self.items = panels, list(items)
        self.q: queue.Queue = queue.Queue(maxsize=_READ_AHEAD)
        self.wait = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="kernelgen-disk-reader", daemon=True)
        self._t.start()

    def _run(self):
        try:
            for (i, c0, c1) in self.items:
                if self._stop.is_set():
                    return
                self.q.put(self.panels.read(i, c0, c1))
        except BaseException as exc:  # handed to the consumer
            self.q.put(exc)

    def __iter__(self):
        for _ in self.items:
            t0 = time.perf_counter()
            got = self.q.get()
            self.wait += time.perf_counter() - t0
            if isinstance(got, BaseException):
                raise got
            yield got

    def close(self):
        self._stop.set()
        while self._t.is_alive():
            with contextlib.suppress(queue.Empty):
                self.q.get(timeout=0.05)
        self._t.join()


def _fingerprint(parts: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(parts):
        v = parts[key]
        h.update(key.encode() + b"=")
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a.reshape(-1)).cast("B"))
        else:
            h.update(repr(v).encode())
        h.update(b";")
    return h.hexdigest()


def _write_json_atomic(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove(*paths) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _check_resumable(path: str, meta_path: str, want: dict, panels_nbytes: int) -> dict | None:
    """The progress record of a resumable file of this problem; None to start afresh; refuses a foreign one.

    Called with the data file open and locked. The record is written before the data file is filled
    (done_tiles 0), so: no record and an empty data file is a fresh start; no record and a non-empty
    file is not ours (refused); a record with done_tiles 0 restarts; else the record must describe this
    problem and the file must be complete in size.
    """
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if not os.path.exists(meta_path):
        if size:
            raise DataIntegrityError(f"{path} exists without its progress record {meta_path}: it is not a "
                                     "resumable kernelgen factor. Remedy: delete it (or choose another scratch_dir).")
        return None
    remedy = f"Remedy: delete {path} and {meta_path} to refactor."
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataIntegrityError(f"{meta_path}: unreadable progress record ({exc}). {remedy}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("done_tiles"), int) or meta["done_tiles"] < 0 \
            or not isinstance(meta.get("segments"), list):
        raise DataIntegrityError(f"{meta_path}: not a kernelgen progress record (a dict with an integer "
                                 f"'done_tiles' and a list of 'segments'). {remedy}")
    bad = [k for k, v in want.items() if meta.get(k) != v]
    if bad:
        raise DataIntegrityError(
            f"{path} holds the factor of another problem ({', '.join(f'{k}: saved {meta.get(k)!r}, now {want[k]!r}' for k in bad)}); "
            "it is not reused. Remedy: delete it, or choose another scratch_dir.")
    if meta["done_tiles"] == 0:
        return None
    if size < panels_nbytes:
        what = "is missing" if not os.path.exists(path) else f"has {size} bytes, its progress record expects {panels_nbytes}"
        raise DataIntegrityError(f"{path} {what} (truncated). {remedy}")
    return meta


def _lock(path: str) -> int | None:
    """Open ``path`` (created if missing, never truncated) and lock it for this process; None if another holds it."""
    fd = _open(path, True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise _storage_error(path, exc, "lock") from exc
    return fd


def out_of_core_cholesky(path: str, n: int, tile: int, width: int, dtype, fill, *, fingerprint: dict,
                         diagonal_add: float = 0.0, verbose: bool = False, desc: str = "cholesky (disk)"):
    """Factor the matrix whose entries ``fill`` computes into a scratch file, resuming a killed run.

    Parameters
    ----------
    path : str
        The data file; its progress record is ``path + ".json"``.
    n, tile : int
    width : int
        Columns per super-panel (rounded down to a multiple of ``tile``, at least one tile, at most the
        GEMM column limit).
    dtype : float32 or float64
    fill : callable
        ``fill(r0, r1, c0, c1, out)`` writes the entries A[r0:r1, c0:c1] (lower part, c1 <= r1, the
        diagonal tile in full) into the Fortran (r1 - r0, c1 - c0) array ``out``.
    fingerprint : dict
        What identifies the problem (hashed into the sidecar: data, kernel, ridge, ...).
    diagonal_add : float
        Added to the diagonal (a ridge, or a diagonal shift) before factoring.

    Returns
    -------
    (DiskPanels, dict)
        The factor L (lower triangle) in the file, and statistics: seconds per phase, bytes read and
        written, the seconds the factor waited on the file, the super-panels resumed.

    Raises
    ------
    NotPositiveDefiniteError
        At the first non-positive pivot (global index); the file is removed.
    DataIntegrityError
        The file exists but belongs to another problem, is truncated, or a finished super-panel's CRC-32
        does not match.
    """
    dtype = np.dtype(dtype)
    tile = int(min(tile, CALL_LIMITS[dtype].potrf_n))
    w_tiles = max(1, min(int(width), CALL_LIMITS[dtype].gemm_cols) // tile)
    meta_path = path + ".json"
    b = _bounds(n, tile)
    T = len(b) - 1
    # the super-panel width is not part of the identity: a resumed run may continue with another width
    want = {"format": FORMAT, "n": int(n), "tile": tile, "dtype": dtype.name,
            "fingerprint": _fingerprint({**fingerprint, "diagonal_add": float(diagonal_add)})}
    nbytes = DiskPanels.nbytes_for(n, tile, dtype)
    fd = _lock(path)
    if fd is None:  # another solve (another process, or a kept factor of this one) uses that file
        base, ext = os.path.splitext(path)
        alt = 1
        while fd is None:
            path = f"{base}-busy{os.getpid()}.{alt}{ext}"
            fd, alt = _lock(path), alt + 1
        meta_path = path + ".json"
        log.warning("the scratch file of this problem is in use by another solve; factoring into %s instead "
                    "(not resumed from the other's)", path)
    try:
        meta = _check_resumable(path, meta_path, want, nbytes)
    except BaseException:
        os.close(fd)
        raise
    stats = {"kernel": 0.0, "update": 0.0, "panel": 0.0, "write": 0.0, "io_wait": 0.0, "resumed_superpanels": 0,
             "superpanels": len(range(0, T, w_tiles)), "width": w_tiles * tile, "bytes_read": 0, "bytes_written": 0}
    if meta is None:
        meta = {**want, "done_tiles": 0, "segments": []}
        try:
            _write_json_atomic(meta_path, meta)  # the record first: a crash before it leaves an empty file only
            P = DiskPanels(path, n, tile, dtype, create=True, fd=fd)
        except BaseException:
            os.close(fd)
            _remove(path, meta_path)
            raise
        start = 0
    else:
        P = DiskPanels(path, n, tile, dtype, create=False, fd=fd)
        start = int(meta["done_tiles"])
        try:
            _verify_crcs(P, meta)
        except BaseException:
            P.close()
            raise
        stats["resumed_superpanels"] = len(meta["segments"])
        log.info("resuming the out-of-core factor in %s: %d of %d columns done (CRC-32 checked)", path, b[start], n)
    potrf, trsm, gemm, syrk = (_blas(k, dtype) for k in ("potrf", "trsm", "gemm", "syrk"))
    clock = time.perf_counter
    # one working buffer, reused by every super-panel: (n - c0) x W entries at most
    work = empty_hugepages((n * w_tiles * tile,), dtype)
    TT = np.empty((w_tiles * tile, tile), dtype=dtype)  # the super-panel's rows of a factored tile column, C order
    ok = False
    try:
        with tqdm(total=T, initial=start, desc=desc, unit="tile", disable=not verbose) as bar:
            for J0 in range(start, T, w_tiles):
                J1 = min(T, J0 + w_tiles)
                c0, c1 = b[J0], b[J1]
                # views of the working buffer: S[i] = columns [c0, min(c1, b_{i+1})) of row panel i
                S, off = {}, 0
                for i in range(J0, T):
                    w = min(c1, b[i + 1]) - c0
                    rows = b[i + 1] - b[i]
                    S[i] = work[off:off + rows * w].reshape(w, rows).T
                    off += rows * w
                t0 = clock()
                for i in range(J0, T):
                    fill(b[i], b[i + 1], c0, c0 + S[i].shape[1], S[i])
                    if diagonal_add and i < J1:
                        d = S[i][:, b[i] - c0:]
                        idx = np.arange(d.shape[0])
                        d[idx, idx] += diagonal_add
                stats["kernel"] += clock() - t0
                # 2. updates from the factored columns, one tile column at a time, streamed from the file
                t0 = clock()
                if J0 > 0:
                    reader = _Reader(P, [(i, b[k], b[k + 1]) for k in range(J0) for i in range(J0, T)])
                    try:
                        blocks = iter(reader)
                        for k in range(J0):
                            for i in range(J0, T):
                                Lik = next(blocks)  # L[rows_i, k-th tile column]
                                if i < J1:
                                    TT[b[i] - c0:b[i + 1] - c0] = Lik
                                w = S[i].shape[1]
                                r = gemm(-1.0, Lik, TT[:w].T, beta=1.0, c=S[i], overwrite_c=1)
                                _check_inplace(r, S[i], "gemm")
                    finally:
                        reader.close()
                    stats["io_wait"] += reader.wait
                    P.drop_cache()
                stats["update"] += clock() - t0
                # 3. factor the super-panel in RAM (right-looking, restricted to its tile columns)
                t0 = clock()
                for k in range(J0, J1):
                    kc = b[k] - c0
                    Akk = S[k][:, kc:kc + (b[k + 1] - b[k])]
                    c, info = potrf(Akk, lower=1, clean=0, overwrite_a=1)
                    if info != 0:
                        if info > 0:
                            idx = b[k] + info - 1
                            raise NotPositiveDefiniteError(
                                f"Cholesky factorisation failed at pivot {idx} of {n} ({dtype.name} arithmetic, "
                                "out of core): the matrix is not positive definite to working precision.", index=idx)
                        raise RuntimeError(f"potrf argument error info={info}")  # pragma: no cover
                    _check_inplace(c, Akk, "potrf")
                    for i in range(k + 1, T):
                        Aik = S[i][:, kc:kc + (b[k + 1] - b[k])]
                        x = trsm(1.0, Akk, Aik, side=1, lower=1, trans_a=1, overwrite_b=1)
                        _check_inplace(x, Aik, "trsm")
                    for i in range(k + 1, T):
                        Lik = S[i][:, kc:kc + (b[k + 1] - b[k])]
                        for j in range(k + 1, min(J1, i + 1)):
                            jc = b[j] - c0
                            C = S[i][:, jc:jc + (b[j + 1] - b[j])]
                            Ljk = S[j][:, kc:kc + (b[k + 1] - b[k])]
                            r = (syrk(-1.0, Lik, beta=1.0, c=C, lower=1, overwrite_c=1) if j == i else
                                 gemm(-1.0, Lik, Ljk, trans_b=1, beta=1.0, c=C, overwrite_c=1))
                            _check_inplace(r, C, "syrk" if j == i else "gemm")
                stats["panel"] += clock() - t0
                # 4. write, sync, record the progress (atomic)
                t0 = clock()
                crc = 0
                for i in range(J0, T):
                    crc = zlib.crc32(np.uint32(P.write(i, c0, S[i])).tobytes(), crc)
                P.sync()
                P.drop_cache()
                meta["done_tiles"] = J1
                meta["segments"].append([J0, J1, int(crc)])
                try:
                    _write_json_atomic(meta_path, meta)
                except OSError as exc:
                    raise _storage_error(meta_path, exc, "write") from exc
                stats["write"] += clock() - t0
                bar.update(J1 - J0)
        ok = True
    finally:
        del work
        stats["bytes_read"], stats["bytes_written"] = P.bytes_read, P.bytes_written
        if not ok:
            exc = sys.exc_info()[1]
            if not isinstance(exc, DataIntegrityError):
                # an exception or Ctrl-C: nothing half-written is left (only a hard kill leaves a resumable file)
                _remove(path, meta_path)
                log.info("out-of-core factor stopped (%s); %s removed", type(exc).__name__, path)
            P.close()
    stats["superpanels"] = len(meta["segments"])
    log.info("out-of-core cholesky n=%d tile=%d width=%d: read %.3g GB, wrote %.3g GB, waited %.1f s on reads",
             n, tile, w_tiles * tile, P.bytes_read / 1e9, P.bytes_written / 1e9, stats["io_wait"])
    return P, stats


def _verify_crcs(P: DiskPanels, meta: dict) -> None:
    """Recompute the CRC-32 of every finished super-panel (refuses a corrupt file by name)."""
    b, T = P.bounds, P.n_tiles
    segments = meta.get("segments")
    covered = 0
    ok_shape = isinstance(segments, list) and all(isinstance(g, list) and len(g) == 3 for g in segments)
    if ok_shape:
        for J0, J1, _ in segments:
            ok_shape = ok_shape and J0 == covered and J0 < J1 <= T
            covered = J1
    if not ok_shape or covered != int(meta.get("done_tiles", -1)):
        raise DataIntegrityError(f"{P.path}: its progress record is inconsistent (segments {segments!r}, done "
                                 f"{meta.get('done_tiles')!r}). Remedy: delete it and its .json to refactor.")
    for s, (J0, J1, want_crc) in enumerate(segments):
        crc = 0
        for i in range(J0, T):
            crc = zlib.crc32(np.uint32(P.crc(i, b[J0], min(b[J1], b[i + 1]))).tobytes(), crc)
        if crc != want_crc:
            raise DataIntegrityError(f"{P.path}: super-panel {s} (columns {b[J0]}..{b[J1]}) does not match the CRC-32 "
                                     "recorded when it was written (the file is corrupt). Remedy: delete it and its "
                                     ".json to refactor.")
    P.drop_cache()


class DiskCholeskyFactor(_CholeskyLogDet):
    """A Cholesky factor L L^T = A whose panels live in a scratch file (see the module docstring).

    The same protocol as :class:`~kernelgen.factors.CholeskyFactor` (``solve``, ``solve_triangular``,
    ``logdet``, ``describe``); each solve streams the file twice. The file is removed when the factor
    is closed (:meth:`close`) or garbage-collected, unless ``keep_file``. Not picklable
    (:class:`~kernelgen.errors.NotPicklableError`): the factor is a file on this machine.

    Attributes
    ----------
    panels : DiskPanels
    path : str
    stats : dict
        The factorisation's statistics (seconds per phase, bytes read and written, I/O wait); the
        solves add ``solve_bytes_read``, ``solve_seconds`` and ``solves``.
    diagonal_shift : float
        The shift added to the diagonal before factoring (0 unless the unshifted float32 factor broke
        down); the float64 iteration still solves the unshifted system.
    """

    kind = "cholesky"
    backend = "scipy"
    storage = "disk"

    def __init__(self, panels: DiskPanels, *, seconds: float = 0.0, stats: dict | None = None,
                 diagonal_shift: float = 0.0, keep_file: bool = False):
        self.panels = panels
        self.path = panels.path
        self.dtype = panels.dtype
        self.shape = (panels.n, panels.n)
        self.rank = panels.n
        self.rank_tol = None
        self.seconds = float(seconds)
        self.stats = dict(stats or {})
        self.stats.setdefault("solves", 0)
        self.stats.setdefault("solve_bytes_read", 0)
        self.stats.setdefault("solve_seconds", 0.0)
        self.diagonal_shift = float(diagonal_shift)
        self.spectrum_estimate = None
        self._finalizer = None if keep_file else weakref.finalize(self, _close_and_remove, panels,
                                                                  panels.path, panels.path + ".json")

    def close(self) -> None:
        """Remove the scratch file now (also done when the factor is garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()
        else:
            self.panels.close()

    @property
    def closed(self) -> bool:
        return self.panels.fd is None

    def __reduce__(self):
        raise NotPicklableError(
            f"this Cholesky factor lives in a scratch file on this machine ({self.path}, "
            f"{self.panels.nbytes / 1e9:.1f} GB) and cannot be pickled. Save the fit without it "
            "(fit.save(path), then refit or load and refactor), or fit with SolveOptions(storage='memory') where "
            "it fits in RAM.")

    def _check_open(self):
        if self.closed:
            raise InvalidInputError(f"the out-of-core factor's file {self.path} was closed (removed); refit.")

    def _sweep(self, B: np.ndarray, trans: bool | None) -> np.ndarray:
        """L^-1 B (trans False), L^-T B (True), or both (None: (L L^T)^-1 B), streaming the file."""
        self._check_open()
        L = self.panels
        trsm = _blas("trsm", L.dtype)
        b, T = L.bounds, L.n_tiles
        Y = np.asfortranarray(B, dtype=L.dtype).copy(order="F")
        t0 = time.perf_counter()
        read0 = L.bytes_read
        chunk = max(L.tile, _SOLVE_CHUNK // (L.tile * L.dtype.itemsize) // L.tile * L.tile)

        def pieces(i):  # the columns of panel i in chunks (the diagonal tile last, on its own)
            r0 = b[i]
            return [(i, a, min(r0, a + chunk)) for a in range(0, r0, chunk)] + [(i, r0, b[i + 1])]

        if trans is not True:  # forward: L y = B, panel rows in order
            items = [p for i in range(T) for p in pieces(i)]
            reader = _Reader(L, items)
            try:
                it = iter(reader)
                for i in range(T):
                    r0, r1 = b[i], b[i + 1]
                    for (_, a, e) in pieces(i)[:-1]:
                        Y[r0:r1] -= next(it) @ Y[a:e]
                    D = next(it)
                    Y[r0:r1] = trsm(1.0, D, np.asfortranarray(Y[r0:r1]), side=0, lower=1, trans_a=0, overwrite_b=1)
            finally:
                reader.close()
        if trans is not False:  # backward: L^T x = y, panel rows in reverse (the last ones are still cached)
            items = [p for i in range(T - 1, -1, -1) for p in [pieces(i)[-1]] + pieces(i)[:-1]]
            reader = _Reader(L, items)
            try:
                it = iter(reader)
                for i in range(T - 1, -1, -1):
                    r0, r1 = b[i], b[i + 1]
                    D = next(it)
                    Y[r0:r1] = trsm(1.0, D, np.asfortranarray(Y[r0:r1]), side=0, lower=1, trans_a=1, overwrite_b=1)
                    for (_, a, e) in pieces(i)[:-1]:
                        Y[a:e] -= next(it).T @ Y[r0:r1]
            finally:
                reader.close()
        self.stats["solves"] += 1
        self.stats["solve_bytes_read"] += L.bytes_read - read0
        self.stats["solve_seconds"] += time.perf_counter() - t0
        return Y

    def solve(self, B) -> np.ndarray:
        """(L L^T)^-1 B, in the factor's dtype (column-scaled), returned float64; streams the file twice."""
        B = np.asarray(B)
        if B.shape[0] != self.shape[0]:
            raise ShapeMismatchError(f"B has {B.shape[0]} rows, the factor has order {self.shape[0]}.")
        return _scaled(lambda R: self._sweep(R, None), B)

    def solve_triangular(self, B, *, trans: bool = False) -> np.ndarray:
        """``L^-1 B`` or ``L^-T B`` (one stream of the file); as :meth:`CholeskyFactor.solve_triangular`."""
        B = np.asarray(B)
        if B.shape[0] != self.shape[0]:
            raise ShapeMismatchError(f"B has {B.shape[0]} rows, the factor has order {self.shape[0]}.")
        return _scaled(lambda R: self._sweep(R, bool(trans)), B)

    def diagonal(self) -> np.ndarray:
        self._check_open()
        L = self.panels
        return np.concatenate([np.diag(L.read(i, L.bounds[i], L.bounds[i + 1])).copy() for i in range(L.n_tiles)])

    def logdet(self):
        """log det of the factored matrix from the diagonal of L (read from the file), with its precision."""
        ld = self._logdet_from_diag(self.diagonal())
        if self.diagonal_shift:
            return LogDet(ld.value, None, False, ld.dtype,
                          f"{ld.how}; of K + {self.diagonal_shift:.3g} I (the factor was shifted after a "
                          "float32 breakdown), NOT log det K: refactor in float64 for an exact value")
        return ld

    def rcond(self, anorm: float) -> float:
        """Reciprocal 1-norm condition estimate, as ``CholeskyFactor.rcond`` (Higham & Tisseur's estimator
        through :meth:`solve`: each step streams the file twice)."""
        self._check_open()
        return rcond_by_solves(self.solve, self.shape[0], anorm)

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "storage": "disk", "path": self.path,
                "dtype": self.dtype.name, "shape": list(self.shape), "rank": self.rank, "tile": self.panels.tile,
                "seconds": self.seconds, "file_bytes": self.panels.nbytes, "diagonal_shift": self.diagonal_shift,
                "stats": dict(self.stats),
                "spectrum_estimate": None if self.spectrum_estimate is None else list(self.spectrum_estimate)}

    def to_arrays(self):
        raise NotPicklableError(
            f"fit.save(include_factor=True) cannot store a factor that lives on disk ({self.path}, "
            f"{self.panels.nbytes / 1e9:.1f} GB): save without it (include_factor=False) and refit after loading, "
            "or keep the fit in this process (fit.solve reuses the file).")


def _close_and_remove(panels: DiskPanels, *paths) -> None:
    if panels.fd is not None:
        _remove(*paths)  # unlinked while still locked: no other solve can have opened these paths meanwhile
    panels.close()
