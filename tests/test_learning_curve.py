"""kernelgen.learning_curve: nested prefixes sharing one factor against separate kernel_interpolate solves.

Oracles: every point of a nested curve is compared with an independent :func:`kernelgen.kernel_interpolate`
solve on the same rows (coefficients, predictions, RKHS norm, test metrics); the number of factorisations
is counted by wrapping :meth:`CholeskyFactor.from_panels` (the one place a tiled factor is computed); the
subsets are compared with the documented seeding rule; :func:`fit_exponent` with an independent OLS.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kernelgen import SolveOptions, kernel_interpolate, kernel_matrix
from kernelgen import learning_curve as lc_mod
from kernelgen.errors import (
    ConvergenceError,
    InvalidInputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    ShapeMismatchError,
    UnsupportedOptionError,
)
from kernelgen.factors import CholeskyFactor, LowerPanels, symmetric_matvec_panels
from kernelgen.kernels import Gaussian, Linear
from kernelgen.learning_curve import (
    fit_exponent,
    infer_target_task,
    learning_curve,
    plot_learning_curve,
)
from kernelgen.solvers import ScipyBackend
from kernelgen.solvers._system import KernelSystem

TOL = 1e-10  # the default certified tolerance (SolveOptions.tol)
KERN = Gaussian(bandwidth=4.0)  # on 20-D standard normal data: K well conditioned (cond ~ 1e2 at n = 500)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X, Xt = rng.normal(size=(500, 20)), rng.normal(size=(150, 20))
    w = rng.normal(size=(20, 3))
    y, yt = np.argmax(X @ w, axis=1), np.argmax(Xt @ w, axis=1)
    return X, np.eye(3)[y], Xt, np.eye(3)[yt]


@pytest.fixture
def count_factors(monkeypatch):
    """The number of tiled Cholesky factorisations computed (CholeskyFactor.from_panels calls)."""
    calls = []
    orig = CholeskyFactor.from_panels.__func__

    def counting(cls, panels, **kw):
        calls.append(panels.n)
        return orig(cls, panels, **kw)

    monkeypatch.setattr(CholeskyFactor, "from_panels", classmethod(counting))
    return calls


def _capture_fits(monkeypatch):
    """The KernelInterpolant of every nested point, captured from the module's build_interpolant."""
    fits = {}
    orig = lc_mod.build_interpolant

    def capture(sol, Y2, squeeze, kern, X64, *a, **kw):
        fit = orig(sol, Y2, squeeze, kern, X64, *a, **kw)
        fits[X64.shape[0]] = fit
        return fit

    monkeypatch.setattr(lc_mod, "build_interpolant", capture)
    return fits


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_leading_block_of_a_tiled_factor(dtype):
    rng = np.random.default_rng(0)
    B = rng.normal(size=(300, 300))
    A = B @ B.T / 300 + np.eye(300)  # cond ~ 5: the solves below are accurate to ~cond * u of the dtype
    f = CholeskyFactor.factor(A, tile=64, dtype=dtype)
    u = np.finfo(dtype).eps
    for m in (1, 63, 64, 65, 200, 300):
        g = f.leading(m)
        assert g.shape == (m, m) and g.dtype == dtype and g.describe()["leading_of"] == 300
        assert all(np.shares_memory(p, q) and not p.flags.writeable for p, q in zip(g.panels.panels, f.panels.panels))
        Y = rng.normal(size=(m, 2))
        X = g.solve(Y)
        assert np.linalg.norm(A[:m, :m] @ X - Y) <= 50 * u * np.linalg.norm(Y)  # backward stable: ~ n u cond
        ref = np.linalg.slogdet(A[:m, :m])[1]
        assert abs(g.logdet().value - ref) <= 50 * u * m  # sum of m logs of the leading diagonal
    P = LowerPanels.from_dense(A, 64, np.float64)
    V = rng.normal(size=(130, 3))
    np.testing.assert_allclose(symmetric_matvec_panels(P.leading(130), V), A[:130, :130] @ V, rtol=0,
                               atol=1e-12 * np.abs(A).sum(1).max() * np.abs(V).max())
    for bad in (0, 301, True, 2.0):
        with pytest.raises(InvalidInputError):
            f.leading(bad)


