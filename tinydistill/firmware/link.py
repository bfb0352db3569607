"""Compile the firmware's own files against a TFLite Micro build, link them, and measure the linked image.

Two images are linked from the same objects: the *deployable* one (the model, exactly its op
resolver, the arena and a main that only runs inference, linked against the board's own flash and
RAM, so the linker itself says whether it fits), and the *emulation* one (the same plus a harness
that runs test inputs and prints the outputs over semihosting). Sizes come from the linked ELF
(``arm-none-eabi-size``: flash = text + data, RAM = data + bss); the linker map says which part
of them is the model, TFLite Micro, the C runtime and the application.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from importlib import resources

from ..errors import FirmwareError

DEPLOY_STACK = 4096  # stack of the deployable image (TFLite Micro keeps its buffers in the arena)
EMULATION_STACK = 16384
EMULATION_HEAP = 65536  # newlib's stdio buffers for semihosting: the harness's cost
# sections of a linked image kept in flash; .data is in flash (its initial values) and in RAM
_FLASH = (".text", ".ARM.extab", ".ARM.exidx", ".copy.table", ".zero.table", ".data")
_RAM = (".data", ".bss", ".heap", ".stack")


@dataclass
class Image:
    """One linked ELF and its measured sizes, in bytes.

    Attributes:
        elf: path of the ELF; text, data, bss: ``arm-none-eabi-size`` (Berkeley) figures.
        shares: flash and RAM bytes by part (``model``, ``tflite_micro``, ``c_runtime``, ``application``,
            ``arena``, ``stack_heap``), from the linker map.
    """

    elf: str
    text: int
    data: int
    bss: int
    shares: dict = field(default_factory=dict)

    @property
    def flash_bytes(self) -> int:
        return self.text + self.data

    @property
    def ram_bytes(self) -> int:
        return self.data + self.bss


def _run(args: list[str], cwd: str, log: str, what: str) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(args) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        text = proc.stderr + proc.stdout
        overflow = _overflow(text)
        if overflow:
            raise FirmwareError(f"{what}: {overflow}")
        first = next((ln for ln in text.splitlines() if re.search(r"error|undefined reference", ln)),
                     text.strip().splitlines()[-1] if text.strip() else f"exit {proc.returncode}")
        raise FirmwareError(f"{what} failed: {first.strip()} (full log: {log})")


def _overflow(text: str) -> str | None:
    """The linker's 'does not fit' as one sentence: which section, which region, by how much."""
    region = re.findall(r"region [`']?(\w+)'? overflowed by (\d+) bytes", text)
    sections = re.findall(r"section [`']?([\w.]+)'? will not fit in region [`']?(\w+)'?", text)
    if not region and not sections and "overflowed with stack" not in text:
        return None
    if not region:
        return "the firmware does not fit the board's RAM: data, heap and stack overlap"
    parts = []
    for name, by in region:
        secs = [s for s, r in sections if r == name]
        memory = "flash" if name.upper() == "FLASH" else "RAM" if name.upper() == "RAM" else name
        parts.append(f"{memory} overflowed by {int(by):,} bytes" + (f" (section {', '.join(secs)})" if secs else ""))
    return "the firmware does not fit the board: " + "; ".join(parts) + ": choose a smaller --width or another board"


