import json
import os
import zipfile

import numpy as np
import pytest

from tinydistill import _compat
from tinydistill.errors import ModelLoadError, NotAClassifierError, UnsafeModelError
from tinydistill.teacher.model import describe, load_teacher

from ..conftest import keras3_fcn


def test_load_h5_describes_classifier(tiny_teacher, tiny_model):
    t = tiny_teacher
    assert t.input_shape == (8, 8, 1)
    assert t.num_classes == 3
    assert t.output_kind == "softmax"
    assert t.params == tiny_model.count_params()
    assert t.probe_layers == ["conv1", "fc1"]
    assert not t.has_batchnorm
    assert len(t.fingerprint) == 64


def test_logits_model_is_pre_softmax(tiny_teacher):
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype("float32")
    probs = tiny_teacher.model.predict(x, verbose=0)
    logits = tiny_teacher.logits_model.predict(x, verbose=0)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), probs, rtol=1e-5, atol=1e-6)


def test_fingerprint_is_stable_and_weight_sensitive(tiny_h5, tiny_teacher):
    assert load_teacher(tiny_h5).fingerprint == tiny_teacher.fingerprint
    k = _compat.keras()
    other = k.models.clone_model(tiny_teacher.model)
    other.set_weights([w + 1e-3 for w in tiny_teacher.model.get_weights()])
    assert describe(other).fingerprint != tiny_teacher.fingerprint


def test_batchnorm_detected(tiny_bn_model):
    t = describe(tiny_bn_model)
    assert t.bn_layers == ["bn1"]
    assert "relu1" in t.probe_layers


@pytest.mark.parametrize("suffix", [".keras", ".h5"])  # Keras 3 (TensorFlow's default) writes both
def test_keras3_file_loads_with_same_predictions(tmp_path, suffix):
    keras3 = pytest.importorskip("keras")
    if not keras3.__version__.startswith("3"):
        pytest.skip("Keras 3 not installed")
    i = keras3.Input((8, 8, 1))
    h = keras3.layers.Conv2D(4, 3, activation="relu")(i)
    h = keras3.layers.BatchNormalization()(h)
    h = keras3.layers.Flatten()(h)
    o = keras3.layers.Dense(3, activation="softmax")(h)
    m = keras3.Model(i, o)
    # non-trivial BN statistics, so a wrong weight order would show
    bn = m.layers[2]
    bn.moving_mean.assign(np.linspace(-1, 1, 4).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2, 4).astype("float32"))
    path = tmp_path / f"k3{suffix}"
    m.save(path)
    t = load_teacher(str(path))
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(t.model.predict(x, verbose=0), np.asarray(m(x)), rtol=1e-4, atol=1e-5)
    assert t.has_batchnorm and t.num_classes == 3


def test_keras3_sequential_loads(tmp_path):
    keras3 = pytest.importorskip("keras")
    if not keras3.__version__.startswith("3"):
        pytest.skip("Keras 3 not installed")
    m = keras3.Sequential([keras3.Input((5,)), keras3.layers.Dense(4, activation="relu"), keras3.layers.Dense(3)])
    path = tmp_path / "seq.keras"
    m.save(path)
    t = load_teacher(str(path))
    assert t.output_kind == "logits"
    x = np.ones((2, 5), "float32")
    np.testing.assert_allclose(t.model.predict(x, verbose=0), np.asarray(m(x)), rtol=1e-4, atol=1e-5)