@pytest.mark.parametrize("opts", [None, {"dtype": "float32", "tile": 96}, {"store_kernel": False, "tile": 96}],
                         ids=["float64-stored", "float32-tiles", "on-the-fly"])
def test_nested_agrees_with_separate_solves(data, monkeypatch, count_factors, opts):
    X, Y, Xt, Yt = data
    sizes = [60, 150, 263, 500]  # 263: a prefix that cuts a tile of 96 (and of the stored triangle) in two
    fits = _capture_fits(monkeypatch)
    lc = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=sizes, options=opts, seeds=3)
    assert count_factors == [500] and lc.n_factors == 1  # ONE factor, of the largest system
    rows = np.random.default_rng(3).permutation(X.shape[0])  # the documented nested rule
    assert [p.n for p in lc.points] == sizes and lc.task == "classification"
    for p in lc.points:
        assert np.array_equal(p.rows, rows[: p.n]) and not p.rows.flags.writeable
        assert p.relative_residual <= TOL
        if opts and opts.get("dtype") == "float32":
            assert p.factor_dtype == "float32"
        # the prefix's certifying operator: the stored triangle's leading block, or recomputed on the fly
        assert fits[p.n].residual_mode == ("on-the-fly" if opts and opts.get("store_kernel") is False else "stored")
        sep = kernel_interpolate(X[p.rows], Y[p.rows], kernel=KERN, options=opts)
        K = kernel_matrix(X[p.rows], kernel="gaussian", bandwidth=4.0)
        cond = np.linalg.cond(K)
        a_nest, a_sep = fits[p.n].alpha, sep.alpha
        # two coefficient sets whose certified residuals r1, r2 are <= tol differ by <= cond(K) (r1 + r2) relative
        # (alpha1 - alpha2 = K^-1 (R2 - R1), ||alpha|| >= ||Y|| / ||K||); 2x for the rounding of the certifying
        # float64 products themselves (~ sqrt(n) u ||K|| ||alpha|| / ||Y||, far below tol at cond ~ 1e2)
        bound = 2 * cond * (p.relative_residual + sep.relative_residual)
        assert np.linalg.norm(a_nest - a_sep) <= bound * np.linalg.norm(a_sep)
        P_sep = sep.predict(Xt)
        P_nest = fits[p.n].predict(Xt)
        dP = np.abs(P_nest - P_sep).max()
        assert dP <= np.sqrt(p.n) * bound * np.linalg.norm(a_sep)  # |k(x, X) da| <= sqrt(n) ||da|| as 0 < k <= 1
        # the test error agrees exactly: every argmax margin is far above the predictions' difference
        top2 = np.sort(P_sep, axis=1)[:, -2:]
        assert np.min(top2[:, 1] - top2[:, 0]) > 100 * dP
        assert p.test_error == np.mean(P_sep.argmax(1) != Yt.argmax(1))
        assert p.test_mse == pytest.approx(np.mean(np.sum((P_sep - Yt) ** 2, axis=1)), rel=1e-6)
        assert p.rkhs_norm == pytest.approx(sep.rkhs_norm, rel=1e-8)  # alpha^T K alpha: relative error ~ bound


def test_nested_seeds_each_share_one_factor(data, count_factors):
    X, Y, Xt, Yt = data
    lc = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[40, 90], seeds=(0, 5))
    assert sorted(count_factors) == [90, 90] and lc.n_factors == 2
    assert [(p.seed, p.n) for p in lc.points] == [(0, 40), (0, 90), (5, 40), (5, 90)]
    sizes, mean, std = lc.mean_over_seeds("test_mse")
    v = lc.column("test_mse")
    assert sizes.tolist() == [40, 90] and mean[0] == pytest.approx((v[0] + v[2]) / 2, rel=1e-15)
    assert std[1] == pytest.approx(np.std([v[1], v[3]], ddof=1), rel=1e-12)


