"""Whether what later revisions changed is something a signature allows.

PDF 2.0 (12.8.2.2) lets a signed document grow by incremental updates, but only some changes keep
the signature meaningful. This is a small version of pyHanko's difference analysis: every object
a later revision (re)defines or frees is compared with the signed revision, and each real change
must match one of these rules:

- always: the document security store (/DSS, VRI, its certificates, CRLs and OCSP responses),
  document timestamps (a new signature field whose value is a /DocTimeStamp), and the document's
  metadata (the XMP stream and /Info), which every writer touches, timestamps included, as in
  pyHanko's global rules;
- certification level 2 (form filling) and plain approval signatures, also: new signature
  fields with their widgets and appearances, /AcroForm /Fields and /SigFlags updates, page
  /Annots gaining those widgets, an empty signature field being signed, form field values
  (/V, /AS and the widget appearances);
- certification level 3, also: annotations added to pages.

Anything else (a page's content, an existing annotation, a new or removed page, a deleted
object, a replaced catalog) makes the verdict "modified". New objects need no rule of their
own: they only enter the document through a changed existing object, and that change is judged.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    FloatObject,
    IndirectObject,
    NameObject,
    PdfObject,
    StreamObject,
)

from services.signer.revisions import RevisionError, XrefSection, read_xref_sections

NONE = "none"
ALLOWED = "allowed"
MODIFIED = "modified"

# DocMDP /P values.
NO_CHANGES, FORM_FILLING, ANNOTATING = 1, 2, 3

# Enough to name every change in a real edit; past this a list stops helping anyone.
_MAX_REPORTED = 8
# Direct objects nested deeper than this are hostile, not real documents.
_MAX_DEPTH = 64
# Objects followed when collecting what belongs to the document security store.
_MAX_DSS_OBJECTS = 200_000

_CATALOG_KEYS_ALWAYS = {"/DSS", "/Extensions", "/AcroForm"}
_CATALOG_KEYS_FORM_FILLING = {"/Metadata"}
_FORM_KEYS = {"/Fields", "/SigFlags", "/DR", "/DA"}
_FORM_KEYS_FORM_FILLING = {"/NeedAppearances"}
_FILLED_SIGNATURE_KEYS = {"/V", "/AP", "/AS", "/MK", "/DA"}
_FILLED_FIELD_KEYS = {"/V", "/AS", "/AP"}


@dataclass(frozen=True)
class ChangeReview:
    """The verdict on everything written after one signature's revision."""

    later_changes: str
    later_revisions: int
    problems: tuple[str, ...] = ()


class RevisionHistory:
    """A document's cross-reference sections, read once and shared by its signatures' reviews."""

    def __init__(self, document: bytes, reader: PdfReader) -> None:
        self._document = document
        self._reader = reader
        self._sections: list[XrefSection] | None = None
        self._error = ""

    def _all_sections(self) -> list[XrefSection] | None:
        if self._sections is None and not self._error:
            try:
                self._sections = read_xref_sections(self._document, self._reader)
            except RevisionError as exc:
                self._error = str(exc)
        return self._sections

    def review(self, signed_end: int) -> ChangeReview:
        """Judge what the revisions after byte `signed_end` (the end of a signed revision) change."""
        if not self._document[signed_end:].strip(b"\x00\t\n\x0c\r "):
            return ChangeReview(NONE, 0)
        sections = self._all_sections()
        if sections is None:
            return ChangeReview(
                MODIFIED,
                0,
                (f"The changes made after this signature cannot be read ({self._error}).",),
            )
        later = [s for s in sections if s.offset >= signed_end]
        earlier = [s for s in sections if s.offset < signed_end]
        if not later:
            return ChangeReview(NONE, 0)
        if not earlier:
            return ChangeReview(
                MODIFIED,
                len(later),
                ("A later revision replaces the signed one instead of adding to it.",),
            )
        try:
            signed = PdfReader(io.BytesIO(self._document[:signed_end]), strict=False)
            problems = _Review(signed, self._reader, earlier, later).problems()
        except Exception as exc:  # hostile later revisions must yield a verdict, not a crash
            problems = [f"The changes made after this signature cannot be analysed ({type(exc).__name__})."]
        if not problems:
            return ChangeReview(ALLOWED, len(later))
        if len(problems) > _MAX_REPORTED:
            more = len(problems) - _MAX_REPORTED + 1
            problems = [*problems[: _MAX_REPORTED - 1], f"... and {more} more changes that are not allowed."]
        return ChangeReview(MODIFIED, len(later), tuple(problems))


