"""Wiring of a signer replica: one process, one core's worth of stamping.

Stamping is CPU-bound, so it runs on a single worker thread beside the event loop; capacity
grows by running more replicas (`emeterai up --signers N`, or more pods), not more threads.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from emeterai.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common.boot import Registration, run_service, start_grpc_server, wait_for_termination
from services.common.interceptors import AccessPolicy, server_interceptors
from services.common.settings import SignerSettings
from services.common.tokens import KIND_SERVICE, RemoteJwks, TokenVerifier
from services.signer.pki import SigningIdentity, ensure_dev_pki, load_signing_identity, load_trust_roots
from services.signer.servicer import SIGNER_STATUS_CODES, SignerServicer

SERVICE_NAME = signer_service_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name
POLICY = AccessPolicy(default_kinds=frozenset({KIND_SERVICE}))


def signing_material(settings: SignerSettings) -> tuple[SigningIdentity, list]:
    """The configured key, chain and trust roots; in dev mode, the development PKI when none is set."""
    if settings.signer_key_path is not None and settings.signer_cert_chain_path is not None:
        identity = load_signing_identity(settings.signer_key_path, settings.signer_cert_chain_path)
        roots = (
            load_trust_roots(settings.trust_roots_path) if settings.trust_roots_path else [identity.chain[-1]]
        )
        return identity, roots
    pki = ensure_dev_pki(settings.pki_dir)
    roots = (
        load_trust_roots(settings.trust_roots_path) if settings.trust_roots_path else pki.load_trust_roots()
    )
    return pki.load_identity(), roots


async def serve(settings: SignerSettings) -> None:
    # pypdf warns about every quirk of a damaged file; our own errors already say what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    identity, roots = signing_material(settings)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stamping")
    servicer = SignerServicer(
        identity,
        roots,
        public_url=settings.public_url,
        executor=executor,
        location=settings.signer_location,
        max_document_bytes=settings.max_document_bytes,
    )
    jwks = RemoteJwks(settings.auth_address)
    verifier = TokenVerifier(jwks, settings.token_issuer, settings.token_audience)
    server = await start_grpc_server(
        settings.signer_address,
        [Registration(signer_service_pb2_grpc.add_SignerServiceServicer_to_server, servicer, SERVICE_NAME)],
        server_interceptors(SIGNER_STATUS_CODES, verifier, POLICY),
    )
    await wait_for_termination()
    await server.stop(settings.shutdown_grace_s, settings.shutdown_notice_s)
    executor.shutdown(wait=True)
    await jwks.close()


def main() -> None:
    run_service("signer", SignerSettings, serve)
