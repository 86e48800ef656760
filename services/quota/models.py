"""The ledger's records as plain values: what the domain returns and the servicer translates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Channel(StrEnum):
    """How a sale or a stamp reached us; also what kind of owner an account is."""

    RETAIL = "retail"
    DISTRIBUTOR = "distributor"
    ENTERPRISE = "enterprise"
    # Corporate accounts that stamp first and pay a monthly statement (post-paid).
    COLLECTOR = "collector"


class DocumentType(StrEnum):
    UNSPECIFIED = "unspecified"
    AGREEMENT = "agreement"
    STATEMENT = "statement"
    NOTARIAL_DEED = "notarial_deed"
    LAND_DEED = "land_deed"
    SECURITIES = "securities"
    TRANSACTION = "transaction"
    MONEY_RECEIPT = "money_receipt"
    DEBT_SETTLEMENT = "debt_settlement"
    COURT_EVIDENCE = "court_evidence"
    OTHER = "other"


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


# Orders whose quantity was credited to the account.
PAID_STATUSES = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED)


class HoldStatus(StrEnum):
    RESERVED = "reserved"
    COMMITTED = "committed"
    RELEASED = "released"


class ReleaseReason(StrEnum):
    SIGNING_FAILED = "signing_failed"
    STORAGE_FAILED = "storage_failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class SerialStatus(StrEnum):
    RESERVED = "reserved"
    STAMPED = "stamped"
    VOID = "void"
    UNKNOWN = "unknown"


class Unit(StrEnum):
    """What a book counts: stamp units, or rupiah."""

    STAMP = "stamp"
    IDR = "idr"


class Book(StrEnum):
    """The books of the double-entry ledger. Every entry moves an amount from one book to another
    of the same unit, so the sum over all books of a unit is always zero.

    Per account (stamps): AVAILABLE, HELD, CONSUMED, REFUNDED, never negative.
    Per account (rupiah): RECEIVABLE, what a collector owes: minus what it was billed plus what it paid.
    System: STOCK, where every unit comes from (minus the units issued); PAYMENTS, money that came in
    through payment providers (minus what payers paid plus what went back); SOLD, the value of the
    stamps sold and not refunded.
    """

    AVAILABLE = "available"
    HELD = "held"
    CONSUMED = "consumed"
    REFUNDED = "refunded"
    RECEIVABLE = "receivable"
    STOCK = "stock"
    PAYMENTS = "payments"
    SOLD = "sold"

    @property
    def unit(self) -> Unit:
        return Unit.IDR if self in (Book.RECEIVABLE, Book.PAYMENTS, Book.SOLD) else Unit.STAMP

    @property
    def is_system(self) -> bool:
        return self in SYSTEM_BOOKS


SYSTEM_BOOKS = (Book.STOCK, Book.PAYMENTS, Book.SOLD)
ACCOUNT_STAMP_BOOKS = (Book.AVAILABLE, Book.HELD, Book.CONSUMED, Book.REFUNDED)


class EntryKind(StrEnum):
    PURCHASE = "purchase"
    PAYMENT = "payment"
    REFUND = "refund"
    PAYMENT_RETURN = "payment_return"
    TRANSFER = "transfer"
    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"
    BILLING = "billing"
    SETTLEMENT = "settlement"


@dataclass(frozen=True)
class DocumentMetadata:
    type: DocumentType = DocumentType.UNSPECIFIED
    name: str = ""
    number: str = ""
    # ISO 8601 date (YYYY-MM-DD) or empty.
    date: str = ""
    value_idr: int = 0


@dataclass(frozen=True)
class Order:
    order_id: str
    account_id: str
    quantity: int
    unit_price_idr: int
    amount_idr: int
    status: OrderStatus
    payment_provider: str
    payment_reference: str
    payment_url: str
    channel: Channel
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    refunded_quantity: int


class RefundStatus(StrEnum):
    # The units are refunded; the money is on its way back through the payment provider.
    PENDING = "pending"
    COMPLETED = "completed"


@dataclass(frozen=True)
class Account:
    """An owner of quota. A pool account is the one whose units this account's stamps draw on
    (an enterprise child draws on its parent); collectors stamp on credit up to credit_limit_idr."""

    account_id: str
    kind: Channel
    pool_account_id: str | None
    credit_limit_idr: int
    created_at: datetime


@dataclass(frozen=True)
class Balance:
    account_id: str
    available: int
    held: int
    consumed: int
    refunded: int
    # What a collector owes for stamps already made and not yet paid.
    owed_idr: int = 0

    @property
    def purchased(self) -> int:
        """Units that came into the account (bought, or received minus sent by transfer)."""
        return self.available + self.held + self.consumed + self.refunded


@dataclass(frozen=True)
class Hold:
    hold_id: str
    # Who stamps (the history is theirs); the unit comes from funding_account_id.
    account_id: str
    funding_account_id: str
    serial: str
    status: HoldStatus
    document_sha256: bytes
    stamped_sha256: bytes | None
    metadata: DocumentMetadata
    channel: Channel
    release_reason: ReleaseReason | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    # Where the gateway's document store keeps the stamped PDF ("" when it finds it by hold id).
    document_ref: str = ""


@dataclass(frozen=True)
class SerialRecord:
    """The public face of a serial. It has no owner field on purpose: anyone may look one up."""

    serial: str
    status: SerialStatus
    issued_at: datetime | None = None
    stamped_at: datetime | None = None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    account_id: str
    quantity: int
    amount_idr: int
    reason: str
    created_at: datetime
    status: RefundStatus
    provider_reference: str
    completed_at: datetime | None


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    from_account_id: str
    to_account_id: str
    quantity: int
    channel: Channel
    created_at: datetime


@dataclass(frozen=True)
class Statement:
    """A collector's month: the stamps it made, what they cost, and what it has paid overall."""

    account_id: str
    # "YYYY-MM" in UTC.
    period: str
    stamps: int
    amount_idr: int
    # Owed now, for every month so far, after every settlement.
    outstanding_idr: int


@dataclass(frozen=True)
class Settlement:
    settlement_id: str
    account_id: str
    amount_idr: int
    reference: str
    created_at: datetime


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    # Empty on the last page.
    next_page_token: str
