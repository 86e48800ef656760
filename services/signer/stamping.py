"""Placing an e-meterai: a visible signature field with a PAdES (CAdES-detached) signature, added to a
PDF as an incremental update, so the original bytes stay an untouched prefix of the result.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
import zlib
from dataclasses import dataclass
from typing import Any

from cryptography.x509.oid import NameOID
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NumberObject,
    PdfObject,
)

from services.common.errors import DomainError, InvalidInput
from services.signer.appearance import StampAppearance, build_stamp_appearance, verification_url
from services.signer.cms import build_detached_signature
from services.signer.cms_template import TimestampSource
from services.signer.documents import (
    PypdfSource,
    XrefTail,
    check_is_pdf,
    open_pdf,
    read_xref_tail,
    reading_pdf,
)
from services.signer.encryption import PLAIN, Cipher
from services.signer.errors import DocumentLocked, UnsupportedPdf
from services.signer.increment import IncrementalUpdate, pdf_number, pdf_reference, serialise
from services.signer.pdfread import LazyPdf, NeedsRepair, PdfSource
from services.signer.pki import SigningIdentity
from services.signer.placement import PageGeometry, Placement, Rect, checked_rect, choose_page, default_rect

logger = logging.getLogger(__name__)

# Room for the CMS blob in /Contents. Today it holds three certificates and one RSA-3072
# signature (about 5 KiB); the rest is for a timestamp token and revocation data later.
CONTENTS_RESERVED_BYTES = 16 * 1024

_SERIAL = re.compile(r"[A-Za-z0-9]{22}")
# Wide enough for four offsets of files up to 10 GB; the unused tail stays spaces.
_BYTE_RANGE_WIDTH = 46
# Widget annotation flags: Print (4) | Locked (128).
_WIDGET_FLAGS = 132
# PDF 32000 (annex C) caps object numbers here; readers reject an update numbered past it, and a
# /Size beyond it is a hostile or broken trailer. A stamp adds at most this many objects.
_MAX_OBJECT_NUMBER = 8_388_607
_OBJECTS_ADDED = 4


@dataclass(frozen=True)
class StampResult:
    stamped_document: bytes
    stamped_sha256: bytes
    page: int
    rect: Rect


def place_stamp(
    document: bytes,
    *,
    serial: str,
    placement: Placement,
    identity: SigningIdentity,
    public_url: str,
    location: str = "Indonesia",
    document_name: str = "",
    signing_time: dt.datetime | None = None,
    timestamp: TimestampSource | None = None,
) -> StampResult:
    """Stamp and sign `document`; the result starts with the exact bytes of `document`.

    `timestamp`, when given, makes the signature PAdES B-T: see `build_detached_signature`.
    """
    if not _SERIAL.fullmatch(serial):
        raise InvalidInput("The serial must be 22 letters or digits.")
    signed_at = (signing_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    # The original is hashed once: for the revision ID, the signed ranges and the result's digest.
    original_hash = hashlib.sha256(document)
    request = _StampRequest(
        serial=serial,
        placement=placement,
        public_url=public_url,
        reason=_reason(serial, document_name),
        location=location,
        signer_name=_common_name(identity),
        signed_at=signed_at,
        original_sha256=original_hash.digest(),
    )
    with reading_pdf():
        check_is_pdf(document)
        xref = read_xref_tail(document)
    try:
        # Most files are regular enough to read only the few objects a stamp needs.
        prepared = _prepare_update(LazyPdf(document), document, xref, request)
    except DomainError:
        raise
    except Exception:  # the lazy reader is strict; anything irregular goes to the lenient one
        logger.debug("lazy reading failed; reading the whole file", exc_info=True)
        with reading_pdf():
            prepared = _prepare_update(PypdfSource(open_pdf(document)), document, xref, request)
    update, slot, page, rect = prepared
    stamped, stamped_sha256 = _sign(update, slot, identity, original_hash, timestamp)
    return StampResult(stamped_document=stamped, stamped_sha256=stamped_sha256, page=page.number, rect=rect)


@dataclass(frozen=True)
class _StampRequest:
    serial: str
    placement: Placement
    public_url: str
    reason: str
    location: str
    signer_name: str
    signed_at: dt.datetime
    original_sha256: bytes


def _refuse_if_certified_locked(catalog: DictionaryObject) -> None:
    """A certification signature with DocMDP P=1 forbids every change, a new signature included."""
    perms = catalog.get("/Perms")
    perms = perms.get_object() if perms is not None else None
    if not isinstance(perms, DictionaryObject):
        return
    certification = perms.get("/DocMDP")
    certification = certification.get_object() if certification is not None else None
    if not isinstance(certification, DictionaryObject):
        return
    references = certification.get("/Reference")
    references = references.get_object() if references is not None else None
    for reference in references if isinstance(references, ArrayObject) else []:
        reference = reference.get_object()
        if not isinstance(reference, DictionaryObject) or reference.get("/TransformMethod") != "/DocMDP":
            continue
        params = reference.get("/TransformParams")
        params = params.get_object() if params is not None else None
        permission = params.get("/P", 2) if isinstance(params, DictionaryObject) else 2
        if int(permission) == 1:
            raise DocumentLocked(
                "The document was certified with a signature that allows no further changes, so an "
                "e-meterai cannot be added without invalidating it. Stamp a version before certification."
            )


def _reason(serial: str, document_name: str) -> str:
    # Verifiers (Peruri's among them) read the serial from the brackets at the start of /Reason.
    reason = f"[{serial}] Meterai elektronik"
    name = " ".join(document_name.split())[:200]
    return f"{reason}: {name}" if name else reason


def _common_name(identity: SigningIdentity) -> str:
    names = identity.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass(frozen=True)
class _ContentsSlot:
    """Where, inside the signature dictionary's body, the placeholders start."""

    number: int
    byte_range_at: int
    contents_at: int


