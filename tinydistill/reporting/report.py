"""The report of a run or a check: one :class:`Report`, built once from the figures, rendered here.

``report.json`` keys are a contract: the acceptance checks find figures by key words
(``student`` + ``int8`` + ``acc``, ``arena``, ...). New keys may be added; none renamed.
JSON, Markdown and console renderings live in this module; the PNG one draws with matplotlib
in :func:`tinydistill.plots.report_png` and is reached through :meth:`Report.png`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .. import __version__
from ..student.design import added_batchnorm, student_params
from ..synthesis.loop import FLIP_AGREEMENT
from ..synthesis.quality import assess
from ..units import format_bytes


@dataclass
class Run:
    """The figures of one compress run that the report is made of.

    Attributes:
        teacher, student: the :class:`~tinydistill.teacher.Teacher` and the final float student.
        board, config: the :class:`~tinydistill.boards.Board` and the validated
            :class:`~tinydistill.config.CompressConfig`.
        fit: the :class:`~tinydistill.fitcheck.CheckResult` of the int8 model.
        syn: the :class:`~tinydistill.synthesis.SyntheticSet`, and ``reason``: why its method was chosen.
        sizing, budget: how the width was chosen, and against which limits.
        accuracy: accuracies on labelled test data (None without data).
        timings: seconds per stage.
        memory: the process's peak resident bytes at the end of each stage and in total (None: not known here).
        as_is: why the student is the teacher itself, not distilled (a teacher that fits its board), else None.
    """

    teacher: object
    student: object
    board: object
    config: object
    fit: object
    syn: object
    reason: str
    sizing: object
    budget: object
    accuracy: dict | None = None
    timings: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    init_note: str = "random"
    finetune: dict | None = None
    replicas: int = 1
    matched_layers: list = field(default_factory=list)
    class_names: list | None = None
    recalibration_noise: float | None = None
    batchnorm_kept: list = field(default_factory=list)
    as_is: str | None = None


class Report(dict):
    """The figures of a compress run (:meth:`from_run`) or of a check (:meth:`from_check`).

    A ``dict`` of JSON-ready values with the keys ``report.json`` has always had, so
    ``result.report["student"]["arena_bytes"]`` keeps working, plus its renderings.
    """

    kind = "compress"

    @classmethod
    def from_run(cls, run: Run) -> Report:
        return cls(build_report(run))

    @classmethod
    def from_check(cls, model: str, board, res) -> Report:
        """The figures of ``tinydistill check``: one model's sizes, latency and fit against a board."""
        report = cls({"model": model, "board": board.name, "model_bytes": res.model_bytes, "arena_bytes": res.arena_bytes,
                      "arena_source": res.arena_source, "tflm_missing_kernels": res.missing_kernels,
                      "flash_budget_bytes": board.flash_budget, "ram_budget_bytes": board.ram_budget,
                      "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes,
                      "runtime_code_bytes_estimate": res.runtime_flash_bytes,
                      "flash_margin_bytes": res.flash_margin_bytes, "ram_margin_bytes": res.ram_margin_bytes,
                      "macs": res.macs, "latency_ms_estimate": res.latency_ms, "ops": res.ops, "fits": res.fits,
                      "bound_by": res.bound_by, "clock_mhz": board.clock_mhz})
        report.kind = "check"
        return report

    def with_sources(self, *, load_seconds: float, data: str | None = None, stats: str | None = None) -> Report:
        """Add what the caller loaded before the run: the seconds it took and the files' paths."""
        self["seconds"]["load"] = round(load_seconds, 2)
        self["seconds"]["total"] = round(self["seconds"]["total"] + load_seconds, 2)
        if data:
            self["accuracy"]["data"] = data
        if stats:
            self["teacher"]["stats"] = stats
        return self

    def to_json(self) -> str:
        return json.dumps(self, indent=2) + "\n"

    def markdown(self) -> str:
        return report_markdown(self)

    def png(self) -> bytes:
        from .plots import report_png

        return report_png(self)

    def print(self, console, output: str | None = None) -> None:
        """The report on a terminal (a rich console)."""
        if self.kind == "check":
            print_check(self, console)
        else:
            print_console(self, output, console)


