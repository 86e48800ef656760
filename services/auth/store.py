"""Tables of the auth database and the engine that opens it.

Invariants the domain relies on are also constraints here (one phone per account, one external
reference per parent, attempt counters never negative), so a bug fails loudly instead of
quietly letting a second account claim a number.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Engine
from sqlalchemy.types import DateTime, TypeDecorator

from services.auth.model import AccountKind


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite compares the stored text, so every value must be written in the same naive form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

_KINDS = ", ".join(f"'{kind.value}'" for kind in AccountKind)

accounts = Table(
    "accounts",
    metadata,
    # A monotonic key for stable page tokens; account_id is random and says nothing about order.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(40), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("phone", String(16), nullable=True, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("parent_account_id", String(40), ForeignKey("accounts.account_id"), nullable=True),
    Column("external_ref", String(200), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint(f"kind IN ({_KINDS})", name="ck_accounts_kind"),
    CheckConstraint("kind <> 'retail' OR phone IS NOT NULL", name="ck_accounts_retail_phone"),
    CheckConstraint(
        "external_ref IS NULL OR parent_account_id IS NOT NULL", name="ck_accounts_ref_needs_parent"
    ),
    UniqueConstraint("parent_account_id", "external_ref", name="uq_accounts_parent_ref"),
)

stamping_pins = Table(
    "stamping_pins",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.account_id"), primary_key=True),
    Column("pin_hash", String(200), nullable=False),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("failed_attempts >= 0", name="ck_stamping_pins_attempts"),
)

# One pending code per number: a new request replaces the old one.
otp_challenges = Table(
    "otp_challenges",
    metadata,
    Column("phone", String(16), primary_key=True),
    Column("salt", String(32), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("consumed_at", UtcDateTime, nullable=True),
    CheckConstraint("failed_attempts >= 0", name="ck_otp_challenges_attempts"),
)

# A family is one sign-in; every refresh token rotated from it shares the family, so reuse of a
# spent token can sign out the whole chain at once.
token_families = Table(
    "token_families",
    metadata,
    Column("family_id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.account_id"), nullable=False, index=True),
    Column("token_kind", String(16), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    # SHA-256 of the token: it is 256 random bits, so a plain hash cannot be reversed.
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(40), ForeignKey("token_families.family_id"), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Index("ix_refresh_tokens_family", "family_id"),
)

revoked_access_tokens = Table(
    "revoked_access_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    # After this the token is dead anyway and the row can be pruned.
    Column("expires_at", UtcDateTime, nullable=False),
)

distributor_credentials = Table(
    "distributor_credentials",
    metadata,
    Column("client_id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.account_id"), nullable=False, unique=True),
    Column("scope", Text, nullable=False),
    Column("secret_hash", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("secret_rotated_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)

dev_outbox = Table(
    "dev_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("phone", String(16), nullable=False, index=True),
    Column("body", Text, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
)


def create_auth_engine(url: str, *, create_tables: bool = True) -> Engine:
    """Open the auth database; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; SQLAlchemy would otherwise look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    # Parameters can hold message bodies with codes (the dev outbox); keep them out of logs and errors.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 5.0}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        _tune_sqlite(engine)
    if create_tables:
        metadata.create_all(engine)
    return engine


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy: pysqlite would otherwise defer BEGIN to the
        # first write, leaving the reads before it outside the transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: read-then-write operations (attempt counters, refresh
        # rotation) then cannot interleave, and a second writer waits instead of failing late.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
