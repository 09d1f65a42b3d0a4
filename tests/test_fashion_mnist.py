"""Tests of the Fashion-MNIST registry entry: its Debian source, its mirrors and its reference arrays.

Two kinds of test. Those on small stand-in files run everywhere: the source order, the Debian-package
source (``dpkg-query`` stood in for), hash refusals by file name, the mirrors through a mocked download, an
offline machine failing fast. Those on the real files run where Debian's ``dataset-fashion-mnist`` is
installed (``.ci/run`` installs it) and are skipped with the reason elsewhere: the arrays' shapes, dtypes,
class balance and sha256, the package files against their pins, the upstream files reconstructed from
them against the upstream README's MD5 and the pinned sha256, and the mirror path on those real bytes.

No test touches the network or pip: an autouse fixture replaces ``requests``' session,
``urllib.request.urlopen``, socket connections and the pip runner with functions that fail the test.
The recorded hashes and counts below are written out independently of the library (docs/data.md,
"Fashion-MNIST files and hashes").
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import requests

from kernelgen.datasets import (
    IDX_FILENAMES,
    DatasetSpec,
    RemoteFile,
    SystemPackage,
    _mnist,
    _pypi,
    _registry,
    get_dataset,
    load_dataset,
)
from kernelgen.errors import DataIntegrityError, DataUnavailableError

NAMES = ("X_train", "y_train", "X_test", "y_test")
PACKAGE = "dataset-fashion-mnist"

#: sha256 of the decoded uint8 arrays (docs/data.md, "Fashion-MNIST files and hashes").
RECORDED_SHA256 = {
    "X_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "X_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}

#: MD5 of the four files as the upstream README lists them (github.com/zalandoresearch/fashion-mnist,
#: "Get the Data").
UPSTREAM_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

#: The gzip header MTIME of the upstream files (read from the labels files in the upstream git repository;
#: the images files have the same times: with them the reconstruction reproduces the README's MD5, docs/data.md).
UPSTREAM_GZIP_MTIME = {
    "train-images-idx3-ubyte.gz": 1504176606,
    "train-labels-idx1-ubyte.gz": 1504176606,
    "t10k-images-idx3-ubyte.gz": 1504176627,
    "t10k-labels-idx1-ubyte.gz": 1504176627,
}


# ---------------------------------------------------------------------------------------------
# Helpers (independent of the code under test)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """No test reaches the network or pip, nor the user's real cache; registrations do not leak."""

    def forbidden(*a, **k):
        raise AssertionError("test tried to reach the network or pip")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(requests.sessions.Session, "request", forbidden)  # requests.get/head go here
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(_pypi, "_run_pip", forbidden)
    monkeypatch.setenv("KERNELGEN_DATA", str(tmp_path / "env_cache"))
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))


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


def serve(monkeypatch, files_by_url_prefix: dict):
    """Patch ``requests.get`` (what pooch calls): ``{prefix: {name: bytes} or None}``, None -> 404. Returns
    the list of URLs requested."""
    urls = []

    def fake_get(url, timeout=None, **kw):
        urls.append((url, timeout))
        for prefix, served in files_by_url_prefix.items():
            if url.startswith(prefix):
                name = url.rsplit("/", 1)[1]
                if served is None or name not in served:
                    return FakeResponse(b"", status=404)
                return FakeResponse(served[name])
        raise requests.exceptions.ConnectionError(f"{url}: [Errno -2] Name or service not known")

    monkeypatch.setattr(requests, "get", fake_get)
    return urls


def idx_bytes(a: np.ndarray) -> bytes:
    """uint8 IDX: 0, 0, 0x08, ndim, big-endian uint32 sizes, data (LeCun's description of the format)."""
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes()


def tiny_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (12, 4, 3), dtype=np.uint8), rng.integers(0, 10, 12, dtype=np.uint8),
            rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), rng.integers(0, 10, 5, dtype=np.uint8))