def build_report(run: Run) -> dict:
    """The JSON report of a compress run. Key words matter: tools find figures by them (student/int8/accuracy, arena...)."""
    teacher, student, board, fit, syn, sizing, budget = (run.teacher, run.student, run.board, run.fit, run.syn,
                                                        run.sizing, run.budget)
    cfg, dcfg = run.config, run.config.distill
    self_check = assess(syn, teacher.num_classes)
    return {
        "tool": {"name": "tinydistill", "version": __version__},
        "teacher": {"path": teacher.path, "fingerprint": teacher.fingerprint, "params": teacher.params,
                    "input_shape": list(teacher.input_shape), "input_range": list(cfg.input_range),
                    "num_classes": teacher.num_classes, "class_names": run.class_names, "output": teacher.output_kind,
                    "batchnorm_layers": len(teacher.bn_layers)},
        "student": {"params": student_params(student, teacher), "width": sizing.width, "init": run.init_note,
                    "batchnorm_added": len(added_batchnorm(student, teacher)),
                    "model_bytes": fit.model_bytes, "arena_bytes": fit.arena_bytes, "arena_source": fit.arena_source,
                    "tflm_missing_kernels": fit.missing_kernels,
                    "runtime_code_bytes_estimate": fit.runtime_flash_bytes, "flash_bytes": fit.flash_bytes,
                    "ram_bytes": fit.ram_bytes, "macs": fit.macs, "latency_ms_estimate": fit.latency_ms, "ops": fit.ops},
        "accuracy": run.accuracy,
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
        "synthesis": {"method": syn.method, "why": run.reason, "inputs": cfg.synthesis.inputs, "steps": cfg.synthesis.steps,
                      "effort": cfg.effort, "inputs_generated": syn.generated, "inputs_kept": len(syn),
                      "generators": syn.generators,
                      "adapted": list(syn.notes), "student_agreement_held_out": syn.student_agreement,
                      "teacher_agreement": syn.teacher_agreement, "flipped": syn.flipped,
                      "flip_agreement": syn.flip_agreement, "self_check": self_check},
        "distillation": {"skipped": run.as_is, "epochs": 0 if run.as_is else dcfg.epochs,
                         "batch_size": dcfg.batch_size, "learning_rate": dcfg.lr,
                         "loss": dcfg.loss, "temperature": dcfg.temperature if dcfg.loss == "kl" else None,
                         "feature_weight": dcfg.features, "feature_layers": list(run.matched_layers),
                         "batchnorm_recalibration_noise": run.recalibration_noise,
                         "batchnorm_kept": list(run.batchnorm_kept), "weight_average_momentum": dcfg.ema,
                         "weight_decay": dcfg.weight_decay,
                         "mirrored": syn.mirrored},
        "finetune": run.finetune,
        "seed": cfg.seed,
        "replicas": run.replicas,
        "resumed": list(run.notes),
        "seconds": run.timings,
        "host_memory": {"peak_rss_bytes": run.memory.get("total"),
                        "peak_rss_bytes_by_stage": {k: v for k, v in run.memory.items() if k != "total"}},
        "pass": bool(fit.fits),
        "warnings": self_check["warnings"] + _accuracy_warnings(run.accuracy),
    }


# a student below this fraction of the teacher's accuracy is flagged (the same for every teacher)
MIN_RELATIVE_ACCURACY = 0.9


def _accuracy_warnings(acc: dict | None) -> list[str]:
    if not acc or acc.get("student_int8") is None or not acc.get("teacher_float"):
        return []
    ratio = acc["student_int8"] / acc["teacher_float"]
    if ratio >= MIN_RELATIVE_ACCURACY:
        return []
    return [f"the int8 student reaches {acc['student_int8']:.1%} against the teacher's {acc['teacher_float']:.1%} "
            f"({ratio:.0%} of it): it fits, but check it on your data before you ship it"]


def _flip_note(syn: dict) -> str:
    agreement = syn.get("flip_agreement")
    if agreement is None:
        return ""
    verdict = "flipped left to right at random while optimised" if syn.get("flipped") else "not flipped"
    return (f" Images {verdict}: the teacher keeps its class on {agreement:.0%} of flipped ones "
            f"(auto flips from {FLIP_AGREEMENT:.0%}).")


