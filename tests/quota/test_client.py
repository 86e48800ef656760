"""BatchingQuotaStub against a real QuotaService on 127.0.0.1: concurrent calls travel together in
Batch calls and each answers exactly as the single call would, failures included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from emeterai.v1 import common_pb2, ledger_pb2, quota_service_pb2, quota_service_pb2_grpc
from services.quota.client import BatchingQuotaStub
from services.quota.ledger import Ledger
from tests.batch_calls import count_batches

from .conftest import sha
from .test_servicer import buy, serving

pb = quota_service_pb2


class CountingStub(quota_service_pb2_grpc.QuotaServiceStub):
    """The generated stub, counting the Batch calls it makes and their items."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self.batches = count_batches(self, "Batch", "items")


@pytest.fixture
async def stub(ledger: Ledger) -> AsyncIterator[CountingStub]:
    async with serving(ledger) as channel:
        yield CountingStub(channel)


def reserve(account_id: str, key: str, document: str = "doc") -> pb.ReserveRequest:
    return pb.ReserveRequest(
        account_id=account_id,
        idempotency_key=key,
        document_sha256=sha(document),
        channel=common_pb2.CHANNEL_RETAIL,
    )


async def test_concurrent_calls_share_batches_and_answer_like_single_calls(
    stub: CountingStub, ledger: Ledger
) -> None:
    await buy(stub, ledger, "acct-a", 40)
    batching = BatchingQuotaStub(stub, max_in_flight=1)
    reserved = await asyncio.gather(
        *(batching.Reserve(reserve("acct-a", f"k{n}", f"d{n}")) for n in range(40))
    )
    assert sum(stub.batches) == 40 and len(stub.batches) < 40
    holds = [response.hold for response in reserved]
    assert len({hold.serial for hold in holds}) == 40
    committed = await asyncio.gather(
        *(
            batching.Commit(pb.CommitRequest(hold_id=hold.hold_id, stamped_sha256=sha("s")))
            for hold in holds[:30]
        )
    )
    assert {response.hold.status for response in committed} == {ledger_pb2.HOLD_STATUS_COMMITTED}
    released = await batching.Release(
        pb.ReleaseRequest(hold_id=holds[30].hold_id, reason=ledger_pb2.RELEASE_REASON_CANCELLED)
    )
    assert released.hold.status == ledger_pb2.HOLD_STATUS_RELEASED
    # Other methods are the plain stub's.
    balance = (await batching.GetBalance(pb.GetBalanceRequest(account_id="acct-a"))).balance
    assert (balance.available, balance.held, balance.consumed) == (1, 9, 30)
    again = await batching.Reserve(reserve("acct-a", "k0", "d0"))
    assert again.replayed and (again.hold.hold_id, again.hold.serial) == (holds[0].hold_id, holds[0].serial)
    assert again.hold.status == ledger_pb2.HOLD_STATUS_COMMITTED


async def test_a_stamps_calls_wait_for_the_window_and_an_order_never_does(
    stub: CountingStub, ledger: Ledger
) -> None:
    await buy(stub, ledger, "acct-a", 2)
    # A window far longer than the test: only an order, or a full batch, sends before it ends.
    batching = BatchingQuotaStub(stub, window_s=30.0, max_items=3)
    order = pb.CreateOrderRequest(
        account_id="acct-b", quantity=1, idempotency_key="o1", channel=common_pb2.CHANNEL_RETAIL
    )
    # A second against the window's thirty: the order went at once.
    assert (await asyncio.wait_for(batching.CreateOrder(order), 1.0)).order.quantity == 1
    assert stub.batches[-1:] == [1]
    reserving = asyncio.ensure_future(batching.Reserve(reserve("acct-a", "k1", "d1")))
    await asyncio.sleep(0.05)
    assert not reserving.done()
    # The order takes the waiting reserve along.
    await batching.CreateOrder(order)
    assert (await reserving).hold.serial
    assert stub.batches[-1:] == [2]
    # Three stamps' calls fill a batch: it goes without waiting for the window.
    held = (await reserving).hold
    filled = await asyncio.wait_for(
        asyncio.gather(
            batching.Reserve(reserve("acct-a", "k2", "d2")),
            batching.Commit(pb.CommitRequest(hold_id=held.hold_id, stamped_sha256=sha("s"))),
            batching.Reserve(reserve("acct-a", "k1", "d1")),
        ),
        1.0,
    )
    assert stub.batches[-1:] == [3] and filled[2].replayed


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda s: s.Reserve(reserve("acct-empty", "k")), grpc.StatusCode.FAILED_PRECONDITION),
        (lambda s: s.Reserve(reserve("acct-a", "k0", "another document")), grpc.StatusCode.ALREADY_EXISTS),
        (
            lambda s: s.Commit(pb.CommitRequest(hold_id="hold_missing", stamped_sha256=sha("s"))),
            grpc.StatusCode.NOT_FOUND,
        ),
        (lambda s: s.Reserve(pb.ReserveRequest(account_id="acct-a")), grpc.StatusCode.INVALID_ARGUMENT),
        (
            lambda s: s.ConfirmPayment(
                pb.ConfirmPaymentRequest(provider="sandbox", payload=b"{}", signature="x")
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    ],
    ids=["no quota", "key reused", "unknown hold", "bad field", "forged webhook"],
)
async def test_a_failed_item_raises_what_the_single_call_would(
    stub: CountingStub, ledger: Ledger, call: object, code: grpc.StatusCode
) -> None:
    await buy(stub, ledger, "acct-a", 1)
    batching = BatchingQuotaStub(stub)
    await batching.Reserve(reserve("acct-a", "k0", "d0"))
    # A failing item does not fail the others that travel with it.
    results = await asyncio.gather(
        call(batching),  # type: ignore[operator]
        batching.Reserve(reserve("acct-a", "k0", "d0")),
        return_exceptions=True,
    )
    assert isinstance(results[0], grpc.aio.AioRpcError) and results[0].code() == code, results[0]
    assert results[0].details() and "Traceback" not in results[0].details()
    assert isinstance(results[1], pb.ReserveResponse) and results[1].replayed


async def test_a_batch_is_bounded_and_an_empty_item_is_refused(stub: CountingStub) -> None:
    empty = await stub.Batch(pb.BatchRequest(items=[pb.BatchItem()]))
    assert empty.results[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Batch(pb.BatchRequest(items=[pb.BatchItem(reserve=reserve("a", "k"))] * 1001))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_unexpected_failure_is_an_internal_error_without_detail(
    stub: CountingStub, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await buy(stub, ledger, "acct-a", 1)

    def broken(*args: object) -> object:
        raise RuntimeError("db-host-7.internal refused the connection")

    # A ledger bug, as opposed to a refused request: the item fails alone, and says nothing of why.
    monkeypatch.setattr(ledger, "commit_later", broken)
    batch = await stub.Batch(
        pb.BatchRequest(
            items=[
                pb.BatchItem(commit=pb.CommitRequest(hold_id="hold_x", stamped_sha256=sha("s"))),
                pb.BatchItem(reserve=reserve("acct-a", "k1")),
            ]
        )
    )
    failed, reserved = batch.results
    assert failed.error.code == grpc.StatusCode.INTERNAL.value[0] and failed.error.message == "internal error"
    assert reserved.WhichOneof("outcome") == "reserve" and not reserved.reserve.replayed
    assert "db-host-7.internal" in caplog.text
