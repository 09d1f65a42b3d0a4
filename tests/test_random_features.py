"""Random features: kernel convergence rate, min-norm fits vs pinv, sweeps, estimators, script."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from kernelgen import random_features as R
from kernelgen.estimators import RandomFeaturesClassifier, RandomFeaturesRegressor
from kernelgen.errors import InvalidInputError, MemoryBudgetError, ShapeMismatchError
from kernelgen.kernels import kernel_matrix

ROOT = Path(__file__).resolve().parents[1]
EPS = np.finfo(np.float64).eps


def _data(n, d, seed, k=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if k is None:
        return X
    return X, rng.standard_normal((n, k))


# ------------------------------------------------------------------ feature maps
def test_rff_gram_converges_to_gaussian_kernel_at_inverse_sqrt_rate():
    X = _data(20, 4, 0)
    s = 2.0
    K = kernel_matrix(X, kernel="gaussian", bandwidth=s)
    # Exact: Phi Phi^T is a mean of N i.i.d. rank-one terms whose entry variance is
    # 1 - k^2 + k^4/2 (product-to-sum + E cos(2 v.u) = k^4), so E||Phi Phi^T - K||_F^2 = c / N.
    c = np.sum(1 - K**2 + K**4 / 2)
    Ns = np.array([250, 1000, 4000, 16000])
    mse = []
    for N in Ns:
        e = [np.sum((P @ P.T - K) ** 2)
             for P in (R.draw_random_features(4, N, bandwidth=s, seed=seed).transform(X) for seed in range(40))]
        mse.append(np.mean(e))
    mse = np.array(mse)
    slope = np.polyfit(np.log(Ns), 0.5 * np.log(mse), 1)[0]
    # The per-seed squared error has relative sd ~0.3-0.7 (measured); 40 seeds make each log-RMS
    # accurate to ~5%, which moves a slope fitted over a 64x range of N by < 0.05: allow +-0.1.
    assert -0.6 <= slope <= -0.4, slope
    # Prefactor: pooled over 160 draws the ratio has standard error ~0.04; allow 5 of them (20%).
    ratio = float(np.mean(mse * Ns / c))
    assert 0.8 <= ratio <= 1.2, ratio


def test_relu_gram_converges_to_arccos_kernel():
    X = _data(6, 5, 1)
    s, N = 1.3, 100_000
    P = R.draw_random_features(5, N, kind="relu", bandwidth=s, seed=3).transform(X)
    K = R.arccos_kernel(X, bandwidth=s)
    # Entry-wise sd of a mean of N terms 2 relu(v.x) relu(v.z) is <= sqrt(E(2 relu relu)^2 / N)
    # <= 2 sqrt(3) |x||z| / (s^2 sqrt(N)) (4th Gaussian moment); 6 sigma over 21 entries.
    nrm = np.linalg.norm(X, axis=1)
    tol = 6 * 2 * np.sqrt(3) * np.outer(nrm, nrm) / (s**2 * np.sqrt(N))
    assert np.all(np.abs(P @ P.T - K) <= tol)
    # and the exact arc-cosine identities: k(x, x) = |x|^2 / s^2, k(x, -x) = 0
    assert np.allclose(np.diag(K), nrm**2 / s**2, rtol=1e-13)
    assert np.allclose(R.arccos_kernel(X[:1], -X[:1], bandwidth=s), 0.0, atol=1e-12)


def test_draws_are_nested_and_seeded():
    X = _data(7, 3, 2)
    wide = R.draw_random_features(3, 500, bandwidth=1.5, seed=11)
    narrow = R.draw_random_features(3, 120, bandwidth=1.5, seed=11)
    # the first 120 features of the wide draw are the narrow draw (bit for bit)
    np.testing.assert_array_equal(wide.weights[:, :120], narrow.weights)
    np.testing.assert_array_equal(wide.offsets[:120], narrow.offsets)
    # width-N features of the wide draw are the narrow model's features, scaling included
    # The projections X W are GEMMs of different widths (the BLAS may sum the d = 3 terms in another order), so
    # a projection moves by at most 2 gamma_d |X||W| and cos by no more (|d cos| <= |d arg|); scaled by sqrt(2/N).
    # A purely relative tolerance would fail where cos(v.x + b) is near zero.
    u = np.finfo(np.float64).eps / 2
    gam = 4 * u / (1 - 4 * u)  # d = 3 products and sums, plus the offset: depth 4
    atol = np.sqrt(2 / 120) * 2 * gam * (np.abs(X) @ np.abs(narrow.weights) + np.abs(narrow.offsets)) * 1.01
    a, b = wide.transform(X, n_features=120), narrow.transform(X)
    assert np.all(np.abs(a - b) <= 1e-15 * np.abs(b) + atol)
    other = R.draw_random_features(3, 120, bandwidth=1.5, seed=12)
    assert not np.allclose(other.weights, narrow.weights)


def test_transform_blocks_do_not_change_values():
    X = _data(300, 8, 3)
    fm = R.draw_random_features(8, 700, bandwidth=2.0, seed=0)
    full = fm.transform(X)
    tiny = fm.transform(X, block_bytes=8 * 1000)  # forces many row and column blocks
    ref = np.sqrt(2 / 700) * np.cos(X @ fm.weights + fm.offsets)
    # GEMM summation order depends on the block shape: the phase v.x differs by <= d eps sum|x_i v_i|
    # (~1e-14 here), scaled by sqrt(2/N) = 0.053; 1e-14 absolute is a safe bound.
    np.testing.assert_allclose(tiny, full, rtol=0, atol=1e-14)
    np.testing.assert_allclose(full, ref, rtol=0, atol=1e-14)


# ------------------------------------------------------------------ min-norm fits
@pytest.mark.parametrize("N", [15, 40, 41, 120])
@pytest.mark.parametrize("k", [None, 3])
def test_min_norm_fit_equals_pinv(N, k):
    X, Y = _data(40, 5, 4, k=3)
    Y = Y[:, 0] if k is None else Y
    Phi = R.draw_random_features(5, N, bandwidth=2.0, seed=1).transform(X)
    fit = R.min_norm_fit(Phi, Y)
    ref = np.linalg.pinv(Phi) @ Y
    # backward-stable solvers: forward error ~ cond(Phi) * eps; cond(Phi) < 1e6 here (N != n)
    # and ~1e7 at N = 40 = n, so 1e-6 relative leaves a wide margin.
    assert np.linalg.norm(fit.coef - ref) <= 1e-6 * np.linalg.norm(ref)
    assert fit.rank == min(40, N)
    if N > 40:
        assert fit.relative_residual <= 1e-10  # interpolation


def _pinv_metrics(fm, X, Y, Xt, Yt, N):
    Phi, Phit = fm.transform(X, n_features=N), fm.transform(Xt, n_features=N)
    a = np.linalg.pinv(Phi) @ Y
    return (np.mean(np.sum((Phit @ a - Yt) ** 2, axis=1)), np.linalg.norm(a),
            np.mean(np.sum((Phi @ a - Y) ** 2, axis=1)))


def test_sweep_matches_pinv_at_every_width():
    X, Y = _data(60, 5, 5, k=2)
    Xt, Yt = _data(50, 5, 6, k=2)
    widths = [10, 30, 59, 60, 61, 90, 240]
    res = R.double_descent_sweep(X, Y, Xt, Yt, widths, bandwidth=2.0, seeds=[3], kernel_limit=False,
                                 options=R.SweepOptions(keep_coef=True))
    fm = R.draw_random_features(5, 240, bandwidth=2.0, seed=3)
    for i, N in enumerate(widths):
        te, norm, tr = _pinv_metrics(fm, X, Y, Xt, Yt, N)
        ref = np.linalg.lstsq(fm.transform(X, n_features=N), Y, rcond=None)[0]
        # every width is solved on Phi (QR / LQ, or CGLS on Phi): forward error ~ kappa(Phi) eps with
        # kappa(Phi) <= 5e4 here (N = n), i.e. <= 1e-11; 1e-8 leaves a wide margin.
        assert np.linalg.norm(res.coef[0][i] - ref) <= 1e-8 * np.linalg.norm(ref), N
        assert res.test_sq[0, i] == pytest.approx(te, rel=1e-8)
        assert res.coef_norm[0, i] == pytest.approx(norm, rel=1e-8)
        assert res.train_sq[0, i] == pytest.approx(tr, rel=1e-8, abs=1e-20)
        assert res.rank[0, i] == min(60, N)
    # regression targets: no zero-one error, and None (never NaN) says so
    assert res.task == "regression" and res.test_error is None and res.train_error is None


def _ill_conditioned_problem():
    """n = 60 points, RFF s = 8: kappa(Phi) = 3.5e6, 1.1e7, 5.5e6 at N = 59, 60, 61 (measured)."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((60, 5)), rng.standard_normal((60, 2))
    Xt, Yt = rng.standard_normal((30, 5)), rng.standard_normal((30, 2))
    return X, Y, Xt, Yt


