"""Finite fully connected ReLU networks (JAX) against their infinite-width kernels.

What is here
------------
* :class:`ReluMLP` -- the network of :mod:`kernelgen.kernels._relu`'s convention, at finite width, in the
  NTK parameterisation (the one :class:`~kernelgen.kernels.ReluNNGP` / :class:`~kernelgen.kernels.ReluNTK`
  describe) or the standard one: ``init(seed)``, ``apply(params, X)``, ``empirical_kernels(params, X, Z)``
  (the NNGP and the full multi-output NTK of *this* network), ``linearize(params0)``.
* :func:`gradient_descent` -- full-batch gradient descent on the squared loss, recording outputs,
  ``||theta_t - theta_0||`` and anything a caller observes; :func:`linearized_gd_outputs` -- the same
  gradient descent on the linearised network, exactly, in function space (one eigendecomposition).
* Functions on the Boolean cube ``{-1, +1}^n`` (De Palma, Kiani & Lloyd 2019): :func:`fwht`,
  :func:`cube_gp_eigenvalues`, :func:`sample_cube_gp` (a Gaussian process whose kernel depends on the
  Hamming distance only, sampled exactly on all ``2^n`` strings), :func:`nearest_disagreement_distance`
  and :func:`random_flip_counts`.

Convention (NTK parameterisation; Lee et al. 2019, §2; Jacot et al. 2018)
------------------------------------------------------------------------
``depth`` L hidden layers of equal ``width``, ``n_outputs`` k linear readouts, sizes n_0 = d, n_1..n_L =
width, n_{L+1} = k::

    h^(l) = (sigma_w / sqrt(n_{l-1})) x^(l-1) W^(l) + sigma_b b^(l),   x^(l) = relu(h^(l)),   f = h^(L+1),

every entry of W^(l) (shape (n_{l-1}, n_l)) and b^(l) i.i.d. N(0, 1). This is the network of the module
docstring of :mod:`kernelgen.kernels._relu`, so its NNGP and NTK tend, as width -> infinity, to
``ReluNNGP(depth=L, weight_variance=sigma_w^2, bias_variance=sigma_b^2)`` and ``ReluNTK(...)`` with
the same L (hidden layers; the readout is the (L+1)-th layer) -- ``tests/test_networks.py`` checks
both the depth counting and the variances against the analytic kernels. The *standard*
parameterisation draws W^(l) ~ N(0, sigma_w^2 / n_{l-1}), b^(l) ~ N(0, sigma_b^2) and applies no
multipliers: the same function at initialisation (same NNGP), but a tangent kernel that grows with the
width (the gradient with respect to W^(l) is not scaled by 1/sqrt(n_{l-1})), so it has no finite limit.

Empirical kernels of one network (exact, not sampled): with delta^(l) = df/dh^(l) (shape (n, k, n_l);
delta^(L+1) = I_k, delta^(l) = relu'(h^(l)) * (m_w^(l+1) delta^(l+1) W^(l+1)^T), m_w the weight multiplier,
relu'(0) = 0),

    NTK((x, i), (z, j)) = sum_{l=1}^{L+1} <delta_i^(l)(x), delta_j^(l)(z)> (m_w^(l)^2 <x^(l-1)(x), x^(l-1)(z)> + m_b^2),
    NNGP(x, z)          = m_w^(L+1)^2 <x^(L)(x), x^(L)(z)> + m_b^2   (= E[f_i(x) f_i(z) | hidden layers]),

(m_w = sigma_w/sqrt(n_{l-1}), m_b = sigma_b in the NTK parameterisation; 1, 1 in the standard one). The
NNGP is the readout integrated out exactly, so it converges with O(width^-1/2) fluctuations and no
Monte-Carlo error of the readout (Lee et al. 2019, Fig. S9, average over networks instead).

Gradient descent. The loss is ``L(theta) = ||f(X) - Y||_F^2 / (2 n k)`` (mean squared error over samples
and outputs, halved), and ``theta_{t+1} = theta_t - eta grad L(theta_t)``. On the linearised network
``f_lin(x; theta) = f(x; theta_0) + J_0(x) (theta - theta_0)`` the same iteration gives, in function space
(Lee et al. 2019, §2: the linearised network's dynamics, here with the discrete step), with Theta = NTK(X, X) flattened to (n k, n k),
c = eta / (n k) and r_t = f_lin_t(X) - Y:

    r_t = (I - c Theta)^t r_0,   f_lin_t(x) = f_0(x) - c Theta(x, X) sum_{s<t} r_s,

which :func:`linearized_gd_outputs` evaluates from one eigendecomposition of Theta.

Dtype policy: parameters, data and every computation are float64 by default (run inside
:func:`kernelgen._jax.enable_x64`; JAX's global setting is restored afterwards); ``dtype="float32"`` is
accepted for speed where the caller judges float32 rounding (~1e-7 relative per step) negligible.
Randomness: the weights come from ``numpy.random.default_rng(seed)``, so a seed gives the same network on
every backend.

References
----------
J. Lee, L. Xiao, S. S. Schoenholz, Y. Bahri, R. Novak, J. Sohl-Dickstein, J. Pennington, "Wide neural
networks of any depth evolve as linear models under gradient descent", NeurIPS 2019, §2 (NTK
parameterisation; the linearised network and its closed-form dynamics), Theorem 2.1, Fig. 1, Fig. S9.
A. Jacot, F. Gabriel, C. Hongler, "Neural tangent kernel", NeurIPS 2018, §4.
G. De Palma, B. Kiani, S. Lloyd, "Random deep neural networks are biased towards simple functions",
NeurIPS 2019 (Hamming distance to the nearest differently classified string; random bit flips).
R. O'Donnell, "Analysis of Boolean functions", Cambridge 2014, §1.2-1.3 (Walsh / Fourier expansion on the
cube; the Walsh functions diagonalise every kernel that depends on x XOR z only).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import numbers
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ._jax import enable_x64
from .errors import InvalidInputError, MemoryBudgetError, NonFiniteResultError, ShapeMismatchError
from .numerics import check_finite_iterates

__all__ = [
    "MAX_CUBE_DIM",
    "MAX_PARAMETERS",
    "PARAMETERIZATIONS",
    "GDTrace",
    "ReluMLP",
    "cube_gp_eigenvalues",
    "cube_strings",
    "fwht",
    "gradient_descent",
    "linearized_gd_outputs",
    "nearest_disagreement_distance",
    "random_flip_counts",
    "sample_cube_gp",
]

log = logging.getLogger(__name__)

PARAMETERIZATIONS = ("ntk", "standard")
#: Largest parameter count a network may have before :meth:`ReluMLP.init` refuses (float64: 1.6 GB).
MAX_PARAMETERS = 200_000_000
#: Largest cube dimension n of the Boolean-cube functions (2^26 float64 = 512 MiB per sample).
MAX_CUBE_DIM = 26


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise InvalidInputError(f"dtype must be float32 or float64, got {dtype!r}.")
    return dt


def _x64(dt):
    """float64 JAX inside, JAX's previous setting restored after (float32 needs nothing)."""
    return enable_x64() if dt == np.float64 else contextlib.nullcontext()


