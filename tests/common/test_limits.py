"""Request limits: the single-node counters and the Redis ones every replica shares (real Redis)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import pytest
import redis

from services.common.errors import Unavailable
from services.common.limits import KEY_PREFIX, MemoryRateLimiter, RateLimiter, RedisRateLimiter, rate_limiter
from services.common.redis_state import redis_client
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
