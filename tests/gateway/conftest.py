"""What the gateway's tests against real parts share: the corpus; a signer with the development
PKI as a grpc.aio server on 127.0.0.1, started once per module (whose tests share one event loop,
so its worker process starts once); and a gateway application serving HTTP on 127.0.0.1 with one
stamp at a time, for what the edge answers before any internal service is called (their channel
points at a port nobody listens on)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from emeterai.v1 import auth_service_pb2_grpc, quota_service_pb2_grpc, signer_service_pb2_grpc
from services.common.interceptors import ErrorInterceptor
from services.common.settings import GatewaySettings, load_settings
from services.common.tokens import StaticKeys, TokenVerifier
from services.gateway.documents import LocalDocumentStore
from services.gateway.edge import AdmissionControl
from services.gateway.http_api import Gateway, create_app
from services.gateway.metrics import ADMISSION
from services.gateway.notices import NoticeBoard
from services.gateway.stamping import StampingFlow
from services.gateway.upstream import Backends
from services.signer.pki import ensure_dev_pki, load_signing_identity
from services.signer.servicer import SIGNER_STATUS_CODES, SignerServicer
from services.signer.workers import WorkerConfig, WorkerPool
from tests.common.test_interceptors import AUDIENCE, ISSUER, _jwk
from tests.conftest import free_port, require_corpus


@pytest.fixture(scope="module")
def corpus() -> Path:
    return require_corpus()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def signer_address(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    pki = ensure_dev_pki(tmp_path_factory.mktemp("pki"))
    config = WorkerConfig(
        load_identity=functools.partial(load_signing_identity, pki.signer_key_path, pki.signer_chain_path),
        trust_roots_der=WorkerConfig.trust_roots_to_der(pki.load_trust_roots()),
        public_url="https://meterai.example.id",
        location="Jakarta",
    )
    workers = WorkerPool(config, size=1, time_limit_s=60)
    await workers.start()
    server = grpc.aio.server(interceptors=[ErrorInterceptor(SIGNER_STATUS_CODES)])
    signer_service_pb2_grpc.add_SignerServiceServicer_to_server(
        SignerServicer(workers, pki.load_identity()), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)
    await workers.close()


class _Http(uvicorn.Server):
    # The test's process keeps its own signal handlers.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningGateway:
    url: str
    app: FastAPI
    admission: AdmissionControl
    key: Ed25519PrivateKey


@pytest.fixture
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """Other settings come as the fixture's parameter (indirect parametrization), a dict."""
    # One stamp at a time and no room to wait: a second retail stamp is turned away at once.
    settings = load_settings(
        GatewaySettings,
        data_dir=tmp_path,
        stamp_concurrency_initial=1,
        stamp_concurrency_min=1,
        stamp_concurrency_max=1,
        retail_stamp_queue=0,
        **getattr(request, "param", {}),
    )
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier(StaticKeys([_jwk(key, "k1")]), ISSUER, AUDIENCE)
    nowhere = grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}")
    backends = Backends(
        auth=auth_service_pb2_grpc.AuthServiceStub(nowhere),
        quota=quota_service_pb2_grpc.QuotaServiceStub(nowhere),
        signer=signer_service_pb2_grpc.SignerServiceStub(nowhere),
    )
    admission = AdmissionControl.from_settings(settings, None, hashlib.sha256(b"tickets").digest())
    ADMISSION.attach(admission)
    store = LocalDocumentStore(tmp_path / "documents")
    stamping = StampingFlow(backends, store, settings.sign_timeout_s, admission.gate)
    app = create_app(
        Gateway(settings, backends, verifier, store, stamping, NoticeBoard(backends.auth), admission)
    )
    port = free_port()
    http = _Http(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    serving = asyncio.create_task(http.serve())
    while not http.started:
        assert not serving.done(), "the gateway did not start"
        await asyncio.sleep(0.01)
    yield RunningGateway(f"http://127.0.0.1:{port}", app, admission, key)
    http.should_exit = True
    await serving
    await nowhere.close()
