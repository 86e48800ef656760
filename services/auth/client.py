"""Calling AuthService from a busy process: concurrent PIN checks travel together.

Every retail stamp checks the account's stamping PIN first; in a surge the gateway makes thousands
of these checks a second. BatchingAuthStub coalesces them into VerifyStampingPins calls (see
services/common/batching.py), and the auth service compares each batch in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import grpc

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.common.batching import Coalescer, call_error, item_error

log = logging.getLogger(__name__)

# How long checks go one call each after the auth service answered that it has no batch call.
OLD_AUTH_RETRY_S = 60.0


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
        window_s: float = 0.0,
    ) -> None:
        """window_s: how long a check may wait for company (see Coalescer)."""
        self._stub = stub
        self._batch_timeout_s = batch_timeout_s
        # Until when checks go one call each: the auth service had no VerifyStampingPins.
        self._one_by_one_until = float("-inf")
        self._batches = Coalescer(
            self._send, max_items=max_checks, max_in_flight=max_in_flight, window_s=window_s
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def VerifyStampingPin(
        self, request: auth_service_pb2.VerifyStampingPinRequest, timeout: float | None = None
    ) -> Awaitable[auth_service_pb2.VerifyStampingPinResponse]:
        return self._batches.call(request, timeout, wait=True)

    async def _send(self, checks: list[auth_service_pb2.VerifyStampingPinRequest]) -> Sequence[Any]:
        if time.monotonic() < self._one_by_one_until:
            return await self._send_one_by_one(checks)
        try:
            response = await self._stub.VerifyStampingPins(
                auth_service_pb2.VerifyStampingPinsRequest(checks=checks), timeout=self._batch_timeout_s
            )
        except grpc.aio.AioRpcError as failed:
            if failed.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            # An auth service from before VerifyStampingPins, while a rollout updates the gateway
            # first: stamping goes on with one call per check, and batches are tried again later.
            log.warning("auth has no VerifyStampingPins yet; checking PINs one call each for a while")
            self._one_by_one_until = time.monotonic() + OLD_AUTH_RETRY_S
            return await self._send_one_by_one(checks)
        return [
            result.check if result.WhichOneof("outcome") == "check" else item_error(result.error)
            for result in response.results
        ]

    async def _send_one_by_one(
        self, checks: list[auth_service_pb2.VerifyStampingPinRequest]
    ) -> Sequence[Any]:
        """Each check its own VerifyStampingPin call, side by side; each answers or fails alone."""
        answered = await asyncio.gather(
            *(self._stub.VerifyStampingPin(check, timeout=self._batch_timeout_s) for check in checks),
            return_exceptions=True,
        )
        return [
            outcome
            if not isinstance(outcome, BaseException) or isinstance(outcome, grpc.aio.AioRpcError)
            else call_error(grpc.StatusCode.UNAVAILABLE, f"PIN check failed: {outcome!r}")
            for outcome in answered
        ]
