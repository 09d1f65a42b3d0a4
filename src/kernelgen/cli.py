"""One command-line layer for kernelgen's scripts and benchmarks.

Every script in ``scripts/`` (and the MNIST benchmark) does the same things around its science:
parse arguments, show progress, load MNIST scaled to [0, 1], one-hot its labels, save PNG
figures, turn kernelgen's named errors into one-line messages, and end with ONE JSON line of
metrics that carries :func:`kernelgen.provenance`. This module does them once.

What it provides
----------------
:func:`make_parser`
    An :class:`argparse.ArgumentParser` whose ``--help`` shows every default
    (:class:`HelpFormatter`), with the shared options in their own group:
    ``--json-out PATH``, ``--quiet``, ``--debug`` always; ``--seed``, ``--data-home``,
    ``--smoke``, ``--out-dir``, ``--blas-threads`` when the script asks for them.
:func:`run`
    Parses, checks every output path (:class:`OutputPath` options: the directory exists or can be
    created, and is writable) and the script's own ``check(args)`` BEFORE any work, configures
    logging (stderr; INFO for ``kernelgen`` and the script's own logger, WARNING with
    ``--quiet``), applies ``--blas-threads``, calls the script's body and turns a
    :class:`kernelgen.errors.KernelgenError` into ``error: <Name>: <message>`` on stderr and
    exit status 2 (argparse's usage-error status). ``--debug`` re-raises it with its
    traceback; any other exception keeps its traceback.
Interrupts
    :func:`run` installs SIGINT / SIGTERM handlers that record the signal and raise
    ``KeyboardInterrupt``. A run during which a signal arrived ends ``interrupted``, exit status
    130, even when the ``KeyboardInterrupt`` was swallowed inside a library callback ("Exception
    ignored in ..."): the flag is checked between phases (:func:`check_interrupted`, every item of
    :func:`progress`, :func:`save_figure`, :func:`emit`) and after the body returns. No metrics
    line is printed; ``--json-out`` is written as ``{"status": "interrupted", "signal": ...,
    "partial": <metrics emitted before the interrupt, or null>, "provenance": ...}``.
:func:`emit`
    Adds ``"status": "complete"`` and ``"provenance": kernelgen.provenance(seeds=..., rates=...)``,
    refuses NaN/inf (:class:`~kernelgen.errors.NonFiniteResultError` naming the key). Inside
    :func:`run` the line is held until the body has returned uninterrupted; then it is written to
    ``--json-out`` (atomically, directories created) and printed as the LAST line of stdout.
:func:`progress`
    A tqdm bar on stderr, disabled by ``--quiet``; checks for an interrupt at every item.
:func:`pyplot`, :func:`save_figure`
    Matplotlib with the Agg backend; save a figure as PNG atomically (directories created), close it.
:func:`given`, :func:`refuse_options`
    Which options the user gave on the command line; refuse those that do not apply
    (:class:`~kernelgen.errors.UnsupportedOptionError`, exit 2).
:func:`one_hot`, :func:`load_mnist_scaled`, :func:`peak_rss_gb`
    The helpers the scripts repeated: one-hot targets, MNIST subsets as float64 pixels / 255
    with int64 labels, peak resident memory in GB.

Adopting it in a script
-----------------------
A script keeps its science and its printed human summary; the rest is this template::

    \"\"\"What the script computes, for a user (this text is the --help description).\"\"\"
    import logging
    from kernelgen import cli

    log = logging.getLogger("my_script")          # the file's stem: INFO unless --quiet

    def build_parser():
        p = cli.make_parser(__doc__, script=__file__, seed=0, data_home=True,
                            smoke="synthetic data, seconds", out_dir="results/my_script")
        p.add_argument("--n-train", type=int, default=5000, help="first training images used")
        return p

    def _main(args):
        Xtr, ytr, Xte, yte = cli.load_mnist_scaled(n_train=args.n_train, data_home=args.data_home,
                                                   verbose=not args.quiet)
        Y = cli.one_hot(ytr, 10)
        ...                                        # the science; print the human summary
        cli.save_figure(fig, args.out_dir / "my_figure.png")
        cli.emit(metrics, json_out=args.json_out, seeds={"subset": args.seed})

    def main(argv=None):
        return cli.run(_main, build_parser(), argv)

    if __name__ == "__main__":
        raise SystemExit(main())

A script with options that only apply in some settings, or with numeric options that have a range,
passes ``check=`` to :func:`run`: ``cli.run(_main, build_parser(), argv, check=_check)`` where
``_check(args)`` raises a named error (``cli.refuse_options(args, ["bandwidth"], "the ReLU kernels
have no bandwidth")``, ``InvalidInputError`` for a value out of range) before any data are loaded.
A file the script writes itself is declared with ``type=cli.OutputPath()`` so that :func:`run`
checks it first; a long phase calls :func:`check_interrupted` when it ends.

Rules the parser enforces or expects: every option has a help text; an option whose default
is ``None`` says in words what ``None`` means (e.g. "default: all 10,000"), so no help reads
"default: None"; descriptions and help texts speak to users (no work-item references,
machine-specific timings or memory figures, which go stale).

Length: about 880 lines, kept whole: the output checks, the interrupt record and the held metrics
line share one run state (:func:`run`), and a script imports this one module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import resource
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write
from ._interrupt import INTERRUPTED_EXIT_STATUS, InterruptGuard
from .datasets import load_mnist
from .datasets._cache import writable_problem
from .errors import InvalidInputError, KernelgenError, NonFiniteResultError, UnsupportedOptionError
from .provenance import provenance

__all__ = [
    "ERROR_EXIT_STATUS",
    "INTERRUPTED_EXIT_STATUS",
    "HelpFormatter",
    "OutputPath",
    "ScriptParser",
    "check_interrupted",
    "check_output_path",
    "configure_logging",
    "emit",
    "format_error",
    "given",
    "interrupted",
    "load_mnist_scaled",
    "make_parser",
    "one_hot",
    "peak_rss_gb",
    "progress",
    "pyplot",
    "refuse_options",
    "run",
    "save_figure",
    "subset_rows",
    "write_text_atomic",
]

#: exit status for kernelgen's named errors (argparse uses 2 for usage errors)
ERROR_EXIT_STATUS = 2

_NO_SEED = object()


# ---------------------------------------------------------------------------------------------- parser
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` with every default shown and the description kept as written.

    ``(default: X)`` is appended to an option's help unless the help already says
    ``default`` itself, or the option is a flag (``store_true`` and friends take no value,
    so their default is "off").
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS or action.nargs == 0:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        return text


class OutputPath:
    """``type=`` of an option naming a file or directory the script writes; :func:`run` checks it first.

    Called by argparse on the option's string, it returns a :class:`pathlib.Path`; :func:`run`
    then calls :func:`check_output_path` on the parsed value (the default included) before the
    script's body runs, so a bad path costs nothing.

    Parameters
    ----------
    directory : bool
        The option names a directory (created if missing) rather than a file.
    create_parents : bool
        Missing parent directories are created when the file is written (``--json-out``); if
        False the parent directory must exist already (``--save``).
    """

    def __init__(self, *, directory: bool = False, create_parents: bool = True):
        self.directory = bool(directory)
        self.create_parents = bool(create_parents)

    def __call__(self, text: str) -> Path:
        return Path(text).expanduser()

    def __repr__(self) -> str:  # argparse names the type in "invalid <type> value" messages
        return "path"


def check_output_path(path, *, option: str = "path", directory: bool = False,
                      create_parents: bool = True) -> Path:
    """Check, before any work, that ``path`` can be written; return it as a :class:`pathlib.Path`.

    A file: it is not a directory, and its directory exists (or, with ``create_parents``, can be
    created: its nearest existing ancestor is a directory) and a file can be created there (a
    probe file is created and removed). A directory: the same for the directory itself.

    Parameters
    ----------
    path : str or path-like
    option : str
        The option's name, for the message (e.g. ``"--save"``).
    directory : bool
        ``path`` is a directory to write into (created if missing) rather than a file.
    create_parents : bool
        Missing directories above ``path`` will be created by the writer.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidInputError
        Naming the option, the path and why it cannot be written, with the remedy.
    """
    path = Path(path).expanduser()
    target = path if directory else path.parent
    if not directory and path.is_dir():
        raise InvalidInputError(f"{option} {path} is a directory; give a file name inside it.")
    if not create_parents and not target.exists():
        raise InvalidInputError(f"{option} {path}: the directory {target} does not exist; create it first or "
                                "choose another path.")
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise InvalidInputError(f"{option} {path}: {probe} is not a directory; choose another path.")
    why = writable_problem(probe)
    if why is not None:
        raise InvalidInputError(f"{option} {path}: cannot write in {probe} ({why}); choose a writable location.")
    return path


class ScriptParser(argparse.ArgumentParser):
    """An ArgumentParser that knows the script's logger name (the file's stem)."""

    def __init__(self, *args, logger_name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.logger_name = logger_name
        self.common = self.add_argument_group("common options")


def make_parser(
    description: str | None,
    *,
    script: str | Path | None = None,
    seed: int | None | object = _NO_SEED,
    seed_help: str = "seed of every random draw",
    data_home: bool = False,
    smoke: str | None = None,
    out_dir: str | Path | None = None,
    blas_threads: int | None | object = _NO_SEED,
    epilog: str | None = None,
) -> ScriptParser:
    """An argument parser with the shared options of kernelgen's scripts.

    Parameters
    ----------
    description : str or None
        The ``--help`` text, kept as written (pass the script's ``__doc__``); it should speak
        to users only.
    script : str or path-like, optional
        The script's ``__file__``: ``prog`` becomes its file name and its stem names the
        script's logger (``logging.getLogger(stem)`` logs at INFO unless ``--quiet``).
    seed : int or None, optional
        Add ``--seed`` (type int) with this default; omit the argument when no randomness enters.
        A default of ``None`` must be explained in ``seed_help``.
    seed_help : str
        Help text of ``--seed``.
    data_home : bool
        Add ``--data-home DIR`` (MNIST cache directory, default: ``$KERNELGEN_DATA`` or the user
        cache directory).
    smoke : str, optional
        Add ``--smoke`` with this help text (a seconds-long run, used by the tests).
    out_dir : str or path-like, optional
        Add ``--out-dir`` (a :class:`pathlib.Path`, checked writable by :func:`run`) for figures and
        tables, with this default.
    blas_threads : int or None, optional
        Add ``--blas-threads`` with this default; :func:`run` limits BLAS to that many threads
        (threadpoolctl) around the script's body. ``None`` leaves the libraries' default.
    epilog : str, optional
        Text after the options.

    Returns
    -------
    ScriptParser
        Always has ``--json-out``, ``--quiet`` and ``--debug``. Script-specific options added
        with ``parser.add_argument`` are listed before the common group.
    """
    name = Path(script).name if script is not None else None
    p = ScriptParser(
        prog=name,
        description=description,
        epilog=epilog,
        formatter_class=HelpFormatter,
        logger_name=Path(script).stem if script is not None else None,
    )
    c = p.common
    if smoke is not None:
        c.add_argument("--smoke", action="store_true", help=smoke)
    if seed is not _NO_SEED:
        c.add_argument("--seed", type=int, default=seed, help=seed_help)
    if data_home:
        c.add_argument("--data-home", default=None, metavar="DIR",
                       help="MNIST cache directory (default: $KERNELGEN_DATA, else the user cache directory)")
    if out_dir is not None:
        c.add_argument("--out-dir", type=OutputPath(directory=True), default=Path(out_dir), metavar="DIR",
                       help="directory for figures and tables (created if missing)")
    if blas_threads is not _NO_SEED:
        c.add_argument("--blas-threads", type=int, default=blas_threads, metavar="N",
                       help="BLAS threads for the dense linear algebra (threadpoolctl)"
                       + ("; default: the libraries' own" if blas_threads is None else ""))
    c.add_argument("--json-out", type=OutputPath(), default=None, metavar="PATH",
                   help="also write the final JSON line of metrics to PATH (default: stdout only)")
    c.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars and no INFO log messages (warnings and errors still go to stderr)")
    c.add_argument("--debug", action="store_true",
                   help="show the full traceback of kernelgen's errors instead of a one-line message")
    return p


# ---------------------------------------------------------------------------------------------- running
def configure_logging(*, quiet: bool, names: Sequence[str] = ("kernelgen",)) -> None:
    """Log to stderr: the named loggers at INFO (WARNING when ``quiet``), everything else at WARNING.

    Third-party libraries (JAX, matplotlib, pooch) stay at WARNING so that INFO means kernelgen's
    own progress messages.
    """
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)


def format_error(exc: BaseException) -> str:
    """``error: <ExceptionName>: <message>`` on one line (newlines in the message become spaces)."""
    msg = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return f"error: {type(exc).__name__}: {msg}" if msg else f"error: {type(exc).__name__}"


class _RunState:
    """What one :func:`run` records: its interrupts (:class:`~kernelgen._interrupt.InterruptGuard`), and
    the metrics lines held until the end."""

    def __init__(self):
        self.guard = InterruptGuard()
        self.pending: list[tuple[Path | None, str, dict]] = []


_STATE: _RunState | None = None  # the active run (None outside run())


def interrupted() -> bool:
    """Whether SIGINT / SIGTERM arrived during the active :func:`run` (False outside one)."""
    return _STATE is not None and _STATE.guard.interrupted


def check_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if the active run was interrupted (call it when a long phase ends).

    A ``KeyboardInterrupt`` raised inside a callback that Python does not propagate ("Exception
    ignored in ...") is lost, but the signal is recorded; this re-raises it, so the run stops at
    the next phase instead of finishing and reporting a result.

    Raises
    ------
    KeyboardInterrupt
        A signal was recorded during the active run.
    """
    if _STATE is not None:
        _STATE.guard.check()


def _given_dests(parser: argparse.ArgumentParser, argv) -> frozenset:
    """The ``dest`` of every option present on the command line (parsed again without defaults)."""
    unset = object()
    ns = argparse.Namespace(**{a.dest: unset for a in parser._actions if a.dest != argparse.SUPPRESS})
    parser.parse_known_args(argv, namespace=ns)
    return frozenset(k for k, v in vars(ns).items() if v is not unset)


def given(args: argparse.Namespace) -> frozenset:
    """The ``dest`` names of the options given on the command line (empty outside :func:`run`)."""
    return getattr(args, "_given_options", frozenset())


def refuse_options(args: argparse.Namespace, dests: Iterable[str], reason: str) -> None:
    """Refuse options that do not apply: raise if any of ``dests`` was given on the command line.

    Parameters
    ----------
    args : argparse.Namespace
        As :func:`run` passes it to ``check``.
    dests : iterable of str
        Option ``dest`` names (``"bandwidth"`` for ``--bandwidth``).
    reason : str
        Why they do not apply, e.g. ``"with --kernel relu_ntk (it has no bandwidth)"``.

    Raises
    ------
    UnsupportedOptionError
        Naming the options given and the reason (exit status 2 under :func:`run`).
    """
    bad = [d for d in dests if d in given(args)]
    if bad:
        names = ", ".join("--" + d.replace("_", "-") for d in bad)
        raise UnsupportedOptionError(f"{names} {'does' if len(bad) == 1 else 'do'} not apply {reason}; "
                                     "leave it out.")


def _check_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for action in parser._actions:
        value = getattr(args, action.dest, None) if isinstance(action.type, OutputPath) else None
        if value is not None:
            check_output_path(value, option=action.option_strings[-1], directory=action.type.directory,
                              create_parents=action.type.create_parents)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (mode 0644; missing directories are created)."""
    return atomic_write(path, lambda f: f.write(text), binary=False, mode=0o644, make_parents=True)


def _finish_interrupted(state: _RunState, args, prog: str | None) -> int:
    """Report an interrupted run: one stderr line, and ``--json-out`` marked interrupted."""
    state.guard.note()  # a bare KeyboardInterrupt (no handler call) counts as SIGINT
    name = state.guard.signal_name
    json_out = getattr(args, "json_out", None)
    if json_out is not None:
        partial = state.pending[-1][2] if state.pending else None
        obj = {"status": "interrupted", "signal": name, "script": prog, "partial": partial,
               "provenance": _jsonable(provenance(), "provenance")}
        with contextlib.suppress(OSError):
            write_text_atomic(json_out, json.dumps(obj, allow_nan=False) + "\n")
    sys.stdout.flush()
    print(f"interrupted: {name} arrived during the run; no result was produced (exit status "
          f"{INTERRUPTED_EXIT_STATUS})" + (f"; {json_out} is marked interrupted" if json_out is not None else ""),
          file=sys.stderr, flush=True)
    return INTERRUPTED_EXIT_STATUS


def run(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None, *, check: Callable[[argparse.Namespace], Any] | None = None) -> int:
    """Parse ``argv``, check outputs and options, run ``main(args)``; clean named errors and interrupts.

    Parameters
    ----------
    main : callable
        The script's body, called with the parsed namespace. Its return value is ignored.
    parser : argparse.ArgumentParser
        Normally from :func:`make_parser` (it must define ``--quiet`` and ``--debug``).
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).
    check : callable, optional
        ``check(args)``, called before ``main`` (after every :class:`OutputPath` option is checked):
        raises a named error for an option out of range or one that does not apply
        (:func:`refuse_options`), before any data are loaded.

    Returns
    -------
    int
        0 on success; 2 when ``check`` or ``main`` raised a :class:`~kernelgen.errors.KernelgenError`
        (or an output path cannot be written), after printing :func:`format_error` of it to stderr;
        130 when SIGINT or SIGTERM arrived during the run (see the module's "Interrupts"). Pass it
        to ``SystemExit``.

    Raises
    ------
    KernelgenError
        Re-raised with its traceback under ``--debug``.
    Exception
        Anything that is not a named kernelgen error propagates unchanged (with its traceback),
        unless the run was interrupted.
    SystemExit
        From argparse on a usage error (status 2) or ``--help`` (status 0).
    """
    global _STATE
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._given_options = _given_dests(parser, argv)
    names = ["kernelgen"]
    if getattr(parser, "logger_name", None):
        names.append(parser.logger_name)
    configure_logging(quiet=bool(getattr(args, "quiet", False)), names=names)
    threads = getattr(args, "blas_threads", None)
    if threads is not None:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=int(threads))
    else:
        limiter = contextlib.nullcontext()
    state, outer = _RunState(), _STATE
    _STATE = state
    try:
        with state.guard:
            try:
                with state.guard.raising():
                    _check_outputs(parser, args)
                    if check is not None:
                        check(args)
                    with limiter:
                        main(args)
                state.guard.check()  # a KeyboardInterrupt swallowed inside main still ends the run
                # from here a signal is recorded only: the lines are written whole
                for json_out, line, _ in state.pending:
                    if json_out is not None:
                        write_text_atomic(json_out, line + "\n")
                    sys.stdout.flush()
                    print(line, flush=True)
            except KeyboardInterrupt:
                return _finish_interrupted(state, args, parser.prog)
            except KernelgenError as exc:
                if state.guard.interrupted:
                    return _finish_interrupted(state, args, parser.prog)
                if getattr(args, "debug", False):
                    raise
                sys.stdout.flush()
                print(format_error(exc), file=sys.stderr, flush=True)
                return ERROR_EXIT_STATUS
            except Exception:
                if state.guard.interrupted:  # an error caused by the interrupt is the interrupt
                    return _finish_interrupted(state, args, parser.prog)
                raise
    finally:
        _STATE = outer
    return 0


# ---------------------------------------------------------------------------------------------- output
def _jsonable(obj: Any, path: str) -> Any:
    """Convert NumPy scalars/arrays and paths for JSON; raise on NaN/inf with the key path."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                if isinstance(k, (int, float, bool, np.integer, np.floating)) or k is None:
                    k = str(k.item() if isinstance(k, np.generic) else k)
                else:
                    raise InvalidInputError(f"metrics key {k!r} at {path} is not a string")
            out[k] = _jsonable(v, f"{path}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), path)
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), path)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        raise NonFiniteResultError(f"metric {path} is {obj}: NaN/inf is never a result")
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise InvalidInputError(f"metric {path} has type {type(obj).__name__}, which JSON cannot hold")


