"""Merge the reports of separate verification runs into one REPORT.md / report.json.

A paper-scale (``full``) check of every claim takes longer than one sitting, so each claim runs on
its own (``python -m kernelgen.verify --budget full --only C13 --out DIR``) and the reports are then
merged::

    python -m kernelgen.verify --merge benchmarks/verify_full benchmarks/verify_full_c21 \\
        --out benchmarks/verify_full

Rules: every source is a directory holding a ``report.json`` written by :func:`write_report`, all
of one budget (mixing budgets is refused). A claim's record is taken from the *last* source that
completed it (a later run of the same claim replaces an earlier one; records marked ``interrupted``
or ``not run`` never replace anything). Each record keeps its own run's provenance (date, machine,
git commit, command) and wall time. Registered claims that no source completed are listed as ``not
run``, so the merged report says what is missing. Figures are copied into ``OUT/figures/``. Both
files are written whole or not at all; nothing is written when any source is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .._files import atomic_write
from ..cli import _jsonable
from ..errors import CorruptFileError, InvalidInputError
from ..provenance import provenance
from ._core import INTERRUPTED, NOT_RUN, VERDICTS, Result
from ._registry import CLAIMS
from ._report import _cell, _provenance_lines, budget_banner, by_paper, format_measured

__all__ = ["merge_reports"]

log = logging.getLogger("kernelgen.verify")


def _load(src: Path) -> dict:
    js = Path(src) / "report.json"
    if not js.is_file():
        raise InvalidInputError(f"--merge {src}: no report.json there (a directory written by "
                                "`python -m kernelgen.verify --out DIR` is needed)")
    try:
        obj = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{js}: not a kernelgen verify report ({exc}); rerun the claims it held") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("claims"), list) or "budget" not in obj:
        raise CorruptFileError(f"{js}: not a kernelgen verify report (no 'budget' / 'claims'); "
                               "rerun the claims it held")
    return obj


def _result(rec: dict) -> Result:
    interval = tuple(rec["interval"]) if rec.get("interval") else None
    return Result(rec["verdict"], rec.get("measured"), rec.get("reason", ""), interval=interval,
                  interval_kind=rec.get("interval_kind") or "", unit=rec.get("unit") or "",
                  seconds=float(rec.get("seconds") or 0.0))


def _copy(src: Path, f) -> None:
    with src.open("rb") as g:
        shutil.copyfileobj(g, f)


def _number(cid: str) -> int:
    return int(cid[1:]) if cid[1:].isdigit() else 10 ** 6


def merge_reports(sources: list, out_dir, *, command: str) -> tuple[Path, Path]:
    """Merge the ``report.json`` of each directory in ``sources`` into ``out_dir``; return (REPORT.md, report.json).

    Parameters
    ----------
    sources : list of path-like
        Report directories, oldest first: a later one's record of a claim replaces an earlier one's.
        ``out_dir`` may be among them (its records are read before anything is written).
    out_dir : path-like
        Where the merged REPORT.md, report.json and figures/ go (created if missing).
    command : str
        The merge command line, for the header.

    Raises
    ------
    InvalidInputError
        No sources, a directory without report.json, reports of different budgets, or no completed claim.
    CorruptFileError
        A report.json that is not a verify report.
    NonFiniteResultError
        A NaN/inf in a record (never written as a result).
    """
    if not sources:
        raise InvalidInputError("--merge needs at least one report directory")
    out_dir = Path(out_dir)
    loaded = [(Path(s), _load(s)) for s in sources]
    budgets = sorted({o["budget"] for _, o in loaded})
    if len(budgets) != 1:
        raise InvalidInputError(f"--merge: reports of different budgets {budgets} cannot be merged; "
                                "merge each budget's reports separately")
    budget = budgets[0]
    chosen: dict[str, tuple[Path, dict, dict]] = {}
    for src, obj in loaded:
        run = {"command": obj.get("command"), "provenance": obj.get("provenance") or {}}
        for rec in obj["claims"]:
            cid = rec.get("id")
            if rec.get("verdict") not in VERDICTS or not isinstance(cid, str):
                raise CorruptFileError(f"{src / 'report.json'}: claim record {cid!r} has verdict "
                                       f"{rec.get('verdict')!r}; rerun the claims it held")
            if rec["verdict"] in (INTERRUPTED, NOT_RUN):
                log.warning("merge: %s in %s is %s; not used", cid, src, rec["verdict"])
                continue
            if cid in chosen:
                log.info("merge: %s from %s replaces the record from %s", cid, src, chosen[cid][0])
            chosen[cid] = (src, rec, run)
    if not chosen:
        raise InvalidInputError(f"--merge: no completed claim in {[str(s) for s, _ in loaded]}")

    registered = {c.id: c for c in CLAIMS}
    ids = sorted(set(chosen) | set(registered), key=lambda i: (_number(i), i))
    records, figures = [], []
    for cid in ids:
        if cid not in chosen:
            c = registered[cid]
            records.append({"id": cid, "title": c.title, "source": c.source, "source_value": c.source_value,
                            "verdict": NOT_RUN, "measured": None, "seconds": 0.0, "figure": None,
                            "reason": f"no merged `{budget}` report holds {cid}",
                            "rerun": f"python -m kernelgen.verify --budget {budget} --only {cid}"})
            continue
        src, rec, run = chosen[cid]
        rec = dict(rec)
        if rec.get("figure"):
            fig_src = src / rec["figure"]
            if not fig_src.is_file():
                raise InvalidInputError(f"--merge: {cid}'s figure {fig_src} is missing; rerun {cid}")
            rec["figure"] = f"figures/{cid}{fig_src.suffix}"
            figures.append((fig_src, out_dir / rec["figure"]))
        if not isinstance(rec.get("run"), dict):  # a merged report's record keeps the run it came from
            rec["run"] = {"from": str(src), **run}
        rec["rerun"] = f"python -m kernelgen.verify --budget {budget} --only {cid}"
        c = registered.get(cid)
        if c is not None and budget in c.scales:  # records written before these fields existed
            rec.setdefault("checked", c.scales[budget].checked)
            rec.setdefault("source_tested", bool(c.scales[budget].source_tested))
        records.append(rec)

    done = [r for r in records if r["verdict"] not in (NOT_RUN, INTERRUPTED)]
    counts = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    claim_seconds = sum(float(r.get("seconds") or 0.0) for r in done)
    obj = _jsonable({"budget": budget, "status": "complete" if not counts[NOT_RUN] else "partial",
                     "merged": True, "banner": budget_banner(budget), "command": command,
                     "sources": [str(s) for s, _ in loaded], "wall_seconds": claim_seconds,
                     "wall_seconds_kind": "sum of the merged claims' own wall times",
                     "provenance": provenance(), "claims": records}, "merged report")

    L = [f"# kernelgen claims — `{budget}` budget (merged)", "",
         f"> **What this budget checks.** {budget_banner(budget)}", "",
         (f"`{command}` — {len(records)} claims: {counts['pass']} pass, {counts['fail']} fail, "
          f"{counts['not reproduced']} not reproduced, {counts[NOT_RUN]} not run; the merged claims ran "
          f"{claim_seconds:.0f} s in all (each claim's own wall time below)."), "",
         "Each claim was run on its own (`rerun` below) and keeps its own run's provenance; a later run "
         "of a claim replaces an earlier one.", "", "## Claims at a glance", "",
         "| id | claim | source value | measured | verdict | seconds | run on |", "|---|---|---|---|---|---|---|"]
    by_id = {r["id"]: r for r in records}
    for paper, pids in by_paper(ids):
        L.append(f"| | **{_cell(paper)}** | | | | | |")
        for cid in pids:
            r = by_id[cid]
            res = _result(r) if r["verdict"] != NOT_RUN else None
            date = ((r.get("run") or {}).get("provenance") or {}).get("date") or "—"
            sv = r.get("source_value", "")
            if r.get("source_tested") is False and str(sv).strip() not in ("", "—", "-", "--"):
                sv = f"not tested at `{budget}`"
            L.append(f"| [{cid}](#{cid.lower()}) | {_cell(r.get('title', ''))} | {_cell(sv)} | "
                     f"{_cell(format_measured(res)) if res else '—'} | **{r['verdict']}** | "
                     f"{float(r.get('seconds') or 0):.1f} | {str(date)[:10]} |")
    for paper, pids in by_paper(ids):
        L += ["", f"## {paper}"]
        for cid in pids:
            r = by_id[cid]
            L += ["", f"### {cid}", "", f"**{r.get('title', '')}** — {r.get('statement', '')}", ""]
            if r["verdict"] == NOT_RUN:
                L += [f"- verdict: **not run** — {r['reason']}", f"- run it: `{r['rerun']}`"]
                continue
            run = r["run"]
            L += [f"- source: {r.get('source')}; source value: {r.get('source_value')}",
                  f"- quantity: {r.get('quantity')}",
                  f"- checked: {r.get('checked', '')}",
                  f"- scale ({budget}): `{json.dumps(r.get('scale'))}`",
                  f"- criterion: {r.get('criterion')} — {r.get('justification')}",
                  f"- measured: {format_measured(_result(r))}",
                  f"- verdict: **{r['verdict']}** — {r.get('reason')}",
                  f"- seconds: {float(r.get('seconds') or 0):.1f}",
                  f"- run: `{run.get('command')}` (report `{run['from']}`)",
                  f"- rerun alone: `{r['rerun']}`",
                  "- provenance of that run:"]
            L += ["  " + line for line in _provenance_lines(run.get("provenance") or {})]
            if r.get("figure"):
                L += ["", f"![{cid}]({r['figure']})"]

    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(exist_ok=True)
    for fig_src, fig_dst in figures:
        if fig_src.resolve() != fig_dst.resolve():
            atomic_write(fig_dst, lambda f, p=fig_src: _copy(p, f))
    js, md = out_dir / "report.json", out_dir / "REPORT.md"
    atomic_write(js, lambda f: f.write(text), binary=False)
    atomic_write(md, lambda f: f.write("\n".join(L) + "\n"), binary=False)
    return md, js