def _positive_int(v, name, lo=1):
    if isinstance(v, bool):
        raise InvalidInputError(f"{name} must be an integer >= {lo}, got {v!r}.")
    try:
        v = operator.index(v)
    except TypeError as exc:
        raise InvalidInputError(f"{name} must be an integer >= {lo}, got {v!r}.") from exc
    if v < lo:
        raise InvalidInputError(f"{name} must be an integer >= {lo}, got {v}.")
    return v


# ============================================================================================ networks
@dataclass(frozen=True)
class ReluMLP:
    """A fully connected ReLU network of finite width (the module's convention), in JAX.

    Parameters
    ----------
    n_features : int >= 1
        Input dimension d.
    depth : int >= 1, default 2
        Number of hidden ReLU layers L (the ``depth`` of :class:`~kernelgen.kernels.ReluNTK`).
    width : int >= 1, default 512
        Width of every hidden layer.
    n_outputs : int >= 1, default 1
        Number of linear readouts k.
    weight_variance, bias_variance : float, default 2.0 and 0.0
        sigma_w^2 > 0 and sigma_b^2 >= 0.
    parameterization : {"ntk", "standard"}, default "ntk"
        See the module docstring.

    Raises
    ------
    InvalidInputError
        A size, variance or parameterization out of range (the message names it).

    Examples
    --------
    >>> import numpy as np
    >>> net = ReluMLP(3, depth=1, width=4, n_outputs=2)
    >>> params = net.init(seed=0)
    >>> net.apply(params, np.ones((5, 3))).shape
    (5, 2)
    """

    n_features: int
    depth: int = 2
    width: int = 512
    n_outputs: int = 1
    weight_variance: float = 2.0
    bias_variance: float = 0.0
    parameterization: str = "ntk"

    def __post_init__(self):
        for name in ("n_features", "depth", "width", "n_outputs"):
            object.__setattr__(self, name, _positive_int(getattr(self, name), f"ReluMLP.{name}"))
        for name, lo_ok in (("weight_variance", False), ("bias_variance", True)):
            v = getattr(self, name)
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and (
                v >= 0 if lo_ok else v > 0)
            if not ok:
                raise InvalidInputError(f"ReluMLP.{name} must be a finite number {'>= 0' if lo_ok else '> 0'}, "
                                        f"got {v!r}.")
            object.__setattr__(self, name, float(v))
        if self.parameterization not in PARAMETERIZATIONS:
            raise InvalidInputError(f"ReluMLP.parameterization must be one of {PARAMETERIZATIONS}, "
                                    f"got {self.parameterization!r}.")

    # -------------------------------------------------------------------------------- structure
    @property
    def sizes(self) -> list[int]:
        """Layer sizes ``[d, width, ..., width, k]`` (length L + 2)."""
        return [self.n_features] + [self.width] * self.depth + [self.n_outputs]

    @property
    def n_parameters(self) -> int:
        s = self.sizes
        return sum(a * b + b for a, b in zip(s[:-1], s[1:]))

    def _multipliers(self, l: int) -> tuple[float, float]:
        """(m_w, m_b) of layer l (0-based): the factors the forward pass applies to W and b."""
        if self.parameterization == "ntk":
            return math.sqrt(self.weight_variance / self.sizes[l]), math.sqrt(self.bias_variance)
        return 1.0, 1.0

    def init(self, seed: int, dtype="float64") -> list[dict]:
        """Random parameters at initialisation: a list of ``{"W": (n_in, n_out), "b": (n_out,)}`` JAX arrays.

        Parameters
        ----------
        seed : int
            Seed of ``numpy.random.default_rng`` (the only randomness).
        dtype : {"float64", "float32"}

        Returns
        -------
        list of dict
            One dict per layer (L + 1), JAX arrays of ``dtype``.

        Raises
        ------
        MemoryBudgetError
            More than :data:`MAX_PARAMETERS` parameters.
        """
        import jax.numpy as jnp

        dt = _dtype(dtype)
        if self.n_parameters > MAX_PARAMETERS:
            raise MemoryBudgetError(f"a network of {self.n_parameters:,} parameters exceeds the limit of "
                                    f"{MAX_PARAMETERS:,}; use a smaller width or depth.",
                                    bytes_needed=8 * self.n_parameters, bytes_available=8 * MAX_PARAMETERS)
        rng = np.random.default_rng(seed)
        params = []
        with _x64(dt):
            for l, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
                W = rng.standard_normal((a, b))
                bias = rng.standard_normal(b)
                if self.parameterization == "standard":  # the variances live in the draw, not the forward pass
                    W *= math.sqrt(self.weight_variance / a)
                    bias *= math.sqrt(self.bias_variance)
                params.append({"W": jnp.asarray(W, dt), "b": jnp.asarray(bias, dt)})
        return params

    # -------------------------------------------------------------------------------- forward
    def _forward(self, params, X):
        """Pre-activations h^(1..L+1) and activations x^(0..L) (JAX, traceable)."""
        import jax.numpy as jnp

        acts, pres = [X], []
        for l, p in enumerate(params):
            mw, mb = self._multipliers(l)
            h = mw * (acts[-1] @ p["W"]) + mb * p["b"]
            pres.append(h)
            if l < self.depth:
                acts.append(jnp.maximum(h, 0.0))
        return pres, acts

    def _check_X(self, X, name="X"):
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ShapeMismatchError(f"{name} must have shape (n, {self.n_features}), got {tuple(X.shape)}.")

    def apply(self, params, X):
        """Network outputs ``f(X)``: array of shape (n, k), the dtype of ``params`` (traceable by JAX).

        Raises
        ------
        ShapeMismatchError
            ``X`` is not (n, n_features).
        """
        import jax.numpy as jnp

        dt = params[0]["W"].dtype
        with _x64(np.dtype(dt)):
            X = jnp.asarray(X, dt)
            self._check_X(X)
            return self._forward(params, X)[0][-1]

    def linearize(self, params0) -> Callable:
        """The linearised network ``f_lin(params, X) = f(X; params0) + J_0(X) (params - params0)``.

        Returns a function of ``(params, X)`` (a JAX ``jvp`` at ``params0``; differentiable), the model
        whose gradient descent :func:`linearized_gd_outputs` solves in closed form (Lee et al. 2019, §2).
        """
        import jax

        def f_lin(params, X):
            delta = jax.tree_util.tree_map(lambda a, b: a - b, params, params0)
            f0, df = jax.jvp(lambda p: self._forward(p, X)[0][-1], (params0,), (delta,))
            return f0 + df

        return f_lin

    # -------------------------------------------------------------------------------- kernels
    def empirical_kernels(self, params, X, Z=None):
        """Empirical NNGP and NTK of this network (exact, from the per-layer formula of the module docstring).

        Parameters
        ----------
        params : list of dict
            From :meth:`init` (or after training).
        X : array of shape (n, d)
        Z : array of shape (m, d), optional
            Defaults to ``X``.

        Returns
        -------
        nngp : ndarray of shape (n, m)
            ``m_w^2 <x^(L)(x), x^(L)(z)> + m_b^2`` (the readout integrated out), float64.
        ntk : ndarray of shape (n, k, m, k)
            ``<df_i(x)/dtheta, df_j(z)/dtheta>`` summed over every weight and bias, float64. For k = 1,
            ``ntk[:, 0, :, 0]`` is the scalar NTK that :class:`~kernelgen.kernels.ReluNTK` approximates.

        Raises
        ------
        ShapeMismatchError
            ``X`` or ``Z`` not (., n_features).
        """
        import jax.numpy as jnp

        dt = np.dtype(params[0]["W"].dtype)
        with _x64(dt):
            Xa = jnp.asarray(X, dt)
            self._check_X(Xa)
            Za = Xa if Z is None else jnp.asarray(Z, dt)
            self._check_X(Za, "Z")
            nngp, ntk = _kernels_jit()(self, params, Xa, Za)
            return np.asarray(nngp, np.float64), np.asarray(ntk, np.float64)


