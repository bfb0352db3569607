"""The firmware stage's pieces that need no toolchain: linker maps, linker errors, QEMU output, cores, sources.

The full build (TFLite Micro, link, QEMU) is in tests/e2e/test_firmware.py, marked ``firmware``
(``make firmware-check``).
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest

from tinydistill.errors import FirmwareError
from tinydistill.firmware import _test_inputs, core_for, emulate, link, toolchain
from tinydistill.fitting.boards import load_board

MAP = """Archive member included to satisfy reference by file (symbol)

Linker script and memory map

LOAD startup.o
                0x00000000                        __ROM_BASE = 0x0

.text           0x00000000     0x1000
 *(.vectors)
 .vectors       0x00000000      0x100 startup.o
                0x00000000                __Vectors
 .text._ZN6tflite16MicroInterpreter6InvokeEv
                0x00000100      0x400 /cache/lib/libtensorflow-microlite.a(micro_interpreter.o)
                0x00000100                _ZN6tflite16MicroInterpreter6InvokeEv
 .text.main     0x00000500       0x40 deploy.o
 .text.memcpy   0x00000540       0x20 /usr/lib/arm-none-eabi/lib/libc_nano.a(libc_a-memcpy.o)
 *fill*         0x00000560        0x4
 .rodata.g_model
                0x00000570      0x800 model_data.o
.ARM.extab
 *(.ARM.extab*)
.data           0x20000000       0x10 load address 0x00000d70
 .data.x        0x20000000       0x10 /cache/lib/libtensorflow-microlite.a(micro_log.o)
.bss            0x20000010      0x210
 .bss._ZN12_GLOBAL__N_112tensor_arenaE
                0x20000010      0x200 deploy.o
 .bss.y         0x20000210       0x10 deploy.o
.heap           0x20000220        0x0
.stack          0x2003f000     0x1000
.debug_info     0x00000000     0x9999
 .debug_info    0x00000000     0x9999 deploy.o
