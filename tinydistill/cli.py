"""The command line: a thin click layer that turns options into a config, calls a stage, and renders.

Files are written through :mod:`tinydistill.fileio` (atomic files and folders); reports are
rendered by :mod:`tinydistill.report`. Every TinyDistillError ends
as one red line and exit code 1; click's usage errors exit 2.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time

import click
import numpy as np

from . import __version__
from .config import (
    DEFAULT_EPOCHS,
    DEFAULT_INPUTS,
    DEFAULT_STEPS,
    ENGINE_EPOCHS,
    ENGINE_INPUTS,
    ENGINE_STEPS,
    FEATURE_WEIGHT,
    METHOD_STEPS,
    METHODS,
    STRATEGIES,
    STUDENT_BATCHNORM,
)
from .errors import OutputError, TinyDistillError
from .fileio import check_output_dir, write_folder
from .fitting.boards import DEFAULT_BOARD
from .units import format_bytes, parse_bytes

_DEBUG = os.environ.get("TINYDISTILL_DEBUG") == "1"


def _console(stderr=True):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


class _Group(click.Group):
    """Turns expected errors into one line, unexpected ones into one line plus how to report."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except TinyDistillError as exc:
            _console().print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            hint = ("; completed stages are kept: run the same command with --resume to continue"
                    if ctx.invoked_subcommand == "compress" else "")
            _console().print(f"[bold red]interrupted:[/] no result was written{hint}")
            ctx.exit(130)
        except MemoryError:
            _console().print("[bold red]error:[/] out of memory: use fewer --inputs or a smaller --width")
            ctx.exit(1)
        except Exception as exc:  # never a traceback for the user, unless asked for
            if _DEBUG:
                raise
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            _console().print(f"[bold red]internal error:[/] {type(exc).__name__}: {first} "
                             "(rerun with TINYDISTILL_DEBUG=1 for the traceback and report it)", soft_wrap=True)
            ctx.exit(1)


class _Progress:
    """A rich progress bar per stage, or nothing with --quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tasks = {}
        self.bar = None

    def __enter__(self):
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                console=_console(), transient=False)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

    def __call__(self, stage, done, total):
        if self.bar is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)


def _range_option(f):
    return click.option("--input-range", "input_range", metavar="LO,HI",
                        help="Input range the teacher expects, e.g. 0,1 or 0,255 (recorded in stats).")(f)


def _tflm_option(f):
    return click.option("--tflm", type=click.Path(), metavar="DIR",
                        help="TFLite Micro sources: a tflite-micro checkout with its third-party downloads, or its "
                             ".tar.gz [default: $TINYDISTILL_TFLM, else ../shared/firmware].")(f)


def _label_options(f):
    f = click.option("--class-names", metavar="A,B,...",
                     help="The classes' names in label order (default: the image folder's class folders, or the "
                          "stats file's); recorded in stats files, shown in reports and written to model_data.h.")(f)
    return click.option("--label-column", metavar="NAME",
                        help="The label column of a CSV file [default: label].")(f)


def _names(text):
    """``--class-names a,b,c`` as a list (None when not given)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise click.BadParameter(f"must be names separated by commas. Received: {text}", param_hint="--class-names")
    return names


