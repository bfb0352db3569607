"""Fuzz every kind of file tinydistill reads: mutate real files, run the command that reads them.

    python benchmarks/fuzz.py [--cases 1000] [--kinds tflite-check stats ...] [--timeout 120]

Seed files are real: the example MNIST teacher (as .h5, .keras and a SavedModel folder), its
statistics file, MNIST's IDX files and an .npz, an image folder and a CSV of MNIST digits, a board
profile, a student .tflite, its compress output folder and device bundle. Each case mutates one of them (bit flips,
truncation, random bytes, oversized header fields, wrong types inside a valid container) and runs
the CLI command that reads it, in a worker process that imports tinydistill once; output on file
descriptors 1 and 2 is captured with the command's, as a user would see it.

Verdicts: ``ok`` (exit 0, or `check`'s FAIL report: the mutation left a valid file), ``clean`` (exit 1 or 2 with exactly one
line, no partial output), ``multiline``, ``traceback`` (a traceback or an "internal error": an
exception nobody named), ``crash`` (the worker died: a native reader crashed the process), ``hang``
(no answer within the timeout). The table (cases and each verdict per kind) goes to
benchmarks/RESULTS.md. ``--sample N`` runs N cases per kind and prints the failures (the test suite
runs a small sample: tests/e2e/test_fuzz_sample.py).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = os.environ.get("TINYDISTILL_DATA", os.path.join(ROOT, "..", "shared", "data"))
TEACHER = os.path.join(ROOT, "examples", "mnist", "teacher.h5")
R = ["--input-range", "0,1"]

# kind -> (seed name in the seed folder, the command reading it: {f} the mutated file or folder, {s} the seeds)
KINDS = {
    "h5": ("teacher.h5", ["inspect", "{f}", "--json"]),
    "keras": ("teacher.keras", ["inspect", "{f}", "--json"]),
    "savedmodel": ("savedmodel", ["inspect", "{f}", "--json"]),
    "stats": ("teacher.stats.npz", ["inspect", "{s}/teacher.h5", "--stats", "{f}", "--json"]),
    "npz": ("data.npz", ["stats", "{s}/teacher.h5", "--data", "{f}", *R, "-o", "{o}/out.stats.npz", "--quiet"]),
    "idx": ("idx", ["stats", "{s}/teacher.h5", "--data", "{f}", *R, "-o", "{o}/out.stats.npz", "--quiet"]),
    "images": ("images", ["stats", "{s}/teacher.h5", "--data", "{f}", *R, "-o", "{o}/out.stats.npz", "--quiet"]),
    "csv": ("data.csv", ["stats", "{s}/teacher.h5", "--data", "{f}", *R, "-o", "{o}/out.stats.npz", "--quiet"]),
    "toml": ("board.toml", ["check", "{s}/student.tflite", "--board-file", "{f}"]),
    "tflite-check": ("student.tflite", ["check", "{f}", "--board", "nrf52840"]),
    "tflite-verify": ("student.tflite", ["verify", "{f}", "--data", "{s}/data.npz", *R]),
    "bundle": ("bundle", ["verify", "{f}"]),
    "folder": ("run", ["bundle", "{f}", "-o", "{o}/device.zip"]),
}


# ---------------------------------------------------------------- seed files

def make_seeds(folder: str) -> None:
    """The real files every case starts from."""
    from tinydistill import _compat
    from tinydistill.data import load_data

    os.makedirs(folder, exist_ok=True)
    shutil.copy(TEACHER, os.path.join(folder, "teacher.h5"))
    shutil.copy(TEACHER.replace(".h5", ".stats.npz"), os.path.join(folder, "teacher.stats.npz"))
    k = _compat.keras()
    model = k.models.load_model(TEACHER, compile=False)
    model.save(os.path.join(folder, "teacher.keras"))
    model.save(os.path.join(folder, "savedmodel"), save_format="tf")  # a Keras SavedModel folder
    ds = load_data(os.path.join(DATA, "mnist"), split="test")
    first = [int(np.flatnonzero(ds.y == c)[0]) for c in range(10)]  # every class, as statistics need
    keep = np.unique(np.concatenate([first, np.arange(50)]))
    x, y = ds.x[keep], ds.y[keep]
    np.savez(os.path.join(folder, "data.npz"), x=x, y=y)
    _write_idx(os.path.join(folder, "idx"), x, y)
    from PIL import Image

    three = [i for c in range(10) for i in np.flatnonzero(y == c)[:3]]  # three images of every class
    for i, (img, label) in enumerate(zip(x[three], y[three])):
        sub = os.path.join(folder, "images", f"digit{label}")
        os.makedirs(sub, exist_ok=True)
        Image.fromarray(img).save(os.path.join(sub, f"{i:03d}.{('png', 'jpg', 'bmp')[i % 3]}"))
    with open(os.path.join(folder, "data.csv"), "w") as f:
        f.write(",".join(f"p{i}" for i in range(784)) + ",label\n")
        for img, label in zip(x[three], y[three]):
            f.write(",".join(f"{v / 255:.3f}" for v in img.reshape(-1)) + f",{label}\n")
    shutil.copy(os.path.join(ROOT, "tinydistill", "fitting", "profiles", "nrf52840.toml"), os.path.join(folder, "board.toml"))
    out = os.path.join(folder, "run")
    subprocess.run([sys.executable, "-m", "tinydistill.cli", "compress", TEACHER, "--board", "nrf52840", "--stats",
                    os.path.join(folder, "teacher.stats.npz"), "--width", "0.5", "--inputs", "300", "--steps", "5",
                    "--epochs", "1", "--data", os.path.join(folder, "data.npz"), "--quiet", "-o", out],
                   check=True, capture_output=True)
    shutil.copy(os.path.join(out, "student.tflite"), os.path.join(folder, "student.tflite"))
    for name in ("student.keras", "report.png", "samples.png"):  # files no command reads back
        os.remove(os.path.join(out, name))
    subprocess.run([sys.executable, "-m", "tinydistill.cli", "bundle", out, "-o", os.path.join(folder, "bundle")],
                   check=True, capture_output=True)


def _write_idx(folder, x, y):
    import gzip

    os.makedirs(folder, exist_ok=True)
    head = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in x.shape)
    with gzip.open(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), "wb") as f:
        f.write(head + x.astype(np.uint8).tobytes())
    with gzip.open(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + len(y).to_bytes(4, "big") + y.astype(np.uint8).tobytes())


# ---------------------------------------------------------------- mutations

def _bytes_mutation(rng, data: bytes) -> tuple[bytes, str]:
    """One byte-level mutation, biased to the first kilobytes (headers, offsets, tables) half of the time."""
    b = bytearray(data)
    n = len(b)
    if n == 0:
        return bytes(rng.integers(0, 256, 64, dtype=np.uint8)), "random bytes"

    def pos():
        return int(rng.integers(0, min(n, 4096))) if rng.random() < 0.5 else int(rng.integers(0, n))

    kind = rng.choice(["flip", "truncate", "random", "oversize", "zero", "insert", "empty"], p=[.3, .15, .2, .15, .1, .08, .02])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 17))):
            i = pos()
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncate":
        b = b[:int(rng.integers(0, n))]
    elif kind == "random":
        i, m = pos(), int(rng.integers(1, 65))
        b[i:i + m] = bytes(rng.integers(0, 256, m, dtype=np.uint8))
    elif kind == "oversize":  # a length, count or offset field made huge
        i = pos() & ~3
        b[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xfe\xff\xff\xff"])
    elif kind == "zero":
        i, m = pos(), int(rng.integers(1, 257))
        b[i:i + m] = bytes(min(m, n - i))
    elif kind == "insert":
        i = pos()
        b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8))
    else:
        b = bytearray()
    return bytes(b), str(kind)


_WRONG = [lambda rng: np.array(["a", "b"]), lambda rng: np.zeros(0), lambda rng: np.float64(np.nan),
          lambda rng: np.full((3, 2), -1, np.int64), lambda rng: np.ones((2, 1000, 1000, 1), np.uint8)[:, :2],
          lambda rng: np.array([np.inf, -np.inf]), lambda rng: rng.normal(size=(5, 28, 28)).astype(np.float16),
          lambda rng: np.array(b"\x00\x01"), lambda rng: np.zeros((2, 2), complex)]


def _npz_mutation(rng, data: bytes) -> tuple[bytes, str]:
    """Wrong types inside a valid .npz: one array replaced, dropped or renamed, or a JSON header garbled."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - a broken seed: fall back to bytes
        return _bytes_mutation(rng, data)
    key = str(rng.choice(sorted(arrays)))
    what = rng.choice(["replace", "drop", "rename", "header"])
    if what == "replace":
        arrays[key] = _WRONG[int(rng.integers(len(_WRONG)))](rng)
    elif what == "drop":
        arrays.pop(key)
    elif what == "rename":
        arrays[key + "_x"] = arrays.pop(key)
    elif "header" in arrays:
        h = str(arrays["header"][()])
        i = int(rng.integers(0, len(h)))
        arrays["header"] = np.array(h[:i] + rng.choice(['"', "}", "null", "1e999", '{"a":', "[]", "\\u0000"]) + h[i + 1:])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), f"npz {what} {key}"


