"""Shared fixtures: tiny, quickly trained teachers on a toy task, and the shared data folder.

The toy task: 8x8 single-channel images with a bright 3x3 blob in the left,
middle or right third (3 classes) over noise, inputs in [0, 1]. A tiny CNN
learns it to ~100 % in a second, so stages can be checked on a real signal.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tinydistill import _compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("TINYDISTILL_DATA", os.path.join(ROOT, "..", "shared", "data"))


def toy_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0.0, 0.3, size=(n, 8, 8, 1)).astype(np.float32)
    for i, c in enumerate(y):
        r = rng.integers(0, 6)
        col = c * 3 if c < 2 else 5
        x[i, r:r + 3, col:col + 3, 0] = rng.uniform(0.7, 1.0)
    return x, y.astype(np.int64)


def _train(model, seed=0, epochs=6):
    k = _compat.keras()
    x, y = toy_data(600, seed)
    model.compile(optimizer=k.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=False)
    return model


def build_tiny(batchnorm: bool = False, seed: int = 0):
    k = _compat.keras()
    _compat.set_seed(seed)
    i = k.Input((8, 8, 1), name="image")
    h = k.layers.Conv2D(8, 3, padding="same", use_bias=not batchnorm,
                        activation=None if batchnorm else "relu", name="conv1")(i)
    if batchnorm:
        h = k.layers.BatchNormalization(name="bn1")(h)
        h = k.layers.Activation("relu", name="relu1")(h)
    h = k.layers.MaxPooling2D(name="pool")(h)
    h = k.layers.Flatten(name="flat")(h)
    h = k.layers.Dense(16, activation="relu", name="fc1")(h)
    o = k.layers.Dense(3, activation="softmax", name="out")(h)
    return _train(k.Model(i, o, name="tiny"), seed)


def build_residual(seed: int = 0):
    """A residual network without normalisation (untrained): stem, a block whose branch is added back, a classifier."""
    k = _compat.keras()
    _compat.set_seed(seed)
    i = k.Input((8, 8, 1))
    a = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(i)
    b = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(a)
    b = k.layers.Conv2D(8, 3, padding="same", name="c2")(b)
    r = k.layers.ReLU(name="relu")(k.layers.Add(name="add")([a, b]))
    return k.Model(i, k.layers.Dense(3, name="out")(k.layers.GlobalAveragePooling2D(name="gap")(r)))


def keras3_fcn(path):
    """A fully convolutional Keras 3 model of any input size (input (None, None, 1), 3 classes), saved at ``path``;
    the test is skipped without Keras 3."""
    keras3 = pytest.importorskip("keras")
    if not keras3.__version__.startswith("3"):
        pytest.skip("Keras 3 not installed")
    i = keras3.Input((None, None, 1))
    h = keras3.layers.Conv2D(4, 3, activation="relu")(i)
    m = keras3.Model(i, keras3.layers.Dense(3, activation="softmax")(keras3.layers.GlobalAveragePooling2D()(h)))
    m.save(path)
    return m


@pytest.fixture(scope="session")
def tiny_model():
    return build_tiny()


@pytest.fixture(scope="session")
def tiny_bn_model():
    return build_tiny(batchnorm=True)


@pytest.fixture(scope="session")
def tiny_h5(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.h5"
    tiny_model.save(path, include_optimizer=False)
    return str(path)


@pytest.fixture(scope="session")
def tiny_teacher(tiny_h5):
    from tinydistill.teacher.model import load_teacher

    return load_teacher(tiny_h5)


@pytest.fixture(scope="session")
def tiny_stats(tiny_teacher):
    from tinydistill.teacher.stats import record_stats

    x, y = toy_data(600, seed=1)
    return record_stats(tiny_teacher, x, y, input_range=(0.0, 1.0))


@pytest.fixture(scope="session")
def tiny_bn_stats(tiny_bn_model):
    from tinydistill.teacher.model import describe
    from tinydistill.teacher.stats import record_stats

    x, y = toy_data(600, seed=1)
    return record_stats(describe(tiny_bn_model), x, y, input_range=(0.0, 1.0))


@pytest.fixture(scope="session")
def toy_test():
    return toy_data(300, seed=2)


@pytest.fixture(scope="session")
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data not found at {SHARED_DATA} (set TINYDISTILL_DATA)")
    return SHARED_DATA
