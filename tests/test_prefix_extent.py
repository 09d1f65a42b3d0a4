"""The stacked prefix product of a nested learning curve skips what it does not need (issue 22, item 1):
``entries_symmetric_apply(..., extent=)`` and ``KernelSystem.matvec_prefix`` against the full product."""

from __future__ import annotations

import numpy as np
import pytest

from kernelgen.errors import InvalidInputError
from kernelgen.kernels import Gaussian, Laplace, entries_symmetric_apply
from kernelgen.solvers._system import KernelSystem, OperatorMode


def _stack(rng, n, sizes, k):
    V = rng.standard_normal((n, len(sizes) * k))
    ext = np.repeat(sizes, k)
    for j, e in enumerate(ext):
        V[e:, j] = 0.0
    return V, ext


@pytest.mark.parametrize("kernel", [Gaussian(bandwidth=2.0), Laplace(bandwidth=3.0)])
@pytest.mark.parametrize("sizes", [[1, 300, 1500, 2600], [2600], [700, 700, 2600]])
def test_extent_gives_the_wanted_rows_of_the_full_product(kernel, sizes):
    rng = np.random.default_rng(1)
    n, k = 2600, 3  # > one cache block (several row blocks, so whole blocks are skipped for small prefixes)
    X = rng.standard_normal((n, 5))
    V, ext = _stack(rng, n, sizes, k)
    src = kernel.resolve(X).entries(X, None, dtype=np.float64)
    full = entries_symmetric_apply(src, V)
    got = entries_symmetric_apply(src, V, extent=ext)
    want = full.copy()
    for j, e in enumerate(ext):
        want[e:, j] = 0.0
    # the same terms summed in blocks of the same shape: agreement to a few roundings of sum |K_ij V_j|
    # (0 <= K <= 1), far below the entries themselves
    scale = np.sqrt(n) * np.abs(V).sum(axis=0)
    assert np.all(np.abs(got - want) <= 1e-14 * scale)
    assert np.all(got[[e for e in ext if e < n], [j for j, e in enumerate(ext) if e < n]] == 0.0)


def test_matvec_prefix_other_modes_and_bad_extent():
    rng = np.random.default_rng(2)
    n = 400
    X = rng.standard_normal((n, 4))
    kern = Gaussian(bandwidth=2.0).resolve(X)
    V, ext = _stack(rng, n, [100, 400], 2)
    K = kern.entries(X, None, dtype=np.float64)
    otf = KernelSystem(kern, X, None, 0.5, OperatorMode.ON_THE_FLY, 128, False)
    Kd = kern.matrix(X)
    pre = KernelSystem(kern, X, Kd, 0.5, OperatorMode.PRECOMPUTED, 128, False)
    want = Kd @ V + 0.5 * V
    for j, e in enumerate(ext):
        want[e:, j] = 0.0
    for op in (otf, pre):
        got = op.matvec_prefix(V, ext)
        assert np.allclose(got, want, rtol=0, atol=1e-12 * np.abs(V).sum())
    with pytest.raises(InvalidInputError, match="non-decreasing"):
        entries_symmetric_apply(K, V, extent=ext[::-1])
    with pytest.raises(InvalidInputError, match="non-decreasing"):
        entries_symmetric_apply(K, V, extent=ext[:-1])


def test_nested_curve_on_the_fly_uses_the_prefix_product(monkeypatch):
    from kernelgen.learning_curve import learning_curve

    rng = np.random.default_rng(3)
    X, Xt = rng.standard_normal((400, 10)), rng.standard_normal((50, 10))
    Y, Yt = rng.standard_normal((400, 2)), rng.standard_normal((50, 2))
    calls = []
    orig = KernelSystem.matvec_prefix

    def spy(self, V, extent):
        calls.append(np.asarray(extent).copy())
        return orig(self, V, extent)

    monkeypatch.setattr(KernelSystem, "matvec_prefix", spy)
    lc = learning_curve(X, Y, Xt, Yt, kernel=Gaussian(bandwidth=1.5), sizes=[100, 250, 400],
                        options={"store_kernel": False, "tile": 96, "dtype": "float32"})
    assert calls and all(np.array_equal(e, np.repeat([100, 250, 400], 2)) for e in calls)
    assert all(p.relative_residual <= 1e-10 for p in lc.points)  # each point certified by its own direct product


@pytest.mark.parametrize("sizes", [[1, 300, 1500, 2600], [700, 700, 2600]])
def test_bounded_pass_with_extent(sizes):
    from kernelgen.kernels import bounded_summation_depth, entries_bounded_symmetric_apply

    rng = np.random.default_rng(4)
    n, k = 2600, 2
    X = np.round(rng.random((n, 6)) * 255)  # integer data: the proven entry model applies
    V, ext = _stack(rng, n, sizes, k)
    src = Gaussian(bandwidth=300.0).resolve(X).entries(X, None, dtype=np.float64)
    full = entries_bounded_symmetric_apply(src, V, tau=0.5)
    got = entries_bounded_symmetric_apply(src, V, tau=0.5, extent=ext)
    h, N, D = bounded_summation_depth(n)
    u = 2.0 ** -53
    mask = np.ones_like(V, dtype=bool)
    for j, e in enumerate(ext):
        mask[e:, j] = False
    assert not got.KV[~mask].any() and not got.M_abs[~mask].any()
    # each is within its proven error of the exact product (KV: 2 gamma_h K|V| + N u |KV|, M|V| >= K|V|;
    # M|V|: gamma_D, terms >= 0), so the two computations differ by at most twice that
    tol_kv = 2 * (2 * h * u * full.M_abs + 2 * N * u * np.abs(full.KV))
    assert np.all(np.abs(got.KV - full.KV)[mask] <= tol_kv[mask])
    assert np.all(np.abs(got.M_abs - full.M_abs)[mask] <= (4 * D * u * full.M_abs)[mask])
    with pytest.raises(InvalidInputError, match="non-decreasing"):
        entries_bounded_symmetric_apply(src, V, extent=ext[::-1])


def test_prefix_stack_bounded_pass_matches_the_full_one():
    from kernelgen.learning_curve import _PrefixStack

    rng = np.random.default_rng(5)
    n = 900
    X = np.round(rng.random((n, 5)) * 255)
    kern = Gaussian(bandwidth=200.0).resolve(X)
    op = KernelSystem(kern, X, None, 0.0, OperatorMode.ON_THE_FLY, 128, False)
    sizes, k = [200, 500, 900], 2
    V, ext = _stack(rng, n, sizes, k)
    groups = [(m, slice(j * k, (j + 1) * k)) for j, m in enumerate(sizes)]
    stack = _PrefixStack(op, groups)
    AV, up, err = stack.matvec_bounded(V)
    fAV, fup, ferr = op.matvec_bounded(V)
    for m, cols in groups:
        # the same terms in the same blocks: within the proven error of either (err bounds |AV - exact|)
        assert np.all(np.abs(AV[:m, cols] - fAV[:m, cols]) <= err[:m, cols] + ferr[:m, cols])
        np.testing.assert_allclose(up[:m, cols], fup[:m, cols], rtol=1e-12)  # plain sums of terms >= 0
        np.testing.assert_allclose(err[:m, cols], ferr[:m, cols], rtol=1e-12)
        assert np.array_equal(AV[m:, cols], V[m:, cols]) and not err[m:, cols].any()  # identity rows, exact
    np.testing.assert_allclose(stack.matvec(V)[:200, :2], op.matvec(V)[:200, :2], rtol=0,
                               atol=1e-13 * np.abs(V).sum())
