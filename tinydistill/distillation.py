"""Distill: train the student to match the teacher's outputs (logits or softened probabilities) on synthetic inputs."""

from __future__ import annotations

import math

import numpy as np

from . import _compat
from .errors import TinyDistillError

LOSSES = ("mse", "kl")
# 60 epochs instead of 30 (int8, benchmarks, two seeds): LeNet-5 with stats 98.53 % against 98.50 %, without
# stats 97.66 % against 97.36 %; CIFAR-10 ResNet-8 from 12,000 BatchNorm-synthesised inputs 54.4 % against
# 52.5 % (outputs only, before the stage-feature term, 60 epochs had cost it 1.8 pp: 47.2 against 49.0 %)
DEFAULT_EPOCHS = 60
# weight of the stage-output feature term against the logit term (CIFAR-10 ResNet-8 -> width 0.5 from
# 12,000 BatchNorm-synthesised inputs, int8, one seed: 0 49.2 %, 10 52.2 %, 30 53.1 %, 100 48.6 %; every
# activation instead of the stage outputs at 10: 49.8 %; LeNet-5 with stats: 98.52 % at 0, 98.47-98.55 %
# at 3-30, within the seed noise)
FEATURE_WEIGHT = 30.0
_SKIPPED = ("Dropout", "Noise", "ActivityRegularization")  # identity at inference, noise in training


def _validate(data, epochs, temperature, batch_size, loss, features):
    if len(data) == 0:
        raise TinyDistillError("the synthetic set is empty: synthesise at least one batch")
    if epochs < 1 or batch_size < 1:
        raise TinyDistillError(f"`epochs` and `batch_size` must be >= 1. Received: epochs={epochs}, batch_size={batch_size}")
    if temperature <= 0:
        raise TinyDistillError(f"`temperature` must be > 0. Received: temperature={temperature}")
    if loss not in LOSSES:
        raise TinyDistillError(f"`loss` must be one of {', '.join(LOSSES)}. Received: loss={loss!r}")
    validate_feature_weight(features)


def validate_feature_weight(features) -> None:
    """Raise a clear error unless the feature-term weight is >= 0 (NaN included)."""
    if not features >= 0:
        raise TinyDistillError(f"`features` must be >= 0 (0: match the outputs only). Received: features={features!r}")


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
    from .student import channel_map

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


