"""Calling QuotaService from a busy process: concurrent calls travel together in Batch calls.

A gRPC call costs its caller and the ledger more CPU than the ledger's share of the work, and in a
surge the gateway makes thousands a second. BatchingQuotaStub coalesces them: while a Batch call is
in flight, new calls wait and go together in the next one. There is no timer, so a lone call goes
at once and a busy process sends a few large batches; the ledger then runs each batch's items in
one transaction as well (group_commit.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc

from emeterai.v1 import quota_service_pb2, quota_service_pb2_grpc

_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


def _error(code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=message)


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
    ) -> None:
        self._stub = stub
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._batch_timeout_s = batch_timeout_s
        self._waiting: list[tuple[quota_service_pb2.BatchItem, asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def Reserve(
        self, request: quota_service_pb2.ReserveRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.ReserveResponse]:
        return self._call(quota_service_pb2.BatchItem(reserve=request), timeout)

    def Commit(
        self, request: quota_service_pb2.CommitRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.CommitResponse]:
        return self._call(quota_service_pb2.BatchItem(commit=request), timeout)

    def Release(
        self, request: quota_service_pb2.ReleaseRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.ReleaseResponse]:
        return self._call(quota_service_pb2.BatchItem(release=request), timeout)

    def CreateOrder(
        self, request: quota_service_pb2.CreateOrderRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.CreateOrderResponse]:
        return self._call(quota_service_pb2.BatchItem(create_order=request), timeout)

    def ConfirmPayment(
        self, request: quota_service_pb2.ConfirmPaymentRequest, timeout: float | None = None
    ) -> Awaitable[quota_service_pb2.ConfirmPaymentResponse]:
        return self._call(quota_service_pb2.BatchItem(confirm_payment=request), timeout)

    async def _call(self, item: quota_service_pb2.BatchItem, timeout: float | None) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._send_waiting()
        try:
            # Shielded: a caller that gives up does not cancel the batch its item travels in.
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    def _send_waiting(self) -> None:
        while self._waiting and self._in_flight < self._max_in_flight:
            items, self._waiting = self._waiting[: self._max_items], self._waiting[self._max_items :]
            self._in_flight += 1
            task = asyncio.create_task(self._send(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, items: list[tuple[quota_service_pb2.BatchItem, asyncio.Future[Any]]]) -> None:
        try:
            response = await self._stub.Batch(
                quota_service_pb2.BatchRequest(items=[item for item, _ in items]),
                timeout=self._batch_timeout_s,
            )
            for (_, future), result in zip(items, response.results, strict=True):
                if future.done():
                    continue
                outcome = result.WhichOneof("outcome")
                if outcome == "error":
                    code = _STATUS_BY_NUMBER.get(result.error.code, grpc.StatusCode.UNKNOWN)
                    future.set_exception(_error(code, result.error.message))
                else:
                    future.set_result(getattr(result, outcome or "error"))
        except grpc.aio.AioRpcError as failure:
            for _, future in items:
                if not future.done():
                    future.set_exception(_error(failure.code(), failure.details() or ""))
        except BaseException as failure:
            for _, future in items:
                if not future.done():
                    future.set_exception(
                        _error(grpc.StatusCode.UNAVAILABLE, f"batch call failed: {failure!r}")
                    )
            raise
        finally:
            self._in_flight -= 1
            self._send_waiting()
