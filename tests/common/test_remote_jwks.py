"""The auth service's signing keys as every other service fetches them (RemoteJwks), from a real
auth service on 127.0.0.1, and from none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from argon2 import PasswordHasher

from emeterai.v1 import auth_service_pb2_grpc
from services.auth.domain import build_auth_domain
from services.auth.keys import Keyring
from services.auth.servicer import AUTH_STATUS_CODES, AuthServicer
from services.auth.store import create_auth_engine
from services.common.errors import Unavailable
from services.common.interceptors import ErrorInterceptor
from services.common.settings import AuthSettings
from services.common.tokens import RemoteJwks
from tests.conftest import free_port


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[tuple[str, Keyring]]:
    settings = AuthSettings(mode="dev", data_dir=tmp_path, service_secret="test-service-secret-0123456789")
    engine = create_auth_engine(settings.resolved_database_url)
    keyring = Keyring.load(settings.resolved_jwt_key_dir)
    domain = build_auth_domain(
        settings,
        engine,
        keyring,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    server = grpc.aio.server(interceptors=[ErrorInterceptor(AUTH_STATUS_CODES)])
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(domain), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", keyring
    await server.stop(None)
    engine.dispose()


async def test_known_keys_are_found_and_an_unknown_one_is_not(auth: tuple[str, Keyring]) -> None:
    address, keyring = auth
    jwks = RemoteJwks(address)
    try:
        assert await jwks.public_key(keyring.current.kid) is not None
        # A made-up key id: simply unknown (the verifier answers 401), the auth service was asked.
        assert await jwks.public_key("made-up") is None
    finally:
        await jwks.close()


async def test_while_the_auth_service_cannot_be_asked_an_unknown_key_is_unavailable_not_unknown() -> None:
    jwks = RemoteJwks(f"127.0.0.1:{free_port()}", refetch_interval_s=60)
    try:
        # A good token signed with a key this service has not fetched yet must not be turned away
        # as forged (a 401 signs the page out): it is 503, try again.
        with pytest.raises(Unavailable):
            await jwks.public_key("new-key")
        # Within the refetch interval too, without asking again.
        with pytest.raises(Unavailable):
            await jwks.public_key("new-key")
    finally:
        await jwks.close()
