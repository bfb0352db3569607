"""Latency estimate of an int8 .tflite on a board: per-op MACs x cycles per MAC of its kernel class.

cycles = sum over ops of  MACs(op) * cycles_per_mac[kernel class]
                        + output elements(op) * cycles_per_element
                        + op_overhead
latency = cycles / clock

Kernel classes: ``conv`` (CONV_2D, incl. 1x1), ``depthwise`` (DEPTHWISE_CONV_2D),
``fully_connected``; every other op is charged per output element. The
constants per core live in ``cores.toml`` (data, with their sources);
a board file may override them in a ``[latency]`` table.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .errors import BoardError

KERNEL_CLASSES = ("conv", "depthwise", "fully_connected")
_FIELDS = KERNEL_CLASSES + ("elementwise", "op_overhead", "runtime")
# ops that only reinterpret memory: no per-element work in TFLite Micro
_FREE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}


@dataclass(frozen=True)
class OpCost:
    op: str
    kernel: str
    macs: int
    elements: int


def _ops_with_shapes(tflite: bytes) -> list[OpCost]:
    from tflite_micro.python.tflite_micro import runtime as tflm_runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = tflm_runtime.convert_bytearray_to_object(bytearray(tflite))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for sub in model.subgraphs or []:
        tensors = sub.tensors
        for op in sub.operators or []:
            name = names.get(tflm_runtime.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]), "?")
            o_shape = [int(d) for d in tensors[op.outputs[0]].shape] if len(op.outputs) else [0]
            elements = int(np.prod(o_shape)) if o_shape else 1
            macs, kernel = 0, "elementwise"
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 1:
                w = [int(d) for d in tensors[op.inputs[1]].shape]
                if name == "CONV_2D":  # filter (Co, kh, kw, Ci)
                    macs, kernel = elements * int(np.prod(w[1:])), "conv"
                elif name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, Co)
                    macs, kernel = elements * w[1] * w[2], "depthwise"
                else:  # weights (Co, Ci)
                    macs, kernel = elements * w[-1], "fully_connected"
            elif name in _FREE:
                elements = 0
            else:  # pooling and reductions touch every input element, not only every output one
                ins = [int(np.prod([int(d) for d in tensors[i].shape])) for i in op.inputs
                       if i >= 0 and not _is_constant(model, tensors[i])]
                elements = max([elements] + ins)
            out.append(OpCost(name, kernel, macs, elements))
    return out


def _is_constant(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def _cores() -> dict:
    with resources.files("tinydistill").joinpath("cores.toml").open("rb") as f:
        return tomllib.load(f)


def latency_constants(board) -> dict:
    """Cycles per MAC per kernel class (and per element, per op) for the board's core."""
    cores = _cores()
    if board.core not in cores:
        raise BoardError(f"no latency constants for core {board.core!r}: add a [latency] table to the board file "
                         f"or use one of {', '.join(sorted(cores))}")
    consts = dict(cores[board.core])
    consts.update(getattr(board, "latency", None) or {})
    return consts


@dataclass
class LatencyEstimate:
    ms: float
    cycles: int
    macs: int
    by_kernel_ms: dict
    runtime: str


def estimate_latency(tflite: bytes, board) -> LatencyEstimate:
    """Estimated milliseconds per inference of ``tflite`` on ``board`` (single thread)."""
    c = latency_constants(board)
    cycles, macs, by = 0.0, 0, {}
    for op in _ops_with_shapes(tflite):
        cyc = op.macs * c.get(op.kernel, 0.0) + op.elements * c["elementwise"] + c["op_overhead"]
        cycles += cyc
        macs += op.macs
        by[op.kernel] = by.get(op.kernel, 0.0) + cyc
    hz = board.clock_mhz * 1e6
    return LatencyEstimate(ms=1000 * cycles / hz, cycles=int(cycles), macs=int(macs),
                           by_kernel_ms={k: round(1000 * v / hz, 3) for k, v in by.items()},
                           runtime=c.get("runtime", "tflite-micro"))
