"""The quality-vs-time curve of ``benchmarks/run.py`` is drawn from the whole natural-0.7 table, so rows re-measured
alone (``--rows``) are drawn with those kept from earlier runs."""
from __future__ import annotations

import os
import sys

import pytest

from ..conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
bench = pytest.importorskip("run")

SECTION = """## Natural images: CIFAR-10 ResNet-8 -> width 0.7 (about half the parameters), test_q75

Re-measured with `--rows 'effort 0.5'`: engine from BN, effort 0.5. The other rows are from the run above.

| method | accuracy (mean) | per seed | seconds per run (mean) |
| --- | ---: | --- | ---: |
| real-data KD | 74.10 % | 74.10 | 2,400 |
| engine from BN, effort 0.25 | 58.97 % | 58.97 | 310 |
| engine from BN statistics (generator, defaults) | 66.08 % | 66.08, 66.10 | 1,214 |
| engine from BN, effort 0.5 | 60.98 % | 60.98 | 605 |
"""


def test_table_rows_reads_every_row_of_a_section():
    rows = bench.table_rows(SECTION)
    assert rows[0] == ("real-data KD", 74.10, 2400.0)
    assert ("engine from BN statistics (generator, defaults)", 66.08, 1214.0) in rows
    assert len(rows) == 4


def test_curve_draws_the_effort_rows_and_the_defaults_row(tmp_path, monkeypatch):
    drawn = []
    import matplotlib.axes

    real_plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, x, y, *a, **k: drawn.append((x, y)) or
                        real_plot(self, x, y, *a, **k))
    path = bench.quality_vs_time(bench.table_rows(SECTION), str(tmp_path / "curve.png"))
    assert path and os.path.getsize(path) > 1000
    # in order of minutes: effort 0.25, 0.5, 1 (the defaults row); the real-data row is not an effort
    (minutes, accs), = drawn
    assert accs == [58.97, 60.98, 66.08]
    assert minutes == pytest.approx([310 / 60, 605 / 60, 1214 / 60])
    assert bench.quality_vs_time(bench.table_rows(SECTION)[:2], str(tmp_path / "none.png")) is None


def test_a_re_measured_row_replaces_its_old_line_and_a_new_row_is_added():
    class Args:
        rows, seeds, first_seed, note = ["effort 0.5", "effort 4"], 1, 0, ""

    old = ("## T\n\nCommand: x  \nTeacher: t.h5, 1 parameters.\n\n" + SECTION.split("\n\n", 2)[2]
           + "\nProse after the table.\n")
    new = ["| engine from BN, effort 0.5 | 61.00 % | 61.00 | 600 |", "| engine from BN, effort 4 | 70.00 % | 70.00 | 4,800 |"]
    results = [("engine from BN, effort 0.5", [0.61], [600]), ("engine from BN, effort 4", [0.70], [4800])]
    merged = "\n".join(bench._merge_rows(old, new, results, Args, "abc1234"))
    rows = dict((n, a) for n, a, _ in bench.table_rows(merged))
    assert rows["engine from BN, effort 0.5"] == 61.0 and rows["engine from BN, effort 4"] == 70.0
    assert rows["engine from BN, effort 0.25"] == 58.97 and len(rows) == 5
    assert "at commit abc1234" in merged and merged.count("effort 0.5 |") == 1
    # the new row joins the table, before the prose that follows it
    assert merged.index("effort 4 |") < merged.index("Prose after the table.")
    assert "| engine from BN, effort 0.5 | 61.00 % | 61.00 | 600 |\n| engine from BN, effort 4 |" in merged
    assert "--seeds 1` at commit" in merged
    # a later seed measured alone (--first-seed) says so in the note
    Args.first_seed = 1
    assert "--seeds 1 --first-seed 1` at commit" in "\n".join(bench._merge_rows(old, new, results, Args, "abc1234"))


def test_the_speed_suite_times_its_items_in_a_new_order_every_round():
    items = list("abcde")
    orders = [bench._round_order(items, r) for r in range(5)]
    assert all(sorted(o) == items for o in orders)
    firsts, lasts = [o[0] for o in orders], [o[-1] for o in orders]
    assert max(map(firsts.count, items)) <= 2 and max(map(lasts.count, items)) <= 2
    # each is timed at three or more places in the round, after more than one other item
    assert all(len({o.index(i) for o in orders}) >= 3 for i in items)
    assert all(len({o[o.index(i) - 1] for o in orders if o.index(i)}) >= 2 for i in items)
    assert bench._round_order(["bare", "engine"], 0)[0] == "bare" and bench._round_order(["bare", "engine"], 1)[0] == "engine"
