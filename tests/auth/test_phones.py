from __future__ import annotations

import pytest

from services.auth.errors import InvalidPhone
from services.auth.phones import mask_phone, normalise_phone


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("081234567890", "+6281234567890"),
        ("0812-3456-7890", "+6281234567890"),
        ("0812 3456 7890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("+6281234567890", "+6281234567890"),
        ("+62 812-3456-7890", "+6281234567890"),
        ("+62 (0)812 3456 7890", "+6281234567890"),
        ("81234567890", "+6281234567890"),
        ("  0812.3456.789 ", "+628123456789"),
        ("0812345678901", "+62812345678901"),
        ("0812345678", "+62812345678"),
    ],
)
def test_accepted_forms(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "required"),
        ("   ", "required"),
        ("+6581234567", "only Indonesian"),
        ("+1 415 555 0100", "only Indonesian"),
        ("021-5551234", "not a mobile number"),
        ("+62 21 5551234", "not a mobile number"),
        ("0812abc4567", "only digits"),
        ("0812/3456/7890", "only digits"),
        ("０８１２３４５６７８９０", "only digits"),
        ("0812345", "has 7"),
        ("081234567", "has 9"),
        ("08123456789012", "has 14"),
    ],
)
def test_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhone, match=reason):
        normalise_phone(raw)


def test_mask_keeps_prefix_and_last_digits_only() -> None:
    assert mask_phone("+6281234567890") == "+62812*****890"
