"""The revisions of a PDF: each incremental update's cross-reference section, read on its own.

A signature covers the file up to the end of one revision. Whatever later updates redefine is
outside its byte range, so a verifier must read each later cross-reference section, list the
objects it (re)defines or frees, and compare them with the signed revision (see changes.py).
pypdf merges every section into one table, which hides exactly this, so the sections are read
here; pypdf still parses the objects themselves.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject, read_object

# Real files have a handful of revisions; a chain longer than this is a loop or an attack.
MAX_SECTIONS = 1024
_TAIL_WINDOW = 64 * 1024
_STARTXREF = re.compile(rb"startxref\s+(\d+)")
_OBJECT_HEADER = re.compile(rb"\s*(\d+)\s+(\d+)\s+obj\b")
_SUBSECTION = re.compile(rb"\s*(\d+)\s+(\d+)[ \t]*(?:\r\n|\r|\n)")
_ENTRY = re.compile(rb"\s*(\d{1,10})\s+(\d{1,5})\s*([nf])")
_WHITESPACE = b"\x00\t\n\x0c\r "


class RevisionError(ValueError):
    """A cross-reference section cannot be read; the message says which and why."""


Reference = tuple[int, int]


@dataclass(frozen=True)
class XrefSection:
    """One cross-reference section: what it defines and frees, and its trailer's key entries."""

    offset: int
    # Object number -> generation, for entries in use (in the file or in an object stream).
    defined: dict[int, int]
    freed: frozenset[int]
    root: Reference | None
    info: Reference | None
    prev: int | None


def last_startxref(document: bytes) -> int | None:
    """The offset the file's last `startxref` names, or None when there is none near the end."""
    matches = list(_STARTXREF.finditer(document, max(0, len(document) - _TAIL_WINDOW)))
    return int(matches[-1].group(1)) if matches else None


def read_xref_sections(document: bytes, reader: PdfReader) -> list[XrefSection]:
    """Every section on the /Prev chain from the file's last `startxref`, newest first.

    `reader` resolves indirect lengths; it is not otherwise consulted. Raises RevisionError.
    """
    offset = last_startxref(document)
    if offset is None:
        raise RevisionError("the file has no startxref near its end")
    sections: list[XrefSection] = []
    seen: set[int] = set()
    while offset is not None:
        if offset in seen or len(sections) >= MAX_SECTIONS:
            raise RevisionError("the chain of cross-reference sections loops")
        seen.add(offset)
        section = _read_section(document, offset, reader)
        sections.append(section)
        offset = section.prev
    return sections


def _read_section(document: bytes, offset: int, reader: PdfReader) -> XrefSection:
    if not 0 <= offset < len(document):
        raise RevisionError(f"a cross-reference offset ({offset}) lies outside the file")
    start = offset
    while start < len(document) and document[start] in _WHITESPACE:
        start += 1
    if document.startswith(b"xref", start):
        return _read_table(document, offset, start + 4, reader)
    if _OBJECT_HEADER.match(document, start):
        stream = _read_xref_stream(document, start, reader)
        defined, freed = _stream_entries(stream)
        return _section(offset, defined, freed, stream)
    raise RevisionError(f"no cross-reference section at offset {offset}")


def _read_table(document: bytes, offset: int, at: int, reader: PdfReader) -> XrefSection:
    defined: dict[int, int] = {}
    freed: set[int] = set()
    while True:
        subsection = _SUBSECTION.match(document, at)
        if subsection is None:
            break
        first, count = int(subsection.group(1)), int(subsection.group(2))
        at = subsection.end()
        # Each entry takes at least 18 bytes; a larger count is a lie about the file.
        if count * 18 > len(document) - at:
            raise RevisionError(f"the cross-reference table at {offset} is cut short")
        for number in range(first, first + count):
            entry = _ENTRY.match(document, at)
            if entry is None:
                raise RevisionError(f"the cross-reference table at {offset} has a malformed entry")
            at = entry.end()
            if entry.group(3) == b"n":
                defined[number] = int(entry.group(2))
            elif number != 0:
                freed.add(number)
    trailer_at = document.find(b"trailer", at, at + 64)
    if trailer_at < 0:
        raise RevisionError(f"the cross-reference table at {offset} has no trailer")
    trailer = _read_object_at(document, trailer_at + len(b"trailer"), reader)
    if not isinstance(trailer, DictionaryObject):
        raise RevisionError(f"the trailer at {offset} is not a dictionary")
    # A hybrid-reference file lists objects kept in object streams in a stream of its own.
    hybrid = trailer.get("/XRefStm")
    if isinstance(hybrid, int) and 0 <= hybrid < len(document):
        stream_defined, stream_freed = _stream_entries(_read_xref_stream(document, int(hybrid), reader))
        # Where both list an object, the table wins.
        defined = {**stream_defined, **defined}
        freed |= stream_freed - set(defined)
    return _section(offset, defined, frozenset(freed), trailer)


