"""A ``.tflite`` flatbuffer read once: its operators with kernel class, MACs and elements touched.

Used by :mod:`~tinydistill.fitcheck` (ops, flash), :mod:`~tinydistill.latency` (cycles) and,
through ``check``, by sizing: each candidate width's model is parsed once, not once per use.
Parsing needs the schema that ships with ``tflite-micro``, not TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import TinyDistillError

# bytes per element of TFLite's tensor types (schema TensorType: FLOAT32 0, FLOAT16 1, INT32 2, UINT8 3, INT64 4,
# BOOL 6, INT16 7, INT8 9, FLOAT64 10); others count 4
_ITEM_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8}
# ops that only reinterpret memory: no per-element work in TFLite Micro
_FREE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}


@dataclass(frozen=True)
class OpCost:
    """One operator: builtin name, kernel class (conv, depthwise, fully_connected, elementwise), MACs, elements touched."""

    op: str
    kernel: str
    macs: int
    elements: int


@dataclass(frozen=True)
class ParsedModel:
    """What the tools need of a ``.tflite``: its size, its operators in execution order, its input's shape."""

    model_bytes: int
    ops: tuple
    input_shape: tuple = ()
    activation_bytes: int = 0  # every tensor of the first subgraph that is not a constant, summed: an upper bound
    # of the memory any planner needs for the activations

    @property
    def op_names(self) -> list[str]:
        """The builtin operators used, each once, in order of first use."""
        return list(dict.fromkeys(o.op for o in self.ops))

    @property
    def macs(self) -> int:
        return int(sum(o.macs for o in self.ops))


def read_tflite(path: str) -> bytes:
    """The bytes of a ``.tflite`` file the user gave, checked to be a whole TFLite flatbuffer (by a pure-Python
    reader, before any native parser sees it), or one line naming the file and what to do."""
    path = str(path)
    if not os.path.isfile(path):
        raise TinyDistillError(f"{path} does not exist: pass a .tflite file")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TinyDistillError(f"{path} is not a TFLite model (no TFL3 identifier): pass a .tflite file")
    try:
        parse_tflite(data)
    except TinyDistillError as exc:
        raise TinyDistillError(f"`{path}` {str(exc).removeprefix('the model ')}") from None
    return data


def parse_tflite(tflite: bytes) -> ParsedModel:
    """Read a ``.tflite`` flatbuffer's operators (an empty model when ``tflite-micro`` is missing).

    Raises:
        TinyDistillError: the flatbuffer is corrupt or truncated.
    """
    try:
        return _parse(tflite)
    except TinyDistillError:
        raise
    except Exception as exc:  # the flatbuffer reader fails in many ways on damaged bytes
        raise TinyDistillError(f"the model is corrupt or truncated ({type(exc).__name__}: {str(exc)[:120]}): "
                               "export it again (tinydistill compress writes student.tflite)") from None


def _parse(tflite: bytes) -> ParsedModel:
    try:
        from tflite_micro.python.tflite_micro import runtime as tflm_runtime
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - tflite-micro is a dependency of the host install
        return ParsedModel(len(tflite), ())
    model = tflm_runtime.convert_bytearray_to_object(bytearray(tflite))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops, first = [], (model.subgraphs or [None])[0]
    inputs = first.inputs if first is not None and first.inputs is not None else []
    input_shape = tuple(_shape(first.tensors[inputs[0]])) if len(inputs) else ()
    for sub in model.subgraphs or []:
        for op in sub.operators or []:
            code = tflm_runtime.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
            ops.append(_cost(model, sub.tensors, op, names.get(code, f"BUILTIN_{code}")))
    tensors = first.tensors if first is not None and first.tensors is not None else []
    activations = sum(max(0, int(np.prod(_shape(t)))) * _ITEM_BYTES.get(int(t.type), 4) for t in tensors
                      if not _is_constant(model, t))  # a damaged file's negative sizes count nothing
    return ParsedModel(len(tflite), tuple(ops), input_shape, int(activations))


def _shape(tensor) -> list[int]:
    return [int(d) for d in tensor.shape] if tensor.shape is not None else []


def _cost(model, tensors, op, name: str) -> OpCost:
    o_shape = _shape(tensors[op.outputs[0]]) if op.outputs is not None and len(op.outputs) else [0]
    elements = int(np.prod(o_shape)) if o_shape else 1
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 1:
        w = _shape(tensors[op.inputs[1]])
        if name == "CONV_2D":  # filter (Co, kh, kw, Ci)
            return OpCost(name, "conv", elements * int(np.prod(w[1:])), elements)
        if name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, Co)
            return OpCost(name, "depthwise", elements * w[1] * w[2], elements)
        return OpCost(name, "fully_connected", elements * w[-1], elements)  # weights (Co, Ci)
    if name in _FREE:
        return OpCost(name, "elementwise", 0, 0)
    # pooling and reductions touch every input element, not only every output one
    ins = [int(np.prod(_shape(tensors[i]))) for i in (op.inputs if op.inputs is not None else [])
           if i >= 0 and not _is_constant(model, tensors[i])]
    return OpCost(name, "elementwise", 0, max([elements] + ins))


def _is_constant(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0
