"""Tests for kernelgen.features.gabor: filter properties, convolution oracle, pooling,
shapes/dtypes, determinism, memory bound, GaborOptions validation, and the mnist_gabor
script's smoke run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tracemalloc
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from kernelgen.errors import InvalidInputError, MemoryBudgetError, ShapeMismatchError
from kernelgen.features import (
    GaborOptions,
    gabor_bank,
    gabor_feature_dim,
    gabor_features,
    gabor_filter,
    gabor_transform,
    plot_gabor_bank,
    pool2d,
    sigma_from_bandwidth,
)

ROOT = Path(__file__).resolve().parents[1]


def _grating(theta, wavelength, size=64, phase=0.3):
    """cos(2 pi f x' + phase) with x' = x cos(theta) + y sin(theta) (x = column, y = row)."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    return np.cos(2 * np.pi / wavelength * (x * np.cos(theta) + y * np.sin(theta)) + phase)


# ---------------------------------------------------------------- filter properties
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("wavelengths", [(4.0, 8.0), (2.5, 3.0, 12.0)])
def test_real_part_has_zero_mean(dtype, wavelengths):
    bank = gabor_bank(n_orientations=6, wavelengths=wavelengths, dtype=dtype)
    assert bank.filters.dtype == dtype
    scale = np.abs(bank.filters).sum(axis=(1, 2))
    # the Morlet correction makes sum(psi) = 0 up to rounding: eps(dtype) * a few terms
    tol = 50 * np.finfo(bank.filters.real.dtype).eps
    assert np.all(np.abs(bank.filters.real.sum(axis=(1, 2))) <= tol * scale)
    assert np.all(np.abs(bank.filters.imag.sum(axis=(1, 2))) <= tol * scale)


def test_without_correction_the_real_part_has_a_dc_term():
    # the check above can fail: at a long wavelength and narrow envelope the raw Gabor
    # real part has mean exp(-2 pi^2 sigma^2 f^2) (the envelope spectrum at f), not 0
    f, sigma = 1 / 8, 2.0
    psi = gabor_filter(f, 0.0, sigma_x=sigma, n_sigma=6, zero_mean=False)
    np.testing.assert_allclose(psi.real.sum(), np.exp(-2 * np.pi**2 * sigma**2 * f**2), rtol=1e-6)


def test_imaginary_part_is_odd_and_real_part_even():
    psi = gabor_filter(0.2, 0.7, sigma_x=2.5, sigma_y=4.0)
    # psi(-x, -y) = conj(psi(x, y)) exactly in exact arithmetic; 1e-15 absolute for float64
    np.testing.assert_allclose(psi[::-1, ::-1], np.conj(psi), atol=1e-15)


@pytest.mark.parametrize("wavelength", [4.0, 6.0])
@pytest.mark.parametrize("k", range(8))
def test_orientation_response_peaks_at_matching_angle(wavelength, k):
    n_o = 8
    bank = gabor_bank(n_orientations=n_o, wavelengths=(wavelength,))
    theta = k * np.pi / n_o
    img = _grating(theta, wavelength)
    resp = gabor_transform(img[None], bank)[0]  # (8, 64, 64) moduli
    centre = resp[:, 32, 32]
    assert int(np.argmax(centre)) == k
    # a matched plane wave cos = (e^{i.}+e^{-i.})/2 gives modulus ~ 1/2 (unit-sum envelope)
    np.testing.assert_allclose(centre[k], 0.5, atol=0.01)
    # orthogonal orientation is strongly suppressed (1-octave bank: < 5% of the peak)
    assert centre[(k + n_o // 2) % n_o] < 0.05 * centre[k]


@pytest.mark.parametrize("theta", [0.0, np.pi / 6, np.pi / 2, 2.5])
@pytest.mark.parametrize("wavelength", [3.0, 5.0, 8.0])
def test_frequency_response_peaks_at_carrier(theta, wavelength):
    N = 512
    psi = gabor_filter(1 / wavelength, theta, sigma_x=sigma_from_bandwidth(1 / wavelength))
    spec = np.abs(np.fft.fft2(psi, s=(N, N)))
    i, j = np.unravel_index(np.argmax(spec), spec.shape)
    fy, fx = np.fft.fftfreq(N)[i], np.fft.fftfreq(N)[j]
    # peak bin within one bin (1/N) of (f cos t, f sin t) in (x, y) = (column, row)
    # (or of its negative: np.fft uses exp(-i...), the sign convention of the wave vector)
    target = np.array([np.cos(theta), np.sin(theta)]) / wavelength
    err = min(np.hypot(fx - target[0], fy - target[1]), np.hypot(fx + target[0], fy + target[1]))
    assert err <= 1.0 / N
    # the transfer function vanishes at zero frequency (zero-mean filter)
    assert spec[0, 0] <= 1e-12 * spec.max()


@pytest.mark.parametrize("b", [0.5, 1.0, 1.5])
def test_bandwidth_in_octaves_matches_closed_form(b):
    # raw Gabor along the wave: spectrum exp(-2 pi^2 sigma^2 (u - f)^2); half-magnitude points
    # u1 < f < u2 must satisfy u2 / u1 = 2**b (Daugman 1985); measured on a fine FFT grid
    f, N = 0.125, 4096
    sigma = sigma_from_bandwidth(f, b)
    psi = gabor_filter(f, 0.0, sigma_x=sigma, sigma_y=3.0, n_sigma=8, zero_mean=False)
    spec = np.abs(np.fft.fft(psi.sum(axis=0), n=N))  # project on x: slice v = 0 of the 2-D FT
    u = np.fft.fftfreq(N)
    pos = u > 0
    half = spec[pos] >= spec[pos].max() / 2
    band = u[pos][half]
    # grid spacing 1/4096 at u ~ 0.1: ratio error below ~3e-3 relative
    np.testing.assert_allclose(band.max() / band.min(), 2.0**b, rtol=5e-3)


def test_bank_layout_and_params():
    bank = gabor_bank(n_orientations=4, wavelengths=(4.0, 8.0), aspect_ratio=1.5)
    assert bank.filters.shape[0] == bank.n_filters == 8
    assert bank.size % 2 == 1
    p = bank.params(6)  # scale-major: index 6 = scale 1, orientation 2
    assert p["wavelength"] == 8.0 and p["theta"] == pytest.approx(np.pi / 2)
    assert p["sigma_y"] == pytest.approx(1.5 * p["sigma_x"])
    assert p["sigma_x"] == pytest.approx(sigma_from_bandwidth(1 / 8.0, 1.0))


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(wavelengths=(1.5,)), InvalidInputError),
        (dict(wavelengths=()), InvalidInputError),
        (dict(n_orientations=0), InvalidInputError),
        (dict(bandwidth=-1.0), InvalidInputError),
    ],
)
def test_bank_rejects_bad_parameters(kwargs, err):
    with pytest.raises(err):
        gabor_bank(**kwargs)


