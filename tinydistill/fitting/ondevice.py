"""On-device verification of an int8 .tflite: imports only numpy and a TFLite interpreter.

This file is self-contained on purpose: ``tinydistill bundle`` copies it into
the device bundle as ``verify.py``, so a Raspberry Pi needs only
``pip install numpy ai-edge-litert`` (or tflite-runtime with numpy<2) to run

    python verify.py [BUNDLE_FOLDER]

It quantises float inputs with the model's own scale and zero point, reports
top-1 accuracy, agreement with the int8 predictions the host recorded at
export, and the latency per inference on this machine. TensorFlow is never imported.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

SAMPLE = "test_sample.npz"


def load_interpreter(model_content: bytes, num_threads: int | None = None):
    """LiteRT (ai-edge-litert) or tflite-runtime, whichever works in this environment.

    Raises:
        RuntimeError: neither interpreter can be imported here.
        ValueError: the interpreter refuses the model (corrupt, truncated or not a TFLite model).
    """
    errors = []
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except Exception as exc:  # ImportError, or "_ARRAY_API not found" from tflite-runtime with numpy 2
            errors.append(f"{module.split('.')[0]}: {_first_line(exc)}")
            continue
        try:
            it = mod.Interpreter(model_content=model_content, num_threads=num_threads)
            it.allocate_tensors()
        except Exception as exc:  # the interpreter's own check of the flatbuffer and its tensors
            raise ValueError(f"the model is corrupt or truncated ({_first_line(exc)[:200]}): export it again") from None
        return it, module.split(".")[0]
    raise RuntimeError("no TFLite interpreter works here (" + "; ".join(errors) +
                       "): pip install ai-edge-litert, or tflite-runtime with numpy<2")


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def quantize_input(x, detail):
    """Float inputs to the model's input dtype with its own scale and zero point."""
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def verify(model_content: bytes, x: np.ndarray, y: np.ndarray | None = None, expected: np.ndarray | None = None,
           *, num_threads: int | None = None) -> dict:
    """Run the model on ``x`` one input at a time, as firmware would.

    Args:
        model_content: the .tflite bytes.
        x: float inputs in the teacher's input range, or inputs already quantised to the
            model's input type (int8).
        y: labels, for accuracy (optional).
        expected: the host's int8 top-1 predictions on ``x``, for agreement (optional).

    Returns:
        dict with ``accuracy``, ``agreement`` (None where not measurable), ``latency_ms``,
        ``examples`` and ``interpreter``.
    """
    it, name = load_interpreter(model_content, num_threads)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.asarray(x)
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(int(d) for d in inp["shape"][1:]) or x.dtype.kind not in "iuf":
        raise ValueError(f"the inputs are {x.dtype} {tuple(x.shape[1:])} per example but the model takes "
                         f"{tuple(int(d) for d in inp['shape'][1:])}: pass inputs made for this model")
    # inputs already in the model's input type are used as they are; floats are quantised here
    q = x if x.dtype == inp["dtype"] else quantize_input(np.asarray(x, np.float32), inp)
    preds = np.empty(len(x), np.int64)
    t0 = time.perf_counter()
    for i in range(len(x)):
        it.set_tensor(inp["index"], q[i:i + 1])
        it.invoke()
        preds[i] = int(it.get_tensor(out["index"])[0].argmax())  # argmax is the same before dequantising
    elapsed = time.perf_counter() - t0
    return {"examples": int(len(x)), "interpreter": name,
            "accuracy": float((preds == y).mean()) if y is not None else None,
            "agreement": float((preds == expected).mean()) if expected is not None else None,
            "latency_ms": 1000 * elapsed / max(1, len(x)), "predictions": preds}


def verify_bundle(folder: str) -> dict:
    """Verify a folder made by ``tinydistill bundle`` (or a ``compress`` output folder).

    Raises:
        ValueError: a file of the bundle is corrupt, truncated or inconsistent (the message names it).
    """
    with open(os.path.join(folder, "student.tflite"), "rb") as f:
        model = f.read()
    path = os.path.join(folder, SAMPLE)
    try:  # an untrusted archive: never unpickled, every array checked before use
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            x = z["x_int8"] if "x_int8" in files else z["x"]
            y = z["y"] if "y" in files else None
            expected = z["host_int8_top1"] if "host_int8_top1" in files else None
            x_float = z["x"] if "x_int8" in files and "x" in files else None
            names = [str(n) for n in z["class_names"]] if "class_names" in files else None
    except Exception as exc:  # zip, npy header and dtype errors, missing arrays, pickled objects
        raise ValueError(f"{path} is corrupt or truncated ({_first_line(exc)[:160]}): make the bundle again") from None
    if x.ndim < 2 or (x_float is not None and x_float.ndim < 2):
        raise ValueError(f"{path} holds no batch of inputs (x has shape {x.shape}): make the bundle again")
    for what, arr in (("y", y), ("host_int8_top1", expected)):
        if arr is not None and (arr.ndim != 1 or len(arr) != len(x) or not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{path}: {what} must hold one integer per input ({len(x)}): make the bundle again")
    res = verify(model, x, y, expected)
    if y is not None:
        per_class = {int(c): float((res["predictions"][y == c] == c).mean()) for c in np.unique(y)}
        weakest = min(per_class, key=per_class.get)
        res["weakest_class"] = names[weakest] if names and weakest < len(names) else weakest
        res["weakest_class_accuracy"] = per_class[weakest]
    if y is not None and expected is not None:
        res["host_accuracy"] = float((expected == y).mean())
    if x_float is not None and expected is not None:  # the float path: quantised here, as firmware does
        res["float_input_agreement"] = verify(model, x_float, None, expected[:len(x_float)])["agreement"]
    return res


def summary(res: dict) -> str:
    parts = [f"{res['examples']} inputs with {res['interpreter']}"]
    if res.get("accuracy") is not None:
        host = f" (host int8: {res['host_accuracy']:.2%})" if res.get("host_accuracy") is not None else ""
        parts.append(f"accuracy {res['accuracy']:.2%}{host}")
        if res.get("weakest_class") is not None:
            parts.append(f"weakest class {res['weakest_class']} {res['weakest_class_accuracy']:.0%}")
    if res.get("agreement") is not None:
        parts.append(f"top-1 agreement with the host {res['agreement']:.2%}")
    parts.append(f"{res['latency_ms']:.2f} ms per inference")
    return ", ".join(parts)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else os.path.dirname(os.path.abspath(__file__))
    try:
        res = verify_bundle(folder)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(res))
    print(json.dumps({k: v for k, v in res.items() if k != "predictions"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
