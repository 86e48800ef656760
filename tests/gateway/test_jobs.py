"""Stamp jobs against real parts: the ledger (QuotaService on SQLite), the auth service (webhook
secrets) and a signer with the development PKI, each a grpc.aio server on 127.0.0.1; real PDFs;
and a real HTTP server on 127.0.0.1 that receives the callbacks and checks their signatures."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import pytest_asyncio
import redis.asyncio
from prometheus_client import REGISTRY

from emeterai.v1 import (
    auth_service_pb2_grpc,
    common_pb2,
    ledger_pb2,
    quota_service_pb2,
    quota_service_pb2_grpc,
    signer_service_pb2_grpc,
)
from services.common.errors import (
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    RequestInFlight,
)
from services.common.limits import BucketRule, MemoryTokenBuckets
from services.common.redis_state import async_redis_client
from services.common.webhooks import verify_webhook
from services.gateway.callbacks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    AuthWebhookSecrets,
    CallbackClient,
)
from services.gateway.documents import LocalDocumentStore
from services.gateway.job_leases import KEY_PREFIX, RedisJobLeases
from services.gateway.job_store import LocalJobStore
from services.gateway.jobs import (
    Backoff,
    CallbackState,
    JobDocument,
    JobItem,
    JobLimits,
    JobStatus,
    StampJob,
    StampJobs,
    encode_documents,
    item_key,
    job_id_for,
)
from services.gateway.metrics import STAMP_OUTCOMES
from services.gateway.stamping import StampingFlow
from services.gateway.upstream import Backends
from tests.auth_server import running_auth
from tests.conftest import require_redis_server
from tests.ledger_server import RunningLedger, running_ledger
from tests.polling import eventually
from tests.webhook_receiver import WebhookReceiver

# One event loop for the module, so the signer's worker process starts once for all its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")
PAGE_ONE = common_pb2.StampPlacement(page=1)


@dataclass
class Parts:
    """Everything a StampJobs needs, on real services; `runner()` makes one over the job folder."""

    jobs_dir: Path
    stamping: StampingFlow
    quota: Any
    secrets: AuthWebhookSecrets
    receiver: WebhookReceiver
    distributor: str
    webhook_secret: bytes
    ledger: RunningLedger
    runners: list[tuple[StampJobs, CallbackClient]] = field(default_factory=list)

    def runner(self, **options: Any) -> StampJobs:
        callbacks = CallbackClient(timeout_s=5)
        settings: dict[str, Any] = {
            "dev": True,
            "workers": 2,
            "documents_at_once": 2,
            "document_retries": Backoff(attempts=4, first_s=0.05, max_s=0.2),
            "callback_retries": Backoff(attempts=3, first_s=0.05, max_s=0.1),
        }
        jobs = StampJobs(
            LocalJobStore(self.jobs_dir),
            self.stamping,
            self.secrets,
            callbacks,
            JobLimits(max_documents=5, max_bytes=2 * 1024 * 1024, max_document_bytes=1024 * 1024),
            **(settings | options),
        )
        self.runners.append((jobs, callbacks))
        return jobs

    async def balance(self, account_id: str = "") -> ledger_pb2.Balance:
        answer = await self.quota.GetBalance(
            quota_service_pb2.GetBalanceRequest(account_id=account_id or self.distributor)
        )
        return answer.balance

    async def buy(self, quantity: int) -> None:
        await self.ledger.fund(
            self.quota, self.distributor, quantity, common_pb2.CHANNEL_DISTRIBUTOR, f"buy-{quantity}"
        )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.close()


@pytest_asyncio.fixture(loop_scope="module")
async def parts(tmp_path: Path, signer_address: str, receiver: WebhookReceiver) -> AsyncIterator[Parts]:
    async with (
        running_ledger(tmp_path / "quota.db") as ledger,
        running_auth(tmp_path) as auth,
        grpc.aio.insecure_channel(auth.address) as auth_channel,
        grpc.aio.insecure_channel(ledger.address) as quota_channel,
        grpc.aio.insecure_channel(signer_address) as signer_channel,
    ):
        credential, _ = auth.domain.distributors.create_distributor("PT Uji Coba", [])
        backends = Backends(
            auth=auth_service_pb2_grpc.AuthServiceStub(auth_channel),
            quota=quota_service_pb2_grpc.QuotaServiceStub(quota_channel),
            signer=signer_service_pb2_grpc.SignerServiceStub(signer_channel),
        )
        built = Parts(
            jobs_dir=tmp_path / "jobs",
            stamping=StampingFlow(backends, LocalDocumentStore(tmp_path / "documents"), sign_timeout_s=60),
            quota=backends.quota,
            secrets=AuthWebhookSecrets(backends.auth),
            receiver=receiver,
            distributor=credential.account_id,
            webhook_secret=auth.domain.distributors.webhook_secret(credential.account_id).encode(),
            ledger=ledger,
        )
        await built.buy(10)
        yield built
        for jobs, callbacks in built.runners:
            await jobs.shutdown(30)
            await callbacks.close()


def _documents(corpus: Path, *names: str) -> list[JobDocument]:
    """A job's documents: corpus files by name, or the raw bytes given for a name not in it."""
    documents = []
    for i, name in enumerate(names):
        path = corpus / name
        content = path.read_bytes() if path.suffix == ".pdf" else name.encode()
        documents.append(JobDocument(client_ref=f"ref-{i}", document=content, placement=PAGE_ONE))
    return documents


