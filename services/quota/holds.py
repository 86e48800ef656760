"""Holds: one unit set aside with its serial while a document is stamped, then committed or released.

A hold resolves exactly once. Every transition is a conditional UPDATE on status = 'reserved', so of
two racing resolutions (commit against the expiry sweeper, say) exactly one matches a row; the
other reads what happened and answers from that.

Where the unit comes from: the account's own available units; for an account that draws on a pool
(an enterprise child), the pool account's; for a collector without prepaid units, stock, on credit
up to its limit, billed when the hold commits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Connection,
    LargeBinary,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.types import TypeEngine

from services.common.db import UtcDateTime
from services.common.errors import Conflict, NotFound
from services.quota.balances import move
from services.quota.db import ValuesStatement, fresh_requests, insert_rows
from services.quota.errors import HoldAlreadyResolved, InsufficientQuota, LedgerInconsistency
from services.quota.journal import Journal, Side, system
from services.quota.models import (
    Book,
    Channel,
    DocumentMetadata,
    DocumentType,
    EntryKind,
    Hold,
    HoldStatus,
    ReleaseReason,
    SerialRecord,
    SerialStatus,
)
from services.quota.schema import accounts, holds, new_id, serials
from services.quota.serials import new_serial


def hold_from_row(row: Any) -> Hold:
    return Hold(
        hold_id=row.hold_id,
        account_id=row.account_id,
        funding_account_id=row.funding_account_id,
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
        document_ref=row.document_ref or "",
    )


def _row(conn: Connection, hold_id: str, account_id: str = "") -> Any:
    row = conn.execute(select(holds).where(holds.c.hold_id == hold_id)).one_or_none()
    # Another account's hold is reported exactly like a missing one, so ids cannot be probed.
    if row is None or (account_id and row.account_id != account_id):
        raise NotFound(f"no hold {hold_id}")
    return row


def get(conn: Connection, hold_id: str, account_id: str = "") -> Hold:
    return hold_from_row(_row(conn, hold_id, account_id))


@dataclass(frozen=True)
class ReserveRequest:
    account_id: str
    key: str
    document_sha256: bytes
    metadata: DocumentMetadata
    channel: Channel
    now: datetime
    ttl: timedelta
    unit_price_idr: int
    # The caller's fingerprint of the rest of the request; empty for none.
    request_sha256: bytes = b""


def reserve(journal: Journal, request: ReserveRequest) -> tuple[Hold, bool]:
    """Hold one unit and issue its serial; (hold, replayed)."""
    conn = journal.conn
    earlier = conn.execute(
        select(holds).where(holds.c.account_id == request.account_id, holds.c.idempotency_key == request.key)
    ).one_or_none()
    if earlier is not None:
        # A retry must get the serial it was first given, or a second stamp would burn a second unit.
        if bytes(earlier.document_sha256) != request.document_sha256:
            raise Conflict("this idempotency key was used to reserve a stamp for a different document")
        # Compared only when both have one: a hold made before fingerprints, or a caller that
        # sends none, is matched by its document alone.
        fingerprinted = earlier.request_sha256 is not None and request.request_sha256
        if fingerprinted and bytes(earlier.request_sha256) != request.request_sha256:
            raise Conflict(
                "this idempotency key was used to reserve a stamp with another placement or "
                "other document details"
            )
        return hold_from_row(earlier), True

    hold_id = new_id("hold")
    funding_account_id, credit_price_idr = _take_unit(
        journal, request.account_id, hold_id, request.channel, request.now, request.unit_price_idr
    )
    serial_row, hold_row = _new_hold(request, hold_id, funding_account_id, credit_price_idr)
    # A serial collision (about 2**-105 per pair) violates its primary key; the ledger retries it.
    conn.execute(insert(serials).values(serial_row))
    conn.execute(insert(holds).values(hold_row))
    _audit_reserved(journal, hold_row)
    return hold_from_row(SimpleNamespace(**hold_row)), False


def _new_hold(
    request: ReserveRequest, hold_id: str, funding_account_id: str, credit_price_idr: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rows of a new serial and its hold."""
    serial = new_serial()
    serial_row = {
        "serial": serial,
        "account_id": request.account_id,
        "status": SerialStatus.RESERVED,
        "document_sha256": request.document_sha256,
        "stamped_sha256": None,
        "issued_at": request.now,
        "stamped_at": None,
        "voided_at": None,
    }
    metadata = request.metadata
    hold_row = {
        "hold_id": hold_id,
        "account_id": request.account_id,
        "funding_account_id": funding_account_id,
        "idempotency_key": request.key,
        "serial": serial,
        "status": HoldStatus.RESERVED,
        "document_sha256": request.document_sha256,
        "stamped_sha256": None,
        "doc_type": metadata.type,
        "doc_name": metadata.name,
        "doc_number": metadata.number,
        "doc_date": metadata.date,
        "doc_value_idr": metadata.value_idr,
        "channel": request.channel,
        "credit_price_idr": credit_price_idr,
        "release_reason": None,
        "created_at": request.now,
        "expires_at": request.now + request.ttl,
        "resolved_at": None,
        "document_ref": None,
        "request_sha256": request.request_sha256 or None,
    }
    return serial_row, hold_row


