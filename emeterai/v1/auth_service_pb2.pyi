import datetime

from emeterai.v1 import accounts_pb2 as _accounts_pb2
from emeterai.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestOtpRequest(_message.Message):
    __slots__ = ("phone", "client_address")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    phone: str
    client_address: str
    def __init__(self, phone: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class RequestOtpResponse(_message.Message):
    __slots__ = ("phone", "expires_in_seconds", "resend_after_seconds")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESEND_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    phone: str
    expires_in_seconds: int
    resend_after_seconds: int
    def __init__(self, phone: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ..., resend_after_seconds: _Optional[int] = ...) -> None: ...

class VerifyOtpRequest(_message.Message):
    __slots__ = ("phone", "code", "client_address")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    phone: str
    code: str
    client_address: str
    def __init__(self, phone: _Optional[str] = ..., code: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class VerifyOtpResponse(_message.Message):
    __slots__ = ("tokens", "account", "created")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    tokens: _accounts_pb2.TokenPair
    account: _accounts_pb2.Account
    created: bool
    def __init__(self, tokens: _Optional[_Union[_accounts_pb2.TokenPair, _Mapping]] = ..., account: _Optional[_Union[_accounts_pb2.Account, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class RefreshTokenRequest(_message.Message):
    __slots__ = ("refresh_token",)
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    def __init__(self, refresh_token: _Optional[str] = ...) -> None: ...

class RefreshTokenResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _accounts_pb2.TokenPair
    def __init__(self, tokens: _Optional[_Union[_accounts_pb2.TokenPair, _Mapping]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("refresh_token", "access_token")
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    access_token: str
    def __init__(self, refresh_token: _Optional[str] = ..., access_token: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IssueClientTokenRequest(_message.Message):
    __slots__ = ("client_id", "client_secret")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ...) -> None: ...

class IssueClientTokenResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expires_in_seconds")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expires_in_seconds: int
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ...) -> None: ...

class IssueServiceTokenRequest(_message.Message):
    __slots__ = ("service_name", "service_secret")
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SECRET_FIELD_NUMBER: _ClassVar[int]
    service_name: str
    service_secret: str
    def __init__(self, service_name: _Optional[str] = ..., service_secret: _Optional[str] = ...) -> None: ...

class IssueServiceTokenResponse(_message.Message):
    __slots__ = ("access_token", "expires_in_seconds")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    expires_in_seconds: int
    def __init__(self, access_token: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[_accounts_pb2.JsonWebKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[_accounts_pb2.JsonWebKey, _Mapping]]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _accounts_pb2.Account
    def __init__(self, account: _Optional[_Union[_accounts_pb2.Account, _Mapping]] = ...) -> None: ...

class SetStampingPinRequest(_message.Message):
    __slots__ = ("account_id", "pin", "current_pin")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PIN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    pin: str
    current_pin: str
    def __init__(self, account_id: _Optional[str] = ..., pin: _Optional[str] = ..., current_pin: _Optional[str] = ...) -> None: ...

class SetStampingPinResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyStampingPinRequest(_message.Message):
    __slots__ = ("account_id", "pin")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    pin: str
    def __init__(self, account_id: _Optional[str] = ..., pin: _Optional[str] = ...) -> None: ...

class ResetStampingPinRequest(_message.Message):
    __slots__ = ("account_id", "code", "pin", "client_address")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    code: str
    pin: str
    client_address: str
    def __init__(self, account_id: _Optional[str] = ..., code: _Optional[str] = ..., pin: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class ResetStampingPinResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyStampingPinResponse(_message.Message):
    __slots__ = ("valid", "attempts_left")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_LEFT_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    attempts_left: int
    def __init__(self, valid: _Optional[bool] = ..., attempts_left: _Optional[int] = ...) -> None: ...

class VerifyStampingPinsRequest(_message.Message):
    __slots__ = ("checks",)
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    checks: _containers.RepeatedCompositeFieldContainer[VerifyStampingPinRequest]
    def __init__(self, checks: _Optional[_Iterable[_Union[VerifyStampingPinRequest, _Mapping]]] = ...) -> None: ...

class VerifyStampingPinsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VerifyStampingPinResult]
    def __init__(self, results: _Optional[_Iterable[_Union[VerifyStampingPinResult, _Mapping]]] = ...) -> None: ...

class VerifyStampingPinResult(_message.Message):
    __slots__ = ("check", "error")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    check: VerifyStampingPinResponse
    error: _common_pb2.BatchError
    def __init__(self, check: _Optional[_Union[VerifyStampingPinResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.BatchError, _Mapping]] = ...) -> None: ...

class CreateSubAccountRequest(_message.Message):
    __slots__ = ("parent_account_id", "display_name", "external_ref")
    PARENT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REF_FIELD_NUMBER: _ClassVar[int]
    parent_account_id: str
    display_name: str
    external_ref: str
    def __init__(self, parent_account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., external_ref: _Optional[str] = ...) -> None: ...

class CreateSubAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _accounts_pb2.Account
    def __init__(self, account: _Optional[_Union[_accounts_pb2.Account, _Mapping]] = ...) -> None: ...

class ListSubAccountsRequest(_message.Message):
    __slots__ = ("parent_account_id", "page_size", "page_token")
    PARENT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent_account_id: str
    page_size: int
    page_token: str
    def __init__(self, parent_account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSubAccountsResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[_accounts_pb2.Account]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[_accounts_pb2.Account, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateDistributorRequest(_message.Message):
    __slots__ = ("display_name", "scopes")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, display_name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateDistributorResponse(_message.Message):
    __slots__ = ("credential", "client_secret", "webhook_secret")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    credential: _accounts_pb2.DistributorCredential
    client_secret: str
    webhook_secret: str
    def __init__(self, credential: _Optional[_Union[_accounts_pb2.DistributorCredential, _Mapping]] = ..., client_secret: _Optional[str] = ..., webhook_secret: _Optional[str] = ...) -> None: ...

class RotateDistributorSecretRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class RotateDistributorSecretResponse(_message.Message):
    __slots__ = ("credential", "client_secret")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    credential: _accounts_pb2.DistributorCredential
    client_secret: str
    def __init__(self, credential: _Optional[_Union[_accounts_pb2.DistributorCredential, _Mapping]] = ..., client_secret: _Optional[str] = ...) -> None: ...

class RevokeDistributorRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class RevokeDistributorResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: _accounts_pb2.DistributorCredential
    def __init__(self, credential: _Optional[_Union[_accounts_pb2.DistributorCredential, _Mapping]] = ...) -> None: ...

class ListDistributorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDistributorsResponse(_message.Message):
    __slots__ = ("credentials",)
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[_accounts_pb2.DistributorCredential]
    def __init__(self, credentials: _Optional[_Iterable[_Union[_accounts_pb2.DistributorCredential, _Mapping]]] = ...) -> None: ...

class GetWebhookSecretRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetWebhookSecretResponse(_message.Message):
    __slots__ = ("webhook_secret",)
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    webhook_secret: str
    def __init__(self, webhook_secret: _Optional[str] = ...) -> None: ...

class RotateWebhookSecretRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class RotateWebhookSecretResponse(_message.Message):
    __slots__ = ("webhook_secret",)
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    webhook_secret: str
    def __init__(self, webhook_secret: _Optional[str] = ...) -> None: ...

class SetOperatorRequest(_message.Message):
    __slots__ = ("phone", "operator")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    phone: str
    operator: bool
    def __init__(self, phone: _Optional[str] = ..., operator: _Optional[bool] = ...) -> None: ...

class SetOperatorResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: _accounts_pb2.Account
    def __init__(self, account: _Optional[_Union[_accounts_pb2.Account, _Mapping]] = ...) -> None: ...

class ListOperatorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListOperatorsResponse(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[_accounts_pb2.Account]
    def __init__(self, accounts: _Optional[_Iterable[_Union[_accounts_pb2.Account, _Mapping]]] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("text_id", "text_en", "published_at")
    TEXT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_EN_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    text_id: str
    text_en: str
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, text_id: _Optional[str] = ..., text_en: _Optional[str] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishNoticeRequest(_message.Message):
    __slots__ = ("text_id", "text_en", "published_by")
    TEXT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_EN_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_BY_FIELD_NUMBER: _ClassVar[int]
    text_id: str
    text_en: str
    published_by: str
    def __init__(self, text_id: _Optional[str] = ..., text_en: _Optional[str] = ..., published_by: _Optional[str] = ...) -> None: ...

class PublishNoticeResponse(_message.Message):
    __slots__ = ("notice",)
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    notice: Notice
    def __init__(self, notice: _Optional[_Union[Notice, _Mapping]] = ...) -> None: ...

class ClearNoticeRequest(_message.Message):
    __slots__ = ("cleared_by",)
    CLEARED_BY_FIELD_NUMBER: _ClassVar[int]
    cleared_by: str
    def __init__(self, cleared_by: _Optional[str] = ...) -> None: ...

class ClearNoticeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNoticeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNoticeResponse(_message.Message):
    __slots__ = ("notice",)
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    notice: Notice
    def __init__(self, notice: _Optional[_Union[Notice, _Mapping]] = ...) -> None: ...

class ListDevOutboxRequest(_message.Message):
    __slots__ = ("phone",)
    PHONE_FIELD_NUMBER: _ClassVar[int]
    phone: str
    def __init__(self, phone: _Optional[str] = ...) -> None: ...

class ListDevOutboxResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[OutboxMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[OutboxMessage, _Mapping]]] = ...) -> None: ...

class OutboxMessage(_message.Message):
    __slots__ = ("phone", "body", "channel", "sent_at")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    phone: str
    body: str
    channel: str
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, phone: _Optional[str] = ..., body: _Optional[str] = ..., channel: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
