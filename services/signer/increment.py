"""Writing an incremental update: new and changed objects, a cross-reference section and a trailer,
appended after the untouched original bytes.

We write the update ourselves instead of letting a PDF library re-serialise the document: that is
the only way to be sure every earlier byte (and so every earlier signature) survives, that only the
objects we mean to change are written, and that we know where the signature placeholders land.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NumberObject,
    PdfObject,
    StreamObject,
)

if TYPE_CHECKING:  # documents imports this module, through encryption
    from services.signer.documents import XrefTail


def pdf_number(value: float) -> bytes:
    """A real number as PDF writes it: no exponent, at most three decimals, no trailing zeros."""
    if not math.isfinite(value):
        raise ValueError("PDF numbers must be finite")
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return b"0" if text in ("", "-0") else text.encode("ascii")


def pdf_text(value: str) -> bytes:
    """A text string: literal when plain ASCII, otherwise UTF-16BE with a byte-order mark."""
    if all(32 <= ord(char) < 127 for char in value):
        escaped = value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("ascii") + b")"
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def pdf_reference(number: int, generation: int = 0) -> bytes:
    return f"{number} {generation} R".encode("ascii")


def serialise(obj: PdfObject) -> bytes:
    """An object read by pypdf, written back; references stay references."""
    parts: list[bytes] = []
    _serialise_into(obj, parts)
    return b"".join(parts)


# Names made only of these characters are written as they are; others need #-escapes.
_PLAIN_NAME = re.compile(r"/[A-Za-z0-9_.+:*'\-]*")


def _serialise_into(obj: PdfObject, parts: list[bytes]) -> None:
    # Dictionaries, arrays, names, integers and references make up what we rewrite (pages,
    # catalogs, forms); they are written here, everything else by pypdf.
    if isinstance(obj, DictionaryObject) and not isinstance(obj, StreamObject):
        parts.append(b"<<")
        for key, value in obj.items():
            parts.append(b" ")
            _serialise_into(NameObject(key), parts)
            parts.append(b" ")
            _serialise_into(value, parts)
        parts.append(b" >>")
    elif isinstance(obj, ArrayObject):
        parts.append(b"[")
        for index, item in enumerate(obj):
            if index:
                parts.append(b" ")
            _serialise_into(item, parts)
        parts.append(b"]")
    elif isinstance(obj, IndirectObject):
        parts.append(b"%d %d R" % (obj.idnum, obj.generation))
    elif isinstance(obj, NameObject) and _PLAIN_NAME.fullmatch(obj):
        parts.append(obj.encode("ascii"))
    elif isinstance(obj, NumberObject):
        parts.append(b"%d" % obj)
    else:
        buffer = io.BytesIO()
        obj.write_to_stream(buffer)
        parts.append(buffer.getvalue())


@dataclass
class IncrementalUpdate:
    """Objects to append to `original`, written with a cross-reference section chained to it."""

    original: bytes
    xref: XrefTail
    # Trailer entries carried over, already serialised (/Root must be there).
    root: bytes
    info: bytes | None
    # None only for an encrypted file without one: its key was derived without an /ID.
    document_id: tuple[bytes, bytes] | None
    next_number: int
    # An encrypted file's /Encrypt, which every later trailer must repeat.
    encrypt: bytes | None = None
    _objects: dict[int, tuple[int, bytes]] = field(default_factory=dict)

    def allocate(self) -> int:
        number = self.next_number
        self.next_number += 1
        return number

    def put(self, number: int, body: bytes, generation: int = 0) -> None:
        """Add a new object or replace an existing one; `body` is the object without obj/endobj."""
        self._objects[number] = (generation, body)

    def write(self) -> tuple[bytearray, dict[int, int]]:
        """What to append to the original, and where each written object's body starts in the
        whole new file. Only the update is built, so a large original is never copied here."""
        out = _Tail(len(self.original))
        if not self.original.endswith((b"\n", b"\r")):
            out += b"\n"
        body_offsets: dict[int, int] = {}
        entries: dict[int, tuple[int, int]] = {}
        for number in sorted(self._objects):
            generation, body = self._objects[number]
            entries[number] = (out.offset, generation)
            out += f"{number} {generation} obj\n".encode("ascii")
            body_offsets[number] = out.offset
            out += body
            out += b"\nendobj\n"
        if self.xref.is_stream:
            self._write_xref_stream(out, entries)
        else:
            self._write_xref_table(out, entries)
        return out, body_offsets

    def _trailer_entries(self, size: int) -> bytes:
        parts = [
            b"/Size " + str(size).encode("ascii"),
            b"/Prev " + str(self.xref.offset).encode("ascii"),
            b"/Root " + self.root,
        ]
        if self.info is not None:
            parts.append(b"/Info " + self.info)
        if self.encrypt is not None:
            parts.append(b"/Encrypt " + self.encrypt)
        if self.document_id is not None:
            first, second = (part.hex().encode("ascii") for part in self.document_id)
            parts.append(b"/ID [<" + first + b"> <" + second + b">]")
        return b" ".join(parts)

    def _write_xref_table(self, out: _Tail, entries: dict[int, tuple[int, int]]) -> None:
        start = out.offset
        out += b"xref\n"
        for first, numbers in _runs(sorted(entries)):
            out += f"{first} {len(numbers)}\n".encode("ascii")
            for number in numbers:
                offset, generation = entries[number]
                # Every entry is exactly 20 bytes, the EOL included.
                out += f"{offset:010d} {generation:05d} n\r\n".encode("ascii")
        out += b"trailer\n<< " + self._trailer_entries(self.next_number) + b" >>\n"
        out += b"startxref\n" + str(start).encode("ascii") + b"\n%%EOF\n"

    def _write_xref_stream(self, out: _Tail, entries: dict[int, tuple[int, int]]) -> None:
        # A file whose newest section is a stream may keep objects in object streams, which only
        # a cross-reference stream can describe; so its update uses a stream too.
        number = self.allocate()
        start = out.offset
        entries = {**entries, number: (start, 0)}
        offset_width = max(4, (start.bit_length() + 7) // 8)
        rows = bytearray()
        index: list[int] = []
        for first, numbers in _runs(sorted(entries)):
            index += [first, len(numbers)]
            for each in numbers:
                offset, generation = entries[each]
                rows += b"\x01" + offset.to_bytes(offset_width, "big") + generation.to_bytes(2, "big")
        dictionary = (
            b"<< /Type /XRef "
            + self._trailer_entries(self.next_number)
            + b" /Index ["
            + " ".join(map(str, index)).encode("ascii")
            + b"] /W [1 "
            + str(offset_width).encode("ascii")
            + b" 2] /Length "
            + str(len(rows)).encode("ascii")
            + b" >>"
        )
        out += f"{number} 0 obj\n".encode("ascii") + dictionary + b"\nstream\n" + rows
        out += b"\nendstream\nendobj\n"
        out += b"startxref\n" + str(start).encode("ascii") + b"\n%%EOF\n"


class _Tail(bytearray):
    """The bytes of an update, knowing the offset in the whole file that its end is at."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.base = base

    @property
    def offset(self) -> int:
        return self.base + len(self)


def _runs(numbers: list[int]) -> list[tuple[int, list[int]]]:
    """Group sorted object numbers into consecutive runs (cross-reference subsections)."""
    runs: list[tuple[int, list[int]]] = []
    for number in numbers:
        if runs and runs[-1][1][-1] == number - 1:
            runs[-1][1].append(number)
        else:
            runs.append((number, [number]))
    return runs
