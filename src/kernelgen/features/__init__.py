"""Feature maps applied to data before a kernel solve (Gabor filter banks, ...).

The Gabor pipeline is configured by one frozen, validated :class:`GaborOptions`
(``gabor_features(X, options=GaborOptions(...))``; vary it with :func:`dataclasses.replace`).
"""

from .gabor import (
    GaborBank,
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

__all__ = [
    "GaborBank",
    "GaborOptions",
    "gabor_bank",
    "gabor_feature_dim",
    "gabor_features",
    "gabor_filter",
    "gabor_transform",
    "plot_gabor_bank",
    "pool2d",
    "sigma_from_bandwidth",
]
