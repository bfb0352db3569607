"""Memory of `tinydistill stats` on data read in batches: 50,000 CIFAR-10 images as an image folder, and a
CSV of 1,000,000 rows for a small tabular teacher.

    python benchmarks/streaming.py [--rows 1000000]

Each run is the CLI in a child process; its peak resident memory (``ru_maxrss``) is set against what the
data would take held whole (uint8 images; float32 rows). The image folder is written from train_q75
(PNG, lossless), so its statistics must equal those recorded from the same arrays (checked). Each is run
beside a small one of the same kind (500 images, a hundredth of the rows): what the CLI holds whatever the data
(TensorFlow, the teacher), so that growth with the data shows. The table goes to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DATA = os.environ.get("TINYDISTILL_DATA", os.path.join(ROOT, "..", "shared", "data"))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def run_stats(args) -> tuple[int, float]:
    """The CLI's `stats` in a child: (its own peak RSS in bytes, seconds)."""
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tinydistill.cli", "stats", *args, "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"stats failed: {err.read().strip().splitlines()[-1]}")
    return usage.ru_maxrss * 1024, time.time() - t0


def image_folder(tmp: str, per_class: int | None = None) -> tuple[str, int, int]:
    """train_q75 as PNG files in class folders (``per_class``: only the first that many of each class): the
    folder, its number of images and their bytes held whole."""
    from PIL import Image

    with np.load(os.path.join(DATA, "cifar10", "train_q75.npz"), allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    if per_class:
        keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(len(CLASSES))])
        x, y = x[keep], y[keep]
    root = os.path.join(tmp, f"cifar-train-{len(x)}")
    for name in CLASSES:
        os.makedirs(os.path.join(root, name))
    for i, (img, label) in enumerate(zip(x, y)):
        Image.fromarray(img).save(os.path.join(root, CLASSES[label], f"{i:05d}.png"))
    return root, len(x), x.nbytes


def tabular(tmp: str, rows: int) -> tuple[str, str, int]:
    """A small MLP trained on Gaussian blobs (16 features, 4 classes) and a CSV of ``rows`` rows of them."""
    from tinydistill import _compat

    k = _compat.keras()
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 2, (4, 16))
    y = rng.integers(0, 4, 4000)
    x = (centres[y] + rng.normal(0, 1, (4000, 16))).astype(np.float32)
    i = k.Input((16,))
    model = k.Model(i, k.layers.Dense(4, activation="softmax")(k.layers.Dense(32, activation="relu")(i)))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    teacher = os.path.join(tmp, "tabular.h5")
    model.save(teacher)
    path = os.path.join(tmp, "rows.csv")
    with open(path, "w") as f:
        f.write(",".join(f"f{j}" for j in range(16)) + ",label\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            yb = rng.integers(0, 4, n)
            xb = np.clip(centres[yb] + rng.normal(0, 1, (n, 16)), -9.9, 9.9)
            f.write("\n".join(",".join(f"{v:.3f}" for v in r) + f",{c}" for r, c in zip(xb, yb)) + "\n")
    return teacher, path, rows * 16 * 4


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    rows = []
    t0 = time.time()
    teacher = os.path.join(DATA, "teachers", "cifar10_resnet8.h5")
    with tempfile.TemporaryDirectory() as tmp:
        # a small folder first: what the CLI holds anyway (TensorFlow, the teacher), against which growth shows
        for per_class in (50, None):
            folder, n, whole = image_folder(tmp, per_class)
            out = os.path.join(tmp, f"folder-{n}.stats.npz")
            rss, secs = run_stats([teacher, "--data", folder, "--input-range", "0,255", "-o", out])
            if not per_class:
                check_same(teacher, out)
            rows.append((f"CIFAR-10 train_q75 as {n:,} PNG files in 10 class folders", "ResNet-8", whole, rss, secs))
        for n in (a.rows // 100, a.rows):
            tab, csv_path, whole = tabular(tmp, n)
            rss, secs = run_stats([tab, "--data", csv_path, "--input-range=-10,10", "-o", os.path.join(tmp, "t.stats.npz")])
            rows.append((f"CSV, {n:,} rows x 16 features ({os.path.getsize(csv_path) / 2**20:,.1f} MiB)",
                         "MLP 16-32-4", whole, rss, secs))
    write_results(rows, a, time.time() - t0)


def check_same(teacher_path, stats_path):
    """The folder's statistics equal those of the arrays it was written from (PNG is lossless)."""
    from tinydistill.teacher.model import load_teacher
    from tinydistill.teacher.stats import LOGITS, load_stats, record_stats

    teacher = load_teacher(teacher_path)
    got = load_stats(stats_path, teacher)
    with np.load(os.path.join(DATA, "cifar10", "train_q75.npz"), allow_pickle=False) as d:
        y = d["y"]
        # every image of class 0 and one of each other class (statistics need every class): class 0's moments
        # must equal the folder's
        idx = np.concatenate([np.flatnonzero(y == 0)] + [np.flatnonzero(y == c)[:1] for c in range(1, len(CLASSES))])
        ref = record_stats(teacher, d["x"][idx].astype(np.float32), y[idx], input_range=(0, 255))
    assert got.class_names == CLASSES, got.class_names
    assert got.header["examples"] == 50_000
    np.testing.assert_allclose(got.mean[LOGITS][0], ref.mean[LOGITS][0], rtol=1e-4, atol=1e-4)  # class 0: all in both


def write_results(rows, a, seconds):
    from run import write_section

    lines = [" ".join(__doc__.split("\n\n")[2].split()), "",
             "| data | teacher | the data held whole | peak RSS of `stats` | seconds |", "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {d} | {t} | {w / 2**20:,.0f} MiB | {r / 2**20:,.0f} MiB | {s:,.0f} |" for d, t, w, r, s in rows]
    write_section("Streaming: memory of `stats` on data larger than it holds",
                  f"python benchmarks/streaming.py --rows {a.rows}", seconds, lines)


if __name__ == "__main__":
    main()
