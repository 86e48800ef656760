from emeterai.v1 import common_pb2 as _common_pb2
from emeterai.v1 import verification_pb2 as _verification_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StampRequest(_message.Message):
    __slots__ = ("document", "placement", "serial", "metadata", "document_password")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    placement: _common_pb2.StampPlacement
    serial: str
    metadata: _common_pb2.DocumentMetadata
    document_password: str
    def __init__(self, document: _Optional[bytes] = ..., placement: _Optional[_Union[_common_pb2.StampPlacement, _Mapping]] = ..., serial: _Optional[str] = ..., metadata: _Optional[_Union[_common_pb2.DocumentMetadata, _Mapping]] = ..., document_password: _Optional[str] = ...) -> None: ...

class StampResponse(_message.Message):
    __slots__ = ("stamped_document", "stamped_sha256", "placement")
    STAMPED_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    STAMPED_SHA256_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    stamped_document: bytes
    stamped_sha256: bytes
    placement: _common_pb2.StampPlacement
    def __init__(self, stamped_document: _Optional[bytes] = ..., stamped_sha256: _Optional[bytes] = ..., placement: _Optional[_Union[_common_pb2.StampPlacement, _Mapping]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    def __init__(self, document: _Optional[bytes] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _verification_pb2.VerificationReport
    def __init__(self, report: _Optional[_Union[_verification_pb2.VerificationReport, _Mapping]] = ...) -> None: ...

class GetSignerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSignerInfoResponse(_message.Message):
    __slots__ = ("certificate_chain", "key_algorithm")
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    KEY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    certificate_chain: _containers.RepeatedScalarFieldContainer[bytes]
    key_algorithm: str
    def __init__(self, certificate_chain: _Optional[_Iterable[bytes]] = ..., key_algorithm: _Optional[str] = ...) -> None: ...
