"""Design the student: a width-scaled copy of the teacher's architecture."""

from __future__ import annotations

import json

import numpy as np

from .. import _compat
from ..config import validate_width
from ..errors import TinyDistillError
from ..teacher.graph import (
    DENSE_LIKE,
    DEPTHWISE,
    MERGES,
    PASS_THROUGH,
    PER_CHANNEL,
    SEPARABLE,
    WIDTH_KEYS,
    UnsupportedGraph,
    batchnorm_after,
    layer_graph,
    output_heads,
    output_shape,
    reroute,
)

INITS = ("teacher", "random")
# scaled channel counts of at least this many are rounded to a multiple of it. Even counts: CMSIS-NN's int8
# convolution kernel (arm_nn_mat_mult_kernel_s8_s16, in TFLite Micro) computes output channels two at a time and an
# odd one alone, and the host's kernels train an odd count slower too. ResNet-8 -> width 0.7 (12/22/44 filters
# instead of 11/22/45): -9 % engine time, +1.5 pp with a stats file, -1.0 pp from BatchNorm statistics alone
# (two seeds each); LeNet-5 -> half (4 filters instead of 3): +0.05 / +0.2 pp (benchmarks/RESULTS.md, "Eighth sweep")
CHANNEL_MULTIPLE = 2


def scaled_channels(count: int, width: float, multiple: int) -> int:
    """``count * width`` rounded (at least 1); counts of at least ``multiple`` to the nearest multiple of it,
    halves up (e.g. 16 x 0.7 -> 12 and 64 x 0.7 -> 44 with ``multiple`` 2), never above ``count`` (a student
    has no channel its teacher lacks)."""
    n = max(1, int(round(count * width)))
    if multiple > 1 and n >= multiple:
        n = multiple * int(np.floor(count * width / multiple + 0.5))
    return min(n, count)


def design_student(teacher, *, width: float = 0.5, seed: int = 0, init: str = "teacher", multiple: int | None = None,
                   batchnorm: bool | None = None):
    """A student whose layers are ``width`` times as wide as the teacher's, not yet distilled.

    Every convolution's ``filters`` and every dense layer's ``units`` are
    scaled (at least 1; from 2 up, to an even count: :data:`CHANNEL_MULTIPLE`), except the classifier
    layer, which keeps one unit per class. The student outputs logits; parameters shrink roughly as ``width**2``.

    A residual teacher without normalisation gives a student with a BatchNormalization after each of its hidden 2-D
    convolutions (:func:`adds_batchnorm`; ``batchnorm`` True / False forces it): the converter folds them into the
    convolutions, so the flashed model has the same operators and size, while the student trains as a normalised
    network does.

    With ``init="teacher"`` (the default) the student starts as the teacher's most
    important channels (:func:`inherit_teacher_weights`); where the teacher's graph does
    not allow that, it starts at random. ``student.init_note`` says which happened.

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        width: width multiplier in (0, 1].
        seed: initialisation seed.
        init: ``"teacher"`` or ``"random"``.
        multiple: channel counts of at least this many are rounded to a multiple of it (default
            :data:`CHANNEL_MULTIPLE`).
        batchnorm: add BatchNorm after the hidden convolutions (None: :func:`adds_batchnorm` decides).

    Example:
        >>> student = td.design_student(teacher, width=0.5)
        >>> student.count_params() < teacher.params / 2, student.init_note
        (True, 'teacher')
    """
    validate_width(width)
    if init not in INITS:
        raise TinyDistillError(f"`init` must be one of {', '.join(INITS)}. Received: init={init!r}")
    multiple = CHANNEL_MULTIPLE if multiple is None else multiple
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise TinyDistillError(f"`multiple` must be an integer >= 1. Received: multiple={multiple!r}")
    k = _compat.keras()
    _compat.set_seed(seed)
    config = _scaled_config(teacher, width, multiple)
    _trainable(config["layers"])
    config["name"] = "student"
    sequential = teacher.logits_model.__class__.__name__ == "Sequential"
    if adds_batchnorm(teacher) if batchnorm is None else batchnorm:
        _insert_batchnorm(config, _normalised_convolutions(_graph_or_none(teacher)), sequential)
    if sequential:
        model = k.Sequential.from_config(config)
    else:
        model = k.Model.from_config(config)
    for bn in added_batchnorm(model, teacher):  # the identity until distillation sets it on data (identity_batchnorm)
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, 1.0 - bn.epsilon, np.float32))
    note = "random"
    if init == "teacher":
        reason = inherit_teacher_weights(model, teacher)
        note = "teacher" if reason is None else f"random ({reason})"
    model.init_note = note
    return model


