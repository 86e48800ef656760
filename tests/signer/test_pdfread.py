"""The lazy reader against pypdf's whole-file reading, and the stamp's fallback to the latter."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cryptography import x509
from pypdf import PdfReader
from pypdf.generic import IndirectObject, read_object

from services.signer import stamping
from services.signer.increment import serialise
from services.signer.pdfread import LazyPdf, NeedsRepair
from services.signer.pdfsyntax import Unusual, parse_object
from services.signer.pki import SigningIdentity
from services.signer.verification import verify_document
from tests.conftest import require_corpus

from .conftest import SERIAL, corpus_files, pdfsig
from .test_stamping import stamp

READABLE = [f.name for f in corpus_files() if f.name != "sf-017-unreadable-metadata.pdf"]


@pytest.mark.parametrize("name", READABLE)
def test_every_page_is_where_pypdf_finds_it(name: str) -> None:
    document = (require_corpus() / name).read_bytes()
    lazy = LazyPdf(document)
    reader = PdfReader(io.BytesIO(document), strict=False)
    assert lazy.is_encrypted == reader.is_encrypted
    if reader.is_encrypted:
        return
    assert lazy.root_reference.idnum == reader.root_object.indirect_reference.idnum
    assert lazy.page_count == len(reader.pages)
    for index, page in enumerate(reader.pages):
        node = lazy.page(index)
        assert node.reference.idnum == page.indirect_reference.idnum
        assert node.box == tuple(float(value) for value in page.cropbox)
        assert int(node.rotate or 0) == int(page.get("/Rotate", 0))
    highest = max(max(table) for table in reader.xref.values() if table)
    if reader.xref_objStm:
        highest = max(highest, *reader.xref_objStm)
    assert lazy.first_free_number() > highest


def test_a_file_with_a_broken_cross_reference_chain_needs_repair() -> None:
    with pytest.raises(NeedsRepair):
        LazyPdf((require_corpus() / "sf-017-unreadable-metadata.pdf").read_bytes())


def test_an_entry_pointing_elsewhere_needs_repair() -> None:
    document = (require_corpus() / "sf-002-libreoffice-writer.pdf").read_bytes()
    lazy = LazyPdf(document)
    catalog_number = lazy.root_reference.idnum
    # Point the catalog's entry at the object before it.
    table = document.rindex(b"\nxref") + 1
    rows = document[table:].split(b"\n")
    first_row = next(i for i, row in enumerate(rows) if row.startswith(b"0000000000 65535 f"))
    catalog_row = rows[first_row + catalog_number]
    wrong = b"%010d" % (int(catalog_row[:10]) - 5) + catalog_row[10:]
    damaged = document[:table] + document[table:].replace(catalog_row, wrong, 1)
    with pytest.raises(NeedsRepair):
        _ = LazyPdf(damaged).catalog


SAMPLES = [
    b"<< /Type /Page /MediaBox [0 0 595.276 841.89] /Parent 3 0 R /Rotate -90 >>",
    b"[1 2.5 -.5 +3 /Name (text) <48656C6C6F> <FEFF00410042> true false null 12 0 R]",
    b"<</A<</B[1 0 R 2 0 R]>>/C()/D<>>>",
    b"<< % a comment\n /Key /Value % another\n >>",
    b"[(with \\) escape) (nested (paren) s) (\\376\\377\\000N\\000a) (\\0612\\n\\\\)]",
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_fast_parser_reads_what_pypdf_reads(sample: bytes) -> None:
    ours = parse_object(sample, 0, lambda ref: ref.get_object(), None)
    theirs = read_object(io.BytesIO(sample), _StrictOwner())
    assert _plain(ours) == _plain(theirs)


def test_the_fast_parser_reads_a_stream_with_an_indirect_length() -> None:
    sample = b"<< /Length 5 0 R >>\nstream\nhello\nendstream"
    lengths = {5: 5}

    stream = parse_object(sample, 0, lambda ref: lengths[ref.idnum], None)
    assert stream.get_data() == b"hello"


@pytest.mark.parametrize(
    "sample",
    [b"/Name#20With#20Spaces", b"(line\\\ncontinued)", b"(\\q)", b"<< /A 1 /A 2 >>", b"endobj"],
)
def test_unusual_syntax_is_left_to_pypdf(sample: bytes) -> None:
    with pytest.raises(Unusual):
        parse_object(sample, 0, lambda ref: ref.get_object(), None)


class _StrictOwner:
    strict = True


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, IndirectObject):
        return ("ref", value.idnum, value.generation)
    return (type(value).__name__, value)


@pytest.mark.parametrize(
    "name",
    ["sf-010-pdflatex-forms.pdf", "sf-015-habibi-rotated.pdf", "ph-signed-twice.pdf", "ph-hybrid-xref.pdf"],
)
def test_stamps_read_by_the_lenient_reader_validate_too(
    name: str,
    identity: SigningIdentity,
    trust_roots: list[x509.Certificate],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def needs_repair(document: bytes) -> LazyPdf:
        raise NeedsRepair("as if the file were damaged")

    monkeypatch.setattr(stamping, "LazyPdf", needs_repair)
    original = (require_corpus() / name).read_bytes()
    stamped = stamp(original, identity).stamped_document
    assert stamped.startswith(original)
    path = tmp_path / name
    path.write_bytes(stamped)
    ours = [s for s in pdfsig(path) if s.field_name == f"e-meterai {SERIAL}"]
    assert len(ours) == 1 and ours[0].valid and ours[0].total_document
    report = verify_document(stamped, trust_roots).signatures[-1]
    assert report.signature_valid and report.document_intact and report.covers_whole_document


@pytest.mark.parametrize("name", READABLE)
def test_objects_we_rewrite_serialise_to_what_pypdf_writes(name: str) -> None:
    # Whitespace may differ; what a reader parses back must not.
    reader = PdfReader(require_corpus() / name, strict=False)
    if reader.is_encrypted:
        return
    objects = [
        reader.root_object,
        reader.trailer,
        *(page.indirect_reference.get_object() for page in reader.pages),
    ]
    for obj in objects:
        written = io.BytesIO()
        obj.write_to_stream(written)
        ours = read_object(io.BytesIO(serialise(obj)), _LenientOwner())
        theirs = read_object(io.BytesIO(written.getvalue()), _LenientOwner())
        assert _plain(ours) == _plain(theirs)


class _LenientOwner:
    strict = False