def certification_level(reader: PdfReader) -> int | None:
    """The DocMDP /P of the document's certification signature, or None when it has none."""
    perms = _resolve(reader.root_object.get("/Perms"))
    signature = _resolve(perms.get("/DocMDP")) if isinstance(perms, DictionaryObject) else None
    references = _resolve(signature.get("/Reference")) if isinstance(signature, DictionaryObject) else None
    for reference in references if isinstance(references, ArrayObject) else []:
        reference = _resolve(reference)
        if isinstance(reference, DictionaryObject) and reference.get("/TransformMethod") == "/DocMDP":
            params = _resolve(reference.get("/TransformParams"))
            level = params.get("/P", FORM_FILLING) if isinstance(params, DictionaryObject) else FORM_FILLING
            return int(level) if int(level) in (NO_CHANGES, FORM_FILLING, ANNOTATING) else FORM_FILLING
    return None


@dataclass
class _Field:
    name: str
    is_signature: bool
    signed: bool


@dataclass
class _SignedRevision:
    """Where things are in the signed revision, by object number, for naming and for the rules."""

    pages: dict[int, int] = field(default_factory=dict)
    contents: dict[int, int] = field(default_factory=dict)
    annotations: dict[int, int] = field(default_factory=dict)
    annotation_arrays: dict[int, int] = field(default_factory=dict)
    fields: dict[int, _Field] = field(default_factory=dict)
    appearances: set[int] = field(default_factory=set)
    form: int | None = None
    field_array: int | None = None
    metadata: int | None = None