def _shape(ctx, param, text):
    """``--input-shape``: sizes >= 1 separated by commas (without the batch); anything else is a usage error."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise click.BadParameter(f"must be sizes >= 1 separated by commas, without the batch (e.g. 96,96,3). "
                                 f"Received: {text}", param_hint="--input-shape")
    return shape


def _trust_option(f):
    f = click.option("--input-shape", callback=_shape,
                     help="Input size for a model saved with unknown (None) input dimensions, e.g. 96,96,3 "
                          "(without the batch): it is rebuilt at that size with the same weights.")(f)
    return click.option("--trust-model", is_flag=True,
                        help="Allow Lambda / custom layers (runs code from the model file).")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinydistill")
def main():
    """Compress a Keras classifier into an int8 student that fits a board, without its training data."""


# ---------------------------------------------------------------- commands

@main.command()
@click.argument("teacher", type=click.Path(dir_okay=True))
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="Labelled training data: .npz with x, y; an MNIST-style IDX folder (train files); an image folder "
                   "with one subfolder per class; or a CSV file with a label column. Read in batches.")
@_range_option
@_label_options
@click.option("-o", "--output", "output", default=None, type=click.Path(),
              help="Stats file to write [default: TEACHER.stats.npz].")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
@_trust_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def stats(teacher, data_path, input_range, label_column, class_names, output, batch_size, trust_model, input_shape,
          quiet):
    """Record the teacher's per-class, per-layer activation statistics (publisher side)."""
    from .data import resolve_input_range
    from .data.sources import open_data
    from .teacher.model import load_teacher
    from .teacher.stats import record_stats, save_stats

    output = output or os.path.splitext(teacher)[0] + ".stats.npz"
    if os.path.isdir(output):
        raise OutputError(f"output {output} is a folder: pass a file name such as teacher.stats.npz")
    t = load_teacher(teacher, trust_model=trust_model, input_shape=input_shape)
    rng = resolve_input_range(input_range, None, required=False, teacher=t)
    if rng is None:
        raise TinyDistillError("pass --input-range LO,HI: the input range the teacher was trained on "
                               "(e.g. 0,1 or 0,255); it is recorded in the stats file for compress")
    src = open_data(data_path, split="train", label_column=label_column, class_names=_names(class_names))
    with _Progress(quiet) as progress:
        st = record_stats(t, src, input_range=rng, batch_size=batch_size,
                          on_progress=lambda d, n: progress("statistics", d, n or None))
    try:
        save_stats(st, output)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
    size = os.path.getsize(output)
    names = f" ({', '.join(st.class_names)})" if st.class_names else ""
    _console(stderr=False).print(f"wrote {output}: {len(st.layers)} layers x {st.num_classes} classes{names} from "
                                 f"{int(st.counts.sum()):,} examples, {size:,} bytes")


@main.command()
@click.argument("teacher", type=click.Path(dir_okay=True))
@click.option("--board", default=DEFAULT_BOARD, show_default=True, help="Board name or alias ('tinydistill boards').")
@click.option("--board-file", type=click.Path(), help="Your own board profile (TOML), instead of --board.")
@click.option("--headroom", type=float, default=None, help="Fraction of flash and RAM kept for the application [board's, 0.2].")
@click.option("--stats", "stats_path", type=click.Path(), help="Statistics file recorded with 'tinydistill stats'.")
@click.option("--data", "data_path", type=click.Path(),
              help="Labelled test data, to report accuracy: .npz, IDX folder, image folder (one subfolder per class) "
                   "or CSV; read in batches.")
@_range_option
@_label_options
@click.option("--width", default="auto", show_default=True,
              help="Student width multiplier in (0, 1], or 'auto': the largest that fits the budget.")
@click.option("--student-batchnorm", default="auto", show_default=True, type=click.Choice(STUDENT_BATCHNORM),
              help="BatchNorm after the student's convolutions, folded into them when converted (auto: where the "
                   "teacher is a residual network without normalisation, whose student does not learn without it).")
@click.option("--max-flash", help="Flash limit for the model, e.g. 256KB (default: the board's, after headroom).")
@click.option("--max-ram", help="RAM limit for the tensor arena, e.g. 64KB (default: the board's, after headroom).")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True),
              help="Latency limit per inference [board's budget: 100 ms MCU, 20 ms Linux].")
@click.option("--method", default="auto", show_default=True,
              type=click.Choice(METHODS),
              help="Synthesis method (auto: generator for image teachers with BatchNorm layers; otherwise per-batch "
                   "pixels from the stats file > BatchNorm statistics > a no-metadata prior).")
