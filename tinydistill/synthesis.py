"""Synthesis: reconstruct inputs from the teacher so they can replace the training data.

Every method optimises a batch of inputs by gradient descent inside one
compiled ``tf.function`` step. Batches are class-balanced and every input is
pulled towards a class target, so the set covers all classes:

``all-layers``   Lopes et al. 2017: match the recorded per-class mean and std of every
                 probed layer (and of the input), per channel and per region of a coarse grid.
``top-layer``    Lopes et al. 2017: match only the logits statistics.
``layer-pairs``  Lopes et al. 2017's spectral variant: for each pair of recorded layers joined
                 by a weight matrix, match the per-class moments of the activations' coefficients
                 on the lowest-frequency eigenvectors of that pair's graph Laplacian.
``bn``           DeepInversion / ZeroQ: match the BatchNorm running statistics the teacher
                 already carries, plus a smoothness prior.
``prior``        no metadata (ZSKD-style): soft class targets drawn from a Dirichlet whose
                 concentration follows the class similarity of the last layer's weights, from
                 flat starting images, with a smoothness prior.
``auto``         the strongest signal the teacher has: stats > BN > prior.

Moments are compared in units of the recorded spread of each channel, so
the loss is independent of a layer's or an input's scale (raw 0-255 inputs
need no special constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _compat
from .errors import TinyDistillError
from .stats import INPUT, LOGITS

METHODS = ("auto", "all-layers", "top-layer", "layer-pairs", "bn", "prior")
STARTS = ("stats", "flat", "noise", "smooth")
FLIPS = ("auto", "on", "off")
# a teacher that keeps its top-1 class on most flipped inputs treats left and right alike (measured on
# synthetic inputs: CIFAR-10 ResNet-8 0.71, LeNet-5 on digits 0.36 with stats and 0.29 without)
FLIP_AGREEMENT = 0.5
_STATS_METHODS = ("all-layers", "top-layer", "layer-pairs")
_EPS = 1e-3


@dataclass(frozen=True)
class Recipe:
    """How a method shapes its inputs besides the metadata it matches.

    Each method has measured defaults (:data:`RECIPES`); benchmarks switch one knob at a time.

    Attributes:
        per_class: match moments per class, each input pulled to its class (else the moments of
            all classes together and no class term: Lopes et al.'s metadata without the labels).
        targets: ``"onehot"`` (cross-entropy to the class) or ``"dirichlet"`` (ZSKD soft targets:
            a Dirichlet draw concentrated by the class similarity of the last layer's weights,
            matched at temperature 20, so inputs spread between similar classes).
        start: ``"stats"`` (the recorded per-class input moments), ``"flat"`` (one random level
            per input plus faint noise: the smoothness prior then adds structure), ``"noise"``
            (white noise) or ``"smooth"`` (multi-scale noise with most of its power at low spatial
            frequencies, as in natural images: on CIFAR-10 it gives the contrast real images have,
            which white noise smoothed by the optimiser never reaches; other inputs: white noise).
        smoothness: total-variation weight on image inputs (unit-range pixels).
        lr: Adam step on inputs, in units of the input range (constant: annealing it to zero
            measured worse, 98.44 vs 98.50 % on LeNet-5, as if settled inputs were less diverse).
        regions: ``all-layers`` also matches the moments of each spatial region of a feature map
            where the stats file has them (else whole-layer moments only, as Lopes et al.).
        class_weight: weight of the class (cross-entropy) term against the matched statistics.
        jitter: shift each image batch by a random offset of up to 1/16 of its size at every
            step (DeepInversion), so no feature depends on the exact pixel grid.
        flip: flip each image batch left to right at random at every step (DeepInversion), so the
            inputs look like a class from both sides: ``"on"``, ``"off"``, or ``"auto"``: from the
            second batch on, if the teacher keeps its top-1 class on at least half of the first
            batch flipped (:attr:`SyntheticSet.flip_agreement`), so digits, say, are never flipped.
            Off by default: on CIFAR-10 (int8, one seed each) it measured +4.6 pp at 2,000 inputs x
            100 steps and 30 epochs, but -3.4 pp at 2,000 x 80 and -0.3 pp at 12,000 x 80 (both with
            60 epochs); flipping while distilling instead: -4 pp.
    """

    per_class: bool = True
    targets: str = "onehot"
    start: str = "stats"
    smoothness: float = 0.5
    lr: float = 0.05
    regions: bool = True
    class_weight: float = 1.0
    jitter: bool = False
    flip: str = "off"


RECIPES = {
    "all-layers": Recipe(),
    "top-layer": Recipe(),
    "layer-pairs": Recipe(),
    # CIFAR-10 ResNet-8 -> width 0.5: the former recipe (white noise, lr 0.05, TV 0.5, class weight 1, no
    # jitter) 27.8 % int8 at 12k x 40; this one 48.2 % at 12k x 80 (benchmarks, 2 seeds); each knob's share:
    # the bn-ablations suite
    "bn": Recipe(start="smooth", lr=0.02, smoothness=0.05, class_weight=0.2, jitter=True),
    "prior": Recipe(targets="dirichlet", start="flat", smoothness=2.0),
}
# measured on LeNet-5 -> half with stats (int8): 24k inputs x 80 steps 98.48 % (benchmarks, 2 seeds);
# in single-seed trials 48k inputs or 120 steps were no better, 24k x 40 steps gave 98.33 % and
# 12k x 40 98.23 % (those two with the KL loss)
DEFAULT_INPUTS = 24000
DEFAULT_STEPS = 80
_DIRICHLET_TEMPERATURE = 20.0
_DIRICHLET_BETAS = (1.0, 0.1)  # ZSKD's two concentration scales, alternating: spread and peaked targets


@dataclass
class SyntheticSet:
    """Synthetic inputs with the teacher's logits on them.

    Attributes:
        x: inputs in the teacher's input range, float32.
        y: the class each input was optimised towards (the target's top class).
        logits: the teacher's logits on ``x``.
        method: the synthesis method used.
        flipped: whether images were flipped at random while they were optimised.
        flip_agreement: fraction of the first batch whose teacher class survives a left-right
            flip (None: not images).
    """

    x: np.ndarray
    y: np.ndarray
    logits: np.ndarray
    method: str
    flipped: bool = False
    flip_agreement: float | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def teacher_agreement(self) -> float:
        """Fraction of inputs the teacher assigns to their target class."""
        return float((self.logits.argmax(1) == self.y).mean()) if len(self.y) else 0.0


def resolve_method(method: str, teacher, stats) -> tuple[str, str]:
    """The method to run and why, validating that its signal exists.

    Raises:
        TinyDistillError: unknown method, or a method whose metadata is missing.
    """
    if method not in METHODS:
        raise TinyDistillError(f"`method` must be one of {', '.join(METHODS)}. Received: method={method!r}")
    if method == "auto":
        if stats is not None:
            return "all-layers", "a statistics file was given (per-class, per-layer moments)"
        if teacher.has_batchnorm:
            return "bn", f"the teacher has {len(teacher.bn_layers)} BatchNorm layers (running statistics)"
        return "prior", "the teacher has neither a statistics file nor BatchNorm layers"
    if method in _STATS_METHODS and stats is None:
        raise TinyDistillError(f"method {method!r} needs a statistics file: pass --stats FILE "
                               "(record one with 'tinydistill stats') or use --method auto")
    if method == "layer-pairs" and not stats.pairs:
        raise TinyDistillError("method 'layer-pairs' needs layer-pair statistics, which this stats file lacks "
                               "(recorded by an older tinydistill, no two recorded layers share a weight matrix, or every pair "
                               "is too wide to record: over 1 GiB of second moments): "
                               "re-record it with 'tinydistill stats' or use --method all-layers")
    if method == "bn" and not teacher.has_batchnorm:
        raise TinyDistillError("method 'bn' needs BatchNorm layers and this teacher has none: "
                               "use --method auto")
    return method, "chosen by the user"


def class_similarity(teacher) -> np.ndarray:
    """ZSKD's class similarity: cosine similarity of the last layer's class weight vectors, min-max scaled per row."""
    kernel = teacher.logits_model.layers[-1].get_weights()[0]
    kernel = kernel.reshape(-1, kernel.shape[-1])
    unit = kernel / np.maximum(np.linalg.norm(kernel, axis=0, keepdims=True), 1e-12)
    sim = unit.T @ unit
    lo, hi = sim.min(1, keepdims=True), sim.max(1, keepdims=True)
    return (sim - lo) / np.maximum(hi - lo, 1e-12)


def dirichlet_targets(rng, y: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """ZSKD soft targets: for class ``y[i]``, a Dirichlet draw with concentration ``beta * similarity[y[i]]``.

    ``beta`` alternates between 1 (spread over similar classes) and 0.1 (peaked, not always on
    ``y[i]``); the draws are matched at temperature 20.
    """
    beta = np.where(np.arange(len(y)) % 2 == 0, *_DIRICHLET_BETAS)[:, None]
    return np.stack([rng.dirichlet(a) for a in np.maximum(beta * similarity[y], 1e-3)]).astype(np.float32)


def _moment_targets(stats, names, per_class):
    """(layer, target mean, target std, scale) per layer: class moments (C, ch), or all-class ones (1, ch)."""
    targets = []
    for n in names:
        gmean, gstd = stats.global_moments(n)
        scale = np.maximum(gstd, _EPS * max(float(gstd.max()), 1e-6)) + 1e-8
        mean, std = (stats.mean[n], stats.std[n]) if per_class else (gmean[None], gstd[None])
        targets.append((n, mean.astype(np.float32), std.astype(np.float32), scale.astype(np.float32)))
    return targets


def _global_region_moments(stats, n):
    """All-class mean and std per region, from the per-class ones."""
    w = (stats.counts / stats.counts.sum())[:, None, None, None]
    m, s = stats.region_mean[n], stats.region_std[n]
    mean = (w * m).sum(0)
    var = (w * (s ** 2 + m ** 2)).sum(0) - mean ** 2
    return mean[None], np.sqrt(np.maximum(var, 0.0))[None]


def _pair_targets(stats, per_class):
    """(source, target, projection, offset, mean, std, scale) per recorded layer pair."""
    out = []
    for p in stats.pairs:
        w = (stats.counts / stats.counts.sum())[:, None]
        gmean = (w * p.mean).sum(0)
        gstd = np.sqrt(np.maximum((w * (p.std ** 2 + p.mean ** 2)).sum(0) - gmean ** 2, 0.0))
        scale = np.maximum(gstd, _EPS * max(float(gstd.max()), 1e-6)) + 1e-8
        mean, std = (p.mean, p.std) if per_class else (gmean[None], gstd[None])
        out.append((p.source, p.target, p.projection, p.offset, mean.astype(np.float32), std.astype(np.float32),
                    scale.astype(np.float32)))
    return out


def _sample_moments(tf, a, grid=None):
    """Per-sample first and second moments of ``a``: per channel (B, ch), or per region of ``grid``
    and channel (B, gh*gw*ch) when a grid is given.

    A region map is pooled once: two ``avg_pool`` calls forward, and a gradient written out as one
    broadcast multiply-add (the two ``AvgPoolGrad`` kernels autodiff would run cost a third of a
    LeNet-5 teacher's forward+backward). The channel moments of such a map are the mean of its
    equal-sized regions' moments, so they are taken from the class moments of the regions
    (:func:`_region_channels`), on one row per class instead of one per input.
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


def _region_channels(tf, r, ch):
    """Channel moments (rows, ch) from region moments (rows, regions * ch): their mean over the regions."""
    return tf.reduce_mean(tf.reshape(r, (tf.shape(r)[0], -1, ch)), axis=1)


def _batch_moments(tf, a):
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


def _total_variation(tf, u):
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


def _is_image(shape) -> bool:
    return len(shape) == 3 and shape[0] >= 8 and shape[1] >= 8


def _validate(teacher, n, steps, batch_size, input_range, recipe):
    if n < 1 or steps < 1 or batch_size < 1:
        raise TinyDistillError(f"`n`, `steps` and `batch_size` must be >= 1. Received: n={n}, steps={steps}, "
                               f"batch_size={batch_size}")
    if input_range is None:
        raise TinyDistillError("the teacher's input range is unknown: pass --input-range LO,HI "
                               "(e.g. 0,1 or 0,255) or a stats file that records it")
    if recipe.targets not in ("onehot", "dirichlet") or recipe.start not in STARTS or recipe.flip not in FLIPS:
        raise TinyDistillError(f"recipe targets must be 'onehot' or 'dirichlet', start one of {', '.join(STARTS)} and "
                               f"flip one of {', '.join(FLIPS)}. Received: targets={recipe.targets!r}, "
                               f"start={recipe.start!r}, flip={recipe.flip!r}")


def synthesize(teacher, stats=None, *, method: str = "auto", n: int = DEFAULT_INPUTS, steps: int = DEFAULT_STEPS,
               batch_size: int = 500, input_range=None, seed: int = 0, recipe: Recipe | None = None,
               student=None, disagreement: float = 1.0, strategy=None, on_progress=None) -> SyntheticSet:
    """Synthesise ``n`` class-balanced inputs from the teacher (and its metadata).

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        stats: a :class:`~tinydistill.stats.Stats` of this teacher, or None.
        method: one of ``METHODS``; ``auto`` picks the strongest signal.
        n: number of inputs.
        steps: Adam steps per batch.
        batch_size: inputs optimised together (moments are matched per batch).
        input_range: the teacher's input range; defaults to the stats' one.
        seed: random seed.
        recipe: a :class:`Recipe` overriding the method's defaults (:data:`RECIPES`).
        student: a partly distilled student (logits); inputs are then also pushed to where it and
            the teacher disagree (DeepInversion's adaptive competition), weighted by ``disagreement``.
        disagreement: weight of the Jensen-Shannon divergence between teacher and student that
            the inputs maximise (only with ``student``).
        strategy: a ``tf.distribute`` strategy; each replica optimises its share of every
            batch (default: the current strategy, i.e. one device).
        on_progress: optional callable ``(done, total)`` counted in inputs.

    Example:
        >>> syn = td.synthesize(teacher, stats, n=2000, seed=0)
        >>> syn.x.shape, syn.teacher_agreement
        ((2000, 28, 28, 1), 1.0)
    """
    if input_range is None and stats is not None:
        input_range = tuple(stats.input_range)
    method, _ = resolve_method(method, teacher, stats)
    recipe = recipe or RECIPES[method]
    _validate(teacher, n, steps, batch_size, input_range, recipe)
    tf, k = _compat.tf(), _compat.keras()
    lo, hi = (float(v) for v in input_range)
    span = hi - lo
    C = teacher.num_classes
    shape = tuple(teacher.input_shape)
    rng = np.random.default_rng(seed)
    lm = teacher.logits_model
    per_class = recipe.per_class

    # what the method matches: moments of named layers, their regions, layer-pair spectra, or BatchNorm inputs
    moments, regions, pairs, bn_targets = [], [], [], []
    if method in ("all-layers", "top-layer"):
        moments = _moment_targets(stats, [LOGITS] if method == "top-layer" else list(stats.layers), per_class)
        if method == "all-layers":
            for nm, _, _, sc in moments:
                if recipe.regions and nm in stats.region_mean:
                    rm, rs = (stats.region_mean[nm], stats.region_std[nm]) if per_class else _global_region_moments(stats, nm)
                    c_, gh, gw, ch = rm.shape
                    regions.append((nm, gh, gw, rm.reshape(c_, -1).astype(np.float32),
                                    rs.reshape(c_, -1).astype(np.float32), np.tile(sc, gh * gw)))
    elif method == "layer-pairs":
        pairs = _pair_targets(stats, per_class)
    elif method == "bn":
        for nm in teacher.bn_layers:
            b = lm.get_layer(nm)
            std = np.sqrt(b.moving_variance.numpy() + b.epsilon).astype(np.float32)
            bn_targets.append((nm, b.moving_mean.numpy().astype(np.float32), std))
    needed = {nm for nm, *_ in moments} | {nm for nm, *_ in regions} | {p[0] for p in pairs} | {p[1] for p in pairs}
    layer_names = sorted(needed - {INPUT, LOGITS})
    probe = k.Model(lm.inputs, [lm.get_layer(nm).output for nm in layer_names]
                    + [lm.get_layer(nm).input for nm, *_ in bn_targets] + [lm.output])
    const = tf.constant
    # matched statistics, concatenated column-wise: (kind, layer(s), projection, offset) and the targets
    matched_terms, t_mean, t_std, t_scale, t_weight = [], [], [], [], []
    for kind, items in (("channel", moments), ("region", [(nm, m, sd, sc) for nm, _, _, m, sd, sc in regions]),
                        ("pair", [((a, b), m, sd, sc, pr, off) for a, b, pr, off, m, sd, sc in pairs])):
        for item in items:
            names, m, sd, sc = item[:4]
            proj, off = (const(item[4]), const(item[5])) if kind == "pair" else (None, None)
            matched_terms.append((kind, names, proj, off))
            t_mean.append(m)
            t_std.append(sd)
            t_scale.append(sc)
            t_weight.append(np.full(m.shape[-1], 1.0 / m.shape[-1], np.float32))  # each statistic counts as its mean
    if matched_terms:
        target_mean, target_std = const(np.concatenate(t_mean, axis=1)), const(np.concatenate(t_std, axis=1))
        target_scale, column_weight = const(np.concatenate(t_scale)), const(np.concatenate(t_weight))
    bn_tf = [(const(m), const(sd)) for _, m, sd in bn_targets]
    grids = {nm: (gh, gw) for nm, gh, gw, *_ in regions}
    moment_layers = sorted(needed)
    image = _is_image(shape)
    w_tv = recipe.smoothness if image else 0.0
    temperature = _DIRICHLET_TEMPERATURE if recipe.targets == "dirichlet" else 1.0
    w_class = recipe.class_weight if per_class else 0.0
    jitter = max(1, round(min(shape[0], shape[1]) / 16)) if image and recipe.jitter else 0
    flip = image and recipe.flip != "off"  # the flip is traced; whether it happens is decided per step
    flipping, agreement = image and recipe.flip == "on", None

    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise TinyDistillError(f"`batch_size` ({batch_size}) must be a multiple of the {replicas} replicas")
    per_replica = batch_size // replicas

    def loss_fn(u_, target_, w_, shift_):
        x_ = u_ if (lo, span) == (0.0, 1.0) else lo + span * u_  # no two no-op passes over a unit-range batch
        if jitter:
            x_ = tf.roll(x_, shift_[:2], axis=[1, 2])
        if flip:
            x_ = tf.cond(shift_[2] > 0, lambda: tf.reverse(x_, axis=[2]), lambda: x_)
        outs = probe(x_, training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        logits = outs[-1]
        acts = dict(zip(layer_names, outs))
        acts[LOGITS], acts[INPUT] = logits, x_
        loss = w_class * tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(target_, logits / temperature))
        present = tf.cast(tf.reduce_sum(w_, axis=1) > 0, tf.float32)[:, None]  # classes in this batch
        terms = []
        if matched_terms:
            # every matched statistic side by side: one matmul and one loss for all layers, since on a
            # small teacher the per-op overhead of many small terms costs as much as the teacher itself
            sample = {nm: _sample_moments(tf, acts[nm], grids.get(nm)) for nm in moment_layers}

            def channels(nm, r):  # channel moments of a layer from its per-sample or per-class columns
                return _region_channels(tf, r, acts[nm].shape[-1]) if nm in grids else r

            # per-sample columns: each layer's moments once (a region map's regions), then the pairs'
            # spectral coefficients; one matmul per moment turns them into class moments
            columns = {}
            for kind, names, proj, off in matched_terms:
                if kind == "pair":
                    c = tf.matmul(tf.concat([channels(nm, sample[nm][0]) for nm in names], axis=1), proj) - off
                    columns[names] = (c, tf.square(c))
                else:
                    columns.setdefault(names, sample[names])
            sizes = [first.shape[-1] for first, _ in columns.values()]

            def per_class(cols):  # per-sample columns (B, k) -> per-class rows (C, k), by key
                return dict(zip(columns, tf.split(tf.matmul(w_, tf.concat(cols, axis=1)), sizes, axis=1)))

            class1 = per_class([first for first, _ in columns.values()])
            class2 = per_class([second for _, second in columns.values()])
            m1, m2 = [], []
            for kind, names, _, _ in matched_terms:
                first, second = class1[names], class2[names]
                if kind == "channel":
                    first, second = channels(names, first), channels(names, second)
                m1.append(first)
                m2.append(second)
            mean = tf.concat(m1, axis=1)
            std = tf.sqrt(tf.maximum(tf.concat(m2, axis=1) - tf.square(mean), 0.0) + 1e-8)
            d = (tf.square((mean - target_mean) / target_scale) + tf.square((std - target_std) / target_scale)) * column_weight
            terms.append(tf.reduce_sum(d * present) / tf.reduce_sum(present))
        for (mt, st), a in zip(bn_tf, outs[len(layer_names):-1]):
            mean, std = _batch_moments(tf, a)
            terms.append(tf.reduce_mean(tf.square((mean - mt) / st) + tf.square((std - st) / st)))
        if student is not None:  # maximise teacher-student disagreement: JS divergence of their outputs
            pt, ps = tf.nn.softmax(logits), tf.nn.softmax(student(x_, training=False))
            pm = 0.5 * (pt + ps)

            def kl(p, q):
                return tf.reduce_sum(p * (tf.math.log(p + 1e-8) - tf.math.log(q + 1e-8)), axis=-1)

            terms.append(-disagreement * tf.reduce_mean(0.5 * kl(pt, pm) + 0.5 * kl(ps, pm)))
        if terms:
            loss += tf.add_n(terms)
        if w_tv:
            loss += w_tv * _total_variation(tf, u_)
        return loss

    b1, b2 = 0.9, 0.999
    lr = recipe.lr

    def replica_step(u_, m_, v_, target_, w_, t, shift_):
        with tf.GradientTape() as tape:
            tape.watch(u_)
            loss = loss_fn(u_, target_, w_, shift_)
        g = tape.gradient(loss, u_)
        # Adam on the inputs themselves, written out: the state is per batch and per
        # replica, which a Keras optimizer (one set of slots per variable) does not fit.
        m_ = b1 * m_ + (1 - b1) * g
        v_ = b2 * v_ + (1 - b2) * tf.square(g)
        step_ = lr * (m_ / (1 - tf.pow(b1, t))) / (tf.sqrt(v_ / (1 - tf.pow(b2, t))) + 1e-8)
        return tf.clip_by_value(u_ - step_, 0.0, 1.0), m_, v_

    @tf.function
    def step(u_, m_, v_, target_, w_, t, shift_):
        return strategy.run(replica_step, args=(u_, m_, v_, target_, w_, t, shift_))

    def distribute(chunks):
        """One chunk per replica (the default strategy simply gets the single chunk)."""
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(chunks[ctx.replica_id_in_sync_group]))

    @tf.function
    def final_logits(x_):
        return lm(x_, training=False)

    if recipe.start == "stats" and stats is not None and INPUT in stats.mean:
        in_mean = (stats.mean[INPUT] - lo) / span  # (C, ch) in unit range
        in_std = stats.std[INPUT] / span
    else:
        in_mean = np.full((C, shape[-1]), 0.5, np.float32)
        in_std = np.full((C, shape[-1]), 0.25, np.float32)
    similarity = class_similarity(teacher) if recipe.targets == "dirichlet" else None
    channel_shape = (batch_size,) + (1,) * (len(shape) - 1) + (shape[-1],)

    xs, ys, ls = [], [], []
    n_batches = math.ceil(n / batch_size)
    done = 0
    for bi in range(n_batches):
        y = (np.arange(batch_size) + bi * batch_size) % C
        y = rng.permutation(y).astype(np.int32)
        if similarity is not None:
            target = dirichlet_targets(rng, y, similarity)
            y = target.argmax(1).astype(np.int32)
        else:
            target = np.eye(C, dtype=np.float32)[y]
        noise = rng.normal(size=(batch_size,) + shape).astype(np.float32)
        if recipe.start == "flat":  # one random level per input and channel, faint noise
            init = rng.uniform(0.0, 1.0, channel_shape) + 0.03 * noise
        elif recipe.start == "smooth" and image:
            init = in_mean[y].reshape(channel_shape) + in_std[y].reshape(channel_shape) * smooth_noise(rng, batch_size, shape)
        else:
            init = in_mean[y].reshape(channel_shape) + noise * in_std[y].reshape(channel_shape)
        init = np.clip(init, 0.0, 1.0).astype(np.float32)
        parts = [slice(r * per_replica, (r + 1) * per_replica) for r in range(replicas)]
        weights = []
        for sl in parts:  # per-class averaging weights within each replica's share (one row: all together)
            if per_class:
                w = np.zeros((C, per_replica), np.float32)
                w[y[sl], np.arange(per_replica)] = 1.0
            else:
                w = np.ones((1, per_replica), np.float32)
            weights.append(w / np.maximum(w.sum(1, keepdims=True), 1.0))
        u_t = distribute([init[sl] for sl in parts])
        m_t = distribute([np.zeros_like(init[sl]) for sl in parts])
        v_t = distribute([np.zeros_like(init[sl]) for sl in parts])
        target_t, w_t = distribute([target[sl] for sl in parts]), distribute(weights)
        # drawn only when used, so recipes without them keep their random stream (and measured results)
        shifts = np.zeros((steps, 3), np.int32)  # per step: row and column offsets, flip or not
        if jitter:
            shifts[:, :2] = rng.integers(-jitter, jitter + 1, size=(steps, 2))
        if flipping:
            shifts[:, 2] = rng.integers(0, 2, size=steps)
        for t in range(1, steps + 1):
            u_t, m_t, v_t = step(u_t, m_t, v_t, target_t, w_t, tf.constant(float(t)), tf.constant(shifts[t - 1]))
        u_final = np.concatenate([np.asarray(part) for part in strategy.experimental_local_results(u_t)])
        take = min(batch_size, n - done)
        x = (lo + span * u_final)[:take]
        xs.append(x)
        ys.append(y[:take])
        ls.append(final_logits(tf.constant(x)).numpy())
        if bi == 0 and image:
            agreement = float((ls[0].argmax(1) == final_logits(tf.constant(x[:, :, ::-1])).numpy().argmax(1)).mean())
            if recipe.flip == "auto":
                flipping = agreement >= FLIP_AGREEMENT
        done += take
        if on_progress:
            on_progress(done, n)
    return SyntheticSet(x=np.concatenate(xs).astype(np.float32), y=np.concatenate(ys).astype(np.int64),
                        logits=np.concatenate(ls).astype(np.float32), method=method,
                        flipped=bool(flipping and (recipe.flip == "on" or n_batches > 1)),
                        flip_agreement=agreement)
