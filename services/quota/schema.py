"""The ledger's tables. Invariants the code relies on are also constraints here, so a bug in the
code fails a statement instead of quietly corrupting a balance."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    event,
)

from services.common.db import UtcDateTime
from services.quota.models import (
    Channel,
    DocumentType,
    EntryKind,
    HoldStatus,
    OrderStatus,
    ReleaseReason,
    State,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID_LENGTH = 40
ACCOUNT_ID_LENGTH = 128
KEY_LENGTH = 128
REASON_LENGTH = 500
TEXT_LENGTH = 200

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")


def _one_of(column: str, values: Iterable[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _non_negative(*columns: str) -> list[CheckConstraint]:
    return [CheckConstraint(f"{c} >= 0", name=f"{c}_non_negative") for c in columns]


accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), primary_key=True),
    Column("available", BigInteger, nullable=False, default=0),
    Column("held", BigInteger, nullable=False, default=0),
    Column("consumed", BigInteger, nullable=False, default=0),
    Column("refunded", BigInteger, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    *_non_negative("available", "held", "consumed", "refunded"),
)

orders = Table(
    "orders",
    metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("order_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("unit_price_idr", BigInteger, nullable=False),
    Column("amount_idr", BigInteger, nullable=False),
    Column("status", String(24), nullable=False),
    Column("payment_provider", String(32), nullable=False),
    Column("payment_reference", String(TEXT_LENGTH), nullable=False),
    Column("payment_url", String(1000), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("paid_at", UtcDateTime, nullable=True),
    Column("refunded_quantity", BigInteger, nullable=False, default=0),
    UniqueConstraint("account_id", "idempotency_key"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("unit_price_idr > 0", name="unit_price_positive"),
    CheckConstraint("amount_idr = quantity * unit_price_idr", name="amount_is_quantity_times_price"),
    CheckConstraint(
        "refunded_quantity >= 0 AND refunded_quantity <= quantity", name="refunded_within_quantity"
    ),
    CheckConstraint(_one_of("status", OrderStatus), name="status_known"),
    CheckConstraint(_one_of("channel", Channel), name="channel_known"),
    CheckConstraint(
        "(paid_at IS NULL) = (status IN ('awaiting_payment', 'cancelled', 'expired'))",
        name="paid_at_iff_paid",
    ),
    Index(None, "account_id", "seq"),
    Index(None, "status", "expires_at"),
)

# One row per payment the provider confirmed. UNIQUE(order_id) is the last line of defence against
# crediting an order twice; UNIQUE(provider, event_id) makes a redelivered webhook detectable.
payments = Table(
    "payments",
    metadata,
    Column("payment_id", String(ID_LENGTH), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("event_id", String(TEXT_LENGTH), nullable=False),
    Column("order_id", String(ID_LENGTH), ForeignKey("orders.order_id"), nullable=False, unique=True),
    Column("amount_idr", BigInteger, nullable=False),
    Column("reference", String(TEXT_LENGTH), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("provider", "event_id"),
    CheckConstraint("amount_idr > 0", name="amount_positive"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(ID_LENGTH), primary_key=True),
    Column("order_id", String(ID_LENGTH), ForeignKey("orders.order_id"), nullable=False),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    # What the caller asked for (0 = every unused unit), to tell a retry from a different request.
    Column("requested_quantity", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("amount_idr", BigInteger, nullable=False),
    Column("reason", String(REASON_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "idempotency_key"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("requested_quantity >= 0", name="requested_non_negative"),
    CheckConstraint("amount_idr >= 0", name="amount_non_negative"),
    Index(None, "order_id"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("transfer_id", String(ID_LENGTH), primary_key=True),
    Column("from_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("to_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("from_account_id", "idempotency_key"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("from_account_id <> to_account_id", name="not_to_self"),
    CheckConstraint(_one_of("channel", Channel), name="channel_known"),
)

# A hold is also the serial's record: the serial is issued with the hold and its status follows it.
holds = Table(
    "holds",
    metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("hold_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    Column("serial", String(22), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("document_sha256", LargeBinary(32), nullable=False),
    Column("stamped_sha256", LargeBinary(32), nullable=True),
    Column("doc_type", String(24), nullable=False),
    Column("doc_name", String(TEXT_LENGTH), nullable=False),
    Column("doc_number", String(TEXT_LENGTH), nullable=False),
    Column("doc_date", String(10), nullable=False),
    Column("doc_value_idr", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("release_reason", String(24), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    UniqueConstraint("account_id", "idempotency_key"),
    CheckConstraint(_one_of("status", HoldStatus), name="status_known"),
    CheckConstraint(_one_of("channel", Channel), name="channel_known"),
    CheckConstraint(_one_of("doc_type", DocumentType), name="doc_type_known"),
    CheckConstraint(
        f"release_reason IS NULL OR {_one_of('release_reason', ReleaseReason)}", name="release_reason_known"
    ),
    CheckConstraint("doc_value_idr >= 0", name="doc_value_non_negative"),
    # The state machine, spelled out: a hold resolves once, and what it carries matches its state.
    CheckConstraint("(resolved_at IS NULL) = (status = 'reserved')", name="resolved_iff_not_reserved"),
    CheckConstraint("(stamped_sha256 IS NOT NULL) = (status = 'committed')", name="stamped_iff_committed"),
    CheckConstraint("(release_reason IS NOT NULL) = (status = 'released')", name="reason_iff_released"),
    Index(None, "account_id", "seq"),
    Index(None, "status", "expires_at"),
)

# The journal: every movement of units, never updated or deleted (triggers below enforce it).
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", SEQUENCE, primary_key=True, autoincrement=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    # The order, payment, refund, transfer or hold that caused the movement.
    Column("reference", String(ID_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("from_state <> to_state", name="moves_somewhere"),
    CheckConstraint(_one_of("from_state", State), name="from_state_known"),
    CheckConstraint(_one_of("to_state", State), name="to_state_known"),
    CheckConstraint(_one_of("kind", EntryKind), name="kind_known"),
    CheckConstraint(_one_of("channel", Channel), name="channel_known"),
    Index(None, "account_id", "entry_id"),
    Index(None, "reference"),
)

_IMMUTABLE_MESSAGE = "ledger entries are immutable"

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER ledger_entries_no_{verb.lower()} BEFORE {verb} ON ledger_entries "
    f"BEGIN SELECT RAISE(ABORT, '{_IMMUTABLE_MESSAGE}'); END"
    for verb in ("UPDATE", "DELETE")
]

_POSTGRES_TRIGGERS = [
    "CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{_IMMUTABLE_MESSAGE}'; END $$",
    "CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries "
    "FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable()",
]

for _statement in _SQLITE_TRIGGERS:
    event.listen(ledger_entries, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _POSTGRES_TRIGGERS:
    event.listen(ledger_entries, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
# drop_all must remove the function too, or the next create_all on the same database fails.
event.listen(
    ledger_entries,
    "after_drop",
    DDL("DROP FUNCTION IF EXISTS ledger_entries_immutable()").execute_if(dialect="postgresql"),
)


def new_id(prefix: str) -> str:
    """A public id such as "ord_3f9c...": the prefix tells a support agent what kind of record it is."""
    return f"{prefix}_{secrets.token_hex(12)}"