def _synthesis_note(syn: dict) -> str:
    """What synthesis made, how the teacher and (for the engine) the student took it, and what it adapted."""
    check = syn.get("self_check") or {}
    if syn.get("inputs_generated") is not None:
        made = (f"{syn['inputs_generated']:,} inputs generated in batches tuned {syn['steps']} steps each while the "
                f"student trained")
        if (syn.get("generators") or 1) > 1:
            made += f" (by {syn['generators']} generators, each drawn afresh)"
        made += f", {syn['inputs_kept']:,} of them kept for calibration and this check"
    else:
        made = f"{syn['inputs']:,} inputs x {syn['steps']} steps"
    text = (f"Synthesis: `{syn['method']}` ({syn['why']}), {made}; the teacher puts {syn['teacher_agreement']:.1%} of "
            f"them in their target class")
    if "diversity" in check:
        text += f"; inputs of a class differ by {check['diversity']:.1%} of their range (RMS)"
    if syn.get("student_agreement_held_out") is not None:
        text += f"; the student agrees with the teacher on {syn['student_agreement_held_out']:.1%} of held-out generated inputs"
    text += "."
    for note in syn.get("adapted") or []:
        text += f" Adapted: {note}."
    return text


def _distill_note(dist: dict) -> str:
    if dist.get("skipped"):
        return f"No distillation: {dist['skipped']}."
    layers = dist.get("feature_layers") or []
    matched = (f"; the student also matched the teacher's feature maps at {', '.join(f'`{n}`' for n in layers)}"
               if layers else "")
    loss = "logit MSE" if dist["loss"] == "mse" else f"KL at temperature {dist['temperature']:g}"
    noise = dist.get("batchnorm_recalibration_noise")
    recal = (f" BatchNorm statistics re-estimated on synthetic inputs plus Gaussian noise of std {noise:.3g} (the "
             "largest the teacher keeps its class under)." if noise else "")
    kept = dist.get("batchnorm_kept") or []
    if kept:
        recal += (f" BatchNorm frozen in the teacher ({', '.join(f'`{n}`' for n in kept[:6])}"
                  f"{', ...' if len(kept) > 6 else ''}) kept the teacher's statistics: the student normalised with them "
                  "while it trained too.")
    ema = dist.get("weight_average_momentum")
    averaged = (f" The student's weights are their moving average over the run (momentum {ema:g}, lower in short runs)."
                if ema else "")
    mirrored = (" Image batches were also mirrored left to right at random (the teacher keeps its class on flipped "
                "generated images)." if dist.get("mirrored") else "")
    # absent from an older report.json, which `tinydistill firmware` re-renders
    batches = (f" in batches of {dist['batch_size']} (peak learning rate {dist['learning_rate']:g})"
               if dist.get("batch_size") else "")
    return f"Distillation: {dist['epochs']} epochs{batches}, {loss} on the teacher's outputs{matched}.{mirrored}{averaged}{recal}"


def _row(label, *sizes) -> str:
    return f"| {label} | " + " | ".join(format_bytes(v) for v in sizes) + " |"


SIGMOID_NOTE = ("the teacher's one sigmoid output was read as two classes; the student outputs two probabilities, "
                "[1 - p, p], so its output 1 is the teacher's output p and its argmax is the teacher's 'p > 0.5'")


