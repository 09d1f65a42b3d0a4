"""Infinite-width kernels of fully connected ReLU networks: NNGP (arc-cosine) and NTK.

Convention (NTK parameterisation; Jacot et al. 2018, Arora et al. 2019)
----------------------------------------------------------------------
``depth`` L is the number of hidden ReLU layers. The network is

    h^(1)   = (sigma_w / sqrt(d))   W^(1)   x       + sigma_b b^(1)
    h^(l+1) = (sigma_w / sqrt(n_l)) W^(l+1) relu(h^(l)) + sigma_b b^(l+1),   l = 1..L,
    f(x)    = h^(L+1)          (scalar output: the linear readout),

with every entry of every W^(l), b^(l) drawn i.i.d. N(0, 1), hidden widths n_l -> infinity.
``weight_variance`` is sigma_w^2, ``bias_variance`` is sigma_b^2, d = ``n_features``.
The kernels returned are those of the *output* f of this network:

    Sigma^(0)(x, z) = sigma_w^2 <x, z> / d + sigma_b^2                  (covariance of h^(1))
    Sigma^(h)(x, z) = sigma_w^2 kappa1(Sigma^(h-1)) + sigma_b^2,  h = 1..L (covariance of h^(h+1))
    kappa1(a, b, c) = sqrt(ab) / (2 pi) (sin theta + (pi - theta) cos theta)  = E[relu(u) relu(v)],
    theta           = arccos(c / sqrt(ab)) in [0, pi],   (u, v) ~ N(0, [[a, c], [c, b]]),
    Sigma_dot^(h)   = sigma_w^2 (pi - theta) / (2 pi)   = sigma_w^2 E[relu'(u) relu'(v)],
    Theta^(0) = Sigma^(0),   Theta^(h) = Theta^(h-1) Sigma_dot^(h) + Sigma^(h),

where a = Sigma^(h-1)(x, x), b = Sigma^(h-1)(z, z), c = Sigma^(h-1)(x, z).

    which="nngp" returns Sigma^(L)(x, z)  = E[f(x) f(z)]                (Lee et al. 2018),
    which="ntk"  returns Theta^(L)(x, z)  = lim <df(x)/dparams, df(z)/dparams>, summed over
                                            the weights and biases of all L + 1 layers.

So ``depth=0`` is the linear model f = sigma_w <w, x>/sqrt(d) + sigma_b b (both kernels equal
Sigma^(0)), and ``depth=1`` is the two-layer network of Cho & Saul (2009) / Bietti & Mairal
(2019): with sigma_b^2 = 0, Sigma^(1) = sigma_w^4 / (2d) * k_1(x, z) (k_1 the arc-cosine kernel
of degree 1) and Theta^(1) = sigma_w^4 / (2d) |x||z| (u kappa_0(u) + kappa_1(u)), u = cos theta.
Indexing: Sigma^(h-1) is the covariance of the pre-activations h^(h) of hidden layer h, so the
readout is already included in Sigma^(L); applying "sigma_w^2 kappa1(.) + sigma_b^2" once more
would give Sigma^(L+1), the network with L + 1 hidden layers. The index of the returned kernel
equals the number of hidden layers.

Defaults: ``depth=2``, ``weight_variance=2`` (He initialisation), ``bias_variance=0``. On the
diagonal theta = 0, kappa1(a, a, a) = a/2 and Sigma_dot = sigma_w^2/2, so

    Sigma^(h)(x, x) = (sigma_w^2/2) Sigma^(h-1)(x, x) + sigma_b^2,
    Theta^(h)(x, x) = (sigma_w^2/2) Theta^(h-1)(x, x) + Sigma^(h)(x, x);

with the defaults, Sigma^(h)(x, x) = 2|x|^2/d for every h (He initialisation preserves the
second moment) and Theta^(L)(x, x) = (L + 1) 2|x|^2/d. :func:`relu_kernel_diag` evaluates this
recursion (no arccos).

Numerics
--------
* Zero vectors. With sigma_b^2 = 0 and x = 0, Sigma^(h)(x, x) = 0 and theta is undefined. The
  kernels are then defined by their limit x -> 0: kappa1 -> 0 because |kappa1| <= sqrt(ab)/2, so
  Sigma^(h)(0, z) = sigma_b^2 = 0, and Theta^(h)(0, z) = 0 because every term of Theta carries a
  factor Sigma^(k)(0, z) = 0 (Sigma_dot stays bounded by sigma_w^2/2). The code sets
  cos theta = 0 wherever a or b is below the smallest normal number of the dtype; this gives
  exactly these limits and no 0/0. (With sigma_b^2 > 0 no variance is ever zero.)
* Nearly parallel inputs: cos theta is clipped to [-1, 1]. kappa1 is a smooth function of
  rho = cos theta (d J_1 / d rho = pi - theta), so rounding in rho costs O(eps) in Sigma.
  Sigma_dot is *not* Lipschitz at rho = 1 (d theta / d rho = -1/sin theta): an error delta in rho
  gives ~ sqrt(2 delta) / (2 pi) * sigma_w^2 in Sigma_dot. This is inherent in the NTK; it is why
  diagonal entries of K(X, X) are computed with theta = 0 exactly (``diag_offset``), and it bounds
  float32 NTK accuracy for near-duplicate (not identical) inputs to ~ sqrt(eps_32) ~ 2.4e-4.
* sin theta is computed as sqrt((1 - rho)(1 + rho)) (no cancellation in 1 - rho^2), and every
  product of a row factor and a column factor is formed as the outer product first, so a symmetric
  G gives an exactly symmetric K.
* Dtype policy: the per-row vectors (the diagonal recursion, O(n + m) work) run in float64 and are
  rounded once to G's dtype; all O(nm) block work runs in G's dtype (float32 or float64).

References
----------
Cho, Y., & Saul, L. K. (2009). Kernel methods for deep learning. NeurIPS 22, Section 2
(arc-cosine kernels; k_1 with J_1(theta) = sin theta + (pi - theta) cos theta).
Lee, J., Bahri, Y., Novak, R., Schoenholz, S. S., Pennington, J., & Sohl-Dickstein, J. (2018).
Deep neural networks as Gaussian processes. ICLR, Section 2 (the NNGP recursion
K^l = sigma_b^2 + sigma_w^2 E[phi(u) phi(v)] and its ReLU closed form).
Jacot, A., Gabriel, F., & Hongler, C. (2018). Neural tangent kernel. NeurIPS 31, Section 4 and
Theorem 1 (NTK parameterisation and the recursion Theta^(L+1) = Theta^(L) Sigma_dot + Sigma).
Arora, S., Du, S. S., Hu, W., Li, Z., Salakhutdinov, R., & Wang, R. (2019). On exact computation
with an infinitely wide neural net. NeurIPS 32, Section 3 (Sigma^(h), Sigma_dot^(h), Theta^(L)).
Bietti, A., & Mairal, J. (2019). On the inductive bias of neural tangent kernels. NeurIPS 32,
Section 3 (two-layer ReLU NTK u kappa_0(u) + kappa_1(u)).
"""

