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

from ..errors import BoardError
from .tflite_model import ParsedModel, parse_tflite

KERNEL_CLASSES = ("conv", "depthwise", "fully_connected")
_FIELDS = KERNEL_CLASSES + ("elementwise", "op_overhead", "runtime")


def _cores() -> dict:
    with resources.files("tinydistill.fitting").joinpath("cores.toml").open("rb") as f:
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


def estimate_latency(tflite: bytes | ParsedModel, board) -> LatencyEstimate:
    """Estimated milliseconds per inference of a ``.tflite`` (bytes or parsed) on ``board`` (single thread)."""
    c = latency_constants(board)
    cycles, macs, by = 0.0, 0, {}
    for op in (tflite if isinstance(tflite, ParsedModel) else parse_tflite(tflite)).ops:
        cyc = op.macs * c.get(op.kernel, 0.0) + op.elements * c["elementwise"] + c["op_overhead"]
        cycles += cyc
        macs += op.macs
        by[op.kernel] = by.get(op.kernel, 0.0) + cyc
    hz = board.clock_mhz * 1e6
    return LatencyEstimate(ms=1000 * cycles / hz, cycles=int(cycles), macs=int(macs),
                           by_kernel_ms={k: round(1000 * v / hz, 3) for k, v in by.items()},
                           runtime=c.get("runtime", "tflite-micro"))
