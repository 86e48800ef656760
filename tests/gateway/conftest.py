"""What the gateway's tests against real parts share: the corpus, and a signer with the
development PKI as a grpc.aio server on 127.0.0.1, started once per module (whose tests share one
event loop, so its worker process starts once)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from emeterai.v1 import signer_service_pb2_grpc
from services.common.interceptors import ErrorInterceptor
from services.signer.pki import ensure_dev_pki, load_signing_identity
from services.signer.servicer import SIGNER_STATUS_CODES, SignerServicer
from services.signer.workers import WorkerConfig, WorkerPool
from tests.conftest import require_corpus


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