from __future__ import annotations

import logging
import math
import operator

import numpy as np

from .._validation import as_float_array
from ..errors import InvalidInputError, MemoryBudgetError, NonFiniteInputError, ShapeMismatchError

__all__ = [
    "RELU_KERNELS",
    "relu_kernel_from_gram",
    "relu_kernel_from_gram_jax",
    "relu_kernel_diag",
    "empirical_relu_kernels",
]

log = logging.getLogger(__name__)

RELU_KERNELS = ("nngp", "ntk")

#: Elements per tile of elementwise work: 4-5 float64 temporaries of this size (1-1.3 MB) stay
#: near the core (L2 1 MiB/core on the 2-core development machine). Tiles of 2^14..2^17 elements
#: timed alike within the noise of a shared machine; whole-array NumPy (no tiles) was ~7x slower
#: on a 2,048 x 16,384 block (measured 2026-11-29, under load).
_TILE_ELEMENTS = 1 << 15
#: Widest column range of one tile.
_TILE_COLS = 4096
#: Memory the empirical network may use for its weights before refusing (bytes).
_EMPIRICAL_WEIGHT_BYTES = 3 * 2**30


# --------------------------------------------------------------------------------------------
# parameters and the diagonal recursion
# --------------------------------------------------------------------------------------------


