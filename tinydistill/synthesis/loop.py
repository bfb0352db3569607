"""The optimisation loop: class-balanced batches of inputs, optimised by Adam inside one compiled step.

It knows no method: it builds the teacher probe the objectives ask for, starts every batch
(:func:`start_inputs`), shifts and flips images, runs the step on every replica of a
``tf.distribute`` strategy, and labels the result with the teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _compat
from .._math import is_image
from ..errors import TinyDistillError
from ..teacher.stats import INPUT, LOGITS
from .kernels import smooth_noise
from .objectives import Batch, reads, total_loss
from .quality import ADAPTATIONS, raise_class_weight

# a teacher that keeps its top-1 class on most flipped inputs treats left and right alike (measured on
# synthetic inputs: CIFAR-10 ResNet-8 0.71, LeNet-5 on digits 0.36 with stats and 0.29 without)
FLIP_AGREEMENT = 0.5
_ADAM = (0.9, 0.999)


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
        generated: inputs the interleaved engine generated in all (``x`` holds a sample of them);
            None for per-batch synthesis, where ``x`` is every input.
        student_agreement: the self-check's student-teacher top-1 agreement on held-out synthetic inputs
            the student never trained on: the engine's, or :attr:`held`'s after compress distils (None: not measured).
        notes: what the run adapted after a self-check, one sentence each.
        generators: how many generators the engine drew over the run (``Schedule.renew``; None: per-batch synthesis).
        mirrored: the engine's student saw its image batches mirrored left-right at random (the teacher keeps
            its class on at least :data:`FLIP_AGREEMENT` of flipped generated images).
        held: per-batch synthesis's held-out inputs (inputs, teacher logits) that no student trains on
            (``synthesize(held_out=True)``, as compress runs it): the last batch's inputs beyond the set, or one
            more batch made after it; the set is the same with or without them. None: not made.
    """

    x: np.ndarray
    y: np.ndarray
    logits: np.ndarray
    method: str
    flipped: bool = False
    flip_agreement: float | None = None
    generated: int | None = None
    student_agreement: float | None = None
    notes: list = field(default_factory=list)
    mirrored: bool = False
    generators: int | None = None
    held: tuple | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def teacher_agreement(self) -> float:
        """Fraction of inputs the teacher assigns to their target class."""
        return float((self.logits.argmax(1) == self.y).mean()) if len(self.y) else 0.0


@dataclass
class Plan:
    """What the loop runs: the method's name, its class term (which draws each batch's targets),
    every objective, its recipe, the per-class start moments in unit range and the teacher's input range."""

    method: str
    classes: object
    objectives: list
    recipe: object
    start_moments: tuple
    input_range: tuple


def start_moments(stats, recipe, num_classes: int, channels: int, input_range) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean and std (C, channels) in unit range that a batch starts from: recorded, or mid-grey."""
    lo, hi = input_range
    if recipe.start == "stats" and stats is not None and INPUT in stats.mean:
        return (stats.mean[INPUT] - lo) / (hi - lo), stats.std[INPUT] / (hi - lo)
    return np.full((num_classes, channels), 0.5, np.float32), np.full((num_classes, channels), 0.25, np.float32)


def start_inputs(rng, start: str, y: np.ndarray, moments: tuple, shape: tuple) -> np.ndarray:
    """A batch's starting inputs in unit range for classes ``y``.

    ``flat``: one random level per input and channel plus faint noise; ``smooth`` (images):
    multi-scale noise around the class moments; otherwise white noise around them.
    """
    batch = len(y)
    in_mean, in_std = moments
    channel_shape = (batch,) + (1,) * (len(shape) - 1) + (shape[-1],)
    noise = rng.normal(size=(batch,) + shape).astype(np.float32)
    mean, std = in_mean[y].reshape(channel_shape), in_std[y].reshape(channel_shape)
    if start == "flat":
        init = rng.uniform(0.0, 1.0, channel_shape) + 0.03 * noise
    elif start == "smooth" and is_image(shape):
        init = mean + std * smooth_noise(rng, batch, shape)
    else:
        init = mean + noise * std
    return np.clip(init, 0.0, 1.0).astype(np.float32)


def jitter_pixels(shape: tuple, recipe) -> int:
    """The largest random shift of an image batch: 1/16 of its smaller side, at least 1 (0: no jitter)."""
    return max(1, round(min(shape[0], shape[1]) / 16)) if is_image(shape) and recipe.jitter else 0


def flip_agreement(logits_fn, x: np.ndarray, logits: np.ndarray) -> float:
    """Fraction of images ``x`` whose teacher class (``logits``) survives a left-right flip."""
    return float((logits.argmax(1) == logits_fn(x[:, :, ::-1]).numpy().argmax(1)).mean())


def flips_images(setting: str, agreement: float | None) -> bool:
    """Whether images are flipped at random under ``setting`` (``"on"``, ``"off"``, ``"auto"``: where the teacher keeps
    its class on at least :data:`FLIP_AGREEMENT` of them flipped); never for inputs that are not images
    (``agreement`` None)."""
    return agreement is not None and (setting == "on" or (setting == "auto" and agreement >= FLIP_AGREEMENT))


def _class_rows(y: np.ndarray, num_classes: int, per_class: bool) -> np.ndarray:
    """Averaging weights (C, B) of a replica's share: one row per class (one row for all when not per class)."""
    if per_class:
        w = np.zeros((num_classes, len(y)), np.float32)
        w[y, np.arange(len(y))] = 1.0
    else:
        w = np.ones((1, len(y)), np.float32)
    return w / np.maximum(w.sum(1, keepdims=True), 1.0)