def _scaled_config(teacher, width: float, multiple: int) -> dict:
    """The teacher's logits model's config with every layer's channel count scaled, except the classifier's."""
    config = json.loads(json.dumps(teacher.logits_model.get_config()))
    try:
        heads = output_heads(layer_graph(teacher.logits_model))
    except UnsupportedGraph:  # shared layers: the last layer is the classifier
        heads = {teacher.logits_model.layers[-1].name}
    for layer in config["layers"]:
        cfg = layer["config"]
        if cfg.get("name") in heads:
            continue
        for key in WIDTH_KEYS:
            if isinstance(cfg.get(key), int):
                cfg[key] = scaled_channels(cfg[key], width, multiple)
    return config


# BatchNorm the student adds after a teacher's convolution ``name`` is ``name + BN_SUFFIX``; the convolution's own
# activation, if it had one, moves after it as ``name + ACT_SUFFIX``
BN_SUFFIX, ACT_SUFFIX = "_student_bn", "_student_act"
# convolutions the converter folds a following BatchNorm into (a Conv1D is a Conv2D between two reshapes there)
_FOLDABLE = frozenset({"Conv2D", "DepthwiseConv2D", "SeparableConv2D"})
NORMALISATIONS = frozenset({"BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization"})


def adds_batchnorm(teacher) -> bool:
    """Whether :func:`design_student` adds BatchNorm to the student by default: the teacher is a residual network
    (an element-wise merge, e.g. ``Add``) without any normalisation layer, and has a hidden 2-D convolution.

    Without normalisation the branches a residual network adds up grow its activations block by block (Zhang et al.,
    "Fixup", 2019): a BatchNorm-less student of one does not learn (CIFAR-10 ResNet-8 with its BatchNorm folded into
    the convolutions: 12.8 % int8 from a stats file, 43.6 % with BatchNorm, the same recipe, two seeds each; 9.0 %
    after distillation on 5,000 real images). A plain network keeps its form: LeNet-5's student lost 0.1 pp with a
    stats file and 0.2 pp without one with BatchNorm added (one seed each; ``benchmarks/RESULTS.md``, "A natural-image
    teacher without BatchNorm")."""
    graph = _graph_or_none(teacher)
    kinds = {node.kind for node in graph or []}
    return bool(kinds & MERGES) and not kinds & NORMALISATIONS and bool(_normalised_convolutions(graph))


def _graph_or_none(teacher):
    """The teacher's :func:`~tinydistill.teacher.graph.layer_graph`, or None where it has none (shared layers)."""
    try:
        return layer_graph(teacher.logits_model)
    except UnsupportedGraph:
        return None


def _normalised_convolutions(graph) -> list[str]:
    """A teacher graph's hidden 2-D convolutions not already followed by a BatchNorm: where a student gets one (none
    without a graph)."""
    if graph is None:
        return []
    heads, after = output_heads(graph), batchnorm_after(graph)
    return [node.name for node in graph if node.kind in _FOLDABLE and node.name not in heads and node.name not in after]


def _insert_batchnorm(config: dict, names: list[str], sequential: bool) -> None:
    """Put a BatchNormalization after every layer in ``names`` (in place on a model config), then the layer's own
    activation, which becomes linear; the layers that read it read the last one added."""
    names, last, layers, added = set(names), {}, [], []
    for layer in config["layers"]:
        layers.append(layer)
        cfg = layer["config"]
        if cfg.get("name") not in names:
            continue
        name, activation = cfg["name"], cfg.get("activation", "linear")
        new = [{"class_name": "BatchNormalization", "config": {"name": name + BN_SUFFIX, "axis": -1, "trainable": True}}]
        if activation not in ("linear", None):
            cfg["activation"] = "linear"
            new.append({"class_name": "Activation",
                        "config": {"name": name + ACT_SUFFIX, "activation": activation, "trainable": True}})
        src = name
        for extra in new:
            if not sequential:
                extra["name"], extra["inbound_nodes"] = extra["config"]["name"], [[[src, 0, 0, {}]]]
            src = extra["config"]["name"]
        last[name] = src
        layers.extend(new)
        added.extend(new)
    config["layers"] = layers
    if not sequential:
        reroute(config, last, skip=added)


def student_layer(student, name: str) -> str:
    """The student layer whose output is the teacher layer ``name``'s: the activation moved after an added BatchNorm,
    else ``name`` itself."""
    names = {layer.name for layer in student.layers}
    return name + ACT_SUFFIX if name + ACT_SUFFIX in names else name


