"""Check: does an int8 model fit a board? Flash, tensor arena (measured), ops, and accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import TinyDistillError
from . import runtime
from .latency import estimate_latency
from .tflite_model import parse_tflite


@dataclass
class CheckResult:
    """What :func:`check` measured. Sizes in integer bytes.

    Attributes:
        board: the :class:`~tinydistill.boards.Board` checked against.
        model_bytes: size of the ``.tflite`` flatbuffer (stored in flash).
        arena_bytes: tensor arena measured by the TFLite Micro interpreter; on a Linux board, for a model TFLite
            Micro has no kernel for, the sum of its activation tensors (``arena_source`` says which).
        runtime_flash_bytes: estimated code of TFLite Micro and the model's kernels (MCU boards).
        runtime_ram_bytes: estimated resident memory of LiteRT (Linux boards).
        ops: the TFLite builtin operators the model uses.
        fits: model within the flash budget and arena within the RAM budget.
        int8_accuracy: accuracy on the given data (LiteRT), or None.
        predictions: int8 top-1 predictions on the given data, or None.
        tflm_agreement: fraction of a sample where TFLite Micro and LiteRT agree on top-1.
        latency_ms: estimated milliseconds per inference on the board (see :mod:`tinydistill.latency`).
        macs: multiply-accumulates per inference.
    """

    board: object
    model_bytes: int
    arena_bytes: int
    arena_source: str = "tflite-micro"  # or "activation-tensors" (see arena_bytes)
    missing_kernels: list = field(default_factory=list)  # operators TFLite Micro has no kernel for (Linux boards)
    ops: list = field(default_factory=list)
    runtime_flash_bytes: int = 0
    runtime_ram_bytes: int = 0
    fits: bool = False
    int8_accuracy: float | None = None
    predictions: np.ndarray | None = None
    tflm_agreement: float | None = None
    tflm_agreement_n: int = 0
    latency_ms: float | None = None
    macs: int = 0

    @property
    def flash_bytes(self) -> int:
        """Flash the firmware needs for inference: the model plus the runtime's code."""
        return self.model_bytes + self.runtime_flash_bytes

    @property
    def ram_bytes(self) -> int:
        """RAM for inference: the arena (MCU), or arena + model + LiteRT itself (Linux)."""
        if self.board.kind == "linux":
            return self.arena_bytes + self.model_bytes + self.runtime_ram_bytes
        return self.arena_bytes

    @property
    def flash_margin_bytes(self) -> int:
        return self.board.flash_budget - self.flash_bytes

    @property
    def ram_margin_bytes(self) -> int:
        return self.board.ram_budget - self.ram_bytes

    @property
    def bound_by(self) -> str | None:
        """Which limit fails first ("flash" or "ram"), or None if both fit."""
        over = {"flash": -self.flash_margin_bytes / self.board.flash_budget,
                "ram": -self.ram_margin_bytes / self.board.ram_budget}
        worst = max(over, key=over.get)
        return worst if over[worst] > 0 else None


def model_ops(tflite: bytes) -> list[str]:
    """Names of the builtin operators in a ``.tflite`` flatbuffer (without TensorFlow)."""
    return parse_tflite(tflite).op_names


def _code_size() -> dict:
    import tomllib
    from importlib import resources

    with resources.files("tinydistill.fitting").joinpath("code_size.toml").open("rb") as f:
        return tomllib.load(f)


def runtime_memory(ops: list[str], board) -> tuple[int, int]:
    """Estimated (flash, RAM) bytes of the inference runtime itself on ``board`` (see code_size.toml): TFLite
    Micro's core, the largest helper code shared among the model's ops (counted once) and each op's own code,
    as linked for the board's core (``benchmarks/code_size.py``), else the generic table; an op a table lacks
    costs its ``default_op_bytes``."""
    sizes = _code_size()
    if board.kind == "linux":
        return 0, int(sizes["litert"]["ram_bytes"])
    generic = sizes["tflite-micro"]
    tflm = generic.get(board.core, generic)  # the core's measured table, else the generic one
    default = tflm.get("default_op_bytes", generic["default_op_bytes"])
    shared = max((tflm.get("shared", {}).get(op, 0) for op in ops), default=0)
    return int(tflm["core_bytes"] + shared + sum(tflm["ops"].get(op, default) for op in ops)), 0