def test_sweep_at_threshold_equals_independent_pinv_on_ill_conditioned_phi():
    X, Y, Xt, Yt = _ill_conditioned_problem()
    widths = [30, 59, 60, 61, 120]
    res = R.double_descent_sweep(X, Y, Xt, Yt, widths, bandwidth=8.0, seeds=[1], kernel_limit=False,
                                 options=R.SweepOptions(keep_coef=True))
    fm = R.draw_random_features(5, 120, bandwidth=8.0, seed=1)
    for i, N in enumerate(widths):
        Phi = fm.transform(X, n_features=N)
        U, s, Vt = np.linalg.svd(Phi, full_matrices=False)  # independent oracle: Phi^+ Y from the SVD of Phi
        ref = Vt.T @ ((U.T @ Y) / s[:, None])
        kappa = s[0] / s[-1]
        # rank decided on Phi: full, although kappa^2 max(n, N) eps > 1 at N = n (a Gram cut-off drops it)
        assert res.rank[0, i] == min(60, N)
        # forward error of a backward-stable solve ~ kappa eps (consistent) and kappa^2 eps ||r||/(||Phi|| ||a||)
        # for least squares; measured 2e-11 at kappa = 1.1e7. kappa eps <= 2.5e-9 here, so 1e-8 is a real test.
        assert kappa * EPS < 2.5e-9
        assert np.linalg.norm(res.coef[0][i] - ref) <= 1e-8 * np.linalg.norm(ref), (N, kappa)
        # certificates computed with Phi: backward-stable levels
        assert res.opt_residual[0, i] <= 1e-10
        if N >= 60:
            assert res.fit_residual[0, i] <= 1e-9
    i_n = widths.index(60)
    assert res.method[0, i_n] == "qr"  # the Gram factor is refused at N = n and Phi itself is factored
    s = np.linalg.svd(fm.transform(X, n_features=60), compute_uv=False)
    # the old sweep's cut-off (n eps lambda_max on Phi Phi^T) would have dropped a singular value here
    assert np.sum(s**2 > 60 * EPS * s[0] ** 2) < 60