class _Review:
    def __init__(
        self, signed: PdfReader, current: PdfReader, earlier: list[XrefSection], later: list[XrefSection]
    ) -> None:
        self.signed = signed
        self.current = current
        self.earlier = earlier
        self.later = later
        level = certification_level(signed)
        self.level = FORM_FILLING if level is None else level
        self.map = _map_signed_revision(signed)
        self._dss: set[int] | None = None

    def problems(self) -> list[str]:
        problems: list[str] = []
        if self.later[0].root != self.earlier[0].root:
            problems.append("The document catalog was replaced after this signature.")
        signed_generations: dict[int, int] = {}
        for section in reversed(self.earlier):
            signed_generations.update(section.defined)
            for number in section.freed:
                signed_generations.pop(number, None)
        final: dict[int, int | None] = {}
        for section in self.later:  # newest first: the first entry for a number is its final state
            for number, generation in section.defined.items():
                final.setdefault(number, generation)
            for number in section.freed:
                final.setdefault(number, None)
        info = self.earlier[0].info
        for number in sorted(final):
            if number not in signed_generations:
                continue  # a new object: judged where a changed object starts to refer to it
            generation = final[number]
            if generation is None or generation != signed_generations[number]:
                problems.append(f"{capitalised(self._describe(number))} was deleted after this signature.")
                continue
            old = self.signed.get_object(IndirectObject(number, generation, self.signed))
            new = self.current.get_object(IndirectObject(number, generation, self.current))
            if _canonical(old) == _canonical(new):
                continue
            if info is not None and number == info[0]:
                continue
            problems += self._judge(number, old, new)
        return problems

    def _judge(self, number: int, old: PdfObject | None, new: PdfObject | None) -> list[str]:
        what = self._describe(number)
        changed = f"{capitalised(what)} was changed after this signature."
        if number in self._dss_objects():
            return []
        if number == (self.earlier[0].root or (0, 0))[0]:
            return self._judge_catalog(old, new)
        if number == self.map.form:
            return self._judge_form(old, new)
        if number == self.map.field_array:
            return self._judge_fields(old, new)
        if number in self.map.pages:
            if not isinstance(old, DictionaryObject) or not isinstance(new, DictionaryObject):
                return [changed]
            if _changed_keys(old, new) - {"/Annots"}:
                return [changed]
            return self._judge_annotations(old.get("/Annots"), new.get("/Annots"), self.map.pages[number])
        if number in self.map.annotation_arrays:
            return self._judge_annotations(old, new, self.map.annotation_arrays[number])
        known = self.map.fields.get(number)
        if known is not None and isinstance(old, DictionaryObject) and isinstance(new, DictionaryObject):
            keys = _changed_keys(old, new)
            signing_empty_field = known.is_signature and not known.signed and keys <= _FILLED_SIGNATURE_KEYS
            if signing_empty_field and (self.level >= FORM_FILLING or _is_document_timestamp(new.get("/V"))):
                return []
            if not known.is_signature and keys <= _FILLED_FIELD_KEYS and self.level >= FORM_FILLING:
                return []
            return [changed]
        if number in self.map.appearances and self.level >= FORM_FILLING:
            return []
        if number == self.map.metadata:
            return []
        return [changed]

    def _judge_catalog(self, old: PdfObject | None, new: PdfObject | None) -> list[str]:
        if not isinstance(old, DictionaryObject) or not isinstance(new, DictionaryObject):
            return ["The document catalog was replaced after this signature."]
        allowed = _CATALOG_KEYS_ALWAYS | self._form_filling(_CATALOG_KEYS_FORM_FILLING)
        problems = [
            f"The document catalog's {key} entry was changed after this signature."
            for key in sorted(_changed_keys(old, new) - allowed)
        ]
        old_form = old.raw_get("/AcroForm") if "/AcroForm" in old else None
        new_form = new.raw_get("/AcroForm") if "/AcroForm" in new else None
        if _canonical(old_form) != _canonical(new_form):
            problems += self._judge_form(_resolve(old_form), _resolve(new_form))
        return problems

    def _judge_form(self, old: PdfObject | None, new: PdfObject | None) -> list[str]:
        old = old if isinstance(old, DictionaryObject) else DictionaryObject()
        if not isinstance(new, DictionaryObject):
            return ["The interactive form was removed after this signature."]
        problems = [
            f"The interactive form's {key} entry was changed after this signature."
            for key in sorted(
                _changed_keys(old, new) - _FORM_KEYS - self._form_filling(_FORM_KEYS_FORM_FILLING)
            )
        ]
        old_fields = old.raw_get("/Fields") if "/Fields" in old else None
        new_fields = new.raw_get("/Fields") if "/Fields" in new else None
        if _canonical(old_fields) != _canonical(new_fields):
            problems += self._judge_fields(_resolve(old_fields), _resolve(new_fields))
        return problems

    def _judge_fields(self, old: PdfObject | None, new: PdfObject | None) -> list[str]:
        removed, added = _list_difference(old, new)
        problems = [
            f"{capitalised(self._describe_item(item))} was removed from the form." for item in removed
        ]
        for item in added:
            if not self._is_new_signature(item):
                problems.append("A form field other than a signature was added after this signature.")
        return problems

    def _judge_annotations(self, old: PdfObject | None, new: PdfObject | None, page: int) -> list[str]:
        removed, added = _list_difference(_resolve(old), _resolve(new))
        problems = [f"An annotation was removed from page {page} after this signature." for _ in removed]
        for item in added:
            if self._is_new_signature(item):
                continue
            annotation = _resolve(item)
            subtype = annotation.get("/Subtype") if isinstance(annotation, DictionaryObject) else None
            if self.level >= ANNOTATING and subtype != "/Widget":
                continue
            if subtype is None:
                problems.append(
                    f"An annotation with no /Subtype was added to page {page} after this signature."
                )
            else:
                kind = str(subtype).lstrip("/")
                problems.append(f"An annotation ({kind}) was added to page {page} after this signature.")
        return problems

    def _form_filling(self, keys: set[str]) -> set[str]:
        return keys if self.level >= FORM_FILLING else set()

    def _is_new_signature(self, item: PdfObject) -> bool:
        """A signature field or widget; under level 1 only a document timestamp's."""
        node = _resolve(item)
        for _ in range(_MAX_DEPTH):
            if not isinstance(node, DictionaryObject):
                return False
            if node.get("/FT") == "/Sig":
                return self.level >= FORM_FILLING or _is_document_timestamp(node.get("/V"))
            node = _resolve(node.get("/Parent"))
        return False

    def _dss_objects(self) -> set[int]:
        if self._dss is None:
            self._dss = set()
            # Only what already belonged to the store when signing: a later revision cannot
            # declare a page's content part of the store and so make changing it allowed.
            catalog = self.signed.root_object
            store = catalog.raw_get("/DSS") if "/DSS" in catalog else None
            stack = [store]
            while stack and len(self._dss) < _MAX_DSS_OBJECTS:
                value = stack.pop()
                if isinstance(value, IndirectObject):
                    if value.idnum in self._dss:
                        continue
                    self._dss.add(value.idnum)
                    value = value.get_object()
                if isinstance(value, DictionaryObject):
                    stack.extend(value.raw_get(key) for key in value)
                elif isinstance(value, ArrayObject):
                    stack.extend(value)
        return self._dss

    def _describe(self, number: int) -> str:
        if number in self.map.pages:
            return f"page {self.map.pages[number]}"
        if number in self.map.contents:
            return f"the content of page {self.map.contents[number]}"
        if number in self.map.annotations:
            return f"an annotation on page {self.map.annotations[number]}"
        if number in self.map.fields:
            return f"form field {self.map.fields[number].name!r}"
        if number == (self.earlier[0].root or (0, 0))[0]:
            return "the document catalog"
        old = self.signed.get_object(number)
        kind = old.get("/Type") if isinstance(old, DictionaryObject) else None
        if kind == "/Pages":
            return "the page tree"
        return f"object {number}" + (f" ({str(kind).lstrip('/')})" if kind else "")

    def _describe_item(self, item: PdfObject) -> str:
        return self._describe(item.idnum) if isinstance(item, IndirectObject) else "a form field"