def _audit_reserved(journal: Journal, hold: dict[str, Any]) -> None:
    journal.audit(
        "hold.reserved",
        hold["hold_id"],
        hold["account_id"],
        {
            "serial": hold["serial"],
            "funding_account_id": hold["funding_account_id"],
            "document_sha256": hold["document_sha256"].hex(),
            "channel": str(hold["channel"]),
            "credit_price_idr": hold["credit_price_idr"],
            "expires_at": hold["expires_at"].isoformat(),
        },
        hold["created_at"],
    )


def _take_unit(
    journal: Journal, account_id: str, hold_id: str, channel: Channel, now: datetime, unit_price_idr: int
) -> tuple[str, int]:
    """Move one unit into held for a new hold; (the account it came from, its credit price)."""
    conn = journal.conn
    # The common case in one statement: the account's own units. It also takes the row lock, so
    # concurrent reserves on one account queue here.
    taken = conn.execute(
        update(accounts)
        .where(
            accounts.c.account_id == account_id,
            accounts.c.pool_account_id.is_(None),
            accounts.c.available >= 1,
        )
        .values(available=accounts.c.available - 1, held=accounts.c.held + 1)
    )
    if taken.rowcount == 1:
        journal.entry(
            Side(account_id, Book.AVAILABLE),
            Side(account_id, Book.HELD),
            1,
            kind=EntryKind.RESERVE,
            channel=channel,
            reference=hold_id,
            now=now,
        )
        return account_id, 0
    account = conn.execute(
        select(accounts.c.kind, accounts.c.pool_account_id).where(accounts.c.account_id == account_id)
    ).one_or_none()
    if account is not None and account.pool_account_id is not None:
        pool = account.pool_account_id
        move(
            journal,
            Side(pool, Book.AVAILABLE),
            Side(pool, Book.HELD),
            1,
            kind=EntryKind.RESERVE,
            channel=channel,
            reference=hold_id,
            now=now,
        )
        return pool, 0
    if account is not None and account.kind == Channel.COLLECTOR:
        # Post-paid: the unit comes from stock, as long as stamps in progress and what is owed stay
        # within the credit limit.
        on_credit = conn.execute(
            update(accounts)
            .where(
                accounts.c.account_id == account_id,
                accounts.c.credit_held_idr + accounts.c.owed_idr + unit_price_idr
                <= accounts.c.credit_limit_idr,
            )
            .values(held=accounts.c.held + 1, credit_held_idr=accounts.c.credit_held_idr + unit_price_idr)
        )
        if on_credit.rowcount != 1:
            raise InsufficientQuota("the collector's credit limit is reached: settle the statement first")
        journal.entry(
            system(Book.STOCK),
            Side(account_id, Book.HELD),
            1,
            kind=EntryKind.RESERVE,
            channel=channel,
            reference=hold_id,
            now=now,
        )
        return account_id, unit_price_idr
    raise InsufficientQuota("not enough available quota: 1 needed; buy more, or wait for stamps in progress")


