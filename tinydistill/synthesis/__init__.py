"""Synthesis: reconstruct inputs from the teacher so they can replace the training data.

Every source of knowledge about the training data is one objective (:mod:`.objectives`:
publisher stats, BatchNorm statistics, class targets, student disagreement, image priors);
a method is a named list of them plus a recipe (:mod:`.methods`); the optimisation loop
(:mod:`.loop`) knows no method; the compiled moments and priors are in :mod:`.kernels`.
Batches are class-balanced and every input is pulled towards a class target, so the set
covers all classes. Moments are compared in units of the recorded spread of each channel, so
the loss is independent of a layer's or an input's scale (raw 0-255 inputs need no constant).
"""

from __future__ import annotations

from dataclasses import replace

from .. import _compat
from ..config import DEFAULT_INPUTS, DEFAULT_STEPS, FLIPS, METHODS, DistillConfig, SynthesisConfig, override, resolve_counts
from ..data import resolve_input_range
from ..errors import TinyDistillError
from .kernels import smooth_noise
from .loop import FLIP_AGREEMENT, Plan, SyntheticSet, run, start_moments
from .methods import (
    OBJECTIVES,
    RECIPES,
    STARTS,
    Recipe,
    objectives_for,
    recipe_for,
    resolve_method,
    validate_recipe,
)
from .objectives import Disagreement, class_similarity, dirichlet_targets

__all__ = ["DEFAULT_INPUTS", "DEFAULT_STEPS", "FLIPS", "FLIP_AGREEMENT", "METHODS", "OBJECTIVES", "RECIPES", "STARTS",
           "Recipe", "SyntheticSet", "class_similarity", "dirichlet_targets", "recipe_for", "resolve_method", "smooth_noise",
           "synthesize"]


def synthesize(teacher, stats=None, config: SynthesisConfig | None = None, *, input_range=None, seed: int = 0,
               recipe: Recipe | None = None, student=None, strategy=None, on_progress=None, held_out: bool = False,
               **options) -> SyntheticSet:
    """Synthesise class-balanced inputs from the teacher (and its metadata).

    Args:
        teacher: a :class:`~tinydistill.teacher.Teacher`.
        stats: a :class:`~tinydistill.stats.Stats` of this teacher, or None.
        config: a :class:`~tinydistill.config.SynthesisConfig` (method, inputs, steps, batch size,
            flips, disagreement weight); keyword ``options`` override its fields (``n`` for ``inputs``).
        input_range: the teacher's input range; defaults to the stats' one.
        seed: random seed.
        recipe: a :class:`Recipe` overriding the method's defaults for this teacher (:func:`recipe_for`); ``config.flip``
            applies only when no recipe is given.
        student: a partly distilled student (logits); inputs are then also pushed to where it and
            the teacher disagree (:class:`~.objectives.Disagreement`), weighted by ``config.disagreement``.
        strategy: a ``tf.distribute`` strategy; each replica optimises its share of every
            batch (default: the current strategy, i.e. one device).
        on_progress: optional callable ``(done, total)`` counted in inputs.
        held_out: also make one more batch after the set, held out of it (``SyntheticSet.held``): compress
            measures the student against the teacher on it (the self-check's held-out agreement).

    Example:
        >>> syn = td.synthesize(teacher, stats, n=2000, seed=0)
        >>> syn.x.shape, syn.teacher_agreement
        ((2000, 28, 28, 1), 1.0)
    """
    config = override(config or SynthesisConfig(), options, aliases={"n": "inputs"}).validate()
    method, _ = resolve_method(config.method, teacher, stats)
    if method == "generator":
        raise TinyDistillError("method 'generator' trains its generator together with a student: run it with "
                               "compress (or tinydistill.synthesis.engine.interleave), or pick a per-batch method")
    config, _ = resolve_counts(method, config, DistillConfig())
    recipe = recipe or replace(recipe_for(method, teacher, stats), flip=config.flip)
    rng = resolve_input_range(input_range, stats, teacher=teacher)
    validate_recipe(recipe)
    tf = _compat.tf()
    classes, objectives = objectives_for(tf, method, teacher, stats, recipe)
    if student is not None:
        objectives.append(Disagreement(student, config.disagreement))
    moments = start_moments(stats, recipe, teacher.num_classes, teacher.input_shape[-1], rng)
    plan = Plan(method=method, classes=classes, objectives=objectives, recipe=recipe, start_moments=moments,
                input_range=rng)
    return run(teacher, plan, config, seed=seed, strategy=strategy, on_progress=on_progress, held_out=held_out)
