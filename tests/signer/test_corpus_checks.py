"""Outside tools on our stamped corpus: qpdf's structural check, and poppler's rendering of the
stamp on rotated pages, checked pixel by pixel."""

from __future__ import annotations

import io
import math
import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from services.signer.pki import SigningIdentity
from services.signer.placement import Placement, Rect
from services.signer.stamping import place_stamp
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL, corpus_files, require_tool

# Refused by place_stamp; test_stamping checks why.
REFUSED = {
    "sf-005-encrypted-password.pdf",
    "sf-007-imagemagick-ccitt.pdf",
    "sf-007-imagemagick-images.pdf",
    "sf-017-unreadable-metadata.pdf",
}
STAMPABLE = [f.name for f in corpus_files() if f.name not in REFUSED]
# qpdf --check: 0 clean, 2 errors, 3 warnings only.
QPDF_WARNINGS = 3
ROTATED = "sf-015-habibi-rotated.pdf"
# Page 4 carries /Rotate 360, which a viewer shows unrotated: the reference for an upright stamp.
UNROTATED_PAGE = 4
STAMP_SIDE = 120


def stamp(document: bytes, identity: SigningIdentity, placement: Placement) -> bytes:
    return place_stamp(
        document, serial=SERIAL, placement=placement, identity=identity, public_url=PUBLIC_URL
    ).stamped_document


