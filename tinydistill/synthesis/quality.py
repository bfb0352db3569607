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
# at most this many times a run doubles its class weight when the teacher does not recognise a batch (self-check)
ADAPTATIONS = 3
MIN_CLASS_AGREEMENT = 0.5
# inputs of one class that differ, pixel for pixel, by less than this fraction of the set's range are near copies
# (two random CIFAR-10 training images of one class differ by about 0.25 of the range: RMS over pixels)
MIN_DIVERSITY = 0.05
# a student that agrees with the teacher on fewer held-out synthetic inputs than this has not learnt the teacher's
# function even where the synthesis can show it
MIN_STUDENT_AGREEMENT = 0.75


def raise_class_weight(weight, logits: np.ndarray, y: np.ndarray, batch: str, then: str) -> str | None:
    """Self-check of a synthesis run: if the teacher puts fewer than :data:`MIN_AGREEMENT` of a batch (``logits``)
    in its target classes ``y``, the class term is too weak against the matched statistics: double ``weight`` (a
    ``tf.Variable``, so the compiled step needs no new trace) and return what was done (``batch``: which batch,
    ``then``: what the run does next); None when the batch is recognised."""
    recognised = float((logits.argmax(1) == y).mean())
    if recognised >= MIN_AGREEMENT:
        return None
    before = float(weight.numpy())
    weight.assign(2.0 * before)
    return f"the teacher recognised {recognised:.0%} of {batch}: class weight {before:g} -> {2 * before:g}, {then}"


def diversity(x: np.ndarray, y: np.ndarray, pairs: int = 512) -> float:
    """RMS difference of random pairs of inputs of the same class, as a fraction of the set's value range (seeded)."""
    rng = np.random.default_rng(0)
    span = float(x.max() - x.min()) if len(x) else 0.0
    out = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            continue
        a, b = rng.choice(idx, pairs), rng.choice(idx, pairs)
        keep = a != b
        d = (x[a[keep]].reshape(keep.sum(), -1) - x[b[keep]].reshape(keep.sum(), -1)).astype(np.float64)
        out.append(np.sqrt((d ** 2).mean(1)).mean())
    return float(np.mean(out) / span) if out and span > 0 else 0.0


def assess(syn, num_classes: int) -> dict:
    """Teacher agreement overall and per class, classes the teacher predicts at all, and warnings.

    Returns:
        ``teacher_agreement``, ``min_class_agreement`` (and ``weakest_class``), ``classes_predicted``
        (how many classes the teacher's top-1 reaches), ``mean_confidence`` (of the teacher's top-1)
        ``diversity`` (:func:`diversity`), ``student_agreement_held_out`` (the student against the teacher on
        synthetic inputs it never trained on: the engine's, or per-batch synthesis's held-out ones after compress
        distils; None: not measured) and
        ``warnings``: one sentence each, empty when the set looks sound.
    """
    pred = syn.logits.argmax(1)
    z = syn.logits - syn.logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    per_class = {int(c): float((pred[syn.y == c] == c).mean()) for c in np.unique(syn.y)}
    weakest = min(per_class, key=per_class.get) if per_class else None
    out = {"teacher_agreement": syn.teacher_agreement,
           "min_class_agreement": per_class[weakest] if per_class else 0.0, "weakest_class": weakest,
           "classes_predicted": int(len(np.unique(pred))), "classes": int(num_classes),
           "mean_confidence": float(p.max(1).mean()) if len(p) else 0.0,
           "diversity": diversity(syn.x, syn.y), "student_agreement_held_out": getattr(syn, "student_agreement", None)}
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
    if out["diversity"] < MIN_DIVERSITY:
        warnings.append(f"synthetic inputs of one class differ by only {out['diversity']:.1%} of their range: they are "
                        "near copies of each other, so the student sees few distinct examples")
    fresh = out["student_agreement_held_out"]
    if fresh is not None and fresh < MIN_STUDENT_AGREEMENT:
        warnings.append(f"the student agrees with the teacher on only {fresh:.0%} of held-out synthetic inputs: it has "
                        "not learnt the teacher's function on them; measure it on real data (--data) before you ship it")
    out["warnings"] = warnings
    return out
