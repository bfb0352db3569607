import os

import numpy as np
import pytest

from tinydistill.errors import BoardError
from tinydistill.fitting.boards import Board, list_boards, load_board
from tinydistill.fitting.export import export_int8
from tinydistill.fitting.latency import estimate_latency
from tinydistill.fitting.tflite_model import parse_tflite

from ..conftest import toy_data


@pytest.fixture(scope="module")
def tiny_int8(tiny_model):
    return export_int8(tiny_model, toy_data(50, seed=5)[0])


def test_macs_from_flatbuffer(tiny_int8):
    all_ops = parse_tflite(tiny_int8).ops
    ops = {o.op: o for o in all_ops}
    assert ops["CONV_2D"].macs == 8 * 8 * 8 * 9
    assert ops["CONV_2D"].kernel == "conv"
    assert ops["RESHAPE"].elements == 0
    assert ops["MAX_POOL_2D"].elements == 8 * 8 * 8  # reads every input element
    assert sum(o.macs for o in all_ops if o.op == "FULLY_CONNECTED") == 128 * 16 + 16 * 3


def test_latency_arithmetic(tiny_int8):
    b = Board(name="t", kind="mcu", core="cortex-m4f", clock_mhz=100, flash_bytes=1, ram_bytes=1,
              latency={"conv": 1.0, "depthwise": 1.0, "fully_connected": 1.0, "elementwise": 0.0, "op_overhead": 0})
    est = estimate_latency(tiny_int8, b)
    assert est.cycles == est.macs  # one cycle per MAC, nothing else
    assert est.ms == pytest.approx(est.macs / 100e6 * 1000)


def test_faster_cores_are_faster(tiny_int8):
    ms = {b.name: estimate_latency(tiny_int8, b).ms for b in list_boards()}
    assert ms["samd21"] > ms["rp2040"] > ms["nrf52840"] > ms["stm32l4r5"] > ms["stm32f746"] > ms["stm32h743"]
    assert ms["raspberry-pi-5"] < ms["raspberry-pi-4"] < ms["raspberry-pi-zero-2w"]


def test_unknown_core():
    b = Board(name="t", kind="mcu", core="z80", clock_mhz=4, flash_bytes=1, ram_bytes=1)
    with pytest.raises(BoardError, match="no latency constants for core 'z80'"):
        estimate_latency(b"", b)


def test_calibration_resnet8_on_l4r5(shared_data):
    """The published MLPerf Tiny reference: 704 ms on NUCLEO-L4R5ZI; the model must be within 10 %."""
    from tinydistill.teacher.model import load_teacher

    t = load_teacher(os.path.join(shared_data, "teachers", "cifar10_resnet8.h5"))
    calib = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    est = estimate_latency(export_int8(t.model, calib, samples=8), load_board("stm32l4r5"))
    assert est.macs == 12_500_992 + 64 * 10  # convolutions + the classifier
    assert abs(est.ms - 704) / 704 <= 0.10, est.ms
