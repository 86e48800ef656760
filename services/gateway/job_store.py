"""Where stamp jobs are kept between a gateway's starts: a record per job and its documents."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from google.protobuf import json_format

from emeterai.v1 import distributor_service_pb2
from services.common.errors import NotFound
from services.common.files import write_atomically
from services.gateway.documents import STALE_TEMPORARY, utc_now
from services.gateway.jobs import (
    CallbackState,
    Delivery,
    ItemResult,
    JobDocument,
    JobItem,
    JobStatus,
    StampJob,
    decode_documents,
)

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"job_[0-9a-f]{32}")


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def job_to_json(job: StampJob) -> bytes:
    def result(r: ItemResult | None) -> dict[str, Any] | None:
        if r is None:
            return None
        stamp = json_format.MessageToDict(r.stamp, preserving_proto_field_name=True) if r.stamp else None
        return {"code": r.code, "message": r.message, "stamp": stamp}

    return json.dumps(
        {
            "job_id": job.job_id,
            "owner": job.owner,
            "fingerprint": job.fingerprint,
            "callback_url": job.callback_url,
            "created_at": _time(job.created_at),
            "status": job.status.value,
            "finished_at": _time(job.finished_at),
            "revision": job.revision,
            "items": [
                {"client_ref": i.client_ref, "attempt": i.attempt, "sent": i.sent, "result": result(i.result)}
                for i in job.items
            ],
            "callback": {
                "state": job.callback.state.value,
                "attempts": job.callback.attempts,
                "last_http_status": job.callback.last_http_status,
                "last_error": job.callback.last_error,
                "delivered_at": _time(job.callback.delivered_at),
            },
        }
    ).encode()


def job_from_json(data: bytes) -> StampJob:
    raw = json.loads(data)

    def result(r: dict[str, Any] | None) -> ItemResult | None:
        if r is None:
            return None
        stamp = None
        if r["stamp"] is not None:
            stamp = json_format.ParseDict(r["stamp"], distributor_service_pb2.StampRecord())
        return ItemResult(r["code"], r["message"], stamp)

    callback = raw["callback"]
    return StampJob(
        job_id=raw["job_id"],
        owner=raw["owner"],
        fingerprint=raw["fingerprint"],
        callback_url=raw["callback_url"],
        created_at=datetime.fromisoformat(raw["created_at"]),
        status=JobStatus(raw["status"]),
        finished_at=_parse_time(raw["finished_at"]),
        items=[JobItem(i["client_ref"], i["attempt"], i["sent"], result(i["result"])) for i in raw["items"]],
        callback=Delivery(
            CallbackState(callback["state"]),
            callback["attempts"],
            callback["last_http_status"],
            callback["last_error"],
            _parse_time(callback["delivered_at"]),
        ),
        # Records from before revisions were counted have none.
        revision=raw.get("revision", 0),
    )


class JobStore(Protocol):
    def create(self, job: StampJob, documents: bytes) -> None:
        """Keep a new job and its encoded documents."""
        ...

    def find(self, job_id: str) -> StampJob | None: ...

    def documents(self, job_id: str) -> list[JobDocument]: ...

    def save(self, job: StampJob) -> None: ...

    def drop_documents(self, job_id: str) -> None:
        """Forget a finished job's documents (and any document passwords with them)."""
        ...

    def unfinished(self) -> list[StampJob]: ...

    def delete_expired(self) -> int:
        """Delete finished jobs older than the retention; return how many went."""
        ...


