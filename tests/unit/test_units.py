import sys

import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.units import format_bytes, parse_bytes


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024 ** 2, "3.0 MiB"),
                                     (-2048, "-2.0 KiB")])
def test_format(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("text, n", [("1KB", 1024), ("256 KiB", 262144), ("1.5MB", 1572864), ("4096", 4096),
                                     ("2k", 2048)])
def test_parse(text, n):
    assert parse_bytes(text) == n


def test_parse_rejects():
    with pytest.raises(TinyDistillError, match="256KB"):
        parse_bytes("lots")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited high-water mark is Linux's execve rule")
def test_peak_memory_is_the_process_own_not_its_parents():
    """A run started from a large process reports its own peak: getrusage's ru_maxrss survives execve, VmHWM does not."""
    import subprocess

    big = bytearray(300 * 2 ** 20)
    big[::4096] = b"\x01" * len(big[::4096])  # touch every page: 300 MiB resident in this (parent) process
    code = "from tinydistill.units import peak_memory_bytes as p; print(p())"
    peak = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0 < peak < 200 * 2 ** 20, peak
    del big
