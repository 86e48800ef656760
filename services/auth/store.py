"""Tables of the auth database and the engine that opens it.

Invariants the domain relies on are also constraints here (one phone per account, one external
reference per parent, attempt counters never negative), so a bug fails loudly instead of
quietly letting a second account claim a number.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Engine

from services.auth.model import AccountKind
from services.common.db import UtcDateTime, create_database_engine

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

# The key that signs the gateway's callbacks to a distributor. Kept as it is, unlike the client
# secret: signing needs the key itself. Its own table, so databases made before it gain it too.
distributor_webhook_secrets = Table(
    "distributor_webhook_secrets",
    metadata,
    Column("client_id", String(40), ForeignKey("distributor_credentials.client_id"), primary_key=True),
    Column("secret", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
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


# Degraded-mode notices operators publish (e.g. "pay the duty by SSP while stamping is down"); the
# newest one not cleared is shown. Kept, not deleted, so what users were told stays on record.
notices = Table(
    "notices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("text_id", Text, nullable=False),
    Column("text_en", Text, nullable=False),
    Column("published_by", String(40), nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("cleared_at", UtcDateTime, nullable=True),
)


def create_auth_engine(url: str, *, create_tables: bool = True) -> Engine:
    """Open the auth database (a SQLite file or PostgreSQL), with its tables created."""
    return create_database_engine(
        url,
        metadata,
        sqlite_busy_timeout_s=5.0,
        create_tables=create_tables,
        # Parameters can hold message bodies with codes (the dev outbox); keep them out of logs and errors.
        hide_parameters=True,
    )
