"""Bounds on clients that are slow on purpose: a connection held open costs a socket and a task
while it lasts, and uvicorn by itself waits for ever for a request's headers and body.

- Headers (`bounded_http_protocol`): a connection that has not finished a request's headers within
  EMETERAI_HTTP_HEADER_TIMEOUT_S of connecting, or of starting the request, is closed. That covers
  one that connects and says nothing, and one that trickles its headers a byte at a time.
- A body nobody reads: a connection still sending the request's body when the answer starts (a
  refusal made before the body was read) is closed after the answer rather than drained, and the
  answer says `Connection: close`.
- A body being read (`BodyTimeout`): the time a route waits on the client for its body is bounded
  by EMETERAI_HTTP_BODY_TIMEOUT_S, plus a second for every MIN_UPLOAD_RATE bytes that did arrive,
  as Apache's mod_reqtimeout does. A steady upload on a poor line goes on; a trickle is answered
  408 and its connection closed. Time the gateway itself takes (admission queues, parsing) is not
  counted against the client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.gateway import problems

# Slower than any mobile line still worth serving (64 kbit/s).
MIN_UPLOAD_RATE = 8 * 1024
# Writes of one step joined into one send up to this size: a larger answer (a stamped PDF) is not
# copied to save a send, and goes out as it is written.
JOIN_AT_MOST = 64 * 1024


def bounded_http_protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, with the header bound and unread bodies cut off."""

    class BoundedHttpProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._headers_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._writes = OneSendPerStep(transport)
            super().connection_made(self._writes)  # type: ignore[arg-type]
            self._await_headers()

        def eof_received(self) -> bool | None:
            # A client that sent its request and shut its side: asyncio closes the transport
            # itself once this returns, so the answer written in this step must go out first.
            self._writes.send_pending()
            return super().eof_received()

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_done()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._await_headers()

        def on_headers_complete(self) -> None:
            self._headers_done()
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is None:
                return
            answer = cycle.send

            async def send(message: Any) -> None:
                if message["type"] == "http.response.start" and cycle.more_body:
                    # Answered before its body is in (a refusal that needs none): the connection
                    # closes after this answer, and says so, so the client opens a new one for
                    # its next request rather than send it into a connection being closed.
                    cycle.keep_alive = False
                await answer(message)

            cycle.send = send  # type: ignore[method-assign]

        def on_response_complete(self) -> None:
            unread = self.cycle is not None and self.cycle.more_body
            super().on_response_complete()
            if unread and not self.transport.is_closing():
                self.transport.close()

        def _await_headers(self) -> None:
            if self._headers_timer is None:
                self._headers_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _headers_done(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

        def _headers_too_slow(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return BoundedHttpProtocol


class OneSendPerStep:
    """A connection's transport whose writes of one event-loop step go out in one send.

    uvicorn writes an answer's status line and headers, then its body, each at once: two system
    calls and, with Nagle off as asyncio sets it, two packets the client is woken for. In a surge
    most answers are a small 429, and those sends were a sixth of the gateway's CPU. Whatever is
    written in one step (an answer's two messages, sent without a wait between them) is joined and
    sent at the end of that step, or at once when it passes JOIN_AT_MOST, so a large answer still
    meets uvicorn's back-pressure as it would unwrapped. Closing sends what is pending first, and
    so must whatever learns the peer shut its side (the protocol's eof_received); a transport
    that is closing or aborted gets nothing more.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.send_pending)
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        if self._pending_bytes > JOIN_AT_MOST:
            self.send_pending()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._pending_bytes

    def close(self) -> None:
        self.send_pending()
        self._transport.close()

    def write_eof(self) -> None:
        self.send_pending()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def send_pending(self) -> None:
        if not self._pending:
            return
        pending, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        if self._transport.is_closing():
            return
        if len(pending) > 1 and size <= JOIN_AT_MOST:
            pending = [b"".join(pending)]
        for data in pending:
            self._transport.write(data)


class BodyTimeout:
    """ASGI middleware bounding the time a route waits for the client's body (see the module)."""

    def __init__(self, app: Any, timeout_s: float, min_rate: int = MIN_UPLOAD_RATE) -> None:
        self._app = app
        self._timeout_s = timeout_s
        self._min_rate = min_rate

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        waited = 0.0
        arrived = 0
        expired = False
        answered = False

        async def bounded() -> Any:
            nonlocal waited, arrived, expired
            if expired:
                return {"type": "http.disconnect"}
            allowance = self._timeout_s + arrived / self._min_rate - waited
            started = loop.time()
            try:
                async with asyncio.timeout(max(allowance, 0)):
                    message = await receive()
            except TimeoutError:
                expired = True
                return {"type": "http.disconnect"}
            finally:
                waited += loop.time() - started
            if message["type"] == "http.request":
                arrived += len(message.get("body", b""))
            return message

        async def replaced(message: Any) -> None:
            nonlocal answered
            if not expired:
                answered = answered or message["type"] == "http.response.start"
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await self._refusal(scope, receive, send)

        try:
            await self._app(scope, bounded, replaced)
        except Exception:
            if not expired:
                raise
        if expired and not answered:
            await self._refusal(scope, receive, send)

    async def _refusal(self, scope: Any, receive: Any, send: Any) -> None:
        detail = "the request body arrived too slowly; send it again on a steadier connection"
        response = problems.problem(Request(scope), 408, problems.title_for(408), detail)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
