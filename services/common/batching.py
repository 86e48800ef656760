"""Batch calls: many calls of a busy caller travel in one gRPC call, each answered as if alone.

A gRPC call costs its caller and the service more CPU than the service's share of the work for a
small request (a ledger entry, a PIN check), and in a surge the gateway makes thousands a second.
Coalescer gathers them on the caller's side: while a few batch calls are in flight, new calls wait
and go together in the next one, so a busy process sends a few large batches. Calls that can
afford it may also wait a short window for company, which a steady pace needs to form batches at
all, but only while the pace brings company within it; otherwise a lone call goes at once. On the
service's side, batch_error() answers a failed item as the error interceptor answers a single call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from emeterai.v1 import common_pb2
from services.common.errors import DomainError, status_code_for

log = logging.getLogger(__name__)

Item = TypeVar("Item")

_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}

# A window lasts as long as this many more calls take to arrive at the recent pace (at most the
# longest window): per call, a batch call's fixed cost shrinks as 1/n, so a few items already
# save most of it, and waiting for more costs each of them time for little.
COMPANY = 4
# The pace: the mean time between calls that may wait, each new gap weighing this much. A gap
# longer than GAP_CAP windows counts as that: it says only that calls are far apart, and a burst
# after a quiet minute should not take long to count as one.
PACE_WEIGHT = 1 / 8
GAP_CAP = 4


def call_error(code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    """The error a single call would have raised with this status."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=message)


def item_error(error: common_pb2.BatchError) -> grpc.aio.AioRpcError:
    """A batch item's error as the error of the single call. A result without an outcome (or an
    error saying OK) is a broken answer, never a success."""
    code = _STATUS_BY_NUMBER.get(error.code, grpc.StatusCode.UNKNOWN)
    if code == grpc.StatusCode.OK:
        return call_error(grpc.StatusCode.UNKNOWN, "the batch call answered this item with no outcome")
    return call_error(code, error.message)


def batch_error(
    error: Exception, table: dict[type[DomainError], grpc.StatusCode], call: str
) -> common_pb2.BatchError:
    """What a batch item answers for `error`, as the error interceptor answers a single call: a
    domain error with its status and message; anything else is logged here and never sent."""
    if isinstance(error, DomainError):
        return common_pb2.BatchError(code=status_code_for(error, table).value[0], message=error.message)
    log.error("unexpected error in a batch item", exc_info=error, extra={"call": call})
    return common_pb2.BatchError(code=grpc.StatusCode.INTERNAL.value[0], message="internal error")


# What a batch call's send returns: one outcome per item, in order; an outcome that is an
# AioRpcError is that item's failure.
Send = Callable[[list[Item]], Awaitable[Sequence[Any]]]


class Coalescer(Generic[Item]):
    """Calls that arrive while `max_in_flight` batch calls are out wait and go together, at most
    `max_items` in one, through `send`.

    With a `window_s`, a call that may wait (`call(..., wait=True)`) also waits up to that long
    for others to go with it: at a steady pace that keeps calls apart (a signer pool's hundred
    stamps a second) each would otherwise go alone. The window follows the pace of such calls, the
    mean of their recent gaps: as long as COMPANY more take to arrive at it, at most `window_s`,
    and none while the mean is longer than `window_s` (a slow hour: nobody would come, and the
    wait would be all loss). Being a mean it lags a change of pace by a few calls. A call that
    may not wait (a purchase) sends what is waiting at once, itself included.

    Each caller gets its item's outcome, or the AioRpcError it would have got alone: the item's
    own, or the batch call's when the whole call failed (UNAVAILABLE when it failed otherwise).
    """

    def __init__(
        self,
        send: Send[Item],
        *,
        max_items: int,
        max_in_flight: int,
        window_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send_batch = send
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._window_s = window_s
        self._clock = clock
        # The pace of calls that may wait: when the last came, and the mean gap between them
        # (unknown until two have come: the first call waits the whole window).
        self._last_call: float | None = None
        self._gap_s: float | None = None
        self._window: asyncio.TimerHandle | None = None
        self._waiting: list[tuple[Item, asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, item: Item, timeout: float | None, *, wait: bool = False) -> Any:
        """The item's outcome; with wait, it may wait up to the window for company."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((item, future))
        window_s = self._window_for_pace() if wait and self._window_s > 0 else 0.0
        if window_s > 0 and len(self._waiting) < self._max_items:
            # A window opens for a call that finds nothing waiting. Items already waiting without
            # one wait for a free batch call, and the newcomer joins them in it.
            if self._window is None and len(self._waiting) == 1:
                self._window = loop.call_later(window_s, self._window_ends)
        else:
            self._send_waiting()
        try:
            # Shielded: a caller that gives up does not cancel the batch its item travels in.
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._give_up(future)
            raise call_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except asyncio.CancelledError:
            self._give_up(future)
            raise

    def _window_for_pace(self) -> float:
        """How long the call now arriving may wait for company, by the pace so far (this call's
        gap counted in it)."""
        now = self._clock()
        if self._last_call is not None:
            gap = min(now - self._last_call, GAP_CAP * self._window_s)
            self._gap_s = gap if self._gap_s is None else self._gap_s + (gap - self._gap_s) * PACE_WEIGHT
        self._last_call = now
        if self._gap_s is None:
            return self._window_s
        if self._gap_s > self._window_s:
            return 0.0
        return min(self._window_s, COMPANY * self._gap_s)

    def _give_up(self, future: asyncio.Future[Any]) -> None:
        """A caller gave up: its item is not sent if it is still waiting (a reserve nobody waits
        for would only hold a unit until it expires). One already sent is answered to nobody."""
        self._waiting = [(item, waiting) for item, waiting in self._waiting if waiting is not future]
        future.cancel()

    def _window_ends(self) -> None:
        self._window = None
        self._send_waiting()

    def _send_waiting(self) -> None:
        if self._window is not None:
            # Everything waiting goes now; the window is over for them.
            self._window.cancel()
            self._window = None
        while self._waiting and self._in_flight < self._max_in_flight:
            items, self._waiting = self._waiting[: self._max_items], self._waiting[self._max_items :]
            self._in_flight += 1
            task = asyncio.create_task(self._send(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, items: list[tuple[Item, asyncio.Future[Any]]]) -> None:
        try:
            outcomes = await self._send_batch([item for item, _ in items])
            for (_, future), outcome in zip(items, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, grpc.aio.AioRpcError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        except grpc.aio.AioRpcError as failure:
            for _, future in items:
                if not future.done():
                    future.set_exception(call_error(failure.code(), failure.details() or ""))
        except BaseException as failure:
            for _, future in items:
                if not future.done():
                    future.set_exception(
                        call_error(grpc.StatusCode.UNAVAILABLE, f"batch call failed: {failure!r}")
                    )
            raise
        finally:
            self._in_flight -= 1
            # What waited for this call has waited long enough; a window still open runs out.
            if self._window is None:
                self._send_waiting()
