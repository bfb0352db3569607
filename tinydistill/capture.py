"""Capturing what C code prints: TFLite Micro reports its arena only on stdout, TensorFlow chatters on stderr.

A leaf module (standard library only), so ``_compat``, ``export`` and the interpreters can all use it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


class CapturedOutput:
    """What C code wrote to stdout/stderr inside :func:`capture_c_output`."""

    text = ""


@contextlib.contextmanager
def capture_c_output():
    """Redirect the C-level stdout and stderr (file descriptors 1 and 2) into a buffer.

    TFLite Micro prints its arena only there, and TensorFlow / LiteRT print
    start-up chatter there that would break progress bars and JSON output.
    """
    captured = CapturedOutput()
    with tempfile.TemporaryFile() as tmp:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            captured.text = tmp.read().decode(errors="replace")
