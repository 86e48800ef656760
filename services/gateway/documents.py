"""Where stamped PDFs are kept so owners can download them again from their history.

They are kept for a retention (EMETERAI_DOCUMENT_RETENTION_DAYS); the gateway deletes older ones
now and then, and asking for one afterwards is Gone. Only our copy of the PDF goes: the stamp,
its serial and its signature stay valid and verifiable.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from services.common.errors import Gone, InvalidInput, NotFound
from services.common.files import write_atomically

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

# A temporary file of an atomic write older than this is a crash's leftover, never a write in
# progress: writes take seconds.
STALE_TEMPORARY = timedelta(days=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def retention_from_days(days: int) -> timedelta | None:
    """The retention EMETERAI_DOCUMENT_RETENTION_DAYS asks for; None (0 days) keeps everything."""
    return timedelta(days=days) if days > 0 else None


class DocumentStore(Protocol):
    def put(self, stamp_id: str, document: bytes) -> None: ...

    def get(self, stamp_id: str) -> bytes: ...


class LocalDocumentStore:
    """One file per stamp in a local folder; writes are atomic so a crash leaves no half file."""

    def __init__(
        self,
        directory: Path,
        retention: timedelta | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.directory = directory
        self.retention = retention
        self._clock = clock
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, stamp_id: str) -> Path:
        # Ids come from URLs: only plain ids may become file names, never paths.
        # fullmatch: a `$` would also match before a trailing newline.
        if not _SAFE_ID.fullmatch(stamp_id):
            raise InvalidInput("malformed stamp id")
        return self.directory / f"{stamp_id}.pdf"

    def put(self, stamp_id: str, document: bytes) -> None:
        write_atomically(self._path(stamp_id), document)

    def get(self, stamp_id: str) -> bytes:
        try:
            return self._path(stamp_id).read_bytes()
        except FileNotFoundError:
            if self.retention is None:
                raise NotFound("the stamped document is no longer kept") from None
            raise Gone(
                f"the stamped PDF is no longer kept: copies are kept {self.retention.days} days. "
                "The stamp itself remains valid and verifiable: verify the PDF you downloaded, "
                "or look up its serial"
            ) from None

    def delete_expired(self) -> int:
        """Delete stamped PDFs older than the retention; return how many went.

        A PDF is written once, while its hold is reserved (minutes), so one past the retention is
        never being written. Temporary files of writes in progress are left alone unless they are
        a crash's leftovers."""
        if self.retention is None:
            return 0
        now = self._clock()
        return _delete_older(self.directory, ".pdf", (now - self.retention).timestamp(), now)


def _delete_older(directory: Path, suffix: str, cutoff: float, now: datetime) -> int:
    """Delete directory's files ending in suffix last written before cutoff (a POSIX time), and
    temporary files (names starting with a dot) older than STALE_TEMPORARY."""
    stale = (now - STALE_TEMPORARY).timestamp()
    deleted = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            temporary = entry.name.startswith(".")
            if not temporary and not entry.name.endswith(suffix):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime >= (stale if temporary else cutoff):
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            deleted += 1
    if deleted:
        log.info("expired files deleted", extra={"directory": str(directory), "deleted": deleted})
    return deleted
