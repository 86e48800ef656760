"""The signer replicas as one SignerService: each call goes to the replica with the fewest calls in
flight, a replica that answers UNAVAILABLE is set aside for a while and the call goes to another,
and every call keeps the caller's deadline whatever replica it ends on.

Health-aware: every HEALTH_CHECK_S each replica is asked grpc.health.v1 Check for SignerService. A
replica that says NOT_SERVING (it is shutting down and draining) or does not answer in time gets no
new calls until a check says SERVING again; one without the health service is taken as serving.

Signing is a pure function of its request (the hold and its serial are the ledger's), so a call
that a replica refused can be sent again to another. Replicas are addresses, or a DNS name that
resolves to several (a Kubernetes headless Service), looked up again every RESOLVE_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emeterai.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common.clients import ServiceChannel, ServiceTokenSource, service_channel

log = logging.getLogger(__name__)

# How long a replica that answered UNAVAILABLE gets no calls.
EJECT_S = 10.0
# How often DNS names are looked up again.
RESOLVE_S = 30.0
# How often each replica's health is checked, and how long a check may take.
HEALTH_CHECK_S = 2.0
HEALTH_TIMEOUT_S = 1.0
SIGNER_SERVICE = signer_service_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name


@dataclass(eq=False)
class _Replica:
    address: str
    stub: Any
    channel: grpc.aio.Channel | ServiceChannel
    health: Any
    in_flight: int = 0
    # What its last health check said; a new replica is taken as serving until checked.
    serving: bool = True
    ejected_until: float = float("-inf")
    last_used: float = field(default=float("-inf"))


def _likeliness(replica: _Replica) -> tuple[bool, float]:
    """Which replica to try when none is fit: serving first, then the one set aside longest ago."""
    return (not replica.serving, replica.ejected_until)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SignerPool:
    """Stamp, Verify and GetSignerInfo, as on a SignerServiceStub, over every replica."""

    def __init__(
        self,
        addresses: Sequence[str],
        channel_for: Callable[[str], grpc.aio.Channel | ServiceChannel],
        *,
        clock: Callable[[], float] = time.monotonic,
        health_check_s: float = HEALTH_CHECK_S,
    ) -> None:
        if not addresses:
            raise ValueError("the pool needs at least one signer address")
        self._addresses = list(addresses)
        self._channel_for = channel_for
        self._clock = clock
        self._replicas: dict[str, _Replica] = {}
        # What each configured address last resolved to.
        self._found: dict[str, list[str]] = {}
        self._resolved_at = float("-inf")
        self._resolving = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._health_check_s = health_check_s
        self._checking: asyncio.Task[None] | None = None

    @classmethod
    def for_service(cls, addresses: Sequence[str], tokens: ServiceTokenSource) -> SignerPool:
        return cls(addresses, lambda address: service_channel(address, tokens))

    async def Stamp(self, request: Any, timeout: float | None = None) -> Any:
        return await self._call("Stamp", request, timeout)

    async def Verify(self, request: Any, timeout: float | None = None) -> Any:
        return await self._call("Verify", request, timeout)

    async def GetSignerInfo(self, request: Any, timeout: float | None = None) -> Any:
        return await self._call("GetSignerInfo", request, timeout)

    def in_flight(self) -> dict[str, int]:
        """Calls in flight by replica address."""
        return {address: replica.in_flight for address, replica in self._replicas.items()}

    def serving(self) -> dict[str, bool]:
        """What each replica's last health check said, by address."""
        return {address: replica.serving for address, replica in self._replicas.items()}

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checking
        for replica in self._replicas.values():
            await replica.channel.close()

    async def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        deadline = None if timeout is None else self._clock() + timeout
        await self._resolve()
        tried: set[_Replica] = set()
        while True:
            replica = self._pick(tried)
            tried.add(replica)
            left = None if deadline is None else max(0.0, deadline - self._clock())
            replica.in_flight += 1
            replica.last_used = self._clock()
            try:
                return await getattr(replica.stub, method)(request, timeout=left)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                replica.ejected_until = self._clock() + EJECT_S
                log.warning("signer replica unavailable; set aside", extra={"signer": replica.address})
                out_of_time = deadline is not None and self._clock() >= deadline
                if out_of_time or len(tried) == len(self._replicas):
                    raise
            finally:
                replica.in_flight -= 1

    def _pick(self, tried: set[_Replica]) -> _Replica:
        now = self._clock()
        untried = [r for r in self._replicas.values() if r not in tried]
        candidates = [r for r in untried if r.ejected_until <= now and r.serving]
        if not candidates:
            # Every replica set aside or not serving: try the likeliest rather than fail outright,
            # and spread over those equally likely (every check failing at once, say, when this
            # gateway's own loop lagged) rather than pile onto one.
            best = min(map(_likeliness, untried))
            candidates = [r for r in untried if _likeliness(r) == best]
        return min(candidates, key=lambda r: (r.in_flight, r.last_used))

    async def _resolve(self) -> None:
        if self._clock() - self._resolved_at < RESOLVE_S:
            return
        async with self._resolving:
            if self._clock() - self._resolved_at < RESOLVE_S:
                return
            wanted: list[str] = []
            for address in self._addresses:
                wanted.extend(await self._lookup(address))
            for address in wanted:
                if address not in self._replicas:
                    channel = self._channel_for(address)
                    stub = signer_service_pb2_grpc.SignerServiceStub(channel)
                    health = health_pb2_grpc.HealthStub(channel)
                    self._replicas[address] = _Replica(address, stub, channel, health)
            for address in [a for a in self._replicas if a not in wanted]:
                gone = self._replicas.pop(address)
                # Calls already on their way finish on it: close() waits for them, up to a grace.
                closing = asyncio.create_task(gone.channel.close(grace=60))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self._resolved_at = self._clock()
            if self._checking is None:
                self._checking = asyncio.create_task(self._check_health_periodically())

    async def _check_health_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._health_check_s)
            await asyncio.gather(*(self._check_health(r) for r in list(self._replicas.values())))

    async def _check_health(self, replica: _Replica) -> None:
        request = health_pb2.HealthCheckRequest(service=SIGNER_SERVICE)
        try:
            answer = await replica.health.Check(request, timeout=HEALTH_TIMEOUT_S)
            serving = answer.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError as exc:
            # One without the health service (UNIMPLEMENTED) is judged by its calls alone; one
            # that is gone or does not answer in time is not serving.
            serving = exc.code() == grpc.StatusCode.UNIMPLEMENTED
        except Exception:
            # Not the replica's answer (this gateway's service token could not be had, say): it
            # says nothing of the replica, which keeps what its last check said.
            log.warning("signer health check not sent", extra={"signer": replica.address}, exc_info=True)
            return
        if serving != replica.serving:
            log.warning(
                "signer replica serving" if serving else "signer replica not serving; no new calls",
                extra={"signer": replica.address},
            )
        replica.serving = serving

    async def _lookup(self, address: str) -> list[str]:
        host, _, port = address.rpartition(":")
        if _is_ip(host.strip("[]")):
            return [address]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("signer name not resolved", extra={"signer": address, "error": str(exc)})
            # Keep what the name gave before; else let gRPC resolve it itself.
            return self._found.get(address, [address])
        found = replica_addresses(infos, port) or [address]
        self._found[address] = found
        return found


def replica_addresses(infos: Sequence[tuple[Any, ...]], port: str) -> list[str]:
    """The replicas a name's getaddrinfo answer gives, as host:port: its IPv4 addresses when it has
    any, else its IPv6 ones (an IPv6-only cluster). Not both: on a dual-stack cluster each pod has
    one of each, and counting both would count every replica twice."""
    by_family: dict[int, set[str]] = {socket.AF_INET: set(), socket.AF_INET6: set()}
    for family, *_, sockaddr in infos:
        if family in by_family:
            by_family[family].add(str(sockaddr[0]))
    if by_family[socket.AF_INET]:
        return sorted(f"{host}:{port}" for host in by_family[socket.AF_INET])
    return sorted(f"[{host}]:{port}" for host in by_family[socket.AF_INET6])
