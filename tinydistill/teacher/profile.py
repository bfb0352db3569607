"""Static profile of a Keras model: parameters and multiply-accumulates (MACs) per layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LayerProfile:
    name: str
    kind: str
    params: int
    macs: int
    output_shape: tuple


def _shape(t) -> tuple:
    return tuple(int(d) if d is not None else 1 for d in t.shape[1:])


def layer_macs(layer) -> int:
    """Multiply-accumulates of one inference through ``layer`` (batch 1)."""
    cls = layer.__class__.__name__
    try:
        out = _shape(layer.output)
        inp = _shape(layer.input) if not isinstance(layer.input, list) else _shape(layer.input[0])
    except (AttributeError, ValueError):
        return 0
    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        k = int(np.prod(layer.kernel_size))
        return int(np.prod(out)) * k * (inp[-1] // max(1, getattr(layer, "groups", 1)))
    if cls == "DepthwiseConv2D":
        return int(np.prod(out)) * int(np.prod(layer.kernel_size))
    if cls == "SeparableConv2D":
        k = int(np.prod(layer.kernel_size))
        spatial = int(np.prod(out[:-1]))
        mult = layer.depth_multiplier
        return spatial * inp[-1] * mult * k + spatial * inp[-1] * mult * out[-1]
    if cls == "Dense":
        return int(np.prod(out[:-1])) * inp[-1] * out[-1]
    return 0


def profile(model) -> list[LayerProfile]:
    """Per-layer parameters, MACs and output shape, in model order (input layers skipped)."""
    rows = []
    for layer in model.layers:
        if layer.__class__.__name__ == "InputLayer":
            continue
        try:
            shape = _shape(layer.output)
        except (AttributeError, ValueError):
            shape = ()
        rows.append(LayerProfile(layer.name, layer.__class__.__name__, int(layer.count_params()),
                                 layer_macs(layer), shape))
    return rows


def total_macs(model) -> int:
    return sum(r.macs for r in profile(model))
