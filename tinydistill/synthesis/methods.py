"""Synthesis methods: each a named list of weighted objectives plus a recipe for how inputs are shaped.

``all-layers``   Lopes et al. 2017: match the recorded per-class mean and std of every
                 probed layer (and of the input), per channel and per region of a coarse grid.
``top-layer``    Lopes et al. 2017: match only the logits statistics.
``layer-pairs``  Lopes et al. 2017's spectral variant: for each pair of recorded layers joined
                 by a weight matrix, match the per-class moments of the activations' coefficients
                 on the lowest-frequency eigenvectors of that pair's graph Laplacian.
``bn``           DeepInversion / ZeroQ: match the BatchNorm running statistics the teacher
                 already carries, plus a smoothness prior.
``prior``        no metadata (ZSKD-style): soft class targets drawn from a Dirichlet whose
                 concentration follows the class similarity of the last layer's weights, from
                 flat starting images, with a smoothness prior.
``generator``    the interleaved engine (:mod:`.engine`, Fast-DFKD-style): a class-conditional generator
                 trained while the student learns, on every signal the teacher has (the stats file's
                 moments, BatchNorm statistics, the class term) plus the masked student-teacher
                 disagreement; the student trains on the growing pool.
``auto``         ``generator`` for image teachers with BatchNorm layers (with the stats file too, if given;
                 compared with per-batch pixels on CIFAR-10 in benchmarks/RESULTS.md); otherwise the
                 strongest signal the teacher has for per-batch pixels: stats > BN > prior.

With a stats file, ``all-layers`` also matches the BatchNorm statistics of a teacher that has
them: the metadata composes, a stats file never takes a signal away. On an image teacher with
BatchNorm it then takes the ``bn`` recipe's image knobs (:func:`recipe_for`).

A new method is one more entry in :data:`OBJECTIVES` (and :data:`RECIPES`), not a new branch
in the loop. Measured defaults and ablations: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import _compat
from .._math import is_image
from ..config import FLIPS, SynthesisConfig
from ..errors import TinyDistillError
from ..teacher.stats import INPUT, LOGITS
from .objectives import (
    BatchNormStats,
    ClassTerm,
    MatchedMoments,
    TotalVariation,
    class_similarity,
    layer_moments,
    pair_spectra,
    region_moments,
)

STARTS = ("stats", "flat", "noise", "smooth")
TARGETS = ("onehot", "dirichlet")
_STATS_METHODS = ("all-layers", "top-layer", "layer-pairs")


@dataclass(frozen=True)
class Recipe:
    """How a method shapes its inputs besides the metadata it matches.

    Each method has measured defaults (:data:`RECIPES`); benchmarks switch one knob at a time.

    Attributes:
        per_class: match moments per class, each input pulled to its class (else the moments of
            all classes together and no class term: Lopes et al.'s metadata without the labels).
        targets: ``"onehot"`` (cross-entropy to the class) or ``"dirichlet"`` (ZSKD soft targets:
            a Dirichlet draw concentrated by the class similarity of the last layer's weights,
            matched at temperature 20, so inputs spread between similar classes).
        start: ``"stats"`` (the recorded per-class input moments), ``"flat"`` (one random level
            per input plus faint noise: the smoothness prior then adds structure), ``"noise"``
            (white noise) or ``"smooth"`` (multi-scale noise with most of its power at low spatial
            frequencies, as in natural images: on CIFAR-10 it gives the contrast real images have,
            which white noise smoothed by the optimiser never reaches; other inputs: white noise).
        smoothness: total-variation weight on image inputs (unit-range pixels).
        lr: Adam step on inputs, in units of the input range (constant: annealing it to zero
            measured worse; ``benchmarks/RESULTS.md``).
        regions: ``all-layers`` also matches the moments of each spatial region of a feature map
            where the stats file has them (else whole-layer moments only, as Lopes et al.).
        feature_maps: ``all-layers`` matches the moments of the teacher's hidden spatial layers (the
            convolutions' maps: the layers the stats file has region moments for, other than the input);
            off: of the input, the flat layers and the logits only. The maps'
            moments cost most of a step's time over a bare teacher pass; off lost 0.04 pp on MNIST, three seeds
            (``benchmarks/RESULTS.md``, "Thirteenth trial").
        class_weight: weight of the class (cross-entropy) term against the matched statistics.
        jitter: shift each image batch by a random offset of up to 1/16 of its size at every
            step (DeepInversion), so no feature depends on the exact pixel grid.
        flip: flip each image batch left to right at random at every step (DeepInversion), so the
            inputs look like a class from both sides: ``"on"``, ``"off"``, or ``"auto"``: from the
            second batch on, if the teacher keeps its top-1 class on at least half of the first
            batch flipped (:attr:`SyntheticSet.flip_agreement`), so digits, say, are never flipped.
            Off by default: on CIFAR-10 it measured anywhere from +4.6 to -3.4 pp
            (``benchmarks/RESULTS.md``, bn-ablations).
        batchnorm: stats-file methods also match the BatchNorm statistics of a teacher that has them
            (off only to measure what they add).
        within: without a stats file, the weight of each class's own spread of every BatchNorm input against
            the layer's running std (:class:`~.objectives.BatchNormStats`): running statistics are pooled
            over classes and do not stop a generator from making one image per class; a stats file's per-class
            moments do, so with one the term is left out.
    """

    per_class: bool = True
    targets: str = "onehot"
    start: str = "stats"
    smoothness: float = 0.5
    lr: float = 0.05
    regions: bool = True
    feature_maps: bool = True
    class_weight: float = 1.0
    jitter: bool = False
    flip: str = "off"
    batchnorm: bool = True
    within: float = 0.0


RECIPES = {
    "all-layers": Recipe(),
    "top-layer": Recipe(),
    "layer-pairs": Recipe(),
    # each knob's share on CIFAR-10 ResNet-8: the bn-ablations table of benchmarks/RESULTS.md
    "bn": Recipe(start="smooth", lr=0.02, smoothness=0.05, class_weight=0.2, jitter=True),
    "prior": Recipe(targets="dirichlet", start="flat", smoothness=2.0),
    # no start (a generator makes the inputs); the bn recipe's class weight, jitter and smoothness; the per-class
    # spread: "Choosing the engine's schedule" in benchmarks/RESULTS.md
    "generator": Recipe(start="flat", smoothness=0.05, class_weight=0.2, jitter=True, within=1.0),
}


def _image_with_batchnorm(teacher) -> bool:
    """An image teacher with BatchNorm layers: ``auto`` runs the engine on it, and ``all-layers`` takes the ``bn``
    recipe's image knobs."""
    return teacher.has_batchnorm and is_image(tuple(teacher.input_shape))


def recipe_for(method: str, teacher, stats=None) -> Recipe:
    """``method``'s recipe for ``teacher``: :data:`RECIPES`, except that ``all-layers`` on an image teacher takes the
    image knobs of the ``bn`` recipe (multi-scale starts instead of each class's recorded pixel moments, its step,
    smoothness, class weight and jitter) when it has BatchNorm, whose statistics it matches beside the stats file's
    moments, or when it does not recognise the classes' recorded mean inputs (:func:`class_means_recognised`). Its own
    recipe was chosen on MNIST's LeNet-5, whose class means are digits it recognises (9 of 10); on CIFAR-10 ResNet-8 it
    gave 56.0 % where these knobs gave 67.0 % (two seeds; ``benchmarks/RESULTS.md``, "Natural images"), and with
    ResNet-8's BatchNorm folded away, whose class means it recognises 2 of 10, 43.6 % against 59.9 % (two seeds; "A
    natural-image teacher without BatchNorm")."""
    recipe = RECIPES[method]
    if method == "all-layers" and recipe.batchnorm and is_image(tuple(teacher.input_shape)):
        if teacher.has_batchnorm or (stats is not None and not class_means_recognised(teacher, stats)):
            recipe = with_image_knobs(recipe)
    return recipe


def class_means_recognised(teacher, stats) -> bool:
    """Whether the teacher puts at least half of the classes' recorded mean inputs (the stats file's per-region input
    means, at most 8 x 8, resized to the input bilinearly) in their own class: inputs a class's moments describe, as
    centred digits are, rather than natural images, whose class means are blurs (True without region means)."""
    means = stats.region_mean.get(INPUT)
    if means is None or len(means) != teacher.num_classes:
        return True
    tf = _compat.tf()
    x = tf.image.resize(np.asarray(means, np.float32), tuple(teacher.input_shape[:2]), method="bilinear")
    top1 = teacher.logits_model(x, training=False).numpy().argmax(1)
    return float((top1 == np.arange(teacher.num_classes)).mean()) >= 0.5


def with_image_knobs(recipe: Recipe) -> Recipe:
    """``recipe`` with the ``bn`` recipe's image knobs: its start, step, smoothness, class weight and jitter."""
    bn = RECIPES["bn"]
    return replace(recipe, start=bn.start, lr=bn.lr, smoothness=bn.smoothness, class_weight=bn.class_weight,
                   jitter=bn.jitter)


def resolve_method(method: str, teacher, stats) -> tuple[str, str]:
    """The method to run and why, validating that its signal exists.

    Raises:
        TinyDistillError: unknown method, or a method whose metadata is missing.
    """
    SynthesisConfig(method=method).validate()
    if method == "auto":
        if _image_with_batchnorm(teacher):
            what = "BatchNorm statistics and a statistics file" if stats is not None else "BatchNorm statistics"
            return "generator", (f"an image teacher with {what}: a generator trained alongside the student, steered "
                                 "by them (compared with per-batch pixels on CIFAR-10 in benchmarks/RESULTS.md)")
        method, why = per_batch_method(teacher, stats)
        if method == "bn":
            why += (" and its input is not an image: per-batch pixels, which won on two of three such teachers "
                    "measured; the engine (--method generator) won on the third (benchmarks/RESULTS.md): worth a try")
        return method, why
    if method in _STATS_METHODS and stats is None:
        raise TinyDistillError(f"method {method!r} needs a statistics file: pass --stats FILE "
                               "(record one with 'tinydistill stats') or use --method auto")
    if method == "layer-pairs" and not stats.pairs:
        raise TinyDistillError("method 'layer-pairs' needs layer-pair statistics, which this stats file lacks "
                               "(recorded by an older tinydistill, no two recorded layers share a weight matrix, or every pair "
                               "is too wide to record: over 1 GiB of second moments): "
                               "re-record it with 'tinydistill stats' or use --method all-layers")
    if method == "generator" and stats is None and not teacher.has_batchnorm:
        raise TinyDistillError("method 'generator' needs a statistics file or BatchNorm layers to steer it, and this "
                               "teacher has neither: pass --stats FILE or use --method auto")
    if method == "bn" and not teacher.has_batchnorm:
        raise TinyDistillError("method 'bn' needs BatchNorm layers and this teacher has none: "
                               "use --method auto")
    return method, "chosen by the user"


def per_batch_method(teacher, stats) -> tuple[str, str]:
    """The per-batch method of the strongest signal the teacher has (stats file > BatchNorm statistics > the
    no-metadata prior) and why: ``auto``'s choice where the engine is not, and the method that makes a calibration
    set alone (a teacher that fits its board as it is)."""
    if stats is not None:
        return "all-layers", "a statistics file was given (per-class, per-layer moments)"
    if teacher.has_batchnorm:
        return "bn", f"the teacher has {len(teacher.bn_layers)} BatchNorm layers (running statistics)"
    return "prior", "the teacher has neither a statistics file nor BatchNorm layers"


def validate_recipe(recipe: Recipe) -> None:
    if recipe.targets not in TARGETS or recipe.start not in STARTS or recipe.flip not in FLIPS:
        raise TinyDistillError(f"recipe targets must be 'onehot' or 'dirichlet', start one of {', '.join(STARTS)} and "
                               f"flip one of {', '.join(FLIPS)}. Received: targets={recipe.targets!r}, "
                               f"start={recipe.start!r}, flip={recipe.flip!r}")


def _stats_moments(tf, teacher, stats, recipe):
    """The stats file's channel and region moments, plus the BatchNorm statistics where the teacher has them."""
    maps = set() if recipe.feature_maps else set(stats.region_mean) - {INPUT}
    channels = layer_moments(stats, [n for n in stats.layers if n not in maps], recipe.per_class)
    regions = region_moments(stats, channels, recipe.per_class) if recipe.regions else []
    return [MatchedMoments(tf, channels + regions)] + _bn(tf, teacher, recipe)


def _bn(tf, teacher, recipe, within=0.0):
    return [BatchNormStats(tf, teacher, within=within)] if teacher.has_batchnorm and recipe.batchnorm else []


# what each method matches besides the class term and the image prior
OBJECTIVES = {
    "all-layers": _stats_moments,
    "top-layer": lambda tf, teacher, stats, recipe: [MatchedMoments(tf, layer_moments(stats, [LOGITS], recipe.per_class))],
    "layer-pairs": lambda tf, teacher, stats, recipe: [MatchedMoments(tf, pair_spectra(stats, recipe.per_class))],
    "bn": lambda tf, teacher, stats, recipe: [BatchNormStats(tf, teacher)],
    "prior": lambda tf, teacher, stats, recipe: [],
    "generator": lambda tf, teacher, stats, recipe: (_stats_moments(tf, teacher, stats, recipe) if stats is not None
                                                     else _bn(tf, teacher, recipe, within=recipe.within)),
}


def objectives_for(tf, method: str, teacher, stats, recipe: Recipe) -> tuple[ClassTerm, list]:
    """The class term and the full weighted list of objectives of ``method`` under ``recipe``."""
    similarity = class_similarity(teacher) if recipe.targets == "dirichlet" else None
    classes = ClassTerm(recipe.class_weight if recipe.per_class else 0.0, teacher.num_classes, similarity)
    objectives = [classes] + OBJECTIVES[method](tf, teacher, stats, recipe)
    if is_image(tuple(teacher.input_shape)) and recipe.smoothness:
        objectives.append(TotalVariation(recipe.smoothness))
    return classes, objectives
