"""Child process for TFLite Micro: a model that makes TFLM abort() must not kill tinydistill.

Usage (internal): python -m tinydistill.fitting._tflm_worker MODEL.tflite [INPUTS.npy OUTPUTS.npy]
(float inputs: dequantised outputs; int8 inputs, the model's own values: raw int8 outputs)
Prints one JSON line: {"arena_bytes": N} or {"error": "..."}.
"""

import json
import sys

import numpy as np

from ..capture import capture_c_output
from .runtime import dequantize_output, quantize_input


def main(argv):
    from tflite_micro.python.tflite_micro import runtime

    with open(argv[0], "rb") as f:
        tflite = f.read()
    with capture_c_output() as log:
        try:
            it = runtime.Interpreter.from_bytes(tflite, arena_size=max(len(tflite) * 10, 4 << 20))
        except Exception as exc:  # TFLM raises RuntimeError and prints the reason
            it, error = None, str(exc)
    if it is None:
        detail = " ".join(ln.strip() for ln in log.text.splitlines() if ln.strip())[-300:]
        print(json.dumps({"error": detail or error}))
        return
    with capture_c_output() as out:
        it.print_allocations()
    result = {"allocations": out.text}
    if len(argv) == 3:
        x = np.load(argv[1], allow_pickle=False)
        inp, outp = it.get_input_details(0), it.get_output_details(0)

        def qparams(d):
            return {"quantization": (float(d["quantization_parameters"]["scales"][0]),
                                     int(d["quantization_parameters"]["zero_points"][0])), "dtype": d["dtype"]}

        qi, qo = qparams(inp), qparams(outp)
        raw = x.dtype == np.int8  # the model's own int8 input values in, its raw int8 outputs out
        q = x if raw else quantize_input(x, qi)
        res = []
        for i in range(len(x)):
            it.set_input(q[i:i + 1], 0)
            it.invoke()
            res.append(it.get_output(0)[0].copy() if raw else dequantize_output(it.get_output(0)[0], qo))
        np.save(argv[2], np.stack(res) if res else np.zeros((0,), np.float32))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