def distill(teacher, student, data, *, epochs: int = DEFAULT_EPOCHS, loss: str = "mse", temperature: float = 4.0,
            batch_size: int = 128,
            lr: float = 2e-3, seed: int = 0, strategy=None, on_progress=None, on_step=None, recalibrate: bool = True,
            start_epoch: int = 0, optimizer_state=None, on_epoch_end=None, augment: bool = True,
            features: float = FEATURE_WEIGHT):
    """Train ``student`` to match the teacher's outputs on ``data``.

    The teacher labels every batch on the fly, so augmented inputs (random
    shifts for images, and mixes of two synthetic inputs) carry exact teacher
    targets: the student sees many more points of the teacher's function than
    there are synthetic inputs.

    Besides the outputs, the student matches the teacher's feature maps at the end of every
    stage (:func:`feature_layers`), each channel in units of its spread on the synthetic set: a
    few thousand synthetic inputs carry little information in ten logits each, and the feature
    maps carry much more (CIFAR-10 ResNet-8 -> width 0.5, int8, 30 epochs, two seeds: 52.5 % against
    48.2 % from 12,000 BatchNorm-synthesised inputs; from 5,000 real images 62.4 % against 61.7 %).

    Losses: ``"mse"`` matches the logits themselves (Ba & Caruana 2014): synthetic inputs are
    mostly confident, where softened probabilities saturate but logits still differ (measured on
    LeNet-5 with stats: 98.41 % vs 98.32 % over three seeds); ``"kl"`` is Hinton's
    ``T**2 * KL(softmax(t/T) || softmax(s/T))``.

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        student: a Keras model with logits output (from :func:`design_student`).
        data: a :class:`~tinydistill.synthesis.SyntheticSet` (only ``x`` is used).
        epochs: passes over the synthetic set.
        loss: ``"mse"`` (logits) or ``"kl"`` (softened probabilities).
        temperature: KD temperature (``"kl"`` only).
        batch_size: examples per step.
        lr: peak learning rate (Adam, cosine decay).
        seed: shuffling and augmentation seed.
        strategy: a ``tf.distribute`` strategy; the student must have been built in its
            ``scope()``. Each replica takes its share of every batch; gradients are summed.
        on_progress: optional callable ``(epoch, epochs)``.
        on_step: optional callable ``(step)`` before every step (e.g. tfmot's pruning schedule).
        recalibrate: re-estimate BatchNorm statistics on clean inputs at the end.
        start_epoch, optimizer_state: continue an interrupted run (the student already
            holds the weights of epoch ``start_epoch``; the optimiser's state is restored).
        on_epoch_end: optional callable ``(epochs done, optimiser state)``, e.g. to checkpoint.
        augment: random shifts (image inputs) and mixes of two inputs, labelled by the teacher.
        features: weight of the stage-output feature term (0: outputs only).

    Returns:
        The trained student (the same object, trained in place).
    """
    _validate(data, epochs, temperature, batch_size, loss, features)
    tf, k = _compat.tf(), _compat.keras()
    _compat.set_seed(seed)
    x_all = np.asarray(data.x, np.float32)
    n = len(x_all)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise TinyDistillError(f"`batch_size` ({batch_size}) must be a multiple of the {replicas} replicas")
    if replicas > 1 and not strategy.extended.variable_created_in_scope(student.trainable_variables[0]):
        raise TinyDistillError("build the student inside `strategy.scope()` to distill with a distribution strategy")
    per_replica = batch_size // replicas
    schedule = k.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch, alpha=0.01)
    tm = teacher.logits_model
    shape = tuple(teacher.input_shape)
    image = len(shape) == 3 and shape[0] >= 8 and shape[1] >= 8
    with strategy.scope():
        opt = k.optimizers.Adam(schedule)
        if optimizer_state is not None:
            opt.build(student.trainable_variables)
            for var, value in zip(opt.variables, optimizer_state):
                var.assign(value)
        # per-sample random shifts of up to ~1/12 of the image (a generic image prior)
        shift = k.layers.RandomTranslation(1 / 12, 1 / 12, fill_mode="nearest", seed=seed) if image else None
    T = float(temperature)
    use_kl = loss == "kl"
    matched = feature_layers(teacher, student) if features > 0 else {}
    if matched:
        names = list(matched)
        t_probe = k.Model(tm.inputs, [tm.get_layer(nm).output for nm in names] + [tm.output])
        s_probe = k.Model(student.inputs, [student.get_layer(nm).output for nm in names] + [student.output])
        # each matched channel's spread on (up to 2,048) clean synthetic inputs, floored at 1/1000 of its layer's largest
        sample = x_all[:2048]
        acts = [t_probe(sample[i:i + 256], training=False) for i in range(0, len(sample), 256)]
        spread = []
        for j, nm in enumerate(names):
            sd = np.concatenate([a[j].numpy() for a in acts]).reshape(-1, acts[0][j].shape[-1]).std(0)
            sd = np.maximum(sd, 1e-3 * max(float(sd.max()), 1e-6)) + 1e-8
            spread.append((tf.constant(matched[nm]), tf.constant(sd[matched[nm]].astype(np.float32))))
        w_feat = float(features) / len(names)
    else:
        t_probe, s_probe = tm, student

    def mix(x):
        if shift is not None:
            x = shift(x, training=True)
        # mix pairs of inputs; the teacher labels the mix, so the target stays exact
        lam = tf.random.uniform((tf.shape(x)[0],) + (1,) * len(shape), 0.0, 1.0)
        lam = tf.maximum(lam, 1.0 - lam)
        keep = tf.cast(tf.random.uniform((tf.shape(x)[0],) + (1,) * len(shape)) < 0.5, tf.float32)
        lam = keep + (1.0 - keep) * lam
        return lam * x + (1.0 - lam) * tf.reverse(x, axis=[0])

    def replica_step(x):
        if augment:
            x = mix(x)
        t_out = t_probe(x, training=False)
        with tf.GradientTape() as tape:
            s_out = s_probe(x, training=True)
            if matched:
                t, s = t_out[-1], s_out[-1]
            else:
                t, s = t_out, s_out
            if use_kl:
                pt = tf.nn.softmax(t / T)
                per_example = tf.reduce_sum(pt * (tf.nn.log_softmax(t / T) - tf.nn.log_softmax(s / T)), axis=-1) * T * T
            else:
                per_example = tf.reduce_mean(tf.square(t - s), axis=-1)
            if matched:
                for (idx, sd), ta, sa in zip(spread, t_out[:-1], s_out[:-1]):
                    diff = (tf.gather(ta, idx, axis=-1) - sa) / sd
                    per_example += w_feat * tf.reduce_mean(tf.square(diff), axis=[1, 2, 3])
            # averaged over the global batch, so summing the replicas' gradients gives the mean
            loss_value = tf.nn.compute_average_loss(per_example, global_batch_size=batch_size)
        grads = tape.gradient(loss_value, student.trainable_variables)
        opt.apply_gradients(zip(grads, student.trainable_variables))
        return loss_value

    @tf.function
    def train_step(x):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x,)), axis=None)

    rng = np.random.default_rng(seed)
    step = start_epoch * steps_per_epoch
    for epoch in range(epochs):
        order = rng.permutation(n)  # drawn for skipped epochs too, so a resumed run sees the same order
        if epoch < start_epoch:
            continue
        for i in range(steps_per_epoch):
            if on_step is not None:
                on_step(step)
            step += 1
            idx = order[i * batch_size:(i + 1) * batch_size]
            if len(idx) < batch_size:  # keep one compiled shape
                idx = np.concatenate([idx, order[: batch_size - len(idx)]])
            xb = x_all[idx]
            train_step(strategy.experimental_distribute_values_from_function(
                lambda ctx, xb=xb: tf.constant(xb[ctx.replica_id_in_sync_group * per_replica:
                                                  (ctx.replica_id_in_sync_group + 1) * per_replica])))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, [v.numpy() for v in opt.variables])
        if on_progress:
            on_progress(epoch + 1, epochs)
    if recalibrate:
        recalibrate_batchnorm(student, x_all, seed=seed)
    return student


