"""Each synthesis objective's loss on a tiny teacher, against a reference computed directly with numpy."""

import numpy as np
import pytest

from tinydistill import _compat
from tinydistill.errors import TinyDistillError
from tinydistill.synthesis.loop import _class_rows
from tinydistill.synthesis.objectives import (
    Batch,
    BatchNormStats,
    ClassTerm,
    Disagreement,
    MatchedMoments,
    TotalVariation,
    layer_moments,
    reads,
    region_moments,
    total_loss,
)
from tinydistill.teacher.model import describe
from tinydistill.teacher.stats import INPUT, LOGITS

from ..conftest import toy_data


def _batch(teacher, objectives, x, y, per_class=True, target=None):
    """What the loop hands the objectives, built directly from a probe of the teacher."""
    tf, k = _compat.tf(), _compat.keras()
    outputs, inputs_of = reads(objectives)
    lm = teacher.logits_model
    probe = k.Model(lm.inputs, [lm.get_layer(n).output for n in outputs] + [lm.get_layer(n).input for n in inputs_of]
                    + [lm.output])
    x_t = tf.constant(x)
    outs = probe(x_t, training=False)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    acts = dict(zip(outputs, outs))
    acts[LOGITS], acts[INPUT] = outs[-1], x_t
    C = teacher.num_classes
    target = np.eye(C, dtype=np.float32)[y] if target is None else target
    b = Batch(tf=tf, u=x_t, x=x_t, logits=outs[-1], acts=acts, inputs_of=dict(zip(inputs_of, outs[len(outputs):-1])),
              target=tf.constant(target), class_rows=tf.constant(_class_rows(y, C, per_class)))
    return b, {n: a.numpy() for n, a in acts.items()}, {n: a.numpy() for n, a in b.inputs_of.items()}


def _scalar(terms):
    assert len(terms) == 1
    return float(terms[0].numpy())


@pytest.fixture(scope="module")
def xy():
    x, y = toy_data(60, seed=7)
    return x, y.astype(np.int32)


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_class_term_onehot_and_dirichlet(tiny_teacher, xy):
    x, y = xy
    term = ClassTerm(0.7, tiny_teacher.num_classes)
    b, acts, _ = _batch(tiny_teacher, [term], x, y)
    ref = 0.7 * -_log_softmax(acts[LOGITS])[np.arange(len(y)), y].mean()
    assert _scalar(term.terms(b)) == pytest.approx(ref, rel=1e-5)

    sim = np.full((3, 3), 0.5) + 0.5 * np.eye(3)
    soft = ClassTerm(1.0, 3, similarity=sim)
    target, top = soft.targets(np.random.default_rng(0), y)
    assert np.allclose(target.sum(1), 1.0, atol=1e-5) and (top == target.argmax(1)).all()
    b, acts, _ = _batch(tiny_teacher, [soft], x, y, target=target)
    ref = -(target * _log_softmax(acts[LOGITS] / 20.0)).sum(1).mean()  # matched at temperature 20
    assert _scalar(soft.terms(b)) == pytest.approx(ref, rel=1e-5)


def _moment_reference(values_by_class, matched):
    """Sum over statistics of the mean over columns of the squared, spread-scaled moment errors, averaged over classes
    (the std as the objective takes it: sqrt(var + 1e-8), so a dead channel has a defined gradient)."""
    total = 0.0
    for m, per_class in zip(matched, values_by_class):
        rows = [((np.stack([v.mean(0), np.sqrt(v.var(0) + 1e-8)]) - np.stack([m.mean[c], m.std[c]])) / m.scale) ** 2
                for c, v in per_class.items()]
        total += np.mean([r.sum(0).mean() for r in rows])
    return total


