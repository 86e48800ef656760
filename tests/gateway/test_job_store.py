"""The job store's folder: records and documents, and what the retention sweep deletes."""

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from emeterai.v1 import common_pb2
from services.common.errors import NotFound
from services.gateway.job_store import LocalJobStore
from services.gateway.jobs import (
    CallbackState,
    JobDocument,
    JobItem,
    JobStatus,
    StampJob,
    encode_documents,
    job_id_for,
)
from tests.conftest import FakeClock

PAGE_ONE = common_pb2.StampPlacement(page=1)


def _aged(path: Path, days: float) -> None:
    when = time.time() - days * 86400
    os.utime(path, (when, when))


def test_finished_jobs_expire_with_the_retention(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LocalJobStore(tmp_path, retention=timedelta(days=90), clock=clock)
    documents = [JobDocument("a", b"%PDF-1.7", PAGE_ONE)]
    made = {}
    for key, status, callback, finished_days_ago in [
        ("old-done", JobStatus.DONE, CallbackState.DELIVERED, 91),
        ("old-callback-pending", JobStatus.DONE, CallbackState.PENDING, 91),
        ("old-unfinished", JobStatus.RUNNING, CallbackState.NONE, None),
        ("recent-done", JobStatus.DONE, CallbackState.FAILED, 10),
    ]:
        job = StampJob(
            job_id=job_id_for("acc_a", key),
            owner="acc_a",
            fingerprint=key,
            callback_url="",
            created_at=clock() - timedelta(days=100),
            items=[JobItem("a")],
            status=status,
            finished_at=None if finished_days_ago is None else clock() - timedelta(days=finished_days_ago),
        )
        job.callback.state = callback
        store.create(job, encode_documents(documents))
        for suffix in (".json", ".request"):
            _aged(tmp_path / f"{job.job_id}{suffix}", 100 if finished_days_ago is None else finished_days_ago)
        made[key] = job.job_id
    orphan = tmp_path / f"{job_id_for('acc_a', 'crashed')}.request"
    orphan.write_bytes(b"never accepted")
    _aged(orphan, 2)

    assert store.delete_expired() == 1
    assert store.find(made["old-done"]) is None
    assert not (tmp_path / f"{made['old-done']}.request").exists()
    assert not orphan.exists()
    for key in ("old-callback-pending", "old-unfinished", "recent-done"):
        assert store.find(made[key]) is not None, key
    assert {job.job_id for job in store.unfinished()} == {
        made["old-callback-pending"],
        made["old-unfinished"],
    }
    clock.advance(81 * 86400)
    assert store.delete_expired() == 1
    assert store.find(made["recent-done"]) is None
    assert LocalJobStore(tmp_path).delete_expired() == 0, "no retention keeps everything"


def test_a_job_id_with_a_trailing_newline_is_no_job(tmp_path: Path) -> None:
    # A job id arrives from a distributor's RPC; only the exact form names a file.
    store = LocalJobStore(tmp_path)
    assert store.find("job_" + "0" * 32 + "\n") is None
    with pytest.raises(NotFound):
        store.drop_documents("job_" + "0" * 32 + "\n")


def _job(key: str, status: JobStatus, callback: CallbackState = CallbackState.NONE) -> StampJob:
    job = StampJob(
        job_id=job_id_for("acc_a", key),
        owner="acc_a",
        fingerprint=key,
        callback_url="",
        created_at=FakeClock()(),
        items=[JobItem("a")],
        status=status,
    )
    job.callback.state = callback
    return job


def test_after_one_full_reading_the_unfinished_jobs_are_read_by_their_markers(tmp_path: Path) -> None:
    documents = encode_documents([JobDocument("a", b"%PDF-1.7", PAGE_ONE)])
    running, pending, done = (
        _job("running", JobStatus.RUNNING),
        _job("callback-pending", JobStatus.DONE, CallbackState.PENDING),
        _job("done", JobStatus.DONE, CallbackState.DELIVERED),
    )
    writer = LocalJobStore(tmp_path)
    for job in (running, pending, done):
        writer.create(job, documents)
    markers = {path.stem for path in tmp_path.glob("*.open")}
    assert markers == {running.job_id, pending.job_id}, "a finished job has no marker"

    # A folder from before the markers, or a crash between a record and its marker: the first
    # reading reads every record and puts the markers right.
    for marker in tmp_path.glob("*.open"):
        marker.unlink()
    (tmp_path / f"{done.job_id}.open").touch()
    # A marker without a record: a day old, its job was deleted; fresh, it may be a job another
    # replica is creating at this moment (its marker goes first), so it stays.
    deleted = tmp_path / f"{job_id_for('acc_a', 'deleted')}.open"
    deleted.touch()
    a_day_ago = time.time() - 25 * 3600
    os.utime(deleted, (a_day_ago, a_day_ago))
    being_created = tmp_path / f"{job_id_for('acc_a', 'being-created')}.open"
    being_created.touch()
    store = LocalJobStore(tmp_path)
    assert {job.job_id for job in store.unfinished()} == {running.job_id, pending.job_id}
    assert {path.stem for path in tmp_path.glob("*.open")} == {
        running.job_id,
        pending.job_id,
        being_created.stem,
    }
    being_created.unlink()

    # From then on only the marked records are read: an unreadable record without a marker is
    # not even opened, and a job that finishes loses its marker.
    (tmp_path / f"{done.job_id}.json").write_bytes(b"not json")
    running.status = JobStatus.DONE
    writer.save(running)
    assert [job.job_id for job in store.unfinished()] == [pending.job_id]
    assert {path.stem for path in tmp_path.glob("*.open")} == {pending.job_id}


def test_an_open_jobs_marker_is_there_before_its_record(tmp_path: Path) -> None:
    """A crash between the two files leaves a marker the sweeps correct, never an open record
    that no sweep sees: here the record's write fails after the marker is made."""
    job = _job("marker-first", JobStatus.QUEUED)
    store = LocalJobStore(tmp_path)
    # A folder where the record would go: replacing it fails, as a crash at that moment would.
    (tmp_path / f"{job.job_id}.json").mkdir()
    with pytest.raises(OSError):
        store.create(job, encode_documents([JobDocument("a", b"%PDF-1.7", PAGE_ONE)]))
    assert (tmp_path / f"{job.job_id}.open").exists()