def emit(metrics: Mapping[str, Any], *, json_out: str | Path | None = None, seeds: Mapping | None = None,
         rates: Mapping | None = None) -> dict:
    """The final JSON line (with status and provenance): the last line of stdout, also written to ``json_out``.

    Parameters
    ----------
    metrics : mapping
        The script's metrics. NumPy scalars and arrays and :class:`pathlib.Path` values are
        converted; it must not contain ``"provenance"`` (added here). ``"status"`` is added as
        ``"complete"`` unless the metrics state their own.
    json_out : str or path-like, optional
        File to write the same line to (plus a newline), atomically; parent directories are created.
    seeds, rates : mapping, optional
        Passed to :func:`kernelgen.provenance`: every seed that entered the run, by use, and
        rates measured in the run (GFLOP/s).

    Returns
    -------
    dict
        The object written (``metrics`` plus ``"status"`` and ``"provenance"``), as JSON would read it back.

    Raises
    ------
    NonFiniteResultError
        A metric is NaN or infinite (named by its key path); nothing is written.
    InvalidInputError
        ``metrics`` already has a ``"provenance"`` key, or holds a value JSON cannot represent.
    KeyboardInterrupt
        The active :func:`run` was interrupted: nothing is written or printed.

    Notes
    -----
    Inside :func:`run` the line is held and written when the script's body has returned without
    an interrupt or error, so a result is printed only for a run that finished. Outside
    :func:`run` it is written at once.
    """

    if "provenance" in metrics:
        raise InvalidInputError("metrics already has a 'provenance' key; emit() adds it")
    obj = {"status": "complete", **_jsonable(dict(metrics), "metrics")}
    obj["provenance"] = _jsonable(provenance(seeds=seeds, rates=rates), "provenance")
    line = json.dumps(obj, allow_nan=False)
    check_interrupted()
    if _STATE is not None:  # written by run() once the body has returned uninterrupted
        _STATE.pending.append((None if json_out is None else Path(json_out), line, obj))
        return obj
    if json_out is not None:
        write_text_atomic(Path(json_out), line + "\n")
    sys.stdout.flush()
    print(line, flush=True)
    return obj


