import numpy as np
import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.student import design_student, with_output_activation
from tinydistill.teacher import describe


def test_width_scales_layers(tiny_teacher):
    s = design_student(tiny_teacher, width=0.5)
    assert s.get_layer("conv1").filters == 4
    assert s.get_layer("fc1").units == 8
    assert s.get_layer(tiny_teacher.logits_model.layers[-1].name).units == 3  # one unit per class
    assert s.count_params() < tiny_teacher.params / 2
    assert s.layers[-1].get_config()["activation"] == "linear"  # logits for KD


def test_full_width_has_teacher_params(tiny_teacher):
    assert design_student(tiny_teacher, width=1.0).count_params() == tiny_teacher.params


def test_fresh_weights(tiny_teacher):
    s = design_student(tiny_teacher, width=1.0)
    assert not np.allclose(s.get_layer("conv1").get_weights()[0], tiny_teacher.model.get_layer("conv1").get_weights()[0])


@pytest.mark.parametrize("width", [0, -0.5, 1.5, "half"])
def test_width_validated(tiny_teacher, width):
    with pytest.raises(TinyDistillError, match="`width` must be in \\(0, 1\\]"):
        design_student(tiny_teacher, width=width)


def test_bn_student_and_softmax_interface(tiny_bn_model):
    t = describe(tiny_bn_model)
    s = design_student(t, width=0.5)
    assert s.get_layer("bn1") is not None
    final = with_output_activation(s, t)
    p = final.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
