import numpy as np
import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.student.design import design_student
from tinydistill.student.distillation import distill
from tinydistill.synthesis import synthesize


@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_distill_transfers_the_teacher(tiny_teacher, tiny_stats, toy_test, loss):
    x, y = toy_test
    syn = synthesize(tiny_teacher, tiny_stats, n=600, steps=100, batch_size=60, seed=0)
    student = design_student(tiny_teacher, width=0.5, seed=0, init="random")  # learn it all from synthetic inputs
    before = (student.predict(x, verbose=0).argmax(1) == y).mean()
    distill(tiny_teacher, student, syn, epochs=30, batch_size=32, seed=0, loss=loss)
    after = (student.predict(x, verbose=0).argmax(1) == y).mean()
    # trained only on synthetic inputs, the student must solve the real task
    assert after >= 0.85, (before, after)
    if loss == "mse":  # logit matching: the student's logits approach the teacher's, not only its argmax
        gap = np.abs(student.predict(syn.x, verbose=0) - syn.logits).mean()
        assert gap < 0.25 * np.abs(syn.logits).mean(), gap


def test_validation(tiny_teacher, tiny_stats):
    syn = synthesize(tiny_teacher, tiny_stats, n=10, steps=1, batch_size=10)
    s = design_student(tiny_teacher)
    with pytest.raises(TinyDistillError, match="temperature"):
        distill(tiny_teacher, s, syn, temperature=0)
    with pytest.raises(TinyDistillError, match="epochs"):
        distill(tiny_teacher, s, syn, epochs=0)
    with pytest.raises(TinyDistillError, match="`loss` must be one of mse, kl"):
        distill(tiny_teacher, s, syn, loss="l1")
    with pytest.raises(TinyDistillError, match="`features` must be >= 0"):
        distill(tiny_teacher, s, syn, features=-1.0)
    for ema in (1.0, -0.1, float("nan")):
        with pytest.raises(TinyDistillError, match=r"`ema` must be in \[0, 1\)"):
            distill(tiny_teacher, s, syn, ema=ema)
    syn.x = syn.x[:0]
    with pytest.raises(TinyDistillError, match="empty"):
        distill(tiny_teacher, s, syn)


def test_deterministic(tiny_teacher, tiny_stats):
    syn = synthesize(tiny_teacher, tiny_stats, n=40, steps=2, batch_size=40)
    w = []
    for _ in range(2):
        s = design_student(tiny_teacher, seed=1)
        distill(tiny_teacher, s, syn, epochs=2, batch_size=16, seed=1)
        w.append(s.get_weights())
    for a, b in zip(*w):
        np.testing.assert_array_equal(a, b)


def test_moving_average_of_the_weights(tiny_teacher, tiny_stats):
    """With ``ema`` the student ends as the average of its weights over the run, which starts at its first
    weights: a long memory keeps it near them, and a short run lowers the momentum so they fade."""
    from tinydistill.student.distillation import ema_momentum

    syn = synthesize(tiny_teacher, tiny_stats, n=64, steps=2, batch_size=64)
    start = [v.numpy() for v in design_student(tiny_teacher, seed=1).trainable_variables]

    def moved(ema):
        s = design_student(tiny_teacher, seed=1)
        distill(tiny_teacher, s, syn, epochs=50, batch_size=16, seed=1, ema=ema, recalibrate=False)
        return sum(float(np.abs(v.numpy() - w).sum()) for v, w in zip(s.trainable_variables, start))

    plain, averaged = moved(0.0), moved(0.999)  # 200 steps: the momentum is lowered to 1 - 3/200
    assert 0.0 < averaged < plain
    assert ema_momentum(0.999, 200) == pytest.approx(0.985) and ema_momentum(0.999, 10_000) == 0.999
    assert ema_momentum(0.999, 2) == 0.0 and ema_momentum(None, 10_000) == ema_momentum(0.0, 10_000) == 0.0