def qpdf_check(path: Path) -> tuple[int, set[str]]:
    """qpdf's exit code and its warnings, with the file's name taken out so two files compare."""
    done = subprocess.run(
        [require_tool("qpdf"), "--check", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = (done.stdout + done.stderr).replace(str(path), "FILE").splitlines()
    # Errors show in the exit code (2); warnings are the lines that say so.
    return done.returncode, {line for line in lines if "WARNING:" in line}


@pytest.mark.parametrize("name", STAMPABLE, ids=[n.removesuffix(".pdf") for n in STAMPABLE])
def test_qpdf_finds_nothing_new_in_a_stamped_file(
    name: str, identity: SigningIdentity, tmp_path: Path
) -> None:
    original = require_corpus() / name
    stamped = tmp_path / name
    stamped.write_bytes(stamp(original.read_bytes(), identity, Placement()))
    original_code, original_findings = qpdf_check(original)
    code, findings = qpdf_check(stamped)
    if original_code == 0:
        assert (code, findings) == (0, set()), findings
    else:
        # A file qpdf already warns about may keep its warnings, but gains no error or new warning.
        assert original_code == QPDF_WARNINGS, original_findings
        assert code in (0, QPDF_WARNINGS) and findings <= original_findings, findings - original_findings


class Gray:
    """A page rendered by pdftoppm as 8-bit gray, one pixel per point at 72 dpi."""

    def __init__(self, pdf: Path, page: int) -> None:
        command = [
            require_tool("pdftoppm"),
            "-cropbox",
            "-r",
            "72",
            "-gray",
            "-f",
            str(page),
            "-l",
            str(page),
        ]
        raw = subprocess.run([*command, str(pdf)], capture_output=True, timeout=60, check=True).stdout
        header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+255\s", raw)
        assert header is not None, raw[:20]
        self.width, self.height = int(header.group(1)), int(header.group(2))
        self.pixels = raw[header.end() :]
        assert len(self.pixels) == self.width * self.height

    def at(self, x: int, y: int) -> int:
        return self.pixels[y * self.width + x]

    def crop(self, left: int, top: int, side: int) -> list[list[int]]:
        return [[self.at(left + x, top + y) for x in range(side)] for y in range(side)]


def visible_height(document: bytes, page: int) -> float:
    """The page's height in points as a viewer shows it (after /Rotate)."""
    pdf_page = PdfReader(io.BytesIO(document)).pages[page - 1]
    box = pdf_page.cropbox
    width, height = float(box.width), float(box.height)
    return width if pdf_page.rotation % 180 == 90 else height


def pixel_aligned_rect(height: float) -> tuple[Rect, int]:
    """A 120-point box 40 points from the left whose top edge falls on a whole pixel, and that pixel row.

    Aligned boxes render with the same anti-aliasing on every page, so their crops compare closely.
    """
    top = math.floor(height - 180)
    ury = height - top
    return (40.0, ury - STAMP_SIDE, 40.0 + STAMP_SIDE, ury), top


def mean_difference(a: list[list[int]], b: list[list[int]]) -> float:
    return sum(
        abs(x - y) for row_a, row_b in zip(a, b, strict=True) for x, y in zip(row_a, row_b, strict=True)
    ) / (len(a) * len(a[0]))


def turned(image: list[list[int]]) -> list[list[int]]:
    """The image turned a quarter clockwise."""
    return [list(row) for row in zip(*image[::-1], strict=True)]


@pytest.fixture(scope="module")
def rotated_stamps(
    identity: SigningIdentity, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, tuple[Gray, Gray, Rect, int]]:
    """Each page of the rotated file stamped at a pixel-aligned box: (before, after, box, top row)."""
    original = require_corpus() / ROTATED
    document = original.read_bytes()
    directory = tmp_path_factory.mktemp("rotated")
    rendered = {}
    for page in range(1, 5):
        rect, top = pixel_aligned_rect(visible_height(document, page))
        stamped = directory / f"page{page}.pdf"
        stamped.write_bytes(stamp(document, identity, Placement(page=page, rect=rect)))
        rendered[page] = (Gray(original, page), Gray(stamped, page), rect, top)
    return rendered


@pytest.mark.parametrize("page", [1, 2, 3, 4], ids=["rotate-90", "rotate-180", "rotate-270", "rotate-360"])
def test_the_stamp_is_drawn_inside_the_requested_box(
    page: int, rotated_stamps: dict[int, tuple[Gray, Gray, Rect, int]]
) -> None:
    before, after, (llx, lly, urx, ury), _ = rotated_stamps[page]
    assert (before.width, before.height) == (after.width, after.height)
    changed = [
        (x, y)
        for y in range(after.height)
        for x in range(after.width)
        if abs(after.at(x, y) - before.at(x, y)) > 32
    ]
    assert changed, "the stamp left no mark on the page"
    xs, ys = [x for x, _ in changed], [y for _, y in changed]
    # Viewer points from the bottom-left become pixels from the top-left; a pixel of slack for rounding.
    assert llx - 1 <= min(xs) and max(xs) <= urx + 1
    assert after.height - ury - 1 <= min(ys) and max(ys) <= after.height - lly + 1
    # The drawing fills the box rather than a corner of it.
    assert max(xs) - min(xs) >= 0.8 * (urx - llx) and max(ys) - min(ys) >= 0.8 * (ury - lly)


@pytest.mark.parametrize("page", [1, 2, 3], ids=["rotate-90", "rotate-180", "rotate-270"])
def test_the_stamp_on_a_rotated_page_looks_like_the_one_on_an_unrotated_page(
    page: int, rotated_stamps: dict[int, tuple[Gray, Gray, Rect, int]]
) -> None:
    _, reference_page, _, reference_top = rotated_stamps[UNROTATED_PAGE]
    _, after, _, top = rotated_stamps[page]
    reference = reference_page.crop(40, reference_top, STAMP_SIDE)
    crop = after.crop(40, top, STAMP_SIDE)
    upright = mean_difference(crop, reference)
    # Drawn turned by a quarter, half or three quarters, it would match a turned reference instead.
    turns = [mean_difference(crop, image) for image in _turns(reference)]
    assert upright < 3, f"mean gray difference {upright:.1f} from the upright stamp"
    assert all(upright * 5 < other for other in turns), (upright, turns)


def _turns(image: list[list[int]]) -> list[list[list[int]]]:
    once = turned(image)
    twice = turned(once)
    return [once, twice, turned(twice)]
