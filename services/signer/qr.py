"""QR codes for the stamp's verification URL: byte mode, error level M, one fixed mask.

A general encoder (segno) tries all eight masks and scores each, then draws the symbol from
scratch: about 6 ms per code, more than the signature itself. The standard lets an encoder pick
any mask (the scoring only avoids patterns that might confuse a poor reader), and every stamp's
URL has the same length, so the symbol's version and layout are the same for every serial. We
therefore compute, once per version, the function patterns, the format and version information
and the order in which data bits fill the remaining modules, mask bits included; per code only
the codewords, their Reed-Solomon error correction and the placement of the bits remain.

Matrices are identical to segno's for the same version and mask (the tests check that); URLs
longer than version 10 holds (213 bytes) go to segno with the same mask.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import segno

# Mask 3 (dark where (row + column) % 3 == 0) scored lowest on average, under segno's penalty
# rules, over random serials in verification URLs of the usual length (version 4 symbols); the
# best mask for a single serial varies, and any mask decodes.
MASK = 3

# Error correction level M: per version, EC codewords per block and (block count, data codewords)
# groups, from ISO/IEC 18004 table 9.
_BLOCKS_M: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {
    1: (10, ((1, 16),)),
    2: (16, ((1, 28),)),
    3: (26, ((1, 44),)),
    4: (18, ((2, 32),)),
    5: (24, ((2, 43),)),
    6: (16, ((4, 27),)),
    7: (18, ((4, 31),)),
    8: (22, ((2, 38), (2, 39))),
    9: (22, ((3, 36), (2, 37))),
    10: (26, ((4, 43), (1, 44))),
}
_ALIGNMENT_CENTRES: dict[int, tuple[int, ...]] = {
    1: (), 2: (6, 18), 3: (6, 22), 4: (6, 26), 5: (6, 30), 6: (6, 34), 7: (6, 22, 38), 8: (6, 24, 42),
    9: (6, 26, 46), 10: (6, 28, 50),
}  # fmt: skip
_ERROR_LEVEL_M_BITS = 0b00
_PAD_CODEWORDS = (0xEC, 0x11)

_MASKS = (
    lambda row, col: (row + col) % 2 == 0,
    lambda row, col: row % 2 == 0,
    lambda row, col: col % 3 == 0,
    lambda row, col: (row + col) % 3 == 0,
    lambda row, col: (row // 2 + col // 3) % 2 == 0,
    lambda row, col: (row * col) % 2 + (row * col) % 3 == 0,
    lambda row, col: ((row * col) % 2 + (row * col) % 3) % 2 == 0,
    lambda row, col: ((row + col) % 2 + (row * col) % 3) % 2 == 0,
)


def qr_matrix(data: str, mask: int = MASK) -> list[bytes]:
    """The symbol's rows, without quiet zone: 1 for a dark module, 0 for a light one."""
    payload = data.encode("utf-8")
    version = _smallest_version(len(payload))
    if version is None:
        code = segno.make(payload, error="m", mode="byte", mask=mask, boost_error=False, micro=False)
        return [bytes(row) for row in code.matrix]
    return _layout(version, mask).place(_codewords(payload, version))


def _smallest_version(length: int) -> int | None:
    for version, (_, groups) in _BLOCKS_M.items():
        capacity_bits = 8 * sum(count * size for count, size in groups)
        if 4 + _count_bits(version) + 8 * length <= capacity_bits:
            return version
    return None


def _count_bits(version: int) -> int:
    return 8 if version < 10 else 16


