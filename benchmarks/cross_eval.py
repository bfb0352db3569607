"""Can the self-check's measures choose between per-batch ``bn`` and the engine (``generator``) on a teacher with
BatchNorm whose inputs are not images, without data? Each method's student is scored against the teacher on the
other method's synthetic inputs (a cross-evaluation: the student that covers the other's inputs better might be the
better student), beside the int8 accuracy on real test data that the choice should predict.

    python benchmarks/cross_eval.py mlp|conv1d|dscnn0.65 --efforts 1,0.25 --seed 0

Rows (JSON lines) go to ``benchmarks/cross_eval.jsonl``; the write-up is in ``benchmarks/RESULTS.md``
("Choosing between bn and the engine from synthetic inputs alone").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import tinydistill as td  # noqa: E402
from benchmarks import run as R  # noqa: E402
from tinydistill.synthesis.engine import student_agreement  # noqa: E402

SAMPLE = 4096  # synthetic inputs of each set the other method's student is scored on


def teachers(which, work):
    """(name, teacher, width, test data) for ``which``: the non-image-bn suite's MLP or Conv1D (trained here) or the
    wake-word DS-CNN at the width after ``dscnn``."""
    if which in ("mlp", "conv1d"):
        specs = [s for s in R._non_image_specs() if s[0].startswith("MLP" if which == "mlp" else "Conv1D")]
        return R._mnist_teachers(work, specs)
    t, test = R.wakeword_teacher()
    return [(which, t, float(which[len("dscnn"):] or 0.65), test)]


def one(teacher, width, test, effort, seed, rng):
    """compress with each method; its int8 accuracy, seconds, held-out agreement, a sample of its synthetic set."""
    out = {}
    for method in ("bn", "generator"):
        t0 = time.perf_counter()
        r = td.compress(teacher, board="cortex-m4", data=test, width=width, method=method, input_range=(0.0, 1.0),
                        seed=seed, effort=effort)
        s = r.synthetic
        keep = rng.choice(len(s.x), min(SAMPLE, len(s.x)), replace=False)
        out[method] = dict(student=r.student, x=s.x[keep], logits=s.logits[keep],
                           acc=r.report["accuracy"]["student_int8"], secs=time.perf_counter() - t0,
                           held=s.student_agreement, teacher_agreement=s.teacher_agreement)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=("mlp", "conv1d", "dscnn0.65", "dscnn0.5"))
    ap.add_argument("--efforts", default="1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not os.path.isdir(R.DATA):
        sys.exit(f"error: shared data not found at {R.DATA}: set TINYDISTILL_DATA")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        for name, t, width, test in teachers(args.which, work):
            for effort in (float(e) for e in args.efforts.split(",")):
                res = one(t, width, test, effort, args.seed, rng)
                row = dict(teacher=name, width=width, effort=effort, seed=args.seed)
                for a, other in (("bn", "generator"), ("generator", "bn")):
                    row.update({f"acc_{a}": res[a]["acc"], f"secs_{a}": round(res[a]["secs"]),
                                f"held_{a}": res[a]["held"], f"teacher_agreement_{a}": res[a]["teacher_agreement"],
                                f"student_{a}_on_{other}": student_agreement(res[a]["student"], res[other]["x"],
                                                                             res[other]["logits"])})
                print(json.dumps(row), flush=True)
                with open(os.path.join(HERE, "cross_eval.jsonl"), "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
