import datetime

from emeterai.v1 import common_pb2 as _common_pb2
from emeterai.v1 import accounts_pb2 as _accounts_pb2
from emeterai.v1 import ledger_pb2 as _ledger_pb2
from emeterai.v1 import verification_pb2 as _verification_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StampStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAMP_STATUS_UNSPECIFIED: _ClassVar[StampStatus]
    STAMP_STATUS_STAMPING: _ClassVar[StampStatus]
    STAMP_STATUS_STAMPED: _ClassVar[StampStatus]
    STAMP_STATUS_RELEASED: _ClassVar[StampStatus]

class StampJobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAMP_JOB_STATUS_UNSPECIFIED: _ClassVar[StampJobStatus]
    STAMP_JOB_STATUS_QUEUED: _ClassVar[StampJobStatus]
    STAMP_JOB_STATUS_RUNNING: _ClassVar[StampJobStatus]
    STAMP_JOB_STATUS_DONE: _ClassVar[StampJobStatus]

class CallbackState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALLBACK_STATE_UNSPECIFIED: _ClassVar[CallbackState]
    CALLBACK_STATE_NONE: _ClassVar[CallbackState]
    CALLBACK_STATE_PENDING: _ClassVar[CallbackState]
    CALLBACK_STATE_DELIVERED: _ClassVar[CallbackState]
    CALLBACK_STATE_FAILED: _ClassVar[CallbackState]
STAMP_STATUS_UNSPECIFIED: StampStatus
STAMP_STATUS_STAMPING: StampStatus
STAMP_STATUS_STAMPED: StampStatus
STAMP_STATUS_RELEASED: StampStatus
STAMP_JOB_STATUS_UNSPECIFIED: StampJobStatus
STAMP_JOB_STATUS_QUEUED: StampJobStatus
STAMP_JOB_STATUS_RUNNING: StampJobStatus
STAMP_JOB_STATUS_DONE: StampJobStatus
CALLBACK_STATE_UNSPECIFIED: CallbackState
CALLBACK_STATE_NONE: CallbackState
CALLBACK_STATE_PENDING: CallbackState
CALLBACK_STATE_DELIVERED: CallbackState
CALLBACK_STATE_FAILED: CallbackState

