"""The body timeout on its own, as ASGI: a stalled client is answered 408, a steady one is not; and
the transport that sends an answer's writes of one step together, over a loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from services.gateway.slow_clients import JOIN_AT_MOST, BodyTimeout, OneSendPerStep, bounded_http_protocol


async def _read_body(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client went away")
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d" % len(body)})


def _client(chunks: list[bytes], pause_s: float, stall: bool) -> Any:
    """A client sending `chunks` `pause_s` apart, then stalling for good or finishing."""
    queue = list(chunks)

    async def receive() -> Any:
        await asyncio.sleep(pause_s)
        if not queue:
            await asyncio.Event().wait()
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": stall or bool(queue)}

    return receive


async def _call(app: Any, receive: Any) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/verify", "headers": [], "query_string": b""}
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    return sent


async def test_a_stalled_body_is_answered_408_and_closed() -> None:
    app = BodyTimeout(_read_body, timeout_s=0.3, min_rate=1024)
    started = asyncio.get_running_loop().time()
    sent = await _call(app, _client([b"x" * 100], pause_s=0.01, stall=True))
    assert asyncio.get_running_loop().time() - started < 1.5
    start, body = sent
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert "too slowly" in json.loads(body["body"])["detail"]


async def test_a_steady_body_may_take_longer_than_the_timeout() -> None:
    # 10 chunks 0.1 s apart: 1 s in all, over the 0.3 s timeout, but each 1 KiB earns a second.
    app = BodyTimeout(_read_body, timeout_s=0.3, min_rate=1024)
    sent = await _call(app, _client([b"x" * 1024] * 10, pause_s=0.1, stall=False))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"10240"


async def test_a_trickle_runs_out_of_allowance() -> None:
    # One byte every 0.1 s earns a millisecond each: the 0.3 s runs out after a few.
    app = BodyTimeout(_read_body, timeout_s=0.3, min_rate=1024)
    sent = await _call(app, _client([b"x"] * 100, pause_s=0.1, stall=False))
    assert sent[0]["status"] == 408


class _Counted:
    """A real transport, counting the writes it is asked for."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def _one_connection(act: Any) -> tuple[bytes, list[int]]:
    """A loopback server whose one connection's transport goes through OneSendPerStep and `act`;
    what the client read until the server closed, and the server's writes."""
    counted: list[_Counted] = []

    class Serving(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            counted.append(_Counted(transport))  # type: ignore[arg-type]
            act(OneSendPerStep(counted[-1]))

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Serving, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            received = await asyncio.wait_for(reader.read(), timeout=5)
        except ConnectionResetError:
            # An abort resets the connection.
            received = b""
        writer.close()
    finally:
        server.close()
    return received, counted[0].writes


async def test_writes_of_one_step_go_in_one_send_and_closing_sends_them_first() -> None:
    head, body = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\n", b"{}"

    def answer(transport: OneSendPerStep) -> None:
        transport.write(head)
        transport.write(body)
        transport.close()

    received, writes = await _one_connection(answer)
    assert received == head + body
    assert writes == [len(head + body)]


async def test_writes_of_later_steps_and_a_large_body_go_in_sends_of_their_own() -> None:
    large = b"%" * (JOIN_AT_MOST + 1)

    def answer(transport: OneSendPerStep) -> None:
        transport.write(b"head")
        transport.write(large)

        def later() -> None:
            transport.write(b"tail")
            asyncio.get_running_loop().call_soon(transport.close)

        asyncio.get_running_loop().call_soon(later)

    received, writes = await _one_connection(answer)
    assert received == b"head" + large + b"tail"
    assert writes == [4, len(large), 4]


async def test_aborting_drops_what_is_pending() -> None:
    def answer(transport: OneSendPerStep) -> None:
        transport.write(b"never sent")
        transport.abort()

    received, writes = await _one_connection(answer)
    assert received == b""
    assert writes == []


def _refuse(status: int) -> Any:
    """An application that answers every request at once, from its headers alone."""

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    return refuse


@contextlib.asynccontextmanager
async def _served(app: Any) -> AsyncIterator[int]:
    """app through uvicorn with the gateway's protocol, on a free loopback port (yielded)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="off", http=bounded_http_protocol(10.0)
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def test_a_client_that_shuts_its_side_after_the_request_still_gets_the_answer() -> None:
    """Through uvicorn with the gateway's protocol: the answer is written in the step that also
    sees the client's end of sending, after which asyncio closes the connection by itself."""
    async with _served(_refuse(429)) as port:

        def half_closing_client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(b"GET /v1/stamps HTTP/1.1\r\nHost: gateway\r\n\r\n")
                connection.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := connection.recv(65536):
                    received += chunk
                return received

        for _ in range(5):
            answer = await asyncio.to_thread(half_closing_client)
            assert answer.startswith(b"HTTP/1.1 429") and answer.endswith(b"\r\n\r\n{}")


async def test_an_answer_before_the_body_is_in_closes_the_connection_and_says_so() -> None:
    """A refusal made from the headers alone: the client still sending its body is told the
    connection closes, so it sends its next request on a new one; with the body in, it stays open."""
    request = b"POST /v1/stamps HTTP/1.1\r\nHost: gateway\r\nContent-Length: 9\r\n\r\n"
    async with _served(_refuse(400)) as port:

        def client(body_first: bool) -> tuple[bytes, bool]:
            """The answer's head, and whether the server closed after it."""
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(request + (b"%PDF-1.7\n" if body_first else b""))
                received = b""
                while b"\r\n\r\n{}" not in received:
                    received += connection.recv(65536)
                connection.settimeout(1.0)
                try:
                    closed = connection.recv(65536) == b""
                except TimeoutError:
                    closed = False
                return received.split(b"\r\n\r\n")[0].lower(), closed

        head, closed = await asyncio.to_thread(client, False)
        assert head.startswith(b"http/1.1 400") and b"connection: close" in head.split(b"\r\n")
        assert closed
        head, closed = await asyncio.to_thread(client, True)
        assert head.startswith(b"http/1.1 400") and b"connection: close" not in head.split(b"\r\n")
        assert not closed