async def _done(jobs: StampJobs, owner: str, job_id: str) -> StampJob:
    async def check() -> StampJob | None:
        job = await jobs.get(owner, job_id)
        return job if job.status == JobStatus.DONE and job.callback.state != CallbackState.PENDING else None

    deadline = time.monotonic() + 120
    while (job := await check()) is None:
        assert time.monotonic() < deadline, "the job did not finish"
        await asyncio.sleep(0.05)
    return job


async def test_a_job_stamps_its_documents_and_calls_back_signed(parts: Parts, corpus: Path) -> None:
    jobs = parts.runner()
    documents = _documents(
        corpus, "sf-001-minimal-document.pdf", "not a pdf at all", "sf-002-libreoffice-writer.pdf"
    )
    job = await jobs.submit(parts.distributor, "job-1", documents, parts.receiver.url())
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    done = await _done(jobs, parts.distributor, job.job_id)
    codes = [item.result.code for item in done.items if item.result]
    assert codes == ["OK", "INVALID_ARGUMENT", "OK"]
    assert done.items[1].result and "not a PDF" in done.items[1].result.message
    stamps = [item.result.stamp for item in done.items if item.result and item.result.stamp]
    assert len({s.serial for s in stamps}) == 2
    assert done.callback.state == CallbackState.DELIVERED and done.callback.attempts == 1
    assert done.callback.last_http_status == 200 and done.callback.delivered_at is not None
    balance = await parts.balance()
    assert (balance.consumed, balance.held, balance.available) == (2, 0, 8)
    # The documents (and any document passwords) are gone once the job is done; the record stays.
    await eventually(lambda: sorted(p.name for p in parts.jobs_dir.iterdir()) == [f"{job.job_id}.json"])

    (callback,) = parts.receiver.received
    assert callback.path == "/callbacks" and callback.headers["content-type"] == "application/json"
    verify_webhook(parts.webhook_secret, callback.body, callback.headers[SIGNATURE_HEADER.lower()])
    assert callback.headers[DELIVERY_ID_HEADER.lower()] == job.job_id
    body = json.loads(callback.body)
    assert (body["type"], body["job_id"], body["status"]) == ("stamp_job.done", job.job_id, "done")
    assert (body["documents"], body["stamped"], body["failed"]) == (3, 2, 1)
    assert [(r["index"], r["client_ref"], r["code"]) for r in body["results"]] == [
        (0, "ref-0", "OK"),
        (1, "ref-1", "INVALID_ARGUMENT"),
        (2, "ref-2", "OK"),
    ]
    first = body["results"][0]["stamp"]
    assert first["serial"] == stamps[0].serial and first["status"] == "stamped"
    assert first["document_sha256"] == hashlib.sha256(documents[0].document).hexdigest()
    assert body["results"][1]["stamp"] is None


