"""The metrics endpoint and the gRPC server metrics, scraped over HTTP from real servers on loopback."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emeterai.v1 import (
    distributor_service_pb2,
    distributor_service_pb2_grpc,
    quota_service_pb2,
    quota_service_pb2_grpc,
    signer_service_pb2,
    signer_service_pb2_grpc,
)
from services.common.boot import Registration, start_grpc_server
from services.common.errors import BASE_STATUS_CODES, InvalidInput
from services.common.interceptors import AccessPolicy, server_interceptors
from services.common.metrics import MetricsServer, name_service, rpc_name, service_name
from services.common.settings import CommonSettings, SettingsError, load_settings
from services.common.tokens import StaticKeys, TokenVerifier
from services.stack import wait_healthy
from tests.common.test_interceptors import AUDIENCE, ISSUER, _auth, _code, _jwk, _token
from tests.conftest import ROOT, free_port
from tests.metrics_scrape import Scrape, scrape
from tests.polling import eventually

REQUESTS = "emeterai_grpc_server_requests_total"
SECONDS_COUNT = "emeterai_grpc_server_request_seconds_count"
SECONDS_BUCKET = "emeterai_grpc_server_request_seconds_bucket"


@pytest.fixture
def metrics_server() -> Iterator[MetricsServer]:
    server = MetricsServer.start("127.0.0.1:0")
    yield server
    server.stop()


def test_metrics_are_served_at_their_path_only_and_the_server_stops(metrics_server: MetricsServer) -> None:
    scraped = scrape(metrics_server.port)
    assert "# TYPE emeterai_grpc_server_requests_total counter" in scraped.text
    assert "# TYPE emeterai_grpc_server_request_seconds histogram" in scraped.text
    other = httpx.get(f"http://127.0.0.1:{metrics_server.port}/", timeout=5)
    assert other.status_code == 404
    metrics_server.stop()
    metrics_server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{metrics_server.port}/metrics", timeout=5)


def test_the_metrics_address_is_optional_and_checked_like_every_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EMETERAI_METRICS_ADDRESS", raising=False)
    assert load_settings(CommonSettings).metrics_address == ""
    monkeypatch.setenv("EMETERAI_METRICS_ADDRESS", "0.0.0.0:9100")
    assert load_settings(CommonSettings).metrics_address == "0.0.0.0:9100"
    monkeypatch.setenv("EMETERAI_METRICS_ADDRESS", "9100")
    with pytest.raises(SettingsError, match="EMETERAI_METRICS_ADDRESS"):
        load_settings(CommonSettings)


def test_the_method_label_is_the_service_and_method_name() -> None:
    assert rpc_name("/emeterai.v1.QuotaService/Batch") == "QuotaService/Batch"
    assert rpc_name("/grpc.health.v1.Health/Check") == "Health/Check"


class Signer(signer_service_pb2_grpc.SignerServiceServicer):
    async def GetSignerInfo(self, request, context):
        return signer_service_pb2.GetSignerInfoResponse(key_algorithm="ed25519")

    async def Verify(self, request, context):
        if request.document == b"bad":
            raise InvalidInput("this is not a PDF")
        raise RuntimeError("an unexpected failure")


class Distributor(distributor_service_pb2_grpc.DistributorServiceServicer):
    async def BatchStamp(self, request_iterator, context):
        async for request in request_iterator:
            yield distributor_service_pb2.BatchStampResponse(client_ref=request.client_ref)


SIGNER = "emeterai.v1.SignerService"
DISTRIBUTOR = "emeterai.v1.DistributorService"


@pytest.fixture
def service() -> Iterator[str]:
    """A service name of this test's own, so counts from other tests in the process do not mix in."""
    before = service_name()
    name = f"test-{uuid.uuid4().hex[:8]}"
    name_service(name)
    yield name
    name_service(before)


