"""Page tokens: the position a list goes on from, as the services write it in their tokens."""

from __future__ import annotations

import re

# ASCII digits only, and few enough for a 64-bit position: str.isdigit() also takes "²" and other
# digits int() refuses, and a token of thousands of digits is nobody's position.
_POSITION = re.compile(r"[0-9]{1,18}")


def position(text: str) -> int | None:
    """The position `text` spells, or None when it is not one a service wrote."""
    return int(text) if _POSITION.fullmatch(text) else None
