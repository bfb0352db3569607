"""Distill: train the student to match the teacher's outputs (logits or softened probabilities) on synthetic inputs."""

from __future__ import annotations

import math

import numpy as np

from .. import _compat
from .._math import by_values, floor_spread, is_image
from ..config import DEFAULT_EPOCHS, FEATURE_WEIGHT, LOSSES, DistillConfig, override, resolve_distill, validate_feature_weight
from ..errors import TinyDistillError

__all__ = ["DEFAULT_EPOCHS", "FEATURE_WEIGHT", "LOSSES", "distill", "feature_layers", "recalibrate_batchnorm",
           "validate_feature_weight"]

_SKIPPED = ("Dropout", "Noise", "ActivityRegularization")  # identity at inference, noise in training


def feature_layers(teacher, student) -> dict:
    """The layers whose outputs the student learns to match, and the teacher channels each holds.

    One per stage: for every spatial size of the teacher's feature maps (larger than 1 x 1), the
    last layer with that size, e.g. each residual stage's output on a ResNet; on LeNet-5 the two
    convolutions and the last pooling. Layers that are the identity at inference (Dropout, noise) give way to the layer
    before them. A width-scaled student (:func:`~tinydistill.student.design_student`) has the same
    layer names; its channels are matched to the teacher channels it inherited
    (:func:`~tinydistill.student.channel_map`), so no projection is learnt. Empty for a teacher
    without spatial feature maps (e.g. an MLP) or a student of another shape.
    """
    from .design import channel_map

    last = {}
    for layer in teacher.logits_model.layers[1:-1]:
        shape = tuple(layer.output.shape)
        if len(shape) == 4 and shape[1] * shape[2] > 1 and not any(w in layer.__class__.__name__ for w in _SKIPPED):
            last[shape[1:3]] = layer.name
    names = [nm for nm in last.values() if nm in {ly.name for ly in student.layers}]
    if not names:
        return {}
    try:
        cmap = channel_map(student, teacher)
    except TinyDistillError:
        return {}
    out = {}
    for nm in names:
        idx = cmap.get(nm)
        if idx is not None and len(idx) == student.get_layer(nm).output.shape[-1]:
            out[nm] = np.asarray(idx, np.int32)
    return out


def distill(teacher, student, data, config: DistillConfig | None = None, *, seed: int = 0, strategy=None,
            on_progress=None, on_step=None, on_epoch_end=None, resume_from=None, **options):
    """Train ``student`` to match the teacher's outputs on ``data``.

    The teacher labels every batch on the fly, so augmented inputs (random
    shifts for images, and mixes of two synthetic inputs) carry exact teacher
    targets: the student sees many more points of the teacher's function than
    there are synthetic inputs.

    Besides the outputs, the student matches the teacher's feature maps at the end of every
    stage (:func:`feature_layers`), each channel in units of its spread on the synthetic set: a
    few thousand synthetic inputs carry little information in ten logits each, and the feature
    maps carry much more (figures: ``benchmarks/RESULTS.md``, feature-weight rows).

    Losses: ``"mse"`` matches the logits themselves (Ba & Caruana 2014): synthetic inputs are
    mostly confident, where softened probabilities saturate but logits still differ; ``"kl"`` is
    Hinton's ``T**2 * KL(softmax(t/T) || softmax(s/T))``.

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        student: a Keras model with logits output (from :func:`design_student`).
        data: a :class:`~tinydistill.synthesis.SyntheticSet` (only ``x`` is used).
        config: a :class:`~tinydistill.config.DistillConfig` (epochs, loss, temperature, feature
            weight, batch size, learning rate, augmentation, BatchNorm recalibration); keyword
            ``options`` override its fields (``epochs=5``).
        seed: shuffling and augmentation seed.
        strategy: a ``tf.distribute`` strategy; the student must have been built in its
            ``scope()``. Each replica takes its share of every batch; gradients are summed.
        on_progress: optional callable ``(epoch, epochs)``.
        on_step: optional callable ``(step)`` before every step (e.g. tfmot's pruning schedule).
        on_epoch_end: optional callable ``(epochs done, optimiser state)``, e.g. to checkpoint.
        resume_from: ``(start_epoch, optimiser state)`` to continue an interrupted run (the
            student already holds the weights of epoch ``start_epoch``).

    Returns:
        The trained student (the same object, trained in place).
    """
    config = override(config or DistillConfig(), options).validate()
    config = resolve_distill(config)
    if len(data) == 0:
        raise TinyDistillError("the synthetic set is empty: synthesise at least one batch")
    tf = _compat.tf()
    _compat.set_seed(seed)
    x_all = np.asarray(data.x, np.float32)
    strategy = strategy or tf.distribute.get_strategy()
    _check_replicas(strategy, student, config.batch_size)
    steps_per_epoch = max(1, math.ceil(len(x_all) / config.batch_size))
    start_epoch, opt_state = resume_from or (0, None)
    opt, shift = optimizer_for(config, strategy, student, config.epochs * steps_per_epoch, teacher.input_shape, seed,
                               opt_state)
    train_step = train_step_for(teacher, student, x_all, config, strategy, opt, shift)
    if resume_from is None:
        identity_batchnorm(student, x_all, teacher, seed=seed)
    rng = np.random.default_rng(seed)
    step = start_epoch * steps_per_epoch
    for epoch in range(config.epochs):
        order = rng.permutation(len(x_all))  # drawn for skipped epochs too, so a resumed run sees the same order
        if epoch < start_epoch:
            continue
        for i in range(steps_per_epoch):
            if on_step is not None:
                on_step(step)
            step += 1
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            if len(idx) < config.batch_size:  # keep one full compiled shape, cycling through a set smaller than a batch
                idx = np.concatenate([idx, np.resize(order, config.batch_size - len(idx))])
            train_step(distribute_batch(strategy, x_all[idx]))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, [v.numpy() for v in opt.variables])
        if on_progress:
            on_progress(epoch + 1, config.epochs)
    if config.ema:
        opt.finalize_variable_values(student.trainable_variables)
    if config.recalibrate:
        recalibrate_batchnorm(student, x_all, seed=seed)
    return student


