"""An interrupted run is not a result: SIGINT / SIGTERM recorded for the whole run.

A ``KeyboardInterrupt`` that Python raises inside a callback it does not propagate (a garbage-
collection or finaliser callback, e.g. JAX's ``_xla_gc_callback``, reported as "Exception ignored
in ...") never reaches the caller, and code that catches it would go on and report a result.
Catching ``KeyboardInterrupt`` is therefore not enough: :class:`InterruptGuard` installs its own
SIGINT and SIGTERM handlers for the duration of a run. Each signal is *recorded* (the first
signal's number is kept) and, while the guard is :meth:`~InterruptGuard.raising`, also raised as
``KeyboardInterrupt`` in the main thread, as Python's default SIGINT handler does. The runner
checks the record when a phase ends (:meth:`InterruptGuard.check`): once set, the run ends
``interrupted`` whatever the phase returned. The previous handlers are restored when the guard
exits. Used by the scripts' :func:`kernelgen.cli.run` and by :mod:`kernelgen.verify` (after every
claim, and between a claim's phases through :meth:`kernelgen.verify.Context.checkpoint`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

__all__ = ["INTERRUPTED_EXIT_STATUS", "INTERRUPT_SIGNALS", "InterruptGuard"]

log = logging.getLogger(__name__)

#: The signals a run records as an interrupt (Ctrl-C, and the polite kill of a batch system).
INTERRUPT_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


#: Exit status of an interrupted run, SIGINT or SIGTERM alike (the shell's status for Ctrl-C), for the
#: scripts and for ``python -m kernelgen.verify``.
INTERRUPTED_EXIT_STATUS = 130


class InterruptGuard:
    """Record SIGINT / SIGTERM for the duration of a ``with`` block (re-entrant; main thread only).

    Attributes
    ----------
    signum : int or None
        The first signal received (``None``: not interrupted). Set also by :meth:`note` when a
        ``KeyboardInterrupt`` reaches the runner without passing through the handler.
    count : int
        How many signals were received.

    Notes
    -----
    Outside :meth:`raising` the handler only records (used while the partial report is written, so
    that a second Ctrl-C cannot leave it half-written). In a thread other than the main thread the
    guard installs nothing (Python allows signal handlers only there) and relies on
    ``KeyboardInterrupt`` reaching the runner.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._raise = False
        self._depth = 0
        self._previous: dict[int, object] = {}

    # -------------------------------------------------------------------------------- state
    @property
    def interrupted(self) -> bool:
        """Whether an interrupt was received (or noted)."""
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        """``"SIGINT"``, ``"SIGTERM"``, or ``""`` when not interrupted."""
        return "" if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """:data:`INTERRUPTED_EXIT_STATUS` (130) once interrupted, else 0."""
        return 0 if self.signum is None else INTERRUPTED_EXIT_STATUS

    def note(self, signum: int = signal.SIGINT) -> None:
        """Record an interrupt that arrived as a bare ``KeyboardInterrupt`` (no handler call)."""
        if self.signum is None:
            self.signum = int(signum)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if an interrupt was recorded (a swallowed one included)."""
        if self.signum is not None:
            raise KeyboardInterrupt(f"{self.signal_name} received earlier in this run")

    # -------------------------------------------------------------------------------- handler
    def _handler(self, signum, frame):  # noqa: ARG002 -- signal-handler signature
        # no logging here: a handler runs between two bytecodes of whatever the main thread was doing
        self.count += 1
        if self.signum is None:
            self.signum = int(signum)
        if self._raise:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextlib.contextmanager
    def raising(self):
        """While inside, a signal is also raised as ``KeyboardInterrupt`` (outside: recorded only)."""
        before = self._raise
        self._raise = True
        try:
            yield self
        finally:
            self._raise = before

    def __enter__(self) -> InterruptGuard:
        if self._depth == 0 and threading.current_thread() is threading.main_thread():
            for s in INTERRUPT_SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        elif self._depth == 0:
            log.debug("not in the main thread: interrupts are not recorded by a handler")
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            for s, prev in self._previous.items():
                # a handler installed from C reads as None: the default is the honest restoration
                signal.signal(s, signal.SIG_DFL if prev is None else prev)
            self._previous.clear()
