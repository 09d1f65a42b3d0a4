"""Tests of kernelgen.sgd: SGD / GD / Kaczmarz limits, row space, closed forms, step-size bounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from kernelgen.errors import (
    InvalidInputError,
    NonFiniteInputError,
    ShapeMismatchError,
    UnstableStepSizeError,
)
from kernelgen.kernels import kernel_matrix
from kernelgen.sgd import (
    gd,
    gd_closed_form,
    gradient_flow_predictions,
    kaczmarz,
    kernel_gd,
    kernel_kaczmarz,
    kernel_sgd,
    sample_indices,
    sgd,
    stability_bound,
)

ROOT = Path(__file__).resolve().parents[1]


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def _conditioned(n, d, kappa, seed, rank=None):
    """X (n, d) with kappa(X X^T) = kappa over its rank, and y (n,), from an explicit seed."""
    rng = np.random.default_rng(seed)
    r = n if rank is None else rank
    U = np.linalg.qr(rng.standard_normal((n, r)))[0]
    V = np.linalg.qr(rng.standard_normal((d, r)))[0]
    s = np.geomspace(1.0, 1.0 / np.sqrt(kappa), r) * np.sqrt(d)
    X = (U * s) @ V.T
    y = X @ rng.standard_normal(d) if rank is not None else rng.standard_normal(n)  # consistent
    return X, y


def _kappa(A):
    ev = np.linalg.eigvalsh(A @ A.T)
    ev = ev[ev > ev[-1] * A.shape[1] * np.finfo(float).eps]
    return ev[-1] / ev[0]


# (name, X, y, steps, batch, replace): systems whose kappa(X X^T) is in the test id
_LINEAR = []
for _seed, (_kap, _B, _rep) in enumerate([(10, 1, True), (1e3, 1, True), (1e3, 5, False), (1e2, 20, True)]):
    _X, _y = _conditioned(20, 60, _kap, _seed)
    _LINEAR.append(pytest.param(_X, _y, _B, _rep, _seed, id=f"linear-seed{_seed}-B{_B}-kappa{_kappa(_X):.0e}"))
_Xr, _yr = _conditioned(20, 60, 100, 9, rank=12)  # rank-deficient rows, consistent y
_LINEAR.append(pytest.param(_Xr, _yr, 1, True, 9, id=f"linear-rank12-kappa{_kappa(_Xr):.0e}"))

_KERNEL = []
for _seed, _s in enumerate([1.0, 1.5, 2.0]):
    _rng = np.random.default_rng(100 + _seed)
    _Z = _rng.standard_normal((30, 5))
    _K = kernel_matrix(_Z, kernel="gaussian", bandwidth=_s, dtype=np.float64)
    _ev = np.linalg.eigvalsh(_K)
    _KERNEL.append(
        pytest.param(_K, _rng.standard_normal(30), _seed, id=f"gaussian-s{_s}-seed{_seed}-kappa{_ev[-1] / _ev[0]:.0e}")
    )


@pytest.mark.parametrize("X, y, B, replace, seed", _LINEAR)
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_sgd_limit_is_min_norm(X, y, B, replace, seed, form):
    """The used-by test: SGD from 0 converges to min_norm_solve's solution (= pinv(X) y)."""
    tr = sgd(X, y, steps=400_000, key=seed, batch_size=B, replace=replace, form=form)
    print(f"kappa(XX^T) = {tr.condition_number:.3e}, rank {tr.rank}, final distance {tr.distance[-1]:.2e}")
    # float64: the limit itself is accurate to ~kappa(X) eps ~ 1e-14; 1e-8 leaves the
    # contraction (1 - eta lambda_min)^t room and would fail for any other interpolant
    assert tr.distance[-1] <= 1e-8
    assert _rel(tr.w, np.linalg.pinv(X) @ y) <= 1e-8
    assert _rel(tr.limit, np.linalg.pinv(X) @ y) <= 1e-10  # min_norm_solve vs pinv, kappa <= 1e3


@pytest.mark.parametrize("K, y, seed", _KERNEL)
def test_kernel_sgd_limit_is_interpolant(K, y, seed):
    """Kernel SGD in dual coordinates converges to alpha = K^{-1} y (kernel_interpolate's alpha)."""
    from kernelgen import kernel_interpolate

    ref = kernel_interpolate(K, y, kernel="precomputed").alpha
    tr = kernel_sgd(K, y, steps=1_000_000, key=seed, reference=ref)
    print(f"kappa(K) = {tr.condition_number:.3e}, final distance {tr.distance[-1]:.2e}")
    # the reference is accurate to ~kappa(K) eps <= 1e-12; the iteration reaches round-off
    assert tr.distance[-1] <= 1e-8 and tr.distance_rkhs[-1] <= 1e-8
    assert _rel(tr.alpha, np.linalg.solve(K, y)) <= 1e-8