def distribute_batch(strategy, xb: np.ndarray):
    """A global batch as one equal slice per replica (the default strategy gets the whole batch)."""
    tf = _compat.tf()
    per = len(xb) // strategy.num_replicas_in_sync
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(xb[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per]))


def _check_replicas(strategy, student, batch_size):
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise TinyDistillError(f"`batch_size` ({batch_size}) must be a multiple of the {replicas} replicas")
    if replicas > 1 and not strategy.extended.variable_created_in_scope(student.trainable_variables[0]):
        raise TinyDistillError("build the student inside `strategy.scope()` to distill with a distribution strategy")


def ema_momentum(ema: float | None, total_steps: int) -> float:
    """The weights' moving-average momentum for a run of ``total_steps``: ``ema``, lowered in short runs so that
    the starting weights keep at most e^-3 (5 %) of the average (Keras starts the average at the weights)."""
    return max(0.0, min(ema or 0.0, 1.0 - 3.0 / max(1, total_steps)))


def optimizer_for(config, strategy, student, total_steps, input_shape, seed, opt_state=None):
    """Adam on a cosine schedule over ``total_steps`` (restored from ``opt_state`` if given), keeping a moving
    average of the weights when ``config.ema`` is set (``opt.finalize_variable_values`` puts it in place), and the
    image shift layer (or None)."""
    k = _compat.keras()
    schedule = k.optimizers.schedules.CosineDecay(config.lr, total_steps, alpha=0.01)
    with strategy.scope():
        opt = k.optimizers.Adam(schedule, use_ema=bool(config.ema), ema_momentum=ema_momentum(config.ema, total_steps),
                                weight_decay=config.weight_decay or None)
        if config.weight_decay:
            opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        if opt_state is not None:
            opt.build(student.trainable_variables)
            for var, value in zip(opt.variables, opt_state):
                var.assign(value)
        # per-sample random shifts of up to ~1/12 of the image (a generic image prior); fractional, so resampled
        # bilinearly: whole-pixel shifts cost the engine 9.2 and 7.3 pp (benchmarks/RESULTS.md, "Fifth sweep")
        shift = k.layers.RandomTranslation(1 / 12, 1 / 12, fill_mode="nearest", seed=seed) if is_image(input_shape) else None
    return opt, shift


FEATURE_SAMPLE = 2048  # the first inputs whose stage outputs set the feature term's spreads (for larger inputs than
# CIFAR-10's, about as many values: feature_sample)


