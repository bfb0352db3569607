"""tinydistill: data-free distillation of Keras classifiers into int8 students that fit a board.

The public API mirrors the CLI stages; every function returns values and
writes nothing. TensorFlow is imported only when a stage that needs it is
first used, so ``import tinydistill`` is cheap and works without TensorFlow
(on a device that only verifies).

Example:
    >>> import tinydistill as td
    >>> teacher = td.load_teacher("teacher.h5")
    >>> result = td.compress(teacher, board="cortex-m4", stats=td.load_stats("teacher.stats.npz", teacher))
    >>> result.report["fits"]
    True
"""

__version__ = "0.1.0"

_API = {
    "load_teacher": "teacher.model", "Teacher": "teacher.model",
    "record_stats": "teacher.stats", "load_stats": "teacher.stats", "save_stats": "teacher.stats", "Stats": "teacher.stats",
    "load_data": "data", "synthesize": "synthesis", "SyntheticSet": "synthesis",
    "design_student": "student.design", "distill": "student.distillation",
    "export_int8": "fitting.export", "c_source": "fitting.export",
    "check": "fitting.fitcheck", "load_board": "fitting.boards", "list_boards": "fitting.boards", "Board": "fitting.boards",
    "compress": "pipeline", "CompressResult": "pipeline", "inspect": "inspection", "profile": "teacher.profile",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name in _API:
        import importlib

        module = importlib.import_module(f".{_API[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'tinydistill' has no attribute {name!r}")
