"""Interpreters: TFLite Micro (arena, the firmware's truth) and LiteRT / tflite-runtime (accuracy).

Imports only numpy at module level, so the on-device path never needs TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

import numpy as np

from .errors import TinyDistillError


class CapturedOutput:
    """What C code wrote to stdout/stderr inside :func:`capture_c_output`."""

    text = ""


@contextlib.contextmanager
def capture_c_output():
    """Redirect the C-level stdout and stderr (file descriptors 1 and 2) into a buffer.

    TFLite Micro prints its arena only there, and TensorFlow / LiteRT print
    start-up chatter there that would break progress bars and JSON output.
    """
    captured = CapturedOutput()
    with tempfile.TemporaryFile() as tmp:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            captured.text = tmp.read().decode(errors="replace")


def tflm_interpreter(tflite: bytes):
    """A TFLite Micro interpreter for the model (host build of the real TFLM)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise TinyDistillError("the tflite-micro package is missing: pip install tflite-micro") from None
    error = None
    with capture_c_output() as log:
        try:
            interpreter = runtime.Interpreter.from_bytes(tflite, arena_size=max(len(tflite) * 10, 4 << 20))
        except Exception as exc:  # TFLM raises RuntimeError and prints the reason
            error = exc
    if error is not None:
        detail = " ".join(line.strip() for line in log.text.splitlines() if line.strip())[-300:]
        raise TinyDistillError(f"TFLite Micro cannot run this model: {detail or error}")
    return interpreter


def tflm_arena_bytes(interpreter) -> int:
    """The tensor arena the firmware needs, as TFLite Micro's recording allocator reports it."""
    with capture_c_output() as out:
        interpreter.print_allocations()
    m = re.search(r"Arena allocation total (\d+) bytes", out.text)
    if not m:
        raise TinyDistillError("TFLite Micro did not report its arena size: is tflite-micro up to date?")
    return int(m.group(1))


def litert_interpreter(tflite: bytes, num_threads: int | None = None):
    """A LiteRT (ai-edge-litert) or tflite-runtime interpreter, whichever works here.

    tflite-runtime 2.14 imports with numpy 2 but fails inside ``Interpreter()``
    ("_ARRAY_API not found"), so each candidate is tried up to a working interpreter.
    """
    errors = []
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            mod = __import__(module, fromlist=["Interpreter"])
            with capture_c_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                it = mod.Interpreter(model_content=tflite, num_threads=num_threads)
                it.allocate_tensors()
            return it
        except Exception as exc:  # ImportError, or numpy ABI errors inside the C extension
            errors.append(f"{module.split('.')[0]}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    raise TinyDistillError("no TFLite interpreter works here (" + "; ".join(errors) +
                           "): pip install ai-edge-litert (or tflite-runtime with numpy<2)")


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float inputs to the model's input dtype using its scale and zero point."""
    scale, zero = detail["quantization"]
    dtype = detail["dtype"]
    if scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale if scale else y.astype(np.float32)


def litert_outputs(tflite: bytes, x: np.ndarray, *, interpreter=None) -> np.ndarray:
    """Dequantised outputs of the model on float inputs ``x`` (one inference per input)."""
    it = interpreter or litert_interpreter(tflite)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    q = quantize_input(np.asarray(x, np.float32), inp)
    res = np.empty((len(x),) + tuple(out["shape"][1:]), np.float32)
    for i in range(len(x)):
        it.set_tensor(inp["index"], q[i:i + 1])
        it.invoke()
        res[i] = dequantize_output(it.get_tensor(out["index"])[0], out)
    return res


def tflm_outputs(interpreter, x: np.ndarray) -> np.ndarray:
    """Dequantised outputs of the TFLite Micro interpreter on float inputs ``x``."""
    inp, out = interpreter.get_input_details(0), interpreter.get_output_details(0)
    qi = {"quantization": (float(inp["quantization_parameters"]["scales"][0]),
                           int(inp["quantization_parameters"]["zero_points"][0])), "dtype": inp["dtype"]}
    qo = {"quantization": (float(out["quantization_parameters"]["scales"][0]),
                           int(out["quantization_parameters"]["zero_points"][0])), "dtype": out["dtype"]}
    q = quantize_input(np.asarray(x, np.float32), qi)
    res = []
    for i in range(len(x)):
        interpreter.set_input(q[i:i + 1], 0)
        interpreter.invoke()
        res.append(dequantize_output(interpreter.get_output(0)[0], qo))
    return np.stack(res)
