"""The teacher's layer graph as plain data: who feeds whom, and how layers treat channels.

Shared by teacher initialisation (which channels a student keeps) and the
layer-pair statistics (which probed layers a weight matrix joins).
"""

from __future__ import annotations

from dataclasses import dataclass

# Layers that keep channel i of their input as channel i of their output.
PASS_THROUGH = frozenset({
    "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D"})
# Layers with one weight vector per channel (sliced like their input).
PER_CHANNEL = frozenset({"BatchNormalization", "LayerNormalization", "PReLU"})
# Element-wise merges: every input has the same channels.
MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
# Layers whose kernel's last two axes are (input channels, output channels).
DENSE_LIKE = frozenset({"Conv1D", "Conv2D", "Conv3D", "Dense"})
DEPTHWISE = frozenset({"DepthwiseConv1D", "DepthwiseConv2D"})
SEPARABLE = frozenset({"SeparableConv1D", "SeparableConv2D"})
INPUT_NODE = "__input__"


class UnsupportedGraph(Exception):
    """A graph shape a graph-based feature does not handle (callers fall back)."""


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    config: dict
    inputs: tuple


def layer_graph(model) -> list[Node]:
    """Every layer as a :class:`Node`, in topological order, the input first (named ``__input__``
    for a Sequential model without an explicit InputLayer).

    Raises:
        UnsupportedGraph: a layer is shared (called more than once) or reads a multi-output layer.
    """
    config = model.get_config()
    nodes: list[Node] = []
    if model.__class__.__name__ == "Sequential":
        prev = None
        for layer in config["layers"]:
            name = layer["config"]["name"]
            if prev is None and layer["class_name"] != "InputLayer":
                nodes.append(Node(INPUT_NODE, "InputLayer", {}, ()))
                prev = INPUT_NODE
            nodes.append(Node(name, layer["class_name"], layer["config"], () if prev is None else (prev,)))
            prev = name
        return nodes
    for layer in config["layers"]:
        calls = layer.get("inbound_nodes", [])
        if len(calls) > 1:
            raise UnsupportedGraph(f"layer {layer['name']} is shared (called {len(calls)} times)")
        inputs = []
        for src in (calls[0] if calls else []):
            if src[1] != 0 or src[2] != 0:
                raise UnsupportedGraph(f"layer {layer['name']} reads a layer with several outputs")
            inputs.append(src[0])
        nodes.append(Node(layer["name"], layer["class_name"], layer["config"], tuple(inputs)))
    return nodes


def batchnorm_after(nodes: list[Node]) -> dict[str, str]:
    """For every layer whose only consumer is a BatchNormalization, that layer's name -> the BatchNormalization's:
    the per-channel scale that follows the layer's output channels (a filter's importance, a fold)."""
    consumers: dict[str, list[Node]] = {}
    for node in nodes:
        for src in node.inputs:
            consumers.setdefault(src, []).append(node)
    return {src: nxt[0].name for src, nxt in consumers.items()
            if len(nxt) == 1 and nxt[0].kind == "BatchNormalization"}


def reroute(config: dict, mapping: dict[str, str], skip=()) -> None:
    """In a functional model's config (in place), every layer (but those in ``skip``, by identity) and the model's
    outputs read ``mapping[name]`` where they read layer ``name``: for layers inserted after, or folded into, another."""
    def rename(x):
        if isinstance(x, list):
            return [rename(v) for v in x]
        return mapping.get(x, x) if isinstance(x, str) else x
    skipped = {id(layer) for layer in skip}
    for layer in config["layers"]:
        if id(layer) not in skipped:
            layer["inbound_nodes"] = rename(layer.get("inbound_nodes", []))
    config["output_layers"] = rename(config["output_layers"])


WIDTH_KEYS = ("filters", "units")  # config keys that set a layer's number of output channels


def output_heads(nodes: list[Node]) -> set[str]:
    """The layers that set the model's output channels: those with a width (``filters`` / ``units``) reached from the
    output through layers without one (a classifier's last Dense, or the 1 x 1 convolution a MobileNet reshapes and
    a softmax follows). A student keeps their widths: one output per class."""
    by_name = {node.name: node for node in nodes}
    heads, seen, todo = set(), set(), [nodes[-1].name]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        node = by_name[name]
        if any(isinstance(node.config.get(key), int) for key in WIDTH_KEYS):
            heads.add(name)
        else:
            todo.extend(node.inputs)
    return heads


def output_shape(model, name: str) -> tuple:
    """A layer's output shape without the batch axis (``__input__``: the model input)."""
    layer = next((ly for ly in model.layers if ly.name == name), None)
    if layer is None or layer.__class__.__name__ == "InputLayer":  # a Sequential's input is not among its layers
        return tuple(model.inputs[0].shape[1:])
    shape = layer.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return tuple(shape[1:])
