"""The interleaved engine: a generator and a pool that learn while the student learns (Fast-DFKD, CMI).

Every round the generator makes one class-balanced batch, tuned for a few steps on the method's
objectives (BatchNorm statistics, publisher statistics, the class term) plus the disagreement with
the student as it is now, masked to inputs where both still agree; the batch goes into a pool, and
the student takes a few distillation steps on batches drawn from the whole pool (shifted and mixed,
labelled by the teacher on the fly). The generator keeps its weights from round to round, so each
round costs a few steps instead of a batch optimised from scratch, and the pool holds many more
distinct inputs than per-batch pixel optimisation can make in the same time.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, replace

import numpy as np

from .. import _compat
from .._math import REFERENCE_VALUES, by_values, is_image
from ..config import ENGINE_EPOCHS, ENGINE_INPUTS, ENGINE_RENEW, ENGINE_REWARM, ENGINE_STEPS, FLIPS, resolve_distill
from ..errors import TinyDistillError
from .generator import LATENT, build_generator
from .loop import Plan, SyntheticSet, _class_rows, flip_agreement, flips_images, jitter_pixels, teacher_probe
from .objectives import Disagreement, FeatureNovelty, PairDiversity, total_loss
from .quality import ADAPTATIONS, raise_class_weight

# the pool is kept as 8-bit levels of the unit range: a quarter of float32's memory, the input precision of
# an int8 model
_LEVELS = 255.0
KEEP = 10_000  # inputs of the pool returned as the synthetic set (calibration, self-check), for inputs up to:
# REFERENCE_VALUES (CIFAR-10's input, from _math): larger inputs keep fewer (about as many values) and batch fewer
BATCH = 256  # inputs per generator batch (Fast-DFKD's) up to REFERENCE_VALUES values an input
# the least inputs a generator batch of a larger input holds (its BatchNorm moments are still taken over 32 x H x W
# positions). The generator step's memory grows with the values of a batch: 256 inputs of 96 x 96 x 3 took 4 GiB
MIN_BATCH = 32
# the teacher's activation values a batch through it may hold (a generator step and a student step keep them for
# the backward pass): CIFAR-10 ResNet-8's 256 inputs hold 68 M, a 96 x 96 x 3 MobileNet's 32 hold 26 M; 32 inputs
# of 224 x 224 x 3 through a MobileNetV2 (alpha 0.35) would hold 303 M, 3.2 GiB more at the first generator step.
# Past it batches hold fewer inputs (activation_batch), down to 8
BATCH_ACTIVATIONS = 80_000_000
# what a default run may spend a generated input on, in multiply-accumulates and activation values weighted as their
# time (:func:`input_cost`): CIFAR-10 ResNet-8 at any width costs 993 M (a student as wide as the teacher), so it and
# every teacher as cheap run the full count; dearer ones generate fewer inputs, so the run keeps to about the same
# time (a 96 x 96 x 3 MobileNet -> width 0.5: 0.52; a 224 x 224 x 3 MobileNetV2 at full width: 0.063)
INPUT_BUDGET = 1_000_000_000
RUN_BUDGET = ENGINE_INPUTS * INPUT_BUDGET  # a default run's whole budget, which the per-batch methods keep to (run_scale)
# what an activation value costs on a CPU, in multiply-accumulates of the same time: a forward + backward pass per
# input on 2 cores took 0.020 ms per million MACs plus 0.90 ms per million activation values (least squares over
# CIFAR-10 ResNet-8, a 96 x 96 MobileNet, a 224 x 224 MobileNetV2 and the wake-word DS-CNN: 0.45, 0.95, 9.5 and 0.05
# ms an input, each within 12 %; benchmarks/RESULTS.md). MobileNets move far more values per MAC than ResNets
ACTIVATION_MACS = 45
# the pool's rows are bounded to this many bytes (CIFAR-10 at the defaults: 400 MiB, under it; a 96 x 96 x 3 input
# would need 3.5 GiB at full length): past it, new inputs replace random earlier ones (_Pool)
POOL_BYTES = 512 * 2 ** 20
RECENT = 4  # generator batches the student's ``recent`` share is drawn from (Schedule.recent)
HELD_OUT = 4  # inputs of every batch kept out of the pool for the self-check (2,560 at the defaults)
WARMUP = 10  # rounds of generator alone before the student starts (at most a tenth of the rounds)


@dataclass(frozen=True)
class Schedule:
    """How the engine spends its time.

    Attributes:
        rounds: generator batches (the pool holds ``rounds * batch_size`` inputs at the end).
        batch_size: inputs per generator batch.
        gen_steps: generator steps per round.
        student_steps: distillation steps per round (after the warm-up).
        warmup: rounds at the start with the generator only (repeated when the self-check adapts).
        momentum: weight of the earlier batches in the BatchNorm statistics matched (Fast-DFKD's memory: 0.9 there).
            0, each batch matching them alone, measured better on CIFAR-10 ResNet-8 with and without a stats file
            (``benchmarks/RESULTS.md``, "Second sweep" and "Seventh sweep").
        adversarial: weight of the masked teacher-student disagreement.
        lr: generator learning rate (Adam, beta_1 0.5).
        diversity: weight of the mode-seeking term (:class:`~.objectives.PairDiversity`).
        channels: the generator's width (:func:`~.generator.build_generator`).
        student_flip: mirror the student's image batches left-right at random: ``"auto"`` where the teacher keeps
            its class on at least :data:`~.loop.FLIP_AGREEMENT` of a flipped warm-up batch, ``"on"``, ``"off"``
            (:func:`~.loop.flips_images`).
        meta: Fast-DFKD's meta generator: every batch starts from shared weights with a fresh optimiser, and the
            shared weights take one step of the batch's summed gradients (first-order MAML) at ``lr * gen_steps``;
            False: one generator whose weights and optimiser carry over from batch to batch (1.6 pp better from
            BatchNorm statistics on CIFAR-10 ResNet-8: ``benchmarks/RESULTS.md``, "Ninth sweep").
        recent: share of every student batch drawn from the newest :data:`RECENT` generator batches rather than
            from the whole pool (0: the whole pool, where an input made at round ``k`` of ``n`` is drawn about
            ``ln(n / k)`` times as often as one of the last round, so the batches made against the student of the
            moment are the least used; 0.5 lost 1.3 and 3.7 pp from BatchNorm statistics on CIFAR-10 ResNet-8:
            ``benchmarks/RESULTS.md``, "Tenth sweep").
        student_noise: Gaussian noise on the student's inputs (the teacher labels the noisy input), in units of the
            noise the teacher tolerates on the warm-up's last batch (:func:`~..student.distillation.recalibration_noise`;
            each input's std drawn uniformly up to it): texture the upsampled generator images lack. 0: none
            (4 lost 15.1 and 30.2 pp from BatchNorm statistics on CIFAR-10 ResNet-8: ``benchmarks/RESULTS.md``,
            "Twelfth sweep").
        renew: rounds a generator lives: every ``renew`` rounds of the student its weights are drawn afresh (another
            seed) and its optimiser's state cleared, so the pool gathers the modes of several generators rather than
            one generator's drift (NAYER's generator life; the last one lives on to the end when less than half a life
            would remain); 0: one generator for the whole run. From BatchNorm statistics on CIFAR-10 ResNet-8, 96
            gained 1.86 and 1.30 pp and doubled the pool's within-class diversity; 32 lost 4.8 and 5.7 pp, the teacher
            recognising fewer of the young generators' inputs; with a stats file 96 lost 0.52 and 0.38 pp
            (``benchmarks/RESULTS.md``, "Seventeenth sweep"). With the warm-up below, 64 and 144 lost to 96 on both
            seeds ("Nineteenth sweep").
        rewarm: generator-only rounds a renewed generator takes before its batches join the pool (its first batches
            are the ones the teacher recognises least; NAYER's warm-up loops); their batches are discarded. 0: none.
            16 at a life of 96: +0.62 and +0.30 pp, the teacher recognising 98.7 % of the pool instead of 96.3 %;
            at a life of 32: +4.7 and +3.1 pp, still 3.4 pp under 96 (``benchmarks/RESULTS.md``, "Eighteenth sweep").
        novelty: weight of :class:`~.objectives.FeatureNovelty`: each generated input pushed away from its nearest
            earlier one of its class in the teacher's feature space (CMI's contrast with the earlier batches). 0: off
            (from BatchNorm statistics on CIFAR-10 ResNet-8, 1 lost 1.60 and 1.18 pp, 4 lost 1.44 and tied:
            ``benchmarks/RESULTS.md``, "Nineteenth sweep").
        gen_noise: the same noise on the generator's images as the teacher sees them in the generator step (after
            the warm-up), so the generator is steered by what the teacher still sees under texture. 0: none (2 lost
            7.8 and 15.3 pp, same sweep).
    """

    rounds: int
    batch_size: int = BATCH
    gen_steps: int = 2
    student_steps: int = 4
    warmup: int = WARMUP
    momentum: float = 0.0
    adversarial: float = 1.0
    lr: float = 2e-3
    diversity: float = 0.0
    channels: int = 64  # 64 with the student's weight average: +5.8 / +3.1 pp over 32 without (RESULTS, "Fourth sweep")
    student_flip: str = "auto"
    meta: bool = False
    recent: float = 0.0
    student_noise: float = 0.0
    gen_noise: float = 0.0
    renew: int = 0
    rewarm: int = 0
    novelty: float = 0.0
    held_out: int = HELD_OUT

    def validate(self) -> Schedule:
        if min(self.rounds, self.batch_size, self.gen_steps, self.student_steps, self.warmup) < 1 or self.channels < 2:
            raise TinyDistillError("the engine's rounds, batch size, generator and student steps and warm-up rounds "
                                   f"must be >= 1, its generator channels >= 2. Received: {self}")
        if self.student_flip not in FLIPS:
            raise TinyDistillError(f"the engine's student_flip must be {', '.join(FLIPS)}. Received: {self.student_flip!r}")
        if self.renew < 0 or self.rewarm < 0:
            raise TinyDistillError("the engine's renew (rounds a generator lives) and rewarm (its generator-only rounds) "
                                   f"must be >= 0. Received: renew={self.renew!r}, rewarm={self.rewarm!r}")
        if not 1 <= self.held_out < self.batch_size:
            raise TinyDistillError(f"the engine's held-out inputs a batch must be in [1, {self.batch_size}). Received: "
                                   f"{self.held_out!r}")
        if self.novelty < 0:
            raise TinyDistillError(f"the engine's novelty weight must be >= 0. Received: {self.novelty!r}")
        if not 0.0 <= self.recent <= 1.0:
            raise TinyDistillError(f"the engine's recent share must be in [0, 1]. Received: {self.recent!r}")
        if self.warmup >= self.rounds:
            raise TinyDistillError(f"the engine's warm-up ({self.warmup} rounds) must be shorter than its {self.rounds} "
                                   "rounds")
        return self


def _gen_step(teacher, gen, objectives, opt, input_range, jitter: int, noise=None):
    """The compiled generator step: the objectives' loss on a generated batch, one Adam step on the generator
    (``noise``: a variable holding the std of Gaussian noise added to what the teacher sees, or None)."""
    tf = _compat.tf()
    lo, hi = (float(v) for v in input_range)
    observe = teacher_probe(teacher, objectives)

    @tf.function
    def step(z, onehot, target, rows, memory, momentum, shift):
        with tf.GradientTape() as tape:
            u = gen([z, onehot], training=True)
            x = lo + (hi - lo) * u
            if jitter:
                x = tf.roll(x, shift[:2], axis=[1, 2])
                x = tf.cond(shift[2] > 0, lambda: tf.reverse(x, axis=[2]), lambda: x)
            if noise is not None:
                x = tf.clip_by_value(x + noise * tf.random.normal(tf.shape(x)), lo, hi)
            b = observe(u, x, target=target, class_rows=rows, memory=memory, momentum=momentum)
            loss = total_loss(objectives, b)
        grads = tape.gradient(loss, gen.trainable_variables)
        opt.apply_gradients(zip(grads, gen.trainable_variables))
        return u, {key: b.updates.get(key, value) for key, value in memory.items()}, grads

    return step


def _clear(opt) -> None:
    """An optimiser's state back to its start: moments and step count zero."""
    tf = _compat.tf()
    for v in opt.variables:
        v.assign(tf.zeros_like(v))


