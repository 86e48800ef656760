from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_RETAIL: _ClassVar[Channel]
    CHANNEL_DISTRIBUTOR: _ClassVar[Channel]
    CHANNEL_ENTERPRISE: _ClassVar[Channel]
    CHANNEL_COLLECTOR: _ClassVar[Channel]

class DocumentType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_TYPE_UNSPECIFIED: _ClassVar[DocumentType]
    DOCUMENT_TYPE_AGREEMENT: _ClassVar[DocumentType]
    DOCUMENT_TYPE_STATEMENT: _ClassVar[DocumentType]
    DOCUMENT_TYPE_NOTARIAL_DEED: _ClassVar[DocumentType]
    DOCUMENT_TYPE_LAND_DEED: _ClassVar[DocumentType]
    DOCUMENT_TYPE_SECURITIES: _ClassVar[DocumentType]
    DOCUMENT_TYPE_TRANSACTION: _ClassVar[DocumentType]
    DOCUMENT_TYPE_MONEY_RECEIPT: _ClassVar[DocumentType]
    DOCUMENT_TYPE_DEBT_SETTLEMENT: _ClassVar[DocumentType]
    DOCUMENT_TYPE_COURT_EVIDENCE: _ClassVar[DocumentType]
    DOCUMENT_TYPE_OTHER: _ClassVar[DocumentType]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_RETAIL: Channel
CHANNEL_DISTRIBUTOR: Channel
CHANNEL_ENTERPRISE: Channel
CHANNEL_COLLECTOR: Channel
DOCUMENT_TYPE_UNSPECIFIED: DocumentType
DOCUMENT_TYPE_AGREEMENT: DocumentType
DOCUMENT_TYPE_STATEMENT: DocumentType
DOCUMENT_TYPE_NOTARIAL_DEED: DocumentType
DOCUMENT_TYPE_LAND_DEED: DocumentType
DOCUMENT_TYPE_SECURITIES: DocumentType
DOCUMENT_TYPE_TRANSACTION: DocumentType
DOCUMENT_TYPE_MONEY_RECEIPT: DocumentType
DOCUMENT_TYPE_DEBT_SETTLEMENT: DocumentType
DOCUMENT_TYPE_COURT_EVIDENCE: DocumentType
DOCUMENT_TYPE_OTHER: DocumentType

class DocumentMetadata(_message.Message):
    __slots__ = ("type", "name", "number", "date", "value_idr")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    VALUE_IDR_FIELD_NUMBER: _ClassVar[int]
    type: DocumentType
    name: str
    number: str
    date: str
    value_idr: int
    def __init__(self, type: _Optional[_Union[DocumentType, str]] = ..., name: _Optional[str] = ..., number: _Optional[str] = ..., date: _Optional[str] = ..., value_idr: _Optional[int] = ...) -> None: ...

class Rect(_message.Message):
    __slots__ = ("llx", "lly", "urx", "ury")
    LLX_FIELD_NUMBER: _ClassVar[int]
    LLY_FIELD_NUMBER: _ClassVar[int]
    URX_FIELD_NUMBER: _ClassVar[int]
    URY_FIELD_NUMBER: _ClassVar[int]
    llx: float
    lly: float
    urx: float
    ury: float
    def __init__(self, llx: _Optional[float] = ..., lly: _Optional[float] = ..., urx: _Optional[float] = ..., ury: _Optional[float] = ...) -> None: ...

class StampPlacement(_message.Message):
    __slots__ = ("page", "rect")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    RECT_FIELD_NUMBER: _ClassVar[int]
    page: int
    rect: Rect
    def __init__(self, page: _Optional[int] = ..., rect: _Optional[_Union[Rect, _Mapping]] = ...) -> None: ...

class BatchError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
