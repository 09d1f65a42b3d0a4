"""Claims C12, C14, C16 (kernelgen.verify._claims_relu): their helpers against closed forms, their smoke runs,
and the fault injections that must turn each claim into ``fail``.

The claims run at the smoke budget's own scale (tiny MNIST subsets), one shared data cache for the module.
Each fault injection breaks one computation the way a real bug would: C12 a wrong sigma_w^2, a wrong depth or
the readout bias dropped; C14 the target aligned with the wrong (shuffled) eigenvectors; C16 a label
randomisation that does nothing, or a loss prediction with the wrong exponent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernelgen.errors import ConvergenceError, DataUnavailableError, InvalidInputError, NonFiniteResultError
from kernelgen.kernels import Linear, ReluNNGP, kernel_matrix
from kernelgen.verify import _claims_relu as R
from kernelgen.verify import _floor_rule as FR
from kernelgen.verify._core import Context, run_claim

CLAIMS = {c.id: c for c in R.CLAIMS}


class _NoReadoutBias(ReluNNGP):
    """The NNGP without sigma_b^2 at the readout (Sigma^(L) - sigma_b^2): the bug C12's kernel check must catch."""

    name = "test_relu_nngp_no_readout_bias"

    def from_gram(self, G, sq_rows, sq_cols, diag_offset, n_features):
        K = super().from_gram(G, sq_rows, sq_cols, diag_offset, n_features)
        K -= K.dtype.type(self.bias_variance)
        return K

    def diag(self, X):
        return super().diag(X) - self.bias_variance


@pytest.fixture(scope="module")
def cache():
    """One data cache for every claim run of this module (MNIST is loaded once)."""
    c = {}
    try:
        R._pool(Context("smoke", {}, None, cache=c))
    except DataUnavailableError as exc:
        pytest.skip(f"MNIST unavailable: {exc}")
    return c


def _run(cid, tmp_path, cache):
    claim = CLAIMS[cid]
    ctx = Context("smoke", claim.scales["smoke"].params, tmp_path, cache=cache, quiet=True)
    return run_claim(claim, ctx)


# ---------------------------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("setting", sorted(R.C12_TABLE.items()))
def test_relu_nngp_is_lee_et_al_eqs_4_5_with_the_readout_bias(setting):
    _, (depth, sw2, sb2, _) = setting
    rng = np.random.default_rng(0)
    A, B = R.lee_preprocess(rng.normal(size=(7, 30))), R.lee_preprocess(rng.normal(size=(5, 30)))
    ref = R.lee_nngp(A, B, depth, sw2, sb2)
    K = kernel_matrix(A, B, kernel=ReluNNGP(depth=depth, weight_variance=sw2, bias_variance=sb2))
    # two float64 evaluations of a recursion that is smooth in cos(theta): rounding only (~1e-15 per layer)
    np.testing.assert_allclose(K, ref, rtol=1e-12, atol=0)
    # the readout adds sigma_b^2: without it every entry is lower by exactly sigma_b^2 (rounding of O(1) entries)
    np.testing.assert_allclose(kernel_matrix(A, B, kernel=_NoReadoutBias(depth, sw2, sb2)), ref - sb2, atol=1e-13)


def test_lee_preprocess_gives_equal_norms_and_centred_images():
    X = R.lee_preprocess(np.random.default_rng(1).integers(0, 256, size=(6, 784)))
    # per-row centring and unit variance: |x|^2 = d and mean 0, to float64 rounding of 784-term sums
    np.testing.assert_allclose((X * X).sum(1), 784.0, rtol=1e-13)
    np.testing.assert_allclose(X.mean(1), 0.0, atol=1e-13)


def test_balanced_subsets_are_balanced_and_distinct():
    y = np.random.default_rng(2).integers(0, 10, 5000)
    idx = R._balanced(y, 300, 5, 4000)
    assert idx.size == np.unique(idx).size == 300 and idx.max() < 4000  # exact counts, no repeats
    assert np.all(np.bincount(y[idx], minlength=10) == 30)
    assert np.array_equal(R._balanced(y, 4000, 5, 4000), np.arange(4000))  # the whole split, as Lee et al.'s code


def test_c12_interval_closed_form():
    mean, half, sd = R._c12_interval([0.9], 10000)
    # one run: the binomial half-width 1.96 sqrt(p (1 - p) / m) alone
    assert mean == 0.9 and sd == 0.0 and half == pytest.approx(1.959963984540054 * math.sqrt(0.09 / 10000), rel=1e-15)
    mean, half, sd = R._c12_interval([0.90, 0.92], 10000)
    seed = 12.706204736174698 * 0.01414213562373095 * math.sqrt(1.5)  # t_{0.975, 1} s sqrt(1 + 1/S)
    assert half == pytest.approx(math.hypot(seed, 1.959963984540054 * math.sqrt(0.91 * 0.09 / 1e4)), rel=1e-12)


