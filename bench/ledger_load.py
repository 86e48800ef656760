"""The load clients of bench/ledger.py: processes that call QuotaService as fast as it answers.

Each client runs grpc.aio workers, each with one operation in flight at a time and a fresh
idempotency key per operation, over accounts taken round-robin. A warm-up comes first; then the
client waits at a barrier shared with the other clients and the bench, so every measured phase
starts together. Both phases stop at their count or their time limit, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import grpc

from emeterai.v1 import common_pb2, ledger_pb2, quota_service_pb2_grpc
from emeterai.v1 import quota_service_pb2 as pb
from services.common.clients import ServiceTokenSource, service_channel
from services.quota.client import BatchingQuotaStub
from services.quota.models import Channel, Order, OrderStatus
from services.quota.payments import SandboxProvider
from services.quota.servicer import enum_from_proto

SERVICE_NAME = "bench-ledger"
CALL_TIMEOUT_S = 30.0
# Long enough for every client process to start and warm up.
BARRIER_TIMEOUT_S = 120.0
METADATA = common_pb2.DocumentMetadata(
    type=common_pb2.DOCUMENT_TYPE_AGREEMENT, name="Perjanjian sewa", date="2025-03-01", value_idr=10_000_000
)


class OperationFailed(Exception):
    """A call failed, or answered something the books cannot explain; label names which and how."""

    def __init__(self, label: str, details: str) -> None:
        super().__init__(f"{label}: {details}")
        self.label = label
        self.details = details


@dataclass
class Caller:
    """QuotaService as a caller with a service identity sees it, and the sandbox payer beside it."""

    # The plain stub, or the BatchingQuotaStub around it.
    stub: Any
    provider: SandboxProvider

    async def call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise OperationFailed(f"{method} {exc.code().name}", exc.details() or "") from None


async def reserve_and_commit(caller: Caller, account: str, key: str) -> None:
    reserved = await caller.call(
        "Reserve",
        pb.ReserveRequest(
            account_id=account,
            idempotency_key=key,
            document_sha256=os.urandom(32),
            metadata=METADATA,
            channel=common_pb2.CHANNEL_RETAIL,
        ),
    )
    if reserved.replayed:
        raise OperationFailed("Reserve replayed", f"the fresh key {key} was answered as a replay")
    hold_id = reserved.hold.hold_id
    try:
        committed = await caller.call(
            "Commit", pb.CommitRequest(hold_id=hold_id, stamped_sha256=os.urandom(32))
        )
    except OperationFailed:
        # As the gateway would: give the unit back, so a failed pair leaves the balance unchanged.
        with contextlib.suppress(OperationFailed):
            await caller.call(
                "Release", pb.ReleaseRequest(hold_id=hold_id, reason=ledger_pb2.RELEASE_REASON_CANCELLED)
            )
        raise
    if committed.hold.status != ledger_pb2.HOLD_STATUS_COMMITTED:
        raise OperationFailed("Commit status", ledger_pb2.HoldStatus.Name(committed.hold.status))


async def buy(caller: Caller, account: str, key: str, quantity: int = 1) -> None:
    """Order quantity units for account and pay them with the sandbox provider's signed webhook."""
    created = await caller.call(
        "CreateOrder",
        pb.CreateOrderRequest(
            account_id=account, quantity=quantity, idempotency_key=key, channel=common_pb2.CHANNEL_RETAIL
        ),
    )
    if created.replayed:
        raise OperationFailed("CreateOrder replayed", f"the fresh key {key} was answered as a replay")
    payload, signature = caller.provider.pay(_order_from_proto(created.order))
    confirmed = await caller.call(
        "ConfirmPayment",
        pb.ConfirmPaymentRequest(provider=caller.provider.name, payload=payload, signature=signature),
    )
    if confirmed.replayed or confirmed.order.status != ledger_pb2.ORDER_STATUS_PAID:
        status = ledger_pb2.OrderStatus.Name(confirmed.order.status)
        raise OperationFailed("ConfirmPayment answer", f"{status}, replayed={confirmed.replayed}")


async def read_balance_twice(caller: Caller, account: str, key: str) -> None:
    for _ in range(2):
        await caller.call("GetBalance", pb.GetBalanceRequest(account_id=account))


