"""Interpreters: TFLite Micro (arena, the firmware's truth) and LiteRT / tflite-runtime (accuracy).

Imports only numpy at module level, so the on-device path never needs TensorFlow.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

import numpy as np

from ..capture import capture_c_output
from ..errors import TinyDistillError
from .ondevice import load_interpreter, quantize_input  # noqa: F401  (quantize_input: re-exported)


class MissingKernelError(TinyDistillError):
    """TFLite Micro has no kernel for some of the model's operators (``ops``)."""

    def __init__(self, ops, message: str):
        super().__init__(message)
        self.ops = list(ops)


def tflm_run(tflite: bytes, x: np.ndarray | None = None, *, timeout: float = 600) -> tuple[int, np.ndarray | None]:
    """Run the model in the real TFLite Micro interpreter: its arena bytes, and its outputs on ``x``.

    Float inputs are quantised and the outputs dequantised; int8 inputs (the model's own input values)
    go in as they are and the raw int8 outputs come back, for byte-for-byte comparisons.

    TFLite Micro runs in a child process: on some malformed or degenerate
    models it calls abort(), which must end in a clear error, not a dead tool.

    Returns:
        (arena bytes as TFLM's recording allocator reports them, outputs (dequantised, or int8) or None)
    """
    import json
    import subprocess

    with tempfile.TemporaryDirectory(prefix="tinydistill-tflm-") as tmp:
        model_path = os.path.join(tmp, "model.tflite")
        with open(model_path, "wb") as f:
            f.write(tflite)
        args = [sys.executable, "-m", "tinydistill.fitting._tflm_worker", model_path]
        if x is not None:
            np.save(os.path.join(tmp, "x.npy"), x if x.dtype == np.int8 else np.asarray(x, np.float32))
            args += [os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": _package_parent()})
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0 or not last.startswith("{"):
            if "No module named 'tflite_micro'" in proc.stderr:
                raise TinyDistillError("the tflite-micro package is missing: pip install tflite-micro")
            raise TinyDistillError(f"TFLite Micro crashed on this model (exit {proc.returncode}): it cannot run it; "
                                   "check that it is a valid full-integer model (e.g. no layer with all-zero activations)")
        result = json.loads(last)
        if "error" in result:
            missing = sorted(set(re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", result["error"])))
            if missing:
                raise MissingKernelError(missing, f"TFLite Micro has no kernel for {', '.join(missing)} (used by this "
                                         "model): replace the layer that produces it, or choose a Linux board (LiteRT "
                                         "runs it there)")
            raise TinyDistillError(f"TFLite Micro cannot run this model: {result['error']}")
        m = re.search(r"Arena allocation total (\d+) bytes", result["allocations"])
        if not m:
            raise TinyDistillError("TFLite Micro did not report its arena size: is tflite-micro up to date?")
        outputs = np.load(os.path.join(tmp, "y.npy"), allow_pickle=False) if x is not None else None
        return int(m.group(1)), outputs


def _package_parent() -> str:
    """PYTHONPATH for the child, so it imports this very tinydistill (also from a checkout)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.pathsep.join([here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def litert_interpreter(tflite: bytes, num_threads: int | None = None):
    """A LiteRT (ai-edge-litert) or tflite-runtime interpreter, whichever works here.

    The choice lives in :mod:`tinydistill.ondevice` (which must stay self-contained
    for the device bundle); here its start-up chatter is silenced and its failure
    becomes a TinyDistillError.
    """
    try:
        with capture_c_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            return load_interpreter(tflite, num_threads)[0]
    except (RuntimeError, ValueError) as exc:
        raise TinyDistillError(str(exc)) from None


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
