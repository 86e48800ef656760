"""Stamping real PDFs, checked by poppler, pyHanko, zbar and our own verifier."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import logging
import random
from pathlib import Path

import pytest
from cryptography import x509
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, NumberObject

from services.common.errors import InvalidInput
from services.signer.errors import DocumentLocked, EncryptedPdf, InvalidPlacement, UnsupportedPdf
from services.signer.pki import DevPki, SigningIdentity
from services.signer.placement import Placement
from services.signer.stamping import StampResult, place_stamp
from services.signer.verification import verify_document
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL, CorpusFile, corpus_files, decode_qr, pdfsig

# Corpus files a stamp must refuse, and why: the refusal is the behaviour under test.
REFUSED: dict[str, type[Exception]] = {
    # Needs a user password to open (files that open without one are stamped: test_encrypted.py).
    "sf-005-encrypted-password.pdf": EncryptedPdf,
    # Pages of 3.84 x 3.84 points: no room for a scannable stamp.
    "sf-007-imagemagick-ccitt.pdf": InvalidPlacement,
    "sf-007-imagemagick-images.pdf": InvalidPlacement,
    # Half the file is zeros: the page tree and the last startxref are gone.
    "sf-017-unreadable-metadata.pdf": UnsupportedPdf,
}
# Whole seconds, as /M records them; "now", since the test PKI is only valid from its creation on.
SIGNING_TIME = dt.datetime.now(dt.UTC).replace(microsecond=0)

CORPUS = corpus_files()
STAMPABLE = [f for f in CORPUS if f.name not in REFUSED]


def _ids(files: list[CorpusFile]) -> list[str]:
    return [f.name.removesuffix(".pdf") for f in files]


def stamp(document: bytes, identity: SigningIdentity, placement: Placement | None = None) -> StampResult:
    return place_stamp(
        document,
        serial=SERIAL,
        placement=placement or Placement(),
        identity=identity,
        public_url=PUBLIC_URL,
        location="Jakarta",
        document_name="Surat Perjanjian Sewa",
        signing_time=SIGNING_TIME,
    )


def read_corpus(name: str) -> bytes:
    return (require_corpus() / name).read_bytes()


@pytest.fixture(scope="module")
def stamped_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stamped")


def test_the_corpus_is_listed() -> None:
    require_corpus()
    assert STAMPABLE, "MANIFEST.tsv lists no stampable PDF"
    assert set(REFUSED) <= {f.name for f in CORPUS}


@pytest.mark.parametrize("corpus_file", STAMPABLE, ids=_ids(STAMPABLE))
def test_stamps_every_readable_corpus_pdf(
    corpus_file: CorpusFile,
    identity: SigningIdentity,
    trust_roots: list[x509.Certificate],
    dev_pki: DevPki,
    stamped_dir: Path,
) -> None:
    original = read_corpus(corpus_file.name)
    result = stamp(original, identity)
    stamped = result.stamped_document
    path = stamped_dir / corpus_file.name
    path.write_bytes(stamped)

    assert stamped.startswith(original), "the original bytes must be an untouched prefix"
    assert result.stamped_sha256 == hashlib.sha256(stamped).digest()
    assert result.page == corpus_file.pages  # the default is the last page

    # poppler: our signature verifies and covers the whole file; earlier ones still verify.
    poppler = pdfsig(path)
    ours = [s for s in poppler if s.field_name == f"e-meterai {SERIAL}"]
    assert len(ours) == 1, poppler
    assert ours[0].valid and ours[0].total_document, poppler
    assert all(s.valid for s in poppler if s.field_name.startswith("Signature")), poppler

    # pyHanko, trusting only our test root.
    with path.open("rb") as handle:
        signature = PdfFileReader(handle, strict=False).embedded_signatures[-1]
        status = validate_pdf_signature(
            signature,
            ValidationContext(
                trust_roots=[load_cert_from_pemder(str(dev_pki.root_path))], allow_fetching=False
            ),
        )
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    # Our own verifier agrees.
    report = verify_document(stamped, trust_roots).signatures[-1]
    assert report.serial == SERIAL
    assert report.signature_valid and report.document_intact and report.covers_whole_document
    assert report.chain_trusted
    assert report.sub_filter == "ETSI.CAdES.detached"
    assert report.signer_subject.startswith("CN=e-meterai Dev Signer")
    assert report.signed_at == SIGNING_TIME
    assert report.problems == ()


@pytest.mark.parametrize("name", sorted(REFUSED), ids=sorted(REFUSED))
def test_refuses_what_cannot_be_stamped_with_a_domain_error(name: str, identity: SigningIdentity) -> None:
    with pytest.raises(REFUSED[name]) as raised:
        stamp(read_corpus(name), identity)
    assert raised.value.message  # something a user can read


@pytest.mark.parametrize("name", ["sf-001-minimal-document.pdf", "sf-009-geotopo-117p.pdf"])
def test_the_qr_code_leads_to_the_verification_page(
    name: str, identity: SigningIdentity, tmp_path: Path
) -> None:
    result = stamp(read_corpus(name), identity)
    path = tmp_path / name
    path.write_bytes(result.stamped_document)
    assert decode_qr(path, result.page) == [f"UP {PUBLIC_URL}/v/{SERIAL}"]


@pytest.mark.parametrize("page", [1, 2, 3, 4])
def test_the_stamp_stands_upright_where_asked_on_rotated_pages(
    page: int, identity: SigningIdentity, tmp_path: Path
) -> None:
    # Pages 1-4 of this file carry /Rotate 90, 180, 270 and 360.
    rect = (40.0, 60.0, 160.0, 180.0)
    result = stamp(read_corpus("sf-015-habibi-rotated.pdf"), identity, Placement(page=page, rect=rect))
    path = tmp_path / "rotated.pdf"
    path.write_bytes(result.stamped_document)
    assert (result.page, result.rect) == (page, rect)
    # Read only the asked-for box of the page as a viewer shows it: the code must be there, upright.
    assert decode_qr(path, page, crop=rect) == [f"UP {PUBLIC_URL}/v/{SERIAL}"]


def test_the_box_is_relative_to_the_crop_box_of_a_rotated_page(
    identity: SigningIdentity, tmp_path: Path
) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(read_corpus("sf-001-minimal-document.pdf"))))
    page = writer.pages[0]
    page.cropbox.lower_left = (100, 150)
    page.cropbox.upper_right = (500, 700)
    page.rotate(90)
    buffer = io.BytesIO()
    writer.write(buffer)
    rect = (300.0, 20.0, 420.0, 140.0)  # near the right edge of the 550 x 400 point page as shown

    result = stamp(buffer.getvalue(), identity, Placement(page=1, rect=rect))
    path = tmp_path / "cropped.pdf"
    path.write_bytes(result.stamped_document)
    assert decode_qr(path, 1, crop=rect) == [f"UP {PUBLIC_URL}/v/{SERIAL}"]
    with pytest.raises(InvalidPlacement, match="550 x 400"):
        stamp(buffer.getvalue(), identity, Placement(page=1, rect=(450, 20, 570, 140)))


def test_earlier_signatures_stay_valid_and_a_second_stamp_adds_on(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], tmp_path: Path
) -> None:
    once = stamp(read_corpus("ph-signed-twice.pdf"), identity).stamped_document
    twice = place_stamp(
        once,
        serial="ZZ99YY88XX77WW66VV55UU",
        placement=Placement(page=1, rect=(20, 20, 120, 120)),
        identity=identity,
        public_url=PUBLIC_URL,
    ).stamped_document
    path = tmp_path / "twice.pdf"
    path.write_bytes(twice)

    poppler = pdfsig(path)
    assert len(poppler) == 4
    assert all(s.valid for s in poppler), poppler
    assert [s.total_document for s in poppler] == [False, False, False, True]

    reports = verify_document(twice, trust_roots).signatures
    assert [r.serial for r in reports] == ["", "", SERIAL, "ZZ99YY88XX77WW66VV55UU"]
    assert all(r.signature_valid and r.document_intact for r in reports)
    assert [r.revision for r in reports] == [1, 2, 3, 4]
    assert [r.covers_whole_document for r in reports] == [False, False, False, True]


def test_tampering_inside_the_signed_range_is_detected(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    original = read_corpus("sf-002-libreoffice-writer.pdf")
    stamped = bytearray(stamp(original, identity).stamped_document)
    # A byte of the original page content, well inside the first signed range.
    at = original.index(b"stream") + 20
    stamped[at] ^= 0x01
    report = verify_document(bytes(stamped), trust_roots).signatures[-1]
    assert not report.signature_valid
    assert not report.document_intact
    assert any("changed after it was signed" in problem for problem in report.problems)


def test_a_forged_signature_value_is_detected(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = bytearray(stamp(read_corpus("sf-001-minimal-document.pdf"), identity).stamped_document)
    # The RSA signature is the last non-zero stretch of the hex /Contents; flip a digit in it.
    contents_end = stamped.rindex(b"> >>")
    last_digit = len(stamped[:contents_end].rstrip(b"0")) - 1
    stamped[last_digit - 4] = ord("0") if stamped[last_digit - 4] != ord("0") else ord("1")
    report = verify_document(bytes(stamped), trust_roots).signatures[-1]
    assert not report.signature_valid


def test_bytes_appended_after_stamping_are_reported(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    stamped = stamp(read_corpus("sf-001-minimal-document.pdf"), identity).stamped_document
    report = verify_document(stamped + b"% appended\n", trust_roots).signatures[-1]
    assert report.signature_valid
    assert not report.covers_whole_document


def test_an_untrusted_root_is_reported(
    identity: SigningIdentity, ecdsa_pki: tuple[SigningIdentity, x509.Certificate]
) -> None:
    _, other_root = ecdsa_pki
    stamped = stamp(read_corpus("sf-001-minimal-document.pdf"), identity).stamped_document
    report = verify_document(stamped, [other_root]).signatures[-1]
    assert report.signature_valid
    assert not report.chain_trusted
    assert any("trusted root" in problem for problem in report.problems)


def test_signs_with_an_ecdsa_key(ecdsa_pki: tuple[SigningIdentity, x509.Certificate], tmp_path: Path) -> None:
    ecdsa_identity, ecdsa_root = ecdsa_pki
    result = place_stamp(
        read_corpus("sf-001-minimal-document.pdf"),
        serial=SERIAL,
        placement=Placement(),
        identity=ecdsa_identity,
        public_url=PUBLIC_URL,
    )
    path = tmp_path / "ecdsa.pdf"
    path.write_bytes(result.stamped_document)
    assert [(s.valid, s.total_document) for s in pdfsig(path)] == [(True, True)]
    report = verify_document(result.stamped_document, [ecdsa_root]).signatures[-1]
    assert report.signature_valid and report.chain_trusted


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        (Placement(page=99), "does not exist"),
        (Placement(page=-1), "does not exist"),
        (Placement(page=1, rect=(500, 700, 700, 900)), "outside page 1"),
        (Placement(page=1, rect=(-50, 10, 60, 120)), "outside page 1"),
        (Placement(page=1, rect=(100, 100, 100, 200)), "lower-left"),
        (Placement(page=1, rect=(200, 100, 100, 200)), "lower-left"),
        (Placement(page=1, rect=(100, 100, 120, 120)), "at least"),
        (Placement(page=1, rect=(float("nan"), 100, 200, 200)), "finite"),
        (Placement(page=1, rect=(100, 100, float("inf"), 200)), "finite"),
    ],
)
def test_refuses_placements_that_do_not_fit(
    placement: Placement, message: str, identity: SigningIdentity
) -> None:
    with pytest.raises(InvalidPlacement, match=message):
        stamp(read_corpus("sf-001-minimal-document.pdf"), identity, placement)


@pytest.mark.parametrize(
    "serial", ["", "SHORT", "AB12CD34EF56GH78IJ90K!", "AB12CD34EF56GH78IJ90KL0", "[X] evil"]
)
def test_refuses_a_malformed_serial(serial: str, identity: SigningIdentity) -> None:
    with pytest.raises(InvalidInput, match="22 letters or digits"):
        place_stamp(
            read_corpus("sf-001-minimal-document.pdf"),
            serial=serial,
            placement=Placement(),
            identity=identity,
            public_url=PUBLIC_URL,
        )


def test_refuses_a_document_certified_against_any_change(identity: SigningIdentity) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(read_corpus("sf-001-minimal-document.pdf"))))
    reference = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/SigRef"),
            NameObject("/TransformMethod"): NameObject("/DocMDP"),
            NameObject("/TransformParams"): DictionaryObject({NameObject("/P"): NumberObject(1)}),
        }
    )
    certification = writer._add_object(
        DictionaryObject(
            {NameObject("/Type"): NameObject("/Sig"), NameObject("/Reference"): ArrayObject([reference])}
        )
    )
    writer.root_object[NameObject("/Perms")] = DictionaryObject({NameObject("/DocMDP"): certification})
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(DocumentLocked, match="allows no further changes"):
        stamp(buffer.getvalue(), identity)


HOSTILE = {
    "empty": b"",
    "random": bytes(range(256)) * 40,
    "text": b"Surat perjanjian, but not a PDF",
    "header-only": b"%PDF-1.7\n",
    "header-and-garbage": b"%PDF-1.7\n" + b"\xff\x00obj<<>>endobj" * 100,
    "endless-nesting": b"%PDF-1.7\n1 0 obj\n" + b"[" * 5000 + b"\nendobj\ntrailer<</Root 1 0 R>>\n%%EOF",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bytes_are_unsupported_pdfs(
    name: str, identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    with pytest.raises(UnsupportedPdf):
        stamp(HOSTILE[name], identity)
    with pytest.raises(UnsupportedPdf):
        verify_document(HOSTILE[name], trust_roots)


def test_truncated_pdfs_are_refused(identity: SigningIdentity, trust_roots: list[x509.Certificate]) -> None:
    original = read_corpus("sf-002-libreoffice-writer.pdf")
    for fraction in (0.1, 0.5, 0.9, 0.99):
        truncated = original[: int(len(original) * fraction)]
        with pytest.raises(UnsupportedPdf):
            stamp(truncated, identity)
        # A reader may rebuild a cut file; verifying then yields a report or an UnsupportedPdf.
        with contextlib.suppress(UnsupportedPdf):
            verify_document(truncated, trust_roots)


def test_corrupted_stamped_files_never_raise_anything_but_domain_errors(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    stamped = stamp(read_corpus("sf-010-pdflatex-forms.pdf"), identity).stamped_document
    rng = random.Random(20250301)
    for _ in range(40):
        corrupted = bytearray(stamped)
        for _ in range(rng.randint(1, 20)):
            at = rng.randrange(len(corrupted))
            corrupted[at] = rng.randrange(256)
        with contextlib.suppress(UnsupportedPdf):
            verify_document(bytes(corrupted), trust_roots)
        with contextlib.suppress(UnsupportedPdf, InvalidPlacement, DocumentLocked):
            stamp(bytes(corrupted), identity)
