"""Where stamped PDFs are kept so owners can download them again from their history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from services.common.errors import InvalidInput, NotFound
from services.common.files import write_atomically

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class DocumentStore(Protocol):
    def put(self, stamp_id: str, document: bytes) -> None: ...

    def get(self, stamp_id: str) -> bytes: ...


class LocalDocumentStore:
    """One file per stamp in a local folder; writes are atomic so a crash leaves no half file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, stamp_id: str) -> Path:
        # Ids come from URLs: only plain ids may become file names, never paths.
        if not _SAFE_ID.match(stamp_id):
            raise InvalidInput("malformed stamp id")
        return self.directory / f"{stamp_id}.pdf"

    def put(self, stamp_id: str, document: bytes) -> None:
        write_atomically(self._path(stamp_id), document)

    def get(self, stamp_id: str) -> bytes:
        try:
            return self._path(stamp_id).read_bytes()
        except FileNotFoundError:
            raise NotFound("the stamped document is no longer kept") from None
