"""Reporting on every signature in a PDF: does it verify, what does it cover, who signed, which serial.

For each signature: the cryptography, the byte range, what later revisions changed (changes.py),
the certificate chain to the configured roots, and a signature timestamp token when there is one
(timestamp_tokens.py). Revocation (CRL, OCSP) is not checked yet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
from dataclasses import dataclass, replace

from cryptography import x509
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject, PdfObject, read_object

from services.signer.chains import chain_trusted
from services.signer.changes import MODIFIED, NONE, ChangeReview, RevisionHistory, capitalised
from services.signer.cms import CmsCheck, CmsError, check_signed_data, document_digest
from services.signer.documents import document_key, open_pdf, reading_pdf
from services.signer.encryption import DocumentKey
from services.signer.timestamp_tokens import (
    TimestampCheck,
    authority_trusted,
    check_signature_timestamp,
    find_signature_timestamp,
)

logger = logging.getLogger(__name__)

_SERIAL_IN_REASON = re.compile(r"\[([A-Za-z0-9]{22})\] ")
_PDF_DATE = re.compile(
    r"D:(?P<year>\d{4})(?P<month>\d{2})?(?P<day>\d{2})?(?P<hour>\d{2})?(?P<minute>\d{2})?(?P<second>\d{2})?"
    r"(?:(?P<utc>Z)|(?P<sign>[+-])(?P<tzh>\d{2})'?(?P<tzm>\d{2})?'?)?"
)
_HEX_STRING = re.compile(rb"<[0-9A-Fa-f\s]*>")
_OBJECT_HEADER = re.compile(rb"[\x00\t\n\x0c\r ]*(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+obj\b")
_DETACHED = {"/adbe.pkcs7.detached", "/ETSI.CAdES.detached"}
_DOCUMENT_TIMESTAMP = "/ETSI.RFC3161"
# Deeper form trees than this are hostile, not real forms.
_MAX_FIELD_DEPTH = 32

APPROVAL = "approval"
CERTIFICATION = "certification"
DOCUMENT_TIMESTAMP = "document_timestamp"


@dataclass(frozen=True)
class SignatureReport:
    """One signature, mirroring emeterai.v1.SignatureReport (the registry status is the gateway's)."""

    field_name: str
    serial: str
    signature_valid: bool
    document_intact: bool
    covers_whole_document: bool
    revision: int
    chain_trusted: bool
    signer_subject: str
    sub_filter: str
    signed_at: dt.datetime | None
    has_timestamp: bool
    problems: tuple[str, ...] = ()
    # What revisions after this signature's changed: "none", "allowed" (a later signature, a
    # timestamp, validation data, form filling as permitted) or "modified" (see problems). Not
    # analysed, so "none", when the byte range itself is malformed.
    later_changes: str = NONE
    later_revisions: int = 0
    # "approval", "certification" (the document's DocMDP signature) or "document_timestamp".
    kind: str = APPROVAL
    # A signature timestamp token, or the document timestamp itself: verified, and its time.
    timestamp_valid: bool = False
    timestamp_time: dt.datetime | None = None
    timestamp_authority: str = ""


@dataclass(frozen=True)
class VerificationResult:
    signatures: list[SignatureReport]
    document_sha256: bytes


def verify_document(
    document: bytes, trust_roots: list[x509.Certificate], *, now: dt.datetime | None = None
) -> VerificationResult:
    """Report on every signature field that holds a signature; raises UnsupportedPdf for unreadable files.

    A signature's certificate chain is checked at its verified timestamp's time, else at `now`
    (the claimed /M time is the signer's word, not evidence).
    """
    with reading_pdf():
        reader = open_pdf(document)
        key = document_key(reader) if reader.is_encrypted else None
        signatures = list(_signature_fields(reader, _SignatureValues(document, reader, key)))
        history = RevisionHistory(document, reader)
        reports = [
            _report(document, raw, trust_roots, now or dt.datetime.now(dt.UTC), history) for raw in signatures
        ]
    return VerificationResult(reports, hashlib.sha256(document).digest())


@dataclass(frozen=True)
class _RawSignature:
    """A signature dictionary's entries, copied out of the parser as plain values."""

    field_name: str
    sub_filter: str
    byte_range: list[int] | None
    contents: bytes | None
    reason: str
    claimed_time: str
    is_certification: bool = False


class _SignatureValues:
    """Signature dictionaries as stored; in an encrypted file, decrypted all but /Contents.

    A signature value is never encrypted (PDF 32000 7.6.1), but pypdf decrypts every string of
    an object it reads, which turns /Contents into noise. So in an encrypted file a signature
    dictionary is parsed from the file's bytes and its other entries are decrypted here.
    """

    def __init__(self, document: bytes, reader: PdfReader, key: DocumentKey | None) -> None:
        self._document = document
        self._reader = reader
        self._key = key

    def get(self, reference: PdfObject | None) -> PdfObject | None:
        if self._key is None or not isinstance(reference, IndirectObject):
            return reference.get_object() if reference is not None else None
        number, generation = reference.idnum, reference.generation
        if generation == 0 and number in self._reader.xref_objStm:
            # An object stream is encrypted as a whole; the objects inside it are not, one by one.
            return reference.get_object()
        offset = self._reader.xref.get(generation, {}).get(number)
        header = _OBJECT_HEADER.match(self._document, offset) if isinstance(offset, int) else None
        if header is None or (int(header.group(1)), int(header.group(2))) != (number, generation):
            return reference.get_object()  # a repaired file: pypdf's reading is all there is
        start = header.end()
        while start < len(self._document) and self._document[start] in b"\x00\t\n\x0c\r ":
            start += 1
        buffer = io.BytesIO(self._document)
        buffer.seek(start)
        try:
            stored = read_object(buffer, self._reader)
        except Exception:  # pypdf's parse errors are open-ended; its own reading decides then
            return reference.get_object()
        if not isinstance(stored, DictionaryObject):
            return reference.get_object()
        contents = stored.raw_get("/Contents") if "/Contents" in stored else None
        rest = DictionaryObject({key: value for key, value in stored.items() if key != "/Contents"})
        clear = self._key.decrypt(number, generation, rest)
        if contents is not None and isinstance(clear, DictionaryObject):
            clear[NameObject("/Contents")] = contents
        return clear


def _signature_fields(reader: PdfReader, values: _SignatureValues) -> list[_RawSignature]:
    form = reader.root_object.get("/AcroForm")
    form = form.get_object() if form is not None else None
    fields = form.get("/Fields") if isinstance(form, DictionaryObject) else None
    fields = fields.get_object() if fields is not None else None
    found: list[_RawSignature] = []
    seen: set[int] = set()
    certification = _certification_signature(reader)
    stack = [(field, "", None, 0) for field in reversed(fields)] if isinstance(fields, ArrayObject) else []
    while stack:
        reference, parent_name, inherited_type, depth = stack.pop()
        node = reference.get_object()
        # Forms are trees; a node met twice means a cycle in a hostile file.
        if not isinstance(node, DictionaryObject) or id(node) in seen or depth > _MAX_FIELD_DEPTH:
            continue
        seen.add(id(node))
        partial = str(node["/T"]) if "/T" in node else ""
        name = f"{parent_name}.{partial}" if parent_name and partial else (partial or parent_name)
        field_type = node.get("/FT", inherited_type)
        kids = node.get("/Kids")
        kids = kids.get_object() if kids is not None else None
        if isinstance(kids, ArrayObject):
            stack.extend((kid, name, field_type, depth + 1) for kid in reversed(kids))
        reference = node.raw_get("/V") if "/V" in node else None
        value = values.get(reference) if field_type == "/Sig" else None
        if isinstance(value, DictionaryObject):
            is_certification = isinstance(reference, IndirectObject) and reference.idnum == certification
            found.append(_raw_signature(name, value, is_certification))
    return found


def _certification_signature(reader: PdfReader) -> int | None:
    """The object number of the signature that /Perms /DocMDP names, if any."""
    perms = reader.root_object.get("/Perms")
    perms = perms.get_object() if perms is not None else None
    if not isinstance(perms, DictionaryObject) or "/DocMDP" not in perms:
        return None
    reference = perms.raw_get("/DocMDP")
    return reference.idnum if isinstance(reference, IndirectObject) else None


def _raw_signature(name: str, value: DictionaryObject, is_certification: bool) -> _RawSignature:
    byte_range = value.get("/ByteRange")
    byte_range = byte_range.get_object() if byte_range is not None else None
    numbers: list[int] | None = None
    if isinstance(byte_range, ArrayObject) and all(isinstance(item, int) for item in byte_range):
        numbers = [int(item) for item in byte_range]
    contents = value.get("/Contents")
    contents = contents.get_object() if contents is not None else None
    raw_contents = bytes(contents) if isinstance(contents, bytes) else None
    if raw_contents is None and isinstance(contents, str):
        # pypdf decodes strings that happen to look like text; the original bytes are the signature.
        raw_contents = getattr(contents, "original_bytes", None)
    return _RawSignature(
        field_name=name,
        sub_filter=str(value.get("/SubFilter", "")),
        byte_range=numbers,
        contents=raw_contents,
        reason=str(value.get("/Reason", "")),
        claimed_time=str(value.get("/M", "")),
        is_certification=is_certification,
    )


def _report(
    document: bytes,
    raw: _RawSignature,
    trust_roots: list[x509.Certificate],
    now: dt.datetime,
    history: RevisionHistory,
) -> SignatureReport:
    serial_match = _SERIAL_IN_REASON.match(raw.reason)
    base = SignatureReport(
        field_name=raw.field_name,
        serial=serial_match.group(1) if serial_match else "",
        signature_valid=False,
        document_intact=False,
        covers_whole_document=False,
        revision=0,
        chain_trusted=False,
        signer_subject="",
        sub_filter=raw.sub_filter.lstrip("/"),
        signed_at=_parse_pdf_date(raw.claimed_time),
        has_timestamp=False,
        kind=_kind(raw),
    )
    try:
        return _check_signature(document, raw, trust_roots, now, history, base)
    except Exception:  # hostile input must yield a report, never a failed request
        logger.warning("signature %r could not be analysed", raw.field_name, exc_info=True)
        return _with(base, problems=("The signature data is malformed and could not be checked.",))


def _check_signature(
    document: bytes,
    raw: _RawSignature,
    trust_roots: list[x509.Certificate],
    now: dt.datetime,
    history: RevisionHistory,
    base: SignatureReport,
) -> SignatureReport:
    problems: list[str] = []
    ranges = _checked_byte_range(document, raw.byte_range)
    if ranges is None:
        return _with(base, problems=("The signature's byte range is malformed.",))
    gap_start, gap_end, end = ranges
    covers_whole = end == len(document)
    revision = _revision_at(document, end)
    review = history.review(end)
    base = _with(base, later_changes=review.later_changes, later_revisions=review.later_revisions)
    contents = _gap_contents(document[gap_start:gap_end])
    # The gap must be exactly the hex string the dictionary holds, or unsigned bytes could hide there.
    if contents is None or raw.contents is None or contents.rstrip(b"\0") != raw.contents.rstrip(b"\0"):
        return _with(
            base,
            covers_whole_document=covers_whole,
            revision=revision,
            problems=("The signature's byte range does not skip exactly its own /Contents.",),
        )

    if raw.sub_filter not in _DETACHED and raw.sub_filter != _DOCUMENT_TIMESTAMP:
        return _with(
            base,
            covers_whole_document=covers_whole,
            revision=revision,
            problems=(
                (f"Signatures of type {base.sub_filter} are not supported.",)
                if base.sub_filter
                else ("The signature names no type (/SubFilter), so it cannot be checked.",)
            ),
        )
    try:
        check = check_signed_data(contents)
    except CmsError as exc:
        problem = _sentence(str(exc))
        return _with(base, covers_whole_document=covers_whole, revision=revision, problems=(problem,))
    problems += [_sentence(problem) for problem in check.problems]

    actual = document_digest(check.digest_algorithm, [document[:gap_start], document[gap_end:end]])
    digest_matches = actual == check.claimed_digest
    if not digest_matches:
        problems.append("The document was changed after it was signed: the signed bytes do not match.")
    at_boundary = document[:end].rstrip(b"\0\t\n\x0c\r ").endswith(b"%%EOF")
    if not at_boundary:
        problems.append("The signature does not end at the end of a revision of the file.")
    problems += _later_change_problems(document, end, review)

    timestamp = _timestamp(contents, check, trust_roots)
    problems += timestamp.problems
    trusted_time = timestamp.time if timestamp.valid else None
    trusted, chain_problems = False, []
    if check.is_timestamp_token:
        trusted, chain_problems = authority_trusted(check, trust_roots)
    elif check.signer is not None:
        at = trusted_time or now
        trusted, chain_problems = chain_trusted(check.signer, check.certificates, trust_roots, at)
    problems += chain_problems
    if check.is_timestamp_token:
        trusted_time = check.timestamp_time if trusted and digest_matches and check.signature_valid else None
    subject = check.signer.subject.rfc4514_string() if check.signer is not None else ""
    return _with(
        base,
        signature_valid=digest_matches and check.signature_valid,
        document_intact=digest_matches and at_boundary and review.later_changes != MODIFIED,
        covers_whole_document=covers_whole,
        revision=revision,
        chain_trusted=trusted,
        signer_subject=subject,
        signed_at=trusted_time or base.signed_at,
        has_timestamp=timestamp.time is not None or check.is_timestamp_token,
        timestamp_valid=trusted_time is not None,
        timestamp_time=timestamp.time if not check.is_timestamp_token else check.timestamp_time,
        timestamp_authority=timestamp.authority if not check.is_timestamp_token else subject,
        problems=tuple(problems),
    )


def _sentence(phrase: str) -> str:
    """A CMS check's phrase ("the signature has no signed attributes") as a problem of the report."""
    return capitalised(phrase) + "."


def _kind(raw: _RawSignature) -> str:
    if raw.sub_filter == _DOCUMENT_TIMESTAMP:
        return DOCUMENT_TIMESTAMP
    return CERTIFICATION if raw.is_certification else APPROVAL


def _timestamp(contents: bytes, check: CmsCheck, trust_roots: list[x509.Certificate]) -> TimestampCheck:
    """The signature timestamp token of a CAdES signature, verified; nothing for a document timestamp."""
    if check.is_timestamp_token:
        return TimestampCheck(None, False, "")
    try:
        embedded = find_signature_timestamp(contents)
    except CmsError as exc:
        return TimestampCheck(None, False, "", (f"The signature's timestamp is unreadable: {exc}.",))
    if embedded is None:
        return TimestampCheck(None, False, "")
    return check_signature_timestamp(embedded, trust_roots)


def _later_change_problems(document: bytes, end: int, review: ChangeReview) -> list[str]:
    problems = list(review.problems)
    trailing = len(document) - end
    if review.later_revisions == 0 and document[end:].strip(b"\x00\t\n\x0c\r "):
        problems.append(
            f"{trailing} byte(s) follow the signed revision without forming a revision of their own."
        )
    return problems


def _checked_byte_range(document: bytes, byte_range: list[int] | None) -> tuple[int, int, int] | None:
    """(start of the gap, end of the gap, end of the signed bytes) when the range is well formed."""
    if byte_range is None or len(byte_range) != 4:
        return None
    first_start, first_length, second_start, second_length = byte_range
    if first_start != 0 or first_length <= 0 or second_start <= first_length or second_length < 0:
        return None
    end = second_start + second_length
    if end > len(document):
        return None
    return first_length, second_start, end


def _gap_contents(gap: bytes) -> bytes | None:
    if not _HEX_STRING.fullmatch(gap):
        return None
    digits = re.sub(rb"\s", b"", gap[1:-1])
    # An odd number of hex digits is completed with a 0, as the PDF syntax says.
    return bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode("ascii"))


def _revision_at(document: bytes, end: int) -> int:
    """1-based revision that ends at or before `end`: the number of %%EOF markers up to there."""
    count = document.count(b"%%EOF", 0, end)
    # A linearized file ends its first-page section with an extra %%EOF inside revision 1.
    if b"/Linearized" in document[:1024] and count > 1:
        count -= 1
    return count


def _parse_pdf_date(text: str) -> dt.datetime | None:
    """Read a PDF date such as D:20240131120000+07'00'; None when absent or malformed."""
    match = _PDF_DATE.match(text)
    if match is None:
        return None
    parts = match.groupdict()
    try:
        moment = dt.datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
        )
    except ValueError:
        return None
    offset = dt.timedelta(0)
    if parts["sign"]:
        offset = dt.timedelta(hours=int(parts["tzh"]), minutes=int(parts["tzm"] or 0))
        if parts["sign"] == "-":
            offset = -offset
    # A date without a zone is taken as UTC rather than the server's local time.
    return (moment - offset).replace(tzinfo=dt.UTC)


def _with(report: SignatureReport, **changes: object) -> SignatureReport:
    return replace(report, **changes)  # type: ignore[arg-type]
