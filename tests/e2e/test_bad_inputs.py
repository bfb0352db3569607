"""The bad-input matrix: each case ends in one clear line naming the problem and the fix,
exit code 1 (2 for usage), no traceback, and no partial output."""

import errno
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tinydistill import _compat
from tinydistill.cli import main

from ..conftest import SHARED_DATA, toy_data


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def cases(tmp_path_factory, tiny_h5, tiny_stats, tiny_bn_model):
    d = tmp_path_factory.mktemp("bad")
    k = _compat.keras()
    good = open(tiny_h5, "rb").read()
    (d / "trunc.h5").write_bytes(good[: len(good) // 3])
    (d / "empty.h5").write_bytes(b"")
    (d / "text.h5").write_text("this is not a model\n")
    i = k.Input((8, 8, 1))
    k.Model(i, k.layers.Dense(1)(k.layers.Flatten()(i))).save(d / "regression.h5")
    a, b = k.Input((4,)), k.Input((4,))
    k.Model([a, b], k.layers.Dense(3, activation="softmax")(k.layers.Concatenate()([a, b]))).save(d / "two_inputs.h5")
    i = k.Input((8, 8, 1))
    k.Model(i, k.layers.Dense(3, activation="softmax")(k.layers.Lambda(lambda t: t * 2)(k.layers.Flatten()(i)))).save(
        d / "lambda.h5")
    tiny_bn_model.save(d / "other.h5")
    from tinydistill.teacher.stats import save_stats, stats_to_bytes

    save_stats(tiny_stats, str(d / "tiny.stats.npz"))
    with np.load(__import__("io").BytesIO(stats_to_bytes(tiny_stats))) as z:
        arrays = {key: z[key] for key in z.files}
    arrays["header"] = np.array(json.dumps(dict(tiny_stats.header, version=99)))
    np.savez(d / "newer.stats.npz", **arrays)
    (d / "bad.toml").write_text("name = 'x'\nkind = \n")
    x, y = toy_data(20)
    np.savez(d / "wrongshape.npz", x=np.zeros((4, 28, 28), np.uint8), y=np.zeros(4, np.int64))
    np.savez(d / "badlabels.npz", x=x, y=y + 5)
    (d / "afile").write_text("x")
    return d


def matrix(d, tiny_h5):
    shared = os.path.join(SHARED_DATA, "broken-models")
    R = ["--input-range", "0,1"]
    return [
        ("custom layers (QKeras)", ["compress", os.path.join(shared, "custom_layers_qkeras.h5")], "custom layers", "shared"),
        ("weights only", ["compress", os.path.join(shared, "weights_only.h5")], "weights only", "shared"),
        ("truncated .h5", ["compress", d / "trunc.h5", *R], "truncated", None),
        ("empty file", ["compress", d / "empty.h5", *R], "empty", None),
        ("text file named .h5", ["compress", d / "text.h5", *R], "not a Keras model", None),
        ("missing file", ["compress", d / "nope.h5", *R], "does not exist", None),
        ("Lambda layer", ["compress", d / "lambda.h5", *R], "--trust-model", None),
        ("not a classifier", ["compress", d / "regression.h5", *R], "classifiers", None),
        ("several inputs", ["compress", d / "two_inputs.h5", *R], "2 inputs", None),
        ("stats of another teacher", ["compress", d / "other.h5", "--stats", d / "tiny.stats.npz"], "another model", None),
        ("stats from a newer format", ["compress", tiny_h5, "--stats", d / "newer.stats.npz"], "upgrade", None),
        ("unknown board", ["compress", tiny_h5, *R, "--board", "cortex-m5"], "did you mean", None),
        ("malformed board TOML", ["compress", tiny_h5, *R, "--board-file", d / "bad.toml"], "not valid TOML", None),
        ("data of another shape", ["compress", tiny_h5, *R, "--data", d / "wrongshape.npz"], "expects (8, 8, 1)", None),
        ("labels out of range", ["compress", tiny_h5, *R, "--data", d / "badlabels.npz"], "3 classes", None),
        ("no input range", ["compress", tiny_h5], "--input-range", None),
        ("impossible budget", ["compress", tiny_h5, *R, "--max-ram", "8B"], "even the smallest", None),
    ]


@pytest.mark.parametrize("index", range(17))
def test_bad_input(index, cases, tiny_h5, tmp_path):
    name, args, message, needs = matrix(cases, tiny_h5)[index]
    if needs == "shared" and not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    out = tmp_path / "out"
    r = run(*args, "-o", out, "--quiet")
    assert r.exit_code == 1, (name, r.output)
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") or "error:" in r.output, (name, r.output)
    assert message in " ".join(r.output.split()), (name, r.output)
    assert not out.exists(), f"{name}: partial output left behind"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tinydistill-")]


def test_output_is_a_file(cases, tiny_h5):
    r = run("compress", tiny_h5, "--input-range", "0,1", "-o", cases / "afile")
    assert r.exit_code == 1 and "is a file" in r.output and (cases / "afile").read_text() == "x"


def test_full_disk_leaves_nothing(cases, tiny_h5, tmp_path, monkeypatch):
    """A disk that fills up while the results are written: one line, and no partial folder."""
    import builtins

    real_open = builtins.open
    out = tmp_path / "out"

    def full_disk_open(path, mode="r", *a, **kw):
        if "w" in mode and ".tinydistill-" in str(path) and str(path).endswith("report.md"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(builtins, "open", full_disk_open)
    r = run("compress", tiny_h5, "--input-range", "0,1", "--inputs", "20", "--steps", "1", "--epochs", "1",
            "--width", "0.5", "-o", out, "--quiet")
    assert r.exit_code == 1 and "No space left on device" in r.output, r.output
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tinydistill-")]


def test_usage_error_exit_2(tiny_h5):
    r = run("compress", tiny_h5, "--no-such-option")
    assert r.exit_code == 2 and "No such option" in r.output
