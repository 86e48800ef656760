"""The stamp's drawing. Whether it reads as a QR code is checked on rendered pages in test_stamping."""

from __future__ import annotations

import re

import pytest

from services.signer.appearance import (
    FONTS,
    TITLE,
    VALUE,
    VALUE_WORDS,
    build_stamp_appearance,
    verification_url,
)

SERIAL = "AB12CD34EF56GH78IJ90KL"
URL = "https://meterai.example.id/v/AB12CD34EF56GH78IJ90KL"


def test_the_url_is_the_public_verification_page_of_the_serial() -> None:
    assert verification_url("https://meterai.example.id/", SERIAL) == URL
    assert verification_url("https://meterai.example.id", SERIAL) == URL


@pytest.mark.parametrize(("width", "height"), [(100, 100), (80, 120), (240, 90), (56, 56), (400, 400)])
def test_draws_everything_inside_its_box(width: float, height: float) -> None:
    appearance = build_stamp_appearance(serial=SERIAL, url=URL, width=width, height=height)
    content = appearance.content.decode("ascii")
    assert appearance.fonts == FONTS
    for text in (TITLE, VALUE, VALUE_WORDS, SERIAL):
        assert f"({text}) Tj" in content
    assert content.count("q") == content.count("Q") == 1

    rectangles = [
        tuple(map(float, match))
        for match in re.findall(r"(-?[\d.]+) (-?[\d.]+) (-?[\d.]+) (-?[\d.]+) re", content)
    ]
    assert len(rectangles) > 50  # the QR modules, merged into runs
    for x, y, w, h in rectangles:
        assert x >= 0 and y >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3

    for size, x, y in re.findall(r"/F\d ([\d.]+) Tf (-?[\d.]+) (-?[\d.]+) Td", content):
        assert float(size) > 0
        assert 0 <= float(x) <= width and 0 <= float(y) <= height


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
