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
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio

from services.common.errors import Unavailable
from services.common.redis_state import RedisPause

log = logging.getLogger(__name__)

KEY_PREFIX = "emeterai:limit:"
BUCKET_PREFIX = "emeterai:bucket:"

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


# Token buckets: a steady rate with room for bursts, per account, for the gateway's limits.
#
# KEYS[1] the bucket (a hash of tokens and the time they were counted); ARGV[1] tokens added per
# second, ARGV[2] the bucket's size; ARGV[3] 'take', or 'put-back': a token back for a request
# refused after it took one, for reasons of ours, not its pace (never past the size; a bucket that
# is gone was full, and stays so). Redis's own clock is used, so replicas with skewed clocks share
# one bucket correctly. Returns 0 when a token was taken (or put back), else the ms until one is
# there.
_BUCKET = """
local rate = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local taking = ARGV[3] == 'take'
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if not taking and not held[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = tonumber(held[1]) or size
local at = tonumber(held[2]) or now
tokens = math.min(size, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if not taking then
    tokens = math.min(size, tokens + 1)
elseif tokens >= 1 then
    tokens = tokens - 1
else
    wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(size * 1000 / rate) + 1000)
return wait
"""


@dataclass(frozen=True)
class BucketRule:
    """`rate` tokens a second, at most `burst` saved up."""

    name: str
    rate: float
    burst: int


# A rule's buckets: bucket -> (tokens, when counted).
_Buckets = dict[str, tuple[float, float]]


def _refilled(rule: BucketRule, counted: tuple[float, float] | None, now: float) -> float:
    """The tokens in a bucket at `now`, from what it held when last counted (None: never, full)."""
    if counted is None:
        return float(rule.burst)
    tokens, at = counted
    return min(float(rule.burst), tokens + (now - at) * rule.rate)


class MemoryTokenBuckets:
    """Buckets in this process: the single-node default, and the fallback while Redis is away."""

    _SWEEP_AT = 50_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Buckets] = {}

    async def take(self, rule: BucketRule, key: str) -> float:
        return self.take_now(rule, key)

    def take_now(self, rule: BucketRule, key: str) -> float:
        now = self._clock()
        buckets = self._buckets.setdefault(rule.name, {})
        bucket = _digest(rule.name, key)
        tokens = _refilled(rule, buckets.get(bucket), now)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rule.rate
        self._remember(rule, buckets, bucket, tokens, now)
        return wait

    async def put_back(self, rule: BucketRule, key: str) -> None:
        self.put_back_now(rule, key)

    def put_back_now(self, rule: BucketRule, key: str) -> None:
        """One token back into key's bucket (never past the burst): a request that took it was
        refused for a reason that is not its pace."""
        buckets = self._buckets.get(rule.name, {})
        bucket = _digest(rule.name, key)
        if bucket not in buckets:
            # Swept out, so full.
            return
        now = self._clock()
        tokens = min(float(rule.burst), _refilled(rule, buckets[bucket], now) + 1)
        self._remember(rule, buckets, bucket, tokens, now)

    def _remember(self, rule: BucketRule, buckets: _Buckets, bucket: str, tokens: float, now: float) -> None:
        buckets[bucket] = (tokens, now)
        if len(buckets) > self._SWEEP_AT:
            # A full bucket is the same as no bucket.
            self._buckets[rule.name] = {
                k: v for k, v in buckets.items() if v[0] + (now - v[1]) * rule.rate < rule.burst
            }


class RedisTokenBuckets:
    """Buckets in Redis, shared by every gateway replica; one Lua script takes a token atomically.

    When Redis cannot be reached the buckets fall back to this process for `fallback_s`, then
    Redis is tried again. Open, not closed: these limits keep one account from taking more than
    its share, while the bulkheads and the stamp gate protect capacity on their own; refusing
    every stamp while Redis restarts would be the outage this system exists to avoid. The
    fallback enforces each limit per replica, so an account may get up to N times its rate
    across N replicas until Redis is back.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        fallback_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._bucket = client.register_script(_BUCKET)
        self._away = RedisPause(fallback_s, clock)
        self._local = MemoryTokenBuckets(clock)

    @property
    def degraded(self) -> bool:
        return self._away.active

    async def take(self, rule: BucketRule, key: str) -> float:
        """Take a token for key: 0 when allowed, else the seconds until one is there."""
        if self.degraded:
            return self._local.take_now(rule, key)
        try:
            wait_ms = int(await self._run(rule, key, "take"))
        except redis.RedisError:
            log.warning("token buckets fall back to this replica while Redis is away")
            self._away.failed()
            return self._local.take_now(rule, key)
        return wait_ms / 1000

    async def put_back(self, rule: BucketRule, key: str) -> None:
        """One token back into key's bucket, in the store in use now: Redis, or this replica's
        while Redis is away. A token taken just before a switch between them goes back to the
        other, which is one token off for that account, at most."""
        if self.degraded:
            self._local.put_back_now(rule, key)
            return
        try:
            await self._run(rule, key, "put-back")
        except redis.RedisError:
            # The token stays spent: the caller's refusal stands either way, and the account is
            # short of one token for a moment at most.
            log.warning("a token could not be put back while Redis is away")

    async def _run(self, rule: BucketRule, key: str, operation: str) -> Any:
        return await self._bucket(
            keys=[BUCKET_PREFIX + _digest(rule.name, key)], args=[rule.rate, rule.burst, operation]
        )


TokenBuckets = MemoryTokenBuckets | RedisTokenBuckets


def token_buckets(client: redis.asyncio.Redis | None) -> TokenBuckets:
    """Redis-backed given a client (EMETERAI_REDIS_URL set), else in this process."""
    return MemoryTokenBuckets() if client is None else RedisTokenBuckets(client)