def test_batchnorm_recalibrated_to_clean_inputs(tiny_bn_model):
    """Inference-mode BN must use the true statistics of clean inputs, not lagging moving averages."""
    from tinydistill import _compat
    from tinydistill.student.distillation import recalibrate_batchnorm
    from tinydistill.teacher.model import describe

    from ..conftest import toy_data

    t = describe(tiny_bn_model)
    student = design_student(t, width=0.5, seed=0)
    x = toy_data(300, seed=3)[0] * 0.01  # tiny inputs: moving variance starting at 1.0 would be far off
    recalibrate_batchnorm(student, x, samples=300)
    bn = student.get_layer("bn1")
    acts = _compat.keras().Model(student.inputs, bn.input)(x, training=False).numpy().reshape(-1, bn.moving_mean.shape[0])
    np.testing.assert_allclose(bn.moving_mean.numpy(), acts.mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bn.moving_variance.numpy(), acts.var(0), rtol=1e-3, atol=1e-9)
    # every layer is set anew, in order: the result does not depend on the statistics before (the engine
    # re-estimates twice, clean for its self-check, then with noise for the student it hands on)
    fresh = design_student(t, width=0.5, seed=0)
    for model in (fresh, student):
        recalibrate_batchnorm(model, x, samples=300, noise=0.005)
    for a, b in zip(fresh.get_weights(), student.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_frozen_batchnorm_keeps_its_statistics(tiny_bn_model):
    """A BatchNorm layer frozen in the teacher (trainable False) normalises with its statistics while the student
    trains too: re-estimation leaves it as it is and says so."""
    from tinydistill import _compat
    from tinydistill.student.distillation import frozen_batchnorm, recalibrate_batchnorm

    from ..conftest import toy_data

    m = _compat.keras().models.clone_model(tiny_bn_model)
    m.set_weights(tiny_bn_model.get_weights())
    m.get_layer("bn1").trainable = False
    before = [w.numpy().copy() for w in (m.get_layer("bn1").moving_mean, m.get_layer("bn1").moving_variance)]
    recalibrate_batchnorm(m, toy_data(300, seed=3)[0] * 0.01, samples=300)
    np.testing.assert_array_equal(m.get_layer("bn1").moving_mean.numpy(), before[0])
    np.testing.assert_array_equal(m.get_layer("bn1").moving_variance.numpy(), before[1])
    assert frozen_batchnorm(m) == ["bn1"]


def test_channel_moments_one_batch_at_a_time_equal_numpys():
    from tinydistill.student.distillation import _channel_moments

    rng = np.random.default_rng(0)
    acts = (1e3 + rng.normal(size=(301, 4, 4, 3)) * [1e-3, 1.0, 10.0]).astype(np.float32)  # far from 0: no cancellation
    mean, var = _channel_moments(acts[i:i + 64] for i in range(0, len(acts), 64))
    flat = acts.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, flat.var(0), rtol=1e-9)


def test_augmentation_can_be_switched_off(tiny_teacher, tiny_stats):
    syn = synthesize(tiny_teacher, tiny_stats, n=40, steps=2, batch_size=40)
    w = {}
    for augment in (True, False):
        s = design_student(tiny_teacher, seed=1)
        distill(tiny_teacher, s, syn, epochs=2, batch_size=16, seed=1, augment=augment)
        w[augment] = s.get_weights()
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(w[True], w[False]))


def test_feature_layers_are_the_stage_outputs(tiny_teacher, tiny_bn_model):
    """One layer per feature-map size, the last one; identity-at-inference layers give way to the layer before."""
    from tinydistill import _compat
    from tinydistill.student.design import channel_map
    from tinydistill.student.distillation import feature_layers
    from tinydistill.teacher.model import describe

    s = design_student(tiny_teacher, width=0.5, seed=0)
    found = feature_layers(tiny_teacher, s)
    assert list(found) == ["conv1", "pool"]  # 8x8 and 4x4; flat and fc1 are not feature maps
    cmap = channel_map(s, tiny_teacher)
    for name, idx in found.items():
        np.testing.assert_array_equal(idx, cmap[name])
        assert len(idx) == s.get_layer(name).output.shape[-1] == 4
    bn_teacher = describe(tiny_bn_model)
    assert list(feature_layers(bn_teacher, design_student(bn_teacher, seed=0))) == ["relu1", "pool"]

    k = _compat.keras()
    i = k.Input((8, 8, 1))
    h = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="c")(i)
    h = k.layers.Dropout(0.5, name="drop")(h)
    o = k.layers.Dense(3, name="logits")(k.layers.Flatten()(h))
    dropped = describe(k.Model(i, o))
    assert list(feature_layers(dropped, design_student(dropped, seed=0))) == ["c"]
    i = k.Input((6,))
    mlp = describe(k.Model(i, k.layers.Dense(3, name="logits")(k.layers.Dense(8, activation="relu")(i))))
    assert feature_layers(mlp, design_student(mlp, seed=0)) == {}