# ---------------------------------------------------------------- convolution
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_transform_matches_scipy_fftconvolve(dtype, tol):
    rng = np.random.default_rng(0)
    imgs = rng.random((5, 28, 28)).astype(dtype)
    bank = gabor_bank(n_orientations=3, wavelengths=(3.0, 7.0))
    out = gabor_transform(imgs, bank, output="complex")
    assert out.shape == (5, 6, 28, 28)
    assert out.dtype == (np.complex64 if dtype == np.float32 else np.complex128)
    for i in (0, 4):
        for f in (0, 5):
            ref = scipy.signal.fftconvolve(imgs[i].astype(float), bank.filters[f], mode="same")
            # float64: FFT round-off ~1e-15 * sum|img|; float32: ~1e-6 relative to the values
            np.testing.assert_allclose(out[i, f], ref, atol=tol * np.abs(ref).max())
    mod = gabor_transform(imgs, bank)
    np.testing.assert_allclose(mod, np.abs(out), rtol=1e-6 if dtype == np.float32 else 1e-13)
    ri = gabor_transform(imgs, bank, output="real_imag")
    assert ri.shape == (5, 12, 28, 28)
    np.testing.assert_array_equal(ri[:, :6], out.real)


def test_constant_image_gives_no_response_in_the_interior():
    bank = gabor_bank(n_orientations=4, wavelengths=(4.0,))
    resp = gabor_transform(np.ones((1, 64, 64)), bank)[0]
    h = bank.size // 2
    # zero-mean filters: exact 0 up to FFT round-off (~1e-15 * filter l1 norm) away from borders
    assert resp[:, h:-h, h:-h].max() < 1e-12


