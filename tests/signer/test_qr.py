"""The stamp's QR encoder: segno's symbols where both must agree, and a real decoder reads ours."""

from __future__ import annotations

import random
import string
import subprocess
from pathlib import Path

import pytest
import segno

from services.signer.qr import MASK, qr_matrix

from .conftest import require_tool

# Data codewords per version at error level M (ISO/IEC 18004 table 7).
DATA_CODEWORDS_M = {1: 16, 2: 28, 3: 44, 4: 64, 5: 86, 6: 108, 7: 124, 8: 154, 9: 182, 10: 216}


def _random_text(length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits + "/:.-") for _ in range(length))


def _segno(text: str, *, version: int | None = None, mask: int = MASK) -> list[bytes]:
    code = segno.make(text.encode(), error="m", mode="byte", version=version, mask=mask, boost_error=False)
    return [bytes(row) for row in code.matrix]


@pytest.mark.parametrize("version", sorted(DATA_CODEWORDS_M))
@pytest.mark.parametrize("mask", range(8))
def test_a_full_symbol_is_segnos_to_the_module(version: int, mask: int) -> None:
    # Only a full symbol compares exactly: with room to spare segno pads one zero byte more than
    # the standard's terminator asks, which decoders ignore. Full, the two bit streams agree, so
    # this checks function patterns, format and version information, error correction,
    # interleaving, placement and masking.
    count_bits = 8 if version < 10 else 16
    length = (8 * DATA_CODEWORDS_M[version] - 4 - count_bits - 4) // 8
    text = _random_text(length, seed=version * 8 + mask)
    ours = qr_matrix(text, mask)
    assert len(ours) == 17 + 4 * version
    assert ours == _segno(text, version=version, mask=mask)


def test_longer_urls_than_version_10_holds_are_still_encoded() -> None:
    text = _random_text(300, seed=1)
    assert qr_matrix(text) == _segno(text)


def _write_pgm(path: Path, modules: list[bytes], scale: int = 4, quiet_zone: int = 4) -> None:
    count = len(modules)
    side = (count + 2 * quiet_zone) * scale
    rows = []
    for y in range(side):
        row_index = y // scale - quiet_zone
        row = modules[row_index] if 0 <= row_index < count else bytes(count)
        cells = bytes(
            0 if 0 <= (x // scale - quiet_zone) < count and row[x // scale - quiet_zone] else 255
            for x in range(side)
        )
        rows.append(cells)
    path.write_bytes(b"P5 %d %d 255\n" % (side, side) + b"".join(rows))


@pytest.mark.parametrize("length", [10, 51, 60, 100, 150, 213])
def test_zbar_reads_what_we_encode(length: int, tmp_path: Path) -> None:
    text = "https://meterai.example.id/v/" + _random_text(length, seed=length)[: max(0, length - 29)]
    image = tmp_path / "qr.pgm"
    _write_pgm(image, qr_matrix(text))
    decoded = subprocess.run(
        [require_tool("zbarimg"), "-q", "--raw", "--nodbus", str(image)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    assert decoded.rstrip("\n") == text
