"""Shared pieces for auth tests: a keyring in tmp_path, a clock tests move, and a database.

Every test that touches the database runs twice: on SQLite in tmp_path, and on a real PostgreSQL
(one fresh database per session, emptied before each test), since production runs on the latter.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import redis
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from services.auth.codes import RedisCodeStore
from services.auth.domain import AuthDomain, build_auth_domain
from services.auth.keys import Keyring
from services.auth.store import create_auth_engine, metadata
from services.common.settings import AuthSettings
from tests.conftest import DATABASE_BACKENDS, FakeClock, create_test_database, open_test_engine

SERVICE_SECRET = "test-service-secret-0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path) -> AuthSettings:
    return AuthSettings(
        mode="dev",
        data_dir=tmp_path,
        service_secret=SERVICE_SECRET,
        otp_ttl_s=300,
        otp_max_attempts=5,
        otp_resend_after_s=60,
        access_token_ttl_s=900,
    )


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time so tokens it stamps still verify with PyJWT's own clock.
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    yield from create_test_database("auth")


@pytest.fixture(params=DATABASE_BACKENDS)
def engine(request: pytest.FixtureRequest, settings: AuthSettings) -> Iterator[Engine]:
    engine = open_test_engine(request, create_auth_engine, settings.resolved_database_url, metadata)
    yield engine
    engine.dispose()


@pytest.fixture
def keyring(settings: AuthSettings) -> Keyring:
    return Keyring.load(settings.resolved_jwt_key_dir)


@pytest.fixture
def hasher() -> PasswordHasher:
    # The real algorithm with small costs; production parameters make each hash ~50 ms.
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(params=["codes-in-database", "codes-in-redis"])
def domain(
    request: pytest.FixtureRequest,
    settings: AuthSettings,
    engine: Engine,
    keyring: Keyring,
    clock: FakeClock,
    hasher: PasswordHasher,
) -> AuthDomain:
    """The auth domain with sign-in codes in the database (single node) and in Redis (production);
    the Redis keys of each test are its own."""
    codes = None
    if request.param == "codes-in-redis":
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        codes = RedisCodeStore(client, prefix=f"emeterai-test:otp:{secrets.token_hex(8)}:")
    return build_auth_domain(settings, engine, keyring, clock=clock, password_hasher=hasher, codes=codes)


def last_code(domain: AuthDomain, phone: str) -> str:
    """The code in the newest message the dev outbox holds for `phone` (E.164)."""
    assert domain.outbox is not None
    body = domain.outbox.list_outbox(phone)[0].body
    match = re.search(r"\b(\d{6})\b", body)
    assert match, body
    return match.group(1)


def decode_with_jwks(domain: AuthDomain, settings: AuthSettings, token: str) -> dict:
    """Verify as an outside service would: only the published JWKS, PyJWT, our issuer and audience."""
    kid = jwt.get_unverified_header(token)["kid"]
    [jwk] = [k for k in domain.keyring.jwks() if k["kid"] == kid]
    return jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["EdDSA"],
        audience=settings.token_audience,
        issuer=settings.token_issuer,
    )
