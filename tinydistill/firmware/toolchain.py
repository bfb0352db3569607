"""The Arm GNU toolchain, TFLite Micro's sources, and TFLite Micro built for one core (cached).

TFLite Micro is built by its own Makefile (``microlite``, target ``cortex_m_generic``), the
way its maintainers build it, with object files written to a user cache folder instead of the
source tree; the compiler flags and include paths for the firmware's own files are asked from
the same Makefile (``print-CXXFLAGS`` ...), so the firmware is compiled exactly like the library.
A library is built once per (core, kernels, sources, compiler) and reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass

from ..errors import FirmwareError

TOOLS = ("gcc", "g++", "ar", "size")
INSTALL = ("install the Arm GNU toolchain: Debian/Ubuntu 'sudo apt-get install gcc-arm-none-eabi "
           "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib'; macOS 'brew install --cask gcc-arm-embedded'; "
           "Windows: the Arm GNU Toolchain installer from developer.arm.com; then put its bin folder on PATH")
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
ARCHIVE = "tflite-micro-src.tar.gz"
COMPLETE = "complete"  # marker of a finished library build in its cache folder
# where the sources are looked for when neither --tflm nor $TINYDISTILL_TFLM is given (beside a checkout)
DEFAULT_TFLM = os.path.join("..", "shared", "firmware")


def cache_root() -> str:
    """The user cache folder: $TINYDISTILL_CACHE, else $XDG_CACHE_HOME/tinydistill, else ~/.cache/tinydistill."""
    if os.environ.get("TINYDISTILL_CACHE"):
        return os.environ["TINYDISTILL_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tinydistill")


def find_toolchain() -> dict[str, str]:
    """Paths of arm-none-eabi-gcc, -g++, -ar and -size, or a FirmwareError saying how to install them."""
    tools = {t: shutil.which(f"arm-none-eabi-{t}") for t in TOOLS}
    missing = [f"arm-none-eabi-{t}" for t, p in tools.items() if p is None]
    if missing:
        raise FirmwareError(f"{', '.join(missing)} not found: {INSTALL}")
    return tools


def compiler_version(tools: dict) -> str:
    proc = subprocess.run([tools["gcc"], "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0].strip() if proc.stdout else "arm-none-eabi-gcc"


def locate_tflm(path: str | None = None) -> str:
    """The root of a TFLite Micro source tree: ``path``, else $TINYDISTILL_TFLM, else ../shared/firmware.

    ``path`` may be a tflite-micro checkout, a folder holding one (``tflite-micro/``) or its archive
    (``tflite-micro-src.tar.gz``), or such an archive itself; an archive is unpacked into the cache once.
    """
    given = path or os.environ.get("TINYDISTILL_TFLM") or DEFAULT_TFLM
    how = "--tflm" if path else ("$TINYDISTILL_TFLM" if os.environ.get("TINYDISTILL_TFLM") else "the default")
    for candidate in (given, os.path.join(given, "tflite-micro")):
        if os.path.isfile(os.path.join(candidate, MAKEFILE)):
            return os.path.abspath(candidate)
    archive = given if os.path.isfile(given) else os.path.join(given, ARCHIVE)
    if os.path.isfile(archive):
        return _unpack(archive)
    raise FirmwareError(f"no TFLite Micro sources at {given} ({how}): pass --tflm DIR, a tensorflow/tflite-micro "
                        f"checkout with its third-party downloads (or its {ARCHIVE}), or set TINYDISTILL_TFLM")


def _unpack(archive: str) -> str:
    """Unpack a TFLite Micro source archive into the cache (once per archive content); its tree's root."""
    digest = _file_digest(archive)
    dest = os.path.join(cache_root(), "tflm-src", digest[:16])
    root = os.path.join(dest, "tflite-micro")
    if os.path.isfile(os.path.join(root, MAKEFILE)):
        return root
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")  # no absolute paths, links out of the tree or device files
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FirmwareError(f"{archive} is not a readable TFLite Micro source archive ({exc}): pass --tflm with a "
                            "tflite-micro checkout instead") from None
    if not os.path.isfile(os.path.join(tmp, "tflite-micro", MAKEFILE)):
        shutil.rmtree(tmp, ignore_errors=True)
        raise FirmwareError(f"{archive} holds no tflite-micro/{MAKEFILE}: pass --tflm with a tflite-micro checkout")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return root


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: str) -> str:
    """A digest of the sources a library is built from: every file's path and content under tensorflow/ (the
    third-party downloads included) and signal/; build outputs (gen/) live beside them and are left out."""
    h = hashlib.sha256()
    for top in ("tensorflow", "signal"):
        for folder, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                path = os.path.join(folder, name)
                h.update(os.path.relpath(path, root).encode())
                if os.path.islink(path):  # the archive has links, some dangling: their target names the content
                    h.update(os.readlink(path).encode())
                    continue
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Library:
    """TFLite Micro built for one core, and how to compile and link code against it.

    Attributes:
        root: the source tree.
        archive: ``libtensorflow-microlite.a``.
        cxxflags, ccflags, includes: TFLite Micro's own flags for this core (includes absolute).
        optimization: its optimisation level for framework code (used for the firmware's own files).
        arch: TFLite Micro's ``TARGET_ARCH``; kernels: ``cmsis_nn`` or ``reference``.
        compiler: the compiler's version line; seconds: the build's time (0 when taken from the cache).
    """

    root: str
    archive: str
    cxxflags: tuple
    ccflags: tuple
    includes: tuple
    optimization: tuple
    arch: str
    kernels: str
    compiler: str
    seconds: float = 0.0

    @property
    def machine_flags(self) -> list[str]:
        """-mcpu, -mfpu, -mfloat-abi, -mthumb...: what the linker needs to pick the right libraries."""
        return [f for f in self.cxxflags if f.startswith("-m")]