def output_kernel(layer) -> tuple[int, int]:
    """Which of a convolution's weights sets its output channels, and how many: reshaped to (-1, count), column c is
    output channel c's filter (a SeparableConv's pointwise kernel; a DepthwiseConv's channels, multiplier-minor)."""
    weights = layer.get_weights()
    if layer.__class__.__name__ in SEPARABLE:
        return 1, weights[1].shape[-1]
    if layer.__class__.__name__ in DEPTHWISE:
        return 0, weights[0].shape[-2] * weights[0].shape[-1]
    return 0, weights[0].shape[-1]


def added_batchnorm(student, teacher) -> list:
    """The BatchNormalization layers :func:`design_student` added to ``student`` of ``teacher``: named ``*``
    :data:`BN_SUFFIX` and not the teacher's own (a teacher that is itself a tinydistill student, compressed again, has
    such layers, learnt)."""
    own = {layer.name for layer in teacher.logits_model.layers}
    return [layer for layer in student.layers if layer.__class__.__name__ == "BatchNormalization"
            and layer.name.endswith(BN_SUFFIX) and layer.name not in own]


def student_params(student, teacher) -> int:
    """The student's parameters as the teacher's are counted: without the BatchNorm layers :func:`design_student`
    added, which the converter folds into the convolutions before them."""
    return int(student.count_params()) - sum(int(np.prod(w.shape)) for bn in added_batchnorm(student, teacher)
                                             for w in bn.weights)


def keeps_every_channel(teacher, width: float) -> bool:
    """Whether the student at ``width`` has every channel of the teacher (width 1, or close enough that rounding
    keeps every count): built with ``init="teacher"`` it is then the teacher itself."""
    return _scaled_config(teacher, width, CHANNEL_MULTIPLE) == json.loads(json.dumps(teacher.logits_model.get_config()))


def _trainable(layers) -> None:
    """Every layer of the student trains (in place on the layers' configs), whatever the teacher was saved with, except
    BatchNorm layers frozen in a teacher that was still training other layers (fine-tuning with frozen BatchNorm):
    those keep normalising with the teacher's statistics (:func:`~tinydistill.student.distillation.recalibrate_batchnorm`
    keeps them too). A teacher saved wholly frozen gives a student whose every layer trains."""
    def is_bn(layer):
        return layer.get("class_name") == "BatchNormalization"

    partly = any(layer.get("config", {}).get("trainable") is True for layer in layers if not is_bn(layer))
    for layer in layers:
        cfg = layer.get("config", {})
        if "trainable" in cfg and not (is_bn(layer) and partly):
            cfg["trainable"] = True


def with_output_activation(student, teacher):
    """The student with the teacher's output interface (softmax appended if the teacher has one)."""
    k = _compat.keras()
    if teacher.output_kind not in ("softmax", "sigmoid"):  # a sigmoid teacher: its two-class softmax view
        return student
    out = k.layers.Softmax(name="probabilities")(student.output)
    return k.Model(student.inputs, out, name="student")


# --------------------------------------------------------------------------
# Teacher initialisation: the student starts as the teacher's most important channels
# --------------------------------------------------------------------------

def _kernel(layer) -> np.ndarray:
    """The kernel that mixes channels: a SeparableConv's pointwise one, else the first weight."""
    return layer.get_weights()[1 if layer.__class__.__name__ in SEPARABLE else 0]


def _importance(teacher_model, name: str, folded_bn) -> np.ndarray:
    """Per output channel: L1 norm of the channel's filter, scaled by a BatchNorm that directly follows it.

    Magnitude criteria (Li et al., "Pruning Filters for Efficient ConvNets", 2017) need no data;
    folding the BatchNorm scale in keeps them meaningful when a BN rescales each channel.
    """
    layer = teacher_model.get_layer(name)
    kernel = _kernel(layer)
    imp = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(0)
    if folded_bn is not None:
        bn = teacher_model.get_layer(folded_bn)
        gamma = bn.gamma.numpy() if bn.scale else np.ones(kernel.shape[-1])
        imp = imp * np.abs(gamma) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    return imp / max(float(imp.mean()), 1e-12)


