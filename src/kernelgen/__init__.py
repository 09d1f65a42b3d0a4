"""kernelgen: exact computation for the theory of deep learning.

>>> import kernelgen
>>> fit = kernelgen.kernel_interpolate(X, Y, kernel="gaussian", bandwidth=5.0)   # doctest: +SKIP
"""

from . import datasets, errors, kernels, solvers
from .datasets import load_idx, load_mnist, read_idx
from .kernels import default_bandwidth, kernel_matrix
from .solvers import KernelInterpolant, MinNormSolution, kernel_interpolate, min_norm_solve

__version__ = "0.1.0"
__all__ = [
    "KernelInterpolant",
    "MinNormSolution",
    "__version__",
    "datasets",
    "default_bandwidth",
    "errors",
    "kernel_interpolate",
    "kernel_matrix",
    "kernels",
    "load_idx",
    "load_mnist",
    "min_norm_solve",
    "read_idx",
    "solvers",
]
