"""Wiring of the auth service."""

from __future__ import annotations

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.auth.domain import build_auth_domain
from services.auth.keys import Keyring
from services.auth.servicer import AUTH_STATUS_CODES, AuthServicer
from services.auth.store import create_auth_engine
from services.common.boot import Registration, run_service, start_grpc_server, wait_for_termination
from services.common.interceptors import AccessPolicy, server_interceptors
from services.common.settings import AuthSettings
from services.common.tokens import KIND_SERVICE, StaticKeys, token_verifier

SERVICE_NAME = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name

# Everything else is for internal services only; these two bootstrap trust.
POLICY = AccessPolicy(
    default_kinds=frozenset({KIND_SERVICE}),
    public_methods=frozenset({f"/{SERVICE_NAME}/GetJwks", f"/{SERVICE_NAME}/IssueServiceToken"}),
)


async def serve(settings: AuthSettings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_auth_engine(settings.resolved_database_url)
    keyring = Keyring.load(settings.resolved_jwt_key_dir)
    domain = build_auth_domain(settings, engine, keyring)
    verifier = token_verifier(settings, StaticKeys(keyring.jwks()))
    server = await start_grpc_server(
        settings.auth_address,
        [
            Registration(
                auth_service_pb2_grpc.add_AuthServiceServicer_to_server, AuthServicer(domain), SERVICE_NAME
            )
        ],
        server_interceptors(AUTH_STATUS_CODES, verifier, POLICY),
    )
    await wait_for_termination()
    await server.stop(settings.shutdown_grace_s, settings.shutdown_notice_s)
    engine.dispose()


def main() -> None:
    run_service("auth", AuthSettings, serve)
