"""Request limits: the single-node counters and the Redis ones every replica shares (real Redis)."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from services.common.errors import Unavailable
from services.common.limits import (
    BUCKET_PREFIX,
    KEY_PREFIX,
    BucketRule,
    MemoryRateLimiter,
    MemoryTokenBuckets,
    RateLimiter,
    RedisRateLimiter,
    RedisTokenBuckets,
    rate_limiter,
    token_buckets,
)
from services.common.redis_state import async_redis_client, redis_client
from tests.conftest import free_port


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest, ticks: Ticks) -> Iterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter(ticks)
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisRateLimiter(client)
    client.close()


def test_a_key_gets_its_limit_then_waits_for_the_window(limiter: RateLimiter) -> None:
    key = secrets.token_hex(8)
    assert [limiter.hit("codes", key, 3, 60) for _ in range(3)] == [0, 0, 0]
    wait = limiter.hit("codes", key, 3, 60)
    assert 1 <= wait <= 60
    # Other keys and other limits count apart.
    assert limiter.hit("codes", key + "-other", 3, 60) == 0
    assert limiter.hit("requests", key, 3, 60) == 0


def test_the_window_ends(ticks: Ticks) -> None:
    limiter = MemoryRateLimiter(ticks)
    assert [limiter.hit("codes", "k", 1, 60) for _ in range(2)] == [0, 60]
    ticks.now += 59.5
    assert limiter.hit("codes", "k", 1, 60) == 1
    ticks.now += 1
    assert limiter.hit("codes", "k", 1, 60) == 0


def test_a_redis_window_expires_with_its_key(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    limiter = RedisRateLimiter(client)
    key = "+6281234567890"
    name = "codes-" + secrets.token_hex(8)
    assert limiter.hit(name, key, 1, 1) == 0
    assert limiter.hit(name, key, 1, 1) == 1
    stored = list(client.scan_iter(f"{KEY_PREFIX}{name}:*", count=10_000))
    assert len(stored) == 1
    # Phone numbers and addresses are not stored as they are.
    assert key.encode() not in stored[0]
    assert 0 < client.pttl(stored[0]) <= 1000
    client.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_concurrent_hits_never_pass_more_than_the_limit(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if backend == "redis" else ""
    # Two limiters on Redis stand for two replicas.
    limiters = (
        [rate_limiter(redis_client(url)), rate_limiter(redis_client(url))]
        if url
        else [MemoryRateLimiter()] * 2
    )
    key = secrets.token_hex(8)
    allowed: list[int] = []
    lock = threading.Lock()

    def hammer(limiter: RateLimiter) -> None:
        for _ in range(50):
            if limiter.hit("codes", key, 20, 60) == 0:
                with lock:
                    allowed.append(1)

    threads = [threading.Thread(target=hammer, args=(limiters[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(allowed) == 20


def test_an_unreachable_redis_refuses_instead_of_letting_everything_through() -> None:
    limiter = rate_limiter(redis_client(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(Unavailable):
        limiter.hit("codes", "k", 5, 60)


RULE = BucketRule("stamps", rate=2.0, burst=3)


async def test_memory_token_bucket_allows_a_burst_then_the_rate(ticks: Ticks) -> None:
    buckets = MemoryTokenBuckets(ticks)
    assert [await buckets.take(RULE, "acct") for _ in range(3)] == [0, 0, 0]
    assert await buckets.take(RULE, "acct") == pytest.approx(0.5)
    assert await buckets.take(RULE, "other") == 0
    ticks.now += 0.5
    assert await buckets.take(RULE, "acct") == 0
    assert await buckets.take(RULE, "acct") > 0


async def test_a_token_put_back_is_there_for_the_next_take_but_never_past_the_burst(ticks: Ticks) -> None:
    buckets = MemoryTokenBuckets(ticks)
    # A bucket never taken from is full: nothing to put back.
    await buckets.put_back(RULE, "acct")
    assert [await buckets.take(RULE, "acct") for _ in range(3)] == [0, 0, 0]
    await buckets.put_back(RULE, "acct")
    assert await buckets.take(RULE, "acct") == 0
    assert await buckets.take(RULE, "acct") > 0
    ticks.now += 10
    await buckets.put_back(RULE, "acct")
    assert [await buckets.take(RULE, "acct") for _ in range(4)][-1] > 0


async def test_redis_takes_a_token_put_back_by_any_replica(redis_url: str) -> None:
    first, second = redis.asyncio.Redis.from_url(redis_url), redis.asyncio.Redis.from_url(redis_url)
    replicas = [RedisTokenBuckets(first), RedisTokenBuckets(second)]
    rule = BucketRule(f"stamps-{secrets.token_hex(4)}", rate=0.01, burst=2)
    # Nothing taken yet: putting back creates no bucket, and the burst stays 2.
    await replicas[1].put_back(rule, "acct")
    assert not [key async for key in first.scan_iter(match=BUCKET_PREFIX + rule.name + ":*")]
    assert [await replicas[0].take(rule, "acct") for _ in range(2)] == [0, 0]
    assert await replicas[0].take(rule, "acct") > 0
    await replicas[1].put_back(rule, "acct")
    assert await replicas[0].take(rule, "acct") == 0
    assert await replicas[1].take(rule, "acct") > 0
    await replicas[0].put_back(rule, "acct")
    await replicas[0].put_back(rule, "acct")
    await replicas[0].put_back(rule, "acct")
    assert [await replicas[1].take(rule, "acct") for _ in range(3)][-1] > 0
    await first.aclose()
    await second.aclose()


async def test_redis_token_buckets_are_shared_by_replicas(redis_url: str) -> None:
    first, second = redis.asyncio.Redis.from_url(redis_url), redis.asyncio.Redis.from_url(redis_url)
    replicas = [RedisTokenBuckets(first), RedisTokenBuckets(second)]
    rule = BucketRule(f"stamps-{secrets.token_hex(4)}", rate=0.5, burst=4)
    account = secrets.token_hex(8)
    waits = [await replicas[n % 2].take(rule, account) for n in range(6)]
    # Four tokens in all, whichever replica took them; then a token every 2 s.
    assert waits[:4] == [0, 0, 0, 0]
    assert 1.0 < waits[4] <= 2.0 and waits[5] > 1.0
    assert await replicas[0].take(rule, secrets.token_hex(8)) == 0
    keys = [key async for key in first.scan_iter(match=BUCKET_PREFIX + rule.name + ":*")]
    assert len(keys) == 2 and all(account.encode() not in key for key in keys)
    assert await first.pttl(keys[0]) > 0
    await first.aclose()
    await second.aclose()


async def test_concurrent_takes_never_hand_out_more_than_the_bucket_holds(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    buckets = RedisTokenBuckets(client)
    rule = BucketRule(f"orders-{secrets.token_hex(4)}", rate=0.01, burst=10)
    waits = await asyncio.gather(*(buckets.take(rule, "acct") for _ in range(40)))
    assert sum(1 for w in waits if w == 0) == 10
    await client.aclose()


async def test_token_buckets_fall_back_to_this_replica_while_redis_is_away(ticks: Ticks) -> None:
    client = redis.asyncio.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    buckets = RedisTokenBuckets(client, fallback_s=5, clock=ticks)
    # Open, not closed: requests go on under this replica's own buckets.
    assert [await buckets.take(RULE, "acct") for _ in range(3)] == [0, 0, 0]
    assert buckets.degraded
    assert await buckets.take(RULE, "acct") > 0
    # Given back where it was taken.
    await buckets.put_back(RULE, "acct")
    assert await buckets.take(RULE, "acct") == 0
    ticks.now += 6
    assert not buckets.degraded
    await client.aclose()


async def test_a_redis_that_hangs_costs_one_timeout_then_the_buckets_fall_back() -> None:
    """A Redis that takes the connection and never answers (stopped with SIGSTOP, a network that
    drops packets): the gateway's own client gives up after its timeout, and every take meanwhile,
    however many at once, falls back instead of waiting on it."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = async_redis_client(f"redis://127.0.0.1:{port}")
    buckets = RedisTokenBuckets(client, fallback_s=30)
    try:
        # Bounded by the client's 2 s timeouts, not by the hang; the outer bound only keeps a
        # broken timeout from hanging the test run.
        waits = await asyncio.wait_for(asyncio.gather(*(buckets.take(RULE, "acct") for _ in range(50))), 20)
        assert held, "the takes reached the silent server"
        assert buckets.degraded
        # This replica's own bucket answered them: its burst, then waits.
        assert sum(1 for w in waits if w == 0) == RULE.burst
        # While degraded, nothing waits on Redis at all.
        assert await asyncio.wait_for(buckets.take(RULE, "other"), 0.5) == 0
    finally:
        await client.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_token_buckets_choose_their_store() -> None:
    assert isinstance(token_buckets(None), MemoryTokenBuckets)
