"""Run the emulation image on QEMU's model of the board's core and read back what the harness printed.

``qemu-system-arm`` (system emulation: the user-mode ``qemu-arm`` aborts on bare-metal images) with
semihosting for the harness's output and ``-icount shift=0``: virtual time then advances by one
nanosecond per executed instruction, so SysTick counts instructions (calibrated in the harness by a
loop of known length). That is a count of executed instructions, not of cycles.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

import numpy as np

from ..errors import FirmwareError

QEMU_INSTALL = ("install QEMU's Arm system emulator: Debian/Ubuntu 'sudo apt-get install qemu-system-arm'; "
                "macOS 'brew install qemu'; Windows: the installer from qemu.org")


@dataclass
class Emulation:
    """What the harness printed under QEMU.

    Attributes:
        outputs: (inputs, output bytes) int8, the model's raw outputs per test input.
        arena_used_bytes: the arena TFLite Micro used on the target (32-bit pointers, its own allocations).
        instructions: executed instructions per inference (mean), from QEMU's instruction-counting clock.
        seconds: wall time of the emulator.
        log: what the harness printed.
    """

    outputs: np.ndarray
    arena_used_bytes: int
    instructions: float | None
    seconds: float
    log: str = ""


def find_qemu() -> str | None:
    return shutil.which("qemu-system-arm")


def run(qemu: str, elf: str, core: dict, n: int, *, timeout: float) -> Emulation:
    """Run ``elf`` on ``core``'s QEMU machine; the outputs of all ``n`` inputs, or a FirmwareError."""
    args = [qemu, "-M", core["qemu_machine"], "-cpu", core["qemu_cpu"], "-nographic", "-monitor", "none",
            "-serial", "null", "-semihosting-config", "enable=on,target=native",
            "-icount", "shift=0,align=off,sleep=off", "-kernel", elf]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"the firmware did not finish under {core['qemu_machine']} within {timeout:.0f} s "
                            f"({n} inputs): run fewer with --inputs") from None
    seconds = time.perf_counter() - t0
    return parse(proc.stdout, proc.returncode, proc.stderr, n, seconds)


def parse(stdout: str, returncode: int, stderr: str, n: int, seconds: float) -> Emulation:
    """The harness's lines (see harness.cc) as an :class:`Emulation`."""
    lines = stdout.splitlines()
    errors = [ln[2:] for ln in lines if ln.startswith("E ")]
    if errors or returncode != 0 or f"D {n}" not in lines:
        why = errors[0] if errors else (stderr.strip().splitlines() or [f"exit {returncode}"])[-1]
        raise FirmwareError(f"the firmware failed under QEMU: {why} (it printed {len(lines)} lines)")
    outputs, ticks, per_tick, arena = [], [], None, 0
    for ln in lines:
        head, *rest = ln.split()
        if head == "O":
            ticks.append(int(rest[1]))
            outputs.append(np.frombuffer(bytes.fromhex(rest[2]), np.int8))
        elif head == "C" and int(rest[0]) > 0:
            per_tick = int(rest[1]) / int(rest[0])
        elif head == "A":
            arena = int(rest[0])
    instructions = float(np.mean(ticks)) * per_tick if per_tick and ticks else None
    return Emulation(outputs=np.stack(outputs), arena_used_bytes=arena, instructions=instructions, seconds=seconds,
                     log=stdout)