def _make_args(tools: dict, arch: str, kernels: str, gendir: str) -> list[str]:
    args = ["make", "-f", MAKEFILE, "TARGET=cortex_m_generic", f"TARGET_ARCH={arch}", "BUILD_TYPE=release",
            f"TARGET_TOOLCHAIN_ROOT={os.path.dirname(tools['gcc'])}/", f"BASE_GENDIR={gendir}"]
    return args + ([f"OPTIMIZED_KERNEL_DIR={kernels}"] if kernels != "reference" else [])


def _make_env() -> dict:
    # the Makefile runs Python helpers while it parses: this interpreter (with numpy) first on PATH
    return {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}


def _query(root: str, args: list[str]) -> dict[str, list[str]]:
    """Variables and source lists as TFLite Micro's Makefile sees them for this target."""
    names = ("CXXFLAGS", "CCFLAGS", "INCLUDES", "CORE_OPTIMIZATION_LEVEL")
    proc = subprocess.run(args + ["-s"] + [f"print-{n}" for n in names] + ["list_library_sources",
                                                                          "list_third_party_sources"],
                          cwd=root, capture_output=True, text=True, env=_make_env())
    if proc.returncode != 0:
        line = next((ln for ln in proc.stderr.splitlines() if "rror" in ln), proc.stderr.strip()[-300:])
        raise FirmwareError(f"TFLite Micro's Makefile failed in {root}: {line.strip()}: is it a complete tflite-micro "
                            "tree with its third-party downloads?")
    out = {}
    for n in names:
        m = re.search(rf"^{n}=(.*)$", proc.stdout, re.M)
        out[n] = shlex.split(m.group(1)) if m else []
    listed = [ln for ln in proc.stdout.splitlines() if ln and "=" not in ln and not ln.startswith(" ")]
    out["sources"] = [w for ln in listed for w in ln.split()]
    return out


def build_library(root: str, core: dict, tools: dict, *, on_progress=None, jobs: int | None = None) -> Library:
    """TFLite Micro for ``core`` (a table of cores.toml), built by its Makefile into the cache, or taken from it."""
    arch, kernels = core["tflm_arch"], core["kernels"]
    compiler = compiler_version(tools)
    key = hashlib.sha256("\n".join([tree_digest(root), arch, kernels, compiler]).encode()).hexdigest()[:16]
    gendir = os.path.join(cache_root(), "tflm", f"{arch}-{kernels}-{key}")
    args = _make_args(tools, arch, kernels, gendir)
    q = _query(root, args)
    t0, seconds = time.perf_counter(), 0.0
    found = _archive(gendir)
    if found is None:
        found = _run_make(root, args, gendir, len(q["sources"]), on_progress, jobs)
        seconds = time.perf_counter() - t0
    includes = tuple(f"-I{os.path.join(root, f[2:])}" if f.startswith("-I") and not os.path.isabs(f[2:]) else f
                     for f in q["INCLUDES"])
    drop = {"-MD"}  # dependency files: the firmware's few files are always rebuilt
    return Library(root=root, archive=found, cxxflags=tuple(f for f in q["CXXFLAGS"] if f not in drop),
                   ccflags=tuple(f for f in q["CCFLAGS"] if f not in drop), includes=includes,
                   optimization=tuple(q["CORE_OPTIMIZATION_LEVEL"]) or ("-Os",), arch=arch, kernels=kernels,
                   compiler=compiler, seconds=seconds)


def _archive(gendir: str) -> str | None:
    """The cached library of a completed build (its marker written last), or None."""
    marker = os.path.join(gendir, COMPLETE)
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        path = f.read().strip()
    return path if os.path.isfile(path) else None


def _run_make(root, args, gendir, total, on_progress, jobs) -> str:
    """Run ``make microlite`` (a progress bar from the object files written so far); the archive's path."""
    shutil.rmtree(gendir, ignore_errors=True)  # an interrupted build starts over
    os.makedirs(gendir, exist_ok=True)
    log_path = os.path.join(gendir, "build.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args + [f"-j{jobs or os.cpu_count() or 1}", "microlite"], cwd=root, stdout=log,
                                stderr=subprocess.STDOUT, env=_make_env())
        while proc.poll() is None:
            time.sleep(1.0)
            if on_progress:
                done = sum(f.endswith(".o") for _, _, files in os.walk(gendir) for f in files)
                on_progress("build TFLite Micro", min(done, total), total)
    found = [os.path.join(folder, f) for folder, _, files in os.walk(gendir) for f in files
             if f == "libtensorflow-microlite.a"]
    if proc.returncode != 0 or not found:
        with open(log_path, errors="replace") as f:
            text = f.read()
        first = next((ln for ln in text.splitlines() if re.search(r"error[: ]", ln)), text.strip()[-300:])
        failed = os.path.join(os.path.dirname(gendir), os.path.basename(gendir) + ".failed.log")
        shutil.copy(log_path, failed)
        shutil.rmtree(gendir, ignore_errors=True)  # no half-built library is ever taken from the cache
        raise FirmwareError(f"building TFLite Micro failed: {first.strip()} (full log: {failed})")
    with open(os.path.join(gendir, COMPLETE), "w") as f:
        f.write(found[0])
    if on_progress:
        on_progress("build TFLite Micro", total, total)
    return found[0]
