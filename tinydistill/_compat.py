"""All Keras 2 / Keras 3 / TensorFlow version differences live here.

tinydistill runs every model through ``tf_keras`` (Keras 2): it loads the
Keras-2 ``.h5`` teachers people actually ship, it is what
tensorflow-model-optimization (QAT, pruning) requires, and one Keras for the
whole pipeline keeps graphs, weights and the TFLite converter consistent.
Keras 3 ``.keras`` files are read with Keras 3 and rebuilt layer by layer in
``tf_keras`` (:func:`keras3_to_tf_keras`).

TensorFlow is imported lazily so that ``import tinydistill`` and the
on-device ``verify`` path never pay for (or need) TensorFlow.
"""

from __future__ import annotations

import inspect
import os

# Must be set before TensorFlow is first imported: tfmot and ``tf.keras`` read
# them at import time. setdefault keeps a user's explicit choice.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_tf = None
_keras = None


def tf():
    """The ``tensorflow`` module, imported on first use."""
    global _tf
    if _tf is None:
        import logging

        from .capture import capture_c_output

        # TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) goes to fd 2
        # before its log level applies; keep it off the user's terminal.
        try:
            with capture_c_output():
                import tensorflow

                # device discovery (CUDA probing on machines without a GPU) prints too
                tensorflow.config.list_physical_devices()
        except ImportError:
            from .errors import TinyDistillError

            raise TinyDistillError("TensorFlow is not installed here (a device install has only the verifier): "
                                   "pip install 'tinydistill[host]' to compress models") from None

        tensorflow.get_logger().setLevel(logging.ERROR)
        # One inter-op thread unless the user chose (TF_NUM_INTEROP_THREADS): with TensorFlow's default pool,
        # independent ops of one step finish in a varying order, and the engine's runs on CIFAR-10 ResNet-8
        # (batches of 256) differed from process to process under one seed (3 runs, 3 results); with one thread
        # they were identical (3 of 3), at about 7 % more time on short runs and 8-23 % on the full CIFAR-10 checks
        # (benchmarks/RESULTS.md, "Determinism across processes"). Intra-op threads (the cores one op uses) stay
        # TensorFlow's.
        if "TF_NUM_INTEROP_THREADS" not in os.environ:
            try:
                tensorflow.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # TensorFlow already ran ops in this process (the caller's choice stands)
                pass
        cpus = int(os.environ.get("TINYDISTILL_LOGICAL_CPUS", "1") or 1)
        if cpus > 1:  # split the CPU into logical devices (to try --strategy mirrored on one machine)
            physical = tensorflow.config.list_physical_devices("CPU")
            tensorflow.config.set_logical_device_configuration(
                physical[0], [tensorflow.config.LogicalDeviceConfiguration() for _ in range(cpus)])
        logging.getLogger("absl").setLevel(logging.ERROR)
        _tf = tensorflow
    return _tf


