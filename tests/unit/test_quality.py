"""The synthetic set's self-check: a set the teacher does not recognise is flagged, a sound one is not."""

import numpy as np

from tinydistill.reporting.report import _accuracy_warnings
from tinydistill.synthesis import SyntheticSet
from tinydistill.synthesis.quality import assess


def _set(y, pred, C=3, x=None, **kw):
    logits = np.full((len(y), C), -5.0, np.float32)
    logits[np.arange(len(y)), pred] = 5.0
    x = np.random.default_rng(0).uniform(0, 1, (len(y), 16)).astype(np.float32) if x is None else x
    return SyntheticSet(x=x, y=np.asarray(y), logits=logits, method="bn", **kw)


def test_sound_set_has_no_warnings():
    y = np.arange(30) % 3
    r = assess(_set(y, y), 3)
    assert r["teacher_agreement"] == 1.0 and r["min_class_agreement"] == 1.0 and r["classes_predicted"] == 3
    assert r["mean_confidence"] > 0.99 and r["warnings"] == []


def test_unrecognised_set_is_flagged():
    y = np.arange(30) % 3
    pred = np.where(y == 2, 0, y)  # class 2 never recognised: 67 % agreement, 2 of 3 classes predicted
    r = assess(_set(y, pred), 3)
    assert r["teacher_agreement"] == 2 / 3 and r["weakest_class"] == 2 and r["min_class_agreement"] == 0.0
    text = " ".join(r["warnings"])
    assert "67%" in text and "class 2" in text and "only 2 of its 3 classes" in text


def test_poor_student_is_flagged():
    assert _accuracy_warnings({"student_int8": 0.68, "teacher_float": 0.987})[0].startswith("the int8 student reaches 68.0%")
    assert _accuracy_warnings({"student_int8": 0.98, "teacher_float": 0.987}) == []
    assert _accuracy_warnings(None) == []


def test_diversity_and_fresh_student_agreement():
    y = np.arange(30) % 3
    r = assess(_set(y, y), 3)
    assert 0.3 < r["diversity"] < 0.5 and r["student_agreement_held_out"] is None  # uniform noise: RMS 1/sqrt(6) of range
    copies = np.repeat(np.random.default_rng(1).uniform(0, 1, (3, 16)), 10, axis=0).astype(np.float32)
    r = assess(_set(np.repeat(np.arange(3), 10), np.repeat(np.arange(3), 10), x=copies), 3)
    assert r["diversity"] == 0.0 and "near copies" in " ".join(r["warnings"])
    r = assess(_set(y, y, student_agreement=0.5), 3)
    assert r["student_agreement_held_out"] == 0.5 and "50% of held-out synthetic inputs" in " ".join(r["warnings"])
    assert assess(_set(y, y, student_agreement=0.9), 3)["warnings"] == []
