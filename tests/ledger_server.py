"""A real ledger (QuotaService on SQLite, the sandbox payment provider) as a grpc.aio server on
127.0.0.1, for the gateway's tests of what it asks the ledger; and buying quota through it as a
payer would, an order then its provider's signed confirmation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from emeterai.v1 import common_pb2, quota_service_pb2, quota_service_pb2_grpc
from services.common.interceptors import ErrorInterceptor
from services.quota.db import create_ledger_engine
from services.quota.ledger import Ledger
from services.quota.payments import SandboxProvider
from services.quota.servicer import QUOTA_STATUS_CODES, QuotaServicer


@dataclass
class RunningLedger:
    address: str
    ledger: Ledger
    provider: SandboxProvider

    async def fund(
        self,
        quota: Any,
        account_id: str,
        quantity: int,
        channel: common_pb2.Channel.ValueType,
        idempotency_key: str = "buy",
    ) -> None:
        """`quantity` units bought and paid for `account_id`, through the QuotaService stub `quota`."""
        created = await quota.CreateOrder(
            quota_service_pb2.CreateOrderRequest(
                account_id=account_id, quantity=quantity, idempotency_key=idempotency_key, channel=channel
            )
        )
        payload, signature = self.provider.pay(self.ledger.get_order(created.order.order_id))
        await quota.ConfirmPayment(
            quota_service_pb2.ConfirmPaymentRequest(provider="sandbox", payload=payload, signature=signature)
        )


@contextlib.asynccontextmanager
async def running_ledger(database: Path) -> AsyncIterator[RunningLedger]:
    provider = SandboxProvider(b"test-payment-secret")
    ledger = Ledger(create_ledger_engine(f"sqlite:///{database}"), payment_provider=provider)
    server = grpc.aio.server(interceptors=[ErrorInterceptor(QUOTA_STATUS_CODES)])
    quota_service_pb2_grpc.add_QuotaServiceServicer_to_server(QuotaServicer(ledger), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield RunningLedger(f"127.0.0.1:{port}", ledger, provider)
    finally:
        await server.stop(None)
        ledger.close()