# ---------------------------------------------------------------------------------------------- C12's residual rule
_U = np.finfo(np.float64).eps / 2


def _gp_problem(n=200, depth=7, sw2=0.61, sb2=0.07, seed=4):
    rng = np.random.default_rng(seed)
    X = R.lee_preprocess(rng.normal(size=(n, 40)))
    Y = np.eye(10)[rng.integers(0, 10, n)] - 0.1
    return X, Y, ReluNNGP(depth=depth, weight_variance=sw2, bias_variance=sb2), (depth, sw2, sb2)


def test_certified_solve_reports_omega_against_an_independent_dense_product():
    X, Y, kern, setting = _gp_problem()
    fit, rec = R.certified_nngp_solve(X, Y, kern, "auto")
    alpha = np.asarray(fit.alpha)
    K = R.lee_nngp(X, X, *setting)  # the independent transcription of eqs. 4-5, dense
    assert K.min() >= 0  # |K| = K for the ReLU NNGP
    abs_norm = np.linalg.norm(K @ np.abs(alpha))
    # || |K| |alpha| || by blocks of kernel_matrix vs dense lee_nngp: entries agree to ~1e-15 (rounding only)
    assert rec["omega"] == pytest.approx(rec["relative_residual"] * np.linalg.norm(Y) / abs_norm, rel=1e-10, abs=0)
    assert rec["rounding_scale"] == pytest.approx(_U * abs_norm / np.linalg.norm(Y), rel=1e-10, abs=0)
    assert rec["omega_allowed"] == 8 * math.sqrt(200) * _U  # the same formula: exactly equal
    assert rec["accepted_residual"] == pytest.approx(rec["omega_allowed"] * abs_norm / np.linalg.norm(Y),
                                                     rel=1e-10, abs=0)
    # the residual by the dense product: the same quantity by another path (float64, n = 200: <= 1e-12 apart)
    assert np.linalg.norm(Y - K @ alpha) / np.linalg.norm(Y) <= max(rec["relative_residual"], 1e-13) + 1e-12
    assert rec["pass"] and not rec["retried"] and rec["tol"] == 1e-10 and rec["stall_residual"] is None
    # several blocks (block = 64 does not divide 200) give the dense norm: every block counts once
    assert FR._abs_product_norm(X, kern, alpha, block=64) == pytest.approx(abs_norm, rel=1e-12, abs=0)


class _Fit:
    """The two fields the rule reads from a fit: a stand-in for a solver's answer."""

    def __init__(self, alpha, residual):
        self.alpha, self.relative_residual = alpha, residual


def _stall(residuals):
    history = [{"step": i, "kind": "verified", "relative_residual": r, "seconds": 0.0}
               for i, r in enumerate(residuals)]
    history.insert(1, {"step": 1, "kind": "cg (recursive residual)", "relative_residual": 1e-17, "seconds": 0.0})
    return ConvergenceError("float64 refinement did not reach relative residual 1.0e-10 (the residual stopped "
                            "decreasing); ...", history=history)


def _patch(monkeypatch, fn):
    monkeypatch.setattr(FR, "kernel_interpolate", fn)


def test_a_stall_is_solved_again_at_twice_its_floor_with_a_float64_factor(monkeypatch):
    X, Y, kern, _ = _gp_problem()
    real = FR.kernel_interpolate
    calls = []

    def stalls_once(X_, Y_, *, kernel, solver, options):
        calls.append(options)
        if len(calls) == 1:
            raise _stall([3e-9, 2e-9, 2.5e-9, 2.2e-9])
        return real(X_, Y_, kernel=kernel, solver=solver, options=options)

    _patch(monkeypatch, stalls_once)
    fit, rec = R.certified_nngp_solve(X, Y, kern, "auto")
    assert len(calls) == 2 and calls[1].tol == pytest.approx(4e-9, rel=1e-15) and calls[1].dtype == "float64"
    assert rec["retried"] and rec["tol"] == calls[1].tol and rec["stall_residual"] == 2e-9 and rec["pass"]


@pytest.fixture(scope="module")
def gp_alpha():
    X, Y, kern, _ = _gp_problem()
    return np.asarray(R.kernel_interpolate(X, Y, kernel=kern).alpha)