"""


def test_map_shares_attribute_every_input_section_to_its_owner():
    s = link.map_shares(MAP, "deploy.o")
    assert s["model"] == {"flash": 0x800, "ram": 0}
    assert s["tflite_micro"] == {"flash": 0x400 + 0x10, "ram": 0x10}  # .data: its initial values in flash too
    assert s["application"] == {"flash": 0x40, "ram": 0x10}
    assert s["arena"] == {"flash": 0, "ram": 0x200}
    assert s["c_runtime"] == {"flash": 0x100 + 0x20, "ram": 0}  # startup and libc; fills and debug sections not counted
    assert s["stack_heap"] == {"flash": 0, "ram": 0x1000}


def test_linker_overflow_names_the_region_the_section_and_by_how_much():
    text = ("arm-none-eabi/bin/ld: deploy.elf section `.text' will not fit in region `FLASH'\n"
            "arm-none-eabi/bin/ld: region `FLASH' overflowed by 5120 bytes\ncollect2: error: ld returned 1 exit status")
    msg = link._overflow(text)
    assert "flash overflowed by 5,120 bytes (section .text)" in msg and "--width" in msg
    assert link._overflow("undefined reference to `foo'") is None


def test_link_failure_is_one_line_with_the_first_error_and_the_log(tmp_path):
    log = tmp_path / "build.log"
    with pytest.raises(FirmwareError, match=r"compiling x.cc failed: .*error.*full log"):
        link._run(["sh", "-c", "echo 'x.cc:1:1: error: boom' >&2; exit 1"], str(tmp_path), str(log), "compiling x.cc")
    assert "boom" in log.read_text()


def test_linker_script_sets_memory_stack_and_heap(tmp_path):
    dev = tmp_path / "tensorflow/lite/micro/tools/make/downloads/cmsis/Cortex_DFP/Device/ARMCM4/Config"
    dev.mkdir(parents=True)
    (dev / "ARMCM4_gcc.ld").write_text("__ROM_BASE = 0x00000000;\n__ROM_SIZE = 0x00040000;\n__RAM_BASE = 0x20000000;\n"
                                       "__RAM_SIZE = 0x00020000;\n__STACK_SIZE = 0x00000400;\n__HEAP_SIZE  = 0x00000C00;\n")

    class Lib:
        root = str(tmp_path)

    text = link.linker_script(Lib, "ARMCM4", flash=(0, 1 << 20), ram=(0x20000000, 256 << 10), stack=4096, heap=0)
    assert "__ROM_SIZE = 0x00100000;" in text and "__RAM_SIZE = 0x00040000;" in text
    assert "__STACK_SIZE = 0x00001000;" in text and "__HEAP_SIZE = 0x00000000;" in text
    (dev / "ARMCM4_gcc.ld").write_text("MEMORY {}\n")
    with pytest.raises(FirmwareError, match="does not set __ROM_BASE"):
        link.linker_script(Lib, "ARMCM4", flash=(0, 1), ram=(0, 1), stack=1, heap=0)


def test_qemu_output_is_parsed_into_outputs_arena_and_instructions():
    out = "C 50000 2000000\nA 5732\nO 0 100 80ff\nO 1 300 7f00\nD 2\n"
    emu = emulate.parse(out, 0, "", 2, 0.5)
    np.testing.assert_array_equal(emu.outputs, np.array([[-128, -1], [127, 0]], np.int8))
    assert emu.arena_used_bytes == 5732
    assert emu.instructions == pytest.approx(200 * 40)  # 40 instructions per SysTick tick
    with pytest.raises(FirmwareError, match="AllocateTensors failed"):
        emulate.parse("C 1 2\nE AllocateTensors failed\n", 1, "", 2, 0.1)
    with pytest.raises(FirmwareError, match="failed under QEMU"):
        emulate.parse("O 0 1 00\n", 0, "", 2, 0.1)  # stopped before all inputs


def test_cores_cortex_m_only_with_a_reason_for_the_others():
    assert core_for(load_board("nrf52840"))["qemu_machine"] == "mps2-an386"
    assert core_for(load_board("rp2040"))["qemu_machine"] == ""  # built and measured, not emulated
    assert core_for(load_board("rp2040"))["kernels"] == "reference"
    with pytest.raises(FirmwareError, match="Linux board"):
        core_for(load_board("raspberry-pi-4"))
    with pytest.raises(FirmwareError, match="xtensa-lx6 core.*ESP-IDF"):
        core_for(load_board("esp32"))


def test_missing_toolchain_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    with pytest.raises(FirmwareError, match=r"arm-none-eabi-gcc.*not found.*apt-get install gcc-arm-none-eabi.*brew"):
        toolchain.find_toolchain()


def test_tflm_sources_from_a_folder_an_archive_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYDISTILL_TFLM", raising=False)
    with pytest.raises(FirmwareError, match="no TFLite Micro sources at .*nowhere.*--tflm"):
        toolchain.locate_tflm(str(tmp_path / "nowhere"))
    tree = tmp_path / "src" / "tflite-micro"
    (tree / os.path.dirname(toolchain.MAKEFILE)).mkdir(parents=True)
    (tree / toolchain.MAKEFILE).write_text("all:\n")
    assert toolchain.locate_tflm(str(tmp_path / "src")) == str(tree)
    archive = tmp_path / "dist" / toolchain.ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="tflite-micro")
    root = toolchain.locate_tflm(str(archive.parent))
    assert root.startswith(str(tmp_path / "cache")) and os.path.isfile(os.path.join(root, toolchain.MAKEFILE))
    assert toolchain.locate_tflm(str(archive)) == root  # unpacked once
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(FirmwareError, match="not a readable TFLite Micro source archive"):
        toolchain.locate_tflm(str(bad))
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(FirmwareError, match="not a readable"):
        toolchain.locate_tflm(str(hostile))
    assert not (tmp_path / "cache" / "escape.txt").exists()


def test_test_inputs_are_checked_against_the_model_input(monkeypatch):
    class Parsed:
        input_shape = (1, 4, 4, 1)

    monkeypatch.setattr("tinydistill.fitting.tflite_model.parse_tflite", lambda b: Parsed)
    x = _test_inputs(b"", np.zeros((5, 16), np.int8), 3)
    assert x.shape == (3, 4, 4, 1)
    assert _test_inputs(b"", None, 2).dtype == np.int8
    with pytest.raises(FirmwareError, match="int8 with 16 values"):
        _test_inputs(b"", np.zeros((5, 16), np.float32), 3)
    with pytest.raises(FirmwareError, match="`inputs` must be a whole number"):
        _test_inputs(b"", None, 0)
