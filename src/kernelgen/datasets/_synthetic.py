"""Synthetic data whose distribution is known in closed form: the sphere, a Gaussian mixture, a GP teacher.

For theory whose premises are about the data (a target drawn from a Gaussian process with a given
kernel, inputs uniform on the sphere, separated classes), these generators draw exactly from the stated
distribution. Each takes a ``seed`` and draws everything from one ``numpy.random.default_rng(seed)``, in
the order its docstring states; no global random state is read or changed. The same seed gives the same
arrays on the same machine and library versions (:func:`sample_gp` goes through LAPACK's eigensolver,
whose eigenvector signs may differ between builds: the distribution does not).

No jitter is added anywhere: the GP draw factors the kernel matrix by its eigendecomposition and sets to
zero only the eigenvalues that are zero to rounding (at most n eps ||K||, negative ones included; a kernel
matrix that is indefinite beyond rounding is refused), so the covariance sampled is K itself up to
rounding, singular K included.

References
----------
.. [1] M. E. Muller, "A note on a method for generating points uniformly on n-dimensional spheres",
   Communications of the ACM 2(4), 19-20 (1959).
.. [2] C. E. Rasmussen, C. K. I. Williams, *Gaussian Processes for Machine Learning*, MIT Press (2006),
   appendix A.2 (sampling from a multivariate Gaussian).
.. [3] S. Spigler, M. Geiger, M. Wyart, "Asymptotic learning curves of kernel methods: empirical data
   versus teacher-student paradigm", J. Stat. Mech. 124001 (2020), section 2 (the teacher-student setting).
"""

from __future__ import annotations

import logging

import numpy as np

from .._validation import as_float_array, is_finite_real, is_int
from ..errors import InvalidInputError
from ..kernels import Kernel, Precomputed, as_kernel
from ..numerics import check_allocation, spectral_cutoffs

__all__ = ["sphere_uniform", "gaussian_mixture", "mixture_means", "sample_gp", "teacher_student"]

logger = logging.getLogger(__name__)

#: Input distributions of :func:`teacher_student`.
INPUTS = ("gaussian", "sphere")


def _count(value, name: str, minimum: int = 1) -> int:
    if not is_int(value) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _rng(seed) -> np.random.Generator:
    """``numpy.random.default_rng(seed)`` for a non-negative integer seed (the only randomness allowed)."""
    if not is_int(seed) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r} "
                                "(every draw is reproducible from it).")
    return np.random.default_rng(int(seed))


def _sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    g = rng.standard_normal((n, d))
    norms = np.linalg.norm(g, axis=1)
    zero = norms == 0.0
    while zero.any():  # probability ~1e-300 per row; redrawn (from the same stream) rather than divided by 0
        g[zero] = rng.standard_normal((int(zero.sum()), d))
        norms[zero] = np.linalg.norm(g[zero], axis=1)
        zero = norms == 0.0
    return g / norms[:, None]


def sphere_uniform(n: int, d: int, *, seed: int) -> np.ndarray:
    """Points drawn independently and uniformly on the unit sphere S^{d-1} of R^d.

    x = g / ||g|| with g ~ N(0, I_d): the standard Gaussian is rotation invariant, so its direction is
    uniform on the sphere (Muller 1959). Hence E[x] = 0 and E[x x^T] = I_d / d.

    Parameters
    ----------
    n : int
        Number of points, >= 1.
    d : int
        Ambient dimension, >= 1 (d = 1: the two points -1 and +1, each with probability 1/2).
    seed : int
        Seed of ``numpy.random.default_rng``; g is its first n * d standard normals, row by row.

    Returns
    -------
    X : ndarray of shape (n, d), float64
        Rows of unit Euclidean norm (to rounding).

    Raises
    ------
    InvalidInputError
        n or d not an integer >= 1; seed not a non-negative integer.

    References
    ----------
    Muller (1959), "A note on a method for generating points uniformly on n-dimensional spheres".

    Examples
    --------
    >>> X = sphere_uniform(5, 3, seed=0)
    >>> X.shape, bool(np.allclose(np.linalg.norm(X, axis=1), 1.0))
    ((5, 3), True)
    """
    n, d = _count(n, "n"), _count(d, "d")
    return _sphere(_rng(seed), n, d)


