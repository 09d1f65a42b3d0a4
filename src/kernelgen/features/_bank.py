"""The Gabor filter bank: filters, their envelope widths, the bank and its picture (private; see
:mod:`kernelgen.features.gabor`, which re-exports the public names, for the conventions).

:func:`gabor_filter` builds one zero-mean (Morlet-corrected) complex filter, :func:`gabor_bank` a bank
of ``n_orientations x len(wavelengths)`` of them (a :class:`GaborBank`), :func:`sigma_from_bandwidth`
the envelope width for an octave bandwidth (Daugman 1985), and :func:`plot_gabor_bank` draws a bank.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from .._validation import is_finite_real, is_int
from ..errors import InvalidInputError

__all__ = ["GaborBank", "gabor_bank", "gabor_filter", "plot_gabor_bank", "sigma_from_bandwidth"]

_is_int, _is_finite_real = is_int, is_finite_real


def _check_bank(n_orientations, wavelengths, bandwidth, aspect_ratio, bad):
    """The one check of the filter-bank parameters (GaborOptions and gabor_bank share it).

    ``bad(name, value, allowed)`` raises; returns ``(n_orientations, wavelengths)`` normalised to
    ``int`` and a tuple of floats.
    """
    if not _is_int(n_orientations) or n_orientations < 1:
        bad("n_orientations", n_orientations, "an integer >= 1")
    wl = None
    if not isinstance(wavelengths, (str, bytes)):
        try:
            wl = tuple(float(w) for w in wavelengths)
        except (TypeError, ValueError):
            wl = None
    if not wl or not all(math.isfinite(w) and w >= 2.0 for w in wl):
        bad("wavelengths", wavelengths,
            "a non-empty sequence of finite wavelengths, each >= 2 pixels (the Nyquist limit)")
    if not _is_finite_real(bandwidth) or bandwidth <= 0:
        bad("bandwidth", bandwidth, "a finite number of octaves > 0")
    if not _is_finite_real(aspect_ratio) or aspect_ratio <= 0:
        bad("aspect_ratio", aspect_ratio, "a finite number > 0 (sigma_y / sigma_x)")
    return int(n_orientations), wl


def sigma_from_bandwidth(frequency, bandwidth: float = 1.0):
    """Envelope width along the wave for a given half-magnitude octave bandwidth.

    Parameters
    ----------
    frequency : float or array_like
        Centre frequency in cycles per pixel (> 0).
    bandwidth : float
        Full width of the frequency response at half its peak magnitude, in octaves
        (Daugman 1985: cortical simple cells have about 1-1.5 octaves).

    Returns
    -------
    sigma : float or ndarray
        Standard deviation (pixels) of the Gaussian envelope along the wave direction,
        ``sigma = sqrt(ln 2 / 2) / (pi f) * (2**b + 1) / (2**b - 1)``.

    Notes
    -----
    The envelope ``exp(-x^2 / (2 sigma^2))`` has Fourier transform of standard deviation
    ``1 / (2 pi sigma)`` (cycles/pixel); its half-magnitude half-width is
    ``sqrt(2 ln 2) / (2 pi sigma)``. Requiring the half-magnitude band to be
    ``[f 2^{-b/2} ... ]`` of ratio ``2**b`` around ``f`` gives the formula above
    (the same relation as scikit-image's ``gabor_kernel``).
    """
    f = np.asarray(frequency, dtype=float)
    if np.any(f <= 0) or bandwidth <= 0:
        raise InvalidInputError("frequency and bandwidth must be positive.")
    b = float(bandwidth)
    out = math.sqrt(math.log(2) / 2) / (math.pi * f) * (2**b + 1) / (2**b - 1)
    return float(out) if out.ndim == 0 else out


def gabor_filter(
    frequency: float,
    theta: float,
    *,
    sigma_x: float,
    sigma_y: float | None = None,
    size: int | None = None,
    n_sigma: float = 3.0,
    zero_mean: bool = True,
    dtype=np.complex128,
) -> np.ndarray:
    """One complex 2-D Gabor filter (Daugman 1985, eq. 9).

    ``psi(x, y) = g(x', y') * (exp(i 2 pi f x') - beta)`` with ``x' = x cos t + y sin t``,
    ``y' = -x sin t + y cos t``, ``g = exp(-x'^2/(2 sx^2) - y'^2/(2 sy^2)) / Z`` and ``Z``
    such that ``sum g = 1``.

    Parameters
    ----------
    frequency : float
        Frequency of the carrier in cycles per pixel (``1 / wavelength``), in (0, 0.5].
    theta : float
        Orientation (radians) of the wave vector, measured from the x (column) axis
        towards the y (row, downward) axis.
    sigma_x : float
        Envelope standard deviation (pixels) along the wave direction ``x'``.
    sigma_y : float, optional
        Envelope standard deviation across the wave (along ``y'``); default ``sigma_x``.
    size : int, optional
        Odd side length of the square support. Default ``2 * ceil(n_sigma * max(sx, sy)) + 1``.
    n_sigma : float
        Half-width of the default support in envelope standard deviations.
    zero_mean : bool
        Subtract ``beta = sum(g exp(i 2 pi f x')) / sum(g)`` times the envelope (the Morlet
        correction, Bruna & Mallat 2013), so that ``sum(psi) == 0``: the real part then has
        zero mean and a constant image gives zero response. (The imaginary part is odd and
        already sums to zero.)
    dtype : complex dtype
        ``complex64`` or ``complex128``.

    Returns
    -------
    psi : ndarray of shape (size, size), complex
        Row index = y, column index = x, centre at ``(size // 2, size // 2)``.

    References
    ----------
    Gabor (1946); Daugman (1985) eqs. 9-10; Bruna & Mallat (2013) eq. 7 (Morlet).

    Examples
    --------
    >>> psi = gabor_filter(0.25, 0.0, sigma_x=2.0)
    >>> psi.shape, bool(abs(psi.real.sum()) < 1e-12)
    ((13, 13), True)
    """
    if not (0 < frequency <= 0.5):
        raise InvalidInputError(
            f"frequency={frequency} must be in (0, 0.5] cycles/pixel (the Nyquist limit); "
            "use a wavelength of at least 2 pixels."
        )
    if sigma_x <= 0 or (sigma_y is not None and sigma_y <= 0):
        raise InvalidInputError("sigma_x and sigma_y must be positive.")
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if size is None:
        size = 2 * int(math.ceil(n_sigma * max(sigma_x, sigma_y))) + 1
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise InvalidInputError(f"size={size} must be a positive odd integer (centred filter).")
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    xr = x * c + y * s  # Daugman (1985) eq. 9: rotated coordinates
    yr = -x * s + y * c
    env = np.exp(-0.5 * (xr**2 / sigma_x**2 + yr**2 / sigma_y**2))
    env /= env.sum()  # unit-sum envelope: matched plane wave -> response modulus ~ 1
    carrier = np.exp(2j * np.pi * frequency * xr)
    psi = env * carrier
    if zero_mean:
        beta = psi.sum() / env.sum()  # Morlet correction: sum(psi) becomes 0
        psi = psi - beta * env
    return psi.astype(dtype)


@dataclasses.dataclass(frozen=True)
class GaborBank:
    """A bank of complex Gabor filters on a common square support.

    Attributes
    ----------
    filters : ndarray of shape (n_scales * n_orientations, size, size), complex
        Scale-major order: filter ``s * n_orientations + k`` has wavelength
        ``wavelengths[s]`` and orientation ``thetas[k]``.
    wavelengths : tuple of float
        Carrier wavelengths in pixels (frequency = 1 / wavelength).
    thetas : tuple of float
        Orientations in radians, ``k * pi / n_orientations``.
    sigmas : tuple of (float, float)
        ``(sigma_x, sigma_y)`` of the envelope per scale.
    """

    filters: np.ndarray
    wavelengths: tuple
    thetas: tuple
    sigmas: tuple

    @property
    def n_filters(self) -> int:
        return int(self.filters.shape[0])

    @property
    def size(self) -> int:
        return int(self.filters.shape[-1])

    def params(self, index: int) -> dict:
        """Wavelength, frequency, orientation and envelope widths of filter ``index``."""
        s, k = divmod(int(index), len(self.thetas))
        return {
            "wavelength": self.wavelengths[s],
            "frequency": 1.0 / self.wavelengths[s],
            "theta": self.thetas[k],
            "sigma_x": self.sigmas[s][0],
            "sigma_y": self.sigmas[s][1],
        }


def gabor_bank(
    *,
    n_orientations: int = 8,
    wavelengths: Sequence[float] = (4.0, 8.0),
    bandwidth: float = 1.0,
    aspect_ratio: float = 1.0,
    n_sigma: float = 3.0,
    size: int | None = None,
    dtype=np.complex128,
) -> GaborBank:
    """Build a bank of ``len(wavelengths) * n_orientations`` zero-mean complex Gabor filters.

    Parameters
    ----------
    n_orientations : int
        Number of orientations, evenly spaced in ``[0, pi)``.
    wavelengths : sequence of float
        Carrier wavelengths in pixels (each >= 2, the Nyquist limit).
    bandwidth : float
        Half-magnitude frequency bandwidth in octaves along the wave; sets
        ``sigma_x = sigma_from_bandwidth(1 / wavelength, bandwidth)`` (Daugman 1985).
    aspect_ratio : float
        ``sigma_y / sigma_x`` (> 1: elongated along the stroke, narrower orientation tuning).
    n_sigma : float
        Support half-width in envelope standard deviations (largest scale sets the size).
    size : int, optional
        Odd side length shared by all filters; default from the largest envelope.
    dtype : complex dtype

    Returns
    -------
    GaborBank

    Raises
    ------
    InvalidInputError
        A parameter outside its range (the same checks as :class:`GaborOptions`), named.

    References
    ----------
    Daugman (1985), eqs. 9-10 and the octave-bandwidth relation; Zhang et al. (2017), §5.

    Examples
    --------
    >>> bank = gabor_bank(n_orientations=4, wavelengths=(4.0,))
    >>> bank.filters.shape
    (4, 15, 15)
    """
    def bad(name, value, allowed):
        raise InvalidInputError(f"gabor_bank: {name}={value!r} is invalid: {allowed}.")

    n_orientations, wavelengths = _check_bank(n_orientations, wavelengths, bandwidth, aspect_ratio, bad)
    if not _is_finite_real(n_sigma) or n_sigma <= 0:
        bad("n_sigma", n_sigma, "a finite number > 0")
    sigmas = tuple(
        (sx, sx * aspect_ratio)
        for sx in (sigma_from_bandwidth(1.0 / w, bandwidth) for w in wavelengths)
    )
    if size is None:
        size = 2 * int(math.ceil(n_sigma * max(max(s) for s in sigmas))) + 1
    thetas = tuple(k * math.pi / n_orientations for k in range(int(n_orientations)))
    filters = np.stack(
        [
            gabor_filter(1.0 / w, t, sigma_x=sx, sigma_y=sy, size=size, dtype=dtype)
            for w, (sx, sy) in zip(wavelengths, sigmas)
            for t in thetas
        ]
    )
    return GaborBank(filters=filters, wavelengths=wavelengths, thetas=thetas, sigmas=sigmas)


def plot_gabor_bank(bank: GaborBank, *, part: str = "real", fig=None):
    """Draw every filter of ``bank`` on a grid (rows: wavelengths, columns: orientations).

    Parameters
    ----------
    bank : GaborBank
    part : {"real", "imag", "modulus", "spectrum"}
        What to show: real or imaginary part, modulus of the filter, or the modulus of its
        (centred) Fourier transform.
    fig : matplotlib.figure.Figure, optional
        Figure to draw on (cleared first); a new one is created when omitted.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if part not in ("real", "imag", "modulus", "spectrum"):
        raise InvalidInputError(f"part={part!r}; choose 'real', 'imag', 'modulus' or 'spectrum'.")
    n_s, n_o = len(bank.wavelengths), len(bank.thetas)
    if fig is None:
        fig = plt.figure(figsize=(1.3 * n_o + 0.6, 1.4 * n_s + 0.5))
    else:
        fig.clear()
    axes = fig.subplots(n_s, n_o, squeeze=False)
    for i in range(bank.n_filters):
        s, k = divmod(i, n_o)
        psi = bank.filters[i]
        if part == "real":
            img, cmap = psi.real, "RdBu_r"
        elif part == "imag":
            img, cmap = psi.imag, "RdBu_r"
        elif part == "modulus":
            img, cmap = np.abs(psi), "viridis"
        else:
            img = np.abs(np.fft.fftshift(np.fft.fft2(psi, s=(64, 64))))
            cmap = "viridis"
        lim = np.abs(img).max() or 1.0
        ax = axes[s, k]
        if cmap == "RdBu_r":
            ax.imshow(img, cmap=cmap, vmin=-lim, vmax=lim)
        else:
            ax.imshow(img, cmap=cmap)
        ax.set_xticks([])
        ax.set_yticks([])
        if s == 0:
            ax.set_title(f"{np.degrees(bank.thetas[k]):.0f}°", fontsize=8)
        if k == 0:
            ax.set_ylabel(f"λ={bank.wavelengths[s]:g}px", fontsize=8)
    fig.suptitle(f"Gabor bank ({part} part)" if part != "spectrum" else "Gabor bank |FFT|",
                 fontsize=9)
    return fig
