"""Random feature maps (Fourier, ReLU), the arc-cosine limit kernel and the minimum-norm fit Phi^+ Y.

See :mod:`kernelgen.random_features` for the definitions and references.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array, check_same_rows
from ..errors import InvalidInputError, ShapeMismatchError
from ..kernels import ArcCosine, kernel_matrix
from ..solvers import min_norm_solve

__all__ = ["FEATURE_KINDS", "MinNormFit", "RandomFeatureMap", "arccos_kernel", "draw_random_features",
           "min_norm_fit", "random_fourier_features"]

log = logging.getLogger(__name__)

FEATURE_KINDS = ("fourier", "relu")

# ---------------------------------------------------------------------------------------
# Feature maps
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomFeatureMap:
    """A drawn random-feature map with ``n_features`` columns.

    Attributes
    ----------
    kind : {"fourier", "relu"}
    weights : ndarray of shape (n_inputs, n_features)
        Column ``j`` is the frequency / weight vector ``v_j ~ N(0, s^{-2} I)``.
    offsets : ndarray of shape (n_features,)
        Phases ``b_j ~ U[0, 2 pi)`` (zeros for ``"relu"``).
    bandwidth : float
        ``s``.
    seed : int
    """

    kind: str
    weights: np.ndarray
    offsets: np.ndarray
    bandwidth: float
    seed: int

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_inputs(self) -> int:
        return int(self.weights.shape[0])

    def transform(self, X, *, n_features: int | None = None, normalize: bool = True,
                  block_bytes: int = 256 * 2**20, order: str = "C") -> np.ndarray:
        """Features of the width-``N`` model: the first ``N`` columns of this draw.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_inputs)
        n_features : int, optional
            Width ``N <= self.n_features`` (default: all).
        normalize : bool
            ``True``: ``sqrt(2/N) cos(v^T x + b)`` (``Phi``); ``False``: ``sqrt(2) cos(v^T x + b)``
            (``Psi = sqrt(N) Phi``, the same for every width; what sweeps store).
        block_bytes : int
            Bound on the temporaries of one block (rows x columns x 8 bytes).
        order : {"C", "F"}
            Memory order of the returned array.

        Returns
        -------
        Phi : ndarray of shape (n_samples, N), float64
        """
        X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
        if X.shape[1] != self.n_inputs:
            raise ShapeMismatchError(
                f"X has {X.shape[1]} columns but the feature map was drawn for {self.n_inputs} inputs."
            )
        N = self.n_features if n_features is None else int(n_features)
        if not 1 <= N <= self.n_features:
            raise InvalidInputError(f"n_features must be in [1, {self.n_features}], got {N}; draw a wider map.")
        n = X.shape[0]
        out = np.empty((n, N), dtype=np.float64, order=order)
        elems = max(1, int(block_bytes) // 8)
        rows = min(n, 8192, max(1, elems // 1024))  # GEMM rows within kernelgen's tested call limits
        cols = min(N, max(1, elems // rows))
        scale = np.sqrt(2.0 / N) if normalize else np.sqrt(2.0)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            for c0 in range(0, N, cols):
                c1 = min(N, c0 + cols)
                t = X[r0:r1] @ self.weights[:, c0:c1]
                if self.kind == "fourier":
                    t += self.offsets[c0:c1]
                    np.cos(t, out=t)
                else:
                    np.maximum(t, 0.0, out=t)
                t *= scale
                out[r0:r1, c0:c1] = t
        return out

    def kernel(self, X, Z=None) -> np.ndarray:
        """The limit kernel ``E[phi(x)^T phi(z)]`` as ``N -> infinity``.

        Returns
        -------
        K : ndarray of shape (n_x, n_z)
            Gaussian ``exp(-||x - z||^2 / (2 s^2))`` for ``"fourier"``; :func:`arccos_kernel`
            for ``"relu"``.
        """
        if self.kind == "fourier":

            return kernel_matrix(X, Z, kernel="gaussian", bandwidth=self.bandwidth)
        return arccos_kernel(X, Z, bandwidth=self.bandwidth)


def draw_random_features(n_inputs: int, n_features: int, *, kind: str = "fourier",
                         bandwidth: float = 5.0, seed: int) -> RandomFeatureMap:
    """Draw a random-feature map (explicit seed, NumPy ``default_rng``).

    Parameters
    ----------
    n_inputs : int
        Input dimension ``d``.
    n_features : int
        Number of features ``N`` (the widest model; narrower ones use leading columns).
    kind : {"fourier", "relu"}
    bandwidth : float
        ``s``: weights ``v ~ N(0, s^{-2} I_d)``.
    seed : int

    Returns
    -------
    RandomFeatureMap

    Examples
    --------
    >>> fm = draw_random_features(3, 5, bandwidth=2.0, seed=0)
    >>> fm.transform([[0.0, 1.0, 2.0]]).shape
    (1, 5)
    """
    if kind not in FEATURE_KINDS:
        raise InvalidInputError(f"unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}.")
    n_inputs, n_features = int(n_inputs), int(n_features)
    if n_inputs < 1 or n_features < 1:
        raise InvalidInputError(f"n_inputs and n_features must be >= 1, got {n_inputs}, {n_features}.")
    bandwidth = float(bandwidth)
    if not np.isfinite(bandwidth) or bandwidth <= 0:
        raise InvalidInputError(f"bandwidth must be positive and finite, got {bandwidth}.")
    if seed is None:
        raise InvalidInputError("pass an explicit integer seed (kernelgen has no global RNG).")
    # Two independent streams, each filled feature by feature, so that the first N features
    # of a draw do not depend on n_features (nested widths: a draw of N_max extends one of N).
    rng_w, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
    W = rng_w.standard_normal((n_features, n_inputs)).T / bandwidth  # [RR] Alg. 1: v ~ N(0, s^-2 I)
    W = np.ascontiguousarray(W)
    if kind == "fourier":
        b = rng_b.uniform(0.0, 2.0 * np.pi, size=n_features)  # [RR] Alg. 1: b ~ U[0, 2 pi)
    else:
        b = np.zeros(n_features)
    return RandomFeatureMap(kind, W, b, bandwidth, int(seed))


def random_fourier_features(X, n_features: int, *, bandwidth: float = 5.0, seed: int) -> np.ndarray:
    """``sqrt(2/N) cos(X V + b)`` for a fresh draw: shape (n_samples, n_features)."""
    X = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    return draw_random_features(X.shape[1], n_features, kind="fourier", bandwidth=bandwidth,
                                seed=seed).transform(X)


def arccos_kernel(X, Z=None, *, bandwidth: float = 1.0) -> np.ndarray:
    """Order-1 arc-cosine kernel, the limit of :func:`draw_random_features` with ``"relu"``.

    A thin wrapper: ``kernel_matrix(X, Z, kernel=ArcCosine(bandwidth))`` (:class:`kernelgen.kernels.ArcCosine`,
    the kernel object that the solvers take). ``k(x, z) = s^{-2} ||x|| ||z|| (sin t + (pi - t) cos t) / pi``,
    ``t`` the angle between ``x`` and ``z`` ([CS] eq. 6-7 with ``J_1``; ``2 E[relu(v^T x) relu(v^T z)]`` for
    ``v ~ N(0, s^{-2} I)``).

    Returns
    -------
    K : ndarray of shape (n_x, n_z), float64

    Raises
    ------
    InvalidInputError, NonFiniteInputError, ShapeMismatchError
        Bad X / Z or bandwidth (from :func:`kernelgen.kernels.kernel_matrix`).
    """
    return kernel_matrix(X, Z, kernel=ArcCosine(bandwidth=bandwidth))


# ---------------------------------------------------------------------------------------
# Minimum-norm fit for one width
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinNormFit:
    """Result of :func:`min_norm_fit`.

    Attributes
    ----------
    coef : ndarray of shape (N,) or (N, n_targets)
        ``Phi^+ Y``.
    rank : int
        Numerical rank of ``Phi`` reported by the solver.
    method : str
        Solver that ran.
    relative_residual : float
        ``||Phi coef - Y|| / ||Y||`` (zero up to rounding when ``N >= n`` at full rank).
    """

    coef: np.ndarray
    rank: int
    method: str
    relative_residual: float


def min_norm_fit(Phi, Y, *, rcond=None) -> MinNormFit:
    """Minimum-norm least-squares coefficients ``Phi^+ Y`` for any width.

    Least squares when ``N < n``, minimum-norm interpolation when ``N > n``; the solve is
    :func:`kernelgen.min_norm_solve` (rank-revealing), so ``N ~ n`` is handled too.

    Parameters
    ----------
    Phi : array_like of shape (n_samples, N)
    Y : array_like of shape (n_samples,) or (n_samples, n_targets)
    rcond : float, optional
        Relative singular-value cutoff passed to :func:`kernelgen.min_norm_solve`.

    Returns
    -------
    MinNormFit
    """

    Phi = as_float_array(Phi, "Phi", ndim=(2,), dtype=np.float64)
    Y = as_float_array(Y, "Y", ndim=(1, 2), dtype=np.float64)
    check_same_rows(Phi, Y, "Phi", "Y")
    sol = min_norm_solve(Phi, Y, rcond=rcond)
    res = np.linalg.norm(Phi @ sol.coef - Y) / max(np.linalg.norm(Y), np.finfo(float).tiny)
    return MinNormFit(sol.coef, int(sol.rank), str(sol.method), float(res))
