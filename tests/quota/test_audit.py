"""The audit catches what it exists to catch: a changed balance, an altered, removed or cut-off
audit event, a serial out of step with its hold, a missing journal entry. Each case tampers with
the database the way only someone with direct database access could (guards switched off first)
and checks that `emeterai audit` names the discrepancy and exits non-zero. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, delete, func, select, text, update

from services.cli import main
from services.quota.audit import event_hash, reconcile
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, Order, ReleaseReason
from services.quota.schema import accounts, audit_log, entries, holds, serials

from .conftest import UNIT_PRICE_IDR, sha

Buy = Callable[[str, int], Order]
# The ledger fixture's closing consistency check would fail on purpose here.
tampers = pytest.mark.tampers


@pytest.fixture
def busy_ledger(ledger: Ledger, buy: Buy) -> Ledger:
    """A ledger that has seen every kind of event."""
    order = buy("acct-a", 5)
    stamped, _ = ledger.reserve("acct-a", "stamp-1", sha("doc-1"), DocumentMetadata(), Channel.RETAIL)
    ledger.commit(stamped.hold_id, sha("stamped-1"))
    failed, _ = ledger.reserve("acct-a", "stamp-2", sha("doc-2"), DocumentMetadata(), Channel.RETAIL)
    ledger.release(failed.hold_id, ReleaseReason.SIGNING_FAILED)
    ledger.reserve("acct-a", "stamp-3", sha("doc-3"), DocumentMetadata(), Channel.RETAIL)
    ledger.transfer_quota("acct-a", "acct-b", 1, "give-1", Channel.RETAIL)
    ledger.refund_order(order.order_id, "acct-a", 1, "not needed", "refund-1")
    cancelled, _ = ledger.create_order("acct-a", 1, "order-x", Channel.RETAIL)
    ledger.cancel_order(cancelled.order_id, "acct-a")
    ledger.configure_account("corp", Channel.COLLECTOR, credit_limit_idr=2 * UNIT_PRICE_IDR)
    on_credit, _ = ledger.reserve("corp", "stamp-1", sha("corp-doc"), DocumentMetadata(), Channel.COLLECTOR)
    ledger.commit(on_credit.hold_id, sha("corp-stamped"))
    ledger.settle_statement("corp", UNIT_PRICE_IDR, "BCA-1", "settle-1")
    return ledger


def audit_cli(engine: Engine, check: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    url = engine.url.render_as_string(hide_password=False)
    with pytest.raises(SystemExit) as exited:
        main(["audit", check, "--database-url", url])
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out + captured.err


@contextmanager
def guards_off(engine: Engine, table: str) -> Iterator[Connection]:
    """A transaction on `table` with its immutability triggers switched off (and back on after)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for verb in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{verb}"))
        try:
            yield conn
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def test_an_untouched_ledger_passes_both_checks(
    busy_ledger: Ledger, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = audit_cli(engine, "verify", capsys)
    with engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    assert code == 0 and f"audit chain intact: {events} events" in output
    code, output = audit_cli(engine, "reconcile", capsys)
    assert code == 0 and "books reconciled: 3 accounts" in output


@tampers
def test_a_changed_balance_is_named(
    busy_ledger: Ledger, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.account_id == "acct-b")
            .values(available=accounts.c.available + 1)
        )
    code, output = audit_cli(engine, "reconcile", capsys)
    assert code == 1
    assert "account acct-b: available is 2, the journal says 1" in output
    assert "account acct-b: purchased 1" in output
    assert "stock issued" in output


@tampers
def test_an_altered_audit_event_is_named(
    busy_ledger: Ledger, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with guards_off(engine, "audit_log") as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(payload=audit_log.c.payload + " "))
    code, output = audit_cli(engine, "verify", capsys)
    assert code == 1 and "audit event 3" in output and "was altered" in output
    # Recomputing the altered event's hash to hide the change breaks the link to the next event.
    with engine.connect() as conn:
        altered = conn.execute(select(audit_log).where(audit_log.c.seq == 3)).one()
    rehashed = event_hash(
        bytes(altered.prev_hash),
        seq=3,
        kind=altered.kind,
        subject=altered.subject,
        account_id=altered.account_id,
        payload=altered.payload,
        created_at=altered.created_at,
    )
    with guards_off(engine, "audit_log") as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(hash=rehashed))
    code, output = audit_cli(engine, "verify", capsys)
    assert code == 1 and "audit event 4 does not follow event 3" in output and "was altered" not in output


@tampers
def test_a_removed_or_cut_off_audit_event_is_named(
    busy_ledger: Ledger, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.connect() as conn:
        last = conn.execute(select(func.max(audit_log.c.seq))).scalar_one()
    with guards_off(engine, "audit_log") as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 2))
    code, output = audit_cli(engine, "verify", capsys)
    assert code == 1 and "audit event 2 is missing" in output
    with guards_off(engine, "audit_log") as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == last))
    code, output = audit_cli(engine, "verify", capsys)
    assert f"the audit head says the chain ends at event {last}" in output


@tampers
def test_a_serial_out_of_step_with_its_hold_is_named(
    busy_ledger: Ledger, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.connect() as conn:
        serial = conn.execute(select(holds.c.serial).where(holds.c.status == "committed")).scalars().first()
    with engine.begin() as conn:
        conn.execute(
            update(serials)
            .where(serials.c.serial == serial)
            .values(status="void", stamped_sha256=None, stamped_at=None, voided_at=datetime.now(UTC))
        )
    code, output = audit_cli(engine, "reconcile", capsys)
    assert code == 1 and f"serial {serial} is void but its hold" in output


@tampers
def test_a_removed_journal_entry_is_named(busy_ledger: Ledger, engine: Engine) -> None:
    with guards_off(engine, "entries") as conn:
        conn.execute(delete(entries).where(entries.c.kind == "transfer"))
    with engine.connect() as conn:
        problems = reconcile(conn)
    assert "account acct-b: available is 1, the journal says 0" in problems


@tampers
def test_a_ledger_change_that_skipped_the_audit_log_is_named(busy_ledger: Ledger, engine: Engine) -> None:
    # An extra committed hold, written straight into the tables with its books and journal right.
    with engine.connect() as conn:
        hold = conn.execute(select(holds).where(holds.c.status == "reserved")).one()
    with engine.begin() as conn:
        conn.execute(
            update(holds)
            .where(holds.c.hold_id == hold.hold_id)
            .values(status="released", release_reason="cancelled", resolved_at=datetime.now(UTC))
        )
    with engine.connect() as conn:
        problems = reconcile(conn)
    assert "the audit log has 1 hold.released events for 2 records" in problems