def capitalised(what: str) -> str:
    """what, to begin a sentence: its first letter capital, as str.capitalize() would make it, but
    the rest left alone, so a field's name reads as the form spells it."""
    return what[:1].upper() + what[1:]


def _map_signed_revision(reader: PdfReader) -> _SignedRevision:
    found = _SignedRevision()
    for index, page in enumerate(reader.pages, start=1):
        if page.indirect_reference is not None:
            found.pages[page.indirect_reference.idnum] = index
        contents = page.raw_get("/Contents") if "/Contents" in page else None
        if isinstance(contents, IndirectObject):
            found.contents[contents.idnum] = index
            contents = contents.get_object()
        for part in contents if isinstance(contents, ArrayObject) else []:
            if isinstance(part, IndirectObject):
                found.contents[part.idnum] = index
        annotations = page.raw_get("/Annots") if "/Annots" in page else None
        if isinstance(annotations, IndirectObject):
            found.annotation_arrays[annotations.idnum] = index
        for annotation in _iterate(_resolve(annotations)):
            if isinstance(annotation, IndirectObject):
                found.annotations[annotation.idnum] = index
    catalog = reader.root_object
    metadata = catalog.raw_get("/Metadata") if "/Metadata" in catalog else None
    found.metadata = metadata.idnum if isinstance(metadata, IndirectObject) else None
    form = catalog.raw_get("/AcroForm") if "/AcroForm" in catalog else None
    found.form = form.idnum if isinstance(form, IndirectObject) else None
    form = _resolve(form)
    if isinstance(form, DictionaryObject):
        fields = form.raw_get("/Fields") if "/Fields" in form else None
        found.field_array = fields.idnum if isinstance(fields, IndirectObject) else None
        _map_fields(_resolve(fields), found)
    return found


