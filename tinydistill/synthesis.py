"""Synthesis: reconstruct inputs from the teacher so they can replace the training data.

Every method optimises a batch of inputs by gradient descent inside one
compiled ``tf.function`` step, with per-class conditioning (each batch is
class-balanced and a cross-entropy term pulls each input to its class):

``all-layers``  Lopes et al. 2017: match the recorded per-class mean and std
                of every probed layer (and of the input).
``top-layer``   Lopes et al. 2017: match only the logits statistics.
``bn``          DeepInversion / ZeroQ: match the BatchNorm running statistics
                the teacher already carries, plus a smoothness prior.
``prior``       no metadata: class targets plus image priors (TV, range).
``auto``        the strongest signal the teacher has: stats > BN > prior.

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

METHODS = ("auto", "all-layers", "top-layer", "bn", "prior")
_EPS = 1e-3


@dataclass
class SyntheticSet:
    """Synthetic inputs with the teacher's logits on them.

    Attributes:
        x: inputs in the teacher's input range, float32.
        y: the class each input was optimised towards.
        logits: the teacher's logits on ``x``.
        method: the synthesis method used.
    """

    x: np.ndarray
    y: np.ndarray
    logits: np.ndarray
    method: str

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
    if method in ("all-layers", "top-layer") and stats is None:
        raise TinyDistillError(f"method {method!r} needs a statistics file: pass --stats FILE "
                               "(record one with 'tinydistill stats') or use --method auto")
    if method == "bn" and not teacher.has_batchnorm:
        raise TinyDistillError("method 'bn' needs BatchNorm layers and this teacher has none: "
                               "use --method auto")
    return method, "chosen by the user"


def _moment_targets(teacher, stats, method):
    """Per-layer targets: (layer names, tensors to probe, class means, class stds, global scale)."""
    names = [LOGITS] if method == "top-layer" else [n for n in stats.layers]
    targets = []
    for n in names:
        _, gstd = stats.global_moments(n)
        scale = np.maximum(gstd, _EPS * max(float(gstd.max()), 1e-6)) + 1e-8
        targets.append((n, stats.mean[n].astype(np.float32), stats.std[n].astype(np.float32),
                        scale.astype(np.float32)))
    return targets


def _class_moments(tf, a, w):
    """Per-class per-channel mean and std over samples and positions; w is (C, B) class weights."""
    b = tf.shape(a)[0]
    ch = a.shape[-1]
    a = tf.reshape(a, (b, -1, ch))
    m1 = tf.reduce_mean(a, axis=1)  # (B, ch)
    m2 = tf.reduce_mean(tf.square(a), axis=1)
    mean = tf.matmul(w, m1)  # (C, ch)
    var = tf.matmul(w, m2) - tf.square(mean)
    return mean, tf.sqrt(tf.maximum(var, 0.0) + 1e-8)


def _region_class_moments(tf, a, w, gh, gw):
    """Per-class mean and std over samples and positions of each of gh x gw regions, flattened."""
    b = tf.shape(a)[0]
    h, wd, ch = a.shape[1], a.shape[2], a.shape[3]

    def pool(t):
        t = tf.reshape(t, (b, gh, h // gh, gw, wd // gw, ch))
        return tf.reshape(tf.reduce_mean(t, axis=[2, 4]), (b, gh * gw * ch))

    mean = tf.matmul(w, pool(a))
    var = tf.matmul(w, pool(tf.square(a))) - tf.square(mean)
    return mean, tf.sqrt(tf.maximum(var, 0.0) + 1e-8)


def _batch_moments(tf, a):
    ch = a.shape[-1]
    a = tf.reshape(a, (-1, ch))
    mean, var = tf.nn.moments(a, axes=[0])
    return mean, tf.sqrt(var + 1e-8)


def _total_variation(tf, u):
    dh = u[:, 1:, :, :] - u[:, :-1, :, :]
    dw = u[:, :, 1:, :] - u[:, :, :-1, :]
    return tf.reduce_mean(tf.abs(dh)) + tf.reduce_mean(tf.abs(dw))


def _is_image(shape) -> bool:
    return len(shape) == 3 and shape[0] >= 8 and shape[1] >= 8


def _validate(teacher, n, steps, batch_size, input_range):
    if n < 1 or steps < 1 or batch_size < 1:
        raise TinyDistillError(f"`n`, `steps` and `batch_size` must be >= 1. Received: n={n}, steps={steps}, "
                               f"batch_size={batch_size}")
    if input_range is None:
        raise TinyDistillError("the teacher's input range is unknown: pass --input-range LO,HI "
                               "(e.g. 0,1 or 0,255) or a stats file that records it")


def synthesize(teacher, stats=None, *, method: str = "auto", n: int = 12000, steps: int = 40,
               batch_size: int = 500, lr: float = 0.05, input_range=None, seed: int = 0,
               strategy=None, on_progress=None) -> SyntheticSet:
    """Synthesise ``n`` class-balanced inputs from the teacher (and its metadata).

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        stats: a :class:`~tinydistill.stats.Stats` of this teacher, or None.
        method: one of ``METHODS``; ``auto`` picks the strongest signal.
        n: number of inputs.
        steps: Adam steps per batch.
        batch_size: inputs optimised together (moments are matched per batch).
        lr: Adam step size, in units of the input range.
        input_range: the teacher's input range; defaults to the stats' one.
        seed: random seed.
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
    _validate(teacher, n, steps, batch_size, input_range)
    method, _ = resolve_method(method, teacher, stats)
    tf, k = _compat.tf(), _compat.keras()
    lo, hi = (float(v) for v in input_range)
    span = hi - lo
    C = teacher.num_classes
    shape = tuple(teacher.input_shape)
    rng = np.random.default_rng(seed)
    lm = teacher.logits_model

    if method in ("all-layers", "top-layer"):
        targets = _moment_targets(teacher, stats, method)
        layer_names = [t[0] for t in targets if t[0] not in (INPUT, LOGITS)]
        probe = k.Model(lm.inputs, [lm.get_layer(nm).output for nm in layer_names] + [lm.output])
    elif method == "bn":
        bns = [lm.get_layer(nm) for nm in teacher.bn_layers]
        probe = k.Model(lm.inputs, [b.input for b in bns] + [lm.output])
        targets = []
        for b in bns:
            mean = b.moving_mean.numpy().astype(np.float32)
            std = np.sqrt(b.moving_variance.numpy() + b.epsilon).astype(np.float32)
            targets.append((b.name, mean, std, std))
    else:
        probe = k.Model(lm.inputs, [lm.output])
        targets = []
    targets_tf = [(nm, tf.constant(m), tf.constant(s), tf.constant(sc)) for nm, m, s, sc in targets]
    # per-region targets (where in each map activity is), scaled like their channel
    regions = []
    if method == "all-layers":
        for nm, _, _, sc in targets:
            if nm in stats.region_mean:
                rm, rs = stats.region_mean[nm], stats.region_std[nm]
                c_, gh, gw, ch = rm.shape
                regions.append((nm, gh, gw, tf.constant(rm.reshape(c_, -1)), tf.constant(rs.reshape(c_, -1)),
                                tf.constant(np.tile(sc, gh * gw))))
    image = _is_image(shape)
    w_tv = 0.05 if image else 0.0  # weak smoothness prior on the unit-range input
    w_ce = 1.0

    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise TinyDistillError(f"`batch_size` ({batch_size}) must be a multiple of the {replicas} replicas")
    per_replica = batch_size // replicas

    def loss_fn(u_, y_, w_):
        x_ = lo + span * u_
        outs = probe(x_, training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        logits = outs[-1]
        loss = w_ce * tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y_, logits))
        if method in ("all-layers", "top-layer"):
            acts = dict(zip(layer_names, outs[:-1]))
            acts[LOGITS] = logits
            acts[INPUT] = x_
            present = tf.cast(tf.reduce_sum(w_, axis=1) > 0, tf.float32)[:, None]
            terms = []
            for nm, mt, st, sc in targets_tf:
                mean, std = _class_moments(tf, acts[nm], w_)
                d = tf.square((mean - mt) / sc) + tf.square((std - st) / sc)
                terms.append(tf.reduce_sum(d * present) / (tf.reduce_sum(present) * d.shape[-1]))
            for nm, gh, gw, mt, st, sc in regions:
                mean, std = _region_class_moments(tf, acts[nm], w_, gh, gw)
                d = tf.square((mean - mt) / sc) + tf.square((std - st) / sc)
                terms.append(tf.reduce_sum(d * present) / (tf.reduce_sum(present) * d.shape[-1]))
            loss += tf.add_n(terms)
        elif method == "bn":
            terms = []
            for (_, mt, st, sc), a in zip(targets_tf, outs[:-1]):
                mean, std = _batch_moments(tf, a)
                terms.append(tf.reduce_mean(tf.square((mean - mt) / sc) + tf.square((std - st) / sc)))
            loss += tf.add_n(terms)
        if w_tv:
            loss += w_tv * _total_variation(tf, u_) * 10.0
        return loss

    b1, b2 = 0.9, 0.999

    def replica_step(u_, m_, v_, y_, w_, t):
        with tf.GradientTape() as tape:
            tape.watch(u_)
            loss = loss_fn(u_, y_, w_)
        g = tape.gradient(loss, u_)
        # Adam on the inputs themselves, written out: the state is per batch and per
        # replica, which a Keras optimizer (one set of slots per variable) does not fit.
        m_ = b1 * m_ + (1 - b1) * g
        v_ = b2 * v_ + (1 - b2) * tf.square(g)
        step_ = lr * (m_ / (1 - tf.pow(b1, t))) / (tf.sqrt(v_ / (1 - tf.pow(b2, t))) + 1e-8)
        return tf.clip_by_value(u_ - step_, 0.0, 1.0), m_, v_

    @tf.function
    def step(u_, m_, v_, y_, w_, t):
        return strategy.run(replica_step, args=(u_, m_, v_, y_, w_, t))

    def distribute(chunks):
        """One chunk per replica (the default strategy simply gets the single chunk)."""
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(chunks[ctx.replica_id_in_sync_group]))

    @tf.function
    def final_logits(x_):
        return lm(x_, training=False)

    if stats is not None and INPUT in stats.mean:
        in_mean = (stats.mean[INPUT] - lo) / span  # (C, ch) in unit range
        in_std = stats.std[INPUT] / span
    else:
        in_mean = np.full((C, shape[-1]), 0.5, np.float32)
        in_std = np.full((C, shape[-1]), 0.25, np.float32)

    xs, ys, ls = [], [], []
    n_batches = math.ceil(n / batch_size)
    done = 0
    for bi in range(n_batches):
        y = (np.arange(batch_size) + bi * batch_size) % C
        y = rng.permutation(y).astype(np.int32)
        init = rng.normal(size=(batch_size,) + shape).astype(np.float32)
        init = in_mean[y].reshape((batch_size,) + (1,) * (len(shape) - 1) + (shape[-1],)) + \
            init * in_std[y].reshape((batch_size,) + (1,) * (len(shape) - 1) + (shape[-1],))
        init = np.clip(init, 0.0, 1.0)
        parts = [slice(r * per_replica, (r + 1) * per_replica) for r in range(replicas)]
        weights = []
        for sl in parts:  # per-class averaging weights within each replica's share
            w = np.zeros((C, per_replica), np.float32)
            w[y[sl], np.arange(per_replica)] = 1.0
            weights.append(w / np.maximum(w.sum(1, keepdims=True), 1.0))
        u_t = distribute([init[sl] for sl in parts])
        m_t = distribute([np.zeros_like(init[sl]) for sl in parts])
        v_t = distribute([np.zeros_like(init[sl]) for sl in parts])
        y_t, w_t = distribute([y[sl] for sl in parts]), distribute(weights)
        for t in range(1, steps + 1):
            u_t, m_t, v_t = step(u_t, m_t, v_t, y_t, w_t, tf.constant(float(t)))
        u_final = np.concatenate([np.asarray(part) for part in strategy.experimental_local_results(u_t)])
        take = min(batch_size, n - done)
        x = (lo + span * u_final)[:take]
        xs.append(x)
        ys.append(y[:take])
        ls.append(final_logits(tf.constant(x)).numpy())
        done += take
        if on_progress:
            on_progress(done, n)
    return SyntheticSet(x=np.concatenate(xs).astype(np.float32), y=np.concatenate(ys).astype(np.int64),
                        logits=np.concatenate(ls).astype(np.float32), method=method)
