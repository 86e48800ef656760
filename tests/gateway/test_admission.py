"""Admission control: the adaptive limit, bulkheads, the stamp gate and the waiting room."""

import asyncio
import time

import pytest

from services.gateway.admission import (
    Bulkhead,
    GradientLimit,
    Overloaded,
    Partition,
    SaturatedRate,
    StampGate,
    retry_after_for,
)
from services.gateway.waiting_room import Ticket, TicketSigner, TurnedAway, WaitingRoom


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def feed(
    limit: GradientLimit, clock: Clock, rtt_s: float, windows: int, in_flight: int | None = None
) -> None:
    for _ in range(windows):
        for _ in range(8):
            limit.sample(rtt_s, limit.limit if in_flight is None else in_flight)
        clock.now += 0.3


def test_gradient_limit_grows_while_latency_holds_and_shrinks_when_it_climbs() -> None:
    clock = Clock()
    limit = GradientLimit(initial=8, min_limit=2, max_limit=64, clock=clock)
    feed(limit, clock, 0.010, windows=40)
    grown = limit.limit
    assert grown > 8
    # Requests now queue behind us: round trips triple, and the limit backs off.
    feed(limit, clock, 0.030, windows=40)
    assert limit.limit < grown
    assert limit.limit >= 2


def test_gradient_limit_does_not_grow_when_the_service_is_mostly_idle() -> None:
    clock = Clock()
    limit = GradientLimit(initial=8, min_limit=2, max_limit=64, clock=clock)
    feed(limit, clock, 0.010, windows=40, in_flight=1)
    assert limit.limit == 8


def test_gradient_limit_stays_within_its_bounds() -> None:
    clock = Clock()
    limit = GradientLimit(initial=4, min_limit=3, max_limit=6, clock=clock)
    feed(limit, clock, 0.010, windows=100)
    assert limit.limit == 6
    feed(limit, clock, 1.0, windows=100)
    assert limit.limit == 3
    with pytest.raises(ValueError):
        GradientLimit(initial=1, min_limit=2, max_limit=4)


def test_retry_after_follows_the_recent_rate() -> None:
    assert retry_after_for(100, 50.0) == 2
    assert retry_after_for(1, 1000.0) == 1
    assert retry_after_for(10_000, 1.0) == 60
    assert retry_after_for(5, 0.0) == 60


async def test_bulkhead_queues_first_come_first_served_then_refuses() -> None:
    bulkhead = Bulkhead("purchases", limit=2, queue_size=2, queue_timeout_s=5)
    release = asyncio.Event()
    order: list[int] = []

    async def request(n: int) -> None:
        async with bulkhead.slot():
            order.append(n)
            await release.wait()

    running = [asyncio.create_task(request(n)) for n in range(4)]
    await asyncio.sleep(0.01)
    assert bulkhead.in_flight == 2 and bulkhead.queued == 2
    with pytest.raises(Overloaded) as refused:
        await bulkhead.acquire()
    assert refused.value.retry_after_s >= 1
    assert bulkhead.stats.rejected == 1
    release.set()
    await asyncio.gather(*running)
    assert order == [0, 1, 2, 3]
    assert bulkhead.in_flight == 0 and bulkhead.queued == 0


async def test_bulkhead_wait_runs_out_and_a_cancelled_waiter_leaks_nothing() -> None:
    bulkhead = Bulkhead("verification", limit=1, queue_size=5, queue_timeout_s=0.05)
    hold = asyncio.Event()

    async def busy() -> None:
        async with bulkhead.slot():
            await hold.wait()

    holder = asyncio.create_task(busy())
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await bulkhead.acquire()
    assert bulkhead.stats.timed_out == 1

    cancelled = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    hold.set()
    await holder
    assert bulkhead.in_flight == 0 and bulkhead.queued == 0
    async with bulkhead.slot():
        assert bulkhead.in_flight == 1


def fixed_gate(
    limit: int, retail_queue: int = 4, distributor_queue: int = 4, timeout: float = 5
) -> StampGate:
    return StampGate(
        GradientLimit(initial=limit, min_limit=limit, max_limit=limit),
        [
            Partition("retail", 0.5, retail_queue, timeout),
            Partition("distributor", 0.5, distributor_queue, timeout),
        ],
    )


