"""Load a teacher model safely and describe it (the first stage)."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .. import _compat
from ..errors import ModelLoadError, NotAClassifierError, UnsafeModelError
from ..fitting.ondevice import _first_line  # an exception's first line (its type when it has no text)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CONTAINERS = {"Functional", "Sequential", "Model"}
# Layers whose output after a non-linearity is a feature map worth probing.
_WEIGHTED = {"Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Dense"}
_ACTIVATIONS = {"Activation", "ReLU", "LeakyReLU", "PReLU", "ELU"}


@dataclass
class Teacher:
    """A loaded teacher and what tinydistill needs to know about it.

    Attributes:
        model: the model as loaded (its outputs may be probabilities).
        logits_model: same weights, outputs pre-softmax logits.
        path: where it was loaded from.
        fingerprint: sha256 of all weights; ties statistics files to this model.
        input_shape: shape of one input, without the batch axis.
        num_classes: number of output classes.
        output_kind: ``"softmax"``, ``"logits"`` or ``"sigmoid"`` (one sigmoid unit, read as two classes:
            ``model`` is then the equivalent two-class softmax model, class 1 the teacher's ``p > 0.5``).
        probe_layers: names of the layers whose activations the statistics record.
        bn_layers: names of the BatchNormalization layers (running statistics).
        params: number of parameters.
        input_range_hint: the input range the teacher's own first layer states, or None: a ``Rescaling`` with one
            scale ``s`` and offset 0 maps [0, 1/s] onto [0, 1] (Keras' 1/255 layer: 0..255), offset -1 maps
            [0, 2/s] onto [-1, 1]. :func:`~tinydistill.data.resolve_input_range` uses it when neither the user nor a
            stats file gives the range.
    """

    model: object
    logits_model: object
    path: str
    fingerprint: str
    input_shape: tuple
    num_classes: int
    output_kind: str
    probe_layers: list = field(default_factory=list)
    bn_layers: list = field(default_factory=list)
    params: int = 0
    input_range_hint: tuple | None = None

    @property
    def has_batchnorm(self) -> bool:
        return bool(self.bn_layers)


def _layer_classes(config: dict) -> list[str]:
    """Every layer class name in a Keras model config, nested models and wrappers included."""
    found = []
    inner = config.get("config") if isinstance(config, dict) else None
    if not isinstance(inner, dict):
        return found
    for layer in inner.get("layers", []):
        if not isinstance(layer, dict):
            continue
        found.append(layer.get("class_name"))
        found.extend(_layer_classes(layer))  # nested Functional / Sequential
        wrapped = layer.get("config", {}).get("layer") if isinstance(layer.get("config"), dict) else None
        if isinstance(wrapped, dict):  # TimeDistributed, Bidirectional
            found.append(wrapped.get("class_name"))
            found.extend(_layer_classes(wrapped))
    return [c for c in found if c]


def _check_safe(config: dict, path: str, trust_model: bool) -> None:
    """Refuse Lambda and unknown (custom) layers unless the user trusts the model."""
    k = _compat.keras()
    classes = set(_layer_classes(config))
    if trust_model:
        return
    if "Lambda" in classes:
        raise UnsafeModelError(
            f"{path} contains a Lambda layer, which runs arbitrary Python code when loaded: "
            "pass --trust-model only if you trust its source")
    unknown = sorted(c for c in classes
                     if c not in _CONTAINERS and not hasattr(k.layers, c)
                     and c not in ("TFOpLambda", "SlicingOpLambda"))
    if unknown:
        hint = " (QKeras layers: install qkeras and export a plain Keras model)" if any(
            c.startswith("Q") for c in unknown) else ""
        raise UnsafeModelError(
            f"{path} uses custom layers {', '.join(unknown)}{hint}: tinydistill loads only built-in "
            "Keras layers; re-export the model with standard layers, or pass --trust-model with the "
            "package that defines them installed")
    if classes & {"TFOpLambda", "SlicingOpLambda"}:
        raise UnsafeModelError(
            f"{path} contains raw TensorFlow ops (TFOpLambda): pass --trust-model if you trust it")


def _read_config(path: str) -> tuple[str, dict]:
    """Return (format, model config) without deserialising any layer."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            # a SavedModel holds traced graphs, not Python code: there is no layer config to screen
            return "savedmodel", {}
        raise ModelLoadError(f"{path} is a folder without saved_model.pb: pass a .h5, .keras or SavedModel folder")
    size = os.path.getsize(path)
    if size == 0:
        raise ModelLoadError(f"{path} is empty (0 bytes): pass the full model file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_MAGIC:
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                raw = h5.attrs.get("model_config")
                version = h5.attrs.get("keras_version", b"")
        except (OSError, KeyError, ValueError, RuntimeError) as exc:  # h5py's errors on damaged object headers
            raise ModelLoadError(
                f"{path} is a damaged or truncated HDF5 file ({str(exc).strip(chr(39) + ' ').split('(')[0].strip()}): "
                "copy or download it again") from None
        if raw is None:
            raise ModelLoadError(
                f"{path} holds weights only, no model architecture: save it with model.save() "
                "(not save_weights()) and try again")
        try:
            config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{path} has a damaged model configuration ({str(exc)[:80]}): copy or download it "
                                 "again, or save the model again with model.save()") from None
        if not isinstance(config, dict):
            raise ModelLoadError(f"{path} has no valid model configuration: save the model again with model.save()")
        version = version.decode("utf-8", "replace") if isinstance(version, bytes) else str(version)
        # Keras 3 (TensorFlow 2.16+'s default) writes .h5 files too, with layer configs tf.keras cannot read
        return ("h5-keras3" if version.startswith("3") else "h5"), config
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise ModelLoadError(f"{path} is not a valid .keras archive ({exc}): save it again with model.save()") from None
        version = str(meta.get("keras_version", "3"))
        return ("keras3" if version.startswith("3") else "keras2"), config
    raise ModelLoadError(
        f"{path} is not a Keras model (expected an HDF5 .h5, a .keras archive or a SavedModel folder)")


def _fingerprint(model) -> str:
    h = hashlib.sha256()
    for w in model.weights:
        a = np.asarray(w.numpy())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _act_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def _logits_model(model):
    """A model with the same weights whose output is pre-softmax logits, and the output kind."""
    k = _compat.keras()
    last = model.layers[-1]
    act_name = _act_name(last)
    cls = last.__class__.__name__
    if cls == "Softmax" or (cls == "Activation" and act_name == "softmax"):
        return k.Model(model.inputs, last.input, name="teacher_logits"), "softmax"
    if act_name == "softmax":
        cfg = dict(last.get_config(), activation="linear", name=last.name + "_logits")
        clone = last.__class__.from_config(cfg)
        out = clone(last.input)
        clone.set_weights(last.get_weights())
        return k.Model(model.inputs, out, name="teacher_logits"), "softmax"
    if act_name in (None, "linear") and cls not in _ACTIVATIONS:
        return model, "logits"
    raise NotAClassifierError(
        f"the model's last layer ({last.name}) ends in '{act_name or cls}': tinydistill compresses "
        "classifiers whose output is a softmax or logits over the classes")


_RECURRENT = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
              "CuDNNLSTM", "CuDNNGRU"}


def _two_class_view(model):
    """A binary classifier whose output is one sigmoid unit, as the equivalent two-class softmax model, or None.

    A Dense layer with one unit, kernel ``w`` and bias ``b`` followed by a sigmoid gives p = sigmoid(w.x + b); with
    two units ``[-w/2, w/2]``, ``[-b/2, b/2]`` and a softmax it gives the probabilities [1 - p, p], the same to
    rounding. So everything downstream (synthesis, distillation, accuracy by argmax) sees a two-class classifier,
    and class 1 is the teacher's 'p > 0.5'. None when the sigmoid does not come straight from such a Dense layer.
    """
    last = model.layers[-1]
    if last.__class__.__name__ == "Dense" and _act_name(last) == "sigmoid":
        dense, act_layer = last, None
    elif last.__class__.__name__ == "Activation" and _act_name(last) == "sigmoid":
        history = getattr(last.input, "_keras_history", None)
        dense = getattr(history, "layer", None)
        if dense is None or _act_name(dense) not in (None, "linear"):
            return None
        act_layer = last
    else:
        return None
    if dense.__class__.__name__ != "Dense" or dense.units != 1:
        return None
    config = json.loads(json.dumps(model.get_config(), default=str))
    for entry in config["layers"]:
        cfg = entry["config"]
        if cfg.get("name") == dense.name:
            cfg["units"], cfg["activation"] = 2, ("linear" if act_layer is not None else "softmax")
        elif act_layer is not None and cfg.get("name") == act_layer.name:
            cfg["activation"] = "softmax"
    try:
        two = model.__class__.from_config(config)
        for src, dst in zip(model.layers, two.layers):
            if src is dense:
                w = src.get_weights()
                halves = [np.concatenate([-v / 2, v / 2], axis=-1) for v in w]
                dst.set_weights(halves)
            else:
                dst.set_weights(src.get_weights())
    except Exception:  # a layer that cannot be rebuilt from its config: leave the model as it is
        return None
    return two


def _input_range_hint(model) -> tuple[float, float] | None:
    """The input range a ``Rescaling`` first layer (after the input) states: offset 0 -> [0, 1/scale], offset -1 ->
    [0, 2/scale]; None for any other first layer or a per-channel scale (see :class:`Teacher`)."""
    layers = [ly for ly in model.layers if ly.__class__.__name__ != "InputLayer"]
    if not layers or layers[0].__class__.__name__ != "Rescaling":
        return None
    cfg = layers[0].get_config()
    scale, offset = cfg.get("scale"), cfg.get("offset", 0.0)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (scale, offset)) or scale <= 0:
        return None
    span = {0.0: 1.0, -1.0: 2.0}.get(float(offset))
    return None if span is None else (0.0, float(np.float32(span / scale).round(4)))


