"""Problem details in the caller's language, and a catalogue that stays true to the source."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import fastapi
import pytest
import starlette
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from services.common import errors
from services.gateway.problem_catalogue import (
    INDONESIAN,
    INDONESIAN_FIELD_PROBLEMS,
    INDONESIAN_TITLES,
    INDONESIAN_VERIFICATION,
)
from services.gateway.problem_texts import (
    BAHASA,
    ENGLISH,
    MAX_TRANSLATED,
    indonesian,
    preferred_language,
    verification_problem,
)
from services.gateway.problems import install

# Ours, and the libraries that answer beneath the routes (404, 405, a malformed multipart body).
SOURCES = [
    Path(__file__).resolve().parents[2] / "services",
    Path(starlette.__file__).parent,
    Path(fastapi.__file__).parent,
]
PLACEHOLDER = re.compile(r"\{[^{}]+\}")


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("", ENGLISH),
        ("id", BAHASA),
        ("id-ID,id;q=0.9,en-US;q=0.8,en;q=0.7", BAHASA),
        ("en-GB,en;q=0.9,id;q=0.8", ENGLISH),
        ("en;q=0.5, id;q=0.8", BAHASA),
        ("in", BAHASA),
        ("fr-FR, de", ENGLISH),
        ("id;q=0", ENGLISH),
        ("id;q=nonsense, en", ENGLISH),
    ],
)
def test_indonesian_is_for_whoever_prefers_it(header: str, language: str) -> None:
    assert preferred_language(header) == language


@functools.cache
def _messages_in_source() -> frozenset[str]:
    """Every string the source can produce as a literal, f-strings written with their
    placeholders as the catalogue writes them; adjacent literals joined, as Python joins them.
    Read once for every test that asks."""
    found: set[str] = set()
    for path in (path for source in SOURCES for path in source.rglob("*.py")):
        if path.name == "problem_catalogue.py":
            # The catalogue itself says every English message: it must be found elsewhere.
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (text := _string(node)) is not None:
                found.add(text)
    return frozenset(found)


def _string(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_piece(value) for value in node.values)
    return None


def _piece(value: ast.expr) -> str:
    if isinstance(value, ast.Constant):
        return str(value.value)
    assert isinstance(value, ast.FormattedValue)
    conversion = "" if value.conversion == -1 else "!" + chr(value.conversion)
    spec = ""
    if value.format_spec is not None:
        assert isinstance(value.format_spec, ast.JoinedStr)
        spec = ":" + "".join(_piece(v) for v in value.format_spec.values)
    return "{" + ast.unparse(value.value) + conversion + spec + "}"


def test_every_catalogue_entry_is_a_message_the_services_say() -> None:
    said = _messages_in_source()
    strays = [english for english in INDONESIAN if english not in said]
    assert not strays, f"not said anywhere (changed or gone?): {strays}"


def test_every_translation_keeps_its_placeholders() -> None:
    for english, text in INDONESIAN.items():
        # Each value the Indonesian shows is one the English has (it may leave out a word such as
        # the plural "pages").
        assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(english)), english
        assert text.strip() and text != english, english


def test_messages_with_values_are_translated_with_the_values_kept() -> None:
    templated = [english for english in INDONESIAN if PLACEHOLDER.search(english)]
    assert templated, "the catalogue has messages with values in them"
    for english in templated:
        values = {p: f"<{i}>" for i, p in enumerate(PLACEHOLDER.findall(english))}
        said = english
        expected = INDONESIAN[english]
        for placeholder, value in values.items():
            said, expected = said.replace(placeholder, value), expected.replace(placeholder, value)
        assert indonesian(said) == expected, english
    assert indonesian("a message nobody wrote down") is None


class Order(BaseModel):
    quantity: int = Field(ge=1)


def _app() -> TestClient:
    app = FastAPI()
    install(app)

    @app.get("/refused")
    async def refused() -> None:
        raise errors.InvalidInput(next(e for e in INDONESIAN if not PLACEHOLDER.search(e)))

    @app.get("/untranslated")
    async def untranslated() -> None:
        raise errors.InvalidInput("a message nobody wrote down")

    @app.post("/orders")
    async def orders(order: Order) -> None:
        return None

    return TestClient(app)


def test_a_problem_is_in_indonesian_when_asked_and_in_english_otherwise() -> None:
    client = _app()
    english = next(e for e in INDONESIAN if not PLACEHOLDER.search(e))
    asked = client.get("/refused", headers={"Accept-Language": "id-ID,id;q=0.9"})
    assert asked.status_code == 400 and asked.headers["content-language"] == "id"
    assert asked.json()["detail"] == INDONESIAN[english]
    assert asked.json()["title"] == INDONESIAN_TITLES[400]

    plain = client.get("/refused")
    assert plain.headers["content-language"] == "en"
    assert (plain.json()["detail"], plain.json()["title"]) == (english, "Bad request")

    # Not in the catalogue: English as said, and labelled so, rather than half translated.
    unknown = client.get("/untranslated", headers={"Accept-Language": "id"})
    assert unknown.headers["content-language"] == "en"
    assert (unknown.json()["detail"], unknown.json()["title"]) == (
        "a message nobody wrote down",
        "Bad request",
    )


def test_invalid_fields_are_named_in_the_callers_language() -> None:
    answer = _app().post("/orders", json={"quantity": "many"}, headers={"Accept-Language": "id"})
    assert answer.status_code == 400 and answer.headers["content-language"] == "id"
    body = answer.json()
    assert body["detail"] == INDONESIAN["the request has invalid fields"]
    assert body["errors"] == [{"field": "quantity", "problem": INDONESIAN_FIELD_PROBLEMS["int_parsing"]}]
    # With its limit filled in.
    small = _app().post("/orders", json={"quantity": 0}, headers={"Accept-Language": "id"})
    assert small.json()["errors"] == [{"field": "quantity", "problem": "paling sedikit 1"}]
    english = _app().post("/orders", json={"quantity": 0})
    assert english.json()["errors"] == [
        {"field": "quantity", "problem": "Input should be greater than or equal to 1"}
    ]


def test_every_verification_entry_is_something_the_signer_says_and_keeps_its_placeholders() -> None:
    said = _messages_in_source()
    strays = [english for english in INDONESIAN_VERIFICATION if english not in said]
    assert not strays, f"not said anywhere (changed or gone?): {strays}"
    for english, text in INDONESIAN_VERIFICATION.items():
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english)), english
        assert text.strip() and text != english, english


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (
            "The document was changed after it was signed: the signed bytes do not match.",
            "Dokumen telah diubah setelah ditandatangani: byte yang ditandatangani tidak cocok.",
        ),
        # A value kept as it is.
        (
            "4 byte(s) follow the signed revision without forming a revision of their own.",
            "Ada 4 byte tambahan setelah revisi yang ditandatangani, tetapi byte tersebut tidak membentuk"
            " revisi tersendiri.",
        ),
        # What changed is a phrase of its own, with the capital that begins the sentence.
        (
            "The content of page 1 was deleted after this signature.",
            "Isi halaman 1 dihapus setelah tanda tangan ini.",
        ),
        (
            "Object 12 (XObject) was changed after this signature.",
            "Objek 12 (XObject) diubah setelah tanda tangan ini.",
        ),
        # A field's name stays as the form spells it.
        ("Form field 'Nama' was removed from the form.", "Kolom formulir 'Nama' dihapus dari formulir."),
        # The entry saying more wins over the one that would also match ("{what} was changed").
        (
            "The document catalog's /OpenAction entry was changed after this signature.",
            "Entri /OpenAction pada katalog dokumen diubah setelah tanda tangan ini.",
        ),
        # A CMS check's phrase as a sentence of its own, and within another.
        (
            "The signer's certificate is not embedded in the signature.",
            "Sertifikat penanda tangan tidak disertakan dalam tanda tangan.",
        ),
        ("The signature is not a CMS SignedData.", "Tanda tangan bukan CMS SignedData."),
        (
            "The signature's timestamp: the timestamp token's message-digest does not match its content.",
            "Cap waktu tanda tangan: nilai message-digest pada token cap waktu tidak cocok dengan isinya.",
        ),
        (
            "The signature's timestamp is unreadable: the signature data cannot be read (ValueError).",
            "Cap waktu tanda tangan tidak dapat dibaca: data tanda tangan tidak dapat dibaca (ValueError).",
        ),
        (
            "The timestamp authority's certificate does not chain to a trusted root.",
            "Sertifikat otoritas cap waktu tidak terhubung ke sertifikat akar tepercaya.",
        ),
        (
            "The certificate CN=Uji,O=Contoh was not valid at 2026-01-02 03:04:05 UTC.",
            "Sertifikat CN=Uji,O=Contoh tidak berlaku pada 2026-01-02 03:04:05 UTC.",
        ),
        # Why the revisions cannot be read, within the sentence saying so.
        (
            "The changes made after this signature cannot be read (the cross-reference table at 123 is"
            " cut short).",
            "Perubahan setelah tanda tangan ini tidak dapat dibaca (tabel cross-reference pada 123"
            " terpotong).",
        ),
        # Only what names a change is translated within a sentence: a type the file gives, even
        # one that reads like a phrase of the catalogue, stays as the file spells it...
        (
            "Signatures of type the page tree are not supported.",
            "Tanda tangan jenis the page tree tidak didukung.",
        ),
        # ...and a value holding a placeholder's name is not filled in itself.
        (
            "An annotation ({page}) was added to page 2 after this signature.",
            "Sebuah anotasi ({page}) ditambahkan ke halaman 2 setelah tanda tangan ini.",
        ),
    ],
)
def test_verification_problems_are_in_indonesian_when_asked(problem: str, expected: str) -> None:
    assert verification_problem(problem, BAHASA) == expected
    assert verification_problem(problem, ENGLISH) == problem


def test_a_verification_problem_not_in_the_catalogue_stays_in_english() -> None:
    assert verification_problem("A problem nobody wrote down.", BAHASA) == "A problem nobody wrote down."


# Where the signer's verification says what is wrong with a signature.
VERIFICATION_SOURCES = [
    Path(__file__).resolve().parents[2] / "services" / "signer" / name
    for name in (
        "verification.py",
        "changes.py",
        "cms.py",
        "chains.py",
        "timestamp_tokens.py",
        "revisions.py",
    )
]


LOG_CALLS = ("debug", "info", "warning", "error", "exception")


def _problems_in_source() -> set[str]:
    """What the verification modules can put into a report's problems: every sentence (a capital,
    a placeholder or "..." first, a full stop last) outside docstrings and log calls, the
    messages of CmsError and RevisionError, what is appended to a list of problems, and the
    phrases naming what changed."""
    found: set[str] = set()
    for path in VERIFICATION_SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        ignored: set[int] = set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            documented = isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and body
            if documented and isinstance(body[0], ast.Expr):
                ignored.add(id(body[0].value))
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Attribute) and call.attr in LOG_CALLS:
                ignored.update(id(argument) for argument in node.args)
            if isinstance(node, ast.JoinedStr):
                ignored.update(id(value) for value in node.values)
        for node in ast.walk(tree):
            text = _string(node)
            sentence = text is not None and " " in text and text.endswith(".")
            if sentence and (text[:1].isupper() or text[:1] in "{.") and id(node) not in ignored:
                found.add(text)
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                raised = isinstance(func, ast.Name) and func.id in ("CmsError", "RevisionError")
                appended = (
                    isinstance(func, ast.Attribute)
                    and func.attr == "append"
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "problems"
                )
                if (raised or appended) and (text := _string(node.args[0])) is not None:
                    found.add(text)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("_describe"):
                for returned in ast.walk(node):
                    if isinstance(returned, ast.Return) and returned.value is not None:
                        found.update(_phrases_returned(returned.value))
    return found


def _phrases_returned(value: ast.expr) -> set[str]:
    """The phrases a describing function returns: "page {n}", "object {number}" (with its type
    appended when it has one), either side of a conditional."""
    if isinstance(value, ast.IfExp):
        return _phrases_returned(value.body) | _phrases_returned(value.orelse)
    if isinstance(value, ast.BinOp):
        return _phrases_returned(value.left)
    text = _string(value)
    return set() if text is None else {text}


def test_everything_the_signer_says_about_a_signature_is_in_the_catalogue() -> None:
    problems = _problems_in_source()
    assert "The signature's byte range is malformed." in problems, "the sources are read"
    missing = sorted(problem for problem in problems if problem not in INDONESIAN_VERIFICATION)
    assert not missing, f"not in INDONESIAN_VERIFICATION: {missing}"


def test_a_very_long_problem_is_left_as_it_is() -> None:
    """Only a file's own text makes a problem this long (an annotation's /Subtype, a signature's
    /SubFilter); matching it against the templates could take seconds, so it is not tried."""
    hostile = "An annotation (" + ") was added to page " * 5000
    assert verification_problem(hostile, BAHASA) == hostile
    spelled_out = "Signatures of type " + "x" * MAX_TRANSLATED + " are not supported."
    assert verification_problem(spelled_out, BAHASA) == spelled_out