def report_markdown(report: dict) -> str:
    """The report for a person."""
    t, s, b, f = report["teacher"], report["student"], report["board"], report["fit"]
    verdict = "PASS: fits" if report["pass"] else f"FAIL: does not fit ({f['bound_by']} over budget)"
    lines = [f"# tinydistill report: {b['name']}", "", f"**{verdict}** {b['title']} "
             f"({b['core']}, {b['clock_mhz']:g} MHz), {int(b['headroom'] * 100)} % headroom for the application.", ""]
    lines += [f"**Warning:** {w}." for w in report.get("warnings", [])] + ([""] if report.get("warnings") else [])
    if t.get("output") == "sigmoid":
        lines += [f"**Note:** {SIGMOID_NOTE}.", ""]
    fw = report.get("firmware")
    lines += ["| | used | budget | board | margin |", "| --- | ---: | ---: | ---: | ---: |"]
    if fw and fw.get("board") == b["name"]:
        dep = fw["deployable"]
        lines += [_row("flash, **measured** from the linked firmware (model + TFLite Micro + C runtime)",
                       dep["flash_bytes"], b["flash_budget_bytes"], b["flash_bytes"], fw["flash_margin_bytes"]),
                  _row("RAM, **measured** (data + bss: arena, TFLite Micro's state, 4 KiB stack)", dep["ram_bytes"],
                       b["ram_budget_bytes"], b["ram_bytes"], fw["ram_margin_bytes"])]
    lines += [
             _row("flash (model + runtime code *estimate*)", s["flash_bytes"], b["flash_budget_bytes"], b["flash_bytes"],
                  f["flash_margin_bytes"]),
             _row("RAM (tensor arena, measured by TFLite Micro)" if b["kind"] == "mcu"
                  else "RAM (arena + model + LiteRT *estimate*)",
                  s["ram_bytes"], b["ram_budget_bytes"], b["ram_bytes"], f["ram_margin_bytes"]), "",
             f"Model {format_bytes(s['model_bytes'])}; {_arena_words(s)}; "
             f"runtime code estimated at {format_bytes(s['runtime_code_bytes_estimate'])} (see code_size.toml).", "",
             "![accuracy and use of the board](report.png)", "",
             "| model | parameters | accuracy |", "| --- | ---: | ---: |"]
    acc = report.get("accuracy") or {}

    def pct(k):
        return f"{acc[k]:.2%}" if acc.get(k) is not None else "n/a"

    lines += [f"| teacher (float) | {t['params']:,} | {pct('teacher_float')} |",
              f"| student (float, width {s['width']:g}) | {s['params']:,} | {pct('student_float')} |",
              f"| student (int8) | {s['params']:,} | {pct('student_int8')} |", ""]
    names = t.get("class_names")
    if names:
        lines.append("Classes: " + ", ".join(f"{n} ({i})" for i, n in enumerate(names)) + ".")
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
                    if s.get("init") == "teacher" else f"initialised at {s.get('init', 'random')}.")
                 + (f" It trains with BatchNorm after {s['batchnorm_added']} convolution"
                    f"{'s' if s['batchnorm_added'] > 1 else ''}, which the teacher lacks "
                    "(a residual network without normalisation hardly learns); the converter folds them into the convolutions."
                    if s.get("batchnorm_added") else ""))
    lines.append(f"Estimated latency on {b['name']}: {s['latency_ms_estimate']:.1f} ms per inference "
                 f"({s['macs']:,} MACs; model in the README).")
    lines += ["", _synthesis_note(syn) + _flip_note(syn),
              _distill_note(report["distillation"]),
              f"Ops: {', '.join(s['ops'])}.", "", "![synthetic inputs per class](samples.png)", "",
              "| stage | seconds | peak host memory |", "| --- | ---: | ---: |"]
    memory = report.get("host_memory", {})
    peaks = dict(memory.get("peak_rss_bytes_by_stage", {}), total=memory.get("peak_rss_bytes"))
    lines += [f"| {k} | {v:.1f} | {format_bytes(peaks[k]) if peaks.get(k) is not None else ''} |"
              for k, v in report["seconds"].items()]
    if fw:
        lines += [""] + firmware_markdown(fw)
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


_SHARES = (("model", "model (the .tflite array)"), ("tflite_micro", "TFLite Micro (interpreter + the model's kernels)"),
           ("c_runtime", "C runtime (startup, libc, libgcc)"), ("application", "application (main, resolver)"),
           ("arena", "tensor arena"), ("stack_heap", "stack and heap"), ("alignment", "alignment"))


