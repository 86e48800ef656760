"""Serial numbers: format, check character, normalisation of what people type."""

from __future__ import annotations

import pytest

from services.quota.serials import ALPHABET, SERIAL_LENGTH, is_valid_serial, new_serial, normalize_serial


def test_new_serials_are_22_unambiguous_characters_with_a_valid_check() -> None:
    serials = {new_serial() for _ in range(2000)}
    assert len(serials) == 2000
    for serial in serials:
        assert len(serial) == SERIAL_LENGTH == 22
        assert set(serial) <= set(ALPHABET)
        assert not set(serial) & set("ILOU")
        assert is_valid_serial(serial)


@pytest.mark.parametrize(
    ("serial", "why"),
    [
        # Worked by hand: the last payload character is doubled (1 -> 2), and 2 + 30 = 32 = 0 mod 32.
        ("000000000000000000001Y", "payload ending 1 has check Y (value 30)"),
        # G is 16, doubled 32, whose base-32 digits sum to 1; 1 + 31 = 0 mod 32.
        ("00000000000000000000GZ", "payload ending G has check Z (value 31)"),
        ("0000000000000000000000", "all zeros"),
    ],
)
def test_check_character_follows_luhn_mod_32(serial: str, why: str) -> None:
    # Pinned by hand so a change to the algorithm cannot silently invalidate issued serials.
    assert is_valid_serial(serial), why


def test_every_single_character_mistake_is_caught() -> None:
    serial = new_serial()
    for position in range(SERIAL_LENGTH):
        for char in ALPHABET:
            if char != serial[position]:
                typo = serial[:position] + char + serial[position + 1 :]
                assert not is_valid_serial(typo), (serial, position, char)


def test_most_swaps_of_neighbours_are_caught() -> None:
    caught = total = 0
    for _ in range(200):
        serial = new_serial()
        for i in range(SERIAL_LENGTH - 1):
            if serial[i] != serial[i + 1]:
                total += 1
                caught += not is_valid_serial(serial[:i] + serial[i + 1] + serial[i] + serial[i + 2 :])
    # Luhn mod N misses only swaps of the two values whose doubled digit sums collide.
    assert caught / total > 0.95


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "000000000000000000001",
        "000000000000000000001Y0",
        "000000000000000000001y",
        "00000000000000000000U1",
    ],
)
def test_malformed_serials_are_invalid(bad: str) -> None:
    assert not is_valid_serial(bad)


def test_normalize_reads_what_people_type() -> None:
    assert normalize_serial(" 0000-0000 0000 0000 0000 1y ") == "000000000000000000001Y"
    assert normalize_serial("oooooooooooooooooooolY") == "000000000000000000001Y"
    assert normalize_serial("ooooooooooooooooooooIY") == "000000000000000000001Y"
