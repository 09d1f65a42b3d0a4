"""On-disk cache of decoded datasets: where it lives, atomic writes, verified reads."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from ..errors import DataIntegrityError

__all__ = ["get_data_home", "DatasetSpec", "verify_arrays", "write_cache", "read_cache", "sha256_array"]

logger = logging.getLogger(__name__)

#: Environment variable naming the cache directory (used when ``data_home`` is None).
ENV_VAR = "KERNELGEN_DATA"


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **dict(zip(spec.names, arrays)))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is shared data, not a secret
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
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
