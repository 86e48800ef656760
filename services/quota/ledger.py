"""The ledger of record: what each account bought, holds, spent and got back, and every serial.

Each public method is one unit of work: it validates its input, then runs atomically, so an
idempotency key is stored together with the effect it names. Writes go through the group committer,
which runs concurrent calls together in one transaction (see group_commit.py); reads run directly.
The work itself lives in orders.py, holds.py, transfers.py and accounts.py; balances.py is the only
code that changes a balance, and every change is journaled and audited (journal.py, audit.py).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine

from services.common import paging
from services.common.db import SQLITE_BEGIN
from services.common.errors import Conflict, InvalidInput
from services.common.settings import QuotaSettings
from services.quota import accounts, audit, balances, holds, orders, transfers
from services.quota.db import create_ledger_engine
from services.quota.group_commit import GroupCommitter
from services.quota.intake import OrderIntake
from services.quota.journal import Journal
from services.quota.models import (
    Account,
    Balance,
    Channel,
    DocumentMetadata,
    Hold,
    Order,
    OrderStatus,
    Page,
    Refund,
    ReleaseReason,
    SerialRecord,
    SerialStatus,
    Settlement,
    Statement,
    Transfer,
)
from services.quota.payments import PaymentProvider, SandboxProvider
from services.quota.schema import (
    ACCOUNT_ID_LENGTH,
    DOCUMENT_REF_LENGTH,
    ID_LENGTH,
    KEY_LENGTH,
    REASON_LENGTH,
    TEXT_LENGTH,
    new_id,
)
from services.quota.serials import is_valid_serial, normalize_serial

T = TypeVar("T")
Clock = Callable[[], datetime]

MAX_ORDER_QUANTITY = 100_000
MAX_AMOUNT_IDR = 10**15
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# Expired holds examined per sweep query; their releases then run as separate operations.
_SWEEP_BATCH = 200

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    def __init__(
        self,
        engine: Engine,
        clock: Clock = utc_now,
        *,
        payment_provider: PaymentProvider,
        unit_price_idr: int = 10_000,
        hold_ttl_s: int = 600,
        order_ttl_s: int = 3600,
    ) -> None:
        if unit_price_idr <= 0 or hold_ttl_s <= 0 or order_ttl_s <= 0:
            raise ValueError("unit price and time-to-live values must be positive")
        self._engine = engine
        self._clock = clock
        self._provider = payment_provider
        self._unit_price_idr = unit_price_idr
        self._hold_ttl = timedelta(seconds=hold_ttl_s)
        self._order_ttl = timedelta(seconds=order_ttl_s)
        self._committer = GroupCommitter(
            engine,
            bulk_handlers={
                "order": orders.insert_orders,
                "payment": orders.record_payments,
                "reserve": holds.reserve_many,
                "commit": holds.commit_many,
            },
        )
        self._intake = OrderIntake(self._orders_by_key) if payment_provider.remote else None

    def close(self) -> None:
        """Finish the writes already queued and stop taking more."""
        if self._intake is not None:
            self._intake.close()
        self._committer.close()

    @classmethod
    def from_settings(
        cls, settings: QuotaSettings, engine: Engine | None = None, clock: Clock = utc_now
    ) -> Ledger:
        """The ledger as configured; the engine is created (with its tables) when not given."""
        secret = settings.payment_webhook_secret.get_secret_value().encode()
        return cls(
            engine or create_ledger_engine(settings.resolved_database_url),
            clock,
            payment_provider=SandboxProvider(
                secret,
                checkout_url=settings.public_url.rstrip("/") + "/v1/dev/payments/{order_id}/pay",
                clock=None if clock is utc_now else clock,
            ),
            unit_price_idr=settings.unit_price_idr,
            hold_ttl_s=settings.hold_ttl_s,
            order_ttl_s=settings.order_ttl_s,
        )

    @property
    def payment_provider(self) -> PaymentProvider:
        return self._provider

    # Transactions ---------------------------------------------------------------------------

    def _write(self, work: Callable[[Journal], T], bulk: tuple[str, object] | None = None) -> T:
        return self._committer.run(work, bulk)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            with conn.begin():
                yield conn

    # Orders and payments --------------------------------------------------------------------

    def create_order(
        self, account_id: str, quantity: int, idempotency_key: str, channel: Channel
    ) -> tuple[Order, bool]:
        """Open an order awaiting payment; (order, replayed). A repeated key returns the first order."""
        return self.create_order_later(account_id, quantity, idempotency_key, channel).result()

    def create_order_later(
        self, account_id: str, quantity: int, idempotency_key: str, channel: Channel
    ) -> Future[tuple[Order, bool]]:
        """create_order without waiting; the input is checked at once (raising InvalidInput)."""
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        _require("idempotency_key", idempotency_key, KEY_LENGTH)
        if not 1 <= quantity <= MAX_ORDER_QUANTITY:
            raise InvalidInput(f"quantity must be between 1 and {MAX_ORDER_QUANTITY}")
        now = self._clock()

        def replay(row: object) -> tuple[Order, bool]:
            order = orders.order_from_row(row, now)
            if (order.quantity, order.channel) != (quantity, channel):
                raise Conflict("this idempotency key was used for a different order")
            return order, True

        def open_order() -> Future[tuple[Order, bool]]:
            draft = Order(
                order_id=new_id("ord"),
                account_id=account_id,
                quantity=quantity,
                unit_price_idr=self._unit_price_idr,
                amount_idr=quantity * self._unit_price_idr,
                status=OrderStatus.AWAITING_PAYMENT,
                payment_provider=self._provider.name,
                payment_reference="",
                payment_url="",
                channel=channel,
                created_at=now,
                expires_at=now + self._order_ttl,
                paid_at=None,
                refunded_quantity=0,
            )
            # Outside the transaction: a real provider is a network call, and no lock should wait
            # on it.
            reference, url = self._provider.create_payment(draft)
            draft = replace(draft, payment_reference=reference, payment_url=url)

            def work(journal: Journal) -> tuple[Order, bool]:
                raced = orders.find_by_key(journal.conn, account_id, idempotency_key)
                if raced is not None:
                    return replay(raced)
                orders.insert_order(journal, draft, idempotency_key)
                return draft, False

            return self._committer.submit(work, bulk=("order", orders.NewOrder(draft, idempotency_key)))

        if self._intake is None:
            # A local provider opens a payment for nothing, so a retry may open one it never uses:
            # the writer answers it from the first order, with no look-up first.
            return open_order()
        # A real provider is not asked again for a retry: the key is looked up first.
        return self._intake.submit(
            (account_id, idempotency_key),
            lambda earlier: open_order() if earlier is None else replay(earlier),
        )

    def _orders_by_key(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], object]:
        with self._reading() as conn:
            return orders.find_by_keys(conn, keys)

    def confirm_payment(self, provider: str, payload: bytes, signature: str) -> tuple[Order, bool]:
        """Apply a provider's webhook: verify it, record the payment, mark the order paid and credit
        its units, all or nothing; (order, replayed). A repeated event changes nothing."""
        order, replayed, refund_id = self.confirm_payment_later(provider, payload, signature).result()
        if refund_id is not None:
            self.return_money(refund_id)
        return order, replayed

    def confirm_payment_later(
        self, provider: str, payload: bytes, signature: str
    ) -> Future[tuple[Order, bool, str | None]]:
        """confirm_payment without waiting: the Future's third item names the automatic refund of a
        payment that bought nothing, which the caller must then pass to return_money."""
        if provider != self._provider.name:
            raise InvalidInput(f"unknown payment provider {provider!r}")
        event = self._provider.parse_webhook(payload, signature)
        now = self._clock()
        return self._committer.submit(
            lambda journal: orders.record_payment(journal, provider, event, now),
            ("payment", orders.ReceivedPayment(provider, event, now)),
        )

    def get_order(self, order_id: str, account_id: str = "") -> Order:
        """The order; when account_id is given, another account's order is NotFound."""
        _require("order_id", order_id, ID_LENGTH)
        with self._reading() as conn:
            return orders.get(conn, order_id, self._clock(), account_id)

    def list_orders(self, account_id: str, page_size: int = 0, page_token: str = "") -> Page[Order]:
        """The account's orders, newest first."""
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        limit, before = _page_size(page_size), _decode_token(page_token)
        with self._reading() as conn:
            rows = orders.page(conn, account_id, before, limit + 1, self._clock())
        return _page(rows, limit)

    def cancel_order(self, order_id: str, account_id: str = "") -> Order:
        """Cancel an order awaiting payment; cancelling a cancelled order returns it unchanged."""
        _require("order_id", order_id, ID_LENGTH)
        now = self._clock()
        return self._write(lambda journal: orders.cancel(journal, order_id, account_id, now))

    def refund_order(
        self, order_id: str, account_id: str, quantity: int, reason: str, idempotency_key: str
    ) -> tuple[Refund, Order]:
        """Return unused units of a paid order (available -> refunded) and their money to the payer.
        quantity 0 refunds as many as possible: the order's unrefunded units, at most what the
        account has available. The refund is completed once the provider confirms; if it cannot be
        reached now, the refund stays pending and the sweeper sends it later."""
        _require("order_id", order_id, ID_LENGTH)
        _require("idempotency_key", idempotency_key, KEY_LENGTH)
        if quantity < 0 or quantity > MAX_ORDER_QUANTITY:
            raise InvalidInput(f"quantity must be between 0 and {MAX_ORDER_QUANTITY}")
        _at_most("reason", reason, REASON_LENGTH)
        now = self._clock()
        refund, order = self._write(
            lambda journal: orders.refund(
                journal,
                order_id=order_id,
                account_id=account_id,
                quantity=quantity,
                reason=reason,
                key=idempotency_key,
                now=now,
            )
        )
        return self.return_money(refund.refund_id) or refund, order

    def return_money(self, refund_id: str) -> Refund | None:
        """Ask the provider to pay a pending refund back and mark it completed; None when it is not
        pending (any more) or the provider failed, in which case a later sweep tries again."""
        # Best effort: the units are refunded already, and whatever stops the money now (the
        # provider, the database) leaves the refund pending for the next sweep, never fails the call.
        try:
            with self._reading() as conn:
                pending = orders.pending_refund(conn, refund_id)
            if pending is None:
                return None
            refund, provider, payment_reference = pending
            if provider != self._provider.name:
                log.error("refund for another provider", extra={"refund_id": refund_id, "provider": provider})
                return None
            reference = self._provider.refund_payment(payment_reference, refund_id, refund.amount_idr)
            now = self._clock()
            return self._write(lambda journal: orders.complete_refund(journal, refund_id, reference, now))
        except Exception:
            log.warning(
                "refund's money not sent back yet; the sweeper will retry", extra={"refund_id": refund_id}
            )
            return None

    def send_pending_refunds(self) -> int:
        """Pay back every refund still pending (a sweeper); returns how many completed now."""
        with self._reading() as conn:
            refund_ids = orders.pending_refund_ids(conn, _SWEEP_BATCH)
        return sum(1 for refund_id in refund_ids if self.return_money(refund_id) is not None)

    def expire_orders(self, now: datetime | None = None) -> int:
        """Mark unpaid orders past their deadline expired (reads already treat them so); a sweeper."""
        moment = now or self._clock()
        return self._write(lambda journal: orders.expire(journal, moment))

    # Balances and transfers -----------------------------------------------------------------

    def get_balance(self, account_id: str) -> Balance:
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        with self._reading() as conn:
            return balances.get_balance(conn, account_id)

    def transfer_quota(
        self, from_account_id: str, to_account_id: str, quantity: int, idempotency_key: str, channel: Channel
    ) -> Transfer:
        """Move available units to another account; a repeated key returns the first transfer."""
        _require("from_account_id", from_account_id, ACCOUNT_ID_LENGTH)
        _require("to_account_id", to_account_id, ACCOUNT_ID_LENGTH)
        _require("idempotency_key", idempotency_key, KEY_LENGTH)
        if from_account_id == to_account_id:
            raise InvalidInput("cannot transfer quota to the same account")
        if not 1 <= quantity <= MAX_ORDER_QUANTITY:
            raise InvalidInput(f"quantity must be between 1 and {MAX_ORDER_QUANTITY}")
        now = self._clock()
        return self._write(
            lambda journal: transfers.transfer(
                journal,
                from_account_id=from_account_id,
                to_account_id=to_account_id,
                quantity=quantity,
                key=idempotency_key,
                channel=channel,
                now=now,
            )
        )

    # Holds and serials ----------------------------------------------------------------------

    def reserve(
        self,
        account_id: str,
        idempotency_key: str,
        document_sha256: bytes,
        metadata: DocumentMetadata,
        channel: Channel,
        request_sha256: bytes = b"",
    ) -> tuple[Hold, bool]:
        """Hold one available unit for the document and issue its serial; (hold, replayed).

        The same key with the same document (and, when both requests carry one, the same
        request_sha256: the caller's fingerprint of the rest of the request) returns the same hold
        and serial; anything else is a Conflict. No available unit raises InsufficientQuota.
        """
        return self.reserve_later(
            account_id, idempotency_key, document_sha256, metadata, channel, request_sha256
        ).result()

    def reserve_later(
        self,
        account_id: str,
        idempotency_key: str,
        document_sha256: bytes,
        metadata: DocumentMetadata,
        channel: Channel,
        request_sha256: bytes = b"",
    ) -> Future[tuple[Hold, bool]]:
        """reserve without waiting for the result."""
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        _require("idempotency_key", idempotency_key, KEY_LENGTH)
        _require_sha256("document_sha256", document_sha256)
        if request_sha256:
            _require_sha256("request_sha256", request_sha256)
        _check_metadata(metadata)
        now = self._clock()
        request = holds.ReserveRequest(
            account_id=account_id,
            key=idempotency_key,
            document_sha256=document_sha256,
            metadata=metadata,
            channel=channel,
            now=now,
            ttl=self._hold_ttl,
            unit_price_idr=self._unit_price_idr,
            request_sha256=request_sha256,
        )
        return self._committer.submit(lambda journal: holds.reserve(journal, request), ("reserve", request))

    def commit(self, hold_id: str, stamped_sha256: bytes, document_ref: str = "") -> Hold:
        """Consume the held unit and bind its serial to the stamped document, and keep where the
        document store put it (document_ref). Repeating it with the same hash returns the hold; a
        released hold or another hash raises HoldAlreadyResolved."""
        return self.commit_later(hold_id, stamped_sha256, document_ref).result()

    def commit_later(self, hold_id: str, stamped_sha256: bytes, document_ref: str = "") -> Future[Hold]:
        """commit without waiting for the result."""
        _require("hold_id", hold_id, ID_LENGTH)
        _require_sha256("stamped_sha256", stamped_sha256)
        _at_most("document_ref", document_ref, DOCUMENT_REF_LENGTH)
        now = self._clock()
        return self._committer.submit(
            lambda journal: holds.commit(journal, hold_id, stamped_sha256, now, document_ref),
            ("commit", holds.CommitRequest(hold_id, stamped_sha256, now, document_ref)),
        )

    def release(self, hold_id: str, reason: ReleaseReason) -> Hold:
        """Make the held unit available again and void its serial. Repeating it returns the hold;
        a committed hold raises HoldAlreadyResolved."""
        return self.release_later(hold_id, reason).result()

    def release_later(self, hold_id: str, reason: ReleaseReason) -> Future[Hold]:
        """release without waiting for the result."""
        _require("hold_id", hold_id, ID_LENGTH)
        now = self._clock()
        return self._committer.submit(lambda journal: holds.release(journal, hold_id, reason, now))

    def release_expired_holds(self, now: datetime | None = None) -> int:
        """Release every reserved hold past its deadline; returns how many this call released."""
        moment = now or self._clock()
        released = 0
        while True:
            with self._reading() as conn:
                batch = holds.expired_hold_ids(conn, moment, _SWEEP_BATCH)
            # One operation per hold, taking the same locks in the same order as commit; the group
            # committer batches them with whatever else is waiting.
            futures = [
                self._committer.submit(
                    lambda journal, hold_id=hold_id: holds.release_if_expired(journal, hold_id, moment)
                )
                for hold_id in batch
            ]
            released += sum(future.result() for future in futures)
            if len(batch) < _SWEEP_BATCH:
                return released

    def outstanding_holds(self) -> tuple[int, float]:
        """The holds reserved and not yet committed or released: how many, and the age of the oldest
        in seconds (0 when there is none)."""
        with self._reading() as conn:
            found = holds.outstanding(conn)
        if found.oldest_created_at is None:
            return found.count, 0.0
        return found.count, max(0.0, (self._clock() - found.oldest_created_at).total_seconds())

    def get_hold(self, hold_id: str, account_id: str = "") -> Hold:
        """The hold; when account_id is given, another account's hold is NotFound."""
        _require("hold_id", hold_id, ID_LENGTH)
        with self._reading() as conn:
            return holds.get(conn, hold_id, account_id)

    def list_holds(self, account_id: str, page_size: int = 0, page_token: str = "") -> Page[Hold]:
        """The account's stamping history, newest first."""
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        limit, before = _page_size(page_size), _decode_token(page_token)
        with self._reading() as conn:
            rows = holds.page(conn, account_id, before, limit + 1)
        return _page(rows, limit)

    def lookup_serial(self, serial: str) -> SerialRecord:
        """What anyone may know about a serial; never who holds it. Unknown serials say so."""
        candidate = normalize_serial(serial[:64])
        if not is_valid_serial(candidate):
            return SerialRecord(serial=serial[:64], status=SerialStatus.UNKNOWN)
        with self._reading() as conn:
            return holds.lookup_serial(conn, candidate)

    # Accounts and channels ------------------------------------------------------------------

    def configure_account(
        self, account_id: str, kind: Channel, pool_account_id: str = "", credit_limit_idr: int = 0
    ) -> Account:
        """Make account_id a retail, distributor, enterprise or collector account; with a pool
        account, its stamps draw on that account's units; a collector stamps on credit up to
        credit_limit_idr and pays a monthly statement."""
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        if pool_account_id:
            _require("pool_account_id", pool_account_id, ACCOUNT_ID_LENGTH)
        if not 0 <= credit_limit_idr <= MAX_AMOUNT_IDR:
            raise InvalidInput(f"credit_limit_idr must be between 0 and {MAX_AMOUNT_IDR}")
        now = self._clock()
        return self._write(
            lambda journal: accounts.configure(
                journal,
                account_id=account_id,
                kind=kind,
                pool_account_id=pool_account_id or None,
                credit_limit_idr=credit_limit_idr,
                now=now,
            )
        )

    def get_account(self, account_id: str) -> Account:
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        with self._reading() as conn:
            return accounts.get(conn, account_id)

    def run_audit(self) -> tuple[int, list[str], list[str]]:
        """(events checked, problems in the audit chain, problems in the books): what `emeterai
        audit verify` and `reconcile` report, on one snapshot of the live ledger."""
        with audit.snapshot(self._engine) as conn:
            events, chain_problems = audit.verify_chain(conn)
            book_problems = audit.reconcile(conn)
        return events, chain_problems, book_problems

    def reconcile(self) -> list[str]:
        """The discrepancies in the books, as `emeterai audit reconcile` finds them, on one snapshot
        of the live ledger; empty when they add up."""
        with audit.snapshot(self._engine) as conn:
            return audit.reconcile(conn)

    def get_statement(self, account_id: str, period: str) -> Statement:
        """A collector's stamps on credit in a month ("YYYY-MM", UTC) and what it owes now."""
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        with self._reading() as conn:
            return accounts.statement(conn, account_id, period)

    def settle_statement(
        self, account_id: str, amount_idr: int, reference: str, idempotency_key: str
    ) -> Settlement:
        """Record money a collector paid against what it owes."""
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        _require("reference", reference, TEXT_LENGTH)
        _require("idempotency_key", idempotency_key, KEY_LENGTH)
        if not 1 <= amount_idr <= MAX_AMOUNT_IDR:
            raise InvalidInput(f"amount_idr must be between 1 and {MAX_AMOUNT_IDR}")
        now = self._clock()
        return self._write(
            lambda journal: accounts.settle(
                journal,
                account_id=account_id,
                amount_idr=amount_idr,
                reference=reference,
                key=idempotency_key,
                now=now,
            )
        )


