"""The visible e-meterai: a vector drawing (QR code and text) for a signature widget's appearance.

Everything is drawn with PDF path operators, text included: the letters are filled glyph
outlines from DejaVu Sans (services/signer/glyphs.py), so the stamp stays sharp at any zoom and
print resolution and looks the same in every viewer, with no font to embed or substitute.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.signer.glyphs import CAP_HEIGHT, GLYPHS
from services.signer.qr import qr_matrix

TITLE = "METERAI ELEKTRONIK"
VALUE = "10000"
VALUE_WORDS = "SEPULUH RIBU RUPIAH"

_REGULAR, _BOLD = "DejaVuSans", "DejaVuSans-Bold"

# The QR specification asks for four light modules around the symbol.
QR_QUIET_ZONE = 4

# Upper-case letters and digits reach this far above the baseline, in ems.
_CAP_HEIGHT = max(CAP_HEIGHT.values()) / 1000

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
    # content[:fixed_length] is the same for every stamp of this size (card, border, fixed lines);
    # only the rest (QR code, serial) changes, so the fixed part's compression can be reused.
    fixed_length: int = 0


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

    fixed: list[str] = ["q"]
    # An opaque white card: the QR code needs its light quiet zone even over a busy page.
    fixed.append(f"1 1 1 rg 0 0 {_n(width)} {_n(height)} re f")
    border = max(0.4, min(width, height) * 0.01)
    fixed.append(
        f"{_rgb(_ACCENT, stroke=True)} {_n(border)} w "
        f"{_n(border / 2)} {_n(border / 2)} {_n(width - border)} {_n(height - border)} re S"
    )
    pad = min(width, height) * 0.05 + border
    variable: list[str] = []
    if width >= 1.5 * height:
        _layout_side_by_side(fixed, variable, modules, serial, width, height, pad)
    else:
        _layout_stacked(fixed, variable, modules, serial, width, height, pad)
    variable.append("Q")
    head = ("\n".join(fixed) + "\n").encode("ascii")
    return StampAppearance(width, height, head + ("\n".join(variable) + "\n").encode("ascii"), len(head))


def _layout_stacked(
    fixed: list[str],
    variable: list[str],
    modules: list[bytes],
    serial: str,
    width: float,
    height: float,
    pad: float,
) -> None:
    inner_width = width - 2 * pad
    gap = height * 0.015
    # Font sizes as shares of the box height; long lines shrink further to fit the width.
    title_size = _fit(TITLE, _BOLD, inner_width, height * 0.085)
    value_size = _fit(VALUE, _BOLD, inner_width, height * 0.12)
    words_size = _fit(VALUE_WORDS, _REGULAR, inner_width, height * 0.065)
    serial_size = _fit_serial(inner_width, height * 0.065)
    text_height = _CAP_HEIGHT * (title_size + value_size + words_size + serial_size)
    qr_side = max(0.0, min(inner_width, height - 2 * pad - text_height - 4 * gap))

    top = height - pad
    baseline = top - _CAP_HEIGHT * title_size
    _text(fixed, TITLE, _BOLD, title_size, width / 2, baseline, _ACCENT)
    qr_top = baseline - gap
    _qr(variable, modules, (width - qr_side) / 2, qr_top - qr_side, qr_side)
    baseline = qr_top - qr_side - gap - _CAP_HEIGHT * value_size
    _text(fixed, VALUE, _BOLD, value_size, width / 2, baseline, _ACCENT)
    baseline -= gap + _CAP_HEIGHT * words_size
    _text(fixed, VALUE_WORDS, _REGULAR, words_size, width / 2, baseline, _INK)
    baseline -= gap + _CAP_HEIGHT * serial_size
    _text(variable, serial, _REGULAR, serial_size, width / 2, baseline, _INK)


def _layout_side_by_side(
    fixed: list[str],
    variable: list[str],
    modules: list[bytes],
    serial: str,
    width: float,
    height: float,
    pad: float,
) -> None:
    qr_side = height - 2 * pad
    _qr(variable, modules, pad, pad, qr_side)
    left = pad + qr_side + pad
    text_width = width - left - pad
    gap = height * 0.05
    sizes = [
        _fit(TITLE, _BOLD, text_width, height * 0.16),
        _fit(VALUE, _BOLD, text_width, height * 0.26),
        _fit(VALUE_WORDS, _REGULAR, text_width, height * 0.13),
        _fit_serial(text_width, height * 0.13),
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
        _text(variable if text == serial else fixed, text, font, size, centre, baseline, colour)
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
    # Glyph outlines are in 1/1000 em: one scale puts them at `size` points.
    scale = f"{size / 1000:.7f}".rstrip("0")
    run = _fixed_line(text, font) if text in _FIXED_LINES else _glyph_run(text, font)
    ops.append(f"q {_rgb(colour)} {scale} 0 0 {scale} {_n(x)} {_n(baseline)} cm {run} Q")


def _glyph_run(text: str, font: str) -> str:
    """The glyphs of `text` from the origin rightwards, each filled then stepped past."""
    steps = _GLYPH_STEPS[font]
    try:
        return " ".join(steps[char] for char in text)
    except KeyError as missing:
        raise ValueError(f"the stamp has no glyph for {missing.args[0]!r}") from None


# The lines every stamp prints are drawn once; only the serial is put together per stamp.
_FIXED_LINES = frozenset((TITLE, VALUE, VALUE_WORDS))
_fixed_line = functools.lru_cache(maxsize=8)(_glyph_run)


def _glyph_steps(glyphs: Mapping[str, tuple[int, bytes]]) -> dict[str, str]:
    steps = {}
    for char, (advance, outline) in glyphs.items():
        fill = f"{outline.decode('ascii')} f " if outline else ""
        steps[char] = f"{fill}1 0 0 1 {advance} 0 cm"
    # Serials may arrive in lower case; the stamp prints them in capitals.
    steps.update({char.lower(): step for char, step in steps.items() if char.isalpha()})
    return steps


_GLYPH_STEPS = {font: _glyph_steps(glyphs) for font, glyphs in GLYPHS.items()}
_ADVANCES = {
    font: {char: advance / 1000 for char, (advance, _) in glyphs.items()} for font, glyphs in GLYPHS.items()
}
# A serial is 22 letters or digits: the widest one possible, at 1 point.
SERIAL_LENGTH = 22
_WIDEST_SERIAL = SERIAL_LENGTH * max(
    advance for char, advance in _ADVANCES[_REGULAR].items() if char.isalnum()
)


def _fit(text: str, font: str, max_width: float, max_size: float) -> float:
    """The largest font size not above `max_size` at which `text` fits in `max_width`."""
    width_at_one_point = _text_width(text, font)
    if width_at_one_point <= 0:
        return max_size
    return max(0.0, min(max_size, max_width / width_at_one_point))


def _fit_serial(max_width: float, max_size: float) -> float:
    """A serial's font size from the widest serial there can be, so the layout never depends on
    which serial is printed and everything but the QR code and the serial stays the same."""
    return max(0.0, min(max_size, max_width / _WIDEST_SERIAL))


def _text_width(text: str, font: str) -> float:
    """Width of `text` at a font size of 1 point."""
    advances = _ADVANCES[font]
    return sum(advances.get(char.upper(), 0.0) for char in text)


def _rgb(colour: tuple[float, float, float], *, stroke: bool = False) -> str:
    return " ".join(_n(c) for c in colour) + (" RG" if stroke else " rg")


def _n(value: float) -> str:
    """A PDF number: three decimals are far below a printer dot, without trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
