"""Hostile and broken PDFs: stamping and verifying end in a domain error, never a crash or a hang.

Each file is built here, byte by byte, to aim at one weakness of a PDF reader: a compressed stream
that inflates to gigabytes, nesting deep enough to exhaust the stack, a page tree that lies about
its size or loops, a cross-reference chain that loops, an object defined as itself, a /Size no
real file has. They go straight to `place_stamp` and `verify_document` (no worker process, no
time limit around them), so a hang would hang the suite and a stray exception fails the test.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from services.common.errors import DomainError
from services.signer.errors import UnsupportedPdf
from services.signer.pki import SigningIdentity
from services.signer.placement import Placement
from services.signer.stamping import place_stamp
from services.signer.verification import verify_document
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL, pdfsig

_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"
_PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"


def classic_pdf(objects: dict[int, bytes], trailer: bytes = b"/Root 1 0 R", size: int | None = None) -> bytes:
    """A PDF with a well-formed cross-reference table for `objects` (number -> body)."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    highest = max(objects)
    start = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f\r\n" % (highest + 1)
    for number in range(1, highest + 1):
        if number in offsets:
            out += b"%010d 00000 n\r\n" % offsets[number]
        else:
            out += b"0000000000 00000 f\r\n"
    out += b"trailer\n<< /Size %d " % (size if size is not None else highest + 1) + trailer + b" >>\n"
    out += b"startxref\n%d\n%%%%EOF\n" % start
    return bytes(out)


def simple_pdf(**changes: bytes) -> bytes:
    """A one-page PDF; `catalog`, `pages` or `page` replace those objects' bodies."""
    return classic_pdf(
        {1: changes.get("catalog", _CATALOG), 2: changes.get("pages", _PAGES), 3: changes.get("page", _PAGE)}
    )


def zeros_bomb(mebibytes: int) -> bytes:
    """A zlib stream that inflates to `mebibytes` MiB of zeros, made without inflating anything.

    After a full flush the compressor forgets its window, so each further MiB of zeros compresses
    to the same bytes; the Adler-32 of n zeros is (n mod 65521) << 16 | 1.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    length = mebibytes << 20
    adler = ((length % 65521) << 16) | 1
    return b"\x78\xda" + first + repeated * (mebibytes - 1) + compressor.flush() + adler.to_bytes(4, "big")


def stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< " + dictionary + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def xref_stream_pdf(
    objects: dict[int, bytes],
    xref_data: bytes | None = None,
    extra: bytes = b"",
    compressed: dict[int, int] | None = None,
) -> bytes:
    """A PDF 1.5 file whose only cross-reference section is a stream (object 9); `compressed`
    maps objects kept in an object stream to that stream's number (as its first object)."""
    compressed = compressed or {}
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    start = len(out)
    rows = bytearray(b"\x00\x00\x00\x00\xff\xff")
    for number in range(1, 9):
        if number in compressed:
            rows += b"\x02" + compressed[number].to_bytes(4, "big") + b"\x00"
        else:
            rows += b"\x01" + offsets.get(number, 0).to_bytes(4, "big") + b"\x00"
    rows += b"\x01" + start.to_bytes(4, "big") + b"\x00"
    data = xref_data if xref_data is not None else zlib.compress(bytes(rows))
    out += (
        b"9 0 obj\n"
        + stream(b"/Type /XRef /Size 10 /W [1 4 1] /Root 1 0 R /Filter /FlateDecode " + extra, data)
        + b"\nendobj\n"
    )
    out += b"startxref\n%d\n%%%%EOF\n" % start
    return bytes(out)


def object_stream_bomb() -> bytes:
    # The catalog lives in an object stream that inflates to 1 GiB; the page tree is plain.
    objects = {
        2: _PAGES,
        3: _PAGE,
        4: stream(b"/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode", zeros_bomb(1024)),
    }
    return xref_stream_pdf(objects, compressed={1: 4})


def nested_flate_bomb() -> bytes:
    # Twice compressed: a 2 KB stream that becomes 1 MB, then 1 GiB.
    data = zlib.compress(zeros_bomb(1024), 9)
    objects = {
        2: _PAGES,
        3: _PAGE,
        4: stream(b"/Type /ObjStm /N 1 /First 4 /Filter [/FlateDecode /FlateDecode]", data),
    }
    return xref_stream_pdf(objects, compressed={1: 4})


