"""Connecting to the Redis that holds state shared by replicas (EMETERAI_REDIS_URL): one place for
the timeouts, so a Redis that hangs fails a call in seconds instead of holding it."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import redis.asyncio

_TIMEOUTS = {"socket_timeout": 2, "socket_connect_timeout": 2}
# An asyncio process may have thousands of requests asking at once: they share this many
# connections, waiting up to the timeout for a free one, instead of failing when the pool is out.
ASYNC_MAX_CONNECTIONS = 32


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, **_TIMEOUTS)


def async_redis_client(url: str) -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=ASYNC_MAX_CONNECTIONS, timeout=2, **_TIMEOUTS
    )
    return redis.asyncio.Redis(connection_pool=pool)


class RedisPause:
    """After a call to Redis failed, Redis is not tried for `pause_s`: the callers use their
    fallback at once, instead of each waiting out the timeouts above while Redis is away."""

    def __init__(self, pause_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._pause_s = pause_s
        self._clock = clock
        self._until = 0.0

    @property
    def active(self) -> bool:
        return self._clock() < self._until

    def failed(self) -> None:
        """A call has just failed: pause from now."""
        self._until = self._clock() + self._pause_s
