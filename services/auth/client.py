"""Calling AuthService from a busy process: concurrent PIN checks travel together.

Every retail stamp checks the account's stamping PIN first; in a surge the gateway makes thousands
of these checks a second. BatchingAuthStub coalesces them into VerifyStampingPins calls (see
services/common/batching.py), and the auth service compares each batch in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.common.batching import Coalescer, item_error


class BatchingAuthStub:
    """An AuthServiceStub whose VerifyStampingPin coalesces into VerifyStampingPins calls; every
    other method is the plain stub's.

    Each check answers exactly as the single call would: its response, or the
    grpc.aio.AioRpcError with the status and message it would have failed with.
    """

    def __init__(
        self,
        stub: auth_service_pb2_grpc.AuthServiceStub,
        *,
        max_checks: int = 500,
        max_in_flight: int = 4,
        batch_timeout_s: float = 30.0,
    ) -> None:
        self._stub = stub
        self._batch_timeout_s = batch_timeout_s
        self._batches = Coalescer(self._send, max_items=max_checks, max_in_flight=max_in_flight)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def VerifyStampingPin(
        self, request: auth_service_pb2.VerifyStampingPinRequest, timeout: float | None = None
    ) -> Awaitable[auth_service_pb2.VerifyStampingPinResponse]:
        return self._batches.call(request, timeout)

    async def _send(self, checks: list[auth_service_pb2.VerifyStampingPinRequest]) -> Sequence[Any]:
        response = await self._stub.VerifyStampingPins(
            auth_service_pb2.VerifyStampingPinsRequest(checks=checks), timeout=self._batch_timeout_s
        )
        return [
            result.check if result.WhichOneof("outcome") == "check" else item_error(result.error)
            for result in response.results
        ]