async def test_a_job_stamps_at_its_accounts_rate_waiting_for_tokens_instead_of_failing(
    parts: Parts, corpus: Path
) -> None:
    # The account's bucket: one token saved up, five a second after that.
    buckets = MemoryTokenBuckets()
    rule = BucketRule("distributor-stamps", rate=5.0, burst=1)
    asked: list[tuple[str, float]] = []

    async def pace(owner: str) -> float:
        wait = await buckets.take(rule, owner)
        asked.append((owner, wait))
        return wait

    jobs = parts.runner(pace=pace)
    documents = _documents(corpus, *["sf-001-minimal-document.pdf"] * 3)
    job = await jobs.submit(parts.distributor, "job-paced", documents, "")
    done = await _done(jobs, parts.distributor, job.job_id)
    assert [item.result.code for item in done.items if item.result] == ["OK"] * 3
    # One token per document, each from the owner's bucket; past the burst, documents waited.
    assert {owner for owner, _ in asked} == {parts.distributor}
    assert sum(1 for _, wait in asked if wait == 0) == 3
    assert any(wait > 0 for _, wait in asked)
    assert (await parts.balance()).consumed == 3


async def test_the_same_key_is_the_same_job_and_only_its_owner_sees_it(parts: Parts, corpus: Path) -> None:
    jobs = parts.runner()
    documents = _documents(corpus, "sf-001-minimal-document.pdf")
    job = await jobs.submit(parts.distributor, "job-2", documents, "")
    again = await jobs.submit(parts.distributor, "job-2", documents, "")
    assert again.job_id == job.job_id
    for other_documents, url in [
        (_documents(corpus, "sf-002-libreoffice-writer.pdf"), ""),
        (documents, parts.receiver.url()),
    ]:
        with pytest.raises(IdempotencyKeyReused):
            await jobs.submit(parts.distributor, "job-2", other_documents, url)
    # Another distributor's key names another job; this one is not found by anyone else.
    assert job_id_for("acc_other", "job-2") != job.job_id
    for owner, job_id in [
        ("acc_other", job.job_id),
        (parts.distributor, "job_nope"),
        (parts.distributor, "../x"),
    ]:
        with pytest.raises(NotFound):
            await jobs.get(owner, job_id)

    done = await _done(jobs, parts.distributor, job.job_id)
    assert done.callback.state == CallbackState.NONE and not parts.receiver.received
    # After it is done, the same request still answers with the same job, and charged once.
    assert (await jobs.submit(parts.distributor, "job-2", documents, "")).job_id == job.job_id
    assert (await parts.balance()).consumed == 1


async def test_a_job_is_bounded_and_checked_before_it_is_kept(parts: Parts, corpus: Path) -> None:
    jobs = parts.runner()
    one = _documents(corpus, "sf-001-minimal-document.pdf")
    big = JobDocument("big", b"%PDF-1.7\n" + b"0" * (1024 * 1024 - 100), PAGE_ONE)
    refused: list[tuple[str, list[JobDocument], str]] = [
        ("", one, ""),
        ("k" * 129, one, ""),
        ("too-few", [], ""),
        ("too-many", one * 6, ""),
        ("too-big", [big, big, big], ""),
        ("bad-url", one, "ftp://example.com/x"),
        ("credentials", one, "http://user:pw@127.0.0.1:9/"),
    ]
    for key, documents, url in refused:
        with pytest.raises(InvalidInput):
            await jobs.submit(parts.distributor, key, documents, url)
    # A callback needs a webhook secret to sign it with.
    with pytest.raises(PreconditionFailed) as no_secret:
        await jobs.submit("acc_without_credential", "k", one, parts.receiver.url())
    assert "RotateWebhookSecret" in no_secret.value.message
    assert not parts.jobs_dir.exists() or not list(parts.jobs_dir.iterdir())