class _Meta:
    """Fast-DFKD's first-order meta-learning of the generator's start: shared weights copied into the generator at the
    start of every batch, with the inner optimiser's state cleared, and moved after it by the sum of the batch's
    gradients (taken at the adapted weights)."""

    def __init__(self, gen, inner, lr: float):
        tf, k = _compat.tf(), _compat.keras()
        self.vars = gen.trainable_variables
        inner.build(self.vars)
        self.inner = inner
        self.weights = [tf.Variable(v, name=f"meta_{i}") for i, v in enumerate(self.vars)]
        self.opt = k.optimizers.Adam(lr, beta_1=0.5)
        self.opt.build(self.weights)

        @tf.function
        def begin():
            for v, w in zip(self.vars, self.weights):
                v.assign(w)
            _clear(self.inner)

        @tf.function
        def end(grads):
            self.opt.apply_gradients(zip(grads, self.weights))

        self.begin, self.end = begin, end


class _Pool:
    """Generated inputs, as 8-bit levels of the unit range, with their classes, in at most ``size`` rows: once full,
    every new input takes the row of an earlier one drawn at random, so the pool's memory is bounded and it keeps
    a sample of the whole run rather than its newest batches."""

    def __init__(self, size: int, shape: tuple, rng):
        self.u = np.zeros((size,) + tuple(shape), np.uint8)
        self.y = np.zeros(size, np.int64)
        self.filled = 0
        self.added = 0  # inputs put in, over the run (more than ``filled`` once rows are reused)
        self.recent = collections.deque(maxlen=RECENT)  # the rows of the last RECENT batches put in
        self.rng = rng

    @property
    def newest(self) -> np.ndarray:
        """The rows of the last inputs put in."""
        return self.recent[-1] if self.recent else np.zeros(0, np.int64)

    def add(self, u: np.ndarray, y: np.ndarray) -> None:
        n = len(u)
        free = min(n, len(self.y) - self.filled)
        rows = np.arange(self.filled, self.filled + free)
        if n > free:  # full: the rest take random earlier rows
            rows = np.concatenate([rows, self.rng.choice(self.filled, size=n - free, replace=False)])
        self.u[rows] = np.rint(np.clip(u, 0.0, 1.0) * _LEVELS).astype(np.uint8)
        self.y[rows] = y
        self.filled += free
        self.added += n
        self.recent.append(rows)

    def draw(self, size: int, recent: float) -> np.ndarray:
        """Rows for a student batch of ``size``: ``recent`` of them from the newest batches, the rest from the pool."""
        n = int(round(recent * size))
        idx = self.rng.integers(0, self.filled, size=size - n)
        if n:
            idx = np.concatenate([idx, self.rng.choice(np.concatenate(list(self.recent)), size=n)])
        return idx

    def inputs(self, idx, input_range) -> np.ndarray:
        lo, hi = input_range
        return (lo + (hi - lo) / _LEVELS * self.u[idx].astype(np.float32)).astype(np.float32)


