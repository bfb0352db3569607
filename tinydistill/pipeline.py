"""compress: the whole path, teacher in, board-checked int8 student out (values only, no files)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import _compat
from .config import CompressConfig, resolve_counts
from .data import resolve_input_range
from .data.sources import Source, as_source, teacher_batches
from .errors import BudgetError, TinyDistillError
from .fitting import runtime
from .fitting.boards import DEFAULT_BOARD, Board, load_board
from .fitting.export import CALIBRATION_SAMPLES, c_source, export_int8, resolver_header
from .fitting.fitcheck import CheckResult, check, int8_predictions
from .reporting.report import Report, Run, report_markdown
from .scale import get_strategy
from .student import design
from .student.design import design_student, with_output_activation
from .student.distillation import distill, feature_layers, frozen_batchnorm
from .student.sizing import Budget, SizingResult, measure_width, size_student
from .synthesis import SyntheticSet, resolve_method, synthesize
from .synthesis.engine import interleave, student_agreement
from .synthesis.methods import per_batch_method
from .teacher.model import Teacher, load_teacher
from .teacher.stats import Stats
from .units import peak_memory_bytes

__all__ = ["CompressResult", "compress", "report_markdown", "resolve_input_range"]

STAGES = ("load", "synthesize", "distill", "export", "check")


@dataclass
class CompressResult:
    """Everything ``compress`` produced, in memory.

    Attributes:
        teacher: the :class:`Teacher`.
        student: the trained float student (Keras, same output interface as the teacher).
        tflite: the int8 model bytes.
        model_cc, model_h: C source of the model for firmware.
        model_ops_h: the ``MicroMutableOpResolver`` registration of the model's ops.
        synthetic: the :class:`SyntheticSet` used for distillation and calibration.
        fit: the :class:`CheckResult` against the board.
        report: the :class:`~tinydistill.report.Report` (a JSON-ready dict with its renderings).
    """

    teacher: Teacher
    student: object
    tflite: bytes
    model_cc: str
    model_h: str
    model_ops_h: str
    synthetic: SyntheticSet
    fit: CheckResult
    report: dict = field(default_factory=dict)
    test_data: tuple | None = None
    class_names: list | None = None


SAMPLE = 10_000  # test inputs kept (with their labels and int8 predictions) for test_sample.npz
AGREEMENT = 500  # of them, run in TFLite Micro too and compared with LiteRT


def _predictor(model):
    tf = _compat.tf()

    @tf.function(reduce_retracing=True)
    def f(xb):
        return model(xb, training=False)

    return lambda xb: f(tf.constant(xb)).numpy().argmax(-1)


def compress(teacher, *, board=DEFAULT_BOARD, stats: Stats | None = None, data=None, config: CompressConfig | None = None,
             state=None, on_progress=None, class_names=None, **options) -> CompressResult:
    """Compress a teacher into an int8 student for a board, without training data.

    Args:
        teacher: a :class:`Teacher` or a model path.
        board: a :class:`Board` or a board name / alias.
        stats: the teacher's :class:`Stats` (optional metadata).
        data: optional labelled test data to report accuracy, read once in batches: ``(x, y)`` arrays, a
            ``tf.data.Dataset`` or an iterable of ``(x, y)`` batches, all in the teacher's input range; or a
            :class:`~tinydistill.data.sources.Source` / :class:`~tinydistill.data.Dataset` read from disk
            (:func:`~tinydistill.data.sources.open_data`: scaled to the range here).
        config: a :class:`~tinydistill.config.CompressConfig`; or give its options as keywords
            (``width=0.5, n=2000, epochs=5, max_flash=..., qat=True``: see
            :meth:`~tinydistill.config.CompressConfig.from_options`). ``width="auto"`` (the
            default) picks the largest width whose int8 flash, TFLite Micro arena and estimated
            latency fit the board's budget. A teacher that fits whole (width 1) is quantised as it is, with
            no distillation (``report["distillation"]["skipped"]`` says why), unless ``qat`` or ``prune``.
        state: a :class:`~tinydistill.resume.RunState` to checkpoint completed stages into
            and resume them from (None: no checkpoints).
        on_progress: optional callable ``(stage, done, total)``.
        class_names: the classes' names in label order (default: the stats file's, else the data's, e.g. an
            image folder's class folders): in the report, the plots and ``model_data.h``.

    Example:
        >>> result = td.compress("teacher.h5", board="cortex-m4", stats=stats, data=(x_test, y_test))
        >>> result.report["accuracy"]["student_int8"]
        0.985
    """
    if config is not None and options:
        raise TinyDistillError("pass either `config` or keyword options to compress, not both")
    config = (config or CompressConfig.from_options(**options)).validate()
    clock = _Clock(on_progress)
    if not isinstance(teacher, Teacher):
        teacher = load_teacher(teacher)
    if not isinstance(board, Board):
        board = load_board(board)
    method_used, reason = resolve_method(config.synthesis.method, teacher, stats)
    budget = Budget.for_board(board, **asdict(config.limits))
    # sizing first: an impossible budget fails in seconds, before anything else is asked of the user
    sizing = _size(teacher, board, budget, config.width, clock.progress("size"))
    itself = _teacher_itself(teacher, config, sizing.width)
    if itself is not None:
        method_used, reason = _calibration_method(teacher, stats, method_used, reason)
    scale_notes, effort = (([], config.effort) if itself is not None  # a calibration set only: a few batches
                           else _run_scale(teacher, method_used, config, sizing.width))
    syn_cfg, dist_cfg = resolve_counts(method_used, config.synthesis, config.distill, effort)
    syn_cfg, dist_cfg, batch_notes = _bounded_batches(teacher, method_used, syn_cfg, dist_cfg)
    if itself is not None:  # a calibration set only: whole batches of at least the export's sample
        syn_cfg = replace(syn_cfg, inputs=min(syn_cfg.inputs, syn_cfg.batch_size * math.ceil(
            CALIBRATION_SAMPLES / syn_cfg.batch_size)))
    config = replace(config, synthesis=syn_cfg, distill=dist_cfg, width=sizing.width,
                     input_range=resolve_input_range(config.input_range, stats, teacher=teacher))
    test = None if data is None else as_source(data)
    if test is not None and test.kind != "batches":  # data that can be read twice is checked now, not after training
        next(teacher_batches(test, teacher.input_shape, teacher.num_classes, config.input_range, 8,
                             already_scaled=not isinstance(data, Source)), None)
    names = _class_names(class_names, stats, test, teacher.num_classes)
    clock.lap("load")

    dist = get_strategy(config.strategy) if isinstance(config.strategy, str) else config.strategy
    keys = _resume_keys(config, teacher, stats, method_used, dist.num_replicas_in_sync)
    _compat.set_seed(config.seed)
    syn, student, matched, init_note = _train(teacher, stats, config, method_used, dist, state, keys, clock, itself,
                                              scale_notes + batch_notes)
    recal_noise, bn_kept = getattr(student, "recalibration_noise", None), frozen_batchnorm(student)
    student, finetune, before = _finetune(teacher, student, syn, config, clock)
    final = with_output_activation(student, teacher)
    with clock.one_step("export"):
        tflite = export_int8(final, syn.x, seed=config.seed)
    if finetune is not None:
        finetune["after"] = _size_record(tflite)
        finetune["note"] = ("TFLite Micro stores weights densely: pruning does not shrink flash unless the runtime "
                            "exploits sparsity; it shrinks the compressed (gzip) size, e.g. for over-the-air updates")
    clock.lap("export")
    fit, accuracy, kept = _check(teacher, final, tflite, board, (test, not isinstance(data, Source)), before, config,
                                 clock)
    if finetune is not None and accuracy is not None and accuracy.get("before") is not None:
        finetune["before"]["student_int8_accuracy"] = accuracy.pop("before")
    cc, h = c_source(tflite, arena_bytes=fit.arena_bytes, class_names=names)
    run = Run(teacher=teacher, student=final, board=board, config=config, fit=fit, syn=syn, reason=reason,
              sizing=sizing, budget=budget, accuracy=accuracy, timings=clock.finish(), memory=clock.memory,
              notes=state.notes if state is not None else [], init_note=init_note, finetune=finetune,
              replicas=dist.num_replicas_in_sync, matched_layers=matched, class_names=names,
              recalibration_noise=recal_noise, batchnorm_kept=bn_kept, as_is=AS_IS if itself is not None else None)
    return CompressResult(teacher=teacher, student=final, tflite=tflite, model_cc=cc, model_h=h,
                          model_ops_h=resolver_header(fit.ops), synthetic=syn, fit=fit, report=Report.from_run(run),
                          test_data=kept, class_names=names)


def _class_names(given, stats, test, num_classes) -> list | None:
    """The classes' names: given, else the stats file's, else the data's (an image folder's); checked."""
    names = given if given is not None else (stats.class_names if stats is not None else None)
    if names is None and test is not None:
        names = test.class_names
    if names is not None and (len(names) != num_classes or len(set(names)) != len(names)):
        raise TinyDistillError(f"{len(names)} class names ({', '.join(map(str, names[:6]))}...) for a teacher with "
                               f"{num_classes} classes: give one distinct name per class, in label order")
    return [str(n) for n in names] if names is not None else None


class _Clock:
    """Seconds per stage, and progress callbacks per stage."""

    def __init__(self, on_progress):
        self.on_progress = on_progress
        self.start = self.tick = time.perf_counter()
        self.timings = {}
        self.memory = {}  # the process's peak resident bytes at the end of each stage (a high-water mark)

    def progress(self, stage):
        return (lambda done, total: self.on_progress(stage, done, total)) if self.on_progress else None

    @contextlib.contextmanager
    def one_step(self, stage):  # a stage without inner steps still shows as started and done
        if self.on_progress:
            self.on_progress(stage, 0, 1)
        yield
        if self.on_progress:
            self.on_progress(stage, 1, 1)

    def lap(self, stage):
        now = time.perf_counter()
        self.timings[stage] = round(now - self.tick, 2)
        self.memory[stage] = self._high_water()
        self.tick = now

    def _high_water(self) -> int | None:
        """The peak so far, never below an earlier stage's: Linux reads the high-water mark from per-CPU counters
        that it sums approximately, so two reads can differ by a few hundred KiB the wrong way."""
        now = peak_memory_bytes()
        return None if now is None else max([now] + [v for v in self.memory.values() if v is not None])

    def finish(self) -> dict:
        self.timings["total"] = round(time.perf_counter() - self.start, 2)
        self.memory["total"] = self._high_water()
        return self.timings


def _size(teacher, board, budget, width, on_progress) -> SizingResult:
    """The largest width that fits (``"auto"``), or the user's width held to the hard limits."""
    if width == "auto":
        return size_student(teacher, board, budget, on_progress=on_progress)
    cand = measure_width(teacher, board, width)
    if cand.violations(budget.hard()):  # a width the user chose is held to hard limits only
        raise BudgetError(f"a student of width {width:g} does not fit: {'; '.join(cand.violations(budget.hard()))}. "
                          "Use a smaller --width, or --width auto to pick the largest that fits")
    return SizingResult(width=float(width), chosen=cand, bound_by="--width given", tried=[cand])


