"""compress: the whole path, teacher in, board-checked int8 student out (values only, no files)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import __version__, _compat
from .boards import Board, load_board
from .data import Dataset, fit_to_teacher, parse_range
from .distillation import DEFAULT_EPOCHS, FEATURE_WEIGHT, distill, feature_layers, validate_feature_weight
from .errors import BudgetError, TinyDistillError
from .export import c_source, export_int8, resolver_header
from .fitcheck import CheckResult, check, int8_predictions
from .scale import get_strategy
from .sizing import Budget, SizingResult, measure_width, size_student
from .stats import Stats
from .student import design_student, validate_width, with_output_activation
from .synthesis import DEFAULT_INPUTS, DEFAULT_STEPS, FLIP_AGREEMENT, FLIPS, RECIPES, SyntheticSet, resolve_method, synthesize
from .teacher import Teacher, load_teacher
from .units import format_bytes

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
        report: the report as a JSON-ready dict.
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


def _accuracy(model, x, y, batch=512) -> float:
    tf = _compat.tf()

    @tf.function(reduce_retracing=True)
    def f(xb):
        return model(xb, training=False)

    preds = np.concatenate([f(tf.constant(x[i:i + batch])).numpy().argmax(-1) for i in range(0, len(x), batch)])
    return float((preds == y).mean())


def resolve_input_range(input_range, stats) -> tuple[float, float]:
    """The teacher's input range: stated by the user, or recorded in the stats; never guessed."""
    if input_range is not None:
        rng = parse_range(input_range)
        if stats is not None and tuple(map(float, stats.input_range)) != rng:
            lo, hi = stats.input_range
            raise TinyDistillError(f"--input-range {rng[0]:g},{rng[1]:g} contradicts the stats file, which records "
                                   f"{lo:g},{hi:g}: drop --input-range or re-record the stats")
        return rng
    if stats is not None:
        return tuple(float(v) for v in stats.input_range)
    raise TinyDistillError("the teacher's input range is unknown: pass --input-range LO,HI (e.g. 0,1 for "
                           "images scaled to [0,1], 0,255 for raw pixels) or a stats file that records it")


