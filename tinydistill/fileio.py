"""Writing files and folders so that no half-written file survives a crash (temp file or folder, then rename)."""

from __future__ import annotations

import os
import shutil
import tempfile

from .errors import OutputError


def atomic_write(path: str, data: bytes) -> None:
    """Write bytes to ``path`` so that no half-written file can survive a crash."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_output_dir(out: str) -> None:
    """Fail before any work if the output folder cannot be created or written."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"output {out} exists and is a file: pass a folder with -o")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, "report.json")):
        raise OutputError(f"output folder {out} is not empty and holds no earlier tinydistill result: "
                          "pass a new or empty folder with -o")
    parent = os.path.dirname(os.path.abspath(out))
    probe_dir = out if os.path.isdir(out) else parent
    if not os.path.isdir(probe_dir):
        raise OutputError(f"cannot create {out}: folder {parent} does not exist")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {probe_dir}: permission denied; pass a writable folder with -o")


def write_folder(out: str, files: dict) -> None:
    """Write every file into a temporary sibling folder, then move them into ``out``.

    A crash or Ctrl-C leaves either the previous complete result or the new
    one, never a half-written file.
    """
    parent = os.path.dirname(os.path.abspath(out))
    try:
        tmp = tempfile.mkdtemp(dir=parent, prefix=".tinydistill-")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror}; pass a writable folder with -o") from None
    try:
        for name, writer in files.items():
            path = os.path.join(tmp, name)
            if isinstance(writer, (bytes, str)):
                with open(path, "wb") as f:
                    f.write(writer.encode() if isinstance(writer, str) else writer)
            else:
                writer(path)
        if not os.path.exists(out):
            os.rename(tmp, out)
            return
        for name in files:
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    except OSError as exc:
        raise OutputError(f"cannot write the results to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_npz(path: str, error, fix: str, pick=None) -> dict:
    """The arrays of an untrusted ``.npz`` (never unpickling), or ``error`` with one line ending in ``fix``.

    Args:
        path: the file.
        error: the :class:`~tinydistill.errors.TinyDistillError` subclass to raise.
        fix: what the user should do, e.g. "pass an .npz with x and y".
        pick: optional callable from the archive's names to the names to read (an error of its
            own, e.g. a missing array, passes through); default: all.
    """
    import zipfile
    import zlib

    import numpy as np

    with open(path, "rb") as f:
        if f.read(2) != b"PK":
            raise error(f"cannot read {path}: not an .npz archive; {fix}")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = pick(list(z.files)) if pick else z.files
            return {k: z[k] for k in names}
    except error:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise error(f"{path} holds pickled objects, which tinydistill never loads (they can run code): {fix}") from None
        raise error(f"cannot read {path} as .npz ({exc}): {fix}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise error(f"cannot read {path} as .npz: it is corrupt or truncated ({exc}); {fix}") from None
    except Exception as exc:  # noqa: BLE001 - numpy parses each array's header text: a damaged one fails many ways
        raise error(f"cannot read {path} as .npz: it is corrupt ({type(exc).__name__}: {str(exc)[:80]}); {fix}") from None
