"""Holds and serials: reserve, commit, release, expiry, history and public lookup."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from services.common.errors import Conflict, InvalidInput, NotFound
from services.quota.errors import HoldAlreadyResolved, InsufficientQuota
from services.quota.ledger import Ledger
from services.quota.models import (
    Channel,
    DocumentMetadata,
    DocumentType,
    HoldStatus,
    Order,
    ReleaseReason,
    SerialRecord,
    SerialStatus,
)
from services.quota.serials import is_valid_serial, new_serial
from tests.conftest import FakeClock

from .conftest import HOLD_TTL_S, sha

Buy = Callable[[str, int], Order]
NO_METADATA = DocumentMetadata()


def test_reserve_then_commit_consumes_one_unit_and_stamps_the_serial(
    ledger: Ledger, buy: Buy, clock: FakeClock
) -> None:
    buy("acct-a", 2)
    metadata = DocumentMetadata(
        type=DocumentType.AGREEMENT, name="Surat Perjanjian Sewa", number="12/SP/2025", date="2025-02-28"
    )
    hold, replayed = ledger.reserve("acct-a", "stamp-1", sha("doc"), metadata, Channel.RETAIL)
    assert not replayed
    assert hold.status is HoldStatus.RESERVED and is_valid_serial(hold.serial)
    assert hold.metadata == metadata and hold.document_sha256 == sha("doc")
    assert hold.expires_at == clock.now + timedelta(seconds=HOLD_TTL_S)
    assert hold.resolved_at is None and hold.stamped_sha256 is None
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.held, balance.consumed) == (1, 1, 0)

    clock.advance(5)
    committed = ledger.commit(hold.hold_id, sha("stamped"))
    assert committed.status is HoldStatus.COMMITTED
    assert committed.stamped_sha256 == sha("stamped") and committed.resolved_at == clock.now
    assert committed.serial == hold.serial
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.held, balance.consumed, balance.purchased) == (1, 0, 1, 2)

    record = ledger.lookup_serial(hold.serial)
    assert record == SerialRecord(hold.serial, SerialStatus.STAMPED, hold.created_at, committed.resolved_at)


def test_a_commit_repeats_with_the_same_hash_and_nothing_else_resolves_it_again(
    ledger: Ledger, buy: Buy, clock: FakeClock
) -> None:
    buy("acct-a", 1)
    hold, _ = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    committed = ledger.commit(hold.hold_id, sha("stamped"))
    clock.advance(60)
    assert ledger.commit(hold.hold_id, sha("stamped")) == committed
    with pytest.raises(HoldAlreadyResolved, match="different stamped document"):
        ledger.commit(hold.hold_id, sha("another stamped"))
    with pytest.raises(HoldAlreadyResolved, match="committed"):
        ledger.release(hold.hold_id, ReleaseReason.CANCELLED)
    # Even past its deadline a committed hold is not swept.
    clock.advance(HOLD_TTL_S)
    assert ledger.release_expired_holds() == 0
    assert ledger.get_balance("acct-a").consumed == 1


def test_a_commit_keeps_where_the_stamped_document_is_and_a_repeat_answers_the_first(
    ledger: Ledger, buy: Buy
) -> None:
    buy("acct-a", 3)
    first, _ = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    assert first.document_ref == ""
    committed = ledger.commit(first.hold_id, sha("stamped"), "segment-a:0:100")
    assert committed.document_ref == "segment-a:0:100"
    assert ledger.get_hold(first.hold_id).document_ref == "segment-a:0:100"
    # A retried commit (the gateway stored the PDF again before its retry) keeps the first place:
    # the hold answers as it was committed.
    assert ledger.commit(first.hold_id, sha("stamped"), "segment-b:0:100") == committed
    # Without a reference the store finds the PDF by the hold id alone.
    second, _ = ledger.reserve("acct-a", "stamp-2", sha("doc 2"), NO_METADATA, Channel.RETAIL)
    assert ledger.commit(second.hold_id, sha("stamped 2")).document_ref == ""


def test_commits_written_together_each_keep_their_own_document_ref(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 8)
    held = [
        ledger.reserve("acct-a", f"stamp-{n}", sha(f"doc {n}"), NO_METADATA, Channel.RETAIL)[0]
        for n in range(8)
    ]
    # Submitted without waiting, so the ledger's writer takes them as one batch where it can.
    futures = [
        ledger.commit_later(hold.hold_id, sha(f"stamped {n}"), f"segment:{n}:10" if n % 2 else "")
        for n, hold in enumerate(held)
    ]
    committed = [future.result() for future in futures]
    assert [hold.document_ref for hold in committed] == [f"segment:{n}:10" if n % 2 else "" for n in range(8)]
    assert [ledger.get_hold(hold.hold_id).document_ref for hold in held] == [
        h.document_ref for h in committed
    ]


def test_a_document_ref_longer_than_the_ledger_keeps_is_refused(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 1)
    hold, _ = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    with pytest.raises(InvalidInput, match="document_ref must be at most 200"):
        ledger.commit(hold.hold_id, sha("stamped"), "x" * 201)
    assert ledger.get_hold(hold.hold_id).status is HoldStatus.RESERVED


def test_release_returns_the_unit_and_voids_the_serial_once(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 1)
    hold, _ = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    released = ledger.release(hold.hold_id, ReleaseReason.SIGNING_FAILED)
    assert released.status is HoldStatus.RELEASED
    assert released.release_reason is ReleaseReason.SIGNING_FAILED
    assert ledger.get_balance("acct-a").available == 1
    assert ledger.lookup_serial(hold.serial).status is SerialStatus.VOID

    # Idempotent, and the first reason stands.
    assert ledger.release(hold.hold_id, ReleaseReason.CANCELLED) == released
    assert ledger.get_balance("acct-a").available == 1
    with pytest.raises(HoldAlreadyResolved, match="released"):
        ledger.commit(hold.hold_id, sha("stamped"))


def test_a_retried_reserve_gets_the_same_hold_and_serial(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 3)
    first, replayed = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    assert not replayed
    again, replayed = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    assert replayed and again == first
    assert ledger.get_balance("acct-a").held == 1

    # The replay reports what became of the hold, e.g. after a commit.
    committed = ledger.commit(first.hold_id, sha("stamped"))
    assert ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL) == (committed, True)


def test_the_same_key_for_another_document_is_a_conflict(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 3)
    ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    with pytest.raises(Conflict, match="different document"):
        ledger.reserve("acct-a", "stamp-1", sha("other doc"), NO_METADATA, Channel.RETAIL)
    assert ledger.get_balance("acct-a").held == 1


def test_the_same_key_with_another_request_fingerprint_is_a_conflict(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 3)
    page_1 = sha("page 1")
    first, _ = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL, page_1)
    again, replayed = ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL, page_1)
    assert replayed and again == first
    with pytest.raises(Conflict, match="another placement"):
        ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL, sha("page 2"))
    # A caller that sends no fingerprint is matched by the document alone.
    assert ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL) == (first, True)
    # And so is a hold made without one, whatever the retry sends.
    older, _ = ledger.reserve("acct-a", "stamp-2", sha("doc"), NO_METADATA, Channel.RETAIL)
    retried = ledger.reserve("acct-a", "stamp-2", sha("doc"), NO_METADATA, Channel.RETAIL, sha("x"))
    assert retried == (older, True)
    assert ledger.get_balance("acct-a").held == 2


def test_a_request_fingerprint_must_be_a_sha256(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 1)
    with pytest.raises(InvalidInput, match="request_sha256"):
        ledger.reserve("acct-a", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL, b"short")
    assert ledger.get_balance("acct-a").held == 0


def test_reserve_without_quota_is_insufficient_quota_and_changes_nothing(ledger: Ledger, buy: Buy) -> None:
    with pytest.raises(InsufficientQuota, match="buy more"):
        ledger.reserve("acct-new", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    buy("acct-a", 1)
    ledger.reserve("acct-a", "stamp-1", sha("doc-1"), NO_METADATA, Channel.RETAIL)
    with pytest.raises(InsufficientQuota):
        ledger.reserve("acct-a", "stamp-2", sha("doc-2"), NO_METADATA, Channel.RETAIL)
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.held) == (0, 1)


def test_the_sweeper_releases_only_expired_reserved_holds(ledger: Ledger, buy: Buy, clock: FakeClock) -> None:
    buy("acct-a", 3)
    stale, _ = ledger.reserve("acct-a", "stamp-1", sha("doc-1"), NO_METADATA, Channel.RETAIL)
    stamped, _ = ledger.reserve("acct-a", "stamp-2", sha("doc-2"), NO_METADATA, Channel.RETAIL)
    ledger.commit(stamped.hold_id, sha("stamped-2"))
    clock.advance(HOLD_TTL_S / 2)
    fresh, _ = ledger.reserve("acct-a", "stamp-3", sha("doc-3"), NO_METADATA, Channel.RETAIL)

    clock.advance(HOLD_TTL_S / 2 - 1)
    assert ledger.release_expired_holds() == 0
    clock.advance(1)
    assert ledger.release_expired_holds() == 1
    assert ledger.release_expired_holds() == 0

    swept = ledger.get_hold(stale.hold_id)
    assert swept.status is HoldStatus.RELEASED and swept.release_reason is ReleaseReason.EXPIRED
    assert swept.resolved_at == clock.now
    assert ledger.get_hold(fresh.hold_id).status is HoldStatus.RESERVED
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.held, balance.consumed) == (1, 1, 1)
    # A signer finishing after the sweep cannot spend the unit that went back.
    with pytest.raises(HoldAlreadyResolved):
        ledger.commit(stale.hold_id, sha("stamped-1"))

    # An explicit moment, as the wiring's periodic task passes it.
    assert ledger.release_expired_holds(clock.now + timedelta(seconds=HOLD_TTL_S)) == 1


def test_a_hold_past_its_deadline_cannot_commit_even_before_the_sweep(
    ledger: Ledger, buy: Buy, clock: FakeClock
) -> None:
    buy("acct-a", 1)
    hold, _ = ledger.reserve("acct-a", "stamp-1", sha("doc-1"), NO_METADATA, Channel.RETAIL)
    clock.advance(HOLD_TTL_S)
    # The sweeper has not run: the answer is the same as if it had.
    with pytest.raises(HoldAlreadyResolved, match="expired"):
        ledger.commit(hold.hold_id, sha("stamped-1"))
    assert ledger.get_hold(hold.hold_id).status is HoldStatus.RESERVED
    assert ledger.release_expired_holds() == 1
    assert ledger.get_balance("acct-a").available == 1
    with pytest.raises(HoldAlreadyResolved, match="released"):
        ledger.commit(hold.hold_id, sha("stamped-1"))


def test_holds_are_private_and_listed_newest_first(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 5)
    buy("acct-b", 1)
    made = [
        ledger.reserve("acct-a", f"stamp-{n}", sha(f"doc-{n}"), NO_METADATA, Channel.RETAIL)[0]
        for n in range(5)
    ]
    theirs, _ = ledger.reserve("acct-b", "stamp-0", sha("doc-0"), NO_METADATA, Channel.RETAIL)
    assert ledger.get_hold(made[0].hold_id, "acct-a") == made[0]
    assert ledger.get_hold(made[0].hold_id) == made[0]
    with pytest.raises(NotFound):
        ledger.get_hold(made[0].hold_id, "acct-b")
    with pytest.raises(NotFound):
        ledger.get_hold("hold_missing")

    pages, token = [], ""
    for _ in range(10):  # bounded: 5 holds in pages of 2 need 3 pages
        page = ledger.list_holds("acct-a", page_size=2, page_token=token)
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [h.hold_id for p in pages for h in p.items] == [h.hold_id for h in reversed(made)]
    assert theirs.hold_id not in {h.hold_id for p in pages for h in p.items}
    with pytest.raises(InvalidInput):
        ledger.list_holds("acct-a", page_size=-1)
    assert len(ledger.list_holds("acct-a", page_size=1000).items) == 5


def test_serial_lookup_is_public_and_never_names_the_owner(ledger: Ledger, buy: Buy) -> None:
    buy("acct-secret-owner", 1)
    hold, _ = ledger.reserve("acct-secret-owner", "stamp-1", sha("doc"), NO_METADATA, Channel.RETAIL)
    record = ledger.lookup_serial(hold.serial)
    assert record == SerialRecord(hold.serial, SerialStatus.RESERVED, hold.created_at, None)
    assert {f.name for f in dataclasses.fields(record)} == {"serial", "status", "issued_at", "stamped_at"}
    assert "acct-secret-owner" not in repr(record)
    # People type serials in lower case, with dashes, with O for 0.
    typed = "-".join([hold.serial[:11], hold.serial[11:]]).lower().replace("0", "o")
    assert ledger.lookup_serial(typed).status is SerialStatus.RESERVED


@pytest.mark.parametrize("serial", ["", "nonsense", "x" * 500, "0000000000000000000001"])
def test_unknown_and_malformed_serials_are_unknown(ledger: Ledger, serial: str) -> None:
    assert ledger.lookup_serial(serial).status is SerialStatus.UNKNOWN


def test_a_well_formed_serial_never_issued_is_unknown(ledger: Ledger) -> None:
    record = ledger.lookup_serial(new_serial())
    assert record.status is SerialStatus.UNKNOWN and record.issued_at is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"document_sha256": b"short"}, "32 bytes"),
        ({"account_id": ""}, "account_id"),
        ({"idempotency_key": "k" * 129}, "idempotency_key"),
        ({"metadata": DocumentMetadata(date="28/02/2025")}, "YYYY-MM-DD"),
        ({"metadata": DocumentMetadata(date="20250228")}, "YYYY-MM-DD"),
        ({"metadata": DocumentMetadata(value_idr=-1)}, "negative"),
        ({"metadata": DocumentMetadata(name="n" * 201)}, "name"),
    ],
)
def test_reserve_checks_its_input(ledger: Ledger, buy: Buy, change: dict[str, object], message: str) -> None:
    buy("acct-a", 1)
    arguments: dict[str, object] = {
        "account_id": "acct-a",
        "idempotency_key": "stamp-1",
        "document_sha256": sha("doc"),
        "metadata": NO_METADATA,
        "channel": Channel.RETAIL,
    } | change
    with pytest.raises(InvalidInput, match=message):
        ledger.reserve(**arguments)  # type: ignore[arg-type]
    assert ledger.get_balance("acct-a").available == 1


def test_commit_needs_a_sha256_and_an_existing_hold(ledger: Ledger) -> None:
    with pytest.raises(InvalidInput, match="32 bytes"):
        ledger.commit("hold_x", b"")
    with pytest.raises(NotFound):
        ledger.commit("hold_x", sha("stamped"))
    with pytest.raises(NotFound):
        ledger.release("hold_x", ReleaseReason.CANCELLED)
