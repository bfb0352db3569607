import numpy as np
import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.synthesis import Recipe, class_similarity, dirichlet_targets, resolve_method, synthesize
from tinydistill.teacher.model import describe


def test_auto_picks_strongest_signal(tiny_teacher, tiny_stats, tiny_bn_model):
    assert resolve_method("auto", tiny_teacher, tiny_stats)[0] == "all-layers"
    assert resolve_method("auto", describe(tiny_bn_model), None)[0] == "generator"
    assert resolve_method("auto", tiny_teacher, None)[0] == "prior"


def test_auto_keeps_per_batch_bn_for_a_non_image_teacher_and_names_the_engine():
    from tinydistill import _compat

    k = _compat.keras()
    m = k.Sequential([k.Input((12,)), k.layers.Dense(8), k.layers.BatchNormalization(), k.layers.ReLU(),
                      k.layers.Dense(3)])
    method, why = resolve_method("auto", describe(m), None)
    assert method == "bn" and "not an image" in why and "--method generator" in why


def test_methods_need_their_metadata(tiny_teacher):
    with pytest.raises(TinyDistillError, match="needs a statistics file"):
        resolve_method("all-layers", tiny_teacher, None)
    with pytest.raises(TinyDistillError, match="BatchNorm"):
        resolve_method("bn", tiny_teacher, None)
    with pytest.raises(TinyDistillError, match="must be one of"):
        resolve_method("magic", tiny_teacher, None)


def test_input_range_required(tiny_teacher):
    with pytest.raises(TinyDistillError, match="input range is unknown"):
        synthesize(tiny_teacher, None, n=10, steps=1)


@pytest.mark.parametrize("method", ["all-layers", "top-layer", "layer-pairs"])
def test_synthetic_inputs_are_class_conditioned(tiny_teacher, tiny_stats, method):
    syn = synthesize(tiny_teacher, tiny_stats, method=method, n=60, steps=40, batch_size=30, seed=0)
    assert syn.x.shape == (60, 8, 8, 1) and syn.x.dtype == np.float32
    assert syn.x.min() >= 0.0 and syn.x.max() <= 1.0
    assert np.bincount(syn.y, minlength=3).tolist() == [20, 20, 20]
    # the teacher must see the intended class in (almost) every input
    assert syn.teacher_agreement >= 0.9
    np.testing.assert_allclose(syn.logits, tiny_teacher.logits_model.predict(syn.x, verbose=0), rtol=1e-4, atol=1e-4)


def test_all_layers_matches_recorded_moments_better_than_noise(tiny_teacher, tiny_stats):
    from tinydistill import _compat

    k = _compat.keras()
    fc1 = k.Model(tiny_teacher.logits_model.inputs, tiny_teacher.logits_model.get_layer("fc1").output)
    syn = synthesize(tiny_teacher, tiny_stats, method="all-layers", n=90, steps=80, batch_size=90, seed=0)
    noise = np.random.default_rng(0).uniform(0, 1, syn.x.shape).astype("float32")

    def err(x):
        a = fc1.predict(x, verbose=0)
        return np.mean([np.abs(a[syn.y == c].mean(0) - tiny_stats.mean["fc1"][c]).mean() for c in range(3)])

    assert err(syn.x) < 0.5 * err(noise)


def test_bn_method_runs_on_bn_teacher(tiny_bn_model):
    t = describe(tiny_bn_model)
    syn = synthesize(t, None, method="bn", n=30, steps=30, batch_size=30, input_range=(0, 1), seed=0)
    assert syn.method == "bn" and syn.teacher_agreement >= 0.8


