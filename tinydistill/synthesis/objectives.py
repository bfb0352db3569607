"""Synthesis objectives: one per source of knowledge about the training data, all with one small interface.

An objective says which teacher activations it reads (``outputs``: layer outputs,
``inputs_of``: layer inputs) and turns them into loss terms for one batch (:meth:`Objective.terms`).
Its ``group`` says where the loop adds them: ``"class"`` terms first, then the sum of every
``"metadata"`` term, then each ``"prior"`` term. The loop (:mod:`.loop`) knows no objective by
name; a method (:mod:`.methods`) is a weighted list of them.

| objective | source | what it matches |
| --- | --- | --- |
| :class:`ClassTerm` | the class each input is made for | cross-entropy towards a one-hot or Dirichlet target |
| :class:`MatchedMoments` | a publisher's stats file | per-class moments of layers, of grid regions, of layer-pair spectra |
| :class:`BatchNormStats` | the teacher's BatchNorm layers | each BN input's mean and std (and per-class std) vs. running stats |
| :class:`Disagreement` | a partly trained student | the teacher-student Jensen-Shannon divergence (maximised) |
| :class:`FeatureNovelty` | earlier generated inputs | similarity to the nearest of the same class, in the teacher's features |
| :class:`TotalVariation` | image inputs | smoothness of neighbouring pixels |
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._math import floor_spread, pooled_moments
from ..errors import TinyDistillError
from ..teacher.stats import INPUT, LOGITS
from .kernels import batch_moments, region_channels, sample_moments, total_variation

DIRICHLET_TEMPERATURE = 20.0
DIRICHLET_BETAS = (1.0, 0.1)  # ZSKD's two concentration scales, alternating: spread and peaked targets


@dataclass
class Batch:
    """What the objectives see at one optimisation step (all tensors of one replica's share).

    Attributes:
        tf: the TensorFlow module.
        u: the optimised inputs in unit range (before jitter and flips).
        x: what the teacher saw (the teacher's input range, shifted and flipped).
        logits: the teacher's logits.
        acts: layer outputs by name, plus the logits (``LOGITS``) and ``x`` (``INPUT``).
        inputs_of: layer inputs by name.
        target: per-input class targets (rows summing to 1).
        class_rows: per-class averaging weights (C, B): row c averages the inputs made for class c
            (one row averaging all inputs when moments are matched over all classes together).
        memory: statistics of earlier batches by key (None: each batch stands alone); an objective
            that keeps them mixes them with this batch's at ``momentum`` and puts the mix, without
            gradient, in ``updates`` for the next batch.
    """

    tf: object
    u: object
    x: object
    logits: object
    acts: dict
    inputs_of: dict
    target: object
    class_rows: object
    memory: dict | None = None
    momentum: object = 0.0
    updates: dict = field(default_factory=dict)


class Objective:
    """One source of knowledge about the data. Subclasses set what they read and return loss terms."""

    group = "metadata"
    outputs: tuple = ()
    inputs_of: tuple = ()

    def terms(self, b: Batch) -> list:  # pragma: no cover - interface
        raise NotImplementedError

    def memory(self) -> dict:
        """Statistics this objective keeps across batches (see :attr:`Batch.memory`), at their starting values."""
        return {}


# ---------------------------------------------------------------- class targets

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
    beta = np.where(np.arange(len(y)) % 2 == 0, *DIRICHLET_BETAS)[:, None]
    return np.stack([rng.dirichlet(a) for a in np.maximum(beta * similarity[y], 1e-3)]).astype(np.float32)


class ClassTerm(Objective):
    """Cross-entropy of the teacher's logits (at ``temperature``) towards each input's class target.

    Targets are one-hot, or ZSKD's Dirichlet draws (``similarity`` given): inputs then spread
    between similar classes. Weight 0 keeps the term in the graph at no effect (moments matched
    over all classes together, Lopes et al.'s metadata without the labels).
    """

    group = "class"

    def __init__(self, weight: float, num_classes: int, similarity: np.ndarray | None = None):
        self.weight = weight
        self.num_classes = num_classes
        self.similarity = similarity
        self.temperature = DIRICHLET_TEMPERATURE if similarity is not None else 1.0

    def targets(self, rng, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(targets, classes) for a batch made for classes ``y`` (a Dirichlet target's class is its top one)."""
        if self.similarity is None:
            return np.eye(self.num_classes, dtype=np.float32)[y], y
        target = dirichlet_targets(rng, y, self.similarity)
        return target, target.argmax(1).astype(np.int32)

    def terms(self, b: Batch) -> list:
        tf = b.tf
        return [self.weight * tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(b.target, b.logits / self.temperature))]


def spread(tf, mean, second):
    """Std from first and second moments (per class: rows of ``class_rows`` times per-sample moments)."""
    return tf.sqrt(tf.maximum(second - tf.square(mean), 0.0) + 1e-8)


def present_classes(b: Batch):
    """(C, 1): 1 for the classes that have inputs in this batch (the rows of ``b.class_rows`` that average any)."""
    return b.tf.cast(b.tf.reduce_sum(b.class_rows, axis=1) > 0, b.tf.float32)[:, None]


# ---------------------------------------------------------------- publisher statistics

@dataclass
class Matched:
    """One matched statistic of a stats file: target mean and std per column, and the spread they are measured in.

    Attributes:
        kind: ``"channel"`` (a layer's channels), ``"region"`` (its channels per grid region) or
            ``"pair"`` (spectral coefficients of two adjacent layers).
        key: the layer name, or ``(source, target)`` for a pair.
        mean, std: targets, (classes or 1, columns).
        scale: each column's spread over all classes (columns,).
        grid: the region grid (rows, columns) of a ``"region"`` statistic.
        projection, offset: a pair's spectral basis over both layers' channels, and its offset.
    """

    kind: str
    key: object
    mean: np.ndarray
    std: np.ndarray
    scale: np.ndarray
    grid: tuple | None = None
    projection: np.ndarray | None = None
    offset: np.ndarray | None = None


def layer_moments(stats, names, per_class: bool) -> list[Matched]:
    """Channel moments of the named layers (Lopes et al.'s all-layers / top-layer)."""
    out = []
    for n in names:
        gmean, gstd = stats.global_moments(n)
        mean, std = (stats.mean[n], stats.std[n]) if per_class else (gmean[None], gstd[None])
        out.append(Matched("channel", n, mean.astype(np.float32), std.astype(np.float32),
                           floor_spread(gstd).astype(np.float32)))
    return out


def region_moments(stats, channels: list[Matched], per_class: bool) -> list[Matched]:
    """Channel moments per grid region of every layer in ``channels`` the stats file has regions for."""
    out = []
    for c in channels:
        if c.key not in stats.region_mean:
            continue
        rm, rs = stats.region_mean[c.key], stats.region_std[c.key]
        if not per_class:
            rm, rs = (m[None] for m in pooled_moments(rm, rs, stats.counts))
        k, gh, gw, _ = rm.shape
        out.append(Matched("region", c.key, rm.reshape(k, -1).astype(np.float32), rs.reshape(k, -1).astype(np.float32),
                           np.tile(c.scale, gh * gw), grid=(gh, gw)))
    return out


def pair_spectra(stats, per_class: bool) -> list[Matched]:
    """Moments of the low-frequency spectral coefficients of every recorded layer pair (Lopes et al.'s layer-pairs)."""
    out = []
    for p in stats.pairs:
        gmean, gstd = pooled_moments(p.mean, p.std, stats.counts)
        mean, std = (p.mean, p.std) if per_class else (gmean[None], gstd[None])
        out.append(Matched("pair", (p.source, p.target), mean.astype(np.float32), std.astype(np.float32),
                           floor_spread(gstd).astype(np.float32), projection=p.projection, offset=p.offset))
    return out


class MatchedMoments(Objective):
    """Per-class moments of a stats file's statistics, each column in units of its recorded spread.

    Every statistic sits side by side in one set of columns: one matmul turns per-sample moments
    into per-class ones and one loss covers all layers, since on a small teacher the per-op
    overhead of many small terms costs as much as the teacher itself. Each statistic counts as
    the mean of its columns; classes absent from a batch are left out.
    """

    def __init__(self, tf, matched: list[Matched]):
        self.matched = matched
        keys = {m.key for m in matched if m.kind != "pair"} | {n for m in matched if m.kind == "pair" for n in m.key}
        self.layers = sorted(keys)
        self.outputs = tuple(self.layers)
        self.grids = {m.key: m.grid for m in matched if m.kind == "region"}
        self.spectra = {m.key: (tf.constant(m.projection), tf.constant(m.offset)) for m in matched if m.kind == "pair"}
        self.target_mean = tf.constant(np.concatenate([m.mean for m in matched], axis=1))
        self.target_std = tf.constant(np.concatenate([m.std for m in matched], axis=1))
        self.target_scale = tf.constant(np.concatenate([m.scale for m in matched]))
        self.column_weight = tf.constant(np.concatenate([np.full(m.mean.shape[-1], 1.0 / m.mean.shape[-1], np.float32)
                                                         for m in matched]))

    def _columns(self, b: Batch) -> dict:
        """Per-sample (first, second) moment columns by key: each layer once (a region map as its regions), then pairs."""
        tf, acts = b.tf, b.acts
        sample = {nm: sample_moments(tf, acts[nm], self.grids.get(nm)) for nm in self.layers}
        columns = {}
        for m in self.matched:
            if m.kind == "pair":
                proj, off = self.spectra[m.key]
                c = tf.matmul(tf.concat([self._channels(b, nm, sample[nm][0]) for nm in m.key], axis=1), proj) - off
                columns[m.key] = (c, tf.square(c))
            else:
                columns.setdefault(m.key, sample[m.key])
        return columns

    def _channels(self, b: Batch, nm, r):
        """Channel moments of a layer from its per-sample or per-class columns (a region map's: their mean)."""
        return region_channels(b.tf, r, b.acts[nm].shape[-1]) if nm in self.grids else r

    def terms(self, b: Batch) -> list:
        tf = b.tf
        present = present_classes(b)
        columns = self._columns(b)
        sizes = [first.shape[-1] for first, _ in columns.values()]

        def per_class(cols):  # per-sample columns (B, k) -> per-class rows (C, k), by key
            return dict(zip(columns, tf.split(tf.matmul(b.class_rows, tf.concat(cols, axis=1)), sizes, axis=1)))

        class1 = per_class([first for first, _ in columns.values()])
        class2 = per_class([second for _, second in columns.values()])
        m1, m2 = [], []
        for m in self.matched:
            first, second = class1[m.key], class2[m.key]
            if m.kind == "channel":
                first, second = self._channels(b, m.key, first), self._channels(b, m.key, second)
            m1.append(first)
            m2.append(second)
        mean = tf.concat(m1, axis=1)
        std = spread(tf, mean, tf.concat(m2, axis=1))
        d = (tf.square((mean - self.target_mean) / self.target_scale)
             + tf.square((std - self.target_std) / self.target_scale)) * self.column_weight
        return [tf.reduce_sum(d * present) / tf.reduce_sum(present)]


# ---------------------------------------------------------------- metadata inside the teacher, the student, priors

WITHIN_TARGETS = ("running", "residual")  # what each class's spread is matched to (BatchNormStats.within_target)


class BatchNormStats(Objective):
    """DeepInversion / ZeroQ: each BatchNorm input's batch mean and std against the layer's running statistics.

    With a batch ``memory`` (the interleaved engine), the statistics matched are Fast-DFKD's
    momentum mix of this batch's and the earlier batches' (``b.momentum`` on the earlier ones),
    so a single batch need not hold the whole distribution: batches may differ from each other.
    ``within`` > 0 adds, per layer, each class's own std of the BN input against the running std (every
    class must vary as much as the data does overall: the per-class moments a stats file would give,
    approximated by the pooled ones), against a generator that answers a class with one image.
    ``within_target`` ``"residual"``: each class's spread against what the running variance leaves once the batch's
    classes differ (running variance minus the variance of the class means, held fixed in the step), so the term
    and the class term do not pull against each other; ``"running"``: against the running std itself.
    """

    def __init__(self, tf, teacher, weight: float = 1.0, within: float = 0.0, within_target: str = "running"):
        self.weight = weight
        self.within = within
        if within_target not in WITHIN_TARGETS:
            raise TinyDistillError(f"the per-class spread's target must be {' or '.join(WITHIN_TARGETS)}. "
                                   f"Received: {within_target!r}")
        self.within_target = within_target
        self.inputs_of = tuple(teacher.bn_layers)
        self.targets = []
        for nm in self.inputs_of:
            bn = teacher.logits_model.get_layer(nm)
            std = np.sqrt(bn.moving_variance.numpy() + bn.epsilon).astype(np.float32)
            self.targets.append((tf.constant(bn.moving_mean.numpy().astype(np.float32)), tf.constant(std)))

    def memory(self) -> dict:
        """The starting memory: the running statistics themselves (used at momentum 0 by the first batch)."""
        return {f"bn:{nm}": (mt, st) for nm, (mt, st) in zip(self.inputs_of, self.targets)}

    def terms(self, b: Batch) -> list:
        tf, out = b.tf, []
        for nm, (mt, st) in zip(self.inputs_of, self.targets):
            mean, std = batch_moments(tf, b.inputs_of[nm])
            if b.memory is not None:
                old_mean, old_std = b.memory[f"bn:{nm}"]
                mean = b.momentum * old_mean + (1.0 - b.momentum) * mean
                std = b.momentum * old_std + (1.0 - b.momentum) * std
                b.updates[f"bn:{nm}"] = (tf.stop_gradient(mean), tf.stop_gradient(std))
            out.append(self.weight * tf.reduce_mean(tf.square((mean - mt) / st) + tf.square((std - st) / st)))
            if self.within:
                out.append(self.within * self._within(tf, b, b.inputs_of[nm], st, self.within_target == "residual"))
        return out

    @staticmethod
    def _within(tf, b: Batch, a, st, residual: bool = False):
        """Each class's own spread against the layer's running std (``residual``: against the running variance less
        the variance of the batch's class means): the inputs made for one class must vary as much as the layer's
        inputs do overall (classes absent from the batch are left out)."""
        first, second = sample_moments(tf, a)
        means = tf.matmul(b.class_rows, first)
        std = spread(tf, means, tf.matmul(b.class_rows, second))
        present = present_classes(b)
        n = tf.reduce_sum(present)
        target = st
        if residual:
            means = tf.stop_gradient(means)
            centre = tf.reduce_sum(present * means, axis=0) / n
            between = tf.reduce_sum(present * tf.square(means - centre), axis=0) / n
            target = tf.sqrt(tf.maximum(tf.square(st) - between, 0.0) + 1e-8)
        return tf.reduce_sum(present * tf.square((std - target) / st)) / (n * st.shape[0])


class Disagreement(Objective):
    """DeepInversion's adaptive competition: inputs pushed to where a student and the teacher disagree.

    The Jensen-Shannon divergence of their output distributions, maximised with ``weight``.
    ``masked`` (Fast-DFKD): only on inputs where both still agree on the top class, so inputs are
    pushed to the boundary the student has not learnt, not past it into the teacher's other classes.
    """

    def __init__(self, student, weight: float, masked: bool = False):
        self.student = student
        self.weight = weight
        self.masked = masked

    def terms(self, b: Batch) -> list:
        tf = b.tf
        s_logits = self.student(b.x, training=False)
        pt, ps = tf.nn.softmax(b.logits), tf.nn.softmax(s_logits)
        pm = 0.5 * (pt + ps)

        def kl(p, q):
            return tf.reduce_sum(p * (tf.math.log(p + 1e-8) - tf.math.log(q + 1e-8)), axis=-1)

        js = 0.5 * kl(pt, pm) + 0.5 * kl(ps, pm)
        if self.masked:
            js *= tf.cast(tf.equal(tf.argmax(b.logits, -1), tf.argmax(s_logits, -1)), tf.float32)
        return [-self.weight * tf.reduce_mean(js)]


class TotalVariation(Objective):
    """Smoothness prior on image inputs: mean absolute difference of neighbouring unit-range pixels, weighted."""

    group = "prior"

    def __init__(self, weight: float):
        self.weight = weight

    def terms(self, b: Batch) -> list:
        return [self.weight * total_variation(b.tf, b.u)]


class PairDiversity(Objective):
    """Mode seeking (Mao et al. 2019) for a generator: the two halves of a batch are made for the same classes
    from different noise, and their mean absolute pixel difference (unit range) is maximised with ``weight``, so
    the generator cannot answer every noise vector of a class with one image. BatchNorm statistics are
    pooled over classes and do not forbid that collapse; per-class stats moments do."""

    group = "prior"

    def __init__(self, weight: float):
        self.weight = weight

    def terms(self, b: Batch) -> list:
        tf = b.tf
        half = tf.shape(b.u)[0] // 2
        return [-self.weight * tf.reduce_mean(tf.abs(b.u[:half] - b.u[half:2 * half]))]


class FeatureNovelty(Objective):
    """A generator's inputs kept away from the ones it made before, in the teacher's feature space (CMI's idea, Fang
    et al. 2021, without its learnt projection head): each input's similarity to its nearest earlier input of the
    same class is minimised with ``weight``.

    The features are the input of the teacher's last layer (what its classifier reads), unit-normalised. The
    earlier inputs are a first-in-first-out bank of the last ``bank`` inputs' features and classes, kept in the
    engine's batch memory (:attr:`Batch.memory`); the other inputs of the batch count too. The nearest is a soft
    maximum (at ``temperature``) over the same-class rows, so the gradient reaches the few nearest, not one."""

    group = "prior"

    def __init__(self, tf, teacher, weight: float, bank: int = 2048, temperature: float = 0.1):
        lm = teacher.logits_model
        self.layer = lm.layers[-1].name
        self.inputs_of = (self.layer,)
        self.weight = weight
        self.temperature = temperature
        width = int(np.prod(lm.layers[-1].input.shape[1:]))
        self.start = (tf.zeros((bank, width)), tf.zeros((bank, teacher.num_classes)))  # empty: no class matches

    def memory(self) -> dict:
        return {"novelty": self.start}

    def terms(self, b: Batch) -> list:
        tf = b.tf
        feats, classes = b.memory["novelty"]
        f = tf.math.l2_normalize(tf.reshape(b.inputs_of[self.layer], (tf.shape(b.x)[0], -1)), axis=-1)
        onehot = tf.one_hot(tf.argmax(b.target, -1), classes.shape[-1])
        size = feats.shape[0]
        rows, row_classes = tf.concat([f, feats], 0), tf.concat([onehot, classes], 0)  # (B + bank, ...)
        same = tf.matmul(onehot, row_classes, transpose_b=True)
        same *= 1.0 - tf.pad(tf.eye(tf.shape(f)[0]), [[0, 0], [0, size]])  # not itself
        same = same > 0
        sim = tf.matmul(f, rows, transpose_b=True)
        t = self.temperature
        nearest = t * tf.reduce_logsumexp(tf.where(same, sim / t, -1e9), axis=-1)
        has = tf.cast(tf.reduce_any(same, axis=-1), tf.float32)
        b.updates["novelty"] = (tf.stop_gradient(rows[:size]), row_classes[:size])  # first in, first out
        return [self.weight * tf.reduce_sum(has * nearest) / tf.maximum(tf.reduce_sum(has), 1.0)]


def reads(objectives) -> tuple[list[str], list[str]]:
    """The teacher layers whose outputs (sorted, without the input and logits) and inputs the objectives read."""
    outputs = sorted({nm for o in objectives for nm in o.outputs} - {INPUT, LOGITS})
    return outputs, [nm for o in objectives for nm in o.inputs_of]


def total_loss(objectives, b: Batch):
    """Class terms, plus the sum of the metadata terms, plus each prior term (in that order, so results are stable)."""
    groups = {g: [t for o in objectives if o.group == g for t in o.terms(b)] for g in ("class", "metadata", "prior")}
    loss = groups["class"][0] if groups["class"] else 0.0
    for t in groups["class"][1:]:
        loss += t
    if groups["metadata"]:
        loss += b.tf.add_n(groups["metadata"])
    for t in groups["prior"]:
        loss += t
    return loss
