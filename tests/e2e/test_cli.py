"""End-to-end through the click CLI on a tiny teacher: files, report, errors."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tinydistill.cli import main
from tinydistill.config import CompressConfig
from tinydistill.errors import TinyDistillError

from ..conftest import ROOT, keras3_fcn, toy_data

FAST = ["--inputs", "600", "--steps", "100", "--epochs", "30", "--width", "0.5"]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    x, y = toy_data(600, seed=1)
    np.savez(d / "train.npz", x=(x * 255).round().astype(np.uint8), y=y)
    xt, yt = toy_data(300, seed=2)
    np.savez(d / "test.npz", x=xt, y=yt)
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def compressed(tiny_h5, data_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    stats = out.parent / "tiny.stats.npz"
    r = run("stats", tiny_h5, "--data", data_files / "train.npz", "--input-range", "0,1", "-o", stats, "--quiet")
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and stats.exists()
    r = run("compress", tiny_h5, "--board", "cortex-m4", "--stats", stats, "--data", data_files / "test.npz",
            *FAST, "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    return out, r.output


def test_outputs_written(compressed):
    out, text = compressed
    assert sorted(os.listdir(out)) == ["model_data.cc", "model_data.h", "model_ops.h", "report.json", "report.md", "report.png",
                                       "samples.png", "student.keras", "student.tflite", "synthetic.npz", "test_sample.npz"]
    for png in ("report.png", "samples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PASS" in text and "nrf52840" in text
    assert not [f for f in os.listdir(out.parent) if f.startswith(".tinydistill-")]


def test_report_contents(compressed):
    out, _ = compressed
    r = json.loads((out / "report.json").read_text())
    assert r["board"]["name"] == "nrf52840" and r["board"]["ram_bytes"] == 262144
    assert r["student"]["params"] < r["teacher"]["params"] / 2
    acc = r["accuracy"]
    assert acc["teacher_float"] == 1.0
    assert acc["student_int8"] >= 0.85, acc
    assert abs(acc["student_int8"] - acc["student_float"]) <= 0.03
    assert r["student"]["model_bytes"] == os.path.getsize(out / "student.tflite")
    assert r["pass"] is True and r["fit"]["fits"] is True
    assert r["verification"]["tflm_litert_top1_agreement"] >= 0.99
    assert set(r["seconds"]) >= {"load", "synthesize", "distill", "export", "check", "total"}
    assert r["synthesis"]["method"] == "all-layers"
    assert r["distillation"]["feature_layers"] == ["conv1", "pool"]  # the tiny teacher's two feature-map sizes
    assert r["distillation"]["feature_weight"] == 30.0
    md = (out / "report.md").read_text()
    assert "PASS" in md and "tensor arena" in md and f"{acc['student_int8']:.2%}" in md
    assert "feature maps at `conv1`, `pool`" in md


def test_firmware_files(compressed):
    out, _ = compressed
    r = json.loads((out / "report.json").read_text())
    ops_h = (out / "model_ops.h").read_text()
    assert f"kModelOpCount = {len(r['student']['ops'])};" in ops_h
    assert "resolver.AddConv2D()" in ops_h and "resolver.AddFullyConnected()" in ops_h
    assert f"g_model_arena_bytes = {r['student']['arena_bytes'] + 16};" in (out / "model_data.h").read_text()


def test_arena_in_report_is_tflm(compressed):
    from ..unit.test_fitcheck import _independent_tflm_arena

    out, _ = compressed
    r = json.loads((out / "report.json").read_text())
    assert r["student"]["arena_bytes"] == _independent_tflm_arena((out / "student.tflite").read_bytes())


def test_float_student_saved(compressed, data_files):
    from tinydistill import _compat

    out, _ = compressed
    m = _compat.keras().models.load_model(out / "student.keras", compile=False)
    with np.load(data_files / "test.npz") as z:
        acc = (m.predict(z["x"], verbose=0).argmax(1) == z["y"]).mean()
    r = json.loads((out / "report.json").read_text())
    assert acc == pytest.approx(r["accuracy"]["student_float"], abs=1e-6)


def test_check_command(compressed):
    out, _ = compressed
    r = run("check", out / "student.tflite", "--board", "cortex-m0plus", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["board"] == "rp2040" and res["fits"] and res["ops"]
    r = run("check", out / "student.tflite", "--board", "samd21", "--headroom", "0.99")
    assert r.exit_code == 1 and "FAIL" in r.output


def test_inspect_command(tiny_h5, compressed):
    stats = compressed[0].parent / "tiny.stats.npz"
    r = run("inspect", tiny_h5, "--stats", stats)
    assert r.exit_code == 0, r.output
    assert "auto method: all-layers" in r.output and "BatchNorm:   no" in r.output
    assert "range 0..1" in r.output and "already fits" in r.output
    r = run("inspect", tiny_h5, "--board", "samd21", "--json")
    info = json.loads(r.output)
    assert info["auto_method"] == "prior" and info["board"] == "samd21" and info["int8_arena_bytes"] > 0


def test_boards_command():
    r = run("boards")
    assert r.exit_code == 0
    for name in ("nrf52840", "rp2040", "stm32h743", "esp32s3", "raspberry-pi-5"):
        assert name in r.output


def _assert_clean_failure(r, out, match, code=1):
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines and match in r.output.replace("\n", " "), r.output
    assert not os.path.exists(out) or not os.listdir(out)


def test_error_matrix(tmp_path, tiny_h5, compressed, data_files):
    out = tmp_path / "o"
    stats = compressed[0].parent / "tiny.stats.npz"
    reg = tmp_path / "reg.h5"
    from tinydistill import _compat

    k = _compat.keras()
    i = k.Input((4,))
    k.Model(i, k.layers.Dense(1)(i)).save(reg)
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["compress", tmp_path / "nope.h5"], "does not exist"),
        (["compress", tiny_h5, "--board", "cortex-m5", "--input-range", "0,1"], "did you mean"),
        (["compress", reg, "--input-range", "0,1"], "classifiers"),
        (["compress", tiny_h5], "--input-range"),
        (["compress", tiny_h5, "--stats", data_files / "test.npz"], "not a tinydistill stats file"),
        (["compress", tiny_h5, "--input-range", "0,1", "--data", data_files / "nope.npz"], "does not exist"),
        (["compress", tiny_h5, "--stats", stats, "--input-range", "0,255"], "contradicts"),
        (["stats", tiny_h5, "--data", data_files / "train.npz"], "--input-range"),
    ]
    for args, match in cases:
        _assert_clean_failure(run(*args, "-o", out), out, match)
    r = run("compress", tiny_h5, "--input-range", "0,1", "-o", afile)
    _assert_clean_failure(r, tmp_path / "unused", "is a file")


def test_shape_mismatch(tmp_path, tiny_h5):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((3, 32, 32, 3), np.uint8), y=np.zeros(3, np.int64))
    out = tmp_path / "o"
    _assert_clean_failure(run("compress", tiny_h5, "--input-range", "0,1", "--data", p, "-o", out), out,
                          "teacher expects (8, 8, 1)")


def test_usage_errors_exit_2(tiny_h5, tmp_path):
    assert run("compress", tiny_h5, "--width", "abc").exit_code == 2
    assert run("compress", tiny_h5, "--method", "magic").exit_code == 2
    assert run("compress", tiny_h5, "--student-batchnorm", "maybe").exit_code == 2
    r = run("compress", tiny_h5, "--width", "1.5", "--input-range", "0,1", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "(0, 1]" in r.output


def test_student_batchnorm_on(tiny_h5, compressed, tmp_path):
    """--student-batchnorm on gives the plain tiny teacher's student a BatchNorm after its convolution: the int8 model
    has the operators of the run without it, and the report counts it (and the teacher's parameters)."""
    out = tmp_path / "o"
    r = run("compress", tiny_h5, "--board", "cortex-m4", "--input-range", "0,1", "--student-batchnorm", "on", "--inputs",
            "60", "--steps", "2", "--epochs", "1", "--width", "0.5", "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    got, plain = (json.loads((folder / "report.json").read_text())["student"] for folder in (out, compressed[0]))
    assert got["batchnorm_added"] == 1 and plain["batchnorm_added"] == 0
    assert got["ops"] == plain["ops"] and got["params"] == plain["params"]
    assert "It trains with BatchNorm after 1 convolution, which" in (out / "report.md").read_text()
    with pytest.raises(TinyDistillError, match="student_batchnorm"):
        CompressConfig.from_options(student_batchnorm="yes").validate()


def test_unwritable_output(tmp_path, tiny_h5):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = run("compress", tiny_h5, "--input-range", "0,1", "-o", ro / "out")
    _assert_clean_failure(r, ro / "out", "permission denied")


def test_impossible_budget_one_line(tiny_h5, tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, [tiny_h5, "--max-ram", "16B", "-o", str(out), "--quiet"][0:0] +
                           ["compress", tiny_h5, "--max-ram", "16B", "-o", str(out), "--quiet"])
    _assert_clean_failure(r, out, "even the smallest student")
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) <= 3


def test_explicit_width_that_does_not_fit(tiny_h5, tmp_path):
    out = tmp_path / "o"
    r = run("compress", tiny_h5, "--width", "1", "--board", "samd21", "--max-ram", "64B", "-o", out, "--quiet")
    _assert_clean_failure(r, out, "--width auto")


def test_test_sample_written(compressed):
    out, _ = compressed
    with np.load(out / "test_sample.npz") as z:
        assert z["x_int8"].shape == (300, 8, 8, 1) and z["x_int8"].dtype == np.int8
        assert z["x"].shape == (100, 8, 8, 1) and z["y"].shape == (300,) and z["host_int8_top1"].shape == (300,)
        r = json.loads((out / "report.json").read_text())
        assert (z["host_int8_top1"] == z["y"]).mean() == pytest.approx(r["accuracy"]["student_int8"])


def test_bundle_and_verify(compressed, tmp_path):
    import subprocess
    import sys
    import zipfile

    out, _ = compressed
    zpath = tmp_path / "device.zip"
    r = run("bundle", out, "-o", zpath)
    assert r.exit_code == 0, r.output
    dev = tmp_path / "dev"
    zipfile.ZipFile(zpath).extractall(dev)
    assert {"student.tflite", "test_sample.npz", "verify.py", "README.md", "model_data.cc"} <= set(os.listdir(dev))
    # TensorFlow must never be imported on the device: make importing it fail loudly
    poison = tmp_path / "poison"
    for mod in ("tensorflow", "tf_keras", "keras"):
        (poison / mod).mkdir(parents=True)
        (poison / mod / "__init__.py").write_text(f"raise ImportError('{mod} was imported on the device')\n")
    env = {**os.environ, "PYTHONPATH": str(poison)}
    p = subprocess.run([sys.executable, str(dev / "verify.py")], capture_output=True, text=True, env=env, cwd=dev)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    r = json.loads((out / "report.json").read_text())
    assert res["accuracy"] == pytest.approx(r["accuracy"]["student_int8"])
    assert res["agreement"] >= 0.995 and res["latency_ms"] > 0 and res["float_input_agreement"] >= 0.99
    assert res["examples"] == 300
    # the installed CLI's verify, likewise without TensorFlow
    p = subprocess.run([sys.executable, "-c", "import sys; from tinydistill.cli import main; "
                        "sys.argv=['tinydistill','verify',sys.argv[1],'--json']; main()", str(dev)],
                       capture_output=True, text=True, env={**env, "PYTHONPATH": os.pathsep.join([str(poison), ROOT])})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["agreement"] >= 0.995


def test_verify_tflite_with_data(compressed, data_files):
    out, _ = compressed
    r = run("verify", out / "student.tflite", "--data", data_files / "test.npz", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert json.loads(r.output)["accuracy"] == pytest.approx(rep["accuracy"]["student_int8"])
    r = run("verify", out / "student.tflite")
    assert r.exit_code == 2 and "--data" in r.output


def test_qat_and_prune_end_to_end(tiny_h5, compressed, data_files, tmp_path):
    pytest.importorskip("tensorflow_model_optimization")
    stats = compressed[0].parent / "tiny.stats.npz"
    out = tmp_path / "ft"
    r = run("compress", tiny_h5, "--stats", stats, "--data", data_files / "test.npz", *FAST, "--qat", "--prune", "0.5",
            "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    ft = rep["finetune"]
    assert ft["prune"]["kernel_sparsity"] >= 0.45 and ft["qat"]["epochs"] == 5
    # dense storage: the flatbuffer does not shrink, its compressed size does
    assert ft["after"]["gzip_bytes"] < ft["before"]["gzip_bytes"]
    assert abs(ft["after"]["model_bytes"] - ft["before"]["model_bytes"]) < 0.1 * ft["before"]["model_bytes"]
    assert rep["accuracy"]["student_int8"] >= 0.6 and "student_int8_accuracy" in ft["before"]
    assert "Fine-tuning (tfmot)" in (out / "report.md").read_text()


@pytest.fixture(scope="module")
def folder_and_csv(tmp_path_factory):
    """The toy test set as an image folder (class folders named) and as a CSV file (64 features and a label)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("userdata")
    x, y = toy_data(300, seed=2)
    names = ["left", "middle", "right"]
    for i, (img, label) in enumerate(zip(x, y)):
        os.makedirs(d / "imgs" / names[label], exist_ok=True)
        Image.fromarray((img[..., 0] * 255).round().astype(np.uint8)).save(d / "imgs" / names[label] / f"{i:03d}.png")
    rows = [",".join(f"{v:.4f}" for v in img.reshape(-1)) + f",{names[label]}" for img, label in zip(x, y)]
    (d / "test.csv").write_text(",".join(f"p{i}" for i in range(64)) + ",kind\n" + "\n".join(rows) + "\n")
    return d, names


def test_stats_and_compress_from_an_image_folder_carry_the_class_names(tiny_h5, folder_and_csv, tmp_path):
    d, names = folder_and_csv
    stats = tmp_path / "tiny.stats.npz"
    r = run("stats", tiny_h5, "--data", d / "imgs", "--input-range", "0,1", "-o", stats, "--quiet")
    assert r.exit_code == 0, r.output
    assert "(left, middle, right)" in r.output
    out = tmp_path / "out"
    r = run("compress", tiny_h5, "--board", "cortex-m4", "--stats", stats, "--data", d / "imgs", *FAST, "-o", out,
            "--quiet")
    assert r.exit_code == 0, r.output
    assert "classes: left, middle, right" in r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["teacher"]["class_names"] == names and rep["accuracy"]["examples"] == 300
    assert rep["accuracy"]["student_int8"] >= 0.85
    assert "Classes: left (0), middle (1), right (2)." in (out / "report.md").read_text()
    assert 'kClassNames[kNumClasses] = {"left", "middle", "right"};' in (out / "model_data.h").read_text()
    with np.load(out / "test_sample.npz") as z:
        assert z["class_names"].tolist() == names and len(z["y"]) == 300


def test_compress_measures_accuracy_on_a_csv_with_named_labels(tiny_h5, folder_and_csv, tmp_path):
    d, names = folder_and_csv
    out = tmp_path / "out"
    r = run("compress", tiny_h5, "--board", "cortex-m4", "--data", d / "test.csv", "--label-column", "kind",
            "--class-names", ",".join(names), "--input-range", "0,1", *FAST, "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"]["examples"] == 300 and rep["accuracy"]["teacher_float"] == 1.0
    assert rep["teacher"]["class_names"] == names
    r = run("compress", tiny_h5, "--board", "cortex-m4", "--data", d / "test.csv", "--input-range", "0,1", *FAST,
            "-o", tmp_path / "out2", "--quiet")
    assert r.exit_code == 1 and "no column 'label'" in r.output and "--label-column" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_binary_classifier_with_one_sigmoid_output(tmp_path):
    """One sigmoid unit (yes/no models): compressed as two classes; the student outputs [1 - p, p] and says so."""
    from tinydistill import _compat
    from tinydistill.fitting.runtime import litert_interpreter

    k = _compat.keras()
    _compat.set_seed(0)
    x, y = toy_data(600, seed=1)
    i = k.Input((8, 8, 1))
    h = k.layers.Dense(16, activation="relu")(k.layers.Flatten()(k.layers.Conv2D(8, 3, activation="relu")(i)))
    m = k.Model(i, k.layers.Dense(1, activation="sigmoid")(h))
    m.compile(optimizer=k.optimizers.Adam(0.01), loss="binary_crossentropy")
    m.fit(x, (y == 0).astype(np.float32), epochs=6, batch_size=32, verbose=0, shuffle=False)
    m.save(tmp_path / "yes_no.h5")
    xt, yt = toy_data(300, seed=2)
    np.savez(tmp_path / "test.npz", x=xt, y=(yt == 0).astype(np.int64))
    r = run("compress", tmp_path / "yes_no.h5", "--input-range", "0,1", "--data", tmp_path / "test.npz", *FAST,
            "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "output 1 is the teacher's output p" in " ".join(r.output.split())
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (rep["teacher"]["output"], rep["teacher"]["num_classes"]) == ("sigmoid", 2)
    assert rep["accuracy"]["teacher_float"] > 0.9 and rep["accuracy"]["student_int8"] > 0.8
    assert "**Note:** the teacher's one sigmoid output" in (tmp_path / "out" / "report.md").read_text()
    it = litert_interpreter((tmp_path / "out" / "student.tflite").read_bytes())
    assert tuple(it.get_output_details()[0]["shape"]) == (1, 2)


def test_a_teacher_that_rescales_its_own_inputs_needs_no_input_range(tmp_path):
    """Keras image models often start with Rescaling(1/255): that layer states the range 0..255."""
    from tinydistill import _compat

    k = _compat.keras()
    _compat.set_seed(0)
    x, y = toy_data(600, seed=1)
    i = k.Input((8, 8, 1))
    h = k.layers.Conv2D(8, 3, activation="relu")(k.layers.Rescaling(1 / 255.0)(i))
    m = k.Model(i, k.layers.Dense(3, activation="softmax")(k.layers.Flatten()(h)))
    m.compile(optimizer=k.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    m.fit(x * 255, y, epochs=6, batch_size=32, verbose=0, shuffle=False)
    m.save(tmp_path / "raw_pixels.h5")
    np.savez(tmp_path / "train.npz", x=(x * 255).round().astype(np.uint8), y=y)
    r = run("stats", tmp_path / "raw_pixels.h5", "--data", tmp_path / "train.npz", "-o", tmp_path / "t.stats.npz",
            "--quiet")
    assert r.exit_code == 0, r.output
    r = run("compress", tmp_path / "raw_pixels.h5", "--method", "prior", "--data", tmp_path / "train.npz",
            "--inputs", "300", "--steps", "20", "--epochs", "10", "--width", "0.5", "-o", tmp_path / "out", "--quiet")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["teacher"]["input_range"] == [0.0, 255.0]
    assert rep["accuracy"]["teacher_float"] > 0.9


def test_input_shape_for_a_model_with_unknown_dimensions(tmp_path):
    """A fully convolutional teacher saved with input (None, None, 1): refused in one line naming --input-shape, which
    rebuilds it at the given size for inspect and compress; a malformed size is a usage error."""
    path = tmp_path / "fcn.keras"
    keras3_fcn(path)
    out = tmp_path / "o"
    _assert_clean_failure(run("compress", path, "--input-range", "0,1", "-o", out), out, "pass --input-shape")
    assert run("inspect", path, "--input-shape", "12,a").exit_code == 2
    r = run("inspect", path, "--input-shape", "12,12,1", "--json")
    assert r.exit_code == 0, r.output
    r = run("compress", path, "--input-shape", "12,12,1", "--input-range", "0,1", "--inputs", "64", "--steps", "2",
            "--epochs", "1", "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["teacher"]["input_shape"] == [12, 12, 1]


def test_a_teacher_with_frozen_batchnorm_passes_its_statistics_on(tiny_bn_model, data_files, tmp_path):
    """A teacher fine-tuned with its BatchNorm frozen: the student's inherited layers stay frozen and keep the
    teacher's statistics (report: batchnorm_kept): the student normalises as the teacher does, where re-estimating
    them on synthetic inputs made a width-1 student of such a teacher 8 pp worse than the teacher."""
    from tinydistill import _compat

    m = _compat.keras().models.clone_model(tiny_bn_model)
    m.set_weights(tiny_bn_model.get_weights())
    m.get_layer("bn1").trainable = False
    path = tmp_path / "frozen.h5"
    m.save(path, include_optimizer=False)
    out = tmp_path / "out"
    r = run("compress", path, "--method", "bn", "--input-range", "0,1", "--inputs", "64", "--steps", "3", "--epochs",
            "2", "--width", "0.5", "--data", data_files / "test.npz", "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["distillation"]["batchnorm_kept"] == ["bn1"]
    assert "kept the teacher's statistics" in (out / "report.md").read_text()
    student = _compat.keras().models.load_model(out / "student.keras", compile=False)
    for a, b in zip(student.get_layer("bn1").get_weights(), m.get_layer("bn1").get_weights()):
        assert len(a) < len(b) and np.isin(a, b).all()  # gamma, beta (frozen) and the statistics: the kept channels'
    assert 0.0 <= report["synthesis"]["student_agreement_held_out"] <= 1.0  # the per-batch self-check


def test_a_teacher_that_fits_whole_is_quantised_as_it_is(tiny_bn_model, data_files, tmp_path):
    """At width 1 the student would be the teacher itself: no distillation (it could only drift), a calibration set
    only, made by per-batch synthesis even where the method asked for is the engine; the report says so."""
    from tinydistill import _compat

    tiny_bn_h5, out = tmp_path / "bn.h5", tmp_path / "out"
    tiny_bn_model.save(tiny_bn_h5, include_optimizer=False)
    r = run("compress", tiny_bn_h5, "--method", "generator", "--input-range", "0,1", "--steps", "2", "--width", "1",
            "--data", data_files / "test.npz", "-o", out)
    assert r.exit_code == 0, r.output
    assert "no distillation: the teacher fits the board whole" in " ".join(r.output.split())
    report = json.loads((out / "report.json").read_text())
    assert report["distillation"]["skipped"] and report["distillation"]["epochs"] == 0
    assert "distill" not in report["seconds"] and "interleave" not in report["seconds"]
    assert report["synthesis"]["method"] == "bn" and 500 <= report["synthesis"]["inputs"] < 1000
    assert "No distillation: the teacher fits the board whole" in (out / "report.md").read_text()
    k = _compat.keras()
    teacher, student = (k.models.load_model(p, compile=False) for p in (tiny_bn_h5, out / "student.keras"))
    x = np.random.default_rng(0).uniform(0, 1, (32, *teacher.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(student.predict(x, verbose=0), teacher.predict(x, verbose=0), atol=1e-5)
