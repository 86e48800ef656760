"""Asynchronous stamp jobs: a distributor hands over many documents at once, gets a job id back at
once, and is called back when every document has its result.

A job is kept in a JobStore (job_store.py) from the moment it is accepted: its documents until
each has a result, its record (status, results, the callback's delivery) until the document
retention ends. A job runs on one replica at a time, the holder of its lease (job_leases.py):
unfinished jobs whose lease is free are picked up when a gateway starts and by a sweep every
SWEEP_S, so a job left by a gateway that stopped, cleanly or not, goes on where it was, on that
gateway or another. The callback is one signed POST per job, when it is done (callbacks.py).

Charging once. Document i of a job is stamped under the idempotency key
"job:<job id>:<i>:<attempt>", so a resumed job replays the stamps it had made. The attempt moves
on only when the ledger says the key cannot have charged: the key was sent before and is now
answered with PreconditionFailed, meaning its hold was released (the signer failed, the gateway
stopped mid-way) or never made. A key whose hold may still commit is only ever retried as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import redis

from emeterai.v1 import common_pb2, distributor_service_pb2
from services.common.errors import (
    BASE_STATUS_CODES,
    DomainError,
    Exhausted,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    RequestInFlight,
    Unavailable,
    retry_after_of,
    status_code_for,
)
from services.gateway.callbacks import Attempt, CallbackClient, WebhookSecrets, check_callback_url
from services.gateway.documents import utc_now
from services.gateway.job_leases import RENEW_S, SWEEP_S, Held, JobLeases, LocalJobLeases
from services.gateway.records import enum_word, stamp_record
from services.gateway.stamping import StampingFlow, check_document

if TYPE_CHECKING:
    from services.gateway.job_store import JobStore

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 128


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class CallbackState(StrEnum):
    NONE = "none"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class JobDocument:
    """One document of a job, as submitted."""

    client_ref: str
    document: bytes
    placement: common_pb2.StampPlacement = field(default_factory=common_pb2.StampPlacement)
    metadata: common_pb2.DocumentMetadata = field(default_factory=common_pb2.DocumentMetadata)
    # One of the owner's customers, already checked to be one; empty for the owner itself.
    account_id: str = ""
    document_password: str = ""


@dataclass(frozen=True)
class ItemResult:
    # "OK", or the gRPC status name of the error, as BatchStamp reports each document.
    code: str
    message: str = ""
    stamp: distributor_service_pb2.StampRecord | None = None

    @property
    def stamped(self) -> bool:
        return self.code == "OK"


@dataclass
class JobItem:
    """One document's progress."""

    client_ref: str
    # The last part of the document's idempotency key.
    attempt: int = 0
    # Whether the current key may have reached the ledger.
    sent: bool = False
    result: ItemResult | None = None


@dataclass
class Delivery:
    state: CallbackState
    attempts: int = 0
    last_http_status: int = 0
    last_error: str = ""
    delivered_at: datetime | None = None


@dataclass
class StampJob:
    job_id: str
    owner: str
    fingerprint: str
    callback_url: str
    created_at: datetime
    items: list[JobItem]
    status: JobStatus = JobStatus.QUEUED
    finished_at: datetime | None = None
    callback: Delivery = field(default_factory=lambda: Delivery(CallbackState.NONE))
    # How many times the record was written by a runner: a replica whose lease lapsed tells by it
    # whether another replica ran the job meanwhile.
    revision: int = 0

    @property
    def unfinished(self) -> bool:
        return self.status != JobStatus.DONE or self.callback.state == CallbackState.PENDING


def job_id_for(owner: str, idempotency_key: str) -> str:
    """The job an owner's idempotency key names; the same key always names the same job."""
    return "job_" + hashlib.sha256(f"{owner}\0{idempotency_key}".encode()).hexdigest()[:32]


def item_key(job_id: str, index: int, attempt: int) -> str:
    return f"job:{job_id}:{index}:{attempt}"


def encode_documents(documents: Sequence[JobDocument]) -> bytes:
    """The documents as the contract's own message; deterministic, so it fingerprints a request."""
    request = distributor_service_pb2.SubmitStampJobRequest(
        documents=[
            distributor_service_pb2.BatchStampRequest(
                client_ref=d.client_ref,
                document=distributor_service_pb2.StampDocumentRequest(
                    document=d.document,
                    placement=d.placement,
                    metadata=d.metadata,
                    account_id=d.account_id,
                    document_password=d.document_password,
                ),
            )
            for d in documents
        ]
    )
    return request.SerializeToString(deterministic=True)


