"""The waiting room for retail stamping: over capacity, a user is told their place in line and
when to come back, and keeps that place with a signed, expiring ticket.

A ticket carries the time its holder first arrived. Coming back with it, they are served before
anyone who arrived later: in the stamp gate's queue, ahead of later arrivals (and in place of the
latest one when the queue is full), and newcomers are sent to the back while tickets are out.
Tickets are bound to the account and to the request's Idempotency-Key, so a ticket cannot be
passed on, nor keep a place for another document than the one it was given for (a retry of the
same request carries the same key). They are signed with a key every gateway replica shares, so
any replica honours any replica's ticket; the count of tickets out, and so the position a user is
shown, is each replica's own.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import heapq
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.gateway.admission import RETAIL, Overloaded, StampGate, StampSlot
from services.gateway.ids import distinct_hex

TICKET_HEADER = "Waiting-Room-Ticket"
# How long after its Retry-After a ticket still holds its place.
GRACE_S = 30.0
# Newcomers may queue while the queue holds less than about this much stamping; the rest are
# given a time to come back. Retry-After is a whole number of seconds, so everyone told the same
# number comes back in the same second: the queue must take a second's worth and more.
ROOM_S = 2.0
# A returning ticket holder queues if the gate would pass everyone ahead within this part of the
# queue's time limit.
PATIENCE = 0.6
# The room before the gate's capacity is known (the first stamps of a surge are not done yet).
FIRST_ROOM = 64
# The longest wait the room gives: a surge can be minutes deep. While the pace waits are computed at
# is only an estimate, whoever is further back comes back within a minute and is given a new wait at
# the pace learnt meanwhile (keeping their place in line). The pace counts as measured within
# MEASURED times what the gate has passed with a queue standing. Ten minutes, the longest the web
# page waits before it tries again.
MAX_WAIT_S = 600
UNMEASURED_MAX_WAIT_S = 60
MEASURED = 1.5
# How often, and by how much, the return rate is steered (WaitingRoom.return_rate).
STEER_S = 1.0
STEER_UP = 1.25
STEER_DOWN = 0.8
STEER_CEILING = 2.0


class TurnedAway(Overloaded):
    """Over capacity: come back after retry_after_s with `ticket`; `position` people are ahead,
    counting this one."""

    def __init__(self, retry_after_s: int, arrived_at: float, ticket: str, position: int) -> None:
        super().__init__(
            f"many people are stamping right now; you are number {position} in line. "
            f"Your place is kept: try again in {retry_after_s} s with the waiting-room ticket",
            retry_after_s,
            arrived_at,
        )
        self.ticket = ticket
        self.position = position


@dataclass(frozen=True)
class Ticket:
    arrived_at: float
    expires_at: float
    nonce: str


class TicketSigner:
    """`<arrived ms>.<expires s>.<nonce>.<mac>`; the MAC covers the account it was issued to and the
    request's Idempotency-Key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, account_id: str, request_key: str, body: str) -> str:
        # The key's length first: it is the caller's text, and must not run into the body.
        signed = f"{account_id}|{len(request_key)}:{request_key}|{body}"
        digest = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()

    def issue(self, account_id: str, ticket: Ticket, *, request_key: str) -> str:
        body = f"{round(ticket.arrived_at * 1000)}.{int(ticket.expires_at)}.{ticket.nonce}"
        return f"{body}.{self._mac(account_id, request_key, body)}"

    def read(self, account_id: str, text: str, now: float, *, request_key: str) -> Ticket | None:
        """The ticket, if it is well formed, issued to this account for this request key and not
        expired; else None."""
        if len(text) > 200:
            return None
        body, _, mac = text.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            return None
        if not hmac.compare_digest(self._mac(account_id, request_key, body), mac):
            return None
        ticket = Ticket(int(parts[0]) / 1000, float(parts[1]), parts[2])
        return ticket if ticket.expires_at >= now else None


