"""The bounded certifying pass: K V with a short, compensated summation, and the non-negative product M|V|.

The pass the proven residual bound is built on (docs/numerics.md, "The proven residual bound"): the
fused symmetric pass of :mod:`kernelgen.kernels._entries` (every off-diagonal entry computed once and
used for its row and its column, in cache-sized chunks on all cores), with each signed dot product cut
into segments of _SEG terms summed pairwise and every partial sum accumulated error-free (TwoSum), so
that the summation error of K V is a few units of roundoff instead of thousands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .._validation import as_float_array
from ..errors import InvalidInputError, ShapeMismatchError
from ._entries import _CHUNK_ELEMS, _SUB_COLS, _SUB_ROWS, _n_threads, _parallel_map, _sub_blocks, checked_extent

__all__ = ["BoundedProducts", "bounded_summation_depth", "entries_bounded_symmetric_apply"]

#: Dot-product segment of the bounded pass: every BLAS call sums at most _SEG terms per output (any order),
#: and the segments' partial sums are added pairwise (height ceil(log2 segments)).
_SEG = 16


def _pairwise(P):
    """Sum of P over axis 0 by a balanced tree, in place (P[0] holds it); every term meets <= ceil(log2 S) additions."""
    S = P.shape[0]
    while S > 1:
        h = S // 2
        P[:h] += P[S - h:S]  # pairs (i, S - h + i); an odd middle element waits a level
        S -= h
    return P[0]


def _segmented_rows(K, W):
    """K (a, C) @ W (C, w): segments of _SEG columns (one stacked BLAS call), summed pairwise."""
    a, C = K.shape
    S, rem = divmod(C, _SEG)
    parts = []
    if S:
        parts.append(np.matmul(K[:, :S * _SEG].reshape(a, S, _SEG).transpose(1, 0, 2),
                               W[:S * _SEG].reshape(S, _SEG, W.shape[1])))
    if rem:
        parts.append((K[:, S * _SEG:] @ W[S * _SEG:])[None])
    return _pairwise(parts[0] if len(parts) == 1 else np.concatenate(parts))


def _segmented_cols(WT, K):
    """WT (w, a) @ K (a, C): segments of _SEG rows of K (one stacked BLAS call), summed pairwise."""
    a, C = K.shape
    S, rem = divmod(a, _SEG)
    parts = []
    if S:
        parts.append(np.matmul(WT[:, :S * _SEG].reshape(WT.shape[0], S, _SEG).transpose(1, 0, 2),
                               K[:S * _SEG].reshape(S, _SEG, C)))
    if rem:
        parts.append((WT[:, S * _SEG:] @ K[S * _SEG:])[None])
    return _pairwise(parts[0] if len(parts) == 1 else np.concatenate(parts))


def _two_sum_into(hi, lo, x) -> None:
    """hi <- fl(hi + x) and lo <- lo + (the exact rounding error of that addition) (Knuth's TwoSum).

    hi + (the exact errors collected in lo) stays exactly the sum of everything added (no overflow):
    the accumulation is error-free up to the plain summation of the errors (Ogita, Rump & Oishi,
    "Accurate sum and dot product", SISC 26(6), 2005, Algorithm 4.4 Sum2 and Proposition 4.5).
    """
    s = hi + x
    bp = s - hi
    err = (hi - (s - bp)) + (x - bp)
    hi[...] = s
    lo += err


def bounded_summation_depth(n: int) -> tuple[int, int, int]:
    """(h, N, D) of :func:`entries_bounded_symmetric_apply` at order n (see there).

    h: the most roundings a term of a signed product meets before it joins the compensated
    accumulation: its product, <= _SEG - 1 additions inside one BLAS call, ceil(log2 segments)
    pairwise additions (segments of a chunk's <= _SUB_COLS columns or <= _CHUNK_ELEMS / _SUB_COLS... rows);
    N: the most partial sums one output accumulates by TwoSum (rows side: one per column sub-block;
    transposed side: one per row chunk; and the final combination of the workers' accumulators);
    D: the summation depth of the plain (any-order) non-negative product M|V|.
    """
    seg_rows = math.ceil(_SUB_COLS / _SEG)
    seg_cols = math.ceil(_SUB_ROWS / _SEG)  # a chunk has at most _SUB_ROWS rows
    h = _SEG + math.ceil(math.log2(max(2, seg_rows, seg_cols)))
    chunk_rows = max(1, _CHUNK_ELEMS // _SUB_COLS)
    N = n // _SUB_COLS + 2 + n // max(1, min(chunk_rows, _SUB_ROWS)) + 2 + 4 * _n_threads() + 8
    D = _SUB_COLS + _SUB_ROWS + N + 16
    return int(h), int(N), int(D)


@dataclass(frozen=True)
class BoundedProducts:
    """What one bounded pass returns (:func:`entries_bounded_symmetric_apply`).

    Attributes
    ----------
    KV : ndarray of V's shape
        The signed product K_hat V (segmented dot products, compensated accumulation).
    M_abs : ndarray of V's shape
        M_hat |V| with M = K_hat o (1 + tau T_hat) entrywise (plain summation; all terms >= 0): the weights
        of the entry model, a0 K_hat + a1 T_hat o K_hat <= a0 M for tau = a1 / a0.
    tau : float
    """

    KV: np.ndarray
    M_abs: np.ndarray
    tau: float


def entries_bounded_symmetric_apply(src, V, *, tau: float = 0.0, verbose=False,
                                    desc="float64 K @ V (bounded)", extent=None) -> BoundedProducts:
    """K_hat V and (K_hat o (1 + tau T_hat))|V| in one pass, the signed product with a short summation.

    The certifying pass of the proven residual bound (docs/numerics.md, "The proven residual bound"):
    the same fused, symmetric, cache-blocked pass as :func:`entries_symmetric_apply` (every
    off-diagonal entry computed once, used for its row and its column), but

    - each signed dot product is split into segments of _SEG terms (one stacked BLAS call per chunk),
      whose partial sums are added pairwise: every term meets at most h roundings
      (:func:`bounded_summation_depth`) instead of thousands;
    - those partial sums are accumulated error-free by TwoSum into (hi, lo) pairs, across chunks,
      sub-blocks and workers, and the result is fl(hi + fl(sum of lo)).

    So |KV - K_hat V| <= [gamma_h + (u + 4 N^2 u^2)(1 + gamma_h)] K_hat|V| componentwise (Higham, Lemma
    3.1 and §4.2; Ogita, Rump & Oishi 2005, Prop. 4.5), K_hat the computed entries. The non-negative
    product M|V|, M = K_hat o (1 + tau T_hat) (T_hat the computed exponents; each entry of M formed with
    two roundings, >= 0), is a plain sum with relative error <= gamma_D: one product carries both terms
    of the entry model (a0 K + a1 T o K = a0 M for tau = a1 / a0).

    Parameters
    ----------
    src : KernelEntries
        Float64 entries of a symmetric k(X, X) with an :meth:`~KernelEntries.entry_error_model`.
    V : ndarray of shape (n, k) or (n,)
    tau : float >= 0
        Weight of the exponent in M (0: M = K_hat).
    extent : array of int, optional
        As in :func:`entries_symmetric_apply`: column j of V is zero in rows >= extent[j] (non-decreasing)
        and only its rows < extent[j] are wanted (the others are returned as 0). A block serves only the
        columns reaching its rows; the terms skipped are exact zeros, and the accumulation structure (h, N,
        D of :func:`bounded_summation_depth`) is the same or shorter, so the bound holds unchanged.

    Returns
    -------
    BoundedProducts
        Arrays of V's shape.

    Raises
    ------
    InvalidInputError
        Entries that are not float64 and symmetric, or that have no exponent form; tau < 0.
    ShapeMismatchError
        V with the wrong number of rows.
    """
    dtype = np.dtype(np.float64)
    if src.dtype != dtype or not src.same or not hasattr(src, "entry_error_model"):
        raise InvalidInputError("entries_bounded_symmetric_apply needs the float64 entries of a symmetric k(X, X).")
    if not (tau >= 0.0 and math.isfinite(tau)):
        raise InvalidInputError(f"tau must be a finite number >= 0, got {tau!r}")
    V = as_float_array(V, "V", ndim=(1, 2), dtype=dtype)
    n = src.shape[0]
    if V.shape[0] != n:
        raise ShapeMismatchError(f"V has {V.shape[0]} rows, the kernel has order {n}.")
    V2 = np.ascontiguousarray(V.reshape(n, -1))
    k = V2.shape[1]
    VT = np.ascontiguousarray(V2.T)
    A = np.abs(V2)
    AT = np.ascontiguousarray(A.T)
    minus_tau = -float(tau)
    items = _sub_blocks(n, lambda r1: r1)
    extent = checked_extent(extent, k)

    def make_state():
        z = lambda *shape: np.zeros(shape)  # noqa: E731
        # rows side: hi, lo (signed), M|V|; transposed side: the same as (k, n)
        return [z(n, k), z(n, k), z(n, k), z(k, n), z(k, n), z(k, n)]

    def fn(item, state):
        hi, lo, ab, hiT, loT, abT = state
        r0, r1, c0, c1 = item
        j0 = 0 if extent is None else int(np.searchsorted(extent, r0, side="right"))
        if j0 >= k:  # no column reaches these rows
            return
        js = slice(j0, None)
        lo_end = min(c1, r0)
        d0 = max(c0, r0)

        def consume(a, b, Kc, TKc):
            ra, rb = r0 + a, r0 + b
            M = TKc  # -t k -> k + tau t k, in place (>= 0; two roundings)
            M *= minus_tau
            M += Kc
            if lo_end > c0:
                w = lo_end - c0
                Kl, Ml = Kc[:, :w], M[:, :w]
                _two_sum_into(hi[ra:rb, js], lo[ra:rb, js], _segmented_rows(Kl, V2[c0:lo_end, js]))
                ab[ra:rb, js] += Ml @ A[c0:lo_end, js]
                _two_sum_into(hiT[js, c0:lo_end], loT[js, c0:lo_end], _segmented_cols(VT[js, ra:rb], Kl))
                abT[js, c0:lo_end] += AT[js, ra:rb] @ Ml
            if c1 > r0:
                Kd, Md = Kc[:, d0 - c0: c1 - c0], M[:, d0 - c0: c1 - c0]
                _two_sum_into(hi[ra:rb, js], lo[ra:rb, js], _segmented_rows(Kd, V2[d0:c1, js]))
                ab[ra:rb, js] += Md @ A[d0:c1, js]

        src.block(r0, r1, c0, c1, r0 - c0, None, consume, want_t=True)

    with tqdm(total=len(items), desc=desc, unit="block", disable=not verbose, mininterval=1.0) as bar:
        parts = _parallel_map(items, fn, make_state, bar=bar)
    hi, lo, ab = parts[0][0], parts[0][1], parts[0][2]
    for j, p in enumerate(parts):
        if j:
            _two_sum_into(hi, lo, p[0])
            lo += p[1]
            ab += p[2]
        _two_sum_into(hi, lo, p[3].T)
        lo += p[4].T
        ab += p[5].T
    hi += lo  # the one rounding of the compensated sum
    if extent is not None:  # the unwanted rows of each column: 0, not a partial sum
        for j in range(k):
            hi[extent[j]:, j] = 0.0
            ab[extent[j]:, j] = 0.0
    return BoundedProducts(hi.reshape(V.shape), ab.reshape(V.shape), float(tau))
