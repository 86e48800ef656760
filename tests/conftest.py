"""Fixtures shared by every test folder."""

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from services.common.db import throwaway_database

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL_VARIABLE = "EMETERAI_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL_VARIABLE = "EMETERAI_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# The params of a service's `engine` fixture: every database test runs on both.
DATABASE_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def corpus_dir() -> Path:
    """The shared corpus of real PDFs (EMETERAI_CORPUS_DIR, or ../shared/corpus/pdf beside the repo)."""
    return Path(os.environ.get("EMETERAI_CORPUS_DIR", ROOT.parent / "shared" / "corpus" / "pdf"))


def require_corpus() -> Path:
    path = corpus_dir()
    if not (path / "MANIFEST.tsv").exists():
        message = f"the PDF corpus is missing at {path}; set EMETERAI_CORPUS_DIR"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeClock:
    """A clock the test moves by hand, starting at `start` or else at the current whole second."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) if start is None else start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def require_postgres(tests: str) -> URL:
    """The test PostgreSQL server's URL, once it answers; `tests` names what needs it.

    When the server does not answer, those tests are skipped loudly, or fail under CI=true.
    """
    server = make_url(os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL))
    admin = create_engine(server, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        problem = f"PostgreSQL at {server.render_as_string(hide_password=True)} is unreachable ({exc.orig})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; with CI=true the {tests} must run")
        pytest.skip(
            f"!!! {problem}: the {tests} are SKIPPED. Start PostgreSQL or set {POSTGRES_URL_VARIABLE}."
        )
    finally:
        admin.dispose()
    return server


def require_redis(tests: str) -> str:
    """The test Redis server's URL, once it answers; skipped loudly, or failed under CI=true."""
    url = os.environ.get(REDIS_URL_VARIABLE, DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        problem = f"Redis at {url} is unreachable ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; with CI=true the {tests} must run")
        pytest.skip(f"!!! {problem}: the {tests} are SKIPPED. Start Redis or set {REDIS_URL_VARIABLE}.")
    finally:
        client.close()
    return url


def require_redis_server(tests: str) -> str:
    """The redis-server binary, for tests that start and stop a Redis of their own; skipped
    loudly without it, or failed under CI=true."""
    binary = shutil.which("redis-server")
    if binary is None:
        problem = "redis-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; with CI=true the {tests} must run")
        pytest.skip(f"!!! {problem}: the {tests} are SKIPPED")
    return binary


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_redis("Redis tests")


def create_test_database(service: str) -> Iterator[str]:
    """URL of a new, empty database emeterai_<service>_test_<random> on the test PostgreSQL server.

    For a session fixture (`yield from create_test_database("auth")`); the database is dropped when
    the session ends. Each service gets its own, since their schemas share table names. When the
    server does not answer, the PostgreSQL tests are skipped loudly, or fail under CI=true.
    """
    server = require_postgres(f"PostgreSQL {service} tests (only SQLite was tested)")
    with throwaway_database(server.render_as_string(hide_password=False), f"emeterai_{service}_test") as url:
        yield url


def open_test_engine(
    request: pytest.FixtureRequest, open_engine: Callable[[str], Engine], sqlite_url: str, metadata: MetaData
) -> Engine:
    """The engine for the backend in request.param (one of DATABASE_BACKENDS), with empty tables.

    SQLite is a new file at sqlite_url; PostgreSQL is the folder's `postgres_url` database, whose
    tables (those of metadata) are emptied first.
    """
    if request.param == "sqlite":
        return open_engine(sqlite_url)
    engine = open_engine(request.getfixturevalue("postgres_url"))
    names = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as conn:
        # TRUNCATE is not UPDATE or DELETE, so row triggers (the ledger journal's) allow it.
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return engine
