"""Reader for the IDX file format (LeCun et al.) used by MNIST and its relatives.

IDX layout (all integers big-endian), as described on the MNIST page:

========  =========================================================
bytes     meaning
========  =========================================================
0-1       two zero bytes
2         type code: 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32,
          0x0D float32, 0x0E float64
3         number of dimensions ``ndim``
4..       ``ndim`` uint32 sizes, then the data in C order
========  =========================================================

References
----------
.. [1] Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
   digits", http://yann.lecun.com/exdb/mnist/ (section "The IDX file format").
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataUnavailableError, MalformedIDXError

__all__ = ["read_idx", "load_idx", "IDXDataset", "IDX_FILENAMES"]

logger = logging.getLogger(__name__)

# Type code -> big-endian on-disk dtype (LeCun's IDX description, "the 3rd byte codes the type").
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"

#: Base names of the four files of the standard layout (MNIST, Fashion-MNIST, KMNIST, ...),
#: keyed by the field of :class:`IDXDataset` they fill.
IDX_FILENAMES: dict[str, str] = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class IDXDataset(NamedTuple):
    """The four arrays of a dataset in the standard IDX layout (unpacks like a tuple).

    Attributes
    ----------
    X_train : ndarray of shape (n_train, ...)
    y_train : ndarray of shape (n_train,)
    X_test : ndarray of shape (n_test, ...)
    y_test : ndarray of shape (n_test,)
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed) content of ``path``; gzip is detected by its magic bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    # An IDX file starts with two zero bytes, a gzip stream with 1f 8b (RFC 1952 section 2.3.1),
    # so the content, not the file name, decides.
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedIDXError(
                f"{path}: corrupt or truncated gzip stream ({type(exc).__name__}: {exc}). "
                "Download the file again or supply the uncompressed IDX file."
            ) from exc
    return raw


def _parse_idx(buf: bytes, source: str) -> np.ndarray:
    """Decode one IDX byte string into a native-endian ndarray (a copy, writable)."""
    if len(buf) < 4:
        raise MalformedIDXError(
            f"{source}: {len(buf)} bytes is too short for an IDX header (needs at least 4). "
            "The file is empty or truncated; fetch it again."
        )
    if buf[0] != 0 or buf[1] != 0:
        raise MalformedIDXError(
            f"{source}: bad magic number {buf[:4].hex()} (an IDX file starts with two zero bytes). "
            "This is not an IDX file; check the path."
        )
    code, ndim = buf[2], buf[3]
    if code not in _IDX_DTYPES:
        raise MalformedIDXError(
            f"{source}: unknown IDX type code 0x{code:02X} (known: "
            + ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
            + "). The file is corrupt or not IDX."
        )
    if ndim == 0:
        raise MalformedIDXError(f"{source}: IDX header declares 0 dimensions; the file is corrupt.")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise MalformedIDXError(
            f"{source}: truncated header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(buf)}. Fetch the file again."
        )
    shape = tuple(int(s) for s in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd headers
    actual = len(buf) - header
    if actual < expected:
        raise MalformedIDXError(
            f"{source}: truncated data: shape {shape} of {dtype.newbyteorder('=')} needs "
            f"{expected} bytes after the header, the file has {actual}. Fetch the file again."
        )
    if actual > expected:
        raise MalformedIDXError(
            f"{source}: {actual - expected} bytes of trailing data after shape {shape} "
            f"({expected} data bytes expected). The file is corrupt or the header is wrong."
        )
    arr = np.frombuffer(buf, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    # astype to the native byte order always copies: the result owns writable memory.
    return arr.reshape(shape).astype(dtype.newbyteorder("="), order="C")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into a NumPy array.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is recognised from the content, whatever the name.

    Returns
    -------
    ndarray of shape given by the header
        Native byte order; dtype uint8, int8, int16, int32, float32 or float64 from the
        type code 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E.

    Raises
    ------
    MalformedIDXError
        Bad magic number, unknown type code, truncated header or data, trailing bytes,
        corrupt gzip stream.
    FileNotFoundError
        ``path`` does not exist.

    References
    ----------
    .. [1] LeCun, Cortes, Burges, "The MNIST database", section "The IDX file format".

    Examples
    --------
    >>> import gzip, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.idx.gz")
    >>> with gzip.open(p, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), str(path))


def _find(directory: Path, base: str) -> Path | None:
    """Locate ``base`` in ``directory``: raw name, ``.gz``, or the ``train-images.idx3-ubyte`` spelling."""
    dotted = base.replace("-idx", ".idx")
    for name in (base, base + ".gz", dotted, dotted + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def load_idx(directory: str | os.PathLike, *, flatten: bool = False) -> IDXDataset:
    """Load a dataset stored as the four standard IDX files in ``directory``.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or with ``.gz``
    (the raw file wins when both exist; the ``train-images.idx3-ubyte`` spelling is
    accepted too). Works for MNIST, Fashion-MNIST, KMNIST and any other data in this layout.

    Parameters
    ----------
    directory : str or path-like
    flatten : bool, default False
        Reshape images of shape (n, rows, cols) to (n, rows * cols).

    Returns
    -------
    IDXDataset
        ``(X_train, y_train, X_test, y_test)``; images of shape (n, rows, cols)
        (or (n, rows * cols) when ``flatten``), labels of shape (n,).

    Raises
    ------
    DataUnavailableError
        A file is missing (the message lists the names looked for).
    MalformedIDXError
        A file is malformed (see :func:`read_idx`), labels are not 1-D, images have
        fewer than 1 dimension past the sample axis, or image and label counts differ.
    """
    directory = Path(directory)
    paths: dict[str, Path] = {}
    missing = []
    for key, base in IDX_FILENAMES.items():
        p = _find(directory, base)
        if p is None:
            missing.append(base)
        else:
            paths[key] = p
    if missing:
        raise DataUnavailableError(
            f"{directory}: missing IDX file(s) {', '.join(missing)} (raw or .gz). "
            "Put the four standard files in this directory."
        )
    arrays = {}
    for key, p in paths.items():
        logger.debug("reading %s", p)
        arrays[key] = read_idx(p)
    for split in ("train", "test"):
        X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
        if y.ndim != 1:
            raise MalformedIDXError(
                f"{paths[f'y_{split}']}: labels must be 1-D, got shape {y.shape}."
            )
        if X.ndim < 2:
            raise MalformedIDXError(
                f"{paths[f'X_{split}']}: images must have at least 2 dimensions "
                f"(samples, ...), got shape {X.shape}."
            )
        if X.shape[0] != y.shape[0]:
            raise MalformedIDXError(
                f"{split} split: {X.shape[0]} images ({paths[f'X_{split}'].name}) but "
                f"{y.shape[0]} labels ({paths[f'y_{split}'].name}); the files do not belong together."
            )
        if flatten:
            arrays[f"X_{split}"] = X.reshape(X.shape[0], -1)
    return IDXDataset(**arrays)
