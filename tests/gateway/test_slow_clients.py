"""The body timeout on its own, as ASGI: a stalled client is answered 408, a steady one is not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.gateway.slow_clients import BodyTimeout


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
