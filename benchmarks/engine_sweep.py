"""Choose the engine's schedule without touching test_q75: one run of method ``generator`` on CIFAR-10 ResNet-8.

    python benchmarks/engine_sweep.py --rounds 300 --student-steps 10 [--flip on] [--stats FILE] [--tag NAME]

The float student is scored on a validation split of train_q75 (every 10th image, 5,000) —
images the teacher was trained on, so the teacher scores higher there than on test_q75 — and
one JSON line per run is appended to ``benchmarks/engine_sweep.jsonl``. The figures that chose
the defaults are in ``benchmarks/RESULTS.md`` ("Choosing the engine's schedule").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinydistill import _compat  # noqa: E402
from tinydistill.config import ENGINE_REWARM, DistillConfig  # noqa: E402
from tinydistill.student.design import design_student  # noqa: E402
from tinydistill.student.distillation import recalibrate_batchnorm, recalibration_noise  # noqa: E402
from tinydistill.synthesis.engine import Schedule, plan_for, renew_for, run_engine  # noqa: E402
from tinydistill.synthesis.methods import RECIPES  # noqa: E402
from tinydistill.synthesis.objectives import BatchNormStats  # noqa: E402
from tinydistill.synthesis.quality import diversity  # noqa: E402
from tinydistill.teacher.model import load_teacher  # noqa: E402
from tinydistill.teacher.stats import load_stats  # noqa: E402
from tinydistill.units import peak_memory_bytes  # noqa: E402

DATA = os.environ.get("TINYDISTILL_DATA", os.path.join(HERE, "..", "..", "shared", "data"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--gen-steps", type=int, default=2)
    ap.add_argument("--student-steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--adversarial", type=float, default=1.0)
    ap.add_argument("--momentum", type=float, default=Schedule.momentum,
                    help="BatchNorm batch memory (default: the engine's)")
    ap.add_argument("--width", type=float, default=0.7)
    ap.add_argument("--channel-multiple", type=int, default=None,
                    help="round the student's channel counts to a multiple of this (default: design_student's)")
    ap.add_argument("--diversity", type=float, default=0.0)
    ap.add_argument("--class-weight", type=float, default=None, help="the recipe's class weight (default: its own)")
    ap.add_argument("--targets", default=None, choices=["onehot", "dirichlet"], help="the recipe's class targets")
    ap.add_argument("--channels", type=int, default=None, help="the generator's width (default: the engine's)")
    ap.add_argument("--features", type=float, default=None, help="the distillation's stage-feature weight")
    ap.add_argument("--loss", default=None, choices=["mse", "kl"], help="the distillation loss (default: its own)")
    ap.add_argument("--temperature", type=float, default=None, help="the KL loss's temperature")
    ap.add_argument("--ema", type=float, default=None, help="EMA momentum of the student's weights (0: off; default: "
                    "the engine's)")
    ap.add_argument("--lr", type=float, default=None, help="the student's peak learning rate (default: its own)")
    ap.add_argument("--within", type=float, default=None, help="the recipe's per-class BatchNorm spread weight")
    ap.add_argument("--regions", default="on", choices=["on", "off"],
                    help="with --stats: match the moments of each region of a feature map too (the recipe's default)")
    ap.add_argument("--bn-weight", type=float, default=1.0, help="weight of the BatchNorm statistics term")
    ap.add_argument("--flip", default="off", choices=["off", "on", "auto"])
    ap.add_argument("--student-flip", default="auto", choices=["auto", "on", "off"],
                    help="mirror the student's batches at random (auto: where the teacher is invariant)")
    ap.add_argument("--stats", default=None, help="a stats file of the teacher (recorded on train_q75)")
    ap.add_argument("--meta", default="off", choices=["on", "off"], help="Fast-DFKD's meta-learnt generator start")
    ap.add_argument("--recent", type=float, default=0.0,
                    help="share of every student batch drawn from the newest generator batches (default: none)")
    ap.add_argument("--student-noise", type=float, default=0.0,
                    help="noise on the student's inputs, in units of the noise the teacher tolerates")
    ap.add_argument("--gen-noise", type=float, default=0.0,
                    help="noise on the generator's images as the teacher sees them, same units")
    ap.add_argument("--renew", type=int, default=None,
                    help="rounds a generator lives before a freshly initialised one replaces it (0: never; default: "
                         "the engine's: renew_for, ENGINE_RENEW without a stats file, 0 with one)")
    ap.add_argument("--rewarm", type=int, default=ENGINE_REWARM,
                    help="generator-only rounds a renewed generator takes before its batches join the pool (default: "
                         "the engine's, ENGINE_REWARM)")
    ap.add_argument("--novelty", type=float, default=0.0,
                    help="weight of the feature-space novelty term (FeatureNovelty; default: off)")
    ap.add_argument("--gen-lr", type=float, default=Schedule.lr, help="the generator's learning rate (Adam)")
    ap.add_argument("--smoothness", type=float, default=None,
                    help="the recipe's total-variation weight on the generator's images (default: its own)")
    ap.add_argument("--within-target", default="running", choices=["running", "residual"],
                    help="each class's spread against the running std, or against what the class means leave of it")
    ap.add_argument("--save", default=None, help="save the student's weights here (.weights.h5) after the run")
    ap.add_argument("--mix", default=None, choices=["mixup", "cutmix"], help="how half of each student batch is mixed")
    ap.add_argument("--weight-decay", type=float, default=None,
                    help="decoupled weight decay of the student's kernels (default: its own)")
    ap.add_argument("--recal-probe", action="store_true",
                    help="also score the student with its BatchNorm statistics re-estimated other ways (noise x0, "
                         "x0.5, x2, with mirrored inputs, and on 5,000 real training images outside the split: the "
                         "ceiling), recorded as `recal`")
    ap.add_argument("--ema-probe", default=None,
                    help="comma-separated momenta of further moving averages of the student's weights, kept beside the "
                         "run's own (updated once a round, at the momentum to the power of the round's student steps; "
                         "the run's training is unchanged), or `swaF`: the plain mean of the weights after each round of "
                         "the last fraction F of the rounds; each scored after the run's re-estimation, as `ema_probe`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    _compat.set_seed(a.seed)
    teacher = load_teacher(os.path.join(DATA, "teachers", "cifar10_resnet8.h5"))
    stats = load_stats(a.stats) if a.stats else None
    recipe = replace(RECIPES["generator"], flip=a.flip)
    if a.class_weight is not None:
        recipe = replace(recipe, class_weight=a.class_weight)
    if a.targets:
        recipe = replace(recipe, targets=a.targets)
    if a.regions == "off":
        recipe = replace(recipe, regions=False)
    if a.within is not None:
        recipe = replace(recipe, within=a.within)
    if a.smoothness is not None:
        recipe = replace(recipe, smoothness=a.smoothness)
    plan = plan_for(teacher, stats, (0.0, 255.0), recipe)
    for o in plan.objectives:
        if isinstance(o, BatchNormStats):
            o.weight = a.bn_weight
            o.within_target = a.within_target
    student = design_student(teacher, width=a.width, seed=a.seed, multiple=a.channel_multiple)
    if a.renew is None:  # the engine's default (schedule_for), recorded in the row as resolved
        a.renew = renew_for(bool(a.stats))
    schedule = Schedule(rounds=a.rounds, gen_steps=a.gen_steps, student_steps=a.student_steps, warmup=a.warmup,
                        momentum=a.momentum, lr=a.gen_lr,
                        adversarial=a.adversarial, diversity=a.diversity,
                        student_flip=a.student_flip, meta=a.meta == "on", recent=a.recent,
                        student_noise=a.student_noise, gen_noise=a.gen_noise, renew=a.renew, rewarm=a.rewarm,
                        novelty=a.novelty,
                        **({"channels": a.channels} if a.channels else {}))
    distill = DistillConfig(**{k: v for k, v in (("features", a.features), ("loss", a.loss),
                                                 ("temperature", a.temperature), ("ema", a.ema),
                                                 ("lr", a.lr), ("mix", a.mix),
                                                 ("weight_decay", a.weight_decay)) if v is not None})
    t0 = time.time()
    shadows = ShadowAverages(student, a.ema_probe.split(","), a.student_steps) if a.ema_probe else None

    def progress(d, n):
        if shadows:
            shadows.update(d, n)
        if d % max(1, n // 10) == 0:
            print(f"round {d}/{n} {time.time() - t0:.0f} s", flush=True)

    syn = run_engine(teacher, student, plan, schedule, distill, seed=a.seed, on_progress=progress)
    seconds = time.time() - t0
    with np.load(os.path.join(DATA, "cifar10", "train_q75.npz"), allow_pickle=False) as d:
        idx = np.arange(0, len(d["y"]), 10)
        x, y = d["x"][idx].astype(np.float32), d["y"][idx]

    def acc(model):
        pred = np.concatenate([model(x[i:i + 1000], training=False).numpy().argmax(1) for i in range(0, len(x), 1000)])
        return round(100 * float((pred == y).mean()), 2)

    row = dict(vars(a), val_acc=acc(student), teacher_val=acc(teacher.logits_model), seconds=round(seconds),
               teacher_agreement=syn.teacher_agreement, student_agreement_held_out=syn.student_agreement,
               adapted=syn.notes, flip_agreement=syn.flip_agreement,
               generated=syn.generated, input_diversity=round(diversity(syn.x, syn.y), 4),
               student_params=int(student.count_params()), peak_rss_bytes=peak_memory_bytes())
    if a.save:
        student.save_weights(a.save)
    if a.recal_probe or shadows:
        # the noise the engine's re-estimation used for the student it handed on (both probes start from it)
        tolerated = recalibration_noise(teacher, syn.x, seed=a.seed)
    if a.recal_probe:
        row["recal"] = recal_probe(student, syn.x, tolerated, acc, a.seed)
    if shadows:
        row["ema_probe"] = shadows.score(syn, tolerated, acc, a.seed)
    print(json.dumps(row), flush=True)
    with open(os.path.join(HERE, "engine_sweep.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


class ShadowAverages:
    """Averages of the student's trainable weights beside the run's own (a diagnostic: the run trains as it would
    without them). A momentum ``m`` starts at the weights the student has when the warm-up ends (as the run's own
    average starts at the weights the optimiser first sees) and is updated once a round by ``m`` to the power of the
    round's student steps; ``swaF`` is the plain mean of the weights after each of the last fraction ``F`` of the
    rounds."""

    def __init__(self, student, keys, steps_per_round):
        for k in keys:  # refused now rather than after the warm-up
            float(k[3:] if k.startswith("swa") else k)
        self.student, self.keys, self.steps = student, keys, steps_per_round
        self.avg, self.count = None, {k: 0 for k in keys}

    def update(self, done, rounds):
        w = [v.numpy() for v in self.student.trainable_variables]
        if self.avg is None:
            self.avg = {k: [x.copy() for x in w] for k in self.keys}
            return
        for k, avg in self.avg.items():
            if k.startswith("swa"):
                if done <= rounds * (1.0 - float(k[3:])):
                    continue
                self.count[k] += 1
                r = 1.0 - 1.0 / self.count[k]
            else:
                r = float(k) ** self.steps
            for a_, x in zip(avg, w):
                a_ *= r
                a_ += (1.0 - r) * x

    def score(self, syn, noise, acc, seed):
        """Each average's validation accuracy, its BatchNorm statistics re-estimated as the engine does for the
        student it hands on (the student keeps the last average's weights)."""
        out = {}
        for m, avg in self.avg.items():
            for v, x in zip(self.student.trainable_variables, avg):
                v.assign(x)
            recalibrate_batchnorm(self.student, syn.x, noise=noise, mirror=bool(syn.mirrored), seed=seed)
            out[m] = acc(self.student)
        return out


def recal_probe(student, x_syn, tolerated, acc, seed):
    """The same weights scored with BatchNorm statistics re-estimated in other ways (a diagnostic: the student keeps the
    last way's statistics)."""
    with np.load(os.path.join(DATA, "cifar10", "train_q75.npz"), allow_pickle=False) as d:
        real = d["x"][np.arange(5, len(d["y"]), 10)].astype(np.float32)  # outside the validation split
    out = {"tolerated_std": round(tolerated, 3)}
    for name, x, noise, mirror in (("noise x0", x_syn, 0.0, False), ("noise x0.5", x_syn, 0.5 * tolerated, False),
                                   ("noise x2", x_syn, 2 * tolerated, False),
                                   ("mirrored, noise x1", x_syn, tolerated, True),
                                   ("real images", real, 0.0, False), ("noise x1", x_syn, tolerated, False)):
        recalibrate_batchnorm(student, x, noise=noise, mirror=mirror, seed=seed)
        out[name] = acc(student)
    return out


if __name__ == "__main__":
    main()