def test_forcing_qr_everywhere_agrees_with_default_paths():
    X, y = _data(50, 4, 7), np.arange(50) % 3
    Xt, yt = _data(40, 4, 8), np.arange(40) % 3
    widths = [20, 45, 50, 55, 150]
    opts = R.SweepOptions(keep_coef=True)
    base = R.double_descent_sweep(X, y, Xt, yt, widths, bandwidth=1.5, seeds=[0], kernel_limit=False, options=opts)
    forced = R.double_descent_sweep(X, y, Xt, yt, widths, bandwidth=1.5, seeds=[0], kernel_limit=False,
                                    options=replace(opts, chol_rcond_factor=np.inf))
    assert set(forced.method[0]) == {"qr", "lq"}
    assert "cholesky_cgls" in set(base.method[0])
    # both compute Phi^+ Y from Phi (cond(Phi) < 1e4 here): agreement to ~kappa eps; 1e-9 is generous.
    for a, b in zip(base.coef[0], forced.coef[0]):
        assert np.linalg.norm(a - b) <= 1e-9 * np.linalg.norm(b)
    np.testing.assert_array_equal(base.rank, forced.rank)


def test_certificates_are_recomputable_from_phi():
    X, Y, Xt, Yt = _ill_conditioned_problem()
    widths = [40, 60, 90]
    res = R.double_descent_sweep(X, Y, Xt, Yt, widths, bandwidth=8.0, seeds=[1], kernel_limit=False,
                                 options=R.SweepOptions(keep_coef=True))
    fm = R.draw_random_features(5, 90, bandwidth=8.0, seed=1)
    for i, N in enumerate(widths):
        Phi = fm.transform(X, n_features=N)
        r = Y - Phi @ res.coef[0][i]
        opt = np.linalg.norm(Phi.T @ r) / (np.linalg.norm(Phi, 2) * np.linalg.norm(Y))
        fit = np.linalg.norm(r) / np.linalg.norm(Y)
        # at the rounding level these depend on the order of operations (the sweep works with Psi = sqrt(N) Phi
        # and a power-iteration ||Phi||): same order of magnitude (factor 3), and both at backward-stable levels.
        assert opt / 3 <= res.opt_residual[0, i] <= 3 * opt + 1e-16
        assert fit / 3 <= res.fit_residual[0, i] <= 3 * fit + 1e-16
        assert max(opt, res.opt_residual[0, i]) <= 1e-10
        if N == 60:
            # the certificate tells the truncated answer (cut-off sqrt(n eps) sigma_max, what the old sweep's Gram
            # cut-off amounted to) from the exact one: its interpolation residual is not at rounding level
            a_trunc = np.linalg.pinv(Phi, rcond=np.sqrt(60 * EPS)) @ Y
            s = np.linalg.svd(Phi, compute_uv=False)
            assert s[-1] < np.sqrt(60 * EPS) * s[0]  # kappa = 1.1e7: the cut-off drops one singular value
            assert np.linalg.norm(Y - Phi @ a_trunc) / np.linalg.norm(Y) > 1e3 * fit


