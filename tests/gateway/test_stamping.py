"""The stamping saga against real parts: the ledger (QuotaService on SQLite) and a signer with the
development PKI, each a grpc.aio server on 127.0.0.1, and real PDFs. Here: what a retry finds when
the attempt before it died with its hold reserved."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from emeterai.v1 import (
    auth_service_pb2_grpc,
    common_pb2,
    ledger_pb2,
    quota_service_pb2,
    quota_service_pb2_grpc,
    signer_service_pb2,
    signer_service_pb2_grpc,
)
from services.common.errors import InvalidInput, RequestInFlight, Unavailable
from services.gateway.documents import LocalDocumentStore
from services.gateway.stamping import COMMIT_ALLOWANCE_S, StampingFlow, StampOutcome, request_fingerprint
from services.gateway.upstream import Backends
from tests.conftest import free_port
from tests.ledger_server import running_ledger
from tests.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACCOUNT = "acct-stamper"
PLACEMENT = common_pb2.StampPlacement(page=1)
METADATA = common_pb2.DocumentMetadata(name="surat lamaran")
SIGN_TIMEOUT_S = 30.0


@dataclass
class Parts:
    backends: Backends
    store: LocalDocumentStore

    def flow(self, ahead_s: float = 0.0, store: LocalDocumentStore | None = None) -> StampingFlow:
        """A saga whose clock runs `ahead_s` ahead of the ledger's: as if that long had passed."""
        return StampingFlow(
            self.backends,
            store or self.store,
            SIGN_TIMEOUT_S,
            clock=lambda: datetime.now(UTC) + timedelta(seconds=ahead_s),
        )

    async def balance(self) -> ledger_pb2.Balance:
        answer = await self.backends.quota.GetBalance(quota_service_pb2.GetBalanceRequest(account_id=ACCOUNT))
        return answer.balance

    async def reserve_and_die(self, key: str, document: bytes) -> ledger_pb2.Hold:
        """What a gateway that crashed after Reserve leaves: a reserved hold under `key`."""
        reserved = await self.backends.quota.Reserve(
            quota_service_pb2.ReserveRequest(
                account_id=ACCOUNT,
                idempotency_key=key,
                document_sha256=hashlib.sha256(document).digest(),
                metadata=METADATA,
                channel=common_pb2.CHANNEL_RETAIL,
                request_sha256=request_fingerprint(PLACEMENT, METADATA),
            )
        )
        assert not reserved.replayed
        return reserved.hold