@functools.lru_cache(maxsize=1)
def _kernels_jit():
    """The jitted per-layer NNGP / NTK formula of :meth:`ReluMLP.empirical_kernels` (``net`` static)."""
    import jax
    import jax.numpy as jnp

    @functools.partial(jax.jit, static_argnums=(0,))
    def kernels(net, params, Xa, Za):
        n = Xa.shape[0]
        A = jnp.concatenate([Xa, Za], axis=0)
        pres, acts = net._forward(params, A)
        k = net.n_outputs
        delta = jnp.broadcast_to(jnp.eye(k, dtype=A.dtype), (A.shape[0], k, k))  # delta^(L+1): (N, k, k)
        ntk = 0.0
        for l in range(net.depth, -1, -1):  # layer l (0-based) maps x^(l) to h^(l+1)
            mw, mb = net._multipliers(l)
            feat = mw * mw * (acts[l][:n] @ acts[l][n:].T) + mb * mb  # (n, m)
            dd = jnp.einsum("xia,zja->xizj", delta[:n], delta[n:])
            ntk = ntk + dd * feat[:, None, :, None]
            if l > 0:  # delta^(l) = relu'(h^(l)) * (m_w delta^(l+1) W^T)
                back = mw * jnp.einsum("xib,ab->xia", delta, params[l]["W"])
                delta = back * (pres[l - 1] > 0)[:, None, :]
        mw, mb = net._multipliers(net.depth)
        nngp = mw * mw * (acts[net.depth][:n] @ acts[net.depth][n:].T) + mb * mb
        return nngp, ntk

    return kernels