def test_seeded_and_deterministic(tiny_teacher, tiny_stats):
    a = synthesize(tiny_teacher, tiny_stats, n=30, steps=5, batch_size=30, seed=3)
    b = synthesize(tiny_teacher, tiny_stats, n=30, steps=5, batch_size=30, seed=3)
    c = synthesize(tiny_teacher, tiny_stats, n=30, steps=5, batch_size=30, seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_held_out_batch_leaves_the_set_as_it_was(tiny_teacher, tiny_stats):
    """compress's self-check batch is made after the set: the set, and so the student, are the same without it."""
    a = synthesize(tiny_teacher, tiny_stats, n=29, steps=5, batch_size=10, seed=3)  # 1 to spare: one batch more
    b = synthesize(tiny_teacher, tiny_stats, n=29, steps=5, batch_size=10, seed=3, held_out=True)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.held is None and b.held[0].shape == (10,) + a.x.shape[1:] and b.held[1].shape == (10, 3)
    assert not any(np.array_equal(b.held[0][0], row) for row in b.x)  # new inputs, not copies of the set's
    np.testing.assert_allclose(b.held[1], tiny_teacher.logits_model(b.held[0]).numpy(), atol=1e-4)
    # a last batch with inputs to spare gives them: no batch more
    c = synthesize(tiny_teacher, tiny_stats, n=10, steps=5, batch_size=30, seed=3, held_out=True)
    assert len(c) == 10 and c.held[0].shape == (20,) + a.x.shape[1:]


def test_non_multiple_batch(tiny_teacher, tiny_stats):
    syn = synthesize(tiny_teacher, tiny_stats, n=25, steps=2, batch_size=10, seed=0)
    assert len(syn) == 25 and len(syn.y) == 25 and len(syn.logits) == 25


def test_prior_runs_without_metadata(tiny_teacher):
    syn = synthesize(tiny_teacher, None, method="prior", n=90, steps=40, batch_size=90, input_range=(0, 1), seed=0)
    assert syn.method == "prior" and set(syn.y.tolist()) == {0, 1, 2}
    assert syn.teacher_agreement >= 0.6  # most inputs reach their soft target's top class


def test_dirichlet_targets_follow_class_similarity():
    sim = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.1], [0.0, 0.1, 1.0]])
    y = np.repeat(np.arange(3), 2000)
    t = dirichlet_targets(np.random.default_rng(0), y, sim)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-5)
    spread = t[::2]  # beta 1: mass shared with similar classes, none with dissimilar ones
    assert spread[y[::2] == 0, 1].mean() > 0.3 and spread[y[::2] == 0, 2].mean() < 0.01
    peaked = t[1::2]  # beta 0.1: mostly one class, usually the conditioning one
    assert np.median(peaked.max(1)) > 0.9
    assert (peaked.argmax(1) == y[1::2]).mean() > 0.4


def test_class_similarity_from_last_layer(tiny_teacher):
    sim = class_similarity(tiny_teacher)
    assert sim.shape == (3, 3)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert sim.min() >= 0.0 and sim.max() <= 1.0


def test_layer_pairs_match_recorded_spectra_better_than_noise(tiny_teacher, tiny_stats):
    from tinydistill import _compat

    k = _compat.keras()
    lm = tiny_teacher.logits_model
    pair = tiny_stats.pairs[1]  # conv1 -> fc1
    probe = k.Model(lm.inputs, [lm.get_layer(pair.source).output, lm.get_layer(pair.target).output])
    syn = synthesize(tiny_teacher, tiny_stats, method="layer-pairs", n=90, steps=80, batch_size=90, seed=0)
    noise = np.random.default_rng(0).uniform(0, 1, syn.x.shape).astype("float32")

    def err(x):
        a, b = probe.predict(x, verbose=0)
        c = np.concatenate([a.mean((1, 2)), b], axis=1) @ pair.projection - pair.offset
        return np.mean([np.abs(c[syn.y == j].std(0) - pair.std[j]).mean() for j in range(3)])

    assert err(syn.x) < 0.5 * err(noise)


def test_without_class_conditioning_matches_all_class_moments(tiny_teacher, tiny_stats):
    syn = synthesize(tiny_teacher, tiny_stats, n=90, steps=60, batch_size=90, seed=0, recipe=Recipe(per_class=False))
    mean, std = tiny_stats.global_moments("fc1")
    from tinydistill import _compat

    k = _compat.keras()
    a = k.Model(tiny_teacher.logits_model.inputs, tiny_teacher.logits_model.get_layer("fc1").output).predict(syn.x, verbose=0)
    assert np.abs(a.mean(0) - mean).mean() < 0.5 * np.abs(mean).mean()


def test_recipe_validated(tiny_teacher, tiny_stats):
    with pytest.raises(TinyDistillError, match="recipe targets must be"):
        synthesize(tiny_teacher, tiny_stats, n=10, steps=1, recipe=Recipe(targets="uniform"))


def test_layer_pairs_need_pair_statistics(tiny_teacher, tiny_stats):
    import dataclasses

    with pytest.raises(TinyDistillError, match="layer-pair statistics.*re-record"):
        resolve_method("layer-pairs", tiny_teacher, dataclasses.replace(tiny_stats, pairs=[]))


