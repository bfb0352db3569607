"""Every suite of ``benchmarks/run.py`` is wired right: run through ``main`` with its teachers, data and row runs
stubbed, each builds its rows for every seed and writes its section. A suite calls its helpers only hours into a real
run (a wrong argument once crashed one after its first rows, 3e36b66), so the calls are checked here, against the
real helpers' signatures, in seconds. The speed suite times real steps and is left to ``make bench``."""
from __future__ import annotations

import inspect
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from ..conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
bench = pytest.importorskip("run")

SUITES = [k for k in bench.SUITES if k != "speed"]


def _checked(fn, result):
    """A stub of ``fn`` that refuses the arguments ``fn`` would refuse and returns ``result(*args, **kwargs)``."""
    sig = inspect.signature(fn)

    def stub(*args, **kwargs):
        sig.bind(*args, **kwargs)
        return result(*args, **kwargs)
    return stub


def _teacher(shape=(32, 32, 3), classes=10):
    return SimpleNamespace(path="teacher.h5", params=1000, input_shape=shape, num_classes=classes, has_batchnorm=True,
                           model=None)


def _data(n=40, shape=(28, 28)):
    return np.zeros((n,) + shape, np.float32), np.arange(n) % 10


@pytest.fixture
def stubbed(monkeypatch):
    """Stubs for everything that loads shared data, trains a teacher or runs a row; returns the rows built."""
    built = {}

    def run_rows(name, rows, seeds):
        names = [n for n, _ in rows(0)]
        assert names and [n for n, _ in rows(seeds - 1)] == names, name
        assert all(callable(fn) for _, fn in rows(seeds - 1))
        built[name] = names
        return [(n, [0.5] * seeds, [1.0] * seeds) for n in names if bench.selected(n)]

    def fidelity(t, stats, rng, x, y, real_calib, seeds, **kw):
        built[kw.get("tag", "int8")] = ["float student"]
        return [("float student", [0.5] * seeds, [1.0] * seeds)]

    m = monkeypatch.setattr
    m(bench, "run_rows", _checked(bench.run_rows, run_rows))
    m(bench, "_int8_fidelity", _checked(bench._int8_fidelity, fidelity))
    m(bench, "_cifar", _checked(bench._cifar, lambda: (_teacher(), (0.0, 255.0), *_data(shape=(32, 32, 3)))))
    m(bench, "_lenet5", _checked(bench._lenet5, lambda: (_teacher((28, 28, 1)), (0.0, 1.0), _data(), _data(), None)))
    m(bench, "wakeword_teacher", _checked(bench.wakeword_teacher, lambda: (_teacher((49, 10, 1), 12), _data())))
    m(bench, "_mnist_teachers", _checked(bench._mnist_teachers, lambda work, specs: [
        (name, _teacher(shape), width, _data(shape=shape)) for name, shape, width, _ in specs]))
    m(bench, "mnist", _checked(bench.mnist, lambda split: _data()))
    m(bench, "load_data", _checked(bench.load_data, lambda *a, **k: _data(shape=(32, 32, 3))))
    m(bench, "fit_to_teacher", _checked(bench.fit_to_teacher, lambda data, shape, n, rng: _data(len(data[1]), shape)))
    m(bench.td, "record_stats", _checked(bench.td.record_stats, lambda *a, **k: None))
    m(bench.td, "load_teacher", _checked(bench.td.load_teacher, lambda *a, **k: _teacher((784,))))
    m(bench, "_teacher_accuracy", lambda t, test: 0.5)
    m(bench, "fold_batchnorm", lambda model: SimpleNamespace(save=lambda path: None))
    m(bench, "quality_vs_time", lambda rows, path: None)  # would redraw the committed curve
    return built


@pytest.mark.parametrize("suite", SUITES)
def test_a_suite_builds_its_rows_for_every_seed_and_writes_its_section(suite, stubbed, tmp_path, monkeypatch):
    out = tmp_path / "RESULTS.md"
    monkeypatch.setattr(sys, "argv", ["run.py", "--suite", suite, "--seeds", "2", "--out", str(out)])
    monkeypatch.setattr(bench, "ROWS", ())
    bench.main()
    assert stubbed, f"{suite}: no row was built"
    title = bench.SUITES[suite][0]
    rows = bench.table_rows(bench._read_sections(str(out))[title])
    assert rows and all(acc == 50.0 for _, acc, _ in rows)
    assert {n for n, _, _ in rows} == {n for names in stubbed.values() for n in names}


def test_an_engine_row_refuses_an_unknown_schedule_field_when_it_is_built_not_hours_later():
    with pytest.raises(TypeError, match="no_such_field"):
        bench._engine_row(_teacher(), None, 0.7, (0.0, 255.0), 0, no_such_field=1.0)
    assert callable(bench._engine_row(_teacher(), None, 0.7, (0.0, 255.0), 0, adversarial=0.0))


def test_batchnorm_folds_into_the_layer_before_it_and_the_function_stays(tmp_path):
    from tinydistill import _compat

    k = _compat.keras()
    L = k.layers
    _compat.set_seed(0)
    x_in = k.Input((8, 8, 3))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same", use_bias=False)(x_in)))
    b = L.BatchNormalization(center=False)(L.Conv2D(4, 3, padding="same")(a))
    skip = L.Conv2D(4, 1)(x_in)  # its consumer is an Add: nothing to fold
    h = L.Flatten()(L.Add()([L.ReLU()(b), skip]))
    out = L.Softmax()(L.BatchNormalization()(L.Dense(5)(h)))
    model = k.Model(x_in, out)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics and affine weights away from their initial 0 / 1
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([(rng.uniform(0.5, 2.0, w.shape) if "variance" in v.name else
                                rng.normal(0, 1, w.shape)).astype(np.float32) for v, w in zip(layer.weights,
                                                                                             layer.get_weights())])
    x = rng.uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    folded = bench.fold_batchnorm(model)
    assert not [layer for layer in folded.layers if isinstance(layer, L.BatchNormalization)]
    want = model.predict(x, verbose=0)
    assert np.isfinite(want).all() and want.std() > 0.01
    np.testing.assert_allclose(folded.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)
    folded.save(str(tmp_path / "folded.h5"))
    assert not bench.td.load_teacher(str(tmp_path / "folded.h5")).has_batchnorm
