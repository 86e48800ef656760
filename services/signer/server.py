"""Wiring of a signer: the gRPC front in one process, stamping in one worker process per core."""

from __future__ import annotations

import functools
import logging
import os

from cryptography import x509

from emeterai.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common.boot import Registration, run_service, start_grpc_server, wait_for_termination
from services.common.interceptors import AccessPolicy, server_interceptors
from services.common.settings import SignerSettings
from services.common.tokens import KIND_SERVICE, RemoteJwks, TokenVerifier
from services.signer.pki import ensure_dev_pki, load_signing_identity, load_trust_roots
from services.signer.servicer import SIGNER_STATUS_CODES, SignerServicer
from services.signer.workers import WorkerConfig, WorkerPool

SERVICE_NAME = signer_service_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name
POLICY = AccessPolicy(default_kinds=frozenset({KIND_SERVICE}))


def worker_config(settings: SignerSettings) -> WorkerConfig:
    """The configured key, chain and trust roots; in dev mode, the development PKI when none is set."""
    if settings.signer_key_path is not None and settings.signer_cert_chain_path is not None:
        key_path, chain_path = settings.signer_key_path, settings.signer_cert_chain_path
        roots: list[x509.Certificate] | None = None
    else:
        pki = ensure_dev_pki(settings.pki_dir)
        key_path, chain_path = pki.signer_key_path, pki.signer_chain_path
        roots = pki.load_trust_roots()
    load_identity = functools.partial(load_signing_identity, key_path, chain_path)
    if settings.trust_roots_path is not None:
        roots = load_trust_roots(settings.trust_roots_path)
    elif roots is None:
        roots = [load_identity().chain[-1]]
    return WorkerConfig(
        load_identity=load_identity,
        trust_roots_der=WorkerConfig.trust_roots_to_der(roots),
        public_url=settings.public_url,
        location=settings.signer_location,
    )


async def serve(settings: SignerSettings) -> None:
    # pypdf warns about every quirk of a damaged file; our own errors already say what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    config = worker_config(settings)
    workers = WorkerPool(
        config,
        size=settings.signer_workers or len(os.sched_getaffinity(0)),
        time_limit_s=settings.signer_document_timeout_s,
    )
    await workers.start()
    servicer = SignerServicer(workers, config.load_identity(), max_document_bytes=settings.max_document_bytes)
    jwks = RemoteJwks(settings.auth_address)
    verifier = TokenVerifier(jwks, settings.token_issuer, settings.token_audience)
    server = await start_grpc_server(
        settings.signer_address,
        [Registration(signer_service_pb2_grpc.add_SignerServiceServicer_to_server, servicer, SERVICE_NAME)],
        server_interceptors(SIGNER_STATUS_CODES, verifier, POLICY),
    )
    await wait_for_termination()
    await server.stop(settings.shutdown_grace_s, settings.shutdown_notice_s)
    await workers.close()
    await jwks.close()


def main() -> None:
    run_service("signer", SignerSettings, serve)
