"""Calibrate the flash estimate (``tinydistill/fitting/code_size.toml``) from real links, per Cortex-M core.

    python benchmarks/code_size.py [--write] [--tflm DIR]

For each core of the shipped boards, TFLite Micro is built (``tinydistill.firmware``, cached) and
the deployable image of ``tinydistill firmware`` is linked with a 16-byte dummy model and an op
resolver holding: no op (the core: interpreter, allocator, C runtime, startup); each op alone; every
op; every op but one. An op's *unique* code is what the image loses without it among all the others;
its *shared* code is the rest of what it pulls in alone (helpers other ops use too). The estimate is
core + the largest shared part among the model's ops + the sum of their unique parts, so helpers
are counted once. ``--write`` stores the tables in code_size.toml. Then the estimate is compared with the linked
deployable image of real students (LeNet-5, ResNet-8 and DS-CNN students from the shared teachers),
and the table goes to benchmarks/RESULTS.md. Needs arm-none-eabi-gcc and TFLite Micro's sources.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinydistill.errors import FirmwareError  # noqa: E402
from tinydistill.firmware import build_firmware, cores, link, toolchain  # noqa: E402
from tinydistill.fitting.boards import list_boards  # noqa: E402
from tinydistill.fitting.export import resolver_header  # noqa: E402

DATA = os.environ.get("TINYDISTILL_DATA", os.path.join(ROOT, "..", "shared", "data"))
OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
       "RESHAPE", "QUANTIZE", "DEQUANTIZE", "MEAN", "PAD", "CONCATENATION", "LOGISTIC", "TANH", "RELU", "RELU6",
       "STRIDED_SLICE", "TRANSPOSE", "SUB", "HARD_SWISH", "LEAKY_RELU", "SQUEEZE", "SHAPE", "PACK", "SPLIT")
DUMMY = 16  # bytes of the dummy model array
# the students whose real links check the estimate: teacher, compress options
STUDENTS = {"LeNet-5 -> 0.5": ("mnist_lenet5.h5", ["--width", "0.5", "--input-range", "0,1"]),
            "ResNet-8 -> 0.7": ("cifar10_resnet8.h5", ["--width", "0.7", "--input-range", "0,255"]),
            "DS-CNN -> 0.5": ("wakeword_dscnn.h5", ["--width", "0.5", "--input-range", "0,1"])}


def _ops_header(ops) -> str:
    if ops:
        return resolver_header(list(ops))
    # a resolver with room for one op and none registered: the interpreter without kernels
    return resolver_header(["RESHAPE"]).replace("  if (resolver.AddReshape() != kTfLiteOk) return kTfLiteError;\n", "")


def _flash(lib, tools, build, device, ops) -> int:
    with open(os.path.join(build, "model_ops.h"), "w") as f:
        f.write(_ops_header(ops))
    link.compile_objects(lib, tools, build, {"device": device}, names=("deploy.cc",), startup=False)
    script = link.linker_script(lib, device, flash=(0, 1 << 24), ram=(0x20000000, 1 << 24), stack=link.DEPLOY_STACK,
                                heap=0)
    return link.link(lib, tools, build, "deploy", main="deploy.o", script=script,
                     specs=["--specs=nano.specs", "--specs=nosys.specs"]).flash_bytes


def calibrate(core_name, core, root, tools) -> dict:
    """core_bytes and each op's unique and shared bytes for one core, from links of the deployable image."""
    lib = toolchain.build_library(root, core, tools)
    with tempfile.TemporaryDirectory() as build:
        cc = ("#include \"model_data.h\"\nalignas(16) const unsigned char g_model[] = {" + ", ".join(["0"] * DUMMY)
              + "};\nconst unsigned int g_model_len = 16;\n")
        h = ("extern const unsigned char g_model[];\nextern const unsigned int g_model_len;\n"
             "constexpr unsigned int g_model_arena_bytes = 1024;\n")
        link.write_sources(build, {"model_data.cc": cc, "model_data.h": h, "model_ops.h": _ops_header(())},
                           np.zeros((1, 1), np.int8))
        link.compile_objects(lib, tools, build, core, names=("model_data.cc",))
        base = _flash(lib, tools, build, core["device"], ())
        ops = []
        for op in OPS:
            try:
                _flash(lib, tools, build, core["device"], (op,))
                ops.append(op)
            except FirmwareError as exc:  # an op this TFLite Micro has no kernel for
                print(f"  {op}: skipped ({str(exc)[:120]})", flush=True)
        alone = {op: _flash(lib, tools, build, core["device"], (op,)) - base for op in ops}
        full = _flash(lib, tools, build, core["device"], tuple(ops))
        unique = {op: full - _flash(lib, tools, build, core["device"], tuple(o for o in ops if o != op)) for op in ops}
        shared = {op: max(0, alone[op] - unique[op]) for op in ops}
        print(f"{core_name}: core {base - DUMMY:,} B, all ops {full - base:,} B; "
              + ", ".join(f"{op} {unique[op]:,}+{shared[op]:,}" for op in ops), flush=True)
        return {"core_bytes": base - DUMMY, "ops": unique, "shared": shared}