def test_independent_subsets_fresh_and_reproducible(data, count_factors):
    X, Y, Xt, Yt = data
    y, yt = 2.0 * Y[:, 0] - 1.0, 2.0 * Yt[:, 0] - 1.0  # +-1 labels: one column, classified by sign
    kw = {"kernel": KERN, "sizes": [50, 120], "subsets": "independent", "seeds": (1, 2)}
    a = learning_curve(X, y, Xt, yt, **kw)
    assert len(count_factors) == 4 and a.n_factors == 4  # one factor per point
    b = learning_curve(X, y, Xt, yt, **kw)
    for p, q in zip(a.points, b.points):
        assert np.array_equal(p.rows, q.rows)
        assert (p.test_error, p.test_mse, p.rkhs_norm) == (q.test_error, q.test_mse, q.rkhs_norm)  # bitwise
        ref = np.random.default_rng([p.seed, p.n]).choice(X.shape[0], p.n, replace=False)  # documented rule
        assert np.array_equal(p.rows, ref) and p.relative_residual <= TOL
    by = {(p.seed, p.n): set(p.rows.tolist()) for p in a.points}
    assert by[(1, 50)] != by[(2, 50)] and not by[(1, 50)] <= by[(1, 120)]  # fresh per seed, not nested
    p = a.points[0]
    P = kernel_interpolate(X[p.rows], y[p.rows], kernel=KERN).predict(Xt)
    assert p.test_error == np.mean(np.sign(P) != yt)  # the sign rule of a +-1 target


def test_class_labels_are_one_hot_encoded(data):
    X, Y, Xt, Yt = data
    labels = np.array(["a", "b", "c"])
    a = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[70, 140])
    b = learning_curve(X, labels[Y.argmax(1)], Xt, labels[Yt.argmax(1)], kernel=KERN, sizes=[70, 140])
    assert b.task == "classification"
    for p, q in zip(a.points, b.points):  # the same one-hot system: bitwise the same numbers
        assert (p.test_error, p.test_mse, p.rkhs_norm) == (q.test_error, q.test_mse, q.rkhs_norm)
    with pytest.raises(InvalidInputError, match="classes"):
        learning_curve(X, Y.argmax(1), Xt, np.full(Xt.shape[0], 7), kernel=KERN, sizes=[70])


def test_regression_and_tolerance(data):
    X, _, Xt, _ = data
    rng = np.random.default_rng(0)
    y, yt = np.sin(X[:, 0]) + 0.1 * rng.normal(size=X.shape[0]), np.sin(Xt[:, 0])
    lc = learning_curve(X, y, Xt, yt, kernel=KERN, sizes=[100, 300], ridge=1e-3, options={"tol": 1e-12})
    assert lc.task == "regression" and lc.ridge == 1e-3
    assert all(p.test_error is None and p.relative_residual <= 1e-12 for p in lc.points)
    p = lc.points[-1]
    fit = kernel_interpolate(X[p.rows], y[p.rows], kernel=KERN, ridge=1e-3, options={"tol": 1e-12})
    # ridge 1e-3 keeps cond(K + ridge I) ~ 1e2: the MSEs agree far inside the residual-level bound
    assert p.test_mse == pytest.approx(np.mean((fit.predict(Xt) - yt) ** 2), rel=1e-8)
    assert np.isnan(lc.column("test_error")).all()


def test_float32_breakdown_is_retried_in_float64(data, monkeypatch, count_factors):
    X, Y, Xt, Yt = data
    orig = ScipyBackend.factor

    def fail_float32(self, A, kernel, plan, ridge):
        if np.dtype(plan.factor_dtype) == np.float32:
            raise NotPositiveDefiniteError("injected float32 breakdown", 7)
        return orig(self, A, kernel, plan, ridge)

    monkeypatch.setattr(ScipyBackend, "factor", fail_float32)
    lc = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[80, 200], options={"float64_max_n": 10})
    assert [p.factor_dtype for p in lc.points] == ["float64", "float64"] and lc.n_factors == 1
    assert any("refactored in float64" in s for s in lc.notes)
    with pytest.raises(NotPositiveDefiniteError, match="injected"):  # an explicit float32 is never retried
        learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[80, 200], options={"dtype": "float32"})


