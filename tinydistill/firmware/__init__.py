"""Firmware proof: the student built into a real Cortex-M image, measured from the link, run under emulation.

:func:`build_firmware` builds TFLite Micro for the board's core (:mod:`.toolchain`, cached), links
the model's generated C source and op resolver into a deployable image (linked against the
board's flash and RAM) and an emulation image with a test harness (:mod:`.link`), runs the latter on
QEMU's model of the core (:mod:`.emulate`) and compares its int8 outputs with host TFLite Micro's,
byte for byte. Nothing is written outside a temporary build folder and the cache of TFLite Micro
builds: the files come back in :attr:`Firmware.files` for the caller to save.
"""

from __future__ import annotations

import os
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..errors import FirmwareError
from . import emulate, link, toolchain

DEFAULT_INPUTS = 100
MAX_INPUT_BYTES = 1 << 21  # test inputs linked into the emulation image, at most


def cores() -> dict:
    with resources.files("tinydistill.firmware").joinpath("cores.toml").open("rb") as f:
        return tomllib.load(f)


def core_for(board) -> dict:
    """The board's core table of cores.toml, or a FirmwareError saying why no firmware can be built for it."""
    if board.kind != "mcu":
        raise FirmwareError(f"{board.name} is a Linux board: it runs the .tflite with LiteRT, there is no firmware to "
                            "build; pass a microcontroller with --board")
    table = cores()
    if board.core not in table:
        raise FirmwareError(f"{board.name} has a {board.core} core: the firmware stage builds for Arm Cortex-M cores "
                            f"({', '.join(table)}); for ESP32 boards use ESP-IDF with esp-tflite-micro")
    return {"name": board.core, **table[board.core]}


@dataclass
class Firmware:
    """What :func:`build_firmware` built, measured and ran. Sizes in integer bytes.

    Attributes:
        board, core: the board and its cores.toml table.
        library: the :class:`~.toolchain.Library` linked.
        deployable, image: the deployable and the emulation :class:`~.link.Image`.
        inputs: test inputs run; emulation: the :class:`~.emulate.Emulation`, or None with ``not_emulated``
            saying why; host: host TFLite Micro's int8 outputs on the same inputs.
        files: the build's files by name (ELFs, maps, linker scripts, sources, log) for the caller to save.
    """

    board: object
    core: dict
    library: object
    deployable: object
    image: object
    inputs: int
    host: np.ndarray
    emulation: object = None
    not_emulated: str | None = None
    files: dict = field(default_factory=dict)
    seconds: float = 0.0
    estimated_cycles: int = 0
    estimated_flash: int = 0
    stack_bytes: int = link.DEPLOY_STACK

    @property
    def agreement(self) -> float | None:
        """Fraction of test inputs whose int8 outputs on the emulated core equal host TFLite Micro's, every byte."""
        if self.emulation is None:
            return None
        return float(np.all(self.emulation.outputs == self.host, axis=1).mean())

    def report(self) -> dict:
        """The report.json ``firmware`` section (:func:`.report.report_section`)."""
        from .report import report_section

        return report_section(self)