def decode_documents(data: bytes) -> list[JobDocument]:
    request = distributor_service_pb2.SubmitStampJobRequest.FromString(data)
    return [
        JobDocument(
            client_ref=item.client_ref,
            document=item.document.document,
            placement=item.document.placement,
            metadata=item.document.metadata,
            account_id=item.document.account_id,
            document_password=item.document.document_password,
        )
        for item in request.documents
    ]


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def callback_body(job: StampJob) -> bytes:
    """What a finished job's callback POSTs (docs/distributor-api.md); the same on every attempt."""
    results = []
    for index, item in enumerate(job.items):
        r = item.result
        stamp = None
        if r is not None and r.stamp is not None:
            stamp = {
                "stamp_id": r.stamp.stamp_id,
                "account_id": r.stamp.account_id,
                "serial": r.stamp.serial,
                "status": enum_word(distributor_service_pb2.StampStatus, r.stamp.status),
                "document_sha256": r.stamp.document_sha256.hex(),
                "stamped_sha256": r.stamp.stamped_sha256.hex(),
            }
        results.append(
            {
                "index": index,
                "client_ref": item.client_ref,
                "code": r.code if r else "UNKNOWN",
                "message": r.message if r else "",
                "stamp": stamp,
            }
        )
    stamped = sum(1 for item in job.items if item.result is not None and item.result.stamped)
    return json.dumps(
        {
            "type": "stamp_job.done",
            "job_id": job.job_id,
            "status": job.status.value,
            "created_at": _time(job.created_at),
            "finished_at": _time(job.finished_at),
            "documents": len(job.items),
            "stamped": stamped,
            "failed": len(job.items) - stamped,
            "results": results,
        }
    ).encode()


@dataclass(frozen=True)
class JobLimits:
    max_documents: int
    max_bytes: int
    # Each document's own limit, as for StampDocument.
    max_document_bytes: int
    # Jobs accepted and not finished, across all distributors, before new ones wait.
    max_unfinished: int = 1000


@dataclass(frozen=True)
class Backoff:
    attempts: int
    first_s: float
    max_s: float

    def delay(self, retry: int) -> float:
        """Seconds before retry number `retry` (0 for the first retry)."""
        return min(self.first_s * 2**retry, self.max_s)


# A document's stamping is retried through outages and admission refusals long enough to
# outlast a hold left reserved by a gateway that stopped mid-call, which the ledger releases once
# its TTL (10 minutes by default) is past: 1, 2, 4 ... 64 s, then 120 s, about 16 minutes in all.
DOCUMENT_RETRIES = Backoff(attempts=14, first_s=1.0, max_s=120.0)
# A callback: 10 attempts over about 17 minutes; then the results wait for GetStampJob.
CALLBACK_RETRIES = Backoff(attempts=10, first_s=2.0, max_s=600.0)


class _Stopping(Exception):
    """The runner is shutting down; leave the work for the next start."""


class _LeaseLost(_Stopping):
    """Another replica holds the job's lease now; leave the job to it."""


def _same_job(job: StampJob, owner: str, fingerprint: str) -> StampJob:
    """The job, if it is the one this owner's request made; the same key for another is refused."""
    if job.owner != owner or job.fingerprint != fingerprint:
        raise IdempotencyKeyReused("this idempotency key was used for a different job")
    return job


def _failure(error: DomainError) -> ItemResult:
    return ItemResult(status_code_for(error, BASE_STATUS_CODES).name, error.message)