async def test_a_stopped_runner_leaves_work_the_next_start_finishes_charging_once(
    parts: Parts, corpus: Path
) -> None:
    first = parts.runner(workers=1, documents_at_once=1)
    documents = _documents(corpus, *["sf-001-minimal-document.pdf"] * 5)
    # The signer's worker is held still while the stop begins, so the stop lands mid-job however
    # fast the documents stamp.
    with _signer_paused():
        job = await first.submit(parts.distributor, "job-3", documents, parts.receiver.url())
        await eventually(lambda: _held(parts), timeout_s=60)
        # A clean stop: the document being stamped finishes within the grace, no other one starts.
        stopping = asyncio.create_task(first.shutdown(30))
        await asyncio.sleep(0.2)
    await stopping
    store = LocalJobStore(parts.jobs_dir)
    stopped = store.find(job.job_id)
    assert stopped is not None and stopped.status == JobStatus.RUNNING
    assert 1 <= sum(1 for item in stopped.items if item.result) < 5
    assert not parts.receiver.received

    second = parts.runner()
    assert await second.start() == 1
    done = await _done(second, parts.distributor, job.job_id)
    assert [item.result.code for item in done.items if item.result] == ["OK"] * 5
    assert len({item.result.stamp.serial for item in done.items if item.result and item.result.stamp}) == 5
    balance = await parts.balance()
    assert (balance.consumed, balance.held) == (5, 0), "a resumed job charges each document once"
    assert len(parts.receiver.received) == 1


async def _resumable(parts: Parts, documents: list[JobDocument], key: str) -> StampJob:
    """A job as a gateway that died left it: every document's first key already sent."""
    job = StampJob(
        job_id=job_id_for(parts.distributor, key),
        owner=parts.distributor,
        fingerprint="left-by-an-earlier-run",
        callback_url="",
        created_at=datetime.now(UTC),
        items=[JobItem(d.client_ref, sent=True) for d in documents],
        status=JobStatus.RUNNING,
    )
    LocalJobStore(parts.jobs_dir).create(job, encode_documents(documents))
    return job


async def test_a_resumed_document_replays_its_stamp_or_starts_a_new_attempt(
    parts: Parts, corpus: Path
) -> None:
    documents = _documents(corpus, "sf-001-minimal-document.pdf", "sf-002-libreoffice-writer.pdf")
    job = await _resumable(parts, documents, "job-4")
    # Document 0 was stamped and committed before the gateway died, not yet recorded in the job.
    stamped = await parts.stamping.stamp(
        account_id=parts.distributor,
        idempotency_key=item_key(job.job_id, 0, 0),
        document=documents[0].document,
        placement=PAGE_ONE,
        metadata=common_pb2.DocumentMetadata(),
        channel=common_pb2.CHANNEL_DISTRIBUTOR,
    )
    # Document 1's hold was reserved, then released when its signing failed.
    reserved = await parts.quota.Reserve(
        quota_service_pb2.ReserveRequest(
            account_id=parts.distributor,
            idempotency_key=item_key(job.job_id, 1, 0),
            document_sha256=hashlib.sha256(documents[1].document).digest(),
            channel=common_pb2.CHANNEL_DISTRIBUTOR,
        )
    )
    await parts.quota.Release(
        quota_service_pb2.ReleaseRequest(
            hold_id=reserved.hold.hold_id, reason=ledger_pb2.RELEASE_REASON_SIGNING_FAILED
        )
    )

    jobs = parts.runner()
    assert await jobs.start() == 1
    done = await _done(jobs, parts.distributor, job.job_id)
    first, second = done.items
    assert first.result and first.result.code == "OK" and first.attempt == 0
    assert first.result.stamp and first.result.stamp.serial == stamped.hold.serial
    assert second.result and second.result.code == "OK" and second.attempt == 1
    assert second.result.stamp and second.result.stamp.serial != reserved.hold.serial
    balance = await parts.balance()
    assert (balance.consumed, balance.held) == (2, 0)


