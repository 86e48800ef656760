import datetime

from emeterai.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_AWAITING_PAYMENT: _ClassVar[OrderStatus]
    ORDER_STATUS_PAID: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
    ORDER_STATUS_EXPIRED: _ClassVar[OrderStatus]
    ORDER_STATUS_PARTIALLY_REFUNDED: _ClassVar[OrderStatus]
    ORDER_STATUS_REFUNDED: _ClassVar[OrderStatus]

class HoldStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOLD_STATUS_UNSPECIFIED: _ClassVar[HoldStatus]
    HOLD_STATUS_RESERVED: _ClassVar[HoldStatus]
    HOLD_STATUS_COMMITTED: _ClassVar[HoldStatus]
    HOLD_STATUS_RELEASED: _ClassVar[HoldStatus]

class ReleaseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_REASON_UNSPECIFIED: _ClassVar[ReleaseReason]
    RELEASE_REASON_SIGNING_FAILED: _ClassVar[ReleaseReason]
    RELEASE_REASON_STORAGE_FAILED: _ClassVar[ReleaseReason]
    RELEASE_REASON_CANCELLED: _ClassVar[ReleaseReason]
    RELEASE_REASON_EXPIRED: _ClassVar[ReleaseReason]

class SerialStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERIAL_STATUS_UNSPECIFIED: _ClassVar[SerialStatus]
    SERIAL_STATUS_RESERVED: _ClassVar[SerialStatus]
    SERIAL_STATUS_STAMPED: _ClassVar[SerialStatus]
    SERIAL_STATUS_VOID: _ClassVar[SerialStatus]
    SERIAL_STATUS_UNKNOWN: _ClassVar[SerialStatus]

class RefundStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFUND_STATUS_UNSPECIFIED: _ClassVar[RefundStatus]
    REFUND_STATUS_PENDING: _ClassVar[RefundStatus]
    REFUND_STATUS_COMPLETED: _ClassVar[RefundStatus]
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_AWAITING_PAYMENT: OrderStatus
ORDER_STATUS_PAID: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus
ORDER_STATUS_EXPIRED: OrderStatus
ORDER_STATUS_PARTIALLY_REFUNDED: OrderStatus
ORDER_STATUS_REFUNDED: OrderStatus
HOLD_STATUS_UNSPECIFIED: HoldStatus
HOLD_STATUS_RESERVED: HoldStatus
HOLD_STATUS_COMMITTED: HoldStatus
HOLD_STATUS_RELEASED: HoldStatus
RELEASE_REASON_UNSPECIFIED: ReleaseReason
RELEASE_REASON_SIGNING_FAILED: ReleaseReason
RELEASE_REASON_STORAGE_FAILED: ReleaseReason
RELEASE_REASON_CANCELLED: ReleaseReason
RELEASE_REASON_EXPIRED: ReleaseReason
SERIAL_STATUS_UNSPECIFIED: SerialStatus
SERIAL_STATUS_RESERVED: SerialStatus
SERIAL_STATUS_STAMPED: SerialStatus
SERIAL_STATUS_VOID: SerialStatus
SERIAL_STATUS_UNKNOWN: SerialStatus
REFUND_STATUS_UNSPECIFIED: RefundStatus
REFUND_STATUS_PENDING: RefundStatus
REFUND_STATUS_COMPLETED: RefundStatus

