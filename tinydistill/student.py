"""Design the student: a width-scaled copy of the teacher's architecture."""

from __future__ import annotations

import json

from . import _compat
from .errors import TinyDistillError

# Config keys that set a layer's width.
_WIDTH_KEYS = ("filters", "units")


def validate_width(width) -> float:
    """The width as a float, or a clear error."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise TinyDistillError(f"`width` must be in (0, 1] (or 'auto' for compress). Received: width={width!r}")
    return float(width)


def design_student(teacher, *, width: float = 0.5, seed: int = 0):
    """A fresh, untrained student whose layers are ``width`` times as wide as the teacher's.

    Every convolution's ``filters`` and every dense layer's ``units`` are
    scaled (at least 1), except the classifier layer, which keeps one unit per
    class. The student outputs logits; parameters shrink roughly as ``width**2``.

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        width: width multiplier in (0, 1].
        seed: initialisation seed.

    Example:
        >>> student = td.design_student(teacher, width=0.5)
        >>> student.count_params() < teacher.params / 2
        True
    """
    validate_width(width)
    k = _compat.keras()
    _compat.set_seed(seed)
    config = json.loads(json.dumps(teacher.logits_model.get_config()))
    layers = config["layers"]
    last = teacher.logits_model.layers[-1].name
    for layer in layers:
        cfg = layer["config"]
        if cfg.get("name") == last:
            continue
        for key in _WIDTH_KEYS:
            if isinstance(cfg.get(key), int):
                cfg[key] = max(1, int(round(cfg[key] * width)))
    config["name"] = "student"
    if teacher.logits_model.__class__.__name__ == "Sequential":
        model = k.Sequential.from_config(config)
    else:
        model = k.Model.from_config(config)
    return model


def with_output_activation(student, teacher):
    """The student with the teacher's output interface (softmax appended if the teacher has one)."""
    k = _compat.keras()
    if teacher.output_kind != "softmax":
        return student
    out = k.layers.Softmax(name="probabilities")(student.output)
    return k.Model(student.inputs, out, name="student")
