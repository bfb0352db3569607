"""Interrupt and resume: completed stages are reused when inputs and options match, refused otherwise."""

import json
import os

import pytest
from click.testing import CliRunner

from tinydistill.cli import main
from tinydistill.config import ENGINE_EMA
from tinydistill.resume import state_folder


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


ARGS = ["--input-range", "0,1", "--inputs", "120", "--steps", "5", "--epochs", "4", "--width", "0.5", "--quiet"]


def test_interrupt_then_resume(tiny_h5, tmp_path, monkeypatch):
    import tinydistill.student.distillation as dmod

    out = tmp_path / "out"
    real = dmod.distill

    def interrupted(*a, **kw):  # Ctrl-C after two epochs
        user_cb = kw["on_epoch_end"]

        def cb(epoch, opt_state):
            user_cb(epoch, opt_state)
            if epoch == 2:
                raise KeyboardInterrupt

        return real(*a, **{**kw, "on_epoch_end": cb})

    monkeypatch.setattr("tinydistill.pipeline.distill", interrupted)
    r = run("compress", tiny_h5, *ARGS, "-o", out)
    assert r.exit_code == 130 and "--resume" in r.output
    assert not out.exists()  # no half-written result
    state = state_folder(str(out))
    assert sorted(os.listdir(state)) == ["distillation.json", "student.npz", "synthesis.json", "synthetic.npz"]
    monkeypatch.setattr("tinydistill.pipeline.distill", real)

    # other options: refused, naming what changed
    r = run("compress", tiny_h5, *ARGS[:-1], "--seed", "5", "--quiet", "-o", out, "--resume")
    assert r.exit_code == 1 and "seed (was 0, now 5)" in " ".join(r.output.split())
    assert os.path.isdir(state) and not out.exists()

    r = run("compress", tiny_h5, *ARGS, "-o", out, "--resume", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert any("synthetic inputs reused" in n for n in report["resumed"])
    assert any("after epoch 2" in n for n in report["resumed"])
    # the held-out batch is saved with the set, so the resumed run still measures the student on it
    assert 0.0 <= report["synthesis"]["student_agreement_held_out"] <= 1.0
    assert (out / "student.tflite").exists() and not os.path.exists(state)


def test_resume_without_state_starts_fresh(tiny_h5, tmp_path):
    out = tmp_path / "out"
    r = run("compress", tiny_h5, *ARGS, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["resumed"] == []


@pytest.mark.parametrize("changed", [["--epochs", "5"]])
def test_distillation_options_change_keeps_synthesis(tiny_h5, tmp_path, changed):
    from tinydistill.resume import RunState

    st = RunState(str(tmp_path / "s"), resume=True)
    st.save_student({"epochs": 4}, 2, [], [])
    with pytest.raises(Exception, match="epochs \\(was 4, now 5\\)"):
        st.load_student({"epochs": 5})


def test_generator_stage_resumed_whole(tiny_bn_model, tmp_path, monkeypatch):
    """Method generator trains generator and student as one stage: once done, an interrupted run reuses both."""
    path = tmp_path / "bn.h5"
    tiny_bn_model.save(path, include_optimizer=False)
    out = tmp_path / "out"
    args = ["compress", path, "--input-range", "0,1", "--inputs", "512", "--epochs", "1", "--width", "0.5", "--quiet"]
    import tinydistill.pipeline as pmod

    real = pmod.export_int8

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(pmod, "export_int8", interrupted)
    r = run(*args, "-o", out)
    assert r.exit_code == 130 and not out.exists()
    assert {"synthetic.npz", "student.npz"} <= set(os.listdir(state_folder(str(out))))
    monkeypatch.setattr(pmod, "export_int8", real)
    calls = []
    monkeypatch.setattr(pmod, "interleave", lambda *a, **kw: calls.append(1))
    r = run(*args, "-o", out, "--resume", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert not calls and report["synthesis"]["method"] == "generator" and report["synthesis"]["inputs_generated"] >= 512
    assert report["distillation"]["weight_average_momentum"] == ENGINE_EMA  # the engine's default
    assert report["synthesis"]["generators"] == 1  # 2 rounds: no renewal (kept across the resume)
    assert any("synthetic inputs reused" in n for n in report["resumed"])
    assert report["synthesis"]["student_agreement_held_out"] is not None  # the self-check's figures are kept too


def test_a_synthetic_set_keeps_its_self_check_across_a_resume(tmp_path):
    """What a run adapted and measured is saved with its synthetic set, so a resumed run reports it too."""
    import numpy as np

    from tinydistill.resume import RunState
    from tinydistill.synthesis import SyntheticSet

    syn = SyntheticSet(x=np.zeros((4, 2), np.float32), y=np.arange(4), logits=np.eye(4, dtype=np.float32), method="bn",
                       notes=["the teacher recognised 40% of the first batch: class weight 0.2 -> 0.4, batch made again"],
                       student_agreement=0.75, held=(np.ones((2, 2), np.float32), np.eye(2, 4, dtype=np.float32)))
    RunState(str(tmp_path / "s"), resume=False).save_synthetic({"k": 1}, syn)
    back = RunState(str(tmp_path / "s"), resume=True).load_synthetic({"k": 1})
    assert back.notes == syn.notes and back.student_agreement == 0.75 and back.teacher_agreement == 1.0
    np.testing.assert_array_equal(back.held[1], syn.held[1])
    plain = SyntheticSet(x=syn.x, y=syn.y, logits=syn.logits, method="bn")
    RunState(str(tmp_path / "p"), resume=False).save_synthetic({"k": 1}, plain)
    back = RunState(str(tmp_path / "p"), resume=True).load_synthetic({"k": 1})
    assert back.notes == [] and back.student_agreement is None and back.held is None
