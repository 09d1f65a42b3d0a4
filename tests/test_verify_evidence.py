"""C21 (the evidence's bandwidth generalizes as well as the best): its smoke run, its paired interval, its
resumable parts, and the fault injections that must turn it into `fail`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import kernelgen.verify as V
from kernelgen.evidence import _exact
from kernelgen.verify import _claims_evidence
from kernelgen.verify._claims_evidence import mcnemar_interval
from kernelgen.verify._registry import REGISTRY, RUN_ORDER

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path, capsys):
    rc = V.main(["--budget", "smoke", "--only", "C21", "--out", str(tmp_path), "-q"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return rc, {c["id"]: c for c in line["claims"]}["C21"]


def test_c21_is_registered_with_growing_budgets():
    c = REGISTRY["C21"]
    assert "C21" in RUN_ORDER and set(c.scales) == {"smoke", "quick", "full"}
    est = [c.scales[b].estimate_s for b in ("smoke", "quick", "full")]
    assert est == sorted(est)
    assert [c.scales[b].params["n_train"] for b in ("smoke", "quick", "full")] == [300, 10000, 60000]
    assert c.scales["quick"].params["bandwidths"] == [3.0, 4.0, 5.0, 6.0, 8.0]


def test_c21_smoke_passes_with_its_figure_and_numbers(tmp_path, capsys):
    rc, c = _run(tmp_path, capsys)
    assert rc == 0 and c["verdict"] == "pass"
    rep = {r["id"]: r for r in json.loads((tmp_path / "report.json").read_text())["claims"]}["C21"]
    d = rep["details"]
    assert (tmp_path / rep["figure"]).read_bytes()[:8] == PNG
    assert len(d["rows"]) == 5 and all(r["relative_residual"] <= 1e-10 for r in d["rows"])
    # the measured value is the test error at the evidence optimum, and the optimum is the argmax
    ev = [r["log_evidence_amplitude"] for r in d["rows"]]
    i = int(np.argmax(ev))
    assert d["evidence_optimum"] == d["bandwidths"][i] and rep["measured"] == d["rows"][i]["test_error"]


def test_c21_resumes_from_stored_parts(tmp_path, capsys, monkeypatch):
    rc, first = _run(tmp_path, capsys)
    assert rc == 0

    def no_more(*a, **k):  # every bandwidth is stored: nothing may be recomputed
        raise AssertionError("recomputed a stored bandwidth")

    monkeypatch.setattr(_claims_evidence, "evidence_grid", no_more)
    rc, again = _run(tmp_path, capsys)
    assert rc == 0 and again["measured"] == first["measured"]
    rep = json.loads((tmp_path / "report.json").read_text())["claims"][0]
    assert rep["details"]["resumed"] == rep["details"]["bandwidths"]  # said in the report, not hidden


def test_mcnemar_interval_against_hand_counts():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    b = np.array([0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    p = mcnemar_interval(a, b)
    # b = 2 (a wrong, b right), c = 1; se = sqrt(3 - 1/8) / 8; exact arithmetic, compared to rounding
    assert (p["b"], p["c"], p["m"]) == (2, 1, 8) and p["diff"] == 1 / 8
    assert p["se"] == pytest.approx(np.sqrt(3 - 1 / 8) / 8, rel=1e-15)
    lo, hi = p["interval"]
    assert lo == pytest.approx(1 / 8 - 1.959963984540054 * p["se"], rel=1e-15) and hi > 1 / 8


def test_logdet_off_by_a_constant_per_bandwidth_fails_c21(tmp_path, monkeypatch, capsys):
    real = _exact._evidence_parts
    seen = []

    def shifted(trace, logdet, n, k):  # the smoke grid's first bandwidth (s = 0.1, a nearest-neighbour rule)
        seen.append(1)  # gets a log-det 200 nats per target lower than the others: the evidence optimum moves
        return real(trace, logdet - (200.0 * n if len(seen) == 1 else 0.0), n, k)

    monkeypatch.setattr(_exact, "_evidence_parts", shifted)
    rc, c = _run(tmp_path, capsys)
    assert rc == 1 and c["verdict"] == "fail"


def test_data_fit_sign_flip_fails_c21(tmp_path, monkeypatch, capsys):
    real = _exact._evidence_parts

    def flipped(trace, logdet, n, k):  # +1/2 tr(Y^T alpha) instead of -1/2 tr(Y^T alpha)
        return real(-trace, logdet, n, k)

    monkeypatch.setattr(_exact, "_evidence_parts", flipped)
    rc, c = _run(tmp_path, capsys)
    assert rc == 1 and c["verdict"] == "fail"
