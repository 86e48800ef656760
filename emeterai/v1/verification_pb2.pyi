import datetime

from emeterai.v1 import ledger_pb2 as _ledger_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LaterChanges(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATER_CHANGES_UNSPECIFIED: _ClassVar[LaterChanges]
    LATER_CHANGES_NONE: _ClassVar[LaterChanges]
    LATER_CHANGES_ALLOWED: _ClassVar[LaterChanges]
    LATER_CHANGES_MODIFIED: _ClassVar[LaterChanges]

class SignatureKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNATURE_KIND_UNSPECIFIED: _ClassVar[SignatureKind]
    SIGNATURE_KIND_APPROVAL: _ClassVar[SignatureKind]
    SIGNATURE_KIND_CERTIFICATION: _ClassVar[SignatureKind]
    SIGNATURE_KIND_DOCUMENT_TIMESTAMP: _ClassVar[SignatureKind]
LATER_CHANGES_UNSPECIFIED: LaterChanges
LATER_CHANGES_NONE: LaterChanges
LATER_CHANGES_ALLOWED: LaterChanges
LATER_CHANGES_MODIFIED: LaterChanges
SIGNATURE_KIND_UNSPECIFIED: SignatureKind
SIGNATURE_KIND_APPROVAL: SignatureKind
SIGNATURE_KIND_CERTIFICATION: SignatureKind
SIGNATURE_KIND_DOCUMENT_TIMESTAMP: SignatureKind

class SignatureReport(_message.Message):
    __slots__ = ("field_name", "serial", "signature_valid", "document_intact", "covers_whole_document", "revision", "chain_trusted", "signer_subject", "sub_filter", "signed_at", "has_timestamp", "serial_status", "problems", "later_changes", "later_revisions", "kind", "timestamp_valid", "timestamp_time", "timestamp_authority")
    FIELD_NAME_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VALID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_INTACT_FIELD_NUMBER: _ClassVar[int]
    COVERS_WHOLE_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TRUSTED_FIELD_NUMBER: _ClassVar[int]
    SIGNER_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUB_FILTER_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    HAS_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SERIAL_STATUS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    LATER_CHANGES_FIELD_NUMBER: _ClassVar[int]
    LATER_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_TIME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    field_name: str
    serial: str
    signature_valid: bool
    document_intact: bool
    covers_whole_document: bool
    revision: int
    chain_trusted: bool
    signer_subject: str
    sub_filter: str
    signed_at: _timestamp_pb2.Timestamp
    has_timestamp: bool
    serial_status: _ledger_pb2.SerialStatus
    problems: _containers.RepeatedScalarFieldContainer[str]
    later_changes: LaterChanges
    later_revisions: int
    kind: SignatureKind
    timestamp_valid: bool
    timestamp_time: _timestamp_pb2.Timestamp
    timestamp_authority: str
    def __init__(self, field_name: _Optional[str] = ..., serial: _Optional[str] = ..., signature_valid: _Optional[bool] = ..., document_intact: _Optional[bool] = ..., covers_whole_document: _Optional[bool] = ..., revision: _Optional[int] = ..., chain_trusted: _Optional[bool] = ..., signer_subject: _Optional[str] = ..., sub_filter: _Optional[str] = ..., signed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., has_timestamp: _Optional[bool] = ..., serial_status: _Optional[_Union[_ledger_pb2.SerialStatus, str]] = ..., problems: _Optional[_Iterable[str]] = ..., later_changes: _Optional[_Union[LaterChanges, str]] = ..., later_revisions: _Optional[int] = ..., kind: _Optional[_Union[SignatureKind, str]] = ..., timestamp_valid: _Optional[bool] = ..., timestamp_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timestamp_authority: _Optional[str] = ...) -> None: ...

class VerificationReport(_message.Message):
    __slots__ = ("signatures", "document_sha256")
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    signatures: _containers.RepeatedCompositeFieldContainer[SignatureReport]
    document_sha256: bytes
    def __init__(self, signatures: _Optional[_Iterable[_Union[SignatureReport, _Mapping]]] = ..., document_sha256: _Optional[bytes] = ...) -> None: ...
