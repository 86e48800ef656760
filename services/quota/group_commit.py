"""Group commit: many ledger operations in one database transaction.

A commit costs a round trip and, on PostgreSQL, a WAL flush; done once per call it caps the
ledger at a few hundred calls a second whatever the hardware. One writer thread per ledger takes
every operation waiting in its queue and runs them together, one after another, in a single
transaction: each still sees the effects of those before it, exactly as if they had run one by one,
and all of them commit (or none do) at once.

When one operation of a batch raises a domain error (not enough quota, a conflicting key), what the
operations before it wrote is rolled back with it; the batch runs again without it, and the failed
operation then runs alone, so its answer reflects the books as they are, never a half-written batch.
A database error (a lost uniqueness race with another replica, a deadlock) sends the whole batch to
run one operation per transaction, with retries.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from services.common.errors import DomainError
from services.quota.journal import Journal

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[Journal], Any]

# Enough to amortise a commit well; small enough that one batch holds its locks only briefly.
DEFAULT_MAX_BATCH = 128
# Batches that may restart after a domain error before the rest run one by one.
_RESTARTS = 4
# A write that loses a uniqueness race or a deadlock is retried; the retry then sees the winner.
_SINGLE_ATTEMPTS = 3


@dataclass
class _Job:
    work: Work
    future: Future[Any] = field(default_factory=Future)


class _Failed(Exception):
    def __init__(self, index: int, error: DomainError) -> None:
        self.index = index
        self.error = error


def _retryable(error: DBAPIError) -> bool:
    """A uniqueness race, a deadlock or a serialization failure: running again can succeed."""
    if isinstance(error, IntegrityError):
        return True
    if isinstance(error, OperationalError):
        # psycopg's TransactionRollback covers deadlocks and serialization failures; SQLite's
        # "database is locked" is an OperationalError too.
        name = type(error.orig).__name__
        return name in ("DeadlockDetected", "SerializationFailure") or "locked" in str(error.orig)
    return False


class GroupCommitter:
    def __init__(
        self, engine: Engine, *, max_batch: int = DEFAULT_MAX_BATCH, name: str = "ledger-writer"
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self.batches = 0
        self.operations = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Journal], T]) -> Future[T]:
        """Queue work to run in the next batch; its Future holds the result or the exception."""
        if self._closed:
            raise RuntimeError("the ledger is closed")
        job = _Job(work)
        self._queue.put(job)
        return job.future

    def run(self, work: Callable[[Journal], T]) -> T:
        """Run work in the next batch and wait for its result (or exception)."""
        return self.submit(work).result()

    def close(self) -> None:
        """Finish what was queued, then stop the writer."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                self._execute(batch)
            except BaseException as exc:  # never let the writer die with callers waiting
                log.exception("ledger writer failed a batch")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            if stop:
                return

    def _execute(self, batch: list[_Job]) -> None:
        self.batches += 1
        self.operations += len(batch)
        pending, alone = batch, []
        for _ in range(_RESTARTS):
            if not pending:
                break
            try:
                results = self._transaction(pending)
            except _Failed as failed:
                if failed.index == 0:
                    # It ran first, against committed books only: its error is the answer.
                    pending[0].future.set_exception(failed.error)
                else:
                    alone.append(pending[failed.index])
                pending = pending[: failed.index] + pending[failed.index + 1 :]
                continue
            except Exception:
                # Run each alone: the one at fault gets its error, the others their results.
                break
            for job, result in zip(pending, results, strict=True):
                job.future.set_result(result)
            pending = []
        for job in pending + alone:
            self._run_alone(job)

    def _transaction(self, jobs: list[_Job]) -> list[Any]:
        with self._engine.begin() as conn:
            journal = Journal(conn)
            results = []
            for index, job in enumerate(jobs):
                try:
                    results.append(job.work(journal))
                except DomainError as error:
                    # Leaving the block rolls back everything this batch wrote.
                    raise _Failed(index, error) from None
            journal.flush()
        return results

    def _run_alone(self, job: _Job) -> None:
        for attempt in range(1, _SINGLE_ATTEMPTS + 1):
            try:
                [result] = self._transaction([job])
            except _Failed as failed:
                job.future.set_exception(failed.error)
                return
            except DBAPIError as error:
                if attempt < _SINGLE_ATTEMPTS and _retryable(error):
                    continue
                job.future.set_exception(error)
                return
            except Exception as error:
                job.future.set_exception(error)
                return
            job.future.set_result(result)
            return
