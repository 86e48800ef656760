"""A fast parser for the plain PDF objects a stamp reads: dictionaries, arrays, numbers, names,
references, simple strings, and streams with a direct or indirect /Length.

pypdf's object parser reads a byte at a time through a file object; a page dictionary with its
resources costs it a few hundred microseconds. This one matches whole tokens with one regular
expression over the document's bytes and builds the same pypdf objects, so the code that uses
them does not change. It handles the common spelling only: a name with a #-escape, a string
with a backslash or nested parentheses, or anything else unusual raises `Unusual`, and the
caller hands that object to pypdf's parser instead. Nesting deeper than any real document
needs is refused outright: handing it to pypdf would only make a slower parser recurse.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pypdf.generic import (
    ArrayObject,
    BooleanObject,
    DictionaryObject,
    FloatObject,
    IndirectObject,
    NameObject,
    NullObject,
    NumberObject,
    PdfObject,
    StreamObject,
    create_string_object,
)

from services.signer.errors import UnsupportedPdf

NESTED_TOO_DEEP = (
    "The PDF nests its data deeper than real documents do, so it cannot be read safely. Save or "
    "print it as a new PDF and try again."
)


class Unusual(Exception):
    """Syntax this parser leaves to pypdf's."""


_WS = rb"[\x00\t\n\x0c\r ]"
# A token that is not a delimiter itself must end at whitespace, a delimiter or the end.
_ENDS = rb"(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])"
_TOKEN = re.compile(
    rb"(?:" + _WS + rb"|%[^\r\n]*)*"
    rb"(?:"
    rb"(?P<ref>\d+)" + _WS + rb"+(?P<gen>\d+)" + _WS + rb"+R" + _ENDS
    + rb"|(?P<real>[+-]?(?:\d+\.\d*|\.\d+))" + _ENDS
    + rb"|(?P<int>[+-]?\d+)" + _ENDS
    # A name with a #-escape does not match, and goes to pypdf.
    + rb"|(?P<name>/[^\x00\t\n\x0c\r ()<>\[\]{}/%#]*)" + _ENDS
    + rb"|(?P<open_dict><<)"
    rb"|(?P<close_dict>>>)"
    rb"|(?P<open_array>\[)"
    rb"|(?P<close_array>\])"
    rb"|<(?P<hex>[0-9A-Fa-f\x00\t\n\x0c\r ]*)>"
    rb"|\((?P<string>[^()\\]*)\)"
    rb"|(?P<open_string>\()"
    rb"|(?P<keyword>true|false|null|stream|endobj)" + _ENDS
    + rb")"
)
_STREAM_START = re.compile(rb"stream(?:\r\n|\n)")
_END_STREAM = re.compile(_WS + rb"*endstream")
# pdfium refuses objects nested deeper than 64; real files stay far below either.
_MAX_DEPTH = 100