def _resume_keys(config, teacher, stats, method_used, replicas) -> tuple[dict, dict]:
    """What the synthetic set and the student depend on: the config's parts, the teacher, the stats, the replicas."""
    syn_key = {"teacher": teacher.fingerprint, "stats": _stats_id(stats), **asdict(config.synthesis),
               "method": method_used, "seed": config.seed, "input_range": list(config.input_range), "replicas": replicas}
    # the student's shape: its width and how its channel counts are rounded (a run saved before the rounding
    # changed starts its student afresh instead of loading weights of another shape)
    # and whether it has BatchNorm the teacher lacks (a run saved before students got it starts afresh too)
    return syn_key, dict(syn_key, width=config.width, channel_multiple=design.CHANNEL_MULTIPLE,
                         student_batchnorm=config.student_batchnorm, **asdict(config.distill))


AS_IS = ("the teacher fits the board whole, so the student is the teacher itself, quantised to int8 as it is: "
         "distilling a copy of it on synthetic inputs could only move it away from the teacher")


def _teacher_itself(teacher, config, width):
    """The student at ``width`` when it is the teacher itself (it keeps every channel, width 1) and nothing asks to
    train it (no ``--qat`` or ``--prune``), else None: each layer takes its teacher layer's weights as they are (every
    shape is the teacher's, so no channel map is needed, and layers it does not follow, such as Normalization or
    Reshape, are copied too), and its logits must equal the teacher's on random inputs. Distilling it only drifts (an
    MLP with BatchNorm: 97.55 % int8 against 97.82 % for the teacher quantised as it is; benchmarks/RESULTS.md, "A
    teacher that fits its board whole")."""
    if config.finetune.active or not design.keeps_every_channel(teacher, width):
        return None
    student = design_student(teacher, width=width, seed=config.seed, init="random", batchnorm=False)
    for layer in student.layers:  # per layer: a model's weight list puts frozen layers' weights last
        layer.set_weights(teacher.logits_model.get_layer(layer.name).get_weights())
    student.init_note = "teacher"
    x = np.random.default_rng(config.seed).uniform(0.0, 1.0, (16, *teacher.input_shape)).astype(np.float32)
    ours, theirs = (np.asarray(m(x, training=False)) for m in (student, teacher.logits_model))
    return student if np.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * (1.0 + float(np.abs(theirs).max()))) else None