def test_tf_keras_native_format_loads(tmp_path, tiny_model):
    path = tmp_path / "tiny.keras"
    tiny_model.save(path)
    assert load_teacher(str(path)).num_classes == 3


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"not a model\n", "not a Keras model"),
])
def test_bad_files(tmp_path, content, match):
    p = tmp_path / "bad.h5"
    p.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        load_teacher(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_teacher(str(tmp_path / "nope.h5"))


def test_truncated_h5(tmp_path, tiny_h5):
    p = tmp_path / "trunc.h5"
    p.write_bytes(open(tiny_h5, "rb").read()[:3000])
    with pytest.raises(ModelLoadError, match="damaged or truncated"):
        load_teacher(str(p))


def test_weights_only_h5(tmp_path, tiny_model):
    p = tmp_path / "w.h5"
    tiny_model.save_weights(p)
    with pytest.raises(ModelLoadError, match="weights only"):
        load_teacher(str(p))


def test_bad_keras_archive(tmp_path):
    p = tmp_path / "bad.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "x")
    with pytest.raises(ModelLoadError, match="not a valid .keras archive"):
        load_teacher(str(p))


def _lambda_model(tmp_path):
    k = _compat.keras()
    i = k.Input((4,))
    h = k.layers.Lambda(lambda t: t * 2.0)(i)
    o = k.layers.Dense(3, activation="softmax")(h)
    p = tmp_path / "lambda.h5"
    k.Model(i, o).save(p)
    return str(p)


def test_lambda_refused_unless_trusted(tmp_path):
    p = _lambda_model(tmp_path)
    with pytest.raises(UnsafeModelError, match="Lambda.*--trust-model"):
        load_teacher(p)
    assert load_teacher(p, trust_model=True).num_classes == 3


def test_lambda_in_a_keras3_h5_refused_before_loading(tmp_path):
    keras3 = pytest.importorskip("keras")
    if not keras3.__version__.startswith("3"):
        pytest.skip("Keras 3 not installed")
    i = keras3.Input((4,))
    o = keras3.layers.Dense(3, activation="softmax")(keras3.layers.Lambda(lambda t: t * 2.0)(i))
    p = tmp_path / "lambda3.h5"
    keras3.Model(i, o).save(p)
    with pytest.raises(UnsafeModelError, match="Lambda.*--trust-model"):
        load_teacher(str(p))


def test_custom_layer_refused(tmp_path, tiny_h5):
    import h5py

    p = tmp_path / "custom.h5"
    p.write_bytes(open(tiny_h5, "rb").read())
    with h5py.File(p, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["class_name"] = "QConv2D"
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(UnsafeModelError, match="QConv2D.*qkeras"):
        load_teacher(str(p))


def test_regression_model_refused():
    k = _compat.keras()
    i = k.Input((4,))
    with pytest.raises(NotAClassifierError, match="only when it is a sigmoid on a Dense layer of one unit.*regression"):
        describe(k.Model(i, k.layers.Dense(1)(i)))
    with pytest.raises(NotAClassifierError, match="not \\(batch, classes\\)"):
        describe(k.Model(i, k.layers.Reshape((2, 2))(i)))


@pytest.mark.parametrize("head", ["dense", "activation", "sequential"])
def test_one_sigmoid_output_is_read_as_two_classes(head):
    """A binary classifier with one sigmoid unit becomes the equivalent two-class softmax: [1 - p, p]."""
    from tinydistill.teacher.model import _fingerprint

    k = _compat.keras()
    if head == "sequential":
        m = k.Sequential([k.Input((6,)), k.layers.Dense(5, activation="relu"), k.layers.Dense(1),
                          k.layers.Activation("sigmoid")])
    else:
        i = k.Input((6,))
        h = k.layers.Dense(5, activation="relu")(i)
        o = (k.layers.Dense(1, activation="sigmoid")(h) if head == "dense"
             else k.layers.Activation("sigmoid")(k.layers.Dense(1)(h)))
        m = k.Model(i, o)
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32) * 3
    p = m(x).numpy()[:, 0]
    t = describe(m)
    assert (t.output_kind, t.num_classes, tuple(t.logits_model.output.shape)) == ("sigmoid", 2, (None, 2))
    q = t.model(x).numpy()
    np.testing.assert_allclose(q[:, 1], p, atol=1e-6)
    np.testing.assert_allclose(q[:, 0], 1 - p, atol=1e-6)
    assert t.fingerprint == _fingerprint(m)  # the file's weights: a stats file recorded on it matches
    # a sigmoid on anything but a one-unit Dense layer stays refused
    i = k.Input((4, 4, 1))
    conv = k.layers.Flatten()(k.layers.Conv2D(1, 4, activation="sigmoid")(i))
    for head in (conv, k.layers.Activation("sigmoid")(k.layers.Flatten()(k.layers.Conv2D(1, 4)(i)))):
        with pytest.raises(NotAClassifierError, match="Dense layer of one unit"):
            describe(k.Model(i, head))


def test_sigmoid_output_refused():
    k = _compat.keras()
    i = k.Input((4,))
    with pytest.raises(NotAClassifierError, match="sigmoid"):
        describe(k.Model(i, k.layers.Dense(3, activation="sigmoid")(i)))


def test_multi_input_refused():
    k = _compat.keras()
    a, b = k.Input((4,)), k.Input((4,))
    o = k.layers.Dense(3)(k.layers.Concatenate()([a, b]))
    with pytest.raises(NotAClassifierError, match="2 inputs"):
        describe(k.Model([a, b], o))


@pytest.mark.parametrize("name, kind, bn", [("mnist_lenet5.h5", "softmax", 0), ("cifar10_resnet8.h5", "softmax", 7),
                                            ("wakeword_dscnn.h5", "softmax", 4)])
def test_shared_teachers_load(shared_data, name, kind, bn):
    t = load_teacher(os.path.join(shared_data, "teachers", name))
    assert t.output_kind == kind
    assert len(t.bn_layers) == bn
    assert t.probe_layers


def test_shared_broken_models(shared_data):
    with pytest.raises(UnsafeModelError, match="custom layers"):
        load_teacher(os.path.join(shared_data, "broken-models", "custom_layers_qkeras.h5"))
    with pytest.raises(ModelLoadError, match="weights only"):
        load_teacher(os.path.join(shared_data, "broken-models", "weights_only.h5"))


def test_savedmodel_folder_loads(tmp_path, tiny_model):
    path = tmp_path / "sm"
    tiny_model.save(path, save_format="tf")
    t = load_teacher(str(path))
    assert t.num_classes == 3 and t.input_shape == (8, 8, 1)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ModelLoadError, match="without saved_model.pb"):
        load_teacher(str(tmp_path / "empty_dir"))


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "Bidirectional"])
def test_recurrent_layers_refused_in_one_line(layer):
    k = _compat.keras()
    i = k.Input((10, 3))
    rnn = k.layers.Bidirectional(k.layers.LSTM(4)) if layer == "Bidirectional" else getattr(k.layers, layer)(4)
    with pytest.raises(NotAClassifierError, match="recurrent layer .*replace recurrent layers with Conv1D"):
        describe(k.Model(i, k.layers.Dense(3, activation="softmax")(rnn(i))))