def toml_tables(tables: dict) -> str:
    out = []
    for core_name, t in tables.items():
        out += [f"[tflite-micro.{core_name}]", f"core_bytes = {t['core_bytes']}", "",
                f"[tflite-micro.{core_name}.ops]  # code only this op pulls in"]
        out += [f"{op} = {v}" for op, v in t["ops"].items()] + [""]
        out += [f"[tflite-micro.{core_name}.shared]  # what it pulls in that other ops use too (counted once)"]
        out += [f"{op} = {v}" for op, v in t["shared"].items()] + [""]
    return "\n".join(out)


def write_code_size(tables: dict, date: str) -> None:
    path = os.path.join(ROOT, "tinydistill", "fitting", "code_size.toml")
    with open(path) as f:
        text = f.read()
    head = text.split("# --- measured")[0].rstrip() + "\n\n"
    with open(path, "w") as f:
        f.write(head + f"# --- measured by benchmarks/code_size.py on {date}: flash of the deployable image of\n"
                "# `tinydistill firmware` (TFLite Micro, CMSIS-NN where the core has DSP, arm-none-eabi-gcc -Os/-O2 as\n"
                "# TFLite Micro's Makefile builds it): estimate = core + the largest shared part among a model's ops +\n"
                "# the sum of their unique parts (see that script's docstring).\n\n"
                + toml_tables(tables))


def students(tmp: str) -> dict:
    """Compressed students (tiny synthesis: only their sizes matter here), by name: their output folders."""
    out = {}
    for name, (teacher, opts) in STUDENTS.items():
        folder = os.path.join(tmp, name.split()[0])
        cmd = [sys.executable, "-m", "tinydistill.cli", "compress", os.path.join(DATA, "teachers", teacher), *opts,
               "--method", "prior", "--inputs", "200", "--steps", "2", "--epochs", "1", "--quiet", "-o", folder]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode not in (0, 1) or not os.path.isfile(os.path.join(folder, "student.tflite")):
            raise SystemExit(f"compress {teacher} failed: {proc.stderr[-500:]}")
        out[name] = folder
    return out


def validate(tflm) -> list[tuple]:
    """(core, student, measured flash, estimated flash, error) for every shipped Arm core and student."""
    from tinydistill.firmware import load_folder

    boards = {}
    for b in list_boards():
        if b.core in cores() and b.core not in boards:
            boards[b.core] = b
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = students(tmp)
        for core_name, board in boards.items():
            for name, folder in folders.items():
                tflite, sources, _, _ = load_folder(folder)
                fw = build_firmware(tflite, board, sources=sources, tflm=tflm, inputs=1, emulation=False)
                measured, estimate = fw.deployable.flash_bytes, fw.estimated_flash
                rows.append((core_name, board.name, name, measured, estimate, (estimate - measured) / measured))
                print(rows[-1], flush=True)
    return rows


def results_body(rows) -> list[str]:
    lines = ["The estimate `check` and `compress` give without a toolchain (model + TFLite Micro's core + the largest "
             "helper code shared among the model's ops + each op's own code, per core, from links of the deployable "
             "image with no op, each op alone, every op, and every op but one) against the deployable image "
             "`tinydistill firmware` links for the student (model, TFLite Micro, C runtime, a main that runs "
             "inference). Students: tiny compress runs of the shared teachers (their sizes, not their accuracy).", "",
             "| core | board | student | measured flash | estimate | error |", "| --- | --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {c} | {b} | {s} | {m:,} | {e:,} | {err:+.1%} |" for c, b, s, m, e, err in rows]
    return lines + ["", f"Largest error: {max(abs(r[-1]) for r in rows):.1%}."]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="store the measured tables in code_size.toml")
    ap.add_argument("--tflm", default=None)
    a = ap.parse_args()
    t0 = time.time()
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    tools = toolchain.find_toolchain()
    root = toolchain.locate_tflm(a.tflm)
    tables = {name: calibrate(name, {"name": name, **core}, root, tools) for name, core in cores().items()}
    print(toml_tables(tables))
    if a.write:
        write_code_size(tables, date)
    rows = validate(a.tflm)
    from run import write_section  # benchmarks/run.py keeps RESULTS.md's sections

    write_section("Flash estimate against linked firmware (code_size.toml)", "python benchmarks/code_size.py --write",
                  time.time() - t0, results_body(rows))


if __name__ == "__main__":
    main()