def tiny_setup(directory: Path):
    """Four gzip'd IDX files of a tiny dataset in ``directory``; their pins; the spec they decode to."""
    arrays = tiny_arrays()
    directory.mkdir(parents=True, exist_ok=True)
    served = {}
    for base, a in zip(IDX_FILENAMES.values(), arrays):
        served[base + ".gz"] = gzip.compress(idx_bytes(a))
        (directory / (base + ".gz")).write_bytes(served[base + ".gz"])
    files = tuple(RemoteFile(n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in served.items())
    flat = [a.reshape(a.shape[0], -1) if a.ndim > 1 else a for a in arrays]
    spec = DatasetSpec(name="fashion_mnist", shapes={k: a.shape for k, a in zip(NAMES, flat)},
                       sha256={k: hashlib.sha256(a.tobytes()).hexdigest() for k, a in zip(NAMES, flat)})
    return served, files, spec, flat


def fake_dpkg(monkeypatch, listing):
    """Stand in for ``dpkg-query -L``: ``listing`` is a list of paths, or an exception to raise."""
    def run(package):
        assert package == PACKAGE
        if isinstance(listing, BaseException):
            raise listing
        return [str(p) for p in listing]

    monkeypatch.setattr(_registry, "_run_dpkg_query", run)


def tiny_entry(files, spec, *, packages=None):
    pkg = SystemPackage(label=f"Debian package {PACKAGE}", package=PACKAGE, files=files,
                        howto=f"apt-get install {PACKAGE}")
    return _mnist.fashion_mnist_dataset(spec=spec, files=files, packages=(pkg,) if packages is None else packages)


def real_debian_dir() -> Path:
    """Where Debian's package put the real files (located with dpkg-query, independently of the library);
    skips the test with the reason when they are not there."""
    exe = shutil.which("dpkg-query")
    if exe is None:
        pytest.skip("dpkg-query not found: not a Debian-based system, so no dataset-fashion-mnist package")
    proc = subprocess.run([exe, "-L", PACKAGE], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"Debian package {PACKAGE} is not installed (apt-get install {PACKAGE}; .ci/run installs it)")
    found = [Path(p) for p in proc.stdout.splitlines() if p.endswith("train-images-idx3-ubyte.gz")]
    if not found or not found[0].is_file():
        pytest.skip(f"{PACKAGE} is installed but its train-images-idx3-ubyte.gz is missing")
    return found[0].parent


def upstream_bytes(debian: bytes, name: str) -> bytes:
    """The upstream file from Debian's: the same deflate stream and trailer under the upstream gzip header.

    RFC 1952 §2.3: ID1 ID2 CM FLG MTIME(4, little-endian) XFL OS, then (FLG bit 3, FNAME) the original file
    name and a zero byte. Debian's build wrote FLG = 0 (no name) and its own MTIME; upstream has FLG = 8 and
    the name without ``.gz``.
    """
    assert debian[:4] == b"\x1f\x8b\x08\x00", name  # gzip, deflate, no flags
    return (b"\x1f\x8b\x08\x08" + struct.pack("<I", UPSTREAM_GZIP_MTIME[name]) + debian[8:10]
            + name[:-3].encode("ascii") + b"\x00" + debian[10:])


# ---------------------------------------------------------------------------------------------
# The entry (no real files needed)
# ---------------------------------------------------------------------------------------------


def test_registered_with_the_mnist_layout_and_source_order():
    ds = get_dataset("fashion_mnist")
    assert ds is _mnist.FASHION_MNIST
    mnist = get_dataset("mnist").spec
    assert ds.spec.names == mnist.names and ds.spec.shapes == mnist.shapes  # what load_mnist returns, in order
    assert [s.name for s in _registry.dataset_sources(ds)] == [
        "cache",
        "local_dir",
        f"Debian package {PACKAGE}",  # offline, before any network source
        "mirror https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        "mirror https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
    ]
    assert [f.name for f in ds.files] == [b + ".gz" for b in IDX_FILENAMES.values()]
    assert all(f.sha256 is not None for f in ds.files)


def test_debian_source_reads_the_package_files_in_place(tmp_path, monkeypatch, caplog):
    served, files, spec, flat = tiny_setup(tmp_path / "usr" / "share" / "datasets" / "fashion-mnist")
    pkgdir = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    fake_dpkg(monkeypatch, [tmp_path / "usr", pkgdir, *[pkgdir / n for n in served], tmp_path / "doc" / "README.md.gz"])
    home = tmp_path / "home"
    with caplog.at_level(logging.INFO, logger="kernelgen.datasets"):
        out = load_dataset(tiny_entry(files, spec), data_home=home)
    for got, want in zip(out, flat):
        np.testing.assert_array_equal(got, want)
    assert f"loaded from Debian package {PACKAGE}" in caplog.text
    assert (home / "fashion_mnist.npz").is_file()
    assert not (home / "fashion_mnist").exists()  # read in place: nothing downloaded or copied


def test_corrupted_package_file_refused_by_name_kept_and_next_source_used(tmp_path, monkeypatch):
    served, files, spec, flat = tiny_setup(tmp_path / "pkg")
    bad = tmp_path / "pkg" / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(bad.read_bytes())
    raw[-9] ^= 0x01  # inside the deflate stream / CRC: the file no longer matches its pin
    bad.write_bytes(bytes(raw))
    fake_dpkg(monkeypatch, [tmp_path / "pkg" / n for n in served])
    gh = "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"

    # Offline: one error naming the refused file, its hash and the pin, and each other source.
    serve(monkeypatch, {})
    with pytest.raises(DataUnavailableError) as ei:
        load_dataset(tiny_entry(files, spec), data_home=tmp_path / "home")
    line = next(ln for ln in str(ei.value).splitlines() if ln.strip().startswith("3. Debian package"))
    pinned = next(f.sha256 for f in files if f.name == bad.name)
    assert "DataIntegrityError" in line and str(bad) in line and pinned in line and "--reinstall" in line
    assert str(ei.value).count("ConnectionError") == 2  # both mirrors tried, each failing fast
    assert bad.read_bytes() == bytes(raw)  # the package's file is reported, never deleted

    # With a mirror serving the right bytes, the load goes on to it.
    urls = serve(monkeypatch, {gh: served})
    out = load_dataset(tiny_entry(files, spec), data_home=tmp_path / "home")
    np.testing.assert_array_equal(out[2], flat[2])
    assert urls and all(u.startswith(gh) for u, _ in urls)


@pytest.mark.parametrize("problem, listing, match", [
    ("not installed", DataUnavailableError(f"package {PACKAGE} is not installed"), "is not installed"),
    ("file missing from the listing", "drop-labels", "installs no file t10k-labels-idx1-ubyte.gz"),
    ("two directories", "split", "in one directory"),
    ("listed but deleted", "deleted", "listed by dpkg but missing"),
])
def test_package_unavailable_is_named(tmp_path, monkeypatch, problem, listing, match):
    served, files, spec, _ = tiny_setup(tmp_path / "pkg")
    paths = [tmp_path / "pkg" / n for n in served]
    if listing == "drop-labels":
        listing = paths[:3]
    elif listing == "split":
        other = tmp_path / "other"
        other.mkdir()
        shutil.move(paths[0], other / paths[0].name)
        listing = [other / paths[0].name, *paths[1:]]
    elif listing == "deleted":
        paths[1].unlink()
        listing = paths
    fake_dpkg(monkeypatch, listing)
    serve(monkeypatch, {})
    with pytest.raises(DataUnavailableError) as ei:
        load_dataset(tiny_entry(files, spec), data_home=tmp_path / "home")
    line = next(ln for ln in str(ei.value).splitlines() if ln.strip().startswith("3. Debian package"))
    assert "DataUnavailableError" in line and match in line, problem
    assert f"apt-get install {PACKAGE}" in str(ei.value)  # the remedy is in the how-to


def test_real_dpkg_query_answers_for_a_missing_package():
    if shutil.which("dpkg-query") is None:
        pytest.skip("dpkg-query not found: not a Debian-based system")
    with pytest.raises(DataUnavailableError, match="kernelgen-no-such-package.* is not installed"):
        _registry._run_dpkg_query("kernelgen-no-such-package")


def test_no_dpkg_query_is_unavailable(monkeypatch):
    monkeypatch.setattr(_registry.shutil, "which", lambda name: None)
    with pytest.raises(DataUnavailableError, match="dpkg-query not found"):
        _registry._run_dpkg_query(PACKAGE)


def test_mirrors_through_a_mocked_download_in_order(tmp_path, monkeypatch):
    served, files, spec, flat = tiny_setup(tmp_path / "src")
    gh, s3 = _mnist.FASHION_MNIST_MIRRORS
    fake_dpkg(monkeypatch, DataUnavailableError(f"package {PACKAGE} is not installed"))
    # GitHub answers 404 for the test images: the mirror fails there, pooch keeps the two files fetched
    # before (their pins matched), and the S3 mirror supplies the two still missing.
    urls = serve(monkeypatch, {gh: {n: b for n, b in served.items() if n != "t10k-images-idx3-ubyte.gz"}, s3: served})
    out = load_dataset(tiny_entry(files, spec), data_home=tmp_path / "home")
    for got, want in zip(out, flat):
        np.testing.assert_array_equal(got, want)
    requested = [u for u, _ in urls]
    names = list(served)
    assert requested == [gh + n for n in names[:3]] + [s3 + n for n in names[2:]]
    assert all(t == 5.0 for _, t in urls)  # the documented 5 s socket timeout reaches requests


def test_corrupted_mirror_file_refused_by_name(tmp_path, monkeypatch):
    served, files, spec, _ = tiny_setup(tmp_path / "src")
    gh, s3 = _mnist.FASHION_MNIST_MIRRORS
    bad = dict(served)
    bad["train-labels-idx1-ubyte.gz"] = gzip.compress(b"not the labels")
    fake_dpkg(monkeypatch, DataUnavailableError(f"package {PACKAGE} is not installed"))
    serve(monkeypatch, {gh: bad, s3: None})
    with pytest.raises(DataUnavailableError) as ei:
        load_dataset(tiny_entry(files, spec), data_home=tmp_path / "home")
    line = next(ln for ln in str(ei.value).splitlines() if ln.strip().startswith("4. mirror"))
    assert "DataIntegrityError" in line and "train-labels-idx1-ubyte.gz" in line and "hash" in line
    assert "train-labels-idx1-ubyte.gz" not in [p.name for p in (tmp_path / "home" / "fashion_mnist").iterdir()]


def test_offline_without_the_package_fails_fast_naming_every_source(tmp_path, monkeypatch):
    fake_dpkg(monkeypatch, DataUnavailableError(f"package {PACKAGE} is not installed"))
    serve(monkeypatch, {})
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError) as ei:
        load_dataset("fashion_mnist", data_home=tmp_path)
    assert time.perf_counter() - t0 < 2.0  # no retries or sleeps: each source fails at once
    msg = str(ei.value)
    for needle in ("1. cache", "2. local_dir", f"3. Debian package {PACKAGE}: DataUnavailableError", "not installed",
                   "4. mirror https://github.com/zalandoresearch", "5. mirror https://fashion-mnist.s3",
                   "local_dir=DIR", f"apt-get install {PACKAGE}"):
        assert needle in msg, needle