def compress(teacher, *, board="cortex-m4", stats: Stats | None = None, data=None, width="auto",
             max_flash: int | None = None, max_ram: int | None = None, max_latency_ms: float | None = None,
             method: str = "auto", input_range=None, n: int = DEFAULT_INPUTS, steps: int = DEFAULT_STEPS,
             epochs: int = DEFAULT_EPOCHS,
             loss: str = "mse", temperature: float = 4.0, features: float = FEATURE_WEIGHT, seed: int = 0,
             flip: str = "off", qat: bool = False,
             prune: float | None = None, finetune_epochs: int = 5, strategy="default", state=None,
             on_progress=None) -> CompressResult:
    """Compress a teacher into an int8 student for a board, without training data.

    Args:
        teacher: a :class:`Teacher` or a model path.
        board: a :class:`Board` or a board name / alias.
        stats: the teacher's :class:`Stats` (optional metadata).
        data: optional labelled test data to report accuracy: ``(x, y)`` already in the
            teacher's input range, or a :class:`~tinydistill.data.Dataset` as loaded from disk.
        width: student width multiplier in (0, 1], or ``"auto"``: the largest width whose
            int8 flash, TFLite Micro arena and estimated latency fit the board's budget.
        max_flash, max_ram: tighter limits than the board's, in bytes.
        max_latency_ms: latency limit; defaults to the board's budget (100 ms on a
            microcontroller, 20 ms on a Linux board).
        method: synthesis method (see :data:`tinydistill.synthesis.METHODS`).
        input_range: the teacher's input range; defaults to the stats' one.
        n, steps: synthetic inputs and optimisation steps per batch.
        flip: flip images left to right at random while synthesising them: ``"off"``, ``"on"``
            or ``"auto"`` (when the teacher is mostly mirror-invariant; see :class:`~tinydistill.synthesis.Recipe`).
        epochs, loss, temperature, features: distillation settings (see
            :func:`~tinydistill.distillation.distill`; ``features`` 0: outputs only).
        seed: one seed for the whole run.
        qat: quantisation-aware fine-tuning with tfmot after distillation.
        prune: magnitude-prune to this sparsity (0..1) with tfmot after distillation.
        finetune_epochs: epochs of each fine-tuning stage.
        strategy: ``"default"``, ``"mirrored"``, ``"multi-worker"`` or a ``tf.distribute`` strategy
            for synthesis and distillation.
        state: a :class:`~tinydistill.resume.RunState` to checkpoint completed stages into
            and resume them from (None: no checkpoints).
        on_progress: optional callable ``(stage, done, total)``.

    Example:
        >>> result = td.compress("teacher.h5", board="cortex-m4", stats=stats, data=(x_test, y_test))
        >>> result.report["accuracy"]["student_int8"]
        0.985
    """
    t_start = time.perf_counter()
    timings = {}
    tick = time.perf_counter()

    def progress(stage):
        return (lambda done, total: on_progress(stage, done, total)) if on_progress else None

    @contextlib.contextmanager
    def one_step(stage):  # a stage without inner steps still shows as started and done
        if on_progress:
            on_progress(stage, 0, 1)
        yield
        if on_progress:
            on_progress(stage, 1, 1)

    def lap(stage):
        nonlocal tick
        now = time.perf_counter()
        timings[stage] = round(now - tick, 2)
        tick = now

    if flip not in FLIPS:
        raise TinyDistillError(f"`flip` must be one of {', '.join(FLIPS)}. Received: flip={flip!r}")
    validate_feature_weight(features)  # before sizing, which takes a while
    if not isinstance(teacher, Teacher):
        teacher = load_teacher(teacher)
    if not isinstance(board, Board):
        board = load_board(board)
    method_used, reason = resolve_method(method, teacher, stats)
    budget = Budget.for_board(board, max_flash=max_flash, max_ram=max_ram, max_latency_ms=max_latency_ms)
    # sizing first: an impossible budget fails in seconds, before anything else is asked of the user
    if width == "auto":
        sizing = size_student(teacher, board, budget, on_progress=progress("size"))
    else:
        cand = measure_width(teacher, board, validate_width(width))
        if cand.violations(budget.hard()):  # a width the user chose is held to hard limits only
            raise BudgetError(f"a student of width {width:g} does not fit: {'; '.join(cand.violations(budget.hard()))}. "
                              "Use a smaller --width, or --width auto to pick the largest that fits")
        sizing = SizingResult(width=float(width), chosen=cand, bound_by="--width given", tried=[cand])
    width = sizing.width
    rng = resolve_input_range(input_range, stats)
    if isinstance(data, Dataset):
        data = fit_to_teacher(data, teacher.input_shape, teacher.num_classes, rng)
    if data is not None:
        x_test, y_test = data
    lap("load")

    dist = get_strategy(strategy) if isinstance(strategy, str) else strategy
    syn_key = {"teacher": teacher.fingerprint, "stats": _stats_id(stats), "method": method_used, "inputs": n,
               "steps": steps, "seed": seed, "input_range": list(rng), "replicas": dist.num_replicas_in_sync,
               "flip": flip}
    student_key = dict(syn_key, width=width, epochs=epochs, loss=loss, temperature=temperature, features=features)
    _compat.set_seed(seed)
    syn = state.load_synthetic(syn_key) if state is not None else None
    if syn is None:
        syn = synthesize(teacher, stats, method=method_used, n=n, steps=steps, input_range=rng, seed=seed,
                         batch_size=500, recipe=replace(RECIPES[method_used], flip=flip), strategy=dist,
                         on_progress=progress("synthesize"))
        if state is not None:
            state.save_synthetic(syn_key, syn)
    lap("synthesize")

    with dist.scope():
        student = design_student(teacher, width=width, seed=seed)
    init_note = student.init_note
    checkpoint = state.load_student(student_key) if state is not None else None
    start_epoch, opt_state = 0, None
    if checkpoint is not None:
        start_epoch, weights, opt_state = checkpoint
        student.set_weights(weights)

    def save_epoch(epoch, opt_vars):
        if state is not None:
            state.save_student(student_key, epoch, student.get_weights(), opt_vars)

    matched = list(feature_layers(teacher, student)) if features > 0 else []
    distill(teacher, student, syn, epochs=epochs, loss=loss, temperature=temperature, features=features, seed=seed,
            strategy=dist, start_epoch=start_epoch, optimizer_state=opt_state, on_epoch_end=save_epoch,
            on_progress=progress("distill"))
    if dist.num_replicas_in_sync > 1:  # export and fine-tune a plain copy, outside the strategy
        plain = design_student(teacher, width=width, seed=seed, init="random")
        plain.set_weights(student.get_weights())
        student = plain
    lap("distill")

    finetune = None
    if qat or prune:
        from . import finetune as ft

        before = export_int8(with_output_activation(student, teacher), syn.x, seed=seed)
        finetune = {"before": _size_record(before)}
        if data is not None:
            finetune["before"]["student_int8_accuracy"] = float((int8_predictions(before, x_test) == y_test).mean())
        if prune:
            student = ft.prune(teacher, student, syn, sparsity=prune, epochs=finetune_epochs, seed=seed,
                               on_progress=progress("prune"))
            finetune["prune"] = {"target_sparsity": prune, "kernel_sparsity": round(ft.sparsity_of(student), 4)}
        if qat:
            student = ft.quantization_aware(teacher, student, syn, epochs=finetune_epochs, seed=seed,
                                            preserve_sparsity=bool(prune), on_progress=progress("qat"))
            finetune["qat"] = {"epochs": finetune_epochs}
        lap("finetune")
    final = with_output_activation(student, teacher)

    with one_step("export"):
        tflite = export_int8(final, syn.x, seed=seed)
    if finetune is not None:
        finetune["after"] = _size_record(tflite)
        finetune["note"] = ("TFLite Micro stores weights densely: pruning does not shrink flash unless the runtime "
                            "exploits sparsity; it shrinks the compressed (gzip) size, e.g. for over-the-air updates")
    lap("export")

    with one_step("check"):
        fit = check(tflite, board, x=x_test if data is not None else None, y=y_test if data is not None else None)
        accuracy = None
        if data is not None:
            accuracy = {"teacher_float": _accuracy(teacher.model, x_test, y_test),
                        "student_float": _accuracy(final, x_test, y_test),
                        "student_int8": fit.int8_accuracy, "examples": int(len(y_test))}
    cc, h = c_source(tflite, arena_bytes=fit.arena_bytes)
    lap("check")
    timings["total"] = round(time.perf_counter() - t_start, 2)

    report = build_report(notes=state.notes if state is not None else [], init_note=init_note,
                          replicas=dist.num_replicas_in_sync,
                          finetune=finetune, teacher=teacher, student=final,
                          board=board, fit=fit, syn=syn,
                          reason=reason, sizing=sizing, budget=budget, accuracy=accuracy, width=width,
                          input_range=rng, n=n, steps=steps, epochs=epochs, loss=loss, temperature=temperature, seed=seed,
                          timings=timings, feature_weight=features, matched_layers=matched)
    return CompressResult(teacher=teacher, student=final, tflite=tflite, model_cc=cc, model_h=h,
                          model_ops_h=resolver_header(fit.ops), synthetic=syn, fit=fit, report=report,
                          test_data=(x_test, y_test) if data is not None else None)


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