@pytest.mark.parametrize(
    "run",
    [
        lambda X, y: sgd(X, y, steps=5000, key=0, form="primal"),
        lambda X, y: sgd(X, y, steps=2000, key=1, batch_size=7, replace=False, form="primal"),
        lambda X, y: sgd(X, y, steps=3000, key=2, step_size=lambda t: 0.02 / (1 + t / 500), form="primal"),
        lambda X, y: gd(X, y, steps=500, form="primal"),
        lambda X, y: kaczmarz(X, y, steps=5000, key=3, form="primal"),
    ],
    ids=["sgd-B1", "sgd-B7-noreplace", "sgd-scheduled", "gd", "kaczmarz"],
)
def test_iterates_stay_in_row_space(run):
    X, y = _conditioned(20, 60, 1e3, 4)
    tr = run(X, y)
    # each step adds a combination of rows; the projector is orthonormal to ~1e-16, so the
    # null-space component is round-off (~1e-15) and would be O(1) if a step left the span
    assert tr.out_of_span.max() <= 1e-12
    assert np.all(tr.out_of_span >= 0)


@pytest.mark.parametrize("B, replace", [(1, True), (7, True), (7, False)])
@pytest.mark.parametrize("targets", [None, 3])
def test_primal_and_dual_trajectories_coincide(B, replace, targets):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((12, 40))
    y = rng.standard_normal(12 if targets is None else (12, targets))
    w0 = rng.standard_normal((40,) if targets is None else (40, targets))
    idx = sample_indices(5, 12, 3000, B, replace=replace)
    tp = sgd(X, y, steps=3000, batch_size=B, indices=idx, w0=w0, form="primal")
    td = sgd(X, y, steps=3000, batch_size=B, indices=idx, w0=w0, form="dual")
    assert tp.form == "primal" and td.form == "dual" and td.alpha is not None
    # the same iteration in two evaluation orders: round-off level (1e-14 measured in FACTS.md)
    assert _rel(td.iterates, tp.iterates) <= 1e-12
    assert _rel(td.w, tp.w) <= 1e-12
    # losses agree until they reach round-off (~1e-16 of the starting loss)
    np.testing.assert_allclose(td.loss, tp.loss, rtol=1e-10, atol=1e-12 * tp.loss[0])
    assert np.array_equal(tp.steps, td.steps)


def test_auto_form_is_dual_when_n_below_d():
    X, y = _conditioned(20, 60, 10, 0)
    assert sgd(X, y, steps=10).form == "dual"
    assert sgd(X.T[:30], np.ones(30), steps=10).form == "primal"  # n = 30 > d = 20


@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("shape", [(20, 60), (40, 15)], ids=["n<d", "n>d-inconsistent"])
def test_gd_equals_closed_form(form, shape):
    n, d = shape
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    w0 = rng.standard_normal(d)
    tr = gd(X, y, steps=3000, w0=w0, form=form)
    # simulated vs closed form over 3000 steps: round-off accumulates ~ steps * eps ~ 1e-12
    assert tr.closed_form_gap.max() <= 1e-10
    cf = gd_closed_form(X, y, step_size=tr.step_size, steps=tr.steps, w0=w0)
    assert _rel(cf, tr.closed_form) <= 1e-14  # same formula, same data
    # the limit (inconsistent case: least-squares min-norm) from w0
    P = np.linalg.pinv(X)
    assert _rel(tr.w, P @ y + (np.eye(d) - P @ X) @ w0) <= 1e-8


def test_kernel_gd_equals_closed_form():
    K = _KERNEL[0].values[0]
    y = _KERNEL[0].values[1]
    tr = kernel_gd(K, y, steps=2000)
    assert tr.closed_form_gap.max() <= 1e-10  # round-off accumulation over 2000 steps
    # the gradient flow at the same t agrees to O(eta) per step; both tend to y
    assert np.abs(tr.gradient_flow[-1] - y).max() <= 1e-8 and np.abs(tr.predictions[-1] - y).max() <= 1e-8


