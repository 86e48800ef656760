"""Group commit: many ledger operations in one database transaction.

A commit costs a round trip and, on PostgreSQL, a WAL flush; done once per call it caps the
ledger at a few hundred calls a second whatever the hardware. One writer thread per ledger takes
every operation waiting in its queue and runs them together, one after another, in a single
transaction: each still sees the effects of those before it, exactly as if they had run one by one,
and all of them commit (or none do) at once. One writer, not several: a second one in the same
process measured no faster, since both share the interpreter lock, and made smaller batches that
cost more CPU each; more throughput comes from more quota replicas.

Operations of a kind that has a bulk handler (reserve and commit, the stamping path) are first
offered to it together, so a batch of them costs a few set-based statements; what the handler
declines runs one by one after it, in the same transaction.

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

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from services.common.errors import DomainError
from services.quota.journal import Journal

log = logging.getLogger(__name__)

T = TypeVar("T")
Q = TypeVar("Q")
Work = Callable[[Journal], Any]
# Takes the requests of one kind in a batch; returns a result per request, None for those it leaves
# to the one-by-one work. It raises only for what fails the whole batch (a database error).
BulkHandler = Callable[[Journal, list[Any]], list[Any]]

# Enough to amortise a commit well; small enough that one batch holds its locks only briefly.
DEFAULT_MAX_BATCH = 128
# Batches that may restart after a domain error before the rest run one by one.
_RESTARTS = 4
# A write that loses a uniqueness race or a deadlock is retried; the retry then sees the winner.
_SINGLE_ATTEMPTS = 3


def take_waiting(waiting: queue.SimpleQueue[Q | None], limit: int) -> tuple[list[Q], bool]:
    """Wait for the next item, then take whatever else is waiting, up to limit items in all;
    (items, stop), where stop says the stop marker (None) came and the taker should end."""
    first = waiting.get()
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < limit:
        try:
            more = waiting.get_nowait()
        except queue.Empty:
            break
        if more is None:
            return batch, True
        batch.append(more)
    return batch, False


@dataclass(eq=False)
class _Job:
    work: Work
    # (kind, request) for a bulk handler, or None.
    bulk: tuple[str, Any] | None = None
    future: Future[Any] = field(default_factory=Future)


class _Failed(Exception):
    def __init__(self, job: _Job, error: DomainError, alone: bool) -> None:
        self.job = job
        self.error = error
        # Nothing else had run in its transaction: its error stands as the answer.
        self.alone = alone


def _retryable(error: DBAPIError) -> bool:
    """A uniqueness race, a deadlock or a serialization failure: running again can succeed."""
    if isinstance(error, IntegrityError) or error.connection_invalidated:
        # A lost race, or a connection that died (a database restart): the retry gets a new one.
        return True
    if isinstance(error, OperationalError):
        # psycopg's TransactionRollback covers deadlocks and serialization failures; SQLite's
        # "database is locked" is an OperationalError too.
        name = type(error.orig).__name__
        return name in ("DeadlockDetected", "SerializationFailure") or "locked" in str(error.orig)
    return False


class GroupCommitter:
    def __init__(
        self,
        engine: Engine,
        *,
        bulk_handlers: dict[str, BulkHandler] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "ledger-writer",
    ) -> None:
        self._engine = engine
        self._bulk_handlers = bulk_handlers or {}
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        # The writer keeps its connection between batches: no checkout or ping per batch.
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Journal], T], bulk: tuple[str, Any] | None = None) -> Future[T]:
        """Queue work to run in the next batch; its Future holds the result or the exception.

        With bulk=(kind, request), the kind's bulk handler is offered the request first; work is
        what runs if the handler leaves it, and must do the same.
        """
        if self._closed:
            raise RuntimeError("the ledger is closed")
        if bulk is not None and bulk[0] not in self._bulk_handlers:
            raise ValueError(f"no bulk handler for {bulk[0]!r}")
        job = _Job(work, bulk)
        self._queue.put(job)
        return job.future

    def run(self, work: Callable[[Journal], T], bulk: tuple[str, Any] | None = None) -> T:
        """Run work in the next batch and wait for its result (or exception)."""
        return self.submit(work, bulk).result()

    def close(self) -> None:
        """Finish what was queued, then stop the writer."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        try:
            self._write_batches()
        finally:
            self._drop_connection()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _write_batches(self) -> None:
        while True:
            batch, stop = take_waiting(self._queue, self._max_batch)
            try:
                if batch:
                    self._execute(batch)
            except BaseException as exc:  # never let the writer die with callers waiting
                log.exception("ledger writer failed a batch")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            if stop:
                return

    def _execute(self, batch: list[_Job]) -> None:
        pending, alone = batch, []
        for _ in range(_RESTARTS):
            if not pending:
                break
            try:
                results = self._transaction(pending)
            except _Failed as failed:
                if failed.alone:
                    # It ran first, against committed books only: its error is the answer.
                    failed.job.future.set_exception(failed.error)
                else:
                    alone.append(failed.job)
                pending = [job for job in pending if job is not failed.job]
                continue
            except Exception:
                # Run each alone: the one at fault gets its error, the others their results.
                break
            for job in pending:
                job.future.set_result(results[job])
            pending = []
        for job in pending + alone:
            self._run_alone(job)

    def _transaction(self, jobs: list[_Job]) -> dict[_Job, Any]:
        """Run jobs in one transaction: bulk kinds first, then one by one; their results."""
        results: dict[_Job, Any] = {}
        conn = self._connection()
        try:
            with conn.begin():
                self._run_jobs(Journal(conn), jobs, results)
        except _Failed:
            raise
        except Exception:
            # The transaction is rolled back; a connection that saw anything but a domain error
            # (a database error, a failure in the middle of a statement) is not kept.
            self._drop_connection()
            raise
        return results

    def _run_jobs(self, journal: Journal, jobs: list[_Job], results: dict[_Job, Any]) -> None:
        """Bulk kinds first, then one by one; results are filled in as they come."""
        kinds: dict[str, list[_Job]] = {}
        for job in jobs:
            if job.bulk is not None:
                kinds.setdefault(job.bulk[0], []).append(job)
        for kind, group in kinds.items():
            answers = self._bulk_handlers[kind](journal, [job.bulk[1] for job in group])  # type: ignore[index]
            for job, answer in zip(group, answers, strict=True):
                if answer is not None:
                    results[job] = answer
        for job in jobs:
            if job in results:
                continue
            try:
                results[job] = job.work(journal)
            except DomainError as error:
                # The caller's transaction block rolls back everything this batch wrote.
                raise _Failed(job, error, alone=not results) from None
        journal.flush()

    def _run_alone(self, job: _Job) -> None:
        for attempt in range(1, _SINGLE_ATTEMPTS + 1):
            try:
                result = self._transaction([job])[job]
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