def write_sources(build: str, files: dict[str, str | bytes], x_int8) -> None:
    """The model's generated files, the package's main files and the test inputs, in the build folder."""
    pkg = resources.files("tinydistill.firmware")
    for name in ("harness.cc", "deploy.cc"):
        files = {**files, name: pkg.joinpath(name).read_text()}
    for name, text in files.items():
        with open(os.path.join(build, name), "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
    with open(os.path.join(build, "test_inputs.bin"), "wb") as f:
        f.write(x_int8.astype("int8").tobytes())
    with open(os.path.join(build, "test_inputs.S"), "w") as f:
        f.write('  .section .test_inputs,"a"\n  .balign 16\n  .global g_test_inputs\ng_test_inputs:\n'
                '  .incbin "test_inputs.bin"\n  .section .rodata.g_test_input_count,"a"\n  .balign 4\n'
                f"  .global g_test_input_count\ng_test_input_count:\n  .word {len(x_int8)}\n")


SOURCES = ("model_data.cc", "harness.cc", "deploy.cc")


def compile_objects(lib, tools: dict, build: str, core: dict, names: tuple = SOURCES, startup: bool = True) -> None:
    """Compile the firmware's files ``names`` with TFLite Micro's own flags, CMSIS's startup code for the core's
    device (``startup``) and the test inputs (if the harness is among them)."""
    log = os.path.join(build, "build.log")
    device = core["device"]
    dfp = os.path.join(lib.root, "tensorflow/lite/micro/tools/make/downloads/cmsis/Cortex_DFP/Device", device)
    jobs = [(tools["g++"], list(lib.cxxflags), name, name.replace(".cc", ".o")) for name in names]
    define = [f"-D{core['device_define']}"] if core.get("device_define") else []
    jobs += [(tools["gcc"], list(lib.ccflags) + define, os.path.join(dfp, "Source", f"{kind}_{device}.c"), f"{kind}.o")
             for kind in ("startup", "system") if startup]
    if not os.path.isdir(dfp):
        raise FirmwareError(f"no CMSIS device {device} in {lib.root} (Cortex_DFP missing from the downloads): "
                            "pass --tflm with a tflite-micro tree whose third-party downloads are complete")
    for compiler, flags, src, obj in jobs:
        _run([compiler, *flags, *lib.optimization, *lib.includes, "-I.", "-c", src, "-o", obj], build, log,
             f"compiling {os.path.basename(src)}")
    if "harness.cc" in names:
        _run([tools["gcc"], *lib.machine_flags, "-c", "test_inputs.S", "-o", "test_inputs.o"], build, log,
             "assembling the test inputs")


def linker_script(lib, device: str, *, flash: tuple[int, int], ram: tuple[int, int], stack: int, heap: int) -> str:
    """CMSIS's GCC linker script for ``device`` with the given (base, size) of flash and RAM, stack and heap."""
    path = os.path.join(lib.root, "tensorflow/lite/micro/tools/make/downloads/cmsis/Cortex_DFP/Device", device,
                        "Config", f"{device}_gcc.ld")
    with open(path) as f:
        text = f.read()
    values = {"__ROM_BASE": flash[0], "__ROM_SIZE": flash[1], "__RAM_BASE": ram[0], "__RAM_SIZE": ram[1],
              "__STACK_SIZE": stack, "__HEAP_SIZE": heap}
    for name, value in values.items():
        text, n = re.subn(rf"^{name}\s*=\s*[^;]*;", f"{name} = {value:#010x};", text, flags=re.M)
        if n != 1:
            raise FirmwareError(f"{path} does not set {name} as CMSIS linker scripts do: pass --tflm with a "
                                "tflite-micro tree of a supported version")
    return text


def link(lib, tools: dict, build: str, name: str, *, main: str, script: str, specs: list[str],
         extra: tuple = ()) -> Image:
    """Link ``main`` with the model, CMSIS's startup and TFLite Micro into ``name``.elf; its sizes and shares."""
    with open(os.path.join(build, f"{name}.ld"), "w") as f:
        f.write(script)
    objs = ["startup.o", "system.o", main, "model_data.o", *extra]
    _run([tools["g++"], *lib.machine_flags, "-T", f"{name}.ld", *specs, "-Wl,--gc-sections",
          f"-Wl,-Map={name}.map", *objs, lib.archive, "-lm", "-o", f"{name}.elf"], build,
         os.path.join(build, "build.log"), f"linking the {name} image")
    proc = subprocess.run([tools["size"], f"{name}.elf"], cwd=build, capture_output=True, text=True)
    text, data, bss = (int(v) for v in proc.stdout.strip().splitlines()[-1].split()[:3])
    with open(os.path.join(build, f"{name}.map"), errors="replace") as f:
        shares = map_shares(f.read(), main)
    return Image(elf=os.path.join(build, f"{name}.elf"), text=text, data=data, bss=bss, shares=shares)


_OUT = re.compile(r"^(\.[\w.]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)")
_IN = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")


def map_shares(text: str, main: str) -> dict:
    """Flash and RAM bytes of a GNU ld map by owner: the model's data, TFLite Micro (with its kernels), the C
    runtime (startup, libc, libgcc), the application (``main``'s object), the tensor arena within it, and the
    stack and heap the linker script reserves."""
    parts = ("model", "tflite_micro", "c_runtime", "application", "arena", "stack_heap")
    shares = {part: {"flash": 0, "ram": 0} for part in parts}
    memory = text.split("Linker script and memory map", 1)[-1]
    out, pending = None, None
    for line in memory.splitlines():
        m = _OUT.match(line)
        if m or re.match(r"^\.[\w.]+\s*$", line):
            out, pending = line.split()[0], None
            if m and out in (".heap", ".stack"):  # reserved by the linker script, no input sections
                shares["stack_heap"]["ram"] += int(m.group(3), 16)
            continue
        if re.match(r"^ \S+\s*$", line):  # an input section whose name wraps onto its own line
            pending = line.split()[0]
            continue
        m = _IN.match(line)
        if not m or out is None or m.group(1) == "*fill*" or line.startswith(" *fill*"):
            continue
        section, size, source = m.group(1) or pending, int(m.group(3), 16), m.group(4).strip()
        pending = None
        if size == 0 or not section or section.startswith("*"):
            continue
        part = _owner(source, main)
        if part == "application" and "tensor_arena" in section:
            part = "arena"
        if out in _FLASH:
            shares[part]["flash"] += size
        if out in _RAM:
            shares[part]["ram"] += size
    return shares


def _owner(source: str, main: str) -> str:
    name = os.path.basename(source)
    if "libtensorflow-microlite.a" in source:
        return "tflite_micro"
    if name == "model_data.o":
        return "model"
    if name == main:
        return "application"
    return "c_runtime"
