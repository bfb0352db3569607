"""Typed errors. Every message names the problem and the fix, in one line.

The CLI prints ``str(error)`` in red and exits 1; nothing else is shown.
"""


class TinyDistillError(Exception):
    """Base class of every error tinydistill raises on purpose."""


class ModelLoadError(TinyDistillError):
    """The teacher file cannot be read as a Keras model."""


class UnsafeModelError(ModelLoadError):
    """The model contains code (Lambda / custom layers) and was not trusted."""


class NotAClassifierError(TinyDistillError):
    """The model is not a single-input classifier with softmax or logits output."""


class StatsError(TinyDistillError):
    """A statistics file is unreadable, unsafe or of an unknown format."""


class StatsMismatchError(StatsError):
    """A statistics file was recorded on another teacher."""


class DataError(TinyDistillError):
    """Data cannot be read or does not match the teacher."""


class BoardError(TinyDistillError):
    """A board name or board file is unknown or invalid."""


class BudgetError(TinyDistillError):
    """No student fits the memory / latency budget."""


class OutputError(TinyDistillError):
    """The output location cannot be written."""


class FirmwareError(TinyDistillError):
    """The firmware cannot be built, linked or run (toolchain, sources, a build error, a firmware that does not fit)."""