# Validation ---------------------------------------------------------------------------------


def _require(name: str, value: str, max_length: int) -> None:
    if not value:
        raise InvalidInput(f"{name} is required")
    _at_most(name, value, max_length)


def _at_most(name: str, value: str, max_length: int) -> None:
    if len(value) > max_length:
        raise InvalidInput(f"{name} must be at most {max_length} characters")


def _require_sha256(name: str, value: bytes) -> None:
    if len(value) != 32:
        raise InvalidInput(f"{name} must be a SHA-256 digest of 32 bytes, got {len(value)}")


def _check_metadata(metadata: DocumentMetadata) -> None:
    for name, value in (("name", metadata.name), ("number", metadata.number)):
        _at_most(f"metadata.{name}", value, TEXT_LENGTH)
    if metadata.date:
        try:
            # fromisoformat also takes "20240131"; the stored form is the dashed one only.
            valid = len(metadata.date) == 10 and date.fromisoformat(metadata.date) is not None
        except ValueError:
            valid = False
        if not valid:
            raise InvalidInput("metadata.date must be a date as YYYY-MM-DD")
    if metadata.value_idr < 0:
        raise InvalidInput("metadata.value_idr cannot be negative")


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidInput("page_size cannot be negative")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


# Page tokens are opaque to callers so the ordering key can change without breaking them.
def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and a token that is not ASCII
        text = ""
    version, _, seq = text.partition(":")
    found = paging.position(seq) if version == "v1" else None
    if found is not None:
        return found
    raise InvalidInput("page_token is not one this service issued")


def _page(rows: list[tuple[int, T]], limit: int) -> Page[T]:
    if len(rows) > limit:
        return Page(
            items=[item for _, item in rows[:limit]], next_page_token=_encode_token(rows[limit - 1][0])
        )
    return Page(items=[item for _, item in rows], next_page_token="")
