"""Server boot and shutdown: health turns NOT_SERVING, calls in flight finish, the process exits 0."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emeterai.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common.boot import Registration, start_grpc_server
from tests.conftest import ROOT, free_port

SERVICE = "emeterai.v1.SignerService"


class SlowSigner(signer_service_pb2_grpc.SignerServiceServicer):
    async def GetSignerInfo(self, request, context):
        await asyncio.sleep(1.0)
        return signer_service_pb2.GetSignerInfoResponse(key_algorithm="done")


async def test_stop_reports_not_serving_then_drains_calls_in_flight() -> None:
    server = await start_grpc_server(
        "127.0.0.1:0",
        [Registration(signer_service_pb2_grpc.add_SignerServiceServicer_to_server, SlowSigner(), SERVICE)],
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    health = health_pb2_grpc.HealthStub(channel)
    assert (await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    in_flight = asyncio.ensure_future(
        signer_service_pb2_grpc.SignerServiceStub(channel).GetSignerInfo(
            signer_service_pb2.GetSignerInfoRequest()
        )
    )
    await asyncio.sleep(0.2)
    stopping = asyncio.ensure_future(server.stop(grace_s=5, notice_s=0.5))
    await asyncio.sleep(0.1)
    status = (await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert (await in_flight).key_algorithm == "done", "a call in flight finishes during the drain"
    await stopping
    with pytest.raises(grpc.aio.AioRpcError):
        await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
    await channel.close()


def _service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMETERAI_")}
    return env | {"EMETERAI_DATA_DIR": str(tmp_path), **extra}


def test_a_service_runs_alone_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.quota"],
        env=_service_env(tmp_path, EMETERAI_QUOTA_ADDRESS=address),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "quota did not become healthy"
                    time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        logs = process.stderr.read()
        assert '"msg": "listening"' in logs and '"msg": "stopped"' in logs, logs
    finally:
        if process.poll() is None:
            process.kill()


def test_bad_settings_stop_the_start_and_name_the_variables(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway"],
        env=_service_env(tmp_path, EMETERAI_GATEWAY_HTTP_ADDRESS="nowhere", EMETERAI_SHUTDOWN_GRACE_S="-5"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "EMETERAI_GATEWAY_HTTP_ADDRESS" in result.stderr and "EMETERAI_SHUTDOWN_GRACE_S" in result.stderr