def _prepare_update(
    source: PdfSource, document: bytes, xref: XrefTail, request: _StampRequest
) -> tuple[IncrementalUpdate, _ContentsSlot, PageGeometry, Rect]:
    """Everything but the signature: the objects to append, and where the placeholders are."""
    cipher: Cipher = PLAIN
    if source.is_encrypted:
        if not isinstance(source, PypdfSource):
            raise NeedsRepair("encrypted files are read by pypdf, which decrypts each object")
        # open_pdf has already refused a file that needs a password.
        cipher = source.document_key()
    catalog = source.catalog
    _refuse_if_certified_locked(catalog)
    page = choose_page(source, request.placement.page)
    placement = request.placement
    rect = default_rect(page) if placement.rect is None else checked_rect(placement.rect, page)
    root_reference = source.root_reference
    serial = request.serial
    trailer = source.trailer
    info = trailer.raw_get("/Info") if "/Info" in trailer else None
    next_number = source.first_free_number()
    if next_number > _MAX_OBJECT_NUMBER - _OBJECTS_ADDED:
        raise UnsupportedPdf(
            "The PDF claims to hold more objects than a PDF can, so it is damaged. Save or print it as "
            "a new PDF and try again."
        )
    update = IncrementalUpdate(
        original=document,
        xref=xref,
        root=pdf_reference(root_reference.idnum, root_reference.generation),
        info=serialise(info) if info is not None else None,
        document_id=_document_id(trailer, request, keep=cipher is not PLAIN),
        next_number=next_number,
        encrypt=serialise(trailer.raw_get("/Encrypt")) if cipher is not PLAIN else None,
    )
    appearance_number = update.allocate()
    signature_number = update.allocate()
    widget_number = update.allocate()
    widget = IndirectObject(widget_number, 0, source)

    width, height = rect[2] - rect[0], rect[3] - rect[1]
    appearance = build_stamp_appearance(
        serial=serial, url=verification_url(request.public_url, serial), width=width, height=height
    )
    update.put(
        appearance_number,
        _form_xobject(_Sealed(cipher, appearance_number), appearance, page),
    )

    body, byte_range_at, contents_at = _signature_dictionary(
        _Sealed(cipher, signature_number),
        reason=request.reason,
        location=request.location,
        signer_name=request.signer_name,
        signed_at=request.signed_at,
    )
    update.put(signature_number, body)

    field_name = _unique_field_name(catalog, f"e-meterai {serial}")
    user_rect = page.to_user_space(rect)
    sealed_widget = _Sealed(cipher, widget_number)
    update.put(
        widget_number,
        b"<< /Type /Annot /Subtype /Widget /FT /Sig /T "
        + sealed_widget.text(field_name)
        + b" /TU "
        + sealed_widget.text(f"Meterai elektronik {serial}")
        + b" /V "
        + pdf_reference(signature_number)
        + b" /P "
        + pdf_reference(page.reference.idnum, page.reference.generation)
        + b" /Rect ["
        + b" ".join(pdf_number(value) for value in user_rect)
        + b"] /F "
        + str(_WIDGET_FLAGS).encode("ascii")
        + b" /AP << /N "
        + pdf_reference(appearance_number)
        + b" >> >>",
    )
    _add_to_page_annotations(update, cipher, page, widget)
    _add_to_form_fields(update, cipher, catalog, root_reference, widget)
    return update, _ContentsSlot(signature_number, byte_range_at, contents_at), page, rect