def _text_mutation(rng, text: str) -> tuple[str, str]:
    """Structured mistakes in a text file (TOML, CSV): wrong types, huge numbers, garbage, broken lines."""
    lines = text.split("\n")
    i = int(rng.integers(0, max(1, len(lines))))
    what = rng.choice(["number->text", "huge", "negative", "garbage", "dropline", "dupline", "unicode", "bom", "longline"])
    ln = lines[i] if lines else ""
    if what == "number->text":
        ln = "".join("x" if c.isdigit() else c for c in ln)
    elif what == "huge":
        ln = "".join("9" * 400 if c.isdigit() else c for c in ln)
    elif what == "negative":
        ln = ln.replace("= ", "= -").replace(",", ",-", 3)
    elif what == "garbage":
        ln = "".join(chr(int(c)) for c in rng.integers(0, 0x2FF, 40))
    elif what == "dropline":
        ln = None
    elif what == "dupline":
        lines.insert(i, ln)
    elif what == "unicode":
        ln = ln + "\u202e\ufffd\x00"
    elif what == "bom":
        lines[0] = "\ufeff" + lines[0]
    else:
        ln = ln + "," * 100000
    if ln is None:
        lines.pop(i) if lines else None
    elif what != "bom":
        lines[i] = ln
    return "\n".join(lines), f"text {what}"