def test_synthetic_sweep_peaks_at_interpolation_threshold():
    # Noisy smooth target: min-norm risk explodes at N = n (Belkin et al. 2019).
    rng = np.random.default_rng(0)
    n, d = 200, 10
    X, Xt = rng.standard_normal((n, d)), rng.standard_normal((400, d))
    f = lambda Z: np.sin(Z[:, 0]) + 0.5 * Z[:, 1]  # noqa: E731
    y = f(X) + 0.3 * rng.standard_normal(n)
    widths = R.default_widths(n, max_ratio=4.0)
    res = R.double_descent_sweep(X, y[:, None], Xt, f(Xt)[:, None], widths, bandwidth=3.0,
                                 seeds=[0, 1, 2])
    peak = res.peak_width("test_sq")
    assert 0.9 * n <= peak <= 1.1 * n
    # the second descent: risk at 4n is far below the peak, and the kernel limit is finite
    assert res.mean("test_sq")[-1] < 0.1 * res.mean("test_sq").max()
    assert np.isfinite(res.kernel_limit["test_sq"])
    # coefficient norm also peaks at the threshold
    assert 0.9 * n <= res.peak_width("coef_norm") <= 1.1 * n


def test_large_width_approaches_kernel_interpolant():
    from kernelgen import kernel_interpolate
    from kernelgen.kernels import Gaussian

    X, Y = _data(15, 3, 9, k=1)
    Xt = _data(10, 3, 10)
    s = 0.7  # small bandwidth: K well conditioned, so the error follows the Gram error
    fitk = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=s))
    ref = fitk.predict(Xt)
    errs = []
    for N in (1000, 16000):
        est = RandomFeaturesRegressor(N, bandwidth=s, seed=0).fit(X, Y)
        errs.append(np.linalg.norm(est.predict(Xt) - ref) / np.linalg.norm(ref))
    # 16x more features: error shrinks ~4x (1/sqrt(N)); demand at least 2x and a small final error.
    assert errs[1] < errs[0] / 2 and errs[1] < 0.1, errs


# ------------------------------------------------------------------ estimators
def test_regressor_matches_pinv_and_sklearn_conventions():
    X, Y = _data(30, 4, 11, k=2)
    est = RandomFeaturesRegressor(80, bandwidth=2.0, seed=4)
    assert not any(k.endswith("_") for k in vars(est))  # __init__ stores parameters only
    est.fit(X, Y)
    Phi = R.draw_random_features(4, 80, bandwidth=2.0, seed=4).transform(X)
    np.testing.assert_allclose(est.coef_, np.linalg.pinv(Phi) @ Y, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(est.predict(X), Y, atol=1e-8)  # N > n: interpolates
    assert est.rank_ == 30 and est.n_features_in_ == 4
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "coef_")