def build_report(*, notes, init_note, replicas, finetune, teacher, student, board, fit, syn, reason, sizing, budget,
                 accuracy, width, input_range, n, steps, epochs, loss, temperature, seed, timings,
                 feature_weight=0.0, matched_layers=()) -> dict:
    """The JSON report. Key words matter: tools find figures by them (student/int8/accuracy, arena...)."""
    return {
        "tool": {"name": "tinydistill", "version": __version__},
        "teacher": {"path": teacher.path, "fingerprint": teacher.fingerprint, "params": teacher.params,
                    "input_shape": list(teacher.input_shape), "input_range": list(input_range),
                    "num_classes": teacher.num_classes, "output": teacher.output_kind,
                    "batchnorm_layers": len(teacher.bn_layers)},
        "student": {"params": int(student.count_params()), "width": width, "init": init_note,
                    "model_bytes": fit.model_bytes, "arena_bytes": fit.arena_bytes,
                    "runtime_code_bytes_estimate": fit.runtime_flash_bytes, "flash_bytes": fit.flash_bytes,
                    "ram_bytes": fit.ram_bytes, "macs": fit.macs, "latency_ms_estimate": fit.latency_ms, "ops": fit.ops},
        "accuracy": accuracy,
        "board": {"name": board.name, "title": board.title, "kind": board.kind, "core": board.core,
                  "clock_mhz": board.clock_mhz, "flash_bytes": board.flash_bytes, "ram_bytes": board.ram_bytes,
                  "headroom": board.headroom, "flash_budget_bytes": board.flash_budget,
                  "ram_budget_bytes": board.ram_budget},
        "fit": {"fits": fit.fits, "flash_margin_bytes": fit.flash_margin_bytes,
                "ram_margin_bytes": fit.ram_margin_bytes, "bound_by": fit.bound_by},
        "sizing": {"width": sizing.width, "why": sizing.bound_by,
                   "budget": {"flash_bytes": budget.flash_bytes, "ram_bytes": budget.ram_bytes,
                              "latency_ms": budget.latency_ms},
                   "tried": [{"width": c.width, "params": c.params, "model_bytes": c.model_bytes,
                              "arena_bytes": c.arena_bytes, "latency_ms": c.latency_ms} for c in sizing.tried]},
        "verification": {"tflm_litert_top1_agreement": fit.tflm_agreement, "samples": fit.tflm_agreement_n},
        "synthesis": {"method": syn.method, "why": reason, "inputs": n, "steps": steps,
                      "teacher_agreement": syn.teacher_agreement, "flipped": syn.flipped,
                      "flip_agreement": syn.flip_agreement},
        "distillation": {"epochs": epochs, "loss": loss, "temperature": temperature if loss == "kl" else None,
                         "feature_weight": feature_weight, "feature_layers": list(matched_layers)},
        "finetune": finetune,
        "seed": seed,
        "replicas": replicas,
        "resumed": list(notes),
        "seconds": timings,
        "pass": bool(fit.fits),
    }


