import re

import numpy as np
import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.fitting.boards import Board
from tinydistill.fitting.export import export_int8
from tinydistill.fitting.fitcheck import check, model_ops

from ..conftest import toy_data


@pytest.fixture(scope="module")
def int8_model(tiny_model):
    return export_int8(tiny_model, toy_data(100, seed=5)[0])


def _board(flash, ram, core="cortex-m4f"):
    return Board(name="t", kind="mcu", core=core, clock_mhz=64, flash_bytes=flash, ram_bytes=ram, headroom=0.0)


def _independent_tflm_arena(b):
    """Measure as a user would: TFLM's own print_allocations, read from fd 2."""
    import os
    import sys
    import tempfile

    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(b)
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return int(re.search(rb"Arena allocation total (\d+)", tmp.read()).group(1))


def test_arena_is_tflm_measurement(int8_model):
    res = check(int8_model, _board(1 << 20, 1 << 20))
    assert res.arena_bytes == _independent_tflm_arena(int8_model)
    assert res.model_bytes == len(int8_model)
    assert res.fits and res.bound_by is None


def test_ops(int8_model):
    assert model_ops(int8_model) == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]


def test_limits_and_margins(int8_model):
    roomy = check(int8_model, _board(1 << 20, 1 << 20))
    arena, flash = roomy.arena_bytes, roomy.flash_bytes
    # flash = model + the runtime's code for exactly these ops, from the core's linked sizes in code_size.toml:
    # its core, the largest helper code the ops share (once) and each op's own code
    import tomllib
    from importlib import resources

    ops = ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    table = tomllib.loads(resources.files("tinydistill.fitting").joinpath("code_size.toml").read_text())["tflite-micro"]
    m4 = table["cortex-m4f"]
    assert flash == (len(int8_model) + m4["core_bytes"] + max(m4["shared"][op] for op in ops)
                     + sum(m4["ops"][op] for op in ops))
    xtensa = check(int8_model, _board(1 << 20, 1 << 20, core="xtensa-lx6"))  # no linked sizes: the generic table
    assert xtensa.flash_bytes == len(int8_model) + table["core_bytes"] + sum(table["ops"][op] for op in ops)
    tight_ram = check(int8_model, _board(1 << 20, arena - 1))
    assert not tight_ram.fits and tight_ram.bound_by == "ram" and tight_ram.ram_margin_bytes == -1
    tight_flash = check(int8_model, _board(flash - 10, 1 << 20))
    assert not tight_flash.fits and tight_flash.bound_by == "flash"
    exact = check(int8_model, _board(flash, arena))
    assert exact.fits and exact.flash_margin_bytes == 0 and exact.ram_margin_bytes == 0


def test_linux_board_counts_process_memory(int8_model):
    b = Board(name="pi", kind="linux", core="cortex-a72", clock_mhz=1500, flash_bytes=1 << 30, ram_bytes=1 << 30,
              headroom=0.0)
    res = check(int8_model, b)
    assert res.runtime_flash_bytes == 0 and res.flash_bytes == len(int8_model)
    assert res.ram_bytes == res.arena_bytes + len(int8_model) + 8 * 1024 * 1024


def test_accuracy_and_tflm_agreement(int8_model, tiny_model):
    x, y = toy_data(120, seed=7)
    res = check(int8_model, _board(1 << 20, 1 << 20), x=x, y=y)
    float_acc = (tiny_model.predict(x, verbose=0).argmax(1) == y).mean()
    assert abs(res.int8_accuracy - float_acc) <= 0.02
    assert res.tflm_agreement >= 0.99 and res.tflm_agreement_n == 120
    assert res.predictions.shape == (120,)


def test_not_tflite():
    with pytest.raises(TinyDistillError, match="TFL3"):
        check(b"hello world", _board(1, 1))
    with pytest.raises(TinyDistillError, match="both"):
        check(b"1234TFL3....", _board(1, 1), x=np.zeros((1, 8, 8, 1)))


def test_tflm_abort_is_a_clean_error(tiny_teacher):
    """A model that makes TFLite Micro abort() (a dead layer quantised to a ~0 scale) must not kill the tool."""
    from tinydistill.student.design import design_student, with_output_activation

    model = with_output_activation(design_student(tiny_teacher, width=0.25, seed=0, init="random"), tiny_teacher)
    for w in model.weights:  # kill fc1: every ReLU output is 0 on every input
        if w.name.startswith("fc1/"):
            w.assign(np.full(w.shape, -1.0 if "bias" in w.name else 0.0, np.float32))
    bad = export_int8(model, toy_data(8, seed=1)[0], samples=8)
    with pytest.raises(TinyDistillError, match="TFLite Micro"):
        check(bad, _board(1 << 20, 1 << 20))


def test_unsupported_op_is_named():
    from tinydistill import _compat

    tf = _compat.tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def spectrum(x):
        return tf.abs(tf.signal.rfft(x))

    conv = tf.lite.TFLiteConverter.from_concrete_functions([spectrum.get_concrete_function()], spectrum)
    with pytest.raises(TinyDistillError, match="TFLite Micro has no kernel for RFFT2D"):
        check(conv.convert(), _board(1 << 20, 1 << 20))


def test_a_linux_board_runs_what_tflite_micro_cannot():
    """A GELU has no TFLite Micro kernel: a microcontroller refuses the model in one line; a Linux board (LiteRT) takes
    it, its RAM figure the activation tensors summed, and says so."""
    from tinydistill import _compat
    from tinydistill.fitting.boards import load_board
    from tinydistill.fitting.export import export_int8
    from tinydistill.fitting.runtime import MissingKernelError
    from tinydistill.fitting.tflite_model import parse_tflite
    from tinydistill.reporting.report import Report

    k = _compat.keras()
    _compat.set_seed(0)
    i = k.Input((12,))
    m = k.Model(i, k.layers.Dense(3)(k.layers.Dense(16, activation="gelu")(i)))
    x = np.random.default_rng(0).uniform(size=(32, 12)).astype(np.float32)
    tflite = export_int8(m, x)
    assert "GELU" in parse_tflite(tflite).op_names
    with pytest.raises(MissingKernelError, match="no kernel for GELU.*Linux board"):
        check(tflite, load_board("nrf52840"))
    res = check(tflite, load_board("pi4"), x=x, y=m.predict(x, verbose=0).argmax(-1))
    assert (res.arena_source, res.missing_kernels, res.tflm_agreement) == ("activation-tensors", ["GELU"], None)
    assert res.arena_bytes == parse_tflite(tflite).activation_bytes >= 12 + 16 + 3  # int8 input, hidden, output
    assert res.fits and res.int8_accuracy >= 0.9
    text = Report.from_check("m.tflite", load_board("pi4"), res)
    assert text["arena_source"] == "activation-tensors" and text["tflm_missing_kernels"] == ["GELU"]
