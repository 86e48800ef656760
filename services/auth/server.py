"""Wiring of the auth service."""

from __future__ import annotations

import asyncio
from typing import Any

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.auth.domain import build_auth_domain
from services.auth.keys import RELOAD_S, Keyring
from services.auth.servicer import AUTH_STATUS_CODES, AuthServicer
from services.auth.store import create_auth_engine
from services.common.boot import Registration, run_service, start_grpc_server, wait_for_termination
from services.common.interceptors import AccessPolicy, server_interceptors
from services.common.settings import AuthSettings
from services.common.tokens import KIND_SERVICE, token_verifier

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
    verifier = token_verifier(settings, KeyringKeys(keyring))
    reloading = asyncio.create_task(_reload_keys(keyring))
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
    reloading.cancel()
    await server.stop(settings.shutdown_grace_s, settings.shutdown_notice_s)
    engine.dispose()


class KeyringKeys:
    """The keyring as this service's own verifier sees it: whatever the folder holds now."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def public_key(self, kid: str) -> Any | None:
        return self._keyring.public_key(kid)


async def _reload_keys(keyring: Keyring) -> None:
    # Keys added or retired by `emeterai keys` (or a new Kubernetes Secret) take effect without
    # a restart; see services/auth/keys.py for the rotation.
    while True:
        await asyncio.sleep(RELOAD_S)
        await asyncio.to_thread(keyring.reload)


def main() -> None:
    run_service("auth", AuthSettings, serve)
