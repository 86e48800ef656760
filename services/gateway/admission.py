"""Admission control: what the gateway lets in when more arrives than it can serve.

The national service fell over because every request was accepted and then everything waited on
everything else. Here each kind of work has its own bulkhead (a concurrency limit and a bounded
queue), so a stamping surge cannot starve purchases or verification, and stamping itself runs
under an adaptive limit that follows what the signer pool can actually do:

- `GradientLimit` is a gradient-style limit (as in Netflix's concurrency-limits "Gradient2" and
  Envoy's adaptive concurrency filter): it compares the recent round-trip time of stamps with
  the long-run one and shrinks the limit when they grow apart (requests queue somewhere behind
  us), grows it while they stay close.
- `Bulkhead` is a fixed concurrency limit with a bounded first-come-first-served queue.
- `StampGate` admits stamps from every channel under one adaptive limit. Each channel (retail,
  distributor) has its own queue and a guaranteed share of the limit, and may borrow what the
  others leave idle. Waiters are served oldest first, by the time they first arrived, which a
  waiting-room ticket carries across attempts.

Nothing here sheds Commit or Release: admission happens once, before a hold exists, and the
slot is kept until the stamp is committed or released.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from services.common.errors import Exhausted

# The stamp gate's partitions: one per channel that stamps.
RETAIL = "retail"
DISTRIBUTOR = "distributor"

# A queue wait never tells a client to come back sooner or later than this.
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60


class Overloaded(Exhausted):
    """Over capacity: the request was not started and may be sent again after retry_after_s.

    arrived_at is when the request first arrived (a waiting-room ticket's time when it came
    with one), so a later attempt keeps its place in line.
    """

    def __init__(self, message: str, retry_after_s: int, arrived_at: float) -> None:
        super().__init__(message, retry_after_s)
        self.arrived_at = arrived_at


class GradientLimit:
    """An adaptive concurrency limit fed with the round-trip time of each finished request.

    Samples are averaged over short windows. The long-run RTT follows those windows down at once
    and up over about `long_window` of them; gradient = tolerance * long / short, clamped to
    [0.5, 1]. While the gradient is 1 the limit grows by sqrt(limit) (not while fewer than half
    the slots are used); below 1 it shrinks to limit * gradient. Each step is smoothed, and the
    limit stays within [min_limit, max_limit].
    """

    def __init__(
        self,
        *,
        initial: int = 8,
        min_limit: int = 2,
        max_limit: int = 256,
        tolerance: float = 1.5,
        smoothing: float = 0.2,
        long_window: int = 600,
        window_s: float = 0.25,
        window_samples: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= min_limit <= initial <= max_limit:
            raise ValueError("need 1 <= min_limit <= initial <= max_limit")
        self._limit = float(initial)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self._tolerance = tolerance
        self._smoothing = smoothing
        self._long_weight = 2.0 / (long_window + 1)
        self._window_s = window_s
        self._window_samples = window_samples
        self._clock = clock
        self._long_rtt = 0.0
        self._quickest_rtt = math.inf
        self._window_started = clock()
        self._window_sum = 0.0
        self._window_count = 0
        self._window_peak_in_flight = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def capacity_per_s(self) -> float:
        """Stamps a second the limit allows at the long-run round-trip time; before the first
        window is complete, at the quickest round trip seen; 0 before any sample."""
        if self._long_rtt > 0:
            return self._limit / self._long_rtt
        return self._limit / self._quickest_rtt if self._quickest_rtt < math.inf else 0.0

    def sample(self, rtt_s: float, in_flight: int) -> None:
        """One finished request: its round-trip time and the requests in flight when it ended."""
        if rtt_s > 0:
            self._quickest_rtt = min(self._quickest_rtt, rtt_s)
        self._window_sum += rtt_s
        self._window_count += 1
        self._window_peak_in_flight = max(self._window_peak_in_flight, in_flight)
        now = self._clock()
        if self._window_count < self._window_samples or now - self._window_started < self._window_s:
            return
        short_rtt = self._window_sum / self._window_count
        peak = self._window_peak_in_flight
        self._window_started, self._window_sum, self._window_count = now, 0.0, 0
        self._window_peak_in_flight = 0
        self._update(short_rtt, peak)

    def _update(self, short_rtt: float, in_flight: int) -> None:
        if short_rtt <= 0:
            return
        if self._long_rtt == 0 or short_rtt < self._long_rtt:
            # Down fast, up slowly: the long RTT stays near what an unqueued stamp takes, so a
            # queue that builds up slowly is still seen as one.
            self._long_rtt = short_rtt if self._long_rtt == 0 else (self._long_rtt + short_rtt) / 2
        else:
            self._long_rtt += self._long_weight * (short_rtt - self._long_rtt)
        gradient = max(0.5, min(1.0, self._tolerance * self._long_rtt / short_rtt))
        if gradient >= 1.0:
            if in_flight < self._limit / 2:
                # An idle service says nothing about how much more it could take.
                return
            target = self._limit + math.sqrt(self._limit)
        else:
            target = self._limit * gradient
        smoothed = self._limit * (1 - self._smoothing) + target * self._smoothing
        self._limit = max(float(self.min_limit), min(float(self.max_limit), smoothed))


class Throughput:
    """Finished requests per second, as an exponential average over about `horizon_s`."""

    def __init__(self, horizon_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._horizon = horizon_s
        self._clock = clock
        self._rate = 0.0
        self._last = clock()
        self._count = 0

    def add(self) -> None:
        self._count += 1
        self._fold()

    def _fold(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed < 0.1:
            return
        weight = 1 - math.exp(-elapsed / self._horizon)
        self._rate += weight * (self._count / elapsed - self._rate)
        self._last, self._count = now, 0

    @property
    def per_second(self) -> float:
        self._fold()
        return self._rate


class SaturatedRate:
    """Requests finished per second while others stood waiting: what a limit really passes when
    it is full, whatever the bottleneck behind it (the signers, or a CPU shared with everything
    else). Counted over windows of `window_s` with a queue all along; the best of the last
    `windows` of them, since a wait given from a low guess keeps people away while capacity idles.
    """

    def __init__(
        self, window_s: float = 1.0, windows: int = 30, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=windows)
        self._since: float | None = None
        self._count = 0

    def finished(self, others_waiting: bool) -> None:
        now = self._clock()
        if not others_waiting:
            self._since = None
            return
        if self._since is None:
            self._since, self._count = now, 0
            return
        self._count += 1
        elapsed = now - self._since
        if elapsed >= self._window_s:
            self._recent.append(self._count / elapsed)
            self._since, self._count = now, 0

    @property
    def per_second(self) -> float:
        """0 until a whole window with a queue has been seen."""
        return max(self._recent, default=0.0)


def retry_after_for(ahead: int, per_second: float) -> int:
    """Seconds until about `ahead` requests have been served at the recent rate."""
    if per_second <= 0:
        return MAX_RETRY_AFTER_S if ahead else MIN_RETRY_AFTER_S
    return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, math.ceil(ahead / per_second)))


@dataclass
class BulkheadStats:
    admitted: int = 0
    rejected: int = 0
    timed_out: int = 0


class Bulkhead:
    """At most `limit` requests at once; up to `queue_size` more wait, first come first served,
    for at most `queue_timeout_s`. Beyond that a request is refused at once with Overloaded."""

    def __init__(self, name: str, limit: int, queue_size: int, queue_timeout_s: float) -> None:
        if limit < 1 or queue_size < 0 or queue_timeout_s <= 0:
            raise ValueError(f"bulkhead {name}: need limit >= 1, queue_size >= 0, a positive timeout")
        self.name = name
        self.limit = limit
        self.queue_size = queue_size
        self._queue_timeout = queue_timeout_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._done = Throughput()
        self.stats = BulkheadStats()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """A slot, now or after a wait in the queue; Overloaded when there is none. Pair with
        release(), or use `slot()`."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            self.stats.admitted += 1
            return
        if len(self._waiters) >= self.queue_size:
            self.stats.rejected += 1
            raise self._refusal()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._queue_timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as the wait ended: pass it on.
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                self.stats.timed_out += 1
                raise self._refusal() from None
            raise
        self.stats.admitted += 1

    def release(self) -> None:
        self._done.add()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # The slot passes straight to the waiter: in_flight stays as it is.
                waiter.set_result(None)
                return
        self.in_flight -= 1

    def _refusal(self) -> Overloaded:
        wait = retry_after_for(len(self._waiters) + 1, self._done.per_second)
        return Overloaded(f"too busy right now ({self.name}); try again shortly", wait, time.time())