def _flip_note(syn: dict) -> str:
    agreement = syn.get("flip_agreement")
    if agreement is None:
        return ""
    verdict = "flipped left to right at random while optimised" if syn.get("flipped") else "not flipped"
    return (f" Images {verdict}: the teacher keeps its class on {agreement:.0%} of flipped ones "
            f"(auto flips from {FLIP_AGREEMENT:.0%}).")


def _distill_note(dist: dict) -> str:
    layers = dist.get("feature_layers") or []
    matched = (f"; the student also matched the teacher's feature maps at {', '.join(f'`{n}`' for n in layers)}"
               if layers else "")
    loss = "logit MSE" if dist["loss"] == "mse" else f"KL at temperature {dist['temperature']:g}"
    return f"Distillation: {dist['epochs']} epochs, {loss} on the teacher's outputs{matched}."


def _row(label, *sizes) -> str:
    return f"| {label} | " + " | ".join(format_bytes(v) for v in sizes) + " |"


def report_markdown(report: dict) -> str:
    """The report for a person."""
    t, s, b, f = report["teacher"], report["student"], report["board"], report["fit"]
    verdict = "PASS: fits" if report["pass"] else f"FAIL: does not fit ({f['bound_by']} over budget)"
    lines = [f"# tinydistill report: {b['name']}", "", f"**{verdict}** {b['title']} "
             f"({b['core']}, {b['clock_mhz']:g} MHz), {int(b['headroom'] * 100)} % headroom for the application.", "",
             "| | used | budget | board | margin |", "| --- | ---: | ---: | ---: | ---: |",
             _row("flash (model + runtime code estimate)", s["flash_bytes"], b["flash_budget_bytes"], b["flash_bytes"],
                  f["flash_margin_bytes"]),
             _row("RAM (tensor arena, TFLite Micro)" if b["kind"] == "mcu" else "RAM (arena + model + LiteRT estimate)",
                  s["ram_bytes"], b["ram_budget_bytes"], b["ram_bytes"], f["ram_margin_bytes"]), "",
             f"Model {format_bytes(s['model_bytes'])}; TFLite Micro measured a {format_bytes(s['arena_bytes'])} arena; "
             f"runtime code estimated at {format_bytes(s['runtime_code_bytes_estimate'])} (see code_size.toml).", "",
             "![accuracy and use of the board](report.png)", "",
             "| model | parameters | accuracy |", "| --- | ---: | ---: |"]
    acc = report.get("accuracy") or {}

    def pct(k):
        return f"{acc[k]:.2%}" if acc.get(k) is not None else "n/a"

    lines += [f"| teacher (float) | {t['params']:,} | {pct('teacher_float')} |",
              f"| student (float, width {s['width']:g}) | {s['params']:,} | {pct('student_float')} |",
              f"| student (int8) | {s['params']:,} | {pct('student_int8')} |", ""]
    if acc:
        lines.append(f"Accuracy on {acc['examples']:,} labelled test examples.")
    else:
        lines.append("No test data given (`--data`): accuracy not measured.")
    v = report["verification"]
    if v.get("tflm_litert_top1_agreement") is not None:
        lines.append(f"TFLite Micro and LiteRT agree on top-1 for {v['tflm_litert_top1_agreement']:.1%} "
                     f"of {v['samples']} inputs.")
    syn = report["synthesis"]
    z = report["sizing"]
    lines.append(f"Student width {z['width']:g}, chosen by {z['why']}; "
                 + ("initialised with the teacher's most important channels."
                    if s.get("init") == "teacher" else f"initialised at {s.get('init', 'random')}."))
    lines.append(f"Estimated latency on {b['name']}: {s['latency_ms_estimate']:.1f} ms per inference "
                 f"({s['macs']:,} MACs; model in the README).")
    lines += ["", f"Synthesis: `{syn['method']}` ({syn['why']}), {syn['inputs']:,} inputs x {syn['steps']} steps; "
              f"the teacher puts {syn['teacher_agreement']:.1%} of them in their target class." + _flip_note(syn),
              _distill_note(report["distillation"]),
              f"Ops: {', '.join(s['ops'])}.", "", "![synthetic inputs per class](samples.png)", "",
              "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["seconds"].items()]
    ft = report.get("finetune")
    if ft:
        lines += ["", "## Fine-tuning (tfmot)", "", "| | model | gzip | int8 accuracy |", "| --- | ---: | ---: | ---: |"]
        for key in ("before", "after"):
            r = ft[key]
            a = r.get("student_int8_accuracy", acc.get("student_int8") if key == "after" else None)
            lines.append(f"| {key} | {format_bytes(r['model_bytes'])} | {format_bytes(r['gzip_bytes'])} | "
                         f"{f'{a:.2%}' if a is not None else 'n/a'} |")
        if "prune" in ft:
            lines.append(f"\nPruned to {ft['prune']['kernel_sparsity']:.0%} zero kernel weights. {ft['note']}.")
        if "qat" in ft:
            lines.append(f"\nQuantisation-aware fine-tuning: {ft['qat']['epochs']} epochs of distillation.")
    return "\n".join(lines) + "\n"
