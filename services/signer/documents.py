"""Opening untrusted PDFs: every way a file can be unusable becomes an `UnsupportedPdf`.

pypdf promises no closed set of exceptions for malformed input (a hostile file can raise
anything from PdfReadError to RecursionError), so reading happens inside `reading_pdf()`, which
turns whatever escapes into one error a user can act on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pypdf import PasswordType, PdfReader
from pypdf.errors import LimitReachedError
from pypdf.generic import ArrayObject, ByteStringObject, DictionaryObject, IndirectObject, TextStringObject

from services.common.errors import DomainError
from services.signer.encryption import (
    PASSWORD_PROTECTED,
    UNSUPPORTED_ENCRYPTION,
    DocumentKey,
    open_document_key,
)
from services.signer.errors import EncryptedPdf, UnsupportedPdf
from services.signer.pdfread import EXPANDS_TOO_FAR, PageNode, bounded_decoding
from services.signer.pdfsyntax import NESTED_TOO_DEEP

logger = logging.getLogger(__name__)

DAMAGED = (
    "The PDF is damaged and cannot be read safely. Open it in a PDF viewer, save or print it as a "
    "new PDF, and try again."
)

# A PDF's header may follow some junk, and readers look for it in the first kilobyte.
_HEADER_WINDOW = 1024
# Writers may append a little junk after the last %%EOF; readers look for startxref near the end.
_TRAILER_WINDOW = 4096
_STARTXREF = re.compile(rb"startxref\s+(\d+)")
_OBJECT_HEADER = re.compile(rb"\s*\d+\s+\d+\s+obj\b")


@contextlib.contextmanager
def reading_pdf() -> Iterator[None]:
    """Turn any failure while reading an untrusted PDF into `UnsupportedPdf`; no stream inflates
    past `MAX_EXPANDED_BYTES` meanwhile."""
    try:
        with bounded_decoding():
            yield
    except DomainError:
        raise
    except LimitReachedError as exc:
        # pypdf's guard against resource exhaustion: a bomb when it was inflating, else a loop.
        expanding = "decompress" in str(exc) or "output length" in str(exc)
        raise UnsupportedPdf(EXPANDS_TOO_FAR if expanding else DAMAGED) from exc
    except RecursionError as exc:
        raise UnsupportedPdf(NESTED_TOO_DEEP) from exc
    except Exception as exc:  # see the module docstring: the reader's failures are open-ended
        # INFO, since junk uploads are routine; the traceback is there for when it is our bug.
        logger.info("unreadable PDF: %s", type(exc).__name__, exc_info=True)
        raise UnsupportedPdf(DAMAGED) from exc


def open_pdf(document: bytes) -> PdfReader:
    """Parse `document` and its page tree; call inside `reading_pdf()`."""
    check_is_pdf(document)
    try:
        reader = PdfReader(io.BytesIO(document), strict=False)
    except NotImplementedError as exc:  # what pypdf raises for a security handler it does not know
        raise EncryptedPdf(UNSUPPORTED_ENCRYPTION) from exc
    if reader.is_encrypted:
        # Opening with the empty user password is what every viewer does without asking; pypdf
        # then decrypts each object as it reads it.
        document_key(reader)
        if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise EncryptedPdf(PASSWORD_PROTECTED)
    # The page tree is read lazily; reading it now makes a damaged tree fail here, not halfway.
    if len(reader.pages) == 0:
        raise UnsupportedPdf("The PDF has no pages.")
    return reader


def check_is_pdf(document: bytes) -> None:
    """Refuse what is empty or has no PDF header where readers look for one."""
    if not document:
        raise UnsupportedPdf("The file is empty. Upload the PDF again.")
    if b"%PDF-" not in document[:_HEADER_WINDOW]:
        raise UnsupportedPdf("The file is not a PDF. Convert it to PDF and try again.")


class PypdfSource:
    """A document read whole by pypdf, which repairs what it can: the fallback to `LazyPdf`."""

    def __init__(self, reader: PdfReader) -> None:
        self._reader = reader

    @property
    def trailer(self) -> DictionaryObject:
        return self._reader.trailer

    @property
    def is_encrypted(self) -> bool:
        return self._reader.is_encrypted

    def document_key(self) -> DocumentKey:
        """The key to encrypt an update with; only for an encrypted document."""
        return document_key(self._reader)

    @property
    def catalog(self) -> DictionaryObject:
        return self._reader.root_object

    @property
    def root_reference(self) -> IndirectObject:
        reference = self._reader.root_object.indirect_reference
        if reference is None:
            raise UnsupportedPdf("The PDF has no document catalog. Save it again as a new PDF and try again.")
        return reference

    @property
    def page_count(self) -> int:
        return len(self._reader.pages)

    def page(self, index: int) -> PageNode:
        page = self._reader.pages[index]
        reference = page.indirect_reference
        dictionary = reference.get_object() if reference is not None else None
        if reference is None or not isinstance(dictionary, DictionaryObject):
            raise UnsupportedPdf(
                "The PDF's page tree is malformed. Save it again as a new PDF and try again."
            )
        crop = page.cropbox
        box = (float(crop.left), float(crop.bottom), float(crop.right), float(crop.top))
        return PageNode(reference, dictionary, box, page.get("/Rotate"))

    def first_free_number(self) -> int:
        """One past the highest object number in use, so we never reuse a live number."""
        reader = self._reader
        highest = int(reader.trailer.get("/Size", 1)) - 1
        for table in reader.xref.values():
            if table:
                highest = max(highest, *table)
        if reader.xref_objStm:
            highest = max(highest, *reader.xref_objStm)
        return highest + 1


def document_key(reader: PdfReader) -> DocumentKey:
    """An encrypted document's key, or EncryptedPdf when it needs a password or an unknown handler."""
    trailer = reader.trailer
    encrypt = trailer.get("/Encrypt")
    identifiers = trailer.get("/ID")
    identifiers = identifiers.get_object() if identifiers is not None else None
    first_id = b""
    if isinstance(identifiers, ArrayObject) and identifiers:
        first = identifiers[0].get_object()
        first_id = first.original_bytes if isinstance(first, ByteStringObject | TextStringObject) else b""
    return open_document_key(encrypt.get_object() if encrypt is not None else None, first_id)


@dataclass(frozen=True)
class XrefTail:
    """Where the newest cross-reference section starts, and whether it is a stream."""

    offset: int
    is_stream: bool


def read_xref_tail(document: bytes) -> XrefTail:
    """Find the file's last `startxref` offset; an incremental update chains to it with /Prev.

    Readers forgive a missing or wrong offset by rebuilding the cross-reference table, but a
    signature on top of a rebuilt table would cover whatever each reader happens to rebuild.
    """
    tail_start = max(0, len(document) - _TRAILER_WINDOW)
    matches = list(_STARTXREF.finditer(document, tail_start))
    if not matches:
        raise UnsupportedPdf(DAMAGED)
    offset = int(matches[-1].group(1))
    if offset >= len(document):
        raise UnsupportedPdf(DAMAGED)
    section = document[offset : offset + 64].lstrip(b"\x00\t\n\x0c\r ")
    if section.startswith(b"xref"):
        return XrefTail(offset, is_stream=False)
    if _OBJECT_HEADER.match(section):
        return XrefTail(offset, is_stream=True)
    raise UnsupportedPdf(DAMAGED)
