"""The ledger as first released.

Accounts and their books, orders, payments, refunds, transfers, settlements, the serial registry,
holds, the double-entry journal and the hash-chained audit log; the triggers that keep the journal
immutable and records undeletable; the rows a new ledger starts with (the system books at zero and
the audit chain's genesis).

Everything is spelled out, enum values included, rather than read from schema.py or models.py:
this revision must create the same schema however those change later.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACCOUNT_ID = sa.String(128)
ID = sa.String(40)
KEY = sa.String(128)
TEXT = sa.String(200)
HASH = sa.LargeBinary(32)
UTC_TIME = sa.DateTime(timezone=True)
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

CHANNELS = "('retail', 'distributor', 'enterprise', 'collector')"
BOOKS = "('available', 'held', 'consumed', 'refunded', 'receivable', 'stock', 'payments', 'sold')"
SYSTEM_BOOKS = "('stock', 'payments', 'sold')"
IDR_BOOKS = "('receivable', 'payments', 'sold')"
UNITS = "('stamp', 'idr')"

IMMUTABLE_TABLES = ("entries", "audit_log", "payments", "transfers", "settlements")
UNDELETABLE_TABLES = ("accounts", "orders", "refunds", "serials", "holds", "audit_head", "system_books")
# Creation order: every table after those its foreign keys point at.
TABLES = (
    "accounts",
    "system_books",
    "orders",
    "payments",
    "refunds",
    "transfers",
    "settlements",
    "serials",
    "holds",
    "entries",
    "audit_log",
    "audit_head",
)


def _check(sqltext: str, name: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sqltext, name=op.f(name))


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _account_fk(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["accounts.account_id"], name=op.f(f"fk_{table}_{column}_accounts")
    )


def upgrade() -> None:
    _create_tables()
    dialect = op.get_context().dialect.name
    for table in IMMUTABLE_TABLES:
        _forbid(dialect, table, ("UPDATE", "DELETE"), f"{table} rows are immutable")
    for table in UNDELETABLE_TABLES:
        _forbid(dialect, table, ("DELETE",), f"{table} rows are never deleted")
    _seed()


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers; PostgreSQL's trigger functions stay.
    for table in reversed(TABLES):
        op.drop_table(table)
    if op.get_context().dialect.name == "postgresql":
        for table in IMMUTABLE_TABLES + UNDELETABLE_TABLES:
            op.execute(f"DROP FUNCTION IF EXISTS {table}_guard()")


def _create_tables() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", ACCOUNT_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pool_account_id", ACCOUNT_ID, nullable=True),
        sa.Column("credit_limit_idr", sa.BigInteger(), nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("consumed", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("owed_idr", sa.BigInteger(), nullable=False),
        sa.Column("credit_held_idr", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        _check("available >= 0", "ck_accounts_available_non_negative"),
        _check("held >= 0", "ck_accounts_held_non_negative"),
        _check("consumed >= 0", "ck_accounts_consumed_non_negative"),
        _check("refunded >= 0", "ck_accounts_refunded_non_negative"),
        _check("owed_idr >= 0", "ck_accounts_owed_idr_non_negative"),
        _check("credit_limit_idr >= 0", "ck_accounts_credit_limit_idr_non_negative"),
        _check("credit_held_idr >= 0", "ck_accounts_credit_held_idr_non_negative"),
        _check(f"kind IN {CHANNELS}", "ck_accounts_kind_known"),
        _check("pool_account_id IS NULL OR pool_account_id <> account_id", "ck_accounts_pool_not_self"),
        _check("credit_limit_idr = 0 OR kind = 'collector'", "ck_accounts_credit_only_for_collectors"),
        _check(
            "owed_idr = 0 AND credit_held_idr = 0 OR kind = 'collector'",
            "ck_accounts_owing_only_for_collectors",
        ),
        _account_fk("pool_account_id", "accounts"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "system_books",
        sa.Column("book", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        _check(f"book IN {SYSTEM_BOOKS}", "ck_system_books_book_known"),
        _check(f"unit IN {UNITS}", "ck_system_books_unit_known"),
        sa.PrimaryKeyConstraint("book", name=op.f("pk_system_books")),
    )
    op.create_table(
        "orders",
        sa.Column("seq", SEQUENCE, autoincrement=True, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("account_id", ACCOUNT_ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price_idr", sa.BigInteger(), nullable=False),
        sa.Column("amount_idr", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("payment_provider", sa.String(32), nullable=False),
        sa.Column("payment_reference", TEXT, nullable=False),
        sa.Column("payment_url", sa.String(1000), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("paid_at", UTC_TIME, nullable=True),
        sa.Column("refunded_quantity", sa.BigInteger(), nullable=False),
        _check("quantity > 0", "ck_orders_quantity_positive"),
        _check("unit_price_idr > 0", "ck_orders_unit_price_positive"),
        _check("amount_idr = quantity * unit_price_idr", "ck_orders_amount_is_quantity_times_price"),
        _check(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity", "ck_orders_refunded_within_quantity"
        ),
        _check(
            "status IN ('awaiting_payment', 'paid', 'cancelled', 'expired', 'partially_refunded', "
            "'refunded')",
            "ck_orders_status_known",
        ),
        _check(f"channel IN {CHANNELS}", "ck_orders_channel_known"),
        _check(
            "(paid_at IS NULL) = (status IN ('awaiting_payment', 'cancelled', 'expired'))",
            "ck_orders_paid_at_iff_paid",
        ),
        _account_fk("account_id", "orders"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_orders")),
        _unique("orders", "order_id"),
        _unique("orders", "account_id", "idempotency_key"),
    )
    op.create_index(op.f("ix_orders_account_id_seq"), "orders", ["account_id", "seq"])
    op.create_index(op.f("ix_orders_status_expires_at"), "orders", ["status", "expires_at"])

    op.create_table(
        "payments",
        sa.Column("payment_id", ID, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("event_id", TEXT, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("amount_idr", sa.BigInteger(), nullable=False),
        sa.Column("reference", TEXT, nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("received_at", UTC_TIME, nullable=False),
        _check("amount_idr > 0", "ck_payments_amount_positive"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name=op.f("fk_payments_order_id_orders")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payments")),
        _unique("payments", "provider", "event_id"),
    )
    # At most one applied payment per order: no order is credited twice.
    op.create_index(
        op.f("uq_payments_applied_order_id"),
        "payments",
        ["order_id"],
        unique=True,
        sqlite_where=sa.text("applied"),
        postgresql_where=sa.text("applied"),
    )

    op.create_table(
        "refunds",
        sa.Column("seq", SEQUENCE, autoincrement=True, nullable=False),
        sa.Column("refund_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("payment_id", ID, nullable=False),
        sa.Column("account_id", ACCOUNT_ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=False),
        sa.Column("requested_quantity", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("amount_idr", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_reference", TEXT, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("completed_at", UTC_TIME, nullable=True),
        _check("quantity >= 0", "ck_refunds_quantity_non_negative"),
        _check("requested_quantity >= 0", "ck_refunds_requested_non_negative"),
        _check("amount_idr > 0", "ck_refunds_amount_positive"),
        _check("status IN ('pending', 'completed')", "ck_refunds_status_known"),
        _check("(completed_at IS NULL) = (status = 'pending')", "ck_refunds_completed_iff_not_pending"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name=op.f("fk_refunds_order_id_orders")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.payment_id"], name=op.f("fk_refunds_payment_id_payments")
        ),
        _account_fk("account_id", "refunds"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_refunds")),
        _unique("refunds", "refund_id"),
        _unique("refunds", "account_id", "idempotency_key"),
    )
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"])
    op.create_index(op.f("ix_refunds_status_seq"), "refunds", ["status", "seq"])

    op.create_table(
        "transfers",
        sa.Column("transfer_id", ID, nullable=False),
        sa.Column("from_account_id", ACCOUNT_ID, nullable=False),
        sa.Column("to_account_id", ACCOUNT_ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        _check("quantity > 0", "ck_transfers_quantity_positive"),
        _check("from_account_id <> to_account_id", "ck_transfers_not_to_self"),
        _check(f"channel IN {CHANNELS}", "ck_transfers_channel_known"),
        _account_fk("from_account_id", "transfers"),
        _account_fk("to_account_id", "transfers"),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_transfers")),
        _unique("transfers", "from_account_id", "idempotency_key"),
    )
    op.create_table(
        "settlements",
        sa.Column("settlement_id", ID, nullable=False),
        sa.Column("account_id", ACCOUNT_ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=False),
        sa.Column("amount_idr", sa.BigInteger(), nullable=False),
        sa.Column("reference", TEXT, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        _check("amount_idr > 0", "ck_settlements_amount_positive"),
        _account_fk("account_id", "settlements"),
        sa.PrimaryKeyConstraint("settlement_id", name=op.f("pk_settlements")),
        _unique("settlements", "account_id", "idempotency_key"),
    )
    op.create_table(
        "serials",
        sa.Column("serial", sa.String(22), nullable=False),
        sa.Column("account_id", ACCOUNT_ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("document_sha256", HASH, nullable=False),
        sa.Column("stamped_sha256", HASH, nullable=True),
        sa.Column("issued_at", UTC_TIME, nullable=False),
        sa.Column("stamped_at", UTC_TIME, nullable=True),
        sa.Column("voided_at", UTC_TIME, nullable=True),
        _check("status IN ('reserved', 'stamped', 'void')", "ck_serials_status_known"),
        _check("(stamped_sha256 IS NOT NULL) = (status = 'stamped')", "ck_serials_stamped_hash_iff_stamped"),
        _check("(stamped_at IS NOT NULL) = (status = 'stamped')", "ck_serials_stamped_at_iff_stamped"),
        _check("(voided_at IS NOT NULL) = (status = 'void')", "ck_serials_voided_at_iff_void"),
        _account_fk("account_id", "serials"),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_serials")),
    )
    op.create_table(
        "holds",
        sa.Column("seq", SEQUENCE, autoincrement=True, nullable=False),
        sa.Column("hold_id", ID, nullable=False),
        sa.Column("account_id", ACCOUNT_ID, nullable=False),
        sa.Column("funding_account_id", ACCOUNT_ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=False),
        sa.Column("serial", sa.String(22), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("document_sha256", HASH, nullable=False),
        sa.Column("stamped_sha256", HASH, nullable=True),
        sa.Column("doc_type", sa.String(24), nullable=False),
        sa.Column("doc_name", TEXT, nullable=False),
        sa.Column("doc_number", TEXT, nullable=False),
        sa.Column("doc_date", sa.String(10), nullable=False),
        sa.Column("doc_value_idr", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("credit_price_idr", sa.BigInteger(), nullable=False),
        sa.Column("release_reason", sa.String(24), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("resolved_at", UTC_TIME, nullable=True),
        _check("status IN ('reserved', 'committed', 'released')", "ck_holds_status_known"),
        _check(f"channel IN {CHANNELS}", "ck_holds_channel_known"),
        _check(
            "doc_type IN ('unspecified', 'agreement', 'statement', 'notarial_deed', 'land_deed', "
            "'securities', 'transaction', 'money_receipt', 'debt_settlement', 'court_evidence', 'other')",
            "ck_holds_doc_type_known",
        ),
        _check(
            "release_reason IS NULL OR release_reason IN "
            "('signing_failed', 'storage_failed', 'cancelled', 'expired')",
            "ck_holds_release_reason_known",
        ),
        _check("doc_value_idr >= 0", "ck_holds_doc_value_non_negative"),
        _check("credit_price_idr >= 0", "ck_holds_credit_price_non_negative"),
        _check("(resolved_at IS NULL) = (status = 'reserved')", "ck_holds_resolved_iff_not_reserved"),
        _check("(stamped_sha256 IS NOT NULL) = (status = 'committed')", "ck_holds_stamped_iff_committed"),
        _check("(release_reason IS NOT NULL) = (status = 'released')", "ck_holds_reason_iff_released"),
        _account_fk("account_id", "holds"),
        _account_fk("funding_account_id", "holds"),
        sa.ForeignKeyConstraint(["serial"], ["serials.serial"], name=op.f("fk_holds_serial_serials")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_holds")),
        _unique("holds", "hold_id"),
        _unique("holds", "serial"),
        _unique("holds", "account_id", "idempotency_key"),
    )
    op.create_index(op.f("ix_holds_account_id_seq"), "holds", ["account_id", "seq"])
    op.create_index(op.f("ix_holds_status_expires_at"), "holds", ["status", "expires_at"])

    op.create_table(
        "entries",
        sa.Column("entry_id", SEQUENCE, autoincrement=True, nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("from_account_id", ACCOUNT_ID, nullable=True),
        sa.Column("from_book", sa.String(16), nullable=False),
        sa.Column("to_account_id", ACCOUNT_ID, nullable=True),
        sa.Column("to_book", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("reference", ID, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        _check("amount > 0", "ck_entries_amount_positive"),
        _check(f"unit IN {UNITS}", "ck_entries_unit_known"),
        _check(f"from_book IN {BOOKS}", "ck_entries_from_book_known"),
        _check(f"to_book IN {BOOKS}", "ck_entries_to_book_known"),
        _check(
            "kind IN ('purchase', 'payment', 'refund', 'payment_return', 'transfer', 'reserve', 'commit', "
            "'release', 'billing', 'settlement')",
            "ck_entries_kind_known",
        ),
        _check(f"channel IN {CHANNELS}", "ck_entries_channel_known"),
        _check(
            f"(from_account_id IS NULL) = (from_book IN {SYSTEM_BOOKS})", "ck_entries_from_owner_matches_book"
        ),
        _check(f"(to_account_id IS NULL) = (to_book IN {SYSTEM_BOOKS})", "ck_entries_to_owner_matches_book"),
        _check(f"(unit = 'idr') = (from_book IN {IDR_BOOKS})", "ck_entries_from_book_of_the_unit"),
        _check(f"(unit = 'idr') = (to_book IN {IDR_BOOKS})", "ck_entries_to_book_of_the_unit"),
        _check(
            "from_book <> to_book OR (from_account_id IS NOT NULL AND from_account_id <> to_account_id)",
            "ck_entries_moves_somewhere",
        ),
        _account_fk("from_account_id", "entries"),
        _account_fk("to_account_id", "entries"),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_entries")),
    )
    op.create_index(op.f("ix_entries_from_account_id_entry_id"), "entries", ["from_account_id", "entry_id"])
    op.create_index(op.f("ix_entries_to_account_id_entry_id"), "entries", ["to_account_id", "entry_id"])
    op.create_index(op.f("ix_entries_reference"), "entries", ["reference"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", HASH, nullable=False),
        sa.Column("hash", HASH, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", ID, nullable=False),
        sa.Column("account_id", ACCOUNT_ID, nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        _check("seq > 0", "ck_audit_log_seq_positive"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        _unique("audit_log", "hash"),
    )
    op.create_index(op.f("ix_audit_log_subject"), "audit_log", ["subject"])

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", HASH, nullable=False),
        _check("id = 1", "ck_audit_head_single_row"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )


def _forbid(dialect: str, table: str, verbs: tuple[str, ...], message: str) -> None:
    """Make the database refuse verbs on table with message, whoever asks."""
    if dialect == "sqlite":
        for verb in verbs:
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    elif dialect == "postgresql":
        function = f"{table}_guard"
        op.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {function} BEFORE {' OR '.join(verbs)} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
    else:
        raise NotImplementedError(f"the ledger runs on SQLite or PostgreSQL, not {dialect}")


def _seed() -> None:
    system_books = sa.table(
        "system_books",
        sa.column("book", sa.String),
        sa.column("unit", sa.String),
        sa.column("balance", sa.BigInteger),
    )
    op.bulk_insert(
        system_books,
        [
            {"book": "stock", "unit": "stamp", "balance": 0},
            {"book": "payments", "unit": "idr", "balance": 0},
            {"book": "sold", "unit": "idr", "balance": 0},
        ],
    )
    audit_head = sa.table(
        "audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger), sa.column("hash", HASH)
    )
    # The genesis: the first event's previous hash is 32 zero bytes.
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": bytes(32)}])