OPERATIONS: dict[str, Callable[[Caller, str, str], Awaitable[None]]] = {
    "pair": reserve_and_commit,
    "order": buy,
    "balance": read_balance_twice,
}


def _order_from_proto(order: ledger_pb2.Order) -> Order:
    """The domain order the sandbox provider signs a payment for, from the service's answer."""
    return Order(
        order_id=order.order_id,
        account_id=order.account_id,
        quantity=order.quantity,
        unit_price_idr=order.unit_price_idr,
        amount_idr=order.amount_idr,
        status=enum_from_proto(OrderStatus, order.status, "status"),
        payment_provider=order.payment_provider,
        payment_reference=order.payment_reference,
        payment_url=order.payment_url,
        channel=enum_from_proto(Channel, order.channel, "channel"),
        created_at=order.created_at.ToDatetime(tzinfo=UTC),
        expires_at=order.expires_at.ToDatetime(tzinfo=UTC),
        paid_at=order.paid_at.ToDatetime(tzinfo=UTC) if order.HasField("paid_at") else None,
        refunded_quantity=order.refunded_quantity,
    )


@dataclass(frozen=True)
class Load:
    """What one load client does: the operation, on which accounts, how many, for how long."""

    operation: str  # a key of OPERATIONS
    # The quota replicas; client i calls replica i modulo their number.
    quota_addresses: tuple[str, ...]
    auth_address: str
    service_secret: str
    webhook_secret: str
    accounts: tuple[str, ...]
    workers: int
    warmup: int
    count: int
    # The most time the warm-up, and then the measured phase, may take.
    seconds: float
    # Through BatchingQuotaStub, as the gateway calls the ledger; else one gRPC call per operation.
    batching: bool = True


@dataclass
class ClientReport:
    done: int = 0
    started: float = 0.0
    ended: float = 0.0
    cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    # Successful operations per account, warm-up included: what the books must show.
    per_account: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)


def run_client(load: Load, index: int, clients: int, barrier: Any, reports: Any) -> None:
    """A load client process: warm up, wait at the barrier with the others, measure, report."""
    try:
        reports.put(asyncio.run(_drive(load, index, clients, barrier)))
    except BaseException as exc:
        barrier.abort()
        reports.put(f"load client {index} failed: {type(exc).__name__}: {exc}")


async def _drive(load: Load, index: int, clients: int, barrier: Any) -> ClientReport:
    tokens = ServiceTokenSource(load.auth_address, SERVICE_NAME, load.service_secret)
    provider = SandboxProvider(load.webhook_secret.encode())
    channel = service_channel(load.quota_addresses[index % len(load.quota_addresses)], tokens)
    stub: Any = quota_service_pb2_grpc.QuotaServiceStub(channel)
    if load.batching:
        stub = BatchingQuotaStub(stub)
    caller = Caller(stub, provider)
    operation = OPERATIONS[load.operation]
    report = ClientReport()
    run = secrets.token_hex(4)
    # Continues from the warm-up into the measured phase, so keys never repeat and the accounts
    # stay evenly used.
    sequence = itertools.count()
    issued = 0

    async def work(limit: int, deadline: float, timed: bool) -> None:
        nonlocal issued
        while issued < limit and time.monotonic() < deadline:
            issued += 1
            n = next(sequence)
            account = load.accounts[(n * clients + index) % len(load.accounts)]
            started = time.perf_counter()
            try:
                await operation(caller, account, f"bench-{run}-{index}-{n}")
            except OperationFailed as exc:
                report.errors[exc.label] += 1
                report.error_samples.setdefault(exc.label, exc.details[:200])
                continue
            report.per_account[account] += 1
            if timed:
                report.latencies.append(time.perf_counter() - started)
                report.done += 1

    async def phase(limit: int, timed: bool) -> None:
        nonlocal issued
        issued = 0
        deadline = time.monotonic() + load.seconds
        await asyncio.gather(*(work(limit, deadline, timed) for _ in range(load.workers)))

    try:
        await tokens.token()  # before the clock starts
        await phase(load.warmup, timed=False)
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_S + load.seconds)
        report.started, cpu_started = time.monotonic(), time.process_time()
        await phase(load.count, timed=True)
        report.ended, report.cpu_s = time.monotonic(), time.process_time() - cpu_started
    finally:
        await channel.close()
        await tokens.close()
    return report