# ============================================================================================ gradient descent
@dataclass(frozen=True)
class GDTrace:
    """What :func:`gradient_descent` recorded.

    Attributes
    ----------
    steps : ndarray of shape (r,)
        The recorded step counts (0 = initialisation).
    outputs : ndarray of shape (r, n, k)
        ``f_t(X)`` on the training inputs.
    eval_outputs : ndarray of shape (r, m, k) or None
        ``f_t(X_eval)``.
    loss : ndarray of shape (r,)
        ``||f_t(X) - Y||^2 / (2 n k)``.
    param_distance : ndarray of shape (r,)
        ``||theta_t - theta_0||_2`` over all weights and biases.
    observed : list
        ``observe(params_t)`` at each recorded step (empty without ``observe``).
    params : list of dict
        The parameters after the last step.
    """

    steps: np.ndarray
    outputs: np.ndarray
    eval_outputs: np.ndarray | None
    loss: np.ndarray
    param_distance: np.ndarray
    observed: list
    params: list


@functools.lru_cache(maxsize=1)
def _gd_kernels():
    """The jitted GD loop, measurement and forward pass (built once; ``net`` is a static argument, so
    networks of the same shape share one compilation)."""
    import jax
    import jax.numpy as jnp

    def loss(net, p, X, Y):
        r = net._forward(p, X)[0][-1] - Y
        return jnp.sum(r * r) / (2 * Y.size)

    grad = jax.grad(loss, argnums=1)

    @functools.partial(jax.jit, static_argnums=(0,))
    def run(net, p, X, Y, lr, n_steps):
        def body(_, q):
            g = grad(net, q, X, Y)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, q, g)

        return jax.lax.fori_loop(0, n_steps, body, p)

    @functools.partial(jax.jit, static_argnums=(0,))
    def measure(net, p, p0, X, Y):
        f = net._forward(p, X)[0][-1]
        dist2 = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(p0)))
        return f, jnp.sum((f - Y) ** 2) / (2 * Y.size), jnp.sqrt(dist2)

    @functools.partial(jax.jit, static_argnums=(0,))
    def forward(net, p, X):
        return net._forward(p, X)[0][-1]

    return run, measure, forward