def test_passes_are_shared_by_all_prefixes(data, monkeypatch):
    X, Y, Xt, Yt = data
    rows = []
    orig = KernelSystem.matvec

    def counting(self, V):
        rows.append(np.shape(V)[0])
        return orig(self, V)

    monkeypatch.setattr(KernelSystem, "matvec", counting)
    orig_p = KernelSystem.matvec_prefix

    def counting_p(self, V, extent):  # the shared passes' products (each block serving the prefixes it reaches)
        rows.append(np.shape(V)[0])
        return orig_p(self, V, extent)

    monkeypatch.setattr(KernelSystem, "matvec_prefix", counting_p)
    orig_b = KernelSystem.matvec_bounded

    def counting_b(self, V, **kw):  # the certifying (bounded) passes
        rows.append(np.shape(V)[0])
        return orig_b(self, V, **kw)

    monkeypatch.setattr(KernelSystem, "matvec_bounded", counting_b)
    lc = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[50, 120, 333], options={"dtype": "float32"})
    passes = {p.float64_passes for p in lc.points}
    # every float64 product is one pass over the n = 333 kernel, and there are exactly as many as each point reports
    assert rows == [333] * len(rows) and passes == {len(rows)}
    assert all(any("shared by all 3 prefixes" in s for s in p.notes) for p in lc.points)
    assert lc.shared_iteration_seconds > 0 and all(p.relative_residual <= TOL for p in lc.points)
    rows.clear()
    b = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[50, 120, 333],
                       options={"dtype": "float32", "certificate": "bound"})
    # certificate='bound' carries a proven bound per system: every prefix iterates alone, each certified by it
    assert sorted(set(rows)) == [50, 120, 333] and b.shared_iteration_seconds == 0.0
    assert all(p.relative_residual <= TOL and not any("shared" in s for s in p.notes) for p in b.points)


def test_prefix_convergence_failure_is_retried_once(data, monkeypatch, count_factors):
    X, Y, Xt, Yt = data

    def no_shared_convergence(*a, **kw):
        raise ConvergenceError("injected: the shared passes stall")

    monkeypatch.setattr(lc_mod, "refine", no_shared_convergence)
    orig = lc_mod.iterate

    def stall_float32(op, factor, *a, **kw):
        if factor.dtype == np.float32:
            raise ConvergenceError("injected stall")
        return orig(op, factor, *a, **kw)

    monkeypatch.setattr(lc_mod, "iterate", stall_float32)
    lc = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[80, 200], options={"float64_max_n": 10})
    assert count_factors == [200, 200] and lc.n_factors == 2  # the float32 factor, then the float64 retry
    assert all(p.factor_dtype == "float64" and p.relative_residual <= TOL for p in lc.points)
    assert any("shared passes did not converge" in s for s in lc.notes)


def test_bad_input_is_refused(data):
    X, Y, Xt, Yt = data
    kw = {"kernel": KERN, "sizes": [50, 100]}

    def run(*args, **over):
        a = dict(kw, **over)
        return learning_curve(*(args or (X, Y, Xt, Yt)), **a)

    for sizes in ([100, 50], [50, 50], [0, 10], [10, 501], [], [10.5, 20], "10"):
        with pytest.raises(InvalidInputError):
            run(sizes=sizes)
    with pytest.raises(InvalidInputError, match="subsets"):
        run(subsets="bootstrap")
    with pytest.raises(InvalidInputError, match="task"):
        run(task="ranking")
    for seeds in ((0, 0), (-1,), (), 1.5):
        with pytest.raises(InvalidInputError, match="seeds"):
            run(seeds=seeds)
    with pytest.raises(InvalidInputError, match="ridge"):
        run(ridge=-1.0)
    with pytest.raises(InvalidInputError, match="precomputed"):
        run(kernel="precomputed")
    with pytest.raises(ShapeMismatchError):
        run(X, Y[:-1], Xt, Yt)
    with pytest.raises(ShapeMismatchError):
        run(X, Y, Xt[:, :5], Yt)
    with pytest.raises(ShapeMismatchError):
        run(X, Y, Xt, Yt[:, :2])
    with pytest.raises(ShapeMismatchError):
        run(X, Y, Xt, Yt[:-1])
    Xn = X.copy()
    Xn[3, 4] = np.nan
    with pytest.raises(NonFiniteInputError):
        run(Xn, Y, Xt, Yt)
    Ytn = Yt.copy()
    Ytn[0, 0] = np.inf
    with pytest.raises(NonFiniteInputError):
        run(X, Y, Xt, Ytn)
    with pytest.raises(UnsupportedOptionError, match="independent"):  # the shared factor must be in RAM
        run(options={"storage": "disk"})
    with pytest.raises(InvalidInputError, match="sign"):
        run(X, Y[:, 0] * 2 - 1, Xt, Yt[:, 0], task="classification")  # a zero label has no sign