class LocalJobStore:
    """Two owner-only files per job in a local folder: <id>.json, the record, rewritten atomically
    as the job moves on, and <id>.request, its documents, deleted when the job is done. An empty
    <id>.open marks a job not finished yet, so the runners' sweeps (jobs.py) read the jobs still to
    run, not every record kept for the retention."""

    def __init__(
        self,
        directory: Path,
        retention: timedelta | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.directory = directory
        self.retention = retention
        self._clock = clock
        # Until this store has read every record once: markers a crash left out, or a folder from
        # before the markers, are found by that first reading.
        self._marks_checked = False
        directory.mkdir(parents=True, exist_ok=True)

    def _record(self, job_id: str) -> Path:
        # fullmatch: a `$` would also match before a trailing newline.
        if not _JOB_ID.fullmatch(job_id):
            raise NotFound("no such job")
        return self.directory / f"{job_id}.json"

    def _request(self, job_id: str) -> Path:
        return self._record(job_id).with_suffix(".request")

    def _marker(self, job_id: str) -> Path:
        return self._record(job_id).with_suffix(".open")

    def _mark(self, job: StampJob) -> None:
        """The job's open marker, present exactly while it is unfinished."""
        marker = self._marker(job.job_id)
        if not job.unfinished:
            marker.unlink(missing_ok=True)
        elif not marker.exists():
            marker.touch(mode=0o600)

    def _drop_orphan(self, marker: Path) -> None:
        """Delete a marker whose record is not there: its job was deleted, or a crash came between
        the two. A fresh one may be a job's being created right now, so it stays for a while."""
        try:
            if marker.stat().st_mtime < (self._clock() - STALE_TEMPORARY).timestamp():
                marker.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def create(self, job: StampJob, documents: bytes) -> None:
        # Documents first: a record on disk always has its documents until it is done.
        write_atomically(self._request(job.job_id), documents, mode=0o600)
        self.save(job)

    def find(self, job_id: str) -> StampJob | None:
        try:
            return job_from_json(self._record(job_id).read_bytes())
        except (FileNotFoundError, NotFound):
            return None

    def documents(self, job_id: str) -> list[JobDocument]:
        return decode_documents(self._request(job_id).read_bytes())

    def save(self, job: StampJob) -> None:
        # The marker before the record while the job is open, after it once it is finished: a crash
        # between the two leaves a marker too many, which a sweep reads and corrects, never a job
        # that no sweep sees. (The record's write syncs the folder, and the marker's name with it.)
        if job.unfinished:
            self._mark(job)
        write_atomically(self._record(job.job_id), job_to_json(job), mode=0o600)
        if not job.unfinished:
            self._mark(job)

    def drop_documents(self, job_id: str) -> None:
        self._request(job_id).unlink(missing_ok=True)

    def unfinished(self) -> list[StampJob]:
        every_record = not self._marks_checked
        found = []
        for path in sorted(self.directory.glob("job_*.json" if every_record else "job_*.open")):
            record = path.with_suffix(".json")
            try:
                job = job_from_json(record.read_bytes())
            except FileNotFoundError:
                self._drop_orphan(path)
                continue
            except (OSError, ValueError, KeyError):
                log.exception("unreadable job record left alone", extra={"path": str(record)})
                continue
            self._mark(job)
            if job.unfinished:
                found.append(job)
        if every_record:
            for marker in self.directory.glob("job_*.open"):
                if not marker.with_suffix(".json").exists():
                    self._drop_orphan(marker)
        self._marks_checked = True
        return found

    def delete_expired(self) -> int:
        if self.retention is None:
            return 0
        now = self._clock()
        cutoff = (now - self.retention).timestamp()
        stale = (now - STALE_TEMPORARY).timestamp()
        deleted = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    modified = entry.stat(follow_symlinks=False).st_mtime
                    if entry.name.startswith("."):
                        # An atomic write's temporary file; only a crash's leftover goes.
                        if modified < stale:
                            os.unlink(entry.path)
                    elif entry.name.endswith(".request"):
                        # A request without a record was never accepted (a crash between the two).
                        if modified < stale and not Path(entry.path).with_suffix(".json").exists():
                            os.unlink(entry.path)
                    elif entry.name.endswith(".json") and modified < cutoff:
                        # A record is rewritten on every change, so one modified after the cutoff
                        # is not expired and needs no reading.
                        job = job_from_json(Path(entry.path).read_bytes())
                        if not job.unfinished and job.finished_at and job.finished_at.timestamp() < cutoff:
                            Path(entry.path).with_suffix(".request").unlink(missing_ok=True)
                            Path(entry.path).with_suffix(".open").unlink(missing_ok=True)
                            os.unlink(entry.path)
                            deleted += 1
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, KeyError):
                    log.exception("job file not swept", extra={"file": entry.name})
        if deleted:
            log.info("expired jobs deleted", extra={"deleted": deleted})
        return deleted