class HeldStore(LocalDocumentStore):
    """The document store, its puts held until `go` is set: a slow disk, to act at that moment."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.putting = threading.Event()
        self.go = threading.Event()

    def put(self, stamp_id: str, document: bytes) -> str:
        self.putting.set()
        assert self.go.wait(30), "the test never let the put go"
        return super().put(stamp_id, document)


async def _hold(parts: Parts, hold_id: str) -> ledger_pb2.Hold:
    found = await parts.backends.quota.GetHold(quota_service_pb2.GetHoldRequest(hold_id=hold_id))
    return found.hold


@pytest_asyncio.fixture(loop_scope="module")
async def parts(tmp_path: Path, signer_address: str) -> AsyncIterator[Parts]:
    async with (
        running_ledger(tmp_path / "quota.db") as ledger,
        grpc.aio.insecure_channel(ledger.address) as quota_channel,
        grpc.aio.insecure_channel(signer_address) as signer_channel,
        # Nothing here asks auth: its stub points at a port no one listens on.
        grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as nowhere,
    ):
        backends = Backends(
            auth=auth_service_pb2_grpc.AuthServiceStub(nowhere),
            quota=quota_service_pb2_grpc.QuotaServiceStub(quota_channel),
            signer=signer_service_pb2_grpc.SignerServiceStub(signer_channel),
        )
        await ledger.fund(backends.quota, ACCOUNT, 10, common_pb2.CHANNEL_RETAIL)
        yield Parts(backends, LocalDocumentStore(tmp_path / "documents"))


async def _stamp(flow: StampingFlow, key: str, document: bytes, **options: float) -> StampOutcome:
    return await flow.stamp(
        account_id=ACCOUNT,
        idempotency_key=key,
        document=document,
        placement=PLACEMENT,
        metadata=METADATA,
        channel=common_pb2.CHANNEL_RETAIL,
        **options,
    )


async def test_a_retry_signs_again_under_the_same_serial_once_the_first_attempt_has_given_up(
    parts: Parts, corpus: Path
) -> None:
    document = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    left = await parts.reserve_and_die("died-mid-way", document)

    # While the first attempt may still be signing, a retry is told to come back.
    with pytest.raises(RequestInFlight):
        await _stamp(parts.flow(), "died-mid-way", document)
    # Within its signing and commit deadlines, still.
    with pytest.raises(RequestInFlight):
        await _stamp(parts.flow(ahead_s=SIGN_TIMEOUT_S + 10), "died-mid-way", document)

    # Past them (and the margin), the retry stamps under the serial the first attempt was given.
    later = parts.flow(ahead_s=SIGN_TIMEOUT_S + 10 + 16)
    stamped = await _stamp(later, "died-mid-way", document)
    assert not stamped.replayed
    assert stamped.hold.hold_id == left.hold_id and stamped.hold.serial == left.serial
    assert stamped.hold.status == ledger_pb2.HOLD_STATUS_COMMITTED
    assert stamped.hold.stamped_sha256 == hashlib.sha256(stamped.stamped_document).digest()
    assert stamped.stamped_document.startswith(document)
    balance = await parts.balance()
    assert (balance.held, balance.consumed, balance.available) == (0, 1, 9)

    # And from then on the key replays that stamp.
    again = await _stamp(parts.flow(), "died-mid-way", document)
    assert again.replayed and again.stamped_document == stamped.stamped_document
    assert (await parts.balance()).consumed == 1


async def test_a_hold_too_near_its_deadline_is_not_signed_again(parts: Parts, corpus: Path) -> None:
    document = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    left = await parts.reserve_and_die("died-long-ago", document)
    ttl_s = (left.expires_at.ToDatetime() - left.created_at.ToDatetime()).total_seconds()
    # Too little time left to sign and commit before the ledger would refuse the commit: the retry
    # waits for the sweep to release the unit, and is then told to send a new key.
    with pytest.raises(RequestInFlight):
        await _stamp(parts.flow(ahead_s=ttl_s - SIGN_TIMEOUT_S), "died-long-ago", document)
    balance = await parts.balance()
    assert (balance.held, balance.consumed) == (1, 0)


async def test_the_callers_deadline_bounds_the_signing_and_an_expired_one_costs_nothing(
    parts: Parts, corpus: Path
) -> None:
    document = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    before = await parts.balance()
    # A millisecond left for signing once the commit's allowance is set aside: the signer call
    # carries that deadline and misses it, and the unit goes back at once.
    with pytest.raises(Unavailable):
        await _stamp(parts.flow(), "short-deadline", document, time_left_s=COMMIT_ALLOWANCE_S + 0.001)
    after = await parts.balance()
    assert (after.available, after.held, after.consumed) == (before.available, 0, before.consumed)

    # A deadline with room to spare: stamped as without one.
    stamped = await _stamp(parts.flow(), "ample-deadline", document, time_left_s=60)
    assert stamped.hold.status == ledger_pb2.HOLD_STATUS_COMMITTED


async def test_a_signed_stamp_is_committed_even_when_its_caller_goes_away(parts: Parts, corpus: Path) -> None:
    document = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    # Replicas share the folder.
    store = HeldStore(parts.store.directory)
    before = await parts.balance()
    stamping = asyncio.create_task(_stamp(parts.flow(store=store), "caller-gone", document))
    # Signed, and being kept: the caller goes (its deadline, a dropped connection).
    assert await asyncio.to_thread(store.putting.wait, 30)
    stamping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stamping
    store.go.set()

    async def consumed() -> bool:
        return (await parts.balance()).consumed == before.consumed + 1

    await eventually(consumed, timeout_s=30)
    # The caller's retry replays it.
    again = await _stamp(parts.flow(store=store), "caller-gone", document)
    assert again.replayed and again.hold.status == ledger_pb2.HOLD_STATUS_COMMITTED
    assert (await parts.balance()).held == before.held


async def test_signing_again_loses_to_a_first_attempt_that_commits_after_all_and_replays_it(
    parts: Parts, corpus: Path
) -> None:
    document = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    left = await parts.reserve_and_die("late-first", document)
    # Replicas share the folder.
    store = HeldStore(parts.store.directory)
    later = parts.flow(ahead_s=SIGN_TIMEOUT_S + 10 + 16, store=store)
    again = asyncio.create_task(_stamp(later, "late-first", document))
    assert await asyncio.to_thread(store.putting.wait, 30)
    # Meanwhile the first attempt, judged abandoned, reaches its commit after all.
    first = await parts.backends.signer.Stamp(
        signer_service_pb2.StampRequest(
            document=document, placement=PLACEMENT, serial=left.serial, metadata=METADATA
        )
    )
    ref = await asyncio.to_thread(parts.store.put, left.hold_id, first.stamped_document)
    await parts.backends.quota.Commit(
        quota_service_pb2.CommitRequest(
            hold_id=left.hold_id, stamped_sha256=first.stamped_sha256, document_ref=ref
        )
    )
    store.go.set()
    outcome = await again
    # The first attempt's stamp is the one; the second answers with it, charged once.
    assert outcome.replayed and outcome.stamped_document == first.stamped_document
    assert outcome.hold.stamped_sha256 == first.stamped_sha256
    assert (await _hold(parts, left.hold_id)).status == ledger_pb2.HOLD_STATUS_COMMITTED


async def test_signing_again_that_fails_leaves_the_hold_to_expire_rather_than_release_it(
    parts: Parts,
) -> None:
    # Past the gateway's cheap checks, refused by the signer.
    broken = b"%PDF-1.7\n" + b"\x00broken" * 100
    left = await parts.reserve_and_die("broken-again", broken)
    with pytest.raises(InvalidInput):
        await _stamp(parts.flow(ahead_s=SIGN_TIMEOUT_S + 10 + 16), "broken-again", broken)
    # Should its first attempt be alive after all, a release would void its stamp: the hold stays
    # reserved until it expires.
    assert (await _hold(parts, left.hold_id)).status == ledger_pb2.HOLD_STATUS_RESERVED