def _calibration_method(teacher, stats, method, reason) -> tuple[str, str]:
    """The method that makes the calibration set of a teacher quantised as it is: the engine trains a student beside
    its generator, so there it is the per-batch method of the teacher's strongest signal."""
    if method != "generator":
        return method, reason
    method, why = per_batch_method(teacher, stats)
    return method, f"{why}; per-batch synthesis, as the teacher is quantised as it is (no student to train)"


def _train(teacher, stats, config, method_used, dist, state, keys, clock, itself, notes):
    """The synthetic set, the float student, its matched feature layers and how it was initialised: the teacher itself
    (``itself``) after a calibration set, the engine's interleaved run, or per-batch synthesis then distillation."""
    if method_used == "generator":
        return _interleave(teacher, stats, config, dist, state, keys, clock, notes)
    syn = _synthesize(teacher, stats, config, method_used, dist, state, keys[0], clock, held_out=itself is None)
    syn.notes = [*notes, *syn.notes]
    if itself is not None:
        return syn, itself, [], itself.init_note
    return (syn, *_distill(teacher, syn, config, dist, state, keys[1], clock))


def _synthesize(teacher, stats, config, method_used, dist, state, key, clock, held_out=True):
    syn = state.load_synthetic(key) if state is not None else None
    if syn is None:
        syn = synthesize(teacher, stats, replace(config.synthesis, method=method_used), input_range=config.input_range,
                         seed=config.seed, strategy=dist, on_progress=clock.progress("synthesize"), held_out=held_out)
        if state is not None:
            state.save_synthetic(key, syn)
    clock.lap("synthesize")
    return syn


