"""A picture of one page of a PDF, so a person can point at where the stamp goes.

The page's size comes from the signer's own placement code, so `width_pt` x `height_pt` is
exactly the space a stamp's `rect` is given in: the page as a viewer shows it (after /Rotate,
relative to the crop box), in points, whatever its /UserUnit. PDFium (pypdfium2) draws the
picture at a bounded size; its aspect is the same, since /UserUnit scales both sides alike.

The file is untrusted. Reading it is bounded as stamping's is (see services.signer.documents),
the picture's size is bounded whatever the page claims, and every way PDFium can refuse a file
becomes an `UnsupportedPdf` with words the owner can act on. PDFium is not thread-safe, so one
page is drawn at a time in a process, and the caller bounds how many renders wait for it.
"""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from services.common.errors import DomainError
from services.signer.documents import DAMAGED, PypdfSource, check_is_pdf, open_pdf, reading_pdf
from services.signer.encryption import PASSWORD_PROTECTED, UNSUPPORTED_ENCRYPTION
from services.signer.errors import EncryptedPdf, UnsupportedPdf
from services.signer.pdfread import LazyPdf
from services.signer.placement import PageGeometry, choose_page

log = logging.getLogger(__name__)

# About a screen's height: enough to aim a 100-point stamp, small enough to send quickly.
DEFAULT_LONGEST_SIDE_PX = 800
MAX_LONGEST_SIDE_PX = 2000

_PDFIUM = threading.Lock()


@dataclass(frozen=True)
class PagePreview:
    """One page drawn as a PNG, with the size a stamp's rect is measured against."""

    page: int
    page_count: int
    width_pt: float
    height_pt: float
    png: bytes
    width_px: int
    height_px: int


def render_page(document: bytes, page: int, longest_side_px: int = DEFAULT_LONGEST_SIDE_PX) -> PagePreview:
    """Draw page `page` (1-based; 0 = the last) of `document`, its longer side `longest_side_px`
    pixels long. Raises `InvalidInput` subclasses for a file or page that cannot be shown."""
    if not 1 <= longest_side_px <= MAX_LONGEST_SIDE_PX:
        raise ValueError(f"longest_side_px must be within 1..{MAX_LONGEST_SIDE_PX}")
    with reading_pdf():
        check_is_pdf(document)
    geometry, page_count = _page_geometry(document, page)
    width_pt, height_pt = geometry.visible_size
    scale = longest_side_px / max(width_pt, height_pt)
    width_px = max(1, round(width_pt * scale))
    height_px = max(1, round(height_pt * scale))
    pixels = _draw(document, geometry.number - 1, width_px, height_px)
    return PagePreview(
        page=geometry.number,
        page_count=page_count,
        width_pt=width_pt,
        height_pt=height_pt,
        png=encode_png(pixels, width_px, height_px),
        width_px=width_px,
        height_px=height_px,
    )


def _page_geometry(document: bytes, page: int) -> tuple[PageGeometry, int]:
    """The page as stamping will see it, and the document's page count, read as stamping does."""
    try:
        source = LazyPdf(document)
        return choose_page(source, page), source.page_count
    except DomainError:
        raise
    except Exception:  # the lazy reader is strict; anything irregular goes to the lenient one
        log.debug("lazy reading failed; reading the whole file", exc_info=True)
        with reading_pdf():
            lenient = PypdfSource(open_pdf(document))
            return choose_page(lenient, page), lenient.page_count


def _draw(document: bytes, index: int, width_px: int, height_px: int) -> bytes:
    """RGB rows, `width_px` x `height_px`, of page `index` on white."""
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(document)
        except pdfium.PdfiumError as exc:
            raise _refusal(exc) from exc
        try:
            # Without a form environment PDFium leaves out form fields' widgets, and an e-meterai
            # already on the page is one. (These wheels carry no JavaScript engine to run.)
            pdf.init_forms()
            if index >= len(pdf):
                # PDFium repaired the file into fewer pages than stamping reads in it.
                raise UnsupportedPdf(DAMAGED)
            pdf_page = pdf[index]
            try:
                # PDFium's size ignores /UserUnit; scaling to the pixel box makes that moot.
                width, height = pdf_page.get_size()
                if not (width > 0 and height > 0):
                    raise UnsupportedPdf(DAMAGED)
                bitmap = pdf_page.render(
                    scale=min(width_px / width, height_px / height),
                    may_draw_forms=True,
                    fill_color=(255, 255, 255, 255),
                    force_bitmap_format=pdfium_c.FPDFBitmap_BGR,
                    rev_byteorder=True,
                )
                try:
                    return _rgb_rows(bitmap, width_px, height_px)
                finally:
                    bitmap.close()
            finally:
                pdf_page.close()
        except DomainError:
            raise
        except Exception as exc:  # PDFium's failures on hostile input are open-ended too
            log.info("PDFium could not draw a page: %s", type(exc).__name__, exc_info=True)
            raise UnsupportedPdf(DAMAGED) from exc
        finally:
            pdf.close()


def _rgb_rows(bitmap: pdfium.PdfBitmap, width_px: int, height_px: int) -> bytes:
    """The bitmap as tightly packed RGB rows, cut or padded with white to exactly the box:
    PDFium rounds the page's size its own way, a pixel either side."""
    data = bytes(bitmap.buffer)
    row_bytes = width_px * 3
    white_row = b"\xff" * row_bytes
    rows = []
    for y in range(height_px):
        if y >= bitmap.height:
            rows.append(white_row)
            continue
        row = data[y * bitmap.stride : y * bitmap.stride + min(bitmap.width, width_px) * 3]
        rows.append(row + white_row[len(row) :])
    return b"".join(rows)


def _refusal(error: pdfium.PdfiumError) -> UnsupportedPdf:
    code = getattr(error, "err_code", None)
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return EncryptedPdf(PASSWORD_PROTECTED)
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return EncryptedPdf(UNSUPPORTED_ENCRYPTION)
    return UnsupportedPdf(DAMAGED)


def encode_png(rgb: bytes, width: int, height: int) -> bytes:
    """A PNG of 8-bit RGB rows (no filter, deflated), as the PNG specification lays it out."""
    if len(rgb) != width * height * 3:
        raise ValueError("rgb must hold width * height * 3 bytes")
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
