"""Stamping on every core: a pool of worker processes, each with the signing key loaded once.

Processes, not threads: stamping is pure Python and CPU-bound, so threads would share one core.
Each worker loads the identity once at start (a PKCS#11 session, a parsed key) and then takes
one document at a time over a pipe. A document that runs past the time limit, or a worker that
dies, costs only that worker: it is killed and replaced, and the caller gets a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.common.errors import DomainError
from services.signer.errors import DocumentTooComplex, UnsupportedPdf
from services.signer.keys import Signer
from services.signer.placement import Placement
from services.signer.stamping import StampResult, place_stamp
from services.signer.tsa import Timestamper
from services.signer.verification import VerificationResult, verify_document

log = logging.getLogger(__name__)

_UNPROCESSABLE = "The document could not be processed; check that it opens in a PDF reader."

# Spawned, not forked: the parent runs gRPC threads, which a fork would copy in a broken state.
_CONTEXT = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs; picklable, so it crosses into spawned processes."""

    load_identity: Callable[[], Signer]
    trust_roots_der: tuple[bytes, ...]
    public_url: str
    location: str
    # Builds the worker's timestamper (PAdES B-T); None signs PAdES B-B.
    make_timestamper: Callable[[], Timestamper] | None = None

    @staticmethod
    def trust_roots_to_der(roots: list[x509.Certificate]) -> tuple[bytes, ...]:
        return tuple(root.public_bytes(serialization.Encoding.DER) for root in roots)


@dataclass(frozen=True)
class StampJob:
    document: bytes
    serial: str
    placement: Placement
    document_name: str = ""


def _worker_main(conn: Connection, config: WorkerConfig) -> None:
    # The parent decides when workers stop; a Ctrl-C in a terminal must not kill them mid-stamp.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    identity = config.load_identity()
    roots = [x509.load_der_x509_certificate(der) for der in config.trust_roots_der]
    timestamper = config.make_timestamper() if config.make_timestamper is not None else None
    conn.send(("ready", None))
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        try:
            if kind == "stamp":
                result: Any = place_stamp(
                    payload.document,
                    serial=payload.serial,
                    placement=payload.placement,
                    identity=identity,
                    public_url=config.public_url,
                    location=config.location,
                    document_name=payload.document_name,
                    timestamp=timestamper.timestamp if timestamper is not None else None,
                )
            else:
                result = verify_document(payload, roots)
            conn.send(("ok", result))
        except DomainError as exc:
            conn.send(("refused", (type(exc), exc.message)))
        except Exception as exc:
            # Not a domain error: a bug or a document we cannot handle. The worker lives on.
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))


# Jobs up to this size are written to the worker's pipe from the event loop; larger ones from a
# thread, so a 20 MB document does not hold the loop while the worker reads it.
INLINE_SEND_BYTES = 1024 * 1024


def _payload_bytes(payload: object) -> int:
    document = payload.document if isinstance(payload, StampJob) else payload
    return len(document) if isinstance(document, bytes) else 0


