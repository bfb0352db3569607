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
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import tinydistill as td  # noqa: E402
from tinydistill import _compat  # noqa: E402
from tinydistill.data import fit_to_teacher, load_data  # noqa: E402
from tinydistill.fitcheck import int8_predictions  # noqa: E402
from tinydistill.student import with_output_activation  # noqa: E402
from tinydistill.synthesis import SyntheticSet  # noqa: E402
from tinydistill.teacher import describe  # noqa: E402

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


def rows_for(teacher, stats, width, train, test, rng, seed, *, real_epochs, kd_epochs, bn_teacher=False):
    """(row name, callable returning (student, calibration inputs)) for one suite."""
    lo, hi = rng
    xtr, ytr = train if train is not None else (None, None)

    def real_labels():
        return train_on_labels(teacher, width, xtr, ytr, real_epochs, seed), xtr

    def real_kd():
        s = td.design_student(teacher, width=width, seed=seed)
        syn = SyntheticSet(x=xtr, y=ytr, logits=np.zeros((len(ytr), teacher.num_classes), np.float32), method="real")
        return td.distill(teacher, s, syn, epochs=real_epochs, seed=seed), xtr

    def noise_kd():
        g = np.random.default_rng(seed)
        x = np.clip(g.normal((lo + hi) / 2, (hi - lo) / 4, (12000,) + teacher.input_shape), lo, hi).astype(np.float32)
        syn = SyntheticSet(x=x, y=np.zeros(len(x), np.int64), logits=np.zeros((len(x), teacher.num_classes)), method="noise")
        s = td.design_student(teacher, width=width, seed=seed)
        return td.distill(teacher, s, syn, epochs=kd_epochs, seed=seed), x

    def synthetic(method, st):
        def run():
            syn = td.synthesize(teacher, st, method=method, input_range=rng, seed=seed)
            s = td.design_student(teacher, width=width, seed=seed)
            return td.distill(teacher, s, syn, epochs=kd_epochs, seed=seed), syn.x
        return run

    rows = []
    if train is not None:
        rows += [("student trained on real labels", real_labels), ("real-data KD", real_kd)]
    rows.append(("Gaussian-noise KD", noise_kd))
    if stats is not None:
        rows += [("top-layer (Lopes et al.)", synthetic("top-layer", stats)),
                 ("all-layers + regions: best with stats (ours)", synthetic("all-layers", stats))]
    if bn_teacher:
        rows.append(("BatchNorm statistics: best without a stats file (ours)", synthetic("bn", None)))
    else:
        rows.append(("no metadata: best without stats (ours)", synthetic("prior", None)))
    return rows


def run_suite(name, teacher, stats, width, train, test, rng, seeds, **kw):
    x, y = test
    results = []
    for row_name, _ in rows_for(teacher, stats, width, train, test, rng, 0, **kw):
        accs, secs = [], []
        for seed in range(seeds):
            fn = dict(rows_for(teacher, stats, width, train, test, rng, seed, **kw))[row_name]
            t0 = time.perf_counter()
            student, calib = fn()
            acc = int8_accuracy(teacher, student, calib, x, y, seed)
            secs.append(time.perf_counter() - t0)
            accs.append(acc)
            print(f"[{name}] {row_name} seed {seed}: int8 {acc:.2%} in {secs[-1]:.0f} s", flush=True)
        results.append((row_name, accs, secs))
    return results


def mnist(split):
    return load_data(os.path.join(DATA, "mnist"), split=split)


def suite_lenet5(seeds):
    t = td.load_teacher(os.path.join(DATA, "teachers", "mnist_lenet5.h5"))
    rng = (0.0, 1.0)
    train = fit_to_teacher(mnist("train"), t.input_shape, 10, rng)
    test = fit_to_teacher(mnist("test"), t.input_shape, 10, rng)
    stats = td.record_stats(t, *train, input_range=rng)
    return t, run_suite("lenet5", t, stats, 0.5, train, test, rng, seeds, real_epochs=8, kd_epochs=30)


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
    return t, run_suite("fc", t, stats, 800 / 1200, (xtr, ytr), test, rng, seeds, real_epochs=8, kd_epochs=30)


