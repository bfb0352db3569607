"""The device bundle: what a board with Linux needs to verify the student without TensorFlow."""

from __future__ import annotations

import io
import json
import os
from importlib import resources

import numpy as np

from ..errors import TinyDistillError
from ..fileio import read_npz
from .ondevice import SAMPLE

_README = """# tinydistill device bundle

The int8 student and what is needed to check it on the device, without TensorFlow.

    python3 -m venv venv && venv/bin/pip install numpy ai-edge-litert
    venv/bin/python verify.py

(tflite-runtime works too where numpy < 2.) `verify.py` imports only numpy and the
interpreter. It runs `student.tflite` on the {n} inputs in `test_sample.npz`, one at
a time, and prints the accuracy{acc}, the top-1 agreement with the int8 predictions
the host recorded at export (expect >= 99.5 %), and the latency per inference here.

| file | what |
| --- | --- |
| `student.tflite` | the int8 model (int8 input and output) |
| `test_sample.npz` | `x_int8` inputs as the model's int8 values, `x` some as floats in {rng}, \
{ylabel}`host_int8_top1` |
| `verify.py` | the check (a copy of tinydistill/fitting/ondevice.py) |
| `model_data.cc`, `model_data.h`, `model_ops.h` | the same model for microcontroller firmware |
| `report.json` | the host's report: board, sizes, accuracies |
{classes}"""


def make_bundle(folder: str) -> dict[str, bytes]:
    """The files of a device bundle made from a ``compress`` output folder.

    Raises:
        TinyDistillError: the folder is not a complete ``compress`` result.
    """
    need = ["student.tflite", "report.json"]
    missing = [f for f in need if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise TinyDistillError(f"{folder} is not a 'tinydistill compress' output folder (missing {', '.join(missing)})")
    from .tflite_model import read_tflite

    files = {"student.tflite": read_tflite(os.path.join(folder, "student.tflite"))}
    for name in ("report.json", "model_data.cc", "model_data.h", "model_ops.h"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[name] = f.read()
    report = _report(folder, files["report.json"])
    sample = os.path.join(folder, SAMPLE)
    if os.path.isfile(sample):
        arrays = read_npz(sample, TinyDistillError, "run compress again with --data",
                          pick=lambda names: [k for k in ("x_int8", "x", "y") if k in names])
        x = arrays.get("x_int8", arrays.get("x"))
        if x is None or x.ndim < 2:
            raise TinyDistillError(f"{sample} holds no test inputs: run compress again with --data")
        with open(sample, "rb") as f:
            files[SAMPLE] = f.read()
        n, labelled = len(x), "y" in arrays
    else:  # no labelled data was given: check agreement on synthetic inputs
        (files[SAMPLE], n), labelled = _synthetic_sample(folder, files["student.tflite"]), False
    files["verify.py"] = resources.files("tinydistill.fitting").joinpath("ondevice.py").read_bytes()
    acc = (report.get("accuracy") or {}).get("student_int8")
    files["README.md"] = _README.format(
        n=n, acc=f" (the host measured {acc:.2%} on the full test set)" if acc is not None and labelled else "",
        rng=tuple(report["teacher"]["input_range"]), ylabel="`y` labels, " if labelled else "",
        classes=_classes_line(report["teacher"].get("class_names"))).encode()
    return files


def _report(folder: str, raw: bytes) -> dict:
    """The folder's report.json, checked for what the bundle reads from it."""
    try:
        report = json.loads(raw)
        rng = [float(v) for v in report["teacher"]["input_range"]]
        names = report["teacher"].get("class_names")
        acc = (report.get("accuracy") or {}).get("student_int8")
        if len(rng) != 2 or (names is not None and not isinstance(names, list)) or (
                acc is not None and not isinstance(acc, (int, float))):
            raise ValueError("unexpected values")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise TinyDistillError(f"{os.path.join(folder, 'report.json')} is not a readable tinydistill report ({exc}): "
                               "run compress again") from None
    return report


def _classes_line(names) -> str:
    if not names:
        return ""
    return "\nClasses, in output order: " + ", ".join(f"{n} ({i})" for i, n in enumerate(names)) + ".\n"


def _synthetic_sample(folder: str, tflite: bytes, n: int = 500) -> tuple[bytes, int]:
    """``test_sample.npz`` from the synthetic inputs (no labels) and how many it holds."""
    from .fitcheck import int8_predictions

    path = os.path.join(folder, "synthetic.npz")
    if not os.path.isfile(path):
        raise TinyDistillError(f"{folder} has neither {SAMPLE} nor synthetic.npz: run compress again")
    x = read_npz(path, TinyDistillError, "run compress again", pick=lambda names: ["x"] if "x" in names else []).get("x")
    if x is None or x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise TinyDistillError(f"{path} holds no inputs x: run compress again")
    x = np.asarray(x[:n], np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, host_int8_top1=int8_predictions(tflite, x))
    return buf.getvalue(), len(x)


def sample_npz(tflite: bytes, x: np.ndarray, y: np.ndarray, host_top1: np.ndarray, n: int = 10000,
               class_names=None) -> bytes:
    """``test_sample.npz``: up to ``n`` labelled test inputs and the host's int8 top-1 on them (and the classes'
    names, a plain string array, where known).

    Inputs are stored as the model's own int8 input values (quantised with its
    scale and zero point), which is exact and a quarter of the size of floats;
    a few float inputs are kept too, so the device also exercises quantisation.
    """
    from .runtime import litert_interpreter, quantize_input

    detail = litert_interpreter(tflite).get_input_details()[0]
    buf = io.BytesIO()
    names = {"class_names": np.array([str(c) for c in class_names])} if class_names else {}
    np.savez_compressed(buf, x_int8=quantize_input(np.asarray(x[:n], np.float32), detail),
                        x=np.asarray(x[:100], np.float32), y=np.asarray(y[:n]), host_int8_top1=np.asarray(host_top1[:n]),
                        **names)
    return buf.getvalue()