def progress(iterable: Iterable | None = None, *, quiet: bool = False, **kwargs):
    """A tqdm progress bar on stderr, disabled when ``quiet`` (pass ``args.quiet``).

    Keyword arguments go to :class:`tqdm.tqdm` (``desc``, ``total``, ``unit``, ...). Iterating
    calls :func:`check_interrupted` before each item.
    """
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        def __iter__(self):
            for item in super().__iter__():
                check_interrupted()
                yield item

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return _Bar(iterable, disable=quiet, **kwargs)


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (scripts only write files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int = 110, close: bool = True, **savefig_kwargs) -> Path:
    """Save ``fig`` as a PNG at ``path`` (parent directories created), atomically, and close it.

    The PNG is written under a temporary name in the same directory and renamed, so an interrupt
    never leaves a half-written figure at ``path``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
        Must end in ``.png``.
    dpi : int
        Resolution.
    close : bool
        Close the figure afterwards (frees its memory).
    **savefig_kwargs
        Passed to :meth:`matplotlib.figure.Figure.savefig` (e.g. ``bbox_inches="tight"``).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InvalidInputError
        ``path`` does not end in ``.png``.
    KeyboardInterrupt
        The active :func:`run` was interrupted (nothing is written).
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InvalidInputError(f"figures are saved as PNG; {path} does not end in .png")
    check_interrupted()
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png", **savefig_kwargs), mode=0o644,
                 make_parents=True)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- helpers
def one_hot(labels, n_classes: int | None = None) -> np.ndarray:
    """One-hot targets: row i has a 1.0 in column ``labels[i]`` and 0.0 elsewhere.

    Parameters
    ----------
    labels : array of shape (n_samples,), integer
        Class indices in ``[0, n_classes)``.
    n_classes : int, optional
        Number of columns (default ``max(labels) + 1``).

    Returns
    -------
    array of shape (n_samples, n_classes), float64

    Raises
    ------
    InvalidInputError
        ``labels`` is not a 1-D integer array, is empty without ``n_classes``, or has a label
        outside ``[0, n_classes)``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise InvalidInputError(f"labels must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    if n_classes is None:
        if y.size == 0:
            raise InvalidInputError("one_hot of no labels needs n_classes")
        n_classes = int(y.max()) + 1
    n_classes = int(n_classes)
    if n_classes < 1:
        raise InvalidInputError(f"n_classes must be >= 1, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise InvalidInputError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    out = np.zeros((y.size, n_classes), dtype=np.float64)
    out[np.arange(y.size), y.astype(np.intp)] = 1.0
    return out


def subset_rows(n: int, total: int, seed: int | None = None) -> np.ndarray:
    """The rows :func:`load_mnist_scaled` takes for ``n_train=n, seed=seed``: the first ``n``, or a
    sorted random ``n`` of ``total`` (``numpy.random.default_rng(seed).choice(total, n, replace=False)``).

    Returns
    -------
    array of shape (n,), int64

    Raises
    ------
    InvalidInputError
        ``n`` is not an integer in ``[0, total]``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= total:
        raise InvalidInputError(f"the subset size must be an integer in [0, {total}], got {n!r}")
    if seed is None:
        return np.arange(int(n), dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(total, int(n), replace=False)).astype(np.int64)


def _subset(index, n, total, labels, name, seed=None):
    """Indices for one split: all, the first n, a sorted seeded random n, or given / computed indices."""
    if index is not None:
        if n is not None:
            raise InvalidInputError(f"give either n_{name} or {name}_index, not both")
        idx = np.asarray(index(labels) if callable(index) else index)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise InvalidInputError(f"{name}_index must be a 1-D integer array")
        if idx.size and (idx.min() < -total or idx.max() >= total):
            raise InvalidInputError(f"{name}_index out of range for {total} images")
        return idx
    if n is None:
        return slice(None)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= total:
        raise InvalidInputError(f"n_{name} must be an integer in [0, {total}], got {n!r}")
    return slice(0, int(n)) if seed is None else subset_rows(n, total, seed)


def load_mnist_scaled(
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int | None = None,
    train_index=None,
    test_index=None,
    data_home=None,
    verbose: bool = False,
):
    """MNIST subsets as the scripts use them: pixels / 255 in float64, labels int64.

    Parameters
    ----------
    n_train : int, optional
        Training images: the first ``n_train`` (default all 60,000), or with ``seed`` a random
        subset of that size, drawn without replacement and sorted (original order kept).
    n_test : int, optional
        The first ``n_test`` test images (default all 10,000; 0 gives empty test arrays).
    seed : int, optional
        Seed of the random training subset (``numpy.random.default_rng(seed).choice``).
    train_index, test_index : array of int or callable, optional
        Explicit rows instead of ``n_train`` / ``n_test``; a callable receives the split's
        labels (int64, all of them) and returns the rows (e.g. the first 400 zeros and ones).
    data_home : str or path-like, optional
        Passed to :func:`kernelgen.datasets.load_mnist`.
    verbose : bool
        Passed to :func:`kernelgen.datasets.load_mnist`.

    Returns
    -------
    X_train : array of shape (n_train, 784), float64 in [0, 1]
    y_train : array of shape (n_train,), int64
    X_test : array of shape (n_test, 784), float64 in [0, 1]
    y_test : array of shape (n_test,), int64

    Raises
    ------
    InvalidInputError
        A size outside the split, both a size and an index, or indices out of range.
    DataUnavailableError, DataIntegrityError
        From :func:`kernelgen.datasets.load_mnist`.
    """

    Xa, ya, Xb, yb = load_mnist(data_home=data_home, verbose=verbose)
    ya, yb = ya.astype(np.int64), yb.astype(np.int64)
    if seed is not None and n_train is None:
        raise InvalidInputError("seed draws a random training subset: give n_train too")
    tr = _subset(train_index, n_train, Xa.shape[0], ya, "train", seed)
    te = _subset(test_index, n_test, Xb.shape[0], yb, "test")
    # the project's convention: byte / 255 (the kernel bandwidths are set for it: docs/numerics.md,
    # "Bandwidth conventions")
    return Xa[tr].astype(np.float64) / 255.0, ya[tr], Xb[te].astype(np.float64) / 255.0, yb[te]


def peak_rss_gb() -> float:
    """Peak resident memory of this process in GB (10^9 bytes); Linux reports KiB, macOS bytes."""
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / 1e9 if sys.platform == "darwin" else ru * 1024 / 1e9