def _check_params(n_features, depth, weight_variance, bias_variance, which=None):
    try:
        n_features = operator.index(n_features)
        depth = operator.index(depth)
    except TypeError as exc:
        raise InvalidInputError(f"n_features and depth must be integers: {exc}") from exc
    if n_features < 1:
        raise InvalidInputError(f"n_features must be >= 1, got {n_features}.")
    if depth < 0:
        raise InvalidInputError(f"depth (number of hidden layers) must be >= 0, got {depth}.")
    sw2 = float(weight_variance)
    sb2 = float(bias_variance)
    if not (math.isfinite(sw2) and sw2 > 0):
        raise InvalidInputError(f"weight_variance must be a positive finite number, got {weight_variance}.")
    if not (math.isfinite(sb2) and sb2 >= 0):
        raise InvalidInputError(f"bias_variance must be a finite number >= 0, got {bias_variance}.")
    if which is not None and which not in RELU_KERNELS:
        raise InvalidInputError(f"which must be one of {RELU_KERNELS}, got {which!r}.")
    return n_features, depth, sw2, sb2


def _check_sq_norms(sq, name, length=None):
    sq = as_float_array(sq, name, ndim=(1,), allow_empty=True)
    if length is not None and sq.shape[0] != length:
        raise ShapeMismatchError(f"{name} has length {sq.shape[0]} but the block needs {length}.")
    if (sq < 0).any():
        raise InvalidInputError(f"{name} holds negative squared norms (min {sq.min()}).")
    return sq


def _diag_layers(sq64, n_features, depth, sw2, sb2):
    """Sigma^(h)(x, x) for h = 0..L (float64 list), the exact theta = 0 recursion."""
    q = sw2 * sq64 / n_features + sb2  # Sigma^(0)(x, x)
    out = [q]
    for _ in range(depth):
        q = 0.5 * sw2 * q + sb2  # kappa1(a, a, a) = a / 2
        out.append(q)
    return out


def _diag_from_layers(layers, sw2, which):
    if which == "nngp":
        return layers[-1]
    theta = layers[0]
    for q in layers[1:]:
        theta = theta * (0.5 * sw2) + q  # Sigma_dot(x, x) = sigma_w^2 / 2
    return theta


def relu_kernel_diag(
    sq_norms,
    *,
    n_features: int,
    depth: int = 2,
    weight_variance: float = 2.0,
    bias_variance: float = 0.0,
    which: str,
):
    """Diagonal k(x, x) of the ReLU NNGP / NTK from squared norms, without any arccos.

    Evaluates the theta = 0 recursion of the module docstring:
    Sigma^(0) = sigma_w^2 |x|^2 / d + sigma_b^2, Sigma^(h) = (sigma_w^2/2) Sigma^(h-1) + sigma_b^2,
    Theta^(h) = (sigma_w^2/2) Theta^(h-1) + Sigma^(h).

    Parameters
    ----------
    sq_norms : array of shape (n,)
        Squared Euclidean norms |x_i|^2 (>= 0). float32 keeps float32; anything else -> float64.
    n_features : int
        Input dimension d (the 1/d in Sigma^(0)).
    depth : int, default 2
        Number of hidden ReLU layers L (>= 0).
    weight_variance, bias_variance : float, default 2.0 and 0.0
        sigma_w^2 > 0 and sigma_b^2 >= 0.
    which : {"nngp", "ntk"}

    Returns
    -------
    ndarray of shape (n,), dtype of ``sq_norms`` (float32 or float64)
        Computed in float64 and rounded once.

    Raises
    ------
    InvalidInputError
        Bad parameters or negative norms. ``NonFiniteInputError`` for NaN/inf.

    Examples
    --------
    >>> relu_kernel_diag([4.0], n_features=2, depth=2, which="ntk").tolist()  # (L+1) 2|x|^2/d
    [12.0]
    """
    n_features, depth, sw2, sb2 = _check_params(n_features, depth, weight_variance, bias_variance, which)
    sq = _check_sq_norms(sq_norms, "sq_norms")
    layers = _diag_layers(sq.astype(np.float64), n_features, depth, sw2, sb2)
    return _diag_from_layers(layers, sw2, which).astype(sq.dtype)


# --------------------------------------------------------------------------------------------
# NumPy block transform
# --------------------------------------------------------------------------------------------