def test_system_package_requires_pins():
    with pytest.raises(ValueError, match="pinned sha256 is required"):
        SystemPackage(label="x", package="x", files=(RemoteFile("a.gz"),))
    with pytest.raises(ValueError, match="no files"):
        SystemPackage(label="x", package="x", files=())


# ---------------------------------------------------------------------------------------------
# The real files (Debian's dataset-fashion-mnist; skipped with the reason where it is absent)
# ---------------------------------------------------------------------------------------------


def test_real_fashion_mnist_from_the_debian_package(tmp_path, caplog):
    real_debian_dir()
    with caplog.at_level(logging.INFO, logger="kernelgen.datasets"):
        arrays = load_dataset("fashion_mnist", data_home=tmp_path)  # the network is forbidden here
    assert f"loaded from Debian package {PACKAGE}" in caplog.text
    shapes = [(60000, 784), (60000,), (10000, 784), (10000,)]
    for name, a, shape in zip(NAMES, arrays, shapes):
        assert a.dtype == np.uint8 and a.shape == shape and a.flags.c_contiguous, name
        assert hashlib.sha256(a.tobytes()).hexdigest() == RECORDED_SHA256[name], name
    # Xiao, Rasul & Vollgraf (2017): ten classes, 6,000 training and 1,000 test images each.
    np.testing.assert_array_equal(np.bincount(arrays[1], minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(arrays[3], minlength=10), [1000] * 10)
    assert arrays[1].max() == 9 and arrays[3].max() == 9
    assert arrays[0].min() == 0 and arrays[0].max() == 255
    # The second load is the verified cache, equal to the first.
    again = load_dataset("fashion_mnist", data_home=tmp_path)
    for a, b in zip(arrays, again):
        np.testing.assert_array_equal(a, b)


def test_real_package_files_match_their_pins_and_the_upstream_files():
    d = real_debian_dir()
    pinned_debian = {f.name: f for f in _mnist.FASHION_MNIST_DEBIAN.files}
    pinned_upstream = {f.name: f for f in _mnist.FASHION_MNIST_FILES}
    for name in UPSTREAM_MD5:
        raw = (d / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == pinned_debian[name].sha256 and len(raw) == pinned_debian[name].size
        up = upstream_bytes(raw, name)
        # The reconstructed file is the upstream one byte for byte: the README's MD5 and the pinned sha256.
        assert hashlib.md5(up).hexdigest() == UPSTREAM_MD5[name], name
        assert hashlib.sha256(up).hexdigest() == pinned_upstream[name].sha256 and len(up) == pinned_upstream[name].size


def test_real_files_through_the_mirror_path(tmp_path, monkeypatch):
    d = real_debian_dir()
    gh = _mnist.FASHION_MNIST_MIRRORS[0]
    served = {name: upstream_bytes((d / name).read_bytes(), name) for name in UPSTREAM_MD5}
    fake_dpkg(monkeypatch, DataUnavailableError(f"package {PACKAGE} is not installed"))
    urls = serve(monkeypatch, {gh: served})
    arrays = load_dataset("fashion_mnist", data_home=tmp_path)
    assert [u for u, _ in urls] == [gh + f.name for f in _mnist.FASHION_MNIST_FILES]
    for name, a in zip(NAMES, arrays):
        assert hashlib.sha256(a.tobytes()).hexdigest() == RECORDED_SHA256[name], name
    # pooch kept the hash-checked upstream files: a lost cache is rebuilt without the network.
    assert {p.name: p.read_bytes() for p in (tmp_path / "fashion_mnist").iterdir()} == served


def test_real_corrupted_package_file_refused_by_name(tmp_path, monkeypatch):
    d = real_debian_dir()
    copy = tmp_path / "pkg"
    copy.mkdir()
    for name in UPSTREAM_MD5:
        shutil.copyfile(d / name, copy / name)
    raw = bytearray((copy / "train-labels-idx1-ubyte.gz").read_bytes())
    raw[100] ^= 0xFF
    (copy / "train-labels-idx1-ubyte.gz").write_bytes(bytes(raw))
    fake_dpkg(monkeypatch, [copy / n for n in UPSTREAM_MD5])
    serve(monkeypatch, {})
    with pytest.raises(DataUnavailableError) as ei:
        load_dataset("fashion_mnist", data_home=tmp_path / "home")
    line = next(ln for ln in str(ei.value).splitlines() if ln.strip().startswith("3. Debian package"))
    assert "DataIntegrityError" in line and str(copy / "train-labels-idx1-ubyte.gz") in line
    with pytest.raises(DataIntegrityError, match="train-labels-idx1-ubyte.gz"):
        _registry._package_source(_mnist.FASHION_MNIST_DEBIAN).fetch(
            _registry._Context(dataset=get_dataset("fashion_mnist"), data_home=tmp_path / "home", local_dir=None))
