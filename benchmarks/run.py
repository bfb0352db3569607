"""Quality and speed benchmarks: the data-free distillation table of Lopes et al., reproduced in int8.

    python benchmarks/run.py [--suite lenet5 fc cifar] [--seeds 2]

Every figure is the int8 student's accuracy on the real test set (LiteRT), as
the mean over seeds, with the wall time of the whole row on this machine.
Results go to benchmarks/RESULTS.md (a table per suite, with the command,
machine and date). Data and teachers come from $TINYDISTILL_DATA
(default ../shared/data); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import fields, replace
from functools import partial
from types import SimpleNamespace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import tinydistill as td  # noqa: E402
from tinydistill import _compat  # noqa: E402
from tinydistill.config import DistillConfig  # noqa: E402
from tinydistill.data import fit_to_teacher, load_data  # noqa: E402
from tinydistill.fitting.fitcheck import int8_predictions  # noqa: E402
from tinydistill.student.design import with_output_activation  # noqa: E402
from tinydistill.student.distillation import DEFAULT_EPOCHS, FEATURE_WEIGHT  # noqa: E402
from tinydistill.synthesis import DEFAULT_INPUTS, RECIPES, Recipe, SyntheticSet  # noqa: E402
from tinydistill.synthesis.methods import per_batch_method, recipe_for  # noqa: E402
from tinydistill.teacher.graph import batchnorm_after, layer_graph, reroute  # noqa: E402
from tinydistill.teacher.model import describe  # noqa: E402

DATA = os.environ.get("TINYDISTILL_DATA", os.path.join(ROOT, "..", "shared", "data"))


def int8_accuracy(teacher, student, calib, x, y, seed):
    tflite = td.export_int8(with_output_activation(student, teacher), calib, seed=seed)
    return float((int8_predictions(tflite, x) == y).mean())


def train_on_labels(teacher, width, x, y, epochs, seed):
    k = _compat.keras()
    student = td.design_student(teacher, width=width, seed=seed)
    student.compile(optimizer=k.optimizers.Adam(1e-3),
                    loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(x, y, batch_size=128, epochs=epochs, verbose=0, shuffle=True)
    return student


# Lopes et al.'s recipe inside our engine: whole-layer moments only, a randomly initialised
# student, KL at their temperature 8, outputs only. Our defaults differ in exactly these four knobs.
LOPES = {"recipe": Recipe(regions=False), "init": "random", "loss": "kl", "temperature": 8.0, "features": 0.0}


def _as_set(x, teacher, method):
    return SyntheticSet(x=x, y=np.zeros(len(x), np.int64), logits=np.zeros((len(x), teacher.num_classes), np.float32),
                        method=method)


def rows_for(teacher, stats, width, train, rng, seed, *, real_epochs, kd_epochs, n=DEFAULT_INPUTS, steps=None,
             suite="main"):
    """(row name, callable returning (student, calibration inputs)) for one suite.

    ``suite``: ``"main"`` (the published table's rows), ``"ablations"`` (our best, one knob
    changed per row), ``"bn"`` (a teacher with BatchNorm and no stats file) or ``"bn-ablations"``
    (the bn recipe, one knob changed per row).
    """
    lo, hi = rng
    xtr, ytr = train if train is not None else (None, None)

    def kd(x, init="teacher", loss="mse", temperature=4.0, augment=True, features=FEATURE_WEIGHT, batchnorm=None):
        s = td.design_student(teacher, width=width, seed=seed, init=init, batchnorm=batchnorm)
        return td.distill(teacher, s, _as_set(x, teacher, "given"), epochs=kd_epochs, loss=loss,
                          temperature=temperature, seed=seed, augment=augment, features=features), x

    def real_labels():
        return train_on_labels(teacher, width, xtr, ytr, real_epochs, seed), xtr

    def real_kd():
        s = td.design_student(teacher, width=width, seed=seed)
        return td.distill(teacher, s, _as_set(xtr, teacher, "real"), epochs=real_epochs, seed=seed), xtr

    def noise_kd():
        g = np.random.default_rng(seed)
        x = np.clip(g.normal((lo + hi) / 2, (hi - lo) / 4, (n,) + teacher.input_shape), lo, hi).astype(np.float32)
        return kd(x)

    def synthetic(method, st, recipe=None, **distill_kw):
        def run():
            syn = td.synthesize(teacher, st, method=method, n=n, steps=steps, input_range=rng, seed=seed, recipe=recipe)
            return kd(syn.x, **distill_kw)
        return run

    def refreshed(method, st):
        """Half the inputs, half the epochs; then a fresh half pushed to where student and teacher
        disagree (DeepInversion's competition), and the other half of the epochs on both halves."""
        def run():
            first = td.synthesize(teacher, st, method=method, n=n // 2, steps=steps, input_range=rng, seed=seed)
            s = td.design_student(teacher, width=width, seed=seed)
            td.distill(teacher, s, first, epochs=kd_epochs // 2, seed=seed)
            second = td.synthesize(teacher, st, method=method, n=n - n // 2, steps=steps, input_range=rng,
                                   seed=seed + 1000, student=s)
            x = np.concatenate([first.x, second.x])
            return td.distill(teacher, s, _as_set(x, teacher, method), epochs=kd_epochs - kd_epochs // 2,
                              seed=seed + 1000), x
        return run

    rows = []
    if suite == "main":
        if train is not None:
            rows += [("student trained on real labels", real_labels), ("real-data KD", real_kd)]
        rows.append(("Gaussian-noise KD", noise_kd))
        rows += [("top-layer (Lopes et al.'s recipe)", synthetic("top-layer", stats, **LOPES)),
                 ("all-layers (Lopes et al.'s recipe)", synthetic("all-layers", stats, **LOPES)),
                 ("layer-pairs spectral (Lopes et al.'s recipe)", synthetic("layer-pairs", stats, **LOPES)),
                 ("best with stats (ours: all-layers + regions, defaults)", synthetic("all-layers", stats)),
                 ("best without stats (ours: no-metadata prior, defaults)", synthetic("prior", None))]
    elif suite == "ablations":
        best, prior = RECIPES["all-layers"], RECIPES["prior"]
        # the two default rows are the main suite's "best with stats" and "best without stats"
        rows += [("with stats: randomly initialised student", synthetic("all-layers", stats, init="random")),
                 ("with stats: KL (T=4) instead of logit MSE", synthetic("all-layers", stats, loss="kl")),
                 ("with stats: no per-class conditioning", synthetic("all-layers", stats, replace(best, per_class=False))),
                 ("with stats: no augmentation in distillation", synthetic("all-layers", stats, augment=False)),
                 ("with stats: outputs only (no stage-feature term)", synthetic("all-layers", stats, features=0.0)),
                 ("with stats: pool refreshed halfway with disagreement samples", refreshed("all-layers", stats)),
                 ("with stats: layer-pairs spectral, our defaults", synthetic("layer-pairs", stats)),
                 ("no metadata: one-hot targets instead of Dirichlet",
                  synthetic("prior", None, replace(prior, targets="onehot"))),
                 ("no metadata: randomly initialised student", synthetic("prior", None, init="random"))]
    elif suite == "bn-ablations":
        bn = RECIPES["bn"]
        rows += [("bn recipe (defaults)", synthetic("bn", None)),
                 ("outputs only (no stage-feature term in distillation)", synthetic("bn", None, features=0.0)),
                 ("white-noise start instead of smooth noise", synthetic("bn", None, replace(bn, start="noise"))),
                 ("no jitter", synthetic("bn", None, replace(bn, jitter=False))),
                 ("lr 0.05 instead of 0.02", synthetic("bn", None, replace(bn, lr=0.05))),
                 ("class weight 1 instead of 0.2", synthetic("bn", None, replace(bn, class_weight=1.0))),
                 ("random flips (auto: on for this teacher)", synthetic("bn", None, replace(bn, flip="auto"))),
                 ("the former recipe (white noise, lr 0.05, TV 0.5, class weight 1, no jitter or flips)",
                  synthetic("bn", None, Recipe(start="noise", flip="off")))]
    elif suite == "natural":
        rows += [("BN statistics, per-batch pixels (bn, defaults)", synthetic("bn", None)),
                 # all-layers' recipe for this teacher (the image knobs) with its BatchNorm term off: what the stats
                 # file adds over the BatchNorm statistics, and what it gives alone
                 ("stats, per-batch pixels without BN (all-layers, image knobs)",
                  synthetic("all-layers", stats, replace(recipe_for("all-layers", teacher), batchnorm=False))),
                 ("stats + BN, per-batch pixels (all-layers, defaults)", synthetic("all-layers", stats))]
    elif suite == "no-bn":  # an image teacher without BatchNorm, with a stats file
        # the defaults: BatchNorm in the student (adds_batchnorm: a residual network without it) and the image knobs
        # (recipe_for: the teacher does not recognise the classes' recorded mean inputs)
        rows += [("stats, per-batch pixels (all-layers, defaults: the image knobs, a student with BatchNorm)",
                  synthetic("all-layers", stats)),
                 ("stats, per-batch pixels (all-layers, the recipe chosen on MNIST), a student with BatchNorm",
                  synthetic("all-layers", stats, RECIPES["all-layers"])),
                 ("stats, per-batch pixels (all-layers, the recipe chosen on MNIST), the student without BatchNorm "
                  "(the former default)", synthetic("all-layers", stats, RECIPES["all-layers"], batchnorm=False))]
    elif suite == "bn":
        rows += [("Gaussian-noise KD", noise_kd),
                 ("BatchNorm statistics (ours, DeepInversion-style)", synthetic("bn", None))]
        if train is not None:
            rows.insert(0, ("reference: KD on real images (see note)", real_kd))
    return rows


ROWS: tuple = ()  # --rows: run only the rows whose name contains one of these
FIRST_SEED = 0  # --first-seed: the seeds run are FIRST_SEED .. FIRST_SEED + seeds - 1


def selected(row: str) -> bool:
    """Whether ``--rows`` selects the row of this name (every row when it is not given)."""
    return not ROWS or any(r in row for r in ROWS)


def run_rows(name, rows, seeds):
    """Every row of ``rows(seed)`` (name, callable returning the int8 accuracy) that ``--rows`` selects, per seed:
    (row name, accuracies, seconds)."""
    results = []
    for row_name, _ in rows(0):
        if not selected(row_name):
            continue
        accs, secs = [], []
        for seed in range(FIRST_SEED, FIRST_SEED + seeds):
            fn = dict(rows(seed))[row_name]
            t0 = time.perf_counter()
            accs.append(fn())
            secs.append(time.perf_counter() - t0)
            print(f"[{name}] {row_name} seed {seed}: int8 {accs[-1]:.2%} in {secs[-1]:.0f} s", flush=True)
        results.append((row_name, accs, secs))
    return results


def _int8_of(teacher, fn, test, seed, calib=None):
    """The int8 accuracy on ``test`` of the student that ``fn`` returns with its calibration inputs (the first
    ``calib`` of them; None: all)."""
    student, x = fn()
    return int8_accuracy(teacher, student, x[:calib], *test, seed)


def run_suite(name, teacher, stats, width, train, test, rng, seeds, **kw):
    def rows(seed):
        return [(row, partial(_int8_of, teacher, fn, test, seed))
                for row, fn in rows_for(teacher, stats, width, train, rng, seed, **kw)]

    results = run_rows(name, rows, seeds)
    if ROWS and not results:
        sys.exit(f"error: no row of the {name} suite contains any of --rows {' '.join(ROWS)}: see the row names in "
                 "benchmarks/RESULTS.md")
    return results


def mnist(split):
    return load_data(os.path.join(DATA, "mnist"), split=split)


def _lenet5():
    t = td.load_teacher(os.path.join(DATA, "teachers", "mnist_lenet5.h5"))
    rng = (0.0, 1.0)
    train = fit_to_teacher(mnist("train"), t.input_shape, 10, rng)
    test = fit_to_teacher(mnist("test"), t.input_shape, 10, rng)
    return t, rng, train, test, td.record_stats(t, *train, input_range=rng)


def suite_lenet5(seeds):
    t, rng, train, test, stats = _lenet5()
    return t, run_suite("lenet5", t, stats, 0.5, train, test, rng, seeds, real_epochs=8, kd_epochs=DEFAULT_EPOCHS)


def suite_ablations(seeds):
    t, rng, train, test, stats = _lenet5()
    return t, run_suite("ablations", t, stats, 0.5, train, test, rng, seeds, real_epochs=8, kd_epochs=DEFAULT_EPOCHS,
                        suite="ablations")


def suite_fc(seeds):
    """FC 784-1200-1200-10 teacher (trained here on MNIST) -> 784-800-800-10 student."""
    k = _compat.keras()
    rng = (0.0, 1.0)
    xtr, ytr = fit_to_teacher(mnist("train"), (784,), 10, rng)
    test = fit_to_teacher(mnist("test"), (784,), 10, rng)
    _compat.set_seed(0)
    m = k.Sequential([k.Input((784,)), k.layers.Dense(1200, activation="relu", name="fc1"),
                      k.layers.Dense(1200, activation="relu", name="fc2"),
                      k.layers.Dense(10, activation="softmax", name="out")])
    m.compile(optimizer=k.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    m.fit(xtr, ytr, batch_size=128, epochs=10, verbose=0)
    t = describe(m, path="fc1200 (trained by the benchmark)")
    stats = td.record_stats(t, xtr, ytr, input_range=rng)
    return t, run_suite("fc", t, stats, 800 / 1200, (xtr, ytr), test, rng, seeds, real_epochs=8, kd_epochs=DEFAULT_EPOCHS)


CIFAR_INPUTS, CIFAR_STEPS = 12000, 80


def _cifar():
    """The ResNet-8 teacher, its input range, and test_q75 scaled for it (there is no CIFAR-10 training set here)."""
    t = td.load_teacher(os.path.join(DATA, "teachers", "cifar10_resnet8.h5"))
    rng = (0.0, 255.0)
    x, y = fit_to_teacher(load_data(os.path.join(DATA, "cifar10", "test_q75.npz")), t.input_shape, 10, rng)
    return t, rng, x, y


def suite_cifar(seeds):
    """ResNet-8 -> width 0.5 (a quarter of the parameters) from BatchNorm statistics. There is no
    CIFAR-10 training set here: every row is measured on the odd-numbered half of test_q75, and the
    reference row distils on the even-numbered half (5,000 real images, as many epochs as the others)."""
    t, rng, x, y = _cifar()
    even = np.arange(len(x)) % 2 == 0
    return t, run_suite("cifar", t, None, 0.5, (x[even], y[even]), (x[~even], y[~even]), rng, seeds,
                        real_epochs=DEFAULT_EPOCHS, kd_epochs=DEFAULT_EPOCHS, n=CIFAR_INPUTS, steps=CIFAR_STEPS,
                        suite="bn")


BN_ABLATION_INPUTS, BN_ABLATION_STEPS = 2000, 100


def suite_bn_ablations(seeds):
    """ResNet-8 -> width 0.5 from BatchNorm statistics, one knob of the bn recipe changed per row; a
    small budget (2,000 inputs x 100 steps, 30 epochs), so the figures sit well below the cifar suite's.
    Measured on the odd-numbered half of test_q75."""
    t, rng, x, y = _cifar()
    odd = np.arange(len(x)) % 2 == 1
    return t, run_suite("bn-ablations", t, None, 0.5, None, (x[odd], y[odd]), rng, seeds, real_epochs=0,
                        kd_epochs=30, n=BN_ABLATION_INPUTS, steps=BN_ABLATION_STEPS, suite="bn-ablations")


def _round_order(items: list, r: int) -> list:
    """``items`` in the order round ``r`` times them: each pair of rounds one order forwards and backwards, the
    next pair's rotated by one, so no timing always runs first or last. A fixed order biased the ratios: whatever
    ran last in a round was timed 30-44 ms faster on ResNet-8 ("Twentieth trial" in RESULTS.md)."""
    k = (r // 2) % len(items)
    order = items[k:] + items[:k]
    return order[::-1] if r % 2 else order


def _step_seconds(fn, repeats):
    fn()  # trace and warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def suite_speed(seeds):
    """Seconds per synthesis step against one bare teacher forward+backward (gradient with respect
    to the inputs) on the same batch of 500. A method's step time is the slope between a 20-step and
    a 60-step run on one batch, so tracing and the final labelling pass do not count. Each figure is
    the fastest of five rounds, and every round times the bare pass and each method's two runs
    back to back, so load that drifts over the minutes of the suite hits both sides of a ratio; each round
    in another order (rotated, every other one reversed), so none is always timed first or last.
    The engine's generator step is timed on its own batch (256) against a bare pass on 256: a generator
    forward and backward come on top of the teacher's, so its ratio is not the per-batch methods' kind.
    Then the end-to-end runs (:func:`end_to_end_runs`): MNIST and CIFAR-10 at the defaults, as a user runs them."""
    lenet, rng, train, _, stats = _lenet5()
    cifar = td.load_teacher(os.path.join(DATA, "teachers", "cifar10_resnet8.h5"))
    with np.load(os.path.join(DATA, "cifar10", "train_q75.npz"), allow_pickle=False) as d:
        pick = np.arange(0, len(d["y"]), 10)  # 5,000 training images: a step's time does not depend on which
        cifar_stats = td.record_stats(cifar, d["x"][pick].astype(np.float32), d["y"][pick], input_range=(0.0, 255.0))
    cases = [(lenet, stats, (0.0, 1.0), ["top-layer", "all-layers", "layer-pairs", "prior"]),
             (cifar, None, (0.0, 255.0), ["bn", "prior"]),
             (cifar, cifar_stats, (0.0, 255.0), ["all-layers"])]  # a stats file and BatchNorm statistics together
    rounds = max(seeds, 5)
    results = []
    for t, st, r, methods in cases:
        bare = _bare_pass(t, r, 500)
        runs = {(m, steps): partial(td.synthesize, t, st, method=m, n=500, steps=steps, input_range=r, seed=0)
                for m in methods for steps in (20, 60)}
        for fn in runs.values():
            fn()  # trace every method once before timing
        timed = [("bare", partial(_step_seconds, bare, 20))] + [(key, partial(_step_seconds, fn, 1))
                                                                 for key, fn in runs.items()]
        best = dict.fromkeys(dict(timed), float("inf"))
        for i in range(rounds):  # not ``r``: that is the case's input range
            for key, time_it in _round_order(timed, i):
                best[key] = min(best[key], time_it())
        base = best.pop("bare")
        for method in methods:
            per_step = (best[method, 60] - best[method, 20]) / 40
            name = os.path.basename(t.path) + (" + stats" if st is not None else "")
            print(f"[speed] {name} {method}: {1000 * per_step:.1f} ms/step, "
                  f"bare {1000 * base:.1f} ms, ratio {per_step / base:.2f}", flush=True)
            results.append((name, method, per_step, base))
        results.append(_generator_step(t, st, r, rounds))
    return lenet, (results, end_to_end_runs())


# the speed suite's end-to-end runs: (row, teacher file, test data, input range, stats data or None, width), all
# under DATA; each is `tinydistill stats` (not timed) then `tinydistill compress --board cortex-m4` at the defaults,
# as the acceptance checks run them
END_TO_END = (
    ("LeNet-5 -> half, with stats", "teachers/mnist_lenet5.h5", "mnist", "0,1", "mnist", 0.5),
    ("LeNet-5 -> half, without stats", "teachers/mnist_lenet5.h5", "mnist", "0,1", None, 0.5),
    ("ResNet-8 -> width 0.7, BatchNorm statistics only", "teachers/cifar10_resnet8.h5", "cifar10/test_q75.npz",
     "0,255", None, 0.7),
    ("ResNet-8 -> width 0.7, stats (train_q75) and BatchNorm", "teachers/cifar10_resnet8.h5", "cifar10/test_q75.npz",
     "0,255", "cifar10/train_q75.npz", 0.7),
)


def end_to_end_runs() -> list:
    """Each of :data:`END_TO_END` (those matching ``--rows``) as a user runs it, in a process of its own so its peak
    memory is its own: (row, wall seconds of compress, its report's stage seconds, int8 accuracy on the test data,
    peak host memory in bytes)."""
    cli = [sys.executable, "-c", "import sys; from tinydistill.cli import main; sys.exit(main())"]
    out = []
    for row, teacher, data, rng, stats_data, width in END_TO_END:
        if not selected(row):
            continue
        work = tempfile.mkdtemp(prefix="td-speed-")
        try:
            stats = []
            if stats_data:
                path = os.path.join(work, "stats.npz")
                subprocess.run(cli + ["stats", os.path.join(DATA, teacher), "--data", os.path.join(DATA, stats_data),
                                      "--input-range", rng, "-o", path], check=True, capture_output=True)
                stats = ["--stats", path]
            t0 = time.perf_counter()
            subprocess.run(cli + ["compress", os.path.join(DATA, teacher), "--board", "cortex-m4", *stats, "--data",
                                  os.path.join(DATA, data), "--input-range", rng, "--width", str(width),
                                  "-o", os.path.join(work, "out")], check=True, capture_output=True)
            wall = time.perf_counter() - t0
            with open(os.path.join(work, "out", "report.json")) as f:
                report = json.load(f)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        acc, peak = report["accuracy"]["student_int8"], report["host_memory"]["peak_rss_bytes"]
        print(f"[speed] {row}: {wall:.0f} s, int8 {acc:.2%}, peak {peak / 2**30:.2f} GiB", flush=True)
        out.append((row, wall, report["seconds"], acc, peak))
    return out


def _bare_pass(teacher, input_range, batch):
    """A compiled bare teacher forward+backward (gradient with respect to the inputs) on a fixed uniform batch."""
    tf = _compat.tf()
    x = tf.constant(np.random.default_rng(0).uniform(input_range[0], input_range[1],
                                                     (batch,) + teacher.input_shape).astype(np.float32))

    @tf.function
    def bare(x=x, m=teacher.logits_model):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(m(x, training=False))
        return tape.gradient(loss, x)

    return bare


def _generator_step(teacher, stats, input_range, rounds):
    """The engine's generator step (a batch of the engine's size: generator forward and backward, the teacher's
    probe, the student's forward for the disagreement term, Adam) against a bare teacher forward+backward on a
    batch of the same size, fastest of ``rounds`` rounds, each timing both back to back (in turn first). A round
    is one generator batch of eight steps, so the figure includes the batch's small numpy work (pool, targets)."""
    from tinydistill.synthesis.engine import BATCH, Schedule, _Engine, plan_for

    gen_steps = 8
    student = td.design_student(teacher, width=0.7, seed=0)
    eng = _Engine(teacher, student, plan_for(teacher, stats, input_range), Schedule(rounds=2, gen_steps=gen_steps,
                                                                                    warmup=1), seed=0)
    bare = _bare_pass(teacher, input_range, BATCH)
    eng.batch()  # trace
    timed = [("bare", partial(_step_seconds, bare, 10)), ("engine", lambda: _step_seconds(eng.batch, 1) / gen_steps)]
    best = dict.fromkeys(dict(timed), float("inf"))
    for i in range(rounds):
        for key, time_it in _round_order(timed, i):
            best[key] = min(best[key], time_it())
    base, per_step = best["bare"], best["engine"]
    name = os.path.basename(teacher.path) + (" + stats" if stats is not None else "")
    print(f"[speed] {name} generator (batch {BATCH}): {1000 * per_step:.1f} ms/step, bare {1000 * base:.1f} ms, "
          f"ratio {per_step / base:.2f}", flush=True)
    return name, f"generator (batch {BATCH})", per_step, base


def _int8_fidelity(t, stats, rng, x, y, real_calib, seeds, *, n=12000, epochs=30, tag="int8"):
    """Float vs int8 (synthetic calibration) vs int8 (real calibration) vs QAT for one teacher."""
    from tinydistill.student.finetune import quantization_aware

    rows = {"float student": [], "int8, synthetic calibration": [], "int8, real calibration": [], "int8, QAT (5 epochs)": []}
    secs = {k: [] for k in rows}
    for seed in range(FIRST_SEED, FIRST_SEED + seeds):
        t0 = time.perf_counter()
        syn = td.synthesize(t, stats, n=n, input_range=rng, seed=seed)
        s = td.distill(t, td.design_student(t, width=0.5, seed=seed), syn, epochs=epochs, seed=seed)
        base = time.perf_counter() - t0
        f = with_output_activation(s, t)
        rows["float student"].append(float((f.predict(x, verbose=0, batch_size=1024).argmax(1) == y).mean()))
        secs["float student"].append(base)
        for name, calib in (("int8, synthetic calibration", syn.x), ("int8, real calibration", real_calib)):
            t1 = time.perf_counter()
            rows[name].append(float((int8_predictions(td.export_int8(f, calib, seed=seed), x) == y).mean()))
            secs[name].append(base + time.perf_counter() - t1)
        t1 = time.perf_counter()
        q = with_output_activation(quantization_aware(t, s, syn, epochs=5, seed=seed), t)
        rows["int8, QAT (5 epochs)"].append(float((int8_predictions(td.export_int8(q, syn.x, seed=seed), x) == y).mean()))
        secs["int8, QAT (5 epochs)"].append(base + time.perf_counter() - t1)
        print(f"[{tag}] seed {seed}: " + ", ".join(f"{k} {v[-1]:.2%}" for k, v in rows.items()), flush=True)
    return [(k, rows[k], secs[k]) for k in rows]


def suite_int8(seeds):
    """LeNet-5-half distilled with stats; real calibration: 2,000 MNIST training images."""
    t = td.load_teacher(os.path.join(DATA, "teachers", "mnist_lenet5.h5"))
    rng = (0.0, 1.0)
    xtr, ytr = fit_to_teacher(mnist("train"), t.input_shape, 10, rng)
    x, y = fit_to_teacher(mnist("test"), t.input_shape, 10, rng)
    stats = td.record_stats(t, xtr, ytr, input_range=rng)
    return t, _int8_fidelity(t, stats, rng, x, y, xtr[:2000], seeds)


def suite_int8_cifar(seeds):
    """ResNet-8 width 0.5 from BN statistics (4,000 inputs, 20 epochs: fidelity, not quality).
    No CIFAR training set here: real calibration uses every 5th test_q75 image, and all rows are
    measured on the other 8,000."""
    t, rng, x, y = _cifar()
    calib = np.arange(len(x)) % 5 == 0
    return t, _int8_fidelity(t, None, rng, x[~calib], y[~calib], x[calib], seeds, n=4000, epochs=20, tag="int8-cifar")


def _engine_row(teacher, stats, width, rng, seed, effort=1.0, recipe=None, distill=None, clean_recalibration=False,
                **schedule):
    """Method generator at its defaults (times ``effort``), with schedule fields, the recipe or the distillation
    config changed for an ablation; ``clean_recalibration``: the student's BatchNorm statistics re-estimated on the
    generated inputs without the noise the teacher tolerates."""
    from tinydistill.config import SynthesisConfig, resolve_counts
    from tinydistill.student.distillation import recalibrate_batchnorm
    from tinydistill.synthesis import engine

    unknown = set(schedule) - {f.name for f in fields(engine.Schedule)}
    if unknown:  # now, not when the row runs, hours into a suite
        raise TypeError(f"_engine_row: Schedule has no field {', '.join(sorted(unknown))}")

    def run():
        syn_cfg, dist_cfg = resolve_counts("generator", SynthesisConfig(method="generator"), distill or DistillConfig(),
                                           effort)
        s = td.design_student(teacher, width=width, seed=seed)
        sched = replace(engine.schedule_for(syn_cfg, dist_cfg), **schedule)
        cfg = replace(dist_cfg, recalibrate=False) if clean_recalibration else dist_cfg
        syn = engine.run_engine(teacher, s, engine.plan_for(teacher, stats, rng, recipe), sched, cfg, seed=seed)
        if clean_recalibration:
            recalibrate_batchnorm(s, syn.x, seed=seed)
        return s, syn.x
    return run


def natural_rows(teacher, stats, width, train, rng, seed):
    """#18's table: real-data rows on train_q75, then data-free rows (per-batch pixels and the engine)."""
    xtr, ytr = train
    base = rows_for(teacher, stats, width, train, rng, seed, real_epochs=NATURAL_REAL_EPOCHS, kd_epochs=DEFAULT_EPOCHS)
    real = [r for r in base if r[0] in ("student trained on real labels", "real-data KD")]
    noise = [r for r in base if r[0] == "Gaussian-noise KD"]
    pixel = dict(rows_for(teacher, stats, width, train, rng, seed, real_epochs=0, kd_epochs=DEFAULT_EPOCHS, suite="natural"))
    gen = RECIPES["generator"]
    return real + noise + list(pixel.items()) + [
        ("engine from BN statistics (generator, defaults)", _engine_row(teacher, None, width, rng, seed)),
        ("engine with stats + BN (generator, defaults)", _engine_row(teacher, stats, width, rng, seed)),
        ("engine with stats, without BN statistics", _engine_row(teacher, stats, width, rng, seed,
                                                                 recipe=replace(gen, batchnorm=False))),
        ("engine from BN: no student-teacher disagreement term", _engine_row(teacher, None, width, rng, seed,
                                                                              adversarial=0.0)),
        ("engine from BN: with Fast-DFKD's batch memory (momentum 0.9)", _engine_row(teacher, None, width, rng, seed,
                                                                                     momentum=0.9)),
        ("engine from BN: no per-class BN spread term", _engine_row(teacher, None, width, rng, seed,
                                                                     recipe=replace(gen, within=0.0))),
        ("engine from BN: no stage-feature term while distilling",
         _engine_row(teacher, None, width, rng, seed, distill=DistillConfig(features=0.0))),
        ("engine from BN: BatchNorm recalibration without noise",
         _engine_row(teacher, None, width, rng, seed, clean_recalibration=True)),
        ("engine from BN: no moving average of the student's weights",
         _engine_row(teacher, None, width, rng, seed, distill=DistillConfig(ema=0.0))),
        ("engine from BN: the student's batches not mirrored",
         _engine_row(teacher, None, width, rng, seed, student_flip="off")),
        ("engine from BN: random flips", _engine_row(teacher, None, width, rng, seed, recipe=replace(gen, flip="on"))),
    ] + [(f"engine from BN, effort {e:g}", _engine_row(teacher, None, width, rng, seed, effort=e)) for e in EFFORTS]


NATURAL_REAL_EPOCHS = 30
EFFORTS = (0.25, 0.5, 2.0)  # the quality-vs-time curve (effort 1 is the defaults row)


def _natural(width):
    def suite(seeds):
        """ResNet-8 -> the width in the title, int8 on test_q75. Real rows and the publisher's stats use
        train_q75 (the teacher's own training images); data-free rows see no image."""
        t, rng, x, y = _cifar()
        train = fit_to_teacher(load_data(os.path.join(DATA, "cifar10", "train_q75.npz")), t.input_shape, 10, rng)
        needs_stats = not ROWS or any("stats" in r and "BN statistics" not in r for r in ROWS)
        stats = td.record_stats(t, *train, input_range=rng) if needs_stats else None
        return t, run_natural(f"natural-{width:g}", t, stats, width, train, (x, y), rng, seeds)
    return suite


def _wakeword(width):
    def suite(seeds):
        """The MLPerf Tiny DS-CNN keyword teacher (spectrograms, 3 classes, BatchNorm, no training data here)
        -> the width in the title, int8 on the 45 samples that ship with it (each sample is 2.2 pp). Every
        data-free row is ``compress`` as a user runs it (``--board cortex-m4``, the method named, everything
        else at the defaults, so flips and the rest are decided from the teacher); the real-data and stats rows
        of the natural-image tables do not apply: there are no training spectrograms to record from."""
        t, test = wakeword_teacher()
        return t, run_rows(f"wakeword-{width:g}", partial(wakeword_rows, t, width, test), seeds)
    return suite


def wakeword_teacher():
    """The MLPerf Tiny DS-CNN keyword teacher and its 45 samples, in [0, 1]."""
    t = td.load_teacher(os.path.join(DATA, "teachers", "wakeword_dscnn.h5"))
    return t, fit_to_teacher(load_data(os.path.join(DATA, "teachers", "wakeword_dscnn_samples.npz")), t.input_shape,
                             t.num_classes, (0.0, 1.0))


def _compress_row(teacher, width, test, seed, method, *, board="cortex-m4", stats=None, input_range=(0.0, 1.0)):
    """A row that runs ``compress`` as a user does (``--board cortex-m4``, ``method``, the rest at the defaults) and
    returns the int8 accuracy on ``test``."""
    x, y = test

    def run():
        res = td.compress(teacher, board=board, stats=stats, data=(x, y), width=width, method=method,
                          input_range=input_range, seed=seed)
        return res.report["accuracy"]["student_int8"]
    return run


def wakeword_rows(teacher, width, test, seed):
    """(row name, callable returning the int8 accuracy on ``test``) of the wake-word table."""
    noise = dict(rows_for(teacher, None, width, None, (0.0, 1.0), seed, real_epochs=0, kd_epochs=DEFAULT_EPOCHS,
                          suite="bn"))["Gaussian-noise KD"]
    return [("Gaussian-noise KD", partial(_int8_of, teacher, noise, test, seed, 2000)),
            ("BatchNorm statistics, per-batch pixels (bn: auto's choice, defaults)",
             _compress_row(teacher, width, test, seed, "auto")),
            ("engine from BN statistics (generator, defaults)", _compress_row(teacher, width, test, seed, "generator"))]


def _non_image_specs():
    """An MLP on the 784 pixels as a vector, and 1-D convolutions over the 28 rows as time steps of 28 channels (a
    sensor-like sequence): (name, input shape, width under half its parameters, layers)."""
    L = _compat.keras().layers
    return [("MLP 784-256-128 with BatchNorm, vector input", (784,), 0.5,
             [L.Dense(256, use_bias=False), L.BatchNormalization(), L.ReLU(), L.Dense(128, use_bias=False),
              L.BatchNormalization(), L.ReLU()]),
            ("Conv1D 32-64-64 with BatchNorm, 28 steps x 28 channels", (28, 28), 0.7,
             [layer for f, st in ((32, 1), (64, 2), (64, 2))
              for layer in (L.Conv1D(f, 3, strides=st, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU())]
             + [L.GlobalAveragePooling1D()])]


def _image_bn_specs():
    """A plain 2-D CNN with BatchNorm on the 28 x 28 digits, the kind of small image model a user trains (no stats
    file, no model of ours): (name, input shape, width under half its parameters, layers)."""
    L = _compat.keras().layers
    return [("CNN 16-32-64 with BatchNorm, 28 x 28 x 1 images", (28, 28, 1), 0.7,
             [layer for f in (16, 32, 64)
              for layer in (L.Conv2D(f, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
                            L.MaxPooling2D())] + [L.Flatten(), L.Dense(64, use_bias=False), L.BatchNormalization(),
                                                  L.ReLU()])]


def _mnist_teachers(work, specs):
    """Teachers with BatchNorm trained here on MNIST (5 epochs, seed 0) and saved as a user's .h5:
    (name, teacher, width, test data) for every (name, input shape, width, layers) of ``specs``."""
    k = _compat.keras()
    L = k.layers
    out = []
    for i, (name, shape, width, layers) in enumerate(specs):
        x, y = fit_to_teacher(mnist("train"), shape, 10, (0.0, 1.0))
        _compat.set_seed(0)
        m = k.Sequential([k.Input(shape), *layers, L.Dense(10, activation="softmax")])
        m.compile(optimizer=k.optimizers.Adam(2e-3 if len(shape) == 2 else 1e-3), loss="sparse_categorical_crossentropy")
        m.fit(x, y, batch_size=128, epochs=5, verbose=0)
        path = os.path.join(work, f"teacher{i}.h5")
        m.save(path)
        out.append((name, td.load_teacher(path), width, fit_to_teacher(mnist("test"), shape, 10, (0.0, 1.0))))
    return out


def _teacher_accuracy(teacher, test):
    x, y = test
    return float((np.argmax(teacher.model.predict(x, batch_size=1000, verbose=0), axis=-1) == y).mean())


def _bn_teachers_suite(key, specs, methods, seeds):
    """Rows that run ``compress`` as a user does with each of ``methods`` ((label, method)) on each teacher of
    ``specs``, trained by the suite; int8 on the 10,000 MNIST test images."""
    work = tempfile.mkdtemp(prefix=f"td-{key}-")
    try:
        teachers = _mnist_teachers(work, specs())

        def rows(seed):
            return [(f"{name}: {label}", _compress_row(t, width, test, seed, method)) for name, t, width, test in teachers
                    for label, method in methods]
        about = " and ".join(f"{name.split(' with ')[0]} ({t.params:,} parameters, float {_teacher_accuracy(t, test):.2%})"
                             for name, t, _, test in teachers)
        return SimpleNamespace(path=f"{about}, trained by the benchmark", params=None), run_rows(key, rows, seeds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def suite_non_image_bn(seeds):
    """Per-batch pixels (bn) against the engine (generator) on teachers with BatchNorm whose inputs are not images,
    as ``compress`` runs them (``--board cortex-m4``, width under half the parameters, the rest at the defaults),
    int8 on the 10,000 MNIST test images: what ``auto`` should choose for such a teacher (it chooses bn; the engine
    won on the wake-word DS-CNN, see its tables)."""
    return _bn_teachers_suite("non-image-bn", _non_image_specs, (("bn (auto's choice)", "auto"),
                                                                 ("engine (generator)", "generator")), seeds)


def suite_image_bn(seeds):
    """The engine (auto's choice for an image teacher with BatchNorm, chosen on CIFAR-10) against per-batch pixels
    from the BatchNorm statistics (bn) and the no-metadata prior, on a small CNN with BatchNorm trained here on
    MNIST digits, as ``compress`` runs them (``--board cortex-m4``, width 0.7, the rest at the defaults), int8 on
    the 10,000 MNIST test images: whether auto's choice holds on an image teacher that is not CIFAR-10's."""
    return _bn_teachers_suite("image-bn", _image_bn_specs, (("engine (generator: auto's choice)", "auto"),
                                                            ("bn, per-batch pixels", "bn"), ("prior", "prior")), seeds)


def fold_batchnorm(model):
    """A copy of a functional Keras ``model`` with every BatchNormalization that directly follows a Conv2D or Dense
    layer (whose only consumer it is) folded into that layer's kernel and bias: the same function, no BatchNorm."""
    k = _compat.keras()
    graph = layer_graph(model)
    kinds = {node.name: node.kind for node in graph}

    def over_last_axis(bn):  # the kernel's output axis, the one the BatchNorm's scale multiplies
        return list(np.ravel(bn.axis)) in ([-1], [len(bn.input_shape) - 1])
    folds = {bn: src for src, bn in batchnorm_after(graph).items()  # BatchNormalization name -> the layer it folds into
             if kinds[src] in ("Conv2D", "Dense") and over_last_axis(model.get_layer(bn))}
    config = model.get_config()

    config["layers"] = [layer for layer in config["layers"] if layer["name"] not in folds]
    reroute(config, folds)  # a consumer of a folded BatchNormalization reads the layer it was folded into
    for layer in config["layers"]:
        if layer["name"] in folds.values():
            layer["config"]["use_bias"] = True
    folded = k.Model.from_config(config)
    into = {v: model.get_layer(b) for b, v in folds.items()}
    for layer in folded.layers:
        old = model.get_layer(layer.name)
        if layer.name not in into:
            layer.set_weights(old.get_weights())
            continue
        bn, kernel = into[layer.name], old.get_weights()[0]
        bias = old.get_weights()[1] if old.use_bias else np.zeros(kernel.shape[-1], np.float32)
        scale = (bn.gamma.numpy() if bn.scale else 1.0) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
        shift = bn.beta.numpy() if bn.center else 0.0
        layer.set_weights([kernel * scale, (bias - bn.moving_mean.numpy()) * scale + shift])
    return folded


def suite_image_no_bn(seeds):
    """CIFAR-10 ResNet-8 with every BatchNorm folded into the convolution before it (the same function, no
    BatchNorm layers): a natural-image teacher without BatchNorm, with a stats file recorded on train_q75, -> width
    0.7. Per-batch ``all-layers``, which ``auto`` runs on it, at its defaults (the ``bn`` recipe's image knobs, as the
    teacher does not recognise the classes' recorded mean inputs; a student with BatchNorm, as the teacher is a
    residual network without it), against the recipe chosen on MNIST's LeNet-5, with and without BatchNorm in the
    student (the former default). 6,000 inputs (a quarter of the defaults) and the default epochs. Int8 on test_q75."""
    work = tempfile.mkdtemp(prefix="td-no-bn-")
    try:
        cifar, rng, x, y = _cifar()
        path = os.path.join(work, "resnet8_folded.h5")
        fold_batchnorm(cifar.model).save(path)
        t = td.load_teacher(path)
        train = fit_to_teacher(load_data(os.path.join(DATA, "cifar10", "train_q75.npz")), t.input_shape, 10, rng)
        stats = td.record_stats(t, *train, input_range=rng)
        about = (f"cifar10_resnet8.h5 with its BatchNorm folded ({t.params:,} parameters, float "
                 f"{_teacher_accuracy(t, (x, y)):.2%}; {'no' if not t.has_batchnorm else 'some'} BatchNorm left)")
        results = run_suite("image-no-bn", t, stats, 0.7, None, (x, y), rng, seeds, real_epochs=0,
                            kd_epochs=DEFAULT_EPOCHS, n=DEFAULT_INPUTS // 4, suite="no-bn")
        return SimpleNamespace(path=about, params=None), results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _distilled_whole(teacher, stats, input_range, seed):
    """compress's path before a teacher that fits whole was quantised as it is: a width-1 copy of the teacher (its
    weights) distilled on the per-batch method's synthetic set, both at their defaults."""
    def run():
        syn = td.synthesize(teacher, stats, method=per_batch_method(teacher, stats)[0], input_range=input_range,
                            seed=seed)
        return td.distill(teacher, td.design_student(teacher, width=1.0, seed=seed), syn, seed=seed), syn.x
    return run


def suite_fits_whole(seeds):
    """Teachers that fit their board whole (``--board raspberry-pi-4``: the search keeps width 1), ``compress`` at the
    defaults, which quantises the teacher as it is, against the former default: the width-1 copy distilled on the
    per-batch method's synthetic set (all-layers with the stats file, else bn), int8 on each teacher's test data.
    ResNet-8 has no distilled row: there the former default was the engine, half an hour at width 1."""
    work = tempfile.mkdtemp(prefix="td-fits-whole-")
    try:
        lenet, lrng, _, ltest, lstats = _lenet5()
        _, mlp, _, mtest = _mnist_teachers(work, [s for s in _non_image_specs() if s[0].startswith("MLP")])[0]
        ww, wtest = wakeword_teacher()
        cifar, crng, cx, cy = _cifar()
        cases = [("LeNet-5, with its stats file", lenet, lstats, ltest, lrng),
                 ("MLP 784-256-128 with BatchNorm (trained here)", mlp, None, mtest, (0.0, 1.0)),
                 ("wake-word DS-CNN (its 45 samples)", ww, None, wtest, (0.0, 1.0)),
                 ("CIFAR-10 ResNet-8", cifar, None, (cx, cy), crng)]

        def rows(seed):
            out = []
            for name, t, st, test, rng in cases:
                out.append((f"{name}: quantised as it is (defaults)",
                            _compress_row(t, "auto", test, seed, "auto", board="raspberry-pi-4", stats=st,
                                          input_range=rng)))
                if t is not cifar:
                    out.append((f"{name}: width-1 copy distilled (the former default)",
                                partial(_int8_of, t, _distilled_whole(t, st, rng, seed), test, seed)))
            return out
        return SimpleNamespace(path="LeNet-5, an MLP with BatchNorm trained here, the wake-word DS-CNN, ResNet-8",
                               params=None), run_rows("fits-whole", rows, seeds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def suite_frozen_bn(seeds):
    """A teacher fine-tuned with its BatchNorm frozen, as transfer learning leaves one: an MLP 784-256-128 with
    BatchNorm trained here for 2 epochs on inverted MNIST digits (the pretraining domain, which its BatchNorm
    statistics keep), then its BatchNorm layers frozen (``trainable`` False: inference mode) and 2 epochs on the
    digits themselves. ``compress`` as a user runs it (``--board cortex-m4``, ``auto``, which picks ``bn``), at the
    width the search chooses and at 0.5, int8 on the 10,000 MNIST test images."""
    k = _compat.keras()
    L = k.layers
    work = tempfile.mkdtemp(prefix="td-frozen-bn-")
    try:
        shape = (784,)
        x, y = fit_to_teacher(mnist("train"), shape, 10, (0.0, 1.0))
        test = fit_to_teacher(mnist("test"), shape, 10, (0.0, 1.0))
        _compat.set_seed(0)
        m = k.Sequential([k.Input(shape), L.Dense(256, use_bias=False), L.BatchNormalization(), L.ReLU(),
                          L.Dense(128, use_bias=False), L.BatchNormalization(), L.ReLU(),
                          L.Dense(10, activation="softmax")])
        for data in (1.0 - x, x):  # pretraining domain, then the task with BatchNorm frozen
            m.compile(optimizer=k.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
            m.fit(data, y, batch_size=128, epochs=2, verbose=0)
            for layer in m.layers:
                if isinstance(layer, L.BatchNormalization):
                    layer.trainable = False
        path = os.path.join(work, "frozen_bn_mlp.h5")
        m.save(path)
        t = td.load_teacher(path)

        def rows(seed):
            return [(f"MLP, BatchNorm frozen: width {w}", _compress_row(t, w, test, seed, "auto")) for w in ("auto", 0.5)]
        about = (f"MLP 784-256-128 with frozen BatchNorm ({t.params:,} parameters, float "
                 f"{_teacher_accuracy(t, test):.2%}; {_teacher_accuracy(t, (1.0 - test[0], test[1])):.2%} on the "
                 "inverted test digits)")
        return SimpleNamespace(path=f"{about}, trained by the benchmark", params=None), run_rows("frozen-bn", rows, seeds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cells(line: str) -> list:
    """The cells of a markdown table row (``| a | b |``), stripped; [] for any other line."""
    return [c.strip() for c in line.strip().strip("|").split(" | ")] if line.startswith("| ") else []


def table_rows(section: str) -> list:
    """(row name, mean accuracy in %, mean seconds) of every row of a section's results table."""
    rows = []
    for cells in map(_cells, section.split("\n")):
        if len(cells) == 4 and cells[1].endswith(" %"):
            rows.append((cells[0], float(cells[1][:-2]), float(cells[3].replace(",", ""))))
    return rows


def quality_vs_time(rows, path):
    """The engine's effort rows (and its defaults row, effort 1) as int8 accuracy against wall minutes; ``rows``:
    (name, accuracy %, seconds), as :func:`table_rows` reads them from the section, so rows re-measured alone
    (``--rows``) are drawn with the others."""
    from tinydistill.reporting.plots import _pyplot

    points = []
    for name, acc, secs in rows:
        if name.startswith("engine from BN, effort "):
            points.append((float(name.rsplit(" ", 1)[1]), secs / 60, acc))
        elif name == "engine from BN statistics (generator, defaults)":
            points.append((1.0, secs / 60, acc))
    if len(points) < 2:
        return None
    points.sort(key=lambda p: p[1])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot([p[1] for p in points], [p[2] for p in points], "o-")
    for e, m, a in points:
        ax.annotate(f"--effort {e:g}", (m, a), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("wall minutes on this machine (compress, 2 cores)")
    ax.set_ylabel("int8 accuracy, test_q75 (%)")
    ax.set_title("CIFAR-10 ResNet-8 -> width 0.7 from BN statistics", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_natural(name, teacher, stats, width, train, test, rng, seeds):
    def rows(seed):
        return [(row, partial(_int8_of, teacher, fn, test, seed, 2000))
                for row, fn in natural_rows(teacher, stats, width, train, rng, seed)]

    return run_rows(name, rows, seeds)


SUITES = {"speed": ("Synthesis step time against a bare teacher forward+backward", suite_speed),
          "lenet5": ("LeNet-5 -> LeNet-5-half, MNIST", suite_lenet5),
          "fc": ("FC 784-1200-1200-10 -> 784-800-800-10, MNIST", suite_fc),
          "cifar": ("CIFAR-10 ResNet-8 (MLPerf Tiny) -> width 0.5, test_q75", suite_cifar),
          "ablations": ("Ablations: LeNet-5 -> LeNet-5-half, MNIST, one knob changed per row", suite_ablations),
          "bn-ablations": ("Ablations: CIFAR-10 ResNet-8 -> width 0.5 from BatchNorm statistics, one knob of the "
                           "bn recipe changed per row", suite_bn_ablations),
          "int8": ("int8 fidelity: LeNet-5-half distilled with stats, MNIST", suite_int8),
          "int8-cifar": ("int8 fidelity: ResNet-8 width 0.5 from BatchNorm statistics, CIFAR-10", suite_int8_cifar),
          "natural-0.7": ("Natural images: CIFAR-10 ResNet-8 -> width 0.7 (about half the parameters), test_q75",
                          _natural(0.7)),
          "natural-0.5": ("Natural images: CIFAR-10 ResNet-8 -> width 0.5, test_q75", _natural(0.5)),
          # 0.65: the widest student under half the teacher's parameters (22,943 of 47,707; 0.7 has 54 %)
          "wakeword-0.65": ("Wake-word: MLPerf Tiny DS-CNN -> width 0.65 (48 % of the parameters), its 45 samples",
                            _wakeword(0.65)),
          "wakeword-0.5": ("Wake-word: MLPerf Tiny DS-CNN -> width 0.5, its 45 samples", _wakeword(0.5)),
          "non-image-bn": ("Teachers with BatchNorm and non-image inputs (trained here on MNIST): bn against the engine",
                           suite_non_image_bn),
          "image-bn": ("An image teacher with BatchNorm that is not CIFAR-10's (a CNN trained here on MNIST): the engine "
                       "against bn and prior", suite_image_bn),
          "image-no-bn": ("A natural-image teacher without BatchNorm, with a stats file: CIFAR-10 ResNet-8 with its "
                          "BatchNorm folded -> width 0.7, test_q75", suite_image_no_bn),
          "fits-whole": ("A teacher that fits its board whole: quantised as it is, against a width-1 copy distilled",
                         suite_fits_whole),
          "frozen-bn": ("BatchNorm frozen in the teacher (transfer learning): its statistics from another domain",
                        suite_frozen_bn)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", nargs="+", choices=list(SUITES), default=list(SUITES))  # all: about 3 h on 2 cores
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--note", default="", help="A line added to each section, e.g. about the machine's load.")
    ap.add_argument("--rows", nargs="+", default=[], metavar="TEXT",
                    help="Run only the rows whose name contains TEXT; the section keeps its other rows and says which "
                         "were re-measured, when and at which commit (the speed suite: only the end-to-end runs whose "
                         "name contains TEXT, its step times always; its section is rewritten).")
    ap.add_argument("--first-seed", type=int, default=0, metavar="K",
                    help="Run seeds K .. K + seeds - 1 (e.g. one more seed of a row: --first-seed 1 --seeds 1); the "
                         "table then holds those seeds only: merge them into a fuller row by hand.")
    args = ap.parse_args()
    global ROWS, FIRST_SEED
    ROWS, FIRST_SEED = tuple(args.rows), args.first_seed
    if not os.path.isdir(DATA):
        sys.exit(f"error: shared data not found at {DATA}: set TINYDISTILL_DATA")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sections = _read_sections(args.out)
    for key in args.suite:
        title, fn = SUITES[key]
        t0 = time.perf_counter()
        teacher, results = fn(args.seeds)
        lines = [f"## {title}", "",
                 f"Command: `python benchmarks/run.py --suite {key} {_seed_flags(args)}` (commit {commit or '?'})  ",
                 f"Machine: {machine()}  ", f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}  ",
                 f"Teacher: {os.path.basename(teacher.path)}" + (f", {teacher.params:,} parameters" if teacher.params else "")
                 + ". "
                 f"Suite wall time {time.perf_counter() - t0:,.0f} s." + (f" {args.note}" if args.note else ""), "",
                 ]
        if key == "speed":
            lines += [(fn.__doc__ or "").replace("\n    ", " ").strip(), "",
                      "| teacher | method | ms per step | bare fwd+bwd ms | ratio |", "| --- | --- | ---: | ---: | ---: |"]
            steps, runs = results
            lines += [f"| {tn} | {m} | {1000 * ps:.1f} | {1000 * b:.1f} | {ps / b:.2f} |" for tn, m, ps, b in steps]
            if runs:
                lines += ["", " ".join((end_to_end_runs.__doc__ or "").split()), "",
                          "| run | compress s | of which (report.json) | int8 accuracy | peak host memory |",
                          "| --- | ---: | --- | ---: | ---: |"]
                lines += [f"| {row} | {wall:,.0f} | {', '.join(f'{k} {v:,.0f}' for k, v in sec.items() if k != 'total')} "
                          f"| {100 * acc:.2f} % | {peak / 2**30:.2f} GiB |" for row, wall, sec, acc, peak in runs]
        else:
            described = ("cifar", "bn-ablations", "non-image-bn", "image-bn", "image-no-bn", "frozen-bn", "fits-whole")
            if key in described or key.startswith(("natural", "wakeword")):
                lines += [" ".join((fn.__doc__ or "").split()) +
                          (f" Synthesis: {CIFAR_INPUTS:,} inputs x {CIFAR_STEPS} steps." if key == "cifar" else ""), ""]
            lines += ["| method | accuracy (mean) | per seed | seconds per run (mean) |", "| --- | ---: | --- | ---: |"]
            for name, accs, secs in results:
                lines.append(f"| {name} | {100 * np.mean(accs):.2f} % | {', '.join(f'{100 * a:.2f}' for a in accs)} "
                             f"| {np.mean(secs):,.0f} |")
        sections = _read_sections(args.out)  # again: another run may have written meanwhile
        if ROWS and key != "speed" and title in sections:
            lines = _merge_rows(sections[title], lines, results, args, commit)
        sections[title] = "\n".join(lines)
        _write(args.out, sections)  # after every suite: a long run keeps what it finished
        if key == "natural-0.7":  # the curve from the whole table: rows measured now and those kept from earlier runs
            quality_vs_time(table_rows(sections[title]), os.path.join(HERE, "quality_vs_time.png"))


def _seed_flags(args) -> str:
    """The run's seed options as its command line gave them: ``--seeds N`` and, when not 0, ``--first-seed K``."""
    return f"--seeds {args.seeds}" + (f" --first-seed {args.first_seed}" if args.first_seed else "")


def _merge_rows(old: str, new: list, results, args, commit) -> list:
    """The old section with the re-measured rows replaced (or added) and a line saying so."""
    lines = old.split("\n")
    names = {r[0] for r in results}
    fresh = {_cells(ln)[0]: ln for ln in new if _cells(ln)[:1] and _cells(ln)[0] in names}
    for name, ln in fresh.items():
        at = [i for i, old_ln in enumerate(lines) if _cells(old_ln)[:1] == [name]]
        if at:
            lines[at[0]] = ln
        else:  # after the table's last row, not after the prose that may follow it
            rows = [i for i, old_ln in enumerate(lines) if len(_cells(old_ln)) == 4]
            lines.insert(rows[-1] + 1 if rows else len(lines), ln)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    note = (f"Re-measured with `--rows {shlex.join(args.rows)} {_seed_flags(args)}` at commit {commit or '?'} on "
            f"{when}: {'; '.join(fresh)}. The other rows are from the run above." + (f" {args.note}" if args.note else ""))
    header_end = next(i for i, ln in enumerate(lines) if ln.startswith("Teacher:"))
    return lines[:header_end + 1] + ["", note] + lines[header_end + 1:]


def write_section(title: str, command: str, seconds: float, body: list, path: str = os.path.join(HERE, "RESULTS.md")):
    """One ``## title`` section of RESULTS.md with the house header (command and commit, machine, date, wall
    time) above ``body``, replacing an older one of that title and keeping the others."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [f"## {title}", "", f"Command: `{command}` (commit {commit or '?'})  ", f"Machine: {machine()}  ",
             f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}. Wall time {seconds:,.0f} s.", "", *body]
    sections = _read_sections(path)
    sections[title] = "\n".join(lines).rstrip()
    _write(path, sections)


def _read_sections(path) -> dict:
    """Existing ``## title`` sections of RESULTS.md, so running one suite keeps the others."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        parts = f.read().split("\n## ")[1:]
    return {p.split("\n", 1)[0]: "## " + p.rstrip() for p in parts}


def _write(path, sections) -> None:
    header = ("# Benchmark results\n\nEach figure: the int8 student (full-integer, run with LiteRT; the 'float "
              "student' rows: the Keras model) on the real test set, mean over seeds. Seconds: synthesis + "
              "distillation of one run on the machine named. "
              "Produced by `make bench`; every section says its own command and date.\n\n")
    order = [SUITES[k][0] for k in SUITES]
    body = "\n\n".join(sections[t] for t in sorted(sections, key=lambda t: order.index(t) if t in order else 99))
    with open(path + ".tmp", "w") as f:
        f.write(header + body + "\n")
    os.replace(path + ".tmp", path)
    print(body)


if __name__ == "__main__":
    main()
