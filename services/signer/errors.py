"""What can go wrong when stamping or verifying, in words the document's owner can act on."""

from __future__ import annotations

from services.common.errors import InvalidInput, PreconditionFailed


class UnsupportedPdf(InvalidInput):
    """The bytes are not a PDF we can stamp or read: not a PDF at all, damaged, or a feature we refuse."""


class EncryptedPdf(UnsupportedPdf):
    """The PDF needs a password to open, or uses an encryption we cannot read (see encryption.py)."""


class InvalidPlacement(InvalidInput):
    """The requested page or box does not fit the document."""


class DocumentTooLarge(InvalidInput):
    """The document is bigger than this signer accepts."""


class DocumentLocked(PreconditionFailed):
    """An earlier certification signature forbids any further change, including a stamp."""


class DocumentTooComplex(UnsupportedPdf):
    """Processing the document ran past the per-document time limit (or exhausted its worker)."""