class _Engine:
    """One run's state: the generator and its compiled step, the BatchNorm memory, the pool, the random stream."""

    def __init__(self, teacher, student, plan, schedule, seed):
        tf, k = _compat.tf(), _compat.keras()
        self.tf, self.plan, self.schedule, self.student = tf, plan, schedule, student
        self.shape = tuple(teacher.input_shape)
        self.C = teacher.num_classes
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.gen = build_generator(self.shape, self.C, channels=schedule.channels, seed=seed)
        # the class weight is a variable, so the self-check can raise it without a new trace
        self.class_weight = tf.Variable(float(plan.classes.weight), trainable=False)
        plan.classes.weight = self.class_weight
        objectives = list(plan.objectives) + [Disagreement(student, schedule.adversarial, masked=True)]
        if schedule.diversity:
            objectives.append(PairDiversity(schedule.diversity))
        if schedule.novelty:
            objectives.append(FeatureNovelty(tf, teacher, schedule.novelty))
        self.jitter = jitter_pixels(self.shape, plan.recipe)
        opt = self.gen_opt = k.optimizers.Adam(schedule.lr, beta_1=0.5)
        self.gen_noise = tf.Variable(0.0, trainable=False) if schedule.gen_noise else None
        self.step = _gen_step(teacher, self.gen, objectives, opt, plan.input_range, self.jitter, self.gen_noise)
        self.meta = _Meta(self.gen, opt, schedule.lr * schedule.gen_steps) if schedule.meta else None
        self.memory = {key: value for o in objectives for key, value in o.memory().items()}
        rows = (schedule.rounds + ADAPTATIONS * schedule.warmup) * (schedule.batch_size - schedule.held_out)
        self.pool = _Pool(max(schedule.batch_size, min(rows, POOL_BYTES // max(1, math.prod(self.shape)))), self.shape,
                          self.rng)
        self.logits = tf.function(lambda x_: teacher.logits_model(x_, training=False))
        self.flipping = is_image(self.shape) and plan.recipe.flip == "on"
        self.batches = 0
        self.held = []
        self.generators = 1

    def renew(self) -> None:
        """A new generator in place of the current one: weights drawn with another seed (the compiled step keeps
        the same variables), the optimiser's moments and step count cleared; then ``rewarm`` generator-only batches,
        discarded."""
        fresh = build_generator(self.shape, self.C, channels=self.schedule.channels, seed=self.seed + 7 * self.generators)
        self.gen.set_weights(fresh.get_weights())
        _clear(self.gen_opt)
        if self.meta:  # the meta start is the new generator too
            for w, v in zip(self.meta.weights, self.gen.trainable_variables):
                w.assign(v)
            _clear(self.meta.opt)
        self.generators += 1
        for _ in range(self.schedule.rewarm):
            self.batch(pool=False)

    def _targets(self):
        size = self.schedule.batch_size
        # with more classes than a batch holds, each batch takes the next ones in turn (else the first ``size`` only)
        offset = self.batches * size if self.C > size else 0
        if self.schedule.diversity:  # both halves made for the same classes: PairDiversity compares them pair by pair
            half = self.rng.permutation((np.arange(size // 2) + offset) % self.C)
            y = np.concatenate([half, half, half[:size % 2]]).astype(np.int32)
        else:
            y = self.rng.permutation((np.arange(size) + offset) % self.C).astype(np.int32)
        target, y = self.plan.classes.targets(self.rng, y)
        rows = _class_rows(y, self.C, self.plan.recipe.per_class)
        z = self.rng.normal(size=(len(y), LATENT)).astype(np.float32)
        return y, target, rows, z

    def batch(self, pool: bool = True) -> np.ndarray:
        """One generator batch, tuned for ``gen_steps`` steps, into the pool (``pool`` False: discarded); returns its
        classes."""
        tf = self.tf
        y, target, rows, z = self._targets()
        if self.meta:
            self.meta.begin()
        total = None
        for s in range(self.schedule.gen_steps):
            shift = np.zeros(3, np.int32)
            if self.jitter:
                shift[:2] = self.rng.integers(-self.jitter, self.jitter + 1, size=2)
                shift[2] = self.rng.integers(0, 2) if self.flipping else 0
            momentum = tf.constant(self.schedule.momentum if self.batches or s else 0.0)
            u, memory, grads = self.step(tf.constant(z), tf.constant(np.eye(self.C, dtype=np.float32)[y]),
                                         tf.constant(target), tf.constant(rows), self.memory, momentum, tf.constant(shift))
            if self.meta:
                total = grads if total is None else [a + b for a, b in zip(total, grads)]
        if self.meta:
            self.meta.end(total)
        self.memory = memory  # one batch moves the memory once, as in Fast-DFKD
        self.batches += 1
        if not pool:
            return y
        u = u.numpy()
        # never trained on: the self-check's held-out inputs (a copy: a view would keep the whole batch alive, 3 MiB a
        # round on CIFAR-10, 1.5 GiB over a run)
        held = self.schedule.held_out
        self.held.append(u[-held:].copy())
        self.pool.add(u[:-held], y[:-held])
        return y

    def last_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The newest batch in the teacher's range, its classes and the teacher's logits on it."""
        idx = self.pool.newest
        x = self.pool.inputs(idx, self.plan.input_range)
        return x, self.pool.y[idx], self.logits(x).numpy()

    def warm_up(self) -> list[str]:
        """Generator-only rounds; repeated with a doubled class weight while the teacher does not recognise the
        newest batch (self-check), at most :data:`ADAPTATIONS` times. Returns what was adapted."""
        notes = []
        for attempt in range(ADAPTATIONS + 1):
            for _ in range(self.schedule.warmup):
                self.batch()
            x, y, logits = self.last_batch()
            note = None if attempt == ADAPTATIONS else raise_class_weight(self.class_weight, logits, y,
                                                                           "a warm-up batch", "warm-up repeated")
            if note is None:
                break
            notes.append(note)
        self.flip_agreement = flip_agreement(self.logits, x, logits) if is_image(self.shape) else None
        self.flipping = flips_images(self.plan.recipe.flip, self.flip_agreement)
        return notes

    def held_out_agreement(self) -> float:
        """Student-teacher top-1 agreement on generated inputs the student never trained on: the last
        :data:`HELD_OUT` of every batch, kept out of the pool (the generator's newest batch would not do: the
        disagreement term makes it, by design, the inputs the student gets wrong)."""
        lo, hi = self.plan.input_range
        x = (lo + (hi - lo) * np.concatenate(self.held)).astype(np.float32)
        return student_agreement(self.student, x, _batched(self.logits, x))


def run_engine(teacher, student, plan, schedule: Schedule, distill_config, *, seed: int = 0, strategy=None,
               on_progress=None, notes=()):
    """Train ``student`` (in place) on a pool a generator keeps filling, put the moving average of its weights in
    place (``distill_config.ema``; None: :data:`~tinydistill.config.ENGINE_EMA`), then re-estimate its BatchNorm
    statistics (``distill_config.recalibrate``); returns the pool as a :class:`SyntheticSet` (up to :data:`KEEP` of its
    inputs, spread over the whole run, with the self-check's notes and held-out agreement)."""
    from ..student.distillation import (
        distribute_batch,
        feature_sample,
        identity_batchnorm,
        optimizer_for,
        recalibrate_batchnorm,
        recalibration_noise,
        train_step_for,
    )

    tf = _compat.tf()
    schedule = schedule.validate()
    distill_config = resolve_distill(distill_config, engine=True)
    strategy = strategy or tf.distribute.get_strategy()
    eng = _Engine(teacher, student, plan, schedule, seed)
    notes = list(notes) + eng.warm_up()
    if on_progress:
        on_progress(schedule.warmup, schedule.rounds)
    student_rounds = schedule.rounds - schedule.warmup
    opt, shift = optimizer_for(distill_config, strategy, student, student_rounds * schedule.student_steps,
                               teacher.input_shape, seed)
    eng.student_flip = flips_images(schedule.student_flip, eng.flip_agreement)
    noise = None
    if schedule.student_noise or schedule.gen_noise:
        tolerated = recalibration_noise(teacher, eng.last_batch()[0], seed=seed)
        notes.append(f"noise the teacher tolerates: std {tolerated:.4g}")
        if eng.gen_noise is not None:
            eng.gen_noise.assign(schedule.gen_noise * tolerated)
        if schedule.student_noise:
            noise = (schedule.student_noise * tolerated, *plan.input_range)
    # only the inputs that set the feature term's spreads, not the whole pool in float32 (1.1 GB at 96 x 96 x 3)
    first = eng.pool.inputs(np.arange(min(eng.pool.filled, feature_sample(eng.shape))), plan.input_range)
    identity_batchnorm(student, first, teacher, seed=seed)  # BatchNorm added to a student of a teacher without it
    train = train_step_for(teacher, student, first,
                           distill_config, strategy, opt, shift, flip=eng.student_flip, noise=noise)
    for r in range(student_rounds):
        # a new generator every ``renew`` rounds, unless the run ends within half a life: the last one lives longer
        if schedule.renew and r and r % schedule.renew == 0 and student_rounds - r >= schedule.renew // 2:
            eng.renew()
        eng.batch()
        for _ in range(schedule.student_steps):
            idx = eng.pool.draw(distill_config.batch_size, schedule.recent)
            train(distribute_batch(strategy, eng.pool.inputs(idx, plan.input_range)))
        if on_progress:
            on_progress(schedule.warmup + r + 1, schedule.rounds)
    if distill_config.ema:
        opt.finalize_variable_values(student.trainable_variables)
    syn = _result(eng, notes)
    if distill_config.recalibrate:
        # the self-check measures how well the student learnt the teacher on generated inputs: with its (averaged)
        # weights and BatchNorm statistics of the generated inputs themselves (the moving averages followed the
        # last weights)
        recalibrate_batchnorm(student, syn.x, seed=seed)
    syn.student_agreement = eng.held_out_agreement()
    if distill_config.recalibrate and is_image(eng.shape):
        # upsampled generator images lack fine texture: the student handed on has its statistics re-estimated on
        # them plus the noise the teacher tolerates (every layer's statistics are set anew, in order), and on their
        # mirror images where the student learnt from those too (+0.06 to +1.14 pp on six CIFAR-10 students:
        # benchmarks/RESULTS.md, "Fifteenth sweep")
        recalibrate_batchnorm(student, syn.x, noise=recalibration_noise(teacher, syn.x, seed=seed),
                              mirror=bool(eng.student_flip), seed=seed)
    return syn


def _batched(fn, x: np.ndarray, size: int = 512) -> np.ndarray:
    """``fn`` applied to ``x`` a slice at a time (512 inputs of CIFAR-10's size, fewer of larger ones), as one array."""
    size = by_values(x.shape[1:], size, 32)
    return np.concatenate([fn(x[i:i + size]).numpy() for i in range(0, len(x), size)])


def student_agreement(student, x: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Top-1 agreement of ``student`` with the teacher on ``x`` (``teacher_logits``: the teacher's on it): the
    self-check's figure on held-out synthetic inputs, the engine's and the per-batch methods'."""
    return float((_batched(lambda v: student(v, training=False), x).argmax(1) == teacher_logits.argmax(1)).mean())


def _result(eng, notes) -> SyntheticSet:
    """Up to :data:`KEEP` pool inputs spread over the run, labelled by the teacher, with the self-check's figures."""
    pool = eng.pool
    size = max(eng.schedule.batch_size, min(KEEP, KEEP * REFERENCE_VALUES // max(1, math.prod(eng.shape))))
    keep = np.unique(np.linspace(0, pool.filled - 1, min(size, pool.filled)).round().astype(np.int64))
    x = pool.inputs(keep, eng.plan.input_range)
    return SyntheticSet(x=x, y=pool.y[keep], logits=_batched(eng.logits, x).astype(np.float32), method=eng.plan.method,
                        flipped=bool(eng.flipping), flip_agreement=eng.flip_agreement,
                        generated=eng.batches * eng.schedule.batch_size, notes=notes, mirrored=eng.student_flip,
                        generators=eng.generators)


def engine_batch(shape, activations: int | None = None) -> int:
    """Inputs per generator batch: :data:`BATCH` for inputs of up to :data:`REFERENCE_VALUES` values, else about as
    many values a batch (a multiple of 8), at least :data:`MIN_BATCH`; at most :func:`activation_batch` of a teacher
    with ``activations`` values an input."""
    batch = by_values(shape, BATCH, MIN_BATCH)
    return batch if activations is None else min(batch, activation_batch(activations))


def activation_values(model) -> int:
    """The values of every layer's output for one input (:func:`~tinydistill.teacher.profile.profile`)."""
    from ..teacher.profile import profile

    return int(sum(math.prod(row.output_shape) for row in profile(model)))


def activation_batch(activations: int, budget: int | None = None) -> int:
    """The most inputs a batch through a model with ``activations`` values an input may hold: as many as keep it
    under ``budget`` (default :data:`BATCH_ACTIVATIONS`; a multiple of 8), at least 8."""
    return max(8, 8 * ((budget or BATCH_ACTIVATIONS) // max(1, activations) // 8))


def bounded_batch(what: str, batch_size: int, activations: int, budget: int | None = None) -> tuple[int, list[str]]:
    """``batch_size`` cut to :func:`activation_batch`, and a note (in a list, empty when it fits) that says so."""
    cap, budget = activation_batch(activations, budget), budget or BATCH_ACTIVATIONS
    if batch_size <= cap:
        return batch_size, []
    return cap, [f"{what} batches of {cap} instead of {batch_size}: one input holds {activations / 1e6:,.1f} M "
                 f"activation values in the teacher, and a batch at most {budget / 1e6:,.0f} M"]


def pass_costs(teacher, width: float) -> tuple[int, int]:
    """What one input's forward pass costs the teacher and a student of ``width``, in multiply-accumulates: a model's
    MACs plus :data:`ACTIVATION_MACS` per activation value. The student's MACs are taken as the teacher's x width^2
    (its layers are ``width`` times as wide on both sides), its activations x width."""
    from ..teacher.profile import total_macs

    macs, acts = total_macs(teacher.model), activation_values(teacher.logits_model)
    return (int(macs + ACTIVATION_MACS * acts), int(macs * width ** 2 + ACTIVATION_MACS * acts * width))


def input_cost(teacher, width: float, *, channels: int = Schedule.channels, gen_steps: int = ENGINE_STEPS,
               epochs: int = ENGINE_EPOCHS) -> int:
    """What a default run spends on one generated input, in multiply-accumulates: ``gen_steps`` generator steps (the
    generator's forward and backward pass, 3 G; the teacher's and the student's forward pass and input gradient,
    2 T + 2 S) and ``epochs`` student passes over it (the teacher's forward pass, the student's forward and backward,
    T + 3 S); T and S from :func:`pass_costs`."""
    from ..teacher.profile import total_macs

    gen = build_generator(tuple(teacher.input_shape), teacher.num_classes, channels=channels)
    g = total_macs(gen) + ACTIVATION_MACS * activation_values(gen)
    t, s = pass_costs(teacher, width)
    return int(gen_steps * (3 * g + 2 * t + 2 * s) + epochs * (t + 3 * s))


def input_scale(cost: int) -> float:
    """The share of :data:`~tinydistill.config.ENGINE_INPUTS` a default run generates where an input costs ``cost``
    (:func:`input_cost`): 1 up to :data:`INPUT_BUDGET`, else the budget over the cost (a run of about the same compute)."""
    return min(1.0, INPUT_BUDGET / max(1, cost))


# a per-batch synthesis step against a bare teacher forward + backward on the same batch: 1.02-1.62x in the speed
# suite (prior, top-layer, layer-pairs, bn, all-layers; benchmarks/RESULTS.md), the objectives' moments and the
# inputs' Adam update on top; the cost model takes the dearest, so a teacher is not under-counted
PIXEL_STEP_COST = 1.6


def pixel_input_cost(teacher, width: float, *, steps: int, epochs: int) -> int:
    """What a per-batch run spends on one synthetic input, in multiply-accumulates: ``steps`` pixel steps (the
    teacher's forward pass and input gradient, 2 T, times :data:`PIXEL_STEP_COST`) and ``epochs`` distillation passes
    over it (T + 3 S, as in :func:`input_cost`)."""
    t, s = pass_costs(teacher, width)
    return int(steps * 2 * t * PIXEL_STEP_COST + epochs * (t + 3 * s))


def run_scale(cost: int, inputs: int) -> float:
    """The share of ``inputs`` a default per-batch run synthesises where an input costs ``cost``
    (:func:`pixel_input_cost`): 1 while the run costs at most the engine's whole budget (:data:`RUN_BUDGET`:
    :data:`INPUT_BUDGET` for each of :data:`~tinydistill.config.ENGINE_INPUTS`), else that budget over the run's cost,
    so any method's default run keeps to about the same time."""
    return min(1.0, RUN_BUDGET / max(1, cost * inputs))


def schedule_for(synthesis, distill, *, stats: bool = False, shape=None, activations: int | None = None) -> Schedule:
    """The engine's schedule from resolved configs (:func:`~tinydistill.config.resolve_counts`): ``inputs`` generated in
    batches of :func:`engine_batch` for an input of ``shape`` (None: :data:`BATCH`), ``steps`` generator steps a batch,
    and as many student steps a round as make ``epochs`` passes over the final pool; a new generator every
    :func:`renew_for` rounds of :data:`BATCH` (``stats``: a stats file steers it), each first warmed up for
    :data:`~tinydistill.config.ENGINE_REWARM` generator-only rounds. With smaller batches the counts measured in
    rounds (warm-up, a generator's life and warm-up, held-out inputs a batch) keep the same number of inputs."""
    batch = BATCH if shape is None else engine_batch(shape, activations)
    ratio = BATCH / batch
    rounds = max(2, math.ceil(synthesis.inputs / batch))
    return Schedule(rounds=rounds, batch_size=batch, gen_steps=synthesis.steps,
                    student_steps=max(1, round(distill.epochs * batch / distill.batch_size)),
                    warmup=max(1, min(round(WARMUP * ratio), rounds // 10)), adversarial=synthesis.disagreement,
                    renew=round(renew_for(stats) * ratio), rewarm=round(ENGINE_REWARM * ratio),
                    held_out=max(1, round(HELD_OUT / ratio)))


def renew_for(stats: bool) -> int:
    """The rounds a generator lives by default: :data:`~tinydistill.config.ENGINE_RENEW` from BatchNorm statistics
    alone, the whole run (0) with a stats file, whose per-class moments already spread the pool ("Seventeenth sweep")."""
    return 0 if stats else ENGINE_RENEW


def plan_for(teacher, stats, input_range, recipe=None) -> Plan:
    """Method ``generator``'s plan: its objectives on every signal the teacher has, under ``recipe`` (default: its own)."""
    from .methods import RECIPES, objectives_for

    recipe = recipe or RECIPES["generator"]
    classes, objectives = objectives_for(_compat.tf(), "generator", teacher, stats, recipe)
    return Plan(method="generator", classes=classes, objectives=objectives, recipe=recipe, start_moments=None,
                input_range=tuple(float(v) for v in input_range))


def interleave(teacher, student, stats, synthesis, distill, *, input_range, seed: int = 0, strategy=None,
               on_progress=None, notes=()):
    """Run method ``generator``: train ``student`` (in place) while a generator steered by the teacher's metadata
    fills its pool. ``synthesis`` and ``distill`` are resolved configs; returns the :class:`SyntheticSet`."""
    from .methods import RECIPES

    plan = plan_for(teacher, stats, input_range, replace(RECIPES["generator"], flip=synthesis.flip))
    distill = resolve_distill(distill, engine=True)
    activations = activation_values(teacher.logits_model)
    # the student's batches too: its step keeps the teacher's and its own activations
    batch, cut = bounded_batch("student", distill.batch_size, activations)
    notes, distill = [*notes, *cut], replace(distill, batch_size=batch)
    schedule = schedule_for(synthesis, distill, stats=stats is not None, shape=tuple(teacher.input_shape),
                            activations=activations)
    return run_engine(teacher, student, plan, schedule, distill, seed=seed, strategy=strategy, on_progress=on_progress,
                      notes=notes)
