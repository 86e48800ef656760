"""The ledger against a model of itself: hypothesis plays random sequences of calls, retries and
interrupted calls, and after every step the ledger must agree with a few dictionaries of numbers.

Each example starts from empty tables and uses accounts under a random prefix of its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, event

from services.common.errors import Conflict, DomainError, InvalidInput, PreconditionFailed
from services.quota.errors import HoldAlreadyResolved, InsufficientQuota
from services.quota.ledger import Ledger
from services.quota.models import (
    Channel,
    DocumentMetadata,
    HoldStatus,
    OrderStatus,
    ReleaseReason,
    SerialStatus,
)
from services.quota.payments import SandboxProvider
from services.quota.serials import is_valid_serial
from tests.conftest import FakeClock

from .conftest import HOLD_TTL_S, ORDER_TTL_S, assert_ledger_consistent, empty_ledger, sha

T = TypeVar("T")
PAGE = 100
SERIAL_STATUS = {
    HoldStatus.RESERVED: SerialStatus.RESERVED,
    HoldStatus.COMMITTED: SerialStatus.STAMPED,
    HoldStatus.RELEASED: SerialStatus.VOID,
}
REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)


class InjectedFailure(Exception):
    """What the database sees when the process dies mid-transaction: the statements stop coming."""


@contextmanager
def failing_at(engine: Engine, stage: str, statement: int) -> Iterator[None]:
    """Raise InjectedFailure at the given statement of the engine and at every one after it: a
    process that died sends nothing more, so the ledger's own retries cannot get through either.

    before_cursor_execute stops the call before that statement runs; after_cursor_execute just after,
    which also reaches the case of every statement done and only the COMMIT missing.
    """
    seen = 0

    def count(*_: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= statement:
            raise InjectedFailure(f"injected {stage} statement {statement}")

    event.listen(engine, stage, count)
    try:
        yield
    finally:
        event.remove(engine, stage, count)


def expect(error: type[DomainError], call: Callable[[], object]) -> None:
    """The call fails with exactly this error (InsufficientQuota is also a PreconditionFailed)."""
    try:
        call()
    except DomainError as raised:
        assert type(raised) is error, f"expected {error.__name__}, got {raised!r}"
    else:
        pytest.fail(f"expected {error.__name__}, but the call succeeded")


@dataclass
class Account:
    available: int = 0
    held: int = 0
    consumed: int = 0
    refunded: int = 0
    # Where the units came from, counted apart from the states they sit in.
    bought: int = 0
    received: int = 0
    sent: int = 0

    @property
    def purchased(self) -> int:
        return self.bought + self.received - self.sent


@dataclass
class ModelOrder:
    order_id: str
    account: str
    quantity: int
    expires_at: datetime
    # As stored: an unpaid order past its deadline reads as expired before the sweeper marks it.
    stored: OrderStatus = OrderStatus.AWAITING_PAYMENT
    refunded: int = 0
    paid_by: str | None = None
    events: list[str] = field(default_factory=list)
    # Payments that bought nothing and went back to the payer.
    returned: list[str] = field(default_factory=list)

    def status(self, now: datetime) -> OrderStatus:
        if self.stored is OrderStatus.AWAITING_PAYMENT and now >= self.expires_at:
            return OrderStatus.EXPIRED
        return self.stored


@dataclass
class ModelHold:
    hold_id: str
    account: str
    serial: str
    expires_at: datetime
    # A client that reserved and never came back: only the sweeper resolves its hold.
    walk_away: bool
    status: HoldStatus = HoldStatus.RESERVED
    stamped: bytes | None = None
    reason: ReleaseReason | None = None


# An attempt is recorded before its call; its result stays None unless the call took effect, so a
# retry of a failed or interrupted attempt must behave as a first call, and of a done one replay it.
@dataclass
class OrderAttempt:
    account: str
    key: str
    quantity: int
    # The payer never pays: its webhook never arrives.
    walk_away: bool
    order_id: str | None = None


@dataclass
class RefundAttempt:
    order_id: str
    key: str
    requested: int
    refund_id: str | None = None
    units: int = 0


@dataclass
class TransferAttempt:
    source: str
    target: str
    quantity: int
    key: str
    transfer_id: str | None = None


@dataclass
class ReserveAttempt:
    account: str
    key: str
    document: bytes
    walk_away: bool
    hold_id: str | None = None


def ledger_model(
    ledger: Ledger, engine: Engine, clock: FakeClock, provider: SandboxProvider
) -> type[RuleBasedStateMachine]:
    class LedgerModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            prefix = secrets.token_hex(4)
            self.accounts = {f"model-{prefix}-{name}": Account() for name in "abc"}
            self.names = list(self.accounts)
            self.orders: dict[str, ModelOrder] = {}
            self.holds: dict[str, ModelHold] = {}
            self.order_attempts: list[OrderAttempt] = []
            self.refund_attempts: list[RefundAttempt] = []
            self.transfer_attempts: list[TransferAttempt] = []
            self.reserve_attempts: list[ReserveAttempt] = []
            self.fault: tuple[str, int] | None = None

        def call(self, work: Callable[[], T], *, atomic: bool = True) -> T:
            """The one ledger call of a step. An armed fault is injected into it and nothing else;
            an atomic call it interrupts must leave every record as it was."""
            fault, self.fault = self.fault, None
            if fault is None:
                return work()
            before = self.snapshot()
            try:
                with failing_at(engine, *fault):
                    return work()
            except InjectedFailure:
                if atomic:
                    assert self.snapshot() == before, "an interrupted call left a trace"
                raise

        def key(self) -> str:
            return f"key-{secrets.token_hex(6)}"

        def pick(self, data: st.DataObject, items: list[T]) -> T:
            return data.draw(st.sampled_from(items))

        def pick_mostly(self, data: st.DataObject, items: list[T], wanted: Callable[[T], bool]) -> T:
            """Mostly one of the items that can still change, now and then any of them."""
            candidates = [item for item in items if wanted(item)]
            if candidates and data.draw(st.integers(0, 3)) > 0:
                return self.pick(data, candidates)
            return self.pick(data, items)

        def earlier(self, data: st.DataObject, attempts: list[T]) -> T | None:
            """One of the attempts to send again, about one time in four; None for a new one."""
            if attempts and data.draw(st.integers(0, 3)) == 0:
                return self.pick(data, attempts)
            return None

        @initialize(data=st.data())
        def open_the_books(self, data: st.DataObject) -> None:
            # Examples share the engine but not the books: after a broken example every later
            # one would fail the whole-books check at once, and hypothesis could not shrink it.
            empty_ledger(engine)
            for name in self.names:
                if quantity := data.draw(st.integers(0, 6)):
                    self.do_buy(name, quantity)

        # Orders and payments --------------------------------------------------------------

        def do_order(self, attempt: OrderAttempt) -> None:
            order, replayed = self.call(
                lambda: ledger.create_order(attempt.account, attempt.quantity, attempt.key, Channel.RETAIL)
            )
            if attempt.order_id is not None:
                assert replayed and order.order_id == attempt.order_id
                assert order.status is self.orders[order.order_id].status(clock.now)
                return
            assert not replayed and order.status is OrderStatus.AWAITING_PAYMENT
            assert order.order_id not in self.orders
            attempt.order_id = order.order_id
            self.orders[order.order_id] = ModelOrder(
                order.order_id, attempt.account, attempt.quantity, order.expires_at
            )

        @rule(data=st.data())
        def create_order(self, data: st.DataObject) -> None:
            attempt = self.earlier(data, self.order_attempts)
            if attempt is None:
                attempt = OrderAttempt(
                    self.pick(data, self.names),
                    self.key(),
                    data.draw(st.integers(1, 5)),
                    walk_away=data.draw(st.booleans()),
                )
                self.order_attempts.append(attempt)
            elif attempt.order_id is not None and data.draw(st.booleans()):
                expect(
                    Conflict,
                    lambda: self.call(
                        lambda: ledger.create_order(
                            attempt.account, attempt.quantity + 1, attempt.key, Channel.RETAIL
                        )
                    ),
                )
                return
            self.do_order(attempt)

        def awaiting(self, order: ModelOrder) -> bool:
            return order.status(clock.now) is OrderStatus.AWAITING_PAYMENT

        def payable(self) -> list[ModelOrder]:
            return [self.orders[a.order_id] for a in self.order_attempts if a.order_id and not a.walk_away]

        def do_confirm(self, order: ModelOrder, event_id: str) -> None:
            status = order.status(clock.now)
            payload, signature = provider.pay(ledger.get_order(order.order_id), event_id=event_id)

            def confirm() -> tuple[Any, bool]:
                return self.call(lambda: ledger.confirm_payment("sandbox", payload, signature))

            if event_id == order.paid_by:
                paid, replayed = confirm()
                assert replayed and paid.status is status
            elif status is OrderStatus.AWAITING_PAYMENT:
                paid, replayed = confirm()
                assert not replayed and paid.status is OrderStatus.PAID
                order.stored, order.paid_by = OrderStatus.PAID, event_id
                account = self.accounts[order.account]
                account.available += order.quantity
                account.bought += order.quantity
            else:
                # Cancelled, expired or already paid: the payment is recorded and goes straight back
                # to the payer; the order and the units stay as they were.
                after, replayed = confirm()
                assert after.status is status and replayed == (event_id in order.returned)
                if not replayed:
                    order.returned.append(event_id)

        def new_event(self, order: ModelOrder) -> str:
            order.events.append(f"evt_{secrets.token_hex(8)}")
            return order.events[-1]

        def do_buy(self, account: str, quantity: int) -> None:
            attempt = OrderAttempt(account, self.key(), quantity, walk_away=False)
            self.order_attempts.append(attempt)
            self.do_order(attempt)
            assert attempt.order_id is not None
            order = self.orders[attempt.order_id]
            self.do_confirm(order, self.new_event(order))

        @rule(data=st.data())
        def buy(self, data: st.DataObject) -> None:
            self.do_buy(self.pick(data, self.names), data.draw(st.integers(1, 5)))

        @precondition(lambda self: self.payable())
        @rule(data=st.data())
        def confirm_payment(self, data: st.DataObject) -> None:
            order = self.pick_mostly(data, self.payable(), self.awaiting)
            redeliver = order.events and data.draw(st.booleans())
            self.do_confirm(order, self.pick(data, order.events) if redeliver else self.new_event(order))

        @precondition(lambda self: self.orders)
        @rule(data=st.data())
        def cancel_order(self, data: st.DataObject) -> None:
            order = self.pick_mostly(data, list(self.orders.values()), self.awaiting)
            status = order.status(clock.now)

            def cancel() -> Any:
                return self.call(lambda: ledger.cancel_order(order.order_id, order.account))

            if status in (OrderStatus.AWAITING_PAYMENT, OrderStatus.CANCELLED):
                assert cancel().status is OrderStatus.CANCELLED
                order.stored = OrderStatus.CANCELLED
            else:
                expect(PreconditionFailed, cancel)

        @rule(data=st.data())
        def expire_orders(self, data: st.DataObject) -> None:
            clock.advance(data.draw(st.sampled_from([ORDER_TTL_S // 2, ORDER_TTL_S + 1])))
            due = [
                order
                for order in self.orders.values()
                if order.stored is OrderStatus.AWAITING_PAYMENT and order.expires_at <= clock.now
            ]
            assert self.call(ledger.expire_orders) == len(due)
            for order in due:
                order.stored = OrderStatus.EXPIRED

        def do_refund(self, attempt: RefundAttempt) -> None:
            order = self.orders[attempt.order_id]
            account = self.accounts[order.account]

            def refund() -> Any:
                return self.call(
                    lambda: ledger.refund_order(
                        order.order_id, order.account, attempt.requested, "model", attempt.key
                    )
                )

            if attempt.refund_id is not None:
                done, _ = refund()
                assert (done.refund_id, done.quantity) == (attempt.refund_id, attempt.units)
                return
            remaining = order.quantity - order.refunded
            units = attempt.requested or min(remaining, account.available)
            if order.status(clock.now) not in REFUNDABLE:
                expect(PreconditionFailed, refund)
            elif attempt.requested > remaining:
                expect(InvalidInput, refund)
            elif units == 0 or units > account.available:
                expect(InsufficientQuota, refund)
            else:
                done, updated = refund()
                assert done.quantity == units
                attempt.refund_id, attempt.units = done.refund_id, units
                order.refunded += units
                order.stored = (
                    OrderStatus.REFUNDED
                    if order.refunded == order.quantity
                    else OrderStatus.PARTIALLY_REFUNDED
                )
                assert (updated.status, updated.refunded_quantity) == (order.stored, order.refunded)
                account.available -= units
                account.refunded += units

        @precondition(lambda self: self.orders)
        @rule(data=st.data())
        def refund_order(self, data: st.DataObject) -> None:
            attempt = self.earlier(data, self.refund_attempts)
            if attempt is None:
                order = self.pick_mostly(
                    data, list(self.orders.values()), lambda order: order.stored in REFUNDABLE
                )
                # 0 is "every unused unit"; one more than is left must be refused.
                requested = data.draw(st.integers(0, order.quantity - order.refunded + 1))
                attempt = RefundAttempt(order.order_id, self.key(), requested)
                self.refund_attempts.append(attempt)
            elif attempt.refund_id is not None and data.draw(st.booleans()):
                order = self.orders[attempt.order_id]
                expect(
                    Conflict,
                    lambda: self.call(
                        lambda: ledger.refund_order(
                            order.order_id, order.account, attempt.requested + 1, "model", attempt.key
                        )
                    ),
                )
                return
            self.do_refund(attempt)

        # Transfers --------------------------------------------------------------------------

        def do_transfer(self, attempt: TransferAttempt) -> None:
            source, target = self.accounts[attempt.source], self.accounts[attempt.target]

            def transfer() -> Any:
                return self.call(
                    lambda: ledger.transfer_quota(
                        attempt.source, attempt.target, attempt.quantity, attempt.key, Channel.ENTERPRISE
                    )
                )

            if attempt.transfer_id is not None:
                assert transfer().transfer_id == attempt.transfer_id
            elif source.available < attempt.quantity:
                expect(InsufficientQuota, transfer)
            else:
                attempt.transfer_id = transfer().transfer_id
                source.available -= attempt.quantity
                source.sent += attempt.quantity
                target.available += attempt.quantity
                target.received += attempt.quantity

        @rule(data=st.data())
        def transfer_quota(self, data: st.DataObject) -> None:
            attempt = self.earlier(data, self.transfer_attempts)
            if attempt is None:
                source, target = data.draw(st.permutations(self.names))[:2]
                attempt = TransferAttempt(source, target, data.draw(st.integers(1, 4)), self.key())
                self.transfer_attempts.append(attempt)
            elif attempt.transfer_id is not None and data.draw(st.booleans()):
                expect(
                    Conflict,
                    lambda: self.call(
                        lambda: ledger.transfer_quota(
                            attempt.source,
                            attempt.target,
                            attempt.quantity + 1,
                            attempt.key,
                            Channel.ENTERPRISE,
                        )
                    ),
                )
                return
            self.do_transfer(attempt)

        # Holds and serials ------------------------------------------------------------------

        def do_reserve(self, attempt: ReserveAttempt) -> None:
            account = self.accounts[attempt.account]

            def reserve() -> tuple[Any, bool]:
                return self.call(
                    lambda: ledger.reserve(
                        attempt.account, attempt.key, attempt.document, DocumentMetadata(), Channel.RETAIL
                    )
                )

            if attempt.hold_id is not None:
                hold, replayed = reserve()
                expected = self.holds[attempt.hold_id]
                assert replayed and (hold.hold_id, hold.serial) == (expected.hold_id, expected.serial)
                assert hold.status is expected.status
            elif account.available == 0:
                expect(InsufficientQuota, reserve)
            else:
                hold, replayed = reserve()
                assert not replayed and hold.status is HoldStatus.RESERVED
                assert is_valid_serial(hold.serial)
                assert hold.serial not in {known.serial for known in self.holds.values()}
                attempt.hold_id = hold.hold_id
                self.holds[hold.hold_id] = ModelHold(
                    hold.hold_id, attempt.account, hold.serial, hold.expires_at, attempt.walk_away
                )
                account.available -= 1
                account.held += 1
                assert ledger.lookup_serial(hold.serial).status is SerialStatus.RESERVED

        @rule(data=st.data())
        def reserve(self, data: st.DataObject) -> None:
            attempt = self.earlier(data, self.reserve_attempts)
            if attempt is None:
                key = self.key()
                # One client in four reserves and never comes back.
                walk_away = data.draw(st.integers(0, 3)) == 0
                attempt = ReserveAttempt(self.pick(data, self.names), key, sha(key), walk_away)
                self.reserve_attempts.append(attempt)
            elif attempt.hold_id is not None and data.draw(st.booleans()):
                expect(
                    Conflict,
                    lambda: self.call(
                        lambda: ledger.reserve(
                            attempt.account,
                            attempt.key,
                            sha("another document"),
                            DocumentMetadata(),
                            Channel.RETAIL,
                        )
                    ),
                )
                return
            first = attempt.hold_id is None
            self.do_reserve(attempt)
            if first and attempt.hold_id is not None and not attempt.walk_away:
                # The client stamps at once and reports the outcome, or comes back to it later.
                hold = self.holds[attempt.hold_id]
                then = data.draw(st.sampled_from(["commit", "release", "later"]))
                if then == "commit":
                    self.do_commit(data, hold)
                elif then == "release":
                    self.do_release(data, hold)

        def attended(self) -> list[ModelHold]:
            return [hold for hold in self.holds.values() if not hold.walk_away]

        def unresolved(self, hold: ModelHold) -> bool:
            return hold.status is HoldStatus.RESERVED

        @precondition(lambda self: self.attended())
        @rule(data=st.data())
        def commit(self, data: st.DataObject) -> None:
            self.do_commit(data, self.pick_mostly(data, self.attended(), self.unresolved))

        def do_commit(self, data: st.DataObject, hold: ModelHold) -> None:
            stamped = sha(f"{hold.hold_id} stamped")
            if hold.stamped is not None:
                stamped = self.pick(data, [hold.stamped, sha("another stamped document")])

            def commit() -> Any:
                return self.call(lambda: ledger.commit(hold.hold_id, stamped))

            # A hold past its deadline cannot commit, whether or not the sweeper has reached it.
            if hold.status is HoldStatus.RESERVED and hold.expires_at <= clock.now:
                expect(HoldAlreadyResolved, commit)
            elif hold.status is HoldStatus.RESERVED:
                assert commit().status is HoldStatus.COMMITTED
                hold.status, hold.stamped = HoldStatus.COMMITTED, stamped
                account = self.accounts[hold.account]
                account.held -= 1
                account.consumed += 1
            elif hold.status is HoldStatus.COMMITTED and hold.stamped == stamped:
                assert commit().status is HoldStatus.COMMITTED
            else:
                expect(HoldAlreadyResolved, commit)
            assert ledger.lookup_serial(hold.serial).status is SERIAL_STATUS[hold.status]

        def give_back(self, hold: ModelHold, reason: ReleaseReason) -> None:
            hold.status, hold.reason = HoldStatus.RELEASED, reason
            account = self.accounts[hold.account]
            account.held -= 1
            account.available += 1

        @precondition(lambda self: self.attended())
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            self.do_release(data, self.pick_mostly(data, self.attended(), self.unresolved))

        def do_release(self, data: st.DataObject, hold: ModelHold) -> None:
            reason = self.pick(
                data, [ReleaseReason.SIGNING_FAILED, ReleaseReason.STORAGE_FAILED, ReleaseReason.CANCELLED]
            )

            def release() -> Any:
                return self.call(lambda: ledger.release(hold.hold_id, reason))

            if hold.status is HoldStatus.COMMITTED:
                expect(HoldAlreadyResolved, release)
            else:
                first = hold.status is HoldStatus.RESERVED
                released = release()
                if first:
                    self.give_back(hold, reason)
                # A repeated release answers with the first one's reason.
                assert (released.status, released.release_reason) == (HoldStatus.RELEASED, hold.reason)
            assert ledger.lookup_serial(hold.serial).status is SERIAL_STATUS[hold.status]

        @rule(data=st.data())
        def release_expired_holds(self, data: st.DataObject) -> None:
            clock.advance(data.draw(st.sampled_from([HOLD_TTL_S // 2, HOLD_TTL_S + 1])))
            due = [
                hold
                for hold in self.holds.values()
                if hold.status is HoldStatus.RESERVED and hold.expires_at <= clock.now
            ]
            try:
                released = self.call(ledger.release_expired_holds, atomic=False)
            except InjectedFailure:
                # Each hold is released in a transaction of its own: a sweep cut short has released
                # some holds completely and left the others untouched.
                for hold in due:
                    status = ledger.get_hold(hold.hold_id).status
                    assert status in (HoldStatus.RESERVED, HoldStatus.RELEASED)
                    if status is HoldStatus.RELEASED:
                        self.give_back(hold, ReleaseReason.EXPIRED)
                raise
            assert released == len(due)
            for hold in due:
                self.give_back(hold, ReleaseReason.EXPIRED)

        # Rules --------------------------------------------------------------------------------

        # The calls a step may make, and when each has something to work on.
        def calls(self) -> dict[str, tuple[Callable[[st.DataObject], None], bool]]:
            return {
                "buy": (self.buy, True),
                "create_order": (self.create_order, True),
                "confirm_payment": (self.confirm_payment, bool(self.payable())),
                "cancel_order": (self.cancel_order, bool(self.orders)),
                "expire_orders": (self.expire_orders, True),
                "refund_order": (self.refund_order, bool(self.orders)),
                "transfer_quota": (self.transfer_quota, True),
                "reserve": (self.reserve, True),
                "commit": (self.commit, bool(self.attended())),
                "release": (self.release, bool(self.attended())),
                "release_expired_holds": (self.release_expired_holds, True),
            }

        @rule(
            data=st.data(),
            stage=st.sampled_from(["before_cursor_execute", "after_cursor_execute"]),
            statement=st.integers(1, 10),
        )
        def interrupt_a_call(self, data: st.DataObject, stage: str, statement: int) -> None:
            ready = [name for name, (_, possible) in self.calls().items() if possible]
            self.fault = (stage, statement)
            # An interruption is the point here, not a failure: call() has already checked that it
            # left no trace, and the invariants check the books after this step as after any other.
            try:
                with contextlib.suppress(InjectedFailure):
                    self.calls()[data.draw(st.sampled_from(ready))][0](data)
            finally:
                self.fault = None

        def snapshot(self) -> dict[str, tuple[object, ...]]:
            return {
                name: (
                    ledger.get_balance(name),
                    ledger.list_holds(name, page_size=PAGE).items,
                    ledger.list_orders(name, page_size=PAGE).items,
                )
                for name in self.names
            }

        # Invariants ---------------------------------------------------------------------------

        @invariant()
        def the_books_match_the_model(self) -> None:
            total_purchased = 0
            for name, expected in self.accounts.items():
                balance = ledger.get_balance(name)
                states = (balance.available, balance.held, balance.consumed, balance.refunded)
                assert states == (expected.available, expected.held, expected.consumed, expected.refunded), (
                    name
                )
                assert expected.purchased == sum(states) == balance.purchased, name
                total_purchased += balance.purchased
            # Transfers stay between these accounts, so together they hold exactly what they bought.
            assert total_purchased == sum(account.bought for account in self.accounts.values())
            assert_ledger_consistent(engine)

        def teardown(self) -> None:
            # Every record, once per example: a per-step check of them all would cost more than the
            # rest of the test, and each step already checks the records it touched.
            for name in self.names:
                holds = {hold.hold_id: hold for hold in ledger.list_holds(name, page_size=PAGE).items}
                mine = {hold.hold_id: hold for hold in self.holds.values() if hold.account == name}
                assert holds.keys() == mine.keys(), name
                for hold_id, hold in holds.items():
                    model = mine[hold_id]
                    assert (hold.serial, hold.status, hold.stamped_sha256, hold.release_reason) == (
                        model.serial,
                        model.status,
                        model.stamped,
                        model.reason,
                    ), hold_id
                    assert ledger.lookup_serial(hold.serial).status is SERIAL_STATUS[hold.status]

                orders = {order.order_id: order for order in ledger.list_orders(name, page_size=PAGE).items}
                placed = {order.order_id: order for order in self.orders.values() if order.account == name}
                assert orders.keys() == placed.keys(), name
                for order_id, order in orders.items():
                    model_order = placed[order_id]
                    assert (order.status, order.refunded_quantity) == (
                        model_order.status(clock.now),
                        model_order.refunded,
                    ), order_id

    return LedgerModel


def test_the_ledger_behaves_like_its_model(
    ledger: Ledger, engine: Engine, clock: FakeClock, provider: SandboxProvider
) -> None:
    run_state_machine_as_test(
        ledger_model(ledger, engine, clock, provider),
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            # Under CI the same examples every run: a failure there is never a lucky seed.
            derandomize=os.environ.get("CI") == "true",
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            # The explain phase traces every line, which makes shrinking a failure take minutes.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
            report_multiple_bugs=False,
        ),
    )
