"""The compiled pieces every synthesis objective is made of: moments and image priors with hand-written gradients.

Each function takes the TensorFlow module first so this module imports without TensorFlow.
The gradients are written out because autodiff's generic ones cost a large share of a
small teacher's own forward+backward (figures in each docstring; the speed suite in
``benchmarks/RESULTS.md`` measures the whole step).
"""

from __future__ import annotations

import numpy as np

from .. import _compat


def sample_moments(tf, a, grid=None):
    """Per-sample first and second moments of ``a``: per channel (B, ch), or per region of ``grid``
    and channel (B, gh*gw*ch) when a grid is given.

    A region map is pooled once: two ``avg_pool`` calls forward, and a gradient written out as one
    broadcast multiply-add (the two ``AvgPoolGrad`` kernels autodiff would run cost a third of a
    LeNet-5 teacher's forward+backward). The channel moments of such a map are the mean of its
    equal-sized regions' moments, so they are taken from the class moments of the regions
    (:func:`region_channels`), on one row per class instead of one per input.
    """
    b, ch = tf.shape(a)[0], a.shape[-1]
    if grid is None:
        a = tf.reshape(a, (b, -1, ch))
        return tf.reduce_mean(a, axis=1), tf.reduce_mean(tf.square(a), axis=1)
    gh, gw = grid
    h, wd = a.shape[1], a.shape[2]
    window = (h // gh, wd // gw)

    @tf.custom_gradient
    def pooled(a):
        first = tf.nn.avg_pool2d(a, window, window, "VALID")
        second = tf.nn.avg_pool2d(tf.square(a), window, window, "VALID")

        def grad(d_first, d_second):  # each pixel feeds its region's mean with weight 1 / (region size)
            k = 1.0 / (window[0] * window[1])
            # (B * gh, rows per region, W * ch): each region's coefficients tiled along its columns and
            # broadcast down its rows (a 3-D broadcast: 1.1 ms on LeNet-5's first layer, 1.7 ms in 6-D)
            rows = tf.reshape(a, (-1, window[0], wd * ch))

            def spread(d):
                return tf.reshape(tf.tile(tf.reshape(d, (-1, 1, gw, 1, ch)), (1, 1, 1, window[1], 1)), (-1, 1, wd * ch))

            return tf.reshape(rows * spread(d_second * (2.0 * k)) + spread(d_first * k), tf.shape(a))

        return (first, second), grad

    first, second = pooled(a)
    return tf.reshape(first, (b, -1)), tf.reshape(second, (b, -1))


def region_channels(tf, r, ch):
    """Channel moments (rows, ch) from region moments (rows, regions * ch): their mean over the regions."""
    return tf.reduce_mean(tf.reshape(r, (tf.shape(r)[0], -1, ch)), axis=1)


def batch_moments(tf, a):
    """Channel mean and std of ``a`` over every other axis (what a BatchNorm layer normalises by).

    The forward pass is TensorFlow's fused BatchNorm kernel (one pass over ``a`` for both
    moments) and the gradient is written out as one multiply-add per element: on the CIFAR-10
    ResNet-8 the generic ``tf.nn.moments`` and its autodiff cost 2.4x as much, a third of a
    teacher forward+backward on its own.
    """
    ch = a.shape[-1]

    @tf.custom_gradient
    def moments(a):
        flat = tf.reshape(a, (-1, ch))
        n = tf.cast(tf.shape(flat)[0], tf.float32)
        _, mean, var = tf.compat.v1.nn.fused_batch_norm(tf.reshape(flat, (1, -1, 1, ch)), tf.ones(ch), tf.zeros(ch),
                                                       is_training=True)[:3]
        var = var * ((n - 1.0) / n)  # the kernel returns the unbiased variance

        def grad(d_mean, d_var):  # d mean / da = 1/n, d var / da = 2 (a - mean) / n
            scale = (2.0 / n) * d_var
            return tf.reshape(flat * scale + (d_mean / n - scale * mean), tf.shape(a))

        return (mean, var), grad

    mean, var = moments(a)
    return mean, tf.sqrt(var + 1e-8)


def total_variation(tf, u):
    """Mean absolute difference of neighbouring pixels (rolled copies; the wrap-around pair masked out).

    The gradient is written out (the differences' signs, rolled back): autodiff's chain of
    ``Abs``, ``Roll`` and ``Mean`` gradients costs half as much again (8.5 against 5.8 ms forward
    and backward on a CIFAR-10 batch of 500).
    """
    h, w = u.shape[1], u.shape[2]
    mask_h = tf.constant((np.arange(h) > 0).astype(np.float32).reshape(1, h, 1, 1))
    mask_w = tf.constant((np.arange(w) > 0).astype(np.float32).reshape(1, 1, w, 1))

    @tf.custom_gradient
    def tv(u):
        n = tf.cast(tf.size(u), tf.float32)
        ch, cw = (h / (h - 1)) / n, (w / (w - 1)) / n  # the mean over the pairs that exist
        dh = (u - tf.roll(u, 1, axis=1)) * mask_h
        dw = (u - tf.roll(u, 1, axis=2)) * mask_w

        def grad(d):  # each difference moves its two pixels in opposite directions
            sh, sw = tf.sign(dh) * (d * ch), tf.sign(dw) * (d * cw)
            return sh - tf.roll(sh, -1, axis=1) + sw - tf.roll(sw, -1, axis=2)

        return ch * tf.reduce_sum(tf.abs(dh)) + cw * tf.reduce_sum(tf.abs(dw)), grad

    return tv(u)


def smooth_noise(rng, n: int, shape: tuple) -> np.ndarray:
    """``n`` noise images of ``shape`` (H, W, C) with unit standard deviation per image and an
    amplitude spectrum falling as 1/sqrt(scale): Gaussian noise drawn on 2x2, 4x4, ... grids up to
    the image size, each resized bilinearly to the full size, weighted by ``size ** -0.5`` and summed."""
    tf = _compat.tf()
    h, w, c = shape
    z = np.zeros((n, h, w, c), np.float32)
    r = 2
    while True:
        gh, gw = min(r, h), min(r, w)
        grid = rng.normal(size=(n, gh, gw, c)).astype(np.float32)
        z += tf.image.resize(grid, (h, w), method="bilinear").numpy() * (max(gh, gw) ** -0.5)
        if gh == h and gw == w:
            break
        r *= 2
    return z / (z.reshape(n, -1).std(axis=1).reshape(n, 1, 1, 1) + 1e-8)
