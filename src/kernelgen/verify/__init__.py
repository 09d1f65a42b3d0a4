"""One command verifies every claim: ``python -m kernelgen.verify`` writes REPORT.md, report.json and figures.

Usage::

    python -m kernelgen.verify                         # quick budget (<= 25 min on 2 cores), all claims
    python -m kernelgen.verify --budget smoke          # seconds; what the default test suite runs
    python -m kernelgen.verify --budget full --dry-run # what the paper-scale run would do, and how long
    python -m kernelgen.verify --only C3,C6 --out DIR  # some claims only
    python -m kernelgen.verify --merge D1 D2 --out DIR # one report from separate runs (oldest first)
    kernelgen-verify ...                               # the same, as a console script

Every claim (C1-C21) is registered once, in :mod:`kernelgen.verify._registry`, with its statement,
source (paper, section / equation), the source's number, the quantity measured and, for each budget,
the scale run, what that scale checks (the report's "checked at this budget" column) and the pass
criterion with a one-line justification. ``smoke`` and ``quick`` check the machinery (tiny scales,
subsets, references at the same size); only ``full`` tests the papers' numbers, and the report shows
a source's number beside a measured value only where that budget tested it. Verdicts: ``pass``,
``fail`` (the computation contradicts the claim at the stated scale, or broke), ``not reproduced``
(the setting could not be built, e.g. MNIST unavailable; the reason is given), ``interrupted`` (the
claim was running when SIGINT / SIGTERM arrived) and ``not run`` (the interrupted run never started
it). A ``fail`` makes the exit status 1; an interrupt (SIGINT or SIGTERM) ends the run with 130 and
a partial report marked interrupted; a usage error exits 2 (argparse), a named kernelgen error
outside any claim exits 2 with one line (:func:`kernelgen.cli.run`).

The experiment helpers that the claims and the scripts share are exported here
(:func:`corrupt_labels`, :func:`median_distance`, :func:`synthetic_design`, :func:`gabor_selection`,
:data:`GABOR_BANDWIDTH_MULT`), so that ``scripts/`` and the claims compute the same things.

Library code logs and never prints; :func:`main` prints the summary table and, last, one JSON line
(``kernelgen.cli.emit``, with provenance).
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path

from .. import cli
from ..provenance import provenance
from ._claims_data import (
    GABOR_BANDWIDTH_MULT,
    corrupt_labels,
    gabor_selection,
    median_distance,
    synthetic_classes,
    synthetic_design,
)
from ._merge import merge_reports
from ._core import (
    BUDGETS,
    FAIL,
    INTERRUPTED,
    NOT_RUN,
    VERDICTS,
    Claim,
    Context,
    Result,
    Scale,
    clopper_pearson,
    run_claim,
    spearman,
    wilson,
)
from .._interrupt import InterruptGuard
from ._registry import CLAIMS, REGISTRY, RUN_ORDER, get
from ._report import budget_banner, format_measured, write_report

__all__ = [
    "BUDGETS",
    "CLAIMS",
    "GABOR_BANDWIDTH_MULT",
    "INTERRUPTED",
    "NOT_RUN",
    "REGISTRY",
    "VERDICTS",
    "Claim",
    "Context",
    "InterruptGuard",
    "Result",
    "Scale",
    "build_parser",
    "clopper_pearson",
    "corrupt_labels",
    "gabor_selection",
    "get",
    "main",
    "median_distance",
    "merge_reports",
    "run_claims",
    "spearman",
    "synthetic_classes",
    "synthetic_design",
    "wilson",
]

log = logging.getLogger("kernelgen.verify")


def build_parser() -> cli.ScriptParser:
    """The ``python -m kernelgen.verify`` parser (shared options from :func:`kernelgen.cli.make_parser`)."""
    epilog = "claims:\n" + "\n".join(f"  {c.id:4s} {c.title}" for c in CLAIMS)
    p = cli.make_parser(__doc__.split("\n\n")[0], script="kernelgen.verify", seed=0,
                        seed_help="base seed of every random draw (feature maps, SGD keys, label corruption)",
                        data_home=True, epilog=epilog)
    p.prog = "python -m kernelgen.verify"
    p.add_argument("--budget", choices=BUDGETS, default=None,
                   help="smoke: seconds, tiny scales; quick (default): MNIST claims on 10,000-image subsets "
                        "(minutes); full: paper scale (60,000 images, the Gabor run, all seeds)")
    p.add_argument("--only", default=None, metavar="IDS",
                   help="comma-separated claim ids, e.g. C3,C6 (default: all claims)")
    p.add_argument("--out", type=Path, default=Path("results/verify"), metavar="DIR",
                   help="directory for REPORT.md, report.json and figures/ (created if missing)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="DIR",
                   help="run nothing: merge the report.json of these report directories (oldest first; a later "
                        "run of a claim replaces an earlier one) into --out, one REPORT.md grouped by paper")
    p.add_argument("--dry-run", action="store_true",
                   help="list the claims, scales, criteria and estimated seconds; run nothing")
    return p


def _select(only: str | None) -> list[Claim]:
    if only is None:
        return list(CLAIMS)
    ids = [s for s in (t.strip() for t in only.split(",")) if s]
    if not ids:
        raise KeyError("--only needs at least one claim id")
    out = []
    for i in ids:
        c = get(i)
        if c not in out:
            out.append(c)
    return out


def run_claims(claims: list[Claim], budget: str, out_dir: Path, *, seed: int = 0, data_home=None,
               quiet: bool = False, interrupt: InterruptGuard | None = None) -> list[Result]:
    """Run ``claims`` at ``budget`` (in :data:`RUN_ORDER`), sharing one cache; return their results.

    SIGINT / SIGTERM are recorded for the duration (:class:`~kernelgen._interrupt.InterruptGuard`,
    previous handlers restored afterwards). After an interrupt -- even one whose ``KeyboardInterrupt``
    was swallowed inside a claim (e.g. in a JAX callback, "Exception ignored in ...") -- the claim that
    was running is ``interrupted`` (whatever it returned; its own outcome is kept in ``details`` as
    ``"before_interrupt"``, not as a result) and every claim not yet started is ``not run``.

    Parameters
    ----------
    claims : list of Claim
    budget : {"smoke", "quick", "full"}
    out_dir : path-like
        Figures go to ``out_dir / "figures"``.
    seed : int
        Base seed passed to every claim.
    data_home : str, optional
        MNIST cache directory.
    quiet : bool
        No progress bars.
    interrupt : InterruptGuard, optional
        The caller's guard (:func:`main` passes its own, so that it also covers writing the report);
        default: a new one for this call. ``interrupt.interrupted`` tells whether the run was cut short.

    Returns
    -------
    list of Result
        Same order as ``claims`` (not the run order); each has its verdict and seconds.
    """
    guard = InterruptGuard() if interrupt is None else interrupt
    cache: dict = {}
    results: dict[str, Result] = {}
    order = sorted(claims, key=lambda c: RUN_ORDER.index(c.id) if c.id in RUN_ORDER else len(RUN_ORDER))
    current, started = None, 0.0
    with guard:
        bar = cli.progress(order, quiet=quiet, desc=f"verify ({budget})", unit="claim")
        try:
            with guard.raising():
                for i, claim in enumerate(bar):
                    guard.check()  # an interrupt between two claims, or one swallowed in the last claim
                    if hasattr(bar, "set_postfix_str"):
                        bar.set_postfix_str(claim.id)
                    ctx = Context(budget, claim.scales[budget].params, Path(out_dir), seed=seed,
                                  data_home=data_home, cache=cache, quiet=quiet, interrupt=guard)
                    log.info("%s: %s (%s budget) ...", claim.id, claim.title, budget)
                    current, started = claim, time.perf_counter()
                    res = run_claim(claim, ctx)
                    if guard.interrupted:  # the claim returned, but an interrupt landed while it ran
                        res = _interrupted(res, guard)
                    results[claim.id] = res
                    current = None
                    log.info("%s: %s in %.1f s — %s", claim.id, res.verdict, res.seconds, res.reason)
                    guard.check()
                    # free cached systems (factors) that no remaining claim shares; the data sets stay
                    needed = {kind for c in order[i + 1:] for kind in c.shares} | {"mnist"}
                    for key in [k for k in cache if isinstance(k, tuple) and k[0] not in needed]:
                        log.info("releasing %s", key[0])
                        del cache[key]
        except KeyboardInterrupt:
            guard.note()  # a KeyboardInterrupt that did not come through the handler is an interrupt too
            if current is not None and current.id not in results:
                results[current.id] = Result(
                    INTERRUPTED, None, f"interrupted by {guard.signal_name} while this claim ran",
                    seconds=time.perf_counter() - started)
        finally:
            if hasattr(bar, "close"):
                bar.close()
    if guard.interrupted:
        log.warning("interrupted by %s: %d of %d claims completed; the rest are marked interrupted / not run",
                    guard.signal_name, sum(r.verdict not in (INTERRUPTED, NOT_RUN) for r in results.values()),
                    len(claims))
    for c in claims:
        if c.id not in results:
            results[c.id] = Result(NOT_RUN, None, f"not run: the run was interrupted by {guard.signal_name} "
                                                  "before this claim started")
    return [results[c.id] for c in claims]


def _interrupted(res: Result, guard: InterruptGuard) -> Result:
    """The result of a claim that returned although an interrupt landed while it ran: not a verdict."""
    before = {"verdict": res.verdict, "measured": res.measured, "reason": res.reason}
    return Result(INTERRUPTED, None,
                  f"interrupted by {guard.signal_name} while this claim ran (the interrupt was swallowed inside "
                  f"it; its unfinished outcome '{res.verdict}' is not a result)",
                  details={**res.details, "before_interrupt": before}, seconds=res.seconds)


def _dry_run(claims, budget):
    total = 0.0
    rows = []
    for c in claims:
        sc = c.scales[budget]
        total += sc.estimate_s
        print(f"{c.id:4s} {c.title}")
        print(f"     scale: {dict(sc.params)}")
        print(f"     criterion: {sc.criterion}")
        print(f"     why: {sc.why}")
        print(f"     estimated: {sc.estimate_s:.0f} s")
        rows.append({"id": c.id, "scale": dict(sc.params), "criterion": sc.criterion, "estimate_s": sc.estimate_s})
    print(f"total estimated: {total:.0f} s ({total / 60:.1f} min) on a 2-core machine")
    return rows, total


def _interruption(guard: InterruptGuard, claims, results) -> dict | None:
    """The report's record of an interrupt (``None`` when the run was not interrupted before its end)."""
    if not guard.interrupted:
        return None
    during = [c.id for c, r in zip(claims, results) if r.verdict == INTERRUPTED]
    return {"signal": guard.signal_name, "exit_status": guard.exit_status, "during": during,
            "not_run": [c.id for c, r in zip(claims, results) if r.verdict == NOT_RUN],
            "completed": [c.id for c, r in zip(claims, results) if r.verdict not in (INTERRUPTED, NOT_RUN)]}


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status.

    0: every claim ran and none failed; 1: a claim failed; 2: usage error; 130: the run was
    interrupted (SIGINT / Ctrl-C or SIGTERM) -- the partial report is written and marked so, the claim
    that was running is ``interrupted`` and the rest ``not run``, none of them pass.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    status = {"code": 0}

    def body(args):
        out_files = {(Path(args.out) / f).resolve() for f in ("report.json", "REPORT.md")}
        if args.merge is not None:
            out_files |= {(Path(m) / f).resolve() for m in args.merge for f in ("report.json", "REPORT.md")}
        if args.json_out is not None and Path(args.json_out).resolve() in out_files:
            parser.error(f"--json-out {args.json_out} would overwrite a report (the output's or a merged source's); "
                         "give the summary JSON another name")
        if args.merge is not None:
            bad = [f for f, given in (("--only", args.only is not None), ("--dry-run", args.dry_run),
                                      ("--budget", args.budget is not None)) if given]
            if bad:
                parser.error(f"--merge runs no claim: {', '.join(bad)} does not apply (the budget is the reports')")
            command = "python -m kernelgen.verify " + shlex.join(argv)
            md, js = merge_reports(args.merge, args.out, command=command)
            print(f"merged {len(args.merge)} report(s) into {md}")
            cli.emit({"merged": [str(m) for m in args.merge], "report": str(md), "report_json": str(js)},
                     json_out=args.json_out, seeds={"base": args.seed})
            return
        args.budget = args.budget or "quick"
        try:
            claims = _select(args.only)
        except KeyError as exc:
            parser.error(str(exc.args[0]))
        command = "python -m kernelgen.verify " + shlex.join(argv) if argv else "python -m kernelgen.verify"
        if args.seed is not None and args.seed < 0:
            parser.error(f"--seed must be a non-negative integer, got {args.seed}")
        if not args.dry_run:
            # the output directory is made (or refused) before any claim runs: a full budget is an hour of work
            try:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                probe = Path(args.out) / ".kernelgen-verify-write-test"
                probe.write_text("")
                probe.unlink()
            except OSError as exc:
                parser.error(f"--out {args.out}: cannot write there ({type(exc).__name__}: {exc})")
        if args.dry_run:
            rows, total = _dry_run(claims, args.budget)
            cli.emit({"budget": args.budget, "dry_run": True, "claims": rows, "estimated_seconds": total},
                     json_out=args.json_out, seeds={"base": args.seed})
            return
        t0 = time.perf_counter()
        # one guard for the claims AND the report: outside the claims a signal is only recorded, so a
        # second Ctrl-C cannot leave the partial report half-written
        with InterruptGuard() as guard:
            results = run_claims(claims, args.budget, args.out, seed=args.seed, data_home=args.data_home,
                                 quiet=args.quiet, interrupt=guard)
            wall = time.perf_counter() - t0
            interrupted = _interruption(guard, claims, results)
            prov = provenance(seeds={"base": args.seed})
            md, js = write_report(args.out, args.budget, claims, results, prov, command=command, wall_s=wall,
                                  interrupted=interrupted)
            print(budget_banner(args.budget))
            width = max(len(c.title) for c in claims)
            for c, r in zip(claims, results):
                print(f"{c.id:4s} {c.title:{width}s}  {r.verdict:15s} {r.seconds:7.1f} s  {format_measured(r)}"
                      f"  [checked: {c.scales[args.budget].checked}]")
            counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
            summary = (f"{counts['pass']} pass, {counts['fail']} fail, {counts['not reproduced']} not reproduced; "
                       f"{wall:.0f} s; report: {md}")
            if interrupted:
                summary = (f"INTERRUPTED by {interrupted['signal']}: {counts[INTERRUPTED]} interrupted, "
                           f"{counts[NOT_RUN]} not run; " + summary)
            print(summary)
            if interrupted:
                status["code"] = guard.exit_status
            else:
                status["code"] = 1 if counts[FAIL] else 0
            cli.emit({"budget": args.budget, "status": "interrupted" if interrupted else "complete",
                      "interrupted": interrupted, "out": str(args.out), "report": str(md), "report_json": str(js),
                      "counts": counts, "wall_seconds": wall,
                      "claims": [{"id": c.id, "verdict": r.verdict, "measured": r.measured, "seconds": r.seconds,
                                  "checked": c.scales[args.budget].checked}
                                 for c, r in zip(claims, results)]},
                     json_out=args.json_out, seeds={"base": args.seed})
        if guard.interrupted and not interrupted:  # the signal came after the report was complete
            log.warning("interrupted by %s after every claim completed; the report is complete", guard.signal_name)
            status["code"] = guard.exit_status

    rc = cli.run(body, parser, argv)
    return rc if rc else status["code"]