def keras():
    """The Keras 2 package (``tf_keras``) used for every model in tinydistill."""
    global _keras
    if _keras is None:
        tf()
        import tf_keras

        _keras = tf_keras
    return _keras


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic."""
    keras().utils.set_random_seed(int(seed))
    try:
        tf().config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - older TF
        pass


# --------------------------------------------------------------------------
# Keras 3 -> tf_keras
# --------------------------------------------------------------------------

# Base-layer keyword arguments tf_keras accepts on every layer.
_BASE_KWARGS = {"name", "trainable", "dtype", "input_shape", "batch_input_shape",
                "batch_size", "weights", "activity_regularizer", "autocast",
                "input_dim", "dynamic"}


def _plain(obj):
    """Drop Keras 3 serialisation wrappers (module / registered_name, dtype policies)."""
    if isinstance(obj, dict):
        if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and "config" in obj:
            return obj["config"].get("name", "float32")
        if obj.get("class_name") == "__keras_tensor__":
            return obj
        return {k: _plain(v) for k, v in obj.items() if k not in ("module", "registered_name")}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _accepted(cls) -> set:
    return set(inspect.signature(cls.__init__).parameters)


def _objects(cfg: dict) -> dict:
    """Drop keys Keras 3 added to initializer / regularizer / constraint configs."""
    k = keras()
    out = {}
    for key, v in cfg.items():
        if isinstance(v, dict) and "class_name" in v and isinstance(v.get("config"), dict):
            cls = next((getattr(m, v["class_name"]) for m in (k.initializers, k.regularizers, k.constraints)
                        if hasattr(m, v["class_name"])), None)
            if cls is not None:
                v = {"class_name": v["class_name"],
                     "config": {a: b for a, b in v["config"].items() if a in _accepted(cls)}}
        out[key] = v
    return out


def _layer_config(class_name: str, cfg: dict) -> dict:
    k = keras()
    cfg = _objects(_plain(cfg))
    if class_name == "InputLayer":
        cfg = dict(cfg)
        if "batch_shape" in cfg:
            cfg["batch_input_shape"] = cfg.pop("batch_shape")
        cfg.pop("optional", None)
        return cfg
    cls = getattr(k.layers, class_name, None)
    if cls is None:
        return cfg
    accepted = _accepted(cls) | _BASE_KWARGS
    return {key: v for key, v in cfg.items() if key in accepted}


def _history(arg) -> list:
    """Flatten a Keras 3 call argument into tf_keras [layer, node, tensor, {}] entries."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        name, node, idx = arg["config"]["keras_history"]
        return [[name, node, idx, {}]]
    if isinstance(arg, (list, tuple)):
        return [h for a in arg for h in _history(a)]
    return []


def _io_list(spec) -> list:
    if spec and isinstance(spec[0], str):  # a single [name, node, idx]
        return [list(spec)]
    return [list(s) for s in spec]


def keras3_config_to_tf_keras(config: dict) -> dict:
    """Translate a Keras 3 model config (Functional or Sequential) into tf_keras form."""
    class_name = config["class_name"]
    inner = config["config"]
    layers = []
    for layer in inner["layers"]:
        entry = {"class_name": layer["class_name"],
                 "config": _layer_config(layer["class_name"], layer["config"])}
        if class_name != "Sequential":
            entry["name"] = layer.get("name", entry["config"].get("name"))
            entry["inbound_nodes"] = [_history(node.get("args", [])) for node in layer.get("inbound_nodes", [])]
        layers.append(entry)
    if class_name == "Sequential":
        return {"class_name": "Sequential", "config": {"name": inner.get("name", "sequential"), "layers": layers}}
    return {"class_name": "Functional", "config": {
        "name": inner.get("name", "model"), "layers": layers,
        "input_layers": _io_list(inner["input_layers"]),
        "output_layers": _io_list(inner["output_layers"])}}


def keras3_to_tf_keras(path: str, *, safe_mode: bool = True):
    """Load a Keras 3 ``.keras`` or ``.h5`` file and rebuild it as an equivalent tf_keras model.

    Only built-in layers can be rebuilt; the caller has already refused
    custom and Lambda layers unless the user trusts the model.
    """
    import json

    tf()
    import keras as keras3  # Keras 3, installed with TensorFlow 2.16+

    k3_model = keras3.saving.load_model(path, compile=False, safe_mode=safe_mode)
    config = {"class_name": k3_model.__class__.__name__ if k3_model.__class__.__name__ == "Sequential" else "Functional",
              "config": k3_model.get_config()}
    config = json.loads(json.dumps(config, default=str))
    model = keras().models.model_from_json(json.dumps(keras3_config_to_tf_keras(config)))
    by_name = {layer.name: layer for layer in k3_model.layers}
    for layer in model.layers:
        src = by_name.get(layer.name)
        if src is not None and src.weights:
            layer.set_weights([w.numpy() if hasattr(w, "numpy") else w for w in src.get_weights()])
    return model