def gradient_descent(net: ReluMLP, params0, X, Y, *, learning_rate: float, record_steps: Sequence[int],
                     X_eval=None, observe: Callable | None = None) -> GDTrace:
    """Full-batch gradient descent on ``||f(X) - Y||_F^2 / (2 n k)`` from ``params0``.

    Parameters
    ----------
    net : ReluMLP
    params0 : list of dict
        Initial parameters (not modified: JAX arrays are immutable).
    X : array of shape (n, d)
    Y : array of shape (n, k)
    learning_rate : float > 0
        eta.
    record_steps : sequence of int >= 0
        Steps at which to record (sorted, duplicates removed); the last is the number of steps run.
    X_eval : array of shape (m, d), optional
        Inputs whose outputs are also recorded (a test set).
    observe : callable, optional
        ``observe(params)`` called at every recorded step; its results are kept in ``GDTrace.observed``.

    Returns
    -------
    GDTrace

    Raises
    ------
    InvalidInputError
        A non-positive learning rate or negative step.
    ShapeMismatchError
        ``Y`` not (n, k).
    NonFiniteResultError
        The iteration diverged (NaN/inf outputs): the learning rate is above 2 / lambda_max of the loss's
        Hessian; lower it.
    """
    import jax.numpy as jnp

    if not (isinstance(learning_rate, numbers.Real) and math.isfinite(learning_rate) and learning_rate > 0):
        raise InvalidInputError(f"learning_rate must be a positive finite number, got {learning_rate!r}.")
    steps = sorted({_positive_int(s, "record_steps entries", lo=0) for s in record_steps})
    if not steps:
        raise InvalidInputError("record_steps is empty.")
    dt = np.dtype(params0[0]["W"].dtype)
    run, measure, forward = _gd_kernels()
    with _x64(dt):
        Xa = jnp.asarray(X, dt)
        net._check_X(Xa)
        Ya = jnp.asarray(Y, dt)
        if Ya.shape != (Xa.shape[0], net.n_outputs):
            raise ShapeMismatchError(f"Y must have shape ({Xa.shape[0]}, {net.n_outputs}), got {tuple(Ya.shape)}.")
        Xe = None if X_eval is None else jnp.asarray(X_eval, dt)
        if Xe is not None:
            net._check_X(Xe, "X_eval")
        lr = jnp.asarray(learning_rate, dt)
        outs, evals, losses, dists, observed = [], [], [], [], []
        p, done = params0, 0
        for s in steps:
            if s > done:
                p = run(net, p, Xa, Ya, lr, s - done)
                done = s
            f, lo, di = measure(net, p, params0, Xa, Ya)
            f = np.asarray(f, np.float64)
            if not np.all(np.isfinite(f)):
                raise NonFiniteResultError(f"gradient descent diverged by step {s} (eta = {learning_rate}): "
                                           "lower the learning rate below 2 / lambda_max of the loss Hessian.")
            outs.append(f)
            evals.append(None if Xe is None else np.asarray(forward(net, p, Xe), np.float64))
            losses.append(float(lo))
            dists.append(float(di))
            if observe is not None:
                observed.append(observe(p))
            log.debug("GD step %d: loss %.3e, |theta - theta0| %.3e", s, losses[-1], dists[-1])
    return GDTrace(np.asarray(steps), np.stack(outs), None if Xe is None else np.stack(evals),
                   np.asarray(losses), np.asarray(dists), observed, p)