@dataclass(frozen=True)
class Partition:
    """One channel's part of the stamp gate."""

    name: str
    # The part of the limit this channel can always have; it may borrow more when others idle.
    share: float
    queue_size: int
    queue_timeout_s: float


@dataclass(order=True)
class _Waiter:
    arrived_at: float
    seq: int
    partition: str = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


def _arrival(waiter: _Waiter) -> float:
    return waiter.arrived_at


@dataclass
class GateStats:
    admitted: int = 0
    rejected: int = 0
    timed_out: int = 0
    evicted: int = 0


class StampSlot:
    """A stamp's place in the gate, from admission until its hold is committed or released.

    The adaptive limit learns from the slot's round trip from start_timing (the signing, keeping
    and committing of its stamp) to release. A slot released without it (a refusal, a replay, an
    upload that never finished, a wrong PIN) gives no sample: how long a user's phone takes to
    send a PDF, or how fast a refusal is, says nothing of what the signers sustain, and would
    read as slow signers, or pull the long-run round trip down, and move the limit for nothing."""

    def __init__(self, gate: StampGate, partition: str) -> None:
        self._gate = gate
        self.partition = partition
        self._started: float | None = None
        self._released = False

    def start_timing(self) -> None:
        self._started = self._gate.clock()

    def release(self) -> None:
        if not self._released:
            self._released = True
            rtt = None if self._started is None else self._gate.clock() - self._started
            self._gate._finish(self.partition, rtt)


