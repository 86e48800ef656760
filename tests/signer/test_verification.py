"""Verifying signatures: what each covers, what later revisions changed, and timestamp tokens."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
from collections.abc import Callable

import pytest
from cryptography import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.fields import MDPPerm, SigFieldSpec
from pypdf import PdfReader, PdfWriter
from pypdf.annotations import FreeText

from services.signer.changes import ALLOWED, MODIFIED, NONE
from services.signer.cms import check_signed_data
from services.signer.errors import UnsupportedPdf
from services.signer.pki import DevPki, SigningIdentity
from services.signer.placement import Placement
from services.signer.revisions import read_xref_sections
from services.signer.stamping import place_stamp
from services.signer.timestamp_tokens import (
    EmbeddedTimestamp,
    check_signature_timestamp,
    find_signature_timestamp,
)
from services.signer.verification import (
    APPROVAL,
    CERTIFICATION,
    DOCUMENT_TIMESTAMP,
    SignatureReport,
    verify_document,
)
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL, TimestampAuthority, corpus_files, pyhanko_signer

# Every corpus file has one revision but these.
REVISIONS = {
    "ph-hybrid-xref.pdf": 2,
    "ph-signed-pades-lta-dss.pdf": 5,
    "ph-signed-twice.pdf": 2,
    "sf-014-mistitled-outlines.pdf": 4,
}
# Refused by place_stamp; test_stamping checks why.
REFUSED = {
    "sf-005-encrypted-password.pdf",
    "sf-007-imagemagick-ccitt.pdf",
    "sf-007-imagemagick-images.pdf",
    "sf-017-unreadable-metadata.pdf",
}
STAMPABLE = [f.name for f in corpus_files() if f.name not in REFUSED]


def read_corpus(name: str) -> bytes:
    return (require_corpus() / name).read_bytes()


def stamp(document: bytes, identity: SigningIdentity, serial: str = SERIAL, page: int = 0) -> bytes:
    placement = Placement(page=page, rect=(20, 20, 120, 120)) if page else Placement()
    return place_stamp(
        document, serial=serial, placement=placement, identity=identity, public_url=PUBLIC_URL
    ).stamped_document


def edit(document: bytes, change: Callable[[PdfWriter], None]) -> bytes:
    """Apply `change` as another tool would: pypdf appending an incremental update."""
    writer = PdfWriter(io.BytesIO(document), incremental=True)
    change(writer)
    buffer = io.BytesIO()
    writer.write(buffer)
    edited = buffer.getvalue()
    assert edited.startswith(document) and len(edited) > len(document)
    return edited


def ours(document: bytes, trust_roots: list[x509.Certificate]) -> SignatureReport:
    [report] = [r for r in verify_document(document, trust_roots).signatures if r.serial == SERIAL]
    return report


@pytest.mark.parametrize("name", STAMPABLE, ids=[n.removesuffix(".pdf") for n in STAMPABLE])
def test_our_stamp_covers_the_next_revision_and_nothing_follows_it(
    name: str, identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    report = ours(stamp(read_corpus(name), identity), trust_roots)
    assert report.signature_valid and report.document_intact and report.chain_trusted
    assert report.covers_whole_document
    assert (report.later_changes, report.later_revisions) == (NONE, 0)
    assert report.revision == REVISIONS.get(name, 1) + 1
    assert report.kind == APPROVAL
    assert not report.has_timestamp and report.timestamp_time is None
    assert report.problems == ()


@pytest.mark.parametrize("name", ["ph-signed-twice.pdf", "ph-signed-pades-lta-dss.pdf"])
def test_earlier_signatures_see_only_allowed_changes_before_and_after_our_stamp(
    name: str, identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    original = read_corpus(name)
    before = verify_document(original, trust_roots).signatures
    after = verify_document(stamp(original, identity), trust_roots).signatures
    assert len(after) == len(before) + 1
    for earlier in (before[:-1], after[:-1]):
        assert all(r.signature_valid and r.document_intact for r in earlier)
        assert all(r.later_changes == ALLOWED and r.later_revisions >= 1 for r in earlier)
    assert before[-1].later_changes in (NONE, ALLOWED)
    assert [r.revision for r in after[:-1]] == [r.revision for r in before]
    assert after[-1].later_changes == NONE and after[-1].document_intact


def test_a_pades_lta_file_verifies_with_its_timestamps_under_its_own_root() -> None:
    document = read_corpus("ph-signed-pades-lta-dss.pdf")
    reader = PdfReader(io.BytesIO(document))
    certificates = [
        x509.load_der_x509_certificate(c.get_object().get_data())
        for c in reader.root_object["/DSS"]["/Certs"]
    ]
    [root] = [c for c in certificates if c.subject == c.issuer]
    signature, document_timestamp = verify_document(document, [root]).signatures
    at = dt.datetime(2020, 11, 1, tzinfo=dt.UTC)

    assert signature.kind == APPROVAL
    assert signature.has_timestamp and signature.timestamp_valid and signature.timestamp_time == at
    assert signature.timestamp_authority.startswith("CN=Time Stamping Authority")
    # The signer's certificate expired in 2022; the timestamp proves it signed while valid.
    assert signature.chain_trusted and signature.signed_at == at
    assert signature.later_changes == ALLOWED  # the DSS and the document timestamp
    assert signature.problems == ()

    assert document_timestamp.kind == DOCUMENT_TIMESTAMP
    assert document_timestamp.signature_valid and document_timestamp.chain_trusted
    assert document_timestamp.timestamp_valid and document_timestamp.timestamp_time == at
    assert document_timestamp.later_changes == ALLOWED  # the DSS update after it


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            lambda w: _append_to_content(w, b"\n0 0 1 rg 10 10 50 50 re f\n"),
            "content of page 1 was changed",
            id="page-content",
        ),
        pytest.param(lambda w: w.add_blank_page(), "page tree was changed", id="new-page"),
        pytest.param(
            lambda w: w.add_annotation(0, FreeText(text="Lunas", rect=(50, 50, 200, 100))),
            "annotation (FreeText) was added to page 1",
            id="new-annotation",
        ),
        pytest.param(
            lambda w: w.root_object.__setitem__(_name("/OpenAction"), w.pages[0].indirect_reference),
            "catalog's /OpenAction entry was changed",
            id="catalog",
        ),
    ],
)
def test_changes_after_our_stamp_are_modifications(
    change: Callable[[PdfWriter], None],
    reason: str,
    identity: SigningIdentity,
    trust_roots: list[x509.Certificate],
) -> None:
    edited = edit(stamp(read_corpus("sf-002-libreoffice-writer.pdf"), identity), change)
    report = ours(edited, trust_roots)
    assert report.signature_valid  # the signed bytes are untouched...
    assert report.later_changes == MODIFIED  # ...but the document a reader sees is not what was signed
    assert not report.document_intact
    assert not report.covers_whole_document
    assert any(reason in problem for problem in report.problems), report.problems


def test_filling_a_form_field_after_an_approval_stamp_is_allowed(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-010-pdflatex-forms.pdf"), identity)
    edited = edit(stamped, lambda w: w.update_page_form_field_values(w.pages[0], {"Name": "Budi"}))
    report = ours(edited, trust_roots)
    assert (report.later_changes, report.document_intact, report.problems) == (ALLOWED, True, ())


def _interpolate_first_image(writer: PdfWriter) -> None:
    image = next(iter(writer.pages[0]["/Resources"]["/XObject"].values())).get_object()
    image[_name("/Interpolate")] = _true()


def test_a_changed_object_is_named_with_its_type_as_the_file_spells_it(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-003-pdflatex-image.pdf"), identity)
    image = PdfReader(io.BytesIO(stamped)).pages[0]["/Resources"]["/XObject"].raw_get("/Im1").idnum
    report = ours(edit(stamped, _interpolate_first_image), trust_roots)
    assert report.later_changes == MODIFIED
    assert f"Object {image} (XObject) was changed after this signature." in report.problems, report.problems


def test_a_second_stamp_is_an_allowed_change_for_the_first(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    once = stamp(read_corpus("sf-006-pdflatex-outline.pdf"), identity)
    twice = stamp(once, identity, serial="ZZ99YY88XX77WW66VV55UU", page=2)
    first, second = verify_document(twice, trust_roots).signatures
    assert (first.later_changes, first.later_revisions, first.document_intact) == (ALLOWED, 1, True)
    assert (second.later_changes, second.document_intact) == (NONE, True)


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        # A ContentInfo of plain data (1.2.840.113549.1.7.1), no SignedData.
        (b"300b06092a864886f70d010701", "The signature is not a CMS SignedData."),
        (b"ffff", "The signature data cannot be read (ValueError)."),
    ],
)
def test_a_signature_that_is_no_cms_says_so_in_a_sentence(
    signature: bytes, problem: str, identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-001-minimal-document.pdf"), identity)
    # The signature's own bytes, which no digest covers, replaced where they begin.
    start = stamped.rindex(b"/Contents <") + len(b"/Contents <")
    broken = stamped[:start] + signature + stamped[start + len(signature) :]
    report = ours(broken, trust_roots)
    assert report.problems == (problem,)
    assert not report.signature_valid


def test_a_signature_that_names_no_type_says_so(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-001-minimal-document.pdf"), identity)
    sub_filter = re.search(rb"/SubFilter\s*/[^\s/<>\[\]()]+", stamped)
    assert sub_filter is not None
    unnamed = stamped.replace(sub_filter.group(), b" " * len(sub_filter.group()))
    report = ours(unnamed, trust_roots)
    assert report.problems == ("The signature names no type (/SubFilter), so it cannot be checked.",)


def test_a_deleted_object_is_a_modification(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-002-libreoffice-writer.pdf"), identity)
    reader = PdfReader(io.BytesIO(stamped))
    content = reader.pages[0].raw_get("/Contents").idnum
    [newest, *_] = read_xref_sections(stamped, reader)
    # A hand-written update whose only entry frees the page's content stream.
    at = len(stamped)
    update = (
        f"xref\n0 1\n0000000000 65535 f\r\n{content} 1\n0000000000 00001 f\r\n"
        f"trailer\n<< /Size {reader.trailer['/Size']} /Root {newest.root[0]} 0 R /Prev {newest.offset} >>\n"
        f"startxref\n{at}\n%%EOF\n"
    ).encode()
    report = ours(stamped + update, trust_roots)
    assert report.later_changes == MODIFIED and not report.document_intact
    assert "The content of page 1 was deleted after this signature." in report.problems


def test_bytes_that_form_no_revision_change_nothing(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-001-minimal-document.pdf"), identity)
    report = ours(stamped + b"% a comment\n", trust_roots)
    assert report.later_changes == NONE and report.document_intact and not report.covers_whole_document
    assert any("without forming a revision" in problem for problem in report.problems)


@pytest.mark.parametrize(
    "tail",
    [
        b"startxref\n99999999\n%%EOF\n",
        b"xref\n0 5\ngarbage\ntrailer\n<< >>\nstartxref\n{at}\n%%EOF\n",
        b"1 0 obj\n<< /Type /XRef /W [1 2] /Size 3 >>\nstream\n\nendstream\nendobj\nstartxref\n{at}\n%%EOF\n",
    ],
    ids=["offset-outside", "broken-table", "broken-stream"],
)
def test_unreadable_later_revisions_are_modifications_not_crashes(
    tail: bytes, identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-001-minimal-document.pdf"), identity)
    document = stamped + tail.replace(b"{at}", str(len(stamped)).encode())
    # A reader may refuse the file, or rebuild it and find no signature: never ours intact.
    reports: list[SignatureReport] = []
    with contextlib.suppress(UnsupportedPdf):
        reports = verify_document(document, trust_roots).signatures
    for report in reports:
        assert report.later_changes == MODIFIED and not report.document_intact
        assert any("cannot be read" in problem for problem in report.problems), report.problems


# Certification (DocMDP) signatures and timestamps, made by pyHanko as a second, independent engine.


def certify(document: bytes, pki: DevPki, level: MDPPerm) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(document), strict=False)
    meta = signers.PdfSignatureMetadata(
        field_name="Certification",
        certify=True,
        docmdp_permissions=level,
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    return signers.sign_pdf(writer, meta, signer=pyhanko_signer(pki)).getvalue()


def add_document_timestamp(document: bytes, tsa: TimestampAuthority) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(document), strict=False)
    stamper = signers.PdfTimeStamper(tsa.timestamper())  # type: ignore[arg-type]
    return stamper.timestamp_pdf(writer, "sha256").getvalue()


def add_empty_signature_field(document: bytes) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(document), strict=False)
    fields.append_signature_field(writer, SigFieldSpec("Witness", on_page=0, box=(300, 20, 400, 120)))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_a_no_changes_certification_allows_only_timestamps(
    dev_pki: DevPki, trust_roots: list[x509.Certificate], test_tsa: TimestampAuthority
) -> None:
    certified = certify(read_corpus("sf-001-minimal-document.pdf"), dev_pki, MDPPerm.NO_CHANGES)
    [certification] = verify_document(certified, trust_roots).signatures
    assert certification.kind == CERTIFICATION
    assert (
        certification.signature_valid and certification.chain_trusted and certification.later_changes == NONE
    )

    timestamped = add_document_timestamp(certified, test_tsa)
    certification, document_timestamp = verify_document(timestamped, [*trust_roots, test_tsa.root]).signatures
    verdict = (certification.later_changes, certification.document_intact)
    assert verdict == (ALLOWED, True), certification.problems
    assert document_timestamp.kind == DOCUMENT_TIMESTAMP and document_timestamp.timestamp_valid

    with_field = add_empty_signature_field(certified)
    [certification] = verify_document(with_field, trust_roots).signatures
    assert certification.later_changes == MODIFIED and not certification.document_intact
    assert any("other than a signature" in p or "annotation" in p for p in certification.problems)


def test_a_form_filling_certification_allows_our_stamp(
    dev_pki: DevPki, identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    certified = certify(read_corpus("sf-001-minimal-document.pdf"), dev_pki, MDPPerm.FILL_FORMS)
    certification, stamp_report = verify_document(stamp(certified, identity), trust_roots).signatures
    assert certification.kind == CERTIFICATION
    assert (certification.later_changes, certification.document_intact) == (ALLOWED, True)
    assert stamp_report.document_intact and stamp_report.chain_trusted


def test_a_signature_timestamp_token_is_verified(
    dev_pki: DevPki, trust_roots: list[x509.Certificate], test_tsa: TimestampAuthority
) -> None:
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    writer = IncrementalPdfFileWriter(io.BytesIO(read_corpus("sf-001-minimal-document.pdf")), strict=False)
    meta = signers.PdfSignatureMetadata(field_name="Signed", subfilter=fields.SigSeedSubFilter.PADES)
    signed = signers.sign_pdf(
        writer, meta, signer=pyhanko_signer(dev_pki), timestamper=test_tsa.timestamper(at)
    ).getvalue()

    [report] = verify_document(signed, [*trust_roots, test_tsa.root]).signatures
    assert report.has_timestamp and report.timestamp_valid
    assert report.timestamp_time == at and report.signed_at == at
    assert report.timestamp_authority == "CN=Test Timestamp Authority"
    assert report.chain_trusted and report.problems == ()

    # Without the authority's root the token proves nothing, and the signature falls back to /M.
    [report] = verify_document(signed, trust_roots).signatures
    assert report.has_timestamp and not report.timestamp_valid and report.chain_trusted
    assert "The timestamp authority's certificate does not chain to a trusted root." in report.problems


def test_a_token_for_another_signature_value_is_rejected(
    dev_pki: DevPki, test_tsa: TimestampAuthority
) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(read_corpus("sf-001-minimal-document.pdf")), strict=False)
    meta = signers.PdfSignatureMetadata(field_name="Signed", subfilter=fields.SigSeedSubFilter.PADES)
    signed = signers.sign_pdf(
        writer, meta, signer=pyhanko_signer(dev_pki), timestamper=test_tsa.timestamper()
    )
    signature = PdfReader(io.BytesIO(signed.getvalue())).root_object["/AcroForm"]["/Fields"][0]["/V"]
    embedded = find_signature_timestamp(bytes(signature["/Contents"]))
    assert embedded is not None and check_signed_data(embedded.token).is_timestamp_token

    assert check_signature_timestamp(embedded, [test_tsa.root]).valid
    swapped = check_signature_timestamp(
        EmbeddedTimestamp(b"another signature", embedded.token), [test_tsa.root]
    )
    assert not swapped.valid
    assert "The signature's timestamp was issued for a different signature value." in swapped.problems


def _append_to_content(writer: PdfWriter, drawing: bytes) -> None:
    content = writer.pages[0]["/Contents"].get_object()
    content.set_data(content.get_data() + drawing)


def _name(value: str) -> object:
    from pypdf.generic import NameObject

    return NameObject(value)


assert timestamps  # pyHanko's timestamp clients are what test_tsa hands out


def _true() -> object:
    from pypdf.generic import BooleanObject

    return BooleanObject(True)
