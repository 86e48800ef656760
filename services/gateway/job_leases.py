"""Which gateway replica runs a stamp job: a lease per job, so replicas sharing one job store run
each job once, and a job left by a replica that is gone is taken up by another.

Replicas in a cluster share the job folder (k8s/README.md, "Gateway replicas share one volume").
Without leases, a replica starting picked up every unfinished job in it, including those another
live replica was running; and a replica that the autoscaler removed mid-job left it until some
replica happened to start.

With EMETERAI_REDIS_URL the leases are keys in Redis, each naming its holder and lapsing LEASE_S
after it was last renewed: the runner renews its jobs' leases every RENEW_S and releases them when
a job ends or the runner stops; every replica sweeps the store every SWEEP_S for unfinished jobs
whose lease is free. A replica killed outright holds its jobs for LEASE_S at most.

Without Redis (one gateway per job folder, the single-node default) the leases are this process's
own, and the sweep picks up only what this process left.

A replica writes a job's record, and posts its callback, only while it is sure the lease is its
own: up to `sure_s` after a hold or renewal was sent that Redis answered, which is less than the
lease by a margin for the write itself. So a replica that lost touch with Redis while others did
not stops writing before its lease can have lapsed and been taken up elsewhere. Should it find the
lease free when it asks again (it lapsed), it goes on only if the job's record is still the one it
last wrote: another replica may have run the job meanwhile. This holds as long as Redis keeps its
keys; a failover that loses recent writes can hand a held lease to a second replica.

Deliberate behaviour when Redis cannot be reached: jobs wait. A job running goes on stamping the
documents it has started, keeps their results in memory, and writes them (and calls back) once its
lease is confirmed again; should another replica have the job by then, this one drops it, and the
other replays the same idempotency keys, which the ledger answers once. No job is taken up from the
store, and the leases of jobs that end or stop are left to lapse. A job accepted meanwhile is kept
on disk and starts once its lease can be taken. After a failed call the leases are not tried for
`retry_s`, so submissions and sweeps fail fast instead of each waiting out Redis's timeout.

Nothing is charged twice. A callback may go out twice, with the same Webhook-Id
(docs/distributor-api.md): when a replica stops, or loses touch with Redis, between posting it
and recording that it went, and another replica takes the job up.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Protocol

import redis
import redis.asyncio
from redis.commands.core import AsyncScript

from services.common.redis_state import RedisPause

KEY_PREFIX = "emeterai:job-lease:"
LEASE_S = 30.0
RENEW_S = 10.0
SWEEP_S = 15.0

# KEYS[1] the lease; ARGV[1] the holder, ARGV[2] the lease in ms. Takes a free lease or renews the
# holder's own; returns a Held.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if holder then return 2 end
return 1
"""
# KEYS[1] the lease; ARGV[1] the holder. Frees it, if it is still the holder's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def replica_name() -> str:
    """This gateway process, as its leases name it: the host (the pod), the process, and a random
    part, so a restarted process never takes its predecessor's leases for its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Held(IntEnum):
    """What asking for a lease found."""

    # Another replica holds it.
    NO = 0
    # It was free, and is ours now. For a job this replica was running, the lease had lapsed:
    # another replica may have run the job meanwhile.
    TAKEN = 1
    # It was ours, and is renewed.
    RENEWED = 2


class LeasesAway(redis.ConnectionError):
    """The leases were not tried: a call failed less than retry_s ago."""


class JobLeases(Protocol):
    # Seconds after a successful hold was sent during which the lease is surely still ours.
    sure_s: float

    async def hold(self, job_id: str) -> Held:
        """Take the job's lease if it is free, or renew it if it is ours. Raises redis.RedisError
        when the leases cannot be reached."""
        ...

    async def release(self, job_id: str) -> None:
        """Free the job's lease, if it is ours. Raises redis.RedisError as hold does."""
        ...


class LocalJobLeases:
    """Leases within this process: one gateway owns its job folder."""

    sure_s = math.inf

    async def hold(self, job_id: str) -> Held:
        # The runner itself knows which jobs it runs; no other process shares the folder.
        return Held.RENEWED

    async def release(self, job_id: str) -> None:
        return None


class RedisJobLeases:
    """Leases in Redis, shared by every gateway replica; `holder` names this replica."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        holder: str,
        lease_s: float = LEASE_S,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)
        self._holder = holder
        self._lease_ms = max(1, round(lease_s * 1000))
        # A third of the lease is left for a write started just before the end, and for the two
        # clocks running at slightly different rates.
        self.sure_s = lease_s * 2 / 3
        self._away = RedisPause(retry_s, clock)

    async def hold(self, job_id: str) -> Held:
        return Held(int(await self._call(self._hold, job_id, [self._holder, self._lease_ms])))

    async def release(self, job_id: str) -> None:
        await self._call(self._release, job_id, [self._holder])

    async def _call(self, script: AsyncScript, job_id: str, args: list[str | int]) -> object:
        if self._away.active:
            raise LeasesAway("the job leases were unreachable a moment ago")
        try:
            return await script(keys=[KEY_PREFIX + job_id], args=args)
        except redis.RedisError:
            self._away.failed()
            raise
