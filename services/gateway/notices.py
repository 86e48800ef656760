"""The degraded-mode notice as every gateway replica shows it: read from the auth service at most
every few seconds, and kept when the auth service cannot be reached, since a notice matters most
while something is down.

Kept on disk too (`keep`, a file beside the documents, which replicas may share): a gateway that
restarts while the auth service is away still shows the last notice read, instead of none.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from emeterai.v1 import auth_service_pb2

log = logging.getLogger(__name__)

# How stale a replica's notice may be.
REFRESH_S = 5.0


class NoticeBoard:
    def __init__(
        self, auth: Any, clock: Callable[[], float] = time.monotonic, keep: Path | None = None
    ) -> None:
        self._auth = auth
        self._clock = clock
        self._keep = keep
        self._notice = _read_kept(keep) if keep is not None else None
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
            notice = answer.notice if answer.HasField("notice") else None
            if notice != self._notice and self._keep is not None:
                # Only when it changes: a few bytes, rarely.
                _keep(self._keep, notice)
            self._notice = notice
        self._read_at = self._clock()


def _keep(path: Path, notice: auth_service_pb2.Notice | None) -> None:
    try:
        if notice is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Replicas sharing the folder each write a file of their own, then one rename: whoever
        # renames last, the file is one whole notice (they all read the same one).
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".partial")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json_format.MessageToJson(notice, preserving_proto_field_name=True))
        os.replace(partial, path)
    except OSError as exc:
        log.warning("notice not kept on disk", extra={"error": str(exc)})


def _read_kept(path: Path) -> auth_service_pb2.Notice | None:
    try:
        return json_format.Parse(path.read_text(encoding="utf-8"), auth_service_pb2.Notice())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, json_format.ParseError) as exc:
        log.warning("kept notice not readable; none until auth answers", extra={"error": str(exc)})
        return None
