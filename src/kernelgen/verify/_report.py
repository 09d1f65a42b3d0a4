"""REPORT.md and report.json of a verification run.

``REPORT.md``: provenance at the top (package versions, BLAS and threads, CPU, git commit, seeds,
date), one table of every claim (claim, source value, measured value with its interval, verdict,
seconds), then one section per claim: statement, source, quantity, the scale run, the criterion with
its justification, the verdict's reason, the figure, and the command that reruns it alone.
``report.json``: ``{"provenance": {...}, "budget": ..., "claims": [{"id", "verdict", "measured",
"source_value", "seconds", ...}]}`` -- the same content, machine-readable (NaN/inf refused).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..cli import _jsonable
from ._core import Claim, Result

__all__ = ["claim_record", "format_measured", "write_report"]


def format_measured(res: Result) -> str:
    """``measured`` with its interval, in the claim's unit (fractions shown as percentages)."""
    if res.measured is None:
        return "—"
    if res.unit == "%":
        s = f"{100 * res.measured:.2f}%"
        if res.interval:
            s += f" [{100 * res.interval[0]:.2f}, {100 * res.interval[1]:.2f}] ({res.interval_kind})"
        return s
    v = res.measured
    s = f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.4g}"
    if res.interval:
        s += f" [{res.interval[0]:.3g}, {res.interval[1]:.3g}] ({res.interval_kind})"
    return f"{s} ({res.unit})" if res.unit else s


def claim_record(claim: Claim, res: Result, budget: str, out_dir: Path) -> dict:
    """The JSON record of one claim's run."""
    scale = claim.scales[budget]
    fig = None
    if res.figure is not None:
        fig = os.path.relpath(res.figure, out_dir)
    return {
        "id": claim.id, "title": claim.title, "statement": claim.statement, "source": claim.source,
        "source_value": claim.source_value, "quantity": claim.quantity, "verdict": res.verdict,
        "measured": res.measured, "unit": res.unit,
        "interval": list(res.interval) if res.interval else None, "interval_kind": res.interval_kind or None,
        "reason": res.reason, "seconds": res.seconds, "figure": fig,
        "scale": dict(scale.params), "criterion": scale.criterion, "justification": scale.why,
        "details": res.details,
    }


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a literal ``|`` would end the cell)."""
    return str(text).replace("|", "\\|")


def _provenance_lines(prov: dict) -> list[str]:
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads, "
                     f"{b.get('threading_layer')}, {b.get('architecture')})" for b in prov.get("blas", []))
    versions = ", ".join(f"{k} {prov[k]}" for k in ("kernelgen", "python", "numpy", "scipy", "jax", "jaxlib",
                                                     "scikit-learn") if prov.get(k))
    return [
        f"- date: {prov.get('date')}",
        f"- machine: {prov.get('cpu')}, {prov.get('cores')} cores, {prov.get('platform')}",
        f"- versions: {versions}",
        f"- BLAS: {blas or 'unknown'}",
        f"- git commit: `{prov.get('git_commit')}`",
        f"- seeds: {json.dumps(prov.get('seeds', {}))}",
    ]


def write_report(out_dir: Path, budget: str, claims: list[Claim], results: list[Result], prov: dict,
                 *, command: str, wall_s: float) -> tuple[Path, Path]:
    """Write ``REPORT.md`` and ``report.json`` into ``out_dir``; return their paths.

    Raises
    ------
    NonFiniteResultError
        A NaN/inf anywhere in the records (never written as a result).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [claim_record(c, r, budget, out_dir) for c, r in zip(claims, results)]
    obj = _jsonable({"budget": budget, "command": command, "wall_seconds": wall_s, "provenance": prov,
                     "claims": records}, "report")
    js = out_dir / "report.json"
    js.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")

    counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "not reproduced")}
    L = [f"# kernelgen claims — `{budget}` budget", "",
         (f"`{command}` — {len(results)} claims: {counts['pass']} pass, {counts['fail']} fail, "
          f"{counts['not reproduced']} not reproduced; {wall_s:.0f} s wall."), "", "## Provenance", ""]
    L += _provenance_lines(prov)
    L += ["", "## Claims at a glance", "",
          "| id | claim | source value | measured | verdict | seconds |", "|---|---|---|---|---|---|"]
    for c, r in zip(claims, results):
        L.append(f"| [{c.id}](#{c.id.lower()}) | {_cell(c.title)} | {_cell(c.source_value)} | {_cell(format_measured(r))} | "
                 f"**{r.verdict}** | {r.seconds:.1f} |")
    for c, r, rec in zip(claims, results, records):
        sc = c.scales[budget]
        L += ["", f"## {c.id}", "", f"**{c.title}** — {c.statement}", "",
              f"- source: {c.source}; source value: {c.source_value}",
              f"- quantity: {c.quantity}",
              f"- scale ({budget}): `{json.dumps(_jsonable(dict(sc.params), 'scale'))}`",
              f"- criterion: {sc.criterion} — {sc.why}",
              f"- measured: {format_measured(r)}",
              f"- verdict: **{r.verdict}** — {r.reason}",
              f"- seconds: {r.seconds:.1f}",
              f"- rerun alone: `python -m kernelgen.verify --budget {budget} --only {c.id}`"]
        if rec["figure"]:
            L += ["", f"![{c.id}]({rec['figure']})"]
    md = out_dir / "REPORT.md"
    md.write_text("\n".join(L) + "\n")
    return md, js