class StampRecord(_message.Message):
    __slots__ = ("stamp_id", "account_id", "serial", "status", "metadata", "document_sha256", "stamped_sha256", "release_reason", "created_at", "resolved_at")
    STAMP_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    STAMPED_SHA256_FIELD_NUMBER: _ClassVar[int]
    RELEASE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    stamp_id: str
    account_id: str
    serial: str
    status: StampStatus
    metadata: _common_pb2.DocumentMetadata
    document_sha256: bytes
    stamped_sha256: bytes
    release_reason: _ledger_pb2.ReleaseReason
    created_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    def __init__(self, stamp_id: _Optional[str] = ..., account_id: _Optional[str] = ..., serial: _Optional[str] = ..., status: _Optional[_Union[StampStatus, str]] = ..., metadata: _Optional[_Union[_common_pb2.DocumentMetadata, _Mapping]] = ..., document_sha256: _Optional[bytes] = ..., stamped_sha256: _Optional[bytes] = ..., release_reason: _Optional[_Union[_ledger_pb2.ReleaseReason, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("client_id", "client_secret")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expires_in_seconds")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expires_in_seconds: int
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ...) -> None: ...

class DistributorServiceCreateOrderRequest(_message.Message):
    __slots__ = ("quantity", "idempotency_key")
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    quantity: int
    idempotency_key: str
    def __init__(self, quantity: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class DistributorServiceCreateOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _ledger_pb2.Order
    def __init__(self, order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ...) -> None: ...

class DistributorServiceGetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class DistributorServiceGetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _ledger_pb2.Order
    def __init__(self, order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ...) -> None: ...

class DistributorServiceListOrdersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DistributorServiceListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_ledger_pb2.Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[_ledger_pb2.Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DistributorServiceCancelOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class DistributorServiceCancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _ledger_pb2.Order
    def __init__(self, order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ...) -> None: ...

class DistributorServiceRefundOrderRequest(_message.Message):
    __slots__ = ("order_id", "quantity", "reason", "idempotency_key")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    quantity: int
    reason: str
    idempotency_key: str
    def __init__(self, order_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class DistributorServiceRefundOrderResponse(_message.Message):
    __slots__ = ("refund", "order")
    REFUND_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    refund: _ledger_pb2.Refund
    order: _ledger_pb2.Order
    def __init__(self, refund: _Optional[_Union[_ledger_pb2.Refund, _Mapping]] = ..., order: _Optional[_Union[_ledger_pb2.Order, _Mapping]] = ...) -> None: ...

class DistributorServiceGetBalanceRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class DistributorServiceGetBalanceResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: _ledger_pb2.Balance
    def __init__(self, balance: _Optional[_Union[_ledger_pb2.Balance, _Mapping]] = ...) -> None: ...

class CreateCustomerRequest(_message.Message):
    __slots__ = ("display_name", "external_ref")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REF_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    external_ref: str
    def __init__(self, display_name: _Optional[str] = ..., external_ref: _Optional[str] = ...) -> None: ...

class CreateCustomerResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _accounts_pb2.Account
    def __init__(self, account: _Optional[_Union[_accounts_pb2.Account, _Mapping]] = ...) -> None: ...

class ListCustomersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCustomersResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[_accounts_pb2.Account]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[_accounts_pb2.Account, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DistributorServiceTransferQuotaRequest(_message.Message):
    __slots__ = ("to_account_id", "quantity", "idempotency_key")
    TO_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    to_account_id: str
    quantity: int
    idempotency_key: str
    def __init__(self, to_account_id: _Optional[str] = ..., quantity: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class DistributorServiceTransferQuotaResponse(_message.Message):
    __slots__ = ("transfer",)
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    transfer: _ledger_pb2.Transfer
    def __init__(self, transfer: _Optional[_Union[_ledger_pb2.Transfer, _Mapping]] = ...) -> None: ...

class StampDocumentRequest(_message.Message):
    __slots__ = ("document", "placement", "metadata", "idempotency_key", "account_id", "document_password")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    placement: _common_pb2.StampPlacement
    metadata: _common_pb2.DocumentMetadata
    idempotency_key: str
    account_id: str
    document_password: str
    def __init__(self, document: _Optional[bytes] = ..., placement: _Optional[_Union[_common_pb2.StampPlacement, _Mapping]] = ..., metadata: _Optional[_Union[_common_pb2.DocumentMetadata, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., account_id: _Optional[str] = ..., document_password: _Optional[str] = ...) -> None: ...

class StampDocumentResponse(_message.Message):
    __slots__ = ("stamp", "stamped_document")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    STAMPED_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    stamp: StampRecord
    stamped_document: bytes
    def __init__(self, stamp: _Optional[_Union[StampRecord, _Mapping]] = ..., stamped_document: _Optional[bytes] = ...) -> None: ...

class BatchStampRequest(_message.Message):
    __slots__ = ("client_ref", "document")
    CLIENT_REF_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    client_ref: str
    document: StampDocumentRequest
    def __init__(self, client_ref: _Optional[str] = ..., document: _Optional[_Union[StampDocumentRequest, _Mapping]] = ...) -> None: ...

class BatchStampResponse(_message.Message):
    __slots__ = ("client_ref", "code", "message", "stamp", "stamped_document", "retry_after")
    CLIENT_REF_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STAMP_FIELD_NUMBER: _ClassVar[int]
    STAMPED_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    client_ref: str
    code: int
    message: str
    stamp: StampRecord
    stamped_document: bytes
    retry_after: _duration_pb2.Duration
    def __init__(self, client_ref: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., stamp: _Optional[_Union[StampRecord, _Mapping]] = ..., stamped_document: _Optional[bytes] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SubmitStampJobRequest(_message.Message):
    __slots__ = ("documents", "callback_url", "idempotency_key")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_URL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[BatchStampRequest]
    callback_url: str
    idempotency_key: str
    def __init__(self, documents: _Optional[_Iterable[_Union[BatchStampRequest, _Mapping]]] = ..., callback_url: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SubmitStampJobResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CallbackDelivery(_message.Message):
    __slots__ = ("state", "attempts", "last_http_status", "last_error", "delivered_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    state: CallbackState
    attempts: int
    last_http_status: int
    last_error: str
    delivered_at: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[CallbackState, str]] = ..., attempts: _Optional[int] = ..., last_http_status: _Optional[int] = ..., last_error: _Optional[str] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStampJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetStampJobResponse(_message.Message):
    __slots__ = ("job_id", "status", "results", "total_documents", "callback", "created_at", "finished_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    status: StampJobStatus
    results: _containers.RepeatedCompositeFieldContainer[BatchStampResponse]
    total_documents: int
    callback: CallbackDelivery
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., status: _Optional[_Union[StampJobStatus, str]] = ..., results: _Optional[_Iterable[_Union[BatchStampResponse, _Mapping]]] = ..., total_documents: _Optional[int] = ..., callback: _Optional[_Union[CallbackDelivery, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DistributorServiceRotateWebhookSecretRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DistributorServiceRotateWebhookSecretResponse(_message.Message):
    __slots__ = ("webhook_secret",)
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    webhook_secret: str
    def __init__(self, webhook_secret: _Optional[str] = ...) -> None: ...

class GetStampRequest(_message.Message):
    __slots__ = ("stamp_id",)
    STAMP_ID_FIELD_NUMBER: _ClassVar[int]
    stamp_id: str
    def __init__(self, stamp_id: _Optional[str] = ...) -> None: ...

class GetStampResponse(_message.Message):
    __slots__ = ("stamp",)
    STAMP_FIELD_NUMBER: _ClassVar[int]
    stamp: StampRecord
    def __init__(self, stamp: _Optional[_Union[StampRecord, _Mapping]] = ...) -> None: ...

class ListStampsRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStampsResponse(_message.Message):
    __slots__ = ("stamps", "next_page_token")
    STAMPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stamps: _containers.RepeatedCompositeFieldContainer[StampRecord]
    next_page_token: str
    def __init__(self, stamps: _Optional[_Iterable[_Union[StampRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DownloadStampedDocumentRequest(_message.Message):
    __slots__ = ("stamp_id",)
    STAMP_ID_FIELD_NUMBER: _ClassVar[int]
    stamp_id: str
    def __init__(self, stamp_id: _Optional[str] = ...) -> None: ...

class DownloadStampedDocumentResponse(_message.Message):
    __slots__ = ("stamped_document", "stamp")
    STAMPED_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    STAMP_FIELD_NUMBER: _ClassVar[int]
    stamped_document: bytes
    stamp: StampRecord
    def __init__(self, stamped_document: _Optional[bytes] = ..., stamp: _Optional[_Union[StampRecord, _Mapping]] = ...) -> None: ...

class DistributorServiceLookupSerialRequest(_message.Message):
    __slots__ = ("serial",)
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    serial: str
    def __init__(self, serial: _Optional[str] = ...) -> None: ...

class DistributorServiceLookupSerialResponse(_message.Message):
    __slots__ = ("serial",)
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    serial: _ledger_pb2.SerialRecord
    def __init__(self, serial: _Optional[_Union[_ledger_pb2.SerialRecord, _Mapping]] = ...) -> None: ...

class VerifyDocumentRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    def __init__(self, document: _Optional[bytes] = ...) -> None: ...

class VerifyDocumentResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _verification_pb2.VerificationReport
    def __init__(self, report: _Optional[_Union[_verification_pb2.VerificationReport, _Mapping]] = ...) -> None: ...

class DistributorServiceGetNoticeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DistributorServiceGetNoticeResponse(_message.Message):
    __slots__ = ("notice",)
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    notice: OperatorNotice
    def __init__(self, notice: _Optional[_Union[OperatorNotice, _Mapping]] = ...) -> None: ...

class OperatorNotice(_message.Message):
    __slots__ = ("text_id", "text_en", "published_at")
    TEXT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_EN_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    text_id: str
    text_en: str
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, text_id: _Optional[str] = ..., text_en: _Optional[str] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
