"""``python -m kernelgen.verify``: the smoke budget passes, broken computations fail, report schema.

The smoke budget runs every claim's real computation at a tiny scale (seconds); these tests run it
once (module fixture) and check the report it writes. Each fault-injection test breaks one
computation the way a real bug would -- SGD not started from zero (C1, C2), the wrong kernel
bandwidth (C3), a Gabor transform that does nothing (C4), label corruption that does nothing (C5),
a rank cut-off instead of the exact Phi^+ Y (C6), a theory formula 10% off or NaN in a simulation
(C7), a sign error in the evidence (C8, C9), a derivation that raises (C10) -- and requires the
claim's verdict to be ``fail`` and the exit status 1.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import kernelgen.verify as V
from kernelgen import theory
from kernelgen.errors import InvalidInputError
from kernelgen.verify import _claims_data, _claims_theory

PNG = b"\x89PNG\r\n\x1a\n"


def _last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify_smoke")
    rc = V.main(["--budget", "smoke", "--out", str(out), "-q"])
    return rc, out


# ---------------------------------------------------------------------------------------------- smoke
def test_smoke_budget_passes_and_writes_the_report(smoke):
    rc, out = smoke
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["budget"] == "smoke"
    prov = rep["provenance"]
    for key in ("kernelgen", "numpy", "scipy", "blas", "cpu", "git_commit", "seeds", "date"):
        assert key in prov, key
    assert [c["id"] for c in rep["claims"]] == list(V.REGISTRY)
    for c in rep["claims"]:
        for key in ("id", "verdict", "measured", "source_value", "seconds", "statement", "source", "criterion",
                    "justification", "scale", "reason", "figure"):
            assert key in c, (c["id"], key)
        if c["verdict"] == "not reproduced":  # allowed only where the claim's data set could not be loaded
            assert "data unavailable" in c["reason"], (c["id"], c["reason"])
            continue
        assert c["verdict"] == "pass", (c["id"], c["reason"])
        assert math.isfinite(c["measured"]) and c["seconds"] > 0
        assert (out / c["figure"]).read_bytes()[:8] == PNG
    md = (out / "REPORT.md").read_text()
    assert md.index("## Provenance") < md.index("## Claims at a glance") < md.index("## C1")
    assert "| id | claim | checked at this budget | source value | measured | verdict | seconds |" in md
    assert rep["status"] == "complete" and rep["interrupted"] is None
    for cid in V.REGISTRY:
        assert f"python -m kernelgen.verify --budget smoke --only {cid}`" in md


def test_smoke_measures_what_it_claims(smoke):
    _, out = smoke
    rep = {c["id"]: c for c in json.loads((out / "report.json").read_text())["claims"]}
    # C1/C2: the criteria themselves (1e-8 distance, 1e-10 span), restated independently of the runner
    assert rep["C1"]["measured"] <= 1e-8 and rep["C2"]["measured"] <= 1e-10
    # C9: a Spearman correlation lies in [-1, 1] and must carry the claimed sign
    assert -1 <= rep["C9"]["measured"] <= -0.8
    # C6: the interval is the range over seeds and contains the mean
    lo, hi = rep["C6"]["interval"]
    assert lo <= rep["C6"]["measured"] <= hi


# ---------------------------------------------------------------------------------------------- faults
def _run_only(tmp_path, ids, capsys):
    rc = V.main(["--budget", "smoke", "--only", ids, "--out", str(tmp_path), "-q"])
    line = _last_json(capsys)
    return rc, {c["id"]: c for c in line["claims"]}


def test_sgd_not_from_zero_fails_c1(tmp_path, monkeypatch, capsys):
    real = _claims_data.sgd.sgd

    def broken(X, y, **kw):  # a start off zero: the limit is no longer the minimum-norm solution
        kw.setdefault("w0", np.full((X.shape[1],) + np.shape(y)[1:], 0.01))
        return real(X, y, **kw)

    monkeypatch.setattr(_claims_data.sgd, "sgd", broken)
    rc, claims = _run_only(tmp_path, "C1", capsys)
    assert rc == 1 and claims["C1"]["verdict"] == "fail"


def test_wrong_kernel_fails_c3(tmp_path, monkeypatch, capsys):
    real = _claims_data.kernel_interpolate

    def broken(X, Y, *, kernel, **kw):  # bandwidth 4 instead of 5: a different system from the oracle's
        return real(X, Y, kernel=_claims_data.Gaussian(4.0), **kw)

    monkeypatch.setattr(_claims_data, "kernel_interpolate", broken)
    rc, claims = _run_only(tmp_path, "C3", capsys)
    if claims["C3"]["verdict"] == "not reproduced":
        pytest.skip("MNIST unavailable")
    assert rc == 1 and claims["C3"]["verdict"] == "fail"


def test_wrong_theory_fails_c7(tmp_path, monkeypatch, capsys):
    real = theory.hmrt_ridgeless_risk_finite
    monkeypatch.setattr(theory, "hmrt_ridgeless_risk_finite", lambda *a, **k: 1.1 * real(*a, **k))
    rc, claims = _run_only(tmp_path, "C7", capsys)
    assert rc == 1 and claims["C7"]["verdict"] == "fail"


def test_nan_is_a_failure_not_a_result(tmp_path, monkeypatch, capsys):
    real = theory.simulate_hmrt

    def nan_sim(*a, **k):
        r = real(*a, **k)
        return type(r)(r.risks, float("nan"), r.std, r.ranks)

    monkeypatch.setattr(theory, "simulate_hmrt", nan_sim)
    rc, claims = _run_only(tmp_path, "C7", capsys)
    assert rc == 1 and claims["C7"]["verdict"] == "fail" and claims["C7"]["measured"] is None


def test_evidence_sign_error_fails_c8_and_c9(tmp_path, monkeypatch, capsys):
    real = _claims_theory.evidence.gp_type2_ml

    def broken(fac, Y):  # a sign error in the log evidence
        r = real(fac, Y)
        return dataclasses.replace(r, log_evidence=-r.log_evidence)

    monkeypatch.setattr(_claims_theory.evidence, "gp_type2_ml", broken)
    rc, claims = _run_only(tmp_path, "C8,C9", capsys)
    assert rc == 1 and claims["C8"]["verdict"] == "fail" and claims["C9"]["verdict"] == "fail"


def test_failing_derivation_fails_c10(tmp_path, monkeypatch, capsys):
    real = _claims_theory.proofs.discover

    def with_broken(names=None):
        def bad():
            raise AssertionError("step 3 does not simplify to 0")
        return real(names) + [("broken", "check_bad", bad)]

    monkeypatch.setattr(_claims_theory.proofs, "discover", with_broken)
    rc, claims = _run_only(tmp_path, "C10", capsys)
    assert rc == 1 and claims["C10"]["verdict"] == "fail"
    rep = json.loads((tmp_path / "report.json").read_text())["claims"][0]
    assert [c["check"] for c in rep["details"]["checks"] if not c["pass"]] == ["broken::check_bad"]


# ---------------------------------------------------------------------------------------------- options
def test_only_runs_the_named_claims(tmp_path, capsys):
    rc = V.main(["--budget", "smoke", "--only", "c7, C10", "--out", str(tmp_path), "-q"])
    assert rc == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert [c["id"] for c in rep["claims"]] == ["C7", "C10"]
    assert _last_json(capsys)["counts"]["pass"] == 2


@pytest.mark.parametrize("argv,needle", [
    (["--only", "C99"], "unknown claim"),
    (["--only", ","], "at least one claim"),
    (["--budget", "huge"], "invalid choice"),
])
def test_bad_options_exit_2_with_a_clear_message(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        V.main(argv + ["--out", str(tmp_path)])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_full_dry_run_lists_every_claim_and_runs_nothing(tmp_path, capsys):
    rc = V.main(["--budget", "full", "--dry-run", "--out", str(tmp_path / "none")])
    assert rc == 0 and not (tmp_path / "none").exists()
    line = _last_json(capsys)
    assert [c["id"] for c in line["claims"]] == list(V.REGISTRY)
    # the estimate is the sum of the registered per-claim estimates
    assert line["estimated_seconds"] == pytest.approx(sum(c.scales["full"].estimate_s for c in V.CLAIMS))
    assert line["claims"][2]["scale"]["n_train"] == 60000


# ---------------------------------------------------------------------------------------------- registry, statistics
def test_registry_is_complete():
    # C1-C10 (Zhang et al. and neighbours) and C11-C20 (the field's theory), numbered without gaps
    assert list(V.REGISTRY)[:10] == [f"C{i}" for i in range(1, 11)]
    assert list(V.REGISTRY) == [f"C{i}" for i in range(1, len(V.REGISTRY) + 1)]
    for c in V.CLAIMS:
        assert c.statement and c.source and c.source_value and c.quantity
        assert set(c.scales) == set(V.BUDGETS)
        for s in c.scales.values():
            assert s.criterion and s.why and s.estimate_s > 0
    # the budgets grow: quick never cheaper than smoke, full never cheaper than quick
    for c in V.CLAIMS:
        assert c.scales["smoke"].estimate_s <= c.scales["quick"].estimate_s <= c.scales["full"].estimate_s
    # the quick budget: every claim in <= 25 minutes on the 2-core machine (the registry's docstring)
    assert sum(c.scales["quick"].estimate_s for c in V.CLAIMS) <= 25 * 60


def test_binomial_intervals():
    # Clopper-Pearson with 0 errors has the closed form upper = 1 - (alpha/2)^(1/n)
    lo, hi = V.clopper_pearson(0, 50)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 50), rel=1e-12)
    # Wilson contains the point estimate, is narrower than Clopper-Pearson (which is conservative),
    # and the two agree to ~1e-3 at n = 10,000 (both O(1/sqrt(n)) around the same centre)
    for e, n in [(266, 10000), (3, 40), (9000, 10000)]:
        w, cp = V.wilson(e, n), V.clopper_pearson(e, n)
        assert w[0] <= e / n <= w[1] and cp[0] <= e / n <= cp[1]
        assert w[1] - w[0] <= cp[1] - cp[0]
    assert V.wilson(266, 10000) == pytest.approx(V.clopper_pearson(266, 10000), abs=1e-3)
    # Wilson's closed form at p = 1/2, z = 1.96: centre 1/2, half-width z sqrt(1/(4n) + z^2/(4n^2)) / (1 + z^2/n)
    z, n = 1.959963984540054, 100
    half = z * math.sqrt(0.25 / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert V.wilson(50, n) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-12)
    with pytest.raises(InvalidInputError):
        V.wilson(5, 3)


def test_label_corruption_that_does_nothing_fails_c5(tmp_path, monkeypatch, capsys):
    # "random" labels equal to the true ones: the test error at p = 1 is far below chance
    monkeypatch.setattr(_claims_data, "corrupt_labels", lambda y, p, k, seed: np.asarray(y).copy())
    rc, claims = _run_only(tmp_path, "C5", capsys)
    assert rc == 1 and claims["C5"]["verdict"] == "fail"


def test_shared_systems_are_reused_then_released(tmp_path):
    # A makes a "system", B does not share it, C reuses it: B must still see it (C needs it later),
    # C must get the same object (no recomputation), and nothing after C may hold it.
    made, seen = [], {}

    def make():
        made.append(1)
        return object()

    def run(name):
        def f(ctx):
            seen[name] = ctx.cached(("system", 1), make) if name in ("A", "C") else ctx.cache.get(("system", 1))
            return V.Result("pass", 1.0, "ok")
        return f

    def claim(name, shares):
        sc = V.Scale({}, "c", "w", 1.0)
        return V.Claim(name, name, "s", "src", "v", "q", {"smoke": sc, "quick": sc, "full": sc}, run(name), shares)

    after = claim("D", ())
    res = V.run_claims([claim("A", ("system",)), claim("B", ()), claim("C", ("system",)), after], "smoke",
                       tmp_path, quiet=True)
    assert [r.verdict for r in res] == ["pass"] * 4
    assert len(made) == 1 and seen["A"] is seen["B"] is seen["C"] and seen["D"] is None


def test_start_off_the_span_fails_c2(tmp_path, monkeypatch, capsys):
    real = _claims_data.sgd.sgd

    def broken(X, y, **kw):  # the from-zero run starts with a component outside the row span
        kw.setdefault("w0", np.full((X.shape[1],) + np.shape(y)[1:], 0.01))
        return real(X, y, **kw)

    monkeypatch.setattr(_claims_data.sgd, "sgd", broken)
    rc, claims = _run_only(tmp_path, "C2", capsys)
    assert rc == 1 and claims["C2"]["verdict"] == "fail"


def test_features_that_do_nothing_fail_c4(tmp_path, monkeypatch, capsys):
    # a Gabor transform broken into the identity: "Gabor" then equals raw pixels (z = 0 > -3)
    monkeypatch.setattr(_claims_data.features, "gabor_features", lambda X, options=None: np.array(X))
    rc, claims = _run_only(tmp_path, "C4", capsys)
    if claims["C4"]["verdict"] == "not reproduced":
        pytest.skip("MNIST unavailable")
    assert rc == 1 and claims["C4"]["verdict"] == "fail"


def test_truncated_solve_instead_of_exact_fails_c6(tmp_path, monkeypatch, capsys):
    # a rank cut-off (rtol 1e-2) instead of the exact Phi^+ Y: the peak at N = n is lost
    real = _claims_theory.random_features.double_descent_sweep

    def truncated(*a, **k):
        return real(*a, **{**k, "options": _claims_theory.random_features.SweepOptions(rtol=1e-2)})

    monkeypatch.setattr(_claims_theory.random_features, "double_descent_sweep", truncated)
    rc, claims = _run_only(tmp_path, "C6", capsys)
    assert rc == 1 and claims["C6"]["verdict"] == "fail"


def test_unwritable_out_and_negative_seed_are_usage_errors_before_any_claim_runs(tmp_path, capsys):
    """From a newcomer's review: a bad --out used to surface only after every claim had run (rc 1)."""
    from kernelgen.verify import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["--budget", "smoke", "--only", "C10", "--out", str(afile)],
                 ["--budget", "smoke", "--only", "C10", "--out", str(afile / "sub")],
                 ["--budget", "smoke", "--only", "C10", "--seed", "-1", "--out", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as ei:
            main(argv)
        assert ei.value.code == 2
        assert "C10" not in capsys.readouterr().out  # nothing ran
