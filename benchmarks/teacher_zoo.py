"""Teachers nobody here has made: one `compress` per kind of Keras model a user may bring, and what happened.

    python benchmarks/teacher_zoo.py [--kinds NAME ...] [--keep DIR]

Builds small Keras 3 models of the kinds embedded users train (a yes/no model with one sigmoid unit, a Conv1D
sensor model, logits without softmax, depthwise/separable convolutions, padding/LeakyReLU/ReLU6/average pooling,
parallel branches, LSTM/GRU, LayerNormalization + GELU, swish + BatchNorm, several inputs, Sequential, a Reshape
input, a Normalization layer, Rescaling(1/255) + BatchNorm, a fully convolutional model saved with input (None, None,
1), run with `--input-shape`, a Dense layer on a sequence, an Embedding of token ids, a residual block without
normalisation) with a few steps of training on random data, saves each as `.keras` and `.h5`, and runs the CLI on each
with quick settings (`--inputs 256 --steps 3 --epochs 1`): the point is whether the run ends as it should (exit 0, or
one clear line for a model it refuses), not accuracy.
Exits 1 when any kind ends otherwise than expected. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# kind -> (expected exit code, a phrase the last line must hold when refused)
EXPECTED = {
    "binary_sigmoid": (0, None), "conv1d_sensor": (0, None), "logits": (0, None), "separable": (0, None),
    "misc_layers": (0, None), "concat": (0, None), "lstm": (1, "recurrent layer"), "gru": (1, "recurrent layer"),
    "layernorm_gelu": (1, "TFLite Micro has no kernel"), "swish_bn": (0, None), "multi_input": (1, "2 inputs"),
    "sequential": (0, None), "reshape_in": (0, None), "normalization": (0, None), "rescale_bn": (0, None),
    "image_sigmoid": (0, None), "fully_conv": (0, None), "dense_sequence": (0, None),
    "embedding": (1, "needs a float input"), "residual": (0, None),
}
EXTRA = {"fully_conv": ["--input-shape", "32,32,1"]}  # saved with input (None, None, 1): the size is the user's
EXTRA["residual"] = ["--width", "0.5"]  # narrower than the teacher, so the student is built (with BatchNorm)


def build(folder: str, kinds) -> None:
    import keras
    import numpy as np
    from keras import layers as L  # noqa: N812

    rng = np.random.default_rng(0)

    def model(kind):  # (model, input shape or None, classes, binary)
        if kind == "binary_sigmoid":
            i = keras.Input((64,))
            return keras.Model(i, L.Dense(1, activation="sigmoid")(L.Dense(32, activation="relu")(i))), (64,), 2, True
        if kind == "conv1d_sensor":
            i = keras.Input((128, 3))
            h = L.MaxPooling1D(2)(L.BatchNormalization()(L.Conv1D(16, 5, activation="relu")(i)))
            h = L.GlobalAveragePooling1D()(L.Conv1D(32, 3, activation="relu")(h))
            return keras.Model(i, L.Dense(6, activation="softmax")(h)), (128, 3), 6, False
        if kind == "logits":
            i = keras.Input((20,))
            return keras.Model(i, L.Dense(5)(L.Dense(32, activation="relu")(i))), (20,), 5, False
        if kind == "separable":
            i = keras.Input((32, 32, 1))
            h = L.DepthwiseConv2D(3, activation="relu")(L.Conv2D(8, 3, activation="relu")(i))
            h = L.GlobalAveragePooling2D()(L.SeparableConv2D(16, 3, activation="relu")(h))
            return keras.Model(i, L.Dense(4, activation="softmax")(h)), (32, 32, 1), 4, False
        if kind == "misc_layers":
            i = keras.Input((28, 28, 1))
            h = L.AveragePooling2D(2)(L.LeakyReLU()(L.Conv2D(8, 3)(L.ZeroPadding2D(1)(i))))
            h = L.Dropout(0.2)(L.Flatten()(L.ReLU(max_value=6)(L.Conv2D(16, 3)(h))))
            return keras.Model(i, L.Activation("softmax")(L.Dense(10)(h))), (28, 28, 1), 10, False
        if kind == "concat":
            i = keras.Input((32, 32, 3))
            h = L.Concatenate()([L.Conv2D(8, 1, activation="relu")(i), L.Conv2D(8, 3, padding="same", activation="relu")(i)])
            h = L.GlobalMaxPooling2D()(L.MaxPooling2D()(h))
            return keras.Model(i, L.Dense(3, activation="softmax")(h)), (32, 32, 3), 3, False
        if kind in ("lstm", "gru"):
            i = keras.Input((50, 8))
            rnn = L.LSTM(16) if kind == "lstm" else L.GRU(16)
            return keras.Model(i, L.Dense(4, activation="softmax")(rnn(i))), (50, 8), 4, False
        if kind == "layernorm_gelu":
            i = keras.Input((40,))
            h = L.Activation("gelu")(L.LayerNormalization()(L.Dense(32)(i)))
            return keras.Model(i, L.Dense(3, activation="softmax")(h)), (40,), 3, False
        if kind == "swish_bn":
            i = keras.Input((16, 16, 3))
            h = L.Flatten()(L.BatchNormalization()(L.Conv2D(8, 3, activation="swish")(i)))
            return keras.Model(i, L.Dense(3, activation="softmax")(h)), (16, 16, 3), 3, False
        if kind == "multi_input":
            a, b = keras.Input((10,)), keras.Input((5,))
            return keras.Model([a, b], L.Dense(2, activation="softmax")(L.Concatenate()([a, b]))), None, 2, False
        if kind == "sequential":
            m = keras.Sequential([keras.Input((30,)), L.Dense(16, activation="relu"), L.Dense(3, activation="softmax")])
            return m, (30,), 3, False
        if kind == "reshape_in":
            i = keras.Input((49, 10))
            h = L.Flatten()(L.Conv2D(8, 3, activation="relu")(L.Reshape((49, 10, 1))(i)))
            return keras.Model(i, L.Dense(12, activation="softmax")(h)), (49, 10), 12, False
        if kind == "normalization":
            i = keras.Input((12,))
            norm = L.Normalization()
            norm.adapt(rng.normal(5, 3, (100, 12)).astype("float32"))
            h = L.Dense(16, activation="relu")(norm(i))
            return keras.Model(i, L.Dense(3, activation="softmax")(h)), (12,), 3, False
        if kind == "rescale_bn":
            i = keras.Input((48, 48, 1))
            h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2)(L.Rescaling(1 / 255.0)(i))))
            h = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(h)))
            h = L.GlobalAveragePooling2D()(L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 1)(h))))
            return keras.Model(i, L.Dense(2, activation="softmax")(h)), (48, 48, 1), 2, False
        if kind == "image_sigmoid":
            i = keras.Input((32, 32, 1))
            h = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu")(i))
            return keras.Model(i, L.Dense(1, activation="sigmoid")(h)), (32, 32, 1), 2, True
        if kind == "fully_conv":  # any input size: (None, None, 1)
            i = keras.Input((None, None, 1))
            h = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, strides=2, activation="relu")(L.Conv2D(8, 3)(i)))
            return keras.Model(i, L.Dense(4, activation="softmax")(h)), (32, 32, 1), 4, False
        if kind == "dense_sequence":  # a Dense layer on every step of a sequence (Keras computes its shapes at run time)
            i = keras.Input((16, 6))
            h = L.GlobalAveragePooling1D()(L.Dense(12, activation="relu")(i))
            return keras.Model(i, L.Dense(3, activation="softmax")(h)), (16, 6), 3, False
        if kind == "residual":  # a residual block without normalisation: its student gets BatchNorm (adds_batchnorm)
            i = keras.Input((16, 16, 3))
            a = L.Conv2D(8, 3, padding="same", activation="relu")(i)
            b = L.Conv2D(8, 3, padding="same")(L.Conv2D(8, 3, padding="same", activation="relu")(a))
            h = L.GlobalAveragePooling2D()(L.ReLU()(L.Add()([a, b])))
            return keras.Model(i, L.Dense(4, activation="softmax")(h)), (16, 16, 3), 4, False
        if kind == "embedding":  # token ids
            i = keras.Input((20,), dtype="int32")
            h = L.GlobalAveragePooling1D()(L.Embedding(100, 8)(i))
            return keras.Model(i, L.Dense(3, activation="softmax")(h)), None, 3, False
        raise ValueError(kind)

    for kind in kinds:
        m, shape, classes, binary = model(kind)
        if shape is not None:
            x = rng.random((256,) + shape).astype("float32")
            if binary:
                y, loss = (x.reshape(256, -1).mean(1) > 0.5).astype("float32"), "binary_crossentropy"
            else:
                logits = m.layers[-1].get_config().get("activation") == "linear"
                y, loss = rng.integers(0, classes, 256), keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
            m.compile("adam", loss)
            m.fit(x, y, epochs=1, verbose=0)
        for ext in ("keras", "h5"):
            m.save(os.path.join(folder, f"{kind}.{ext}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="*", default=list(EXPECTED), choices=list(EXPECTED))
    ap.add_argument("--keep", default=None, help="build the teachers and write the runs here (default: a temp folder)")
    args = ap.parse_args()
    folder = args.keep or tempfile.mkdtemp(prefix="teacher-zoo-")
    os.makedirs(folder, exist_ok=True)
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                    f"import teacher_zoo; teacher_zoo.build({folder!r}, {args.kinds!r})"], check=True)
    cli = os.path.join(os.path.dirname(sys.executable), "tinydistill")
    wrong = 0
    print("| teacher | file | exit | expected | seconds | last line |\n| --- | --- | ---: | ---: | ---: | --- |")
    for kind in args.kinds:
        for ext in ("keras", "h5"):
            extra = ["--input-range", "0,255" if kind == "rescale_bn" else "0,1", *EXTRA.get(kind, [])]
            if kind == "rescale_bn" and ext == "h5":
                extra = []  # its Rescaling layer states the range itself
            start = time.perf_counter()
            p = subprocess.run([cli, "compress", os.path.join(folder, f"{kind}.{ext}"), "--inputs", "256", "--steps",
                                "3", "--epochs", "1", "--quiet", *extra, "-o", os.path.join(folder, f"out_{kind}_{ext}")],
                               capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "400"})
            lines = [ln.strip() for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
            last = lines[-1] if lines else ""
            code, phrase = EXPECTED[kind]
            ok = p.returncode == code and (phrase is None or phrase in last) and "internal error" not in last
            wrong += not ok
            print(f"| {kind} | .{ext} | {p.returncode} | {code} | {time.perf_counter() - start:.0f} | "
                  f"{'' if ok else '**unexpected** '}{last[:160].replace('|', '/')} |", flush=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
