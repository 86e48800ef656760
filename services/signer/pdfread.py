"""Reading only what a stamp needs from a well-formed PDF, lazily.

A stamp touches a handful of objects: the trailer, the catalog, the page-tree path to one page,
the form fields. A general reader (pypdf) first loads every cross-reference entry, checks that
each one points at an object header and walks the whole page tree: on a 117-page file that is
~100 ms before the first useful byte, and it grows with the file. `LazyPdf` instead records
where each cross-reference section and subsection lies, looks an entry up only when its object
is asked for (table rows have a fixed width, stream rows too), and walks the page tree along
/Count to the one page wanted. Single objects are parsed with pypdf's object parser in strict
mode, so the PDF syntax rules stay in one well-tested place.

It is strict on purpose: any irregularity (an entry that does not point at its object, a page
tree whose counts do not add up, an unusual filter) raises `NeedsRepair`, and the caller falls
back to pypdf's lenient reader, which reconstructs what mainstream viewers would. What no reader
should attempt (a stream that inflates past `MAX_EXPANDED_BYTES`, nesting deeper than any real
file) raises `UnsupportedPdf` at once instead, so the refusal does not cost a second reading.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pypdf import Configuration, apply_configuration
from pypdf.errors import LimitReachedError
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NullObject,
    NumberObject,
    PdfObject,
    StreamObject,
    read_object,
)

from services.signer.errors import UnsupportedPdf
from services.signer.pdfsyntax import Unusual, parse_object

Rect = tuple[float, float, float, float]

# Where startxref is looked for, as in documents.read_xref_tail.
_TRAILER_WINDOW = 4096
_STARTXREF = re.compile(rb"startxref\s+(\d+)")
_WHITESPACE = b"\x00\t\n\x0c\r "
_SUBSECTION = re.compile(rb"(\d+)[ \t]+(\d+)[ \t]*(?:\r\n|\r|\n)")
# A classic entry: 10-digit offset, 5-digit generation, n or f, and a two-byte end of line
# (writers that end it in one byte, or three, are accepted as long as all rows agree).
_ENTRY = re.compile(rb"(\d{10}) (\d{5}) ([nf])(?: ?\r\n| ?\r| ?\n| )")
_OBJECT_HEADER = re.compile(
    rb"[\x00\t\n\x0c\r ]*(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+obj(?![A-Za-z0-9])"
)
_MAX_SECTIONS = 512
_MAX_PAGE_TREE_DEPTH = 64
_INHERITABLE = ("/MediaBox", "/CropBox", "/Rotate")

# What one stream may inflate to. A stamp decodes only object and cross-reference streams, which
# stay far below this in real files; a decompression bomb inflates to gigabytes from kilobytes.
MAX_EXPANDED_BYTES = 64 * 1024 * 1024
EXPANDS_TOO_FAR = (
    "The PDF holds compressed data that expands to more than 64 MiB, so it cannot be read safely. "
    "Save or print it as a new PDF and try again."
)


_BOUNDED = dataclasses.replace(
    Configuration(),
    zlib_maximum_output_length=MAX_EXPANDED_BYTES,
    lzw_maximum_output_length=MAX_EXPANDED_BYTES,
    run_length_maximum_output_length=MAX_EXPANDED_BYTES,
    brotli_maximum_output_length=MAX_EXPANDED_BYTES,
    array_based_stream_maximum_output_length=MAX_EXPANDED_BYTES,
    stream_decoding_work_maximum_length=4 * MAX_EXPANDED_BYTES,
)


@contextlib.contextmanager
def bounded_decoding() -> Iterator[None]:
    """Make pypdf stop inflating any stream at `MAX_EXPANDED_BYTES` (it raises LimitReachedError)."""
    with apply_configuration(_BOUNDED):
        yield


def decoded(stream: StreamObject) -> bytes:
    """A stream's data through its filters, refused when it inflates past the bound.

    pypdf's default limits (75 MB per filter) stop a bomb here; `bounded_decoding` would bring them
    down to our bound, but costs more than decoding a small object stream, on every stamp.
    """
    try:
        data = stream.get_data()
    except LimitReachedError as exc:
        raise UnsupportedPdf(EXPANDS_TOO_FAR) from exc
    if len(data) > MAX_EXPANDED_BYTES:
        raise UnsupportedPdf(EXPANDS_TOO_FAR)
    return data


class PdfSource(Protocol):
    """What stamping reads from a document, whichever reader provides it."""

    @property
    def trailer(self) -> DictionaryObject: ...

    @property
    def is_encrypted(self) -> bool: ...

    @property
    def catalog(self) -> DictionaryObject: ...

    @property
    def root_reference(self) -> IndirectObject: ...

    @property
    def page_count(self) -> int: ...

    def page(self, index: int) -> PageNode: ...

    def first_free_number(self) -> int: ...


class NeedsRepair(Exception):
    """The file is not regular enough for the lazy reader; read it with the lenient one."""


@dataclass(frozen=True)
class _TableSection:
    # (first object number, count, offset of the first entry, bytes per entry)
    subsections: tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class _StreamSection:
    # (first object number, count, index of its first row)
    subsections: tuple[tuple[int, int, int], ...]
    widths: tuple[int, int, int]
    rows: bytes


@dataclass(frozen=True)
class PageNode:
    """One page as the page tree gives it: its own dictionary and its effective box and rotation."""

    reference: IndirectObject
    dictionary: DictionaryObject
    # The crop box (or the media box it defaults to), as given: not normalised.
    box: Rect | None
    rotate: PdfObject | None


@dataclass
class _ObjectStream:
    data: bytes
    offsets: dict[int, int] = field(default_factory=dict)


class LazyPdf:
    """A well-formed PDF's objects, read on demand; see the module docstring."""

    # pypdf's object parser consults this: strict, it raises instead of guessing.
    strict = True

    def __init__(self, document: bytes) -> None:
        self._data = document
        self._stream = io.BytesIO(document)
        self._sections: list[_TableSection | _StreamSection] = []
        self._objects: dict[tuple[int, int], PdfObject] = {}
        self._resolving: set[tuple[int, int]] = set()
        self._object_streams: dict[int, _ObjectStream] = {}
        self._highest = 0
        self.trailer = self._read_sections(self._startxref())
        size = self.trailer.get("/Size")
        if not isinstance(size, int):
            raise NeedsRepair("the trailer has no /Size")
        self._highest = max(self._highest, int(size) - 1)

    # -- what stamping asks for ---------------------------------------------------------------

    @property
    def is_encrypted(self) -> bool:
        return "/Encrypt" in self.trailer

    @property
    def root_reference(self) -> IndirectObject:
        root = self.trailer.raw_get("/Root") if "/Root" in self.trailer else None
        if not isinstance(root, IndirectObject):
            raise NeedsRepair("the trailer's /Root is not a reference")
        return root

    @property
    def catalog(self) -> DictionaryObject:
        catalog = self.get_object(self.root_reference)
        if not isinstance(catalog, DictionaryObject):
            raise NeedsRepair("the catalog is not a dictionary")
        return catalog

    def first_free_number(self) -> int:
        """One past the highest object number any cross-reference section or /Size mentions."""
        return self._highest + 1

    @property
    def page_count(self) -> int:
        return self._count(self._pages_root())

    def page(self, index: int) -> PageNode:
        """The page at 0-based `index`, found by following /Count down the page tree."""
        node = self._pages_root()
        inherited: dict[str, PdfObject] = {}
        seen: set[int] = set()
        for _ in range(_MAX_PAGE_TREE_DEPTH):
            for key in _INHERITABLE:
                if key in node:
                    inherited[key] = node.raw_get(key)
            kids = node.get("/Kids")
            kids = kids.get_object() if kids is not None else None
            if not isinstance(kids, ArrayObject):
                raise NeedsRepair("a page tree node has no /Kids array")
            total = 0
            chosen: tuple[IndirectObject, DictionaryObject] | None = None
            for kid in kids:
                if not isinstance(kid, IndirectObject):
                    raise NeedsRepair("a page tree kid is not a reference")
                child = kid.get_object()
                if not isinstance(child, DictionaryObject):
                    raise NeedsRepair("a page tree kid is not a dictionary")
                count = self._count(child)
                if chosen is None and total <= index < total + count:
                    chosen = (kid, child)
                    index -= total
                total += count
            if total != self._count(node) or chosen is None:
                raise NeedsRepair("the page tree's /Count does not match its kids")
            reference, child = chosen
            if reference.idnum in seen:
                raise NeedsRepair("the page tree has a cycle")
            seen.add(reference.idnum)
            if child.get("/Type") != "/Pages":
                for key in _INHERITABLE:
                    if key in child:
                        inherited[key] = child.raw_get(key)
                box = inherited.get("/CropBox") or inherited.get("/MediaBox")
                return PageNode(reference, child, _rect(box), inherited.get("/Rotate"))
            node = child
        raise NeedsRepair("the page tree is too deep")

    def _pages_root(self) -> DictionaryObject:
        pages = self.catalog.get("/Pages")
        pages = pages.get_object() if pages is not None else None
        if not isinstance(pages, DictionaryObject) or pages.get("/Type") != "/Pages":
            raise NeedsRepair("the catalog has no page tree")
        return pages

    @staticmethod
    def _count(node: DictionaryObject) -> int:
        if node.get("/Type") != "/Pages":
            return 1
        count = node.get("/Count")
        count = count.get_object() if count is not None else None
        if not isinstance(count, int) or count < 0:
            raise NeedsRepair("a page tree node has no usable /Count")
        return int(count)

    # -- objects ------------------------------------------------------------------------------

    def get_object(self, reference: IndirectObject | int) -> PdfObject:
        """Resolve an indirect reference; an object no section defines is null, as the spec says."""
        if isinstance(reference, int):
            reference = IndirectObject(reference, 0, self)
        key = (reference.idnum, reference.generation)
        cached = self._objects.get(key)
        if cached is not None:
            return cached
        # A stream whose /Length is itself, or an object stream that holds itself, would recurse.
        if key in self._resolving:
            raise NeedsRepair(f"object {reference.idnum} is defined in terms of itself")
        self._resolving.add(key)
        try:
            obj = self._read_object(reference.idnum, reference.generation)
        finally:
            self._resolving.discard(key)
        self._objects[key] = obj
        return obj

    def _read_object(self, number: int, generation: int) -> PdfObject:
        for section in self._sections:
            if isinstance(section, _TableSection):
                found = _table_entry(self._data, section, number)
                if found is None:
                    continue
                offset, entry_generation, in_use = found
                if not in_use:
                    return NullObject()
                if entry_generation != generation:
                    raise NeedsRepair("a reference names a generation its entry does not have")
                return self._object_at(offset, number, generation)
            row = _stream_entry(section, number)
            if row is None:
                continue
            kind, second, third = row
            if kind == 0:
                return NullObject()
            if kind == 1:
                if third != generation:
                    raise NeedsRepair("a reference names a generation its entry does not have")
                return self._object_at(second, number, generation)
            if kind == 2:
                return self._object_in_stream(second, number)
            return NullObject()  # unknown entry types are null, as the spec says
        return NullObject()

    def _object_at(self, offset: int, number: int, generation: int) -> PdfObject:
        header = _OBJECT_HEADER.match(self._data, offset)
        if header is None or (int(header.group(1)), int(header.group(2))) != (number, generation):
            raise NeedsRepair(f"object {number} is not where its cross-reference entry says")
        obj = self._parse(self._stream, self._data, header.end())
        obj.indirect_reference = IndirectObject(number, generation, self)
        return obj

    def _object_in_stream(self, stream_number: int, number: int) -> PdfObject:
        container = self._object_streams.get(stream_number)
        if container is None:
            stream = self.get_object(stream_number)
            if not isinstance(stream, StreamObject) or stream.get("/Type") != "/ObjStm":
                raise NeedsRepair("an object stream entry does not lead to an object stream")
            data = decoded(stream)
            count, first = stream.get("/N"), stream.get("/First")
            if not isinstance(count, int) or not isinstance(first, int):
                raise NeedsRepair("an object stream lacks /N or /First")
            numbers = data[: int(first)].split()
            if len(numbers) < 2 * int(count):
                raise NeedsRepair("an object stream's header is short")
            container = _ObjectStream(data)
            for index in range(int(count)):
                container.offsets.setdefault(
                    int(numbers[2 * index]), int(first) + int(numbers[2 * index + 1])
                )
            self._object_streams[stream_number] = container
        offset = container.offsets.get(number)
        if offset is None:
            raise NeedsRepair(f"object {number} is not in the object stream its entry names")
        obj = self._parse(io.BytesIO(container.data), container.data, offset)
        obj.indirect_reference = IndirectObject(number, 0, self)
        return obj

    def _parse(self, stream: io.BytesIO, data: bytes, position: int) -> PdfObject:
        """The object starting at `position`, after any whitespace."""
        try:
            return parse_object(data, position, self.get_object, self)
        except Unusual:
            while position < len(data) and data[position] in _WHITESPACE:
                position += 1
            stream.seek(position)
            return read_object(stream, self)

    # -- cross-reference sections -------------------------------------------------------------

    def _startxref(self) -> int:
        tail_start = max(0, len(self._data) - _TRAILER_WINDOW)
        matches = list(_STARTXREF.finditer(self._data, tail_start))
        if not matches:
            raise NeedsRepair("no startxref")
        return int(matches[-1].group(1))

    def _read_sections(self, offset: int) -> DictionaryObject:
        """Read the chain of sections from the newest; returns the newest trailer."""
        newest: DictionaryObject | None = None
        pending = [offset]
        visited: set[int] = set()
        while pending:
            offset = pending.pop(0)
            if offset in visited or len(visited) >= _MAX_SECTIONS or not 0 <= offset < len(self._data):
                raise NeedsRepair("the cross-reference chain loops or points outside the file")
            visited.add(offset)
            start = offset
            while start < len(self._data) and self._data[start] in _WHITESPACE:
                start += 1
            if self._data.startswith(b"xref", start):
                trailer = self._read_table(start + 4)
                # A hybrid file's table section is completed by the stream it names.
                follow = [trailer.get("/XRefStm"), trailer.get("/Prev")]
            else:
                trailer = self._read_stream_section(offset)
                follow = [trailer.get("/Prev")]
            newest = newest if newest is not None else trailer
            pending = [int(value) for value in follow if isinstance(value, int)] + pending
        assert newest is not None
        return newest

    def _read_table(self, position: int) -> DictionaryObject:
        data = self._data
        subsections: list[tuple[int, int, int, int]] = []
        while True:
            while position < len(data) and data[position] in _WHITESPACE:
                position += 1
            header = _SUBSECTION.match(data, position)
            if header is None:
                break
            first, count = int(header.group(1)), int(header.group(2))
            entries = header.end()
            width = 20
            if count:
                entry = _ENTRY.match(data, entries)
                if entry is None:
                    raise NeedsRepair("a cross-reference table row is malformed")
                width = entry.end() - entries
                last = _ENTRY.match(data, entries + (count - 1) * width)
                if last is None or last.end() - last.start() != width:
                    raise NeedsRepair("cross-reference table rows differ in width")
            subsections.append((first, count, entries, width))
            self._highest = max(self._highest, first + count - 1)
            position = entries + count * width
        if not data.startswith(b"trailer", position):
            raise NeedsRepair("no trailer after the cross-reference table")
        self._sections.append(_TableSection(tuple(subsections)))
        trailer = self._parse(self._stream, data, position + len(b"trailer"))
        if not isinstance(trailer, DictionaryObject):
            raise NeedsRepair("the trailer is not a dictionary")
        return trailer

    def _read_stream_section(self, offset: int) -> DictionaryObject:
        header = _OBJECT_HEADER.match(self._data, offset)
        if header is None:
            raise NeedsRepair("startxref does not point at a cross-reference section")
        stream = self._parse(self._stream, self._data, header.end())
        if not isinstance(stream, StreamObject) or stream.get("/Type") != "/XRef":
            raise NeedsRepair("startxref does not point at a cross-reference stream")
        widths = stream.get("/W")
        size = stream.get("/Size")
        if (
            not isinstance(widths, ArrayObject)
            or len(widths) != 3
            or not all(isinstance(width, int) and 0 <= width <= 8 for width in widths)
            or not isinstance(size, int)
        ):
            raise NeedsRepair("a cross-reference stream has no usable /W or /Size")
        index = stream.get("/Index", ArrayObject([NumberObject(0), NumberObject(int(size))]))
        if not isinstance(index, ArrayObject) or len(index) % 2 or not all(isinstance(v, int) for v in index):
            raise NeedsRepair("a cross-reference stream has a malformed /Index")
        rows = decoded(stream)
        row_width = sum(int(width) for width in widths)
        subsections: list[tuple[int, int, int]] = []
        row = 0
        for first, count in zip(index[::2], index[1::2], strict=True):
            subsections.append((int(first), int(count), row))
            self._highest = max(self._highest, int(first) + int(count) - 1)
            row += int(count)
        if row_width == 0 or len(rows) < row * row_width:
            raise NeedsRepair("a cross-reference stream is shorter than its /Index")
        self._sections.append(
            _StreamSection(tuple(subsections), (int(widths[0]), int(widths[1]), int(widths[2])), rows)
        )
        return stream


