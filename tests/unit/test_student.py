import numpy as np
import pytest

from tinydistill import _compat
from tinydistill.errors import TinyDistillError
from tinydistill.student.design import channel_map, design_student, scaled_channels, with_output_activation
from tinydistill.teacher.model import describe

from ..conftest import build_residual


def test_width_scales_layers(tiny_teacher):
    s = design_student(tiny_teacher, width=0.5)
    assert s.get_layer("conv1").filters == 4
    assert s.get_layer("fc1").units == 8
    assert s.get_layer(tiny_teacher.logits_model.layers[-1].name).units == 3  # one unit per class
    assert s.count_params() < tiny_teacher.params / 2
    assert s.layers[-1].get_config()["activation"] == "linear"  # logits for KD


def test_scaled_channels_round_to_a_multiple():
    assert [scaled_channels(c, 0.7, 1) for c in (16, 32, 64)] == [11, 22, 45]
    assert [scaled_channels(c, 0.7, 2) for c in (16, 32, 64)] == [12, 22, 44]  # halves and nearest: up and down
    assert [scaled_channels(c, 0.5, 2) for c in (6, 16, 1, 2)] == [4, 8, 1, 1]  # below the multiple: plain rounding
    assert scaled_channels(64, 0.7, 4) == 44 and scaled_channels(16, 0.7, 4) == 12
    assert scaled_channels(3, 1.0, 2) == 3 and scaled_channels(5, 0.9, 2) == 4  # never more than the teacher has


def test_channel_multiple_applies_to_every_scaled_layer(tiny_teacher):
    plain, aligned = design_student(tiny_teacher, width=0.7, multiple=1), design_student(tiny_teacher, width=0.7, multiple=4)
    assert (plain.get_layer("conv1").filters, plain.get_layer("fc1").units) == (6, 11)
    assert (aligned.get_layer("conv1").filters, aligned.get_layer("fc1").units) == (4, 12)
    assert aligned.layers[-1].units == 3 and aligned.init_note == "teacher"  # inherits the teacher's channels


@pytest.mark.parametrize("multiple", [0, -2, 1.5, "2"])
def test_channel_multiple_validated(tiny_teacher, multiple):
    with pytest.raises(TinyDistillError, match="`multiple` must be an integer >= 1"):
        design_student(tiny_teacher, multiple=multiple)


def test_full_width_has_teacher_params(tiny_teacher):
    from tinydistill.student.design import student_params

    assert design_student(tiny_teacher, width=1.0).count_params() == tiny_teacher.params
    assert student_params(design_student(tiny_teacher, width=1.0, batchnorm=True), tiny_teacher) == tiny_teacher.params


def test_random_init_gives_fresh_weights(tiny_teacher):
    s = design_student(tiny_teacher, width=1.0, init="random")
    assert s.init_note == "random"
    assert not np.allclose(s.get_layer("conv1").get_weights()[0], tiny_teacher.model.get_layer("conv1").get_weights()[0])


def test_init_validated(tiny_teacher):
    with pytest.raises(TinyDistillError, match="`init` must be one of teacher, random"):
        design_student(tiny_teacher, init="pretrained")


@pytest.mark.parametrize("width", [0, -0.5, 1.5, "half"])
def test_width_validated(tiny_teacher, width):
    with pytest.raises(TinyDistillError, match="`width` must be in \\(0, 1\\]"):
        design_student(tiny_teacher, width=width)