def feature_sample(shape) -> int:
    """How many of the first inputs set the feature term's spreads: :data:`FEATURE_SAMPLE`, fewer for inputs larger
    than CIFAR-10's (:func:`~tinydistill._math.by_values`, at least 256)."""
    return by_values(shape, FEATURE_SAMPLE, 256)


def _feature_probes(teacher, student, x_all, features):
    """Teacher and student probes that also return the matched stage outputs, and per matched layer a
    (teacher channels, student channels) matrix selecting the teacher channels it holds, each divided by its
    spread on (up to 2,048) clean synthetic inputs, and the student channels' 1 / spread."""
    from .design import student_layer

    tf, k = _compat.tf(), _compat.keras()
    tm = teacher.logits_model
    matched = feature_layers(teacher, student) if features > 0 else {}
    if not matched:
        return tm, student, []
    names = list(matched)
    t_probe = k.Model(tm.inputs, [tm.get_layer(nm).output for nm in names] + [tm.output])
    s_probe = k.Model(student.inputs, [student.get_layer(student_layer(student, nm)).output for nm in names]
                      + [student.output])
    sample = x_all[:feature_sample(x_all.shape[1:])]
    chunk = by_values(x_all.shape[1:], 256, 32)
    acts = [t_probe(sample[i:i + chunk], training=False) for i in range(0, len(sample), chunk)]
    spread = []
    for j, nm in enumerate(names):
        sd = floor_spread(np.concatenate([a[j].numpy() for a in acts]).reshape(-1, acts[0][j].shape[-1]).std(0))
        inv = (1.0 / sd[matched[nm]]).astype(np.float32)
        # the teacher's matched channels, each divided by its spread, as one small matmul: a gather along the
        # channel axis cost 2.6 times as much on CPU (LeNet-5 at batch 512: 12.0 against 4.6 ms a step for the term)
        select = np.zeros((len(sd), len(inv)), np.float32)
        select[matched[nm], np.arange(len(inv))] = inv
        spread.append((tf.constant(select), tf.constant(inv)))
    return t_probe, s_probe, spread


def _mixer(shift, ndim: int, flip: bool = False, noise: tuple | None = None, mode: str = "mixup"):
    """Random shifts (images), left-right flips of half the images (``flip``), Gaussian noise (``noise``: (std,
    low, high): each input's std drawn uniformly up to ``std``, the result clipped to [low, high]), then half the
    inputs mixed with another of the batch (``mode``: a weighted sum, or for images ``"cutmix"``, a box of the other
    image of up to half the area pasted in); the teacher labels the result, so the target stays exact."""
    tf = _compat.tf()
    cut = mode == "cutmix" and ndim == 3

    def mix(x):
        if shift is not None:
            x = shift(x, training=True)
        if flip:
            mirrored = tf.random.uniform((tf.shape(x)[0],) + (1,) * ndim) < 0.5
            x = tf.where(mirrored, tf.reverse(x, axis=[2]), x)
        if noise is not None and noise[0] > 0:
            std = tf.random.uniform((tf.shape(x)[0],) + (1,) * ndim, 0.0, noise[0])
            x = tf.clip_by_value(x + std * tf.random.normal(tf.shape(x)), noise[1], noise[2])
        n = tf.shape(x)[0]
        lam = tf.random.uniform((n,) + (1,) * ndim, 0.0, 1.0)
        lam = tf.maximum(lam, 1.0 - lam)
        keep = tf.cast(tf.random.uniform((n,) + (1,) * ndim) < 0.5, tf.float32)
        other = tf.reverse(x, axis=[0])
        if cut:  # a box of side sqrt(1 - lam) of the image's, centred at random, clipped at the edges
            h, w = tf.shape(x)[1], tf.shape(x)[2]
            side = tf.sqrt(1.0 - lam[:, 0, 0, 0])
            centre = tf.random.uniform((n, 2))
            rows = tf.cast(tf.range(h), tf.float32)[None, :] + 0.5
            cols = tf.cast(tf.range(w), tf.float32)[None, :] + 0.5
            hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
            in_r = tf.abs(rows - centre[:, :1] * hf) < (side[:, None] * hf / 2)
            in_c = tf.abs(cols - centre[:, 1:] * wf) < (side[:, None] * wf / 2)
            box = tf.cast(in_r[:, :, None, None] & in_c[:, None, :, None], tf.float32)
            return x + (1.0 - keep) * box * (other - x)
        lam = keep + (1.0 - keep) * lam
        return lam * x + (1.0 - lam) * other

    return mix


