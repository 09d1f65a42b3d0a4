"""``python -m kernelgen.proofs [module ...]`` (or ``python -m proofs`` from the repository root): run every
check, print a table, exit 1 on any failure."""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from . import claim, discover


def run(checks, *, stream=sys.stdout, verbose: bool = False) -> int:
    """Run ``(module, name, callable)`` checks; print one row each; return the exit code."""
    rows, failed = [], 0
    for module, name, check in checks:
        t0 = time.perf_counter()
        try:
            summary = str(check())
            status = "PASS"
        except Exception as exc:  # a proof that raises anything has failed
            status, failed = "FAIL", failed + 1
            summary = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if verbose:
                traceback.print_exc(file=stream)
        rows.append((status, f"{time.perf_counter() - t0:7.2f}s", f"{module}::{name}", summary))
    width = max((len(r[2]) for r in rows), default=10)
    print(f"{'status':6}  {'time':>8}  {'check':{width}}  summary", file=stream)
    for status, seconds, ident, summary in rows:
        print(f"{status:6}  {seconds:>8}  {ident:{width}}  {summary}", file=stream)
    print(f"{len(rows) - failed} passed, {failed} failed", file=stream)
    return 1 if failed or not rows else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}", description=__doc__)
    parser.add_argument("modules", nargs="*", help="only these proof modules (default: all)")
    parser.add_argument("--list", action="store_true", help="list checks and claims, run nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)
    known = {m for m, _, _ in discover()}
    unknown = sorted(set(args.modules) - known)
    if unknown:
        print(f"unknown proof module(s) {unknown}; known: {sorted(known)} (a module name, not module::check)",
              file=sys.stderr)
        return 2
    checks = discover(args.modules or None)
    if args.list:
        for module, name, check in checks:
            print(f"{module}::{name}  {claim(check)}")
        return 0
    return run(checks, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