def test_bn_student_and_softmax_interface(tiny_bn_model):
    t = describe(tiny_bn_model)
    s = design_student(t, width=0.5)
    assert s.get_layer("bn1") is not None
    final = with_output_activation(s, t)
    p = final.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def _branchy(seed=0):
    """Residual Add, Concatenate, depthwise and Flatten -> Dense: the graph shapes teacher init must map."""
    k = _compat.keras()
    _compat.set_seed(seed)
    i = k.Input((8, 8, 2))
    a = k.layers.Conv2D(8, 3, padding="same", name="stem")(i)
    a = k.layers.BatchNormalization(name="stem_bn")(a)
    a = k.layers.ReLU(name="stem_relu")(a)
    b = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(a)
    b = k.layers.Conv2D(8, 1, name="pw")(b)
    r = k.layers.Add(name="res")([a, b])
    c = k.layers.Conv2D(4, 1, activation="relu", name="side")(r)
    cat = k.layers.Concatenate(name="cat")([r, c])
    p = k.layers.MaxPooling2D(name="pool")(cat)
    f = k.layers.Flatten(name="flat")(p)
    h = k.layers.Dense(6, activation="relu", name="fc")(f)
    o = k.layers.Dense(3, name="out")(h)
    m = k.Model(i, o)
    rng = np.random.default_rng(seed)  # non-trivial BatchNorm statistics
    m.get_layer("stem_bn").set_weights([rng.uniform(0.5, 2, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.2, 8),
                                        rng.uniform(0.5, 2, 8)])
    return m