def test_regions_off_is_whole_layer_moments_only(tiny_teacher, tiny_stats):
    """Recipe(regions=False) ignores the stats' region moments: the same as a stats file without them."""
    import dataclasses

    assert tiny_stats.region_mean, "the fixture must record region moments for this test to mean anything"
    plain = dataclasses.replace(tiny_stats, region_mean={}, region_std={})
    a = synthesize(tiny_teacher, tiny_stats, method="all-layers", n=40, steps=5, batch_size=40, seed=0,
                   recipe=Recipe(regions=False))
    b = synthesize(tiny_teacher, plain, method="all-layers", n=40, steps=5, batch_size=40, seed=0)
    c = synthesize(tiny_teacher, tiny_stats, method="all-layers", n=40, steps=5, batch_size=40, seed=0)
    np.testing.assert_array_equal(a.x, b.x)
    assert np.abs(a.x - c.x).max() > 1e-4


def test_smooth_noise_is_unit_scale_and_low_frequency():
    from tinydistill.synthesis import smooth_noise

    rng = np.random.default_rng(0)
    z = smooth_noise(rng, 16, (32, 32, 3))
    np.testing.assert_allclose(z.reshape(16, -1).std(axis=1), 1.0, atol=1e-3)
    white = rng.normal(size=z.shape)
    step = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731  neighbouring-pixel difference
    assert step(z) < 0.5 * step(white)  # most power at low spatial frequencies
    assert smooth_noise(rng, 2, (49, 10, 1)).shape == (2, 49, 10, 1)  # non-square, non-power-of-two


def test_bn_recipe_jitter_is_seeded_and_changes_inputs(tiny_bn_model):
    """The bn recipe shifts images by a random offset each step: reproducible with the seed, and
    different from the same recipe without the shifts."""
    import dataclasses

    from tinydistill.synthesis import RECIPES

    t = describe(tiny_bn_model)
    kw = dict(method="bn", n=30, steps=10, batch_size=30, input_range=(0, 1))
    a = synthesize(t, None, seed=1, **kw)
    b = synthesize(t, None, seed=1, **kw)
    c = synthesize(t, None, seed=1, recipe=dataclasses.replace(RECIPES["bn"], jitter=False), **kw)
    assert RECIPES["bn"].jitter and RECIPES["bn"].start == "smooth"
    np.testing.assert_array_equal(a.x, b.x)
    assert np.abs(a.x - c.x).max() > 1e-4


def test_class_weight_scales_the_class_term(tiny_bn_model):
    """With the class term off, inputs no longer follow their target class."""
    import dataclasses

    from tinydistill.synthesis import RECIPES

    t = describe(tiny_bn_model)
    kw = dict(method="bn", n=60, steps=30, batch_size=60, input_range=(0, 1), seed=0)
    on = synthesize(t, None, recipe=dataclasses.replace(RECIPES["bn"], class_weight=1.0), **kw)
    off = synthesize(t, None, recipe=dataclasses.replace(RECIPES["bn"], class_weight=0.0), **kw)
    assert on.teacher_agreement >= 0.8 and off.teacher_agreement < on.teacher_agreement - 0.2


def _value_and_grad(tf, fn, a, weights):
    with tf.GradientTape() as tape:
        tape.watch(a)
        outs = fn(a)
        loss = sum(tf.reduce_sum(w * o) for w, o in zip(weights, outs))
    return [o.numpy() for o in outs], tape.gradient(loss, a).numpy()


@pytest.mark.parametrize("shape", [(6, 8, 8, 5), (40, 7), (9, 11, 3)])
def test_batch_moments_gradient_matches_autodiff(shape):
    """The fused-kernel moments with a hand-written gradient equal tf.nn.moments and its autodiff."""
    from tinydistill import _compat
    from tinydistill.synthesis.kernels import batch_moments as _batch_moments

    tf = _compat.tf()
    g = np.random.default_rng(0)
    a = tf.constant(g.normal(30.0, 2.0, size=shape).astype(np.float32))  # a large mean: no cancellation
    weights = [tf.constant(g.normal(size=shape[-1]).astype(np.float32)) for _ in range(2)]

    def reference(x):
        mean, var = tf.nn.moments(tf.reshape(x, (-1, shape[-1])), axes=[0])
        return mean, tf.sqrt(var + 1e-8)

    (m0, s0), g0 = _value_and_grad(tf, reference, a, weights)
    (m1, s1), g1 = _value_and_grad(tf, lambda x: _batch_moments(tf, x), a, weights)
    np.testing.assert_allclose(m1, m0, rtol=1e-5)
    np.testing.assert_allclose(s1, s0, rtol=1e-4)
    np.testing.assert_allclose(g1, g0, rtol=1e-3, atol=1e-5 * np.abs(g0).max())


