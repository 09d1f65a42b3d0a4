"""``python -m kernelgen.verify --merge``: one report from separate per-claim runs (issue 22, item 4)."""

from __future__ import annotations

import json

import pytest

from kernelgen.errors import CorruptFileError, InvalidInputError
from kernelgen.verify import CLAIMS, main
from kernelgen.verify._merge import merge_reports
from kernelgen.verify._report import PAPERS, by_paper, paper_of

PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 16


def _report(d, budget, claims, *, date="2026-12-05T00:00:00+00:00", figure=True):
    """A report directory as write_report leaves it: report.json (+ figures/Cn.png)."""
    d.mkdir(parents=True, exist_ok=True)
    recs = []
    for cid, verdict, measured in claims:
        fig = None
        if figure and verdict not in ("interrupted", "not run"):
            (d / "figures").mkdir(exist_ok=True)
            (d / "figures" / f"{cid}.png").write_bytes(PNG + cid.encode() + date.encode())
            fig = f"figures/{cid}.png"
        recs.append({"id": cid, "title": f"title {cid}", "statement": "s", "source": "src", "source_value": "1%",
                     "quantity": "q", "verdict": verdict, "measured": measured, "unit": "%", "interval": None,
                     "interval_kind": None, "reason": f"reason {cid} {date}", "seconds": 12.5, "figure": fig,
                     "scale": {"n": 1}, "criterion": "c", "justification": "j", "checked": "k",
                     "source_tested": True, "details": {}})
    (d / "report.json").write_text(json.dumps({"budget": budget, "command": f"run {d.name}",
                                               "provenance": {"date": date, "git_commit": "abc"},
                                               "claims": recs}))
    return d


def test_every_registered_claim_has_a_paper_and_groups_keep_claim_order():
    assert {c.id for c in CLAIMS} <= set(PAPERS)
    groups = by_paper(["C1", "C6", "C17", "C8", "C21"])
    # C17 (Zhang et al. §4) joins C1's paper; C21 joins C8's (evidence): first-claim order of papers
    assert groups == [(paper_of("C1"), ["C1", "C17"]), (paper_of("C6"), ["C6"]), (paper_of("C8"), ["C8", "C21"])]


def test_later_run_replaces_earlier_and_interrupted_never_replaces(tmp_path):
    a = _report(tmp_path / "a", "full", [("C1", "pass", 0.1), ("C3", "pass", 0.0122)], date="2026-11-29T00:00:00")
    b = _report(tmp_path / "b", "full", [("C3", "fail", 0.02), ("C1", "interrupted", None)], date="2026-12-05T00:00:00")
    out = tmp_path / "out"
    md, js = merge_reports([a, b], out, command="merge a b")
    obj = json.loads(js.read_text())
    recs = {r["id"]: r for r in obj["claims"]}
    assert recs["C3"]["verdict"] == "fail" and recs["C3"]["measured"] == 0.02  # b is later
    assert recs["C1"]["verdict"] == "pass" and recs["C1"]["run"]["from"] == str(a)  # b's interrupted C1 ignored
    # every registered claim is listed; those no source completed are "not run" with the command that runs them
    assert {c.id for c in CLAIMS} <= set(recs)
    assert recs["C13"]["verdict"] == "not run" and "--only C13" in recs["C13"]["rerun"]
    assert obj["status"] == "partial" and obj["wall_seconds"] == pytest.approx(25.0)
    # figures are copied, the later run's figure for C3
    assert (out / "figures" / "C3.png").read_bytes().endswith(b"C32026-12-05T00:00:00")
    text = md.read_text()
    # grouped by paper: C17 under Zhang et al.'s heading, after C5 and before the next paper
    assert text.index("### C5") < text.index("### C17") < text.index("## " + paper_of("C6"))
    assert "reason C3 2026-12-05" in text and "2026-11-29" in text


def test_merge_into_one_of_its_sources(tmp_path):
    out = _report(tmp_path / "out", "full", [("C1", "pass", 0.1)])
    b = _report(tmp_path / "b", "full", [("C21", "pass", 0.012)])
    before = (out / "figures" / "C1.png").read_bytes()
    merge_reports([out, b], out, command="m")
    recs = {r["id"]: r for r in json.loads((out / "report.json").read_text())["claims"]}
    assert recs["C1"]["verdict"] == "pass" and recs["C21"]["verdict"] == "pass"
    assert (out / "figures" / "C1.png").read_bytes() == before
    # merging again (the merged report as a source) keeps each claim's own run, not the merge's
    c = _report(tmp_path / "c", "full", [("C14", "fail", 0.8)])
    merge_reports([out, c], out, command="m2")
    recs2 = {r["id"]: r for r in json.loads((out / "report.json").read_text())["claims"]}
    assert recs2["C21"]["run"]["from"] == str(b) and recs2["C21"]["run"]["command"] == "run b"
    assert recs2["C1"]["run"]["command"] == "run out" and recs2["C14"]["run"]["from"] == str(c)


