"""The public API: the stage names exist, chain without files, and the CLI is built on them."""

import inspect

import numpy as np

import tinydistill as td

from ..conftest import toy_data


def test_api_names():
    for name in ("load_teacher", "record_stats", "synthesize", "distill", "export_int8", "check", "compress",
                 "load_stats", "save_stats", "design_student", "c_source", "load_board", "list_boards", "inspect"):
        assert callable(getattr(td, name)), name
        assert getattr(td, name).__doc__, f"{name} has no docstring"


def test_stages_chain_in_memory(tiny_h5, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # prove that no stage writes files
    teacher = td.load_teacher(tiny_h5)
    x, y = toy_data(300, seed=1)
    stats = td.record_stats(teacher, x, y, input_range=(0, 1))
    syn = td.synthesize(teacher, stats, n=60, steps=10, batch_size=30)
    student = td.distill(teacher, td.design_student(teacher, width=0.5), syn, epochs=2)
    tflite = td.export_int8(student, syn.x)
    res = td.check(tflite, td.load_board("cortex-m4"), x=x, y=y)
    assert res.arena_bytes > 0 and 0 <= res.int8_accuracy <= 1
    assert list(tmp_path.iterdir()) == []


def test_cli_calls_the_api():
    from tinydistill import cli

    src = inspect.getsource(cli)
    for call in ("load_teacher(", "record_stats(", "load_stats(", "run(", "check(", "inspect(", "make_bundle("):
        assert call in src, call
    # the CLI has no synthesis / training / conversion code of its own
    for forbidden in ("GradientTape", "TFLiteConverter", "apply_gradients"):
        assert forbidden not in src
    assert np  # numpy is the only heavy import the CLI module makes at import time
