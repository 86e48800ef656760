"""Problem documents in the caller's language: Indonesian for whoever asks for it first in
Accept-Language (the web page sends its own choice), English otherwise.

The services speak English, the language of their logs and of the distributors' API; the gateway
translates at the edge, from one catalogue (problem_catalogue.py) of what a retail user can be
told. A message not in the catalogue stays in English rather than be made up.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.gateway.problem_catalogue import (
    INDONESIAN,
    INDONESIAN_FIELD_PROBLEMS,
    INDONESIAN_VERIFICATION,
    VERIFICATION_PHRASES,
)

ENGLISH = "en"
BAHASA = "id"

# A placeholder as the catalogue writes it: the f-string's own expression, e.g. {position}.
_PLACEHOLDER = re.compile(r"\{[^{}]+\}")


def preferred_language(accept_language: str) -> str:
    """ "id" when the caller prefers Indonesian to English (RFC 9110 language ranges and q values;
    "id", "id-ID" and "in", the old code, are Indonesian), else "en"."""
    best, best_q = ENGLISH, 0.0
    for part in accept_language.split(",")[:16]:
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in ("id", "in", "en"):
            continue
        q = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                q = float(value)
            except ValueError:
                continue
        # The first of equal preferences wins, as listed.
        if q > best_q:
            best, best_q = (BAHASA if primary in ("id", "in") else ENGLISH), q
    return best


@dataclass(frozen=True)
class _Template:
    """A catalogue entry with placeholders: what it matches, and the Indonesian to fill in."""

    prefix: str
    pattern: re.Pattern[str]
    placeholders: tuple[str, ...]
    indonesian: str
    # How much of the entry is its own words: where two entries match, the one saying more wins.
    literal_length: int

    @classmethod
    def of(cls, english: str, indonesian: str) -> _Template:
        placeholders = tuple(_PLACEHOLDER.findall(english))
        literals = _PLACEHOLDER.split(english)
        pattern = "(.+?)".join(re.escape(literal) for literal in literals)
        return cls(
            literals[0], re.compile(pattern, re.DOTALL), placeholders, indonesian, sum(map(len, literals))
        )

    def values(self, english: str) -> tuple[str, ...] | None:
        if not english.startswith(self.prefix):
            return None
        found = self.pattern.fullmatch(english)
        return None if found is None else found.groups()

    def fill(self, values: Mapping[str, str]) -> str:
        # In one pass: a value that itself holds "{page}" stays as it is.
        return _PLACEHOLDER.sub(lambda found: values.get(found.group(), found.group()), self.indonesian)


class _Catalogue:
    """English messages to Indonesian: exact ones, and templates whose placeholders take the
    message's own values. The values of the placeholders in `phrases` (what changed, in a
    sentence saying that it changed) are translated too, when the catalogue has them; every other
    value is kept as it is."""

    def __init__(self, entries: Mapping[str, str], *, phrases: frozenset[str] = frozenset()) -> None:
        self._exact = {english: text for english, text in entries.items() if not _PLACEHOLDER.search(english)}
        templates = [
            _Template.of(english, text) for english, text in entries.items() if _PLACEHOLDER.search(english)
        ]
        self._templates = sorted(templates, key=lambda template: -template.literal_length)
        self._phrases = phrases

    def lookup(self, message: str, depth: int = 0) -> str | None:
        if len(message) > MAX_TRANSLATED:
            # Matching is quadratic in the worst case, and no message of ours is this long: one
            # that is holds what a file or a caller put in it, and stays as it is.
            return None
        exact = self._exact.get(message)
        if exact is not None:
            return exact
        for template in self._templates:
            values = template.values(message)
            if values is None:
                continue
            filled: dict[str, str] = {}
            for placeholder, value in zip(template.placeholders, values, strict=True):
                if placeholder in self._phrases and depth < _MAX_NESTING:
                    value = self.phrase(value, depth + 1) or value
                filled[placeholder] = value
            return template.fill(filled)
        return None

    def phrase(self, text: str, depth: int = 0) -> str | None:
        """text translated, also when it begins a sentence: a capital put on a phrase of the
        catalogue is put on its translation."""
        found = self.lookup(text, depth)
        if found is None and text[:1].isupper():
            lowered = self.lookup(text[:1].lower() + text[1:], depth)
            found = None if lowered is None else lowered[:1].upper() + lowered[1:]
        return found


# A phrase within a phrase within a sentence ("The signature's timestamp: <what the CMS check
# says>.") is as deep as the signer's sentences go.
_MAX_NESTING = 3
# Longer messages are never translated (see _Catalogue.lookup).
MAX_TRANSLATED = 1000
_MESSAGES = _Catalogue(INDONESIAN)
_VERIFICATION = _Catalogue(INDONESIAN_VERIFICATION, phrases=VERIFICATION_PHRASES)


def indonesian(message: str) -> str | None:
    """message (English, as the services say it) in Indonesian; None when not in the catalogue."""
    return _MESSAGES.lookup(message)


def verification_problem(problem: str, language: str) -> str:
    """What the signer found wrong with a signature, in the caller's language; a problem not in
    the catalogue stays in English."""
    if language != BAHASA:
        return problem
    found = _VERIFICATION.phrase(problem)
    if found is None and problem.endswith("."):
        # A phrase said as a sentence of its own ("The signer's certificate is not embedded in
        # the signature.").
        sentence = _VERIFICATION.phrase(problem[:-1])
        found = None if sentence is None else sentence + "."
    return problem if found is None else found


def field_problem(error: Mapping[str, Any], language: str) -> str:
    """What is wrong with one field of a request (a pydantic error): pydantic's English, or the
    catalogue's Indonesian for its kind of error, filled with its limits (ctx)."""
    if language == BAHASA:
        text = INDONESIAN_FIELD_PROBLEMS.get(str(error.get("type", "")))
        if text is not None:
            context = {str(k): str(v) for k, v in (error.get("ctx") or {}).items()}
            with contextlib.suppress(KeyError, IndexError, ValueError):
                return text.format_map(context)
    return str(error.get("msg", ""))
