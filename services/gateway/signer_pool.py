"""The signer replicas as one SignerService: each call goes to the replica with the fewest calls in
flight, a replica that answers UNAVAILABLE is set aside for a while and the call goes to another,
and every call keeps the caller's deadline whatever replica it ends on.

Signing is a pure function of its request (the hold and its serial are the ledger's), so a call
that a replica refused can be sent again to another. Replicas are addresses, or a DNS name that
resolves to several (a Kubernetes headless Service), looked up again every RESOLVE_S.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from emeterai.v1 import signer_service_pb2_grpc
from services.common.clients import ServiceChannel, ServiceTokenSource, service_channel

log = logging.getLogger(__name__)

# How long a replica that answered UNAVAILABLE gets no calls.
EJECT_S = 10.0
# How often DNS names are looked up again.
RESOLVE_S = 30.0


@dataclass(eq=False)
class _Replica:
    address: str
    stub: Any
    channel: grpc.aio.Channel | ServiceChannel
    in_flight: int = 0
    ejected_until: float = float("-inf")
    last_used: float = field(default=float("-inf"))


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

    async def close(self) -> None:
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
        healthy = [r for r in untried if r.ejected_until <= now]
        # Every replica set aside: try the one set aside longest ago rather than fail outright.
        candidates = healthy or sorted(untried, key=lambda r: r.ejected_until)[:1]
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
                    self._replicas[address] = _Replica(address, stub, channel)
            for address in [a for a in self._replicas if a not in wanted]:
                gone = self._replicas.pop(address)
                # Calls already on their way finish on it: close() waits for them, up to a grace.
                closing = asyncio.create_task(gone.channel.close(grace=60))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self._resolved_at = self._clock()

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
        found = sorted({f"{info[4][0]}:{port}" for info in infos if info[0] == socket.AF_INET}) or [address]
        self._found[address] = found
        return found
