"""Calling QuotaService from a busy process: concurrent calls travel together in Batch calls.

BatchingQuotaStub coalesces the ledger calls a surge makes thousands of a second (see
services/common/batching.py); the ledger then runs each batch's items in one transaction as well
(group_commit.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from emeterai.v1 import quota_service_pb2, quota_service_pb2_grpc
from services.common.batching import Coalescer, item_error


class BatchingQuotaStub:
    """A QuotaServiceStub whose Reserve, Commit, Release, CreateOrder and ConfirmPayment coalesce
    into Batch calls; every other method is the plain stub's.

    Each coalesced call answers exactly as the single call would: its response, or the
    grpc.aio.AioRpcError with the status and message it would have failed with.
    """

    def __init__(
        self,
        stub: quota_service_pb2_grpc.QuotaServiceStub,
        *,
        max_items: int = 500,
        max_in_flight: int = 4,
        batch_timeout_s: float = 30.0,
        window_s: float = 0.0,
    ) -> None:
        """window_s: how long a stamp's Reserve, Commit or Release may wait for company (see
        Coalescer); orders and payments never wait for a window."""
        self._stub = stub
        self._batch_timeout_s = batch_timeout_s
        self._batches = Coalescer(
            self._send, max_items=max_items, max_in_flight=max_in_flight, window_s=window_s
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def Reserve(
        self, request: quota_service_pb2.ReserveRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.ReserveResponse]:
        return self._call(quota_service_pb2.BatchItem(reserve=request), timeout, wait=True)

    def Commit(
        self, request: quota_service_pb2.CommitRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.CommitResponse]:
        return self._call(quota_service_pb2.BatchItem(commit=request), timeout, wait=True)

    def Release(
        self, request: quota_service_pb2.ReleaseRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.ReleaseResponse]:
        return self._call(quota_service_pb2.BatchItem(release=request), timeout, wait=True)

    def CreateOrder(
        self, request: quota_service_pb2.CreateOrderRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.CreateOrderResponse]:
        return self._call(quota_service_pb2.BatchItem(create_order=request), timeout)

    def ConfirmPayment(
        self, request: quota_service_pb2.ConfirmPaymentRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.ConfirmPaymentResponse]:
        return self._call(quota_service_pb2.BatchItem(confirm_payment=request), timeout)

    def _call(
        self, item: quota_service_pb2.BatchItem, timeout: float | None, *, wait: bool = False
    ) -> Awaitable[Any]:
        return self._batches.call(item, timeout, wait=wait)

    async def _send(self, items: list[quota_service_pb2.BatchItem]) -> Sequence[Any]:
        response = await self._stub.Batch(
            quota_service_pb2.BatchRequest(items=items), timeout=self._batch_timeout_s
        )
        outcomes: list[Any] = []
        for result in response.results:
            outcome = result.WhichOneof("outcome")
            failed = outcome in ("error", None)
            outcomes.append(item_error(result.error) if failed else getattr(result, outcome))
        return outcomes
