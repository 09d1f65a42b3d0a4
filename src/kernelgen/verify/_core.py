"""Types and statistics of the claims registry: :class:`Claim`, :class:`Scale`, :class:`Result`,
:class:`Context`, binomial intervals and the rule that turns a run into a verdict.

A claim's run function receives a :class:`Context` (budget, its :class:`Scale`'s parameters, the
output directory, a cache shared between claims) and returns a :class:`Result`. The runner
(:func:`run_claim`) times it, and turns exceptions into verdicts: a missing data set
(:class:`~kernelgen.errors.DataUnavailableError`) is ``not reproduced`` (the setting could not be
built), any other exception -- including NaN/inf, which kernelgen raises as
:class:`~kernelgen.errors.NonFiniteResultError` -- is ``fail`` (the computation broke).
``KeyboardInterrupt`` is not a verdict of the claim: it propagates to the runner, which marks the
claim ``interrupted`` and every claim after it ``not run`` (:mod:`kernelgen._interrupt`).
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ..cli import _jsonable
from ..errors import DataUnavailableError, InvalidInputError, NonFiniteResultError
from .._interrupt import InterruptGuard

__all__ = [
    "BUDGETS",
    "FAIL",
    "INTERRUPTED",
    "NOT_REPRODUCED",
    "NOT_RUN",
    "PASS",
    "VERDICTS",
    "Claim",
    "Context",
    "Result",
    "Scale",
    "clopper_pearson",
    "run_claim",
    "spearman",
    "two_proportion_z",
    "wilson",
]

log = logging.getLogger("kernelgen.verify")

PASS, FAIL, NOT_REPRODUCED = "pass", "fail", "not reproduced"
#: a claim that was running when the run was interrupted, and one the interrupted run never started
INTERRUPTED, NOT_RUN = "interrupted", "not run"
VERDICTS = (PASS, FAIL, NOT_REPRODUCED, INTERRUPTED, NOT_RUN)
BUDGETS = ("smoke", "quick", "full")


# ---------------------------------------------------------------------------------------------- statistics
def wilson(errors: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``errors / n``.

    Parameters
    ----------
    errors, n : int
        Count of errors and of trials (``0 <= errors <= n``, ``n >= 1``).
    level : float
        Two-sided coverage.

    Returns
    -------
    (float, float)
        Lower and upper end, in [0, 1].

    Raises
    ------
    InvalidInputError
        Counts out of range.

    References
    ----------
    E. B. Wilson, "Probable inference, the law of succession, and statistical inference", JASA 22 (1927).
    """
    errors, n = int(errors), int(n)
    if n < 1 or not 0 <= errors <= n:
        raise InvalidInputError(f"need 0 <= errors <= n and n >= 1, got {errors}, {n}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = errors / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the interval contains p exactly; at 0 or n errors rounding could put an end a few ulps past it
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def clopper_pearson(errors: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper--Pearson) interval of a binomial proportion, from Beta quantiles.

    Same parameters, returns and errors as :func:`wilson`.

    References
    ----------
    C. J. Clopper, E. S. Pearson, Biometrika 26 (1934).
    """
    errors, n = int(errors), int(n)
    if n < 1 or not 0 <= errors <= n:
        raise InvalidInputError(f"need 0 <= errors <= n and n >= 1, got {errors}, {n}")
    a = (1 - level) / 2
    lo = 0.0 if errors == 0 else float(stats.beta.ppf(a, errors, n - errors + 1))
    hi = 1.0 if errors == n else float(stats.beta.ppf(1 - a, errors + 1, n - errors))
    return lo, hi


def two_proportion_z(e1: int, n1: int, e2: int, n2: int) -> float:
    """Pooled two-proportion z statistic of ``e1/n1 - e2/n2`` (0 when both are 0 or 1)."""
    p = (e1 + e2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return 0.0 if se == 0 else (e1 / n1 - e2 / n2) / se


def spearman(x, y) -> float:
    """Spearman rank correlation of two equal-length sequences (scipy; ties get mid-ranks)."""
    r = stats.spearmanr(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).statistic
    return float(r)


# ---------------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class Scale:
    """What one budget runs for a claim, and how it is judged.

    Attributes
    ----------
    params : mapping
        Keyword parameters of the run function at this budget (sizes, steps, seeds).
    criterion : str
        The pass criterion, in words (the run function applies it).
    why : str
        One-line justification of the criterion / tolerance.
    estimate_s : float
        Expected seconds on the project's 2-core machine (for ``--dry-run``).
    checked : str
        What this budget actually checks, in a few words for the report's table (data, scale, and
        the reference the measured value is compared with -- e.g. "independent dense float64 solve,
        n = 300"), so that a pass is never read as more than it is.
    source_tested : bool
        Whether the measured value is a test of the source's own number (or statement) in its own
        setting. When False, the report does not show the source's number beside the measured value
        as if it had been tested (it says "not tested at this budget" and points to ``full``).
    """

    params: Mapping[str, Any]
    criterion: str
    why: str
    estimate_s: float
    checked: str = ""
    source_tested: bool = False


@dataclass(frozen=True)
class Claim:
    """One registered claim.

    Attributes
    ----------
    id : str
        ``C1`` ... ``C10``.
    title : str
        Short name for the table.
    statement : str
        The claim as the source makes it.
    source : str
        Paper, section / equation.
    source_value : str
        The source's own number ("--" when it gives none).
    quantity : str
        What is measured (the ``measured`` value of the result), with its unit.
    scales : mapping of str to Scale
        One per budget (``smoke``, ``quick``, ``full``).
    run : callable
        ``run(ctx) -> Result``.
    shares : tuple of str
        Kinds of cached objects (first element of a :meth:`Context.cached` key) the run reuses or
        provides for other claims; the runner keeps them only while a remaining claim shares them.
    """

    id: str
    title: str
    statement: str
    source: str
    source_value: str
    quantity: str
    scales: Mapping[str, Scale]
    run: Callable[[Context], Result]
    shares: tuple[str, ...] = ()


@dataclass
class Result:
    """What a claim's run measured, and its verdict.

    Attributes
    ----------
    verdict : str
        One of :data:`VERDICTS`.
    measured : float or None
        The claim's quantity (``None`` when nothing was measured).
    reason : str
        Why this verdict (numbers against the criterion).
    interval : (float, float) or None
        Uncertainty of ``measured``; ``interval_kind`` says which.
    interval_kind : str
    unit : str
        ``"%"`` values are stored as fractions and shown as percentages.
    details : dict
        Further measured numbers (JSON-able), for report.json.
    figure : pathlib.Path or None
    seconds : float
        Filled by :func:`run_claim`.
    """

    verdict: str
    measured: float | None
    reason: str
    interval: tuple[float, float] | None = None
    interval_kind: str = ""
    unit: str = ""
    details: dict = field(default_factory=dict)
    figure: Path | None = None
    seconds: float = 0.0

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise InvalidInputError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.measured is not None and not math.isfinite(float(self.measured)):
            # NaN/inf is an error, never a result
            self.verdict, self.reason = FAIL, f"measured value is {self.measured} (NaN/inf): {self.reason}"
            self.measured = None


@dataclass
class Context:
    """What a run function gets: budget, parameters, output directory, shared cache, seed.

    ``cache`` lives for one ``main`` call: claims that need the same data or the same kernel system
    (C3 and C5 at the same n; C8 and C9 on one eigendecomposition) compute it once. ``interrupt`` is
    the run's :class:`~kernelgen._interrupt.InterruptGuard` (``None`` outside a run): claims
    call :meth:`checkpoint` between their phases.
    """

    budget: str
    params: Mapping[str, Any]
    out_dir: Path
    seed: int = 0
    data_home: str | None = None
    cache: dict = field(default_factory=dict)
    quiet: bool = False
    interrupt: InterruptGuard | None = None

    def checkpoint(self) -> None:
        """Raise ``KeyboardInterrupt`` if the run was interrupted, even by a signal something swallowed.

        Claims call it between their phases (checks, label draws, corruption levels), so that a
        Ctrl-C whose ``KeyboardInterrupt`` was lost in a callback still ends the claim there.
        """
        if self.interrupt is not None:
            self.interrupt.check()

    def cached(self, key, make: Callable[[], Any]):
        """``cache[key]``, computed by ``make()`` the first time (the reuse is logged)."""
        if key in self.cache:
            log.info("reusing %s", key if isinstance(key, str) else key[0])
            return self.cache[key]
        value = make()
        self.cache[key] = value
        return value

    def figure_path(self, claim_id: str) -> Path:
        return self.out_dir / "figures" / f"{claim_id}.png"


def run_claim(claim: Claim, ctx: Context) -> Result:
    """Run one claim at ``ctx.budget``: time it and turn exceptions into verdicts (see module text).

    ``KeyboardInterrupt`` (and ``SystemExit``) propagate: an interrupt is the run's outcome, not the claim's.
    """
    t0 = time.perf_counter()
    try:
        res = claim.run(ctx)
    except DataUnavailableError as exc:
        res = Result(NOT_REPRODUCED, None, f"data unavailable: {exc}".splitlines()[0])
    except Exception as exc:  # noqa: BLE001 -- a claim whose computation raises has failed at this scale
        log.debug("claim %s raised:\n%s", claim.id, traceback.format_exc())
        res = Result(FAIL, None, f"{type(exc).__name__}: {exc}".splitlines()[0][:400])
    try:
        res.details = _jsonable(res.details, "details")
    except NonFiniteResultError as exc:  # NaN/inf is an error, never a result
        res.verdict, res.reason = FAIL, f"{exc} ({res.reason})"
        res.details = {"non_finite": str(exc)}
    res.seconds = time.perf_counter() - t0
    return res