def _mutate_file(rng, path: str) -> str:
    """Mutate ``path`` in place, by its kind; returns what was done."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    if name.endswith((".toml", ".csv")) and rng.random() < 0.6:
        text, what = _text_mutation(rng, data.decode("utf-8", "replace"))
        data = text.encode("utf-8", "surrogatepass")
    elif name.endswith(".npz") and rng.random() < 0.5:
        data, what = _npz_mutation(rng, data)
    elif name.endswith(".keras") and rng.random() < 0.5:
        data, what = _zip_member_mutation(rng, data)
    elif name.endswith(".h5") and rng.random() < 0.4:
        return _h5_config_mutation(rng, path)
    else:
        data, what = _bytes_mutation(rng, data)
    with open(path, "wb") as f:
        f.write(data)
    return f"{name}: {what}"


def _zip_member_mutation(rng, data: bytes) -> tuple[bytes, str]:
    """A .keras archive with one member's bytes mutated (config.json as JSON text, others as bytes)."""
    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
        members = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    except Exception:  # noqa: BLE001
        return _bytes_mutation(rng, data)
    name = str(rng.choice(sorted(members)))
    if name.endswith(".json"):
        text, what = _text_mutation(rng, members[name].decode("utf-8", "replace"))
        members[name] = text.encode("utf-8", "surrogatepass")
    else:
        members[name], what = _bytes_mutation(rng, members[name])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return out.getvalue(), f"member {name} {what}"


