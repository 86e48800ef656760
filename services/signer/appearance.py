"""The visible e-meterai: a vector drawing (QR code and text) for a signature widget's appearance.

Everything is drawn with PDF path and text operators, so the stamp stays sharp at any zoom and
print resolution, and only the base-14 fonts Helvetica and Helvetica-Bold are used, so nothing
has to be embedded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.signer.qr import qr_matrix

TITLE = "METERAI ELEKTRONIK"
VALUE = "10000"
VALUE_WORDS = "SEPULUH RIBU RUPIAH"

# Resource name -> base-14 font. The appearance stream refers to the resource names.
FONTS: Mapping[str, str] = {"F1": "Helvetica", "F2": "Helvetica-Bold"}
_REGULAR, _BOLD = "F1", "F2"

# The QR specification asks for four light modules around the symbol.
QR_QUIET_ZONE = 4

# Glyph widths (1/1000 em) from Adobe's Helvetica AFM files, for the characters a stamp prints:
# upper-case letters, digits, space, hyphen and dot. Anything else is measured as a digit.
_HELVETICA_WIDTHS = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -.",
        [
            667,
            667,
            722,
            722,
            667,
            611,
            778,
            722,
            278,
            500,
            667,
            556,
            833,
            722,
            778,
            667,
            778,
            722,
            667,
            611,
            722,
            667,
            944,
            667,
            667,
            611,
            *[556] * 10,
            278,
            333,
            278,
        ],
        strict=True,
    )
)
_HELVETICA_BOLD_WIDTHS = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -.",
        [
            722,
            722,
            722,
            722,
            667,
            611,
            778,
            722,
            278,
            556,
            722,
            611,
            833,
            722,
            778,
            667,
            778,
            722,
            667,
            611,
            722,
            667,
            944,
            667,
            667,
            611,
            *[556] * 10,
            278,
            333,
            278,
        ],
        strict=True,
    )
)
_WIDTHS = {_REGULAR: _HELVETICA_WIDTHS, _BOLD: _HELVETICA_BOLD_WIDTHS}
# Upper-case letters and digits reach 0.718 em above the baseline in both fonts.
_CAP_HEIGHT = 0.718

# Colours (RGB 0..1): the stamp's accent follows the pink of production e-meterai; the QR code
# stays pure black on white for the best scanning contrast.
_ACCENT = (0.75, 0.07, 0.42)
_INK = (0.12, 0.12, 0.12)


@dataclass(frozen=True)
class StampAppearance:
    """A Form XObject's content, drawn in the box [0 0 width height]."""

    width: float
    height: float
    content: bytes
    fonts: Mapping[str, str]


def verification_url(public_url: str, serial: str) -> str:
    """The address the QR code leads to: the public verification page of this serial."""
    return f"{public_url.rstrip('/')}/v/{serial}"


def build_stamp_appearance(*, serial: str, url: str, width: float, height: float) -> StampAppearance:
    """Draw the stamp to fill `width` x `height` points.

    A box at least 1.5 times wider than high puts the QR code on the left and the text on the
    right; otherwise the QR code sits between the title and the value lines.
    """
    if width <= 0 or height <= 0:
        raise ValueError("the stamp box must have a positive size")
    modules = qr_matrix(url)

    ops: list[str] = ["q"]
    # An opaque white card: the QR code needs its light quiet zone even over a busy page.
    ops.append(f"1 1 1 rg 0 0 {_n(width)} {_n(height)} re f")
    border = max(0.4, min(width, height) * 0.01)
    ops.append(
        f"{_rgb(_ACCENT, stroke=True)} {_n(border)} w "
        f"{_n(border / 2)} {_n(border / 2)} {_n(width - border)} {_n(height - border)} re S"
    )
    pad = min(width, height) * 0.05 + border
    if width >= 1.5 * height:
        _layout_side_by_side(ops, modules, serial, width, height, pad)
    else:
        _layout_stacked(ops, modules, serial, width, height, pad)
    ops.append("Q")
    return StampAppearance(width, height, ("\n".join(ops) + "\n").encode("ascii"), FONTS)


def _layout_stacked(
    ops: list[str], modules: list[bytes], serial: str, width: float, height: float, pad: float
) -> None:
    inner_width = width - 2 * pad
    gap = height * 0.015
    # Font sizes as shares of the box height; long lines shrink further to fit the width.
    title_size = _fit(TITLE, _BOLD, inner_width, height * 0.085)
    value_size = _fit(VALUE, _BOLD, inner_width, height * 0.12)
    words_size = _fit(VALUE_WORDS, _REGULAR, inner_width, height * 0.065)
    serial_size = _fit(serial, _REGULAR, inner_width, height * 0.065)
    text_height = _CAP_HEIGHT * (title_size + value_size + words_size + serial_size)
    qr_side = max(0.0, min(inner_width, height - 2 * pad - text_height - 4 * gap))

    top = height - pad
    baseline = top - _CAP_HEIGHT * title_size
    _text(ops, TITLE, _BOLD, title_size, width / 2, baseline, _ACCENT)
    qr_top = baseline - gap
    _qr(ops, modules, (width - qr_side) / 2, qr_top - qr_side, qr_side)
    baseline = qr_top - qr_side - gap - _CAP_HEIGHT * value_size
    _text(ops, VALUE, _BOLD, value_size, width / 2, baseline, _ACCENT)
    baseline -= gap + _CAP_HEIGHT * words_size
    _text(ops, VALUE_WORDS, _REGULAR, words_size, width / 2, baseline, _INK)
    baseline -= gap + _CAP_HEIGHT * serial_size
    _text(ops, serial, _REGULAR, serial_size, width / 2, baseline, _INK)


