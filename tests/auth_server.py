"""A real auth service (AuthServicer on SQLite, development keys) as a grpc.aio server on
127.0.0.1, for tests of what other services ask it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from argon2 import PasswordHasher

from emeterai.v1 import auth_service_pb2_grpc
from services.auth.domain import AuthDomain, build_auth_domain
from services.auth.keys import Keyring
from services.auth.servicer import AUTH_STATUS_CODES, AuthServicer
from services.auth.store import create_auth_engine
from services.common.interceptors import ErrorInterceptor
from services.common.settings import AuthSettings


@dataclass
class RunningAuth:
    address: str
    domain: AuthDomain
    keyring: Keyring
    server: grpc.aio.Server


@contextlib.asynccontextmanager
async def running_auth(data_dir: Path) -> AsyncIterator[RunningAuth]:
    settings = AuthSettings(mode="dev", data_dir=data_dir, service_secret="test-service-secret-0123456789")
    engine = create_auth_engine(settings.resolved_database_url)
    keyring = Keyring.load(settings.resolved_jwt_key_dir)
    # Fast hashing: these tests are not about the hash's cost.
    quick = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    domain = build_auth_domain(settings, engine, keyring, password_hasher=quick)
    server = grpc.aio.server(interceptors=[ErrorInterceptor(AUTH_STATUS_CODES)])
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(domain), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield RunningAuth(f"127.0.0.1:{port}", domain, keyring, server)
    finally:
        await server.stop(None)
        engine.dispose()
