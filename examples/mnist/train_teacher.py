"""Train the small MNIST teacher shipped with the demo and record its statistics.

This is the model publisher's side: train on the real data, then ship the
model *and* its statistics file, so anyone can compress it without the data.

    python examples/mnist/train_teacher.py [--data ../shared/data/mnist]

Writes ``teacher.h5`` (tf.keras 2 format) and ``teacher.stats.npz`` next to
this script. MNIST is read from IDX files (no download); the default path is
``$TINYDISTILL_DATA/mnist``, where TINYDISTILL_DATA defaults to ../shared/data.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

import tinydistill as td  # noqa: E402
from tinydistill import _compat  # noqa: E402
from tinydistill.data import fit_to_teacher, load_data  # noqa: E402


def build(k):
    """A small LeNet-style CNN: 2 conv + 2 dense layers, about 30k parameters."""
    return k.Sequential([
        k.Input((28, 28, 1)),
        k.layers.Conv2D(8, 5, padding="same", activation="relu", name="conv1"),
        k.layers.MaxPooling2D(name="pool1"),
        k.layers.Conv2D(16, 5, padding="same", activation="relu", name="conv2"),
        k.layers.MaxPooling2D(name="pool2"),
        k.layers.Flatten(name="flatten"),
        k.layers.Dense(32, activation="relu", name="fc1"),
        k.layers.Dense(10, activation="softmax", name="predictions"),
    ], name="mnist_teacher")


def main():
    default = os.path.join(os.environ.get("TINYDISTILL_DATA", os.path.join(ROOT, "..", "shared", "data")), "mnist")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=default, help="MNIST IDX folder [%(default)s]")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    if not os.path.isdir(args.data):
        sys.exit(f"error: MNIST not found at {args.data}: pass --data FOLDER with the four IDX files")

    k = _compat.keras()
    _compat.set_seed(args.seed)
    model = build(k)
    shape, rng = (28, 28, 1), (0.0, 1.0)
    x, y = fit_to_teacher(load_data(args.data, split="train"), shape, 10, rng)
    xt, yt = fit_to_teacher(load_data(args.data, split="test"), shape, 10, rng)
    model.compile(optimizer=k.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=2, shuffle=True)
    acc = model.evaluate(xt, yt, verbose=0)[1]
    path = os.path.join(args.out, "teacher.h5")
    model.save(path, include_optimizer=False)
    teacher = td.load_teacher(path)
    stats = td.record_stats(teacher, x, y, input_range=rng)
    td.save_stats(stats, os.path.join(args.out, "teacher.stats.npz"))
    print(f"teacher: {teacher.params:,} parameters, {acc:.2%} on the MNIST test set; "
          f"wrote {path} and teacher.stats.npz")


if __name__ == "__main__":
    main()
