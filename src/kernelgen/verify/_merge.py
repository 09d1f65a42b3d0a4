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
import math
import os
import secrets
import shutil
from pathlib import Path

from .._files import atomic_write
from ..cli import _jsonable
from ..errors import CorruptFileError, InvalidInputError
from ..provenance import provenance
from ._core import BUDGETS, INTERRUPTED, NOT_RUN, VERDICTS, Result
from ._registry import CLAIMS
from ._report import _cell, _provenance_lines, budget_banner, by_paper, format_measured, source_text

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
    bad = None
    if obj["budget"] not in BUDGETS:
        bad = f"budget {obj['budget']!r} is not one of {list(BUDGETS)}"
    elif not isinstance(obj.get("provenance", {}), dict) or not isinstance(obj.get("command", ""), (str, type(None))):
        bad = "'provenance' must be an object and 'command' a string"
    if bad is None:
        for rec in obj["claims"]:
            bad = _record_problem(Path(src), rec)
            if bad:
                break
    if bad:
        raise CorruptFileError(f"{js}: {bad}; rerun the claims it held (or restore the file)")
    return obj


def _number_ok(v, *, none_ok: bool) -> bool:
    if v is None:
        return none_ok
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _record_problem(src: Path, rec) -> str | None:
    """Why a claim record cannot be merged (None when it can): every field the report reads, checked."""
    if not isinstance(rec, dict):
        return f"a claim record is {type(rec).__name__}, not an object"
    cid = rec.get("id")
    if not isinstance(cid, str) or not cid:
        return "a claim record has no 'id'"
    if cid not in {c.id for c in CLAIMS}:
        return f"claim {cid!r} is not registered in this kernelgen (ids: C1 ... C{len(CLAIMS)}, as written)"
    if rec.get("verdict") not in VERDICTS:
        return f"{cid}: verdict {rec.get('verdict')!r} is not one of {list(VERDICTS)}"
    if not _number_ok(rec.get("measured"), none_ok=True):
        return f"{cid}: 'measured' {rec.get('measured')!r} is not a finite number (NaN/inf is never a result)"
    iv = rec.get("interval")
    if iv is not None and not (isinstance(iv, list) and len(iv) == 2 and all(_number_ok(x, none_ok=False) for x in iv)):
        return f"{cid}: 'interval' {iv!r} is not two finite numbers"
    if not _number_ok(rec.get("seconds", 0.0), none_ok=False):
        return f"{cid}: 'seconds' {rec.get('seconds')!r} is not a finite number"
    fig = rec.get("figure")
    if fig is not None:
        if not isinstance(fig, str) or Path(fig).is_absolute() or ".." in Path(fig).parts:
            return f"{cid}: 'figure' {fig!r} is not a path inside the report directory"
    for key in ("title", "statement", "source", "source_value", "quantity", "reason", "criterion", "justification",
                "unit", "interval_kind", "checked"):
        if rec.get(key) is not None and not isinstance(rec.get(key), str):
            return f"{cid}: {key!r} is {type(rec.get(key)).__name__}, not text"
    try:
        json.dumps(rec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"{cid}: a value is not finite JSON ({exc}; NaN/inf is never a result)"
    return None


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
            cid = rec["id"]
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
            if not fig_src.resolve().is_relative_to(src.resolve()):
                raise CorruptFileError(f"{src / 'report.json'}: {cid}'s figure {rec['figure']!r} lies outside {src}")
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
            sv = source_text(r.get("source_value", ""), r.get("source_tested") is not False, budget)
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
    js, md = out_dir / "report.json", out_dir / "REPORT.md"
    _check_out(out_dir)
    # both files are staged beside their targets, the figures copied (each whole), then both renamed:
    # a refusal or an error before the renames leaves OUT as it was
    staged = []
    try:
        for target, content in ((js, text), (md, "\n".join(L) + "\n")):
            tmp = out_dir / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
            staged.append((tmp, target))
            with os.fdopen(fd, "w") as f:
                f.write(content)
        (out_dir / "figures").mkdir(exist_ok=True)
        for fig_src, fig_dst in figures:
            if fig_src.resolve() != fig_dst.resolve():
                atomic_write(fig_dst, lambda f, p=fig_src: _copy(p, f))
        for tmp, target in staged:
            os.replace(tmp, target)
        staged = []
    except OSError as exc:
        raise InvalidInputError(f"--out {out_dir}: cannot write the merged report there ({type(exc).__name__}: "
                                f"{exc}); nothing was replaced") from exc
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return md, js


def _check_out(out_dir: Path) -> None:
    """Refuse an output directory the merged report cannot be written into, before anything is written."""
    problems = []
    if out_dir.exists() and not out_dir.is_dir():
        problems.append(f"{out_dir} is a file, not a directory")
    else:
        for name, want_dir in (("figures", True), ("REPORT.md", False), ("report.json", False)):
            q = out_dir / name
            if q.exists() and q.is_dir() != want_dir:
                problems.append(f"{q} is {'a file' if want_dir else 'a directory'}")
    if not problems:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            probe = out_dir / ".kernelgen-merge-write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            problems.append(f"cannot write there ({type(exc).__name__}: {exc})")
    if problems:
        raise InvalidInputError(f"--out {out_dir}: " + "; ".join(problems) + "; choose another --out")
