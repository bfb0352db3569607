"""Time against accuracy of the per-batch path on LeNet-5 -> half, without touching the MNIST test set.

    python benchmarks/mnist_sweep.py --stats FILE [--seed S] [d.batch_size=256 d.lr=4e-3 s.steps=40 ...]
    python benchmarks/mnist_sweep.py --no-stats [--seed S] [...]
    python benchmarks/mnist_sweep.py --stats FILE r.feature_maps=False   # a knob of the method's recipe

One ``compress`` run at the defaults, with ``d.NAME=VALUE`` overriding a field of the distillation config and
``s.NAME=VALUE`` one of the synthesis config, ``r.NAME=VALUE`` one of the chosen method's recipe. The int8
student is scored on a validation split: 10,000 images of MNIST **train** (seeded), never the test set; with
``--hard N`` on the N images of MNIST train the teacher is least sure of (:func:`hard_split`), where students that
tie on the validation split (the teacher's own training images, nearly all easy) still differ. Each
synthetic set is made once per (stats, seed, synthesis and recipe options)
and reused through a resume checkpoint, so distillation variants cost only their distillation; stage seconds and
peak memory come from the run's report. One JSON line per run is appended to ``benchmarks/mnist_sweep.jsonl``; the
figures are in ``benchmarks/RESULTS.md`` ("Where MNIST's seconds go"). Record the stats file with
``tinydistill stats teacher.h5 --data ../shared/data/mnist --input-range 0,1``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinydistill.config import DEFAULT_INPUTS, DEFAULT_STEPS, METHOD_STEPS, CompressConfig, DistillConfig, SynthesisConfig  # noqa: E402
from tinydistill.data import load_data  # noqa: E402
from tinydistill.pipeline import compress  # noqa: E402
from tinydistill.resume import RunState  # noqa: E402
from tinydistill.student import design  # noqa: E402
from tinydistill.synthesis.methods import RECIPES, resolve_method  # noqa: E402
from tinydistill.teacher.model import load_teacher  # noqa: E402
from tinydistill.teacher.stats import load_stats  # noqa: E402

DATA = os.environ.get("TINYDISTILL_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
CACHE = os.path.join(tempfile.gettempdir(), "tinydistill-mnist-sweep")
CHECKPOINT = ("synthetic.npz", "synthesis.json")


def validation_split(n=10_000, seed=123):
    """``n`` images of MNIST train in [0, 1] with their labels."""
    train = load_data(os.path.join(DATA, "mnist"), split="train")
    x, y = train.x.reshape(-1, 28, 28, 1), train.y
    pick = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[pick].astype(np.float32) / 255.0, y[pick].astype(np.int64)


def hard_split(teacher, n=2_000):
    """The ``n`` images of MNIST train on which the teacher is least sure (smallest gap between its two highest
    logits), with their labels: the validation split is the teacher's own training data, which it and any student
    mostly get right, so differences show on the hard cases, as on a test set (never the test set itself)."""
    train = load_data(os.path.join(DATA, "mnist"), split="train")
    x = train.x.reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    logits = teacher.logits_model.predict(x, batch_size=1024, verbose=0)
    top2 = np.sort(logits, axis=1)[:, -2:]
    pick = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:n]
    return x[pick], train.y[pick].astype(np.int64)


def parse_overrides(items):
    """``d.NAME=VALUE`` / ``s.NAME=VALUE`` / ``r.NAME=VALUE`` pairs as (distill, synthesis, recipe) keyword dicts
    (values as Python literals)."""
    parts = {"d": {}, "s": {}, "r": {}}
    for item in items:
        key, _, value = item.partition("=")
        part, _, name = key.partition(".")
        if part not in parts or not name or not value:
            sys.exit(f"error: {item!r}: give d.NAME=VALUE (distillation), s.NAME=VALUE (synthesis) or r.NAME=VALUE "
                     "(the method's recipe)")
        parts[part][name] = ast.literal_eval(value)
    return parts["d"], parts["s"], parts["r"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--stats", help="stats file of the LeNet-5 teacher")
    which.add_argument("--no-stats", action="store_true", help="no stats file (method prior)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channel-multiple", type=int, default=None,
                    help="round the student's channel counts to a multiple of this (default: design_student's)")
    ap.add_argument("--hard", type=int, default=0,
                    help="score on the N images of MNIST train the teacher is least sure of instead (hard_split)")
    ap.add_argument("overrides", nargs="*", help="d.NAME=VALUE, s.NAME=VALUE or r.NAME=VALUE")
    args = ap.parse_args()
    dist, syn, rec = parse_overrides(args.overrides)
    if args.channel_multiple is not None:
        design.CHANNEL_MULTIPLE = args.channel_multiple
    teacher = load_teacher(os.path.join(DATA, "teachers", "mnist_lenet5.h5"))
    stats = load_stats(args.stats, teacher) if args.stats else None
    synthesis = SynthesisConfig(**syn)
    if rec:
        method = resolve_method(synthesis.method, teacher, stats)[0]
        RECIPES[method] = replace(RECIPES[method], **rec)
    config = CompressConfig(width=0.5, input_range="0,1", seed=args.seed, synthesis=synthesis,
                            distill=DistillConfig(**dist))
    # the per-batch defaults are in the key, so a set made under other defaults is not reused
    key = [args.stats, args.seed, sorted(syn.items()), DEFAULT_INPUTS, DEFAULT_STEPS,
           sorted(METHOD_STEPS.items())] + ([sorted(rec.items())] if rec else [])
    tag = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
    cache = os.path.join(CACHE, tag)
    scratch = tempfile.mkdtemp(prefix="mnist-sweep-")
    folder = os.path.join(scratch, "state")  # the run's checkpoints, seeded with a cached synthesis if there is one
    if all(os.path.exists(os.path.join(cache, n)) for n in CHECKPOINT):
        os.makedirs(folder)
        for n in CHECKPOINT:
            shutil.copy(os.path.join(cache, n), folder)
    try:
        data = hard_split(teacher, args.hard) if args.hard else validation_split()
        result = compress(teacher, board="cortex-m4", stats=stats, data=data, config=config,
                          state=RunState(folder, resume=True))
        if not os.path.exists(os.path.join(cache, CHECKPOINT[0])):
            os.makedirs(cache, exist_ok=True)
            for n in CHECKPOINT:
                shutil.copy(os.path.join(folder, n), cache)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = result.report
    syn_r, dist_r = report["synthesis"], report["distillation"]
    row = {"stats": bool(args.stats), "seed": args.seed, **({"hard": args.hard} if args.hard else {}), "distill": dist,
           "synthesis": syn, **({"recipe": rec} if rec else {}),
           # the counts the run used, whatever the defaults were when it ran
           "resolved": {"inputs": syn_r["inputs"], "steps": syn_r["steps"], "epochs": dist_r["epochs"],
                        "batch_size": dist_r["batch_size"], "feature_weight": dist_r["feature_weight"]},
           "channel_multiple": design.CHANNEL_MULTIPLE, "student_params": report["student"]["params"],
           "int8_accuracy": report["accuracy"]["student_int8"], "teacher_accuracy": report["accuracy"]["teacher_float"],
           "seconds": report["seconds"], "peak_rss_bytes": report["host_memory"]["peak_rss_bytes"]}
    print(json.dumps(row))
    with open(os.path.join(HERE, "mnist_sweep.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