def inherit_teacher_weights(student, teacher) -> str | None:
    """Initialise a width-scaled student with the teacher's most important channels.

    A channel's importance is the L1 norm of its (BatchNorm-folded) filter times the L1 norm
    of the weights that read it downstream: what it computes and how much it is used (the
    ablation table of ``benchmarks/RESULTS.md``). Layers joined by an
    element-wise merge (residual ``Add``) keep the same channels, and ``Flatten`` /
    ``Concatenate`` map channel indices exactly. The student starts as a pruned teacher
    instead of at random, so distillation on synthetic data refines features the teacher
    learnt on real data rather than learning them from scratch.

    Returns:
        None when the weights were inherited; otherwise the reason they could not be (the
        student is left unchanged, with its random initialisation).
    """
    try:
        _inherit(student, teacher.logits_model)
    except UnsupportedGraph as exc:
        return str(exc)
    return None


def channel_map(student, teacher) -> dict[str, np.ndarray]:
    """For every layer of a teacher-initialised student, the teacher channels its output holds.

    Raises:
        TinyDistillError: the graph is not supported (see :func:`inherit_teacher_weights`).
    """
    try:
        return _inherit(student, teacher.logits_model, assign=False)
    except UnsupportedGraph as exc:
        raise TinyDistillError(f"no channel map for this student: {exc}") from None


class _Spaces:
    """Union-find over channel spaces: layers whose outputs are merged (Add, ...) must keep the same channels."""

    def __init__(self):
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return self.parent[-1]

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, root: int, other: int) -> None:
        self.parent[self.find(other)] = root


def _check_supported(node, rank: int) -> None:
    """Raise :class:`UnsupportedGraph` for layer settings whose channels cannot be mapped one to one."""
    name, cls, cfg = node.name, node.kind, node.config
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedGraph(f"layer {name} is channels-first")
    if (cls in DENSE_LIKE or cls in SEPARABLE) and cfg.get("groups", 1) != 1:
        raise UnsupportedGraph(f"layer {name} is a grouped convolution")
    if cls in DEPTHWISE and cfg.get("depth_multiplier", 1) != 1:
        raise UnsupportedGraph(f"layer {name} has a depth multiplier")
    if cls in ("BatchNormalization", "LayerNormalization") and cfg.get("axis", -1) not in (-1, [-1], rank, [rank]):
        raise UnsupportedGraph(f"layer {name} normalises another axis than the channels")


def _describe(node, ins, shape, heads, spaces, space_of):
    """What a layer's output channels are: ("full", C) | ("space", id) | ("concat", [(desc, C)]) | ("flat", P, C, desc)."""
    name, cls, cfg = node.name, node.kind, node.config
    rank = len(shape[name])  # without the batch axis; Keras counts it in `axis`
    _check_supported(node, rank)
    if cls == "InputLayer":
        return ("full", shape[name][-1])
    if cls in DENSE_LIKE or cls in SEPARABLE:
        if name in heads:
            return ("full", shape[name][-1])
        space_of[name] = spaces.new()
        return ("space", space_of[name])
    if cls in DEPTHWISE or cls in PASS_THROUGH or cls in PER_CHANNEL:
        return ins[0]
    if cls == "Reshape" and shape[node.inputs[0]][-1] == shape[name][-1]:  # e.g. (1, 1, C) -> (C,): channels kept
        return ins[0]
    if cls == "Rescaling" and all(isinstance(cfg.get(key, 0.0), (int, float)) for key in ("scale", "offset")):
        return ins[0]  # one scale and offset for every channel (e.g. 1/255 on the input)
    if cls == "Flatten":
        src = node.inputs[0]
        return ("flat", int(np.prod(shape[src][:-1])), shape[src][-1], ins[0])
    if cls in MERGES:
        if all(d[0] == "space" for d in ins):
            root = spaces.find(ins[0][1])
            for d in ins[1:]:
                spaces.union(root, d[1])
        elif any(d != ins[0] for d in ins):
            raise UnsupportedGraph(f"merge {name} joins channels of different kinds")
        return ins[0]
    if cls == "Concatenate" and cfg.get("axis", -1) in (-1, rank):
        return ("concat", [(d, shape[src][-1]) for d, src in zip(ins, node.inputs)])
    raise UnsupportedGraph(f"layer {name} ({cls}) is not supported for teacher initialisation")


def _outgoing(graph, teacher_model, desc, spaces) -> dict[int, np.ndarray]:
    """Per channel space, how much the layers reading it use each channel (their weight mass per input channel)."""
    outgoing: dict[int, np.ndarray] = {}

    def credit(d, per_channel):  # add a reader's per-input-channel weight mass to the spaces it reads
        if d[0] == "space":
            root = spaces.find(d[1])
            outgoing[root] = outgoing.get(root, 0) + per_channel
        elif d[0] == "flat":
            credit(d[3], per_channel.reshape(d[1], d[2]).sum(0))
        elif d[0] == "concat":
            offset = 0
            for inner, width in d[1]:
                credit(inner, per_channel[offset:offset + width])
                offset += width

    for node in graph:
        if node.kind in DENSE_LIKE or node.kind in SEPARABLE:
            kernel = _kernel(teacher_model.get_layer(node.name))
            used = np.abs(kernel).sum(axis=tuple(i for i in range(kernel.ndim) if i != kernel.ndim - 2))
            if node.kind in SEPARABLE:  # pointwise inputs are (channel, multiplier) pairs, channel-major
                used = used.reshape(-1, int(node.config.get("depth_multiplier", 1))).sum(1)
            credit(desc[node.inputs[0]], used)
    return outgoing


