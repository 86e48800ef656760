"""The coalescing every batching client shares (services/common/batching.py), on its own: the batch
call here is a plain coroutine, so what is checked is only how calls are gathered and answered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
import pytest

from emeterai.v1 import common_pb2
from services.common.batching import Coalescer, call_error, item_error


def echoing() -> tuple[list[list[str]], Callable[[list[str]], Awaitable[list[object]]]]:
    """A batch call that answers every item with itself, and the batches it was sent."""
    sent: list[list[str]] = []

    async def send(items: list[str]) -> list[object]:
        sent.append(items)
        return list(items)

    return sent, send


def test_an_item_error_is_the_single_calls_error_and_an_empty_one_is_never_a_success() -> None:
    found = item_error(common_pb2.BatchError(code=grpc.StatusCode.NOT_FOUND.value[0], message="no hold"))
    assert (found.code(), found.details()) == (grpc.StatusCode.NOT_FOUND, "no hold")
    for broken in (common_pb2.BatchError(), common_pb2.BatchError(code=999, message="?")):
        assert item_error(broken).code() == grpc.StatusCode.UNKNOWN


async def test_calls_wait_while_calls_are_in_flight_and_go_together_up_to_the_limit() -> None:
    sent: list[list[int]] = []

    async def send(items: list[int]) -> list[object]:
        sent.append(items)
        await asyncio.sleep(0.01)
        return [
            item * 10 if item % 3 else call_error(grpc.StatusCode.INVALID_ARGUMENT, f"{item}")
            for item in items
        ]

    coalescer: Coalescer[int] = Coalescer(send, max_items=4, max_in_flight=1)
    answers = await asyncio.gather(
        *(coalescer.call(n, timeout=5) for n in range(1, 11)), return_exceptions=True
    )
    assert sent == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    for n, answer in zip(range(1, 11), answers, strict=True):
        if n % 3:
            assert answer == n * 10
        else:
            assert isinstance(answer, grpc.aio.AioRpcError) and answer.details() == str(n)


async def test_a_batch_call_that_fails_fails_each_of_its_calls_and_the_next_go_on() -> None:
    async def send(items: list[str]) -> list[object]:
        if "bad" in items:
            raise ConnectionError("the wire broke")
        return items

    coalescer: Coalescer[str] = Coalescer(send, max_items=10, max_in_flight=1)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await coalescer.call("bad", timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await coalescer.call("good", timeout=5) == "good"


async def test_a_caller_that_waits_too_long_gets_deadline_exceeded_and_the_batch_goes_on() -> None:
    release = asyncio.Event()

    async def send(items: list[str]) -> list[object]:
        await release.wait()
        return items

    coalescer: Coalescer[str] = Coalescer(send, max_items=10, max_in_flight=1)
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await coalescer.call("slow", timeout=0.05)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    waiting = asyncio.ensure_future(coalescer.call("next", timeout=5))
    release.set()
    assert await waiting == "next"


async def test_an_item_whose_caller_gave_up_before_it_was_sent_is_never_sent() -> None:
    """A reserve nobody waits for any more would only hold a unit until it expired."""
    release = asyncio.Event()
    sent: list[list[str]] = []

    async def send(items: list[str]) -> list[object]:
        sent.append(items)
        await release.wait()
        return items

    coalescer: Coalescer[str] = Coalescer(send, max_items=10, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.call("first", timeout=5))
    await asyncio.sleep(0)
    with pytest.raises(grpc.aio.AioRpcError):
        await coalescer.call("timed out", timeout=0.01)
    cancelled = asyncio.ensure_future(coalescer.call("cancelled", timeout=5))
    kept = asyncio.ensure_future(coalescer.call("kept", timeout=5))
    await asyncio.sleep(0)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    release.set()
    assert (await first, await kept) == ("first", "kept")
    assert sent == [["first"], ["kept"]]
    assert cancelled.cancelled()


async def test_calls_that_may_wait_gather_in_a_window_and_one_that_may_not_takes_them_along() -> None:
    sent, send = echoing()
    # A window far longer than the spacing below, so the calls meet however slow the machine is.
    coalescer: Coalescer[str] = Coalescer(send, max_items=3, max_in_flight=4, window_s=30.0)
    first = asyncio.ensure_future(coalescer.call("reserve-1", timeout=60, wait=True))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(coalescer.call("reserve-2", timeout=60, wait=True))
    await asyncio.sleep(0.01)
    assert sent == []
    # A purchase does not wait for the window: it goes now, with what was waiting (a second here
    # against the window's thirty).
    assert await asyncio.wait_for(coalescer.call("order", timeout=60), 1.0) == "order"
    assert (await first, await second) == ("reserve-1", "reserve-2")
    assert sent == [["reserve-1", "reserve-2", "order"]]
    # A full batch does not wait for the window either.
    full = [asyncio.ensure_future(coalescer.call(f"commit-{n}", timeout=60, wait=True)) for n in range(3)]
    assert await asyncio.wait_for(asyncio.gather(*full), 1.0) == ["commit-0", "commit-1", "commit-2"]
    assert sent[1:] == [["commit-0", "commit-1", "commit-2"]]


async def test_a_window_runs_out_and_sends_what_gathered() -> None:
    sent, send = echoing()
    coalescer: Coalescer[str] = Coalescer(send, max_items=100, max_in_flight=4, window_s=0.02)
    answers = await asyncio.gather(*(coalescer.call(f"check-{n}", timeout=60, wait=True) for n in range(5)))
    assert answers == [f"check-{n}" for n in range(5)]
    assert sent == [[f"check-{n}" for n in range(5)]]


async def test_calls_waiting_for_a_free_batch_call_go_in_it_without_another_window() -> None:
    """While every batch call is out, a purchase waits for one to come back, as it always did; a
    stamp's call arriving then must not open a window that holds both past that moment."""
    release = asyncio.Event()
    sent: list[list[str]] = []

    async def send(items: list[str]) -> list[object]:
        sent.append(items)
        if len(sent) == 1:
            await release.wait()
        return items

    coalescer: Coalescer[str] = Coalescer(send, max_items=10, max_in_flight=1, window_s=30.0)
    first = asyncio.ensure_future(coalescer.call("order-1", timeout=60))
    await asyncio.sleep(0)
    order = asyncio.ensure_future(coalescer.call("order-2", timeout=60))
    reserve = asyncio.ensure_future(coalescer.call("reserve", timeout=60, wait=True))
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.wait_for(asyncio.gather(first, order, reserve), 1.0) == [
        "order-1",
        "order-2",
        "reserve",
    ]
    assert sent == [["order-1"], ["order-2", "reserve"]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_window_follows_the_pace_of_calls_and_is_short_when_they_come_close() -> None:
    sent, send = echoing()
    clock = Clock()
    # A longest window far past the test: only the pace can make a call go sooner.
    coalescer: Coalescer[str] = Coalescer(send, max_items=100, max_in_flight=4, window_s=30.0, clock=clock)
    first = asyncio.ensure_future(coalescer.call("reserve-1", timeout=60, wait=True))
    await asyncio.sleep(0)
    clock.now += 0.01
    second = asyncio.ensure_future(coalescer.call("reserve-2", timeout=60, wait=True))
    await asyncio.sleep(0)
    # Nothing was known of the pace when the first came: it waits the longest window, until an
    # order takes both along.
    assert sent == []
    assert await asyncio.wait_for(coalescer.call("order", timeout=60), 1.0) == "order"
    assert (await first, await second) == ("reserve-1", "reserve-2")
    # Calls 10 ms apart: the next waits as long as COMPANY more take at that pace, not 30 s.
    clock.now += 0.01
    third = asyncio.ensure_future(coalescer.call("commit-1", timeout=60, wait=True))
    await asyncio.sleep(0)
    assert sent == [["reserve-1", "reserve-2", "order"]]
    assert await asyncio.wait_for(third, 1.0) == "commit-1"
    assert sent[1:] == [["commit-1"]]


async def test_the_pace_is_a_mean_of_recent_gaps_and_a_quiet_spell_counts_only_as_slow() -> None:
    sent, send = echoing()
    clock = Clock()
    coalescer: Coalescer[str] = Coalescer(send, max_items=100, max_in_flight=4, window_s=1.0, clock=clock)
    steady = []
    for n in range(8):
        steady.append(asyncio.ensure_future(coalescer.call(f"reserve-{n}", timeout=60, wait=True)))
        await asyncio.sleep(0)
        clock.now += 0.01
    assert await asyncio.wait_for(asyncio.gather(*steady), 3.0) == [f"reserve-{n}" for n in range(8)]
    # A quiet minute after calls 10 ms apart counts as GAP_CAP windows (4 s), weighing an eighth:
    # the mean gap is then about half a second, within the 1 s window, so the next call still
    # waits for company. Its last gap alone, or the whole minute, would send it at once.
    clock.now += 60.0
    after_quiet = asyncio.ensure_future(coalescer.call("reserve-after", timeout=60, wait=True))
    await asyncio.sleep(0.1)
    assert sent[-1] != ["reserve-after"]
    assert await asyncio.wait_for(after_quiet, 3.0) == "reserve-after"
    assert sent[-1] == ["reserve-after"]


async def test_calls_further_apart_than_the_window_go_at_once_and_one_close_pair_changes_nothing() -> None:
    sent, send = echoing()
    clock = Clock()
    coalescer: Coalescer[str] = Coalescer(send, max_items=100, max_in_flight=4, window_s=0.5, clock=clock)
    assert await asyncio.wait_for(coalescer.call("check-1", timeout=60, wait=True), 2.0) == "check-1"
    # A quiet minute: at that pace nobody would come within the window, so nobody waits for one.
    for n, step in ((2, 60.0), (3, 0.001)):
        clock.now += step
        call = asyncio.ensure_future(coalescer.call(f"check-{n}", timeout=60, wait=True))
        # A tenth of the window: long enough for a call that went at once to be sent.
        await asyncio.sleep(0.05)
        assert sent[-1] == [f"check-{n}"]
        assert await call == f"check-{n}"
