"""Optional fine-tuning with tensorflow-model-optimization: quantisation-aware training and pruning.

Both continue the same knowledge distillation on the synthetic set (no real
data), at a tenth of the learning rate. tfmot needs tf_keras and
TF_USE_LEGACY_KERAS=1, which :mod:`tinydistill._compat` sets before TensorFlow loads.
"""

from __future__ import annotations

from ..errors import TinyDistillError
from .distillation import distill


def _tfmot():
    from .. import _compat

    _compat.tf()
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:
        raise TinyDistillError("--qat and --prune need tensorflow-model-optimization: "
                               "pip install 'tinydistill[host]'") from None
    return tfmot


def prune(teacher, student, data, *, sparsity: float, epochs: int = 5, seed: int = 0, on_progress=None):
    """Magnitude-prune ``student`` to ``sparsity`` (fraction of zero weights) while distilling.

    Returns the stripped (plain Keras) model, whose pruned weights are exact zeros.
    """
    if not 0 < sparsity < 1:
        raise TinyDistillError(f"`sparsity` must be in (0, 1). Received: sparsity={sparsity}")
    tfmot = _tfmot()
    import numpy as np

    steps = epochs * int(np.ceil(len(data) / 128))
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=float(sparsity),
                                                    begin_step=0, end_step=max(1, int(0.7 * steps)), frequency=10)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(student, pruning_schedule=schedule)
    step_vars = [v for v in wrapped.non_trainable_variables if "pruning_step" in v.name]
    wrapped_layers = [ly for ly in wrapped.layers if hasattr(ly, "pruning_obj")]

    def on_step(step):
        # what tfmot's UpdatePruningStep callback does, for a custom training loop
        for v in step_vars:
            v.assign(step)
        for ly in wrapped_layers:
            ly.pruning_obj.conditional_mask_update()

    distill(teacher, wrapped, data, epochs=epochs, lr=2e-4, seed=seed, on_progress=on_progress, on_step=on_step,
            features=0.0)
    for ly in wrapped_layers:  # the final masks
        ly.pruning_obj.weight_mask_op()
    return tfmot.sparsity.keras.strip_pruning(wrapped)


def quantization_aware(teacher, student, data, *, epochs: int = 5, seed: int = 0, preserve_sparsity: bool = False,
                       on_progress=None):
    """Quantisation-aware fine-tuning: fake-quantised int8 weights and activations learn to absorb the rounding."""
    tfmot = _tfmot()
    qk = tfmot.quantization.keras
    if preserve_sparsity:  # keep pruned zeros at zero through QAT (tfmot's PQAT)
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        model = qk.quantize_apply(qk.quantize_annotate_model(student), scheme)
    else:
        model = qk.quantize_model(student)
    return distill(teacher, model, data, epochs=epochs, lr=2e-4, seed=seed, on_progress=on_progress,
                   recalibrate=False, features=0.0)


def sparsity_of(model) -> float:
    """Fraction of exact zeros among the weights of conv and dense kernels."""

    total = zeros = 0
    for ly in model.layers:
        for w in ly.weights:
            if "kernel" in w.name:
                a = w.numpy()
                total += a.size
                zeros += int((a == 0).sum())
    return zeros / total if total else 0.0
