"""Small formulas several stages share: a floored spread to divide by, pooled class moments, "is this an image", how
many inputs of a shape a sample or a chunk holds."""

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
    return len(shape) == 3 and all(spatial_axes(shape))


def spatial_axes(shape) -> tuple[bool, ...]:
    """Which of an input's first two axes are a grid a convolution slides along (length 8 or more): both for an image,
    the first for a sequence (T, C) or a spectrogram laid out (T, 1, F), none for a vector."""
    if len(shape) not in (2, 3):
        return ()
    return tuple(n >= 8 for n in shape[:len(shape) - 1])


REFERENCE_VALUES = 32 * 32 * 3  # CIFAR-10's input: samples and chunks of larger inputs hold about as many values


def by_values(shape, n: int, least: int) -> int:
    """``n`` inputs of ``shape`` where one holds at most :data:`REFERENCE_VALUES` values, else about as many values
    as ``n`` such inputs (a multiple of 8 from 8 up), at least ``least``: e.g. a BatchNorm re-estimation's 2,048
    samples and chunks of 256 are 256 and 32 inputs of 224 x 224 x 3 (150,528 values each; inference chunks keep 32:
    smaller ones made the re-estimation of a MobileNetV2's 52 BatchNorm layers slow), whose 2,048 would hold 1.2 GB in
    float32 and a MobileNet's activations on 256 of them several GB."""
    values = max(1, int(np.prod(shape)))
    if values <= REFERENCE_VALUES:
        return n
    return max(least, min(n, 8 * (n * REFERENCE_VALUES // values // 8)))
