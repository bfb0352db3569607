"""Byte sizes: integers everywhere, formatted only when printed."""

from __future__ import annotations

import re
import sys

from .errors import TinyDistillError

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024 ** 2, "MB": 1024 ** 2, "MIB": 1024 ** 2,
          "G": 1024 ** 3, "GB": 1024 ** 3, "GIB": 1024 ** 3}


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as embedded toolchains report memory)."""
    sign = "-" if n < 0 else ""
    n = abs(int(n))
    if n < 1024:
        return f"{sign}{n} B"
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{sign}{n / size:,.1f} {unit}"
    return f"{sign}{n} B"  # pragma: no cover


def parse_bytes(text: str) -> int:
    """'256KB' / '1.5 MiB' / '4096' -> bytes (K = 1024)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise TinyDistillError(f"size must be a number with an optional unit such as 256KB or 1MB. Received: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def peak_memory_bytes() -> int | None:
    """The process's peak resident memory so far (its high-water mark), in bytes; None where the platform does not
    say (Windows has no ``resource`` module).

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's own memory:
    ``getrusage``'s ``ru_maxrss`` is kept across ``execve``, so a run started from a large process (a notebook, a
    benchmark that has loaded models) would report its parent's peak (the speed suite's LeNet-5 runs read 2.66 GiB,
    their parent's, against about 1 GiB of their own)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
