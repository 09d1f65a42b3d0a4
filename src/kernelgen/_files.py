"""Files written whole or not at all: one atomic write for every file kernelgen writes.

:func:`atomic_write` writes through a temporary file in the target's directory and
:func:`os.replace` (atomic on POSIX and Windows), so a reader, a crash or an interrupt never
sees a half-written file, and the temporary is removed on any failure. The temporary is named
``.<name>.XXXXXXXX.tmp`` (8 characters of ``[a-z0-9_]``, as :func:`tempfile.mkstemp` names them),
the pattern by which :func:`kernelgen.datasets.remove_stale_temporaries` finds the leftovers of
a killed process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"


def atomic_write(path, write: Callable[[IO[Any]], Any], *, binary: bool = True, mode: int | None = None,
                 fsync: bool = False, make_parents: bool = False, prefix: str | None = None) -> Path:
    """Call ``write(f)`` on a fresh temporary file beside ``path``, then rename it to ``path``.

    Parameters
    ----------
    path : str or path-like
        The file to create or replace.
    write : callable
        ``write(f)`` writes the whole content to the open file object ``f``.
    binary : bool
        Open the temporary in binary (default) or text mode.
    mode : int, optional
        Permission bits of the file (e.g. ``0o644`` for shared data). Default: created like any
        ``open(path, "w")``, 0666 less the process's umask.
    fsync : bool
        Flush the data to the disk before the rename (durable across a power loss).
    make_parents : bool
        Create missing directories above ``path``; otherwise a missing directory raises.
    prefix : str, optional
        Start of the temporary's name (default ``".<name>."``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OSError
        The directory is missing (without ``make_parents``) or not writable; whatever ``write``
        raises. In every case the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    start = f".{path.name}." if prefix is None else prefix
    while True:
        tmp = path.parent / f"{start}{''.join(secrets.choice(_ALPHABET) for _ in range(8))}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for a normal open()
            break
        except FileExistsError:  # pragma: no cover - 37^8 names
            continue
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