def _resolve(conn: Connection, hold_id: str, now: datetime, *, in_time: bool = False, **values: Any) -> Any:
    """Move a reserved hold to a final state; the updated row, or None if it was not reserved (or,
    with in_time, is past its deadline)."""
    conditions = [holds.c.hold_id == hold_id, holds.c.status == HoldStatus.RESERVED]
    if in_time:
        conditions.append(holds.c.expires_at > now)
    result = conn.execute(
        update(holds).where(*conditions).values(resolved_at=now, **values).returning(*holds.c)
    )
    return result.one_or_none()


def commit(
    journal: Journal, hold_id: str, stamped_sha256: bytes, now: datetime, document_ref: str = ""
) -> Hold:
    """Consume the held unit and bind the serial to the stamped document; repeatable with the same hash.

    document_ref, where the document store keeps the stamped PDF, is kept with the hold; a repeat
    answers the hold as first committed, its reference included."""
    conn = journal.conn
    # A hold past its deadline is expired whether or not the sweeper has released it yet: the
    # answer must not depend on when the sweeper last ran.
    row = _resolve(
        conn,
        hold_id,
        now,
        in_time=True,
        status=HoldStatus.COMMITTED,
        stamped_sha256=stamped_sha256,
        document_ref=document_ref or None,
    )
    if row is None:
        hold = get(conn, hold_id)
        if hold.status is HoldStatus.RESERVED:
            raise HoldAlreadyResolved(
                "this hold expired before it was committed; its unit goes back and its serial is void, "
                "reserve a new one"
            )
        if hold.status is HoldStatus.COMMITTED and hold.stamped_sha256 == stamped_sha256:
            return hold
        if hold.status is HoldStatus.COMMITTED:
            raise HoldAlreadyResolved("this hold was already committed with a different stamped document")
        raise HoldAlreadyResolved(
            f"this hold was released ({hold.release_reason}); its serial is void, reserve a new one"
        )
    funding = row.funding_account_id
    channel = Channel(row.channel)
    move(
        journal,
        Side(funding, Book.HELD),
        Side(funding, Book.CONSUMED),
        1,
        kind=EntryKind.COMMIT,
        channel=channel,
        reference=hold_id,
        now=now,
    )
    if row.credit_price_idr:
        _free_credit(journal.conn, funding, row.credit_price_idr)
        move(
            journal,
            Side(funding, Book.RECEIVABLE),
            system(Book.SOLD),
            row.credit_price_idr,
            kind=EntryKind.BILLING,
            channel=channel,
            reference=hold_id,
            now=now,
        )
    _set_serial(conn, row.serial, SerialStatus.STAMPED, stamped_sha256=stamped_sha256, stamped_at=now)
    _audit_committed(journal, row, now)
    return hold_from_row(row)


def _audit_committed(journal: Journal, row: Any, now: datetime) -> None:
    journal.audit(
        "hold.committed",
        row.hold_id,
        row.account_id,
        {
            "serial": row.serial,
            "stamped_sha256": bytes(row.stamped_sha256).hex(),
            "billed_idr": row.credit_price_idr,
        },
        now,
    )


def release(journal: Journal, hold_id: str, reason: ReleaseReason, now: datetime) -> Hold:
    """Return the held unit to where it came from and void the serial; repeatable on a released hold."""
    row = _resolve(journal.conn, hold_id, now, status=HoldStatus.RELEASED, release_reason=reason)
    if row is None:
        hold = get(journal.conn, hold_id)
        if hold.status is HoldStatus.RELEASED:
            return hold
        raise HoldAlreadyResolved("this hold was committed: its stamp exists and the unit is spent")
    _give_back(journal, row, reason, now)
    return hold_from_row(row)


def _give_back(journal: Journal, row: Any, reason: ReleaseReason, now: datetime) -> None:
    funding = row.funding_account_id
    # A unit drawn on credit goes back to stock: the collector is never billed for it.
    target = system(Book.STOCK) if row.credit_price_idr else Side(funding, Book.AVAILABLE)
    if row.credit_price_idr:
        _free_credit(journal.conn, funding, row.credit_price_idr)
    move(
        journal,
        Side(funding, Book.HELD),
        target,
        1,
        kind=EntryKind.RELEASE,
        channel=Channel(row.channel),
        reference=row.hold_id,
        now=now,
    )
    _set_serial(journal.conn, row.serial, SerialStatus.VOID, voided_at=now)
    journal.audit(
        "hold.released", row.hold_id, row.account_id, {"serial": row.serial, "reason": str(reason)}, now
    )