def test_infer_target_task():
    eye = np.eye(4)[[0, 1, 2, 3, 1]]
    assert infer_target_task(eye) == "classification"
    assert infer_target_task(eye * 1.0 - 0.1) == "classification"  # Lee et al.'s -0.1 / 0.9 one-hot
    assert infer_target_task(np.array([1.0, -1.0, 1.0])) == "classification"
    assert infer_target_task(np.array([0.0, 1.0, 1.0])) == "regression"  # {0, 1}: no sign rule
    two = eye.copy()
    two[0, 1] = 1.0
    assert infer_target_task(two) == "regression"  # a row with two "hot" entries is not one-hot
    assert infer_target_task(eye, np.full((2, 4), 0.5)) == "regression"  # judged with the test targets


def test_fit_exponent_against_linregress():
    n = np.array([1e3, 2e3, 5e3, 1e4, 2e4, 3e4])
    assert fit_exponent(n, 2.0 * n**-0.37, 1e3, 3e4)[0] == pytest.approx(-0.37, abs=1e-12)
    rng = np.random.default_rng(1)
    err = 0.5 * n**-0.4 * np.exp(0.05 * rng.normal(size=n.size))
    slope, se = fit_exponent(n, err, 2e3, 3e4)
    ref = stats.linregress(np.log(n[1:]), np.log(err[1:]))  # an independent OLS with its standard error
    assert slope == pytest.approx(ref.slope, rel=1e-12) and se == pytest.approx(ref.stderr, rel=1e-10)
    with pytest.raises(InvalidInputError, match="3 distinct"):
        fit_exponent(n, err, 1.5e4, 3e4)
    with pytest.raises(InvalidInputError, match="positive"):
        fit_exponent(n, np.where(n == 5e3, 0.0, err), 1e3, 3e4)
    with pytest.raises(InvalidInputError):
        fit_exponent(n, err, 3e4, 1e3)
    with pytest.raises(ShapeMismatchError):
        fit_exponent(n, err[:-1], 1e3, 3e4)


def test_plot_learning_curve(data, tmp_path):
    X, Y, Xt, Yt = data
    lc = learning_curve(X, Y, Xt, Yt, kernel=Linear(), sizes=[25, 50, 100, 200, 400], ridge=1.0, seeds=(0, 1))
    path = tmp_path / "figs" / "curve.png"
    fig = plot_learning_curve(lc, path, fit_range=(50, 400))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    legend = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    mse_mean = lc.mean_over_seeds("test_mse")[1]
    slope, se = fit_exponent(lc.column("n"), lc.column("test_mse"), 50, 400)
    assert any(f"slope {slope:.3f} ± {se:.3f} on [50, 400]" in s for s in legend), legend
    assert len(fig.axes) == 2 and mse_mean.shape == (5,)
    with pytest.raises(InvalidInputError):
        plot_learning_curve(lc, None, fit_range=(400, 50))
    with pytest.raises(InvalidInputError):
        plot_learning_curve({"points": []}, None)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_solve_options_passed_whole(data):
    X, Y, Xt, Yt = data
    with pytest.raises(InvalidInputError):
        learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[20], options={"tol": -1.0})
    lc = learning_curve(X, Y, Xt, Yt, kernel=KERN, sizes=[20], options=SolveOptions(tile=8))
    assert lc.options.tile == 8
