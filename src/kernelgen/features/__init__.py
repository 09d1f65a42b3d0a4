"""Feature maps applied to data before a kernel solve (Gabor filter banks, ...)."""

from .gabor import (
    DEFAULT_MEMORY_BUDGET,
    GaborBank,
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
    "DEFAULT_MEMORY_BUDGET",
    "GaborBank",
    "gabor_bank",
    "gabor_feature_dim",
    "gabor_features",
    "gabor_filter",
    "gabor_transform",
    "plot_gabor_bank",
    "pool2d",
    "sigma_from_bandwidth",
]
