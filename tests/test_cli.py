"""`emeterai migrate`: the auth and quota databases brought up to date in one command, as the
Kubernetes migration Job runs it, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from services.auth.store import metadata as auth_metadata
from services.cli import main
from services.quota import migrations
from services.quota.db import create_ledger_engine
from tests.conftest import DATABASE_BACKENDS, create_test_database


@pytest.fixture(params=DATABASE_BACKENDS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Empty auth and quota databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'auth.db'}", f"sqlite:///{tmp_path / 'quota.db'}"
        return
    auth, quota = create_test_database("auth"), create_test_database("quota")
    yield next(auth), next(quota)
    for database in (auth, quota):
        database.close()


def migrate(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(["migrate", *args])
    return int(exit_.value.code or 0)


def test_migrate_creates_both_schemas_and_runs_again_as_a_no_op(
    urls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    auth_url, quota_url = urls
    for _ in range(2):
        assert migrate("--auth-database-url", auth_url, "--quota-database-url", quota_url) == 0
    auth = create_engine(auth_url)
    quota = create_ledger_engine(quota_url, create_tables=False)
    try:
        assert set(auth_metadata.tables) <= set(inspect(auth).get_table_names())
        assert migrations.current_revision(quota) == migrations.head_revision()
    finally:
        auth.dispose()
        quota.dispose()
    out = capsys.readouterr().out
    assert "auth " in out and f"at {migrations.head_revision()} (head)" in out


def test_migrate_one_database(tmp_path: Path) -> None:
    assert migrate("--quota-database-url", f"sqlite:///{tmp_path / 'quota.db'}") == 0
    assert (tmp_path / "quota.db").exists()
    assert not (tmp_path / "auth.db").exists()


def test_migrate_needs_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate() == 2
    assert "--auth-database-url" in capsys.readouterr().err


def test_a_bad_url_touches_no_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    auth_url = f"sqlite:///{tmp_path / 'auth.db'}"
    assert migrate("--auth-database-url", auth_url, "--quota-database-url", "not a url") == 2
    assert "quota" in capsys.readouterr().err
    assert not (tmp_path / "auth.db").exists()


def test_passwords_stay_out_of_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 1: the connection fails, and the message names the database.
    code = migrate("--auth-database-url", "postgresql://emeterai:s3cret-pw@127.0.0.1:1/auth")
    assert code == 1
    captured = capsys.readouterr()
    assert "s3cret-pw" not in captured.out + captured.err
    assert "127.0.0.1:1/auth" in captured.err
