"""Where stamped PDFs are kept so owners can download them again from their history.

They are kept for a retention (EMETERAI_DOCUMENT_RETENTION_DAYS); the gateway deletes older ones
now and then, and asking for one afterwards is Gone. Only our copy of the PDF goes: the stamp,
its serial and its signature stay valid and verifiable.

A store answers each put with a reference, which the gateway hands to the ledger with the commit;
the ledger keeps it with the hold, so whichever replica is asked later finds the PDF from the hold
alone, with no index of its own to keep or share.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from services.common.errors import Gone, InvalidInput, NotFound
from services.common.files import fsync_directory

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

# A temporary file of an atomic write older than this is a crash's leftover, never a write in
# progress: writes take seconds.
STALE_TEMPORARY = timedelta(days=1)

# A segment is closed and a new one begun at whichever comes first. A segment goes once its last
# PDF is past the retention, so a PDF is kept at least the retention and at most SEGMENT_AGE more.
SEGMENT_BYTES = 256 * 1024 * 1024
SEGMENT_AGE = timedelta(hours=1)

# A record: magic, the stamp id's length, the PDF's length and its SHA-256; then the id and the
# PDF. A reader checks all of it against the stamp it was asked for, so a wrong or stale
# reference is found out rather than answered with someone else's document.
_MAGIC = b"EMSD"
_HEADER = struct.Struct(">4sHI32s")
_SEGMENT_NAME = r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\.seg"
_REF = re.compile(rf"(?P<segment>{_SEGMENT_NAME}):(?P<offset>[0-9]{{1,15}}):(?P<length>[0-9]{{1,10}})")
_SEGMENT = re.compile(_SEGMENT_NAME)
_PDF_SUFFIX = ".pdf"


def utc_now() -> datetime:
    return datetime.now(UTC)


def retention_from_days(days: int) -> timedelta | None:
    """The retention EMETERAI_DOCUMENT_RETENTION_DAYS asks for; None (0 days) keeps everything."""
    return timedelta(days=days) if days > 0 else None


class DocumentStore(Protocol):
    def put(self, stamp_id: str, document: bytes) -> str:
        """Keep document durably; the answer is its reference, for get."""
        ...

    def get(self, stamp_id: str, ref: str = "") -> bytes: ...


@dataclass(eq=False)
class _Segment:
    path: Path
    fd: int
    opened_at: datetime
    size: int = 0
    # Records written, and how many of them are on disk: a put returns once its own is.
    appended: int = 0
    synced: int = 0
    retired: bool = False
    # A sync that failed: what it should have covered may be lost (a later fdatasync would not
    # say so), so no put in this segment may succeed any more.
    failed: bool = False
    closed: bool = False
    sync_lock: threading.Lock = field(default_factory=threading.Lock)


class LocalDocumentStore:
    """Stamped PDFs appended to segment files in a local folder, which replicas may share.

    Each store writes segments of its own (named by when they were begun, and a random part), so
    replicas sharing the folder never write to one file, and reads any. Creating a file per PDF
    cost more than writing it: the file system finds an inode for each, and the file and its
    folder each had to reach the disk. Here a put is one write to an open file, and one fdatasync
    covers every put waiting at that moment (group commit).

    PDFs kept before segments, one file per stamp named by its id, are read by id (an empty
    reference) and deleted with the retention as before.
    """

    def __init__(
        self,
        directory: Path,
        retention: timedelta | None = None,
        clock: Callable[[], datetime] = utc_now,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        segment_age: timedelta = SEGMENT_AGE,
    ) -> None:
        self.directory = directory
        self.retention = retention
        self._clock = clock
        self._segment_bytes = segment_bytes
        self._segment_age = segment_age
        if retention is not None and retention <= segment_age:
            # A segment being written is younger than segment_age: the retention must be longer, or
            # another replica's sweep could delete it under its writer.
            raise ValueError("the retention must be longer than a segment's age")
        self._append_lock = threading.Lock()
        self._current: _Segment | None = None
        self._closed = False
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, stamp_id: str, document: bytes) -> str:
        name = _checked(stamp_id).encode()
        record = (
            _HEADER.pack(_MAGIC, len(name), len(document), hashlib.sha256(document).digest())
            + name
            + document
        )
        with self._append_lock:
            if self._closed:
                raise RuntimeError("the document store is closed")
            segment = self._segment_for(len(record))
            offset = segment.size
            try:
                _write_at(segment.fd, record, offset)
            except BaseException:
                # What reached the file is unknown: the next put begins a new segment.
                self._retire(segment)
                raise
            segment.size += len(record)
            segment.appended += 1
            ticket = segment.appended
        self._sync(segment, ticket)
        return f"{segment.path.name}:{offset}:{len(record)}"

    def get(self, stamp_id: str, ref: str = "") -> bytes:
        _checked(stamp_id)
        if not ref:
            try:
                return (self.directory / f"{stamp_id}{_PDF_SUFFIX}").read_bytes()
            except FileNotFoundError:
                raise self._missing() from None
        place = _REF.fullmatch(ref)
        if place is None:
            log.error("malformed document reference", extra={"stamp_id": stamp_id})
            raise self._missing()
        offset, length = int(place["offset"]), int(place["length"])
        try:
            descriptor = os.open(self.directory / place["segment"], os.O_RDONLY)
        except FileNotFoundError:
            raise self._missing() from None
        try:
            # A reference past the segment's end is a wrong one: nothing is read for it.
            fits = offset + length <= os.fstat(descriptor).st_size
            record = _read_at(descriptor, length, offset) if fits else b""
        finally:
            os.close(descriptor)
        document = _unpacked(record, stamp_id) if len(record) == length else None
        if document is None:
            log.error(
                "document record does not match its reference", extra={"stamp_id": stamp_id, "ref": ref}
            )
            raise self._missing()
        return document

    def delete_expired(self) -> int:
        """Delete segments whose last PDF is past the retention, and stamped PDFs kept one per file
        that are; return how many files went.

        A segment past the retention is never being written: a store begins a new one every
        SEGMENT_AGE, shorter than any retention. Temporary files of writes in progress are left
        alone unless they are a crash's leftovers."""
        if self.retention is None:
            return 0
        now = self._clock()
        cutoff = (now - self.retention).timestamp()
        with self._append_lock:
            # A store that has not stamped for a while still holds its last segment open: past its
            # age it is done with, and goes with the retention like any other.
            if self._current is not None and now - self._current.opened_at >= self._segment_age:
                self._retire(self._current)
            current = self._current.path.name if self._current is not None else None
        stale = (now - STALE_TEMPORARY).timestamp()

        def written_before(name: str) -> float | None:
            if name.startswith("."):
                return stale
            if name != current and (_SEGMENT.fullmatch(name) or name.endswith(_PDF_SUFFIX)):
                return cutoff
            return None

        deleted = _delete_older(self.directory, written_before)
        if deleted:
            log.info(
                "expired documents deleted", extra={"directory": str(self.directory), "deleted": deleted}
            )
        return deleted

    def close(self) -> None:
        """Close the segment being written; every put already returned is on disk."""
        with self._append_lock:
            self._closed = True
            if self._current is not None:
                self._retire(self._current)

    def _segment_for(self, record_bytes: int) -> _Segment:
        """The segment to append a record to, begun anew when the current one is full or old."""
        now = self._clock()
        segment = self._current
        # A retired segment is never current: _retire lets go of it.
        if segment is not None and (
            segment.failed
            or (segment.size and segment.size + record_bytes > self._segment_bytes)
            or now - segment.opened_at >= self._segment_age
        ):
            self._retire(segment)
            segment = None
        if segment is None:
            path = self.directory / f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.seg"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                # The segment's name must be on disk before any reference to it is handed out.
                fsync_directory(self.directory)
            except BaseException:
                os.close(descriptor)
                path.unlink(missing_ok=True)
                raise
            segment = self._current = _Segment(path, descriptor, now)
        return segment

    def _sync(self, segment: _Segment, ticket: int) -> None:
        """Return once the segment's first `ticket` records are on disk: whoever syncs covers every
        record written before it began, so puts waiting together share one fdatasync."""
        with segment.sync_lock:
            try:
                if segment.synced >= ticket:
                    # An earlier sync covered it, whatever happened to the syncs since.
                    return
                if segment.failed:
                    raise OSError("an earlier sync of this segment failed; the document may not be on disk")
                # Read before the sync: the records counted were written, the sync covers them.
                target = segment.appended
                try:
                    os.fdatasync(segment.fd)
                except BaseException:
                    segment.failed = True
                    raise
                segment.synced = target
            finally:
                # A retired segment may have waited for this sync, failed or not, to be closed.
                self._close_if_done(segment)

    def _retire(self, segment: _Segment) -> None:
        segment.retired = True
        if self._current is segment:
            self._current = None
        with segment.sync_lock:
            self._close_if_done(segment)

    @staticmethod
    def _close_if_done(segment: _Segment) -> None:
        # Under segment.sync_lock: a retired segment is closed once nothing waits to sync it (or
        # nothing can: it failed). Nothing writes to a retired segment.
        if segment.retired and not segment.closed and (segment.failed or segment.synced == segment.appended):
            segment.closed = True
            os.close(segment.fd)

    def _missing(self) -> NotFound:
        if self.retention is None:
            return NotFound("the stamped document is no longer kept")
        return Gone(
            f"the stamped PDF is no longer kept: copies are kept {self.retention.days} days. "
            "The stamp itself remains valid and verifiable: verify the PDF you downloaded, "
            "or look up its serial"
        )


