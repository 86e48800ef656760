import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_KIND_UNSPECIFIED: _ClassVar[AccountKind]
    ACCOUNT_KIND_RETAIL: _ClassVar[AccountKind]
    ACCOUNT_KIND_DISTRIBUTOR: _ClassVar[AccountKind]
    ACCOUNT_KIND_DISTRIBUTOR_CUSTOMER: _ClassVar[AccountKind]
    ACCOUNT_KIND_ENTERPRISE: _ClassVar[AccountKind]
    ACCOUNT_KIND_ENTERPRISE_CHILD: _ClassVar[AccountKind]
    ACCOUNT_KIND_COLLECTOR: _ClassVar[AccountKind]
    ACCOUNT_KIND_OPERATOR: _ClassVar[AccountKind]
ACCOUNT_KIND_UNSPECIFIED: AccountKind
ACCOUNT_KIND_RETAIL: AccountKind
ACCOUNT_KIND_DISTRIBUTOR: AccountKind
ACCOUNT_KIND_DISTRIBUTOR_CUSTOMER: AccountKind
ACCOUNT_KIND_ENTERPRISE: AccountKind
ACCOUNT_KIND_ENTERPRISE_CHILD: AccountKind
ACCOUNT_KIND_COLLECTOR: AccountKind
ACCOUNT_KIND_OPERATOR: AccountKind

class Account(_message.Message):
    __slots__ = ("account_id", "kind", "phone", "display_name", "parent_account_id", "created_at", "stamping_pin_set")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STAMPING_PIN_SET_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    kind: AccountKind
    phone: str
    display_name: str
    parent_account_id: str
    created_at: _timestamp_pb2.Timestamp
    stamping_pin_set: bool
    def __init__(self, account_id: _Optional[str] = ..., kind: _Optional[_Union[AccountKind, str]] = ..., phone: _Optional[str] = ..., display_name: _Optional[str] = ..., parent_account_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stamping_pin_set: _Optional[bool] = ...) -> None: ...

class TokenPair(_message.Message):
    __slots__ = ("access_token", "refresh_token", "token_type", "expires_in_seconds")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    token_type: str
    expires_in_seconds: int
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ...) -> None: ...

class DistributorCredential(_message.Message):
    __slots__ = ("client_id", "account_id", "display_name", "scopes", "created_at", "revoked_at")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    account_id: str
    display_name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, client_id: _Optional[str] = ..., account_id: _Optional[str] = ..., display_name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JsonWebKey(_message.Message):
    __slots__ = ("kid", "kty", "crv", "alg", "use", "x")
    KID_FIELD_NUMBER: _ClassVar[int]
    KTY_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    kid: str
    kty: str
    crv: str
    alg: str
    use: str
    x: str
    def __init__(self, kid: _Optional[str] = ..., kty: _Optional[str] = ..., crv: _Optional[str] = ..., alg: _Optional[str] = ..., use: _Optional[str] = ..., x: _Optional[str] = ...) -> None: ...