def linearized_gd_outputs(ntk_train, f0_train, Y, *, learning_rate: float, steps: Sequence[int],
                          ntk_eval_train=None, f0_eval=None):
    """Outputs of the linearised network trained by the same gradient descent, exactly (function space).

    Implements ``r_t = (I - c Theta)^t r_0`` and ``f_lin_t(x) = f_0(x) - c Theta(x, X) sum_{s<t} r_s``,
    c = eta / (n k) (module docstring; Lee et al. 2019, §2, in discrete time), from one
    eigendecomposition ``Theta = V diag(lam) V^T``: ``sum_{s<t} (1 - c lam)^s = (1 - (1 - c lam)^t) / (c lam)``
    (``t`` where ``c lam = 0``).

    Parameters
    ----------
    ntk_train : array of shape (n, k, n, k)
        The empirical NTK at initialisation on the training inputs (:meth:`ReluMLP.empirical_kernels`).
    f0_train : array of shape (n, k)
        ``f_0(X)``.
    Y : array of shape (n, k)
    learning_rate : float > 0
    steps : sequence of int >= 0
    ntk_eval_train : array of shape (m, k, n, k), optional
        ``Theta(X_eval, X)`` (for outputs at other inputs).
    f0_eval : array of shape (m, k), optional
        ``f_0(X_eval)``; required with ``ntk_eval_train``.

    Returns
    -------
    train : ndarray of shape (len(steps), n, k)
    eval : ndarray of shape (len(steps), m, k) or None

    Raises
    ------
    ShapeMismatchError
        Inconsistent shapes.
    InvalidInputError
        ``ntk_eval_train`` without ``f0_eval`` or a bad learning rate.
    NonFiniteResultError
        The iterates overflow: ``eta lambda_max / (n k) > 2`` (:func:`kernelgen.numerics.check_finite_iterates`).
    """
    T = np.asarray(ntk_train, np.float64)
    if T.ndim != 4 or T.shape[:2] != T.shape[2:]:
        raise ShapeMismatchError(f"ntk_train must have shape (n, k, n, k), got {T.shape}.")
    n, k = T.shape[:2]
    f0 = np.asarray(f0_train, np.float64)
    Ya = np.asarray(Y, np.float64)
    if f0.shape != (n, k) or Ya.shape != (n, k):
        raise ShapeMismatchError(f"f0_train and Y must have shape ({n}, {k}), got {f0.shape} and {Ya.shape}.")
    if not (isinstance(learning_rate, numbers.Real) and math.isfinite(learning_rate) and learning_rate > 0):
        raise InvalidInputError(f"learning_rate must be a positive finite number, got {learning_rate!r}.")
    if (ntk_eval_train is None) != (f0_eval is None):
        raise InvalidInputError("give both ntk_eval_train and f0_eval, or neither.")
    c = learning_rate / (n * k)
    Tm = T.reshape(n * k, n * k)
    lam, V = np.linalg.eigh(0.5 * (Tm + Tm.T))
    q = 1.0 - c * lam
    r0 = V.T @ (f0 - Ya).reshape(-1)
    train, evals = [], []
    if ntk_eval_train is not None:
        Te = np.asarray(ntk_eval_train, np.float64)
        m = Te.shape[0]
        if Te.shape != (m, k, n, k):
            raise ShapeMismatchError(f"ntk_eval_train must have shape (m, {k}, {n}, {k}), got {Te.shape}.")
        fe0 = np.asarray(f0_eval, np.float64)
        if fe0.shape != (m, k):
            raise ShapeMismatchError(f"f0_eval must have shape ({m}, {k}), got {fe0.shape}.")
        TeV = Te.reshape(m * k, n * k) @ V
    for t in steps:
        t = _positive_int(t, "steps entries", lo=0)
        train.append((Ya.reshape(-1) + V @ (q ** t * r0)).reshape(n, k))
        if ntk_eval_train is not None:
            cl = c * lam
            small = np.abs(cl) < 1e-300
            geo = np.where(small, float(t), (1.0 - q ** t) / np.where(small, 1.0, cl))  # sum_{s<t} q^s
            evals.append(fe0 - (c * TeV @ (geo * r0)).reshape(m, k))
    out = np.stack(train), (np.stack(evals) if ntk_eval_train is not None else None)
    check_finite_iterates([v for v in out if v is not None], c * lam, learning_rate, what="linearized_gd_outputs")
    return out


