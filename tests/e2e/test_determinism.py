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
