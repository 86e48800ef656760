"""Encrypting what a stamp adds to an encrypted PDF, with the document's own key.

Bank statements and invoices are often encrypted with an owner password only: the user password
is empty, so every viewer opens them, and the encryption merely carries permission flags. Such a
file can be stamped, but its incremental update must be encrypted like the rest of it (PDF 32000
7.6): every string and stream of each new or rewritten object, with the key derived for that
object's number and generation (RC4 or AES-128, /V below 5) or the file key itself (AES-256).
Two things stay in the clear: the signature dictionary's /Contents (7.6.1: a signature value is
never encrypted, so that it can be found and checked without the key) and the cross-reference
stream. Key derivation and the ciphers are pypdf's.
"""

from __future__ import annotations

from typing import Protocol

from pypdf._encryption import CryptFilter, Encryption, PasswordType
from pypdf.generic import ArrayObject, DictionaryObject, PdfObject

from services.signer.errors import EncryptedPdf
from services.signer.increment import pdf_text

PASSWORD_PROTECTED = (
    "The PDF is password-protected: it cannot be opened without a password. Save a copy without "
    "protection (for example, print it to a new PDF) and try again."
)
UNSUPPORTED_ENCRYPTION = (
    "The PDF is encrypted with a method this signer cannot read (for example, certificate-based "
    "protection). Save a copy without protection and try again."
)


class Cipher(Protocol):
    """How the strings and streams of an object written into the update are stored."""

    def text(self, number: int, generation: int, value: str) -> bytes:
        """A text string as it appears in object `number`."""
        ...

    def stream(self, number: int, generation: int, data: bytes) -> bytes:
        """A stream's stored bytes (after its filters) in object `number`."""
        ...

    def object(self, number: int, generation: int, obj: PdfObject) -> PdfObject:
        """`obj`, read in clear, as it must be written as (or inside) object `number`."""
        ...


class Plain:
    """An unencrypted document: everything is written as it is."""

    def text(self, number: int, generation: int, value: str) -> bytes:
        return pdf_text(value)

    def stream(self, number: int, generation: int, data: bytes) -> bytes:
        return data

    def object(self, number: int, generation: int, obj: PdfObject) -> PdfObject:
        return obj


PLAIN = Plain()


class DocumentKey:
    """The key of an encrypted document that opens with the empty user password."""

    def __init__(self, encryption: Encryption) -> None:
        self._encryption = encryption
        self._filters: dict[tuple[int, int], CryptFilter] = {}

    def _filter(self, number: int, generation: int) -> CryptFilter:
        found = self._filters.get((number, generation))
        if found is None:
            # pypdf's algorithm 1 (per-object RC4/AES-128 keys) and 1a (AES-256) live here.
            found = self._encryption._make_crypt_filter(number, generation)
            self._filters[(number, generation)] = found
        return found

    def text(self, number: int, generation: int, value: str) -> bytes:
        data = value.encode("ascii") if _is_plain(value) else b"\xfe\xff" + value.encode("utf-16-be")
        encrypted = self._filter(number, generation).str_crypt.encrypt(data)
        return b"<" + encrypted.hex().encode("ascii") + b">"

    def stream(self, number: int, generation: int, data: bytes) -> bytes:
        return self._filter(number, generation).stm_crypt.encrypt(data)

    def object(self, number: int, generation: int, obj: PdfObject) -> PdfObject:
        if not isinstance(obj, DictionaryObject | ArrayObject):
            raise TypeError("only dictionaries and arrays are rewritten into an update")
        return self._filter(number, generation).encrypt_object(obj)

    def decrypt(self, number: int, generation: int, obj: PdfObject) -> PdfObject:
        """`obj`, as stored in object `number`, in clear; dictionaries and arrays are decrypted in place."""
        return self._filter(number, generation).decrypt_object(obj, strict=False)


def open_document_key(encrypt: PdfObject, first_id: bytes) -> DocumentKey:
    """The key of a document whose /Encrypt is `encrypt`; EncryptedPdf when it needs a password."""
    if not isinstance(encrypt, DictionaryObject):
        raise EncryptedPdf(UNSUPPORTED_ENCRYPTION)
    try:
        encryption = Encryption.read(encrypt, first_id)
        opened = encryption.verify(b"")
    except Exception as exc:  # pypdf raises NotImplementedError, PdfReadError or worse for odd handlers
        raise EncryptedPdf(UNSUPPORTED_ENCRYPTION) from exc
    if opened == PasswordType.NOT_DECRYPTED:
        raise EncryptedPdf(PASSWORD_PROTECTED)
    return DocumentKey(encryption)


def _is_plain(value: str) -> bool:
    return all(32 <= ord(char) < 127 for char in value)