def test_refusals_write_nothing(tmp_path):
    a = _report(tmp_path / "a", "full", [("C1", "pass", 0.1)])
    q = _report(tmp_path / "q", "quick", [("C3", "pass", 0.0266)])
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="different budgets"):
        merge_reports([a, q], out, command="m")
    with pytest.raises(InvalidInputError, match="no report.json"):
        merge_reports([a, tmp_path], out, command="m")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        merge_reports([a, tmp_path / "bad"], out, command="m")
    only_int = _report(tmp_path / "i", "full", [("C1", "interrupted", None)])
    with pytest.raises(InvalidInputError, match="no completed claim"):
        merge_reports([only_int], out, command="m")
    (a / "figures" / "C1.png").unlink()
    with pytest.raises(InvalidInputError, match="figure"):
        merge_reports([a], out, command="m")
    assert not out.exists()


def test_cli_merge_and_inapplicable_flags(tmp_path, capsys):
    a = _report(tmp_path / "a", "full", [("C1", "pass", 0.1)])
    out = tmp_path / "out"
    assert main(["--merge", str(a), "--out", str(out), "--quiet"]) == 0
    assert (out / "REPORT.md").is_file()
    for extra in (["--only", "C1"], ["--budget", "full"], ["--dry-run"]):
        with pytest.raises(SystemExit) as e:
            main(["--merge", str(a), "--out", str(tmp_path / "o2"), *extra])
        assert e.value.code == 2
    assert "does not apply" in capsys.readouterr().err


@pytest.mark.parametrize("edit, match", [
    (lambda o: o.update(claims=[1]), "not an object"),
    (lambda o: o.update(budget="bogus"), "budget 'bogus'"),
    (lambda o: o.update(provenance="x"), "'provenance' must be an object"),
    (lambda o: o["claims"][0].update(measured="12%"), "not a finite number"),
    (lambda o: o["claims"][0].update(interval=[0.1]), "'interval'"),
    (lambda o: o["claims"][0].update(seconds="abc"), "'seconds'"),
    (lambda o: o["claims"][0].update(figure="../../etc/hostname"), "inside the report directory"),
    (lambda o: o["claims"][0].update(figure="/etc/hostname"), "inside the report directory"),
    (lambda o: o["claims"][0].update(id="C99"), "not registered"),
    (lambda o: o["claims"][0].update(id="c1"), "not registered"),
    (lambda o: o["claims"][0].pop("id"), "no 'id'"),
    (lambda o: o["claims"][0].update(details={"x": float("inf")}), "not finite JSON"),
    (lambda o: o["claims"][0].update(title=5), "'title' is int"),
])
def test_corrupt_records_are_named_and_nothing_is_written(tmp_path, edit, match):
    a = _report(tmp_path / "a", "full", [("C1", "pass", 0.1)])
    obj = json.loads((a / "report.json").read_text())
    edit(obj)
    (a / "report.json").write_text(json.dumps(obj))
    with pytest.raises(CorruptFileError, match=match) as e:
        merge_reports([a], tmp_path / "out", command="m")
    assert str(a / "report.json") in str(e.value)
    assert not (tmp_path / "out").exists()


def test_unwritable_outputs_are_refused_before_anything_changes(tmp_path):
    a = _report(tmp_path / "a", "full", [("C1", "pass", 0.1)])
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        merge_reports([a], f, command="m")
    out = _report(tmp_path / "out", "full", [("C3", "pass", 0.0122)])
    before = (out / "report.json").read_bytes()
    (out / "REPORT.md").mkdir()  # REPORT.md cannot be replaced: report.json must not be replaced either
    with pytest.raises(InvalidInputError, match="is a directory"):
        merge_reports([out, a], out, command="m")
    assert (out / "report.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["REPORT.md", "figures", "report.json"]  # no temporaries left


def test_cli_refuses_json_out_over_a_report_and_abbreviated_budget(tmp_path, capsys):
    a = _report(tmp_path / "a", "full", [("C1", "pass", 0.1)])
    before = (a / "report.json").read_bytes()
    for target in (a / "report.json", tmp_path / "o" / "report.json", tmp_path / "o" / "REPORT.md"):
        with pytest.raises(SystemExit) as e:
            main(["--merge", str(a), "--out", str(tmp_path / "o"), "--json-out", str(target)])
        assert e.value.code == 2
    assert (a / "report.json").read_bytes() == before and not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as e:  # argparse accepts the abbreviation; it must still be refused
        main(["--merge", str(a), "--out", str(tmp_path / "o"), "--budg", "full"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "would overwrite a report" in err and "does not apply" in err