@pytest.mark.parametrize("residual, scale, passes", [
    (1e-10, 1.0, True),     # the project's tolerance passes whatever omega (here ~1e-16)
    (1e-11, 1e-7, True),    # ... even where alpha is tiny and omega huge (the first branch alone)
    (2e-10, 1.0, False),    # above 1e-10 without a float64 stall: no evidence of a floor, fails
    (3e-6, 1.0, False),     # a non-converged alpha
])
def test_the_rule_without_a_stall(residual, scale, passes, gp_alpha, monkeypatch):
    X, Y, kern, _ = _gp_problem()
    _patch(monkeypatch, lambda *a, **k: _Fit(gp_alpha * scale, residual))
    _, rec = R.certified_nngp_solve(X, Y, kern, "auto")
    assert rec["pass"] is passes, rec


@pytest.mark.parametrize("stalled_at, returned, passes", [
    (2e-9, 3e-9, True),     # after a stall at 2e-9, 3e-9 <= tol 4e-9: omega 6.1e-15 <= 8 sqrt(200) u = 1.3e-14
    (1e-6, 1.5e-6, False),  # a stall far above the rounding: omega 3.1e-12 > 1.3e-14 (measured)
    (2e-9, 5e-9, False),    # above the retry's tol (a solver that returned without reaching it)
])
def test_the_rule_after_a_stall(stalled_at, returned, passes, gp_alpha, monkeypatch):
    X, Y, kern, _ = _gp_problem()
    calls = []

    def stall_then(*a, options, **k):
        calls.append(options)
        if len(calls) == 1:
            raise _stall([2 * stalled_at, stalled_at, 1.1 * stalled_at, 1.2 * stalled_at])
        return _Fit(gp_alpha, returned)

    _patch(monkeypatch, stall_then)
    _, rec = R.certified_nngp_solve(X, Y, kern, "auto")
    assert rec["retried"] and rec["pass"] is passes and len(calls) == 2, rec


def test_other_convergence_failures_propagate_without_a_retry(monkeypatch):
    X, Y, kern, _ = _gp_problem()
    calls = []

    def max_iter(*a, **k):
        calls.append(k)
        raise ConvergenceError("float64 refinement did not reach relative residual 1.0e-10 (reached max_iter)",
                               history=[{"step": 0, "kind": "initial", "relative_residual": 1e-3, "seconds": 0}])

    _patch(monkeypatch, max_iter)
    with pytest.raises(ConvergenceError, match="max_iter"):
        R.certified_nngp_solve(X, Y, kern, "auto")
    assert len(calls) == 1


def test_the_rule_refuses_non_finite_and_negative_inputs(gp_alpha, monkeypatch):
    X, Y, kern, _ = _gp_problem()
    bad = gp_alpha.copy()
    bad[3, 2] = np.inf
    _patch(monkeypatch, lambda *a, **k: _Fit(bad, 1e-3))
    with pytest.raises(NonFiniteResultError):
        R.certified_nngp_solve(X, Y, kern, "auto")
    _patch(monkeypatch, lambda *a, **k: _Fit(gp_alpha, float("nan")))
    with pytest.raises(NonFiniteResultError):
        R.certified_nngp_solve(X, Y, kern, "auto")
    _patch(monkeypatch, lambda *a, **k: _Fit(gp_alpha, 1e-3))
    with pytest.raises(InvalidInputError, match=">= 0"):  # a kernel with negative entries: |K| != K
        R.certified_nngp_solve(X, Y, Linear(), "auto")
    with pytest.raises(NonFiniteResultError):  # Y = 0: no scale to judge against
        R.certified_nngp_solve(X, np.zeros_like(Y), kern, "auto")


def test_h_infinity_closed_form():
    c = math.cos(math.pi / 3)
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [c, math.sin(math.pi / 3)]])
    H = R.h_infinity(X)
    # x.z (pi - theta) / (2 pi): self 1/2, orthogonal 0, antipodal (-1)(0) = 0, 60 degrees (1/2)(2/3)/2 = 1/6
    np.testing.assert_allclose(np.diag(H), 0.5, rtol=0, atol=0)
    np.testing.assert_allclose([H[0, 1], H[0, 2], H[0, 3]], [0.0, 0.0, 1 / 6], atol=1e-15)
    np.testing.assert_array_equal(H, H.T)


def test_gd_loss_prediction_closed_form():
    out = R.gd_loss_prediction([2.0, 0.5], [3.0, -1.0], 0.1, 3)
    k = np.arange(4)
    # sum_i (1 - eta lambda_i)^(2k) (v_i^T y)^2, term by term; repeated products round at ~1e-16
    np.testing.assert_allclose(out, 9 * 0.8 ** (2 * k) + 0.95 ** (2 * k), rtol=1e-14)