def build_firmware(tflite: bytes, board, *, x_int8: np.ndarray | None = None, sources: dict | None = None,
                   tflm: str | None = None, inputs: int = DEFAULT_INPUTS, emulation: bool = True,
                   on_progress=None) -> Firmware:
    """Build the int8 model into Cortex-M firmware for ``board``, measure it, and run it under QEMU.

    Args:
        tflite: the int8 ``.tflite``.
        board: a :class:`~tinydistill.fitting.boards.Board` (a Cortex-M microcontroller).
        x_int8: test inputs as the model's own int8 values (N, *input shape); the first ``inputs`` are run.
            None: seeded random int8 inputs (enough to compare outputs byte for byte).
        sources: ``model_data.cc``, ``model_data.h`` and ``model_ops.h`` as ``compress`` wrote them (None:
            generated from ``tflite``, with the arena TFLite Micro measures).
        tflm: TFLite Micro sources (:func:`~.toolchain.locate_tflm`).
        inputs: how many test inputs the emulation image runs.
        emulation: run the image under QEMU (if QEMU models the core and is installed).
        on_progress: optional callable ``(stage, done, total)``.
    """
    t0 = time.perf_counter()
    core = core_for(board)
    tools = toolchain.find_toolchain()
    root = toolchain.locate_tflm(tflm)
    from ..fitting.runtime import tflm_run

    x = _test_inputs(tflite, x_int8, inputs)
    arena, host = tflm_run(tflite, x)
    sources = dict(sources) if sources else _sources(tflite, arena)
    lib = toolchain.build_library(root, core, tools, on_progress=on_progress)
    with tempfile.TemporaryDirectory(prefix="tinydistill-firmware-") as build:
        deployable, image, files = _link_both(lib, tools, build, core, board, sources, x, on_progress)
        fw = Firmware(board=board, core=core, library=lib, deployable=deployable, image=image, inputs=len(x),
                      host=host.reshape(len(x), -1), **_estimates(tflite, board))
        qemu = emulate.find_qemu()
        if not emulation:
            fw.not_emulated = "not asked for (--no-emulation)"
        elif not core["qemu_machine"]:
            fw.not_emulated = f"no QEMU machine models a {core['name']} (QEMU's micro:bit is a Cortex-M0)"
        elif qemu is None:
            fw.not_emulated = f"qemu-system-arm not found: {emulate.QEMU_INSTALL}"
        else:
            if on_progress:
                on_progress("emulate", 0, 1)
            fw.emulation = emulate.run(qemu, image.elf, core, len(x), timeout=300 + 2.0 * len(x))
            files["emulation.log"] = fw.emulation.log.encode()
            if on_progress:
                on_progress("emulate", 1, 1)
        fw.files = files
    for img in (deployable, image):  # the build folder is gone: the ELFs are known by their names in ``files``
        img.elf = os.path.basename(img.elf)
    fw.seconds = time.perf_counter() - t0
    return fw


def _estimates(tflite: bytes, board) -> dict:
    """What tinydistill estimates without a toolchain: cycles per inference and flash (model + runtime code)."""
    from ..fitting.fitcheck import runtime_memory
    from ..fitting.latency import estimate_latency
    from ..fitting.tflite_model import parse_tflite

    parsed = parse_tflite(tflite)
    return {"estimated_cycles": estimate_latency(parsed, board).cycles,
            "estimated_flash": len(tflite) + runtime_memory(parsed.op_names, board)[0]}


