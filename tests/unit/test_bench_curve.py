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
