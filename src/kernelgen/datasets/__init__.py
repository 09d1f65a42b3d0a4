"""Datasets: MNIST (verified, cached, several sources) and a general IDX reader.

>>> from kernelgen.datasets import load_mnist          # doctest: +SKIP
>>> X_train, y_train, X_test, y_test = load_mnist()    # doctest: +SKIP
"""

from ._cache import get_data_home
from ._idx import IDX_FILENAMES, IDXDataset, load_idx, read_idx
from ._mnist import MNIST_SHA256, load_mnist

__all__ = ["load_mnist", "load_idx", "read_idx", "IDXDataset", "IDX_FILENAMES", "get_data_home", "MNIST_SHA256"]
