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

    A region map's moments and their gradient are one XLA-compiled loop each (:func:`_pooled_moments`).
    The channel moments of a region map are the mean of its equal-sized regions' moments, so
    they are taken from the class moments of the regions (:func:`region_channels`), on one row
    per class instead of one per input.
    """
    b, ch = tf.shape(a)[0], a.shape[-1]
    if grid is None:  # small maps and dense layers: an XLA launch a direction costs more than it saves
        a = tf.reshape(a, (b, -1, ch))
        return tf.reduce_mean(a, axis=1), tf.reduce_mean(tf.square(a), axis=1)
    gh, gw = grid
    h, wd = a.shape[1], a.shape[2]
    if h % gh or wd % gw:  # a grid that does not tile the map: the regions are pooled windows, the rest left out
        window = (h // gh, wd // gw)
        first = tf.nn.avg_pool2d(a, window, window, "VALID")
        second = tf.nn.avg_pool2d(tf.square(a), window, window, "VALID")
        return tf.reshape(first, (b, -1)), tf.reshape(second, (b, -1))
    return _pooled_moments(tf, tf.reshape(a, (b, gh, h // gh, gw, wd // gw, ch)))


def _pooled_moments(tf, v):
    """(B, gh*gw*ch) first and second moments of ``v`` (B, gh, rows, gw, cols, ch) over each region's rows and
    columns, forward and gradient each one XLA-compiled function.

    Autodiff's generic kernels read and write the whole map about twelve times for both moments (a square, two
    pools, their gradients' broadcasts, a multiply and an add); fused, each direction reads it once. On LeNet-5's
    first convolution at a batch of 500 (500 x 28 x 28 x 6, a 7 x 7 grid) forward and backward took 1.04 against
    1.14 ms alone and 3.4 against 9.2 ms beside four other runs; the whole all-layers step 39.0 against 40.3 ms
    alone (``benchmarks/RESULTS.md``, "Where MNIST's seconds go").
    """
    shape = v.shape
    k = 1.0 / (shape[2] * shape[4])

    @tf.function(jit_compile=True)
    def forward(v):
        return tf.reduce_mean(v, axis=[2, 4]), tf.reduce_mean(tf.square(v), axis=[2, 4])

    @tf.function(jit_compile=True)
    def backward(v, d_first, d_second):  # each element feeds its region's moments with weight 1 / (region size)
        d_first = tf.expand_dims(tf.expand_dims(d_first, 2), 4)
        d_second = tf.expand_dims(tf.expand_dims(d_second, 2), 4)
        return v * (d_second * (2.0 * k)) + d_first * k

    @tf.custom_gradient
    def pooled(v):
        first, second = forward(v)
        return (first, second), lambda d_first, d_second: backward(v, d_first, d_second)

    first, second = pooled(v)
    b = tf.shape(v)[0]
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