def prev_loop(self_loop: bool) -> bytes:
    document = simple_pdf()
    start = int(document.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    if self_loop:
        return document.replace(b"/Root 1 0 R", b"/Root 1 0 R /Prev %d" % start)
    # A second section (an update) whose /Prev is the first, and the first's /Prev the second.
    # The first trailer grows by a fixed-width /Prev; no object moves, as it follows them all.
    update_start = len(document) + len(b" /Prev 0000000000")
    patched = document.replace(b"/Root 1 0 R", b"/Root 1 0 R /Prev %010d" % update_start)
    update = b"xref\n0 1\n0000000000 65535 f\r\ntrailer\n<< /Size 4 /Root 1 0 R /Prev %d >>\n" % start
    return patched + update + b"startxref\n%d\n%%%%EOF\n" % update_start


HOSTILE: dict[str, Callable[[], bytes]] = {
    # Decompression bombs: readers must stop inflating long before the gigabyte.
    "xref-stream-bomb": lambda: xref_stream_pdf({1: _CATALOG, 2: _PAGES, 3: _PAGE}, zeros_bomb(1024)),
    "object-stream-bomb": object_stream_bomb,
    "nested-flate-bomb": nested_flate_bomb,
    # Nesting 100,000 deep, where a stamp must read: the catalog, the page, the trailer.
    "deep-array-in-catalog": lambda: simple_pdf(
        catalog=b"<< /Type /Catalog /Pages 2 0 R /Deep " + b"[" * 100_000 + b"]" * 100_000 + b" >>"
    ),
    "deep-dict-in-page": lambda: simple_pdf(
        page=_PAGE[:-2] + b"/Deep " + b"<< /A " * 100_000 + b"1" + b" >>" * 100_000 + b" >>"
    ),
    "deep-array-unclosed": lambda: simple_pdf(
        catalog=b"<< /Type /Catalog /Pages 2 0 R /Deep " + b"[" * 100_000
    ),
    "deep-trailer": lambda: classic_pdf(
        {1: _CATALOG, 2: _PAGES, 3: _PAGE}, b"/Root 1 0 R /Deep " + b"[" * 100_000 + b"]" * 100_000
    ),
    # Page trees that lie.
    "huge-count": lambda: simple_pdf(pages=b"<< /Type /Pages /Kids [3 0 R] /Count 2147483647 >>"),
    "negative-count": lambda: simple_pdf(pages=b"<< /Type /Pages /Kids [3 0 R] /Count -5 >>"),
    "cyclic-page-tree": lambda: simple_pdf(pages=b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>"),
    "page-is-its-own-parent": lambda: simple_pdf(
        pages=b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        page=b"<< /Type /Pages /Parent 2 0 R /Kids [3 0 R] /Count 1 >>",
    ),
    # Cross-reference chains that loop.
    "prev-points-at-itself": lambda: prev_loop(self_loop=True),
    "prev-loop-of-two": lambda: prev_loop(self_loop=False),
    # Objects defined as themselves.
    "object-is-a-reference-to-itself": lambda: simple_pdf(pages=b"2 0 R"),
    "stream-length-is-itself": lambda: simple_pdf(
        page=_PAGE[:-2] + b"/Contents 4 0 R >>",
    ).replace(b"trailer", b"4 0 obj\n<< /Length 4 0 R >>\nstream\nBT ET\nendstream\nendobj\ntrailer"),
    # Sizes no real file has.
    "absurd-size-table": lambda: classic_pdf({1: _CATALOG, 2: _PAGES, 3: _PAGE}, size=10**12),
    "absurd-size-xref-stream": lambda: xref_stream_pdf({1: _CATALOG, 2: _PAGES, 3: _PAGE}).replace(
        b"/Size 10 ", b"/Size 999999999999 "
    ),
    "absurd-index-xref-stream": lambda: xref_stream_pdf(
        {1: _CATALOG, 2: _PAGES, 3: _PAGE}, extra=b"/Index [0 10 1000000000 1000000000]"
    ),
}


# What a stamp says to each file: the refusal's reason, or None where the file, however odd, reads
# the same in pypdf and poppler (a page tree whose /Count lies is counted by its kids; a /Prev
# chain that loops is followed once round), so it is stamped and the stamp verifies.
EXPECTED: dict[str, str | None] = {
    "xref-stream-bomb": "expands to more than 64 MiB",
    "object-stream-bomb": "expands to more than 64 MiB",
    "nested-flate-bomb": "expands to more than 64 MiB",
    "deep-array-in-catalog": "nests its data deeper",
    "deep-dict-in-page": "nests its data deeper",
    "deep-array-unclosed": "nests its data deeper",
    "deep-trailer": "nests its data deeper",
    "huge-count": None,
    "negative-count": None,
    "cyclic-page-tree": "damaged",
    "page-is-its-own-parent": "damaged",
    "prev-points-at-itself": None,
    "prev-loop-of-two": None,
    "object-is-a-reference-to-itself": "damaged",
    "stream-length-is-itself": "damaged",
    "absurd-size-table": "more objects than a PDF can",
    "absurd-size-xref-stream": "more objects than a PDF can",
    "absurd-index-xref-stream": None,
}


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    # pypdf warns about every broken file, at length.
    caplog.set_level(logging.CRITICAL)


def stamp(document: bytes, identity: SigningIdentity) -> bytes:
    return place_stamp(
        document, serial=SERIAL, placement=Placement(), identity=identity, public_url=PUBLIC_URL
    ).stamped_document


def verifies_or_is_refused(document: bytes, trust_roots: list[x509.Certificate]) -> None:
    """Verification of a hostile file yields a report or a domain error with a reason."""
    try:
        verify_document(document, trust_roots)
    except DomainError as exc:
        assert exc.message


def test_every_hostile_file_has_an_expected_outcome() -> None:
    assert set(EXPECTED) == set(HOSTILE)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_refused_with_a_reason_or_stamped(
    name: str, identity: SigningIdentity, trust_roots: list[x509.Certificate], tmp_path: Path
) -> None:
    document = HOSTILE[name]()
    reason = EXPECTED[name]
    if reason is None:
        stamped = stamp(document, identity)
        assert stamped.startswith(document)
        report = verify_document(stamped, trust_roots).signatures[-1]
        assert (report.serial, report.signature_valid, report.covers_whole_document) == (SERIAL, True, True)
        path = tmp_path / "stamped.pdf"
        path.write_bytes(stamped)
        assert [(s.valid, s.total_document) for s in pdfsig(path)] == [(True, True)]
    else:
        with pytest.raises(UnsupportedPdf, match=reason):
            stamp(document, identity)
    verifies_or_is_refused(document, trust_roots)


@pytest.mark.parametrize("name", ["sf-001-minimal-document.pdf", "sf-002-libreoffice-writer.pdf"])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95, 0.999])
def test_truncated_files_are_refused_as_damaged(
    name: str, fraction: float, identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    # An xref stream file and a classic-table file: cut anywhere, the last startxref is gone.
    original = (require_corpus() / name).read_bytes()
    truncated = original[: int(len(original) * fraction)]
    with pytest.raises(UnsupportedPdf, match="damaged"):
        stamp(truncated, identity)
    verifies_or_is_refused(truncated, trust_roots)


def test_compacted_syntax_is_stamped(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], tmp_path: Path
) -> None:
    # Minimal whitespace everywhere (SafeDocs' test file): legal PDF, which pyHanko fails on.
    original = (require_corpus() / "ph-compacted-syntax.pdf").read_bytes()
    stamped = stamp(original, identity)
    path = tmp_path / "compacted.pdf"
    path.write_bytes(stamped)
    assert [(s.valid, s.total_document) for s in pdfsig(path)] == [(True, True)]
    report = verify_document(stamped, trust_roots).signatures[-1]
    assert report.signature_valid and report.document_intact and report.serial == SERIAL


def test_a_file_whose_page_tree_is_lost_is_refused_as_damaged(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    # Half of sf-017 is zeros where its objects were: the catalog survives without /Pages.
    # qpdf "reconstructs" it with no pages at all, pypdf fails on /Pages, and poppler takes
    # the page count from the linearization header and renders four blank pages. No reader
    # recovers a page to stamp, so it is refused, not reconstructed.
    document = (require_corpus() / "sf-017-unreadable-metadata.pdf").read_bytes()
    with pytest.raises(UnsupportedPdf, match="damaged"):
        stamp(document, identity)
    with pytest.raises(UnsupportedPdf, match="damaged"):
        verify_document(document, trust_roots)
