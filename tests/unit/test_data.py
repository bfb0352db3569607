import gzip
import os

import numpy as np
import pytest

from tinydistill.data import fit_to_teacher, load_data, parse_range, to_input_range
from tinydistill.errors import DataError


def _write_idx(path, arr):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_idx_folder_train_and_test(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("t10k", 5)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 4, 4), dtype=np.uint8))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 3, n).astype(np.uint8))
    assert len(load_data(str(tmp_path), split="train")) == 7
    ds = load_data(str(tmp_path), split="test")
    assert ds.x.shape == (5, 4, 4) and ds.x.dtype == np.uint8


def test_truncated_idx(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 4, 4), np.uint8))
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\x00\x01")
    with pytest.raises(DataError, match="truncated"):
        load_data(str(tmp_path))


def test_npz_and_one_hot_labels(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((4, 2, 2, 1), np.float32), y=np.eye(3)[[0, 1, 2, 1]])
    ds = load_data(str(p))
    assert ds.y.tolist() == [0, 1, 2, 1]


def test_npz_pickle_refused(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.array([object()], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="pickled"):
        load_data(str(p))


def test_npz_missing_keys(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(DataError, match="'x' and 'y'"):
        load_data(str(p))


def test_missing_path():
    with pytest.raises(DataError, match="does not exist"):
        load_data("/nonexistent/data.npz")


@pytest.mark.parametrize("text, want", [("0,1", (0.0, 1.0)), ("0,255", (0.0, 255.0)), ("-1:1", (-1.0, 1.0)),
                                        ((0, 1), (0.0, 1.0))])
def test_parse_range(text, want):
    assert parse_range(text) == want


@pytest.mark.parametrize("text", ["1,0", "abc", "0", "0,1,2", "nan,1"])
def test_parse_range_rejects(text):
    with pytest.raises(DataError, match="LO"):
        parse_range(text)


def test_uint8_maps_to_range():
    x = np.array([0, 255], np.uint8)
    np.testing.assert_allclose(to_input_range(x, (0, 1)), [0, 1])
    np.testing.assert_allclose(to_input_range(x, (-1, 1)), [-1, 1])
    np.testing.assert_allclose(to_input_range(x, (0, 255)), [0, 255])


def test_float_out_of_range_refused():
    with pytest.raises(DataError, match="input-range"):
        to_input_range(np.array([0.0, 200.0], np.float32), (0, 1))


def test_fit_adds_channel_axis_and_checks_labels():
    from tinydistill.data import Dataset

    ds = Dataset(x=np.zeros((3, 8, 8), np.uint8), y=np.array([0, 1, 2]), source="s")
    x, y = fit_to_teacher(ds, (8, 8, 1), 3, (0, 1))
    assert x.shape == (3, 8, 8, 1) and x.dtype == np.float32
    with pytest.raises(DataError, match="labels run from 0 to 2"):
        fit_to_teacher(ds, (8, 8, 1), 2, (0, 1))
    with pytest.raises(DataError, match="expects \\(28, 28, 1\\)"):
        fit_to_teacher(ds, (28, 28, 1), 3, (0, 1))


def test_shared_mnist(shared_data):
    ds = load_data(os.path.join(shared_data, "mnist"), split="test")
    assert ds.x.shape == (10000, 28, 28)
    assert np.bincount(ds.y).tolist()[:3] == [980, 1135, 1032]


def test_images_flattened_for_a_dense_teacher():
    from tinydistill.data import Dataset

    ds = Dataset(x=np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4), y=np.array([0, 1]), source="s")
    x, _ = fit_to_teacher(ds, (16,), 2, (0, 255))
    assert x.shape == (2, 16) and x[1, 0] == 16  # row-major, as Keras' Flatten