def firmware_markdown(fw: dict) -> list[str]:
    """The report's Firmware section: what was measured from the link, what ran under emulation."""
    dep, img, emu = fw["deployable"], fw["image"], fw["emulation"]
    lines = ["## Firmware (measured)", "",
             f"Built for {fw['board']} ({fw['core']}, TFLite Micro `{fw['tflm_arch']}` with {fw['kernels']} kernels; "
             f"{fw['compiler']}). Sizes from the linked ELF (`arm-none-eabi-size`: flash = text + data, "
             "RAM = data + bss); shares from the linker map.", "",
             "| deployable image | flash | RAM |", "| --- | ---: | ---: |"]
    lines += [f"| {label} | {format_bytes(dep['shares'][key]['flash'])} | {format_bytes(dep['shares'][key]['ram'])} |"
              for key, label in _SHARES if key in dep["shares"]]
    lines.append(f"| **total** (`{dep['elf']}`) | **{format_bytes(dep['flash_bytes'])}** | "
                 f"**{format_bytes(dep['ram_bytes'])}** |")
    if fw["harness"]:
        lines += [f"| test harness (semihosting, printf, test inputs) | {format_bytes(fw['harness']['flash_bytes'])} | "
                  f"{format_bytes(fw['harness']['ram_bytes'])} |",
                  f"| image that ran (`{img['elf']}`) | {format_bytes(img['flash_bytes'])} | "
                  f"{format_bytes(img['ram_bytes'])} |"]
    lines += ["",
              f"Without a toolchain tinydistill estimates {format_bytes(fw['estimate']['flash_bytes'])} of flash "
              f"({fw['estimate']['error']:+.0%} against this link)."]
    if emu["run"]:
        lines.append(f"Emulated on QEMU `{emu['machine']}` ({emu['cpu']}): the int8 outputs equal host TFLite Micro's "
                     f"on {emu['outputs_identical']} of {emu['inputs']} test inputs ({emu['agreement']:.0%}; top-1 "
                     f"{emu['top1_agreement']:.0%}); TFLite Micro used {format_bytes(emu['arena_used_bytes'])} of its arena "
                     "on the target.")
        if emu.get("instructions_per_inference"):
            lines.append(f"{emu['instructions_per_inference']:,} instructions per inference executed under QEMU, against "
                         f"{emu['estimated_cycles_per_inference']:,} cycles in the latency model ({emu['instructions_note']}).")
    else:
        lines.append(f"Not run under emulation: {emu['why_not']}.")
    return lines


def print_firmware(fw: dict, console, folder: str) -> None:
    """``tinydistill firmware`` on a terminal: measured sizes by part, the emulated run, the verdict."""
    from rich.table import Table

    dep, emu = fw["deployable"], fw["emulation"]
    table = Table(title=f"firmware for {fw['board']} ({fw['core']}, measured from the link)", title_justify="left")
    for col in ("", "flash", "RAM"):
        table.add_column(col, justify="right" if col else "left")
    for key, label in _SHARES:
        if key in dep["shares"]:
            table.add_row(label, format_bytes(dep["shares"][key]["flash"]), format_bytes(dep["shares"][key]["ram"]))
    table.add_row("deployable total", format_bytes(dep["flash_bytes"]), format_bytes(dep["ram_bytes"]))
    if fw["harness"]:
        table.add_row("test harness (not deployed)", format_bytes(fw["harness"]["flash_bytes"]),
                      format_bytes(fw["harness"]["ram_bytes"]))
    console.print(table)
    console.print(f"estimate without a toolchain: {format_bytes(fw['estimate']['flash_bytes'])} flash "
                  f"({fw['estimate']['error']:+.0%})")
    if emu["run"]:
        instr = (f"; {emu['instructions_per_inference']:,} instructions per inference (QEMU's count, not cycles)"
                 if emu.get("instructions_per_inference") else "")
        console.print(f"emulated on {emu['machine']}: int8 outputs equal host TFLite Micro's on "
                      f"{emu['outputs_identical']}/{emu['inputs']} inputs{instr}")
    else:
        console.print(f"[bold yellow]not emulated:[/] {emu['why_not']}", soft_wrap=True)
    verdict = "[bold green]PASS[/]: fits" if fw["fits"] else "[bold red]FAIL[/]: does not fit"
    console.print(f"{verdict} with the board's headroom (margins: flash {format_bytes(fw['flash_margin_bytes'])}, RAM "
                  f"{format_bytes(fw['ram_margin_bytes'])}); files in {folder}/firmware/")