def _per_example_loss(tf, config, t, s):
    """Logit MSE, or Hinton's softened KL at the temperature, per example."""
    if config.loss == "kl":
        T = float(config.temperature)
        pt = tf.nn.softmax(t / T)
        return tf.reduce_sum(pt * (tf.nn.log_softmax(t / T) - tf.nn.log_softmax(s / T)), axis=-1) * T * T
    return tf.reduce_mean(tf.square(t - s), axis=-1)


def train_step_for(teacher, student, x_all, config, strategy, opt, shift, *, flip: bool = False,
                   noise: tuple | None = None):
    """The compiled distillation step on one global batch, run on every replica (``x_all``: clean inputs that
    set the feature term's per-channel spread; ``flip``: images are also mirrored left-right at random;
    ``noise``: (std, low, high) of the Gaussian noise added to the inputs, see :func:`_mixer`)."""
    tf = _compat.tf()
    t_probe, s_probe, spread = _feature_probes(teacher, student, x_all, config.features)
    w_feat = float(config.features) / len(spread) if spread else 0.0
    mix = _mixer(shift, len(teacher.input_shape), flip and is_image(teacher.input_shape), noise, config.mix)

    def replica_step(x):
        if config.augment:
            x = mix(x)
        t_out = t_probe(x, training=False)
        t_out = list(t_out) if spread else [t_out]
        # the teacher's matched channels in units of their spread
        targets = [tf.einsum("...c,cd->...d", ta, select) for (select, _), ta in zip(spread, t_out[:-1])]
        with tf.GradientTape() as tape:
            s_out = s_probe(x, training=True)
            s_out = list(s_out) if spread else [s_out]
            # averaged over the global batch, so summing the replicas' gradients gives the mean
            loss_value = tf.nn.compute_average_loss(_per_example_loss(tf, config, t_out[-1], s_out[-1]),
                                                    global_batch_size=config.batch_size)
            for (_, inv), target, sa in zip(spread, targets, s_out[:-1]):
                # the mean square over every example and element, as one sum (l2_loss is half the sum of squares)
                size = float(np.prod(sa.shape[1:])) * config.batch_size
                loss_value += w_feat * 2.0 * tf.nn.l2_loss(target - sa * inv) / size
        grads = tape.gradient(loss_value, student.trainable_variables)
        opt.apply_gradients(zip(grads, student.trainable_variables))
        return loss_value

    @tf.function
    def train_step(x):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x,)), axis=None)

    return train_step


# the teacher must keep its top-1 class on this share of noisy synthetic inputs for that noise to be used
RECALIBRATION_KEEP = 0.95
_NOISE_GRID = tuple(2.0 ** -k for k in range(9, 3, -1))  # 1/512 .. 1/16 of the inputs' span


def _noisy(xs: np.ndarray, rng, sigma: float, lo: float, hi: float, chunk: int = 256,
           out: np.ndarray | None = None) -> np.ndarray:
    """``xs`` plus Gaussian noise of std ``sigma``, clipped to [lo, hi], in float32: drawn ``chunk`` rows at a time
    (the same numbers as one draw of the whole shape), so no float64 copy of the whole batch is made (2048 inputs of
    96 x 96 x 3 would take 450 MB twice). ``out``: where to write (may be ``xs`` itself, float32)."""
    out = np.empty(xs.shape, np.float32) if out is None else out
    for i in range(0, len(xs), chunk):
        part = xs[i:i + chunk]
        out[i:i + chunk] = np.clip(part + rng.normal(0.0, sigma, part.shape), lo, hi)
    return out