def _checked(stamp_id: str) -> str:
    # Ids come from URLs: only plain ids may become file names or records, never paths.
    # fullmatch: a `$` would also match before a trailing newline.
    if not _SAFE_ID.fullmatch(stamp_id):
        raise InvalidInput("malformed stamp id")
    return stamp_id


def _write_at(descriptor: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(descriptor, view, offset)
        view, offset = view[written:], offset + written


def _read_at(descriptor: int, length: int, offset: int) -> bytes:
    parts = []
    while length:
        part = os.pread(descriptor, length, offset)
        if not part:
            break
        parts.append(part)
        length, offset = length - len(part), offset + len(part)
    return b"".join(parts)


def _unpacked(record: bytes, stamp_id: str) -> bytes | None:
    """The PDF in record when it is whole and is stamp_id's; None otherwise."""
    if len(record) < _HEADER.size:
        return None
    magic, id_length, document_length, digest = _HEADER.unpack_from(record)
    name_end = _HEADER.size + id_length
    if (
        magic != _MAGIC
        or len(record) != name_end + document_length
        or record[_HEADER.size : name_end] != stamp_id.encode()
    ):
        return None
    document = record[name_end:]
    return document if hashlib.sha256(document).digest() == digest else None


def _delete_older(directory: Path, written_before: Callable[[str], float | None]) -> int:
    """Delete the files in directory last written before written_before(their name), a POSIX time
    (None: keep it whatever its age); return how many went."""
    deleted = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            cutoff = written_before(entry.name)
            if cutoff is None:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            deleted += 1
    return deleted