def mixture_means(n_classes: int, d: int, separation: float) -> np.ndarray:
    """The class means of :func:`gaussian_mixture`: a centred regular simplex with edge ``separation``.

    mu_c = (separation / sqrt 2) (e_c - 1/C), c = 0..C-1, in the first C coordinates of R^d (zeros
    beyond): ||mu_c - mu_c'|| = separation for every pair c != c', and sum_c mu_c = 0.

    Parameters
    ----------
    n_classes : int
        C, with 2 <= C <= d.
    d : int
        Dimension.
    separation : float
        Distance between any two class means, >= 0 (in units of the within-class standard deviation 1).

    Returns
    -------
    means : ndarray of shape (n_classes, d), float64

    Raises
    ------
    InvalidInputError
        C < 2, C > d, or separation negative or not finite.
    """
    C, d = _count(n_classes, "n_classes", 2), _count(d, "d")
    if C > d:
        raise InvalidInputError(f"n_classes = {C} needs d >= {C} (the means are a simplex in the first n_classes "
                                f"coordinates), got d = {d}; raise d or lower n_classes.")
    if not is_finite_real(separation) or separation < 0:
        raise InvalidInputError(f"separation must be a finite number >= 0, got {separation!r}.")
    means = np.zeros((C, d))
    means[:, :C] = (float(separation) / np.sqrt(2.0)) * (np.eye(C) - 1.0 / C)
    return means


