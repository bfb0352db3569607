"""The interleaved engine: a generator and a pool that learn while the student learns (Fast-DFKD, CMI).

Every round the generator makes one class-balanced batch, tuned for a few steps on the
method's objectives (BatchNorm statistics as a momentum mix over batches, publisher
statistics, the class term) plus the disagreement with the student as it is now, masked to
inputs where both still agree; the batch goes into a pool, and the student takes a few
distillation steps on batches drawn from the whole pool (shifted and mixed, labelled by the
teacher on the fly). The generator keeps its weights from round to round, so each round
costs a few steps instead of a batch optimised from scratch, and the pool holds many more
distinct inputs than per-batch pixel optimisation can make in the same time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import _compat
from .._math import is_image
from ..errors import TinyDistillError
from ..teacher.stats import INPUT, LOGITS
from .generator import LATENT, build_generator
from .loop import FLIP_AGREEMENT, Plan, SyntheticSet
from .objectives import Batch, Disagreement, reads, total_loss

# the pool is kept as 8-bit levels of the unit range: a quarter of float32's memory, the input precision of
# an int8 model
_LEVELS = 255.0
KEEP = 10_000  # inputs of the pool returned as the synthetic set (calibration, self-check)
BATCH = 256  # inputs per generator batch (Fast-DFKD's)
WARMUP = 10  # rounds of generator alone before the student starts (at most a tenth of the rounds)


@dataclass(frozen=True)
class Schedule:
    """How the engine spends its time.

    Attributes:
        rounds: generator batches (the pool holds ``rounds * batch_size`` inputs at the end).
        batch_size: inputs per generator batch.
        gen_steps: generator steps per round.
        student_steps: distillation steps per round (after the warm-up).
        warmup: rounds at the start with the generator only.
        momentum: weight of the earlier batches in the BatchNorm statistics matched.
        adversarial: weight of the masked teacher-student disagreement.
        lr: generator learning rate (Adam, beta_1 0.5).
    """

    rounds: int
    batch_size: int = 256
    gen_steps: int = 2
    student_steps: int = 4
    warmup: int = 10
    momentum: float = 0.9
    adversarial: float = 1.0
    lr: float = 2e-3

    def validate(self) -> Schedule:
        if min(self.rounds, self.batch_size, self.gen_steps, self.student_steps) < 1 or self.warmup < 0:
            raise TinyDistillError("the engine's rounds, batch size, generator and student steps must be >= 1 and its "
                                   f"warm-up >= 0. Received: {self}")
        if self.warmup >= self.rounds:
            raise TinyDistillError(f"the engine's warm-up ({self.warmup} rounds) must be shorter than its {self.rounds} "
                                   "rounds")
        return self


def _gen_step(teacher, gen, objectives, opt, input_range, jitter: int):
    """The compiled generator step: the objectives' loss on a generated batch, one Adam step on the generator."""
    tf, k = _compat.tf(), _compat.keras()
    lm = teacher.logits_model
    lo, hi = (float(v) for v in input_range)
    outputs, inputs_of = reads(objectives)
    probe = k.Model(lm.inputs, [lm.get_layer(nm).output for nm in outputs]
                    + [lm.get_layer(nm).input for nm in inputs_of] + [lm.output])

    @tf.function
    def step(z, onehot, target, rows, memory, momentum, shift):
        with tf.GradientTape() as tape:
            u = gen([z, onehot], training=True)
            x = lo + (hi - lo) * u
            if jitter:
                x = tf.roll(x, shift[:2], axis=[1, 2])
                x = tf.cond(shift[2] > 0, lambda: tf.reverse(x, axis=[2]), lambda: x)
            outs = probe(x, training=False)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            acts = dict(zip(outputs, outs))
            acts[LOGITS], acts[INPUT] = outs[-1], x
            b = Batch(tf=tf, u=u, x=x, logits=outs[-1], acts=acts, inputs_of=dict(zip(inputs_of, outs[len(outputs):-1])),
                      target=target, class_rows=rows, memory=memory, momentum=momentum)
            loss = total_loss(objectives, b)
        grads = tape.gradient(loss, gen.trainable_variables)
        opt.apply_gradients(zip(grads, gen.trainable_variables))
        return u, {key: b.updates.get(key, value) for key, value in memory.items()}

    return step


def _memory(objectives) -> dict:
    out = {}
    for o in objectives:
        if hasattr(o, "memory"):
            out.update(o.memory())
    return out


class _Pool:
    """Every generated input, as 8-bit levels of the unit range, with its class."""

    def __init__(self, size: int, shape: tuple):
        self.u = np.zeros((size,) + tuple(shape), np.uint8)
        self.y = np.zeros(size, np.int64)
        self.filled = 0

    def add(self, u: np.ndarray, y: np.ndarray) -> None:
        n = len(u)
        self.u[self.filled:self.filled + n] = np.rint(np.clip(u, 0.0, 1.0) * _LEVELS).astype(np.uint8)
        self.y[self.filled:self.filled + n] = y
        self.filled += n

    def inputs(self, idx, input_range) -> np.ndarray:
        lo, hi = input_range
        return (lo + (hi - lo) / _LEVELS * self.u[idx].astype(np.float32)).astype(np.float32)