def parse_object(
    data: bytes, position: int, resolve: Callable[[IndirectObject], PdfObject], owner: object
) -> PdfObject:
    """The object at `position` in `data`; references are made with `owner` as their document.

    `resolve` is used only for a stream's indirect /Length.
    """
    stack: list[tuple[list[PdfObject], bool]] = []
    while True:
        token = _TOKEN.match(data, position)
        if token is None:
            raise Unusual(f"unexpected syntax at {position}")
        position = token.end()
        kind = token.lastgroup
        value: PdfObject
        if kind == "gen":  # a reference: its last group is the generation
            value = IndirectObject(int(token.group("ref")), int(token.group("gen")), owner)
        elif kind == "int":
            value = NumberObject(int(token.group("int")))
        elif kind == "real":
            value = FloatObject(token.group("real").decode("ascii"))
        elif kind == "name":
            raw = token.group("name")
            try:
                value = NameObject(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise Unusual("a name that is not UTF-8") from exc
        elif kind in ("open_dict", "open_array"):
            if len(stack) >= _MAX_DEPTH:
                raise UnsupportedPdf(NESTED_TOO_DEEP)
            stack.append(([], kind == "open_dict"))
            continue
        elif kind in ("close_dict", "close_array"):
            if not stack or stack[-1][1] != (kind == "close_dict"):
                raise Unusual("unbalanced brackets")
            items, is_dict = stack.pop()
            if is_dict:
                value, position = _dictionary(items, data, position, resolve)
            else:
                value = ArrayObject(items)
        elif kind == "hex":
            digits = re.sub(rb"[\x00\t\n\x0c\r ]", b"", token.group("hex"))
            if len(digits) % 2:
                digits += b"0"
            value = create_string_object(bytes.fromhex(digits.decode("ascii")))
        elif kind == "string":
            value = create_string_object(token.group("string"))
        elif kind == "open_string":
            raw, position = _literal_string(data, position)
            value = create_string_object(raw)
        else:
            keyword = token.group("keyword")
            if keyword == b"true":
                value = BooleanObject(True)
            elif keyword == b"false":
                value = BooleanObject(False)
            elif keyword == b"null":
                value = NullObject()
            else:
                raise Unusual(f"{keyword.decode()} where an object was expected")
        if not stack:
            return value
        stack[-1][0].append(value)


_ESCAPES = {
    ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f",
    ord("("): b"(", ord(")"): b")", ord("\\"): b"\\",
}  # fmt: skip
_OCTAL = re.compile(rb"[0-7]{1,3}")
_STRING_RUN = re.compile(rb"[^()\\\r]*")


def _literal_string(data: bytes, position: int) -> tuple[bytes, int]:
    """A (string) with escapes or balanced parentheses, from just after its opening parenthesis."""
    out = bytearray()
    depth = 1
    while True:
        run = _STRING_RUN.match(data, position)
        assert run is not None  # the pattern matches the empty string
        out += run.group()
        position = run.end()
        if position >= len(data):
            raise Unusual("a string that does not end")
        char = data[position]
        position += 1
        if char == ord("("):
            depth += 1
            out.append(char)
        elif char == ord(")"):
            depth -= 1
            if depth == 0:
                return bytes(out), position
            out.append(char)
        elif char == ord("\\"):
            if position >= len(data):
                raise Unusual("a string that does not end")
            escaped = data[position]
            if escaped in _ESCAPES:
                out += _ESCAPES[escaped]
                position += 1
            elif octal := _OCTAL.match(data, position):
                out.append(int(octal.group(), 8) & 0xFF)
                position = octal.end()
            else:
                # Line continuations and unknown escapes: pypdf's rules decide.
                raise Unusual("an unusual escape in a string")
        else:
            raise Unusual("a carriage return inside a string")


def _dictionary(
    items: list[PdfObject], data: bytes, position: int, resolve: Callable[[IndirectObject], PdfObject]
) -> tuple[PdfObject, int]:
    if len(items) % 2:
        raise Unusual("a dictionary with a key and no value")
    dictionary = DictionaryObject()
    for key, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(key, NameObject):
            raise Unusual("a dictionary key that is not a name")
        if key in dictionary:
            raise Unusual("a key defined twice in one dictionary")
        dictionary[key] = value
    start = position
    while start < len(data) and data[start] in b"\x00\t\n\x0c\r ":
        start += 1
    stream = _STREAM_START.match(data, start)
    if stream is None:
        return dictionary, position
    length = dictionary.get("/Length")
    if isinstance(length, IndirectObject):
        length = resolve(length)
    if not isinstance(length, int) or length < 0:
        raise Unusual("a stream without a usable /Length")
    body_start = stream.end()
    body_end = body_start + int(length)
    end = _END_STREAM.match(data, body_end)
    if end is None:
        raise Unusual("a stream whose /Length does not reach endstream")
    fields = dict(dictionary)
    fields["__streamdata__"] = data[body_start:body_end]
    return StreamObject.initialize_from_dictionary(fields), end.end()
