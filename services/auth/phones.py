"""Indonesian mobile numbers in the forms people type, brought to one E.164 form (+628...)."""

from __future__ import annotations

import re

from services.auth.errors import InvalidPhone

# Separators people put in numbers; removed before anything else is checked.
_SEPARATORS = re.compile(r"[\s\-.()]")
# Mobile numbers are 8 followed by 8 to 11 digits after the country code (0812-3456-78 up to
# 0812-3456-7890-12); the range is a little wider than any operator uses today on purpose.
_MOBILE = re.compile(r"8\d{8,11}")


def normalise_phone(raw: str) -> str:
    """Return the E.164 form of an Indonesian mobile number, or raise InvalidPhone saying why."""
    text = _SEPARATORS.sub("", raw or "")
    if not text:
        raise InvalidPhone("a phone number is required")
    if text.startswith("+"):
        if not text.startswith("+62"):
            raise InvalidPhone("only Indonesian numbers (+62) can sign in")
        national = text[3:]
    elif text.startswith("62"):
        national = text[2:]
    elif text.startswith("0"):
        national = text[1:]
    else:
        national = text
    if text[0] in "+6" and national.startswith("0"):
        # "+62 (0)812..." : the trunk 0 written after the country code out of habit.
        national = national[1:]
    if not national.isascii() or not national.isdigit():
        raise InvalidPhone("a phone number may contain only digits, spaces, dashes and a leading +")
    if not national.startswith("8"):
        raise InvalidPhone("not a mobile number: Indonesian mobile numbers start with 08 or +628")
    if not _MOBILE.fullmatch(national):
        raise InvalidPhone(
            f"a mobile number has 10 to 13 digits counting the leading 0; this one has {len(national) + 1}"
        )
    return "+62" + national


def mask_phone(e164: str) -> str:
    """The number as logs may show it: enough to tell numbers apart, not enough to dial."""
    if len(e164) <= 8:
        return "*" * len(e164)
    return e164[:6] + "*" * (len(e164) - 9) + e164[-3:]
