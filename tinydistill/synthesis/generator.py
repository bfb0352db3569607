"""A small conditional generator: (noise, class) -> an input in unit range, shaped like the teacher's input.

Fast-DFKD's generator (Linear -> BN -> upsample -> conv -> upsample -> conv -> sigmoid), cut to a
size that trains beside a student on two CPU cores, and conditioned on the target class
(NAYER's class embedding), so one generator covers every class without one start per class.
Images (H, W, C) are drawn at a quarter of their size and upsampled twice (larger images: from a grid of at most
16 x 16, upsampled as often as it takes: :func:`stage_widths`). Sequences (T, C) and spectrograms laid out (T, 1, F)
are drawn the same way along their time axis only (3 x 1 convolutions, upsampled in time): a generator with the
convolutional prior of the teacher that reads them (on a 1-D convolution net, 88.9 against 86.7 % for the MLP it
replaced, two seeds: ``benchmarks/RESULTS.md``). Vectors come from a two-layer MLP.
"""

from __future__ import annotations

import math

from .. import _compat
from .._math import spatial_axes

LATENT = 64


START = 16  # the largest side of the grid an image generator starts from (CIFAR-10: 8 x 8, Fast-DFKD's)
MIN_CHANNELS = 8


def stage_widths(shape: tuple, channels: int) -> tuple[int, ...]:
    """Filters of an image generator's upsampling stages: two stages (``channels``, ``channels / 2``) where a
    quarter of the input's largest side is at most :data:`START` (MNIST, CIFAR-10, 49 x 10 spectrograms), else as
    many as bring the start grid to :data:`START` or less, each doubling the resolution and halving the filters (at
    least :data:`MIN_CHANNELS`), so every stage costs about the same. Two stages for 224 x 224 inputs would start
    from a 56 x 56 grid: a dense layer of 51 M weights and 1.9 G multiply-accumulates an image, 30 times a
    MobileNetV2 (alpha 0.35) teacher."""
    side = max(shape[0], shape[1])
    stages = max(2, math.ceil(math.log2(side / START)))
    return tuple(max(MIN_CHANNELS, channels >> i) for i in range(stages))


def build_generator(shape: tuple, num_classes: int, *, channels: int = 64, seed: int = 0):
    """A Keras model ``[noise (B, LATENT), one-hot class (B, C)] -> (B, *shape)`` in [0, 1]."""
    k = _compat.keras()
    init = k.initializers.GlorotUniform
    noise = k.Input((LATENT,))
    label = k.Input((num_classes,))
    h = k.layers.Concatenate()([noise, k.layers.Dense(LATENT, kernel_initializer=init(seed))(label)])
    drawn = (shape[0], 1, shape[1]) if len(shape) == 2 else tuple(shape)  # a sequence (T, C) is drawn as (T, 1, C)
    grid = spatial_axes(drawn)
    if any(grid):  # upsampled along the grid's axes only
        rows, cols, depth = drawn
        widths = stage_widths((rows if grid[0] else 1, cols if grid[1] else 1), channels)
        up = tuple(2 if g else 1 for g in grid)
        scale = tuple(u ** len(widths) for u in up)
        kernel = tuple(3 if g else 1 for g in grid)
        r0, c0 = math.ceil(rows / scale[0]), math.ceil(cols / scale[1])
        h = k.layers.Dense(channels * 2 * r0 * c0, kernel_initializer=init(seed + 1))(h)
        h = k.layers.BatchNormalization()(h)
        h = k.layers.Reshape((r0, c0, channels * 2))(h)
        for i, width in enumerate(widths):
            h = k.layers.UpSampling2D(up, interpolation="nearest")(h)
            h = k.layers.Conv2D(width, kernel, padding="same", use_bias=False,
                                kernel_initializer=init(seed + 2 + i if i < 2 else seed + 3 + i))(h)
            h = k.layers.BatchNormalization()(h)
            h = k.layers.LeakyReLU(0.2)(h)
        h = k.layers.Conv2D(depth, kernel, padding="same", kernel_initializer=init(seed + 4))(h)
        if (scale[0] * r0, scale[1] * c0) != (rows, cols):
            h = k.layers.Cropping2D(((0, scale[0] * r0 - rows), (0, scale[1] * c0 - cols)))(h)
        if len(shape) == 2:
            h = k.layers.Reshape(tuple(shape))(h)
    else:
        size = int(math.prod(shape))
        h = k.layers.Dense(4 * channels, kernel_initializer=init(seed + 1))(h)
        h = k.layers.BatchNormalization()(h)
        h = k.layers.LeakyReLU(0.2)(h)
        h = k.layers.Dense(size, kernel_initializer=init(seed + 2))(h)
        h = k.layers.Reshape(tuple(shape))(h)
    out = k.layers.Activation("sigmoid")(h)
    return k.Model([noise, label], out, name="generator")