class WaitingRoom:
    """Admits retail stamps through the gate's `partition`, turning the rest away with tickets."""

    def __init__(
        self,
        gate: StampGate,
        signer: TicketSigner,
        partition: str = RETAIL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._gate = gate
        self._signer = signer
        self._partition = partition
        self._queue_size = gate.partitions[partition].queue_size
        self._queue_timeout_s = gate.partitions[partition].queue_timeout_s
        self._clock = clock
        # Tickets out: sorted by arrival, for positions; by expiry, to forget no-shows.
        self._by_arrival: list[tuple[float, str]] = []
        self._by_expiry: list[tuple[float, float, str]] = []
        self._out: dict[str, float] = {}
        # Turned away by the room itself, before the gate; the gate counts its own refusals.
        self.turned_away = 0
        self._rate = 0.0
        self._steered_at = clock()

    @property
    def tickets_out(self) -> int:
        self._forget_expired()
        return len(self._out)

    @property
    def return_rate(self) -> float:
        """How many people a second the room calls back: the pace its waits are computed at.

        Steered, not only measured: in a surge the first seconds are the slowest (everyone
        arrives at once and must be answered), so a rate measured then would send people away for
        far too long, and one guessed too high brings them back to be sent away again, at a cost
        of its own. So every STEER_S: when people are away while the gate could take more, the rate
        rises (to at most twice the gate's own estimate); when more stand in the queue than the gate
        passes before their queue time runs out, it falls; and it is never below what the gate has
        shown it passes with a queue standing. With nobody waiting it is the gate's estimate.
        It starts from the gate's capacity estimate; 0 while nothing is known."""
        self._steer()
        return self._rate

    def _steer(self) -> None:
        now = self._clock()
        if self._rate > 0 and now - self._steered_at < STEER_S:
            return
        self._steered_at = now
        queued = self._gate.queued(self._partition)
        estimate = self._gate.capacity_per_s
        if self._rate <= 0 or (not self._out and queued == 0):
            # Nothing steered yet, or nobody waiting (no surge to steer through): follow the gate.
            self._rate = estimate or self._rate
            return
        if self._out and queued == 0 and not self._gate.would_wait(self._partition):
            self._rate *= STEER_UP
        elif queued > self._served_in_time_at(self._rate):
            # Returning holders find more ahead of them than the gate passes before their queue
            # time runs out: they come back faster than it passes them.
            self._rate *= STEER_DOWN
        # Rising only corrects a low start: never far above what the gate itself reckons.
        ceiling = STEER_CEILING * max(estimate, self._gate.limit.capacity_per_s)
        if ceiling > 0:
            self._rate = min(self._rate, ceiling)
        self._rate = max(self._rate, self._gate.passed_per_s)

    def _room_at(self, rate: float) -> int:
        if rate <= 0:
            return min(self._queue_size, FIRST_ROOM)
        return min(self._queue_size, max(1, round(rate * ROOM_S)))

    def room(self) -> int:
        """How many may wait in the gate's queue: about ROOM_S of stamping at the return rate."""
        return self._room_at(self.return_rate)

    def served_in_time(self) -> int:
        """How many may stand ahead of a returning ticket holder who queues: those the gate passes
        well within the queue's time limit. Further back, the holder is given a new time instead
        of timing out in the queue."""
        return self._served_in_time_at(self.return_rate)

    def _served_in_time_at(self, rate: float) -> int:
        room = self._room_at(rate)
        if rate <= 0:
            return room
        return min(self._queue_size, max(room, round(rate * self._queue_timeout_s * PATIENCE)))

    async def enter(self, account_id: str, ticket_text: str = "", *, request_key: str = "") -> StampSlot:
        """A slot for the stamp request `request_key` (its Idempotency-Key) of `account_id`, or
        TurnedAway with a ticket for that request. A ticket given for another request, or another
        account, counts as none: its holder arrives now."""
        now = self._clock()
        self._forget_expired()
        self._steer()
        ticket = None
        if ticket_text:
            ticket = self._signer.read(account_id, ticket_text, now, request_key=request_key)
        if ticket is None:
            arrived = now
            # A newcomer goes to the back: behind the queue and every ticket still out.
            if self._gate.would_wait(self._partition) and (
                self._gate.queued(self._partition) + len(self._out) >= self._room_at(self._rate)
            ):
                self.turned_away += 1
                raise self._turn_away(account_id, request_key, arrived)
        else:
            arrived = ticket.arrived_at
            self._redeem(ticket.nonce)
            if self._gate.would_wait(self._partition) and (
                self._gate.queued_before(self._partition, arrived) >= self._served_in_time_at(self._rate)
            ):
                self.turned_away += 1
                raise self._turn_away(account_id, request_key, arrived)
        try:
            return await self._gate.enter(self._partition, arrived)
        except Overloaded as refused:
            raise self._turn_away(account_id, request_key, refused.arrived_at) from None

    def _turn_away(self, account_id: str, request_key: str, arrived: float) -> TurnedAway:
        now = self._clock()
        ahead = self._gate.queued_before(self._partition, arrived) + bisect.bisect_left(
            self._by_arrival, (arrived, "")
        )
        position = ahead + 1
        wait = self.wait_for(position)
        ticket = Ticket(arrived, now + wait + GRACE_S, distinct_hex(72))
        bisect.insort(self._by_arrival, (arrived, ticket.nonce))
        heapq.heappush(self._by_expiry, (ticket.expires_at, arrived, ticket.nonce))
        self._out[ticket.nonce] = arrived
        text = self._signer.issue(account_id, ticket, request_key=request_key)
        return TurnedAway(wait, arrived, text, position)

    def wait_for(self, position: int) -> int:
        """Seconds until `position` should find room in the queue: those ahead of it beyond the
        room, at the return rate. While nothing is known of the pace yet (no stamp has finished
        since the gateway started), a second: it will be known by then, and a guess would hold
        everyone to it for as long as the waits it gave."""
        rate = self.return_rate
        if rate <= 0:
            return 1
        beyond = position - self._room_at(rate)
        return max(1, min(self._longest_wait(rate), math.ceil(beyond / rate)))

    def _longest_wait(self, rate: float) -> int:
        """MAX_WAIT_S while the pace is backed by what the gate has passed with a queue standing
        (then a wait errs short, if at all: the rate is never below that); UNMEASURED_MAX_WAIT_S
        while it is an estimate, so a wrong one is corrected within it."""
        passed = self._gate.passed_per_s
        return MAX_WAIT_S if passed > 0 and rate <= MEASURED * passed else UNMEASURED_MAX_WAIT_S

    def _redeem(self, nonce: str) -> None:
        arrived = self._out.pop(nonce, None)
        if arrived is not None:
            self._drop(arrived, nonce)

    def _drop(self, arrived: float, nonce: str) -> None:
        at = bisect.bisect_left(self._by_arrival, (arrived, nonce))
        if at < len(self._by_arrival) and self._by_arrival[at] == (arrived, nonce):
            del self._by_arrival[at]

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._by_expiry and self._by_expiry[0][0] < now:
            _, arrived, nonce = heapq.heappop(self._by_expiry)
            if self._out.pop(nonce, None) is not None:
                self._drop(arrived, nonce)