def _free_credit(conn: Connection, account_id: str, amount_idr: int) -> None:
    """A stamp on credit is resolved: its price no longer counts as credit in use."""
    result = conn.execute(
        update(accounts)
        .where(accounts.c.account_id == account_id, accounts.c.credit_held_idr >= amount_idr)
        .values(credit_held_idr=accounts.c.credit_held_idr - amount_idr)
    )
    if result.rowcount != 1:
        raise LedgerInconsistency(f"collector {account_id} has less than {amount_idr} IDR of credit in use")


def _set_serial(conn: Connection, serial: str, status: SerialStatus, **values: Any) -> None:
    result = conn.execute(
        update(serials)
        .where(serials.c.serial == serial, serials.c.status == SerialStatus.RESERVED)
        .values(status=status, **values)
    )
    if result.rowcount != 1:
        # Its hold was reserved a moment ago, so the serial must be too.
        raise LedgerInconsistency(f"serial {serial} was not reserved when its hold resolved")


def expired_hold_ids(conn: Connection, now: datetime, limit: int) -> list[str]:
    query = (
        select(holds.c.hold_id)
        .where(holds.c.status == HoldStatus.RESERVED, holds.c.expires_at <= now)
        .order_by(holds.c.expires_at)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def release_if_expired(journal: Journal, hold_id: str, now: datetime) -> bool:
    """Release the hold if it is still reserved and past its deadline; True if this call did it."""
    result = journal.conn.execute(
        update(holds)
        .where(holds.c.hold_id == hold_id, holds.c.status == HoldStatus.RESERVED, holds.c.expires_at <= now)
        .values(status=HoldStatus.RELEASED, release_reason=ReleaseReason.EXPIRED, resolved_at=now)
        .returning(*holds.c)
    )
    row = result.one_or_none()
    if row is None:
        return False
    _give_back(journal, row, ReleaseReason.EXPIRED, now)
    return True


@dataclass(frozen=True)
class Outstanding:
    """The holds still reserved: how many, and when the oldest of them was made (None for none)."""

    count: int
    oldest_created_at: datetime | None


def outstanding(conn: Connection) -> Outstanding:
    # Reserved holds are the few in flight; the (status, expires_at) index finds them.
    count, oldest = conn.execute(
        select(func.count(), func.min(holds.c.created_at)).where(holds.c.status == HoldStatus.RESERVED)
    ).one()
    return Outstanding(int(count), oldest)


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
        select(serials.c.status, serials.c.issued_at, serials.c.stamped_at).where(serials.c.serial == serial)
    ).one_or_none()
    if row is None:
        return SerialRecord(serial=serial, status=SerialStatus.UNKNOWN)
    return SerialRecord(
        serial=serial, status=SerialStatus(row.status), issued_at=row.issued_at, stamped_at=row.stamped_at
    )


# Many at once -------------------------------------------------------------------------------
#
# The group committer hands every reserve and commit of a batch to these together: a handful of
# set-based statements instead of several per call. They take only the common case (a first
# reserve on an account's own units, a commit of a prepaid hold) and answer None for the rest,
# which then run one by one through reserve() and commit() in the same transaction.


@dataclass(frozen=True)
class CommitRequest:
    hold_id: str
    stamped_sha256: bytes
    now: datetime
    document_ref: str = ""


_STAMP_TYPES: dict[str, TypeEngine[Any]] = {"d_stamped": LargeBinary(), "d_now": UtcDateTime()}