def test_region_moments_gradient_matches_autodiff():
    """Region moments with a hand-written gradient equal avg_pool and its autodiff; their mean over the
    regions is the channel moments."""
    from tinydistill import _compat
    from tinydistill.synthesis.kernels import region_channels as _region_channels
    from tinydistill.synthesis.kernels import sample_moments as _sample_moments

    tf = _compat.tf()
    g = np.random.default_rng(1)
    a = tf.constant(g.normal(1.0, 2.0, size=(4, 12, 8, 5)).astype(np.float32))
    gh, gw, win = 3, 4, (4, 2)
    weights = [tf.constant(g.normal(size=s).astype(np.float32)) for s in [(4, 5), (4, 5), (4, 60), (4, 60)]]

    def reference(x):
        r1 = tf.reshape(tf.nn.avg_pool2d(x, win, win, "VALID"), (4, gh * gw, 5))
        r2 = tf.reshape(tf.nn.avg_pool2d(tf.square(x), win, win, "VALID"), (4, gh * gw, 5))
        return tf.reduce_mean(r1, 1), tf.reduce_mean(r2, 1), tf.reshape(r1, (4, -1)), tf.reshape(r2, (4, -1))

    def ours(x):
        q1, q2 = _sample_moments(tf, x, (gh, gw))
        return _region_channels(tf, q1, 5), _region_channels(tf, q2, 5), q1, q2

    outs0, g0 = _value_and_grad(tf, reference, a, weights)
    outs1, g1 = _value_and_grad(tf, ours, a, weights)
    for o0, o1 in zip(outs0, outs1):
        np.testing.assert_allclose(o1, o0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-6)
    # no grid: the channel moments directly, and their gradient
    (c1, c2), gc = _value_and_grad(tf, lambda x: _sample_moments(tf, x), a, weights[:2])
    np.testing.assert_allclose(c1, outs0[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c2, outs0[1], rtol=1e-5, atol=1e-6)
    _, gref = _value_and_grad(tf, lambda x: reference(x)[:2], a, weights[:2])
    np.testing.assert_allclose(gc, gref, rtol=1e-4, atol=1e-6)
    # a grid that does not tile the map (5 rows in 2 regions): pooled windows, the last row left out
    b = a[:, :5]
    pool = (2, 2)
    (p1, p2), gp = _value_and_grad(tf, lambda x: _sample_moments(tf, x, (2, 4)), b,
                                   [tf.constant(g.normal(size=(4, 40)).astype(np.float32)) for _ in range(2)])
    np.testing.assert_allclose(p1, tf.reshape(tf.nn.avg_pool2d(b, pool, pool, "VALID"), (4, -1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p2, tf.reshape(tf.nn.avg_pool2d(tf.square(b), pool, pool, "VALID"), (4, -1)),
                               rtol=1e-5, atol=1e-6)
    assert not np.any(gp[:, 4:]) and np.all(np.isfinite(gp))


@pytest.mark.parametrize("shape", [(3, 9, 7, 2), (2, 8, 8, 3)])
def test_total_variation_gradient_matches_autodiff(shape):
    """Total variation with a hand-written gradient equals the sliced neighbour differences and their autodiff."""
    from tinydistill import _compat
    from tinydistill.synthesis.kernels import total_variation as _total_variation

    tf = _compat.tf()
    u = tf.constant(np.random.default_rng(2).uniform(size=shape).astype(np.float32))

    def reference(x):  # mean absolute difference over the neighbouring pairs that exist
        return (tf.reduce_mean(tf.abs(x[:, 1:] - x[:, :-1])) + tf.reduce_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1])),)

    (v0,), g0 = _value_and_grad(tf, reference, u, [tf.constant(1.5)])
    (v1,), g1 = _value_and_grad(tf, lambda x: (_total_variation(tf, x),), u, [tf.constant(1.5)])
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-7)