# ---------------------------------------------------------------- pooling
def test_pool_mean_nonoverlapping_equals_block_mean():
    rng = np.random.default_rng(1)
    m = rng.random((3, 2, 28, 28))
    p = pool2d(m, size=4)
    ref = m.reshape(3, 2, 7, 4, 7, 4).mean(axis=(3, 5))
    np.testing.assert_allclose(p, ref, rtol=1e-14)  # same sums, different order
    pm = pool2d(m, size=4, method="max")
    np.testing.assert_array_equal(pm, m.reshape(3, 2, 7, 4, 7, 4).max(axis=(3, 5)))


@pytest.mark.parametrize("size, stride, out", [(4, 4, 7), (6, 4, 7), (3, 3, 10), (2, 2, 14), (5, 3, 10)])
def test_pool_output_shape_and_mass(size, stride, out):
    m = np.ones((1, 28, 28))
    p = pool2d(m, size=size, stride=stride)
    assert p.shape == (1, out, out)
    # interior windows lie fully inside the image: their mean of ones is exactly 1
    assert p[0, out // 2, out // 2] == 1.0


# ---------------------------------------------------------------- features
@pytest.mark.parametrize(
    "dtype_in, dtype_out", [(np.uint8, np.float64), (np.float32, np.float32), (np.float64, np.float64)]
)
def test_features_shape_dtype_and_norm(dtype_in, dtype_out):
    rng = np.random.default_rng(2)
    imgs = (rng.random((7, 784)) * 255).astype(dtype_in)
    opts = GaborOptions(n_orientations=4, wavelengths=(4.0, 8.0), pool_size=4)
    F = gabor_features(imgs, options=opts)
    assert F.shape == (7, gabor_feature_dim((28, 28), opts)) == (7, opts.feature_dim((28, 28))) == (7, 8 * 49)
    assert F.dtype == dtype_out
    # l2 normalisation: unit rows to the working precision
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1.0, rtol=1e-5 if dtype_out == np.float32 else 1e-12)
    G = gabor_features(imgs, options=GaborOptions(include_image=True, output="real_imag", pool_size=6,
                                                  pool_stride=4, n_orientations=4, wavelengths=(4.0,),
                                                  normalize="none"))
    assert G.shape == (7, (2 * 4 + 1) * 49)


def test_features_match_unbatched_pipeline():
    # oracle: transform -> power -> pool -> flatten -> l2, written out by hand
    rng = np.random.default_rng(3)
    imgs = rng.random((6, 28, 28))
    bank = gabor_bank(n_orientations=5, wavelengths=(3.0, 6.0))
    ref = pool2d(gabor_transform(imgs, bank) ** 0.5, size=6, stride=4).reshape(6, -1)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    F = gabor_features(imgs, options=GaborOptions(n_orientations=5, wavelengths=(3.0, 6.0), power=0.5,
                                                  pool_size=6, pool_stride=4))
    np.testing.assert_allclose(F, ref, rtol=1e-12, atol=1e-15)


def test_deterministic_and_independent_of_batching():
    rng = np.random.default_rng(4)
    imgs = rng.random((40, 784))
    opts = GaborOptions(n_orientations=4, wavelengths=(4.0, 8.0))
    a = gabor_features(imgs, options=opts)
    b = gabor_features(imgs, options=opts)
    np.testing.assert_array_equal(a, b)
    c = gabor_features(imgs, options=replace(opts, memory_budget=3 * 2**20))  # a few images per batch
    # batched FFTs of the same image: equal up to round-off of differently vectorised loops
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-13)


