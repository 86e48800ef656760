"""Waiting, from a test's event loop, for something another task or process does."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T | None] | None], timeout_s: float = 60.0) -> T:
    """Poll check until it returns something truthy, for at most timeout_s; a check may be a
    coroutine function (a question to a service), awaited each time."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)