def _new_student(teacher, config, dist):
    with dist.scope():
        return design_student(teacher, width=config.width, seed=config.seed, batchnorm=config.batchnorm)


def _plain(teacher, student, config, dist):
    """A copy outside the strategy to export and fine-tune (the student itself with one replica)."""
    if dist.num_replicas_in_sync == 1:
        return student
    plain = design_student(teacher, width=config.width, seed=config.seed, init="random", batchnorm=config.batchnorm)
    plain.set_weights(student.get_weights())
    plain.recalibration_noise = getattr(student, "recalibration_noise", None)
    return plain


def _bounded_batches(teacher, method, syn_cfg, dist_cfg):
    """The per-batch methods' synthesis and distillation batches, at most as many inputs as keep a batch's teacher
    activations under twice :data:`~tinydistill.synthesis.engine.BATCH_ACTIVATIONS` (no generator and no second
    model beside the teacher; CIFAR-10 ResNet-8's 500 hold 133 M of the 160 M; the engine bounds its own batches),
    and a note for each that shrank: 500 inputs of 224 x 224 x 3 through a MobileNetV2 hold 4.7 G values, 19 GB."""
    if method == "generator":
        return syn_cfg, dist_cfg, []
    from .synthesis.engine import BATCH_ACTIVATIONS, activation_values, bounded_batch

    acts = activation_values(teacher.logits_model)
    syn_batch, syn_note = bounded_batch("synthesis", syn_cfg.batch_size, acts, 2 * BATCH_ACTIVATIONS)
    dist_batch, dist_note = bounded_batch("distillation", dist_cfg.batch_size, acts, 2 * BATCH_ACTIVATIONS)
    return replace(syn_cfg, batch_size=syn_batch), replace(dist_cfg, batch_size=dist_batch), syn_note + dist_note