@dataclass(frozen=True)
class _Sealed:
    """Strings and streams of one object being written, encrypted when the document is."""

    cipher: Cipher
    number: int
    generation: int = 0

    def text(self, value: str) -> bytes:
        return self.cipher.text(self.number, self.generation, value)

    def stream(self, data: bytes) -> bytes:
        return self.cipher.stream(self.number, self.generation, data)

    def serialise(self, obj: PdfObject) -> bytes:
        return serialise(self.cipher.object(self.number, self.generation, obj))


def _document_id(
    trailer: DictionaryObject, request: _StampRequest, *, keep: bool
) -> tuple[bytes, bytes] | None:
    """The new trailer's /ID; `keep` (an encrypted file, whose key derives from it) repeats the old one."""
    # The first ID stays the document's permanent identifier; the second marks this revision.
    revision_id = hashlib.sha256(
        request.original_sha256 + request.serial.encode() + request.signed_at.isoformat().encode()
    ).digest()[:16]
    existing = trailer.get("/ID")
    existing = existing.get_object() if existing is not None else None
    if isinstance(existing, ArrayObject) and len(existing) == 2:
        first, second = (_id_bytes(part) for part in existing)
        if keep:
            return first, second
        if first:
            return first, revision_id
    return None if keep else (revision_id, revision_id)


def _id_bytes(value: PdfObject) -> bytes:
    return bytes(value) if isinstance(value, bytes) else getattr(value, "original_bytes", b"")


@functools.lru_cache(maxsize=32)
def _primed_compressor(fixed_part: bytes) -> tuple[bytes, Any]:
    """A compressor that has already eaten a stamp's fixed part, and what it output so far."""
    # Level 1: a few hundred bytes bigger than level 9 on a stamp, at a fraction of the time.
    compressor = zlib.compressobj(1)
    return compressor.compress(fixed_part), compressor


def _deflate(content: bytes, fixed_length: int) -> bytes:
    """zlib.compress(content, 1), without compressing the part every stamp shares again."""
    head, primed = _primed_compressor(content[:fixed_length])
    compressor = primed.copy()
    return head + compressor.compress(content[fixed_length:]) + compressor.flush()


def _form_xobject(sealed: _Sealed, appearance: StampAppearance, page: PageGeometry) -> bytes:
    compressed = sealed.stream(_deflate(appearance.content, appearance.fixed_length))
    return (
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 "
        + pdf_number(appearance.width)
        + b" "
        + pdf_number(appearance.height)
        + b"] /Matrix ["
        + b" ".join(str(value).encode("ascii") for value in page.appearance_matrix)
        # Text is drawn as glyph outlines: the stamp needs no font resources.
        + b" 0 0] /Resources << /ProcSet [/PDF] >> /Filter /FlateDecode /Length "
        + str(len(compressed)).encode("ascii")
        + b" >>\nstream\n"
        + compressed
        + b"\nendstream"
    )


def _signature_dictionary(
    sealed: _Sealed, *, reason: str, location: str, signer_name: str, signed_at: dt.datetime
) -> tuple[bytes, int, int]:
    """The /Sig dictionary with blank /ByteRange and /Contents, and where those two start.

    /Contents is never encrypted (PDF 32000 7.6.1), so it is written in the clear in any document.
    """
    head = (
        b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /Name "
        + sealed.text(signer_name)
        + b" /M "
        + sealed.text(f"D:{signed_at:%Y%m%d%H%M%S}Z")
        + b" /Reason "
        + sealed.text(reason)
        + b" /Location "
        + sealed.text(location)
        + b" /ByteRange "
    )
    byte_range_at = len(head)
    byte_range = b"[" + b" " * (_BYTE_RANGE_WIDTH - 2) + b"]"
    middle = b" /Contents "
    contents_at = byte_range_at + len(byte_range) + len(middle)
    contents = b"<" + b"0" * (2 * CONTENTS_RESERVED_BYTES) + b">"
    return head + byte_range + middle + contents + b" >>", byte_range_at, contents_at


def _unique_field_name(catalog: DictionaryObject, wanted: str) -> str:
    taken: set[str] = set()
    form = catalog.get("/AcroForm")
    form = form.get_object() if form is not None else None
    fields = form.get("/Fields") if isinstance(form, DictionaryObject) else None
    fields = fields.get_object() if fields is not None else None
    for field in fields if isinstance(fields, ArrayObject) else []:
        field = field.get_object()
        if isinstance(field, DictionaryObject) and "/T" in field:
            taken.add(str(field["/T"]))
    name, counter = wanted, 1
    while name in taken:
        counter += 1
        name = f"{wanted} ({counter})"
    return name


