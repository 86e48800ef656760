"""The stamp's drawing. Whether it reads as a QR code is checked on rendered pages in test_stamping."""

from __future__ import annotations

import re

import pytest

from services.quota.serials import ALPHABET
from services.signer.appearance import (
    TITLE,
    VALUE,
    VALUE_WORDS,
    build_stamp_appearance,
    verification_url,
)
from services.signer.glyphs import GLYPHS

SERIAL = "AB12CD34EF56GH78IJ90KL"
URL = "https://meterai.example.id/v/AB12CD34EF56GH78IJ90KL"


def test_the_url_is_the_public_verification_page_of_the_serial() -> None:
    assert verification_url("https://meterai.example.id/", SERIAL) == URL
    assert verification_url("https://meterai.example.id", SERIAL) == URL


@pytest.mark.parametrize(("width", "height"), [(100, 100), (80, 120), (240, 90), (56, 56), (400, 400)])
def test_draws_everything_inside_its_box(width: float, height: float) -> None:
    appearance = build_stamp_appearance(serial=SERIAL, url=URL, width=width, height=height)
    content = appearance.content.decode("ascii")
    # The card, and one group per line of text.
    assert content.count("q") == content.count("Q") == 5

    rectangles = [
        tuple(map(float, match))
        for match in re.findall(r"(-?[\d.]+) (-?[\d.]+) (-?[\d.]+) (-?[\d.]+) re", content)
    ]
    assert len(rectangles) > 50  # the QR modules, merged into runs
    for x, y, w, h in rectangles:
        assert x >= 0 and y >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3

    lines = re.findall(r"q [\d. ]+ rg ([\d.]+) 0 0 \1 (-?[\d.]+) (-?[\d.]+) cm ([^Q]*) Q", content)
    assert len(lines) == 4
    for scale, x, y, run in lines:
        assert float(scale) > 0
        assert 0 <= float(x) <= width and 0 <= float(y) <= height
        # The line ends inside the box: its advances add up to its width.
        advances = sum(int(step) for step in re.findall(r"1 0 0 1 (\d+) 0 cm", run))
        assert float(x) + advances * float(scale) <= width + 1e-3


def test_qr_modules_are_square_and_on_one_grid() -> None:
    content = build_stamp_appearance(serial=SERIAL, url=URL, width=100, height=100).content.decode("ascii")
    # The QR path is the one filled in black.
    qr_path = content.split("0 0 0 rg", 1)[1].split("\nf\n", 1)[0]
    runs = [tuple(map(float, run)) for run in re.findall(r"([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) re", qr_path)]
    module = runs[0][3]
    assert all(abs(height - module) < 2e-3 for _, _, _, height in runs)
    # Widths are whole numbers of modules (allowing for three-decimal rounding).
    assert all(abs(width / module - round(width / module)) < 0.01 for _, _, width, _ in runs)


def test_refuses_an_empty_box() -> None:
    with pytest.raises(ValueError):
        build_stamp_appearance(serial=SERIAL, url=URL, width=0, height=100)


def test_text_is_drawn_as_outlines_without_fonts() -> None:
    content = build_stamp_appearance(serial=SERIAL, url=URL, width=100, height=100).content
    for operator in (b"BT", b"ET", b"Tf", b"Tj", b"TJ", b"Td"):
        assert operator not in content
    assert b"/F1" not in content and b"/Font" not in content


def test_every_character_a_stamp_prints_has_a_glyph() -> None:
    printable = set(TITLE + VALUE + VALUE_WORDS + ALPHABET + " -.")
    for font, glyphs in GLYPHS.items():
        assert printable <= glyphs.keys(), font
        for char in printable - {" "}:
            advance, outline = glyphs[char]
            assert advance > 0 and outline.endswith(b" h"), (font, char)


def test_a_lower_case_serial_prints_in_capitals() -> None:
    lower = build_stamp_appearance(serial=SERIAL.lower(), url=URL, width=100, height=100).content
    upper = build_stamp_appearance(serial=SERIAL, url=URL, width=100, height=100).content
    assert lower == upper


def test_refuses_a_character_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="no glyph"):
        build_stamp_appearance(serial="AB12CD34EF56GH78IJ90K~", url=URL, width=100, height=100)


@pytest.mark.parametrize(("width", "height"), [(100, 100), (240, 90), (56, 56)])
def test_only_the_qr_code_and_serial_differ_between_stamps_of_one_size(width: float, height: float) -> None:
    first = build_stamp_appearance(
        serial="AB12CD34EF56GH78IJ90KL", url="https://x/v/1", width=width, height=height
    )
    second = build_stamp_appearance(
        serial="WWWWWWWWWWWWWWWWWWWWWW", url="https://x/v/22", width=width, height=height
    )
    assert 0 < first.fixed_length < len(first.content)
    assert first.content[: first.fixed_length] == second.content[: second.fixed_length]
    assert first.content != second.content


def test_reusing_the_fixed_part_compresses_exactly_as_zlib_does() -> None:
    import zlib

    from services.signer.stamping import _deflate

    for serial in ("AB12CD34EF56GH78IJ90KL", "0000000000000000000001"):
        appearance = build_stamp_appearance(serial=serial, url=f"https://x/v/{serial}", width=100, height=100)
        assert _deflate(appearance.content, appearance.fixed_length) == zlib.compress(appearance.content, 1)
