"""The options of a compress run: one frozen object, built once, validated once up front.

``CompressConfig`` is made of the parts each stage takes (``SynthesisConfig`` for
:func:`~tinydistill.synthesis.synthesize`, ``DistillConfig`` for
:func:`~tinydistill.distillation.distill`, ``FinetuneConfig``, ``Limits``). Resume keys are
derived from it with :func:`dataclasses.asdict`, so a new option cannot be left out of a key.
Validation here needs no TensorFlow and no model: it runs before anything expensive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from .errors import TinyDistillError

METHODS = ("auto", "all-layers", "top-layer", "layer-pairs", "bn", "prior", "generator")
FLIPS = ("auto", "on", "off")
LOSSES = ("mse", "kl")
MIXES = ("mixup", "cutmix")
STRATEGIES = ("default", "mirrored", "multi-worker")

# measured on LeNet-5 -> half with stats (int8): 24k inputs x 80 steps 98.48 % (benchmarks/RESULTS.md, "defaults")
DEFAULT_INPUTS = 24000
# 64 steps a batch instead of 80 and distillation batches of 256 at 4e-3 instead of 128 at 2e-3 (the per-batch
# methods only): 98.56 / 98.62 % against 98.63 / 98.57 % with stats on a validation split of MNIST train, a fifth of
# the synthesis and 14 % of the distillation saved (benchmarks/RESULTS.md, "Where MNIST's seconds go")
DEFAULT_STEPS = 64
# all-layers (the method a stats file selects) needs fewer: 48 steps gave 98.57 / 98.57 % against 98.56 / 98.57 % at 64
# with stats (a quarter of the synthesis, about 30 s of a default LeNet-5 run); without stats (prior) 48 lost 0.07 and
# 0.06 pp on the same two seeds, so the other per-batch methods keep 64 ("Where MNIST's seconds go")
METHOD_STEPS = {"all-layers": 48}
DEFAULT_BATCH = 256
DEFAULT_LR = 4e-3
# 60 epochs instead of 30 and a stage-feature weight of 30: benchmarks/RESULTS.md ("epochs", "feature weight")
DEFAULT_EPOCHS = 60
FEATURE_WEIGHT = 30.0
# the interleaved engine (method "generator"): inputs generated, generator steps per batch, passes of the student
# over the final pool. 512 batches of 256: a round of CIFAR-10 ResNet-8 -> width 0.7 costs 2.2-2.9 s on 2 cores
# (the machine varies), so the run stays under 30 min on a slow day; 640 batches had reached 30.4 min there
# (benchmarks/RESULTS.md, "Where an engine run's time and memory go")
ENGINE_INPUTS = 131_072
ENGINE_STEPS = 2
ENGINE_EPOCHS = 5
ENGINE_BATCH = 128  # the engine's student batch and peak learning rate ("Sixth sweep": 4e-3 lost 3.0 and 1.2 pp)
ENGINE_LR = 2e-3
# the engine's student ends as an exponential moving average of its weights over the last ~1/(1 - ENGINE_EMA) steps,
# which smooths over the generator's drift: +2.9 and +2.2 pp on two seeds (benchmarks/RESULTS.md, "Fourth sweep");
# 0.9994 spans the last third of the default run's 5,020 student steps (the longest whose start keeps under 5 % of it,
# as in every 300-batch sweep, where that cap set the momentum): +0.54 and +0.10 pp over 0.999 ("Sixteenth sweep")
ENGINE_EMA = 0.9994
# without a stats file, the engine's generator is drawn afresh every ENGINE_RENEW rounds (NAYER's generator life):
# +1.86 and +1.30 pp from BatchNorm statistics at 300 batches, within-class diversity 15 -> 29 % ("Seventeenth sweep");
# with a stats file (diversity already 33 % from its per-class moments) one generator lives the whole run: renewing
# it every 96 rounds there lost 0.52 and 0.38 pp and left the diversity as it was (same sweep); lives of 64 and 144
# rounds lost to 96 on both seeds ("Nineteenth sweep")
ENGINE_RENEW = 96
# a renewed generator first takes ENGINE_REWARM generator-only rounds whose batches are discarded (NAYER's warm-up loops
# of a new generator): the teacher recognised 98.7 % of the pool instead of 96.3 %, +0.62 and +0.30 pp at a life of 96;
# at a life of 32 it recovered 4.7 and 3.1 pp, still under 96 ("Eighteenth sweep")
ENGINE_REWARM = 16


def _fail(what: str, received: str) -> None:
    raise TinyDistillError(f"{what}. Received: {received}")


def _below_one(value) -> bool:
    """A count that is set and below 1 (None means: the method's default)."""
    return value is not None and value < 1


def resolve_counts(method: str, synthesis: SynthesisConfig, distill: DistillConfig, effort: float = 1.0):
    """The synthesis and distillation configs with every count the user left unset (None) filled in.

    ``effort`` scales the number of inputs, so the run's time (both stages grow with it): 1 is the
    measured default, 0.5 half the time, 2 twice. Counts the user set are kept as they are.
    """
    engine = method == "generator"
    inputs, steps = (ENGINE_INPUTS, ENGINE_STEPS) if engine else (DEFAULT_INPUTS, METHOD_STEPS.get(method, DEFAULT_STEPS))
    synthesis = replace(synthesis, inputs=synthesis.inputs or max(1, round(inputs * effort)),
                        steps=synthesis.steps or steps)
    return synthesis, resolve_distill(distill, engine=engine)


def resolve_distill(distill: DistillConfig, *, engine: bool = False) -> DistillConfig:
    """``distill`` with every field left unset (None) filled in: the interleaved engine's defaults (``engine``), else
    the per-batch methods'. Fields that are set are kept."""
    epochs, batch_size, lr, ema = ((ENGINE_EPOCHS, ENGINE_BATCH, ENGINE_LR, ENGINE_EMA) if engine
                                   else (DEFAULT_EPOCHS, DEFAULT_BATCH, DEFAULT_LR, 0.0))
    return replace(distill, epochs=distill.epochs or epochs, batch_size=distill.batch_size or batch_size,
                   lr=distill.lr or lr, ema=distill.ema if distill.ema is not None else ema)


@dataclass(frozen=True)
class SynthesisConfig:
    """How synthetic inputs are made.

    Attributes:
        method: one of :data:`METHODS` (``auto``: the strongest signal the teacher has).
        inputs: number of synthetic inputs (``generator``: inputs generated in all); None: the method's
            default times the run's effort (:func:`resolve_counts`).
        steps: Adam steps per batch (``generator``: generator steps per batch); None: the method's default.
        batch_size: inputs optimised together (moments are matched per batch).
        flip: ``"off"``, ``"on"`` or ``"auto"`` (see :class:`~tinydistill.synthesis.Recipe`).
        disagreement: weight of the teacher-student disagreement term (only when a student is given).
    """

    method: str = "auto"
    inputs: int | None = None
    steps: int | None = None
    batch_size: int = 500
    flip: str = "off"
    disagreement: float = 1.0

    def validate(self) -> SynthesisConfig:
        if self.method not in METHODS:
            _fail(f"`method` must be one of {', '.join(METHODS)}", f"method={self.method!r}")
        if _below_one(self.inputs) or _below_one(self.steps) or self.batch_size < 1:
            _fail("`n`, `steps` and `batch_size` must be >= 1",
                  f"n={self.inputs}, steps={self.steps}, batch_size={self.batch_size}")
        if self.flip not in FLIPS:
            _fail(f"`flip` must be one of {', '.join(FLIPS)}", f"flip={self.flip!r}")
        return self


@dataclass(frozen=True)
class DistillConfig:
    """How the student learns the teacher on the synthetic set.

    Attributes:
        epochs: passes over the synthetic set (None: the method's default, :func:`resolve_counts`).
        loss: ``"mse"`` (logits) or ``"kl"`` (softened probabilities at ``temperature``).
        temperature: KD temperature (``"kl"`` only).
        features: weight of the stage-output feature term (0: outputs only).
        batch_size: examples per step (None: the method's default, :func:`resolve_counts`).
        lr: peak learning rate (Adam, cosine decay; None: the method's default).
        augment: random shifts (image inputs) and mixes of two inputs, labelled by the teacher.
        mix: how half of every augmented batch is mixed with another input: ``"mixup"`` (a weighted sum) or
            ``"cutmix"`` (a random box of the other image pasted in; images only, mixup otherwise).
        recalibrate: re-estimate BatchNorm statistics on clean inputs at the end.
        ema: momentum of an exponential moving average of the student's weights, which replace them at the end
            (0: off; None: the method's default, :data:`ENGINE_EMA` for ``generator``, off otherwise); lowered in
            short runs so that the starting weights keep at most 5 % of the average.
        weight_decay: decoupled weight decay of the student's kernels (AdamW: every step shrinks them by
            ``learning rate x weight_decay``; biases and BatchNorm's scales and offsets are left alone; 0: off).
    """

    epochs: int | None = None
    loss: str = "mse"
    temperature: float = 4.0
    features: float = FEATURE_WEIGHT
    batch_size: int | None = None
    lr: float | None = None
    augment: bool = True
    mix: str = "mixup"
    recalibrate: bool = True
    ema: float | None = None
    weight_decay: float = 0.0

    def validate(self) -> DistillConfig:
        if self.lr is not None and not self.lr > 0:
            _fail("`lr` must be > 0", f"lr={self.lr!r}")
        if _below_one(self.epochs) or _below_one(self.batch_size):
            _fail("`epochs` and `batch_size` must be >= 1", f"epochs={self.epochs}, batch_size={self.batch_size}")
        if not self.temperature > 0:
            _fail("`temperature` must be > 0", f"temperature={self.temperature}")
        if self.loss not in LOSSES:
            _fail(f"`loss` must be one of {', '.join(LOSSES)}", f"loss={self.loss!r}")
        if self.mix not in MIXES:
            _fail(f"`mix` must be one of {', '.join(MIXES)}", f"mix={self.mix!r}")
        if self.ema is not None and not 0 <= self.ema < 1:
            _fail("`ema` must be in [0, 1) (0: off)", f"ema={self.ema!r}")
        if not self.weight_decay >= 0:
            _fail("`weight_decay` must be >= 0 (0: off)", f"weight_decay={self.weight_decay!r}")
        validate_feature_weight(self.features)
        return self


def validate_feature_weight(features) -> None:
    """Raise a clear error unless the feature-term weight is >= 0 (NaN included)."""
    if not features >= 0:
        _fail("`features` must be >= 0 (0: match the outputs only)", f"features={features!r}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Optional tfmot fine-tuning after distillation: ``qat``, ``prune`` (target sparsity), ``epochs`` each."""

    qat: bool = False
    prune: float | None = None
    epochs: int = 5

    def validate(self) -> FinetuneConfig:
        if self.prune is not None and not 0 < self.prune < 1:
            _fail("`prune` must be in (0, 1)", f"prune={self.prune!r}")
        if self.epochs < 1:
            _fail("`finetune_epochs` must be >= 1", f"finetune_epochs={self.epochs}")
        return self

    @property
    def active(self) -> bool:
        return bool(self.qat or self.prune)


@dataclass(frozen=True)
class Limits:
    """Limits tighter than the board's: flash and RAM in bytes, latency in ms (None: the board's)."""

    max_flash: int | None = None
    max_ram: int | None = None
    max_latency_ms: float | None = None

    def validate(self) -> Limits:
        for name in ("max_flash", "max_ram"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                _fail(f"`{name}` must be a whole number of bytes >= 1", f"{name}={v!r}")
        v = self.max_latency_ms
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            _fail("`max_latency_ms` must be > 0", f"max_latency_ms={v!r}")
        return self


def validate_width(width, *, allow_auto: bool = False):
    """The width as a float in (0, 1] (or ``"auto"`` where allowed), or a clear error."""
    if allow_auto and width == "auto":
        return width
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        _fail("`width` must be in (0, 1] (or 'auto' for compress)", f"width={width!r}")
    return float(width)


STUDENT_BATCHNORM = ("auto", "on", "off")


@dataclass(frozen=True)
class CompressConfig:
    """Every option of :func:`~tinydistill.pipeline.compress`.

    Attributes:
        width: student width multiplier in (0, 1], or ``"auto"`` (the largest that fits).
        input_range: the teacher's input range ``(lo, hi)`` or ``"LO,HI"``; None: the stats' one.
        seed: one seed for the whole run.
        strategy: ``"default"``, ``"mirrored"`` or ``"multi-worker"``.
        effort: time against quality: scales the synthetic inputs of the method's defaults (1: the
            measured defaults; 0.5 about half the time; counts set explicitly are kept).
        student_batchnorm: ``"auto"`` (BatchNorm after the student's convolutions where the teacher is a residual
            network without normalisation: :func:`~tinydistill.student.design.adds_batchnorm`), ``"on"`` or ``"off"``.
        synthesis, distill, finetune, limits: the stages' parts.
    """

    width: float | str = "auto"
    input_range: tuple | str | None = None
    seed: int = 0
    strategy: str = "default"
    effort: float = 1.0
    student_batchnorm: str = "auto"
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    limits: Limits = field(default_factory=Limits)

    def validate(self) -> CompressConfig:
        """Check every option; return a copy with the width and input range parsed."""
        from .data import parse_range

        for part in (self.synthesis, self.distill, self.finetune, self.limits):
            part.validate()
        if isinstance(self.effort, bool) or not isinstance(self.effort, (int, float)) or not 0 < self.effort <= 100:
            _fail("`effort` must be a number in (0, 100] (1: the defaults; 0.5: about half the time)",
                  f"effort={self.effort!r}")
        if self.student_batchnorm not in STUDENT_BATCHNORM:
            _fail(f"`student_batchnorm` must be one of {', '.join(STUDENT_BATCHNORM)}",
                  f"student_batchnorm={self.student_batchnorm!r}")
        if isinstance(self.strategy, str) and self.strategy not in STRATEGIES:
            _fail(f"`strategy` must be one of {', '.join(STRATEGIES)}", f"strategy={self.strategy!r}")
        rng = parse_range(self.input_range) if self.input_range is not None else None
        return replace(self, width=validate_width(self.width, allow_auto=True), input_range=rng)

    @property
    def batchnorm(self) -> bool | None:
        """``student_batchnorm`` as :func:`~tinydistill.student.design_student` takes it (None: it decides)."""
        return {"on": True, "off": False}.get(self.student_batchnorm)

    @classmethod
    def from_options(cls, **options) -> CompressConfig:
        """Build a config from flat keyword options (``epochs=5, qat=True, max_flash=...``), each routed to its part.

        ``n`` is accepted for ``inputs``, ``loss`` for the distillation loss, ``finetune_epochs`` for
        the fine-tuning epochs. An unknown option is an error naming the known ones.
        """
        parts = {"synthesis": SynthesisConfig, "distill": DistillConfig, "finetune": FinetuneConfig, "limits": Limits}
        aliases = {"n": ("synthesis", "inputs"), "finetune_epochs": ("finetune", "epochs")}
        top = {f.name for f in fields(cls)} - set(parts)
        values = {name: {} for name in parts}
        own = {}
        for key, value in options.items():
            if key in top:
                own[key] = value
                continue
            part, name = aliases.get(key, (None, key))
            if part is None:
                part = next((p for p, kind in parts.items() if name in {f.name for f in fields(kind)}), None)
            if part is None:
                known = sorted(top | set(aliases) | {f.name for kind in parts.values() for f in fields(kind)})
                raise TinyDistillError(f"unknown option {key!r}; known options: {', '.join(known)}")
            values[part][name] = value
        return cls(**own, **{p: parts[p](**v) for p, v in values.items()})


def override(config, options: dict, aliases: dict | None = None):
    """``config`` with some fields replaced by keyword ``options`` (an unknown name is an error)."""
    aliases = aliases or {}
    names = {f.name for f in fields(config)}
    changes = {}
    for key, value in options.items():
        name = aliases.get(key, key)
        if name not in names:
            raise TinyDistillError(f"unknown option {key!r}; known options: {', '.join(sorted(names | set(aliases)))}")
        changes[name] = value
    return replace(config, **changes) if changes else config