# Each account's units for all of its reserves in one conditional UPDATE: an account short of them
# is left alone, and its reserves go the one-by-one way that takes what there is.
_TAKE_UNITS = ValuesStatement(
    ("d_account", "d_units"),
    "UPDATE accounts SET available = available - d_units, held = held + d_units "
    "FROM d WHERE account_id = d_account AND pool_account_id IS NULL AND available >= d_units "
    "RETURNING account_id",
)
# Only reserved, prepaid holds within their deadline; the rest (replays, released or expired holds,
# holds on credit) go one by one.
_COMMIT_HOLDS = ValuesStatement(
    ("d_hold", "d_stamped", "d_now", "d_ref"),
    "UPDATE holds SET status = 'committed', stamped_sha256 = d_stamped, resolved_at = d_now, "
    "document_ref = d_ref "
    "FROM d WHERE hold_id = d_hold AND status = 'reserved' AND credit_price_idr = 0 AND expires_at > d_now "
    f"RETURNING {', '.join(column.name for column in holds.c)}",
    _STAMP_TYPES,
    tuple(holds.c),
)
# Counted from RETURNING: the sqlite3 module reports no rowcount for a statement opening WITH.
_CONSUME_UNITS = ValuesStatement(
    ("d_account", "d_units"),
    "UPDATE accounts SET held = held - d_units, consumed = consumed + d_units "
    "FROM d WHERE account_id = d_account AND held >= d_units RETURNING account_id",
)
_STAMP_SERIALS = ValuesStatement(
    ("d_serial", "d_stamped", "d_now"),
    "UPDATE serials SET status = 'stamped', stamped_sha256 = d_stamped, stamped_at = d_now "
    "FROM d WHERE serial = d_serial AND status = 'reserved' RETURNING serial",
    _STAMP_TYPES,
)


def reserve_many(journal: Journal, requests: list[ReserveRequest]) -> list[tuple[Hold, bool] | None]:
    conn = journal.conn
    results: list[tuple[Hold, bool] | None] = [None] * len(requests)
    fresh = fresh_requests(
        conn, (holds.c.account_id, holds.c.idempotency_key), [(r.account_id, r.key) for r in requests]
    )
    if not fresh:
        return results
    demand = Counter(requests[index].account_id for index in fresh)
    # Rows in key order, so two replicas' writers lock the accounts they share in the same order.
    taken = set(_TAKE_UNITS.execute(conn, sorted(demand.items())).scalars())
    serial_rows, hold_rows = [], []
    for index in fresh:
        request = requests[index]
        if request.account_id not in taken:
            continue
        hold_id = new_id("hold")
        journal.entry(
            Side(request.account_id, Book.AVAILABLE),
            Side(request.account_id, Book.HELD),
            1,
            kind=EntryKind.RESERVE,
            channel=request.channel,
            reference=hold_id,
            now=request.now,
        )
        serial_row, hold_row = _new_hold(request, hold_id, request.account_id, 0)
        serial_rows.append(serial_row)
        hold_rows.append(hold_row)
        _audit_reserved(journal, hold_row)
        results[index] = (hold_from_row(SimpleNamespace(**hold_row)), False)
    insert_rows(conn, serials, serial_rows)
    insert_rows(conn, holds, hold_rows)
    return results


def commit_many(journal: Journal, requests: list[CommitRequest]) -> list[Hold | None]:
    conn = journal.conn
    results: list[Hold | None] = [None] * len(requests)
    firsts: dict[str, int] = {}
    for index, request in enumerate(requests):
        firsts.setdefault(request.hold_id, index)
    committed = _COMMIT_HOLDS.execute(
        conn,
        sorted(
            (hold_id, requests[i].stamped_sha256, requests[i].now, requests[i].document_ref or None)
            for hold_id, i in firsts.items()
        ),
    ).all()
    if not committed:
        return results
    consumed = Counter(row.funding_account_id for row in committed)
    if len(_CONSUME_UNITS.execute(conn, sorted(consumed.items())).all()) != len(consumed):
        raise LedgerInconsistency("committed holds whose accounts do not hold their units")
    stamped = _STAMP_SERIALS.execute(
        conn, sorted((row.serial, bytes(row.stamped_sha256), row.resolved_at) for row in committed)
    ).all()
    if len(stamped) != len(committed):
        raise LedgerInconsistency("committed holds whose serials were not reserved")
    for row in committed:
        journal.entry(
            Side(row.funding_account_id, Book.HELD),
            Side(row.funding_account_id, Book.CONSUMED),
            1,
            kind=EntryKind.COMMIT,
            channel=Channel(row.channel),
            reference=row.hold_id,
            now=row.resolved_at,
        )
        _audit_committed(journal, row, row.resolved_at)
        results[firsts[row.hold_id]] = hold_from_row(row)
    return results