def run_engine(teacher, student, plan, schedule: Schedule, distill_config, *, seed: int = 0, strategy=None,
               on_progress=None):
    """Train ``student`` (in place) on a pool a generator keeps filling; returns the pool as a :class:`SyntheticSet`
    (up to :data:`KEEP` of its inputs, spread over the whole run) and the run's record."""
    from ..student.distillation import optimizer_for, train_step_for

    tf, k = _compat.tf(), _compat.keras()
    schedule = schedule.validate()
    shape = tuple(teacher.input_shape)
    image = is_image(shape)
    strategy = strategy or tf.distribute.get_strategy()
    C = teacher.num_classes
    rng = np.random.default_rng(seed)
    gen = build_generator(shape, C, channels=32, seed=seed)
    g_opt = k.optimizers.Adam(schedule.lr, beta_1=0.5)
    objectives = list(plan.objectives) + [Disagreement(student, schedule.adversarial, masked=True)]
    jitter = max(1, round(min(shape[0], shape[1]) / 16)) if image and plan.recipe.jitter else 0
    step = _gen_step(teacher, gen, objectives, g_opt, plan.input_range, jitter)
    memory = _memory(objectives)
    pool = _Pool(schedule.rounds * schedule.batch_size, shape)
    final_logits = tf.function(lambda x_: teacher.logits_model(x_, training=False))
    flipping, agreement = image and plan.recipe.flip == "on", None
    student_rounds = schedule.rounds - schedule.warmup
    train = None
    for r in range(schedule.rounds):
        y = rng.permutation(np.arange(schedule.batch_size) % C).astype(np.int32)
        target, y = plan.classes.targets(rng, y)
        rows = np.zeros((C, len(y)), np.float32)
        rows[y, np.arange(len(y))] = 1.0
        rows /= np.maximum(rows.sum(1, keepdims=True), 1.0)
        z = rng.normal(size=(len(y), LATENT)).astype(np.float32)
        onehot = np.eye(C, dtype=np.float32)[y]
        for s in range(schedule.gen_steps):
            shift = np.zeros(3, np.int32)
            if jitter:
                shift[:2] = rng.integers(-jitter, jitter + 1, size=2)
                shift[2] = rng.integers(0, 2) if flipping else 0
            momentum = tf.constant(schedule.momentum if r or s else 0.0)
            u, new_memory = step(tf.constant(z), tf.constant(onehot), tf.constant(target), tf.constant(rows), memory,
                                 momentum, tf.constant(shift))
        memory = new_memory  # one batch moves the memory once, as in Fast-DFKD
        pool.add(u.numpy(), y)
        if r == max(schedule.warmup - 1, 0) and image:  # the generator has learnt something by the end of warm-up
            x0 = pool.inputs(np.arange(pool.filled - len(y), pool.filled), plan.input_range)
            agreement = float((final_logits(x0).numpy().argmax(1) == final_logits(x0[:, :, ::-1]).numpy().argmax(1)).mean())
            if plan.recipe.flip == "auto":
                flipping = agreement >= FLIP_AGREEMENT
        if r >= schedule.warmup:
            if train is None:
                opt, shift_layer = optimizer_for(distill_config, strategy, student, student_rounds * schedule.student_steps,
                                                 teacher.input_shape, seed)
                train = train_step_for(teacher, student, pool.inputs(np.arange(pool.filled), plan.input_range),
                                       distill_config, strategy, opt, shift_layer)
            for _ in range(schedule.student_steps):
                idx = rng.integers(0, pool.filled, size=distill_config.batch_size)
                train(_distribute(tf, strategy, pool.inputs(idx, plan.input_range)))
        if on_progress:
            on_progress(r + 1, schedule.rounds)
    return _result(pool, plan, final_logits, flipping, agreement, rng)


def _distribute(tf, strategy, xb):
    per = len(xb) // strategy.num_replicas_in_sync
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(xb[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per]))


def _result(pool, plan, final_logits, flipping, agreement, rng) -> SyntheticSet:
    keep = np.unique(np.linspace(0, pool.filled - 1, min(KEEP, pool.filled)).round().astype(np.int64))
    x = pool.inputs(keep, plan.input_range)
    logits = np.concatenate([final_logits(x[i:i + 512]).numpy() for i in range(0, len(x), 512)])
    return SyntheticSet(x=x, y=pool.y[keep], logits=logits.astype(np.float32), method=plan.method,
                        flipped=bool(flipping), flip_agreement=agreement, generated=pool.filled)


def schedule_for(synthesis, distill) -> Schedule:
    """The engine's schedule from resolved configs (:func:`~tinydistill.config.resolve_counts`): ``inputs`` generated in
    batches of :data:`BATCH`, ``steps`` generator steps a batch, and as many student steps a round as make
    ``epochs`` passes over the final pool."""
    rounds = max(2, math.ceil(synthesis.inputs / BATCH))
    return Schedule(rounds=rounds, batch_size=BATCH, gen_steps=synthesis.steps,
                    student_steps=max(1, round(distill.epochs * BATCH / distill.batch_size)),
                    warmup=min(WARMUP, rounds // 10), adversarial=synthesis.disagreement)


def interleave(teacher, student, stats, synthesis, distill, *, input_range, seed: int = 0, strategy=None,
               on_progress=None):
    """Run method ``generator``: train ``student`` (in place) while a generator steered by the teacher's metadata
    fills its pool. ``synthesis`` and ``distill`` are resolved configs; returns the :class:`SyntheticSet`."""
    from ..student.distillation import recalibrate_batchnorm
    from .methods import RECIPES, objectives_for

    tf = _compat.tf()
    recipe = replace(RECIPES["generator"], flip=synthesis.flip)
    classes, objectives = objectives_for(tf, "generator", teacher, stats, recipe)
    plan = Plan(method="generator", classes=classes, objectives=objectives, recipe=recipe, start_moments=None,
                input_range=tuple(float(v) for v in input_range))
    syn = run_engine(teacher, student, plan, schedule_for(synthesis, distill), distill, seed=seed, strategy=strategy,
                     on_progress=on_progress)
    if distill.recalibrate:
        recalibrate_batchnorm(student, syn.x, seed=seed)
    return syn