def teacher_probe(teacher, objectives):
    """A function ``(u, x, **fields) -> Batch``: the teacher run once on ``x``, returning every activation the
    objectives read (:func:`~.objectives.reads`) besides its logits."""
    tf, k = _compat.tf(), _compat.keras()
    lm = teacher.logits_model
    outputs, inputs_of = reads(objectives)
    probe = k.Model(lm.inputs, [lm.get_layer(nm).output for nm in outputs]
                    + [lm.get_layer(nm).input for nm in inputs_of] + [lm.output])

    def observe(u, x, **fields) -> Batch:
        outs = probe(x, training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        acts = dict(zip(outputs, outs))
        acts[LOGITS], acts[INPUT] = outs[-1], x
        return Batch(tf=tf, u=u, x=x, logits=outs[-1], acts=acts, inputs_of=dict(zip(inputs_of, outs[len(outputs):-1])),
                     **fields)

    return observe


def _compile(teacher, plan: Plan, strategy, image: bool):
    """The compiled Adam step on a batch of unit-range inputs, run on every replica."""
    tf = _compat.tf()
    lo, hi = (float(v) for v in plan.input_range)
    span = hi - lo
    observe = teacher_probe(teacher, plan.objectives)
    jitter = image and plan.recipe.jitter
    flip = image and plan.recipe.flip != "off"  # the flip is traced; whether it happens is decided per step
    b1, b2 = _ADAM
    lr = plan.recipe.lr

    def loss_fn(u_, target_, w_, shift_):
        x_ = u_ if (lo, span) == (0.0, 1.0) else lo + span * u_  # no two no-op passes over a unit-range batch
        if jitter:
            x_ = tf.roll(x_, shift_[:2], axis=[1, 2])
        if flip:
            x_ = tf.cond(shift_[2] > 0, lambda: tf.reverse(x_, axis=[2]), lambda: x_)
        return total_loss(plan.objectives, observe(u_, x_, target=target_, class_rows=w_))

    def replica_step(u_, m_, v_, target_, w_, t, shift_):
        with tf.GradientTape() as tape:
            tape.watch(u_)
            loss = loss_fn(u_, target_, w_, shift_)
        return update(u_, m_, v_, tape.gradient(loss, u_), t)

    # Adam on the inputs themselves, written out: the state is per batch and per replica, which a Keras
    # optimizer (one set of slots per variable) does not fit. One XLA-compiled pass over the batch instead of
    # a dozen element-wise kernels: 1.3-2.0 ms of a 24-37 ms step on LeNet-5 and 2-7 ms on ResNet-8 at a batch
    # of 500 (``benchmarks/RESULTS.md``, "Thirteenth trial").
    @tf.function(jit_compile=True)
    def update(u_, m_, v_, g, t):
        m_ = b1 * m_ + (1 - b1) * g
        v_ = b2 * v_ + (1 - b2) * tf.square(g)
        step_ = lr * (m_ / (1 - tf.pow(b1, t))) / (tf.sqrt(v_ / (1 - tf.pow(b2, t))) + 1e-8)
        return tf.clip_by_value(u_ - step_, 0.0, 1.0), m_, v_

    @tf.function
    def step(u_, m_, v_, target_, w_, t, shift_):
        return strategy.run(replica_step, args=(u_, m_, v_, target_, w_, t, shift_))

    return step


def _shifts(rng, steps: int, jitter: int, flipping: bool) -> np.ndarray:
    """Per step: row and column offsets, flip or not. Drawn only when used, so recipes without them
    keep their random stream (and measured results)."""
    shifts = np.zeros((steps, 3), np.int32)
    if jitter:
        shifts[:, :2] = rng.integers(-jitter, jitter + 1, size=(steps, 2))
    if flipping:
        shifts[:, 2] = rng.integers(0, 2, size=steps)
    return shifts


# held-out inputs of the self-check taken from the last batch's surplus when it has this many (or half a batch); else
# one more batch is made
HELD_MIN = 64


def run(teacher, plan: Plan, config, *, seed: int = 0, strategy=None, on_progress=None,
        held_out: bool = False) -> SyntheticSet:
    """Optimise ``config.inputs`` class-balanced inputs in batches of ``config.batch_size`` (see :func:`synthesize`),
    and with ``held_out`` inputs held out of the set (:attr:`SyntheticSet.held`): those of the last batch that the
    set leaves out where they are at least :data:`HELD_MIN` (or half a batch), else one more batch."""
    tf = _compat.tf()
    shape = tuple(teacher.input_shape)
    image = is_image(shape)
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    batch_size, n = config.batch_size, config.inputs
    if batch_size % replicas:
        raise TinyDistillError(f"`batch_size` ({batch_size}) must be a multiple of the {replicas} replicas")
    per_replica = batch_size // replicas
    parts = [slice(r * per_replica, (r + 1) * per_replica) for r in range(replicas)]
    # the class weight is a variable, so the self-check can raise it without a new trace
    class_weight = tf.Variable(float(plan.classes.weight), trainable=False)
    plan.classes.weight = class_weight
    step = _compile(teacher, plan, strategy, image)
    final_logits = tf.function(lambda x_: teacher.logits_model(x_, training=False))
    jitter = jitter_pixels(shape, plan.recipe)
    flipping, agreement = image and plan.recipe.flip == "on", None
    lo, hi = (float(v) for v in plan.input_range)
    rng = np.random.default_rng(seed)
    C = teacher.num_classes

    def distribute(chunks):
        """One chunk per replica (the default strategy simply gets the single chunk)."""
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(chunks[ctx.replica_id_in_sync_group]))

    def optimise(init, target, y, shifts):
        """The batch after ``config.steps`` Adam steps from ``init``, in the teacher's range, and its logits."""
        u_t, m_t, v_t = (distribute([a[sl] for sl in parts]) for a in (init, np.zeros_like(init), np.zeros_like(init)))
        target_t = distribute([target[sl] for sl in parts])
        w_t = distribute([_class_rows(y[sl], C, plan.recipe.per_class) for sl in parts])
        for t in range(1, config.steps + 1):
            u_t, m_t, v_t = step(u_t, m_t, v_t, target_t, w_t, tf.constant(float(t)), tf.constant(shifts[t - 1]))
        u_final = np.concatenate([np.asarray(part) for part in strategy.experimental_local_results(u_t)])
        x = lo + (hi - lo) * u_final
        return x, final_logits(tf.constant(x)).numpy()

    def draw(bi):
        """Batch ``bi``'s start, targets, classes and per-step shifts."""
        y = rng.permutation((np.arange(batch_size) + bi * batch_size) % C).astype(np.int32)
        target, y = plan.classes.targets(rng, y)
        init = start_inputs(rng, plan.recipe.start, y, plan.start_moments, shape)
        return init, target, y, _shifts(rng, config.steps, jitter, flipping)

    xs, ys, ls, notes = [], [], [], []
    n_batches = math.ceil(n / batch_size)
    done = 0
    for bi in range(n_batches):
        init, target, y, shifts = draw(bi)
        x, logits = optimise(init, target, y, shifts)
        # self-check on the first batch: while the teacher does not recognise it, make it again with a doubled class
        # weight (at most ADAPTATIONS times)
        for _ in range(ADAPTATIONS if bi == 0 and float(class_weight.numpy()) > 0 else 0):
            note = raise_class_weight(class_weight, logits, y, "the first batch", "batch made again")
            if note is None:
                break
            notes.append(note)
            x, logits = optimise(init, target, y, shifts)
        take = min(batch_size, n - done)
        xs.append(x[:take])
        ys.append(y[:take])
        ls.append(logits[:take])
        if bi == 0 and image:
            agreement = flip_agreement(lambda v: final_logits(tf.constant(v)), x[:take], ls[0])
            flipping = flips_images(plan.recipe.flip, agreement)
        done += take
        if on_progress:
            on_progress(done, n)
    held = None
    if held_out and batch_size - take >= min(HELD_MIN, batch_size // 2):  # the last batch's inputs the set leaves out
        held = (x[take:].astype(np.float32), logits[take:].astype(np.float32))
    elif held_out:  # one more batch, drawn after the set, so the set is the same without it
        init, target, y, shifts = draw(n_batches)
        held = tuple(a.astype(np.float32) for a in optimise(init, target, y, shifts))
    return SyntheticSet(x=np.concatenate(xs).astype(np.float32), y=np.concatenate(ys).astype(np.int64),
                        logits=np.concatenate(ls).astype(np.float32), method=plan.method,
                        flipped=bool(flipping and (plan.recipe.flip == "on" or n_batches > 1)),
                        flip_agreement=agreement, notes=notes, held=held)