def _symmetric_teacher():
    """A teacher that averages over positions: blind to left and right."""
    from tinydistill import _compat

    k = _compat.keras()
    _compat.set_seed(0)
    i = k.Input((8, 8, 1))
    pooled = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3, padding="same", activation="relu")(i))
    return describe(k.Model(i, k.layers.Dense(3)(pooled)))


def test_flip_auto_follows_the_teacher(tiny_teacher):
    from dataclasses import replace

    from tinydistill.synthesis import RECIPES

    def recipe(flip):
        return replace(RECIPES["prior"], flip=flip)

    # the toy task's class is where a bright patch sits, left or right: a flip changes it
    kw = dict(method="prior", n=40, steps=3, batch_size=20, input_range=(0.0, 1.0), seed=0)
    plain = synthesize(tiny_teacher, None, **kw)  # off by default
    auto = synthesize(tiny_teacher, None, recipe=recipe("auto"), **kw)
    assert not auto.flipped and auto.flip_agreement < 0.5
    np.testing.assert_array_equal(auto.x, plain.x)
    forced = synthesize(tiny_teacher, None, recipe=recipe("on"), **kw)
    assert forced.flipped and not np.allclose(forced.x, plain.x)
    np.testing.assert_array_equal(forced.x, synthesize(tiny_teacher, None, recipe=recipe("on"), **kw).x)
    symmetric = synthesize(_symmetric_teacher(), None, recipe=recipe("auto"), **kw)
    assert symmetric.flip_agreement == 1.0 and symmetric.flipped
    one_batch = synthesize(_symmetric_teacher(), None, recipe=recipe("auto"), **dict(kw, n=20))
    assert not one_batch.flipped  # decided after the first batch: nothing left to flip


def test_flip_needs_an_image():
    from tinydistill import _compat

    k = _compat.keras()
    i = k.Input((12,))
    syn = synthesize(describe(k.Model(i, k.layers.Dense(3)(i))), None, method="prior", n=20, steps=2, batch_size=10,
                     input_range=(0.0, 1.0), recipe=Recipe(flip="on"))
    assert syn.flip_agreement is None and not syn.flipped
    with pytest.raises(TinyDistillError, match="flip one of auto, on, off"):
        synthesize(describe(k.Model(i, k.layers.Dense(3)(i))), None, method="prior", n=10, steps=1,
                   input_range=(0.0, 1.0), recipe=Recipe(flip="yes"))


def test_feature_maps_off_matches_no_hidden_map():
    """Recipe(feature_maps=False) leaves out every hidden spatial layer's channel and region moments, keeping the
    input's and the flat layers'."""
    from types import SimpleNamespace

    from tinydistill import _compat
    from tinydistill.synthesis.methods import OBJECTIVES
    from tinydistill.synthesis.objectives import MatchedMoments
    from tinydistill.teacher.stats import INPUT, LOGITS

    tf = _compat.tf()
    k = 2
    ch = lambda c: np.ones((k, c), np.float32)  # noqa: E731
    rg = lambda c: np.ones((k, 2, 2, c), np.float32)  # noqa: E731
    stats = SimpleNamespace(layers=[INPUT, "conv", "fc", LOGITS], counts=np.ones(k),
                            mean={INPUT: ch(1), "conv": ch(3), "fc": ch(4), LOGITS: ch(2)},
                            std={INPUT: ch(1), "conv": ch(3), "fc": ch(4), LOGITS: ch(2)},
                            region_mean={INPUT: rg(1), "conv": rg(3)}, region_std={INPUT: rg(1), "conv": rg(3)},
                            global_moments=lambda n: (np.ones(stats.mean[n].shape[1]), np.ones(stats.mean[n].shape[1])))
    teacher = SimpleNamespace(has_batchnorm=False)
    keys = lambda r: {(m.kind, m.key) for o in OBJECTIVES["all-layers"](tf, teacher, stats, r)  # noqa: E731
                      if isinstance(o, MatchedMoments) for m in o.matched}
    on = keys(Recipe())
    off = keys(Recipe(feature_maps=False))
    assert ("channel", "conv") in on and ("region", "conv") in on
    assert off == on - {("channel", "conv"), ("region", "conv")}


