"""Board profiles: TOML files (data, not code) loaded into frozen dataclasses."""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from ..errors import BoardError

KINDS = ("mcu", "linux")
_REQUIRED = {"name": str, "kind": str, "core": str, "clock_mhz": (int, float),
             "flash_bytes": int, "ram_bytes": int}
_OPTIONAL = {"title": str, "aliases": list, "fpu": bool, "simd": str, "headroom": (int, float), "latency": dict,
             "latency_budget_ms": (int, float)}
DEFAULT_HEADROOM = 0.2
# the board of a command that names none: a Cortex-M4 with 1 MB flash and 256 KB SRAM (nRF52840)
DEFAULT_BOARD = "cortex-m4"
# Default latency budget when sizing a student: 10 inferences per second on a
# microcontroller (always-on sensing), 50 per second on a Linux board.
DEFAULT_LATENCY_BUDGET_MS = {"mcu": 100.0, "linux": 20.0}


@dataclass(frozen=True)
class Board:
    """A target board. Sizes are integer bytes.

    Attributes:
        name: canonical name, e.g. ``nrf52840``.
        kind: ``mcu`` (TFLite Micro, tensor arena in SRAM) or ``linux`` (LiteRT).
        core, clock_mhz: CPU core and clock.
        flash_bytes: program storage available to the model.
        ram_bytes: RAM available for the tensor arena (MCU) or process (Linux).
        headroom: fraction of flash and RAM reserved for the application.
    """

    name: str
    kind: str
    core: str
    clock_mhz: float
    flash_bytes: int
    ram_bytes: int
    title: str = ""
    aliases: tuple = field(default_factory=tuple)
    fpu: bool = False
    simd: str = "none"
    headroom: float = DEFAULT_HEADROOM
    source: str = ""
    latency: dict = field(default_factory=dict, hash=False, compare=False)
    latency_budget_ms: float | None = None

    @property
    def latency_budget(self) -> float:
        """Milliseconds per inference a sized student may take on this board by default."""
        return self.latency_budget_ms if self.latency_budget_ms is not None else DEFAULT_LATENCY_BUDGET_MS[self.kind]

    @property
    def flash_budget(self) -> int:
        """Flash bytes the model may use after the application's headroom."""
        return int(self.flash_bytes * (1 - self.headroom))

    @property
    def ram_budget(self) -> int:
        """RAM bytes the model may use after the application's headroom."""
        return int(self.ram_bytes * (1 - self.headroom))

    def with_headroom(self, headroom: float) -> Board:
        _check_headroom(headroom, self.source or self.name)
        return Board(**{**self.__dict__, "headroom": float(headroom)})


def _check_headroom(h, where):
    if not (isinstance(h, (int, float)) and 0 <= h < 1):
        raise BoardError(f"{where}: `headroom` must be in [0, 1). Received: headroom={h!r}")


def _check_extras(data: dict, source: str) -> None:
    """Aliases are names; latency constants and the latency budget are finite non-negative numbers."""
    if not all(isinstance(a, str) for a in data.get("aliases", [])):
        raise BoardError(f"{source}: `aliases` must be a list of names")
    budget = data.get("latency_budget_ms")
    if budget is not None and not 0 < budget < 1e9:
        raise BoardError(f"{source}: `latency_budget_ms` must be > 0. Received: latency_budget_ms={str(budget)[:40]}")
    for key, value in data.get("latency", {}).items():
        ok = isinstance(value, str) if key == "runtime" else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e12)
        if not ok:
            raise BoardError(f"{source}: [latency] `{key}` must be a number >= 0 (runtime: a name). "
                             f"Received: {str(value)[:40]}")


def board_from_dict(data: dict, *, source: str) -> Board:
    """Validate a board table and build a :class:`Board`.

    Raises:
        BoardError: a missing or mistyped field, naming the field and the file.
    """
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise BoardError(f"{source}: board field `{key}` is missing; required fields: {', '.join(_REQUIRED)}")
        if not isinstance(data[key], typ) or isinstance(data[key], bool):
            raise BoardError(f"{source}: board field `{key}` has the wrong type ({type(data[key]).__name__})")
    for key, typ in _OPTIONAL.items():
        if key in data and not isinstance(data[key], typ):
            raise BoardError(f"{source}: board field `{key}` has the wrong type ({type(data[key]).__name__})")
    unknown = set(data) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise BoardError(f"{source}: unknown board fields {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(list(_REQUIRED) + list(_OPTIONAL))}")
    if data["kind"] not in KINDS:
        raise BoardError(f"{source}: `kind` must be one of {', '.join(KINDS)}. Received: kind={data['kind']!r}")
    for key, most in (("flash_bytes", 1 << 44), ("ram_bytes", 1 << 44), ("clock_mhz", 1e5)):
        if not 0 < data[key] <= most:  # also NaN; a huge integer cannot overflow a float later
            raise BoardError(f"{source}: `{key}` must be > 0 and at most {most:g}. Received: {key}={str(data[key])[:40]}")
    headroom = data.get("headroom", DEFAULT_HEADROOM)
    _check_headroom(headroom, source)
    _check_extras(data, source)
    return Board(name=data["name"], kind=data["kind"], core=data["core"], clock_mhz=float(data["clock_mhz"]),
                 flash_bytes=int(data["flash_bytes"]), ram_bytes=int(data["ram_bytes"]),
                 title=data.get("title", data["name"]), aliases=tuple(data.get("aliases", ())),
                 fpu=bool(data.get("fpu", False)), simd=data.get("simd", "none"),
                 headroom=float(headroom), source=source, latency=dict(data.get("latency", {})),
                 latency_budget_ms=data.get("latency_budget_ms"))


def load_board_file(path: str) -> Board:
    """Load a user's board TOML file (``--board-file``)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise BoardError(f"board file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BoardError(f"board file {path} is not valid TOML ({exc}): fix the syntax") from None
    return board_from_dict(data, source=path)


def list_boards() -> list[Board]:
    """The boards shipped with tinydistill, sorted by name."""
    boards = []
    for entry in resources.files("tinydistill.fitting").joinpath("profiles").iterdir():
        if entry.name.endswith(".toml"):
            with entry.open("rb") as f:
                boards.append(board_from_dict(tomllib.load(f), source=f"profiles/{entry.name}"))
    return sorted(boards, key=lambda b: b.name)


def load_board(name: str) -> Board:
    """A shipped board by name or alias (``cortex-m4`` -> ``nrf52840``), or a TOML file path.

    Raises:
        BoardError: unknown name, with the closest known names suggested.
    """
    if name.endswith(".toml") or os.sep in name:
        return load_board_file(name)
    boards = list_boards()
    key = name.lower()
    for b in boards:
        if key == b.name or key in b.aliases:
            return b
    names = [b.name for b in boards] + [a for b in boards for a in b.aliases]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise BoardError(f"unknown board {name!r}: {hint}'tinydistill boards' lists them all, "
                     "or pass --board-file my.toml")
