"""Read labelled data (.npz or MNIST-style IDX folders) and map it to the teacher's input range."""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..fileio import read_npz

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLITS = {"train": ("train",), "test": ("t10k", "test")}


@dataclass
class Dataset:
    """Labelled examples as stored on disk (not yet scaled).

    Attributes:
        x: inputs, uint8 (scaled by :func:`to_input_range`) or float.
        y: integer class labels, shape (N,).
        source: where they came from, for reports.
    """

    x: np.ndarray
    y: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.y)


def parse_range(text) -> tuple[float, float]:
    """Parse ``"0,1"`` / ``"0,255"`` / ``(lo, hi)`` into a validated (lo, hi) pair."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).replace(":", ",").split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise DataError(f"input range must be two numbers LO,HI such as 0,1 or 0,255. Received: {text!r}") from None
    if not np.isfinite([lo, hi]).all() or hi <= lo:
        raise DataError(f"input range must satisfy LO < HI. Received: {text!r}")
    return lo, hi


def _read_idx(path: str) -> np.ndarray:
    import zlib

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path} ({exc}): it is corrupt or truncated; download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = math.prod(dims) if dims else 0  # Python integers: a forged header cannot overflow the count
    if len(raw) - offset < count * dtype.itemsize:
        raise DataError(f"{path} is truncated: expected {count} values of {dtype}")
    return np.frombuffer(raw, dtype, count=count, offset=offset).reshape(dims)


def _find_idx(folder: str, split: str, kind: str) -> str | None:
    for name in sorted(os.listdir(folder)):
        low = name.lower()
        if any(low.startswith(p) for p in _SPLITS[split]) and kind in low and "idx" in low:
            return os.path.join(folder, name)
    return None


def _read_idx_folder(path: str, split: str):
    xi, yi = _find_idx(path, split, "images"), _find_idx(path, split, "labels")
    if not (xi and yi):
        other = "train" if split == "test" else "test"
        xi, yi = _find_idx(path, other, "images"), _find_idx(path, other, "labels")
    if not (xi and yi):
        raise DataError(f"{path} has no IDX image/label files (e.g. t10k-images-idx3-ubyte.gz)")
    return _read_idx(xi), _read_idx(yi)


def _read_npz(path: str, split: str):
    def pick(keys):
        xk = next((k for k in (f"x_{split}", "x", "images", "specs") if k in keys), None)
        yk = next((k for k in (f"y_{split}", "y", "labels") if k in keys), None)
        if xk is None or yk is None:
            raise DataError(f"{path} must hold arrays 'x' and 'y'; it has {sorted(keys)}")
        return [xk, yk]

    arrays = read_npz(path, DataError, "pass an .npz with plain arrays x and y, or an IDX folder", pick)
    return tuple(arrays.values())


def load_data(path: str, *, split: str = "test") -> Dataset:
    """Load labelled data.

    Args:
        path: an ``.npz`` with arrays ``x`` and ``y`` (or ``x_<split>`` /
            ``y_<split>``), or a folder of MNIST-style IDX files
            (``train-images-idx3-ubyte[.gz]`` ... ``t10k-labels-idx1-ubyte[.gz]``).
        split: ``"train"`` (used to record statistics) or ``"test"``
            (used to measure accuracy) when the source holds both.

    Raises:
        DataError: missing, unreadable or inconsistent data.
    """
    path = str(path)
    if not os.path.exists(path):
        raise DataError(f"data {path} does not exist: pass an .npz with x and y, or an IDX folder")
    if os.path.isdir(path):
        x, y = _read_idx_folder(path, split)
    else:
        x, y = _read_npz(path, split)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or x.dtype.kind not in "iuf" or y.dtype.kind not in "iuf":
        raise DataError(f"{path}: x must be numbers, one example per row, and y integer labels. "
                        f"Received: x {x.dtype} {x.shape}, y {y.dtype} {y.shape}")
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} inputs but {len(y)} labels")
    if len(y) == 0:
        raise DataError(f"{path} holds no examples")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"{path}: labels must be integer class indices")
    return Dataset(x=np.asarray(x), y=y.astype(np.int64), source=path)


def to_input_range(x: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """Map stored inputs to the teacher's input range as float32.

    uint8 data (images, IDX files) is taken as 0..255 and mapped linearly to
    ``input_range``; float data is taken as already in the teacher's units
    and checked against the range.
    """
    lo, hi = input_range
    if x.dtype == np.uint8:
        return (lo + x.astype(np.float32) * ((hi - lo) / 255.0)).astype(np.float32)
    x = x.astype(np.float32)
    span = hi - lo
    xmin, xmax = float(x.min()), float(x.max())
    if xmin < lo - 0.05 * span or xmax > hi + 0.05 * span:
        raise DataError(
            f"data values span [{xmin:g}, {xmax:g}] but the teacher's input range is [{lo:g}, {hi:g}]: "
            "pass the right --input-range or rescale the data")
    return x


def reshape_to(x: np.ndarray, input_shape, source: str, what: str = "teacher") -> np.ndarray:
    """``x`` in the model's input shape: a channel axis of 1 added or dropped, or images flattened for a
    dense (MLP) model; anything else is an error naming ``source``."""
    want = tuple(int(d) for d in input_shape)
    if tuple(x.shape[1:]) == want:
        return x
    same_size = int(np.prod(x.shape[1:])) == int(np.prod(want))
    if same_size and ([d for d in x.shape[1:] if d != 1] == [d for d in want if d != 1] or len(want) == 1):
        return x.reshape((len(x),) + want)
    raise DataError(f"{source}: inputs have shape {tuple(x.shape[1:])} but the {what} expects {want}: "
                    "pass data made for this model")


def resolve_input_range(input_range, stats, *, required: bool = True, teacher=None) -> tuple[float, float] | None:
    """The teacher's input range: stated by the user, recorded in the stats, or stated by the teacher's own first
    layer (``teacher.input_range_hint``: a Rescaling such as Keras' 1/255 says 0..255); never guessed.

    Raises:
        DataError: a malformed range, one that contradicts the stats file, or none known while ``required``.
    """
    if input_range is not None:
        rng = parse_range(input_range)
        if stats is not None and tuple(map(float, stats.input_range)) != rng:
            lo, hi = stats.input_range
            raise DataError(f"--input-range {rng[0]:g},{rng[1]:g} contradicts the stats file, which records "
                            f"{lo:g},{hi:g}: drop --input-range or re-record the stats")
        return rng
    if stats is not None:
        return tuple(float(v) for v in stats.input_range)
    hint = getattr(teacher, "input_range_hint", None)
    if hint is not None:
        return tuple(float(v) for v in hint)
    if not required:
        return None
    raise DataError("the teacher's input range is unknown: pass --input-range LO,HI (e.g. 0,1 for "
                    "images scaled to [0,1], 0,255 for raw pixels) or a stats file that records it")


def fit_to_teacher(ds: Dataset, input_shape: tuple, num_classes: int, input_range) -> tuple[np.ndarray, np.ndarray]:
    """Shape-check, reshape (e.g. add a channel axis) and scale data for a teacher.

    Raises:
        DataError: shape or labels incompatible with the teacher.
    """
    x = reshape_to(ds.x, input_shape, ds.source)
    if ds.y.min() < 0 or ds.y.max() >= num_classes:
        raise DataError(
            f"{ds.source}: labels run from {ds.y.min()} to {ds.y.max()} but the teacher has "
            f"{num_classes} classes (0..{num_classes - 1}): pass the labels this model was trained on")
    return to_input_range(x, input_range), ds.y