def _h5_config_mutation(rng, path: str) -> str:
    """The model_config JSON inside a valid HDF5 file given wrong types or values."""
    import h5py

    with h5py.File(path, "r+") as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            return "h5: no config"
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        cfg = json.loads(text)
        layers = cfg.get("config", {}).get("layers", [])
        if layers:
            layer = layers[int(rng.integers(len(layers)))]
            key = str(rng.choice(sorted(layer.get("config", {}) or {"name": 0})))
            values = ["x", -1, 10 ** 12, None, [], {"a": 1}, 1.5]
            layer.setdefault("config", {})[key] = values[int(rng.integers(len(values)))]
            what = f"layer {layer.get('class_name')} {key}"
        else:
            what = "no layers"
        if rng.random() < 0.2:
            cfg["class_name"] = str(rng.choice(["Functional", "Sequential", "Nope", ""]))
        f.attrs["model_config"] = json.dumps(cfg, default=str)
    return f"h5 config: {what}"


def mutate(rng, seeds: str, kind: str, work: str) -> tuple[str, str]:
    """A mutated copy of the kind's seed file or folder in ``work``; (its path, what was done)."""
    seed = os.path.join(seeds, KINDS[kind][0])
    target = os.path.join(work, os.path.basename(seed))
    if os.path.isdir(seed):
        shutil.copytree(seed, target)
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(target) for f in fs)
        victim = files[int(rng.integers(len(files)))]
        if rng.random() < 0.05:  # an empty file, a stray file or a missing one
            os.remove(victim)
            return target, f"removed {os.path.relpath(victim, target)}"
        return target, _mutate_file(rng, victim)
    shutil.copy(seed, target)
    return target, _mutate_file(rng, target)


# ---------------------------------------------------------------- running

def worker(conn) -> None:
    """Runs cases sent over ``conn``: (args, out folder) -> (exit code, output lines, exception)."""
    from click.testing import CliRunner

    from tinydistill.capture import capture_c_output
    from tinydistill.cli import main

    runner = CliRunner()
    while True:
        msg = conn.recv()
        if msg is None:
            return
        args = msg
        with capture_c_output() as native:
            res = runner.invoke(main, args, catch_exceptions=True)
        exc = None if res.exception is None or isinstance(res.exception, SystemExit) else repr(res.exception)[:300]
        conn.send((res.exit_code, res.output + native.text, exc))


def verdict(code, output: str, exc, out_dir: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    if exc is not None or "Traceback" in output or "internal error" in output:
        return "traceback"
    if code == 0 or (code == 1 and lines and lines[-1].startswith("FAIL:")):  # check: a valid model that does not fit
        return "ok"
    if code not in (1, 2):
        return "traceback"
    if len(lines) != 1:
        return "multiline"
    if os.listdir(out_dir):  # a failed command leaves nothing behind
        return "partial"
    return "clean"


class Pool:
    """One worker process, restarted after a crash or a hang."""

    def __init__(self):
        self.proc = None

    def start(self):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child,), daemon=True)
        self.proc.start()

    def run(self, args, timeout):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send(args)
        if not self.conn.poll(timeout):
            self.proc.kill()
            self.proc = None
            return "hang", None
        try:
            return "done", self.conn.recv()
        except (EOFError, ConnectionError):
            self.proc = None
            return "crash", None

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(10)


