"""The synthetic set's self-check: a set the teacher does not recognise is flagged, a sound one is not."""

import numpy as np

from tinydistill.reporting.report import _accuracy_warnings
from tinydistill.synthesis import SyntheticSet
from tinydistill.synthesis.quality import assess


def _set(y, pred, C=3):
    logits = np.full((len(y), C), -5.0, np.float32)
    logits[np.arange(len(y)), pred] = 5.0
    return SyntheticSet(x=np.zeros((len(y), 2), np.float32), y=np.asarray(y), logits=logits, method="bn")


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
