"""Small formulas several stages share: a floored spread to divide by, pooled class moments, "is this an image"."""

from __future__ import annotations

import numpy as np


def floor_spread(std: np.ndarray, eps: float = 1e-3, *, least: float = 1e-6, tiny: float = 1e-8) -> np.ndarray:
    """A channel's spread floored at ``eps`` of its layer's largest (at least ``least``) plus ``tiny``, to divide by."""
    return np.maximum(std, eps * max(float(std.max()), least)) + tiny


def pooled_moments(mean: np.ndarray, std: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All-class mean and std (over axis 0) from per-class ones, weighted by the class counts."""
    w = (counts / counts.sum()).reshape((-1,) + (1,) * (mean.ndim - 1))
    pooled = (w * mean).sum(0)
    var = (w * (std ** 2 + mean ** 2)).sum(0) - pooled ** 2
    return pooled, np.sqrt(np.maximum(var, 0.0))


def is_image(shape) -> bool:
    """An input shape (H, W, C) large enough for spatial priors (jitter, flips, total variation, shifts)."""
    return len(shape) == 3 and shape[0] >= 8 and shape[1] >= 8
