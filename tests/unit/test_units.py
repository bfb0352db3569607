import pytest

from tinydistill.errors import TinyDistillError
from tinydistill.units import format_bytes, parse_bytes


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024 ** 2, "3.0 MiB"),
                                     (-2048, "-2.0 KiB")])
def test_format(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("text, n", [("1KB", 1024), ("256 KiB", 262144), ("1.5MB", 1572864), ("4096", 4096),
                                     ("2k", 2048)])
def test_parse(text, n):
    assert parse_bytes(text) == n


def test_parse_rejects():
    with pytest.raises(TinyDistillError, match="256KB"):
        parse_bytes("lots")