# ============================================================================================ Boolean cube
def _cube_dim(N: int) -> int:
    n = int(N).bit_length() - 1
    if N < 2 or (1 << n) != N:
        raise ShapeMismatchError(f"a function on the cube has 2^n entries (n >= 1), got {N}.")
    if n > MAX_CUBE_DIM:
        raise MemoryBudgetError(f"cube dimension {n} exceeds {MAX_CUBE_DIM}", bytes_needed=8 << n,
                                bytes_available=8 << MAX_CUBE_DIM)
    return n


def cube_strings(n: int) -> np.ndarray:
    """All ``2^n`` strings of ``{-1, +1}^n``, row ``x`` having ``-1`` at bit ``i`` of the integer ``x``.

    Returns
    -------
    ndarray of shape (2^n, n), float64
        Index ``x`` in the cube's order of :func:`fwht` and the other cube functions; bit ``i`` of the index
        is coordinate ``i`` (``+1`` for a 0 bit), so the Hamming distance of rows ``x`` and ``y`` is
        ``popcount(x XOR y)``.
    """
    n = _positive_int(n, "n")
    _cube_dim(1 << n)
    idx = np.arange(1 << n)
    bits = (idx[:, None] >> np.arange(n)[None, :]) & 1
    return 1.0 - 2.0 * bits


