"""CompressConfig: built from flat options, validated once up front, the source of the resume keys."""

from dataclasses import asdict, fields

import pytest

from tinydistill.config import CompressConfig, DistillConfig, Limits, SynthesisConfig, override
from tinydistill.errors import TinyDistillError


def test_options_are_routed_to_their_part():
    c = CompressConfig.from_options(width=0.5, seed=3, n=2000, steps=7, flip="auto", epochs=5, loss="kl",
                                    features=0.0, qat=True, prune=0.5, finetune_epochs=2, max_flash=1024)
    assert (c.width, c.seed) == (0.5, 3)
    assert (c.synthesis.inputs, c.synthesis.steps, c.synthesis.flip) == (2000, 7, "auto")
    assert (c.distill.epochs, c.distill.loss, c.distill.features) == (5, "kl", 0.0)
    assert (c.finetune.qat, c.finetune.prune, c.finetune.epochs) == (True, 0.5, 2)
    assert c.limits == Limits(max_flash=1024)
    assert CompressConfig.from_options() == CompressConfig()


def test_unknown_option_names_the_known_ones():
    with pytest.raises(TinyDistillError, match="unknown option 'epoch'.*epochs"):
        CompressConfig.from_options(epoch=5)
    with pytest.raises(TinyDistillError, match="unknown option 'lrate'"):
        override(DistillConfig(), {"lrate": 1.0})


@pytest.mark.parametrize("options, message", [
    ({"method": "magic"}, "`method` must be one of"),
    ({"flip": "sideways"}, "`flip` must be one of"),
    ({"n": 0}, "must be >= 1"),
    ({"epochs": 0}, "`epochs` and `batch_size` must be >= 1"),
    ({"temperature": 0.0}, "`temperature` must be > 0"),
    ({"loss": "l1"}, "`loss` must be one of"),
    ({"mix": "blend"}, "`mix` must be one of"),
    ({"weight_decay": -0.1}, "`weight_decay` must be >= 0"),
    ({"features": float("nan")}, "`features` must be >= 0"),
    ({"prune": 1.0}, "`prune` must be in"),
    ({"width": 1.5}, "`width` must be in"),
    ({"width": "wide"}, "`width` must be in"),
    ({"max_flash": -1}, "`max_flash` must be"),
    ({"max_latency_ms": 0}, "`max_latency_ms` must be > 0"),
    ({"strategy": "cluster"}, "`strategy` must be one of"),
    ({"input_range": "1,0"}, "LO < HI"),
])
def test_validation_says_what_and_received(options, message):
    with pytest.raises(TinyDistillError, match=message):
        CompressConfig.from_options(**options).validate()


def test_validate_parses_width_and_range_and_is_frozen():
    c = CompressConfig.from_options(width=1, input_range="0,255").validate()
    assert c.width == 1.0 and isinstance(c.width, float) and c.input_range == (0.0, 255.0)
    assert CompressConfig().validate().width == "auto"
    with pytest.raises(AttributeError):
        c.seed = 2


def test_every_option_is_in_the_resume_keys(tiny_teacher):
    """The keys come from asdict: a field added to a part is in the key without anyone remembering it."""
    from tinydistill.pipeline import _resume_keys

    c = CompressConfig.from_options(width=0.5, input_range=(0, 1)).validate()
    syn_key, student_key = _resume_keys(c, tiny_teacher, None, "prior", 1)
    assert {f.name for f in fields(SynthesisConfig)} <= set(syn_key)
    assert {f.name for f in fields(DistillConfig)} | set(syn_key) <= set(student_key)
    assert syn_key["method"] == "prior" and student_key["width"] == 0.5
    assert student_key["channel_multiple"] == 2  # the student's shape: a checkpoint of another rounding is not loaded
    assert asdict(c.distill).items() <= student_key.items()