def _run_scale(teacher, method, config, width) -> tuple[list[str], float]:
    """The effort a run uses and a note of why: a teacher whose inputs cost more than a default run's budget
    synthesises in proportion fewer of them, unless the user set ``--inputs`` (method ``generator``:
    :func:`~tinydistill.synthesis.engine.input_scale`; the per-batch methods, at their default steps and epochs:
    :func:`~tinydistill.synthesis.engine.run_scale`, the engine's whole budget for the run)."""
    if config.synthesis.inputs is not None:
        return [], config.effort
    from .config import DEFAULT_EPOCHS, DEFAULT_INPUTS, DEFAULT_STEPS, METHOD_STEPS
    from .synthesis.engine import INPUT_BUDGET, RUN_BUDGET, input_cost, input_scale, pixel_input_cost, run_scale

    if method == "generator":
        cost = input_cost(teacher, width)  # builds a generator to count its MACs: once
        scale, what, budget = input_scale(cost), "a generated input", INPUT_BUDGET
    else:
        steps = METHOD_STEPS.get(method, DEFAULT_STEPS)
        cost = pixel_input_cost(teacher, width, steps=steps, epochs=DEFAULT_EPOCHS)
        scale, what, budget = (run_scale(cost, DEFAULT_INPUTS), f"a synthetic input ({steps} steps, {DEFAULT_EPOCHS} "
                               "epochs)", RUN_BUDGET / DEFAULT_INPUTS)
    if scale >= 1.0:
        return [], config.effort
    note = (f"inputs scaled to {scale:.0%} of the default: {what} costs {cost / 1e6:,.0f} M multiply-accumulates here "
            f"against a budget of {budget / 1e6:,.0f} M, so the run keeps to about the default's time (--effort or "
            "--inputs for more)")
    return [note], config.effort * scale


def _interleave(teacher, stats, config, dist, state, keys, clock, notes=()):
    """Method ``generator``: generator and student trained together (one stage); a completed run is resumed whole."""
    student = _new_student(teacher, config, dist)
    init_note = student.init_note
    syn = state.load_synthetic(keys[0]) if state is not None else None
    done = state.load_student(keys[1]) if state is not None and syn is not None else None
    if done is not None and done[0] == config.distill.epochs:
        student.set_weights(done[1])
    else:
        syn = interleave(teacher, student, stats, config.synthesis, config.distill, input_range=config.input_range,
                         seed=config.seed, strategy=dist, on_progress=clock.progress("interleave"), notes=notes)
        if state is not None:
            state.save_synthetic(keys[0], syn)
            state.save_student(keys[1], config.distill.epochs, student.get_weights(), [])
    matched = list(feature_layers(teacher, student)) if config.distill.features > 0 else []
    student = _plain(teacher, student, config, dist)
    clock.lap("interleave")
    return syn, student, matched, init_note


def _distill(teacher, syn, config, dist, state, key, clock):
    """The distilled float student (resumed from a checkpoint where one matches), its matched layers and init."""
    student = _new_student(teacher, config, dist)
    init_note = student.init_note
    checkpoint = state.load_student(key) if state is not None else None
    resume_from = None
    if checkpoint is not None:
        start_epoch, weights, opt_state = checkpoint
        student.set_weights(weights)
        resume_from = (start_epoch, opt_state)

    def save_epoch(epoch, opt_vars):
        if state is not None:
            state.save_student(key, epoch, student.get_weights(), opt_vars)

    matched = list(feature_layers(teacher, student)) if config.distill.features > 0 else []
    distill(teacher, student, syn, config.distill, seed=config.seed, strategy=dist, resume_from=resume_from,
            on_epoch_end=save_epoch, on_progress=clock.progress("distill"))
    student = _plain(teacher, student, config, dist)
    if syn.held is not None:  # the self-check: the student against the teacher on inputs it never trained on
        syn.student_agreement = student_agreement(student, *syn.held)
    clock.lap("distill")
    return student, matched, init_note


