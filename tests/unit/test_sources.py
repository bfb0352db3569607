"""Data as users have it: image folders, CSV files, tf.data and iterables of batches, read in batches."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.conftest import toy_data
from tinydistill.data.sources import as_source, open_data, teacher_batches
from tinydistill.errors import DataError, StatsError
from tinydistill.teacher.stats import record_stats


def _save_png(path, arr):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


def _toy_folder(root, n=60, size=8, fmt="png"):
    """The toy task as an image folder: class folders named out of label order's alphabet on purpose."""
    x, y = toy_data(n, seed=3)
    names = ["left", "middle", "right"]
    for i, (img, label) in enumerate(zip(x, y)):
        arr = (img[..., 0] * 255).round().astype(np.uint8)
        _save_png(os.path.join(root, names[label], f"{i:03d}.{fmt}"), arr)
    return x, y, names


def test_image_folder_streams_in_the_keras_convention(tmp_path):
    x, y, names = _toy_folder(str(tmp_path / "imgs"))
    src = open_data(str(tmp_path / "imgs"))
    assert src.kind == "images" and src.class_names == names and len(src) == 60
    batches = list(teacher_batches(src, (8, 8, 1), 3, (0.0, 1.0), batch_size=16))
    assert [len(b[1]) for b in batches] == [16, 16, 16, 12]
    xs, ys = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    order = np.argsort(y, kind="stable")  # the folder is read class by class, files sorted
    np.testing.assert_array_equal(ys, y[order])
    np.testing.assert_allclose(xs, np.round(x[order] * 255) / 255, atol=1e-6)  # PNG is lossless


def test_images_are_resized_and_converted_to_the_teacher_channels(tmp_path):
    root = tmp_path / "mixed"
    _save_png(str(root / "a" / "big.png"), np.full((20, 30, 3), 200, np.uint8))  # RGB, another size
    _save_png(str(root / "b" / "grey.bmp"), np.full((8, 8), 50, np.uint8))
    from PIL import Image

    Image.fromarray(np.full((5, 5, 3), 10, np.uint8)).save(root / "b" / "small.jpg", quality=95)
    src = open_data(str(root))
    (x, y), = list(teacher_batches(src, (8, 8, 1), 2, (0.0, 255.0)))
    assert x.shape == (3, 8, 8, 1) and list(y) == [0, 1, 1]
    assert abs(float(x[0].mean()) - 200) < 1 and abs(float(x[1].mean()) - 50) < 1
    (x3, _), = list(teacher_batches(open_data(str(root)), (8, 8, 3), 2, (0.0, 1.0)))
    assert x3.shape == (3, 8, 8, 3) and float(x3.max()) <= 1.0


