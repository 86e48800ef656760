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

from services.gateway.problem_catalogue import INDONESIAN, INDONESIAN_FIELD_PROBLEMS

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

    @classmethod
    def of(cls, english: str, indonesian: str) -> _Template:
        placeholders = tuple(_PLACEHOLDER.findall(english))
        literals = _PLACEHOLDER.split(english)
        pattern = "(.+?)".join(re.escape(literal) for literal in literals)
        return cls(literals[0], re.compile(pattern, re.DOTALL), placeholders, indonesian)

    def fill(self, english: str) -> str | None:
        if not english.startswith(self.prefix):
            return None
        found = self.pattern.fullmatch(english)
        if found is None:
            return None
        text = self.indonesian
        for placeholder, value in zip(self.placeholders, found.groups(), strict=True):
            text = text.replace(placeholder, value)
        return text


_EXACT = {english: text for english, text in INDONESIAN.items() if not _PLACEHOLDER.search(english)}
_TEMPLATES = [
    _Template.of(english, text) for english, text in INDONESIAN.items() if _PLACEHOLDER.search(english)
]


def indonesian(message: str) -> str | None:
    """message (English, as the services say it) in Indonesian; None when not in the catalogue."""
    exact = _EXACT.get(message)
    if exact is not None:
        return exact
    for template in _TEMPLATES:
        filled = template.fill(message)
        if filled is not None:
            return filled
    return None


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
