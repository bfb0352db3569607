"""Report: one type for compress and check, rendered as JSON, Markdown, console and PNG in one module."""

import io
import json

import pytest
from rich.console import Console

from tinydistill.config import DistillConfig, SynthesisConfig, resolve_counts
from tinydistill.fitting.boards import load_board
from tinydistill.pipeline import compress
from tinydistill.reporting.report import Report

# the keys the acceptance checks and users' scripts read: never renamed
KEYS = {"tool", "teacher", "student", "accuracy", "board", "fit", "sizing", "verification", "synthesis", "distillation",
        "finetune", "seed", "replicas", "resumed", "seconds", "host_memory", "pass"}


@pytest.fixture(scope="module")
def report(tiny_teacher, toy_test):
    result = compress(tiny_teacher, board="cortex-m4", data=toy_test, width=0.5, input_range=(0, 1), n=60, steps=2,
                      epochs=1, seed=0)
    return result.report


def _text(render):
    buf = io.StringIO()
    render(Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def test_json_keeps_the_report_keys(report):
    assert isinstance(report, Report) and report.kind == "compress"
    data = json.loads(report.to_json())
    assert set(data) >= KEYS
    assert data["student"]["arena_bytes"] > 0 and isinstance(data["student"]["arena_bytes"], int)
    assert data["accuracy"]["student_int8"] == report["accuracy"]["student_int8"]
    assert data["distillation"]["epochs"] == 1 and data["synthesis"]["inputs"] == 60
    # what the student was trained with
    default = resolve_counts(data["synthesis"]["method"], SynthesisConfig(), DistillConfig())[1]
    assert (data["distillation"]["batch_size"], data["distillation"]["learning_rate"]) == (default.batch_size, default.lr)
    assert f"in batches of {default.batch_size}" in report.markdown()
    check = data["synthesis"]["self_check"]
    assert check["teacher_agreement"] == data["synthesis"]["teacher_agreement"] and isinstance(data["warnings"], list)
    assert data["distillation"]["weight_decay"] == 0 and data["synthesis"]["generators"] is None  # off; per-batch


def test_engine_note_says_how_many_generators_made_the_inputs():
    from tinydistill.reporting.report import _synthesis_note

    syn = {"method": "generator", "why": "w", "inputs": 512, "steps": 2, "inputs_generated": 1280, "inputs_kept": 1000,
           "teacher_agreement": 0.97, "student_agreement_held_out": 0.5, "generators": 5}
    assert "(by 5 generators, each drawn afresh)" in _synthesis_note(syn)
    assert "generators" not in _synthesis_note({**syn, "generators": 1})


def test_peak_host_memory_is_recorded_in_bytes(report):
    memory = report["host_memory"]
    peak, by_stage = memory["peak_rss_bytes"], memory["peak_rss_bytes_by_stage"]
    assert isinstance(peak, int) and 50 * 2 ** 20 < peak < 64 * 2 ** 30  # a TensorFlow process, in bytes
    assert set(by_stage) >= {"synthesize", "distill", "export", "check"}
    # a high-water mark: it never falls from stage to stage
    assert list(by_stage.values()) == sorted(by_stage.values()) and max(by_stage.values()) <= peak
    md = report.markdown()
    assert "| peak host memory |" in md and "| total |" in md


def test_markdown_and_console_show_the_same_figures(report):
    md = report.markdown()
    assert md.startswith("# tinydistill report: nrf52840") and "PASS: fits" in md
    assert f"{report['accuracy']['student_int8']:.2%}" in md
    out = _text(lambda con: report.print(con, "out"))
    assert f"student int8 {report['accuracy']['student_int8']:.2%}" in out and "PASS" in out and "results in out/" in out
    assert "peak host memory" in out


def test_png(report):
    assert report.png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_sources_adds_load_time(report):
    r = Report(json.loads(report.to_json()))
    total = r["seconds"]["total"]
    r.with_sources(load_seconds=1.5, data="test.npz", stats="t.stats.npz")
    assert r["seconds"]["load"] == 1.5 and r["seconds"]["total"] == pytest.approx(total + 1.5)
    assert r["accuracy"]["data"] == "test.npz" and r["teacher"]["stats"] == "t.stats.npz"


def test_check_report(tiny_teacher):
    from tinydistill.fitting.export import export_int8
    from tinydistill.fitting.fitcheck import check

    from ..conftest import toy_data

    board = load_board("samd21").with_headroom(0.99)
    res = check(export_int8(tiny_teacher.model, toy_data(20)[0]), board)
    r = Report.from_check("m.tflite", board, res)
    assert r.kind == "check" and set(json.loads(r.to_json())) >= {"model", "board", "arena_bytes", "flash_bytes", "fits", "ops"}
    out = _text(r.print)
    assert "m.tflite on samd21" in out and ("FAIL" in out) == (not res.fits)


def test_warnings_are_shown_loudly(report):
    r = Report(json.loads(report.to_json()))
    r["warnings"] = ["the teacher puts only 49% of the synthetic inputs in their class"]
    assert "**Warning:** the teacher puts only 49%" in r.markdown()
    assert "warning: the teacher puts only 49%" in _text(lambda con: r.print(con, "out"))


def test_added_batchnorm_is_reported(report):
    """The student of a plain teacher has none; one with BatchNorm added says so, and why, in report.md."""
    assert report["student"]["batchnorm_added"] == 0 and "trains with BatchNorm" not in report.markdown()
    r = Report(json.loads(report.to_json()))
    r["student"]["batchnorm_added"] = 7
    assert "It trains with BatchNorm after 7 convolutions, which the teacher lacks" in r.markdown()
