"""The stamping saga: reserve a unit and serial, sign, store, commit; release on any failure.

A crash between the steps leaves a reserved hold, which the ledger releases when it expires, so
quota is never lost. A retry with the same idempotency key finds the same hold: a committed one
is answered from the document store; a reserved one is answered 409 while its first attempt may
still be working, and signed again under the same serial once that attempt has surely given up
(its deadlines are past), so a user whose request died mid-way gets the stamp on a retry instead of
waiting for the hold to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from emeterai.v1 import common_pb2, ledger_pb2, quota_service_pb2, signer_service_pb2
from services.common.errors import DomainError, InvalidInput, PreconditionFailed, RequestInFlight, Unavailable
from services.gateway.admission import DISTRIBUTOR, RETAIL, StampGate, StampSlot
from services.gateway.documents import DocumentStore
from services.gateway.metrics import COMMITTED, FAILED, REFUSED, RELEASED, REPLAYED, count_stamp
from services.gateway.upstream import Backends, idempotent, upstream

log = logging.getLogger(__name__)

# Releases must happen even when the client went away; give them their own short deadline.
RELEASE_TIMEOUT_S = 10.0
# Reserve and Commit: the ledger answers in milliseconds, or is not answering.
LEDGER_TIMEOUT_S = 10.0
# Of a caller's own deadline, what the signing leaves for the commit. The commit itself keeps its
# full LEDGER_TIMEOUT_S: a document signed is committed even when its caller is out of time, so the
# caller's retry replays it.
COMMIT_ALLOWANCE_S = 1.0
# Past its signing and commit deadlines, how much longer a first attempt is given before a retry
# signs again: the document store's write, and clocks (the ledger's, which dates the hold, and
# this gateway's) that disagree by a few seconds.
ABANDON_MARGIN_S = 15.0


@dataclass(frozen=True)
class StampOutcome:
    hold: ledger_pb2.Hold
    stamped_document: bytes
    # True when the idempotency key had already produced this stamp.
    replayed: bool


def check_document(document: bytes, max_bytes: int) -> None:
    """Cheap checks before any quota is touched."""
    if not document:
        raise InvalidInput("the file is empty")
    if len(document) > max_bytes:
        raise InvalidInput(f"the file is larger than {max_bytes} bytes")
    if b"%PDF-" not in document[:1024]:
        raise InvalidInput("the file is not a PDF")


def request_fingerprint(placement: common_pb2.StampPlacement, metadata: common_pb2.DocumentMetadata) -> bytes:
    """SHA-256 of what a stamp depends on besides the document: where it goes and what the document
    is declared to be. The ledger keeps it with the hold; a retry with the same idempotency key
    must send the same (the IETF draft's 422 for a key reused with another payload)."""
    digest = hashlib.sha256()
    for part in (placement, metadata):
        # Length-prefixed, so no two different pairs encode alike.
        encoded = part.SerializeToString(deterministic=True)
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    return digest.digest()


# Each channel's part of the stamp gate.
GATE_PARTITIONS = {
    common_pb2.CHANNEL_RETAIL: RETAIL,
    common_pb2.CHANNEL_DISTRIBUTOR: DISTRIBUTOR,
}


class StampingFlow:
    """The saga, run under the stamp gate: a stamp is admitted (or refused with Overloaded) before
    its hold exists, and keeps its slot until the hold is committed or released, so Commit and
    Release are never shed."""

    def __init__(
        self,
        backends: Backends,
        store: DocumentStore,
        sign_timeout_s: float,
        gate: StampGate | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._quota = backends.quota
        self._signer = backends.signer
        self._store = store
        self._sign_timeout = sign_timeout_s
        self._gate = gate
        self._clock = clock
        # How old a reserved hold is when the attempt that reserved it has surely stopped: every
        # gateway replica runs the same deadlines, so none of them can still sign or commit it.
        self._abandoned_after = timedelta(seconds=sign_timeout_s + LEDGER_TIMEOUT_S + ABANDON_MARGIN_S)
        # Keeping and committing what was signed, for callers that may have gone.
        self._finishing: set[asyncio.Future[StampOutcome]] = set()

    async def stamp(
        self,
        *,
        account_id: str,
        idempotency_key: str,
        document: bytes,
        placement: common_pb2.StampPlacement,
        metadata: common_pb2.DocumentMetadata,
        channel: common_pb2.Channel.ValueType,
        document_password: str = "",
        slot: StampSlot | None = None,
        time_left_s: float | None = None,
    ) -> StampOutcome:
        """Stamp under `slot` when the caller was admitted already (the waiting room), else
        under a slot of the channel's partition taken here.

        time_left_s is the caller's own deadline (a distributor's gRPC deadline), when it has one:
        the Reserve and the signing get no more than what is left of it, so the signer replicas
        see the caller's deadline and drop work nobody waits for."""
        if not idempotency_key:
            raise InvalidInput("an idempotency key is required")
        deadline = None if time_left_s is None else time.monotonic() + time_left_s
        partition = GATE_PARTITIONS.get(channel, DISTRIBUTOR)
        async with self._admitted(partition, slot) as admitted:
            try:
                reserved = await idempotent(
                    self._quota.Reserve(
                        quota_service_pb2.ReserveRequest(
                            account_id=account_id,
                            idempotency_key=idempotency_key,
                            document_sha256=hashlib.sha256(document).digest(),
                            metadata=metadata,
                            channel=channel,
                            request_sha256=request_fingerprint(placement, metadata),
                        ),
                        timeout=_within(deadline, LEDGER_TIMEOUT_S),
                    )
                )
            except BaseException as exc:
                # No quota, a key reused for another document...: the ledger said no; or it could
                # not be asked.
                said_no = isinstance(exc, DomainError) and not isinstance(exc, Unavailable)
                count_stamp(partition, REFUSED if said_no else FAILED)
                raise
            hold = reserved.hold
            signing_again = reserved.replayed and hold.status == ledger_pb2.HOLD_STATUS_RESERVED
            if signing_again:
                if not self._abandoned(hold):
                    # The first request with this key may still be signing: signing again now would
                    # race it for the same serial.
                    count_stamp(partition, REFUSED)
                    raise RequestInFlight(
                        "a request with this idempotency key is still being processed; retry in a moment"
                    )
                # Its first attempt died (a gateway crash, a commit the ledger never answered):
                # this one signs under the same serial; the ledger commits the hold once, whichever
                # attempt gets there.
                log.info("signing again a hold its first attempt left", extra={"hold_id": hold.hold_id})
            if hold.status != ledger_pb2.HOLD_STATUS_RESERVED:
                return await self._settled(partition, hold)
            if admitted is not None:
                # What the adaptive limit learns from: signing, keeping and committing, the work
                # the gate meters; not an upload, a refusal or a replay.
                admitted.start_timing()
            return await self._sign_and_commit(
                partition, hold, document, placement, metadata, document_password, deadline, signing_again
            )

    def _abandoned(self, hold: ledger_pb2.Hold) -> bool:
        """True when the attempt that reserved `hold` has stopped, and the hold has time left for
        another to sign and commit it (past its deadline the ledger refuses the commit, and the
        sweep releases it: a retry then learns to send a new key)."""
        now = self._clock()
        created = hold.created_at.ToDatetime(tzinfo=UTC)
        expires = hold.expires_at.ToDatetime(tzinfo=UTC)
        latest_start = expires - timedelta(seconds=self._sign_timeout + LEDGER_TIMEOUT_S)
        return created + self._abandoned_after <= now < latest_start

    @contextlib.asynccontextmanager
    async def _admitted(self, partition: str, slot: StampSlot | None) -> AsyncIterator[StampSlot | None]:
        """Under `slot`, or under one of the partition's taken here; released either way."""
        if slot is None and self._gate is not None:
            slot = await self._gate.enter(partition)
        try:
            yield slot
        finally:
            if slot is not None:
                slot.release()

    async def _sign_and_commit(
        self,
        partition: str,
        hold: ledger_pb2.Hold,
        document: bytes,
        placement: common_pb2.StampPlacement,
        metadata: common_pb2.DocumentMetadata,
        document_password: str,
        deadline: float | None,
        signing_again: bool,
    ) -> StampOutcome:
        # What the caller's deadline leaves after the commit's usual time.
        sign_deadline = None if deadline is None else deadline - COMMIT_ALLOWANCE_S
        try:
            signed = await upstream(
                self._signer.Stamp(
                    signer_service_pb2.StampRequest(
                        document=document,
                        placement=placement,
                        serial=hold.serial,
                        metadata=metadata,
                        document_password=document_password,
                    ),
                    timeout=_within(sign_deadline, self._sign_timeout),
                )
            )
        except BaseException:
            await self._give_back(partition, hold, ledger_pb2.RELEASE_REASON_SIGNING_FAILED, signing_again)
            raise
        # Signed: keeping and committing go on even when the caller is gone or out of time (a
        # distributor's deadline, a dropped connection), so the caller's retry finds the stamp
        # committed and replays it, instead of a hold left reserved.
        finishing = asyncio.ensure_future(self._keep_and_commit(partition, hold, signed, signing_again))
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finished)
        return await asyncio.shield(finishing)

    def _finished(self, finishing: asyncio.Future[StampOutcome]) -> None:
        self._finishing.discard(finishing)
        # Read here, so a result nobody waited for (the caller went away) raises no warning.
        if not finishing.cancelled():
            finishing.exception()

    async def _keep_and_commit(
        self,
        partition: str,
        hold: ledger_pb2.Hold,
        signed: signer_service_pb2.StampResponse,
        signing_again: bool,
    ) -> StampOutcome:
        try:
            document_ref = await asyncio.to_thread(self._store.put, hold.hold_id, signed.stamped_document)
        except BaseException:
            await self._give_back(partition, hold, ledger_pb2.RELEASE_REASON_STORAGE_FAILED, signing_again)
            raise
        # A failed commit is not released: it may have been applied. The retry, or expiry, settles it.
        try:
            committed = await upstream(
                self._quota.Commit(
                    quota_service_pb2.CommitRequest(
                        hold_id=hold.hold_id,
                        stamped_sha256=signed.stamped_sha256,
                        document_ref=document_ref,
                    ),
                    timeout=LEDGER_TIMEOUT_S,
                )
            )
        except PreconditionFailed:
            if signing_again:
                # Another attempt at the same hold committed first (its own signature of the same
                # document, under the same serial): that stamp is the one, and this answer replays it.
                # (Not committed after all: this attempt failed, its unit gone back with the hold.)
                return await self._settled(partition, await self._hold_now(partition, hold), spent_as=FAILED)
            count_stamp(partition, FAILED)
            raise
        except BaseException:
            count_stamp(partition, FAILED)
            raise
        count_stamp(partition, COMMITTED)
        if document_ref and not committed.hold.document_ref:
            # A ledger older than document references kept the commit without it: the owner has
            # the PDF in this answer, but downloading it again from the history will fail.
            log.error("the ledger did not keep the document reference", extra={"hold_id": hold.hold_id})
        log.info("stamped", extra={"hold_id": hold.hold_id, "serial": hold.serial})
        return StampOutcome(committed.hold, signed.stamped_document, replayed=False)

    async def _settled(self, partition: str, hold: ledger_pb2.Hold, spent_as: str = REFUSED) -> StampOutcome:
        """The answer for a key whose hold is settled: its stamp from the document store when
        committed; else its unit went back, and the key is spent (counted as `spent_as`)."""
        if hold.status != ledger_pb2.HOLD_STATUS_COMMITTED:
            count_stamp(partition, spent_as)
            raise PreconditionFailed(
                "an earlier attempt with this idempotency key failed and its quota was returned; "
                "send the document again with a new key"
            )
        try:
            stored = await asyncio.to_thread(self._store.get, hold.hold_id, hold.document_ref)
        except BaseException:
            count_stamp(partition, FAILED)
            raise
        count_stamp(partition, REPLAYED)
        return StampOutcome(hold, stored, replayed=True)

    async def _hold_now(self, partition: str, hold: ledger_pb2.Hold) -> ledger_pb2.Hold:
        try:
            found = await upstream(
                self._quota.GetHold(
                    quota_service_pb2.GetHoldRequest(hold_id=hold.hold_id), timeout=LEDGER_TIMEOUT_S
                )
            )
        except BaseException:
            count_stamp(partition, FAILED)
            raise
        return found.hold

    async def _give_back(
        self,
        partition: str,
        hold: ledger_pb2.Hold,
        reason: ledger_pb2.ReleaseReason.ValueType,
        signing_again: bool,
    ) -> None:
        """After a failure before the commit: the unit goes back at once, unless this attempt
        signs a hold another left. Judged abandoned is not proven dead: should the first attempt
        still be on its way to its commit, a release now would void its stamp; it expires instead."""
        if signing_again:
            count_stamp(partition, FAILED)
        else:
            await self._release(partition, hold, reason)

    async def _release(
        self, partition: str, hold: ledger_pb2.Hold, reason: ledger_pb2.ReleaseReason.ValueType
    ) -> None:
        count_stamp(partition, RELEASED)
        try:
            # Shielded: a cancelled request must still give its unit back now, not at expiry.
            await asyncio.shield(
                self._quota.Release(
                    quota_service_pb2.ReleaseRequest(hold_id=hold.hold_id, reason=reason),
                    timeout=RELEASE_TIMEOUT_S,
                )
            )
        except Exception:
            log.warning("release failed; the hold will expire instead", extra={"hold_id": hold.hold_id})


def _within(deadline: float | None, timeout_s: float) -> float:
    """timeout_s, or less when the caller's deadline (time.monotonic()) comes first."""
    if deadline is None:
        return timeout_s
    return max(0.0, min(timeout_s, deadline - time.monotonic()))