def test_matched_moments_per_class(tiny_teacher, tiny_stats, xy):
    x, y = xy
    layers = ["fc1", LOGITS, "conv1"]
    matched = layer_moments(tiny_stats, layers, per_class=True)
    obj = MatchedMoments(_compat.tf(), matched)
    b, acts, _ = _batch(tiny_teacher, [obj], x, y)
    by_class = [{c: acts[n][y == c].reshape(-1, acts[n].shape[-1]) for c in np.unique(y)} for n in layers]
    assert _scalar(obj.terms(b)) == pytest.approx(_moment_reference(by_class, matched), rel=1e-4)


def test_matched_moments_all_classes_together(tiny_teacher, tiny_stats, xy):
    x, y = xy
    matched = layer_moments(tiny_stats, ["fc1"], per_class=False)
    obj = MatchedMoments(_compat.tf(), matched)
    b, acts, _ = _batch(tiny_teacher, [obj], x, y, per_class=False)
    assert matched[0].mean.shape[0] == 1  # one row: every class pooled
    ref = _moment_reference([{0: acts["fc1"]}], matched)
    assert _scalar(obj.terms(b)) == pytest.approx(ref, rel=1e-4)


def test_region_moments(tiny_teacher, tiny_stats, xy):
    x, y = xy
    name = next(n for n in tiny_stats.region_mean if tiny_stats.region_mean[n].shape[1] > 1)
    channels = layer_moments(tiny_stats, [name], per_class=True)
    regions = region_moments(tiny_stats, channels, per_class=True)
    obj = MatchedMoments(_compat.tf(), regions)
    b, acts, _ = _batch(tiny_teacher, [obj], x, y)
    a = acts[name]
    gh, gw = regions[0].grid
    n, h, w, ch = a.shape
    blocks = a[:, :gh * (h // gh), :gw * (w // gw)].reshape(n, gh, h // gh, gw, w // gw, ch)
    blocks = blocks.transpose(0, 2, 4, 1, 3, 5).reshape(n, -1, gh * gw * ch)  # (samples, pixels per region, regions*ch)
    by_class = [{c: blocks[y == c].reshape(-1, gh * gw * ch) for c in np.unique(y)}]
    assert _scalar(obj.terms(b)) == pytest.approx(_moment_reference(by_class, regions), rel=1e-4)


def test_batchnorm_stats(tiny_bn_model, xy):
    teacher = describe(tiny_bn_model)
    x, y = xy
    obj = BatchNormStats(_compat.tf(), teacher)
    b, _, inputs = _batch(teacher, [obj], x, y)
    bn = teacher.logits_model.get_layer("bn1")
    a = inputs["bn1"].reshape(-1, inputs["bn1"].shape[-1]).astype(np.float64)
    st = np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    ref = np.mean(((a.mean(0) - bn.moving_mean.numpy()) / st) ** 2 + ((np.sqrt(a.var(0) + 1e-8) - st) / st) ** 2)
    assert _scalar(obj.terms(b)) == pytest.approx(ref, rel=1e-4)


def test_batchnorm_within_class_spread(tiny_bn_model, xy):
    """The per-class spread term: each class's std of a BN input against the layer's running std, and the
    BatchNorm weight scaling the whole-batch term."""
    teacher = describe(tiny_bn_model)
    x, y = xy
    unit = BatchNormStats(_compat.tf(), teacher)
    plain = _scalar(unit.terms(_batch(teacher, [unit], x, y)[0]))
    obj = BatchNormStats(_compat.tf(), teacher, weight=2.0, within=0.5)
    b, _, inputs = _batch(teacher, [obj], x, y)
    whole, within = (float(t.numpy()) for t in obj.terms(b))
    assert whole == pytest.approx(2.0 * plain, rel=1e-5)
    bn = teacher.logits_model.get_layer("bn1")
    st = np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    a = inputs["bn1"].astype(np.float64)
    ref = np.mean([((np.sqrt(a[y == c].reshape(-1, a.shape[-1]).var(0) + 1e-8) - st) / st) ** 2
                   for c in np.unique(y)])
    assert within == pytest.approx(0.5 * ref, rel=1e-3)
    residual = BatchNormStats(_compat.tf(), teacher, within=1.0, within_target="residual")
    _, spread_term = (float(t.numpy()) for t in residual.terms(_batch(teacher, [residual], x, y)[0]))
    flat = a.reshape(a.shape[0], -1, a.shape[-1])
    means = np.stack([flat[y == c].mean(axis=(0, 1)) for c in np.unique(y)])
    target = np.sqrt(np.maximum(st ** 2 - means.var(0), 0.0) + 1e-8)  # what the classes' separation leaves
    ref = np.mean([((np.sqrt(a[y == c].reshape(-1, a.shape[-1]).var(0) + 1e-8) - target) / st) ** 2
                   for c in np.unique(y)])
    assert spread_term == pytest.approx(ref, rel=1e-3)
    with pytest.raises(TinyDistillError, match="target must be running or residual"):
        BatchNormStats(_compat.tf(), teacher, within=1.0, within_target="pooled")


def test_batchnorm_stats_momentum_mix(tiny_bn_model, xy):
    """Fast-DFKD's memory: the matched moments are momentum * earlier + (1 - momentum) * this batch's."""
    from dataclasses import replace

    tf = _compat.tf()
    teacher = describe(tiny_bn_model)
    x, y = xy
    obj = BatchNormStats(tf, teacher)
    b, _, inputs = _batch(teacher, [obj], x, y)
    ch = inputs["bn1"].shape[-1]
    old_mean, old_std = np.full(ch, 0.3, np.float32), np.full(ch, 2.0, np.float32)
    b = replace(b, memory={"bn:bn1": (tf.constant(old_mean), tf.constant(old_std))}, momentum=0.9, updates={})
    a = inputs["bn1"].reshape(-1, ch).astype(np.float64)
    mean, std = 0.9 * old_mean + 0.1 * a.mean(0), 0.9 * old_std + 0.1 * np.sqrt(a.var(0) + 1e-8)
    bn = teacher.logits_model.get_layer("bn1")
    st = np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    ref = np.mean(((mean - bn.moving_mean.numpy()) / st) ** 2 + ((std - st) / st) ** 2)
    assert _scalar(obj.terms(b)) == pytest.approx(ref, rel=1e-4)
    new_mean, new_std = b.updates["bn:bn1"]  # the mix, for the next batch
    assert np.allclose(new_mean.numpy(), mean, rtol=1e-4, atol=1e-5) and np.allclose(new_std.numpy(), std, rtol=1e-4)
    assert set(obj.memory()) == {"bn:bn1"}


def test_pair_diversity(tiny_teacher, xy):
    from tinydistill.synthesis.objectives import PairDiversity

    x, y = xy
    obj = PairDiversity(0.5)
    b, _, _ = _batch(tiny_teacher, [obj], x, y)
    half = len(x) // 2
    assert _scalar(obj.terms(b)) == pytest.approx(-0.5 * np.abs(x[:half] - x[half:2 * half]).mean(), rel=1e-5)
    assert obj.group == "prior"


def test_feature_novelty_against_a_numpy_reference(tiny_teacher, xy):
    from tinydistill.synthesis.objectives import FeatureNovelty

    tf = _compat.tf()
    x, y = xy
    obj = FeatureNovelty(tf, tiny_teacher, 0.7, bank=8, temperature=0.1)
    b, _, inputs_of = _batch(tiny_teacher, [obj], x, y)
    assert obj.inputs_of == (tiny_teacher.logits_model.layers[-1].name,) and obj.group == "prior"
    f = inputs_of[obj.layer].reshape(len(x), -1)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    C = tiny_teacher.num_classes
    # a bank holding the first input's own features as class 0 and another's as no class (an empty row)
    bank = np.zeros((8, f.shape[1]), np.float32)
    classes = np.zeros((8, C), np.float32)
    bank[0], classes[0, y[0]] = f[0], 1.0
    bank[1] = f[1]
    b.memory = {"novelty": (tf.constant(bank), tf.constant(classes))}
    got = _scalar(obj.terms(b))
    rows, cls = np.concatenate([f, bank]), np.concatenate([np.eye(C)[y], classes])
    nearest = []
    for i in range(len(x)):
        same = (cls[:, y[i]] > 0) & (np.arange(len(rows)) != i)
        if same.any():
            s = rows[same] @ f[i] / 0.1
            nearest.append(0.1 * (s.max() + np.log(np.exp(s - s.max()).sum())))
    assert got == pytest.approx(0.7 * np.mean(nearest), rel=1e-4)
    # the bank is first in, first out: this batch's features first, then the oldest rows of the bank, cut to its size
    new_bank, new_classes = (a.numpy() for a in b.updates["novelty"])
    assert np.allclose(new_bank, f[:8], atol=1e-6) and np.array_equal(new_classes, np.eye(C)[y[:8]])
    # alone in its class (nothing earlier, nothing else in the batch), an input adds nothing
    b1, _, _ = _batch(tiny_teacher, [obj], x[:1], y[:1])
    b1.memory = {"novelty": tuple(obj.memory()["novelty"])}
    assert _scalar(obj.terms(b1)) == 0.0


def test_total_variation(tiny_teacher, xy):
    x, y = xy
    obj = TotalVariation(0.3)
    b, _, _ = _batch(tiny_teacher, [obj], x, y)
    ref = 0.3 * (np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean())
    assert _scalar(obj.terms(b)) == pytest.approx(ref, rel=1e-5)
    assert obj.group == "prior"


def test_disagreement(tiny_teacher, xy):
    from tinydistill.student.design import design_student

    x, y = xy
    student = design_student(tiny_teacher, width=0.5, seed=0, init="random")
    obj = Disagreement(student, 2.0)
    b, acts, _ = _batch(tiny_teacher, [obj], x, y)
    pt = np.exp(_log_softmax(acts[LOGITS]))
    ps = np.exp(_log_softmax(student(x, training=False).numpy()))
    pm = 0.5 * (pt + ps)

    def kl(p, q):
        return (p * (np.log(p + 1e-8) - np.log(q + 1e-8))).sum(1)

    ref = -2.0 * (0.5 * kl(pt, pm) + 0.5 * kl(ps, pm)).mean()
    assert _scalar(obj.terms(b)) == pytest.approx(ref, rel=1e-4, abs=1e-7)


def test_disagreement_masked_to_agreeing_inputs(tiny_teacher, xy):
    """Fast-DFKD's mask: inputs where student and teacher already differ in top class add nothing."""
    from tinydistill.student.design import design_student

    x, y = xy
    student = design_student(tiny_teacher, width=0.5, seed=0, init="random")
    obj = Disagreement(student, 1.0, masked=True)
    b, acts, _ = _batch(tiny_teacher, [obj], x, y)
    t, s = acts[LOGITS], student(x, training=False).numpy()
    pt, ps = np.exp(_log_softmax(t)), np.exp(_log_softmax(s))
    pm = 0.5 * (pt + ps)

    def kl(p, q):
        return (p * (np.log(p + 1e-8) - np.log(q + 1e-8))).sum(1)

    agree = t.argmax(1) == s.argmax(1)
    assert 0 < agree.sum() < len(agree)  # both kinds of input are in the batch
    ref = -((0.5 * kl(pt, pm) + 0.5 * kl(ps, pm)) * agree).mean()
    assert _scalar(obj.terms(b)) == pytest.approx(ref, rel=1e-4, abs=1e-7)


def test_total_loss_adds_every_group(tiny_bn_model, xy):
    """A composed method ('stats + BN' style): the loss is every objective's terms added, class first."""
    teacher = describe(tiny_bn_model)
    x, y = xy
    tf = _compat.tf()
    objectives = [ClassTerm(0.5, 3), BatchNormStats(tf, teacher), TotalVariation(0.1)]
    b, _, _ = _batch(teacher, objectives, x, y)
    parts = [float(t.numpy()) for o in objectives for t in o.terms(b)]
    assert float(total_loss(objectives, b).numpy()) == pytest.approx(sum(parts), rel=1e-5)