def _probe_layers(model) -> list[str]:
    """Post-non-linearity feature maps, the layers Lopes et al. record statistics of."""
    names = []
    layers = model.layers
    for layer in layers[:-1]:
        cls = layer.__class__.__name__
        act = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if cls in _ACTIVATIONS or (cls in _WEIGHTED and act not in ("linear", "softmax")):
            names.append(layer.name)
    if not names:  # a purely linear network: fall back to every weighted layer
        names = [ly.name for ly in layers[:-1] if ly.__class__.__name__ in _WEIGHTED]
    return names


def describe(model, *, path: str = "<memory>") -> Teacher:
    """Build a :class:`Teacher` from an in-memory Keras (tf_keras) model.

    Raises:
        NotAClassifierError: several inputs/outputs, or an output that is not
            a softmax / logits vector over at least two classes.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise NotAClassifierError(
            f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs: tinydistill "
            "compresses single-input, single-output classifiers; export that sub-model first")
    recurrent = [cls for cls in _layer_classes({"config": model.get_config()}) if cls in _RECURRENT]
    if recurrent:
        raise NotAClassifierError(
            f"the model has a recurrent layer ({recurrent[0]}): tinydistill "
            "compresses feed-forward classifiers (dense, convolution, pooling, normalisation layers); replace "
            "recurrent layers with Conv1D layers over time, or convert this model without tinydistill")
    dtype = model.inputs[0].dtype
    if not getattr(dtype, "is_floating", False):
        raise NotAClassifierError(
            f"the model's input is {getattr(dtype, 'name', dtype)} (e.g. token ids for an Embedding layer): tinydistill "
            "makes inputs by gradient descent, which needs a float input (images, audio features, sensor values); "
            "compress the layers after the embedding as a model of their own, or convert this one without tinydistill")
    out_shape = tuple(model.outputs[0].shape)
    fingerprint, binary = _fingerprint(model), None
    if len(out_shape) == 2 and out_shape[1] == 1:
        binary = _two_class_view(model)
        if binary is None:
            raise NotAClassifierError(
                f"the model's output has shape {out_shape}: one output is read as a binary classifier only when it is "
                "a sigmoid on a Dense layer of one unit; tinydistill compresses classifiers, not regression or "
                "detection models")
        model, out_shape = binary, (out_shape[0], 2)
    if len(out_shape) != 2 or out_shape[1] is None or out_shape[1] < 2:
        raise NotAClassifierError(
            f"the model's output has shape {out_shape}, not (batch, classes) with >= 2 classes: "
            "tinydistill compresses classifiers, not regression or detection models")
    logits_model, kind = _logits_model(model)
    kind = "sigmoid" if binary is not None else kind
    in_shape = tuple(int(d) for d in model.inputs[0].shape[1:] if d is not None)
    if len(in_shape) != len(model.inputs[0].shape) - 1:
        raise NotAClassifierError(
            f"the model's input shape {tuple(model.inputs[0].shape)} has unknown dimensions: pass --input-shape "
            "with the size of your inputs (e.g. 96,96,3; without the batch), or save the teacher with a fixed input "
            "shape")
    return Teacher(
        model=model, logits_model=logits_model, path=path, fingerprint=fingerprint,
        input_shape=in_shape, num_classes=int(out_shape[1]), output_kind=kind,
        probe_layers=_probe_layers(model),
        bn_layers=[ly.name for ly in model.layers if ly.__class__.__name__ == "BatchNormalization"],
        params=int(model.count_params()), input_range_hint=_input_range_hint(model))


def load_teacher(path: str, *, trust_model: bool = False, input_shape: tuple | None = None) -> Teacher:
    """Load a classifier from ``.h5`` or ``.keras`` (Keras 2 or 3) or a SavedModel folder.

    Loading is safe by default: Lambda layers and custom classes are refused
    before anything is deserialised unless ``trust_model`` is true. ``input_shape`` (without the batch) fills the
    unknown dimensions of a model saved with them, e.g. a fully convolutional model whose input is
    ``(None, None, 3)``: the model is rebuilt at that shape with the same weights.

    Example:
        >>> t = td.load_teacher("teacher.h5")
        >>> t.input_shape, t.num_classes, t.has_batchnorm
        ((28, 28, 1), 10, False)

    Raises:
        ModelLoadError: missing, empty, truncated or non-model file.
        UnsafeModelError: Lambda / custom layers without ``trust_model``.
        NotAClassifierError: the model is not a classifier tinydistill can compress, or ``input_shape`` does not
            fit its input.
    """
    path = str(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"model file {path} does not exist: check the path")
    fmt, config = _read_config(path)
    _check_safe(config, path, trust_model)
    k = _compat.keras()
    try:
        if fmt in ("keras3", "h5-keras3"):
            model = _compat.keras3_to_tf_keras(path, safe_mode=not trust_model)
        elif fmt == "keras2":
            model = k.models.load_model(path, compile=False, safe_mode=not trust_model)
        else:
            model = k.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types; we only need to say what happened
        raise ModelLoadError(f"could not load {path}: {_first_line(exc)[:200]}") from None
    if not isinstance(model, k.Model):  # e.g. a SavedModel whose Keras metadata is missing or damaged
        raise ModelLoadError(f"{path} did not load as a Keras model (a {type(model).__name__}): save it with Keras' "
                             "model.save() and try again")
    if input_shape is not None:
        model = fixed_input(model, input_shape)
    return describe(model, path=path)


def fixed_input(model, shape):
    """``model`` rebuilt with its input's unknown (None) dimensions set from ``shape`` (without the batch), with the
    same weights; the model itself when it has none. A dimension the model fixes must be given as it is."""
    shape = tuple(int(d) for d in shape)
    current = tuple(model.inputs[0].shape[1:])
    shown = ",".join(str(d) for d in shape)
    if len(shape) != len(current) or any(d < 1 for d in shape):
        raise NotAClassifierError(f"--input-shape {shown} does not fit the model's input {current}: give one size >= 1 "
                                  f"for each of its {len(current)} dimensions (without the batch)")
    if any(a is not None and a != b for a, b in zip(current, shape)):
        raise NotAClassifierError(f"--input-shape {shown} does not fit the model's input {current}: only its unknown "
                                  "(None) dimensions can be set; give the others as they are")
    if None not in current:
        return model
    k = _compat.keras()
    try:
        clone = k.models.clone_model(model, input_tensors=k.Input(shape=shape, dtype=model.inputs[0].dtype))
        clone.set_weights(model.get_weights())
    except Exception as exc:  # a layer that cannot take this shape (too small for its kernels or pooling)
        raise NotAClassifierError(f"the model cannot be built for input shape ({shown}), too small for its kernels or "
                                  f"pooling?: {_first_line(exc)[:200]}") from None
    return clone