class Order(_message.Message):
    __slots__ = ("order_id", "account_id", "quantity", "unit_price_idr", "amount_idr", "status", "payment_provider", "payment_reference", "payment_url", "channel", "created_at", "expires_at", "paid_at", "refunded_quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_IDR_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IDR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_URL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    quantity: int
    unit_price_idr: int
    amount_idr: int
    status: OrderStatus
    payment_provider: str
    payment_reference: str
    payment_url: str
    channel: _common_pb2.Channel
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    paid_at: _timestamp_pb2.Timestamp
    refunded_quantity: int
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price_idr: _Optional[int] = ..., amount_idr: _Optional[int] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., payment_provider: _Optional[str] = ..., payment_reference: _Optional[str] = ..., payment_url: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refunded_quantity: _Optional[int] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("account_id", "available", "held", "consumed", "refunded", "purchased", "owed_idr")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_FIELD_NUMBER: _ClassVar[int]
    PURCHASED_FIELD_NUMBER: _ClassVar[int]
    OWED_IDR_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    available: int
    held: int
    consumed: int
    refunded: int
    purchased: int
    owed_idr: int
    def __init__(self, account_id: _Optional[str] = ..., available: _Optional[int] = ..., held: _Optional[int] = ..., consumed: _Optional[int] = ..., refunded: _Optional[int] = ..., purchased: _Optional[int] = ..., owed_idr: _Optional[int] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("hold_id", "account_id", "serial", "status", "document_sha256", "stamped_sha256", "metadata", "channel", "release_reason", "created_at", "expires_at", "resolved_at", "funding_account_id", "document_ref")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    STAMPED_SHA256_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    RELEASE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    FUNDING_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_REF_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    account_id: str
    serial: str
    status: HoldStatus
    document_sha256: bytes
    stamped_sha256: bytes
    metadata: _common_pb2.DocumentMetadata
    channel: _common_pb2.Channel
    release_reason: ReleaseReason
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    funding_account_id: str
    document_ref: str
    def __init__(self, hold_id: _Optional[str] = ..., account_id: _Optional[str] = ..., serial: _Optional[str] = ..., status: _Optional[_Union[HoldStatus, str]] = ..., document_sha256: _Optional[bytes] = ..., stamped_sha256: _Optional[bytes] = ..., metadata: _Optional[_Union[_common_pb2.DocumentMetadata, _Mapping]] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., release_reason: _Optional[_Union[ReleaseReason, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., funding_account_id: _Optional[str] = ..., document_ref: _Optional[str] = ...) -> None: ...

class SerialRecord(_message.Message):
    __slots__ = ("serial", "status", "issued_at", "stamped_at")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    STAMPED_AT_FIELD_NUMBER: _ClassVar[int]
    serial: str
    status: SerialStatus
    issued_at: _timestamp_pb2.Timestamp
    stamped_at: _timestamp_pb2.Timestamp
    def __init__(self, serial: _Optional[str] = ..., status: _Optional[_Union[SerialStatus, str]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stamped_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Refund(_message.Message):
    __slots__ = ("refund_id", "order_id", "account_id", "quantity", "amount_idr", "reason", "created_at", "status", "provider_reference", "completed_at")
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IDR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    refund_id: str
    order_id: str
    account_id: str
    quantity: int
    amount_idr: int
    reason: str
    created_at: _timestamp_pb2.Timestamp
    status: RefundStatus
    provider_reference: str
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, refund_id: _Optional[str] = ..., order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., quantity: _Optional[int] = ..., amount_idr: _Optional[int] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RefundStatus, str]] = ..., provider_reference: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("transfer_id", "from_account_id", "to_account_id", "quantity", "channel", "created_at")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    from_account_id: str
    to_account_id: str
    quantity: int
    channel: _common_pb2.Channel
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, transfer_id: _Optional[str] = ..., from_account_id: _Optional[str] = ..., to_account_id: _Optional[str] = ..., quantity: _Optional[int] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QuotaAccount(_message.Message):
    __slots__ = ("account_id", "kind", "pool_account_id", "credit_limit_idr", "created_at")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POOL_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_IDR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    kind: _common_pb2.Channel
    pool_account_id: str
    credit_limit_idr: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.Channel, str]] = ..., pool_account_id: _Optional[str] = ..., credit_limit_idr: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Statement(_message.Message):
    __slots__ = ("account_id", "period", "stamps", "amount_idr", "outstanding_idr")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    STAMPS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IDR_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_IDR_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    period: str
    stamps: int
    amount_idr: int
    outstanding_idr: int
    def __init__(self, account_id: _Optional[str] = ..., period: _Optional[str] = ..., stamps: _Optional[int] = ..., amount_idr: _Optional[int] = ..., outstanding_idr: _Optional[int] = ...) -> None: ...

class Settlement(_message.Message):
    __slots__ = ("settlement_id", "account_id", "amount_idr", "reference", "created_at")
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IDR_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    settlement_id: str
    account_id: str
    amount_idr: int
    reference: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, settlement_id: _Optional[str] = ..., account_id: _Optional[str] = ..., amount_idr: _Optional[int] = ..., reference: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