def recalibration_noise(teacher, x: np.ndarray, *, samples: int = 2048, seed: int = 0) -> float:
    """Std of the Gaussian noise added to generated images when a student's BatchNorm statistics are re-estimated.

    The engine's generator draws images at a quarter of their size and upsamples them: they lack the fine
    texture of real images, so a student's BatchNorm statistics measured on them normalise real images
    wrongly (CIFAR-10 ResNet-8 -> width 0.7: 4-5 pp lost against statistics measured on real images;
    ``benchmarks/RESULTS.md``, "BatchNorm statistics of the student"). Noise stands in for that texture,
    as much as the teacher tolerates: the largest std on a doubling grid (1/512 to 1/16 of the inputs'
    span) at which the teacher keeps its top-1 class on :data:`RECALIBRATION_KEEP` of the inputs (``samples`` of
    them; for inputs larger than CIFAR-10's about as many values: :func:`~tinydistill._math.by_values`).
    0 when the teacher tolerates none, or has no BatchNorm to calibrate. Per-batch pixels are optimised at
    full resolution and keep clean recalibration: on the wake-word DS-CNN's spectrograms the teacher
    tolerated the grid's largest noise and the student lost accuracy with it.
    """
    if not teacher.has_batchnorm or len(x) == 0:
        return 0.0
    rng = np.random.default_rng(seed + 1)
    samples, chunk = by_values(x.shape[1:], samples, 256), by_values(x.shape[1:], 256, 32)
    xs = np.asarray(x[np.sort(rng.choice(len(x), size=min(samples, len(x)), replace=False))], np.float32)
    lo, hi = float(xs.min()), float(xs.max())

    def top1(sigma):  # noise drawn a chunk at a time, as _noisy draws it: the same numbers, no noisy copy of xs
        return np.concatenate([teacher.logits_model(_noisy(xs[i:i + chunk], rng, sigma, lo, hi) if sigma else
                                                    xs[i:i + chunk], training=False).numpy().argmax(-1)
                               for i in range(0, len(xs), chunk)])

    clean, chosen = top1(0.0), 0.0
    for frac in _NOISE_GRID:
        sigma = frac * (hi - lo)
        if (top1(sigma) == clean).mean() < RECALIBRATION_KEEP:
            break
        chosen = sigma
    return float(chosen)


def recalibrate_batchnorm(model, x: np.ndarray, *, noise: float = 0.0, mirror: bool = False, samples: int = 2048,
                          batch_size: int = 256, seed: int = 0) -> None:
    """Set every BatchNorm layer's moving mean and variance to the exact statistics of clean inputs (plus Gaussian
    noise of std ``noise``: :func:`recalibration_noise`; ``mirror``: images drawn from ``x`` and its left-right mirror
    images, as if both were in ``x``, without a copy of it).

    Moving averages lag behind (they start at 0 and 1 and move by 1 % a step),
    and they were gathered on augmented, mixed batches; a layer whose inputs
    are tiny (e.g. spectrogram features) is then normalised by a variance
    many times too large at inference. Layers are set in order, each seeing
    the already-corrected layers before it. ``model.recalibration_noise`` records ``noise``. ``samples`` and
    ``batch_size`` hold fewer inputs larger than CIFAR-10's (:func:`~tinydistill._math.by_values`).

    Frozen layers (``trainable`` False, as a teacher fine-tuned with its BatchNorm frozen passes them on) keep their
    statistics: they normalise with them while the student trains too, so the weights after them learnt with those,
    and they describe the teacher's training data, which synthetic inputs only approximate (a width-1 student of such
    a teacher fell from the teacher's 95.7 to 87.5 % when they were re-estimated; ``benchmarks/RESULTS.md``,
    "BatchNorm frozen in the teacher"; :func:`frozen_batchnorm` lists them).
    """
    bns = [ly for ly in model.layers if ly.__class__.__name__ == "BatchNormalization" and ly.trainable]
    model.recalibration_noise = float(noise)
    if not bns:
        return
    if mirror and np.ndim(x) != 4:
        raise ValueError(f"mirror images need a batch of images (N, H, W, C); received shape {np.shape(x)}")
    rng = np.random.default_rng(seed)
    xs, idx, batch_size = _calibration_sample(x, rng, samples, batch_size, copies=2 if mirror else 1)
    if mirror:
        xs[idx >= len(x)] = xs[idx >= len(x), :, ::-1]
    if noise:
        _noisy(xs, rng, noise, float(x.min()), float(x.max()), out=xs)
    for bn in bns:
        mean, var = _input_moments(model, bn, xs, batch_size)
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(var.astype(np.float32))