def recalibrate_batchnorm(model, x: np.ndarray, *, samples: int = 2048, batch_size: int = 256, seed: int = 0) -> None:
    """Set every BatchNorm layer's moving mean and variance to the exact statistics of clean inputs.

    Moving averages lag behind (they start at 0 and 1 and move by 1 % a step),
    and they were gathered on augmented, mixed batches; a layer whose inputs
    are tiny (e.g. spectrogram features) is then normalised by a variance
    many times too large at inference. Layers are set in order, each seeing
    the already-corrected layers before it.
    """
    k = _compat.keras()
    bns = [ly for ly in model.layers if ly.__class__.__name__ == "BatchNormalization"]
    if not bns:
        return
    rng = np.random.default_rng(seed)
    xs = x[np.sort(rng.choice(len(x), size=min(samples, len(x)), replace=False))]
    for bn in bns:
        probe = k.Model(model.inputs, bn.input)
        acts = np.concatenate([probe(xs[i:i + batch_size], training=False).numpy()
                               for i in range(0, len(xs), batch_size)])
        acts = acts.reshape(-1, acts.shape[-1]).astype(np.float64)
        bn.moving_mean.assign(acts.mean(0).astype(np.float32))
        bn.moving_variance.assign(acts.var(0).astype(np.float32))