@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("method", ["sgd", "gd", "kaczmarz"])
def test_limit_from_nonzero_start(form, method):
    X, y = _conditioned(20, 60, 100, 5)
    w0 = np.random.default_rng(5).standard_normal(60)
    fn = {"sgd": lambda: sgd(X, y, steps=200_000, key=1, w0=w0, form=form),
          "gd": lambda: gd(X, y, steps=20_000, w0=w0, form=form),
          "kaczmarz": lambda: kaczmarz(X, y, steps=200_000, key=1, w0=w0, form=form)}[method]
    tr = fn()
    P = np.linalg.pinv(X)
    want = P @ y + (np.eye(60) - P @ X) @ w0  # FACTS.md: X^+ y + (I - X^+ X) w0
    assert _rel(tr.w, want) <= 1e-8  # kappa = 1e2: the limit is accurate to ~1e-14
    assert _rel(tr.limit, want) <= 1e-12
    # the displacement w - w0 stays in the row space
    assert tr.out_of_span.max() <= 1e-12


def test_gradient_flow_predictions():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((10, 25))
    Theta, Y, F0 = X @ X.T, rng.standard_normal((10, 2)), rng.standard_normal((10, 2))
    steps = np.array([0, 2, 7, 40])
    eta = 0.3 * 10 / np.linalg.eigvalsh(Theta)[-1]
    flow = gradient_flow_predictions(Theta, Y, F0, step_size=eta, steps=steps)
    ref = np.stack([Y + scipy.linalg.expm(-eta * t * Theta / 10) @ (F0 - Y) for t in steps])
    assert _rel(flow, ref) <= 1e-12  # eigh vs Pade expm, both backward stable
    disc = gradient_flow_predictions(Theta, Y, F0, step_size=eta, steps=steps, discrete=True)
    refd = np.stack([Y + np.linalg.matrix_power(np.eye(10) - eta * Theta / 10, int(t)) @ (F0 - Y) for t in steps])
    assert _rel(disc, refd) <= 1e-12
    assert flow.shape == (4, 10, 2)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_kaczmarz_converges(form):
    X, y = _conditioned(20, 60, 1e3, 6)
    tr = kaczmarz(X, y, steps=400_000, key=6, form=form)
    assert tr.distance[-1] <= 1e-8  # Strohmer-Vershynin rate: (1 - 1/(kappa n))^t ~ 1e-9 well before 4e5
    assert tr.loss[-1] <= 1e-16 * tr.loss[0]  # interpolation reached (distance 1e-8 -> loss ~1e-16 relative)
    rng = np.random.default_rng(7)
    Z = rng.standard_normal((30, 5))
    K = kernel_matrix(Z, kernel="gaussian", bandwidth=1.0, dtype=np.float64)
    yk = rng.standard_normal(30)
    tk = kernel_kaczmarz(K, yk, steps=200_000, key=7)
    assert _rel(tk.alpha, np.linalg.solve(K, yk)) <= 1e-8  # kappa(K) ~ 30


def test_divergence_above_bound():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((20, 50)), rng.standard_normal(20)
    bound = stability_bound(X)
    with pytest.raises(UnstableStepSizeError, match="allow_unstable"):
        gd(X, y, steps=10, step_size=1.01 * bound)
    steps = np.arange(0, 401, 100)
    tr = gd(X, y, steps=400, step_size=1.01 * bound, allow_unstable=True, record_steps=steps)
    # the top eigen-component grows by |1 - eta lambda_max| = 1.02 per step: 1.02^100 ~ 7.2
    assert np.all(np.diff(tr.distance[1:]) > 0) and tr.distance[-1] > 1e2
    # closed form still describes the divergent run
    assert tr.closed_form_gap.max() <= 1e-10 * tr.distance[-1]
    # B = 1, orthogonal rows: row i's error is multiplied by 1 - eta ||x_i||^2 whenever drawn
    Q = np.linalg.qr(rng.standard_normal((40, 10)))[0].T * rng.uniform(1, 3, size=(10, 1))
    yq = rng.standard_normal(10)
    b1 = stability_bound(Q, batch_size=1)
    with pytest.raises(UnstableStepSizeError):
        sgd(Q, yq, steps=10, step_size=1.05 * b1)
    div = sgd(Q, yq, steps=5000, key=1, step_size=1.05 * b1, allow_unstable=True)
    ok = sgd(Q, yq, steps=5000, key=1, step_size=0.95 * b1)
    assert div.distance[-1] > 1e3 and ok.distance[-1] < 1e-8
    with pytest.raises(UnstableStepSizeError):
        kaczmarz(Q, yq, steps=10, relaxation=2.5)
    with pytest.raises(UnstableStepSizeError):
        kernel_sgd(Q @ Q.T, yq, steps=10, step_size=1.05 * b1)