def suite_cifar(seeds):
    t = td.load_teacher(os.path.join(DATA, "teachers", "cifar10_resnet8.h5"))
    rng = (0.0, 255.0)
    test = fit_to_teacher(load_data(os.path.join(DATA, "cifar10", "test_q75.npz")), t.input_shape, 10, rng)
    return t, run_suite("cifar", t, None, 0.5, None, test, rng, seeds, real_epochs=0, kd_epochs=30, bn_teacher=True)


def _int8_fidelity(t, stats, rng, x, y, real_calib, seeds, *, n=12000, epochs=30, tag="int8"):
    """Float vs int8 (synthetic calibration) vs int8 (real calibration) vs QAT for one teacher."""
    from tinydistill.finetune import quantization_aware

    rows = {"float student": [], "int8, synthetic calibration": [], "int8, real calibration": [], "int8, QAT (5 epochs)": []}
    secs = {k: [] for k in rows}
    for seed in range(seeds):
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
    t = td.load_teacher(os.path.join(DATA, "teachers", "cifar10_resnet8.h5"))
    rng = (0.0, 255.0)
    x, y = fit_to_teacher(load_data(os.path.join(DATA, "cifar10", "test_q75.npz")), t.input_shape, 10, rng)
    calib = np.arange(len(x)) % 5 == 0
    return t, _int8_fidelity(t, None, rng, x[~calib], y[~calib], x[calib], seeds, n=4000, epochs=20, tag="int8-cifar")


SUITES = {"lenet5": ("LeNet-5 -> LeNet-5-half, MNIST", suite_lenet5),
          "fc": ("FC 784-1200-1200-10 -> 784-800-800-10, MNIST", suite_fc),
          "cifar": ("CIFAR-10 ResNet-8 (MLPerf Tiny) -> width 0.5, test_q75", suite_cifar),
          "int8": ("int8 fidelity: LeNet-5-half distilled with stats, MNIST", suite_int8),
          "int8-cifar": ("int8 fidelity: ResNet-8 width 0.5 from BatchNorm statistics, CIFAR-10", suite_int8_cifar)}


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
    ap.add_argument("--suite", nargs="+", choices=list(SUITES), default=list(SUITES))  # all: about 2 h on 2 cores
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--note", default="", help="A line added to each section, e.g. about the machine's load.")
    args = ap.parse_args()
    if not os.path.isdir(DATA):
        sys.exit(f"error: shared data not found at {DATA}: set TINYDISTILL_DATA")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sections = _read_sections(args.out)
    for key in args.suite:
        title, fn = SUITES[key]
        t0 = time.perf_counter()
        teacher, results = fn(args.seeds)
        lines = [f"## {title}", "",
                 f"Command: `python benchmarks/run.py --suite {key} --seeds {args.seeds}` (commit {commit or '?'})  ",
                 f"Machine: {machine()}  ", f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}  ",
                 f"Teacher: {os.path.basename(teacher.path)}, {teacher.params:,} parameters. "
                 f"Suite wall time {time.perf_counter() - t0:,.0f} s." + (f" {args.note}" if args.note else ""), "",
                 "| method | accuracy (mean) | per seed | seconds per run (mean) |",
                 "| --- | ---: | --- | ---: |"]
        for name, accs, secs in results:
            lines.append(f"| {name} | {100 * np.mean(accs):.2f} % | {', '.join(f'{100 * a:.2f}' for a in accs)} "
                         f"| {np.mean(secs):,.0f} |")
        sections = _read_sections(args.out)  # again: another run may have written meanwhile
        sections[title] = "\n".join(lines)
        _write(args.out, sections)  # after every suite: a long run keeps what it finished


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