def _codewords(payload: bytes, version: int) -> bytes:
    """Data codewords (mode, count, bytes, terminator, padding) with their error correction,
    interleaved as the symbol stores them."""
    ec_length, groups = _BLOCKS_M[version]
    capacity = sum(count * size for count, size in groups)
    count_bits = _count_bits(version)
    bit_length = 4 + count_bits + 8 * len(payload)
    value = (0b0100 << count_bits | len(payload)) << 8 * len(payload) | int.from_bytes(payload, "big")
    # Terminator (up to four zero bits), then zero bits to the next byte boundary.
    padded_length = min(bit_length + 4, capacity * 8)
    padded_length += -padded_length % 8
    data = bytearray((value << (padded_length - bit_length)).to_bytes(padded_length // 8, "big"))
    for index in range(capacity - len(data)):
        data.append(_PAD_CODEWORDS[index % 2])

    blocks: list[bytes] = []
    start = 0
    for count, size in groups:
        for _ in range(count):
            blocks.append(bytes(data[start : start + size]))
            start += size
    generator = _generator_rows(ec_length)
    ec_blocks = [_remainder(block, generator, ec_length) for block in blocks]
    out = bytearray()
    for index in range(max(len(block) for block in blocks)):
        out.extend(block[index] for block in blocks if index < len(block))
    for index in range(ec_length):
        out.extend(block[index] for block in ec_blocks)
    return bytes(out)


# GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
_EXP = [0] * 512
_LOG = [0] * 256
_value = 1
for _power in range(255):
    _EXP[_power] = _value
    _LOG[_value] = _power
    _value <<= 1
    if _value & 0x100:
        _value ^= 0x11D
for _power in range(255, 512):
    _EXP[_power] = _EXP[_power - 255]


def _multiply(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


@functools.cache
def _generator_rows(degree: int) -> tuple[int, ...]:
    """For each byte value f, f times the generator polynomial's lower coefficients, packed into
    one integer (highest coefficient first), so a division step is one shift and one XOR."""
    coefficients = [1]
    for power in range(degree):
        root = _EXP[power]
        # Multiply by (x - root); subtraction is XOR in GF(256).
        coefficients = [
            (coefficients[i] if i < len(coefficients) else 0)
            ^ (_multiply(coefficients[i - 1], root) if i > 0 else 0)
            for i in range(len(coefficients) + 1)
        ]
    lower = coefficients[1:]
    return tuple(
        int.from_bytes(bytes(_multiply(coefficient, factor) for coefficient in lower), "big")
        for factor in range(256)
    )


def _remainder(block: bytes, generator: tuple[int, ...], degree: int) -> bytes:
    remainder = 0
    top_shift = 8 * (degree - 1)
    keep = (1 << 8 * degree) - 1
    for byte in block:
        factor = byte ^ (remainder >> top_shift)
        remainder = ((remainder << 8) & keep) ^ generator[factor]
    return remainder.to_bytes(degree, "big")


@dataclass(frozen=True)
class _Layout:
    """A version's function patterns, and where each data bit goes with the mask applied."""

    size: int
    base: bytes
    # Flat indexes (row * size + column) of the data modules, in the order bits fill them.
    positions: tuple[int, ...]
    # The mask over those modules as one integer, first module in the highest bit.
    mask_bits: int

    def place(self, codewords: bytes) -> list[bytes]:
        count = len(self.positions)
        bits = int.from_bytes(codewords, "big") << (count - 8 * len(codewords))
        # Remainder modules past the last codeword hold zero bits before masking.
        text = format(bits ^ self.mask_bits, f"0{count}b").encode("ascii")
        matrix = bytearray(self.base)
        for position, bit in zip(self.positions, text, strict=True):
            matrix[position] = bit - 48
        size = self.size
        return [bytes(matrix[start : start + size]) for start in range(0, size * size, size)]


@functools.cache
def _layout(version: int, mask: int) -> _Layout:
    size = 17 + 4 * version
    dark = [[0] * size for _ in range(size)]
    reserved = [[False] * size for _ in range(size)]

    def put(row: int, col: int, value: int) -> None:
        dark[row][col] = value
        reserved[row][col] = True

    for centre_row, centre_col in ((3, 3), (3, size - 4), (size - 4, 3)):
        for row in range(centre_row - 4, centre_row + 5):
            for col in range(centre_col - 4, centre_col + 5):
                if 0 <= row < size and 0 <= col < size:
                    ring = max(abs(row - centre_row), abs(col - centre_col))
                    put(row, col, int(ring not in (2, 4)))
    for index in range(8, size - 8):
        put(6, index, int(index % 2 == 0))
        put(index, 6, int(index % 2 == 0))
    centres = _ALIGNMENT_CENTRES[version]
    corners = {(6, 6), (6, size - 7), (size - 7, 6)}
    for centre_row in centres:
        for centre_col in centres:
            if (centre_row, centre_col) in corners:
                continue  # where the finder patterns are
            for row in range(centre_row - 2, centre_row + 3):
                for col in range(centre_col - 2, centre_col + 3):
                    ring = max(abs(row - centre_row), abs(col - centre_col))
                    put(row, col, int(ring != 1))

    format_bits = _format_bits(mask)
    for index in range(15):
        bit = (format_bits >> index) & 1
        # Around the top-left finder pattern...
        if index < 6:
            put(index, 8, bit)
        elif index < 8:
            put(index + 1, 8, bit)
        elif index == 8:
            put(8, 7, bit)
        else:
            put(8, 14 - index, bit)
        # ...and split between the other two.
        if index < 8:
            put(8, size - 1 - index, bit)
        else:
            put(size - 15 + index, 8, bit)
    put(size - 8, 8, 1)
    if version >= 7:
        version_bits = _version_bits(version)
        for index in range(18):
            bit = (version_bits >> index) & 1
            put(index // 3, size - 11 + index % 3, bit)
            put(size - 11 + index % 3, index // 3, bit)

    positions: list[int] = []
    mask_bits = 0
    is_masked = _MASKS[mask]
    right = size - 1
    while right >= 1:
        if right == 6:
            right = 5  # the vertical timing pattern takes a whole column
        upward = (right + 1) & 2 == 0
        for step in range(size):
            row = size - 1 - step if upward else step
            for col in (right, right - 1):
                if not reserved[row][col]:
                    positions.append(row * size + col)
                    mask_bits = mask_bits << 1 | int(is_masked(row, col))
        right -= 2
    base = bytes(value for row in dark for value in row)
    return _Layout(size, base, tuple(positions), mask_bits)


def _bch(value: int, generator: int, degree: int) -> int:
    remainder = value << degree
    for shift in range(remainder.bit_length() - 1, degree - 1, -1):
        if remainder >> shift & 1:
            remainder ^= generator << (shift - degree)
    return value << degree | remainder


def _format_bits(mask: int) -> int:
    return _bch(_ERROR_LEVEL_M_BITS << 3 | mask, 0x537, 10) ^ 0x5412


def _version_bits(version: int) -> int:
    return _bch(version, 0x1F25, 12)