def test_classifier_interpolates_labels():
    X = _data(40, 3, 12)
    y = np.where(X[:, 0] > 0, "pos", "neg")
    clf = RandomFeaturesClassifier(200, bandwidth=1.0, seed=0).fit(X, y)
    assert list(clf.classes_) == ["neg", "pos"]
    assert clf.score(X, y) == 1.0  # min-norm interpolation of one-hot targets
    assert clf.decision_function(X).shape == (40,)  # scikit-learn's binary convention: one column


def test_inputs_not_mutated_and_errors_named():
    X, Y = _data(20, 3, 13, k=1)
    X0, Y0 = X.copy(), Y.copy()
    R.double_descent_sweep(X, Y, X, Y, [5, 30], bandwidth=1.0, kernel_limit=False)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    with pytest.raises(InvalidInputError):
        R.draw_random_features(3, 10, kind="tanh", seed=0)
    with pytest.raises(InvalidInputError):
        R.draw_random_features(3, 10, seed=None)
    with pytest.raises(ShapeMismatchError):
        R.draw_random_features(4, 10, seed=0).transform(X)
    with pytest.raises(MemoryBudgetError):
        R.double_descent_sweep(X, Y, X, Y, [5, 30], options=R.SweepOptions(max_bytes=1000))


# ------------------------------------------------------------------ script
def test_double_descent_script_smoke(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "double_descent.py"), "--smoke", "--out-dir", str(tmp_path),
         "--json-out", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("n_train", "peak_width", "test_error_at_peak", "test_error_at_4n", "test_error_kernel_limit",
                "seconds", "at_n_per_seed", "at_n_spread", "rank_at_n", "max_opt_residual"):
        assert key in metrics
    assert len(metrics["at_n_per_seed"]) == 3  # default: three feature seeds
    assert metrics["rank_at_n"] == [metrics["n_train"]] * 3
    assert metrics["max_opt_residual"] <= 1e-10  # every width certified with Phi
    assert 0.9 <= metrics["peak_width"] / metrics["n_train"] <= 1.1
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert len(list(tmp_path.glob("*.png"))) >= 2


def test_relu_sweep_and_arccos_kernel_limit():
    from kernelgen import kernel_interpolate

    X, Y = _data(40, 5, 14, k=1)
    Xt, Yt = _data(30, 5, 15, k=1)
    res = R.double_descent_sweep(X, Y, Xt, Yt, [10, 40, 8000], kind="relu", bandwidth=1.0, seeds=[0])
    # independent kernel-limit oracle: interpolate the arc-cosine kernel directly
    K = R.arccos_kernel(X)
    fit = kernel_interpolate(K, Y, kernel="precomputed")
    ref = np.mean(np.sum((fit.predict(R.arccos_kernel(Xt, X)) - Yt) ** 2, axis=1))
    assert res.kernel_limit["test_sq"] == pytest.approx(ref, rel=1e-8)  # same solve, float64 rounding
    assert res.kernel_limit["train_sq"] <= 1e-16
    # N = 200 n: the risk is near the limit. Measured over seeds at N = 2000: 1-12% off, so ~0.5-6%
    # at N = 8000 (1/sqrt(N)); 25% leaves a wide margin for this fixed seed.
    assert res.test_sq[0, -1] == pytest.approx(ref, rel=0.25)


@pytest.mark.slow
def test_mnist_subset_peak_at_threshold():
    from kernelgen.datasets import load_mnist

    Xtr, ytr, Xte, yte = load_mnist()
    n = 2000
    X, y, Xt, yt = Xtr[:n] / 255.0, ytr[:n].astype(int), Xte[:2000] / 255.0, yte[:2000].astype(int)
    res = R.double_descent_sweep(X, y, Xt, yt, R.default_widths(n), bandwidth=5.0, seeds=[0])
    assert 0.9 * n <= res.peak_width("test_error") <= 1.1 * n
    # measured here (n = 2000): 89% at N = n, 12% at 4n, kernel limit 7.7%
    te = res.mean("test_error")
    assert te.max() > 0.5 and te[-1] < 0.2 and res.kernel_limit["test_error"] < 0.1
