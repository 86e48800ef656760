"""Identifiers that only tell things apart: request ids, waiting-room ticket nonces.

Nothing is guarded by guessing one (a ticket's MAC, made with the key the replicas share, is what
cannot be forged), so they come from a generator seeded once per process rather than from the
system's random source, a system call for each of a surge's thousands of requests a second
(uuid4 and secrets were 3% of the gateway's CPU each in a surge's arrivals).
"""

from __future__ import annotations

import os
import random

_generator = random.Random()
# A forked child must not repeat its parent's sequence.
os.register_at_fork(after_in_child=_generator.seed)


def distinct_hex(bits: int) -> str:
    """`bits` random bits as lower-case hex, zero-padded to a fixed length."""
    return f"{_generator.getrandbits(bits):0{(bits + 3) // 4}x}"