class _RowFactors:
    """Per-layer row (or column) vectors in the block dtype: sqrt(q) and 1/sqrt(q) (0 if q tiny)."""

    def __init__(self, layers, dtype):
        tiny = np.finfo(dtype).tiny
        self.sqrt = []
        self.rsqrt = []
        for q in layers[:-1]:  # layer h uses Sigma^(h-1)(x, x) for h = 1..L
            s = np.sqrt(q)
            r = np.zeros_like(q)
            ok = q >= tiny  # below the smallest normal: treated as a zero vector (cos theta = 0)
            r[ok] = 1.0 / s[ok]
            self.sqrt.append(s.astype(dtype))
            self.rsqrt.append(r.astype(dtype))


def _transform_tile(s, rows, cols, depth, sw2, sb2, sigma0_scale, ntk, tmp):
    """Overwrite the tile ``s`` (inner products) with Sigma^(L) or Theta^(L)."""
    shape = s.shape
    rho, t, w, u = (a[: s.size].reshape(shape) for a in tmp[:4])
    dt = s.dtype.type
    s *= dt(sigma0_scale)  # Sigma^(0) = sigma_w^2 <x, z> / d + sigma_b^2
    if sb2:
        s += dt(sb2)
    if ntk:
        th = tmp[4][: s.size].reshape(shape)
        th[...] = s  # Theta^(0) = Sigma^(0)
    coef = dt(sw2 / (2.0 * np.pi))
    for h in range(depth):
        ra, rb = rows.rsqrt[h], cols.rsqrt[h]
        # rho = c / sqrt(ab), the outer product first (exact symmetry), clipped to [-1, 1]
        np.multiply(ra[:, None], rb[None, :], out=rho)
        rho *= s
        np.clip(rho, -1.0, 1.0, out=rho)
        np.negative(rho, out=t)
        np.arccos(t, out=t)  # t = pi - theta = arccos(-rho)
        if ntk:
            th *= t
            th *= coef  # Theta^(h-1) * Sigma_dot^(h), Sigma_dot = sigma_w^2 (pi - theta) / (2 pi)
        # J_1 = sin theta + (pi - theta) cos theta, sin theta = sqrt((1 - rho)(1 + rho))
        np.subtract(dt(1), rho, out=w)
        np.add(dt(1), rho, out=u)
        w *= u
        np.sqrt(w, out=w)
        rho *= t
        w += rho  # J_1(theta)
        w *= coef
        np.multiply(rows.sqrt[h][:, None], cols.sqrt[h][None, :], out=s)
        s *= w  # sigma_w^2 kappa1 = sigma_w^2 sqrt(ab) J_1 / (2 pi)
        if sb2:
            s += dt(sb2)
        if ntk:
            th += s  # Theta^(h) = Theta^(h-1) Sigma_dot^(h) + Sigma^(h)
    if ntk:
        s[...] = th


