"""inspect: what tinydistill sees in a teacher before doing any work."""

from __future__ import annotations

import numpy as np

from .data import resolve_input_range
from .student.design import adds_batchnorm
from .synthesis import resolve_method
from .teacher.profile import profile


def inspect(teacher, *, board=None, stats=None, input_range=None, measure: bool = True) -> dict:
    """Describe a teacher: shapes, layers and probes, BatchNorm, the method ``auto`` would pick, size.

    With ``measure`` the teacher itself is converted to int8 (calibrated on
    random inputs: sizes do not depend on the values) and its flash and
    TFLite Micro arena are measured, and checked against ``board`` if given.

    Example:
        >>> info = td.inspect(td.load_teacher("teacher.h5"), board=td.load_board("cortex-m4"))
        >>> info["batchnorm_layers"], info["auto_method"]
        (0, 'prior')
    """
    method, why = resolve_method("auto", teacher, stats)
    rows = profile(teacher.model)
    probes = set(teacher.probe_layers)
    input_range = resolve_input_range(input_range, stats, required=False, teacher=teacher)
    info = {
        "path": teacher.path, "fingerprint": teacher.fingerprint,
        "input_shape": list(teacher.input_shape), "input_range": list(input_range) if input_range else None,
        "num_classes": teacher.num_classes, "output": teacher.output_kind,
        "params": teacher.params, "macs": sum(r.macs for r in rows),
        "batchnorm_layers": len(teacher.bn_layers), "stats": stats is not None,
        "student_adds_batchnorm": adds_batchnorm(teacher),
        "auto_method": method, "auto_method_why": why,
        "layers": [{"name": r.name, "kind": r.kind, "output_shape": list(r.output_shape), "params": r.params,
                    "macs": r.macs, "probed": r.name in probes, "batchnorm": r.kind == "BatchNormalization"}
                   for r in rows],
    }
    if measure:
        from .fitting.export import export_int8
        from .fitting.fitcheck import check

        lo, hi = input_range or (0.0, 1.0)
        calib = np.random.default_rng(0).uniform(lo, hi, (16,) + tuple(teacher.input_shape)).astype(np.float32)
        tflite = export_int8(teacher.model, calib, samples=16)
        info["int8_model_bytes"] = len(tflite)
        if board is not None:
            res = check(tflite, board)
            info["board"] = board.name
            info["int8_arena_bytes"] = res.arena_bytes
            info["int8_arena_source"] = res.arena_source  # "tflite-micro", or "activation-tensors" (Linux board)
            info["teacher_fits_board"] = res.fits
            info["flash_budget_bytes"] = board.flash_budget
            info["ram_budget_bytes"] = board.ram_budget
    return info
