"""REPORT.md and report.json of a verification run.

``REPORT.md``: a banner saying what the budget checks (``smoke`` / ``quick``: the machinery, not
the papers' numbers), an ``INTERRUPTED`` banner when the run was cut short, provenance (package
versions, BLAS and threads, CPU, git commit, seeds, date), one table of every claim (claim, what was
checked at this budget, the source's number -- only where this budget tested it --, measured value
with its interval, verdict, seconds), then one section per paper (:data:`PAPERS`) holding one
section per claim: statement, source, quantity, the
scale run, the criterion with its justification, the verdict's reason, the figure, and the command
that reruns it alone. ``report.json``: ``{"status": "complete" | "interrupted", "interrupted":
{...} | null, "provenance": {...}, "budget": ..., "claims": [{"id", "verdict", "measured",
"source_value", "checked", "source_tested", "seconds", ...}]}`` -- the same content, machine-readable
(NaN/inf refused). Both files are written to a temporary name and renamed: never half-written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._files import atomic_write
from ..cli import _jsonable
from ._core import INTERRUPTED, NOT_RUN, VERDICTS, Claim, Result

__all__ = ["PAPERS", "budget_banner", "by_paper", "claim_record", "format_measured", "paper_of", "source_cell", "source_text",
           "write_report"]

#: The paper (or body of work) each claim is checked against, for the report's grouping by paper.
#: Every registered claim has an entry (a test checks it); claims of one paper share one heading.
PAPERS = {
    "C1": "Zhang, Bengio, Hardt, Recht & Vinyals, ICLR 2017 — Understanding deep learning requires rethinking "
          "generalization",
    "C6": "Belkin, Hsu, Ma & Mandal, PNAS 2019 — Reconciling modern machine-learning practice and the classical "
          "bias–variance trade-off",
    "C7": "Risk in closed form — Hastie, Montanari, Rosset & Tibshirani 2022; Belkin, Hsu & Xu 2020; Mei & Montanari "
          "2022; Nakkiran 2019",
    "C8": "Bayesian evidence — Bishop, PRML §3.5; MacKay 1992; Smith & Le, ICLR 2018",
    "C10": "kernelgen's symbolic derivations (proofs/)",
    "C11": "Belkin, Ma & Mandal, ICML 2018 — To understand deep learning we need to understand kernel learning",
    "C12": "Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein, ICLR 2018 — Deep neural networks as Gaussian "
           "processes",
    "C13": "Spigler, Geiger & Wyart, J. Stat. Mech. 2020 — Asymptotic learning curves of kernel methods",
    "C14": "Canatar, Bordelon & Pehlevan, Nat. Commun. 2021 — Spectral bias and task–model alignment",
    "C15": "Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, NeurIPS 2019 — Wide neural networks "
           "of any depth evolve as linear models",
    "C16": "Arora, Du, Hu, Li & Wang, ICML 2019 — Fine-grained analysis of optimization and generalization",
    "C18": "Early stopping and ridge — Yao, Rosasco & Caponnetto 2007; Raskutti, Wainwright & Yu 2014",
    "C19": "De Palma, Kiani & Lloyd, NeurIPS 2019 — Random deep neural networks are biased towards simple functions",
    "C20": "Maddox, Benton & Wilson 2020 — Rethinking parameter counting: effective dimensionality",
}
for _same, _as in (("C2", "C1"), ("C3", "C1"), ("C4", "C1"), ("C5", "C1"), ("C17", "C1"), ("C9", "C8"),
                   ("C21", "C8")):
    PAPERS[_same] = PAPERS[_as]
del _same, _as


def paper_of(claim_id: str) -> str:
    """The heading under which ``claim_id`` is reported (:data:`PAPERS`; unknown ids get their own)."""
    return PAPERS.get(claim_id, f"{claim_id} (no paper registered)")


def by_paper(ids: list[str]) -> list[tuple[str, list[str]]]:
    """``ids`` grouped by :func:`paper_of`, papers in order of their first claim, claims in the given order."""
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(paper_of(i), []).append(i)
    return list(groups.items())

_BANNERS = {
    "smoke": ("`smoke` checks the machinery, not the papers' numbers: every claim's computation runs at a tiny "
              "scale (synthetic data or a few hundred MNIST images) against an independent reference where one is "
              "cheap. A pass means what the \"checked at this budget\" column says, nothing more; only "
              "`--budget full` tests the papers' numbers (e.g. 1.2% and 0.6% at n = 60,000)."),
    "quick": ("`quick` checks the machinery at MNIST subsets: C3 and C4 are judged at n = 10,000 against "
              "kernelgen's own earlier exact values at that size (plus an independent dense float64 solve at a "
              "subset), not against the papers' 60,000-image numbers; only `--budget full` tests those. A pass "
              "means what the \"checked at this budget\" column says."),
    "full": ("`full` runs the papers' settings: the source's number is shown beside the measured value where "
             "this budget tests it."),
}


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


def budget_banner(budget: str) -> str:
    """One sentence: what a run at ``budget`` checks (and, below ``full``, that it is not the papers' numbers)."""
    return _BANNERS.get(budget, "")


def source_cell(claim: Claim, budget: str) -> str:
    """The source's number for the table: shown only where this budget tested it."""
    return source_text(claim.source_value, claim.scales[budget].source_tested, budget)


def source_text(source_value: str, tested: bool, budget: str) -> str:
    """``source_value``, or "not tested at this budget" when the run did not test it (a dash stays a dash)."""
    if tested or str(source_value).strip() in ("", "—", "-", "--"):
        return source_value
    return f"not tested at `{budget}` (`full` tests it)"


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
        "checked": scale.checked, "source_tested": bool(scale.source_tested), "details": res.details,
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


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file and a rename)."""
    atomic_write(path, lambda f: f.write(text), binary=False)


def write_report(out_dir: Path, budget: str, claims: list[Claim], results: list[Result], prov: dict,
                 *, command: str, wall_s: float, interrupted: dict | None = None) -> tuple[Path, Path]:
    """Write ``REPORT.md`` and ``report.json`` into ``out_dir``; return their paths.

    Parameters
    ----------
    out_dir : path-like
    budget : {"smoke", "quick", "full"}
    claims : list of Claim
    results : list of Result
        One per claim, same order.
    prov : dict
        :func:`kernelgen.provenance` of the run.
    command : str
        The command line, for the report's header.
    wall_s : float
    interrupted : dict, optional
        Set when the run was interrupted: ``{"signal", "exit_status", "during", "not_run", "completed"}``.
        The report then says so at its top and in ``report.json`` (``"status": "interrupted"``).

    Raises
    ------
    NonFiniteResultError
        A NaN/inf anywhere in the records (never written as a result).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [claim_record(c, r, budget, out_dir) for c, r in zip(claims, results)]
    status = "interrupted" if interrupted else "complete"
    obj = _jsonable({"budget": budget, "status": status, "interrupted": interrupted,
                     "banner": budget_banner(budget), "command": command, "wall_seconds": wall_s,
                     "provenance": prov, "claims": records}, "report")
    js = out_dir / "report.json"

    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    line = (f"`{command}` — {len(results)} claims: {counts['pass']} pass, {counts['fail']} fail, "
            f"{counts['not reproduced']} not reproduced")
    if interrupted:
        line += f", {counts[INTERRUPTED]} interrupted, {counts[NOT_RUN]} not run"
    L = [f"# kernelgen claims — `{budget}` budget" + (" — INTERRUPTED" if interrupted else ""), ""]
    if interrupted:
        during = ", ".join(interrupted.get("during") or []) or "between claims"
        L += [(f"> **INTERRUPTED** by {interrupted['signal']} (during: {during}); exit status "
               f"{interrupted['exit_status']}. This report is partial: claims marked `interrupted` or `not run` "
               "were not completed and have no verdict; only the claims with another verdict ran to their end."), ""]
    L += [f"> **What this budget checks.** {budget_banner(budget)}", "",
          line + f"; {wall_s:.0f} s wall.", "", "## Provenance", ""]
    L += _provenance_lines(prov)
    L += ["", "## Claims at a glance", "",
          "| id | claim | checked at this budget | source value | measured | verdict | seconds |",
          "|---|---|---|---|---|---|---|"]
    for c, r in zip(claims, results):
        L.append(f"| [{c.id}](#{c.id.lower()}) | {_cell(c.title)} | {_cell(c.scales[budget].checked)} | "
                 f"{_cell(source_cell(c, budget))} | {_cell(format_measured(r))} | **{r.verdict}** | {r.seconds:.1f} |")
    index = {c.id: (c, r, rec) for c, r, rec in zip(claims, results, records)}
    for paper, ids in by_paper([c.id for c in claims]):
        L += ["", f"## {paper}"]
        for cid in ids:
            c, r, rec = index[cid]
            sc = c.scales[budget]
            tested = "tested at this budget" if sc.source_tested else f"NOT tested at `{budget}` (`full` tests it)"
            L += ["", f"### {c.id}", "", f"**{c.title}** — {c.statement}", "",
                  f"- source: {c.source}; source value: {c.source_value} ({tested})",
                  f"- quantity: {c.quantity}",
                  f"- checked at this budget: {sc.checked}",
                  f"- scale ({budget}): `{json.dumps(_jsonable(dict(sc.params), 'scale'))}`",
                  f"- criterion: {sc.criterion} — {sc.why}",
                  f"- measured: {format_measured(r)}",
                  f"- verdict: **{r.verdict}** — {r.reason}",
                  f"- seconds: {r.seconds:.1f}",
                  f"- rerun alone: `python -m kernelgen.verify --budget {budget} --only {c.id}`"]
            if rec["figure"]:
                L += ["", f"![{c.id}]({rec['figure']})"]
    md = out_dir / "REPORT.md"
    _write_atomic(js, json.dumps(obj, indent=1, allow_nan=False) + "\n")
    _write_atomic(md, "\n".join(L) + "\n")
    return md, js