def _layout_side_by_side(
    ops: list[str], modules: list[bytes], serial: str, width: float, height: float, pad: float
) -> None:
    qr_side = height - 2 * pad
    _qr(ops, modules, pad, pad, qr_side)
    left = pad + qr_side + pad
    text_width = width - left - pad
    gap = height * 0.05
    sizes = [
        _fit(TITLE, _BOLD, text_width, height * 0.16),
        _fit(VALUE, _BOLD, text_width, height * 0.26),
        _fit(VALUE_WORDS, _REGULAR, text_width, height * 0.13),
        _fit(serial, _REGULAR, text_width, height * 0.13),
    ]
    block = _CAP_HEIGHT * sum(sizes) + 3 * gap
    baseline = (height + block) / 2
    centre = left + text_width / 2
    lines = [
        (TITLE, _BOLD, _ACCENT),
        (VALUE, _BOLD, _ACCENT),
        (VALUE_WORDS, _REGULAR, _INK),
        (serial, _REGULAR, _INK),
    ]
    for (text, font, colour), size in zip(lines, sizes, strict=True):
        baseline -= _CAP_HEIGHT * size
        _text(ops, text, font, size, centre, baseline, colour)
        baseline -= gap


def _qr(ops: list[str], modules: list[bytes], x: float, y: float, side: float) -> None:
    """Draw the symbol and its quiet zone in the square (x, y, side); dark modules only."""
    grid = _module_grid(len(modules), x, y, side)
    ops.append("0 0 0 rg")
    # One path filled once: neighbouring modules merge without the hairline seams that separate
    # fills show in anti-aliasing renderers. Horizontal runs keep the stream short.
    for row_index, row in enumerate(modules):
        row_y = grid.ys[row_index]
        for run in _DARK_RUN.finditer(row):
            start, end = run.span()
            ops.append(f"{grid.xs[start]} {row_y} {grid.widths[end - start]} {grid.module} re")
    ops.append("f")


_DARK_RUN = re.compile(rb"\x01+")


@dataclass(frozen=True)
class _ModuleGrid:
    """The numbers a QR path is written with, formatted once per stamp size."""

    # Left edge of each column, bottom edge of each row (top row first), width of each run length.
    xs: tuple[str, ...]
    ys: tuple[str, ...]
    widths: tuple[str, ...]
    module: str


@functools.lru_cache(maxsize=64)
def _module_grid(count: int, x: float, y: float, side: float) -> _ModuleGrid:
    module = side / (count + 2 * QR_QUIET_ZONE)
    origin_x = x + QR_QUIET_ZONE * module
    origin_y = y + QR_QUIET_ZONE * module
    return _ModuleGrid(
        xs=tuple(_n(origin_x + column * module) for column in range(count)),
        ys=tuple(_n(origin_y + (count - 1 - row) * module) for row in range(count)),
        widths=tuple(_n(length * module) for length in range(count + 1)),
        module=_n(module),
    )


def _text(
    ops: list[str],
    text: str,
    font: str,
    size: float,
    centre_x: float,
    baseline: float,
    colour: tuple[float, float, float],
) -> None:
    if size <= 0:
        return
    x = centre_x - _text_width(text, font) * size / 2
    ops.append(f"BT {_rgb(colour)} /{font} {_n(size)} Tf {_n(x)} {_n(baseline)} Td ({_escape(text)}) Tj ET")


def _fit(text: str, font: str, max_width: float, max_size: float) -> float:
    """The largest font size not above `max_size` at which `text` fits in `max_width`."""
    width_at_one_point = _text_width(text, font)
    if width_at_one_point <= 0:
        return max_size
    return max(0.0, min(max_size, max_width / width_at_one_point))


def _text_width(text: str, font: str) -> float:
    """Width of `text` at a font size of 1 point."""
    widths = _WIDTHS[font]
    return sum(widths.get(char.upper(), 556) for char in text) / 1000


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _rgb(colour: tuple[float, float, float], *, stroke: bool = False) -> str:
    return " ".join(_n(c) for c in colour) + (" RG" if stroke else " rg")


def _n(value: float) -> str:
    """A PDF number: three decimals are far below a printer dot, without trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