def test_image_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        open_data(str(tmp_path / "empty"))
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    (tmp_path / "noimg" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        open_data(str(tmp_path / "noimg"))
    _toy_folder(str(tmp_path / "imgs"), n=6)
    bad = tmp_path / "imgs" / "left" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(DataError, match=r"cannot read image .*broken.png.*remove or replace"):
        list(teacher_batches(open_data(str(tmp_path / "imgs")), (8, 8, 1), 3, (0.0, 1.0)))
    bad.unlink()
    with pytest.raises(DataError, match="3 class folders but the teacher has 10 classes"):
        list(teacher_batches(open_data(str(tmp_path / "imgs")), (8, 8, 1), 10, (0.0, 1.0)))
    with pytest.raises(DataError, match="not grey or RGB images"):
        list(teacher_batches(open_data(str(tmp_path / "imgs")), (49, 10), 3, (0.0, 1.0)))
    with pytest.raises(DataError, match="differ from .*class folders"):
        open_data(str(tmp_path / "imgs"), class_names=["a", "b", "c"])


def _csv(path, rows, header="f0,f1,f2,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def test_csv_rows_stream_with_a_label_column(tmp_path):
    p = _csv(tmp_path / "d.csv", [f"{i},{i + 0.5},{-i},{i % 3}" for i in range(10)])
    src = open_data(p)
    assert src.kind == "csv"
    (x, y), = list(teacher_batches(src, (3,), 3, (-10.0, 10.0), batch_size=100))
    assert x.shape == (10, 3) and list(y) == [i % 3 for i in range(10)]
    np.testing.assert_allclose(x[4], [4, 4.5, -4])
    p2 = _csv(tmp_path / "e.csv", ["cat,1,2", "dog,3,4"], header="kind,a,b")
    (x, y), = list(teacher_batches(open_data(p2, label_column="kind", class_names=["cat", "dog"]), (2,), 2, (0.0, 5.0)))
    assert list(y) == [0, 1] and x.tolist() == [[1, 2], [3, 4]]


def test_csv_errors_name_the_line_and_the_fix(tmp_path):
    def err(rows, match, header="f0,f1,f2,label", **kw):
        p = _csv(tmp_path / "bad.csv", rows, header)
        with pytest.raises(DataError, match=match):
            list(teacher_batches(open_data(p, **kw), (3,), 3, (-9.0, 9.0)))

    err(["1,2,3,0"], "no column 'label'", header="a,b,c,d")
    err(["1,2,3,0", "1,x,3,1"], r"line 3: 'x' is not a number")
    err(["1,2,3,0", "1,2,1"], r"line 3: 3 fields where the header has 4")
    err(["1,2"], r"line 2: 2 fields where the header has 4")
    err(["1,2,3,cat"], r"label 'cat' is not a class index.*--class-names")
    err(["1,2,3,7"], "labels run from 7 to 7 but the teacher has 3 classes")
    err(["1,2,nan,0"], "NaN or infinite")
    (tmp_path / "latin.csv").write_bytes("f0,label\n\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not a UTF-8 text CSV"):
        list(teacher_batches(open_data(str(tmp_path / "latin.csv")), (1,), 3, (0.0, 1.0)))


def test_stats_from_tf_data_a_generator_and_a_folder_equal_the_arrays(tiny_teacher, tmp_path):
    from tinydistill import _compat

    tf = _compat.tf()
    x, y = toy_data(120, seed=1)
    ref = record_stats(tiny_teacher, x, y, input_range=(0, 1), batch_size=32)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    for data in (ds.batch(25), ds, ((x[i:i + 7], y[i:i + 7]) for i in range(0, 120, 7))):
        got = record_stats(tiny_teacher, data, input_range=(0, 1))
        for name in ref.layers:
            np.testing.assert_allclose(got.mean[name], ref.mean[name], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got.std[name], ref.std[name], rtol=1e-4, atol=1e-6)
    xq = np.round(x * 255) / 255
    ref_q = record_stats(tiny_teacher, xq.astype(np.float32), y, input_range=(0, 1))
    for i, (img, label) in enumerate(zip(x, y)):
        _save_png(str(tmp_path / "f" / f"c{label}" / f"{i:03d}.png"), (img[..., 0] * 255).round().astype(np.uint8))
    folder = record_stats(tiny_teacher, open_data(str(tmp_path / "f")), input_range=(0, 1))
    assert folder.class_names == ["c0", "c1", "c2"]
    np.testing.assert_allclose(folder.mean["__logits__"], ref_q.mean["__logits__"], rtol=1e-5, atol=1e-5)
    with pytest.raises(StatsError, match="2 class names given"):
        record_stats(tiny_teacher, x, y, input_range=(0, 1), class_names=["a", "b"])
    with pytest.raises(DataError, match="data must be"):
        as_source(42)


def test_real_images_from_a_folder_give_the_same_stats_as_the_arrays(shared_data, tmp_path):
    """A folder of real CIFAR-10 test images (PNG, lossless) records exactly the statistics of the same arrays."""
    from tinydistill.teacher.model import load_teacher

    with np.load(os.path.join(shared_data, "cifar10", "test_q75.npz")) as d:
        idx = np.arange(0, len(d["y"]), len(d["y"]) // 120)[:120]  # the file is class-major: 12 of each class
        x, y = d["x"][idx], d["y"][idx]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for i, (img, label) in enumerate(zip(x, y)):
        _save_png(str(tmp_path / "cifar" / f"{label}_{names[label]}" / f"{i:04d}.png"), img)
    teacher = load_teacher(os.path.join(shared_data, "teachers", "cifar10_resnet8.h5"))
    st = record_stats(teacher, open_data(str(tmp_path / "cifar")), input_range=(0, 255))
    ref = record_stats(teacher, x.astype(np.float32), y, input_range=(0, 255))
    assert st.class_names == [f"{i}_{n}" for i, n in enumerate(names)]
    for name in ref.layers:
        np.testing.assert_allclose(st.mean[name], ref.mean[name], rtol=1e-4, atol=1e-4)
