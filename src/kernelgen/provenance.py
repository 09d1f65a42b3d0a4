"""Provenance: what produced a number (package versions, BLAS and threads, CPU, git commit, seeds, rates).

Every result and every script's JSON line carries :func:`provenance` so that a figure can be
traced to the machine and code that measured it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["provenance"]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _blas() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info

        return [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "architecture")}
                for d in threadpool_info() if d.get("user_api") == "blas"]
    except Exception:  # pragma: no cover - threadpoolctl missing or broken
        return []


@functools.lru_cache(maxsize=1)
def _static() -> dict:
    return {
        "kernelgen": _version("kernelgen"),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "scikit-learn": _version("scikit-learn"),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def provenance(*, seeds: dict | None = None, rates: dict | None = None) -> dict:
    """A JSON-serialisable record of the code, libraries and machine.

    Parameters
    ----------
    seeds : dict, optional
        Seeds / keys that entered the computation, by name.
    rates : dict, optional
        Measured rates (e.g. ``{"sgemm_gflops": 330.0}``) when the caller measured them.

    Returns
    -------
    dict
        ``kernelgen``, ``python``, ``numpy``, ``scipy``, ``jax``, ``jaxlib``, ``scikit-learn``
        versions; ``cpu``, ``cores``, ``platform``; ``blas`` (library, version, threads, from
        threadpoolctl); ``git_commit`` (None outside a checkout; ``-dirty`` with local changes);
        ``date`` (UTC, ISO 8601); ``seeds`` and ``rates`` when given.
    """
    out = dict(_static())
    out["blas"] = _blas()
    out["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if seeds is not None:
        out["seeds"] = dict(seeds)
    if rates is not None:
        out["rates"] = dict(rates)
    return out