def test_a_first_batch_the_teacher_does_not_recognise_doubles_the_class_weight(tiny_bn_model):
    """Self-check of per-batch synthesis: a class term too weak against the matched statistics is raised and the
    first batch made again, each time recorded in the set's notes (the report's "adapted")."""
    import dataclasses

    from tinydistill.synthesis import RECIPES

    t = describe(tiny_bn_model)
    kw = dict(method="bn", n=120, steps=30, batch_size=60, input_range=(0, 1), seed=0)
    off = synthesize(t, None, recipe=dataclasses.replace(RECIPES["bn"], class_weight=0.0), **kw)
    weak = synthesize(t, None, recipe=dataclasses.replace(RECIPES["bn"], class_weight=0.01), **kw)
    sound = synthesize(t, None, recipe=dataclasses.replace(RECIPES["bn"], class_weight=1.0), **kw)
    assert off.notes == [] and sound.notes == []  # nothing to raise / nothing wrong
    assert 1 <= len(weak.notes) <= 3 and all("class weight" in n for n in weak.notes)
    assert "0.01 -> 0.02" in weak.notes[0]
    assert weak.teacher_agreement > off.teacher_agreement + 0.2
    again = synthesize(t, None, recipe=dataclasses.replace(RECIPES["bn"], class_weight=0.01), **kw)
    np.testing.assert_array_equal(weak.x, again.x)
    assert weak.notes == again.notes


def test_all_layers_on_an_image_teacher_with_batchnorm_takes_the_bn_recipes_image_knobs(tiny_teacher, tiny_bn_model,
                                                                                        tiny_bn_stats):
    from tinydistill.synthesis import RECIPES, recipe_for

    bn_teacher, bn = describe(tiny_bn_model), RECIPES["bn"]
    mixed = recipe_for("all-layers", bn_teacher)
    assert (mixed.start, mixed.lr, mixed.smoothness, mixed.class_weight, mixed.jitter) == (
        bn.start, bn.lr, bn.smoothness, bn.class_weight, bn.jitter)
    assert mixed.regions and mixed.feature_maps and mixed.batchnorm and mixed.flip == "off"  # its own otherwise
    # no BatchNorm (MNIST's LeNet-5, where its recipe was chosen), another method: each method's own recipe
    assert recipe_for("all-layers", tiny_teacher) == RECIPES["all-layers"]
    for method in ("top-layer", "layer-pairs", "bn", "prior"):
        assert recipe_for(method, bn_teacher) == RECIPES[method]
    # and synthesize uses it: a smooth start, not the classes' recorded pixel moments, and jitter
    a = synthesize(bn_teacher, tiny_bn_stats, method="all-layers", n=24, steps=3, batch_size=24, seed=0)
    b = synthesize(bn_teacher, tiny_bn_stats, method="all-layers", n=24, steps=3, batch_size=24, seed=0, recipe=mixed)
    c = synthesize(bn_teacher, tiny_bn_stats, method="all-layers", n=24, steps=3, batch_size=24, seed=0,
                   recipe=RECIPES["all-layers"])
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)


def test_all_layers_takes_the_image_knobs_where_the_teacher_does_not_recognise_the_class_means(tiny_teacher,
                                                                                               tiny_stats):
    """Without BatchNorm the stats file decides: the toy teacher recognises its classes' recorded mean inputs (a blob
    left, middle or right, as LeNet-5 its mean digits), so it keeps all-layers' own recipe; the same means given to the
    wrong classes (as natural images' blurred class means are to theirs) give the image knobs."""
    import dataclasses

    from tinydistill.synthesis import RECIPES, recipe_for
    from tinydistill.synthesis.methods import class_means_recognised, with_image_knobs
    from tinydistill.teacher.stats import INPUT

    assert class_means_recognised(tiny_teacher, tiny_stats)
    assert recipe_for("all-layers", tiny_teacher, tiny_stats) == RECIPES["all-layers"]
    means = tiny_stats.region_mean[INPUT]
    shuffled = dataclasses.replace(tiny_stats, region_mean={**tiny_stats.region_mean, INPUT: np.roll(means, 1, axis=0)})
    assert not class_means_recognised(tiny_teacher, shuffled)
    assert recipe_for("all-layers", tiny_teacher, shuffled) == with_image_knobs(RECIPES["all-layers"])
    assert recipe_for("layer-pairs", tiny_teacher, shuffled) == RECIPES["layer-pairs"]
    # a stats file without region means keeps the recipe
    assert class_means_recognised(tiny_teacher, dataclasses.replace(tiny_stats, region_mean={}))
