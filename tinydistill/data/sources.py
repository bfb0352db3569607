"""Labelled data as users have it, read in batches with bounded memory.

A :class:`Source` yields ``(x, y)`` batches as stored (uint8 images, float features) from an
``.npz`` or IDX folder (:func:`~tinydistill.data.load_data`), an image folder in the Keras
convention of ``keras.utils.image_dataset_from_directory`` (one subfolder per class, class names
from the sorted folder names; PNG, JPEG, BMP, GIF decoded by Pillow, resized to the teacher's input
size, grey or RGB by its channels), a CSV file (a ``label`` column, or another one named, and
numeric feature columns), or, from Python, a ``tf.data.Dataset`` or any iterable of ``(x, y)``
batches. :func:`teacher_batches` turns any of them into batches in the teacher's shape and input
range. Every file is untrusted: an unreadable one is named in a one-line :class:`DataError`.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # keras.utils.image_dataset_from_directory's
CSV_EXTENSIONS = (".csv", ".tsv")
MAX_IMAGE_PIXELS = 1 << 26  # larger images are refused (decompression bombs), ~64 Mpixel


@dataclass
class Source:
    """Labelled examples that can be read in batches, more than once.

    Attributes:
        source: where they come from (for messages and reports).
        class_names: the classes' names in label order, or None.
        count: how many examples, or None where unknown until read.
        kind: ``"arrays"``, ``"images"``, ``"csv"`` or ``"batches"``.
        image_size: (height, width, channels) images are decoded to (folders); set by :func:`teacher_batches`.
    """

    source: str
    class_names: list | None = None
    count: int | None = None
    kind: str = "arrays"
    image_size: tuple | None = None
    _reader: object = field(default=None, repr=False)

    def batches(self, batch_size: int):
        """``(x, y)`` batches as stored (images uint8, features float32, labels int64)."""
        return self._reader(self, batch_size)

    def __len__(self) -> int:
        return int(self.count or 0)


def arrays_source(x: np.ndarray, y: np.ndarray, source: str, class_names=None) -> Source:
    """Arrays already in memory (an .npz, IDX files, or the Python API's ``(x, y)``)."""
    def read(src, batch_size):
        for start in range(0, len(y), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]

    return Source(source=source, class_names=class_names, count=len(y), kind="arrays", _reader=read)


# ---------------------------------------------------------------- image folders

def _scan_images(path: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted subfolders) and every image file with its label, in a fixed order."""
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
    if not classes:
        raise DataError(f"{path} has no class subfolders: put each class's images in a folder of its own, "
                        f"e.g. {os.path.join(path, 'cat', '1.png')}")
    files = []
    for label, name in enumerate(classes):
        found = []
        for folder, dirs, names in os.walk(os.path.join(path, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(folder, f) for f in sorted(names)
                      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
        if not found:
            raise DataError(f"class folder {os.path.join(path, name)} holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
                            "add its images or remove the folder")
        files += [(f, label) for f in found]
    return classes, files


def read_image(path: str, size: tuple) -> np.ndarray:
    """One image file decoded, converted to grey or RGB and resized to (height, width): uint8 (H, W, C)."""
    from PIL import Image

    height, width, channels = size
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.seek(0)  # an animated GIF: its first frame, as Keras does
                img = img.convert("L" if channels == 1 else "RGB")
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            MemoryError) as exc:
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {str(exc)[:120]}): remove or replace "
                        "the file") from None
    return arr.reshape(height, width, channels)


def folder_source(path: str) -> Source:
    """An image folder: one subfolder per class (sorted names are the classes), images decoded on demand."""
    classes, files = _scan_images(path)

    def read(src, batch_size):
        if src.image_size is None:
            raise DataError(f"{path}: images need the teacher's input size to be read: use teacher_batches")
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            yield (np.stack([read_image(f, src.image_size) for f, _ in chunk]),
                   np.array([label for _, label in chunk], np.int64))

    return Source(source=path, class_names=classes, count=len(files), kind="images", _reader=read)


# ---------------------------------------------------------------- CSV

def _csv_columns(path: str, header: list[str], label_column: str | None) -> int:
    names = [h.strip() for h in header]
    want = label_column or "label"
    if want not in names:
        raise DataError(f"{path} has no column {want!r} (columns: {', '.join(names[:12])}"
                        f"{', ...' if len(names) > 12 else ''}): name the label column with --label-column")
    return names.index(want)


def csv_source(path: str, *, label_column: str | None = None, class_names=None) -> Source:
    """A CSV file with a header row: the label column (``label`` or ``label_column``) and numeric features.

    Labels are class indices, or class names when ``class_names`` are given. Rows are read in
    batches; the file is never held whole.
    """
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    lookup = {name: i for i, name in enumerate(class_names)} if class_names else None

    def rows():
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f, delimiter=delimiter)
                header = next(reader, None)
                if not header:
                    raise DataError(f"{path} is empty: pass a CSV with a header row and one example per row")
                col = _csv_columns(path, header, label_column)
                for line, row in enumerate(reader, start=2):
                    if row:
                        yield line, col, row, len(header)
        except UnicodeDecodeError:
            raise DataError(f"{path} is not a UTF-8 text CSV file: export it as CSV") from None
        except csv.Error as exc:
            raise DataError(f"{path} is not a valid CSV file ({exc}): export it as CSV") from None

    def read(src, batch_size):
        xs, ys = [], []
        for line, col, row, width in rows():
            if len(row) != width:
                raise DataError(f"{path}, line {line}: {len(row)} fields where the header has {width}")
            ys.append(_label(path, line, row[col], lookup))
            xs.append(_features(path, line, row[:col] + row[col + 1:]))
            if len(ys) == batch_size:
                yield np.asarray(xs, np.float32), np.asarray(ys, np.int64)
                xs, ys = [], []
        if ys:
            yield np.asarray(xs, np.float32), np.asarray(ys, np.int64)

    return Source(source=path, class_names=list(class_names) if class_names else None, count=None, kind="csv",
                  _reader=read)


def _label(path, line, text, lookup) -> int:
    text = text.strip()
    if lookup is not None and text in lookup:
        return lookup[text]
    try:
        return int(text)
    except ValueError:
        known = f" or one of the --class-names ({', '.join(list(lookup)[:5])}...)" if lookup else \
            " (for class names as labels pass --class-names in label order)"
        raise DataError(f"{path}, line {line}: label {text[:40]!r} is not a class index{known}") from None


def _features(path, line, fields) -> list[float]:
    try:
        values = [float(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not _is_number(v))
        raise DataError(f"{path}, line {line}: {bad[:40]!r} is not a number: features must be numeric") from None
    if not np.isfinite(values).all():
        raise DataError(f"{path}, line {line}: a feature is NaN or infinite: clean the data")
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- Python iterables and tf.data

def batches_source(data, *, class_names=None) -> Source:
    """A ``tf.data.Dataset`` or any re-iterable of ``(x, y)`` batches (a single-pass iterator is read once)."""
    def read(src, batch_size):
        it = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else iter(data)
        for item in it:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise DataError("each batch of the data must be a pair (x, y) of inputs and integer labels")
            x, y = (np.asarray(v) for v in item)
            if y.ndim == 0:  # an unbatched dataset: one example at a time
                x, y = x[None], y[None]
            yield x, y

    name = "a tf.data.Dataset" if hasattr(data, "as_numpy_iterator") else "batches given from Python"
    return Source(source=name, class_names=class_names, count=None, kind="batches", _reader=read)


def as_source(data, *, class_names=None) -> Source:
    """Any labelled data the API accepts: a Source, a Dataset, ``(x, y)`` arrays, a tf.data.Dataset, an iterable."""
    from . import Dataset

    if isinstance(data, Source):
        return data
    if isinstance(data, Dataset):
        return arrays_source(data.x, data.y, data.source, class_names)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        return arrays_source(data[0], np.asarray(data[1]).reshape(-1), "arrays given from Python", class_names)
    if hasattr(data, "as_numpy_iterator") or hasattr(data, "__iter__"):
        return batches_source(data, class_names=class_names)
    raise DataError(f"data must be (x, y) arrays, a tf.data.Dataset or an iterable of (x, y) batches. "
                    f"Received: {type(data).__name__}")


def open_data(path: str, *, split: str = "test", label_column: str | None = None, class_names=None) -> Source:
    """Labelled data on disk: an ``.npz``, an IDX folder, an image folder (one subfolder per class) or a CSV file."""
    from . import load_data

    path = str(path)
    if not os.path.exists(path):
        raise DataError(f"data {path} does not exist: pass an .npz with x and y, an IDX folder, an image folder "
                        "(one subfolder per class) or a CSV file")
    if os.path.isfile(path) and path.lower().endswith(CSV_EXTENSIONS):
        return csv_source(path, label_column=label_column, class_names=class_names)
    if os.path.isdir(path) and not any("idx" in f.lower() for f in os.listdir(path)):
        src = folder_source(path)
        if class_names and list(class_names) != src.class_names:
            raise DataError(f"--class-names ({', '.join(class_names)}) differ from {path}'s class folders "
                            f"({', '.join(src.class_names)}): drop --class-names or rename the folders")
        return src
    ds = load_data(path, split=split)
    return arrays_source(ds.x, ds.y, ds.source, class_names)


def teacher_batches(src: Source, teacher_shape: tuple, num_classes: int, input_range, batch_size: int = 256,
                    *, already_scaled: bool = False):
    """``src``'s batches in the teacher's input shape and range: ``(x float32, y int64)``, checked as they come.

    ``already_scaled``: the inputs are in the teacher's units already (the Python API's arrays and
    batches), so only their shape is fitted; otherwise uint8 is mapped to the range (images) and floats
    are checked against it (see :func:`~tinydistill.data.to_input_range`).
    """
    from . import reshape_to, to_input_range

    shape = tuple(int(d) for d in teacher_shape)
    if src.kind == "images":
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise DataError(f"{src.source} is an image folder but the teacher takes inputs of shape {shape}, not "
                            "grey or RGB images: pass an .npz or CSV made for it")
        if src.class_names is not None and len(src.class_names) != num_classes:
            raise DataError(f"{src.source} has {len(src.class_names)} class folders but the teacher has {num_classes} "
                            "classes: one folder per class the teacher knows, in its label order")
        src.image_size = shape
    for x, y in src.batches(batch_size):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
            y = y.argmax(axis=1)
        y = y.reshape(-1)
        if len(x) != len(y):
            raise DataError(f"{src.source}: a batch of {len(x)} inputs has {len(y)} labels")
        if len(y) and not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"{src.source}: labels must be integer class indices")
        y = y.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(f"{src.source}: labels run from {y.min()} to {y.max()} but the teacher has {num_classes} "
                            f"classes (0..{num_classes - 1}): pass the labels this model was trained on")
        x = np.asarray(x)
        if src.kind == "csv" and x.shape[1:] != shape and x.shape[1] == int(np.prod(shape)):
            x = x.reshape((len(x),) + shape)  # a row holds the input's values flattened, in C order
        x = reshape_to(x, shape, src.source)
        yield (np.asarray(x, np.float32) if already_scaled else to_input_range(x, input_range)), y