async def test_a_callback_is_retried_with_backoff_and_redirects_are_not_followed(
    parts: Parts, corpus: Path
) -> None:
    jobs = parts.runner()
    documents = _documents(corpus, "not a pdf")
    parts.receiver.answers = [500, 503]
    retried = await jobs.submit(parts.distributor, "job-5", documents, parts.receiver.url())
    done = await _done(jobs, parts.distributor, retried.job_id)
    assert (done.callback.state, done.callback.attempts) == (CallbackState.DELIVERED, 3)
    assert len(parts.receiver.received) == 3
    bodies = {r.body for r in parts.receiver.received}
    assert len(bodies) == 1, "every attempt carries the same body"
    for attempt in parts.receiver.received:
        verify_webhook(parts.webhook_secret, attempt.body, attempt.headers[SIGNATURE_HEADER.lower()])

    parts.receiver.received.clear()
    parts.receiver.answers = [302, 302, 302]
    redirected = await jobs.submit(parts.distributor, "job-6", documents, parts.receiver.url())
    failed = await _done(jobs, parts.distributor, redirected.job_id)
    assert (failed.callback.state, failed.callback.attempts) == (CallbackState.FAILED, 3)
    assert failed.callback.last_http_status == 302 and "redirect" in failed.callback.last_error
    assert [r.path for r in parts.receiver.received] == ["/callbacks"] * 3, "never /stolen"


async def test_a_rotated_webhook_secret_signs_the_next_callback(parts: Parts, corpus: Path) -> None:
    rotated = (await parts.secrets.rotate(parts.distributor)).encode()
    assert rotated != parts.webhook_secret
    jobs = parts.runner()
    job = await jobs.submit(parts.distributor, "job-7", _documents(corpus, "no pdf"), parts.receiver.url())
    await _done(jobs, parts.distributor, job.job_id)
    (callback,) = parts.receiver.received
    verify_webhook(rotated, callback.body, callback.headers[SIGNATURE_HEADER.lower()])
    with pytest.raises(Exception, match="does not match"):
        verify_webhook(parts.webhook_secret, callback.body, callback.headers[SIGNATURE_HEADER.lower()])


async def test_each_stamp_is_counted_by_how_its_saga_ended(parts: Parts, corpus: Path) -> None:
    def counts() -> dict[str, float]:
        return {
            outcome: REGISTRY.get_sample_value(
                "emeterai_stamps_total", {"channel": "distributor", "outcome": outcome}
            )
            or 0.0
            for outcome in STAMP_OUTCOMES
        }

    stamp = functools.partial(
        parts.stamping.stamp,
        account_id=parts.distributor,
        placement=PAGE_ONE,
        metadata=common_pb2.DocumentMetadata(),
        channel=common_pb2.CHANNEL_DISTRIBUTOR,
    )
    document = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    before = counts()
    await stamp(idempotency_key="counted-1", document=document)
    assert (await stamp(idempotency_key="counted-1", document=document)).replayed
    with pytest.raises(IdempotencyKeyReused):
        await stamp(
            idempotency_key="counted-1", document=(corpus / "sf-002-libreoffice-writer.pdf").read_bytes()
        )
    # Held, then refused by the signer: the unit goes back.
    with pytest.raises(InvalidInput):
        await stamp(idempotency_key="counted-2", document=b"%PDF-1.7\nnot really a PDF")
    after = counts()
    assert {o: after[o] - before[o] for o in STAMP_OUTCOMES} == {
        "committed": 1,
        "replayed": 1,
        "released": 1,
        "refused": 1,
        "failed": 0,
    }
    balance = await parts.balance()
    assert (balance.consumed, balance.held, balance.available) == (1, 0, 9)