def _keep(graph, student, teacher_model, desc, spaces, space_of) -> dict[int, np.ndarray]:
    """Per channel space, the teacher channels the student keeps: importance of what its filters compute
    (summed over merged layers) times how much the layers reading it use it."""
    bn_after = batchnorm_after(graph)
    scores: dict[int, np.ndarray] = {}
    keep_n: dict[int, int] = {}
    for name, idx in space_of.items():
        root = spaces.find(idx)
        scores[root] = scores.get(root, 0) + _importance(teacher_model, name, bn_after.get(name))
        n = output_shape(student, name)[-1]
        if keep_n.setdefault(root, n) != n:
            raise UnsupportedGraph(f"layers merged with {name} have different widths in the student")
    for root, used in _outgoing(graph, teacher_model, desc, spaces).items():
        scores[root] = scores[root] * used / max(float(np.mean(used)), 1e-12)
    return {root: np.sort(np.argsort(-scores[root], kind="stable")[:keep_n[root]]) for root in scores}


def _channels(d, keep, spaces) -> np.ndarray:
    """The teacher channel indices an output described by ``d`` holds in the student."""
    if d[0] == "full":
        return np.arange(d[1])
    if d[0] == "space":
        return keep[spaces.find(d[1])]
    if d[0] == "flat":
        _, positions, per, inner = d
        return (np.arange(positions)[:, None] * per + _channels(inner, keep, spaces)[None, :]).reshape(-1)
    parts, offset = [], 0
    for inner, width in d[1]:
        parts.append(_channels(inner, keep, spaces) + offset)
        offset += width
    return np.concatenate(parts)


def _sliced(node, weights, cin, cout) -> list[np.ndarray]:
    """A teacher layer's weights cut to the student's input channels ``cin`` and output channels ``cout``."""
    cls = node.kind
    if cls in DENSE_LIKE:
        return [weights[0][..., cin, :][..., cout]] + [b[cout] for b in weights[1:]]
    if cls in SEPARABLE:
        return [weights[0][..., cin, :], weights[1][..., cin, :][..., cout]] + [b[cout] for b in weights[2:]]
    if cls in DEPTHWISE:
        return [weights[0][..., cin, :]] + [b[cin] for b in weights[1:]]
    if cls in PER_CHANNEL:
        return [w[..., cin] for w in weights]
    raise UnsupportedGraph(f"layer {node.name} ({cls}) has weights this initialisation cannot map")


def _inherit(student, teacher_model, *, assign: bool = True) -> dict[str, np.ndarray]:
    """Map (and, with ``assign``, copy) the teacher's most important channels into the student, layer by layer."""
    graph = layer_graph(teacher_model)
    heads = output_heads(graph)
    shape = {node.name: output_shape(teacher_model, node.name) for node in graph}
    spaces, space_of, desc = _Spaces(), {}, {}
    for node in graph:  # 1. what each output's channels are
        desc[node.name] = _describe(node, [desc[src] for src in node.inputs], shape, heads, spaces, space_of)
    keep = _keep(graph, student, teacher_model, desc, spaces, space_of)  # 2. the channels kept
    # 3. slice every weighted layer; assign only once all fit, so a failure leaves the student as it was
    staged = []
    for node in graph:
        weights = teacher_model.get_layer(node.name).get_weights() if node.kind != "InputLayer" else []
        if not weights:
            continue
        cin = _channels(desc[node.inputs[0]], keep, spaces) if node.inputs else None
        new = _sliced(node, weights, cin, _channels(desc[node.name], keep, spaces))
        target = student.get_layer(node.name)
        if [w.shape for w in new] != [tuple(w.shape) for w in target.weights]:
            raise UnsupportedGraph(f"layer {node.name}: the student's weights do not match the teacher's channels")
        staged.append((target, new))
    if assign:
        for target, new in staged:
            target.set_weights(new)
    return {name: _channels(d, keep, spaces) for name, d in desc.items() if d[0] != "flat"}
