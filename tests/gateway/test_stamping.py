"""The stamping saga against real parts: the ledger (QuotaService on SQLite) and a signer with the
development PKI, each a grpc.aio server on 127.0.0.1, and real PDFs. Here: what a retry finds when
the attempt before it died with its hold reserved."""

from __future__ import annotations

import hashlib
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
    signer_service_pb2_grpc,
)
from services.common.errors import RequestInFlight, Unavailable
from services.common.interceptors import ErrorInterceptor
from services.gateway.documents import LocalDocumentStore
from services.gateway.stamping import COMMIT_ALLOWANCE_S, StampingFlow, StampOutcome, request_fingerprint
from services.gateway.upstream import Backends
from services.quota.db import create_ledger_engine
from services.quota.ledger import Ledger
from services.quota.payments import SandboxProvider
from services.quota.servicer import QUOTA_STATUS_CODES, QuotaServicer
from tests.conftest import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACCOUNT = "acct-stamper"
PLACEMENT = common_pb2.StampPlacement(page=1)
METADATA = common_pb2.DocumentMetadata(name="surat lamaran")
SIGN_TIMEOUT_S = 30.0


@dataclass
class Parts:
    backends: Backends
    store: LocalDocumentStore

    def flow(self, ahead_s: float = 0.0) -> StampingFlow:
        """A saga whose clock runs `ahead_s` ahead of the ledger's: as if that long had passed."""
        return StampingFlow(
            self.backends,
            self.store,
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


@pytest_asyncio.fixture(loop_scope="module")
async def parts(tmp_path: Path, signer_address: str) -> AsyncIterator[Parts]:
    provider = SandboxProvider(b"test-payment-secret")
    ledger = Ledger(create_ledger_engine(f"sqlite:///{tmp_path / 'quota.db'}"), payment_provider=provider)
    server = grpc.aio.server(interceptors=[ErrorInterceptor(QUOTA_STATUS_CODES)])
    quota_service_pb2_grpc.add_QuotaServiceServicer_to_server(QuotaServicer(ledger), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    quota_channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    signer_channel = grpc.aio.insecure_channel(signer_address)
    # Nothing here asks auth: its stub points at a port no one listens on.
    nowhere = grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}")
    backends = Backends(
        auth=auth_service_pb2_grpc.AuthServiceStub(nowhere),
        quota=quota_service_pb2_grpc.QuotaServiceStub(quota_channel),
        signer=signer_service_pb2_grpc.SignerServiceStub(signer_channel),
    )
    quota = backends.quota
    created = await quota.CreateOrder(
        quota_service_pb2.CreateOrderRequest(
            account_id=ACCOUNT, quantity=3, idempotency_key="buy", channel=common_pb2.CHANNEL_RETAIL
        )
    )
    payload, signature = provider.pay(ledger.get_order(created.order.order_id))
    await quota.ConfirmPayment(
        quota_service_pb2.ConfirmPaymentRequest(provider="sandbox", payload=payload, signature=signature)
    )
    yield Parts(backends, LocalDocumentStore(tmp_path / "documents"))
    for channel in (quota_channel, signer_channel, nowhere):
        await channel.close()
    await server.stop(None)
    ledger.close()


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
    assert (balance.held, balance.consumed, balance.available) == (0, 1, 2)

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