def test_feature_term_pulls_stage_outputs_to_the_teachers(tiny_teacher, tiny_stats):
    """With the feature term the student's stage outputs end much closer to the teacher's channels it holds."""
    from tinydistill import _compat
    from tinydistill.student.design import student_layer
    from tinydistill.student.distillation import feature_layers

    k = _compat.keras()
    syn = synthesize(tiny_teacher, tiny_stats, n=200, steps=20, batch_size=100, seed=0)
    tm = tiny_teacher.logits_model
    err = {}
    for features, batchnorm in ((0.0, False), (30.0, False), (0.0, True), (30.0, True)):
        s = design_student(tiny_teacher, width=0.5, seed=0, init="random", batchnorm=batchnorm)
        distill(tiny_teacher, s, syn, epochs=20, batch_size=32, seed=0, features=features)
        total = 0.0
        for name, idx in feature_layers(tiny_teacher, s).items():
            t_act = k.Model(tm.inputs, tm.get_layer(name).output)(syn.x).numpy()[..., idx]
            s_act = k.Model(s.inputs, s.get_layer(student_layer(s, name)).output)(syn.x).numpy()
            total += np.mean((t_act - s_act) ** 2) / np.mean(t_act ** 2)
        err[features, batchnorm] = total
    assert err[30.0, False] < 0.3 * err[0.0, False], err
    # with the BatchNorm a student of this teacher gets, the stage outputs matched are after it (and the activation)
    assert err[30.0, True] < 0.5 * err[0.0, True], err