def _map_fields(fields: PdfObject | None, found: _SignedRevision) -> None:
    stack = [(item, "", None) for item in _iterate(fields)]
    seen: set[int] = set()
    while stack and len(seen) < _MAX_DSS_OBJECTS:
        reference, parent_name, inherited = stack.pop()
        if not isinstance(reference, IndirectObject) or reference.idnum in seen:
            continue
        seen.add(reference.idnum)
        node = reference.get_object()
        if not isinstance(node, DictionaryObject):
            continue
        partial = str(node["/T"]) if "/T" in node else ""
        name = f"{parent_name}.{partial}" if parent_name and partial else (partial or parent_name)
        kind = node.get("/FT", inherited)
        found.fields[reference.idnum] = _Field(name, kind == "/Sig", "/V" in node)
        appearance = _resolve(node.get("/AP"))
        for state in _iterate_values(appearance):
            for stream in [state, *_iterate_values(_resolve(state))]:
                if isinstance(stream, IndirectObject):
                    found.appearances.add(stream.idnum)
        stack.extend((kid, name, kind) for kid in _iterate(_resolve(node.get("/Kids"))))


def _is_document_timestamp(value: PdfObject | None) -> bool:
    value = _resolve(value)
    return isinstance(value, DictionaryObject) and (
        value.get("/Type") == "/DocTimeStamp" or value.get("/SubFilter") == "/ETSI.RFC3161"
    )


def _changed_keys(old: DictionaryObject, new: DictionaryObject) -> set[str]:
    return {
        str(key)
        for key in set(old) | set(new)
        if _canonical(old.raw_get(key) if key in old else None)
        != _canonical(new.raw_get(key) if key in new else None)
    }


def _list_difference(old: PdfObject | None, new: PdfObject | None) -> tuple[list[PdfObject], list[PdfObject]]:
    """Items of `old` missing from `new`, and items of `new` that are not in `old`."""
    old_items = list(_iterate(old))
    new_items = list(_iterate(new))
    remaining = Counter(_canonical(item) for item in new_items)
    removed = []
    for item in old_items:
        key = _canonical(item)
        if remaining[key]:
            remaining[key] -= 1
        else:
            removed.append(item)
    available = Counter(_canonical(item) for item in old_items)
    added = []
    for item in new_items:
        key = _canonical(item)
        if available[key]:
            available[key] -= 1
        else:
            added.append(item)
    return removed, added


def _canonical(value: object, depth: int = 0) -> object:
    """A comparable form of a PDF object in which references stay references."""
    if depth > _MAX_DEPTH:
        raise RecursionError("nested too deeply")
    if value is None:
        return None
    if isinstance(value, IndirectObject):
        return ("R", value.idnum, value.generation)
    if isinstance(value, DictionaryObject):
        entries = tuple(sorted((str(key), _canonical(value.raw_get(key), depth + 1)) for key in value))
        if isinstance(value, StreamObject):
            return ("stream", entries, bytes(value._data))
        return ("dict", entries)
    if isinstance(value, ArrayObject):
        return ("array", tuple(_canonical(item, depth + 1) for item in value))
    if isinstance(value, NameObject):
        return ("name", str(value))
    if isinstance(value, bytes):
        return ("bytes", bytes(value))
    if isinstance(value, str):
        return ("string", getattr(value, "original_bytes", value.encode("utf-8", "surrogatepass")))
    if isinstance(value, FloatObject | int | float):
        return ("number", float(value))
    return (type(value).__name__, repr(value))


def _resolve(value: PdfObject | None) -> PdfObject | None:
    return value.get_object() if value is not None else None


def _iterate(value: PdfObject | None) -> Iterator[PdfObject]:
    if isinstance(value, ArrayObject):
        yield from value


def _iterate_values(value: PdfObject | None) -> Iterator[PdfObject]:
    if isinstance(value, DictionaryObject) and not isinstance(value, StreamObject):
        yield from (value.raw_get(key) for key in value)
