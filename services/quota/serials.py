"""Serial numbers of e-meterai: 22 characters, readable aloud and over the phone.

The national format is 22 alphanumeric characters with no published structure. Ours are 21 random
characters from Crockford's base32 alphabet (no I, L, O or U, so nothing is confused with 1, 0 or
V) and one check character computed with Luhn mod 32, which catches every single mistyped
character and most swaps of two neighbours before a lookup ever reaches the database.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SERIAL_LENGTH = 22
_BASE = len(ALPHABET)
_VALUE = {char: index for index, char in enumerate(ALPHABET)}
# Crockford's decoding rules: what people type for the letters the alphabet leaves out.
_TYPO = str.maketrans({"I": "1", "L": "1", "O": "0"})


def _luhn_sum(payload: str, double_first: bool) -> int:
    """Luhn mod N sum, doubling every other value counted from the right-hand end."""
    total = 0
    double = double_first
    for char in reversed(payload):
        value = _VALUE[char]
        if double:
            value *= 2
            value = value // _BASE + value % _BASE
        total += value
        double = not double
    return total


def check_character(payload: str) -> str:
    """The character that makes payload + it pass the Luhn mod 32 check."""
    return ALPHABET[(_BASE - _luhn_sum(payload, double_first=True) % _BASE) % _BASE]


def new_serial() -> str:
    # 21 characters of 5 bits each: 105 of the 112 bits of one call to the system's CSPRNG.
    bits = int.from_bytes(secrets.token_bytes(14), "big")
    payload = "".join([ALPHABET[(bits >> shift) & 31] for shift in range(0, 5 * (SERIAL_LENGTH - 1), 5)])
    return payload + check_character(payload)


def is_valid_serial(serial: str) -> bool:
    """True for a well-formed serial with a correct check character (it may never have been issued)."""
    if len(serial) != SERIAL_LENGTH or any(char not in _VALUE for char in serial):
        return False
    return _luhn_sum(serial, double_first=False) % _BASE == 0


def normalize_serial(text: str) -> str:
    """What the user most likely meant: upper case, no separators, I/L read as 1 and O as 0."""
    return text.strip().upper().replace("-", "").replace(" ", "").translate(_TYPO)