def _test_inputs(tflite: bytes, x_int8, n: int) -> np.ndarray:
    """Up to ``n`` int8 test inputs shaped like the model's input (at most :data:`MAX_INPUT_BYTES` of them)."""
    from ..fitting.tflite_model import parse_tflite

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise FirmwareError(f"`inputs` must be a whole number >= 1. Received: inputs={n!r}")
    shape = tuple(parse_tflite(tflite).input_shape[1:])
    size = int(np.prod(shape))
    n = min(n, max(1, MAX_INPUT_BYTES // size))
    if x_int8 is None:
        return np.random.default_rng(0).integers(-128, 128, size=(n,) + shape).astype(np.int8)
    x = np.asarray(x_int8)
    if x.dtype != np.int8 or x.ndim < 1 or int(np.prod(x.shape[1:])) != size:
        raise FirmwareError(f"test inputs must be int8 with {size} values each, as the model's input {shape}. "
                            f"Received: {x.dtype} {tuple(x.shape)}")
    return x[:n].reshape((-1,) + shape)


def _sources(tflite: bytes, arena: int) -> dict:
    from ..fitting.export import c_source, resolver_header
    from ..fitting.tflite_model import parse_tflite

    cc, h = c_source(tflite, arena_bytes=arena)
    return {"model_data.cc": cc, "model_data.h": h, "model_ops.h": resolver_header(parse_tflite(tflite).op_names)}


def _link_both(lib, tools, build, core, board, sources, x, on_progress):
    """Compile once, link the deployable image (the board's memory) and the emulation image (the QEMU machine's)."""
    if on_progress:
        on_progress("link", 0, 2)
    link.write_sources(build, sources, x)
    emulated = bool(core["qemu_machine"])  # no harness for a core no QEMU machine models
    link.compile_objects(lib, tools, build, core,
                         names=link.SOURCES if emulated else tuple(n for n in link.SOURCES if n != "harness.cc"))
    flash, ram = (core["flash_base"], board.flash_bytes), (core["ram_base"], board.ram_bytes)
    script = link.linker_script(lib, core["device"], flash=flash, ram=ram, stack=link.DEPLOY_STACK, heap=0)
    deployable = link.link(lib, tools, build, "deploy", main="deploy.o", script=script,
                           specs=["--specs=nano.specs", "--specs=nosys.specs"])
    if on_progress:
        on_progress("link", 1, 2)
    image = deployable
    if emulated:
        emu_flash = (core["flash_base"], max(board.flash_bytes, core["emulation_flash"]))
        emu_ram = (core["ram_base"], max(board.ram_bytes, core["emulation_ram"]))
        script = link.linker_script(lib, core["device"], flash=emu_flash, ram=emu_ram, stack=link.EMULATION_STACK,
                                    heap=link.EMULATION_HEAP)
        image = link.link(lib, tools, build, "emulation", main="harness.o", script=script, specs=["--specs=rdimon.specs"],
                          extra=("test_inputs.o",))
    if on_progress:
        on_progress("link", 2, 2)
    keep = [n for n in os.listdir(build) if n.endswith((".elf", ".map", ".ld", ".log", ".cc", ".h", ".S"))]
    files = {}
    for name in keep:
        with open(os.path.join(build, name), "rb") as f:
            files[name] = f.read()
    return deployable, image, files


GENERATED = ("model_data.cc", "model_data.h", "model_ops.h")


def load_folder(folder: str, n: int = DEFAULT_INPUTS) -> tuple[bytes, dict | None, np.ndarray | None, str]:
    """What :func:`build_firmware` needs from a ``compress`` output folder: the ``.tflite``, its generated C
    files (None if any is missing: they are generated anew), up to ``n`` int8 test inputs (None: random ones)
    and where they came from (``test_sample.npz``, else the synthetic inputs quantised)."""
    from ..fitting.ondevice import SAMPLE

    path = os.path.join(folder, "student.tflite")
    if not os.path.isfile(path):
        raise FirmwareError(f"{folder} has no student.tflite: pass a 'tinydistill compress' output folder")
    with open(path, "rb") as f:
        tflite = f.read()
    if tflite[4:8] != b"TFL3":
        raise FirmwareError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier): run compress again")
    sources = {}
    for name in GENERATED:
        if os.path.isfile(os.path.join(folder, name)):
            with open(os.path.join(folder, name), "rb") as f:
                sources[name] = f.read()
    sources = sources if len(sources) == len(GENERATED) else None
    x, origin = _folder_inputs(folder, SAMPLE, "x_int8"), SAMPLE
    if x is None:
        x, origin = _folder_inputs(folder, "synthetic.npz", "x"), "synthetic.npz (quantised)"
        if x is not None:
            from ..fitting.runtime import litert_interpreter, quantize_input

            x = quantize_input(np.asarray(x[:n], np.float32), litert_interpreter(tflite).get_input_details()[0])
    return tflite, sources, None if x is None else x[:n], origin if x is not None else "random int8 inputs"


def _folder_inputs(folder: str, name: str, key: str):
    """Array ``key`` of the folder's ``name`` (an untrusted .npz: never unpickled), or None if either is absent."""
    from ..fileio import read_npz

    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    return read_npz(path, FirmwareError, "run compress again", pick=lambda names: [key] if key in names else []).get(key)
