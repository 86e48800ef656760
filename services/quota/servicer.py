"""QuotaService over gRPC: translates messages to ledger calls and back, nothing more.

The ledger blocks on its database, so reads run in a worker thread and the event loop keeps serving
other calls meanwhile. The stamping path and payments go straight to the ledger's group committer
and are awaited as futures: no thread per call, and as many of them share a transaction as arrive
together. Domain errors are raised as they are; the error interceptor maps
them with QUOTA_STATUS_CODES.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import grpc

from emeterai.v1 import common_pb2, ledger_pb2, quota_service_pb2, quota_service_pb2_grpc
from services.common.batching import batch_error
from services.common.errors import BASE_STATUS_CODES, DomainError, InvalidInput
from services.common.protos import to_timestamp
from services.quota.errors import HoldAlreadyResolved, InsufficientQuota
from services.quota.ledger import Ledger
from services.quota.models import (
    Account,
    Balance,
    Channel,
    DocumentMetadata,
    DocumentType,
    Hold,
    HoldStatus,
    Order,
    OrderStatus,
    Refund,
    RefundStatus,
    ReleaseReason,
    SerialRecord,
    SerialStatus,
    Settlement,
    Statement,
    Transfer,
)

MAX_BATCH_ITEMS = 1000

QUOTA_STATUS_CODES: dict[type[DomainError], grpc.StatusCode] = {
    **BASE_STATUS_CODES,
    # Both are PreconditionFailed already; listed so the table reads as the service's whole contract.
    InsufficientQuota: grpc.StatusCode.FAILED_PRECONDITION,
    HoldAlreadyResolved: grpc.StatusCode.FAILED_PRECONDITION,
}

E = TypeVar("E", bound=StrEnum)


# Proto enum values are named PREFIX_<DOMAIN VALUE IN UPPER CASE>, so one rule maps each pair.
_PREFIXES: dict[type[StrEnum], tuple[Any, str]] = {
    Channel: (common_pb2.Channel, "CHANNEL_"),
    DocumentType: (common_pb2.DocumentType, "DOCUMENT_TYPE_"),
    OrderStatus: (ledger_pb2.OrderStatus, "ORDER_STATUS_"),
    HoldStatus: (ledger_pb2.HoldStatus, "HOLD_STATUS_"),
    ReleaseReason: (ledger_pb2.ReleaseReason, "RELEASE_REASON_"),
    SerialStatus: (ledger_pb2.SerialStatus, "SERIAL_STATUS_"),
    RefundStatus: (ledger_pb2.RefundStatus, "REFUND_STATUS_"),
}


def enum_from_proto(domain: type[E], value: int, field: str) -> E:
    """The domain value of a proto enum; UNSPECIFIED or unknown numbers are InvalidInput."""
    proto_enum, prefix = _PREFIXES[domain]
    try:
        return domain(proto_enum.Name(value).removeprefix(prefix).lower())
    except ValueError:
        raise InvalidInput(f"{field} must be set to one of its listed values") from None


def enum_to_proto(value: StrEnum | None) -> int:
    """The proto number of a domain value; None is UNSPECIFIED (0)."""
    if value is None:
        return 0
    proto_enum, prefix = _PREFIXES[type(value)]
    return int(proto_enum.Value(prefix + value.value.upper()))


def order_to_proto(order: Order) -> ledger_pb2.Order:
    return ledger_pb2.Order(
        order_id=order.order_id,
        account_id=order.account_id,
        quantity=order.quantity,
        unit_price_idr=order.unit_price_idr,
        amount_idr=order.amount_idr,
        status=enum_to_proto(order.status),
        payment_provider=order.payment_provider,
        payment_reference=order.payment_reference,
        payment_url=order.payment_url,
        channel=enum_to_proto(order.channel),
        created_at=to_timestamp(order.created_at),
        expires_at=to_timestamp(order.expires_at),
        paid_at=to_timestamp(order.paid_at),
        refunded_quantity=order.refunded_quantity,
    )


def balance_to_proto(balance: Balance) -> ledger_pb2.Balance:
    return ledger_pb2.Balance(
        account_id=balance.account_id,
        available=balance.available,
        held=balance.held,
        consumed=balance.consumed,
        refunded=balance.refunded,
        purchased=balance.purchased,
        owed_idr=balance.owed_idr,
    )


def metadata_from_proto(metadata: common_pb2.DocumentMetadata) -> DocumentMetadata:
    return DocumentMetadata(
        type=enum_from_proto(DocumentType, metadata.type, "metadata.type"),
        name=metadata.name,
        number=metadata.number,
        date=metadata.date,
        value_idr=metadata.value_idr,
    )


def hold_to_proto(hold: Hold) -> ledger_pb2.Hold:
    metadata = hold.metadata
    return ledger_pb2.Hold(
        hold_id=hold.hold_id,
        account_id=hold.account_id,
        serial=hold.serial,
        status=enum_to_proto(hold.status),
        document_sha256=hold.document_sha256,
        stamped_sha256=hold.stamped_sha256 or b"",
        document_ref=hold.document_ref,
        metadata=common_pb2.DocumentMetadata(
            type=enum_to_proto(metadata.type),
            name=metadata.name,
            number=metadata.number,
            date=metadata.date,
            value_idr=metadata.value_idr,
        ),
        channel=enum_to_proto(hold.channel),
        release_reason=enum_to_proto(hold.release_reason),
        created_at=to_timestamp(hold.created_at),
        expires_at=to_timestamp(hold.expires_at),
        resolved_at=to_timestamp(hold.resolved_at),
        funding_account_id=hold.funding_account_id,
    )


def serial_to_proto(record: SerialRecord) -> ledger_pb2.SerialRecord:
    return ledger_pb2.SerialRecord(
        serial=record.serial,
        status=enum_to_proto(record.status),
        issued_at=to_timestamp(record.issued_at),
        stamped_at=to_timestamp(record.stamped_at),
    )


def refund_to_proto(refund: Refund) -> ledger_pb2.Refund:
    return ledger_pb2.Refund(
        refund_id=refund.refund_id,
        order_id=refund.order_id,
        account_id=refund.account_id,
        quantity=refund.quantity,
        amount_idr=refund.amount_idr,
        reason=refund.reason,
        created_at=to_timestamp(refund.created_at),
        status=enum_to_proto(refund.status),
        provider_reference=refund.provider_reference,
        completed_at=to_timestamp(refund.completed_at),
    )


def transfer_to_proto(transfer: Transfer) -> ledger_pb2.Transfer:
    return ledger_pb2.Transfer(
        transfer_id=transfer.transfer_id,
        from_account_id=transfer.from_account_id,
        to_account_id=transfer.to_account_id,
        quantity=transfer.quantity,
        channel=enum_to_proto(transfer.channel),
        created_at=to_timestamp(transfer.created_at),
    )


def _batch_failure(call: str, error: Exception) -> quota_service_pb2.BatchResult:
    return quota_service_pb2.BatchResult(error=batch_error(error, QUOTA_STATUS_CODES, call))


@dataclass(frozen=True)
class _Call:
    start: Callable[[Any], Future[Any]]
    answer: Callable[[Any], Awaitable[Any]]


async def _all_done(futures: list[Future[Any]]) -> None:
    """Wait until every future is done, woken once, by the last of them."""
    if not futures:
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    left = len(futures)
    lock = threading.Lock()

    def one_done(_: Future[Any]) -> None:
        nonlocal left
        with lock:
            left -= 1
            last = left == 0
        if last:
            loop.call_soon_threadsafe(_wake, waiter)

    for future in futures:
        future.add_done_callback(one_done)
    await waiter


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def account_to_proto(account: Account) -> ledger_pb2.QuotaAccount:
    return ledger_pb2.QuotaAccount(
        account_id=account.account_id,
        kind=enum_to_proto(account.kind),
        pool_account_id=account.pool_account_id or "",
        credit_limit_idr=account.credit_limit_idr,
        created_at=to_timestamp(account.created_at),
    )


def statement_to_proto(statement: Statement) -> ledger_pb2.Statement:
    return ledger_pb2.Statement(
        account_id=statement.account_id,
        period=statement.period,
        stamps=statement.stamps,
        amount_idr=statement.amount_idr,
        outstanding_idr=statement.outstanding_idr,
    )


def settlement_to_proto(settlement: Settlement) -> ledger_pb2.Settlement:
    return ledger_pb2.Settlement(
        settlement_id=settlement.settlement_id,
        account_id=settlement.account_id,
        amount_idr=settlement.amount_idr,
        reference=settlement.reference,
        created_at=to_timestamp(settlement.created_at),
    )


class QuotaServicer(quota_service_pb2_grpc.QuotaServiceServicer):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        # The calls a Batch may carry, by the name of their oneof field. Each is its start, which
        # checks the request and hands it to the ledger (a Future of the ledger's answer), and its
        # answer, which turns that into the response; a single call is the two in turn.
        self._batchable: dict[str, _Call] = {
            "create_order": _Call(self._start_create_order, self._answer_create_order),
            "confirm_payment": _Call(self._start_confirm_payment, self._answer_confirm_payment),
            "reserve": _Call(self._start_reserve, self._answer_reserve),
            "commit": _Call(self._start_commit, self._answer_commit),
            "release": _Call(self._start_release, self._answer_release),
        }

    async def Batch(
        self, request: quota_service_pb2.BatchRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.BatchResponse:
        """Every item started at once, then answered once the last is done: one wake-up of the event
        loop for the batch, where a task per item cost more than the ledger's work."""
        if len(request.items) > MAX_BATCH_ITEMS:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH_ITEMS} items")
        started: list[tuple[str, Future[Any] | quota_service_pb2.BatchResult]] = []
        for item in request.items:
            call = item.WhichOneof("call") or ""
            try:
                if not call:
                    raise InvalidInput("a batch item must name a call")
                started.append((call, self._batchable[call].start(getattr(item, call))))
            except Exception as error:
                started.append((call, _batch_failure(call, error)))
        await _all_done([outcome for _, outcome in started if isinstance(outcome, Future)])
        results = []
        for call, outcome in started:
            if isinstance(outcome, Future):
                try:
                    response = await self._batchable[call].answer(outcome.result())
                except Exception as error:
                    outcome = _batch_failure(call, error)
                else:
                    outcome = quota_service_pb2.BatchResult(**{call: response})
            results.append(outcome)
        return quota_service_pb2.BatchResponse(results=results)

    async def _single(self, call: str, request: Any) -> Any:
        batchable = self._batchable[call]
        return await batchable.answer(await asyncio.wrap_future(batchable.start(request)))

    async def CreateOrder(
        self, request: quota_service_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.CreateOrderResponse:
        return await self._single("create_order", request)  # type: ignore[no-any-return]

    def _start_create_order(
        self, request: quota_service_pb2.CreateOrderRequest
    ) -> Future[tuple[Order, bool]]:
        channel = enum_from_proto(Channel, request.channel, "channel")
        return self._ledger.create_order_later(
            request.account_id, request.quantity, request.idempotency_key, channel
        )

    async def _answer_create_order(self, result: tuple[Order, bool]) -> quota_service_pb2.CreateOrderResponse:
        order, replayed = result
        return quota_service_pb2.CreateOrderResponse(order=order_to_proto(order), replayed=replayed)

    async def GetOrder(
        self, request: quota_service_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.GetOrderResponse:
        order = await asyncio.to_thread(self._ledger.get_order, request.order_id, request.account_id)
        return quota_service_pb2.GetOrderResponse(order=order_to_proto(order))

    async def ListOrders(
        self, request: quota_service_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.ListOrdersResponse:
        page = await asyncio.to_thread(
            self._ledger.list_orders, request.account_id, request.page_size, request.page_token
        )
        return quota_service_pb2.ListOrdersResponse(
            orders=[order_to_proto(order) for order in page.items], next_page_token=page.next_page_token
        )

    async def CancelOrder(
        self, request: quota_service_pb2.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.CancelOrderResponse:
        order = await asyncio.to_thread(self._ledger.cancel_order, request.order_id, request.account_id)
        return quota_service_pb2.CancelOrderResponse(order=order_to_proto(order))

    async def ConfirmPayment(
        self, request: quota_service_pb2.ConfirmPaymentRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.ConfirmPaymentResponse:
        return await self._single("confirm_payment", request)  # type: ignore[no-any-return]

    def _start_confirm_payment(
        self, request: quota_service_pb2.ConfirmPaymentRequest
    ) -> Future[tuple[Order, bool, str | None]]:
        return self._ledger.confirm_payment_later(request.provider, request.payload, request.signature)

    async def _answer_confirm_payment(
        self, result: tuple[Order, bool, str | None]
    ) -> quota_service_pb2.ConfirmPaymentResponse:
        order, replayed, refund_id = result
        if refund_id is not None:
            # The payment bought nothing: its money goes back now (or with the next sweep).
            await asyncio.to_thread(self._ledger.return_money, refund_id)
        return quota_service_pb2.ConfirmPaymentResponse(order=order_to_proto(order), replayed=replayed)

    async def RefundOrder(
        self, request: quota_service_pb2.RefundOrderRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.RefundOrderResponse:
        refund, order = await asyncio.to_thread(
            self._ledger.refund_order,
            request.order_id,
            request.account_id,
            request.quantity,
            request.reason,
            request.idempotency_key,
        )
        return quota_service_pb2.RefundOrderResponse(
            refund=refund_to_proto(refund), order=order_to_proto(order)
        )

    async def GetBalance(
        self, request: quota_service_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.GetBalanceResponse:
        balance = await asyncio.to_thread(self._ledger.get_balance, request.account_id)
        return quota_service_pb2.GetBalanceResponse(balance=balance_to_proto(balance))

    async def TransferQuota(
        self, request: quota_service_pb2.TransferQuotaRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.TransferQuotaResponse:
        channel = enum_from_proto(Channel, request.channel, "channel")
        transfer = await asyncio.to_thread(
            self._ledger.transfer_quota,
            request.from_account_id,
            request.to_account_id,
            request.quantity,
            request.idempotency_key,
            channel,
        )
        return quota_service_pb2.TransferQuotaResponse(transfer=transfer_to_proto(transfer))

    async def Audit(
        self, request: quota_service_pb2.AuditRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.AuditResponse:
        events, chain_problems, book_problems = await asyncio.to_thread(self._ledger.run_audit)
        return quota_service_pb2.AuditResponse(
            events=events, chain_problems=chain_problems, book_problems=book_problems
        )

    async def Reserve(
        self, request: quota_service_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.ReserveResponse:
        return await self._single("reserve", request)  # type: ignore[no-any-return]

    def _start_reserve(self, request: quota_service_pb2.ReserveRequest) -> Future[tuple[Hold, bool]]:
        channel = enum_from_proto(Channel, request.channel, "channel")
        metadata = metadata_from_proto(request.metadata)
        return self._ledger.reserve_later(
            request.account_id,
            request.idempotency_key,
            request.document_sha256,
            metadata,
            channel,
            request.request_sha256,
        )

    async def _answer_reserve(self, result: tuple[Hold, bool]) -> quota_service_pb2.ReserveResponse:
        hold, replayed = result
        return quota_service_pb2.ReserveResponse(hold=hold_to_proto(hold), replayed=replayed)

    async def Commit(
        self, request: quota_service_pb2.CommitRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.CommitResponse:
        return await self._single("commit", request)  # type: ignore[no-any-return]

    def _start_commit(self, request: quota_service_pb2.CommitRequest) -> Future[Hold]:
        return self._ledger.commit_later(request.hold_id, request.stamped_sha256, request.document_ref)

    async def _answer_commit(self, hold: Hold) -> quota_service_pb2.CommitResponse:
        return quota_service_pb2.CommitResponse(hold=hold_to_proto(hold))

    async def Release(
        self, request: quota_service_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.ReleaseResponse:
        return await self._single("release", request)  # type: ignore[no-any-return]

    def _start_release(self, request: quota_service_pb2.ReleaseRequest) -> Future[Hold]:
        reason = enum_from_proto(ReleaseReason, request.reason, "reason")
        return self._ledger.release_later(request.hold_id, reason)

    async def _answer_release(self, hold: Hold) -> quota_service_pb2.ReleaseResponse:
        return quota_service_pb2.ReleaseResponse(hold=hold_to_proto(hold))

    async def GetHold(
        self, request: quota_service_pb2.GetHoldRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.GetHoldResponse:
        hold = await asyncio.to_thread(self._ledger.get_hold, request.hold_id, request.account_id)
        return quota_service_pb2.GetHoldResponse(hold=hold_to_proto(hold))

    async def ListHolds(
        self, request: quota_service_pb2.ListHoldsRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.ListHoldsResponse:
        page = await asyncio.to_thread(
            self._ledger.list_holds, request.account_id, request.page_size, request.page_token
        )
        return quota_service_pb2.ListHoldsResponse(
            holds=[hold_to_proto(hold) for hold in page.items], next_page_token=page.next_page_token
        )

    async def LookupSerial(
        self, request: quota_service_pb2.LookupSerialRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.LookupSerialResponse:
        record = await asyncio.to_thread(self._ledger.lookup_serial, request.serial)
        return quota_service_pb2.LookupSerialResponse(serial=serial_to_proto(record))

    async def ConfigureQuotaAccount(
        self, request: quota_service_pb2.ConfigureQuotaAccountRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.ConfigureQuotaAccountResponse:
        kind = enum_from_proto(Channel, request.kind, "kind")
        account = await asyncio.to_thread(
            self._ledger.configure_account,
            request.account_id,
            kind,
            request.pool_account_id,
            request.credit_limit_idr,
        )
        return quota_service_pb2.ConfigureQuotaAccountResponse(account=account_to_proto(account))

    async def GetQuotaAccount(
        self, request: quota_service_pb2.GetQuotaAccountRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.GetQuotaAccountResponse:
        account = await asyncio.to_thread(self._ledger.get_account, request.account_id)
        return quota_service_pb2.GetQuotaAccountResponse(account=account_to_proto(account))

    async def GetStatement(
        self, request: quota_service_pb2.GetStatementRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.GetStatementResponse:
        statement = await asyncio.to_thread(self._ledger.get_statement, request.account_id, request.period)
        return quota_service_pb2.GetStatementResponse(statement=statement_to_proto(statement))

    async def SettleStatement(
        self, request: quota_service_pb2.SettleStatementRequest, context: grpc.aio.ServicerContext
    ) -> quota_service_pb2.SettleStatementResponse:
        settlement = await asyncio.to_thread(
            self._ledger.settle_statement,
            request.account_id,
            request.amount_idr,
            request.reference,
            request.idempotency_key,
        )
        return quota_service_pb2.SettleStatementResponse(settlement=settlement_to_proto(settlement))