def run_kind(kind, seeds, cases, seed, timeout, failures) -> dict:
    counts = dict.fromkeys(("cases", "ok", "clean", "multiline", "traceback", "partial", "crash", "hang"), 0)
    pool = Pool()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as out:  # the unmutated seed must pass, or nothing is tested
        status, res = pool.run([a.format(f=os.path.join(seeds, KINDS[kind][0]), s=seeds, o=out)
                                for a in KINDS[kind][1]], timeout)
        if status != "done" or res[0] != 0:
            raise SystemExit(f"the {kind} seed itself fails: {status} {res}")
    rng = np.random.default_rng([seed, list(KINDS).index(kind)])
    t0 = time.time()
    for i in range(cases):
        with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
            path, what = mutate(rng, seeds, kind, work)
            out = os.path.join(work, "out")
            os.makedirs(out)
            args = [a.format(f=path, s=seeds, o=out) for a in KINDS[kind][1]]
            status, res = pool.run(args, timeout)
            v = status if status != "done" else verdict(*res, out)
            counts["cases"] += 1
            counts[v] += 1
            if v not in ("ok", "clean"):
                keep = os.path.join(failures, f"{kind}-{i}")
                shutil.copytree(work, keep, dirs_exist_ok=True)
                failures_log(failures, kind, i, what, args, v, res)
        if (i + 1) % 50 == 0:
            print(f"{kind}: {i + 1}/{cases} {time.time() - t0:.0f} s {counts}", flush=True)
    pool.close()
    counts["seconds"] = round(time.time() - t0)
    return counts


def failures_log(folder, kind, i, what, args, v, res):
    with open(os.path.join(folder, "failures.jsonl"), "a") as f:
        f.write(json.dumps({"kind": kind, "case": i, "mutation": what, "args": args, "verdict": v,
                            "exit": res[0] if res else None, "output": (res[1][-600:] if res else None),
                            "exception": res[2] if res else None}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds-dir", default=os.path.join(tempfile.gettempdir(), "tinydistill-fuzz-seeds"))
    ap.add_argument("--failures", default=os.path.join(tempfile.gettempdir(), "tinydistill-fuzz-failures"))
    ap.add_argument("--no-results", action="store_true", help="do not write benchmarks/RESULTS.md")
    a = ap.parse_args()
    if not os.path.isdir(a.seeds_dir):
        make_seeds(a.seeds_dir)
    os.makedirs(a.failures, exist_ok=True)
    rows = {}
    t0 = time.time()
    for kind in a.kinds:
        rows[kind] = run_kind(kind, a.seeds_dir, a.cases, a.seed, a.timeout, a.failures)
        print(kind, rows[kind], flush=True)
    if not a.no_results:
        write_results(rows, a, time.time() - t0)


def write_results(rows, a, seconds):
    from run import write_section

    lines = [" ".join(__doc__.split("\n\n")[2].split()), "", " ".join(__doc__.split("\n\n")[3].split()), "",
             "| kind | command | cases | ok (still valid) | clean (exit 1/2, one line) | multi-line | traceback | "
             "partial output | crash | hang | seconds |", "| --- | --- |" + " ---: |" * 9]
    for kind, c in rows.items():
        cmd = " ".join(KINDS[kind][1][:1] + [w.replace("{f}", "FILE").replace("{s}/", "").replace("{o}/", "")
                                             for w in KINDS[kind][1][1:] if w not in ("--quiet", "--json")])
        lines.append(f"| {kind} | `{cmd}` | {c['cases']:,} | {c['ok']:,} | {c['clean']:,} | {c['multiline']} | "
                     f"{c['traceback']} | {c['partial']} | {c['crash']} | {c['hang']} | {c['seconds']:,} |")
    write_section("Fuzzing every file kind tinydistill reads",
                  f"python benchmarks/fuzz.py --cases {a.cases} --timeout {a.timeout:g}", seconds, lines)


if __name__ == "__main__":
    main()