@click.option("--effort", default=1.0, show_default=True, type=click.FloatRange(0, 100, min_open=True),
              help="Time against quality: scales the method's default number of synthetic inputs, and so the run's "
                   "time (0.5: about half the time; 2: about twice, usually more accurate).")
@click.option("--inputs", "n", type=click.IntRange(1),
              help=f"Synthetic inputs [per-batch methods {DEFAULT_INPUTS:,}, generator {ENGINE_INPUTS:,} generated, "
                   "times --effort].")
@click.option("--steps", type=click.IntRange(1),
              help=f"Optimisation steps per batch [per-batch methods {DEFAULT_STEPS} (all-layers "
                   f"{METHOD_STEPS['all-layers']}), generator {ENGINE_STEPS}].")
@click.option("--epochs", type=click.IntRange(1),
              help=f"Distillation passes over the synthetic set [per-batch methods {DEFAULT_EPOCHS}, generator "
                   f"{ENGINE_EPOCHS} over its pool].")
@click.option("--kd-loss", "loss", default="mse", show_default=True, type=click.Choice(["mse", "kl"]),
              help="Distillation loss: mse on logits, or kl on softened probabilities (with --temperature).")
@click.option("--temperature", default=4.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="KD temperature (with --kd-loss kl).")
@click.option("--feature-weight", "features", default=FEATURE_WEIGHT, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the stage feature maps the student matches besides the outputs (0: outputs only).")
@click.option("--flip", default="off", show_default=True, type=click.Choice(["off", "on", "auto"]),
              help="Flip images left to right at random while synthesising them (auto: if the teacher keeps its "
                   "class on most flipped inputs; measured mixed on CIFAR-10, hence off).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--strategy", default="default", show_default=True, type=click.Choice(STRATEGIES),
              help="tf.distribute strategy for synthesis and distillation (multi-worker: set TF_CONFIG on each worker).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its completed stages (same options).")
@click.option("--qat", is_flag=True, help="Quantisation-aware fine-tuning (tfmot) after distillation.")
@click.option("--prune", type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="SPARSITY",
              help="Magnitude pruning (tfmot) to this fraction of zero weights, e.g. 0.5.")
@click.option("-o", "--output", "output", default="out", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--firmware", "firmware_too", is_flag=True,
              help="Then build the student into Cortex-M firmware and run it under QEMU (as 'tinydistill firmware').")
@_tflm_option
@_trust_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def compress(teacher, board, board_file, headroom, stats_path, data_path, input_range, label_column, class_names,
             width, student_batchnorm, max_flash, max_ram,
             max_latency_ms, method, effort, n, steps, epochs, loss, temperature, features, flip, seed, strategy, resume,
             qat, prune, output, firmware_too, tflm, trust_model, input_shape, quiet, as_json):
    """Distill TEACHER into an int8 student for a board; write the model, C source and a report."""
    from .config import CompressConfig
    from .resume import RunState, state_folder

    # validate everything cheap before the expensive work
    check_output_dir(output)
    b = _board(board, board_file, headroom)
    config = CompressConfig.from_options(
        width=_width(width), student_batchnorm=student_batchnorm, input_range=input_range, seed=seed,
        strategy=strategy, effort=effort, method=method, n=n,
        steps=steps, flip=flip, epochs=epochs, loss=loss, temperature=temperature, features=features, qat=qat, prune=prune,
        max_flash=parse_bytes(max_flash) if max_flash else None, max_ram=parse_bytes(max_ram) if max_ram else None,
        max_latency_ms=max_latency_ms).validate()
    state = RunState(state_folder(output), resume=resume)
    with _Progress(quiet or as_json) as progress:
        result, load_s = _run_compress((teacher, trust_model, input_shape), stats_path,
                                       (data_path, label_column, _names(class_names)), b, config, state, progress)
    report = result.report.with_sources(load_seconds=load_s, data=data_path, stats=stats_path)
    _write_compress(output, result, report)
    state.finish()
    if firmware_too and not as_json:
        report.print(_console(stderr=False), output)
    if firmware_too:
        report = _run_firmware(output, b, tflm, DEFAULT_FIRMWARE_INPUTS, True, quiet or as_json, show=not as_json)
    if as_json:
        click.echo(report.to_json().rstrip())
    elif not firmware_too:
        for note in report.get("resumed", []):
            _console(stderr=False).print(note)
        report.print(_console(stderr=False), output)
    if not report["pass"]:
        f = report["fit"]
        raise TinyDistillError(f"the student does not fit {b.name} ({f['bound_by']} over budget by "
                               f"{-min(f['flash_margin_bytes'], f['ram_margin_bytes']):,} bytes): "
                               "try a smaller --width or a larger board; results are in " + output)


def _width(width: str):
    """``--width``: 'auto' or a number in (0, 1]; anything else is a usage error (exit 2)."""
    if width == "auto":
        return width
    try:
        value = float(width)
    except ValueError:
        raise click.BadParameter(f"must be a number in (0, 1] or 'auto'. Received: {width}", param_hint="--width") from None
    if not (0 < value <= 1):
        raise click.BadParameter(f"must be in (0, 1] or 'auto'. Received: {width}", param_hint="--width")
    return value


def _board(board, board_file, headroom):
    """The board of --board or --board-file, with --headroom applied."""
    from .fitting.boards import load_board, load_board_file

    b = load_board_file(board_file) if board_file else load_board(board)
    return b.with_headroom(headroom) if headroom is not None else b


def _run_compress(model, stats_path, data, board, config, state, progress):
    """Open the teacher (``model``: path, trust_model, input_shape), its stats and the test data (read in batches
    later), then compress; the result and the seconds loading took."""
    from .data.sources import open_data
    from .pipeline import compress as run
    from .teacher.model import load_teacher
    from .teacher.stats import load_stats

    t0 = time.perf_counter()
    progress("load", 0, 1)
    teacher, trust_model, input_shape = model
    t = load_teacher(teacher, trust_model=trust_model, input_shape=input_shape)
    st = load_stats(stats_path, t) if stats_path else None
    data_path, label_column, class_names = data
    src = open_data(data_path, split="test", label_column=label_column, class_names=class_names) if data_path else None
    progress("load", 1, 1)
    load_s = time.perf_counter() - t0
    return run(t, board=board, stats=st, data=src, config=config, state=state, on_progress=progress,
               class_names=class_names), load_s


def _write_compress(output, result, report):
    """Every file of a compress result, written into ``output`` at once."""
    from .fitting.bundle import sample_npz
    from .reporting.plots import samples_png

    def save_keras(path):
        result.student.save(path + ".keras")
        os.replace(path + ".keras", path)

    def save_npz(path):
        with open(path, "wb") as f:
            np.savez_compressed(f, x=result.synthetic.x, y=result.synthetic.y, logits=result.synthetic.logits)

    extra = {}
    if result.fit.predictions is not None:
        x_test, y_test = result.test_data
        extra["test_sample.npz"] = sample_npz(result.tflite, x_test, y_test, result.fit.predictions,
                                              class_names=result.class_names)
    write_folder(output, {
        **extra,
        "student.tflite": result.tflite, "model_data.cc": result.model_cc, "model_data.h": result.model_h,
        "model_ops.h": result.model_ops_h,
        "student.keras": save_keras, "synthetic.npz": save_npz,
        "report.json": report.to_json(), "report.md": report.markdown(), "report.png": report.png(),
        "samples.png": samples_png(result.synthetic, input_range=report["teacher"]["input_range"],
                                   class_names=result.class_names),
    })


DEFAULT_FIRMWARE_INPUTS = 100


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--board", default=None, help="Board name or alias [default: the board of the folder's report].")
@click.option("--board-file", type=click.Path(), help="Your own board profile (TOML), instead of --board.")
@_tflm_option
@click.option("--inputs", default=DEFAULT_FIRMWARE_INPUTS, show_default=True, type=click.IntRange(1),
              help="Test inputs the emulated firmware runs (from test_sample.npz, else the synthetic inputs).")
@click.option("--no-emulation", is_flag=True, help="Build and measure only; do not run under QEMU.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def firmware(folder, board, board_file, tflm, inputs, no_emulation, quiet):
    """Build a compress output FOLDER into Cortex-M firmware: flash and RAM measured from the link, outputs
    under QEMU compared with host TFLite Micro byte for byte. Writes FOLDER/firmware/ and updates the report."""
    if not os.path.isdir(folder):
        raise TinyDistillError(f"{folder} is not a folder: pass a 'tinydistill compress' output folder")
    report = _read_report(folder)
    name = board or (report or {}).get("board", {}).get("name") or DEFAULT_BOARD
    report = _run_firmware(folder, _board(name, board_file, None), tflm, inputs, not no_emulation, quiet, show=True)
    if not report.get("pass", True):
        raise TinyDistillError(f"the firmware does not fit {report['firmware']['board']} with its headroom: see "
                               f"{folder}/report.md")


def _read_report(folder):
    path = os.path.join(folder, "report.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        raise TinyDistillError(f"{path} is not a readable report ({exc}): run compress again") from None
    if not isinstance(report, dict):
        raise TinyDistillError(f"{path} is not a tinydistill report: run compress again")
    return report


def _run_firmware(folder, board, tflm, inputs, emulation, quiet, *, show):
    """Build, measure and emulate; write FOLDER/firmware/ and the updated report; the report (a Report)."""
    from .fileio import atomic_write
    from .firmware import build_firmware, load_folder
    from .reporting.report import Report, print_firmware

    tflite, sources, x_int8, origin = load_folder(folder, inputs)
    with _Progress(quiet) as progress:
        fw = build_firmware(tflite, board, x_int8=x_int8, sources=sources, tflm=tflm, inputs=inputs,
                            emulation=emulation, on_progress=progress)
    section = {**fw.report(), "inputs_from": origin}
    write_folder(os.path.join(folder, "firmware"), fw.files)
    report = Report(_read_report(folder) or {})
    report["firmware"] = section
    if "pass" in report:
        report["pass"] = bool(report["pass"] and section["fits"])
    if "teacher" in report:
        atomic_write(os.path.join(folder, "report.json"), report.to_json().encode())
        atomic_write(os.path.join(folder, "report.md"), report.markdown().encode())
    else:
        atomic_write(os.path.join(folder, "firmware", "firmware.json"), (json.dumps(section, indent=2) + "\n").encode())
    if show:
        print_firmware(section, _console(stderr=False), folder)
    emu = section["emulation"]
    if emu["run"] and emu["agreement"] < 1:
        raise TinyDistillError(f"the emulated firmware's int8 outputs differ from host TFLite Micro's on "
                               f"{emu['inputs'] - emu['outputs_identical']} of {emu['inputs']} inputs: see "
                               f"{folder}/firmware/emulation.log and report it")
    return report


@main.command()
def boards():
    """List the board profiles."""
    from rich.table import Table

    from .fitting.boards import list_boards

    con = _console(stderr=False)
    wide = con.width >= 120  # the board's full title only where it fits
    table = Table(title="boards (sizes before headroom)", title_justify="left", box=None, padding=(0, 1),
                  pad_edge=False)
    cols = ["name", "aliases"] + (["board"] if wide else []) + ["core", "MHz", "flash", "RAM"]
    for col in cols:  # only aliases and titles may wrap: names and sizes are read and typed whole
        table.add_column(col, justify="right" if col in ("MHz", "flash", "RAM") else "left",
                         no_wrap=col not in ("aliases", "board"), overflow="fold",
                         min_width=13 if col == "aliases" else None)
    for bd in list_boards():
        row = [bd.name, " ".join(bd.aliases)] + ([bd.title] if wide else []) + [
            bd.core, f"{bd.clock_mhz:g}", format_bytes(bd.flash_bytes), format_bytes(bd.ram_bytes)]
        table.add_row(*row)
    con.print(table)


@main.command("check")
@click.argument("model", type=click.Path())
@click.option("--board", default=DEFAULT_BOARD, show_default=True)
@click.option("--board-file", type=click.Path())
@click.option("--headroom", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
def check_cmd(model, board, board_file, headroom, as_json):
    """Measure any int8 .tflite against a board: flash, TFLite Micro arena, ops, fit."""
    from .fitting.fitcheck import check
    from .fitting.tflite_model import read_tflite
    from .reporting.report import Report

    b = _board(board, board_file, headroom)
    res = check(read_tflite(model), b)
    report = Report.from_check(model, b, res)
    if as_json:
        click.echo(report.to_json().rstrip())
    else:
        report.print(_console(stderr=False))
    if not res.fits:
        sys.exit(1)


@main.command("inspect")
@click.argument("teacher", type=click.Path(dir_okay=True))
@click.option("--board", default=None, help="Also check whether the teacher itself fits this board.")
@click.option("--board-file", type=click.Path())
@click.option("--stats", "stats_path", type=click.Path(), help="A statistics file for this teacher.")
@_range_option
@_trust_option
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(teacher, board, board_file, stats_path, input_range, trust_model, input_shape, as_json):
    """Show what tinydistill sees in TEACHER before any work."""
    from rich.table import Table

    from .data import parse_range
    from .inspection import inspect
    from .teacher.model import load_teacher
    from .teacher.stats import load_stats

    b = _board(board or DEFAULT_BOARD, board_file, None)
    rng = parse_range(input_range) if input_range else None
    t = load_teacher(teacher, trust_model=trust_model, input_shape=input_shape)
    st = load_stats(stats_path, t) if stats_path else None
    info = inspect(t, board=b, stats=st, input_range=rng)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    con = _console(stderr=False)
    rng_text = (f"{info['input_range'][0]:g}..{info['input_range'][1]:g}" if info["input_range"]
                else "unknown (pass --input-range, or --stats that records it)")
    table = Table(box=None, padding=(0, 1), title=f"{teacher}", title_justify="left")
    for col in ("layer", "kind", "output", "params", "MACs", "probed"):
        table.add_column(col, justify="right" if col in ("params", "MACs") else "left")
    for ly in info["layers"]:
        table.add_row(ly["name"], ly["kind"], "x".join(map(str, ly["output_shape"])), f"{ly['params']:,}",
                      f"{ly['macs']:,}", "yes" if ly["probed"] else "")
    con.print(table)
    bn = info["batchnorm_layers"]
    con.print(f"input:       {tuple(info['input_shape'])}, range {rng_text}")
    con.print(f"output:      {info['num_classes']} classes ({info['output']})")
    con.print(f"parameters:  {info['params']:,}; MACs per inference: {info['macs']:,}")
    con.print(f"BatchNorm:   {'yes, ' + str(bn) + ' layers (running statistics usable for synthesis)' if bn else 'no'}"
              + ("; a student gets it after its convolutions (a residual network without normalisation hardly "
                 "learns; folded into them when converted)" if info.get("student_adds_batchnorm") else ""))
    con.print(f"stats file:  {'yes' if info['stats'] else 'no'}")
    con.print(f"auto method: {info['auto_method']} ({info['auto_method_why']})")
    fits = info.get("teacher_fits_board")
    con.print(f"teacher as int8: {format_bytes(info['int8_model_bytes'])} flash, "
              f"{format_bytes(info['int8_arena_bytes'])} "
              f"{'arena (TFLite Micro)' if info['int8_arena_source'] == 'tflite-micro' else 'of activation tensors'} "
              f"on {info['board']}: "
              + ("[green]already fits[/]" if fits else "[yellow]does not fit[/]") +
              f" (budget {format_bytes(info['flash_budget_bytes'])} flash, {format_bytes(info['ram_budget_bytes'])} RAM)")



@main.command()
@click.argument("folder", type=click.Path())
@click.option("-o", "--output", "output", default="device.zip", show_default=True, type=click.Path(),
              help="A .zip file, or a folder.")
def bundle(folder, output):
    """Pack a compress output FOLDER for a device: model, test sample, host predictions, verify.py."""
    import zipfile

    from .fitting.bundle import make_bundle

    files = make_bundle(folder)
    if output.endswith(".zip"):
        if os.path.isdir(output):
            raise OutputError(f"{output} is a folder: pass a .zip file name or a folder name without .zip")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in sorted(files.items()):
                z.writestr(name, data)
        _atomic_file(output, buf.getvalue())
    else:
        check_output_dir(output)
        write_folder(output, files)
    _console(stderr=False).print(f"wrote {output}: {', '.join(sorted(files))}")


@main.command()
@click.argument("target", type=click.Path())
@click.option("--data", "data_path", type=click.Path(), help="Labelled data (.npz or IDX folder), with a .tflite.")
@_range_option
@click.option("--json", "as_json", is_flag=True)
def verify(target, data_path, input_range, as_json):
    """Check an int8 model's accuracy with LiteRT / tflite-runtime only (no TensorFlow).

    TARGET is a bundle or compress output folder (uses its test_sample.npz and
    the host's predictions), or a .tflite with --data.
    """
    from .fitting import ondevice
    from .fitting.tflite_model import read_tflite

    if os.path.isdir(target):
        if not os.path.isfile(os.path.join(target, ondevice.SAMPLE)):
            raise TinyDistillError(f"{target} has no {ondevice.SAMPLE}: pass a bundle folder, or a .tflite with --data")
        read_tflite(os.path.join(target, "student.tflite"))
        run_verify = lambda: ondevice.verify_bundle(target)  # noqa: E731
    else:
        from .data import load_data, parse_range, to_input_range

        if not os.path.isfile(target):
            raise TinyDistillError(f"{target} does not exist: pass a .tflite file or a bundle folder")
        if not data_path:
            raise click.UsageError("a .tflite needs --data (labelled inputs)")
        model = read_tflite(target)
        rng = parse_range(input_range) if input_range else _range_from_report(target)
        ds = load_data(data_path, split="test")
        run_verify = lambda: ondevice.verify(model, _shape_like(to_input_range(ds.x, rng), model, data_path), ds.y)  # noqa: E731
    try:
        res = run_verify()
    except (ValueError, RuntimeError) as exc:  # the interpreter refused the model or the inputs
        raise TinyDistillError(f"{target}: {ondevice._first_line(exc)}") from None
    if as_json:
        click.echo(json.dumps({k: v for k, v in res.items() if k != "predictions"}, indent=2))
    else:
        _console(stderr=False).print(ondevice.summary(res))


def _range_from_report(model_path):
    report = _read_report(os.path.dirname(os.path.abspath(model_path)))
    if report is not None:
        try:
            from .data import parse_range

            return parse_range(report["teacher"]["input_range"])
        except (KeyError, TypeError, TinyDistillError):
            raise TinyDistillError(f"the report beside {model_path} has no valid input range: pass --input-range LO,HI "
                                   "(as given to compress)") from None
    raise TinyDistillError("the model's input range is unknown: pass --input-range LO,HI (as given to compress)")


def _shape_like(x, model, source):
    from .data import reshape_to
    from .fitting.runtime import litert_interpreter

    return reshape_to(x, litert_interpreter(model).get_input_details()[0]["shape"][1:], source, "model")


def _atomic_file(path, data: bytes):
    from .fileio import atomic_write

    try:
        atomic_write(path, data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


if __name__ == "__main__":  # pragma: no cover
    main()