async def test_replicas_sharing_the_store_leave_a_held_job_to_its_holder_and_take_it_up_when_it_lapses(
    parts: Parts, corpus: Path, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    documents = _documents(corpus, *["sf-001-minimal-document.pdf"] * 3)
    job = await _resumable(parts, documents, "job-leased")
    # The lease a replica killed mid-job leaves behind: held, and no longer renewed.
    await client.set(KEY_PREFIX + job.job_id, b"replica-killed", px=1500)
    try:
        other = parts.runner(leases=RedisJobLeases(client, "replica-b"), sweep_s=0.1)
        assert await other.start() == 0, "a job another replica holds is not taken up"
        await asyncio.sleep(0.5)
        assert LocalJobStore(parts.jobs_dir).find(job.job_id).status == JobStatus.RUNNING  # type: ignore[union-attr]
        assert (await parts.balance()).held == 0, "nor stamped"
        # Once the lease lapses, the sweep takes the job up.
        done = await _done(other, parts.distributor, job.job_id)
        assert [item.result.code for item in done.items if item.result] == ["OK"] * 3
        assert (await parts.balance()).consumed == 3
        await _lease_freed(client, job.job_id)
    finally:
        await client.delete(KEY_PREFIX + job.job_id)
        await client.aclose()


async def test_a_replica_that_loses_a_jobs_lease_stops_it_and_the_new_holder_finishes_it_once(
    parts: Parts, corpus: Path, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    first = parts.runner(
        leases=RedisJobLeases(client, "replica-a"), renew_s=0.1, workers=1, documents_at_once=1
    )
    second = parts.runner(leases=RedisJobLeases(client, "replica-b"), sweep_s=0.1)
    assert await first.start() == 0
    assert await second.start() == 0
    documents = _documents(corpus, *["sf-001-minimal-document.pdf"] * 4)
    with _signer_paused():
        job = await first.submit(parts.distributor, "job-lost", documents, parts.receiver.url())
        assert await client.get(KEY_PREFIX + job.job_id) == b"replica-a"
        await eventually(lambda: _held(parts), timeout_s=60)
        # Another replica holds the lease now (replica-a could not renew it in time, say).
        await client.set(KEY_PREFIX + job.job_id, b"replica-c", px=60_000)
        await asyncio.sleep(0.5)
    # replica-a stopped the job at its next renewal: it stamps no more documents and calls nobody.
    await asyncio.sleep(1.0)
    stopped = LocalJobStore(parts.jobs_dir).find(job.job_id)
    assert stopped is not None and stopped.status == JobStatus.RUNNING
    assert sum(1 for item in stopped.items if item.result) <= 1
    assert not parts.receiver.received
    # The holder goes away for good: its lease lapses, and replica-b's sweep finishes the job.
    await client.delete(KEY_PREFIX + job.job_id)
    done = await _done(second, parts.distributor, job.job_id)
    assert [item.result.code for item in done.items if item.result] == ["OK"] * 4
    balance = await parts.balance()
    assert (balance.consumed, balance.held) == (4, 0), "each document is charged once"
    assert len(parts.receiver.received) == 1
    await client.aclose()


async def test_the_same_request_on_two_replicas_at_once_is_accepted_by_the_holder_of_its_lease(
    parts: Parts, corpus: Path, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    documents = _documents(corpus, "sf-001-minimal-document.pdf")
    here, there = (
        parts.runner(leases=RedisJobLeases(client, "replica-a")),
        parts.runner(leases=RedisJobLeases(client, "replica-b")),
    )
    job_id = job_id_for(parts.distributor, "job-twice")
    # Replica b took the lease for this request a moment ago and is writing the job's record.
    await client.set(KEY_PREFIX + job_id, b"replica-b", px=60_000)
    try:
        with pytest.raises(RequestInFlight):
            await here.submit(parts.distributor, "job-twice", documents, "")
        assert LocalJobStore(parts.jobs_dir).find(job_id) is None, "nothing written under b's lease"
        accepted = await there.submit(parts.distributor, "job-twice", documents, "")
        # Asked again, replica a answers with b's job and runs none of its own.
        assert (await here.submit(parts.distributor, "job-twice", documents, "")).job_id == accepted.job_id
        done = await _done(there, parts.distributor, job_id)
        assert [item.result.code for item in done.items if item.result] == ["OK"]
        balance = await parts.balance()
        assert (balance.consumed, balance.held) == (1, 0)
    finally:
        await client.delete(KEY_PREFIX + job_id)
        await client.aclose()


async def test_a_job_left_on_disk_goes_on_when_its_request_comes_again(parts: Parts, corpus: Path) -> None:
    """Accepted by a gateway that stopped before it began, and asked for again before any sweep:
    the answer is the job, and the job runs."""
    documents = _documents(corpus, "sf-001-minimal-document.pdf", "sf-002-libreoffice-writer.pdf")
    encoded = encode_documents(documents)
    left = StampJob(
        job_id=job_id_for(parts.distributor, "job-left"),
        owner=parts.distributor,
        fingerprint=hashlib.sha256(b"\0" + encoded).hexdigest(),
        callback_url="",
        created_at=datetime.now(UTC),
        items=[JobItem(d.client_ref) for d in documents],
    )
    LocalJobStore(parts.jobs_dir).create(left, encoded)
    jobs = parts.runner()
    answered = await jobs.submit(parts.distributor, "job-left", documents, "")
    assert answered.job_id == left.job_id
    done = await _done(jobs, parts.distributor, left.job_id)
    assert [item.result.code for item in done.items if item.result] == ["OK", "OK"]
    assert (await parts.balance()).consumed == 2


class OwnRedis:
    """A redis-server of the test's own on a unix socket, started and stopped at will. Without
    persistence: started again, it has forgotten every lease."""

    def __init__(self, binary: str, directory: Path) -> None:
        self._binary = binary
        self._directory = directory
        self._socket = directory / "redis.sock"
        self.url = f"unix://{self._socket}"
        self._server: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # No TCP port, and nothing kept on disk.
        options = ["--port", "0", "--unixsocket", str(self._socket), "--save", "", "--appendonly", "no"]
        self._server = subprocess.Popen(
            [self._binary, *options],
            cwd=self._directory,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(unix_socket_path=str(self._socket), socket_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    assert self._server.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate()
            self._server.wait(10)
            self._server = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(require_redis_server("stamp job tests with a Redis that comes and goes"), tmp_path)
    yield server
    server.stop()


async def _lease_freed(client: redis.asyncio.Redis, job_id: str) -> None:
    # The in-memory job says done a moment before its runner frees the lease.
    await eventually(lambda: _is_missing(client, KEY_PREFIX + job_id), timeout_s=10)


async def _is_missing(client: redis.asyncio.Redis, key: str) -> bool:
    return await client.get(key) is None


async def test_a_job_accepted_while_redis_is_away_waits_for_its_lease_then_runs_once(
    parts: Parts, corpus: Path, own_redis: OwnRedis
) -> None:
    client = async_redis_client(own_redis.url)
    jobs = parts.runner(leases=RedisJobLeases(client, "replica-a", retry_s=0.05), renew_s=0.1)
    documents = _documents(corpus, "sf-001-minimal-document.pdf", "sf-002-libreoffice-writer.pdf")
    try:
        job = await jobs.submit(parts.distributor, "job-redis-away", documents, parts.receiver.url())
        await asyncio.sleep(1.0)
        kept = LocalJobStore(parts.jobs_dir).find(job.job_id)
        assert kept is not None and kept.status == JobStatus.QUEUED, "accepted, and kept on disk"
        balance = await parts.balance()
        assert (balance.held, balance.consumed) == (0, 0), "nothing stamped without a sure lease"
        assert not parts.receiver.received
        own_redis.start()
        await _finished_once(jobs, parts, job, client)
    finally:
        await client.aclose()


async def test_results_made_while_redis_is_away_are_recorded_once_it_is_back(
    parts: Parts, corpus: Path, own_redis: OwnRedis
) -> None:
    own_redis.start()
    client = async_redis_client(own_redis.url)
    # A short lease, so its sure part is over within the test.
    leases = RedisJobLeases(client, "replica-a", lease_s=1.5, retry_s=0.05)
    jobs = parts.runner(leases=leases, renew_s=0.1, workers=1, documents_at_once=1)
    documents = _documents(corpus, *["sf-001-minimal-document.pdf"] * 3)
    with _signer_paused():
        job = await jobs.submit(parts.distributor, "job-redis-gone", documents, parts.receiver.url())
        await eventually(lambda: _held(parts), timeout_s=60)
        # Redis goes while the first document is at the signer, and stays away past the lease.
        own_redis.stop()
        await asyncio.sleep(1.6)
    await eventually(lambda: _consumed(parts, 1), timeout_s=60)
    await asyncio.sleep(0.5)
    kept = LocalJobStore(parts.jobs_dir).find(job.job_id)
    assert kept is not None and not any(item.result for item in kept.items), "no write without a sure lease"
    balance = await parts.balance()
    assert (balance.consumed, balance.held) == (1, 0), "and no further document started"
    try:
        # Back, without the lease it had: the record is still the one this replica wrote last.
        own_redis.start()
        await _finished_once(jobs, parts, job, client)
    finally:
        await client.aclose()


async def test_a_replica_whose_lease_lapsed_while_another_ran_the_job_leaves_the_record_alone(
    parts: Parts, corpus: Path, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    held_back = asyncio.Event()

    async def stalled(owner: str) -> float:
        # This replica stalls before its first stamp (a paused pod), never renewing its lease.
        await held_back.wait()
        return 0.0

    late = parts.runner(leases=RedisJobLeases(client, "replica-a", lease_s=1.0), renew_s=60, pace=stalled)
    other = parts.runner(leases=RedisJobLeases(client, "replica-b"), sweep_s=0.1)
    documents = _documents(corpus, "sf-001-minimal-document.pdf")
    try:
        job = await late.submit(parts.distributor, "job-lapsed", documents, parts.receiver.url())
        await other.start()
        # The lease lapses; the other replica takes the job up and finishes it.
        finished = await _done(other, parts.distributor, job.job_id)
        assert finished.callback.state == CallbackState.DELIVERED
        await _lease_freed(client, job.job_id)
        held_back.set()
        await asyncio.sleep(1.0)
        await late.shutdown(grace_s=5)
        kept = LocalJobStore(parts.jobs_dir).find(job.job_id)
        assert kept is not None
        assert (kept.status, kept.callback.state) == (JobStatus.DONE, CallbackState.DELIVERED)
        assert kept.revision == finished.revision, "the late replica wrote nothing over it"
        assert not (parts.jobs_dir / f"{job.job_id}.open").exists()
        assert len(parts.receiver.received) == 1, "nor called back again"
        assert (await parts.balance()).consumed == 1
    finally:
        await client.delete(KEY_PREFIX + job_id_for(parts.distributor, "job-lapsed"))
        await client.aclose()


async def _finished_once(jobs: StampJobs, parts: Parts, job: StampJob, client: redis.asyncio.Redis) -> None:
    """The job is done: every document stamped and charged once, one callback, the lease free."""
    done = await _done(jobs, parts.distributor, job.job_id)
    assert [item.result.code for item in done.items if item.result] == ["OK"] * len(job.items)
    balance = await parts.balance()
    assert (balance.consumed, balance.held) == (len(job.items), 0)
    assert len(parts.receiver.received) == 1
    await _lease_freed(client, job.job_id)


@contextlib.contextmanager
def _signer_paused() -> Iterator[None]:
    """The signer's stamping workers held still (SIGSTOP) for the block: a document sent meanwhile
    waits at the signer, its hold reserved, however fast documents stamp."""
    workers = [p for p in multiprocessing.active_children() if p.name == "stamping-worker"]
    for worker in workers:
        os.kill(worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            os.kill(worker.pid, signal.SIGCONT)


async def _held(parts: Parts) -> bool:
    """Whether a document has reached the signer: its unit is held."""
    return (await parts.balance()).held > 0


async def _consumed(parts: Parts, units: int) -> bool:
    return (await parts.balance()).consumed >= units
