"""How well a synthetic set stands in for data, measured on the set itself (no real data needed).

A set the teacher does not recognise cannot teach a student its function: a run whose inputs the
teacher puts in their target class only half of the time, or that leaves a class empty, must say
so instead of handing the user a student with a bare PASS. The thresholds are fractions of the
set, the same for every teacher.
"""

from __future__ import annotations

import numpy as np

# below these the synthetic set is flagged: most inputs should be recognised as the class they were made for,
# and every class should be recognised on at least half of its inputs
MIN_AGREEMENT = 0.9
MIN_CLASS_AGREEMENT = 0.5


def assess(syn, num_classes: int) -> dict:
    """Teacher agreement overall and per class, classes the teacher predicts at all, and warnings.

    Returns:
        ``teacher_agreement``, ``min_class_agreement`` (and ``weakest_class``), ``classes_predicted``
        (how many classes the teacher's top-1 reaches), ``mean_confidence`` (of the teacher's top-1)
        and ``warnings``: one sentence each, empty when the set looks sound.
    """
    pred = syn.logits.argmax(1)
    z = syn.logits - syn.logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    per_class = {int(c): float((pred[syn.y == c] == c).mean()) for c in np.unique(syn.y)}
    weakest = min(per_class, key=per_class.get) if per_class else None
    out = {"teacher_agreement": syn.teacher_agreement,
           "min_class_agreement": per_class[weakest] if per_class else 0.0, "weakest_class": weakest,
           "classes_predicted": int(len(np.unique(pred))), "classes": int(num_classes),
           "mean_confidence": float(p.max(1).mean()) if len(p) else 0.0}
    warnings = []
    if out["teacher_agreement"] < MIN_AGREEMENT:
        warnings.append(f"the teacher puts only {out['teacher_agreement']:.0%} of the synthetic inputs in the class they "
                        f"were made for (sound sets reach {MIN_AGREEMENT:.0%}): the student learns from inputs the "
                        "teacher does not recognise; try another --method, more --steps, or a stats file")
    if per_class and out["min_class_agreement"] < MIN_CLASS_AGREEMENT:
        warnings.append(f"class {weakest} is recognised on only {out['min_class_agreement']:.0%} of its synthetic inputs: "
                        "the student may not learn it")
    if out["classes_predicted"] < num_classes:
        warnings.append(f"the teacher predicts only {out['classes_predicted']} of its {num_classes} classes on the "
                        "synthetic set")
    out["warnings"] = warnings
    return out
