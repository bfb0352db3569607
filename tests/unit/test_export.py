import shutil
import subprocess

import numpy as np
import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.fitting import runtime
from tinydistill.fitting.export import c_source, export_int8

from ..conftest import toy_data


@pytest.fixture(scope="module")
def int8_model(tiny_model):
    x, _ = toy_data(200, seed=5)
    return export_int8(tiny_model, x)


def test_full_integer_io(int8_model):
    it = runtime.litert_interpreter(int8_model)
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8
    assert int8_model[4:8] == b"TFL3"


def test_int8_close_to_float(int8_model, tiny_model):
    x, y = toy_data(100, seed=6)
    q = runtime.litert_outputs(int8_model, x)
    f = tiny_model.predict(x, verbose=0)
    out_scale = runtime.litert_interpreter(int8_model).get_output_details()[0]["quantization"][0]
    # probabilities in [0, 1] quantised with scale 1/256: a few steps of error accumulate through 4 layers
    np.testing.assert_allclose(q, f, atol=8 * out_scale)
    assert (q.argmax(1) == f.argmax(1)).mean() >= 0.97


def test_deterministic(tiny_model, int8_model):
    x, _ = toy_data(200, seed=5)
    assert export_int8(tiny_model, x) == int8_model


def test_empty_calibration(tiny_model):
    with pytest.raises(TinyDistillError, match="calibration"):
        export_int8(tiny_model, np.zeros((0, 8, 8, 1), np.float32))


def test_c_source(int8_model, tmp_path):
    cc, h = c_source(int8_model)
    assert "alignas(16) const unsigned char g_model[]" in cc
    assert f"g_model_len = {len(int8_model)};" in cc
    assert "extern const unsigned char g_model[];" in h
    # the bytes survive the round trip through C literals
    body = cc.split("{", 1)[1].split("}", 1)[0]
    data = bytes(int(t, 16) for t in body.replace("\n", "").split(",") if t.strip())
    assert data == int8_model


def test_c_source_compiles(int8_model, tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler on this machine")
    cc, h = c_source(int8_model)
    (tmp_path / "model_data.cc").write_text(cc)
    (tmp_path / "model_data.h").write_text(h)
    (tmp_path / "main.cc").write_text('#include "model_data.h"\n#include <cstdint>\n'
                                      'int main() { return (reinterpret_cast<uintptr_t>(g_model) % 16 == 0 '
                                      '&& g_model_len > 0 && g_model[4] == \'T\') ? 0 : 1; }\n')
    subprocess.run([cxx, "-std=c++17", "-o", str(tmp_path / "m"), str(tmp_path / "main.cc"),
                    str(tmp_path / "model_data.cc")], check=True, cwd=tmp_path)
    assert subprocess.run([str(tmp_path / "m")]).returncode == 0


def test_c_source_name_validated(int8_model):
    with pytest.raises(TinyDistillError, match="C identifier"):
        c_source(int8_model, name="1bad-name")


@pytest.mark.parametrize("op, method", [("CONV_2D", "AddConv2D"), ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
                                        ("FULLY_CONNECTED", "AddFullyConnected"), ("MAX_POOL_2D", "AddMaxPool2D"),
                                        ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"), ("RELU6", "AddRelu6"),
                                        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM")])
def test_resolver_methods(op, method):
    from tinydistill.fitting.export import resolver_method

    assert resolver_method(op) == method


def test_resolver_header_counts_ops():
    from tinydistill.fitting.export import resolver_header

    h = resolver_header(["CONV_2D", "SOFTMAX"])
    assert "constexpr int kModelOpCount = 2;" in h
    assert h.count("!= kTfLiteOk) return kTfLiteError;") == 2


def test_a_network_the_converter_cannot_take_is_one_clear_error():
    """A converter failure names the failing op and what to do, instead of an internal error."""
    from tinydistill import _compat

    k = _compat.keras()
    i = k.Input((12, 4))
    m = k.Model(i, k.layers.Dense(3, activation="softmax")(k.layers.LSTM(4)(i)))  # a dynamic batch: TensorList ops
    with pytest.raises(TinyDistillError, match=r"the TFLite converter cannot make an int8 model .*: replace the layer"):
        export_int8(m, np.random.default_rng(0).random((8, 12, 4), dtype=np.float32))


def test_shapes_computed_at_run_time_are_converted_at_batch_one():
    """A Dense layer on a sequence makes the converter compute shapes from the batch (SHAPE, REDUCE_PROD, PACK ...),
    which TFLite Micro lacks: such a model is converted at a fixed batch of 1 instead, and LiteRT's predictions on
    many inputs are still made (one at a time) and equal the float model's."""
    from tinydistill import _compat
    from tinydistill.fitting.fitcheck import int8_predictions, model_ops

    k = _compat.keras()
    _compat.set_seed(0)
    i = k.Input((8, 6))
    h = k.layers.GlobalAveragePooling1D()(k.layers.Dense(12, activation="relu")(i))
    m = k.Model(i, k.layers.Dense(3)(h))
    x = np.random.default_rng(0).uniform(size=(40, 8, 6)).astype(np.float32)
    tflite = export_int8(m, x)
    ops = set(model_ops(tflite))
    assert not ops & {"SHAPE", "REDUCE_PROD", "PACK"} and "FULLY_CONNECTED" in ops
    it = runtime.litert_interpreter(tflite)
    assert list(it.get_input_details()[0]["shape_signature"]) == [1, 8, 6]
    preds = int8_predictions(tflite, x)
    assert preds.shape == (40,) and (preds == m.predict(x, verbose=0).argmax(-1)).mean() >= 0.9
    arena, _ = runtime.tflm_run(tflite)
    assert arena > 0


def test_a_batch_independent_model_keeps_its_dynamic_batch(int8_model):
    from tinydistill.fitting import runtime as rt

    assert int(rt.litert_interpreter(int8_model).get_input_details()[0]["shape_signature"][0]) == -1
