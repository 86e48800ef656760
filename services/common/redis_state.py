"""Connecting to the Redis that holds state shared by replicas (EMETERAI_REDIS_URL): one place for
the timeouts, so a Redis that hangs fails a call in seconds instead of holding it."""

from __future__ import annotations

import redis
import redis.asyncio

_TIMEOUTS = {"socket_timeout": 2, "socket_connect_timeout": 2}


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, **_TIMEOUTS)


def async_redis_client(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(url, **_TIMEOUTS)
