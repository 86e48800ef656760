"""Page previews on real PDFs: the picture, and the size a stamp's rect is measured against."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import FloatObject, NameObject

from services.common.errors import InvalidInput
from services.gateway.previews import DEFAULT_LONGEST_SIDE_PX, PagePreview, encode_png, render_page
from services.signer.errors import EncryptedPdf, InvalidPlacement, UnsupportedPdf
from services.signer.pki import SigningIdentity, ensure_dev_pki
from services.signer.placement import Placement
from services.signer.stamping import place_stamp
from tests.conftest import require_corpus

ROTATED = "sf-015-habibi-rotated.pdf"  # /Rotate 90, 180, 270, 360 on pages 1-4


def corpus_pdf(name: str) -> bytes:
    return (require_corpus() / name).read_bytes()


def decode_png(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB rows of a PNG as encode_png writes it (8-bit RGB, no filter)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    offset, chunks = 8, {}
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        body = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = width * 3 + 1
    assert len(raw) == stride * height
    assert all(raw[y * stride] == 0 for y in range(height))
    return width, height, b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))


def dark_share(preview: PagePreview, box_pt: tuple[float, float, float, float]) -> float:
    """The share of clearly dark pixels inside a box given in points from the bottom-left corner."""
    width, height, rgb = decode_png(preview.png)
    sx, sy = width / preview.width_pt, height / preview.height_pt
    llx, lly, urx, ury = box_pt
    left, right = int(llx * sx), int(urx * sx)
    top, bottom = int((preview.height_pt - ury) * sy), int((preview.height_pt - lly) * sy)
    dark = total = 0
    for y in range(top, bottom):
        for x in range(left, right):
            r, g, b = rgb[(y * width + x) * 3 : (y * width + x) * 3 + 3]
            dark += r + g + b < 300
            total += 1
    return dark / total


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> SigningIdentity:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki")).load_identity()


def test_the_page_count_and_the_last_page() -> None:
    document = corpus_pdf("sf-006-pdflatex-outline.pdf")
    last = render_page(document, 0)
    assert (last.page, last.page_count) == (4, 4)
    second = render_page(document, 2)
    assert (second.page, second.page_count) == (2, 4)
    assert second.png != last.png


def test_the_picture_is_a_png_of_the_page_at_a_bounded_size() -> None:
    preview = render_page(corpus_pdf("sf-002-libreoffice-writer.pdf"), 1)
    assert (preview.width_pt, preview.height_pt) == pytest.approx((595.3, 841.89), abs=0.01)
    width, height, rgb = decode_png(preview.png)
    assert (width, height) == (preview.width_px, preview.height_px) == (566, DEFAULT_LONGEST_SIDE_PX)
    # Mostly white paper with some text on it.
    assert rgb.count(b"\xff") > 0.9 * len(rgb)
    assert dark_share(preview, (0, 0, preview.width_pt, preview.height_pt)) > 0.001
    small = render_page(corpus_pdf("sf-002-libreoffice-writer.pdf"), 1, longest_side_px=200)
    assert (small.width_px, small.height_px) == (141, 200)


def test_a_rotated_page_is_measured_as_a_viewer_shows_it() -> None:
    document = corpus_pdf(ROTATED)
    reader = PdfReader(io.BytesIO(document))
    for number, rotation in enumerate([90, 180, 270, 360], start=1):
        page = reader.pages[number - 1]
        assert page.rotation == rotation
        box = (float(page.cropbox.width), float(page.cropbox.height))
        shown = box[::-1] if rotation in (90, 270) else box
        preview = render_page(document, number)
        assert (preview.width_pt, preview.height_pt) == pytest.approx(shown)
        landscape = preview.width_pt > preview.height_pt
        assert (preview.width_px > preview.height_px) == landscape
        assert max(preview.width_px, preview.height_px) == DEFAULT_LONGEST_SIDE_PX


def test_the_stamp_lands_where_the_preview_shows_it(identity: SigningIdentity) -> None:
    document = corpus_pdf(ROTATED)
    before = render_page(document, 1)
    # Near the top-left corner of the page as shown, which is its unrotated user space's
    # top-right: a mix-up of either axis or of the rotation would put the stamp elsewhere.
    h = before.height_pt
    box = (40.0, h - 140.0, 140.0, h - 40.0)
    stamped = place_stamp(
        document,
        serial="AB12CD34EF56GH78IJ90KL",
        placement=Placement(page=1, rect=box),
        identity=identity,
        public_url="https://meterai.example.id",
    ).stamped_document
    after = render_page(stamped, 1)
    assert (after.width_pt, after.height_pt) == (before.width_pt, before.height_pt)
    assert dark_share(before, box) == 0
    # The QR code's dark modules and the legend cover about a tenth of the box.
    assert dark_share(after, box) > 0.05, "the stamp is drawn inside the box"
    beside = (150.0, h - 140.0, 250.0, h - 40.0)
    mirrored = (before.width_pt - 140.0, 40.0, before.width_pt - 40.0, 140.0)
    for elsewhere in (beside, mirrored):
        assert dark_share(after, elsewhere) == dark_share(before, elsewhere) == 0


def test_pages_in_other_user_units_are_measured_in_points() -> None:
    writer = PdfWriter(clone_from=io.BytesIO(corpus_pdf("sf-002-libreoffice-writer.pdf")))
    writer.pages[0][NameObject("/UserUnit")] = FloatObject(2.0)
    scaled = io.BytesIO()
    writer.write(scaled)
    plain = render_page(corpus_pdf("sf-002-libreoffice-writer.pdf"), 1)
    doubled = render_page(scaled.getvalue(), 1)
    assert (doubled.width_pt, doubled.height_pt) == pytest.approx((2 * plain.width_pt, 2 * plain.height_pt))
    assert (doubled.width_px, doubled.height_px) == (plain.width_px, plain.height_px)


@pytest.mark.parametrize(
    ("content", "refusal", "words"),
    [
        (b"", UnsupportedPdf, "empty"),
        (b"hello, not a pdf", UnsupportedPdf, "not a PDF"),
        (b"%PDF-1.7\n" + b"\x00garbage" * 100, UnsupportedPdf, "damaged"),
        (
            b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< >>\n%%EOF",
            UnsupportedPdf,
            "damaged",
        ),
    ],
)
def test_what_is_not_a_readable_pdf_is_refused(content: bytes, refusal: type[Exception], words: str) -> None:
    with pytest.raises(refusal, match=words):
        render_page(content, 1)


def test_a_password_protected_pdf_is_refused_with_words_to_act_on() -> None:
    with pytest.raises(EncryptedPdf, match="password") as refused:
        render_page(corpus_pdf("sf-005-encrypted-password.pdf"), 1)
    assert isinstance(refused.value, InvalidInput)


def test_a_damaged_pdf_stamping_refuses_is_refused_here_too() -> None:
    with pytest.raises(UnsupportedPdf, match="damaged"):
        render_page(corpus_pdf("sf-017-unreadable-metadata.pdf"), 1)


def test_a_page_past_the_end_is_refused() -> None:
    with pytest.raises(InvalidPlacement, match="4 pages"):
        render_page(corpus_pdf("sf-006-pdflatex-outline.pdf"), 5)


def test_renders_from_many_threads_agree() -> None:
    """PDFium is not thread-safe: renders from several threads must queue, not corrupt each other."""
    document = corpus_pdf("sf-003-pdflatex-image.pdf")
    expected = render_page(document, 1).png
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: render_page(document, 1).png, range(12)))
    assert all(png == expected for png in results)


def test_every_corpus_page_one_renders_or_is_refused_as_stamping_would(tmp_path: Path) -> None:
    refused = {"sf-005-encrypted-password.pdf", "sf-017-unreadable-metadata.pdf"}
    for path in sorted(require_corpus().glob("*.pdf")):
        if path.name in refused:
            with pytest.raises(InvalidInput):
                render_page(path.read_bytes(), 1)
            continue
        preview = render_page(path.read_bytes(), 1)
        assert preview.page == 1 and preview.page_count >= 1, path.name
        assert decode_png(preview.png)[:2] == (preview.width_px, preview.height_px), path.name


def test_encode_png_checks_its_input() -> None:
    assert decode_png(encode_png(b"\x00\x10\x20" * 6, 3, 2)) == (3, 2, b"\x00\x10\x20" * 6)
    with pytest.raises(ValueError):
        encode_png(b"\x00" * 5, 3, 2)
