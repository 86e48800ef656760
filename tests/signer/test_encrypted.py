"""Stamping encrypted PDFs that open without a password, and refusing those that need one.

The encrypted inputs are made here from corpus files, by qpdf and by pypdf's writer, with an
owner password only (the empty user password), as banks send their statements. Each stamped
file is checked by poppler, pyHanko (which decrypts it with the empty password), qpdf, zbar and
our own verifier: a string or stream left unencrypted, or encrypted with the wrong object key,
shows up in one of them as a garbled field name, an unreadable appearance or a broken file.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader, PdfWriter

from services.signer.errors import EncryptedPdf
from services.signer.pki import DevPki, SigningIdentity
from services.signer.placement import Placement
from services.signer.stamping import place_stamp
from services.signer.verification import verify_document
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL, decode_qr, pdfsig, require_tool

# (corpus file, how it is encrypted): a classic xref table, and xref + object streams.
QPDF_METHODS = {
    "rc4-128": ["128", "--use-aes=n"],
    "aes-128": ["128", "--use-aes=y"],
    "aes-256": ["256"],
}
PYPDF_METHODS = ["RC4-40", "RC4-128", "AES-128", "AES-256"]
# A classic xref table; an xref stream with object streams; a form whose /AcroForm holds a /DA
# string that the update rewrites, so must encrypt again.
SOURCES = ["sf-002-libreoffice-writer.pdf", "sf-001-minimal-document.pdf", "sf-010-pdflatex-forms.pdf"]
# Its form sets /NeedAppearances, so poppler draws its own appearance for every field, the stamp's
# included: there is no QR code to read, encrypted or not.
NEEDS_APPEARANCES = {"sf-010-pdflatex-forms.pdf"}


def encrypt_with_qpdf(source: Path, method: str, out: Path) -> bytes:
    key_length, *options = QPDF_METHODS[method]
    subprocess.run(
        # qpdf refuses to write RC4 unless told that the weak cipher is on purpose.
        [require_tool("qpdf"), "--allow-weak-crypto", "--encrypt", "", "ownerpw", key_length, *options, "--",
         str(source), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return out.read_bytes()


def encrypt_with_pypdf(source: Path, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password="", owner_password="ownerpw", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def stamp(document: bytes, identity: SigningIdentity, serial: str = SERIAL) -> bytes:
    return place_stamp(
        document,
        serial=serial,
        placement=Placement(page=1, rect=(40, 40, 160, 160)),
        identity=identity,
        public_url=PUBLIC_URL,
        document_name="Rekening koran — Januari",  # not ASCII: a UTF-16 string, encrypted
    ).stamped_document


def check_stamped(
    original: bytes,
    stamped: bytes,
    path: Path,
    dev_pki: DevPki,
    trust_roots: list[x509.Certificate],
    *,
    rendered: bool = True,
) -> None:
    path.write_bytes(stamped)
    assert stamped.startswith(original)

    # poppler decrypts the field name: garbled, it would not match.
    poppler = pdfsig(path)
    assert [(s.field_name, s.valid, s.total_document) for s in poppler] == [
        (f"e-meterai {SERIAL}", True, True)
    ], poppler

    with path.open("rb") as handle:
        reader = PdfFileReader(handle, strict=False)
        reader.decrypt("")
        status = validate_pdf_signature(
            reader.embedded_signatures[-1],
            ValidationContext(
                trust_roots=[load_cert_from_pemder(str(dev_pki.root_path))], allow_fetching=False
            ),
        )
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    report = verify_document(stamped, trust_roots).signatures[-1]
    assert report.serial == SERIAL
    assert report.signature_valid and report.document_intact and report.chain_trusted, report.problems
    assert report.problems == ()

    checked = subprocess.run(
        [require_tool("qpdf"), "--check", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The appearance stream decrypts and inflates into a QR code a phone can read.
    if rendered:
        assert decode_qr(path, 1, crop=(40, 40, 160, 160)) == [f"UP {PUBLIC_URL}/v/{SERIAL}"]


@pytest.mark.parametrize("method", sorted(QPDF_METHODS))
@pytest.mark.parametrize("name", SOURCES)
def test_stamps_owner_password_only_files_made_by_qpdf(
    name: str,
    method: str,
    identity: SigningIdentity,
    dev_pki: DevPki,
    trust_roots: list[x509.Certificate],
    tmp_path: Path,
) -> None:
    original = encrypt_with_qpdf(require_corpus() / name, method, tmp_path / "encrypted.pdf")
    assert PdfReader(io.BytesIO(original)).is_encrypted
    stamped = stamp(original, identity)
    check_stamped(
        original,
        stamped,
        tmp_path / "stamped.pdf",
        dev_pki,
        trust_roots,
        rendered=name not in NEEDS_APPEARANCES,
    )


@pytest.mark.parametrize("algorithm", PYPDF_METHODS)
def test_stamps_owner_password_only_files_made_by_pypdf(
    algorithm: str,
    identity: SigningIdentity,
    dev_pki: DevPki,
    trust_roots: list[x509.Certificate],
    tmp_path: Path,
) -> None:
    original = encrypt_with_pypdf(require_corpus() / "sf-001-minimal-document.pdf", algorithm)
    check_stamped(original, stamp(original, identity), tmp_path / "stamped.pdf", dev_pki, trust_roots)


def test_the_update_keeps_the_encryption_and_the_file_identifier(identity: SigningIdentity) -> None:
    original = encrypt_with_pypdf(require_corpus() / "sf-002-libreoffice-writer.pdf", "AES-128")
    before = PdfReader(io.BytesIO(original)).trailer
    stamped = stamp(original, identity)
    after = PdfReader(io.BytesIO(stamped)).trailer
    encrypt, encrypt_before = after.raw_get("/Encrypt"), before.raw_get("/Encrypt")
    assert (encrypt.idnum, encrypt.generation) == (encrypt_before.idnum, encrypt_before.generation)
    assert [part.original_bytes for part in after["/ID"]] == [part.original_bytes for part in before["/ID"]]
    # The new strings and the appearance are stored encrypted: no text of the stamp is in clear.
    update = stamped[len(original) :]
    assert b"Meterai elektronik" not in update
    assert b"METERAI ELEKTRONIK" not in update


def test_a_second_stamp_on_an_encrypted_file_verifies(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], tmp_path: Path
) -> None:
    original = encrypt_with_pypdf(require_corpus() / "sf-001-minimal-document.pdf", "AES-256")
    twice = stamp(stamp(original, identity), identity, serial="ZZ99YY88XX77WW66VV55UU")
    path = tmp_path / "twice.pdf"
    path.write_bytes(twice)
    assert [s.valid for s in pdfsig(path)] == [True, True]
    reports = verify_document(twice, trust_roots).signatures
    assert [r.serial for r in reports] == [SERIAL, "ZZ99YY88XX77WW66VV55UU"]
    assert all(r.signature_valid and r.document_intact for r in reports)
    assert [r.later_changes for r in reports] == ["allowed", "none"]


@pytest.mark.parametrize("method", ["corpus", "qpdf-aes-256", "pypdf-rc4"])
def test_a_file_that_needs_a_password_is_refused_with_the_reason(
    method: str, identity: SigningIdentity, trust_roots: list[x509.Certificate], tmp_path: Path
) -> None:
    source = require_corpus() / "sf-001-minimal-document.pdf"
    if method == "corpus":
        # The corpus file: user password "openpassword".
        document = (require_corpus() / "sf-005-encrypted-password.pdf").read_bytes()
    elif method == "qpdf-aes-256":
        out = tmp_path / "locked.pdf"
        subprocess.run(
            [require_tool("qpdf"), "--encrypt", "userpw", "ownerpw", "256", "--", str(source), str(out)],
            check=True,
            timeout=60,
        )
        document = out.read_bytes()
    else:
        writer = PdfWriter(clone_from=PdfReader(source))
        writer.encrypt(user_password="userpw", owner_password="ownerpw", algorithm="RC4-128")
        buffer = io.BytesIO()
        writer.write(buffer)
        document = buffer.getvalue()
    with pytest.raises(EncryptedPdf, match=r"password-protected.*Save a copy without protection"):
        stamp(document, identity)
    with pytest.raises(EncryptedPdf, match="password-protected"):
        verify_document(document, trust_roots)