@pytest.mark.parametrize("scale,offset,hint", [(1 / 255.0, 0.0, (0.0, 255.0)), (1 / 127.5, -1.0, (0.0, 255.0)),
                                               (0.5, 0.0, (0.0, 2.0)), (1 / 255.0, 0.5, None), (-1.0, 0.0, None)])
def test_a_rescaling_first_layer_states_the_input_range(scale, offset, hint):
    from tinydistill.data import resolve_input_range

    k = _compat.keras()
    i = k.Input((4, 4, 1))
    h = k.layers.Flatten()(k.layers.Rescaling(scale, offset)(i))
    t = describe(k.Model(i, k.layers.Dense(3, activation="softmax")(h)))
    assert t.input_range_hint == hint
    if hint:
        assert resolve_input_range(None, None, teacher=t) == hint
        assert resolve_input_range("0,1", None, teacher=t) == (0.0, 1.0)  # the user's word comes first
    else:
        with pytest.raises(Exception, match="input range is unknown"):
            resolve_input_range(None, None, teacher=t)
    plain = describe(k.Model(i, k.layers.Dense(3, activation="softmax")(k.layers.Flatten()(i))))
    assert plain.input_range_hint is None


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_unknown_input_dimensions_filled_by_input_shape(tmp_path, suffix):
    """A fully convolutional model saved with input (None, None, 1) is refused with the way out, and rebuilt with the
    same weights at the size the user gives; a size that contradicts the model or breaks a layer is one clear error."""
    path = str(tmp_path / f"fcn{suffix}")
    m = keras3_fcn(path)
    with pytest.raises(NotAClassifierError, match="unknown dimensions: pass --input-shape"):
        load_teacher(path)
    t = load_teacher(path, input_shape=(12, 10, 1))
    assert t.input_shape == (12, 10, 1) and t.num_classes == 3 and t.fingerprint == load_teacher(
        path, input_shape=(6, 6, 1)).fingerprint  # the same weights whatever the size
    x = np.random.default_rng(0).uniform(size=(2, 12, 10, 1)).astype("float32")
    np.testing.assert_allclose(t.model.predict(x, verbose=0), np.asarray(m(x)), rtol=1e-4, atol=1e-5)
    for shape, match in (((12, 10), "one size >= 1 for each of its 3 dimensions"),
                         ((12, 10, 3), "only its unknown \\(None\\) dimensions"),
                         ((2, 2, 1), "cannot be built for input shape \\(2,2,1\\)")):
        with pytest.raises(NotAClassifierError, match=match):
            load_teacher(path, input_shape=shape)


def test_input_shape_of_a_fixed_model_must_match(tiny_h5, tiny_teacher):
    assert load_teacher(tiny_h5, input_shape=tiny_teacher.input_shape).input_shape == tiny_teacher.input_shape
    with pytest.raises(NotAClassifierError, match="only its unknown"):
        load_teacher(tiny_h5, input_shape=(5,) + tiny_teacher.input_shape[1:])


def test_integer_inputs_refused_in_one_line():
    k = _compat.keras()
    i = k.Input((20,), dtype="int32")
    o = k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling1D()(k.layers.Embedding(50, 4)(i)))
    with pytest.raises(NotAClassifierError, match="input is int32.*needs a float input"):
        describe(k.Model(i, o))