def identity_batchnorm(model, x: np.ndarray, teacher, *, samples: int = 2048, batch_size: int = 256,
                       seed: int = 0) -> None:
    """Start the BatchNorm layers :func:`~tinydistill.student.design_student` added (to a student of ``teacher``, one
    without BatchNorm) as the identity on ``x``, after putting the convolution before each on a common scale.

    Each filter of that convolution is scaled to the norm a He-initialised one has (sqrt(2)): behind a BatchNorm its
    scale no longer changes what the network computes, only how far an optimiser step moves it, and a teacher's filters
    can be far from it (CIFAR-10 ResNet-8 with its BatchNorm folded: 0.019 for the first convolution, which reads
    0-255 pixels, 9 for another). Then the BatchNorm's moving mean and variance become its input's on (up to
    ``samples`` of) ``x`` and its scale and offset undo both, so the student computes what it computed before, in
    training too (each batch's statistics are close to the sample's), and a teacher-initialised student starts as the
    pruned teacher. Layers are set in order, each seeing the ones before it already set.
    """
    from .design import BN_SUFFIX, added_batchnorm, output_kernel

    bns = added_batchnorm(model, teacher)
    if not bns or len(x) == 0:
        return
    xs, _, batch_size = _calibration_sample(x, np.random.default_rng(seed), samples, batch_size)
    for bn in bns:
        conv = model.get_layer(bn.name[:-len(BN_SUFFIX)])
        weights = conv.get_weights()
        index, out = output_kernel(conv)
        norm = np.sqrt((weights[index].reshape(-1, out) ** 2).sum(0))
        scale = (np.sqrt(2.0) / np.maximum(norm, 1e-12)).astype(np.float32)
        weights[index] = (weights[index].reshape(-1, out) * scale).reshape(weights[index].shape)
        if conv.use_bias:
            weights[-1] = weights[-1] * scale
        conv.set_weights(weights)
        mean, var = _input_moments(model, bn, xs, batch_size)
        bn.set_weights([(np.sqrt(var + bn.epsilon) / scale).astype(np.float32), (mean / scale).astype(np.float32),
                        mean.astype(np.float32), var.astype(np.float32)])


def _calibration_sample(x: np.ndarray, rng, samples: int, batch_size: int, copies: int = 1):
    """Up to ``samples`` of ``x`` drawn without replacement (from ``copies`` virtual copies of it), as a float32 copy,
    their indices in ``copies * len(x)``, and the batch size; both counts held to fewer inputs larger than CIFAR-10's
    (:func:`~tinydistill._math.by_values`)."""
    samples, batch_size = by_values(np.shape(x)[1:], samples, 256), by_values(np.shape(x)[1:], batch_size, 32)
    n = len(x) * copies
    idx = np.sort(rng.choice(n, size=min(samples, n), replace=False))
    return np.asarray(x[idx % len(x)], np.float32), idx, batch_size


def _input_moments(model, layer, xs: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of ``layer``'s input over ``xs``, a batch at a time (inference mode)."""
    probe = _compat.keras().Model(model.inputs, layer.input)
    return _channel_moments(probe(xs[i:i + batch_size], training=False).numpy() for i in range(0, len(xs), batch_size))


def frozen_batchnorm(model) -> list[str]:
    """The names of ``model``'s frozen BatchNorm layers (``trainable`` False), whose statistics
    :func:`recalibrate_batchnorm` keeps."""
    return [ly.name for ly in model.layers if ly.__class__.__name__ == "BatchNormalization" and not ly.trainable]


def _channel_moments(batches) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance of the last axis over every other axis of all ``batches``, in float64, one batch
    at a time (Chan et al.'s pairwise update): a layer's activations on all samples are never held at once (2048 inputs
    of 96 x 96 x 3 put 300 MB through a MobileNet's first BatchNorm, twice that in float64)."""
    count, mean, m2 = 0, None, None
    for b in batches:
        b = b.reshape(-1, b.shape[-1]).astype(np.float64)
        n, bmean = len(b), b.mean(0)
        bm2 = ((b - bmean) ** 2).sum(0)
        if mean is None:
            count, mean, m2 = n, bmean, bm2
            continue
        delta, total = bmean - mean, count + n
        mean = mean + delta * (n / total)
        m2 = m2 + bm2 + delta ** 2 * (count * n / total)
        count = total
    return mean, m2 / count
