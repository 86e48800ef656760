"""QuotaService over a real gRPC server on 127.0.0.1, called through the generated stub."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import Engine, update

from emeterai.v1 import common_pb2, ledger_pb2, quota_service_pb2, quota_service_pb2_grpc
from services.common.boot import Registration, start_grpc_server
from services.common.interceptors import ErrorInterceptor
from services.quota.ledger import Ledger
from services.quota.payments import SandboxProvider
from services.quota.schema import accounts
from services.quota.servicer import QUOTA_STATUS_CODES, QuotaServicer

from .conftest import sha

pb = quota_service_pb2
SERVICE_NAME = quota_service_pb2.DESCRIPTOR.services_by_name["QuotaService"].full_name


@contextlib.asynccontextmanager
async def serving(ledger: Ledger) -> AsyncIterator[grpc.aio.Channel]:
    """QuotaService on a free 127.0.0.1 port over ledger, and a channel to it."""
    running = await start_grpc_server(
        "127.0.0.1:0",
        [
            Registration(
                quota_service_pb2_grpc.add_QuotaServiceServicer_to_server, QuotaServicer(ledger), SERVICE_NAME
            )
        ],
        interceptors=[ErrorInterceptor(QUOTA_STATUS_CODES)],
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield channel
    finally:
        await channel.close()
        await running.stop(0)


@pytest.fixture
async def stub(ledger: Ledger) -> AsyncIterator[quota_service_pb2_grpc.QuotaServiceStub]:
    async with serving(ledger) as channel:
        yield quota_service_pb2_grpc.QuotaServiceStub(channel)


async def buy(
    stub: quota_service_pb2_grpc.QuotaServiceStub, ledger: Ledger, account_id: str, quantity: int
) -> str:
    created = await stub.CreateOrder(
        pb.CreateOrderRequest(
            account_id=account_id, quantity=quantity, idempotency_key="buy", channel=common_pb2.CHANNEL_RETAIL
        )
    )
    provider = ledger.payment_provider
    assert isinstance(provider, SandboxProvider)
    payload, signature = provider.pay(ledger.get_order(created.order.order_id))
    confirmed = await stub.ConfirmPayment(
        pb.ConfirmPaymentRequest(provider="sandbox", payload=payload, signature=signature)
    )
    assert confirmed.order.status == ledger_pb2.ORDER_STATUS_PAID and not confirmed.replayed
    return created.order.order_id


async def test_every_rpc_round_trips(stub: quota_service_pb2_grpc.QuotaServiceStub, ledger: Ledger) -> None:
    order_id = await buy(stub, ledger, "acct-a", 4)
    got = await stub.GetOrder(pb.GetOrderRequest(order_id=order_id, account_id="acct-a"))
    assert got.order.quantity == 4 and got.order.amount_idr == 40_000
    assert got.order.channel == common_pb2.CHANNEL_RETAIL
    assert got.order.paid_at.seconds > 0 and got.order.HasField("expires_at")
    listed = await stub.ListOrders(pb.ListOrdersRequest(account_id="acct-a"))
    assert [o.order_id for o in listed.orders] == [order_id] and listed.next_page_token == ""

    unpaid = await stub.CreateOrder(
        pb.CreateOrderRequest(
            account_id="acct-a", quantity=1, idempotency_key="k2", channel=common_pb2.CHANNEL_RETAIL
        )
    )
    assert not unpaid.order.HasField("paid_at")
    cancelled = await stub.CancelOrder(
        pb.CancelOrderRequest(order_id=unpaid.order.order_id, account_id="acct-a")
    )
    assert cancelled.order.status == ledger_pb2.ORDER_STATUS_CANCELLED

    metadata = common_pb2.DocumentMetadata(
        type=common_pb2.DOCUMENT_TYPE_STATEMENT, name="Surat Pernyataan", date="2025-03-01", value_idr=0
    )
    reserved = await stub.Reserve(
        pb.ReserveRequest(
            account_id="acct-a",
            idempotency_key="stamp-1",
            document_sha256=sha("doc"),
            metadata=metadata,
            channel=common_pb2.CHANNEL_RETAIL,
        )
    )
    hold = reserved.hold
    assert hold.status == ledger_pb2.HOLD_STATUS_RESERVED and len(hold.serial) == 22
    assert hold.metadata == metadata and not hold.HasField("resolved_at")
    committed = await stub.Commit(
        pb.CommitRequest(hold_id=hold.hold_id, stamped_sha256=sha("stamped"), document_ref="seg-1:0:42")
    )
    assert committed.hold.status == ledger_pb2.HOLD_STATUS_COMMITTED
    assert committed.hold.stamped_sha256 == sha("stamped")
    assert committed.hold.document_ref == "seg-1:0:42"
    got = await stub.GetHold(pb.GetHoldRequest(hold_id=hold.hold_id, account_id="acct-a"))
    assert got.hold.document_ref == "seg-1:0:42"

    looked_up = await stub.LookupSerial(pb.LookupSerialRequest(serial=hold.serial))
    assert looked_up.serial.status == ledger_pb2.SERIAL_STATUS_STAMPED
    assert looked_up.serial.stamped_at.seconds > 0
    # The public record has no field that could carry an owner.
    assert {f.name for f in ledger_pb2.SerialRecord.DESCRIPTOR.fields} == {
        "serial",
        "status",
        "issued_at",
        "stamped_at",
    }

    second = await stub.Reserve(
        pb.ReserveRequest(
            account_id="acct-a",
            idempotency_key="stamp-2",
            document_sha256=sha("doc-2"),
            channel=common_pb2.CHANNEL_RETAIL,
        )
    )
    released = await stub.Release(
        pb.ReleaseRequest(hold_id=second.hold.hold_id, reason=ledger_pb2.RELEASE_REASON_SIGNING_FAILED)
    )
    assert released.hold.release_reason == ledger_pb2.RELEASE_REASON_SIGNING_FAILED
    got_hold = await stub.GetHold(pb.GetHoldRequest(hold_id=hold.hold_id, account_id="acct-a"))
    assert got_hold.hold == committed.hold
    history = await stub.ListHolds(pb.ListHoldsRequest(account_id="acct-a", page_size=1))
    assert [h.hold_id for h in history.holds] == [second.hold.hold_id] and history.next_page_token
    older = await stub.ListHolds(
        pb.ListHoldsRequest(account_id="acct-a", page_size=1, page_token=history.next_page_token)
    )
    assert [h.hold_id for h in older.holds] == [hold.hold_id]

    moved = await stub.TransferQuota(
        pb.TransferQuotaRequest(
            from_account_id="acct-a",
            to_account_id="acct-b",
            quantity=1,
            idempotency_key="t1",
            channel=common_pb2.CHANNEL_ENTERPRISE,
        )
    )
    assert moved.transfer.channel == common_pb2.CHANNEL_ENTERPRISE
    refunded = await stub.RefundOrder(
        pb.RefundOrderRequest(order_id=order_id, account_id="acct-a", reason="unused", idempotency_key="r1")
    )
    assert refunded.refund.quantity == 2
    assert refunded.order.status == ledger_pb2.ORDER_STATUS_PARTIALLY_REFUNDED
    # The sandbox provider confirms at once, so the money is already back.
    assert refunded.refund.status == ledger_pb2.REFUND_STATUS_COMPLETED
    assert refunded.refund.provider_reference and refunded.refund.completed_at.seconds > 0
    assert hold.funding_account_id == "acct-a"

    balance = (await stub.GetBalance(pb.GetBalanceRequest(account_id="acct-a"))).balance
    assert (balance.available, balance.held, balance.consumed, balance.refunded, balance.purchased) == (
        0,
        0,
        1,
        2,
        3,
    )


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda s: s.Reserve(
                pb.ReserveRequest(
                    account_id="acct-empty",
                    idempotency_key="k",
                    document_sha256=sha("doc"),
                    channel=common_pb2.CHANNEL_RETAIL,
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (lambda s: s.GetHold(pb.GetHoldRequest(hold_id="hold_missing")), grpc.StatusCode.NOT_FOUND),
        (
            lambda s: s.ConfirmPayment(
                pb.ConfirmPaymentRequest(provider="sandbox", payload=b"{}", signature="x")
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        (
            lambda s: s.CreateOrder(pb.CreateOrderRequest(account_id="a", quantity=1, idempotency_key="k")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda s: s.ListHolds(pb.ListHoldsRequest(account_id="a", page_token="??")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
    ids=["insufficient quota", "unknown hold", "bad signature", "no channel", "bad page token"],
)
async def test_domain_errors_arrive_as_their_status(
    stub: quota_service_pb2_grpc.QuotaServiceStub, call: object, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(stub)  # type: ignore[operator]
    assert raised.value.code() == code
    # The message is the domain's own, meant for people; never a stack trace.
    assert raised.value.details() and "Traceback" not in raised.value.details()


async def test_a_reused_order_key_is_already_exists(
    stub: quota_service_pb2_grpc.QuotaServiceStub,
) -> None:
    request = pb.CreateOrderRequest(
        account_id="a", quantity=1, idempotency_key="k", channel=common_pb2.CHANNEL_RETAIL
    )
    first = await stub.CreateOrder(request)
    again = await stub.CreateOrder(request)
    assert again.replayed and again.order == first.order
    request.quantity = 2
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateOrder(request)
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_channels_and_collector_statements_round_trip(
    stub: quota_service_pb2_grpc.QuotaServiceStub,
) -> None:
    configured = await stub.ConfigureQuotaAccount(
        pb.ConfigureQuotaAccountRequest(
            account_id="corp", kind=common_pb2.CHANNEL_COLLECTOR, credit_limit_idr=30_000
        )
    )
    assert configured.account.kind == common_pb2.CHANNEL_COLLECTOR
    assert configured.account.credit_limit_idr == 30_000 and not configured.account.pool_account_id
    got = await stub.GetQuotaAccount(pb.GetQuotaAccountRequest(account_id="corp"))
    assert got.account == configured.account

    reserved = await stub.Reserve(
        pb.ReserveRequest(
            account_id="corp",
            idempotency_key="stamp-1",
            document_sha256=sha("doc"),
            channel=common_pb2.CHANNEL_COLLECTOR,
        )
    )
    await stub.Commit(pb.CommitRequest(hold_id=reserved.hold.hold_id, stamped_sha256=sha("stamped")))
    period = reserved.hold.created_at.ToDatetime().strftime("%Y-%m")
    statement = (await stub.GetStatement(pb.GetStatementRequest(account_id="corp", period=period))).statement
    assert (statement.stamps, statement.amount_idr, statement.outstanding_idr) == (1, 10_000, 10_000)
    settled = await stub.SettleStatement(
        pb.SettleStatementRequest(
            account_id="corp", amount_idr=10_000, reference="BCA-1", idempotency_key="s1"
        )
    )
    assert settled.settlement.amount_idr == 10_000 and settled.settlement.settlement_id
    balance = (await stub.GetBalance(pb.GetBalanceRequest(account_id="corp"))).balance
    assert (balance.consumed, balance.owed_idr, balance.purchased) == (1, 0, 1)

    child = await stub.ConfigureQuotaAccount(
        pb.ConfigureQuotaAccountRequest(
            account_id="child", kind=common_pb2.CHANNEL_ENTERPRISE, pool_account_id="corp"
        )
    )
    assert child.account.pool_account_id == "corp"
    for request, code in [
        (pb.ConfigureQuotaAccountRequest(account_id="x"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetQuotaAccountRequest(account_id="nobody"), grpc.StatusCode.NOT_FOUND),
        (pb.GetStatementRequest(account_id="corp", period="May"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.SettleStatementRequest(account_id="corp", amount_idr=1, reference="r", idempotency_key="s2"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ]:
        method = getattr(stub, type(request).__name__.removesuffix("Request"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await method(request)
        assert raised.value.code() == code, request


@pytest.mark.tampers
async def test_the_audit_rpc_reports_what_the_audit_commands_do(
    stub: quota_service_pb2_grpc.QuotaServiceStub, ledger: Ledger, engine: Engine
) -> None:
    await buy(stub, ledger, "acct-a", 2)
    healthy = await stub.Audit(pb.AuditRequest())
    # The order and its payment, each an audit event.
    assert healthy.events == 2 and not healthy.chain_problems and not healthy.book_problems
    # Units appear from nowhere: the books no longer agree, and the audit names the account.
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.account_id == "acct-a")
            .values(available=accounts.c.available + 1)
        )
    broken = await stub.Audit(pb.AuditRequest())
    assert not broken.chain_problems
    assert any("acct-a" in problem for problem in broken.book_problems)
