"""The degraded-mode notice as every gateway replica shows it: read from the auth service at most
every few seconds, and kept when the auth service cannot be reached, since a notice matters most
while something is down."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from emeterai.v1 import auth_service_pb2

log = logging.getLogger(__name__)

# How stale a replica's notice may be.
REFRESH_S = 5.0


class NoticeBoard:
    def __init__(self, auth: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._auth = auth
        self._clock = clock
        self._notice: auth_service_pb2.Notice | None = None
        self._read_at = float("-inf")

    async def current(self) -> auth_service_pb2.Notice | None:
        if self._clock() - self._read_at >= REFRESH_S:
            await self.refresh()
        return self._notice

    async def refresh(self) -> None:
        try:
            answer = await self._auth.GetNotice(auth_service_pb2.GetNoticeRequest(), timeout=2)
        except grpc.aio.AioRpcError as exc:
            # The last notice known stays up; an outage is when it is needed.
            log.warning("notice not refreshed", extra={"code": exc.code().name})
        else:
            self._notice = answer.notice if answer.HasField("notice") else None
        self._read_at = self._clock()
