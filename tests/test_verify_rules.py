"""Claims C17 (Zhang et al.'s construction), C18 (early stopping vs ridge vs width), C20 (effective dimensionality)
and the Nakkiran sample-wise sweep folded into C7: their building blocks against oracles, the smoke budget, and one
fault injection per claim that must turn its verdict into ``fail``.

Fault injections: C17 offsets that are not interleaved; C18 a gradient-flow path 10% off, and a label leak
(validation = test); C20 N_eff computed at z = 0, and N_eff shuffled against the widths; C7/Nakkiran a risk
formula 10% off.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg as sla

import kernelgen.verify as V
from kernelgen import evidence
from kernelgen.errors import InvalidInputError
from kernelgen.verify import _claims_rules as R
from kernelgen.verify import _claims_theory as T
from kernelgen.verify._core import Context

PNG = b"\x89PNG\r\n\x1a\n"

#: the Nakkiran sweep at smoke scale (the C7 registry entry may not hold it yet: the tests add it)
NAKKIRAN_SMOKE = {"d": 100, "sigma": 0.1, "n": [20, 50, 80, 150, 300], "n_seeds": 200}


def _run(tmp_path, ids, capsys):
    rc = V.main(["--budget", "smoke", "--only", ids, "--out", str(tmp_path), "-q"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return rc, {c["id"]: c for c in line["claims"]}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify_rules_smoke")
    rc = V.main(["--budget", "smoke", "--only", "C17,C18,C20", "--out", str(out), "-q"])
    return rc, out, {c["id"]: c for c in json.loads((out / "report.json").read_text())["claims"]}


# ---------------------------------------------------------------------------------------------- smoke
def test_smoke_of_c17_c18_c20_passes_with_figures(smoke):
    rc, out, rep = smoke
    assert rc == 0
    for cid in ("C17", "C18", "C20"):
        assert rep[cid]["verdict"] == "pass", (cid, rep[cid]["reason"])
        assert (out / rep[cid]["figure"]).read_bytes()[:8] == PNG
    # C17: the criterion restated (compensated residual <= 1e-10), and 2n + d weights at n = 200, d = 20
    d17 = rep["C17"]["details"]["residuals"][0]
    assert rep["C17"]["measured"] <= 1e-10 and d17["n_weights"] == 2 * 200 + 20
    # C18: every oracle of the path is at rounding level (ODE central difference ~1e-9, the rest ~1e-14)
    for lev in rep["C18"]["details"]["levels"]:
        assert lev["ode_gap"] <= 1e-5 and lev["ridge_oracle_gap"] <= 1e-5
        assert lev["es_minus_ridge"]["lo"] <= lev["es_minus_ridge"]["diff"] <= lev["es_minus_ridge"]["hi"]
    # C20: a Spearman correlation lies in [-1, 1]; the two N_eff routes agree
    assert -1 <= rep["C20"]["measured"] <= 1 and rep["C20"]["details"]["identity_gap"] <= 1e-9


# ---------------------------------------------------------------------------------------------- C17
def test_two_sum_and_two_prod_are_error_free():
    # oracle: exact rational arithmetic; the transformations must lose nothing (Knuth; Dekker)
    rng = np.random.default_rng(1)
    a = rng.standard_normal(200) * 10.0 ** rng.integers(-8, 8, 200)
    b = rng.standard_normal(200) * 10.0 ** rng.integers(-8, 8, 200)
    s, e = R._two_sum(a, b)
    p, f = R._two_prod(a, b)
    for i in range(a.size):
        assert Fraction(s[i]) + Fraction(e[i]) == Fraction(a[i]) + Fraction(b[i])
        assert Fraction(p[i]) + Fraction(f[i]) == Fraction(a[i]) * Fraction(b[i])


def test_construction_is_lemma_1_and_fits_exactly():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 5))
    y = rng.integers(0, 10, 60).astype(float)
    net = R.zhang_construction(X, y, seed=3, compensated=True)
    z, b, w = net["z"], net["b"], net["w"]
    # Lemma 1: b_1 < z_1 < b_2 < ... < b_n < z_n, so A = [max(z_i - b_j, 0)] is lower triangular, diagonal > 0
    assert np.all(b < z) and np.all(b[1:] > z[:-1])
    A = np.maximum(z[:, None] - b[None, :], 0.0)
    assert np.all(np.triu(A, 1) == 0) and np.all(np.diag(A) > 0)
    # exact rational evaluation of the stored weights is the oracle. The compensated solve makes row i exact up
    # to the rounding of w_i itself (S and T carry the stored w_j exactly), so |c_i - y_i| <= u |w_i| (z_i - b_i),
    # u = 2^-53; 2u per row and 4u |y|_max for the final conversions
    exact = [sum(Fraction(float(w[j])) * max(Fraction(float(z[i])) - Fraction(float(b[j])), Fraction(0))
                 for j in range(i + 1)) for i in range(z.size)]
    exact = np.array([float(v) for v in exact])
    u = 2.0**-53
    assert np.all(np.abs(exact - net["y"]) <= 2 * u * np.abs(w) * (z - b) + 4 * u * np.max(np.abs(net["y"])))
    c = R.network_outputs(z, b, w, compensated=True, block_rows=7)
    assert np.max(np.abs(c - exact)) <= 1e-13 * np.max(np.abs(exact))  # Dot2: ~eps |c| + eps^2 cond
    # the O(n) recurrence is forward substitution: it agrees with LAPACK's triangular solve on the dense A
    # (n = 60 with well-separated projections: kappa(A) ~ 1e4, so float64 solves agree to ~1e-10)
    w_plain = R.zhang_construction(X, y, seed=3)["w"]
    w_ref = sla.solve_triangular(A, net["y"], lower=True)
    assert np.linalg.norm(w_plain - w_ref) <= 1e-8 * np.linalg.norm(w_ref)
    # 2n + d weights: a (d), b (n), w (n)
    assert net["a"].size + b.size + w.size == 2 * 60 + 5


def test_duplicate_points_are_refused():
    X = np.ones((3, 4))
    with pytest.raises(InvalidInputError, match="distinct"):
        R.zhang_construction(X, np.arange(3.0), seed=0)


def test_offsets_not_interleaved_fail_c17(tmp_path, monkeypatch, capsys):
    real = R.interleaved_offsets

    def broken(z):  # the right offsets in the wrong order: A is no longer lower triangular
        return real(z)[::-1].copy()

    monkeypatch.setattr(R, "interleaved_offsets", broken)
    rc, claims = _run(tmp_path, "C17", capsys)
    assert rc == 1 and claims["C17"]["verdict"] == "fail"


# ---------------------------------------------------------------------------------------------- C18
def test_gradient_flow_filter_is_the_matrix_exponential_path():
    # oracle: alpha_t = K^{-1} (I - expm(-K t)) Y, the solution of d alpha/dt = Y - K alpha, alpha_0 = 0
    rng = np.random.default_rng(4)
    G = rng.standard_normal((30, 30))
    K = G @ G.T / 30 + 0.05 * np.eye(30)
    Y = rng.standard_normal((30, 2))
    lam, U = np.linalg.eigh(K)
    for t in (1e-3, 0.7, 25.0):
        path = U @ (R.gradient_flow_filter(lam, t)[:, None] * (U.T @ Y))
        ref = np.linalg.solve(K, (np.eye(30) - sla.expm(-K * t)) @ Y)
        # expm (Pade, scaling-squaring) is accurate to ~1e-13 relative at ||K t|| <= 1e2; 1e-9 covers the solve
        assert np.linalg.norm(path - ref) <= 1e-9 * np.linalg.norm(ref)
    # limits: t -> 0 gives t (one Euler step), t -> infinity gives 1/lambda (the interpolant); lambda = 0 gives t
    assert R.gradient_flow_filter(np.array([2.0, 0.0]), 1e-12) == pytest.approx([1e-12, 1e-12], rel=1e-10)
    assert R.gradient_flow_filter(np.array([2.0]), 1e3)[0] == pytest.approx(0.5, rel=1e-15)


def test_mcnemar_interval_closed_form():
    # a wrong on 30 points b is right on, b wrong on 10 points a is right on, m = 1000:
    # d = 0.02, se = sqrt(40 - 400/1000)/1000
    wa = np.zeros(1000, bool)
    wb = np.zeros(1000, bool)
    wa[:30] = True
    wb[30:40] = True
    wa[40:100] = wb[40:100] = True  # shared errors do not enter a paired comparison
    r = R.mcnemar_interval(wa, wb)
    se = np.sqrt(40 - 400 / 1000) / 1000
    assert (r["b"], r["c"], r["m"]) == (30, 10, 1000)
    assert r["diff"] == pytest.approx(0.02) and r["hi"] - r["diff"] == pytest.approx(1.959963984540054 * se)
    # antisymmetric in its arguments
    s = R.mcnemar_interval(wb, wa)
    assert s["diff"] == -r["diff"] and s["lo"] == pytest.approx(-r["hi"])


def test_gradient_flow_path_off_by_ten_percent_fails_c18(tmp_path, monkeypatch, capsys):
    real = R.gradient_flow_filter
    monkeypatch.setattr(R, "gradient_flow_filter", lambda lam, t: 1.1 * real(lam, t))
    rc, claims = _run(tmp_path, "C18", capsys)
    assert rc == 1 and claims["C18"]["verdict"] == "fail"


def test_label_leak_fails_c18(tmp_path, monkeypatch, capsys):
    real = R._c18_split

    def leaky(ctx, P):  # the validation split is the test set: choices judged on what they were chosen on
        Xf, yf, _, _, Xt, yt = real(ctx, P)
        return Xf, yf, Xt[: P["n_val"]], yt[: P["n_val"]], Xt, yt

    monkeypatch.setattr(R, "_c18_split", leaky)
    rc, claims = _run(tmp_path, "C18", capsys)
    assert rc == 1 and claims["C18"]["verdict"] == "fail"


# ---------------------------------------------------------------------------------------------- C20
def test_effective_dimension_trace_identity():
    # N_eff(H, z) = p - z tr((H + z I)^{-1}): sum lambda/(lambda + z) = sum (1 - z/(lambda + z))
    rng = np.random.default_rng(5)
    Phi = rng.standard_normal((40, 25))
    H = Phi.T @ Phi
    for z in (1e-3, 1.0, 30.0):
        direct = 25 - z * np.trace(np.linalg.inv(H + z * np.eye(25)))
        # both are float64 evaluations of a well-conditioned sum (kappa(H + zI) <= 1e5): 1e-9 relative
        assert evidence.effective_dimension(H, z) == pytest.approx(direct, rel=1e-9)
        assert R._neff_by_trace(Phi, z) == pytest.approx(direct, rel=1e-9)
    # the Gram route of C20 (nonzero eigenvalues of Phi Phi^T) equals the Hessian route, also when N > n
    wide = rng.standard_normal((15, 50))
    assert R._effective_dims([wide], 1.0)[0] == pytest.approx(R._neff_by_trace(wide, 1.0), rel=1e-9)


def test_mackay_fixed_point_alpha_norm_equals_effective_dimension():
    # PRML eq. 3.92 at the evidence optimum: alpha ||m_N||^2 = gamma = N_eff(beta Phi^T Phi, alpha)
    rng = np.random.default_rng(6)
    Phi = rng.standard_normal((80, 12))
    t = Phi @ rng.standard_normal(12) + 0.5 * rng.standard_normal(80)
    res = evidence.mackay_evidence(Phi, t)
    neff = evidence.effective_dimension(res.beta * Phi.T @ Phi, res.alpha)
    # converged to tol 1e-12 in log alpha: the fixed-point equation holds to ~1e-10 relative
    assert res.alpha * float(res.mean @ res.mean) == pytest.approx(neff, rel=1e-9)
    # and it is the evidence optimum in alpha: a central difference of eq. 3.86 vanishes there (the slope
    # scale is N_eff / alpha; 1e-5 of it allows the O(h^2) difference error at h = 1e-4)
    h = 1e-4 * res.alpha
    up = evidence.blr_log_evidence(Phi, t, alpha=res.alpha + h, beta=res.beta).log_evidence
    dn = evidence.blr_log_evidence(Phi, t, alpha=res.alpha - h, beta=res.beta).log_evidence
    assert abs((up - dn) / (2 * h)) <= 1e-5 * neff / res.alpha


@pytest.mark.filterwarnings("ignore:An input array is constant")  # the rank is constant in N: the point
def test_n_eff_at_z_zero_fails_c20(tmp_path, monkeypatch, capsys):
    def rank_only(Phis, z):  # z -> 0: N_eff is the rank (= n for every width >= n)
        return [float(np.linalg.matrix_rank(P @ P.T)) for P in Phis]

    monkeypatch.setattr(R, "_effective_dims", rank_only)
    rc, claims = _run(tmp_path, "C20", capsys)
    assert rc == 1 and claims["C20"]["verdict"] == "fail"


def test_n_eff_shuffled_against_widths_fails_c20(tmp_path, monkeypatch, capsys):
    real = R._effective_dims
    monkeypatch.setattr(R, "_effective_dims", lambda Phis, z: real(Phis, z)[::-1])
    rc, claims = _run(tmp_path, "C20", capsys)
    assert rc == 1 and claims["C20"]["verdict"] == "fail"


# ---------------------------------------------------------------------------------------------- C7 / Nakkiran
def test_nakkiran_risk_is_the_papers_formula():
    d, s2 = 1000, 0.01
    for n in (1, 100, 500, 900, 998):
        assert T.nakkiran_risk(n, d, sigma=0.1) == pytest.approx((1 - n / d) + s2 * n / (d - n - 1), rel=1e-14)
    for n in (1002, 1100, 5000):
        assert T.nakkiran_risk(n, d, sigma=0.1) == pytest.approx(s2 * d / (n - d - 1), rel=1e-14)
    assert np.isinf(T.nakkiran_risk(999, d, sigma=0.1)) and np.isinf(T.nakkiran_risk(1001, d, sigma=0.1))
    # below d the risk falls until n* = d - 1 - sigma sqrt(d (d - 1)) (~899) and rises after it: more data hurts
    # on (n*, d). So risk(0.9 d) is near the minimum and below risk(0.5 d) at sigma = 0.1 (0.19 vs 0.51)
    n = np.arange(1, 998)
    r = T.nakkiran_risk(n, d, sigma=0.1)
    assert abs(int(n[np.argmin(r)]) - (d - 1 - 0.1 * np.sqrt(d * (d - 1)))) <= 1
    assert T.nakkiran_risk(950, d, sigma=0.1) > T.nakkiran_risk(900, d, sigma=0.1)
    assert T.nakkiran_risk(900, d, sigma=0.1) < T.nakkiran_risk(500, d, sigma=0.1)


def _c7_ctx(tmp_path, nk):
    return Context("smoke", {**V.get("C7").scales["smoke"].params, "nakkiran": nk}, Path(tmp_path))


def test_c7_with_the_nakkiran_sweep_passes_and_a_formula_ten_percent_off_fails(tmp_path, monkeypatch):
    res = T.run_c7(_c7_ctx(tmp_path, NAKKIRAN_SMOKE))
    assert res.verdict == "pass", res.reason
    nk = [r for r in res.details["comparisons"] if r["model"].startswith("Nakkiran")]
    assert [r["n"] for r in nk] == NAKKIRAN_SMOKE["n"] and all(abs(r["z"]) <= T.Z_MAX for r in nk)
    real = T.nakkiran_risk
    monkeypatch.setattr(T, "nakkiran_risk", lambda n, d, *, sigma: 1.1 * real(n, d, sigma=sigma))
    assert T.run_c7(_c7_ctx(tmp_path, NAKKIRAN_SMOKE)).verdict == "fail"


def test_more_data_hurts_check_can_fail(tmp_path):
    # the pair the issue names, (0.5 d, 0.9 d) at d = 100: the exact risk falls there, so the check must fail
    # (run_c7 requires hurts_ok)
    bad = T._nakkiran(_c7_ctx(tmp_path, None), {**NAKKIRAN_SMOKE, "n": [50, 90], "hurts": [[50, 90]]}, range(50))
    pair = bad["pairs"][0]
    assert not bad["hurts_ok"] and not pair["ok"] and pair["exact_hi"] < pair["exact_lo"]
