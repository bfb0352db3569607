"""The firmware stage end to end: TFLite Micro built for a Cortex-M4, the shipped MNIST student linked, run
under QEMU and compared with host TFLite Micro byte for byte.

Marked ``firmware`` (``make firmware-check``; not in ``make test``): the first TFLite Micro build takes several
minutes. Skips with its reason where the toolchain, QEMU or TFLite Micro's sources are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from tinydistill.cli import main
from tinydistill.firmware import toolchain

pytestmark = pytest.mark.firmware
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def prerequisites():
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                    "libstdc++-arm-none-eabi-newlib qemu-system-arm)")
    try:
        return toolchain.locate_tflm(os.environ.get("TINYDISTILL_TFLM") or os.path.join(ROOT, "..", "shared", "firmware"))
    except Exception as exc:  # noqa: BLE001 - the reason is the skip message
        pytest.skip(f"TFLite Micro sources not found: {exc}")


@pytest.fixture(scope="module")
def mnist_student(tmp_path_factory, shared_data):
    out = str(tmp_path_factory.mktemp("fw") / "out")
    ex = os.path.join(ROOT, "examples", "mnist")
    res = CliRunner().invoke(main, ["compress", os.path.join(ex, "teacher.h5"), "--board", "nrf52840", "--stats",
                                    os.path.join(ex, "teacher.stats.npz"), "--width", "0.5", "--inputs", "500",
                                    "--steps", "5", "--epochs", "1", "--data", os.path.join(shared_data, "mnist"),
                                    "--quiet", "-o", out])
    assert res.exit_code == 0, res.output
    return out


def test_firmware_builds_measures_and_runs_bit_exact(prerequisites, mnist_student):
    res = CliRunner().invoke(main, ["firmware", mnist_student, "--board", "nrf52840", "--tflm", prerequisites,
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    with open(os.path.join(mnist_student, "report.json")) as f:
        fw = json.load(f)["firmware"]
    emu = fw["emulation"]
    assert emu["run"] and emu["agreement"] == 1.0 and emu["inputs"] == 100 and emu["outputs_identical"] == 100
    assert emu["instructions_per_inference"] > 100_000
    elf = os.path.join(mnist_student, "firmware", "emulation.elf")
    size = subprocess.run(["arm-none-eabi-size", elf], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in size.splitlines()[-1].split()[:3])
    assert fw["image"]["flash_bytes"] == text + data and fw["image"]["ram_bytes"] == data + bss
    dep = fw["deployable"]
    assert sum(v["flash"] for v in dep["shares"].values()) == dep["flash_bytes"]
    assert dep["shares"]["model"]["flash"] >= os.path.getsize(os.path.join(mnist_student, "student.tflite"))
    assert dep["shares"]["arena"]["ram"] > 0 and dep["flash_bytes"] < fw["image"]["flash_bytes"]
    with open(os.path.join(mnist_student, "report.md")) as f:
        md = f.read()
    assert "**measured** from the linked firmware" in md and "*estimate*" in md and "100 of 100 test inputs" in md
    qemu = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor", "none",
                           "-serial", "null", "-semihosting-config", "enable=on,target=native", "-kernel", elf],
                          capture_output=True, text=True, timeout=120)
    assert qemu.returncode == 0 and qemu.stdout.splitlines()[-1] == "D 100"


def test_a_firmware_that_does_not_fit_says_which_section_and_by_how_much(prerequisites, mnist_student, tmp_path):
    board = tmp_path / "tiny.toml"
    board.write_text('name = "tiny"\nkind = "mcu"\ncore = "cortex-m4f"\nclock_mhz = 64\nflash_bytes = 32768\n'
                     "ram_bytes = 65536\n")
    res = CliRunner().invoke(main, ["firmware", mnist_student, "--board-file", str(board), "--tflm", prerequisites,
                                    "--no-emulation", "--quiet"])
    assert res.exit_code == 1
    assert "does not fit the board: flash overflowed by" in res.output and "section .text" in res.output
