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

Deliberate behaviour when Redis cannot be reached: a replica keeps running the jobs it has (it
cannot know whether another took them, and renewing puts its lease back once Redis answers, unless
another replica got there first, when this one stops them); it takes up no job from the store; a job
it accepts itself starts at once. The worst a Redis outage allows is two replicas stamping the same
documents, which the ledger answers once by their idempotency keys: nothing is charged twice, and
the replica that lost the lease stops before writing the job's record again.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Protocol

import redis
import redis.asyncio

KEY_PREFIX = "emeterai:job-lease:"
LEASE_S = 30.0
RENEW_S = 10.0
SWEEP_S = 15.0

# KEYS[1] the lease; ARGV[1] the holder, ARGV[2] the lease in ms. Takes a free lease or renews the
# holder's own; returns 1 when the holder has it now, 0 when another replica does.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
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


class JobLeases(Protocol):
    async def hold(self, job_id: str) -> bool:
        """Take the job's lease if it is free, or renew it if it is ours: True when ours now.
        Raises redis.RedisError when the leases cannot be reached."""
        ...

    async def release(self, job_id: str) -> None:
        """Free the job's lease, if it is ours. Raises redis.RedisError as hold does."""
        ...


class LocalJobLeases:
    """Leases within this process: one gateway owns its job folder."""

    async def hold(self, job_id: str) -> bool:
        # The runner itself knows which jobs it runs; no other process shares the folder.
        return True

    async def release(self, job_id: str) -> None:
        return None


class RedisJobLeases:
    """Leases in Redis, shared by every gateway replica; `holder` names this replica."""

    def __init__(self, client: redis.asyncio.Redis, holder: str, lease_s: float = LEASE_S) -> None:
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)
        self._holder = holder
        self._lease_ms = max(1, round(lease_s * 1000))

    async def hold(self, job_id: str) -> bool:
        return bool(await self._hold(keys=[KEY_PREFIX + job_id], args=[self._holder, self._lease_ms]))

    async def release(self, job_id: str) -> None:
        await self._release(keys=[KEY_PREFIX + job_id], args=[self._holder])