@pytest.fixture
async def channel(service: str) -> AsyncIterator[tuple[grpc.aio.Channel, Ed25519PrivateKey]]:
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier(StaticKeys([_jwk(key, "k1")]), ISSUER, AUDIENCE)
    server = await start_grpc_server(
        "127.0.0.1:0",
        [
            Registration(signer_service_pb2_grpc.add_SignerServiceServicer_to_server, Signer(), SIGNER),
            Registration(
                distributor_service_pb2_grpc.add_DistributorServiceServicer_to_server,
                Distributor(),
                DISTRIBUTOR,
            ),
        ],
        # The standard chain, which names its metrics after the process's service.
        server_interceptors(BASE_STATUS_CODES, verifier, AccessPolicy(default_kinds=frozenset({"service"}))),
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield channel, key
    await channel.close()
    await server.stop(0)


async def test_every_call_is_counted_and_timed_by_method_and_final_code(
    channel: tuple[grpc.aio.Channel, Ed25519PrivateKey], service: str, metrics_server: MetricsServer
) -> None:
    chan, key = channel
    signer = signer_service_pb2_grpc.SignerServiceStub(chan)
    token = _auth(_token(key))
    for _ in range(3):
        await signer.GetSignerInfo(signer_service_pb2.GetSignerInfoRequest(), metadata=token)
    assert await _code(signer.GetSignerInfo(signer_service_pb2.GetSignerInfoRequest())) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    bad = signer.Verify(signer_service_pb2.VerifyRequest(document=b"bad"), metadata=token)
    assert await _code(bad) == grpc.StatusCode.INVALID_ARGUMENT
    broken = signer.Verify(signer_service_pb2.VerifyRequest(document=b"x"), metadata=token)
    assert await _code(broken) == grpc.StatusCode.INTERNAL
    # A method nobody serves is answered by grpc itself, and gets no series: the label stays bounded.
    unserved = quota_service_pb2_grpc.QuotaServiceStub(chan).GetBalance(quota_service_pb2.GetBalanceRequest())
    assert await _code(unserved) == grpc.StatusCode.UNIMPLEMENTED

    scraped = scrape(metrics_server.port)

    def count(method: str, code: str) -> float | None:
        return scraped.value(REQUESTS, service=service, method=method, code=code)

    assert count("SignerService/GetSignerInfo", "OK") == 3
    assert count("SignerService/GetSignerInfo", "UNAUTHENTICATED") == 1
    assert count("SignerService/Verify", "INVALID_ARGUMENT") == 1
    assert count("SignerService/Verify", "INTERNAL") == 1
    # A method's OK series exists from its first call, at 0 until one succeeds.
    assert count("SignerService/Verify", "OK") == 0
    assert count("SignerService/Verify", "NOT_FOUND") is None
    assert not [s for s in scraped.series(REQUESTS) if s["method"].startswith("QuotaService/")]
    timed = scraped.value(SECONDS_COUNT, service=service, method="SignerService/GetSignerInfo", code="OK")
    assert timed == 3
    every = {"service": service, "method": "SignerService/GetSignerInfo", "code": "OK", "le": "+Inf"}
    assert scraped.value(SECONDS_BUCKET, **every) == 3
    assert scraped.value(SECONDS_BUCKET, **(every | {"le": "30.0"})) == 3


async def test_streaming_calls_are_counted_when_their_stream_ends(
    channel: tuple[grpc.aio.Channel, Ed25519PrivateKey], service: str, metrics_server: MetricsServer
) -> None:
    chan, key = channel
    distributor = distributor_service_pb2_grpc.DistributorServiceStub(chan)

    async def requests() -> AsyncIterator[distributor_service_pb2.BatchStampRequest]:
        for ref in ("a", "b"):
            yield distributor_service_pb2.BatchStampRequest(client_ref=ref)

    answers = [a.client_ref async for a in distributor.BatchStamp(requests(), metadata=_auth(_token(key)))]
    assert answers == ["a", "b"]

    # grpc.health.v1's Watch answers with context.write() rather than by yielding; a client that
    # stops watching cancels it.
    watch = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest())
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()

    def counted() -> Scrape | None:
        scraped = scrape(metrics_server.port)
        watched = scraped.value(REQUESTS, service=service, method="Health/Watch", code="CANCELLED")
        return scraped if watched == 1 else None

    scraped = await eventually(counted, timeout_s=10.0)
    assert scraped.value(REQUESTS, service=service, method="DistributorService/BatchStamp", code="OK") == 1


def _service_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMETERAI_")}
    return (
        env | {"EMETERAI_DATA_DIR": str(tmp_path)} | {f"EMETERAI_{k.upper()}": v for k, v in settings.items()}
    )


def test_a_service_started_with_a_metrics_address_serves_its_metrics_until_it_stops(tmp_path: Path) -> None:
    grpc_port, metrics_port = free_port(), free_port()
    env = _service_environment(
        tmp_path, auth_address=f"127.0.0.1:{grpc_port}", metrics_address=f"127.0.0.1:{metrics_port}"
    )
    process = subprocess.Popen([sys.executable, "-m", "services.auth"], env=env, cwd=ROOT)
    try:
        assert wait_healthy(f"127.0.0.1:{grpc_port}", time.monotonic() + 60)
        checks = scrape(metrics_port).value(REQUESTS, service="auth", method="Health/Check", code="OK")
        assert checks is not None and checks >= 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)


def test_a_metrics_address_that_is_malformed_or_taken_stops_the_service_at_start(tmp_path: Path) -> None:
    def start(metrics_address: str) -> subprocess.CompletedProcess[bytes]:
        env = _service_environment(
            tmp_path, auth_address=f"127.0.0.1:{free_port()}", metrics_address=metrics_address
        )
        return subprocess.run(
            [sys.executable, "-m", "services.auth"], env=env, cwd=ROOT, capture_output=True, timeout=60
        )

    malformed = start("metrics")
    assert malformed.returncode == 2 and b"EMETERAI_METRICS_ADDRESS" in malformed.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        refused = start(f"127.0.0.1:{taken.getsockname()[1]}")
    assert refused.returncode == 1 and b"metrics server could not listen" in refused.stderr
