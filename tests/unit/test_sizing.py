import os

import pytest

from tinydistill.errors import BudgetError, TinyDistillError
from tinydistill.fitting.boards import Board, load_board
from tinydistill.student.sizing import Budget, measure_width, size_student


def _board(**kw):
    base = dict(name="t", kind="mcu", core="cortex-m4f", clock_mhz=64, flash_bytes=1 << 20, ram_bytes=1 << 20,
                headroom=0.0)
    return Board(**{**base, **kw})


def test_measure_grows_with_width(tiny_teacher):
    small, big = measure_width(tiny_teacher, _board(), 0.25), measure_width(tiny_teacher, _board(), 1.0)
    assert small.params < big.params and small.model_bytes < big.model_bytes
    assert small.arena_bytes <= big.arena_bytes and small.latency_ms < big.latency_ms
    assert big.params == tiny_teacher.params


def test_largest_that_fits(tiny_teacher):
    b = _board()
    full = measure_width(tiny_teacher, b, 1.0)
    # a flash limit just below the full-width model forces the next width down, and says why
    r = size_student(tiny_teacher, b, Budget.for_board(b, max_flash=full.model_bytes - 1))
    assert r.width == 0.75 and "width 1 does not fit: flash" in r.bound_by and "--max-flash" in r.bound_by
    r = size_student(tiny_teacher, b, Budget.for_board(b))
    assert r.width == 1.0 and "search space" in r.bound_by


def test_latency_budget_binds(tiny_teacher):
    b = _board()
    full = measure_width(tiny_teacher, b, 1.0)
    r = size_student(tiny_teacher, b, Budget.for_board(b, max_latency_ms=full.latency_ms * 0.9))
    assert r.width < 1.0 and "latency" in r.bound_by


def test_impossible_budget(tiny_teacher):
    b = _board()
    with pytest.raises(BudgetError, match="even the smallest student .* arena .* > 16 B \\(--max-ram\\)"):
        size_student(tiny_teacher, b, Budget.for_board(b, max_ram=16))


def test_budget_validation():
    with pytest.raises(TinyDistillError, match="max_ram"):
        Budget.for_board(_board(), max_ram=-1)
    assert Budget.for_board(_board(kind="linux")).latency_ms == 20.0
    assert Budget.for_board(_board()).latency_ms == 100.0


def test_boards_choose_different_students(shared_data):
    """The issue's case: the shared LeNet-5 on an RP2040 and on a Raspberry Pi 4."""
    from tinydistill.teacher.model import load_teacher

    t = load_teacher(os.path.join(shared_data, "teachers", "mnist_lenet5.h5"))
    m0 = size_student(t, load_board("cortex-m0plus"), Budget.for_board(load_board("cortex-m0plus")))
    pi = size_student(t, load_board("raspberry-pi-4"), Budget.for_board(load_board("raspberry-pi-4")))
    assert m0.width < pi.width and "latency" in m0.bound_by


def test_default_latency_is_a_preference(tiny_teacher):
    b = _board(clock_mhz=0.001)  # so slow that nothing meets the default 100 ms
    r = size_student(tiny_teacher, b, Budget.for_board(b))
    assert r.width == 0.125 and "default latency budget" in r.bound_by
    with pytest.raises(BudgetError, match="--max-latency-ms"):
        size_student(tiny_teacher, b, Budget.for_board(b, max_latency_ms=100))
