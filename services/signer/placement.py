"""Where a stamp goes: choosing the page, the default box, and mapping a box as a viewer shows
the page (after /Rotate, relative to the crop box, in points) to the page's own user space.

Boxes are always in points (1/72 inch). A page with /UserUnit u measures its user space in units
of u points, so a box is divided by u on its way in: a 100-point stamp is the same size on paper
whatever units the page uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pypdf.generic import DictionaryObject, IndirectObject

from services.signer.errors import InvalidPlacement, UnsupportedPdf
from services.signer.pdfread import PdfSource

Rect = tuple[float, float, float, float]

DEFAULT_STAMP_SIDE = 100.0
DEFAULT_MARGIN = 36.0
# About 2 cm: below this the QR code's modules shrink under 0.3 mm and phones stop reading it.
MIN_STAMP_SIDE = 56.0
# Rounding in a caller's page arithmetic should not turn a box at the page's edge into an error.
_EDGE_TOLERANCE = 0.5


@dataclass(frozen=True)
class Placement:
    """Where the stamp goes: `page` is 1-based (0 = last page); `rect` is (llx, lly, urx, ury) in
    points from the bottom-left corner of the page as a viewer shows it, or None for the default
    box in the bottom-right corner."""

    page: int = 0
    rect: Rect | None = None


@dataclass(frozen=True)
class PageGeometry:
    """The page a stamp goes on, as far as placing it is concerned."""

    number: int
    reference: IndirectObject
    dictionary: DictionaryObject
    # The crop box in default user space, normalised so that ll < ur.
    box: Rect
    # Clockwise rotation a viewer applies: 0, 90, 180 or 270.
    rotation: int
    # Points per unit of the page's user space (/UserUnit, PDF 1.6).
    user_unit: float = 1.0

    @property
    def visible_size(self) -> tuple[float, float]:
        """Width and height in points, as a viewer shows the page."""
        width = (self.box[2] - self.box[0]) * self.user_unit
        height = (self.box[3] - self.box[1]) * self.user_unit
        return (height, width) if self.rotation in (90, 270) else (width, height)

    def to_user_space(self, rect: Rect) -> Rect:
        """Map a box in points, as a viewer shows the page, to the page's unrotated user space."""
        unit = self.user_unit
        corners = [self._point(rect[0] / unit, rect[1] / unit), self._point(rect[2] / unit, rect[3] / unit)]
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        return (min(xs), min(ys), max(xs), max(ys))

    def _point(self, u: float, v: float) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        width, height = x1 - x0, y1 - y0
        if self.rotation == 90:
            return x0 + width - v, y0 + u
        if self.rotation == 180:
            return x0 + width - u, y0 + height - v
        if self.rotation == 270:
            return x0 + v, y0 + height - u
        return x0 + u, y0 + v

    @property
    def appearance_matrix(self) -> tuple[int, int, int, int]:
        """Rotates the upright drawing so it reads upright once the viewer rotates the page."""
        return {0: (1, 0, 0, 1), 90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}[self.rotation]


def choose_page(source: PdfSource, requested: int) -> PageGeometry:
    """The 1-based page `requested`, or the last page for 0."""
    count = source.page_count
    if requested < 0 or requested > count:
        pages = "page" if count == 1 else "pages"
        raise InvalidPlacement(f"Page {requested} does not exist: the document has {count} {pages}.")
    number = requested or count
    page = source.page(number - 1)
    if page.box is None:
        raise UnsupportedPdf(f"Page {number} has no usable size. Save the PDF again and try again.")
    llx, lly, urx, ury = page.box
    box = (min(llx, urx), min(lly, ury), max(llx, urx), max(lly, ury))
    if not all(math.isfinite(value) for value in box) or box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise UnsupportedPdf(f"Page {number} has no usable size. Save the PDF again and try again.")
    try:
        rotate = int(page.rotate.get_object()) if page.rotate is not None else 0
    except (TypeError, ValueError):
        rotate = 0
    # Viewers only honour multiples of 90; round anything else as they would snap it.
    rotation = (round(rotate / 90) * 90) % 360
    return PageGeometry(number, page.reference, page.dictionary, box, rotation, _user_unit(page.dictionary))


def _user_unit(page: DictionaryObject) -> float:
    """The page's /UserUnit (not inherited), or 1; a nonsensical value counts as 1, as viewers do."""
    try:
        unit = float(page.get("/UserUnit", 1.0))
    except (TypeError, ValueError):
        return 1.0
    return unit if math.isfinite(unit) and 0.01 <= unit <= 1000 else 1.0


def default_rect(page: PageGeometry) -> Rect:
    """A square in the bottom-right corner: 100 points on paper sizes, smaller on small pages."""
    width, height = page.visible_size
    shorter = min(width, height)
    margin = min(DEFAULT_MARGIN, shorter * 0.06)
    side = min(DEFAULT_STAMP_SIDE, max(MIN_STAMP_SIDE, shorter * 0.4), shorter - 2 * margin)
    if side < MIN_STAMP_SIDE:
        raise InvalidPlacement(
            f"Page {page.number} is only {width:g} x {height:g} points, too small for a readable "
            f"e-meterai ({MIN_STAMP_SIDE:g} x {MIN_STAMP_SIDE:g} points at least). Scale the document to "
            "a paper size, for example by printing it to PDF on A4, and try again."
        )
    return (width - margin - side, margin, width - margin, margin + side)


def checked_rect(rect: Rect, page: PageGeometry) -> Rect:
    """`rect` as floats, once it is finite, big enough for a scannable stamp and on the page."""
    llx, lly, urx, ury = (float(value) for value in rect)
    if not all(math.isfinite(value) for value in (llx, lly, urx, ury)):
        raise InvalidPlacement("The stamp box must be given in finite numbers of points.")
    if urx <= llx or ury <= lly:
        raise InvalidPlacement(
            "The stamp box must have its lower-left corner below and left of its upper-right corner."
        )
    if urx - llx < MIN_STAMP_SIDE or ury - lly < MIN_STAMP_SIDE:
        raise InvalidPlacement(
            f"The stamp box must be at least {MIN_STAMP_SIDE:g} x {MIN_STAMP_SIDE:g} points for its QR code "
            "to stay scannable."
        )
    width, height = page.visible_size
    tolerance = _EDGE_TOLERANCE
    if llx < -tolerance or lly < -tolerance or urx > width + tolerance or ury > height + tolerance:
        raise InvalidPlacement(
            f"The stamp box reaches outside page {page.number}, which is {width:g} x {height:g} points."
        )
    return (llx, lly, urx, ury)
