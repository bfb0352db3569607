import pytest

from tinydistill.errors import BoardError
from tinydistill.fitting.boards import DEFAULT_HEADROOM, list_boards, load_board, load_board_file


def test_shipped_boards_load():
    boards = list_boards()
    assert len(boards) >= 12
    names = {b.name for b in boards}
    assert {"nrf52840", "stm32l4r5", "rp2040", "samd21", "stm32f746", "stm32h743", "stm32u575", "nrf5340",
            "esp32", "esp32s3", "raspberry-pi-zero-2w", "raspberry-pi-4", "raspberry-pi-5"} <= names
    for b in boards:
        assert isinstance(b.flash_bytes, int) and isinstance(b.ram_bytes, int)
        assert b.kind in ("mcu", "linux")


@pytest.mark.parametrize("alias, name", [("cortex-m4", "nrf52840"), ("cortex-m7", "stm32f746"),
                                         ("cortex-m0plus", "rp2040"), ("cortex-m33", "stm32u575"),
                                         ("raspberry-pi-4", "raspberry-pi-4"), ("esp32", "esp32"),
                                         ("CORTEX-M4", "nrf52840")])
def test_aliases(alias, name):
    assert load_board(alias).name == name


def test_cortex_m4_is_nrf52840_class():
    b = load_board("cortex-m4")
    assert b.flash_bytes == 1024 * 1024 and b.ram_bytes == 256 * 1024
    assert b.headroom == DEFAULT_HEADROOM
    assert b.ram_budget == int(256 * 1024 * 0.8)


def test_unknown_board_suggests():
    with pytest.raises(BoardError, match="unknown board 'cortex-m5': did you mean cortex-m7"):
        load_board("cortex-m5")


def _write(tmp_path, text):
    p = tmp_path / "b.toml"
    p.write_text(text)
    return str(p)


GOOD = 'name = "mine"\nkind = "mcu"\ncore = "cortex-m4"\nclock_mhz = 80\nflash_bytes = 524288\nram_bytes = 131072\n'


def test_user_board_file(tmp_path):
    b = load_board_file(_write(tmp_path, GOOD + "headroom = 0.1\n"))
    assert b.name == "mine" and b.ram_budget == int(131072 * 0.9)
    assert load_board(_write(tmp_path, GOOD)).name == "mine"  # a path works as --board too


@pytest.mark.parametrize("text, match", [
    ("name = ", "not valid TOML"),
    (GOOD.replace('kind = "mcu"\n', ""), "`kind` is missing"),
    (GOOD.replace("ram_bytes = 131072", 'ram_bytes = "128KB"'), "`ram_bytes` has the wrong type"),
    (GOOD.replace('"mcu"', '"fpga"'), "`kind` must be one of"),
    (GOOD.replace("131072", "0"), "`ram_bytes` must be > 0"),
    (GOOD + "headroom = 1.5\n", "`headroom` must be in"),
    (GOOD + "sram = 3\n", "unknown board fields sram"),
])
def test_bad_board_files(tmp_path, text, match):
    with pytest.raises(BoardError, match=match):
        load_board_file(_write(tmp_path, text))


def test_missing_board_file(tmp_path):
    with pytest.raises(BoardError, match="does not exist"):
        load_board_file(str(tmp_path / "none.toml"))


def test_with_headroom():
    b = load_board("cortex-m4").with_headroom(0.5)
    assert b.ram_budget == 128 * 1024
    with pytest.raises(BoardError, match="headroom"):
        load_board("cortex-m4").with_headroom(1.0)
