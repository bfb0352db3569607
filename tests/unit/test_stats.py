import json
import os

import numpy as np
import pytest

from tinydistill import _compat
from tinydistill.errors import StatsError, StatsMismatchError
from tinydistill.teacher.model import describe
from tinydistill.teacher.stats import INPUT, LOGITS, load_stats, record_stats, save_stats, stats_to_bytes

from ..conftest import toy_data


def test_moments_match_numpy(tiny_teacher, tiny_stats):
    x, y = toy_data(600, seed=1)
    k = _compat.keras()
    fc1 = k.Model(tiny_teacher.logits_model.inputs, tiny_teacher.logits_model.get_layer("fc1").output)
    a = fc1.predict(x, verbose=0)
    conv = k.Model(tiny_teacher.logits_model.inputs, tiny_teacher.logits_model.get_layer("conv1").output)
    c = conv.predict(x, verbose=0)
    for cls in range(3):
        np.testing.assert_allclose(tiny_stats.mean["fc1"][cls], a[y == cls].mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(tiny_stats.std["fc1"][cls], a[y == cls].std(0), rtol=1e-3, atol=1e-5)
        # conv: per channel over samples and positions
        np.testing.assert_allclose(tiny_stats.mean["conv1"][cls], c[y == cls].mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
    assert tiny_stats.layers[0] == INPUT and tiny_stats.layers[-1] == LOGITS
    assert tiny_stats.counts.tolist() == [200, 200, 200]
    assert tiny_stats.header["input_range"] == [0.0, 1.0]


def test_global_moments_equal_pooled(tiny_stats):
    x, y = toy_data(600, seed=1)
    mean, std = tiny_stats.global_moments(INPUT)
    np.testing.assert_allclose(mean, [x.mean()], rtol=1e-4)
    np.testing.assert_allclose(std, [x.std()], rtol=1e-3)


def test_roundtrip(tmp_path, tiny_teacher, tiny_stats):
    p = tmp_path / "t.stats.npz"
    save_stats(tiny_stats, str(p))
    back = load_stats(str(p), tiny_teacher)
    assert back.layers == tiny_stats.layers
    for n in back.layers:
        np.testing.assert_array_equal(back.mean[n], tiny_stats.mean[n])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_other_teacher_refused(tmp_path, tiny_stats, tiny_bn_model):
    p = tmp_path / "t.stats.npz"
    save_stats(tiny_stats, str(p))
    with pytest.raises(StatsMismatchError, match="recorded on another model"):
        load_stats(str(p), describe(tiny_bn_model))


def test_newer_version_refused(tmp_path, tiny_stats):
    header = dict(tiny_stats.header, version=99)
    p = tmp_path / "new.stats.npz"
    with np.load(__import__("io").BytesIO(stats_to_bytes(tiny_stats))) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["header"] = np.array(json.dumps(header))
    np.savez(p, **arrays)
    with pytest.raises(StatsError, match="newer.*upgrade"):
        load_stats(str(p))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["EVIL_MARKER"],))


def test_pickled_stats_never_unpickled(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    p = tmp_path / "evil.stats.npz"
    np.savez(p, header=np.array([_Evil()], dtype=object))
    with pytest.raises(StatsError, match="pickled"):
        load_stats(str(p))
    assert not marker.exists()


def test_not_a_stats_file(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(2))
    with pytest.raises(StatsError, match="not a tinydistill stats file"):
        load_stats(str(p))
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(StatsError, match="cannot read"):
        load_stats(str(tmp_path / "t.txt"))


def test_missing_class_refused(tiny_teacher):
    x, y = toy_data(60)
    with pytest.raises(StatsError, match="no examples of classes \\[2\\]"):
        record_stats(tiny_teacher, x[y < 2], y[y < 2], input_range=(0, 1))


def test_layer_pairs_follow_the_weights(tiny_teacher, tiny_stats):
    # tiny: input -> conv1 (relu) -> pool -> flatten -> fc1 (relu) -> out
    pairs = [(p.source, p.target) for p in tiny_stats.pairs]
    assert pairs == [(INPUT, "conv1"), ("conv1", "fc1"), ("fc1", LOGITS)]
    conv_fc = tiny_stats.pairs[1]
    assert conv_fc.projection.shape == (8 + 16, 6)  # a quarter of the pair's graph-Fourier basis


def test_layer_pair_moments_equal_direct_computation(tiny_teacher, tiny_stats):
    """The coefficients' moments are derived from pooled first and second moments; check them directly."""
    x, y = toy_data(600, seed=1)
    k = _compat.keras()
    lm = tiny_teacher.logits_model
    pair = tiny_stats.pairs[1]
    a, b = k.Model(lm.inputs, [lm.get_layer(pair.source).output, lm.get_layer(pair.target).output]).predict(x, verbose=0)
    z = np.concatenate([a.mean((1, 2)), b], axis=1)
    coeffs = z @ pair.projection - pair.offset
    for cls in range(3):
        np.testing.assert_allclose(pair.mean[cls], coeffs[y == cls].mean(0), atol=2e-4)
        np.testing.assert_allclose(pair.std[cls], coeffs[y == cls].std(0), rtol=1e-3, atol=2e-4)
    # standardised: all classes together have mean 0 and unit scale before projection
    np.testing.assert_allclose(coeffs.mean(0), 0.0, atol=1e-3)


def test_layer_pairs_roundtrip(tmp_path, tiny_teacher, tiny_stats):
    p = tmp_path / "t.stats.npz"
    save_stats(tiny_stats, str(p))
    back = load_stats(str(p), tiny_teacher)
    assert [(q.source, q.target) for q in back.pairs] == [(q.source, q.target) for q in tiny_stats.pairs]
    for q, r in zip(back.pairs, tiny_stats.pairs):
        np.testing.assert_array_equal(q.projection, r.projection)
        np.testing.assert_array_equal(q.std, r.std)


def test_stats_of_another_input_size_refused(tmp_path):
    """The same weights rebuilt at another size (--input-shape) share a fingerprint; the recorded size decides."""
    from tinydistill import _compat
    from tinydistill.teacher.model import fixed_input

    k = _compat.keras()
    i = k.Input((None, None, 1))
    h = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3, activation="relu")(i))
    m = k.Model(i, k.layers.Dense(3, activation="softmax")(h))
    big, small = describe(fixed_input(m, (12, 12, 1))), describe(fixed_input(m, (8, 8, 1)))
    x = np.random.default_rng(0).uniform(size=(30, 12, 12, 1)).astype(np.float32)
    p = tmp_path / "big.stats.npz"
    save_stats(record_stats(big, x, np.arange(30) % 3, input_range=(0.0, 1.0)), str(p))
    assert load_stats(str(p), big).num_classes == 3
    with pytest.raises(StatsMismatchError, match=r"recorded at input shape \(12,12,1\).*--input-shape 12,12,1"):
        load_stats(str(p), small)
