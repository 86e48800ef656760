"""Order intake: what a new order needs before its write, done for many orders at a time.

With a real payment provider (a network call, PaymentProvider.remote), the ledger must know before
an order is written whether its idempotency key was used already (a retry gets the first order back
and must not open a second payment), and a new order needs its payment opened with the provider,
outside any transaction. Done per call, the look-up alone cost a worker thread, a pooled connection
and a round trip for every order. One intake thread takes every order waiting and looks all their
keys up in one read; the provider calls of the new ones run side by side; each order then goes to
the group committer, which writes the new ones of a batch together (and still answers a key that
raced in between from another replica). A retry of a key whose first call is still on its way
waits for that call's outcome.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.quota.group_commit import take_waiting

log = logging.getLogger(__name__)

# Orders taken in one look-up; the rest wait for the next.
MAX_INTAKE = 256
# Provider calls in flight at once, for a provider that answers over the network.
PROVIDER_CALLS = 16


@dataclass(eq=False)
class _Request:
    key: tuple[str, str]  # (account id, idempotency key)
    # What happens once the look-up is done: the earlier order's row, or None for a new order;
    # returns the Future of the write, or the answer itself.
    proceed: Callable[[Any], Any]
    future: Future[Any] = field(default_factory=Future)


class OrderIntake:
    def __init__(
        self,
        look_up: Callable[[list[tuple[str, str]]], dict[tuple[str, str], Any]],
        *,
        name: str = "order-intake",
    ) -> None:
        """look_up: the rows of the orders already holding the given (account, key) pairs."""
        self._look_up = look_up
        # The first request of each key whose outcome is not known yet.
        self._in_flight: dict[tuple[str, str], _Request] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._providers = ThreadPoolExecutor(PROVIDER_CALLS, thread_name_prefix=f"{name}-provider")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: tuple[str, str], proceed: Callable[[Any], Any]) -> Future[Any]:
        """Look key up with the others waiting, then call proceed(earlier row or None) in a worker.

        The Future holds what proceed returns, or, when that is a Future itself (a write handed to
        the group committer), that Future's outcome; or the exception either raised.
        """
        if self._closed:
            raise RuntimeError("the ledger is closed")
        request = _Request(key, proceed)
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        """Finish the orders already taken in, then stop; a retry still waiting fails."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._providers.shutdown(wait=True)
            while True:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is not None:
                    request.future.set_exception(RuntimeError("the ledger is closed"))

    def _run(self) -> None:
        while True:
            batch, stop = take_waiting(self._queue, MAX_INTAKE)
            if batch:
                self._take(batch)
            if stop:
                return

    def _take(self, batch: list[_Request]) -> None:
        # A key's first request goes on; a retry of a key still in flight waits for that call's
        # outcome and comes round again, when the look-up finds the order it wrote (or, if it
        # failed, none).
        firsts: dict[tuple[str, str], _Request] = {}
        for request in batch:
            with self._lock:
                first = self._in_flight.setdefault(request.key, request)
            if first is request:
                firsts[request.key] = request
                request.future.add_done_callback(lambda _, done=request: self._landed(done))
            else:
                first.future.add_done_callback(lambda _, again=request: self._again(again))
        batch = list(firsts.values())
        if not batch:
            return
        try:
            earlier = self._look_up(list(firsts))
        except BaseException as exc:  # never let the intake die with callers waiting
            log.exception("order intake look-up failed")
            for request in batch:
                request.future.set_exception(exc)
            return
        if len(batch) == 1:
            # Nothing to overlap: no hand-over to a provider thread.
            self._proceed(batch[0], earlier.get(batch[0].key))
            return
        for request in batch:
            self._providers.submit(self._proceed, request, earlier.get(request.key))

    def _landed(self, request: _Request) -> None:
        with self._lock:
            if self._in_flight.get(request.key) is request:
                del self._in_flight[request.key]

    def _again(self, request: _Request) -> None:
        if self._closed:
            request.future.set_exception(RuntimeError("the ledger is closed"))
        else:
            self._queue.put(request)

    @staticmethod
    def _proceed(request: _Request, row: Any) -> None:
        try:
            outcome = request.proceed(row)
        except BaseException as exc:
            request.future.set_exception(exc)
            return
        if isinstance(outcome, Future):
            outcome.add_done_callback(lambda done: _settle(request.future, done))
        else:
            request.future.set_result(outcome)


def _settle(future: Future[Any], done: Future[Any]) -> None:
    error = done.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(done.result())