class StampJobs:
    """Accepts jobs and runs them as background tasks of the event loop: at most `workers` jobs
    at once, each stamping up to `documents_at_once` documents at a time.

    `pace(owner)` is the distributor's stamp bucket: 0 when it gave a token for the next document,
    else the seconds until it has one. Each document waits for its token, so a job of any size
    stamps at the account's rate, as its StampDocument calls would, without failing for it."""

    def __init__(
        self,
        store: JobStore,
        stamper: StampingFlow,
        secrets: WebhookSecrets,
        callbacks: CallbackClient,
        limits: JobLimits,
        *,
        dev: bool,
        workers: int = 2,
        documents_at_once: int = 4,
        document_retries: Backoff = DOCUMENT_RETRIES,
        callback_retries: Backoff = CALLBACK_RETRIES,
        clock: Callable[[], datetime] = utc_now,
        pace: Callable[[str], Awaitable[float]] | None = None,
        leases: JobLeases | None = None,
        renew_s: float = RENEW_S,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self._store = store
        self._leases = leases or LocalJobLeases()
        self._renew_s = renew_s
        self._sweep_s = sweep_s
        # Jobs whose run failed here: left for the next start, not retried by every sweep.
        self._failed: set[str] = set()
        # Until when (time.monotonic()) each running job's lease is surely this replica's.
        self._sure_until: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._pace = pace
        self._stamper = stamper
        self._secrets = secrets
        self._callbacks = callbacks
        self._limits = limits
        self._dev = dev
        self._job_slots = asyncio.Semaphore(workers)
        self._documents_at_once = documents_at_once
        self._document_retries = document_retries
        self._callback_retries = callback_retries
        self._clock = clock
        self._submitting = asyncio.Lock()
        self._saving: dict[str, asyncio.Lock] = {}
        # Jobs with a task, by id: what GetStampJob reads while they move.
        self._live: dict[str, StampJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Each running job's latest write: one at a time, under the job's write lock; the job's end
        # waits for it, so no write outlives its run.
        self._writing: dict[str, asyncio.Future[None]] = {}
        self._stopping = asyncio.Event()

    async def start(self) -> int:
        """Pick up the unfinished jobs no other replica holds, and from now on sweep the store for
        more every sweep_s; return how many were picked up now."""
        taken = await self._take_up()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="stamp-job-sweep")
        return taken

    async def _sweep(self) -> None:
        with contextlib.suppress(_Stopping):
            while True:
                await self._pause(self._sweep_s)
                try:
                    await self._take_up()
                except Exception:
                    log.exception("stamp job sweep failed")

    async def _take_up(self) -> int:
        """Run every unfinished job in the store that is not running here and whose lease this
        replica gets; return how many."""
        taken = 0
        for listed in await asyncio.to_thread(self._store.unfinished):
            if self._stopping.is_set():
                break
            # Under the submissions' lock: a job being accepted here is not also taken up.
            async with self._submitting:
                if listed.job_id in self._live or listed.job_id in self._failed:
                    continue
                ours = await self._take_lease(listed.job_id)
                if ours is None:
                    log.warning("stamp job leases cannot be reached; no job is taken up until they can")
                    break
                if not ours:
                    continue
                resumed = False
                try:
                    # Read again under the lease: its last holder may have moved it on since the listing.
                    job = await asyncio.to_thread(self._store.find, listed.job_id)
                    if job is not None and job.unfinished:
                        await self._resume(job)
                        resumed = True
                        taken += 1
                finally:
                    if not resumed:
                        await self._let_go(listed.job_id)
        if taken:
            log.info("unfinished stamp jobs resumed", extra={"jobs": taken})
        return taken

    async def submit(
        self, owner: str, idempotency_key: str, documents: Sequence[JobDocument], callback_url: str
    ) -> StampJob:
        """Accept a job, or return the one this key made before for the same request."""
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise InvalidInput(f"an idempotency key of 1 to {MAX_KEY_LENGTH} characters is required")
        if not documents:
            raise InvalidInput("a job needs at least one document")
        if len(documents) > self._limits.max_documents:
            raise InvalidInput(f"a job may hold at most {self._limits.max_documents} documents")
        if sum(len(d.document) for d in documents) > self._limits.max_bytes:
            raise InvalidInput(f"a job's documents may total at most {self._limits.max_bytes} bytes")
        if callback_url:
            check_callback_url(callback_url, dev=self._dev)
            await self._require_secret(owner)
        encoded = encode_documents(documents)
        fingerprint = hashlib.sha256(callback_url.encode() + b"\0" + encoded).hexdigest()
        job_id = job_id_for(owner, idempotency_key)
        async with self._submitting:
            live = self._live.get(job_id)
            if live is not None:
                return _same_job(live, owner, fingerprint)
            # The lease first: the same request reaching two replicas at once is accepted by one.
            ours = await self._take_lease(job_id)
            running = False
            try:
                existing = await asyncio.to_thread(self._store.find, job_id)
                if existing is not None:
                    _same_job(existing, owner, fingerprint)
                    resumable = existing.unfinished and job_id not in self._failed
                    if ours and resumable and not self._stopping.is_set():
                        # Left by a replica that stopped, before any sweep took it up: it goes on here.
                        await self._resume(existing)
                        running = True
                    return existing
                if ours is False:
                    raise RequestInFlight("this job is being accepted; ask again in a moment")
                if self._stopping.is_set():
                    raise Unavailable("the service is restarting; try again shortly")
                if len(self._live) >= self._limits.max_unfinished:
                    raise Exhausted("too many stamp jobs are waiting; try again in a minute", 60)
                job = StampJob(
                    job_id=job_id,
                    owner=owner,
                    fingerprint=fingerprint,
                    callback_url=callback_url,
                    created_at=self._clock(),
                    items=[JobItem(d.client_ref) for d in documents],
                    callback=Delivery(CallbackState.PENDING if callback_url else CallbackState.NONE),
                )
                await asyncio.to_thread(self._store.create, job, encoded)
                if ours is None:
                    # Accepted is accepted: it is kept, and starts once its lease can be taken.
                    log.warning("stamp job accepted before its lease", extra={"job_id": job_id})
                self._schedule(job)
                running = True
            finally:
                # Whatever went wrong on the way (a full disk, a cancelled call), a lease taken
                # for a job that does not run here is freed at once, not after it lapses.
                if ours and not running:
                    await self._let_go(job_id)
        log.info("stamp job accepted", extra={"job_id": job_id, "documents": len(documents)})
        return job

    async def get(self, owner: str, job_id: str) -> StampJob:
        """The owner's job; another distributor's is NotFound, like one that does not exist."""
        job = self._live.get(job_id) or await asyncio.to_thread(self._store.find, job_id)
        if job is None or job.owner != owner:
            raise NotFound("no such job")
        return job

    async def shutdown(self, grace_s: float) -> None:
        """Start no more work, give documents being stamped grace_s to finish, then cancel what is
        left; the next start picks it up. Safe to call twice."""
        self._stopping.set()
        if self._sweeper is not None:
            await self._sweeper
        tasks = list(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace_s)
        for task in late:
            task.cancel()
        # Each run waits for its last write as it ends.
        await asyncio.gather(*late, return_exceptions=True)
        log.info("stamp jobs stopped", extra={"cancelled": len(late)})

    async def _require_secret(self, owner: str) -> None:
        try:
            await self._secrets.secret_for(owner)
        except NotFound:
            raise PreconditionFailed(
                "there is no webhook secret to sign callbacks with; call RotateWebhookSecret first"
            ) from None

    async def _resume(self, job: StampJob) -> None:
        """Run an unfinished job from the store, its lease now ours."""
        if job.status == JobStatus.DONE:
            # Stopped between finishing and forgetting the documents.
            await asyncio.to_thread(self._store.drop_documents, job.job_id)
        self._schedule(job)

    def _schedule(self, job: StampJob) -> None:
        self._live[job.job_id] = job
        task = asyncio.create_task(self._run(job), name=f"stamp-job-{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: StampJob) -> None:
        running = asyncio.current_task()
        assert running is not None
        renewing = asyncio.create_task(self._keep_lease(job, running))
        try:
            if job.status != JobStatus.DONE:
                await self._stamp_all(job)
            if job.callback.state == CallbackState.PENDING and job.status == JobStatus.DONE:
                await self._deliver(job)
        except _Stopping:
            pass
        except Exception:
            # Left as it is on disk: the next start tries again.
            self._failed.add(job.job_id)
            log.exception("stamp job failed", extra={"job_id": job.job_id})
        finally:
            renewing.cancel()
            # A write still landing (the job was cancelled during it) lands before the lease goes,
            # never over what another replica writes next.
            writing = self._writing.pop(job.job_id, None)
            if writing is not None:
                await asyncio.gather(writing, return_exceptions=True)
            # Free at once for another replica (or this one's next start), not after the lease;
            # before the job leaves _live, so no new run of it here holds a lease this one frees.
            await self._let_go(job.job_id)
            self._live.pop(job.job_id, None)
            self._saving.pop(job.job_id, None)

    async def _ask_lease(self, job_id: str) -> tuple[Held | None, float]:
        """Take or renew the job's lease: what the leases said (None when they cannot be reached)
        and until when the lease is surely ours, should it be."""
        sent_at = time.monotonic()
        try:
            held = await self._leases.hold(job_id)
        except redis.RedisError:
            return None, 0.0
        except Exception:
            log.exception("stamp job lease not asked for", extra={"job_id": job_id})
            return None, 0.0
        if held is Held.NO:
            self._sure_until.pop(job_id, None)
        return held, sent_at + self._leases.sure_s

    async def _take_lease(self, job_id: str) -> bool | None:
        """Take the lease of a job about to be accepted or taken up here: True when this replica
        holds it now, False when another does, None when the leases cannot be reached."""
        held, sure_until = await self._ask_lease(job_id)
        if held is None:
            return None
        if held is Held.NO:
            return False
        self._sure_until[job_id] = sure_until
        return True

    async def _renew_lease(self, job: StampJob) -> bool | None:
        """Renew the lease of a job running here: True when it is still this replica's, False when
        the job is another's now, None when the leases cannot be reached. The caller holds the
        job's write lock, so no write of this replica's is in flight."""
        held, sure_until = await self._ask_lease(job.job_id)
        if held is None:
            return None
        if held is Held.NO:
            return False
        if held is Held.TAKEN:
            # The lease had lapsed. Unless the record is still the one written here last, another
            # replica ran the job meanwhile, and this one's copy is out of date.
            on_disk = await asyncio.to_thread(self._store.find, job.job_id)
            if on_disk is None or on_disk.revision != job.revision:
                self._sure_until.pop(job.job_id, None)
                return False
        self._sure_until[job.job_id] = sure_until
        return True

    async def _keep_lease(self, job: StampJob, running: asyncio.Task[None]) -> None:
        """Renew the job's lease while it runs; should the job be another replica's now (this one
        could not renew it in time), stop it here."""
        while True:
            await asyncio.sleep(self._renew_s)
            try:
                async with self._write_lock(job.job_id):
                    ours = await self._renew_lease(job)
            except Exception:
                # Renewal goes on whatever a call did; writes wait for a sure lease meanwhile.
                log.exception("stamp job lease renewal failed", extra={"job_id": job.job_id})
                continue
            if ours is None:
                log.warning("stamp job lease not renewed; its writes wait", extra={"job_id": job.job_id})
            elif not ours:
                log.warning("stamp job taken by another replica; stopped here", extra={"job_id": job.job_id})
                running.cancel()
                return

    async def _confirm_lease(self, job: StampJob) -> None:
        """Return once the job's lease is surely this replica's, waiting while the leases cannot be
        reached; raise _LeaseLost when the job is another's now. Under the job's write lock."""
        while time.monotonic() >= self._sure_until.get(job.job_id, 0.0):
            ours = await self._renew_lease(job)
            if ours is False:
                log.warning("stamp job taken by another replica; stopped here", extra={"job_id": job.job_id})
                raise _LeaseLost
            if ours is None:
                await self._pause(self._renew_s)

    async def _let_go(self, job_id: str) -> None:
        self._sure_until.pop(job_id, None)
        try:
            await self._leases.release(job_id)
        except Exception:
            # It lapses by itself.
            log.warning("stamp job lease not released", extra={"job_id": job_id})

    def _write_lock(self, job_id: str) -> asyncio.Lock:
        return self._saving.setdefault(job_id, asyncio.Lock())

    async def _stamp_all(self, job: StampJob) -> None:
        async with self._job_slots:
            if self._stopping.is_set():
                raise _Stopping
            documents = await asyncio.to_thread(self._store.documents, job.job_id)
            job.status = JobStatus.RUNNING
            await self._save(job)
            slots = asyncio.Semaphore(self._documents_at_once)

            async def one(index: int) -> None:
                async with slots:
                    if self._stopping.is_set():
                        return
                    try:
                        job.items[index].result = await self._stamp_document(job, index, documents[index])
                        await self._save(job)
                    except _LeaseLost:
                        raise
                    except _Stopping:
                        pass

            # A task group: should one document's task fail, or find the job another replica's,
            # the others stop with it.
            try:
                async with asyncio.TaskGroup() as group:
                    for index, item in enumerate(job.items):
                        if item.result is None:
                            group.create_task(one(index))
            except BaseExceptionGroup as failed:
                if failed.subgroup(_LeaseLost) is not None:
                    raise _LeaseLost from None
                raise
            if any(item.result is None for item in job.items):
                raise _Stopping
            job.status = JobStatus.DONE
            job.finished_at = self._clock()
            await self._save(job)
            await asyncio.to_thread(self._store.drop_documents, job.job_id)
            log.info("stamp job done", extra={"job_id": job.job_id})

    async def _stamp_document(self, job: StampJob, index: int, document: JobDocument) -> ItemResult:
        try:
            check_document(document.document, self._limits.max_document_bytes)
        except InvalidInput as exc:
            return _failure(exc)
        if self._pace is not None:
            while (wait := await self._pace(job.owner)) > 0:
                await self._pause(wait)
        item = job.items[index]
        last: DomainError = Unavailable("stamping did not succeed in time; submit it again")
        for retry in range(self._document_retries.attempts):
            sent_before = item.sent
            if not sent_before:
                item.sent = True
                await self._save(job)
            try:
                outcome = await self._stamper.stamp(
                    account_id=document.account_id or job.owner,
                    idempotency_key=item_key(job.job_id, index, item.attempt),
                    document=document.document,
                    placement=document.placement,
                    metadata=document.metadata,
                    channel=common_pb2.CHANNEL_DISTRIBUTOR,
                    document_password=document.document_password,
                )
            except (Unavailable, Exhausted, RequestInFlight) as exc:
                last = exc
                wait = max(self._document_retries.delay(retry), float(retry_after_of(exc)))
                log.info(
                    "stamp job document retried",
                    extra={"job_id": job.job_id, "index": index, "reason": type(exc).__name__},
                )
                await self._pause(wait)
                continue
            except PreconditionFailed as exc:
                if not sent_before:
                    return _failure(exc)
                # This key's earlier attempt gave its unit back or never reached the ledger: a
                # new key cannot charge twice.
                last = exc
                item.attempt += 1
                item.sent = False
                continue
            except DomainError as exc:
                return _failure(exc)
            except Exception:
                log.exception("stamp job document failed", extra={"job_id": job.job_id, "index": index})
                return ItemResult("INTERNAL", "internal error")
            return ItemResult("OK", stamp=stamp_record(outcome.hold))
        return _failure(last)

    async def _deliver(self, job: StampJob) -> None:
        delivery = job.callback
        while delivery.state == CallbackState.PENDING:
            if delivery.attempts:
                await self._pause(self._callback_retries.delay(delivery.attempts - 1))
            # Posted only while the lease is surely ours.
            async with self._write_lock(job.job_id):
                await self._confirm_lease(job)
            attempt = await self._attempt(job)
            delivery.attempts += 1
            delivery.last_http_status = attempt.http_status
            delivery.last_error = attempt.error
            if attempt.delivered:
                delivery.state = CallbackState.DELIVERED
                delivery.delivered_at = self._clock()
            elif delivery.attempts >= self._callback_retries.attempts:
                delivery.state = CallbackState.FAILED
            await self._save(job)
            log.info(
                "stamp job callback attempted",
                extra={"job_id": job.job_id, "state": delivery.state.value, "status": attempt.http_status},
            )

    async def _attempt(self, job: StampJob) -> Attempt:
        try:
            secret = await self._secrets.secret_for(job.owner)
        except DomainError as exc:
            return Attempt(False, 0, f"no webhook secret: {exc.message}")
        except Exception:
            log.exception("webhook secret not read", extra={"job_id": job.job_id})
            return Attempt(False, 0, "the webhook secret could not be read")
        return await self._callbacks.post(job.callback_url, callback_body(job), secret, job.job_id)

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the runner stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise _Stopping

    async def _save(self, job: StampJob) -> None:
        # One write at a time per job, each of a copy taken now: an older snapshot never lands last.
        async with self._write_lock(job.job_id):
            # Written only while the lease is surely ours: a replica that lost it never overwrites
            # the record another replica keeps.
            await self._confirm_lease(job)
            snapshot = copy.deepcopy(job)
            snapshot.revision += 1
            write = asyncio.ensure_future(asyncio.to_thread(self._store.save, snapshot))
            self._writing[job.job_id] = write
            # A cancelled task's write still finishes; the job's end waits for it.
            await asyncio.shield(write)
            # Counted once on disk, so a record that failed to be written is not taken for ours.
            job.revision = snapshot.revision
