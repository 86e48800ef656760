"""The ledger's records as plain values: what the domain returns and the servicer translates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Channel(StrEnum):
    RETAIL = "retail"
    DISTRIBUTOR = "distributor"
    ENTERPRISE = "enterprise"
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


class State(StrEnum):
    """Where a unit of quota sits. EXTERNAL is outside the account: the payment provider or another
    account, so an entry from or to it changes what the account has purchased."""

    EXTERNAL = "external"
    AVAILABLE = "available"
    HELD = "held"
    CONSUMED = "consumed"
    REFUNDED = "refunded"


class EntryKind(StrEnum):
    PURCHASE = "purchase"
    REFUND = "refund"
    TRANSFER = "transfer"
    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"


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


@dataclass(frozen=True)
class Balance:
    account_id: str
    available: int
    held: int
    consumed: int
    refunded: int

    @property
    def purchased(self) -> int:
        """Units that came into the account (bought, or received minus sent by transfer)."""
        return self.available + self.held + self.consumed + self.refunded


@dataclass(frozen=True)
class Hold:
    hold_id: str
    account_id: str
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


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    from_account_id: str
    to_account_id: str
    quantity: int
    channel: Channel
    created_at: datetime


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    # Empty on the last page.
    next_page_token: str
