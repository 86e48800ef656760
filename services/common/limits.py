"""Counting requests per key in fixed windows: how many codes a phone may get in an hour, how many
requests one client address may make.

With Redis (EMETERAI_REDIS_URL) the counters are shared by every replica and survive a restart of
any of them; a window's counter is one key that expires with the window, and the count and its
expiry change in one Lua script, so concurrent replicas never lose a hit. Without Redis (the
single-node default) they live in this process, which is the whole deployment there.

Keys are hashed before they are stored: a limit keyed by phone number must not put phone numbers
in Redis's key space. When Redis cannot be reached, a hit is refused as Unavailable: the limits
guard what must not go unlimited (codes sent at our cost, guesses at codes).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from services.common.errors import Unavailable

KEY_PREFIX = "emeterai:limit:"

# KEYS[1] the window's counter; ARGV[1] the window in ms, ARGV[2] the limit. Returns 0 when the hit
# is allowed, else the ms until the window ends.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if count > tonumber(ARGV[2]) then
    local left = redis.call('PTTL', KEYS[1])
    if left < 0 then
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        left = tonumber(ARGV[1])
    end
    return left
end
return 0
"""


class RateLimiter(Protocol):
    def hit(self, name: str, key: str, limit: int, window_s: int) -> int:
        """Count one request for key under the limit called name: at most limit per window_s.

        Returns 0 when it is allowed, else the seconds until the window ends and requests are
        allowed again. A refused request counts too, so hammering does not shorten the wait.
        """
        ...


def _digest(name: str, key: str) -> str:
    return name + ":" + hashlib.sha256(key.encode()).hexdigest()[:32]


class MemoryRateLimiter:
    """Counters in this process: the single-node default."""

    # Windows kept before expired ones are swept out.
    _SWEEP_AT = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, name: str, key: str, limit: int, window_s: int) -> int:
        now = self._clock()
        counter = _digest(name, key)
        with self._lock:
            ends, count = self._windows.get(counter, (0.0, 0))
            if ends <= now:
                ends, count = now + window_s, 0
            count += 1
            self._windows[counter] = (ends, count)
            if len(self._windows) > self._SWEEP_AT:
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        return 0 if count <= limit else max(1, math.ceil(ends - now))


class RedisRateLimiter:
    """Counters in Redis, shared by every replica."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._hit = client.register_script(_HIT)

    def hit(self, name: str, key: str, limit: int, window_s: int) -> int:
        try:
            left_ms = int(self._hit(keys=[KEY_PREFIX + _digest(name, key)], args=[window_s * 1000, limit]))
        except redis.RedisError:
            # Closed, not open: what these limits guard (codes sent by SMS at our cost, guesses at
            # codes) must not go unlimited while Redis is away.
            raise Unavailable("request limits cannot be checked right now; try again shortly") from None
        return 0 if left_ms == 0 else max(1, math.ceil(left_ms / 1000))


def rate_limiter(client: redis.Redis | None) -> RateLimiter:
    """Redis-backed given a client (EMETERAI_REDIS_URL set), else in this process."""
    return MemoryRateLimiter() if client is None else RedisRateLimiter(client)