def _table_entry(data: bytes, section: _TableSection, number: int) -> tuple[int, int, bool] | None:
    for first, count, entries, width in section.subsections:
        if first <= number < first + count:
            at = entries + (number - first) * width
            entry = _ENTRY.match(data, at)
            if entry is None or entry.end() - at != width:
                raise NeedsRepair("a cross-reference table row is malformed")
            return int(entry.group(1)), int(entry.group(2)), entry.group(3) == b"n"
    return None


def _stream_entry(section: _StreamSection, number: int) -> tuple[int, int, int] | None:
    type_width, second_width, third_width = section.widths
    row_width = type_width + second_width + third_width
    for first, count, row in section.subsections:
        if first <= number < first + count:
            at = (row + number - first) * row_width
            raw = section.rows[at : at + row_width]
            kind = int.from_bytes(raw[:type_width], "big") if type_width else 1
            second = int.from_bytes(raw[type_width : type_width + second_width], "big")
            third = int.from_bytes(raw[type_width + second_width :], "big")
            return kind, second, third
    return None


def _rect(value: PdfObject | None) -> Rect | None:
    if value is None:
        return None
    array = value.get_object()
    if not isinstance(array, ArrayObject) or len(array) != 4:
        raise NeedsRepair("a page box is not an array of four numbers")
    numbers = [item.get_object() for item in array]
    if not all(isinstance(number, int | float) for number in numbers):
        raise NeedsRepair("a page box holds something other than numbers")
    llx, lly, urx, ury = (float(number) for number in numbers)
    return (llx, lly, urx, ury)
