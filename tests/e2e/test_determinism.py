"""One --seed: the same run twice gives byte-identical int8 models."""

from tinydistill.pipeline import compress


def test_same_seed_same_bytes(tiny_teacher, tiny_stats):
    kw = dict(board="cortex-m4", stats=tiny_stats, n=60, steps=5, epochs=2, width=0.5)
    a = compress(tiny_teacher, seed=7, **kw)
    b = compress(tiny_teacher, seed=7, **kw)
    assert a.tflite == b.tflite
    assert (a.synthetic.x == b.synthetic.x).all()
    c = compress(tiny_teacher, seed=8, **kw)
    assert c.tflite != a.tflite


def test_a_teacher_quantised_as_it_is_gives_the_same_bytes_twice(tiny_teacher):
    """The path with no distillation: its calibration set is seeded too."""
    kw = dict(board="cortex-m4", n=60, steps=3, width=1.0, input_range=(0.0, 1.0))
    a, b = compress(tiny_teacher, seed=3, **kw), compress(tiny_teacher, seed=3, **kw)
    assert a.report["distillation"]["skipped"] and a.tflite == b.tflite