async def _readable(conn: Connection) -> None:
    """Until the worker has started to answer on `conn` (or closed it, by dying)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    descriptor = conn.fileno()
    loop.add_reader(descriptor, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(descriptor)


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool:
    """size worker processes; at most size documents in work at once, the rest wait in line."""

    def __init__(self, config: WorkerConfig, size: int, time_limit_s: float) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self._config = config
        self._size = size
        self._time_limit_s = time_limit_s
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        # Jobs on a worker right now, each in a task of its own (see _run).
        self._exchanges: set[asyncio.Future[Any]] = set()
        self._in_flight = 0

    @property
    def workers(self) -> list[BaseProcess]:
        return [worker.process for worker in self._all]

    @property
    def idle(self) -> int:
        """Workers waiting for a job."""
        return self._idle.qsize()

    @property
    def in_flight(self) -> int:
        """Documents given to the pool and not yet answered: on a worker, or waiting for one."""
        return self._in_flight

    async def start(self) -> None:
        await asyncio.gather(*(self._add_worker() for _ in range(self._size)))

    async def _add_worker(self) -> None:
        parent_end, child_end = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=_worker_main, args=(child_end, self._config), name="stamping-worker", daemon=True
        )
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        # Loading a key can take a moment (a PKCS#11 login); a worker that cannot load it is fatal.
        status, _ = await asyncio.to_thread(parent_end.recv)
        if status != "ready":
            worker.kill()
            raise RuntimeError("a stamping worker could not start")
        self._all.add(worker)
        self._idle.put_nowait(worker)

    async def _replace(self, worker: _Worker) -> None:
        self._all.discard(worker)
        worker.kill()
        await self._add_worker()

    async def _run(self, kind: str, payload: object) -> Any:
        self._in_flight += 1
        try:
            reply = await self._answer(kind, payload)
        finally:
            self._in_flight -= 1
        status, value = reply
        if status == "ok":
            return value
        if status == "refused":
            error_type, message = value
            raise error_type(message)
        log.error("stamping worker failed", extra={"error": value})
        raise UnsupportedPdf(_UNPROCESSABLE)

    async def _answer(self, kind: str, payload: object) -> tuple[str, Any]:
        while True:
            # Waiting for a worker may be cancelled freely: nothing is taken until get() returns.
            worker = await self._idle.get()
            # From here the worker is in use whatever happens to the caller. A caller that gives up
            # (its deadline passed, its client went away) must not take the worker with it: the
            # exchange runs on in its own task, which hands the worker back, or replaces it, once
            # the document is done.
            exchange = asyncio.ensure_future(self._exchange(worker, kind, payload))
            self._exchanges.add(exchange)
            exchange.add_done_callback(self._exchange_done)
            reply = await asyncio.shield(exchange)
            if reply is not None:
                return reply

    def _exchange_done(self, exchange: asyncio.Future[Any]) -> None:
        self._exchanges.discard(exchange)
        # A caller that went away never reads the outcome; reading it here keeps asyncio quiet.
        if not exchange.cancelled():
            exchange.exception()

    async def _exchange(self, worker: _Worker, kind: str, payload: object) -> tuple[str, Any] | None:
        """One job on `worker`, which goes back to the idle workers afterwards or is replaced.
        None when the worker turned out to have died while idle (the job never reached it)."""
        try:
            if _payload_bytes(payload) <= INLINE_SEND_BYTES:
                # The worker is idle, reading: a small job goes through the pipe at once, cheaper
                # than a hop to a thread and back.
                worker.conn.send((kind, payload))
            else:
                await asyncio.to_thread(worker.conn.send, (kind, payload))
        except (OSError, ValueError):
            # It died while idle (killed, out of memory).
            log.error("a stamping worker died while idle; replacing it")
            await self._replace(worker)
            return None
        try:
            await asyncio.wait_for(_readable(worker.conn), self._time_limit_s)
            # The worker writes its whole answer as soon as it starts to: reading it here waits no
            # longer than copying it through the pipe.
            reply: tuple[str, Any] = worker.conn.recv()
        except TimeoutError:
            log.warning("document took too long; replacing its worker", extra={"limit_s": self._time_limit_s})
            await self._replace(worker)
            raise DocumentTooComplex(
                f"The document took longer than {self._time_limit_s:g} s to process; "
                "it may be damaged or far more complex than a normal document."
            ) from None
        except (EOFError, OSError):
            log.error("a stamping worker died on a document; replacing it")
            await self._replace(worker)
            raise UnsupportedPdf(_UNPROCESSABLE) from None
        self._idle.put_nowait(worker)
        return reply

    async def stamp(self, job: StampJob) -> StampResult:
        return await self._run("stamp", job)

    async def verify(self, document: bytes) -> VerificationResult:
        return await self._run("verify", document)

    async def close(self) -> None:
        for exchange in list(self._exchanges):
            exchange.cancel()
        for worker in list(self._all):
            with contextlib.suppress(Exception):
                worker.conn.close()
            worker.process.join(5)
            if worker.process.is_alive():
                worker.kill()
        self._all.clear()