async def test_stamp_gate_lends_idle_capacity_and_takes_it_back_for_the_guaranteed_share() -> None:
    gate = fixed_gate(4)
    # A distributor batch borrows the whole limit while retail is quiet.
    batch = [await gate.enter("distributor") for _ in range(4)]
    assert gate.in_flight == 4
    queued_batch = asyncio.create_task(gate.enter("distributor"))
    await asyncio.sleep(0)
    retail = asyncio.create_task(gate.enter("retail", arrived_at=time.time() + 1))
    await asyncio.sleep(0)
    # The next free slot goes to retail, which is under its share, though the batch item came first.
    batch.pop().release()
    await asyncio.sleep(0)
    assert retail.done() and not queued_batch.done()
    batch.pop().release()
    await asyncio.sleep(0)
    assert queued_batch.done()
    for slot in [*batch, retail.result(), queued_batch.result()]:
        slot.release()
    assert gate.in_flight == 0


class RecordedLimit(GradientLimit):
    """The adaptive limit, keeping the round trips it is fed."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(initial=4, min_limit=4, max_limit=4, clock=clock)
        self.round_trips: list[float] = []

    def sample(self, rtt_s: float, in_flight: int) -> None:
        self.round_trips.append(rtt_s)
        super().sample(rtt_s, in_flight)


async def test_a_stamps_round_trip_is_its_signing_and_a_slot_that_never_signed_gives_no_sample() -> None:
    clock = Clock()
    limit = RecordedLimit(clock)
    gate = StampGate(limit, [Partition("retail", 1.0, 4, 5)], clock=clock)
    # Admitted before its upload was read: 6 s of a slow connection, then 0.2 s of stamping.
    uploaded = await gate.enter("retail")
    clock.now += 6.0
    uploaded.start_timing()
    clock.now += 0.2
    uploaded.release()
    # Admitted, then refused before signing (a wrong PIN, no quota, a replay): no sample.
    refused = await gate.enter("retail")
    clock.now += 3.0
    refused.release()
    assert limit.round_trips == [pytest.approx(0.2)]
    assert gate.in_flight == 0


async def test_stamp_gate_serves_the_earliest_arrival_and_an_earlier_one_takes_a_later_ones_place() -> None:
    gate = fixed_gate(1, retail_queue=2)
    first = await gate.enter("retail")
    now = time.time()
    late = asyncio.create_task(gate.enter("retail", arrived_at=now + 20))
    later = asyncio.create_task(gate.enter("retail", arrived_at=now + 30))
    await asyncio.sleep(0)
    # Queue full; a ticket holder who arrived before both comes back and takes the latest's place.
    early = asyncio.create_task(gate.enter("retail", arrived_at=now + 10))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as evicted:
        await later
    assert evicted.value.arrived_at == now + 30
    # And a newcomer arriving after everyone is refused at once.
    with pytest.raises(Overloaded):
        await gate.enter("retail", arrived_at=now + 40)
    first.release()
    await asyncio.sleep(0)
    assert early.done() and not late.done()
    early.result().release()
    await asyncio.sleep(0)
    late.result().release()
    assert gate.in_flight == 0 and gate.stats["retail"].evicted == 1


def test_tickets_are_bound_to_their_account_and_request_and_expire() -> None:
    signer = TicketSigner(b"k" * 32)
    text = signer.issue("acct-1", Ticket(arrived_at=100.25, expires_at=200, nonce="abc"), request_key="key-1")
    read = signer.read("acct-1", text, now=150, request_key="key-1")
    assert read is not None and read.arrived_at == 100.25
    assert signer.read("acct-2", text, now=150, request_key="key-1") is None
    # Another document's request.
    assert signer.read("acct-1", text, now=150, request_key="key-2") is None
    assert signer.read("acct-1", text, now=150, request_key="") is None
    assert signer.read("acct-1", text, now=201, request_key="key-1") is None
    assert signer.read("acct-1", text.replace("100250", "100000"), now=150, request_key="key-1") is None
    assert TicketSigner(b"x" * 32).read("acct-1", text, now=150, request_key="key-1") is None
    assert signer.read("acct-1", "garbage", now=150, request_key="key-1") is None
    # The key is the caller's text: a separator in it cannot shift the account's part of the MAC.
    shifted = signer.issue("acct-1", Ticket(arrived_at=1, expires_at=200, nonce="abc"), request_key="x|y")
    assert signer.read("acct-1", shifted, now=150, request_key="x|y") is not None
    assert signer.read("acct-1|x", shifted, now=150, request_key="y") is None


async def test_a_ticket_keeps_a_place_only_for_the_request_it_was_given_for() -> None:
    clock = Clock(time.time())
    gate = fixed_gate(1, retail_queue=0, timeout=5)
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail", clock=clock)
    inside = await room.enter("a", request_key="a-1")
    with pytest.raises(TurnedAway) as first:
        await room.enter("b", request_key="b-1")
    clock.now += 1
    with pytest.raises(TurnedAway) as second:
        await room.enter("c", request_key="c-1")
    assert (first.value.position, second.value.position) == (1, 2)
    clock.now += 1
    # "b" sends another document with the ticket of its first: it arrives now, behind "c".
    with pytest.raises(TurnedAway) as other_document:
        await room.enter("b", first.value.ticket, request_key="b-2")
    assert other_document.value.position == 3
    # The first document, sent again with its ticket, is still first in line.
    with pytest.raises(TurnedAway) as same_document:
        await room.enter("b", first.value.ticket, request_key="b-1")
    assert same_document.value.position == 1
    inside.release()
    (await room.enter("b", same_document.value.ticket, request_key="b-1")).release()


async def test_waiting_room_gives_places_in_line_and_keeps_them() -> None:
    clock = Clock(time.time())
    gate = fixed_gate(1, retail_queue=1, timeout=5)
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail", clock=clock)
    inside = await room.enter("a")
    queued = asyncio.create_task(room.enter("b"))
    await asyncio.sleep(0)
    turned_away: list[TurnedAway] = []
    for account in ("c", "d", "e"):
        clock.now += 1
        with pytest.raises(TurnedAway) as refused:
            await room.enter(account)
        turned_away.append(refused.value)
    assert [t.position for t in turned_away] == [2, 3, 4]
    assert all(t.retry_after_s >= 1 for t in turned_away)
    assert room.tickets_out == 3

    # "d" comes back first, but "c" arrived earlier and still holds a ticket.
    inside.release()
    await asyncio.sleep(0)
    queued.result().release()
    clock.now += 1
    slot_d = await room.enter("d", turned_away[1].ticket)
    # A newcomer now goes behind the tickets still out.
    with pytest.raises(TurnedAway) as newcomer:
        await room.enter("f")
    assert newcomer.value.position == 3
    # "c" comes back while "d" stamps: queued ahead of "e" and the newcomer.
    waiting_c = asyncio.create_task(room.enter("c", turned_away[0].ticket))
    await asyncio.sleep(0)
    with pytest.raises(TurnedAway) as later:
        await room.enter("e", turned_away[2].ticket)
    assert later.value.position == 2
    slot_d.release()
    await asyncio.sleep(0)
    assert waiting_c.done()
    waiting_c.result().release()
    # Someone else's ticket does not hold a place.
    with pytest.raises(TurnedAway) as borrowed:
        gate_busy = await room.enter("g")
        await room.enter("h", later.value.ticket)
    assert borrowed.value.position >= 2
    gate_busy.release()


async def test_waiting_room_forgets_tickets_nobody_came_back_with() -> None:
    clock = Clock(time.time())
    gate = fixed_gate(1, retail_queue=0)
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail", clock=clock)
    inside = await room.enter("a")
    with pytest.raises(TurnedAway) as refused:
        await room.enter("b")
    assert room.tickets_out == 1
    clock.now += refused.value.retry_after_s + 31
    assert room.tickets_out == 0
    inside.release()
    # With capacity free, a newcomer walks straight in.
    (await room.enter("c")).release()


def test_the_wait_given_follows_capacity_even_when_nobody_is_being_served() -> None:
    clock = Clock()
    limit = GradientLimit(initial=10, min_limit=10, max_limit=10, clock=clock)
    gate = StampGate(limit, [Partition("retail", 1.0, 4, 5)])
    assert gate.retry_after(100) == 60
    # Stamps take 50 ms at a limit of 10: about 200 a second, so 1000 people ahead wait ~5 s.
    feed(limit, clock, 0.050, windows=3)
    assert limit.capacity_per_s == pytest.approx(200)
    assert gate.retry_after(1000) == 5


async def test_the_waiting_room_queues_about_two_seconds_of_stamping_and_times_the_rest() -> None:
    clock = Clock()
    limit = GradientLimit(initial=10, min_limit=10, max_limit=10, clock=clock)
    gate = StampGate(limit, [Partition("retail", 1.0, 4096, 30)])
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail")
    inside = [await room.enter(f"in-{n}") for n in range(10)]

    # Before any stamp is done the capacity is unknown: a short queue, and come back in a second
    # (not the longest wait, which would leave the signers idle once they are free).
    early = [asyncio.create_task(room.enter(f"early-{n}")) for n in range(64)]
    await asyncio.sleep(0)
    with pytest.raises(TurnedAway) as unknown:
        await room.enter("unknown")
    assert unknown.value.retry_after_s == 1

    # Stamps take 50 ms at a limit of 10: 200 a second, so the queue takes 400.
    feed(limit, clock, 0.050, windows=3)
    assert room.room() == 400
    more = [asyncio.create_task(room.enter(f"more-{n}")) for n in range(400 - 64 - 1)]
    await asyncio.sleep(0)
    assert gate.queued("retail") == 399
    waits = []
    for n in range(1000):
        with pytest.raises(TurnedAway) as refused:
            await room.enter(f"late-{n}")
        waits.append((refused.value.position, refused.value.retry_after_s))
    # Everyone beyond the room is told when the ones ahead will have gone in, at 200 a second.
    assert waits[0] == (401, 1)
    assert waits[599] == (1000, 3)
    assert waits[-1] == (1400, 5)
    assert [w for _, w in waits] == sorted(w for _, w in waits)

    for task in [*early, *more]:
        task.cancel()
    await asyncio.gather(*early, *more, return_exceptions=True)
    # Those who left the queue are out of it, not counted as still waiting.
    assert gate.queued("retail") == 0
    for slot in inside:
        slot.release()
    assert gate.in_flight == 0


async def test_a_waiter_that_gave_up_is_passed_over_when_a_slot_frees_or_a_ticket_takes_its_place() -> None:
    gate = fixed_gate(1, retail_queue=1)
    inside = await gate.enter("retail")
    now = time.time()
    leaving = asyncio.create_task(gate.enter("retail", arrived_at=now + 10))
    await asyncio.sleep(0)
    # Its caller goes away: the waiter's future is cancelled at once, but it leaves the queue only
    # when its task runs again. In between, an earlier arrival wants its place...
    leaving.cancel()
    early = asyncio.create_task(gate.enter("retail", arrived_at=now + 5))
    # ...and the slot frees.
    inside.release()
    await asyncio.sleep(0)
    assert leaving.cancelled()
    slot = await early
    assert gate.in_flight == 1 and gate.queued("retail") == 0
    slot.release()
    assert gate.in_flight == 0


def test_the_saturated_rate_counts_only_while_others_wait_and_keeps_the_best_recent_window() -> None:
    clock = Clock()
    rate = SaturatedRate(window_s=1.0, windows=3, clock=clock)
    # Nobody waiting: finishing slowly says nothing about capacity.
    for _ in range(10):
        clock.now += 0.5
        rate.finished(others_waiting=False)
    assert rate.per_second == 0
    # A queue stands: 100 a second, then 50 a second while something else takes the CPU.
    for per_s in (100, 50):
        for _ in range(per_s):
            clock.now += 1 / per_s
            rate.finished(others_waiting=True)
    assert rate.per_second == pytest.approx(100, rel=0.05)
    # Three slow windows later the fast one has aged out.
    for _ in range(150):
        clock.now += 1 / 50
        rate.finished(others_waiting=True)
    assert rate.per_second == pytest.approx(50, rel=0.05)


async def test_a_ticket_holder_too_far_back_to_be_served_in_time_is_given_a_new_time_not_a_timeout() -> None:
    clock = Clock()
    limit = GradientLimit(initial=10, min_limit=10, max_limit=10, clock=clock)
    gate = StampGate(limit, [Partition("retail", 1.0, 4096, 5)])
    arrivals = Clock(time.time())
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail", clock=arrivals)
    feed(limit, clock, 0.050, windows=3)
    # 200 a second and 5 s before a queued stamp times out: 600 may stand ahead of a holder.
    assert room.served_in_time() == 600
    inside = [await room.enter(f"in-{n}") for n in range(10)]
    queued = []
    for n in range(400):
        arrivals.now += 0.001
        queued.append(asyncio.create_task(room.enter(f"new-{n}")))
        await asyncio.sleep(0)
    tickets = []
    for n in range(300):
        arrivals.now += 0.001
        with pytest.raises(TurnedAway) as refused:
            await room.enter(f"late-{n}")
        tickets.append(refused.value.ticket)
    back = [asyncio.create_task(room.enter(f"late-{n}", tickets[n])) for n in range(200)]
    await asyncio.sleep(0)
    assert gate.queued("retail") == 600
    with pytest.raises(TurnedAway) as again:
        await room.enter("late-200", tickets[200])
    assert again.value.position == 601 and again.value.retry_after_s == 2
    for task in [*queued, *back]:
        task.cancel()
    await asyncio.gather(*queued, *back, return_exceptions=True)
    for slot in inside:
        slot.release()


async def test_the_return_rate_falls_while_the_queue_overflows_and_rises_while_people_are_away() -> None:
    clock = Clock()
    limit = GradientLimit(initial=10, min_limit=10, max_limit=10, clock=clock)
    gate = StampGate(limit, [Partition("retail", 1.0, 4096, 5)])
    wall = Clock(time.time())
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail", clock=wall)
    feed(limit, clock, 0.050, windows=3)
    # It starts from the gate's estimate: 10 in flight, 50 ms each.
    assert room.return_rate == pytest.approx(200)
    inside = [await room.enter(f"in-{n}") for n in range(10)]
    # More wait in the queue than the gate passes in 60% of their 5 s queue time: people come back
    # faster than the gate passes them, so the rate falls, a fifth a second.
    queued = [asyncio.create_task(gate.enter("retail")) for _ in range(1000)]
    await asyncio.sleep(0)
    for expected in (160, 128):
        wall.now += 1.0
        assert room.return_rate == pytest.approx(expected)
    for task in queued:
        task.cancel()
    await asyncio.gather(*queued, return_exceptions=True)
    # Someone is away with a ticket (the queue held its room when they came)...
    waiting = [asyncio.create_task(room.enter(f"queued-{n}")) for n in range(room.room())]
    await asyncio.sleep(0)
    with pytest.raises(TurnedAway):
        await room.enter("away")
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    # ...while the queue is empty and the gate has room: call people back sooner.
    inside.pop().release()
    wall.now += 1.0
    assert room.return_rate == pytest.approx(160)
    for slot in inside:
        slot.release()


async def test_long_waits_once_the_pace_is_measured_with_a_queue_standing() -> None:
    clock = Clock()
    limit = GradientLimit(initial=1, min_limit=1, max_limit=1, clock=clock)
    gate = StampGate(limit, [Partition("retail", 1.0, 4096, 30)], clock=clock)
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail")
    slot = await gate.enter("retail")
    # Before: the pace is the limit's guess (100 a second), and nobody is sent away for more than
    # a minute, however far back.
    feed(limit, clock, 0.010, windows=3)
    assert room.return_rate == pytest.approx(100)
    assert room.wait_for(20_000) == 60
    # 100 stamps a second pass with one always waiting behind: that is measured.
    for _ in range(250):
        waiting = asyncio.create_task(gate.enter("retail"))
        await asyncio.sleep(0)
        clock.now += 0.01
        slot.release()
        slot = await waiting
    assert gate.passed_per_s == pytest.approx(100, rel=0.05)
    # Now the wait is the whole of it: 20 000 people, less the queue's 2 s, at 100 a second.
    assert room.wait_for(20_000) == pytest.approx(198, abs=3)
    slot.release()


async def test_the_return_rate_rises_no_further_than_twice_the_gates_estimate_and_rests_on_it_after() -> None:
    clock = Clock()
    limit = GradientLimit(initial=10, min_limit=10, max_limit=10, clock=clock)
    gate = StampGate(limit, [Partition("retail", 1.0, 4096, 5)], clock=clock)
    wall = Clock(time.time())
    room = WaitingRoom(gate, TicketSigner(b"k" * 32), "retail", clock=wall)
    feed(limit, clock, 0.050, windows=3)
    assert room.return_rate == pytest.approx(200)
    inside = [await room.enter(f"in-{n}") for n in range(10)]
    waiting = [asyncio.create_task(room.enter(f"queued-{n}")) for n in range(room.room())]
    await asyncio.sleep(0)
    with pytest.raises(TurnedAway) as away:
        await room.enter("away")
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    for slot in inside:
        slot.release()
    # Someone away while the gate idles, for a long while: the rate rises, up to twice the gate's
    # estimate (about 200: the stamps just released were quick, so a little more).
    estimate = gate.capacity_per_s
    assert 190 < estimate < 250
    for _ in range(20):
        wall.now += 1.0
        rate = room.return_rate
    assert rate == pytest.approx(2 * estimate)
    # Once their ticket has run out nobody is waiting, and the rate is the gate's again.
    wall.now += away.value.retry_after_s + 31
    assert room.tickets_out == 0
    wall.now += 1.0
    assert room.return_rate == pytest.approx(estimate)