class StampGate:
    """Stamps in flight from every channel under one adaptive limit; see the module docstring.

    `arrived_at` orders the queues: a request that comes back with a waiting-room ticket keeps
    the time it first arrived, and may take the place of a later arrival in a full queue (which
    is then refused, to come back in turn).
    """

    def __init__(
        self, limit: GradientLimit, partitions: list[Partition], clock: Callable[[], float] = time.monotonic
    ) -> None:
        """clock: for the rates and round trips the gate measures."""
        self.clock = clock
        self.limit = limit
        self.partitions = {p.name: p for p in partitions}
        self.in_flight = 0
        self._in_flight: dict[str, int] = {p.name: 0 for p in partitions}
        # Each partition's waiters, earliest arrival first. A waiter whose caller went away leaves
        # once its task runs again; until then its future is done, and it is passed over.
        self._queues: dict[str, list[_Waiter]] = {p.name: [] for p in partitions}
        self._seq = itertools.count()
        self._done = Throughput(clock=clock)
        self._saturated = SaturatedRate(clock=clock)
        self.stats = {p.name: GateStats() for p in partitions}

    def queued(self, partition: str) -> int:
        return len(self._queues[partition])

    def in_flight_of(self, partition: str) -> int:
        """Stamps of `partition` admitted and not yet finished."""
        return self._in_flight[partition]

    def queued_before(self, partition: str, arrived_at: float) -> int:
        return bisect.bisect_left(self._queues[partition], arrived_at, key=_arrival)

    @property
    def per_second(self) -> float:
        return self._done.per_second

    @property
    def capacity_per_s(self) -> float:
        """Stamps a second the gate can pass; 0 until the first stamps are done.

        Measured while stamps queue, when the gate passes all it can. Before any such measure, the
        limit over its long-run round trip. Not the recent rate alone: while everyone is away
        waiting it falls towards zero, and the waits it gives would keep them away while the
        signers idle.
        """
        measured = self._saturated.per_second
        if measured > 0:
            return max(measured, self._done.per_second)
        estimate = self.limit.capacity_per_s
        # Until the limit has its first round trips, the rate counted so far means nothing either.
        return max(self._done.per_second, estimate) if estimate > 0 else 0.0

    @property
    def passed_per_s(self) -> float:
        """Stamps a second the gate has just passed with a queue standing: a floor under its
        capacity, 0 until measured."""
        return self._saturated.per_second

    def retry_after(self, ahead: int) -> int:
        return retry_after_for(ahead, self.capacity_per_s)

    def would_wait(self, partition: str) -> bool:
        """Whether a request arriving now would have to queue."""
        return bool(self._queues[partition]) or not self._may_start(partition)

    def _guaranteed(self, partition: str) -> int:
        return max(1, math.floor(self.limit.limit * self.partitions[partition].share))

    def _may_start(self, partition: str) -> bool:
        if self.in_flight >= self.limit.limit:
            return False
        if self._in_flight[partition] < self._guaranteed(partition):
            return True
        # Borrowing: only what no other channel is waiting for within its own share.
        return not any(
            self._queues[other] and self._in_flight[other] < self._guaranteed(other)
            for other in self._queues
            if other != partition
        )

    async def enter(self, partition: str, arrived_at: float | None = None) -> StampSlot:
        """A slot for one stamp, now or after a wait in the partition's queue; Overloaded when the
        queue is full of earlier arrivals or the wait runs out."""
        arrived = time.time() if arrived_at is None else arrived_at
        settings = self.partitions[partition]
        queue = self._queues[partition]
        stats = self.stats[partition]
        if not self.would_wait(partition):
            return self._start(partition)
        if len(queue) >= settings.queue_size:
            if not queue or queue[-1].arrived_at <= arrived:
                stats.rejected += 1
                raise self._refusal(partition, arrived)
            # An earlier arrival takes the newest one's place; that one comes back in turn.
            newest = queue.pop()
            if not newest.future.done():
                stats.evicted += 1
                newest.future.set_exception(self._refusal(partition, newest.arrived_at))
        waiter = _Waiter(arrived, next(self._seq), partition, asyncio.get_running_loop().create_future())
        bisect.insort(queue, waiter)
        try:
            async with asyncio.timeout(settings.queue_timeout_s):
                await waiter.future
        except Overloaded:
            raise
        except BaseException as exc:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                # Admitted just as the wait ended: the slot goes to the next in line.
                self._finish(partition, None, served=False)
            else:
                # Timed out or cancelled (which cancels the future too), or evicted meanwhile.
                future.cancel()
                at = bisect.bisect_left(queue, waiter)
                if at < len(queue) and queue[at] is waiter:
                    del queue[at]
            if isinstance(exc, TimeoutError):
                stats.timed_out += 1
                raise self._refusal(partition, arrived) from None
            raise
        return StampSlot(self, partition)

    def _start(self, partition: str) -> StampSlot:
        self.in_flight += 1
        self._in_flight[partition] += 1
        self.stats[partition].admitted += 1
        return StampSlot(self, partition)

    def _finish(self, partition: str, rtt_s: float | None, served: bool = True) -> None:
        """A slot given back: `served` when a request used it (the pace the waiting room reads),
        with its round trip when it stamped (what the limit learns from)."""
        self.in_flight -= 1
        self._in_flight[partition] -= 1
        if served:
            self._done.add()
            self._saturated.finished(any(self._queues.values()))
        if rtt_s is not None:
            self.limit.sample(rtt_s, self.in_flight + 1)
        self._dispatch()

    def _dispatch(self) -> None:
        while True:
            candidates = [
                (queue[0], name) for name, queue in self._queues.items() if queue and self._may_start(name)
            ]
            if not candidates:
                return
            # Channels under their guaranteed share first, then the earliest arrival.
            waiter, name = min(
                candidates, key=lambda c: (self._in_flight[c[1]] >= self._guaranteed(c[1]), c[0])
            )
            del self._queues[name][0]
            if waiter.future.done():
                # Cancelled (its caller went away or timed out) and not yet out of the queue.
                continue
            self.in_flight += 1
            self._in_flight[name] += 1
            self.stats[name].admitted += 1
            waiter.future.set_result(None)

    def _refusal(self, partition: str, arrived_at: float) -> Overloaded:
        ahead = self.queued_before(partition, arrived_at) + 1
        return Overloaded(
            "stamping is at capacity; your place is kept: try again after the wait",
            self.retry_after(ahead),
            arrived_at,
        )