def test_wide_network_follows_the_prediction_early():
    X = np.random.default_rng(3).normal(size=(8, 50))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.array([1.0, -1, 1, 1, -1, -1, 1, -1])
    lam, V = np.linalg.eigh(R.h_infinity(X))
    pred = R.gd_loss_prediction(lam, V.T @ y, 1e-2, 40)
    loss = R.train_two_layer(X, y, width=1 << 14, steps=40, eta=1e-2, kappa=1e-2, seed=0)
    # m = 16,384: the Gram at init deviates from H by ~ m^-1/2 = 0.8%, the output at init is O(kappa); a wrong
    # gradient (sign, missing 1/sqrt(m) or indicator) changes the loss by O(1) within a few steps
    np.testing.assert_allclose(loss, pred, rtol=0.05)
    assert loss[-1] < 0.9 * loss[0]


# ---------------------------------------------------------------------------------------------- smoke runs
@pytest.mark.parametrize("cid", ["C12", "C14", "C16"])
def test_smoke_passes_with_a_figure(cid, tmp_path, cache):
    res = _run(cid, tmp_path, cache)
    assert res.verdict == "pass", res.reason
    assert res.figure is not None and res.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- fault injections
@pytest.mark.parametrize("broken", [
    lambda d, w, b: ReluNNGP(depth=d, weight_variance=1.1 * w, bias_variance=b),  # sigma_w^2 10% off
    lambda d, w, b: ReluNNGP(depth=max(1, d - 1), weight_variance=w, bias_variance=b),  # one layer short
    lambda d, w, b: _NoReadoutBias(depth=d, weight_variance=w, bias_variance=b),  # readout bias dropped
], ids=["sigma_w", "depth", "readout_bias"])
def test_wrong_nngp_fails_c12(broken, tmp_path, cache, monkeypatch):
    monkeypatch.setattr(R, "_nngp", broken)
    res = _run("C12", tmp_path, cache)
    assert res.verdict == "fail", res.reason


def test_shuffled_eigenbasis_fails_c14(tmp_path, cache, monkeypatch):
    real = R.target_alignment

    def shuffled(V, y):
        perm = np.random.default_rng(0).permutation(V.shape[1])
        return real(np.asarray(V)[:, perm], y)

    monkeypatch.setattr(R, "target_alignment", shuffled)
    res = _run("C14", tmp_path, cache)
    assert res.verdict == "fail", res.reason


def test_randomisation_that_does_nothing_fails_c16(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(R, "corrupt_labels", lambda y, p, k, seed: np.asarray(y).copy())
    res = _run("C16", tmp_path, cache)
    assert res.verdict == "fail" and "strictly increasing: NO" in res.reason, res.reason


def test_loss_prediction_with_the_wrong_exponent_fails_c16(tmp_path, cache, monkeypatch):
    # (1 - eta lambda)^k instead of ^(2k): the predicted loss decays half as fast
    monkeypatch.setattr(R, "gd_loss_prediction",
                        lambda lam, proj, eta, steps: np.array([np.sum((1 - eta * np.asarray(lam)) ** k
                                                                       * np.asarray(proj) ** 2)
                                                                for k in range(steps + 1)]))
    res = _run("C16", tmp_path, cache)
    assert res.verdict == "fail", res.reason


@pytest.mark.slow  # ~1-6 min: an out-of-core factor at n = 2,000 (the default run covers restated itself)
def test_an_out_of_core_stall_keeps_its_history_and_is_retried(cache, monkeypatch):
    # MNIST GP-7 at n = 2,000, forced onto the out-of-core float32 route (as a 50k solve may be): its float64
    # refinement stalls above 1e-10, and the orchestrator re-raises with context. The history must survive, so
    # that C12 can redo the solve at the stall's residual (it once arrived empty and C12 died).
    Xtr, ytr, _, _ = R._pool(Context("smoke", {}, None, cache=cache))
    yp = np.asarray(ytr[:50000], dtype=np.int64)
    idx = R._balanced(yp, 2000, 0, 50000)
    X, Y = R.lee_preprocess(Xtr[:50000])[idx], np.eye(10)[yp[idx]] - 0.1
    kern = ReluNNGP(depth=7, weight_variance=0.61, bias_variance=0.07)
    real_opts = FR.SolveOptions
    with pytest.raises(ConvergenceError, match="stopped decreasing") as e:
        FR.kernel_interpolate(X, Y, kernel=kern, options=real_opts(storage="disk", float64_max_n=1))
    assert "out of core" in str(e.value) and any(h["kind"] == "verified" for h in e.value.history)
    seen = []

    def disk_first(**kw):  # the first solve out of core, as the planner chooses at 50k; the retry as C12 asks
        seen.append(kw)
        return real_opts(storage="disk", float64_max_n=1, **kw) if len(seen) == 1 else real_opts(**kw)

    monkeypatch.setattr(FR, "SolveOptions", disk_first)
    _, rec = R.certified_nngp_solve(X, Y, kern, "auto")
    assert len(seen) == 2 and rec["retried"] and rec["pass"], rec
