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