def int8_predictions(tflite: bytes, x: np.ndarray, *, batch: int = 256, interpreter=None) -> np.ndarray:
    """Top-1 predictions of the int8 model on float inputs, with LiteRT (batched; ``interpreter``: reuse one)."""
    it = interpreter or runtime.litert_interpreter(tflite)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if int(inp.get("shape_signature", [-1])[0]) != -1:  # converted at a fixed batch (export_int8): one at a time
        batch = int(inp["shape"][0])
    preds = []
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        it.resize_tensor_input(inp["index"], [len(xb)] + list(inp["shape"][1:]))
        it.allocate_tensors()
        it.set_tensor(inp["index"], runtime.quantize_input(xb, inp))
        it.invoke()
        preds.append(it.get_tensor(out["index"]).argmax(-1))
    return np.concatenate(preds)


def _validate(tflite, x, y):
    if not isinstance(tflite, (bytes, bytearray)) or len(tflite) < 8 or tflite[4:8] != b"TFL3":
        raise TinyDistillError("not a TFLite flatbuffer (no TFL3 identifier): pass a .tflite file")
    if (x is None) != (y is None):
        raise TinyDistillError("pass both inputs and labels to measure accuracy, or neither")


def check(tflite: bytes, board, *, x: np.ndarray | None = None, y: np.ndarray | None = None,
          agreement_samples: int = 500) -> CheckResult:
    """Measure an int8 ``.tflite`` against a board.

    The arena is the one TFLite Micro's recording allocator reports after
    allocating every tensor of the model: what the firmware's
    ``tensor_arena`` must hold. With data, the int8 accuracy is measured with
    LiteRT, and TFLite Micro's top-1 is compared with LiteRT's on a sample.

    Example:
        >>> res = td.check(open("student.tflite", "rb").read(), td.load_board("cortex-m4"))
        >>> res.fits, res.arena_bytes
        (True, 10432)
    """
    _validate(tflite, x, y)
    tflite = bytes(tflite)
    m = min(agreement_samples, len(x)) if x is not None else 0
    parsed = parse_tflite(tflite)
    source, missing = "tflite-micro", []
    try:
        arena, micro_out = runtime.tflm_run(tflite, x[:m] if m else None)
    except runtime.MissingKernelError as exc:
        if board.kind != "linux":  # a microcontroller runs TFLite Micro: the model cannot run there
            raise
        # LiteRT runs it on a Linux board; the RAM figure counts every activation tensor instead of TFLite Micro's arena
        arena, micro_out, m, source, missing = parsed.activation_bytes, None, 0, "activation-tensors", exc.ops
    ops = parsed.op_names
    code, runtime_ram = runtime_memory(ops, board)
    res = CheckResult(board=board, model_bytes=len(tflite), arena_bytes=arena, arena_source=source, ops=ops,
                      runtime_flash_bytes=code, runtime_ram_bytes=runtime_ram, missing_kernels=list(missing))
    res.fits = res.flash_margin_bytes >= 0 and res.ram_margin_bytes >= 0
    est = estimate_latency(parsed, board)
    res.latency_ms, res.macs = round(est.ms, 3), est.macs
    if x is not None:
        preds = int8_predictions(tflite, x)
        res.predictions = preds
        res.int8_accuracy = float((preds == y).mean())
        if m:
            res.tflm_agreement = float((micro_out.argmax(-1) == preds[:m]).mean())
            res.tflm_agreement_n = m
    return res
