"""The signer pool against real gRPC servers on 127.0.0.1 that answer as signer replicas do, each
told how to behave: fast, held until released, or gone; each with grpc.health.v1 as every service
of ours serves it (services/common/boot.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from emeterai.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.gateway.signer_pool import SIGNER_SERVICE, SignerPool, replica_addresses
from tests.polling import eventually


@dataclass
class Replica(signer_service_pb2_grpc.SignerServiceServicer):
    name: str
    calls: int = 0
    hold: asyncio.Event | None = None
    delay_s: float = 0.0
    server: grpc.aio.Server | None = None
    health: health.aio.HealthServicer | None = None
    address: str = ""

    async def Stamp(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        await asyncio.sleep(self.delay_s)
        return signer_service_pb2.StampResponse(stamped_document=self.name.encode())


async def _start(replica: Replica) -> Replica:
    replica.server = grpc.aio.server()
    signer_service_pb2_grpc.add_SignerServiceServicer_to_server(replica, replica.server)
    replica.health = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(replica.health, replica.server)
    await replica.health.set(SIGNER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    port = replica.server.add_insecure_port("127.0.0.1:0")
    await replica.server.start()
    replica.address = f"127.0.0.1:{port}"
    return replica


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started = [await _start(Replica("a")), await _start(Replica("b"))]
    yield started
    for replica in started:
        if replica.hold is not None:
            replica.hold.set()
        await replica.server.stop(None)  # type: ignore[union-attr]


@pytest.fixture
async def pool(replicas: list[Replica]) -> AsyncIterator[SignerPool]:
    pool = SignerPool([r.address for r in replicas], grpc.aio.insecure_channel, health_check_s=0.05)
    yield pool
    await pool.close()


def _stamp() -> signer_service_pb2.StampRequest:
    return signer_service_pb2.StampRequest(document=b"%PDF-1.7", serial="S")


async def test_calls_go_to_the_replica_with_the_fewest_in_flight(
    pool: SignerPool, replicas: list[Replica]
) -> None:
    a, b = replicas
    a.hold = asyncio.Event()
    # The first call is held by a; while it is, every other call goes to b.
    held = asyncio.create_task(pool.Stamp(_stamp(), timeout=10))
    for _ in range(50):
        if a.calls:
            break
        await asyncio.sleep(0.02)
    assert a.calls == 1
    answers = [await pool.Stamp(_stamp(), timeout=10) for _ in range(5)]
    assert {answer.stamped_document for answer in answers} == {b"b"} and b.calls == 5
    assert pool.in_flight()[a.address] == 1
    a.hold.set()
    assert (await held).stamped_document == b"a"
    assert pool.in_flight() == {a.address: 0, b.address: 0}


async def test_a_replica_that_is_gone_is_set_aside_and_the_call_goes_to_another(
    pool: SignerPool, replicas: list[Replica]
) -> None:
    a, b = replicas
    await a.server.stop(None)  # type: ignore[union-attr]
    # The call tries a first (both idle), is refused, and ends on b within its deadline.
    first = await pool.Stamp(_stamp(), timeout=10)
    assert first.stamped_document == b"b"
    calls_on_b = b.calls
    # a is set aside now: the next calls go straight to b.
    for _ in range(3):
        assert (await pool.Stamp(_stamp(), timeout=10)).stamped_document == b"b"
    assert b.calls == calls_on_b + 3


async def test_a_replica_not_serving_gets_no_new_calls_until_it_serves_again(
    pool: SignerPool, replicas: list[Replica]
) -> None:
    a, b = replicas
    await pool.Stamp(_stamp(), timeout=10)
    # a is draining (SIGTERM: NOT_SERVING while calls in flight finish): the next check sees it.
    await a.health.set(SIGNER_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)  # type: ignore[union-attr]
    await eventually(lambda: pool.serving() == {a.address: False, b.address: True})
    calls_on_a = a.calls
    answers = [await pool.Stamp(_stamp(), timeout=10) for _ in range(4)]
    assert {answer.stamped_document for answer in answers} == {b"b"} and a.calls == calls_on_a

    # Serving again: it is back among the replicas the calls are spread over.
    await a.health.set(SIGNER_SERVICE, health_pb2.HealthCheckResponse.SERVING)  # type: ignore[union-attr]
    await eventually(lambda: pool.serving()[a.address])
    answers = [await pool.Stamp(_stamp(), timeout=10) for _ in range(4)]
    assert b"a" in {answer.stamped_document for answer in answers}


async def test_a_replica_that_does_not_answer_its_health_check_is_not_serving(
    pool: SignerPool, replicas: list[Replica]
) -> None:
    a, b = replicas
    await pool.Stamp(_stamp(), timeout=10)
    await a.server.stop(None)  # type: ignore[union-attr]
    await eventually(lambda: pool.serving() == {a.address: False, b.address: True})
    # Every replica not serving: a call still tries one rather than fail outright.
    await b.health.set(SIGNER_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)  # type: ignore[union-attr]
    await eventually(lambda: not any(pool.serving().values()))
    assert (await pool.Stamp(_stamp(), timeout=10)).stamped_document == b"b"


async def test_every_replica_gone_is_unavailable(pool: SignerPool, replicas: list[Replica]) -> None:
    for replica in replicas:
        await replica.server.stop(None)  # type: ignore[union-attr]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await pool.Stamp(_stamp(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_callers_deadline_holds_on_whatever_replica(
    pool: SignerPool, replicas: list[Replica]
) -> None:
    for replica in replicas:
        replica.delay_s = 2.0
    started = asyncio.get_running_loop().time()
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await pool.Stamp(_stamp(), timeout=0.3)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_a_name_resolves_to_its_replicas() -> None:
    replica = await _start(Replica("a"))
    port = replica.address.rsplit(":", 1)[1]
    pool = SignerPool([f"localhost:{port}"], grpc.aio.insecure_channel)
    try:
        assert (await pool.Stamp(_stamp(), timeout=10)).stamped_document == b"a"
        assert list(pool.in_flight()) == [f"127.0.0.1:{port}"]
    finally:
        await pool.close()
        await replica.server.stop(None)  # type: ignore[union-attr]


def _answer(family: socket.AddressFamily, host: str) -> tuple[object, ...]:
    """One entry of a getaddrinfo answer, as the resolver gives it for a TCP port."""
    sockaddr = (host, 50071) if family == socket.AF_INET else (host, 50071, 0, 0)
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)


def test_a_dual_stack_name_counts_each_replica_once_by_its_ipv4_address() -> None:
    infos = [
        _answer(socket.AF_INET6, "fd00::12"),
        _answer(socket.AF_INET, "10.0.0.12"),
        _answer(socket.AF_INET6, "fd00::11"),
        _answer(socket.AF_INET, "10.0.0.11"),
        # The resolver repeats an address once per socket type unless asked for one.
        _answer(socket.AF_INET, "10.0.0.11"),
    ]
    assert replica_addresses(infos, "50071") == ["10.0.0.11:50071", "10.0.0.12:50071"]


def test_an_ipv6_only_name_gives_bracketed_replicas() -> None:
    infos = [_answer(socket.AF_INET6, "fd00::12"), _answer(socket.AF_INET6, "fd00::11")]
    assert replica_addresses(infos, "50071") == ["[fd00::11]:50071", "[fd00::12]:50071"]
    assert replica_addresses([], "50071") == []