def print_console(report: dict, output: str, console) -> None:
    """The report for a person at a terminal: the budget table, accuracies, latency, the verdict."""
    from rich.table import Table

    s, b, f = report["student"], report["board"], report["fit"]
    table = Table(title=f"{b['name']}: {b['title']}", title_justify="left")
    for col in ("", "used", "budget", "margin"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("flash (model + runtime)", format_bytes(s["flash_bytes"]), format_bytes(b["flash_budget_bytes"]),
                  format_bytes(f["flash_margin_bytes"]))
    table.add_row("RAM (arena, TFLM)" if b["kind"] == "mcu" else "RAM (arena+model+LiteRT)",
                  format_bytes(s["ram_bytes"]), format_bytes(b["ram_budget_bytes"]), format_bytes(f["ram_margin_bytes"]))
    console.print(table)
    acc = report.get("accuracy")
    t = report["teacher"]
    if acc:
        console.print(f"accuracy on {acc['examples']:,} test examples: teacher {acc['teacher_float']:.2%} "
                      f"({t['params']:,} params), student float {acc['student_float']:.2%}, "
                      f"student int8 {acc['student_int8']:.2%} ({s['params']:,} params)")
    else:
        console.print(f"teacher {t['params']:,} params -> student {s['params']:,} params (no --data: accuracy not measured)")
    verdict = "[bold green]PASS[/]: fits" if report["pass"] else "[bold red]FAIL[/]: does not fit"
    names = t.get("class_names") or []
    if names:
        more = f" and {len(names) - 12} more" if len(names) > 12 else ""
        console.print(f"classes: {', '.join(names[:12])}{more}", soft_wrap=True)
    if t.get("output") == "sigmoid":
        console.print(f"[bold]note:[/] {SIGMOID_NOTE}", soft_wrap=True)
    console.print(f"estimated latency on {b['name']}: {s['latency_ms_estimate']:,.1f} ms per inference")
    console.print(f"student width {report['sizing']['width']:g}, chosen by {report['sizing']['why']}")
    skipped = report.get("distillation", {}).get("skipped")
    if skipped:
        console.print(f"no distillation: {skipped}", soft_wrap=True)
    for w in report.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {w}", soft_wrap=True)
    peak = report.get("host_memory", {}).get("peak_rss_bytes")
    memory = f", peak host memory {format_bytes(peak)}" if peak else ""
    console.print(f"{verdict} {b['name']} with {int(b['headroom'] * 100)} % headroom; "
                  f"{report['seconds']['total']:.0f} s{memory}; results in {output}/")


def _arena_words(record: dict) -> str:
    """How the arena figure was found: measured by TFLite Micro, or (a Linux board running a model TFLite Micro has no
    kernel for) the activation tensors summed."""
    if record.get("arena_source", "tflite-micro") == "tflite-micro":
        return f"TFLite Micro measured a {format_bytes(record['arena_bytes'])} arena"
    return (f"activations {format_bytes(record['arena_bytes'])}, every activation tensor summed (an upper bound: "
            f"TFLite Micro has no kernel for {', '.join(record.get('tflm_missing_kernels', []))}; LiteRT runs the model)")


def print_check(report: dict, console) -> None:
    """``tinydistill check`` on a terminal: flash and RAM against the budget, ops, latency, the verdict."""
    r = report
    console.print(f"{r['model']} on {r['board']}: flash {format_bytes(r['flash_bytes'])} of "
                  f"{format_bytes(r['flash_budget_bytes'])} (model {format_bytes(r['model_bytes'])} + runtime code "
                  f"~{format_bytes(r['runtime_code_bytes_estimate'])}), RAM {format_bytes(r['ram_bytes'])} of "
                  f"{format_bytes(r['ram_budget_bytes'])} ({_arena_words(r)})")
    console.print(f"ops: {', '.join(r['ops'])}")
    console.print(f"estimated latency: {r['latency_ms_estimate']:,.1f} ms per inference ({r['macs']:,} MACs at "
                  f"{r['clock_mhz']:g} MHz)")
    margin = f"margins: flash {format_bytes(r['flash_margin_bytes'])}, RAM {format_bytes(r['ram_margin_bytes'])}"
    console.print(("[bold green]PASS[/]: fits; " if r["fits"] else f"[bold red]FAIL[/]: {r['bound_by']} over budget; ") + margin)