def _finetune(teacher, student, syn, config, clock):
    """Optional tfmot pruning and QAT: the student, the fine-tuning record (None when neither was asked) and the
    int8 model before fine-tuning (its accuracy is measured with the final one's, in one pass over the data)."""
    ft_cfg, seed = config.finetune, config.seed
    if not ft_cfg.active:
        return student, None, None
    from .student import finetune as ft

    before = export_int8(with_output_activation(student, teacher), syn.x, seed=seed)
    record = {"before": _size_record(before)}
    if ft_cfg.prune:
        student = ft.prune(teacher, student, syn, sparsity=ft_cfg.prune, epochs=ft_cfg.epochs, seed=seed,
                           on_progress=clock.progress("prune"))
        record["prune"] = {"target_sparsity": ft_cfg.prune, "kernel_sparsity": round(ft.sparsity_of(student), 4)}
    if ft_cfg.qat:
        student = ft.quantization_aware(teacher, student, syn, epochs=ft_cfg.epochs, seed=seed,
                                        preserve_sparsity=bool(ft_cfg.prune), on_progress=clock.progress("qat"))
        record["qat"] = {"epochs": ft_cfg.epochs}
    clock.lap("finetune")
    return student, record, before


def _check(teacher, final, tflite, board, test, before, config, clock):
    """The int8 model against the board and, with test data, the accuracies: (fit, accuracy, kept test inputs)."""
    src, scaled = test
    with clock.one_step("check"):
        fit = check(tflite, board)
        accuracy, kept = None, None
        if src is not None:
            accuracy, kept, preds = _evaluate(teacher, final, tflite, before, src, scaled, config.input_range,
                                              clock.progress("evaluate"))
            fit.int8_accuracy, fit.predictions = accuracy["student_int8"], preds
            m = min(AGREEMENT, len(kept[1]))
            if fit.arena_source == "tflite-micro":  # else TFLite Micro cannot run it (a Linux board: LiteRT only)
                _, micro = runtime.tflm_run(tflite, kept[0][:m])
                fit.tflm_agreement, fit.tflm_agreement_n = float((micro.argmax(-1) == preds[:m]).mean()), m
    clock.lap("check")
    return fit, accuracy, kept


def _evaluate(teacher, final, tflite, before, src, scaled, input_range, on_progress):
    """Accuracies of the teacher, the float and int8 students (and the int8 model before fine-tuning) in one pass
    over the data, a batch at a time; the first :data:`SAMPLE` inputs are kept with the int8 predictions."""
    predict = {"teacher_float": _predictor(teacher.model), "student_float": _predictor(final)}
    for name, model in (("student_int8", tflite), ("before", before)):
        if model is not None:
            it = runtime.litert_interpreter(model)
            predict[name] = lambda xb, m=model, i=it: int8_predictions(m, xb, interpreter=i)
    correct = dict.fromkeys(predict, 0)
    kept_x, kept_y, kept_p, n = [], [], [], 0
    for xb, yb in teacher_batches(src, teacher.input_shape, teacher.num_classes, input_range, 512, already_scaled=scaled):
        for name, fn in predict.items():
            p = fn(xb)
            correct[name] += int((p == yb).sum())
            if name == "student_int8" and n < SAMPLE:
                kept_x.append(xb[:SAMPLE - n])
                kept_y.append(yb[:SAMPLE - n])
                kept_p.append(p[:SAMPLE - n])
        n += len(yb)
        if on_progress:
            on_progress(n, src.count or n)
    if n == 0:
        raise TinyDistillError(f"{src.source} holds no examples: pass labelled test data or leave out --data")
    accuracy = {name: c / n for name, c in correct.items()}
    accuracy["examples"] = n
    return accuracy, (np.concatenate(kept_x), np.concatenate(kept_y)), np.concatenate(kept_p)


def _stats_id(stats) -> str | None:
    """A short identity of a stats file's contents, for resume keys."""
    if stats is None:
        return None
    import hashlib
    import json

    return hashlib.sha256(json.dumps(stats.header, sort_keys=True).encode()).hexdigest()[:16]


def _size_record(tflite: bytes) -> dict:
    import gzip

    return {"model_bytes": len(tflite), "gzip_bytes": len(gzip.compress(tflite, mtime=0))}
