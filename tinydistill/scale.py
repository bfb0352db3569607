"""tf.distribute strategies for synthesis and distillation (no home-made distribution).

``default``       the current strategy: one device.
``mirrored``      every GPU of this machine (or, without GPUs, every logical CPU device).
``multi-worker``  several machines, each running the same command with its own ``TF_CONFIG``:

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        tinydistill compress teacher.h5 --strategy multi-worker ...      # index 1 on host2

Each replica optimises its share of every synthesis batch and takes its share of
every distillation batch; gradients are summed across replicas.
"""

from __future__ import annotations

import os

from . import _compat
from .config import STRATEGIES
from .errors import TinyDistillError


def get_strategy(name: str = "default"):
    """The ``tf.distribute`` strategy for ``name``.

    Raises:
        TinyDistillError: unknown name, or multi-worker without ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise TinyDistillError(f"`strategy` must be one of {', '.join(STRATEGIES)}. Received: strategy={name!r}")
    tf = _compat.tf()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        if gpus:
            return tf.distribute.MirroredStrategy(devices=gpus)
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if "TF_CONFIG" not in os.environ:
        raise TinyDistillError("--strategy multi-worker needs TF_CONFIG describing the cluster on every worker "
                               "(see 'tinydistill compress --help' and the README)")
    return tf.distribute.MultiWorkerMirroredStrategy()