def gaussian_mixture(n: int, d: int, *, n_classes: int, separation: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Labelled points from an equal-weight mixture of unit-variance Gaussians in R^d.

    y_i ~ uniform on {0, ..., C-1} and x_i | y_i ~ N(mu_{y_i}, I_d), independently, with the means of
    :func:`mixture_means` (a centred regular simplex: every two means are ``separation`` apart). Two
    classes are then told apart by a linear rule with Bayes error Phi(-separation / 2).

    Parameters
    ----------
    n : int
        Number of points, >= 1.
    d : int
        Dimension, >= n_classes.
    n_classes : int
        C >= 2.
    separation : float
        Distance between any two class means, >= 0 (0: one Gaussian, labels independent of x).
    seed : int
        Seed of ``numpy.random.default_rng``: first the n labels (``integers(0, C, n)``), then the n x d
        standard normal noise, row by row.

    Returns
    -------
    X : ndarray of shape (n, d), float64
    y : ndarray of shape (n,), int64
        Labels in 0..C-1 (class counts are multinomial(n, 1/C), not balanced exactly).

    Raises
    ------
    InvalidInputError
        n, d or n_classes out of range, separation negative or not finite, seed not a non-negative integer.

    Examples
    --------
    >>> X, y = gaussian_mixture(6, 3, n_classes=3, separation=4.0, seed=0)
    >>> X.shape, y.shape, str(y.dtype)
    ((6, 3), (6,), 'int64')
    """
    n = _count(n, "n")
    means = mixture_means(n_classes, d, separation)
    rng = _rng(seed)
    y = rng.integers(0, means.shape[0], size=n).astype(np.int64)
    X = means[y] + rng.standard_normal((n, means.shape[1]))
    return X, y


def _gp_factor(X: np.ndarray, kernel: Kernel) -> np.ndarray:
    """A matrix L of shape (n, n) with L L^T = K to rounding (eigenvectors times the square roots of the
    eigenvalues, those that are zero to rounding set to 0); refuses a K that is indefinite beyond rounding."""
    n = X.shape[0]
    # K, its eigenvectors and eigh's workspace: three n x n float64 arrays
    check_allocation(3 * n * n * 8, what=f"sampling a Gaussian process on {n} points",
                     remedy="fewer points (the draw needs the n x n kernel matrix and its eigenvectors)")
    K = kernel.matrix(X, dtype=np.float64)
    w, V = np.linalg.eigh(K)  # Golub & Van Loan §8.1: K = V diag(w) V^T, V orthogonal
    rank_tol, neg_tol = spectral_cutoffs(w, dtype=np.float64)
    if n and w[0] < -neg_tol:
        raise InvalidInputError(
            f"the kernel {kernel!r} is not positive semi-definite on these points (eigenvalue {w[0]:.3g}, below "
            f"-{neg_tol:.3g}, beyond rounding): no Gaussian process has this covariance; use a positive "
            "semi-definite kernel.")
    # Eigenvalues <= rank_tol = n eps max|w| are zero to the precision K carries (numerics.spectral_cutoffs):
    # they are set to 0, so a singular K is sampled in its range; the covariance changes by <= rank_tol.
    dropped = int(np.sum(w <= rank_tol))
    if dropped:
        logger.debug("GP draw: %d eigenvalue(s) of K at or below %.3g (zero to rounding) set to 0", dropped, rank_tol)
    return V * np.sqrt(np.where(w > rank_tol, w, 0.0))[None, :]


def _as_input_kernel(kernel, X: np.ndarray) -> Kernel:
    k = as_kernel(kernel)
    if isinstance(k, Precomputed):
        raise InvalidInputError("a Gaussian process over inputs needs a kernel of the inputs, not 'precomputed'; "
                                "pass e.g. kernelgen.kernels.Gaussian(bandwidth=1.0).")
    return k.resolve(X)


def sample_gp(X, *, kernel, n_functions: int = 1, seed: int) -> np.ndarray:
    """Functions drawn from the centred Gaussian process with covariance ``kernel``, at the rows of X.

    F[:, j] ~ N(0, K) independently for j = 0..n_functions-1, with K[i, l] = k(x_i, x_l). Drawn as
    F = V diag(sqrt(w~)) Z with K = V diag(w) V^T (``numpy.linalg.eigh``), w~ = w where w > n eps max|w|
    and 0 elsewhere, and Z standard normal (Rasmussen & Williams 2006, A.2, with the eigendecomposition in
    place of the Cholesky factor). The covariance of each column, V diag(w~) V^T, differs from K by at most
    n eps ||K||_2, the precision K itself carries (``kernelgen.numerics.spectral_cutoffs``); no jitter is
    added, and a singular K (repeated points, a low-rank kernel) is sampled in its range. Cost: one n x n
    kernel matrix and one eigendecomposition, O(n^3) (n = 4,000: seconds).

    Parameters
    ----------
    X : array of shape (n, d)
        The points (converted to float64).
    kernel : Kernel or str
        The covariance function (a :class:`~kernelgen.kernels.Kernel` or a registered name with its
        defaults); data-dependent defaults such as ``bandwidth=None`` are resolved on X.
    n_functions : int, default 1
        Number of independent functions.
    seed : int
        Seed of ``numpy.random.default_rng``; Z is its first n * n_functions standard normals, row by row.

    Returns
    -------
    F : ndarray of shape (n, n_functions), float64

    Raises
    ------
    InvalidInputError
        Bad X (see ``as_float_array``), an unknown kernel or ``"precomputed"``, n_functions < 1, a seed that
        is not a non-negative integer, or a kernel matrix that is indefinite beyond rounding.
    MemoryBudgetError
        The three n x n float64 arrays do not fit in the memory available.

    References
    ----------
    Rasmussen & Williams, *Gaussian Processes for Machine Learning* (2006), appendix A.2.

    Examples
    --------
    >>> from kernelgen.kernels import Gaussian
    >>> F = sample_gp(np.zeros((3, 2)), kernel=Gaussian(bandwidth=1.0), n_functions=2, seed=0)
    >>> bool(np.allclose(F, F[0]))  # repeated points: K is all ones, so each function is constant there
    True
    """
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    m = _count(n_functions, "n_functions")
    rng = _rng(seed)
    k = _as_input_kernel(kernel, X)
    L = _gp_factor(X, k)
    return L @ rng.standard_normal((X.shape[0], m))


def teacher_student(n: int, d: int, *, kernel, noise: float = 0.0, seed: int, inputs: str = "gaussian"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of the teacher-student setting: y = f(x) + noise * eps, f a GP with ``kernel``.

    x_i are i.i.d. standard normal in R^d (``inputs="gaussian"``) or uniform on the sphere S^{d-1}
    (``inputs="sphere"``, as :func:`sphere_uniform`); given the inputs, (f(x_1), ..., f(x_n)) ~ N(0, K)
    with K = k(X, X) (:func:`sample_gp`), and eps_i ~ N(0, 1) independent. So E[y y^T | X] = K +
    noise^2 I. The teacher exists only at the drawn points: draw the training and the test points in
    one call and split them (e.g. the first n_train rows to train on).

    Parameters
    ----------
    n : int
        Number of points, >= 1 (the draw is O(n^3): see :func:`sample_gp`).
    d : int
        Input dimension, >= 1.
    kernel : Kernel or str
        The teacher's covariance (``bandwidth=None`` and similar defaults are resolved on the drawn X).
    noise : float, default 0.0
        Standard deviation of the label noise, >= 0.
    seed : int
        Seed of ``numpy.random.default_rng``: first the n x d input normals, then the n standard normals
        of the GP draw, then the n noise normals.
    inputs : {"gaussian", "sphere"}, default "gaussian"
        Input distribution.

    Returns
    -------
    X : ndarray of shape (n, d), float64
    y : ndarray of shape (n,), float64

    Raises
    ------
    InvalidInputError
        An argument out of range (named in the message), an unknown kernel or input distribution, or a
        kernel that is not positive semi-definite on X.
    MemoryBudgetError
        As :func:`sample_gp`.

    References
    ----------
    Spigler, Geiger & Wyart, J. Stat. Mech. (2020) 124001, section 2.

    Examples
    --------
    >>> X, y = teacher_student(50, 3, kernel="laplace", noise=0.1, seed=1, inputs="sphere")
    >>> X.shape, y.shape
    ((50, 3), (50,))
    """
    n, d = _count(n, "n"), _count(d, "d")
    if not is_finite_real(noise) or noise < 0:
        raise InvalidInputError(f"noise must be a finite number >= 0 (a standard deviation), got {noise!r}.")
    if inputs not in INPUTS:
        raise InvalidInputError(f"inputs must be one of {INPUTS}, got {inputs!r}.")
    rng = _rng(seed)
    X = rng.standard_normal((n, d)) if inputs == "gaussian" else _sphere(rng, n, d)
    L = _gp_factor(X, _as_input_kernel(kernel, X))
    f = L @ rng.standard_normal(n)
    y = f + float(noise) * rng.standard_normal(n)
    return X, y
