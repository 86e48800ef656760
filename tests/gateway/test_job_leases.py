"""Stamp job leases on a real Redis, as two gateway replicas hold them."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis
import redis.asyncio

from services.common.redis_state import async_redis_client
from services.gateway.job_leases import (
    KEY_PREFIX,
    LEASE_S,
    RENEW_S,
    Held,
    LeasesAway,
    RedisJobLeases,
    replica_name,
)
from tests.conftest import free_port


async def test_a_lease_is_one_replicas_until_released_and_only_its_holder_frees_it(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    first, second = RedisJobLeases(client, "replica-a"), RedisJobLeases(client, "replica-b")
    job_id = f"job_{secrets.token_hex(16)}"
    try:
        assert await first.hold(job_id) is Held.TAKEN
        assert await second.hold(job_id) is Held.NO, "a held lease is not taken"
        assert await first.hold(job_id) is Held.RENEWED, "the holder renews its own"
        await second.release(job_id)
        assert await client.get(KEY_PREFIX + job_id) == b"replica-a", "only the holder frees it"
        await first.release(job_id)
        assert await second.hold(job_id) is Held.TAKEN, "a released lease is free at once"
        assert await first.hold(job_id) is Held.NO
    finally:
        await client.delete(KEY_PREFIX + job_id)
        await client.aclose()


async def test_a_lease_not_renewed_lapses_and_renewing_renews_it(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    gone, other = RedisJobLeases(client, "replica-a", lease_s=0.4), RedisJobLeases(client, "replica-b")
    job_id = f"job_{secrets.token_hex(16)}"
    try:
        assert await gone.hold(job_id)
        for _ in range(3):
            # Renewed within the lease, it outlives the lease several times over.
            await asyncio.sleep(0.25)
            assert await gone.hold(job_id) is Held.RENEWED
            assert await other.hold(job_id) is Held.NO
        await asyncio.sleep(0.6)
        assert await other.hold(job_id) is Held.TAKEN, "a replica that stopped renewing loses the job"
        assert await gone.hold(job_id) is Held.NO, "and cannot take it back by renewing"
        await other.release(job_id)
        # A lease that lapsed and is taken again says so: its runner checks the job first.
        assert await gone.hold(job_id) is Held.TAKEN
    finally:
        await client.delete(KEY_PREFIX + job_id)
        await client.aclose()


async def test_an_unreachable_redis_is_an_error_not_a_lease_and_is_not_tried_again_for_a_while() -> None:
    client = async_redis_client(f"redis://127.0.0.1:{free_port()}/0")
    now = [1000.0]
    leases = RedisJobLeases(client, replica_name(), retry_s=5.0, clock=lambda: now[0])
    job_id = "job_" + "0" * 32
    try:
        with pytest.raises(redis.RedisError) as tried:
            await leases.hold(job_id)
        assert not isinstance(tried.value, LeasesAway)
        # Within retry_s every call fails at once, without waiting out a connection.
        now[0] += 4.9
        with pytest.raises(LeasesAway):
            await leases.hold(job_id)
        with pytest.raises(LeasesAway):
            await leases.release(job_id)
        now[0] += 0.2
        with pytest.raises(redis.RedisError) as tried_again:
            await leases.hold(job_id)
        assert not isinstance(tried_again.value, LeasesAway), "after retry_s Redis is tried again"
    finally:
        await client.aclose()


def test_a_lease_is_sure_for_a_renewal_and_more_but_well_short_of_its_end() -> None:
    leases = RedisJobLeases(redis.asyncio.Redis(), "replica-a")
    # Renewed every RENEW_S, a running job's lease never stops being sure while Redis answers;
    # the rest is the margin for a write begun at the last moment.
    assert RENEW_S < leases.sure_s <= LEASE_S * 2 / 3


def test_each_process_start_names_a_new_holder() -> None:
    assert replica_name() != replica_name()