def _read_xref_stream(document: bytes, at: int, reader: PdfReader) -> StreamObject:
    header = _OBJECT_HEADER.match(document, at)
    if header is None:
        raise RevisionError(f"no cross-reference stream at offset {at}")
    stream = _read_object_at(document, header.end(), reader)
    if not isinstance(stream, StreamObject) or stream.get("/Type") != "/XRef":
        raise RevisionError(f"the object at offset {at} is not a cross-reference stream")
    return stream


def _read_object_at(document: bytes, at: int, reader: PdfReader) -> object:
    while at < len(document) and document[at] in _WHITESPACE:
        at += 1
    buffer = io.BytesIO(document)
    buffer.seek(at)
    try:
        return read_object(buffer, reader)
    except Exception as exc:  # pypdf's parse errors are open-ended; see documents.reading_pdf
        raise RevisionError(f"the object at offset {at} cannot be parsed ({type(exc).__name__})") from exc


def _stream_entries(stream: StreamObject) -> tuple[dict[int, int], frozenset[int]]:
    widths = stream.get("/W")
    if not isinstance(widths, ArrayObject) or len(widths) != 3 or not all(isinstance(w, int) for w in widths):
        raise RevisionError("a cross-reference stream has a malformed /W")
    type_width, field2_width, field3_width = (int(w) for w in widths)
    row = type_width + field2_width + field3_width
    if row <= 0 or min(type_width, field2_width, field3_width) < 0 or max(widths) > 8:
        raise RevisionError("a cross-reference stream has a malformed /W")
    size = stream.get("/Size")
    index = stream.get("/Index", ArrayObject([0, size]))
    if not isinstance(index, ArrayObject) or len(index) % 2 or not all(isinstance(i, int) for i in index):
        raise RevisionError("a cross-reference stream has a malformed /Index")
    try:
        data = stream.get_data()
    except Exception as exc:  # a broken filter chain
        raise RevisionError("a cross-reference stream cannot be decoded") from exc
    defined: dict[int, int] = {}
    freed: set[int] = set()
    at = 0
    for first, count in zip(index[::2], index[1::2], strict=True):
        for number in range(int(first), int(first) + int(count)):
            if at + row > len(data):
                raise RevisionError("a cross-reference stream is shorter than its /Index says")
            kind = int.from_bytes(data[at : at + type_width], "big") if type_width else 1
            third = int.from_bytes(data[at + type_width + field2_width : at + row], "big")
            at += row
            if kind == 1:
                defined[number] = third
            elif kind == 2:
                defined[number] = 0
            elif kind == 0 and number != 0:
                freed.add(number)
    return defined, frozenset(freed)


def _section(
    offset: int, defined: dict[int, int], freed: frozenset[int], trailer: DictionaryObject
) -> XrefSection:
    prev = trailer.get("/Prev")
    return XrefSection(
        offset=offset,
        defined=defined,
        freed=freed,
        root=_reference(trailer.raw_get("/Root") if "/Root" in trailer else None),
        info=_reference(trailer.raw_get("/Info") if "/Info" in trailer else None),
        prev=int(prev) if isinstance(prev, int) else None,
    )


def _reference(value: object) -> Reference | None:
    if isinstance(value, IndirectObject):
        return value.idnum, value.generation
    return None
