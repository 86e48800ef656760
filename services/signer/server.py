"""Wiring of a signer: the gRPC front in one process, stamping in one worker process per core."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from emeterai.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common.boot import Registration, run_service, start_grpc_server, wait_for_termination
from services.common.interceptors import AccessPolicy, server_interceptors
from services.common.settings import SignerSettings
from services.common.tokens import KIND_SERVICE, RemoteJwks, token_verifier
from services.signer.keys import KeySpec, load_identity
from services.signer.metrics import WORKERS
from services.signer.pki import ensure_dev_pki, load_signing_identity, load_trust_roots
from services.signer.servicer import SIGNER_STATUS_CODES, SignerServicer
from services.signer.tsa import LocalTimestamper, TimestampAuthority, Timestamper
from services.signer.tsa_client import HttpTimestampClient
from services.signer.workers import WorkerConfig, WorkerPool

SERVICE_NAME = signer_service_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name
POLICY = AccessPolicy(default_kinds=frozenset({KIND_SERVICE}))


def key_spec(settings: SignerSettings) -> KeySpec:
    """The configured signing key; in dev mode with none configured, the development PKI's."""
    if settings.signer_key_kind == "pem" and settings.signer_key_path is None:
        pki = ensure_dev_pki(settings.pki_dir)
        return KeySpec(kind="pem", key_path=pki.signer_key_path, chain_path=pki.signer_chain_path)

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    return KeySpec(
        kind=settings.signer_key_kind,
        key_path=settings.signer_key_path,
        chain_path=settings.signer_cert_chain_path,
        pkcs12_path=settings.signer_pkcs12_path,
        pkcs12_password=secret(settings.signer_pkcs12_password),
        pkcs11_module=settings.signer_pkcs11_module,
        pkcs11_token=settings.signer_pkcs11_token,
        pkcs11_key_label=settings.signer_pkcs11_key_label,
        pkcs11_pin=secret(settings.signer_pkcs11_pin),
    )


def local_timestamper(key_path: Path, chain_path: Path) -> LocalTimestamper:
    """Our own TSA inside the worker: B-T timestamps without a network hop."""
    return LocalTimestamper(TimestampAuthority(load_signing_identity(key_path, chain_path)))


def timestamper_factory(settings: SignerSettings) -> Callable[[], Timestamper] | None:
    if settings.signer_timestamp == "none":
        return None
    if settings.signer_timestamp == "url":
        assert settings.signer_tsa_url is not None
        return functools.partial(HttpTimestampClient, settings.signer_tsa_url, settings.signer_tsa_timeout_s)
    if settings.tsa_key_path is not None and settings.tsa_cert_chain_path is not None:
        return functools.partial(local_timestamper, settings.tsa_key_path, settings.tsa_cert_chain_path)
    pki = ensure_dev_pki(settings.pki_dir)
    return functools.partial(local_timestamper, pki.tsa_key_path, pki.tsa_chain_path)


def worker_config(settings: SignerSettings) -> WorkerConfig:
    load = functools.partial(load_identity, key_spec(settings))
    if settings.trust_roots_path is not None:
        roots = load_trust_roots(settings.trust_roots_path)
    elif settings.signer_key_kind == "pem" and settings.signer_key_path is None:
        roots = ensure_dev_pki(settings.pki_dir).load_trust_roots()
    else:
        roots = [load().chain[-1]]
    return WorkerConfig(
        load_identity=load,
        trust_roots_der=WorkerConfig.trust_roots_to_der(roots),
        public_url=settings.public_url,
        location=settings.signer_location,
        make_timestamper=timestamper_factory(settings),
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
    WORKERS.attach(workers)
    servicer = SignerServicer(workers, config.load_identity(), max_document_bytes=settings.max_document_bytes)
    jwks = RemoteJwks(settings.auth_address)
    verifier = token_verifier(settings, jwks)
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