@pytest.mark.parametrize("build", ["tiny", "bn", "branchy", "sequential"])
def test_full_width_teacher_init_is_the_teacher(build, tiny_teacher, tiny_bn_model):
    k = _compat.keras()
    if build == "tiny":
        t = tiny_teacher
    elif build == "bn":
        t = describe(tiny_bn_model)
    elif build == "branchy":
        t = describe(_branchy())
    else:
        t = describe(k.Sequential([k.layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                                   k.layers.Flatten(), k.layers.Dense(3)]))
    s = design_student(t, width=1.0)
    assert s.init_note == "teacher"
    x = np.random.default_rng(1).uniform(0, 1, (5,) + t.input_shape).astype("float32")
    np.testing.assert_allclose(s.predict(x, verbose=0), t.logits_model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def _mobilenet_head():
    """A MobileNet's head: the classes come from a 1 x 1 convolution, then Reshape and softmax (Keras' MobileNet)."""
    k = _compat.keras()
    _compat.set_seed(0)
    i = k.Input((8, 8, 3))
    h = k.layers.Conv2D(8, 3, padding="same", name="stem")(i)
    h = k.layers.ReLU(6.0)(k.layers.BatchNormalization()(h))
    h = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = k.layers.Conv2D(12, 1, name="pw", activation="relu")(h)
    h = k.layers.GlobalAveragePooling2D(keepdims=True)(h)
    h = k.layers.Conv2D(3, 1, name="preds")(k.layers.Dropout(0.1)(h))
    h = k.layers.Reshape((3,))(h)
    return k.Model(i, k.layers.Activation("softmax")(h))


def test_a_classifier_that_ends_in_a_convolution_keeps_one_output_per_class():
    """The layer that makes the classes is found through Reshape and softmax, not taken to be the last layer (it used
    to be scaled too: 3 classes -> 2 filters, and the student failed to build)."""
    t = describe(_mobilenet_head())
    s = design_student(t, width=0.5)
    assert s.get_layer("preds").filters == 3 and s.output_shape == (None, 3)
    assert s.get_layer("pw").filters == 6
    assert s.init_note == "teacher"  # the Reshape keeps the channels, so the teacher's channels map through it
    full = design_student(t, width=1.0)
    x = np.random.default_rng(1).uniform(0, 1, (5, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(full.predict(x, verbose=0), t.logits_model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_a_rescaling_layer_keeps_the_teacher_initialisation():
    """Keras image models often start with Rescaling(1/255): one scale for every channel, so the channels map."""
    k = _compat.keras()
    i = k.Input((8, 8, 3))
    h = k.layers.Conv2D(8, 3, activation="relu", name="c")(k.layers.Rescaling(1 / 255.0)(i))
    t = describe(k.Model(i, k.layers.Dense(3)(k.layers.GlobalAveragePooling2D()(h))))
    assert design_student(t, width=0.5).init_note == "teacher"
    x = np.random.default_rng(1).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(design_student(t, width=1.0).predict(x, verbose=0), t.logits_model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_merged_branches_keep_the_same_channels():
    t = describe(_branchy())
    s = design_student(t, width=0.5)
    assert s.init_note == "teacher"
    cmap = channel_map(s, t)
    np.testing.assert_array_equal(cmap["stem"], cmap["pw"])  # the residual Add joins them
    np.testing.assert_array_equal(cmap["res"], cmap["stem"])
    assert len(cmap["cat"]) == 4 + 2 and (cmap["cat"][4:] >= 8).all()  # concat: the side branch after offset 8
    # the student's slices are the teacher's weights at those channels
    w_t, w_s = t.logits_model.get_layer("pw").get_weights()[0], s.get_layer("pw").get_weights()[0]
    np.testing.assert_array_equal(w_s, w_t[..., cmap["stem"], :][..., cmap["pw"]])


def test_keeps_the_most_important_channels(tiny_teacher):
    """Importance: the filter's L1 norm times the L1 norm of the weights reading the channel (fc1, via Flatten)."""
    s = design_student(tiny_teacher, width=0.5)
    lm = tiny_teacher.logits_model
    kernel = lm.get_layer("conv1").get_weights()[0]
    made = np.abs(kernel).reshape(-1, 8).sum(0)
    used = np.abs(lm.get_layer("fc1").get_weights()[0]).reshape(-1, 8, 16).sum((0, 2))  # 4x4 positions x 8 channels
    expected = np.sort(np.argsort(-(made / made.mean()) * (used / used.mean()))[:4])
    np.testing.assert_array_equal(channel_map(s, tiny_teacher)["conv1"], expected)


def test_unsupported_graph_falls_back_to_random():
    k = _compat.keras()
    i = k.Input((8, 8, 1))
    h = k.layers.Conv2D(4, 3, activation="relu")(i)
    h = k.layers.Permute((2, 1, 3), name="transpose")(h)
    h = k.layers.GlobalAveragePooling2D()(h)
    t = describe(k.Model(i, k.layers.Dense(3)(h)))
    s = design_student(t, width=0.5)
    assert s.init_note.startswith("random (") and "transpose" in s.init_note


def test_separable_with_depth_multiplier_does_not_crash():
    """A channel multiplier the channel mapping does not cover: a random start, with the reason."""
    from tinydistill import _compat
    from tinydistill.teacher.model import describe

    k = _compat.keras()
    _compat.set_seed(0)
    i = k.Input((16, 16, 3))
    x = k.layers.Conv2D(8, 3, activation="relu")(i)
    x = k.layers.SeparableConv2D(12, 3, depth_multiplier=2, activation="relu")(x)
    o = k.layers.Dense(4)(k.layers.GlobalAveragePooling2D()(x))
    student = design_student(describe(k.Model(i, o)), width=0.5, seed=0)
    assert student.init_note.startswith("random (")


def test_a_teacher_saved_frozen_gives_a_student_that_trains(tiny_bn_model):
    """Layers frozen in the teacher's file do not freeze the student: a teacher saved with ``trainable`` False
    throughout gives a student whose every layer trains; one fine-tuned with only its BatchNorm frozen keeps that
    BatchNorm frozen (it normalises with the teacher's statistics) and trains the rest."""
    from tinydistill import _compat
    from tinydistill.teacher.model import describe

    def copy():
        m = _compat.keras().models.clone_model(tiny_bn_model)
        m.set_weights(tiny_bn_model.get_weights())
        return m

    whole = copy()
    whole.trainable = False
    s = design_student(describe(whole), width=0.5)
    assert all(ly.trainable for ly in s.layers) and len(s.trainable_variables) == len(tiny_bn_model.trainable_variables)
    partly = copy()
    partly.get_layer("bn1").trainable = False
    s = design_student(describe(partly), width=0.5)
    assert not s.get_layer("bn1").trainable and s.get_layer("conv1").trainable and s.get_layer("fc1").trainable


def test_a_student_that_keeps_every_channel_is_the_teacher_itself(tiny_teacher):
    """compress quantises such a teacher as it is, unless --qat or --prune asks to train it."""
    from tinydistill.config import CompressConfig
    from tinydistill.pipeline import _teacher_itself
    from tinydistill.student.design import keeps_every_channel

    assert keeps_every_channel(tiny_teacher, 1.0) and keeps_every_channel(tiny_teacher, 0.99)  # 8 and 16 channels
    assert not keeps_every_channel(tiny_teacher, 0.9) and not keeps_every_channel(tiny_teacher, 0.5)
    config = CompressConfig.from_options().validate()
    assert _teacher_itself(tiny_teacher, config, 1.0).init_note == "teacher"
    assert _teacher_itself(tiny_teacher, config, 0.5) is None
    assert _teacher_itself(tiny_teacher, CompressConfig.from_options(prune=0.5).validate(), 1.0) is None


def test_a_teacher_the_channel_map_cannot_follow_is_still_itself_at_width_1():
    """A layer the channel map does not follow (an adapted Normalization) starts narrower students at random; at width 1
    the student takes the teacher's weights as they are, so it is still the teacher itself."""
    from tinydistill.config import CompressConfig
    from tinydistill.pipeline import _teacher_itself

    k = _compat.keras()
    norm = k.layers.Normalization()
    norm.adapt(np.random.default_rng(0).uniform(0, 1, (32, 8, 8, 1)).astype("float32"))
    t = describe(k.Sequential([k.Input((8, 8, 1)), norm, k.layers.Conv2D(4, 3, activation="relu"), k.layers.Flatten(),
                               k.layers.Dense(3)]))
    assert design_student(t, width=1.0).init_note.startswith("random")
    s = _teacher_itself(t, CompressConfig.from_options().validate(), 1.0)
    x = np.random.default_rng(1).uniform(0, 1, (5, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(s.predict(x, verbose=0), t.logits_model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_a_residual_teacher_without_normalisation_gives_a_student_with_batchnorm(tiny_teacher, tiny_bn_model):
    """After every hidden 2-D convolution: the convolution's activation moves after the BatchNorm, the layers that read
    it read that, and the student still counts the teacher's parameters (the converter folds the BatchNorm). A plain
    network (LeNet-like, an MLP) or one with BatchNorm keeps its form unless asked."""
    from tinydistill.student.design import added_batchnorm, adds_batchnorm, student_layer, student_params

    k = _compat.keras()
    t = describe(build_residual())
    assert adds_batchnorm(t)
    assert not adds_batchnorm(tiny_teacher) and not adds_batchnorm(describe(tiny_bn_model))
    s = design_student(t, width=1.0)
    names = [ly.name for ly in s.layers]
    assert names[1:9] == ["stem", "stem_student_bn", "stem_student_act", "c1", "c1_student_bn", "c1_student_act", "c2",
                          "c2_student_bn"]
    assert {bn.name for bn in added_batchnorm(s, t)} == {"stem_student_bn", "c1_student_bn", "c2_student_bn"}
    assert s.get_layer("stem").activation.__name__ == "linear"
    assert s.get_layer("stem_student_act").activation.__name__ == "relu"
    # the Add reads the stem's activation and the second convolution's BatchNorm
    assert {x.node.layer.name for x in s.get_layer("add").input} == {"stem_student_act", "c2_student_bn"}
    assert student_layer(s, "stem") == "stem_student_act" and student_layer(s, "c2") == "c2" and s.init_note == "teacher"
    assert student_params(s, t) == t.params < s.count_params()
    x = np.random.default_rng(1).uniform(0, 1, (5, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(s.predict(x, verbose=0), t.logits_model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert not added_batchnorm(design_student(t, width=1.0, batchnorm=False), t)
    assert not added_batchnorm(design_student(tiny_teacher, width=0.5), tiny_teacher)
    bn_teacher = describe(tiny_bn_model)
    assert not added_batchnorm(design_student(bn_teacher, width=0.5), bn_teacher)
    mlp = describe(k.Sequential([k.Input((8, 8, 1)), k.layers.Flatten(), k.layers.Dense(8, activation="relu"),
                                 k.layers.Dense(3)]))
    assert not adds_batchnorm(mlp)
    # forced on a Sequential teacher: a linear convolution (no activation to move), a depthwise one, and a convolution
    # that makes the classes (which gets none)
    seq = describe(k.Sequential([k.Input((8, 8, 1)), k.layers.Conv2D(4, 3, name="c1"), k.layers.ReLU(name="r1"),
                                 k.layers.DepthwiseConv2D(3, activation="relu", name="dw"),
                                 k.layers.Conv2D(3, 1, name="classes"), k.layers.GlobalAveragePooling2D()]))
    s = design_student(seq, width=0.5, batchnorm=True)
    assert [ly.name for ly in s.layers][:6] == ["c1", "c1_student_bn", "r1", "dw", "dw_student_bn", "dw_student_act"]
    assert "classes_student_bn" not in [ly.name for ly in s.layers] and s.init_note == "teacher"


def test_added_batchnorm_starts_as_the_identity(tiny_teacher):
    """Built, the added BatchNorm is the identity; on data, identity_batchnorm puts every filter before it at a He
    initialisation's norm and sets its statistics, scale and offset so the student computes the same, in training too."""
    from tinydistill.student.distillation import identity_batchnorm

    plain = design_student(tiny_teacher, width=0.5, seed=0, batchnorm=False)
    s = design_student(tiny_teacher, width=0.5, seed=0, batchnorm=True)
    x = np.random.default_rng(1).uniform(0, 1, (300,) + tiny_teacher.input_shape).astype("float32")
    want = plain(x, training=False).numpy()
    np.testing.assert_allclose(s(x, training=False).numpy(), want, rtol=1e-5, atol=1e-5)
    identity_batchnorm(s, x, tiny_teacher)
    kernel = s.get_layer("conv1").get_weights()[0]
    np.testing.assert_allclose(np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(0)), np.sqrt(2.0), rtol=1e-5)
    np.testing.assert_allclose(s(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s(x, training=True).numpy(), want, rtol=1e-3, atol=1e-3)


def test_added_batchnorm_folds_away_in_the_int8_model(tiny_teacher):
    """The int8 student has the operators and MACs of one without the BatchNorm, and its size but for the tensor names,
    which name the folded layers too (".../conv1_student_bn/FusedBatchNormV3;...", in two tensors)."""
    from tinydistill.fitting.export import export_int8
    from tinydistill.fitting.tflite_model import parse_tflite

    x = np.random.default_rng(1).uniform(0, 1, (64,) + tiny_teacher.input_shape).astype("float32")
    with_bn, without = (parse_tflite(export_int8(design_student(tiny_teacher, width=0.5, batchnorm=bn), x, samples=64))
                        for bn in (True, False))
    assert with_bn.op_names == without.op_names and "MUL" not in with_bn.op_names
    assert with_bn.macs == without.macs and 0 <= with_bn.model_bytes - without.model_bytes <= 128


def test_a_student_recompressed_keeps_its_own_batchnorm():
    """A tinydistill student used as a teacher (its ``student.keras`` compressed again for a smaller board) has
    BatchNorm layers named ``*_student_bn`` of its own: they are the teacher's, learnt, not added, so the new student
    keeps them as inherited (not reset to the identity), counts their parameters and reports none added."""
    from tinydistill.student.design import added_batchnorm, student_params
    from tinydistill.student.distillation import identity_batchnorm

    first = design_student(describe(build_residual()), width=1.0, seed=0)
    rng = np.random.default_rng(2)
    for bn in added_batchnorm(first, describe(build_residual())):  # a trained BatchNorm: not the identity
        bn.set_weights([rng.uniform(0.5, 2.0, w.shape).astype("float32") for w in bn.get_weights()])
    t = describe(first)
    s = design_student(t, width=1.0, seed=0)
    assert [ly.name for ly in s.layers] == [ly.name for ly in first.layers] and not added_batchnorm(s, t)
    assert student_params(s, t) == s.count_params() == t.params
    x = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    identity_batchnorm(s, x, t)
    np.testing.assert_allclose(s(x, training=False).numpy(), t.logits_model(x, training=False).numpy(), rtol=1e-5,
                               atol=1e-5)
