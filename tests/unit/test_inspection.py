import numpy as np

from tinydistill.fitting.boards import load_board
from tinydistill.inspection import inspect
from tinydistill.teacher.model import describe
from tinydistill.teacher.profile import profile, total_macs


def test_macs_by_hand(tiny_teacher):
    rows = {r.name: r for r in profile(tiny_teacher.model)}
    assert rows["conv1"].macs == 8 * 8 * 8 * 3 * 3 * 1  # out h*w*c x kernel x in channels
    assert rows["fc1"].macs == 4 * 4 * 8 * 16
    assert rows["out"].macs == 16 * 3
    assert rows["pool"].macs == 0
    assert total_macs(tiny_teacher.model) == sum(r.macs for r in rows.values())


def test_inspect_reports_what_auto_would_do(tiny_teacher, tiny_stats, tiny_bn_model):
    info = inspect(tiny_teacher, board=load_board("cortex-m4"), stats=tiny_stats)
    assert info["auto_method"] == "all-layers" and info["stats"] is True
    assert info["input_range"] == [0.0, 1.0]
    assert [ly["name"] for ly in info["layers"] if ly["probed"]] == ["conv1", "fc1"]
    assert info["teacher_fits_board"] is True and info["int8_model_bytes"] > 0
    bn = inspect(describe(tiny_bn_model), measure=False)
    assert bn["batchnorm_layers"] == 1 and bn["auto_method"] == "generator" and "int8_model_bytes" not in bn
    assert not info["student_adds_batchnorm"] and not bn["student_adds_batchnorm"]


def test_inspect_says_a_residual_teacher_without_normalisation_gets_a_student_with_batchnorm():
    from ..conftest import build_residual

    info = inspect(describe(build_residual()), measure=False)
    assert info["batchnorm_layers"] == 0 and info["student_adds_batchnorm"] is True


def test_shared_resnet8_macs(shared_data):
    import os

    from tinydistill.teacher.model import load_teacher

    t = load_teacher(os.path.join(shared_data, "teachers", "cifar10_resnet8.h5"))
    # MLPerf Tiny publishes ~12.5 M MACs for this model
    assert 12.0e6 < total_macs(t.model) < 13.0e6


def test_plots_are_pngs(tiny_teacher, tiny_stats):
    from tinydistill.reporting.plots import report_png, samples_png
    from tinydistill.synthesis import SyntheticSet

    syn = SyntheticSet(x=np.random.default_rng(0).uniform(size=(12, 8, 8, 1)).astype("float32"),
                       y=np.arange(12) % 3, logits=np.zeros((12, 3), "float32"), method="prior")
    assert samples_png(syn, input_range=(0, 1))[:4] == b"\x89PNG"
    report = {"accuracy": None, "student": {"model_bytes": 1000, "arena_bytes": 3000},
              "board": {"name": "b", "flash_budget_bytes": 2000, "ram_budget_bytes": 2000, "headroom": 0.2}}
    assert report_png(report)[:4] == b"\x89PNG"
