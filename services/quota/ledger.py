"""The ledger of record: what each account bought, holds, spent and got back, and every serial.

Each public method is one unit of work: it validates its input, then runs in a single transaction
of its own, so an idempotency key is stored together with the effect it names. The work itself
lives in orders.py, holds.py and transfers.py; balances.py is the only code that changes a balance.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.common.db import SQLITE_BEGIN
from services.common.errors import Conflict, InvalidInput
from services.common.settings import QuotaSettings
from services.quota import balances, holds, orders, transfers
from services.quota.db import create_ledger_engine
from services.quota.models import (
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
    Transfer,
)
from services.quota.payments import PaymentProvider, SandboxProvider
from services.quota.schema import ACCOUNT_ID_LENGTH, ID_LENGTH, KEY_LENGTH, REASON_LENGTH, TEXT_LENGTH, new_id
from services.quota.serials import is_valid_serial, normalize_serial

T = TypeVar("T")
Clock = Callable[[], datetime]

MAX_ORDER_QUANTITY = 100_000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# A write that loses a uniqueness race is retried; the retry then finds the winner's row.
_WRITE_ATTEMPTS = 3
# Expired holds examined per sweep query; each is then released in its own short transaction.
_SWEEP_BATCH = 200


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

    def _write(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._engine.begin() as conn:
                    return work(conn)
            except IntegrityError:
                # A concurrent call with the same key or payment event committed first (the retry
                # replays its answer), or a new serial collided. Anything else fails every time.
                if attempt == _WRITE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

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

        with self._reading() as conn:
            earlier = orders.find_by_key(conn, account_id, idempotency_key)
        if earlier is not None:
            return replay(earlier)

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
        # Outside the transaction: a real provider is a network call, and no lock should wait on it.
        reference, url = self._provider.create_payment(draft)
        draft = replace(draft, payment_reference=reference, payment_url=url)

        def work(conn: Connection) -> tuple[Order, bool]:
            raced = orders.find_by_key(conn, account_id, idempotency_key)
            if raced is not None:
                return replay(raced)
            orders.insert_order(conn, draft, idempotency_key)
            return orders.get(conn, draft.order_id, now), False

        return self._write(work)

    def confirm_payment(self, provider: str, payload: bytes, signature: str) -> tuple[Order, bool]:
        """Apply a provider's webhook: verify it, record the payment, mark the order paid and credit
        its units, all or nothing; (order, replayed). A repeated event changes nothing."""
        if provider != self._provider.name:
            raise InvalidInput(f"unknown payment provider {provider!r}")
        event = self._provider.parse_webhook(payload, signature)
        now = self._clock()
        return self._write(lambda conn: orders.record_payment(conn, provider, event, now))

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
        return self._write(lambda conn: orders.cancel(conn, order_id, account_id, now))

    def refund_order(
        self, order_id: str, account_id: str, quantity: int, reason: str, idempotency_key: str
    ) -> tuple[Refund, Order]:
        """Return unused units of a paid order (available -> refunded). quantity 0 refunds as many as
        possible: the order's unrefunded units, at most what the account has available."""
        _require("order_id", order_id, ID_LENGTH)
        _require("idempotency_key", idempotency_key, KEY_LENGTH)
        if quantity < 0 or quantity > MAX_ORDER_QUANTITY:
            raise InvalidInput(f"quantity must be between 0 and {MAX_ORDER_QUANTITY}")
        if len(reason) > REASON_LENGTH:
            raise InvalidInput(f"reason must be at most {REASON_LENGTH} characters")
        now = self._clock()
        return self._write(
            lambda conn: orders.refund(
                conn,
                order_id=order_id,
                account_id=account_id,
                quantity=quantity,
                reason=reason,
                key=idempotency_key,
                now=now,
            )
        )

    def expire_orders(self, now: datetime | None = None) -> int:
        """Mark unpaid orders past their deadline expired (reads already treat them so); a sweeper."""
        moment = now or self._clock()
        with self._engine.begin() as conn:
            return orders.expire(conn, moment)

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
            lambda conn: transfers.transfer(
                conn,
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
    ) -> tuple[Hold, bool]:
        """Hold one available unit for the document and issue its serial; (hold, replayed).

        The same key with the same document returns the same hold and serial; with another
        document it is a Conflict. No available unit raises InsufficientQuota.
        """
        _require("account_id", account_id, ACCOUNT_ID_LENGTH)
        _require("idempotency_key", idempotency_key, KEY_LENGTH)
        _require_sha256("document_sha256", document_sha256)
        _check_metadata(metadata)
        now = self._clock()
        return self._write(
            lambda conn: holds.reserve(
                conn,
                account_id=account_id,
                key=idempotency_key,
                document_sha256=document_sha256,
                metadata=metadata,
                channel=channel,
                now=now,
                ttl=self._hold_ttl,
            )
        )

    def commit(self, hold_id: str, stamped_sha256: bytes) -> Hold:
        """Consume the held unit and bind its serial to the stamped document. Repeating it with the
        same hash returns the hold; a released hold or another hash raises HoldAlreadyResolved."""
        _require("hold_id", hold_id, ID_LENGTH)
        _require_sha256("stamped_sha256", stamped_sha256)
        now = self._clock()
        return self._write(lambda conn: holds.commit(conn, hold_id, stamped_sha256, now))

    def release(self, hold_id: str, reason: ReleaseReason) -> Hold:
        """Make the held unit available again and void its serial. Repeating it returns the hold;
        a committed hold raises HoldAlreadyResolved."""
        _require("hold_id", hold_id, ID_LENGTH)
        now = self._clock()
        return self._write(lambda conn: holds.release(conn, hold_id, reason, now))

    def release_expired_holds(self, now: datetime | None = None) -> int:
        """Release every reserved hold past its deadline; returns how many this call released."""
        moment = now or self._clock()
        released = 0
        while True:
            with self._reading() as conn:
                batch = holds.expired_hold_ids(conn, moment, _SWEEP_BATCH)
            # One short transaction per hold, taking the same locks in the same order as commit,
            # so the sweeper never holds many rows while a stamping call waits.
            for hold_id in batch:
                with self._engine.begin() as conn:
                    released += holds.release_if_expired(conn, hold_id, moment)
            if len(batch) < _SWEEP_BATCH:
                return released

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


# Validation ---------------------------------------------------------------------------------


def _require(name: str, value: str, max_length: int) -> None:
    if not value:
        raise InvalidInput(f"{name} is required")
    if len(value) > max_length:
        raise InvalidInput(f"{name} must be at most {max_length} characters")


def _require_sha256(name: str, value: bytes) -> None:
    if len(value) != 32:
        raise InvalidInput(f"{name} must be a SHA-256 digest of 32 bytes, got {len(value)}")


def _check_metadata(metadata: DocumentMetadata) -> None:
    for name, value in (("name", metadata.name), ("number", metadata.number)):
        if len(value) > TEXT_LENGTH:
            raise InvalidInput(f"metadata.{name} must be at most {TEXT_LENGTH} characters")
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
        version, _, seq = text.partition(":")
        if version == "v1" and seq.isdigit():
            return int(seq)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidInput("page_token is not one this service issued")


def _page(rows: list[tuple[int, T]], limit: int) -> Page[T]:
    if len(rows) > limit:
        return Page(
            items=[item for _, item in rows[:limit]], next_page_token=_encode_token(rows[limit - 1][0])
        )
    return Page(items=[item for _, item in rows], next_page_token="")