def fwht(a) -> np.ndarray:
    """Unnormalised Walsh--Hadamard transform along axis 0: ``(H a)_y = sum_x (-1)^popcount(x & y) a_x``.

    ``H`` is symmetric with ``H H = 2^n I``, so ``fwht(fwht(a)) = 2^n a``. O(2^n n) additions.

    Parameters
    ----------
    a : array of shape (2^n, ...)

    Returns
    -------
    ndarray of the same shape, float64

    Raises
    ------
    ShapeMismatchError
        The first axis is not a power of two >= 2.

    References
    ----------
    O'Donnell 2014, §1.2 (Walsh functions chi_S(x) = prod_{i in S} x_i); the butterfly of Fino & Algazi,
    IEEE Trans. Comput. C-25 (1976).

    Examples
    --------
    >>> fwht(np.array([1.0, 0.0, 0.0, 0.0])).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    out = np.array(a, dtype=np.float64, copy=True)
    N = out.shape[0]
    _cube_dim(N)
    rest = out.shape[1:]
    h = 1
    while h < N:
        v = out.reshape((N // (2 * h), 2, h) + rest)
        lo = v[:, 0].copy()
        v[:, 0] += v[:, 1]
        v[:, 1] *= -1.0
        v[:, 1] += lo
        h *= 2
    return out


def _popcount(N: int) -> np.ndarray:
    idx = np.arange(N, dtype=np.uint64)
    pc = np.zeros(N, dtype=np.int64)
    for i in range(_cube_dim(N)):
        pc += ((idx >> np.uint64(i)) & np.uint64(1)).astype(np.int64)
    return pc


def cube_gp_eigenvalues(profile) -> np.ndarray:
    """Eigenvalues of the covariance ``K_xy = g(popcount(x XOR y))`` on ``{-1, +1}^n``, one per Walsh function.

    Parameters
    ----------
    profile : array of shape (n + 1,)
        ``g(h)``, the kernel at Hamming distance ``h = 0..n``.

    Returns
    -------
    ndarray of shape (2^n,)
        ``mu_S = (H k_0)_S`` with ``k_0[x] = g(popcount(x))``: ``K = H diag(mu) H / 2^n`` (the Walsh functions
        are the eigenvectors of every such kernel; O'Donnell 2014, §1.3). Non-negative up to rounding for a
        positive semi-definite kernel.
    """
    g = np.asarray(profile, np.float64)
    if g.ndim != 1 or g.size < 2:
        raise ShapeMismatchError(f"profile must have shape (n + 1,) with n >= 1, got {g.shape}.")
    N = 1 << (g.size - 1)
    _cube_dim(N)
    return fwht(g[_popcount(N)])


def _walsh_amplitudes(mu: np.ndarray) -> np.ndarray:
    """Standard deviations of the Walsh coefficients: ``sqrt(mu / 2^n)`` (Cov of ``H (a * xi)`` is then K)."""
    return np.sqrt(np.maximum(mu, 0.0) / mu.size)


def sample_cube_gp(profile, n_samples: int, seed: int) -> np.ndarray:
    """Exact samples of the zero-mean Gaussian process with covariance ``g(Hamming distance)`` on the whole cube.

    ``f = H (sqrt(mu / 2^n) * xi)``, ``xi ~ N(0, I)``, ``mu`` from :func:`cube_gp_eigenvalues`: then
    ``Cov f = H diag(mu / 2^n) H = K`` exactly (``H`` symmetric, ``H H = 2^n I``). O(2^n n) per sample.

    Parameters
    ----------
    profile : array of shape (n + 1,)
        ``g(h)``, h = 0..n (a positive semi-definite kernel on the cube).
    n_samples : int >= 1
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    ndarray of shape (n_samples, 2^n), float64
        Row ``s`` is sample ``s`` at every string, in the index order of :func:`cube_strings`.

    Raises
    ------
    InvalidInputError
        ``g`` is not positive semi-definite on the cube (an eigenvalue below ``-1e-10 max |mu|``).
    """
    n_samples = _positive_int(n_samples, "n_samples")
    mu = cube_gp_eigenvalues(profile)
    if mu.min() < -1e-10 * np.abs(mu).max():
        raise InvalidInputError(f"the profile is not a positive semi-definite kernel on the cube "
                                f"(eigenvalue {mu.min():.3e}); check g.")
    amp = _walsh_amplitudes(mu)
    rng = np.random.default_rng(seed)
    return np.stack([fwht(amp * rng.standard_normal(mu.size)) for _ in range(n_samples)])


def nearest_disagreement_distance(labels) -> np.ndarray:
    """For every string, the Hamming distance to the nearest string with the other label.

    Breadth-first from both classes at once: ``R^+_{r+1} = R^+_r OR (R^+_r with one bit flipped)``, the
    strings within ``r`` of a positive one; a negative string's distance is the first ``r`` whose ``R^+_r``
    holds it (and symmetrically). O(2^n n D) for maximal distance D.

    Parameters
    ----------
    labels : array of shape (2^n,), bool (or anything whose truth value is the class)

    Returns
    -------
    ndarray of shape (2^n,), int64
        Distances in 1..n; ``-1`` everywhere when every string has the same label (no disagreement).
    """
    s = np.asarray(labels).astype(bool).reshape(-1)
    N = s.size
    n = _cube_dim(N)
    dist = np.full(N, -1, dtype=np.int64)
    if s.all() or not s.any():
        return dist
    reach = [s.copy(), ~s]  # within r of a positive / a negative string
    r = 0
    todo = np.ones(N, dtype=bool)
    while todo.any():
        r += 1
        for R in reach:
            grown = R.copy()
            for i in range(n):
                v = R.reshape(-1, 2, 1 << i)
                g = grown.reshape(-1, 2, 1 << i)
                g |= v[:, ::-1, :]
            R[...] = grown
        hit = todo & np.where(s, reach[1], reach[0])
        dist[hit] = r
        todo &= ~hit
    return dist


def random_flip_counts(labels, n_starts: int, seed: int):
    """Flips of distinct random bits, from random strings, until the label changes.

    From a uniformly random string ``x``, flip the bits in a uniformly random order (each at most once, so
    every string on the path is new); the count is the first ``j`` in 1..n whose string has the other label.

    Parameters
    ----------
    labels : array of shape (2^n,)
    n_starts : int >= 1
    seed : int

    Returns
    -------
    counts : ndarray of shape (n_starts,), int64
        The flips needed; ``n + 1`` where all ``n`` flips kept the label (see ``changed``).
    changed : ndarray of shape (n_starts,), bool
        False where the label never changed along the path (a censored count).
    """
    s = np.asarray(labels).astype(bool).reshape(-1)
    n = _cube_dim(s.size)
    n_starts = _positive_int(n_starts, "n_starts")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, s.size, n_starts)
    order = np.argsort(rng.random((n_starts, n)), axis=1)  # a random permutation of the bits per start
    path = x[:, None] ^ np.bitwise_xor.accumulate(np.left_shift(1, order), axis=1)  # (n_starts, n)
    differ = s[path] != s[x][:, None]
    changed = differ.any(axis=1)
    counts = np.where(changed, differ.argmax(axis=1) + 1, n + 1)
    return counts.astype(np.int64), changed
