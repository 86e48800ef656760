"""The ledger's tables. Invariants the code relies on are also constraints here, so a bug in the
code fails a statement instead of quietly corrupting a balance.

Databases get this schema through the Alembic revisions in migrations/, never from create_all: a
change here needs a new revision, and tests/quota/test_migrations.py fails until the two agree."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    insert,
    select,
    text,
)

from services.common.db import UtcDateTime
from services.quota.models import (
    SYSTEM_BOOKS,
    Book,
    Channel,
    DocumentType,
    EntryKind,
    HoldStatus,
    OrderStatus,
    RefundStatus,
    ReleaseReason,
    SerialStatus,
    Unit,
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
DOCUMENT_REF_LENGTH = 200

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")


def _one_of(column: str, values: Iterable[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _non_negative(*columns: str) -> list[CheckConstraint]:
    return [CheckConstraint(f"{c} >= 0", name=f"{c}_non_negative") for c in columns]


# An owner of quota, with its stamp books as columns: one row to lock per account, and CHECKs that
# keep every book of every account from going negative whatever the code does.
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LENGTH), primary_key=True),
    Column("kind", String(16), nullable=False),
    # The account whose available units this one's stamps draw on (an enterprise child's parent).
    Column("pool_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=True),
    # How much a collector may owe for stamps made and not yet paid (stamps in progress included).
    Column("credit_limit_idr", BigInteger, nullable=False, default=0),
    Column("available", BigInteger, nullable=False, default=0),
    Column("held", BigInteger, nullable=False, default=0),
    Column("consumed", BigInteger, nullable=False, default=0),
    Column("refunded", BigInteger, nullable=False, default=0),
    Column("owed_idr", BigInteger, nullable=False, default=0),
    # The price of a collector's stamps in progress on credit: owed once they commit.
    Column("credit_held_idr", BigInteger, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    *_non_negative(
        "available", "held", "consumed", "refunded", "owed_idr", "credit_limit_idr", "credit_held_idr"
    ),
    CheckConstraint(_one_of("kind", Channel), name="kind_known"),
    CheckConstraint("pool_account_id IS NULL OR pool_account_id <> account_id", name="pool_not_self"),
    CheckConstraint("credit_limit_idr = 0 OR kind = 'collector'", name="credit_only_for_collectors"),
    CheckConstraint(
        "owed_idr = 0 AND credit_held_idr = 0 OR kind = 'collector'", name="owing_only_for_collectors"
    ),
)

# The books that belong to nobody: where units come from and where the money goes.
system_books = Table(
    "system_books",
    metadata,
    Column("book", String(16), primary_key=True),
    Column("unit", String(8), nullable=False),
    Column("balance", BigInteger, nullable=False),
    CheckConstraint(_one_of("book", SYSTEM_BOOKS), name="book_known"),
    CheckConstraint(_one_of("unit", Unit), name="unit_known"),
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

# One row per payment a provider reported as succeeded. `applied` says it paid for its order; a
# payment that arrives for an order already paid, cancelled or expired is kept and sent back.
payments = Table(
    "payments",
    metadata,
    Column("payment_id", String(ID_LENGTH), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("event_id", String(TEXT_LENGTH), nullable=False),
    Column("order_id", String(ID_LENGTH), ForeignKey("orders.order_id"), nullable=False),
    Column("amount_idr", BigInteger, nullable=False),
    Column("reference", String(TEXT_LENGTH), nullable=False),
    Column("applied", Boolean, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    # A redelivered webhook is recognised by its event id.
    UniqueConstraint("provider", "event_id"),
    CheckConstraint("amount_idr > 0", name="amount_positive"),
    # The last line of defence against crediting an order twice.
    Index(
        "uq_payments_applied_order_id",
        "order_id",
        unique=True,
        sqlite_where=text("applied"),
        postgresql_where=text("applied"),
    ),
)

# Units given back (available -> refunded) and the money returned to the payer through the
# provider. The money leaves after the transaction commits, so a refund is pending until the
# provider confirms; a refund of quantity 0 returns a payment that bought nothing.
refunds = Table(
    "refunds",
    metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("refund_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("order_id", String(ID_LENGTH), ForeignKey("orders.order_id"), nullable=False),
    Column("payment_id", String(ID_LENGTH), ForeignKey("payments.payment_id"), nullable=False),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    # What the caller asked for (0 = every unused unit), to tell a retry from a different request.
    Column("requested_quantity", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("amount_idr", BigInteger, nullable=False),
    Column("reason", String(REASON_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_reference", String(TEXT_LENGTH), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True),
    UniqueConstraint("account_id", "idempotency_key"),
    CheckConstraint("quantity >= 0", name="quantity_non_negative"),
    CheckConstraint("requested_quantity >= 0", name="requested_non_negative"),
    CheckConstraint("amount_idr > 0", name="amount_positive"),
    CheckConstraint(_one_of("status", RefundStatus), name="status_known"),
    CheckConstraint("(completed_at IS NULL) = (status = 'pending')", name="completed_iff_not_pending"),
    Index(None, "order_id"),
    Index(None, "status", "seq"),
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

# A collector paying what it owes: money comes in through payments and clears its receivable.
settlements = Table(
    "settlements",
    metadata,
    Column("settlement_id", String(ID_LENGTH), primary_key=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    Column("amount_idr", BigInteger, nullable=False),
    # The bank or provider reference of the money received.
    Column("reference", String(TEXT_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "idempotency_key"),
    CheckConstraint("amount_idr > 0", name="amount_positive"),
)

# The serial registry: every serial ever issued, with what it was bound to. Its status follows its
# hold; keeping both lets the audit check one against the other.
serials = Table(
    "serials",
    metadata,
    Column("serial", String(22), primary_key=True),
    # Whose stamp it is; never shown by the public lookup.
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("document_sha256", LargeBinary(32), nullable=False),
    Column("stamped_sha256", LargeBinary(32), nullable=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("stamped_at", UtcDateTime, nullable=True),
    Column("voided_at", UtcDateTime, nullable=True),
    CheckConstraint(
        _one_of("status", (SerialStatus.RESERVED, SerialStatus.STAMPED, SerialStatus.VOID)),
        name="status_known",
    ),
    CheckConstraint("(stamped_sha256 IS NOT NULL) = (status = 'stamped')", name="stamped_hash_iff_stamped"),
    CheckConstraint("(stamped_at IS NOT NULL) = (status = 'stamped')", name="stamped_at_iff_stamped"),
    CheckConstraint("(voided_at IS NOT NULL) = (status = 'void')", name="voided_at_iff_void"),
)

holds = Table(
    "holds",
    metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("hold_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False),
    Column(
        "funding_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=False
    ),
    Column("idempotency_key", String(KEY_LENGTH), nullable=False),
    # UNIQUE: a serial belongs to one hold, ever.
    Column("serial", String(22), ForeignKey("serials.serial"), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("document_sha256", LargeBinary(32), nullable=False),
    Column("stamped_sha256", LargeBinary(32), nullable=True),
    Column("doc_type", String(24), nullable=False),
    Column("doc_name", String(TEXT_LENGTH), nullable=False),
    Column("doc_number", String(TEXT_LENGTH), nullable=False),
    Column("doc_date", String(10), nullable=False),
    Column("doc_value_idr", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    # What a collector is billed for this stamp when it commits; 0 when the unit was prepaid. A hold
    # on credit draws its unit from stock, and a release gives it back there.
    Column("credit_price_idr", BigInteger, nullable=False, default=0),
    Column("release_reason", String(24), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    # Where the gateway's document store keeps the stamped PDF: opaque here, set on commit.
    Column("document_ref", String(DOCUMENT_REF_LENGTH), nullable=True),
    # The caller's fingerprint of the rest of the stamp request (placement, metadata), which a retry
    # with the same key must match; NULL when none was given, or for holds made before it.
    Column("request_sha256", LargeBinary(32), nullable=True),
    UniqueConstraint("account_id", "idempotency_key"),
    CheckConstraint(_one_of("status", HoldStatus), name="status_known"),
    CheckConstraint(_one_of("channel", Channel), name="channel_known"),
    CheckConstraint(_one_of("doc_type", DocumentType), name="doc_type_known"),
    CheckConstraint(
        f"release_reason IS NULL OR {_one_of('release_reason', ReleaseReason)}", name="release_reason_known"
    ),
    CheckConstraint("doc_value_idr >= 0", name="doc_value_non_negative"),
    CheckConstraint("credit_price_idr >= 0", name="credit_price_non_negative"),
    # The state machine, spelled out: a hold resolves once, and what it carries matches its state.
    CheckConstraint("(resolved_at IS NULL) = (status = 'reserved')", name="resolved_iff_not_reserved"),
    CheckConstraint("(stamped_sha256 IS NOT NULL) = (status = 'committed')", name="stamped_iff_committed"),
    CheckConstraint("(release_reason IS NOT NULL) = (status = 'released')", name="reason_iff_released"),
    Index(None, "account_id", "seq"),
    Index(None, "status", "expires_at"),
)

_ACCOUNT_BOOK_NAMES = ", ".join(repr(str(book)) for book in Book if not book.is_system)
_SYSTEM_BOOK_NAMES = ", ".join(repr(str(book)) for book in SYSTEM_BOOKS)
_IDR_BOOK_NAMES = ", ".join(repr(str(book)) for book in Book if book.unit is Unit.IDR)

# The journal, double-entry: every entry moves a positive amount from one book to another of the
# same unit. An account's book is (account_id, book); a system book has no account. Never updated
# or deleted (triggers below); a correction is a new entry.
entries = Table(
    "entries",
    metadata,
    Column("entry_id", SEQUENCE, primary_key=True, autoincrement=True),
    Column("unit", String(8), nullable=False),
    Column("from_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=True),
    Column("from_book", String(16), nullable=False),
    Column("to_account_id", String(ACCOUNT_ID_LENGTH), ForeignKey("accounts.account_id"), nullable=True),
    Column("to_book", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    # The order, payment, refund, transfer, hold or settlement that caused the movement.
    Column("reference", String(ID_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint(_one_of("unit", Unit), name="unit_known"),
    CheckConstraint(_one_of("from_book", Book), name="from_book_known"),
    CheckConstraint(_one_of("to_book", Book), name="to_book_known"),
    CheckConstraint(_one_of("kind", EntryKind), name="kind_known"),
    CheckConstraint(_one_of("channel", Channel), name="channel_known"),
    CheckConstraint(
        f"(from_account_id IS NULL) = (from_book IN ({_SYSTEM_BOOK_NAMES}))", name="from_owner_matches_book"
    ),
    CheckConstraint(
        f"(to_account_id IS NULL) = (to_book IN ({_SYSTEM_BOOK_NAMES}))", name="to_owner_matches_book"
    ),
    CheckConstraint(f"(unit = 'idr') = (from_book IN ({_IDR_BOOK_NAMES}))", name="from_book_of_the_unit"),
    CheckConstraint(f"(unit = 'idr') = (to_book IN ({_IDR_BOOK_NAMES}))", name="to_book_of_the_unit"),
    CheckConstraint(
        "from_book <> to_book OR (from_account_id IS NOT NULL AND from_account_id <> to_account_id)",
        name="moves_somewhere",
    ),
    Index(None, "from_account_id", "entry_id"),
    Index(None, "to_account_id", "entry_id"),
    Index(None, "reference"),
)

# The audit log: every ledger event, each carrying the hash of the one before, so that changing,
# removing or reordering any past event breaks every hash after it (see audit.py).
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("subject", String(ID_LENGTH), nullable=False),
    Column("account_id", String(ACCOUNT_ID_LENGTH), nullable=True),
    # The event's facts as canonical JSON (sorted keys, no spaces): exactly the bytes hashed.
    Column("payload", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("seq > 0", name="seq_positive"),
    Index(None, "subject"),
)

# The chain's head: the last seq and hash, in one row every appender locks, so appends from
# several replicas line up one after another.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

GENESIS_HASH = bytes(32)

_IMMUTABLE_TABLES = ("entries", "audit_log", "payments", "transfers", "settlements")
_UNDELETABLE_TABLES = ("accounts", "orders", "refunds", "serials", "holds", "audit_head", "system_books")


def _forbid(table: str, verbs: tuple[str, ...], message: str) -> None:
    for verb in verbs:
        name = f"{table}_no_{verb.lower()}"
        event.listen(
            metadata.tables[table],
            "after_create",
            DDL(
                f"CREATE TRIGGER {name} BEFORE {verb} ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END"
            ).execute_if(dialect="sqlite"),
        )
    function = f"{table}_guard"
    event.listen(
        metadata.tables[table],
        "after_create",
        DDL(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
        ).execute_if(dialect="postgresql"),
    )
    event.listen(
        metadata.tables[table],
        "after_create",
        DDL(
            f"CREATE TRIGGER {function} BEFORE {' OR '.join(verbs)} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        ).execute_if(dialect="postgresql"),
    )
    # drop_all must remove the function too, or the next create_all on the same database fails.
    event.listen(
        metadata.tables[table],
        "after_drop",
        DDL(f"DROP FUNCTION IF EXISTS {function}()").execute_if(dialect="postgresql"),
    )


for _table in _IMMUTABLE_TABLES:
    _forbid(_table, ("UPDATE", "DELETE"), f"{_table} rows are immutable")
for _table in _UNDELETABLE_TABLES:
    _forbid(_table, ("DELETE",), f"{_table} rows are never deleted")


def seed(conn: Connection) -> None:
    """The rows a new ledger starts with: the system books at zero and the audit chain's genesis.

    Revision 0001 inserts them; this puts them back in tables emptied by a test.
    """
    if conn.execute(select(audit_head.c.id)).first() is None:
        conn.execute(insert(audit_head).values(id=1, seq=0, hash=GENESIS_HASH))
    present = set(conn.execute(select(system_books.c.book)).scalars())
    for book in SYSTEM_BOOKS:
        if book not in present:
            conn.execute(insert(system_books).values(book=book, unit=book.unit, balance=0))


def new_id(prefix: str) -> str:
    """A public id such as "ord_3f9c...": the prefix tells a support agent what kind of record it is."""
    return f"{prefix}_{secrets.token_hex(12)}"
