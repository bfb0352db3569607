"""A small conditional generator: (noise, class) -> an input in unit range, shaped like the teacher's input.

Fast-DFKD's generator (Linear -> BN -> upsample -> conv -> upsample -> conv -> sigmoid), cut to a
size that trains beside a student on two CPU cores, and conditioned on the target class
(NAYER's class embedding), so one generator covers every class without one start per class.
Images (H, W, C) are drawn at a quarter of their size and upsampled twice; other inputs come
from a two-layer MLP.
"""

from __future__ import annotations

import math

from .. import _compat
from .._math import is_image

LATENT = 64


def build_generator(shape: tuple, num_classes: int, *, channels: int = 64, seed: int = 0):
    """A Keras model ``[noise (B, LATENT), one-hot class (B, C)] -> (B, *shape)`` in [0, 1]."""
    k = _compat.keras()
    init = k.initializers.GlorotUniform
    noise = k.Input((LATENT,))
    label = k.Input((num_classes,))
    h = k.layers.Concatenate()([noise, k.layers.Dense(LATENT, kernel_initializer=init(seed))(label)])
    if is_image(shape):
        rows, cols, depth = shape
        r0, c0 = math.ceil(rows / 4), math.ceil(cols / 4)
        h = k.layers.Dense(channels * 2 * r0 * c0, kernel_initializer=init(seed + 1))(h)
        h = k.layers.BatchNormalization()(h)
        h = k.layers.Reshape((r0, c0, channels * 2))(h)
        for i, width in enumerate((channels, channels // 2)):
            h = k.layers.UpSampling2D(interpolation="nearest")(h)
            h = k.layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=init(seed + 2 + i))(h)
            h = k.layers.BatchNormalization()(h)
            h = k.layers.LeakyReLU(0.2)(h)
        h = k.layers.Conv2D(depth, 3, padding="same", kernel_initializer=init(seed + 4))(h)
        if (4 * r0, 4 * c0) != (rows, cols):
            h = k.layers.Cropping2D(((0, 4 * r0 - rows), (0, 4 * c0 - cols)))(h)
    else:
        size = int(math.prod(shape))
        h = k.layers.Dense(4 * channels, kernel_initializer=init(seed + 1))(h)
        h = k.layers.BatchNormalization()(h)
        h = k.layers.LeakyReLU(0.2)(h)
        h = k.layers.Dense(size, kernel_initializer=init(seed + 2))(h)
        h = k.layers.Reshape(tuple(shape))(h)
    out = k.layers.Activation("sigmoid")(h)
    return k.Model([noise, label], out, name="generator")
