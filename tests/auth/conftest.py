"""Shared pieces for auth tests: a keyring in tmp_path, a clock tests move, and a database.

Every test that touches the database runs twice: on SQLite in tmp_path, and on a real PostgreSQL
(one fresh database per session, emptied before each test), since production runs on the latter.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from services.auth.domain import AuthDomain, build_auth_domain
from services.auth.keys import Keyring
from services.auth.store import create_auth_engine, metadata
from services.common.settings import AuthSettings

SERVICE_SECRET = "test-service-secret-0123456789abcdef"
POSTGRES_URL_VARIABLE = "EMETERAI_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class FakeClock:
    def __init__(self) -> None:
        # Starts at the real time so tokens it stamps still verify with PyJWT's own clock.
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


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
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a new, empty database on the test PostgreSQL server, dropped after the session."""
    server = make_url(os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL))
    # AUTOCOMMIT because CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_engine(
        server, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        message = (
            f"PostgreSQL at {server.render_as_string(hide_password=True)} is unreachable ({exc.orig}): "
            f"auth tests ran on SQLite only. Start PostgreSQL or set {POSTGRES_URL_VARIABLE}."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"emeterai_auth_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, settings: AuthSettings) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_auth_engine(settings.resolved_database_url)
    else:
        engine = create_auth_engine(request.getfixturevalue("postgres_url"))
        names = ", ".join(table.name for table in metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture
def keyring(settings: AuthSettings) -> Keyring:
    return Keyring.load(settings.resolved_jwt_key_dir)


@pytest.fixture
def hasher() -> PasswordHasher:
    # The real algorithm with small costs; production parameters make each hash ~50 ms.
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def domain(
    settings: AuthSettings, engine: Engine, keyring: Keyring, clock: FakeClock, hasher: PasswordHasher
) -> AuthDomain:
    return build_auth_domain(settings, engine, keyring, clock=clock, password_hasher=hasher)


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
