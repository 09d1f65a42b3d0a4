"""End-to-end smoke test of scripts/smith_le.py: its verdict and correlations must follow from its own rows."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smith_le")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "smith_le.py"), "--smoke", "--out-dir", str(out),
         "--json-out", str(out / "m.json")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m == json.loads((out / "m.json").read_text())  # --json-out writes the same line
    return m, out, proc.stdout


def _by_labelling(rows):
    out = {}
    for r in rows:
        out.setdefault((r["labels"], r["seed"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["prior_precision"]) for k, v in out.items()}


def test_structure_and_definitions(smoke):
    m, out, stdout = smoke
    assert m["verdict"] in ("reproduced", "not reproduced") and "reproduced iff" in m["verdict_criteria"]
    assert m["verdict"] == m["models"][m["verdict_model"]]["verdict"]
    assert "VERDICT" in stdout
    assert (out / "smith_le.png").stat().st_size > 0
    for mm in m["models"].values():
        n = mm["n_train"]
        groups = _by_labelling(mm["rows"])
        assert len(groups) == 3  # informative + 2 random seeds in --smoke
        for rows in groups.values():
            assert [r["prior_precision"] for r in rows] == sorted(m["priors"])
            for r in rows:
                for v in r.values():
                    if isinstance(v, float):
                        assert math.isfinite(v)
                # ratio = log evidence - (-N ln 2), the null model's definition
                want = r["log_evidence"] + n * math.log(2)
                assert r["log_evidence_ratio"] == pytest.approx(want, rel=1e-12, abs=1e-9)  # one float addition
                assert 0.0 <= r["train_accuracy"] <= 1.0 and r["test_cross_entropy"] > 0
                assert 0 < r["effective_dim"] < n
                assert r["log_evidence"] <= r["log_likelihood_at_map"]  # the Occam factor is a penalty here


def test_weight_space_check(smoke):
    m, _, _ = smoke
    w = m["models"]["pixels"]["weight_space_check"]
    # function-space = weight-space Laplace exactly (Sylvester); rounding-level Newton in both: 1e-8
    assert w["abs_diff"] <= 1e-8 * max(1.0, abs(w["weight_space"]))


def test_verdict_follows_from_rows(smoke):
    m, _, _ = smoke
    for mm in m["models"].values():
        n = mm["n_train"]
        null = -n * math.log(2)
        g = _by_labelling(mm["rows"])
        inf = g[("informative", None)]
        rnd = [v for k, v in g.items() if k[0] == "random"]
        mem = [i for i in range(len(inf)) if all(rr[i]["train_accuracy"] == 1.0 for rr in rnd)]
        c = mm["criteria"]
        assert c["memorised_priors"] == [inf[i]["prior_precision"] for i in mem]
        ok = [bool(mem),
              bool(mem) and all(rr[i]["log_evidence"] < null for i in mem for rr in rnd),
              bool(mem) and all(rr[i]["log_evidence"] < inf[i]["log_evidence"] for i in mem for rr in rnd),
              bool(mem) and all(inf[i]["log_evidence"] > null for i in mem)]
        assert [c["1_memorisation"], c["2_random_below_null"], c["3_random_below_informative"],
                c["4_informative_above_null"]] == ok
        assert mm["verdict"] == ("reproduced" if all(ok) else "not reproduced")


def test_correlations_follow_from_rows(smoke):
    m, _, _ = smoke
    for mm in m["models"].values():
        g = _by_labelling(mm["rows"])
        corr = mm["correlation_log_evidence_vs_test_ce"]
        pairs = [(g[("informative", None)], corr["informative"])]
        rnd = [v for k, v in g.items() if k[0] == "random"]  # in seed order, as the script stores them
        pairs += list(zip(rnd, corr["random_per_seed"]))
        for rows, c in pairs:
            le = [r["log_evidence"] for r in rows]
            ce = [r["test_cross_entropy"] for r in rows]
            # the same scipy calls on the same JSON-round-tripped floats: equal to rounding
            assert c["spearman"] == pytest.approx(spearmanr(le, ce).statistic, abs=1e-12)
            assert c["pearson"] == pytest.approx(pearsonr(le, ce).statistic, abs=1e-12)
            assert c["argmax_evidence_prior"] == rows[int(np.argmax(le))]["prior_precision"]
