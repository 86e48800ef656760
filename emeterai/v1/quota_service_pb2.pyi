from emeterai.v1 import common_pb2 as _common_pb2
from emeterai.v1 import ledger_pb2 as _ledger_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateOrderRequest(_message.Message):
    __slots__ = ("account_id", "quantity", "idempotency_key", "channel")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    quantity: int
    idempotency_key: str
    channel: _common_pb2.Channel
    def __init__(self, account_id: _Optional[str] = ..., quantity: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ...) -> None: ...

class CreateOrderResponse(_message.Message):
    __slots__ = ("order", "replayed")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    order: _ledger_pb2.Order
    replayed: bool
    def __init__(self, order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id", "account_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _ledger_pb2.Order
    def __init__(self, order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_ledger_pb2.Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[_ledger_pb2.Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "account_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _ledger_pb2.Order
    def __init__(self, order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ...) -> None: ...

class ConfirmPaymentRequest(_message.Message):
    __slots__ = ("provider", "payload", "signature")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    payload: bytes
    signature: str
    def __init__(self, provider: _Optional[str] = ..., payload: _Optional[bytes] = ..., signature: _Optional[str] = ...) -> None: ...

class ConfirmPaymentResponse(_message.Message):
    __slots__ = ("order", "replayed")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    order: _ledger_pb2.Order
    replayed: bool
    def __init__(self, order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class RefundOrderRequest(_message.Message):
    __slots__ = ("order_id", "account_id", "quantity", "reason", "idempotency_key")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    quantity: int
    reason: str
    idempotency_key: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RefundOrderResponse(_message.Message):
    __slots__ = ("refund", "order")
    REFUND_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    refund: _ledger_pb2.Refund
    order: _ledger_pb2.Order
    def __init__(self, refund: _Optional[_Union[_ledger_pb2.Refund, _Mapping]] = ..., order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: _ledger_pb2.Balance
    def __init__(self, balance: _Optional[_Union[_ledger_pb2.Balance, _Mapping]] = ...) -> None: ...

class TransferQuotaRequest(_message.Message):
    __slots__ = ("from_account_id", "to_account_id", "quantity", "idempotency_key", "channel")
    FROM_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    from_account_id: str
    to_account_id: str
    quantity: int
    idempotency_key: str
    channel: _common_pb2.Channel
    def __init__(self, from_account_id: _Optional[str] = ..., to_account_id: _Optional[str] = ..., quantity: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ...) -> None: ...

class TransferQuotaResponse(_message.Message):
    __slots__ = ("transfer",)
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    transfer: _ledger_pb2.Transfer
    def __init__(self, transfer: _Optional[_Union[_ledger_pb2.Transfer, _Mapping]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("account_id", "idempotency_key", "document_sha256", "metadata", "channel", "request_sha256")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    idempotency_key: str
    document_sha256: bytes
    metadata: _common_pb2.DocumentMetadata
    channel: _common_pb2.Channel
    request_sha256: bytes
    def __init__(self, account_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., document_sha256: _Optional[bytes] = ..., metadata: _Optional[_Union[_common_pb2.DocumentMetadata, _Mapping]] = ..., channel: _Optional[_Union[_common_pb2.Channel, str]] = ..., request_sha256: _Optional[bytes] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("hold", "replayed")
    HOLD_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    hold: _ledger_pb2.Hold
    replayed: bool
    def __init__(self, hold: _Optional[_Union[_ledger_pb2.Hold, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("hold_id", "stamped_sha256", "document_ref")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    STAMPED_SHA256_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_REF_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    stamped_sha256: bytes
    document_ref: str
    def __init__(self, hold_id: _Optional[str] = ..., stamped_sha256: _Optional[bytes] = ..., document_ref: _Optional[str] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: _ledger_pb2.Hold
    def __init__(self, hold: _Optional[_Union[_ledger_pb2.Hold, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("hold_id", "reason")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    reason: _ledger_pb2.ReleaseReason
    def __init__(self, hold_id: _Optional[str] = ..., reason: _Optional[_Union[_ledger_pb2.ReleaseReason, str]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: _ledger_pb2.Hold
    def __init__(self, hold: _Optional[_Union[_ledger_pb2.Hold, _Mapping]] = ...) -> None: ...

class GetHoldRequest(_message.Message):
    __slots__ = ("hold_id", "account_id")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    account_id: str
    def __init__(self, hold_id: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class GetHoldResponse(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: _ledger_pb2.Hold
    def __init__(self, hold: _Optional[_Union[_ledger_pb2.Hold, _Mapping]] = ...) -> None: ...

class ListHoldsRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListHoldsResponse(_message.Message):
    __slots__ = ("holds", "next_page_token")
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    holds: _containers.RepeatedCompositeFieldContainer[_ledger_pb2.Hold]
    next_page_token: str
    def __init__(self, holds: _Optional[_Iterable[_Union[_ledger_pb2.Hold, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LookupSerialRequest(_message.Message):
    __slots__ = ("serial",)
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    serial: str
    def __init__(self, serial: _Optional[str] = ...) -> None: ...

class LookupSerialResponse(_message.Message):
    __slots__ = ("serial",)
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    serial: _ledger_pb2.SerialRecord
    def __init__(self, serial: _Optional[_Union[_ledger_pb2.SerialRecord, _Mapping]] = ...) -> None: ...

class ConfigureQuotaAccountRequest(_message.Message):
    __slots__ = ("account_id", "kind", "pool_account_id", "credit_limit_idr")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POOL_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_IDR_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    kind: _common_pb2.Channel
    pool_account_id: str
    credit_limit_idr: int
    def __init__(self, account_id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.Channel, str]] = ..., pool_account_id: _Optional[str] = ..., credit_limit_idr: _Optional[int] = ...) -> None: ...

class ConfigureQuotaAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _ledger_pb2.QuotaAccount
    def __init__(self, account: _Optional[_Union[_ledger_pb2.QuotaAccount, _Mapping]] = ...) -> None: ...

class GetQuotaAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetQuotaAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _ledger_pb2.QuotaAccount
    def __init__(self, account: _Optional[_Union[_ledger_pb2.QuotaAccount, _Mapping]] = ...) -> None: ...

class GetStatementRequest(_message.Message):
    __slots__ = ("account_id", "period")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    period: str
    def __init__(self, account_id: _Optional[str] = ..., period: _Optional[str] = ...) -> None: ...

class GetStatementResponse(_message.Message):
    __slots__ = ("statement",)
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    statement: _ledger_pb2.Statement
    def __init__(self, statement: _Optional[_Union[_ledger_pb2.Statement, _Mapping]] = ...) -> None: ...

class SettleStatementRequest(_message.Message):
    __slots__ = ("account_id", "amount_idr", "reference", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IDR_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    amount_idr: int
    reference: str
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., amount_idr: _Optional[int] = ..., reference: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SettleStatementResponse(_message.Message):
    __slots__ = ("settlement",)
    SETTLEMENT_FIELD_NUMBER: _ClassVar[int]
    settlement: _ledger_pb2.Settlement
    def __init__(self, settlement: _Optional[_Union[_ledger_pb2.Settlement, _Mapping]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("create_order", "confirm_payment", "reserve", "commit", "release")
    CREATE_ORDER_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_PAYMENT_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    create_order: CreateOrderRequest
    confirm_payment: ConfirmPaymentRequest
    reserve: ReserveRequest
    commit: CommitRequest
    release: ReleaseRequest
    def __init__(self, create_order: _Optional[_Union[CreateOrderRequest, _Mapping]] = ..., confirm_payment: _Optional[_Union[ConfirmPaymentRequest, _Mapping]] = ..., reserve: _Optional[_Union[ReserveRequest, _Mapping]] = ..., commit: _Optional[_Union[CommitRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchResult, _Mapping]]] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("create_order", "confirm_payment", "reserve", "commit", "release", "error")
    CREATE_ORDER_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_PAYMENT_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    create_order: CreateOrderResponse
    confirm_payment: ConfirmPaymentResponse
    reserve: ReserveResponse
    commit: CommitResponse
    release: ReleaseResponse
    error: _common_pb2.BatchError
    def __init__(self, create_order: _Optional[_Union[CreateOrderResponse, _Mapping]] = ..., confirm_payment: _Optional[_Union[ConfirmPaymentResponse, _Mapping]] = ..., reserve: _Optional[_Union[ReserveResponse, _Mapping]] = ..., commit: _Optional[_Union[CommitResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.BatchError, _Mapping]] = ...) -> None: ...

class AuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditResponse(_message.Message):
    __slots__ = ("events", "chain_problems", "book_problems")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    BOOK_PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    events: int
    chain_problems: _containers.RepeatedScalarFieldContainer[str]
    book_problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, events: _Optional[int] = ..., chain_problems: _Optional[_Iterable[str]] = ..., book_problems: _Optional[_Iterable[str]] = ...) -> None: ...
