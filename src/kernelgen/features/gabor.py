"""Gabor filter banks and Gabor-modulus features for small images (e.g. MNIST).

A Gabor filter is a complex plane wave under a Gaussian envelope (Gabor 1946; in two
dimensions Daugman 1985). Zhang et al. (2017, section 5) report that applying "a Gabor
wavelet transform" to MNIST before solving the kernel interpolation system ``K alpha = y``
lowers the test error from 1.2% to 0.6%, but give no parameters. This module provides a
documented, parameterised bank and a memory-bounded feature pipeline:

    image -> |image * psi_{s, k}|  (complex modulus, one map per filter)
          -> ** power              (optional compression, e.g. 0.5)
          -> mean / max pooling    (window ``pool_size``, step ``pool_stride``)
          -> flatten, per-image normalisation

Conventions
-----------
* Coordinates: ``x`` is the column index (to the right), ``y`` the row index (downwards),
  both centred on the filter's middle pixel (filters have odd side lengths).
* A filter with orientation ``theta`` oscillates along the unit vector
  ``(cos theta, sin theta)`` in (x, y): ``theta = 0`` varies along the columns and thus
  responds to vertical strokes. Orientations are ``theta_k = k * pi / n_orientations``;
  ``theta`` and ``theta + pi`` give the same modulus, so ``[0, pi)`` is enough.
* ``frequency = 1 / wavelength`` in cycles per pixel.
* Each filter has zero mean (Morlet correction, see :func:`gabor_filter`), so a constant
  image gives no response, and its envelope is normalised to unit sum, so that a plane
  wave ``exp(i 2 pi f x')`` of the matching frequency and orientation gives a response of
  modulus close to 1 away from the borders.

Every setting of the pipeline lives in one frozen, validated :class:`GaborOptions` (vary it with
:func:`dataclasses.replace`)::

    from dataclasses import replace
    opts = replace(GaborOptions(), wavelengths=(3.0, 5.0, 8.0), power=0.5)
    F = gabor_features(X, options=opts)          # X: (n, 784) MNIST in [0, 1]

Dtype policy: float32 input gives complex64 FFTs and float32 features; anything else is
computed in complex128 / float64 (unless ``GaborOptions.dtype`` is given).

This module holds the options and the pipeline (transform, pooling, features); the filter bank
(:func:`gabor_filter`, :func:`gabor_bank`, :class:`GaborBank`, :func:`sigma_from_bandwidth`,
:func:`plot_gabor_bank`) lives in ``kernelgen.features._bank`` and is re-exported here.

References
----------
.. [1] D. Gabor, "Theory of communication", J. IEE 93(26):429-457, 1946.
.. [2] J. G. Daugman, "Uncertainty relation for resolution in space, spatial frequency,
       and orientation optimized by two-dimensional visual cortical filters",
       J. Opt. Soc. Am. A 2(7):1160-1169, 1985 (2-D Gabor, eqs. 9-10; octave bandwidth).
.. [3] C. Zhang, S. Bengio, M. Hardt, B. Recht, O. Vinyals, "Understanding deep learning
       requires rethinking generalization", ICLR 2017, section 5.
.. [4] J. Bruna and S. Mallat, "Invariant scattering convolution networks", IEEE TPAMI
       35(8), 2013 (the Morlet zero-mean correction and modulus + averaging pipeline).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import scipy.fft

from .._validation import as_float_array, float_dtype_name
from ..errors import InvalidInputError, MemoryBudgetError, ShapeMismatchError
from ..numerics import WORKING_MEMORY_BYTES
from ._bank import (
    GaborBank,
    _check_bank,
    _is_finite_real,
    _is_int,
    gabor_bank,
    gabor_filter,
    plot_gabor_bank,
    sigma_from_bandwidth,
)

__all__ = [
    "GaborOptions",
    "GaborBank",
    "gabor_filter",
    "gabor_bank",
    "sigma_from_bandwidth",
    "gabor_transform",
    "pool2d",
    "gabor_features",
    "gabor_feature_dim",
    "plot_gabor_bank",
]

logger = logging.getLogger(__name__)

# Temporaries alive at once per image in one batch, in units of one complex
# (n_filters, P, P) spectrum: the product spectrum and its inverse FFT (scipy.fft may
# allocate both), with the padded image spectra and the float modulus as smaller terms.
_WORK_COPIES = 2.5

_OUTPUTS = ("modulus", "real_imag")
_POOL_METHODS = ("mean", "max")
_NORMALIZATIONS = ("l2", "none")




@dataclasses.dataclass(frozen=True)
class GaborOptions:
    """Every setting of the Gabor feature pipeline, in one frozen, validated object.

    Vary a setting with :func:`dataclasses.replace` (the copy is validated again)::

        from dataclasses import replace
        opts = replace(GaborOptions(), wavelengths=(3.0, 5.0, 8.0), power=0.5)

    Parameters
    ----------
    n_orientations : int, default 8
        Filter bank: orientations ``k * pi / n_orientations``, k < n_orientations (>= 1).
    wavelengths : sequence of float, default (4.0, 8.0)
        Filter bank: carrier wavelengths in pixels, each >= 2 (the Nyquist limit); stored as a
        tuple of floats. Frequency = 1 / wavelength.
    bandwidth : float, default 1.0
        Filter bank: half-magnitude frequency bandwidth of each filter **in octaves** along the
        wave (Daugman 1985), which sets the envelope width ``sigma_x`` through
        :func:`sigma_from_bandwidth`. Not a kernel bandwidth.
    aspect_ratio : float, default 1.0
        Filter bank: ``sigma_y / sigma_x`` of the envelope (> 1: elongated along the stroke).
    output : {"modulus", "real_imag"}, default "modulus"
        Response: the complex modulus ``|image * psi|`` (phase-invariant), or the real and
        imaginary parts as separate channels (twice as many).
    power : float, default 1.0
        Response: exponent (> 0) applied before pooling (1 = none; 0.5 compresses large
        responses); sign-preserving for "real_imag".
    pool_size : int, default 4
        Pooling window side in pixels (>= 1), see :func:`pool2d`.
    pool_stride : int or None, default None
        Step between pooling windows (>= 1); None means ``pool_size`` (non-overlapping).
    pool_method : {"mean", "max"}, default "mean"
    include_image : bool, default False
        Append the image itself, pooled the same way, as one extra channel.
    normalize : {"l2", "none"}, default "l2"
        ``"l2"``: each feature vector divided by its Euclidean norm (all-zero rows stay 0).
    dtype : None, "float32" or "float64", default None
        Working and output precision; None follows the images (float32 stays float32, anything
        else float64). Stored as the dtype's name.
    memory_budget : int, default :data:`kernelgen.numerics.WORKING_MEMORY_BYTES` (256 MiB)
        Bytes of working memory for one batch of images (the returned array is not counted).
    workers : int or None, default None
        Threads for ``scipy.fft`` (None: SciPy's default; negative values count back from the
        number of CPUs, as in SciPy; 0 is not allowed).

    Raises
    ------
    InvalidInputError
        For any field outside its allowed range or type; the message names the field.

    Notes
    -----
    The first eleven fields define the feature map (:meth:`feature_settings`, what a selection
    run records); ``dtype``, ``memory_budget`` and ``workers`` say how it is computed
    (``dtype`` changes values only by rounding; the other two not at all).

    Examples
    --------
    >>> from dataclasses import replace
    >>> opts = replace(GaborOptions(), wavelengths=(3, 5, 8))
    >>> opts.wavelengths, opts.feature_dim((28, 28))
    ((3.0, 5.0, 8.0), 1176)
    """

    # filter bank
    n_orientations: int = 8
    wavelengths: tuple = (4.0, 8.0)
    bandwidth: float = 1.0
    aspect_ratio: float = 1.0
    # response
    output: str = "modulus"
    power: float = 1.0
    # pooling
    pool_size: int = 4
    pool_stride: int | None = None
    pool_method: str = "mean"
    # feature vector
    include_image: bool = False
    normalize: str = "l2"
    # how it is computed
    dtype: str | None = None
    memory_budget: int = WORKING_MEMORY_BYTES
    workers: int | None = None

    def __post_init__(self):
        def bad(name, value, allowed):
            raise InvalidInputError(f"GaborOptions.{name} = {value!r} is invalid: {allowed}.")

        def put(name, value):
            object.__setattr__(self, name, value)

        n_o, wl = _check_bank(self.n_orientations, self.wavelengths, self.bandwidth, self.aspect_ratio, bad)
        put("n_orientations", n_o)
        put("wavelengths", wl)
        put("bandwidth", float(self.bandwidth))
        put("aspect_ratio", float(self.aspect_ratio))
        if not isinstance(self.output, str) or self.output not in _OUTPUTS:
            bad("output", self.output, f"one of {_OUTPUTS}")
        if not _is_finite_real(self.power) or self.power <= 0:
            bad("power", self.power, "a finite number > 0")
        put("power", float(self.power))
        if not _is_int(self.pool_size) or self.pool_size < 1:
            bad("pool_size", self.pool_size, "an integer >= 1")
        put("pool_size", int(self.pool_size))
        if self.pool_stride is not None:
            if not _is_int(self.pool_stride) or self.pool_stride < 1:
                bad("pool_stride", self.pool_stride, "None (= pool_size) or an integer >= 1")
            put("pool_stride", int(self.pool_stride))
        if not isinstance(self.pool_method, str) or self.pool_method not in _POOL_METHODS:
            bad("pool_method", self.pool_method, f"one of {_POOL_METHODS}")
        if not isinstance(self.include_image, (bool, np.bool_)):
            bad("include_image", self.include_image, "True or False")
        put("include_image", bool(self.include_image))
        if not isinstance(self.normalize, str) or self.normalize not in _NORMALIZATIONS:
            bad("normalize", self.normalize, f"one of {_NORMALIZATIONS}")
        if self.dtype is not None:
            put("dtype", float_dtype_name(self.dtype, "GaborOptions.dtype"))
        if not _is_int(self.memory_budget) or self.memory_budget < 1:
            bad("memory_budget", self.memory_budget, "a positive integer number of bytes")
        put("memory_budget", int(self.memory_budget))
        if self.workers is not None:
            if not _is_int(self.workers) or self.workers == 0:
                bad("workers", self.workers, "None or a non-zero integer (scipy.fft workers)")
            put("workers", int(self.workers))

    # ------------------------------------------------------------------ derived
    @property
    def stride(self) -> int:
        """The pooling step actually used: ``pool_stride``, or ``pool_size`` when None."""
        return self.pool_size if self.pool_stride is None else self.pool_stride

    @property
    def n_channels(self) -> int:
        """Filter channels before pooling: ``n_orientations * len(wavelengths)`` (x2 for "real_imag")."""
        return self.n_orientations * len(self.wavelengths) * (2 if self.output == "real_imag" else 1)

    def feature_dim(self, image_shape=(28, 28)) -> int:
        """Length ``D`` of the feature vector for images of ``image_shape`` (H, W).

        ``D = (n_channels + include_image) * ceil(H / stride) * ceil(W / stride)``.

        Raises
        ------
        InvalidInputError
            ``image_shape`` is not two positive integers.
        """
        try:
            H, W = (int(v) for v in image_shape)
        except (TypeError, ValueError):
            raise InvalidInputError(f"image_shape={image_shape!r} must be two positive integers (H, W).") from None
        if H < 1 or W < 1:
            raise InvalidInputError(f"image_shape={image_shape!r} must be two positive integers (H, W).")
        oh, ow = -(-H // self.stride), -(-W // self.stride)
        return (self.n_channels + (1 if self.include_image else 0)) * oh * ow

    def bank(self, *, dtype=np.complex128) -> "GaborBank":
        """The filter bank these options describe (:func:`gabor_bank`)."""
        return gabor_bank(n_orientations=self.n_orientations, wavelengths=self.wavelengths,
                          bandwidth=self.bandwidth, aspect_ratio=self.aspect_ratio, dtype=dtype)

    # ------------------------------------------------------------------ (de)serialisation
    def feature_settings(self) -> dict:
        """The fields that define the feature map (JSON-ready; ``wavelengths`` as a list)."""
        return {k: v for k, v in self.to_dict().items() if k not in _HOW_FIELDS}

    def to_dict(self) -> dict:
        """Every field, JSON-ready (``wavelengths`` as a list)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["wavelengths"] = list(d["wavelengths"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GaborOptions":
        """Options from a dict of fields (any subset; the rest default), e.g. a saved selection's
        ``"features"``. Unknown names raise :class:`InvalidInputError` naming them."""
        if not isinstance(d, dict):
            raise InvalidInputError(f"GaborOptions.from_dict needs a dict, got {type(d).__name__}.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise InvalidInputError(f"unknown GaborOptions field(s) {unknown}; known: {known}.")
        return cls(**d)

    @classmethod
    def coerce(cls, options) -> "GaborOptions":
        """``None`` -> defaults; a GaborOptions as is; a dict -> :meth:`from_dict`."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, dict):
            return cls.from_dict(options)
        raise InvalidInputError(
            f"options must be None, a GaborOptions or a dict, got {type(options).__name__}.")


#: GaborOptions fields that say how the features are computed, not what they are.
_HOW_FIELDS = ("dtype", "memory_budget", "workers")


def _as_images(images, image_shape, name="images"):
    """(n, H*W) or (n, H, W) -> float array (n, H, W) (a view when possible)."""
    a = np.asarray(images)
    if a.ndim == 2:
        if image_shape is None:
            side = math.isqrt(a.shape[1])
            if side * side != a.shape[1]:
                raise ShapeMismatchError(
                    f"{name} has {a.shape[1]} columns, not a square image; pass image_shape=(H, W)."
                )
            image_shape = (side, side)
        if a.shape[1] != image_shape[0] * image_shape[1]:
            raise ShapeMismatchError(
                f"{name} has {a.shape[1]} columns but image_shape={image_shape} needs "
                f"{image_shape[0] * image_shape[1]}."
            )
        a = as_float_array(a, name, ndim=(2,))
        return a.reshape(a.shape[0], *image_shape)
    return as_float_array(a, name, ndim=(3,))


def _plan_batch(n_images, n_filters, pad_shape, out_bytes_per_image, itemsize, memory_budget):
    """Images per batch so that one batch's working set stays within ``memory_budget``."""
    spec_bytes = n_filters * pad_shape[0] * pad_shape[1] * 2 * itemsize
    per_image = int(_WORK_COPIES * spec_bytes + out_bytes_per_image)
    if per_image > memory_budget:
        raise MemoryBudgetError(
            f"one image needs ~{per_image / 1e6:.2f} MB of working memory "
            f"({n_filters} filters on a {pad_shape} FFT grid) but memory_budget is "
            f"{memory_budget / 1e6:.2f} MB; raise memory_budget or use fewer/smaller filters.",
            bytes_needed=per_image,
            bytes_available=int(memory_budget),
        )
    return max(1, min(n_images, memory_budget // per_image)), per_image


def _filter_spectra(bank: GaborBank, image_hw, cdtype):
    size = bank.size
    # Circular convolution on a grid of P points equals the linear one on the 'same' window
    # [r0, r0 + H) of the full output (r0 = (size - 1) / 2) when nothing wraps into it:
    # r0 + H - 1 < P and r0 + P > H + size - 2, i.e. P >= H + (size - 1) / 2 (and P >= size
    # to hold the filter) -- smaller than the full H + size - 1 needed for 'full' output.
    half = (size - 1) // 2
    pad = tuple(scipy.fft.next_fast_len(max(n + half, size)) for n in image_hw)
    spectra = scipy.fft.fft2(bank.filters.astype(cdtype), s=pad, axes=(-2, -1))
    return spectra, pad


def _transform_batch(batch, spectra, pad, size, output, workers):
    """Convolve a batch (B, H, W) with all filters; returns (B, F, H, W) ('same' crop)."""
    H, W = batch.shape[-2:]
    img_spec = scipy.fft.fft2(batch, s=pad, axes=(-2, -1), workers=workers)
    prod = img_spec[:, None, :, :] * spectra[None, :, :, :]
    del img_spec
    full = scipy.fft.ifft2(prod, axes=(-2, -1), workers=workers, overwrite_x=True)
    del prod
    r0 = c0 = (size - 1) // 2  # 'same' crop, as scipy.signal.fftconvolve(mode="same")
    resp = full[:, :, r0 : r0 + H, c0 : c0 + W]
    if output == "modulus":
        return np.abs(resp)
    if output == "complex":
        return np.ascontiguousarray(resp)
    # "real_imag": stack real and imaginary parts as separate channels (B, 2F, H, W)
    return np.concatenate([resp.real, resp.imag], axis=1)


def _dtypes(images_dtype, dtype):
    fdtype = np.dtype(dtype) if dtype is not None else np.dtype(images_dtype)
    if fdtype not in (np.float32, np.float64):
        raise InvalidInputError(f"dtype must be float32 or float64, got {fdtype}.")
    cdtype = np.complex64 if fdtype == np.float32 else np.complex128
    return fdtype, np.dtype(cdtype)


def gabor_transform(
    images,
    bank: GaborBank,
    *,
    image_shape: tuple[int, int] | None = None,
    output: str = "modulus",
    dtype=None,
    memory_budget: int = WORKING_MEMORY_BYTES,
    workers: int | None = None,
):
    """Convolve every image with every filter of ``bank`` (FFT, zero padding, 'same' size).

    Parameters
    ----------
    images : array_like of shape (n, H*W) or (n, H, W)
        Real images; 2-D input is reshaped with ``image_shape`` (default square).
    bank : GaborBank
    image_shape : (int, int), optional
    output : {"modulus", "real_imag", "complex"}
        ``|image * psi|`` (phase-invariant), real and imaginary parts as ``2F`` channels
        (real parts first), or the complex response.
    dtype : {None, float32, float64}
        Working precision; default that of the images (integers -> float64).
    memory_budget : int, default :data:`kernelgen.numerics.WORKING_MEMORY_BYTES`
        Bytes of working memory for one batch; images are processed in batches so that
        FFT temporaries stay within it. Raises :class:`~kernelgen.errors.MemoryBudgetError`
        if a single image does not fit. The returned array is not counted.
    workers : int, optional
        Threads for ``scipy.fft``.

    Returns
    -------
    responses : ndarray of shape (n, F, H, W) (``(n, 2F, H, W)`` for "real_imag")
        Equal to ``scipy.signal.fftconvolve(image, psi, mode="same")`` per filter.

    References
    ----------
    Daugman (1985); Zhang et al. (2017), §5.
    """
    if output not in ("modulus", "real_imag", "complex"):
        raise InvalidInputError(f"output={output!r}; choose 'modulus', 'real_imag' or 'complex'.")
    if not _is_int(memory_budget) or memory_budget < 1:
        raise InvalidInputError(f"memory_budget={memory_budget!r} must be a positive integer number of bytes.")
    x = _as_images(images, image_shape)
    fdtype, cdtype = _dtypes(x.dtype, dtype)
    n, H, W = x.shape
    spectra, pad = _filter_spectra(bank, (H, W), cdtype)
    ch = bank.n_filters * (2 if output == "real_imag" else 1)
    out_dtype = cdtype if output == "complex" else fdtype
    out_item = ch * H * W * np.dtype(out_dtype).itemsize
    batch, _ = _plan_batch(n, bank.n_filters, pad, out_item, fdtype.itemsize, memory_budget)
    out = np.empty((n, ch, H, W), dtype=out_dtype)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        out[start:stop] = _transform_batch(
            x[start:stop].astype(fdtype, copy=False), spectra, pad, bank.size, output, workers
        )
    return out


def _pool_geometry(length, size, stride):
    n_out = -(-length // stride)  # ceil: every pixel lands in some window
    total = (n_out - 1) * stride + size - length
    if total < 0:
        total = 0
    before = total // 2
    return n_out, before, total - before


def pool2d(maps, *, size: int = 4, stride: int | None = None, method: str = "mean"):
    """Pool the last two axes of ``maps`` over ``size x size`` windows every ``stride`` pixels.

    The maps are zero-padded symmetrically so that the output has ``ceil(H / stride)`` by
    ``ceil(W / stride)`` cells (28 x 28 maps: stride 4 -> 7 x 7, stride 3 -> 10 x 10,
    stride 2 -> 14 x 14). Windows wider than the stride overlap.

    Parameters
    ----------
    maps : ndarray of shape (..., H, W)
    size : int
        Window side (pixels).
    stride : int, optional
        Step between windows; default ``size`` (non-overlapping).
    method : {"mean", "max"}
        Mean over the window (zero padding counts as zeros, i.e. a fixed ``1/size^2``
        weight) or maximum.

    Returns
    -------
    pooled : ndarray of shape (..., ceil(H / stride), ceil(W / stride))
    """
    stride = size if stride is None else int(stride)
    size = int(size)
    if size < 1 or stride < 1:
        raise InvalidInputError(f"pool size={size} and stride={stride} must be >= 1.")
    if method not in ("mean", "max"):
        raise InvalidInputError(f"method={method!r}; choose 'mean' or 'max'.")
    maps = np.asarray(maps)
    H, W = maps.shape[-2:]
    if size == 1 and stride == 1:
        return maps.copy()
    oh, bh, ah = _pool_geometry(H, size, stride)
    ow, bw, aw = _pool_geometry(W, size, stride)
    pad = [(0, 0)] * (maps.ndim - 2) + [(bh, ah), (bw, aw)]
    p = np.pad(maps, pad)
    win = np.lib.stride_tricks.sliding_window_view(p, (size, size), axis=(-2, -1))
    win = win[..., ::stride, ::stride, :, :][..., :oh, :ow, :, :]
    if method == "mean":
        return win.mean(axis=(-2, -1))
    return win.max(axis=(-2, -1))


def gabor_feature_dim(image_shape=(28, 28), options: GaborOptions | dict | None = None) -> int:
    """Length ``D`` of the feature vector :func:`gabor_features` returns.

    Parameters
    ----------
    image_shape : (int, int)
    options : GaborOptions or dict, optional
        Default ``GaborOptions()``.

    Returns
    -------
    int
        ``(channels + include_image) * ceil(H / stride) * ceil(W / stride)`` with
        ``channels = n_orientations * len(wavelengths)`` (twice that for "real_imag");
        :meth:`GaborOptions.feature_dim`.

    Raises
    ------
    InvalidInputError
        Invalid options or image shape.
    """
    return GaborOptions.coerce(options).feature_dim(image_shape)


def gabor_features(
    images,
    *,
    image_shape: tuple[int, int] | None = None,
    options: GaborOptions | dict | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Gabor-modulus features of a set of images, computed in memory-bounded batches.

    Pipeline per batch: FFT convolution with the bank (:func:`gabor_transform`), complex
    modulus (or real/imaginary parts), ``** power`` (sign-preserving for real parts),
    :func:`pool2d`, flatten (channel-major: filter, row, column), optional pooled raw
    image channel, then per-image normalisation. The full ``(n, F, H, W)`` response never
    exists: only one batch does.

    Parameters
    ----------
    images : array_like of shape (n, H*W) or (n, H, W)
        E.g. MNIST scaled to [0, 1].
    image_shape : (int, int), optional
        Needed for flat non-square images.
    options : GaborOptions or dict, optional
        Every setting of the pipeline (bank, response, pooling, normalisation, dtype,
        memory budget, FFT workers); default ``GaborOptions()``. A dict is read with
        :meth:`GaborOptions.from_dict`.
    verbose : bool
        tqdm progress over batches.

    Returns
    -------
    features : ndarray of shape (n, D), float32 or float64
        ``D = options.feature_dim((H, W))``; e.g. 8 orientations x 2 wavelengths on 28 x 28
        images pooled with stride 4: ``D = 16 * 7 * 7 = 784``. float32 for float32 images
        (or ``dtype="float32"``), float64 otherwise.

    Raises
    ------
    InvalidInputError
        Invalid options (the field is named) or images that are not finite.
    ShapeMismatchError
        Images whose size does not match ``image_shape`` (or are not square when flat).
    MemoryBudgetError
        A single image needs more working memory than ``options.memory_budget``.

    References
    ----------
    Gabor (1946); Daugman (1985); Zhang et al. (2017), §5 ("first applying a Gabor
    wavelet transform"); Bruna & Mallat (2013) for modulus + local averaging.
    """
    from tqdm.auto import tqdm

    opts = GaborOptions.coerce(options)
    x = _as_images(images, image_shape)
    fdtype, cdtype = _dtypes(x.dtype, opts.dtype)
    n, H, W = x.shape
    bank = opts.bank(dtype=cdtype)
    spectra, pad = _filter_spectra(bank, (H, W), cdtype)
    D = opts.feature_dim((H, W))
    ch = opts.n_channels
    # per image in a batch: the (F', H, W) response and its powered copy, plus pooling windows
    extra = 3 * ch * H * W * fdtype.itemsize + 2 * D * fdtype.itemsize
    batch, per_image = _plan_batch(n, bank.n_filters, pad, extra, fdtype.itemsize, opts.memory_budget)
    logger.info(
        "gabor_features: n=%d, %d filters of size %d, FFT grid %s, D=%d, batch=%d (~%.1f MB)",
        n, bank.n_filters, bank.size, pad, D, batch, batch * per_image / 1e6,
    )
    out = np.empty((n, D), dtype=fdtype)
    starts = range(0, n, batch)
    for start in tqdm(starts, disable=not verbose, desc="gabor", unit="batch"):
        stop = min(n, start + batch)
        xb = x[start:stop].astype(fdtype, copy=False)
        resp = _transform_batch(xb, spectra, pad, bank.size, opts.output, opts.workers)
        if opts.power != 1.0:
            p = opts.power
            resp = np.sign(resp) * np.abs(resp) ** p if opts.output == "real_imag" else resp**p
        pooled = pool2d(resp, size=opts.pool_size, stride=opts.stride, method=opts.pool_method)
        del resp
        feats = pooled.reshape(stop - start, -1)
        if opts.include_image:
            img = pool2d(xb, size=opts.pool_size, stride=opts.stride, method=opts.pool_method)
            feats = np.concatenate([feats, img.reshape(stop - start, -1)], axis=1)
        if opts.normalize == "l2":
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            feats = feats / np.where(norms > 0, norms, 1.0)
        out[start:stop] = feats
    return out