def _add_to_page_annotations(
    update: IncrementalUpdate, cipher: Cipher, page: PageGeometry, widget: IndirectObject
) -> None:
    annotations = page.dictionary.raw_get("/Annots") if "/Annots" in page.dictionary else None
    resolved = annotations.get_object() if annotations is not None else None
    if isinstance(annotations, IndirectObject) and isinstance(resolved, ArrayObject):
        # The array is an object of its own: extend it there and leave the page dictionary alone.
        sealed = _Sealed(cipher, annotations.idnum, annotations.generation)
        extended = sealed.serialise(ArrayObject([*resolved, widget]))
        update.put(annotations.idnum, extended, annotations.generation)
        return
    page_copy = DictionaryObject(page.dictionary)
    existing = list(resolved) if isinstance(resolved, ArrayObject) else []
    page_copy[NameObject("/Annots")] = ArrayObject([*existing, widget])
    sealed = _Sealed(cipher, page.reference.idnum, page.reference.generation)
    update.put(page.reference.idnum, sealed.serialise(page_copy), page.reference.generation)


def _add_to_form_fields(
    update: IncrementalUpdate,
    cipher: Cipher,
    catalog: DictionaryObject,
    root_reference: IndirectObject,
    widget: IndirectObject,
) -> None:
    form_reference = catalog.raw_get("/AcroForm") if "/AcroForm" in catalog else None
    existing = form_reference.get_object() if form_reference is not None else None
    form = DictionaryObject(existing) if isinstance(existing, DictionaryObject) else DictionaryObject()

    fields_reference = form.raw_get("/Fields") if "/Fields" in form else None
    fields = fields_reference.get_object() if fields_reference is not None else None
    if isinstance(fields_reference, IndirectObject) and isinstance(fields, ArrayObject):
        sealed = _Sealed(cipher, fields_reference.idnum, fields_reference.generation)
        extended = sealed.serialise(ArrayObject([*fields, widget]))
        update.put(fields_reference.idnum, extended, fields_reference.generation)
    else:
        earlier = list(fields) if isinstance(fields, ArrayObject) else []
        form[NameObject("/Fields")] = ArrayObject([*earlier, widget])
    try:
        flags = int(form.get("/SigFlags", 0))
    except (TypeError, ValueError):
        flags = 0
    # SignaturesExist | AppendOnly: viewers must save by appending, or they break the signature.
    form[NameObject("/SigFlags")] = NumberObject(flags | 3)

    if isinstance(form_reference, IndirectObject) and isinstance(existing, DictionaryObject):
        sealed = _Sealed(cipher, form_reference.idnum, form_reference.generation)
        update.put(form_reference.idnum, sealed.serialise(form), form_reference.generation)
    else:
        catalog_copy = DictionaryObject(catalog)
        catalog_copy[NameObject("/AcroForm")] = form
        sealed = _Sealed(cipher, root_reference.idnum, root_reference.generation)
        update.put(root_reference.idnum, sealed.serialise(catalog_copy), root_reference.generation)


def _sign(
    update: IncrementalUpdate,
    slot: _ContentsSlot,
    identity: SigningIdentity,
    original_hash: hashlib._Hash,
    timestamp: TimestampSource | None,
) -> tuple[bytes, bytes]:
    """The stamped file and its SHA-256; `original_hash` has already taken in the original bytes.

    Only the appended part is built and patched: the original is copied once, into the result.
    """
    base = len(update.original)
    tail, body_offsets = update.write()
    signature_body = body_offsets[slot.number]
    byte_range_at = signature_body + slot.byte_range_at
    contents_start = signature_body + slot.contents_at
    contents_end = contents_start + 2 * CONTENTS_RESERVED_BYTES + 2
    total = base + len(tail)
    byte_range = [0, contents_start, contents_end, total - contents_end]
    text = ("[" + " ".join(map(str, byte_range))).encode("ascii")
    if len(text) > _BYTE_RANGE_WIDTH - 1:
        raise UnsupportedPdf("The document is too large to sign.")
    tail[byte_range_at - base : byte_range_at - base + len(text)] = text

    signed = original_hash.copy()
    view = memoryview(tail)
    signed.update(view[: contents_start - base])
    signed.update(view[contents_end - base :])
    view.release()
    signature = build_detached_signature(identity, signed.digest(), timestamp=timestamp).hex().encode("ascii")
    if len(signature) > 2 * CONTENTS_RESERVED_BYTES:
        raise RuntimeError(f"the CMS signature ({len(signature) // 2} bytes) outgrew its reserved space")
    at = contents_start + 1 - base
    tail[at : at + len(signature)] = signature

    whole = original_hash.copy()
    whole.update(tail)
    return b"".join((update.original, tail)), whole.digest()