def relu_kernel_from_gram(
    G,
    sq_rows,
    sq_cols,
    *,
    n_features: int,
    depth: int = 2,
    weight_variance: float = 2.0,
    bias_variance: float = 0.0,
    which: str,
    diag_offset: int | None = None,
):
    """Turn a block of inner products G = A B^T into ReLU NNGP or NTK values, in place.

    The formulas, the convention (``depth`` = number of hidden ReLU layers, NTK
    parameterisation, the kernel of the scalar output of the network) and the numerical
    treatment of zero vectors and parallel inputs are in the module docstring.

    Parameters
    ----------
    G : ndarray of shape (n, m), float32 or float64, writeable, any memory order
        Inner products G[i, j] = <a_i, b_j>. **Overwritten** with the kernel values (the
        arithmetic runs in G's dtype, in cache-sized tiles).
    sq_rows : array of shape (n,)
        |a_i|^2 (>= 0).
    sq_cols : array of shape (m,)
        |b_j|^2 (>= 0).
    n_features : int
        Input dimension d.
    depth : int, default 2
        Number of hidden ReLU layers L (>= 0).
    weight_variance, bias_variance : float, default 2.0 and 0.0
        sigma_w^2 > 0 and sigma_b^2 >= 0.
    which : {"nngp", "ntk"}
        "nngp" returns Sigma^(L), "ntk" returns Theta^(L).
    diag_offset : int, optional
        When given, the entries (r, r + diag_offset) of the block are diagonal entries of
        K(X, X) (a_r and b_{r + diag_offset} are the same vector): they are set from
        :func:`relu_kernel_diag` of ``sq_rows[r]``, i.e. computed with theta = 0 exactly at every
        layer (the recursion is entrywise, so this equals forcing theta = 0 inside it).

    Returns
    -------
    ndarray
        ``G`` itself, holding k(a_i, b_j).

    Raises
    ------
    InvalidInputError
        G not a writeable float32/float64 2-D ndarray, bad parameters, negative norms.
    ShapeMismatchError
        Lengths of ``sq_rows`` / ``sq_cols`` differ from G's shape.
    NonFiniteInputError
        NaN or inf in the norms or in G (then G holds garbage).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> sq = (X * X).sum(1)
    >>> K = relu_kernel_from_gram(X @ X.T, sq, sq, n_features=2, depth=1, which="nngp", diag_offset=0)
    >>> np.round(K, 6).tolist()  # off-diagonal: (2/d) * |x||z| / pi for orthogonal inputs
    [[1.0, 0.31831], [0.31831, 1.0]]
    """
    n_features, depth, sw2, sb2 = _check_params(n_features, depth, weight_variance, bias_variance, which)
    if not isinstance(G, np.ndarray) or G.ndim != 2 or G.dtype.type not in (np.float32, np.float64):
        raise InvalidInputError(
            "G must be a 2-D float32 or float64 NumPy array (it is transformed in place); got "
            f"{type(G).__name__} {getattr(G, 'dtype', '')} {getattr(G, 'shape', '')}."
        )
    if not G.flags.writeable:
        raise InvalidInputError("G is read-only; pass a writeable copy (it is transformed in place).")
    n, m = G.shape
    sq_rows = _check_sq_norms(sq_rows, "sq_rows", n)
    sq_cols = _check_sq_norms(sq_cols, "sq_cols", m)
    if diag_offset is not None:
        diag_offset = operator.index(diag_offset)
    if G.size == 0:
        return G
    ntk = which == "ntk"
    lay_r = _diag_layers(sq_rows.astype(np.float64), n_features, depth, sw2, sb2)
    lay_c = _diag_layers(sq_cols.astype(np.float64), n_features, depth, sw2, sb2)
    # Tile over the memory-contiguous axis: for a Fortran-ordered G work on G.T (C-ordered);
    # the kernel is symmetric under swapping the roles of rows and columns.
    W, off = G, diag_offset
    if G.flags.f_contiguous and not G.flags.c_contiguous:
        W, lay_r, lay_c = G.T, lay_c, lay_r
        off = None if diag_offset is None else -diag_offset
    rows, cols = _RowFactors(lay_r, G.dtype), _RowFactors(lay_c, G.dtype)
    nr, nc = W.shape
    tc = min(nc, _TILE_COLS)
    tr = max(1, min(nr, _TILE_ELEMENTS // tc))
    tmp = [np.empty(tr * tc, dtype=G.dtype) for _ in range(5 if ntk else 4)]
    ok = np.empty(tr * tc, dtype=bool)
    sigma0_scale = sw2 / n_features
    for c0 in range(0, nc, tc):
        c1 = min(nc, c0 + tc)
        sub_c = _slice_factors(cols, c0, c1)
        for r0 in range(0, nr, tr):
            r1 = min(nr, r0 + tr)
            tile = W[r0:r1, c0:c1]
            _transform_tile(tile, _slice_factors(rows, r0, r1), sub_c, depth, sw2, sb2, sigma0_scale, ntk, tmp)
            fin = ok[: tile.size].reshape(tile.shape)
            np.isfinite(tile, out=fin)
            if not fin.all():
                raise NonFiniteInputError(
                    f"G contains NaN or inf (first bad tile rows {r0}:{r1}, columns {c0}:{c1}); "
                    "G has been partly overwritten."
                )
    if off is not None:
        r = np.arange(nr)
        c = r + off
        keep = (c >= 0) & (c < nc)
        r, c = r[keep], c[keep]
        if r.size:
            W[r, c] = _diag_from_layers([q[r] for q in lay_r], sw2, which).astype(G.dtype)
    return G


def _slice_factors(f, a, b):
    out = _RowFactors.__new__(_RowFactors)
    out.sqrt = [v[a:b] for v in f.sqrt]
    out.rsqrt = [v[a:b] for v in f.rsqrt]
    return out


# --------------------------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------------------------


def relu_kernel_from_gram_jax(
    G,
    sq_rows,
    sq_cols,
    *,
    n_features: int,
    depth: int = 2,
    weight_variance: float = 2.0,
    bias_variance: float = 0.0,
    which: str,
    diag_offset=None,
):
    """JAX version of :func:`relu_kernel_from_gram` (same formulas; pure, no in-place update).

    Jit-able: ``n_features``, ``depth``, the variances and ``which`` must be static (Python
    values); ``diag_offset`` may be None (static) or an integer, also a traced one. All
    arithmetic, including the per-row recursion, runs in G's dtype (float64 only inside
    :func:`kernelgen._jax.enable_x64`).

    Parameters
    ----------
    G : jax or NumPy array of shape (n, m)
    sq_rows : array of shape (n,)
    sq_cols : array of shape (m,)
    n_features, depth, weight_variance, bias_variance, which, diag_offset
        As in :func:`relu_kernel_from_gram`.

    Returns
    -------
    jax.Array of shape (n, m), G's dtype

    Raises
    ------
    InvalidInputError
        Bad parameters (checked in Python, before tracing).
    """
    import jax.numpy as jnp

    n_features, depth, sw2, sb2 = _check_params(n_features, depth, weight_variance, bias_variance, which)
    G = jnp.asarray(G)
    if G.ndim != 2 or not jnp.issubdtype(G.dtype, jnp.floating):
        raise InvalidInputError(f"G must be a 2-D floating array, got {G.dtype} {G.shape}.")
    dt = G.dtype
    qa = sw2 * jnp.asarray(sq_rows, dtype=dt) / n_features + sb2
    qb = sw2 * jnp.asarray(sq_cols, dtype=dt) / n_features + sb2
    if qa.shape != (G.shape[0],) or qb.shape != (G.shape[1],):
        raise ShapeMismatchError(f"sq_rows {qa.shape} / sq_cols {qb.shape} do not match G {G.shape}.")
    tiny = jnp.finfo(dt).tiny
    coef = sw2 / (2.0 * np.pi)
    s = sw2 / n_features * G + sb2
    th = s
    q_diag = qa
    t_diag = qa
    for _ in range(depth):
        sa, sb = jnp.sqrt(qa), jnp.sqrt(qb)
        ra = jnp.where(qa >= tiny, 1.0 / jnp.sqrt(jnp.maximum(qa, tiny)), 0.0)
        rb = jnp.where(qb >= tiny, 1.0 / jnp.sqrt(jnp.maximum(qb, tiny)), 0.0)
        rho = jnp.clip((ra[:, None] * rb[None, :]) * s, -1.0, 1.0)
        t = jnp.arccos(-rho)  # pi - theta
        j1 = jnp.sqrt((1.0 - rho) * (1.0 + rho)) + t * rho
        s_new = (sa[:, None] * sb[None, :]) * (j1 * coef) + sb2
        th = th * t * coef + s_new
        s = s_new
        qa, qb = 0.5 * sw2 * qa + sb2, 0.5 * sw2 * qb + sb2
        q_diag = qa
        t_diag = t_diag * (0.5 * sw2) + qa
    K = th if which == "ntk" else s
    if diag_offset is not None:
        d = t_diag if which == "ntk" else q_diag
        r = jnp.arange(G.shape[0])[:, None]
        c = jnp.arange(G.shape[1])[None, :]
        K = jnp.where(c == r + diag_offset, d[:, None].astype(dt), K)
    return K


# --------------------------------------------------------------------------------------------
# a finite network, for tests
# --------------------------------------------------------------------------------------------


def _network_params(n_features, depth, width, seed):
    """Weights W^(1..L+1) (shape (n_l, n_{l-1})) and biases b^(1..L+1) of the finite network."""
    rng = np.random.default_rng(seed)
    sizes = [n_features] + [width] * depth + [1]
    Ws = [rng.standard_normal((sizes[l + 1], sizes[l])) for l in range(depth + 1)]
    bs = [rng.standard_normal(sizes[l + 1]) for l in range(depth + 1)]
    return Ws, bs


def empirical_relu_kernels(
    X,
    Z=None,
    *,
    depth: int = 2,
    width: int = 2048,
    seed: int = 0,
    weight_variance: float = 2.0,
    bias_variance: float = 0.0,
):
    """Empirical NNGP and NTK of one finite random ReLU network (the module's convention).

    The network is the one of the module docstring with all hidden widths equal to ``width``
    and i.i.d. N(0, 1) weights and biases drawn from ``numpy.random.default_rng(seed)``. The
    parameter gradient of the scalar output is computed analytically (float64): with
    delta^(L+1) = 1 and delta^(l) = relu'(h^(l)) * (sigma_w / sqrt(n_l)) W^(l+1)^T delta^(l+1),

        df/dW^(l) = delta^(l) (sigma_w / sqrt(n_{l-1})) x^(l-1)^T,   df/db^(l) = sigma_b delta^(l),

    (relu'(0) = 0), hence

        NTK(x, z) = sum_{l=1}^{L+1} <delta^(l)(x), delta^(l)(z)>
                    * (sigma_w^2 <x^(l-1)(x), x^(l-1)(z)> / n_{l-1} + sigma_b^2),

    summed over the weights and biases of all layers. The empirical NNGP is the readout-free
    feature inner product sigma_w^2 <x^(L)(x), x^(L)(z)> / n_L + sigma_b^2, which equals
    E[f(x) f(z) | hidden layers] (the readout integrated out exactly); both converge to
    :func:`relu_kernel_from_gram`'s Sigma^(L) and Theta^(L) with O(1/sqrt(width)) fluctuations.

    Parameters
    ----------
    X : array of shape (n, d)
    Z : array of shape (m, d), optional
        Defaults to X.
    depth : int, default 2
        Number of hidden ReLU layers L (>= 0).
    width : int, default 2048
        Width of every hidden layer.
    seed : int
        Seed of the weights (the only randomness).
    weight_variance, bias_variance : float, default 2.0 and 0.0

    Returns
    -------
    nngp, ntk : ndarrays of shape (n, m), float64

    Raises
    ------
    MemoryBudgetError
        The hidden weight matrices would exceed 3 GiB.
    """
    Xa = as_float_array(X, "X", ndim=(2,), dtype=np.float64)
    Za = Xa if Z is None else as_float_array(Z, "Z", ndim=(2,), dtype=np.float64)
    if Za.shape[1] != Xa.shape[1]:
        raise ShapeMismatchError(f"X has {Xa.shape[1]} features but Z has {Za.shape[1]}.")
    d = Xa.shape[1]
    _, depth, sw2, sb2 = _check_params(d, depth, weight_variance, bias_variance)
    width = operator.index(width)
    if width < 1:
        raise InvalidInputError(f"width must be >= 1, got {width}.")
    need = 8 * (width * d + max(depth - 1, 0) * width * width + width)
    if need > _EMPIRICAL_WEIGHT_BYTES:
        raise MemoryBudgetError(
            f"the weights of a depth-{depth}, width-{width} network need {need / 2**30:.2f} GiB "
            f"(> {_EMPIRICAL_WEIGHT_BYTES / 2**30:.0f} GiB); use a smaller width.",
            bytes_needed=need,
            bytes_available=_EMPIRICAL_WEIGHT_BYTES,
        )
    Ws, bs = _network_params(d, depth, width, seed)
    sizes = [d] + [width] * depth + [1]
    sw = math.sqrt(sw2)
    sb = math.sqrt(sb2)
    n = Xa.shape[0]
    A = np.concatenate([Xa, Za], axis=0)  # forward both sets together
    acts = [A]  # x^(0), ..., x^(L)
    pre = []  # h^(1), ..., h^(L)
    for l in range(depth):
        h = (sw / math.sqrt(sizes[l])) * (acts[-1] @ Ws[l].T) + sb * bs[l]
        pre.append(h)
        acts.append(np.maximum(h, 0.0))
    # backward signals delta^(l) = df/dh^(l), l = L+1 down to 1
    deltas = [np.ones((A.shape[0], 1))]
    for l in range(depth, 0, -1):  # layer l (1-based) has weights Ws[l] into layer l + 1
        back = (sw / math.sqrt(sizes[l])) * (deltas[0] @ Ws[l])
        deltas.insert(0, back * (pre[l - 1] > 0))
    ntk = np.zeros((n, Za.shape[0]))
    for l in range(depth + 1):  # parameters of layer l + 1 (1-based): W^(l+1), b^(l+1)
        xin = acts[l]
        dl = deltas[l]
        feat = sw2 / sizes[l] * (xin[:n] @ xin[n:].T) + sb2
        ntk += (dl[:n] @ dl[n:].T) * feat
    xL = acts[depth]
    nngp = sw2 / sizes[depth] * (xL[:n] @ xL[n:].T) + sb2
    return nngp, ntk
