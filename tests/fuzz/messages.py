"""Hypothesis strategies for any protobuf message, built from its descriptor: empty and huge
strings, unicode junk and path-like ids, negative and extreme integers, enum values the contract
does not have, real and broken and oversized documents, nested messages a few levels deep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

JUNK_TEXT = [
    "",
    " ",
    "../../../etc/passwd",
    "%2e%2e%2f",
    "\x00",
    "a\x00b",
    "\u202e\u200b\ufeff",
    "😀" * 300,
    "' OR '1'='1",
    "${jndi:ldap://x}",
    "x" * 100_000,
    "https://169.254.169.254/latest",
    "http://127.0.0.1:1/",
]


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([low, high, 0, -1, 1, low + 1, high - 1]), st.integers(low, high)
    ).filter(lambda n: low <= n <= high)


def text_values(known: Sequence[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40), st.sampled_from(JUNK_TEXT), *([st.sampled_from(known)] if known else [])
    )


def field_values(
    field: FieldDescriptor, depth: int, documents: Sequence[bytes], known: Sequence[str]
) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return integers(low, high)
    if kind == FieldDescriptor.TYPE_ENUM:
        defined = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(defined), integers(-(2**31), 2**31 - 1))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        width = 64 if kind == FieldDescriptor.TYPE_DOUBLE else 32
        return st.floats(width=width)
    if kind == FieldDescriptor.TYPE_STRING:
        return text_values(known)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from(list(documents)))
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if depth >= 3:
            return st.none()
        return messages(field.message_type, depth + 1, documents, known)
    raise AssertionError(f"no strategy for field type {kind} of {field.full_name}")


def messages(
    descriptor: Descriptor, depth: int = 0, documents: Sequence[bytes] = (b"",), known: Sequence[str] = ()
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type, any field set or not. `documents` are candidate values for
    bytes fields; `known` are strings worth trying for ids (other accounts' real ones, say)."""
    cls = message_factory.GetMessageClass(descriptor)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        values = field_values(field, depth, documents, known)
        if field.is_repeated:
            values = st.lists(values, max_size=3)
        optional[field.name] = values
    return st.fixed_dictionaries({}, optional=optional).map(lambda fields: _build(cls, fields))


def _build(cls: type[Message], fields: dict[str, Any]) -> Message:
    message = cls()
    for name, value in fields.items():
        if value is None:
            continue
        target = getattr(message, name)
        if isinstance(value, list):
            if value and isinstance(value[0], Message):
                target.extend(v for v in value if v is not None)
            elif value:
                target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message
