"""Size the student to the board: the largest width whose int8 flash, measured arena and latency fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BudgetError, TinyDistillError
from ..units import format_bytes

# Width multipliers tried, largest first. Parameters shrink roughly as width**2.
WIDTHS = (1.0, 0.75, 0.5, 0.375, 0.25, 0.1875, 0.125)


@dataclass
class Budget:
    """Limits a student must meet, integer bytes and milliseconds (None: no limit)."""

    flash_bytes: int
    ram_bytes: int
    latency_ms: float | None = None
    sources: dict = field(default_factory=dict)  # which option set each limit, for messages
    latency_is_default: bool = False  # the board's default budget: a preference, not a hard limit

    @classmethod
    def for_board(cls, board, *, max_flash=None, max_ram=None, max_latency_ms=None) -> Budget:
        src = {"flash": f"{board.name} flash after headroom", "ram": f"{board.name} RAM after headroom",
               "latency": f"{board.name} default latency budget" if max_latency_ms is None else "--max-latency-ms"}
        flash, ram = board.flash_budget, board.ram_budget
        if max_flash is not None and max_flash < flash:
            flash, src["flash"] = int(max_flash), "--max-flash"
        if max_ram is not None and max_ram < ram:
            ram, src["ram"] = int(max_ram), "--max-ram"
        for name, v in (("max_flash", max_flash), ("max_ram", max_ram), ("max_latency_ms", max_latency_ms)):
            if v is not None and v <= 0:
                raise TinyDistillError(f"`{name}` must be > 0. Received: {name}={v}")
        latency = board.latency_budget if max_latency_ms is None else float(max_latency_ms)
        return cls(flash_bytes=flash, ram_bytes=ram, latency_ms=latency, sources=src,
                   latency_is_default=max_latency_ms is None)

    def hard(self) -> Budget:
        """The limits that must hold whatever the preference: memory, and latency only if the user set it."""
        return Budget(self.flash_bytes, self.ram_bytes, None if self.latency_is_default else self.latency_ms,
                      self.sources)


@dataclass
class Candidate:
    width: float
    params: int
    model_bytes: int
    arena_bytes: int
    latency_ms: float

    def violations(self, budget: Budget) -> list[str]:
        out = []
        if self.model_bytes > budget.flash_bytes:
            out.append(f"flash {format_bytes(self.model_bytes)} > {format_bytes(budget.flash_bytes)} "
                       f"({budget.sources['flash']})")
        if self.arena_bytes > budget.ram_bytes:
            out.append(f"arena {format_bytes(self.arena_bytes)} > {format_bytes(budget.ram_bytes)} "
                       f"({budget.sources['ram']})")
        if budget.latency_ms is not None and self.latency_ms > budget.latency_ms:
            out.append(f"latency {self.latency_ms:,.1f} ms > {budget.latency_ms:g} ms ({budget.sources['latency']})")
        return out


@dataclass
class SizingResult:
    width: float
    chosen: Candidate
    bound_by: str
    tried: list


def measure_width(teacher, board, width: float) -> Candidate:
    """Build the student at ``width`` and measure its int8 size, TFLite Micro arena and latency.

    The weights are untrained: sizes, the arena and the MAC count do not depend on their values.
    """
    from ..fitting.export import export_int8
    from ..fitting.fitcheck import check
    from .design import design_student, student_params, with_output_activation

    model = with_output_activation(design_student(teacher, width=width), teacher)
    # Untrained narrow layers can be dead (all-zero after ReLU), which quantises to a
    # zero scale that TFLite Micro cannot run. Sizes do not depend on the values, so
    # give every bias and BN offset a small positive value to keep activations alive.
    for w in model.weights:
        if w.name.split("/")[-1].split(":")[0] in ("bias", "beta"):
            w.assign(np.full(w.shape, 0.1, np.float32))
    calib = np.random.default_rng(0).uniform(0, 1, (4,) + tuple(teacher.input_shape)).astype(np.float32)
    res = check(export_int8(model, calib, samples=4), board)
    return Candidate(width=width, params=student_params(model, teacher), model_bytes=res.model_bytes,
                     arena_bytes=res.arena_bytes, latency_ms=res.latency_ms)


def size_student(teacher, board, budget: Budget, *, widths=WIDTHS, on_progress=None) -> SizingResult:
    """The largest width in ``widths`` whose student meets ``budget``, and what bound the choice.

    Raises:
        BudgetError: even the smallest width does not fit; names the limit and the fix.
    """
    tried = []
    for i, w in enumerate(sorted(widths, reverse=True)):
        cand = measure_width(teacher, board, w)
        tried.append(cand)
        if on_progress:
            on_progress(i + 1, len(widths))
        if not cand.violations(budget):
            if on_progress:  # the search is over: the bar ends here, not at the last width
                on_progress(len(widths), len(widths))
            if len(tried) == 1:
                why = f"the search space: width {w:g} is the largest tried, and it fits"
            else:
                why = f"width {tried[-2].width:g} does not fit: " + "; ".join(tried[-2].violations(budget))
            return SizingResult(width=w, chosen=cand, bound_by=why, tried=tried)
    smallest = tried[-1]
    if budget.latency_is_default and not smallest.violations(budget.hard()):
        # only the default latency preference is missed: take the fastest student that fits in memory
        why = (f"the default latency budget: no width meets {budget.latency_ms:g} ms on {board.name}, so the "
               f"fastest, width {smallest.width:g} ({smallest.latency_ms:,.1f} ms), was taken; "
               "set --max-latency-ms to make latency a hard limit")
        return SizingResult(width=smallest.width, chosen=smallest, bound_by=why, tried=tried)
    raise BudgetError(f"even the smallest student (width {smallest.width:g}, {smallest.params:,} parameters) does not "
                      f"fit: {'; '.join(smallest.violations(budget))}. Raise the limit or pick a larger board")