def test_feature_targets_are_the_inherited_channels_in_units_of_their_spread(tiny_teacher, tiny_stats):
    """The selection matrix picks, for every student channel, the teacher channel it inherited, divided by that
    channel's spread on the synthetic inputs: the term the distillation step matches, written as one matmul."""
    from tinydistill import _compat
    from tinydistill._math import floor_spread
    from tinydistill.student.distillation import _feature_probes, feature_layers

    k = _compat.keras()
    syn = synthesize(tiny_teacher, tiny_stats, n=100, steps=2, batch_size=100, seed=0)
    s = design_student(tiny_teacher, width=0.5, seed=0)
    matched = feature_layers(tiny_teacher, s)
    t_probe, _, spread = _feature_probes(tiny_teacher, s, syn.x, 30.0)
    assert matched and len(spread) == len(matched)
    outs = t_probe(syn.x, training=False)
    for (name, idx), (select, inv), t_act in zip(matched.items(), spread, outs[:-1]):
        t_act = t_act.numpy()
        sd = floor_spread(t_act.reshape(-1, t_act.shape[-1]).std(0))[idx]
        got = np.einsum("...c,cd->...d", t_act, select.numpy())
        np.testing.assert_allclose(got, t_act[..., idx] / sd, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(inv.numpy(), 1.0 / sd, rtol=1e-4)
        assert k.Model(s.inputs, s.get_layer(name).output).output.shape[-1] == select.shape[1]


def test_recalibration_noise_is_the_largest_the_teacher_tolerates(tiny_bn_model, tiny_teacher):
    """The noise BatchNorm statistics are re-estimated with: the largest on the doubling grid that the teacher
    keeps its class on (a fake teacher that flips when the mean rectified noise passes 0.018 of the span)."""
    from types import SimpleNamespace

    from tinydistill.student import distillation as d
    from tinydistill.teacher.model import describe

    from ..conftest import toy_data

    x = np.zeros((600, 258), np.float32)
    x[:, 1] = 1.0  # span 1; the other entries are 0, so clipped noise raises their mean by about 0.4 sigma

    def logits(v, training=False):
        flipped = np.abs(np.asarray(v)[:, 2:]).mean(1) > 0.018
        return SimpleNamespace(numpy=lambda: np.stack([~flipped, flipped], 1).astype(np.float32))

    fake = SimpleNamespace(has_batchnorm=True, logits_model=logits)
    assert d.recalibration_noise(fake, x, seed=0) == pytest.approx(1 / 32)  # 1/16: mean 0.025, flipped
    assert d.recalibration_noise(tiny_teacher, x) == 0.0  # no BatchNorm in the teacher: nothing to calibrate
    t = describe(tiny_bn_model)
    xs = toy_data(300, seed=4)[0]
    student = design_student(t, width=0.5, seed=0)
    d.recalibrate_batchnorm(student, xs, noise=0.05, samples=300, seed=0)
    assert student.recalibration_noise == 0.05
    first = student.get_layer("bn1").moving_variance.numpy().copy()
    d.recalibrate_batchnorm(student, xs, noise=0.05, samples=300, seed=0)
    np.testing.assert_array_equal(student.get_layer("bn1").moving_variance.numpy(), first)  # seeded
    d.recalibrate_batchnorm(student, xs, samples=300, seed=0)
    assert (student.get_layer("bn1").moving_variance.numpy() < first).mean() > 0.5  # noise adds variance
    with pytest.raises(ValueError, match="mirror images need a batch of images"):
        d.recalibrate_batchnorm(student, xs.reshape(len(xs), -1), mirror=True)


def test_weight_decay_shrinks_kernels_only(tiny_teacher):
    """Decoupled weight decay: with a zero gradient, Adam's own step is zero and every kernel shrinks by
    ``lr x weight_decay``, while biases (and BatchNorm's scales and offsets) keep their values."""
    from tinydistill import _compat
    from tinydistill.config import DistillConfig
    from tinydistill.student.distillation import optimizer_for

    tf = _compat.tf()
    s = design_student(tiny_teacher, seed=1)
    before = {v.name: v.numpy() for v in s.trainable_variables}
    config = DistillConfig(lr=0.01, weight_decay=2.0, ema=0.0)
    opt, _ = optimizer_for(config, tf.distribute.get_strategy(), s, 10, tiny_teacher.input_shape, 0)
    opt.apply_gradients([(tf.zeros_like(v), v) for v in s.trainable_variables])
    kernels = [v for v in s.trainable_variables if "kernel" in v.name]
    assert kernels and len(kernels) < len(s.trainable_variables)
    for v in s.trainable_variables:
        factor = 1.0 - 0.01 * 2.0 if "kernel" in v.name else 1.0
        np.testing.assert_allclose(v.numpy(), before[v.name] * factor, rtol=1e-6, atol=1e-7)


def test_distillation_starts_added_batchnorm_as_the_identity():
    """A residual teacher without normalisation gets a student with BatchNorm; distillation first makes it the identity
    on the synthetic inputs, so a width-1 student barely moved (a tiny step) is still the teacher after its statistics
    are re-estimated (left at scale 1 and offset 0 it would normalise every channel instead)."""
    from tinydistill.student.design import added_batchnorm
    from tinydistill.synthesis import SyntheticSet
    from tinydistill.teacher.model import describe

    from ..conftest import build_residual

    t = describe(build_residual())
    s = design_student(t, width=1.0, seed=0)
    assert len(added_batchnorm(s, t)) == 3
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    syn = SyntheticSet(x=x, y=np.zeros(64, np.int64), logits=np.zeros((64, 3), np.float32), method="given")
    distill(t, s, syn, epochs=1, batch_size=32, lr=1e-7, seed=0, augment=False)
    want = t.logits_model(x, training=False).numpy()
    np.testing.assert_allclose(s(x, training=False).numpy(), want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
