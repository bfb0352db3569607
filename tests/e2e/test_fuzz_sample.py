"""A small sample of benchmarks/fuzz.py in the default suite: mutated files of every cheap kind, read by the CLI.

The full run (1,000 cases per kind, real seed files, crash and hang detection in a worker) is
``python benchmarks/fuzz.py``; its table is in benchmarks/RESULTS.md. Here the same mutations are applied to
the tiny test teacher's files, and each command must end cleanly: exit 0, or exit 1/2 with one line and
no partial output.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tinydistill.cli import main

from ..conftest import ROOT, toy_data

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
fuzz = pytest.importorskip("fuzz")

CASES = 4


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, tiny_h5, tiny_stats):
    from tinydistill.fitting.export import export_int8
    from tinydistill.teacher.model import load_teacher
    from tinydistill.teacher.stats import save_stats

    d = tmp_path_factory.mktemp("seeds")
    shutil.copy(tiny_h5, d / "teacher.h5")
    save_stats(tiny_stats, str(d / "teacher.stats.npz"))
    x, y = toy_data(60, seed=5)
    np.savez(d / "data.npz", x=x, y=y)
    (d / "data.csv").write_text(",".join(f"p{i}" for i in range(64)) + ",label\n"
                                + "\n".join(",".join(f"{v:.3f}" for v in img.reshape(-1)) + f",{c}"
                                            for img, c in zip(x, y)) + "\n")
    shutil.copy(os.path.join(ROOT, "tinydistill", "fitting", "profiles", "nrf52840.toml"), d / "board.toml")
    t = load_teacher(str(d / "teacher.h5"))
    (d / "student.tflite").write_bytes(export_int8(t.logits_model, x, samples=20))
    return d


KINDS = {  # kind -> (seed, command): the benchmark's commands on the tiny teacher's files
    "h5": ("teacher.h5", ["inspect", "{f}", "--json"]),
    "stats": ("teacher.stats.npz", ["inspect", "{s}/teacher.h5", "--stats", "{f}", "--json"]),
    "npz": ("data.npz", ["stats", "{s}/teacher.h5", "--data", "{f}", "--input-range", "0,1", "-o", "{o}/o.stats.npz"]),
    "csv": ("data.csv", ["stats", "{s}/teacher.h5", "--data", "{f}", "--input-range", "0,1", "-o", "{o}/o.stats.npz"]),
    "toml": ("board.toml", ["check", "{s}/student.tflite", "--board-file", "{f}"]),
    "tflite-check": ("student.tflite", ["check", "{f}", "--board", "nrf52840"]),
    "tflite-verify": ("student.tflite", ["verify", "{f}", "--data", "{s}/data.npz", "--input-range", "0,1"]),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_mutated_files_end_cleanly(kind, seeds, tmp_path, monkeypatch):
    seed_name, command = KINDS[kind]
    monkeypatch.setitem(fuzz.KINDS, kind, (seed_name, command))
    rng = np.random.default_rng([7, list(KINDS).index(kind)])
    for i in range(CASES):
        work = tmp_path / f"case{i}"
        work.mkdir()
        path, what = fuzz.mutate(rng, str(seeds), kind, str(work))
        out = work / "out"
        out.mkdir()
        args = [a.format(f=path, s=seeds, o=out) for a in command] + (["--quiet"] if command[0] == "stats" else [])
        res = CliRunner().invoke(main, args, catch_exceptions=True)
        exc = None if res.exception is None or isinstance(res.exception, SystemExit) else repr(res.exception)
        verdict = fuzz.verdict(res.exit_code, res.output, exc, str(out))
        assert verdict in ("ok", "clean"), (kind, what, verdict, res.output[-400:])