def test_stability_bound_values():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((16, 30))
    n = 16
    beta = np.max(np.sum(X**2, axis=1))
    lam1 = np.linalg.norm(X, 2) ** 2 / n
    # eigh of the Gram matrix vs SVD: relative agreement ~1e-15
    assert stability_bound(X) == pytest.approx(2 / lam1, rel=1e-12)
    assert stability_bound(X, batch_size=1) == pytest.approx(2 / beta, rel=1e-14)
    assert stability_bound(X, batch_size=4) == pytest.approx(8 / (beta + 3 * lam1), rel=1e-12)
    assert stability_bound(X, batch_size=n, replace=False) == pytest.approx(2 / lam1, rel=1e-12)
    assert stability_bound(X, batch_size=1, replace=False) == pytest.approx(2 / beta, rel=1e-14)
    K = X @ X.T
    assert stability_bound(K, gram=True) == pytest.approx(2 / lam1, rel=1e-12)
    assert stability_bound(K, batch_size=1, gram=True) == pytest.approx(2 / beta, rel=1e-12)
    # the default step is half the bound (Ma et al. 2018's eta*(B))
    tr = sgd(X, rng.standard_normal(n), steps=10, batch_size=4)
    assert tr.step_size == pytest.approx(tr.stability_bound / 2, rel=1e-15)


def test_sample_indices():
    idx = sample_indices(0, 10, 20, 5, replace=False)
    assert idx.shape == (20, 5) and idx.dtype == np.int32
    epochs = idx.reshape(-1, 10)
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each epoch is a permutation
    a, b = sample_indices(1, 10, 50, 3), sample_indices(1, 10, 50, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, sample_indices(2, 10, 50, 3))
    import jax

    assert np.array_equal(sample_indices(jax.random.key(1), 10, 50, 3), a)
    p = np.ones(10)
    p[3] = 0.0
    w = sample_indices(0, 10, 2000, 1, probabilities=p)
    assert 3 not in w  # zero weight is never drawn
    with pytest.raises(InvalidInputError):
        sample_indices(0, 10, 5, 1, replace=False, probabilities=p)


def test_validation_and_no_mutation():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 20)), rng.standard_normal(8)
    Xc, yc = X.copy(), y.copy()
    sgd(X, y, steps=100, key=0)
    gd(X, y, steps=10)
    assert np.array_equal(X, Xc) and np.array_equal(y, yc)
    with pytest.raises(ShapeMismatchError):
        sgd(X, y[:5], steps=10)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(NonFiniteInputError):
        sgd(Xn, y, steps=10)
    with pytest.raises(ShapeMismatchError):
        sgd(X, y, steps=10, step_size=np.ones(3) * 1e-3)
    with pytest.raises(InvalidInputError):
        sgd(X, y, steps=10, step_size=-1.0)
    with pytest.raises(InvalidInputError):
        sgd(X, y, steps=10, indices=np.full((10, 1), 99))
    with pytest.raises(InvalidInputError):
        sgd(X, y, steps=10, record_steps=[20])
    with pytest.raises(ShapeMismatchError):
        sgd(X, y, steps=10, w0=np.zeros(3))
    with pytest.raises(InvalidInputError):
        kernel_sgd(X @ X.T + np.triu(np.ones((8, 8)), 1), y, steps=10)  # not symmetric


def test_metrics_off_same_iterates():
    X, y = _conditioned(20, 60, 10, 0)
    on = sgd(X, y, steps=2000, key=3, form="primal")
    off = sgd(X, y, steps=2000, key=3, form="primal", metrics=False)
    assert np.array_equal(on.iterates, off.iterates)  # same compiled iteration, same indices
    assert np.isnan(off.distance).all() and np.isnan(off.out_of_span).all() and off.rank == -1
    np.testing.assert_allclose(off.loss, on.loss, rtol=1e-12)
    assert off.stability_bound == pytest.approx(on.stability_bound, rel=1e-12)  # eigh vs SVD


def test_float32_input_runs_in_float64():
    X, y = _conditioned(20, 60, 10, 0)
    t32 = sgd(X.astype(np.float32), y.astype(np.float32), steps=20_000, key=0)
    assert t32.w.dtype == np.float64
    # float32 data, float64 iteration: converges to the min-norm solution of the rounded data
    X32 = X.astype(np.float32).astype(np.float64)
    assert _rel(t32.w, np.linalg.pinv(X32) @ y.astype(np.float32)) <= 1e-8


def test_script_smoke(tmp_path):
    out = tmp_path / "figs"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sgd_min_norm.py"), "--smoke", "--out-dir", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert metrics["max_distance_to_min_norm"] <= 1e-6  # smoke runs converge (small kappa)
    assert metrics["max_out_of_span"] <= 1e-12
    assert metrics["seconds"] > 0
    assert len(list(out.glob("*.png"))) >= 2