def test_memory_budget_bounds_peak_allocation():
    rng = np.random.default_rng(5)
    n = 300
    imgs = rng.random((n, 784))
    budget = 4 * 2**20
    opts = GaborOptions(n_orientations=8, wavelengths=(4.0, 8.0), memory_budget=budget)
    out_bytes = n * gabor_feature_dim((28, 28), opts) * 8
    gabor_features(imgs[:2], options=opts)  # warm caches (FFT plans)
    tracemalloc.start()
    try:
        gabor_features(imgs, options=opts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # peak = output array + one batch (<= budget) + small per-call objects (bank, spectra ~1 MB)
    bank_bytes = 2 * 16 * 57 * 57 * 16  # filters + spectra, complex128, grid <= 28 + 29 = 57
    assert peak <= out_bytes + budget + bank_bytes + 2**20
    # and the budget is what bounds it: an unbatched run of the same images uses far more
    tracemalloc.start()
    try:
        gabor_features(imgs, options=replace(opts, memory_budget=2**31))
        _, peak_big = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_big > 5 * peak


def test_memory_budget_too_small_raises():
    with pytest.raises(MemoryBudgetError) as info:
        gabor_features(np.zeros((2, 784)), options=GaborOptions(memory_budget=10_000))
    assert info.value.bytes_needed > 10_000


def test_bad_inputs():
    with pytest.raises(ShapeMismatchError):
        gabor_features(np.zeros((2, 783)))
    with pytest.raises(ShapeMismatchError):
        gabor_features(np.zeros((2, 28 * 30)), image_shape=(28, 28))
    with pytest.raises(InvalidInputError):
        gabor_features(np.full((2, 784), np.nan))
    with pytest.raises(InvalidInputError, match="normalize"):
        gabor_features(np.zeros((2, 784)), options={"normalize": "zscore"})


def test_input_not_modified():
    rng = np.random.default_rng(6)
    imgs = rng.random((4, 784))
    before = imgs.copy()
    gabor_features(imgs, options=GaborOptions(power=0.5))
    np.testing.assert_array_equal(imgs, before)


def test_plot_gabor_bank_draws_every_filter():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bank = gabor_bank(n_orientations=4, wavelengths=(4.0, 8.0, 12.0))
    fig = plt.figure()
    out = plot_gabor_bank(bank, part="spectrum", fig=fig)
    assert out is fig
    images = [ax.images[0].get_array() for ax in fig.axes]
    assert len(images) == 12
    fig2 = plot_gabor_bank(bank)  # real parts, new figure
    np.testing.assert_allclose(fig2.axes[5].images[0].get_array(), bank.filters[5].real)
    plt.close("all")


# ---------------------------------------------------------------- options
_BAD_OPTIONS = [
    ("n_orientations", 0), ("n_orientations", 2.5), ("n_orientations", True), ("n_orientations", "8"),
    ("wavelengths", ()), ("wavelengths", (1.5,)), ("wavelengths", (4.0, float("nan"))),
    ("wavelengths", (4.0, float("inf"))), ("wavelengths", "48"), ("wavelengths", 4.0),
    ("bandwidth", 0.0), ("bandwidth", -1.0), ("bandwidth", float("inf")), ("bandwidth", float("nan")),
    ("aspect_ratio", 0), ("aspect_ratio", -2.0),
    ("output", "complex"), ("output", "abs"),
    ("power", 0), ("power", -0.5), ("power", float("inf")), ("power", float("nan")),
    ("pool_size", 0), ("pool_size", 2.0),
    ("pool_stride", 0), ("pool_stride", -1), ("pool_stride", 1.5),
    ("pool_method", "median"),
    ("include_image", "yes"), ("include_image", 1),
    ("normalize", "zscore"),
    ("dtype", "float16"), ("dtype", "complex64"), ("dtype", "int32"), ("dtype", "nonsense"),
    ("memory_budget", 0), ("memory_budget", -1), ("memory_budget", 1.5e6), ("memory_budget", None),
    ("workers", 0), ("workers", 1.5),
]


@pytest.mark.parametrize("field, value", _BAD_OPTIONS)
def test_bad_options_raise_a_named_error(field, value):
    with pytest.raises(InvalidInputError, match=rf"GaborOptions\.{field} = "):
        GaborOptions(**{field: value})
    # dataclasses.replace re-validates, and so does the dict path of gabor_features
    with pytest.raises(InvalidInputError, match=rf"GaborOptions\.{field} = "):
        replace(GaborOptions(), **{field: value})
    with pytest.raises(InvalidInputError, match=rf"GaborOptions\.{field} = "):
        gabor_features(np.zeros((1, 784)), options={field: value})


def test_options_are_frozen_normalised_and_varied_with_replace():
    base = GaborOptions()
    with pytest.raises(FrozenInstanceError):
        base.power = 0.5
    # normalised on construction: sequences -> tuple of floats, dtypes -> names
    o = GaborOptions(wavelengths=[4, 8], dtype=np.float32, n_orientations=np.int64(8))
    assert o.wavelengths == (4.0, 8.0) and o.dtype == "float32" and type(o.n_orientations) is int
    assert replace(o, dtype=None) == base and hash(replace(o, dtype=None)) == hash(base)
    v = replace(base, power=0.5)
    assert v.power == 0.5 and base.power == 1.0  # the original is untouched
    # pool_stride=None follows pool_size; an explicit stride does not
    assert replace(base, pool_size=6).stride == 6
    assert replace(base, pool_stride=4, pool_size=6).stride == 4


def test_options_dict_round_trip_and_unknown_names():
    o = GaborOptions(wavelengths=(3.0, 5.0, 8.0), power=1 / 3, pool_size=5, pool_stride=3,
                     include_image=True, dtype="float32", workers=-1)
    assert GaborOptions.from_dict(json.loads(json.dumps(o.to_dict()))) == o
    assert set(o.feature_settings()) | {"dtype", "memory_budget", "workers"} == set(o.to_dict())
    with pytest.raises(InvalidInputError, match="pool_sise"):
        GaborOptions.from_dict({"pool_sise": 4})
    with pytest.raises(InvalidInputError, match="pool_sise"):
        gabor_features(np.zeros((1, 784)), options={"pool_sise": 4})
    with pytest.raises(InvalidInputError, match="GaborOptions"):
        gabor_features(np.zeros((1, 784)), options="l2")
    with pytest.raises(InvalidInputError, match="image_shape"):
        o.feature_dim((0, 28))


@pytest.mark.parametrize(
    "opts",
    [
        GaborOptions(),
        GaborOptions(output="real_imag", include_image=True, pool_size=6, pool_stride=4),
        GaborOptions(n_orientations=3, wavelengths=(3.0, 5.0, 8.0), pool_size=5, pool_stride=3),
        GaborOptions(n_orientations=2, wavelengths=(4.0,), pool_size=1),
    ],
)
@pytest.mark.parametrize("shape", [(28, 28), (20, 33)])
def test_feature_dim_matches_the_features(opts, shape):
    imgs = np.random.default_rng(7).random((2, *shape))
    F = gabor_features(imgs, options=opts)
    assert F.shape == (2, opts.feature_dim(shape)) == (2, gabor_feature_dim(shape, opts))


def test_dtype_option_sets_the_working_precision():
    imgs = np.random.default_rng(8).random((3, 784))
    F64 = gabor_features(imgs)
    F32 = gabor_features(imgs, options=GaborOptions(dtype="float32"))
    assert F64.dtype == np.float64 and F32.dtype == np.float32
    # same features in complex64 FFTs: error ~ log2(64) * 6e-8 relative on unit-norm rows,
    # so 1e-5 absolute is loose for round-off yet far below a wrong pipeline (entries ~ 0.04)
    np.testing.assert_allclose(F32, F64, rtol=0, atol=1e-5)
    assert not np.array_equal(F32.astype(np.float64), F64)  # it really ran in float32


def test_saved_selection_settings_load_as_options():
    # kernelgen/data/gabor_selection.json (package data) stores the feature settings of each grid entry and the
    # feature dimension the earlier implementation produced: both must survive the options API
    import importlib.resources

    sel = json.loads((importlib.resources.files("kernelgen") / "data" / "gabor_selection.json").read_text())
    entries = sel["results"] + [sel["chosen"]]
    assert len(entries) >= 2
    for r in entries:
        opts = GaborOptions.from_dict(r["features"])
        assert opts.feature_settings() == r["features"]
        assert opts.feature_dim((28, 28)) == r["feature_dim"]


# ---------------------------------------------------------------- script
def test_mnist_gabor_smoke(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mnist_gabor.py"), "--smoke",
         "--out-dir", str(tmp_path), "--json-out", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("test_error", "validation_error", "feature_dim", "seconds", "peak_rss_gb"):
        assert key in metrics
    # synthetic two-pattern task (orientated gratings): the interpolant must beat chance clearly
    assert metrics["test_error"] < 0.25
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert (tmp_path / "gabor_filters.png").stat().st_size > 0
    assert (tmp_path / "validation_error.png").stat().st_size > 0
