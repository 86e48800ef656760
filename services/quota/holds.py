"""Holds: one unit set aside with its serial while a document is stamped, then committed or released.

A hold resolves exactly once. Every transition is a conditional UPDATE on status = 'reserved', so of
two racing resolutions (commit against the expiry sweeper, say) exactly one matches a row; the
other reads what happened and answers from that.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from services.common.errors import Conflict, NotFound
from services.quota.balances import ensure_account, move
from services.quota.errors import HoldAlreadyResolved
from services.quota.models import (
    Channel,
    DocumentMetadata,
    DocumentType,
    EntryKind,
    Hold,
    HoldStatus,
    ReleaseReason,
    SerialRecord,
    SerialStatus,
    State,
)
from services.quota.schema import holds, new_id
from services.quota.serials import new_serial

_SERIAL_STATUS = {
    HoldStatus.RESERVED: SerialStatus.RESERVED,
    HoldStatus.COMMITTED: SerialStatus.STAMPED,
    HoldStatus.RELEASED: SerialStatus.VOID,
}


def hold_from_row(row: Any) -> Hold:
    return Hold(
        hold_id=row.hold_id,
        account_id=row.account_id,
        serial=row.serial,
        status=HoldStatus(row.status),
        document_sha256=bytes(row.document_sha256),
        stamped_sha256=None if row.stamped_sha256 is None else bytes(row.stamped_sha256),
        metadata=DocumentMetadata(
            type=DocumentType(row.doc_type),
            name=row.doc_name,
            number=row.doc_number,
            date=row.doc_date,
            value_idr=row.doc_value_idr,
        ),
        channel=Channel(row.channel),
        release_reason=None if row.release_reason is None else ReleaseReason(row.release_reason),
        created_at=row.created_at,
        expires_at=row.expires_at,
        resolved_at=row.resolved_at,
    )


def _row(conn: Connection, hold_id: str, account_id: str = "") -> Any:
    row = conn.execute(select(holds).where(holds.c.hold_id == hold_id)).one_or_none()
    # Another account's hold is reported exactly like a missing one, so ids cannot be probed.
    if row is None or (account_id and row.account_id != account_id):
        raise NotFound(f"no hold {hold_id}")
    return row


def get(conn: Connection, hold_id: str, account_id: str = "") -> Hold:
    return hold_from_row(_row(conn, hold_id, account_id))


def reserve(
    conn: Connection,
    *,
    account_id: str,
    key: str,
    document_sha256: bytes,
    metadata: DocumentMetadata,
    channel: Channel,
    now: datetime,
    ttl: timedelta,
) -> tuple[Hold, bool]:
    """Hold one available unit and issue its serial; (hold, replayed)."""
    earlier = conn.execute(
        select(holds).where(holds.c.account_id == account_id, holds.c.idempotency_key == key)
    ).one_or_none()
    if earlier is not None:
        # A retry must get the serial it was first given, or a second stamp would burn a second unit.
        if bytes(earlier.document_sha256) != document_sha256:
            raise Conflict("this idempotency key was used to reserve a stamp for a different document")
        return hold_from_row(earlier), True

    ensure_account(conn, account_id, now)
    hold_id = new_id("hold")
    # The decrement comes first: it takes the account's row lock, so concurrent reserves queue here.
    move(
        conn,
        account_id=account_id,
        from_state=State.AVAILABLE,
        to_state=State.HELD,
        quantity=1,
        kind=EntryKind.RESERVE,
        channel=channel,
        reference=hold_id,
        now=now,
    )
    # A serial collision (about 2**-105 per pair) violates UNIQUE(serial); the Ledger retries it.
    conn.execute(
        insert(holds).values(
            hold_id=hold_id,
            account_id=account_id,
            idempotency_key=key,
            serial=new_serial(),
            status=HoldStatus.RESERVED,
            document_sha256=document_sha256,
            stamped_sha256=None,
            doc_type=metadata.type,
            doc_name=metadata.name,
            doc_number=metadata.number,
            doc_date=metadata.date,
            doc_value_idr=metadata.value_idr,
            channel=channel,
            release_reason=None,
            created_at=now,
            expires_at=now + ttl,
            resolved_at=None,
        )
    )
    return get(conn, hold_id), False


def _resolve(conn: Connection, hold_id: str, now: datetime, **values: Any) -> Any:
    """Move a reserved hold to a final state; the updated row, or None if it was not reserved."""
    result = conn.execute(
        update(holds)
        .where(holds.c.hold_id == hold_id, holds.c.status == HoldStatus.RESERVED)
        .values(resolved_at=now, **values)
        .returning(*holds.c)
    )
    return result.one_or_none()


def commit(conn: Connection, hold_id: str, stamped_sha256: bytes, now: datetime) -> Hold:
    """Consume the held unit and bind the serial to the stamped document; repeatable with the same hash."""
    row = _resolve(conn, hold_id, now, status=HoldStatus.COMMITTED, stamped_sha256=stamped_sha256)
    if row is None:
        hold = get(conn, hold_id)
        if hold.status is HoldStatus.COMMITTED and hold.stamped_sha256 == stamped_sha256:
            return hold
        if hold.status is HoldStatus.COMMITTED:
            raise HoldAlreadyResolved("this hold was already committed with a different stamped document")
        raise HoldAlreadyResolved(
            f"this hold was released ({hold.release_reason}); its serial is void, reserve a new one"
        )
    move(
        conn,
        account_id=row.account_id,
        from_state=State.HELD,
        to_state=State.CONSUMED,
        quantity=1,
        kind=EntryKind.COMMIT,
        channel=Channel(row.channel),
        reference=hold_id,
        now=now,
    )
    return hold_from_row(row)


def release(conn: Connection, hold_id: str, reason: ReleaseReason, now: datetime) -> Hold:
    """Return the held unit to available and void the serial; repeatable on a released hold."""
    row = _resolve(conn, hold_id, now, status=HoldStatus.RELEASED, release_reason=reason)
    if row is None:
        hold = get(conn, hold_id)
        if hold.status is HoldStatus.RELEASED:
            return hold
        raise HoldAlreadyResolved("this hold was committed: its stamp exists and the unit is spent")
    _give_back(conn, row, now)
    return hold_from_row(row)


def _give_back(conn: Connection, row: Any, now: datetime) -> None:
    move(
        conn,
        account_id=row.account_id,
        from_state=State.HELD,
        to_state=State.AVAILABLE,
        quantity=1,
        kind=EntryKind.RELEASE,
        channel=Channel(row.channel),
        reference=row.hold_id,
        now=now,
    )


def expired_hold_ids(conn: Connection, now: datetime, limit: int) -> list[str]:
    query = (
        select(holds.c.hold_id)
        .where(holds.c.status == HoldStatus.RESERVED, holds.c.expires_at <= now)
        .order_by(holds.c.expires_at)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def release_if_expired(conn: Connection, hold_id: str, now: datetime) -> bool:
    """Release the hold if it is still reserved and past its deadline; True if this call did it."""
    result = conn.execute(
        update(holds)
        .where(holds.c.hold_id == hold_id, holds.c.status == HoldStatus.RESERVED, holds.c.expires_at <= now)
        .values(status=HoldStatus.RELEASED, release_reason=ReleaseReason.EXPIRED, resolved_at=now)
        .returning(*holds.c)
    )
    row = result.one_or_none()
    if row is None:
        return False
    _give_back(conn, row, now)
    return True


def page(conn: Connection, account_id: str, before_seq: int | None, limit: int) -> list[tuple[int, Hold]]:
    """Up to limit holds of account_id, newest first, older than before_seq when given."""
    query = select(holds).where(holds.c.account_id == account_id)
    if before_seq is not None:
        query = query.where(holds.c.seq < before_seq)
    rows = conn.execute(query.order_by(holds.c.seq.desc()).limit(limit)).all()
    return [(row.seq, hold_from_row(row)) for row in rows]


def lookup_serial(conn: Connection, serial: str) -> SerialRecord:
    # Select only public columns: the owner never leaves the database on this path.
    row = conn.execute(
        select(holds.c.status, holds.c.created_at, holds.c.resolved_at).where(holds.c.serial == serial)
    ).one_or_none()
    if row is None:
        return SerialRecord(serial=serial, status=SerialStatus.UNKNOWN)
    status = HoldStatus(row.status)
    return SerialRecord(
        serial=serial,
        status=_SERIAL_STATUS[status],
        issued_at=row.created_at,
        stamped_at=row.resolved_at if status is HoldStatus.COMMITTED else None,
    )
