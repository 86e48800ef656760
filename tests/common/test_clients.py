"""Service channels: a service that was down is called again as soon as it is back."""

import asyncio
import contextlib
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.boot import start_grpc_server
from services.common.clients import CHANNEL_OPTIONS
from tests.conftest import free_port


async def test_a_channel_reaches_a_restarted_service_within_a_second_or_so() -> None:
    address = f"127.0.0.1:{free_port()}"
    server = await start_grpc_server(address, [])
    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    health = health_pb2_grpc.HealthStub(channel)
    await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    await server.stop(grace_s=0, notice_s=0)
    # Down long enough for gRPC's default backoff (1 s, x1.6 per failed dial) to have grown past
    # the next second: with it, the first dial after the restart comes 1.6 s later or more.
    outage_s = 6.0
    down_until = time.monotonic() + outage_s
    while time.monotonic() < down_until:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await health.Check(health_pb2.HealthCheckRequest(), timeout=0.2)
        await asyncio.sleep(0.2)
    server = await start_grpc_server(address, [])
    back = time.monotonic()
    try:
        await health.Check(health_pb2.HealthCheckRequest(), timeout=1.5, wait_for_ready=True)
        assert time.monotonic() - back < 1.5
    finally:
        await channel.close()
        await server.stop(grace_s=0, notice_s=0)
