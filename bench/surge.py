"""A deadline surge on loopback: is stamping admitted at the pool's pace, do purchases stay fast, is
anything lost?

    .venv/bin/python bench/surge.py [--quick] [--surge-s S] [--postgres-url URL] [--redis-url URL]
        [--json-out FILE] [--signer-cpu CORES] [--one-gateway] [--warm-up-s S] [--batch-window-ms MS]

The stack runs as in production, each service its own process: auth, quota on a throwaway
PostgreSQL database, one signer with one worker (the pool), and the gateway with Redis for its
token buckets, in two lanes as k8s runs it (k8s/base/purchases): the load sends its purchases to
the purchases lane, as the ingress does, and everything else to the main lane. The gateway's CPU
is both lanes'. With --one-gateway, purchases go through the one gateway with everything else.
--batch-window-ms sets the gateways' EMETERAI_STAMP_BATCH_WINDOW_MS (docs/gateway.md, "The batch
window"); without it they run its default.

The pool runs under a CPU limit (--signer-cpu cores, 0.3 by default): a CFS quota, as Kubernetes
sets a pod's CPU limit, so the pool has the same capacity standalone and inside the stack. Without
it (--signer-cpu 0) the standalone figure has a core to itself, while in the stack the same worker
shares both cores with the gateway, quota, auth, PostgreSQL and the load, which together spend
about three times the worker's CPU per stamp: the comparison then measures this machine filling
up, not whether admission delivers what the pool can do. In a cluster the signers have nodes of
their own. Where no cgroup cpu controller can be written (Linux, as root), the pool runs unlimited
and the run says so.

1. The pool's standalone capacity: stamps/s of the signer called directly over gRPC, nothing else
   running. This is the reference: the gateway cannot admit more than the pool does.
2. Purchase latency unloaded: steady POST /v1/orders from a few accounts, nothing else running.
   The buyers run in a process of their own, as other people's phones would: timed from the
   process that sends the surge, an order's answer would wait for that event loop's own stalls.
3. The surge: retail stamp requests arrive at 10x the pool's capacity for --surge-s seconds, each
   following the waiting-room protocol as the web page does (on 429 wait Retry-After, come back
   with the ticket, same Idempotency-Key); steady purchases go on beside them, and a distributor
   (its credentials and quota set up beforehand) streams a batch through BatchStamp. Admitted
   stamps/s is counted from the first arrival until the last stamp of the surge is done.
4. The books: every account's balance (purchased = available + held + consumed + refunded, and
   consumed = stamps answered 201) and `emeterai audit reconcile` on the ledger's database.

With --json-out, the surge second by second goes to a run file (bench/runfile.py) for
bench/report.py: stamp requests sent and answered (retail attempts and the batch's documents),
their latency, and the retail stamp queue's depth read from the gateway's /metrics.

It ends with `RESULT admitted_per_s=N pool_capacity_per_s=N stamp_p50_ms=N stamp_p99_ms=N
purchase_p99_ms=N purchase_p99_unloaded_ms=N http_5xx=N lost_quota=N gateway_cpu_ms_per_stamp=N`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import grpc  # noqa: E402
import httpx  # noqa: E402
from ledger_stack import CpuLimit, CpuSample, Services, _free_address, throwaway_database  # noqa: E402
from runfile import (  # noqa: E402
    FAILED,
    Answer,
    Event,
    Run,
    command_line,
    grpc_outcome,
    http_outcome,
    samples_from,
    utc_now,
    write_run,
)

from emeterai.v1 import (  # noqa: E402
    auth_service_pb2,
    auth_service_pb2_grpc,
    common_pb2,
    distributor_service_pb2,
    distributor_service_pb2_grpc,
    signer_service_pb2,
    signer_service_pb2_grpc,
)
from services.common.clients import ServiceTokenSource, service_channel  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DOCUMENT = REPO.parent / "shared/corpus/pdf/sf-001-minimal-document.pdf"
PIN = "482915"
SURGE_FACTOR = 10
MAX_CONNECTIONS = 12_000
# Time the buyers' process has to open its connections before the surge's arrivals start.
BUYERS_READY_S = 3.0
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
RESULT_NAMES = (
    "admitted_per_s",
    "pool_capacity_per_s",
    "stamp_p50_ms",
    "stamp_p99_ms",
    "purchase_p99_ms",
    "purchase_p99_unloaded_ms",
    "http_5xx",
    "lost_quota",
    "gateway_cpu_ms_per_stamp",
)
# The gateway's admission queues, read from its /metrics; the surge waits in RETAIL_STAMPS_QUEUE
# (the stamp gate's retail partition, behind the waiting room).
QUEUE_DEPTHS_PATH = "/metrics?name%5B%5D=emeterai_admission_queue_depth"
QUEUE_DEPTH = re.compile(r'^emeterai_admission_queue_depth\{queue="([^"]+)"\} (\S+)$', re.MULTILINE)
RETAIL_STAMPS_QUEUE = "retail-stamps"


@dataclass
class Options:
    quick: bool
    surge_s: float
    postgres_url: str
    redis_url: str
    pool_s: float = 6.0
    purchase_s: float = 6.0
    retail_accounts: int = 60
    purchase_accounts: int = 8
    purchases_per_s: float = 20.0
    batch_documents: int = 60
    # How long after the last arrival a user still waits for their stamp.
    drain_s: float = 120.0
    # Stamping through the gateway before the surge, as on any day before a deadline.
    warm_up_s: float = 3.0
    # Read the gateway's queue depths during the surge (for --json-out; each read costs it a little).
    watch_queues: bool = False
    watch_every_s: float = 0.5
    # The pool's CPU limit, cores (0: none).
    signer_cpu: float = 0.3
    # Purchases through a gateway lane of their own, as k8s runs them; False: through the one gateway.
    purchases_lane: bool = True


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    stamp_ms: list[float] = field(default_factory=list)
    purchase_ms: list[float] = field(default_factory=list)
    stamped: Counter[str] = field(default_factory=Counter)
    turned_away: int = 0
    gave_up: int = 0
    first_arrival: float = 0.0
    last_stamp: float = 0.0
    batch_ok: int = 0
    batch_failed: Counter[str] = field(default_factory=Counter)
    # (seconds since the first arrival, status, Retry-After) of every retail stamp answer.
    timeline: list[tuple[float, int, float]] = field(default_factory=list)
    lost_connections: Counter[str] = field(default_factory=Counter)
    # (seconds since the first arrival, ms) of every purchase during the surge.
    purchases: list[tuple[float, float]] = field(default_factory=list)
    # For the run file: the wall clock at the first arrival, every stamp request of the surge (retail
    # attempts and the batch's documents), the queue depths read, and what happened when.
    started_at: str = ""
    answers: list[Answer] = field(default_factory=list)
    depths: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def since_first_arrival(self) -> float:
        return time.monotonic() - self.first_arrival

    @property
    def http_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


@dataclass
class Account:
    headers: dict[str, str]
    funded: int = 0


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(fraction * 1000) - 1]


class Stack:
    """The four services as separate processes, on free loopback ports."""

    def __init__(
        self,
        services: Services,
        database_url: str,
        redis_url: str,
        signers: int = 1,
        signer_cpu: float = 0.0,
        purchases_lane: bool = True,
        batch_window_ms: float | None = None,
    ) -> None:
        """signer_cpu: a CPU limit, in cores, on each signer process and its worker (0: none).
        purchases_lane: a second gateway for orders and payments, as k8s runs one."""
        self.services = services
        self.database_url = database_url
        self.signers = [_free_address() for _ in range(signers)]
        self.limits: list[CpuLimit] = []
        self.http = _free_address()
        self.grpc = _free_address()
        self.metrics = _free_address()
        services.start(
            "auth",
            "auth",
            services.auth_address,
            {
                # The benchmark signs in many accounts from one address.
                "EMETERAI_OTP_REQUESTS_PER_ADDRESS": "100000",
                "EMETERAI_OTP_VERIFIES_PER_ADDRESS": "100000",
            },
        )
        self.quota = services.start_quota("quota", database_url)
        # Each signer process with one worker: a signer replica is one core's worth of signing.
        for n, signer in enumerate(self.signers):
            name = f"signer-{n}" if n else "signer"
            process = services.start(
                name, "signer", signer, {"EMETERAI_SIGNER_ADDRESS": signer, "EMETERAI_SIGNER_WORKERS": "1"}
            )
            if signer_cpu:
                self.limits.append(CpuLimit(name, signer_cpu))
                self.limits[-1].add(process.pid)
        gateway = {
            "EMETERAI_QUOTA_ADDRESS": self.quota.address,
            "EMETERAI_SIGNER_ADDRESSES": ",".join(self.signers),
            "EMETERAI_REDIS_URL": redis_url,
            # An account here sends several documents at once; the per-account bucket is not
            # what is measured.
            "EMETERAI_RETAIL_STAMPS_PER_S": "50",
            "EMETERAI_RETAIL_STAMP_BURST": "100",
            "EMETERAI_ORDERS_PER_S": "50",
            "EMETERAI_ORDER_BURST": "100",
            # As k8s/base runs it: the ingress logs the requests.
            "EMETERAI_HTTP_ACCESS_LOG": "false",
        }
        if batch_window_ms is not None:
            gateway["EMETERAI_STAMP_BATCH_WINDOW_MS"] = str(batch_window_ms)
        self.gateway = services.start(
            "gateway",
            "gateway",
            self.grpc,
            gateway
            | {
                "EMETERAI_GATEWAY_HTTP_ADDRESS": self.http,
                "EMETERAI_GATEWAY_GRPC_ADDRESS": self.grpc,
                # Idle unless scraped: surge.py reads the queue depths from it with --json-out.
                "EMETERAI_METRICS_ADDRESS": self.metrics,
            },
        )
        self.gateways = [self.gateway]
        # The purchases lane (k8s/base/purchases): the same gateway, which the ingress sends orders
        # and payments to. The load plays the ingress: its purchases go there.
        self.purchases_http = self.http
        if purchases_lane:
            self.purchases_http = _free_address()
            purchases_grpc = _free_address()
            self.gateways.append(
                services.start(
                    "gateway-purchases",
                    "gateway",
                    purchases_grpc,
                    gateway
                    | {
                        "EMETERAI_GATEWAY_HTTP_ADDRESS": self.purchases_http,
                        "EMETERAI_GATEWAY_GRPC_ADDRESS": purchases_grpc,
                    },
                )
            )

    def remove_limits(self) -> None:
        for limit in self.limits:
            limit.remove()

    def tokens(self) -> ServiceTokenSource:
        return ServiceTokenSource(self.services.auth_address, "gateway", self.services.service_secret)


async def pool_capacity(stack: Stack, document: bytes, seconds: float) -> float:
    """Stamps/s of the signers alone, called as the gateway calls them, enough in flight on each."""
    tokens = stack.tokens()
    channels = [service_channel(address, tokens) for address in stack.signers]
    signers = [signer_service_pb2_grpc.SignerServiceStub(channel) for channel in channels]
    done = 0
    stop = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        signer = signers[n % len(signers)]
        for i in itertools.count():
            if time.monotonic() >= stop:
                return
            serial = f"PL{n:02d}{i:018d}"[:22]
            await signer.Stamp(signer_service_pb2.StampRequest(document=document, serial=serial), timeout=30)
            done += 1

    # Warm the workers (keys loaded, code paths hot) before the clock starts.
    for signer in signers:
        await signer.Stamp(signer_service_pb2.StampRequest(document=document, serial="W" * 22), timeout=60)
    started = time.monotonic()
    stop = started + seconds
    await asyncio.gather(*(worker(n) for n in range(4 * len(signers))))
    rate = done / (time.monotonic() - started)
    for channel in channels:
        await channel.close()
    await tokens.close()
    return rate


class StampClient:
    """POST /v1/stamps as bytes built once, over plain asyncio streams with kept-alive connections.

    The load must cost far less CPU than what it measures: httpx spends about a millisecond of
    CPU on a request, as much as the gateway's whole share of a stamp.
    """

    BOUNDARY = "surge7MA4YWxkTrZu0gW"

    def __init__(self, address: str, document: bytes) -> None:
        self._host, _, port = address.rpartition(":")
        self._port = int(port)
        field = f"--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="
        parts = [
            f'{field}"pin"\r\n\r\n{PIN}\r\n'.encode(),
            f'{field}"doc_name"\r\n\r\nlamaran\r\n'.encode(),
            (
                f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="lamaran.pdf"'
                "\r\nContent-Type: application/pdf\r\n\r\n"
            ).encode()
            + document
            + f"\r\n--{self.BOUNDARY}--\r\n".encode(),
        ]
        self._body = b"".join(parts)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        # One process plays every user, and it and the gateway may each hold 20 000 files here: the
        # users share this many connections, a user without one waiting for the next to be free.
        self._open = 0
        self._freed = asyncio.Event()

    async def post(self, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        head = (
            f"POST /v1/stamps HTTP/1.1\r\nHost: {self._host}\r\n"
            f"Content-Type: multipart/form-data; boundary={self.BOUNDARY}\r\n"
            f"Content-Length: {len(self._body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        ).encode()
        while True:
            reader, writer, kept_alive = await self._connection()
            try:
                writer.write(head + self._body)
                try:
                    status_line = await reader.readline()
                except ConnectionResetError:
                    if not kept_alive:
                        raise
                    status_line = b""
                if not status_line and kept_alive:
                    # The server closed the idle connection meanwhile (its keep-alive ran out): send
                    # again on a new one, as any HTTP client does.
                    self._drop(writer)
                    continue
                status = int(status_line.split()[1])
                answer_headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    answer_headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(answer_headers.get("content-length", "0")))
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError) as exc:
                self._drop(writer)
                raise httpx.TransportError("connection lost") from exc
            break
        # Kept alive unless the server says otherwise, as a browser does (a refusal included: the
        # whole request went out with it, and the server reads the rest of the body past it).
        if answer_headers.get("connection", "").lower() == "close":
            self._drop(writer)
        else:
            self._keep(reader, writer)
        return status, answer_headers, body

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """An idle connection (True), or a new one (False) while fewer than MAX_CONNECTIONS are open."""
        while True:
            if self._idle:
                return *self._idle.pop(), True
            if self._open < MAX_CONNECTIONS:
                self._open += 1
                try:
                    return *await asyncio.open_connection(self._host, self._port), False
                except BaseException:
                    self._open -= 1
                    raise
            self._freed.clear()
            await self._freed.wait()

    def _keep(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._idle.append((reader, writer))
        self._freed.set()

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._open -= 1
        self._freed.set()

    def close(self) -> None:
        for _, writer in self._idle:
            self._drop(writer)
        self._idle.clear()


async def sign_in(http: httpx.AsyncClient, tally: Tally) -> Account:
    phone = "0813" + "".join(secrets.choice("0123456789") for _ in range(8))
    sent = await http.post("/v1/auth/otp", json={"phone": phone})
    sent.raise_for_status()
    e164 = sent.json()["phone"]
    outbox = (await http.get("/v1/dev/outbox", params={"phone": e164})).json()["messages"]
    code = re.search(r"\b(\d{6})\b", outbox[-1]["body"]).group(1)
    tokens = await http.post("/v1/auth/token", json={"phone": phone, "code": code})
    tokens.raise_for_status()
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    pin = await http.put("/v1/account/pin", json={"pin": PIN}, headers=headers)
    pin.raise_for_status()
    return Account(headers)


class OrderRefused(RuntimeError):
    """An order answered with another status than 201 (counted in the statuses already)."""


async def buy(http: httpx.AsyncClient, account: Account, quantity: int, tally: Tally, *, pay: bool) -> float:
    """One purchase: the order (timed), then, when asked, its sandbox payment."""
    started = time.perf_counter()
    order = await http.post(
        "/v1/orders",
        json={"quantity": quantity},
        headers=account.headers | {"Idempotency-Key": secrets.token_hex(12)},
    )
    elapsed = (time.perf_counter() - started) * 1000
    tally.statuses[order.status_code] += 1
    if order.status_code != 201:
        raise OrderRefused(f"order refused: {order.status_code} {order.text}")
    if pay:
        paid = await http.post(f"/v1/dev/payments/{order.json()['id']}/pay")
        tally.statuses[paid.status_code] += 1
        paid.raise_for_status()
        account.funded += quantity
    return elapsed


async def stamp_like_the_page(
    client: StampClient, account: Account, name: str, tally: Tally, deadline: float
) -> None:
    """One document, retried through the waiting room until stamped or the deadline."""
    key = secrets.token_hex(12)
    ticket = ""
    while time.monotonic() < deadline:
        headers = account.headers | {"Idempotency-Key": key}
        if ticket:
            headers["Waiting-Room-Ticket"] = ticket
        started = time.perf_counter()
        sent = tally.since_first_arrival()
        try:
            status, answer_headers, body = await client.post(headers)
        except httpx.TransportError as lost:
            tally.answers.append(Answer(sent, tally.since_first_arrival(), FAILED))
            tally.statuses[0] += 1
            tally.lost_connections[str(lost.__cause__ or lost)] += 1
            await asyncio.sleep(1)
            continue
        tally.statuses[status] += 1
        retry_after = float(answer_headers.get("retry-after", "0") or 0)
        answered = tally.since_first_arrival()
        tally.timeline.append((answered, status, retry_after))
        tally.answers.append(Answer(sent, answered, http_outcome(status)))
        if status == 201:
            tally.stamp_ms.append((time.perf_counter() - started) * 1000)
            tally.stamped[name] += 1
            tally.last_stamp = time.monotonic()
            return
        if status == 429:
            tally.turned_away += 1
            room = json.loads(body).get("waiting_room") or {}
            ticket = room.get("ticket", ticket)
            wait = retry_after or 1.0
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            continue
        if status == 409:
            # The first attempt with this key is still being stamped.
            await asyncio.sleep(float(answer_headers.get("retry-after", "1")))
            continue
        if status >= 500:
            # Counted with the statuses (the benchmark fails its target); the user gives up.
            return
        raise RuntimeError(f"stamp failed: {status} {body[:300]!r}")
    tally.gave_up += 1


async def warm_up(
    stack: Stack, http: httpx.AsyncClient, document: bytes, seconds: float, tally: Tally
) -> int:
    """Steady stamping through the gateway for `seconds` before the surge: a deadline surge meets a
    gateway that has been stamping all day, and knows its pace. Returns the units its accounts'
    books are off by."""
    # Several accounts: each is held to its own rate by the per-account bucket.
    accounts = [await sign_in(http, tally) for _ in range(8)]
    # Enough for each account's bucket (50 a second and a burst of 100, set by the Stack) to run out
    # first, however long the warm-up.
    units = round(50 * seconds) + 120
    for account in accounts:
        await buy(http, account, units, tally, pay=True)
    client = StampClient(stack.http, document)
    stamped: Counter[int] = Counter()
    stop = time.monotonic() + seconds

    async def user(n: int) -> None:
        which = n % len(accounts)
        while time.monotonic() < stop and stamped[which] < units - 20:
            key = {"Idempotency-Key": secrets.token_hex(12)}
            status, _, body = await client.post(accounts[which].headers | key)
            if status != 201:
                raise RuntimeError(f"warm-up stamp failed: {status} {body[:300]!r}")
            stamped[which] += 1

    before = CpuSample.take()
    await asyncio.gather(*(user(n) for n in range(16)))
    after = CpuSample.take()
    client.close()
    # The admitted path alone: nothing is turned away here, so the surge's figure less this one is
    # what its refusals and returns through the waiting room cost.
    steady = ""
    if before is not None and after is not None and stamped.total():
        spent_s = after.spent_since(before, stack.gateway.pid)
        steady = f", gateway CPU {spent_s * 1000 / stamped.total():.2f} ms a stamp"
    rate = stamped.total() / seconds
    print(f"warm-up: {rate:.0f} stamps/s through the gateway for {seconds:.0f} s{steady}")
    return sum([await books_off(http, account, stamped[n]) for n, account in enumerate(accounts)])


async def books_off(http: httpx.AsyncClient, account: Account, stamped: int) -> int:
    """Units by which the account's books are off: purchased against available + held + consumed
    + refunded, and consumed against the stamps it was answered 201 for."""
    books = (await http.get("/v1/balance", headers=account.headers)).json()
    held = books["available"] + books["held"] + books["consumed"] + books["refunded"]
    return abs(account.funded - held) + abs(books["consumed"] - stamped)


@dataclass
class Distributor:
    """A distributor's API over the gateway's gRPC port, signed in with its client credentials."""

    api: distributor_service_pb2_grpc.DistributorServiceStub
    metadata: tuple[tuple[str, str], ...]
    bought: int = 0

    async def books_off(self, stamped: int) -> int:
        """Units by which its books are off: bought against available + held + consumed + refunded,
        and consumed against the documents answered OK."""
        balance = await self.api.GetBalance(
            distributor_service_pb2.DistributorServiceGetBalanceRequest(), metadata=self.metadata
        )
        books = balance.balance
        lost = self.bought - (books.available + books.held + books.consumed + books.refunded)
        return abs(lost) + abs(books.consumed - stamped)


async def funded_distributor(
    stack: Stack, http: httpx.AsyncClient, channel: grpc.aio.Channel, quantity: int
) -> Distributor:
    """A new distributor with `quantity` units bought and paid in the sandbox."""
    tokens = stack.tokens()
    internal = service_channel(stack.services.auth_address, tokens)
    auth = auth_service_pb2_grpc.AuthServiceStub(internal)
    created = await auth.CreateDistributor(
        auth_service_pb2.CreateDistributorRequest(display_name="Distributor bench"), timeout=30
    )
    await internal.close()
    await tokens.close()
    api = distributor_service_pb2_grpc.DistributorServiceStub(channel)
    issued = await api.IssueToken(
        distributor_service_pb2.IssueTokenRequest(
            client_id=created.credential.client_id, client_secret=created.client_secret
        )
    )
    metadata = (("authorization", f"Bearer {issued.access_token}"),)
    order = await api.CreateOrder(
        distributor_service_pb2.DistributorServiceCreateOrderRequest(
            quantity=quantity, idempotency_key=secrets.token_hex(8)
        ),
        metadata=metadata,
    )
    paid = await http.post(f"/v1/dev/payments/{order.order.order_id}/pay")
    paid.raise_for_status()
    return Distributor(api, metadata, quantity)


def batch_item(document: bytes, key: str) -> distributor_service_pb2.BatchStampRequest:
    return distributor_service_pb2.BatchStampRequest(
        client_ref=key,
        document=distributor_service_pb2.StampDocumentRequest(
            document=document, idempotency_key=key, metadata=common_pb2.DocumentMetadata(name="kontrak")
        ),
    )


async def distributor_batch(distributor: Distributor, document: bytes, count: int, tally: Tally) -> int:
    """The distributor streams `count` documents through BatchStamp; returns the units its books are
    off by."""
    sent: dict[str, float] = {}

    async def documents():
        for n in range(count):
            key = f"batch-{secrets.token_hex(6)}-{n}"
            sent[key] = tally.since_first_arrival()
            yield batch_item(document, key)

    async for result in distributor.api.BatchStamp(documents(), metadata=distributor.metadata, timeout=600):
        answered = tally.since_first_arrival()
        outcome = grpc_outcome(result.code)
        tally.answers.append(Answer(sent.get(result.client_ref, answered), answered, outcome))
        if result.code == 0:
            tally.batch_ok += 1
            tally.last_stamp = max(tally.last_stamp, time.monotonic())
        else:
            tally.batch_failed[STATUS_NAMES.get(result.code, str(result.code))] += 1
    tally.events.append(Event(round(tally.since_first_arrival(), 3), "batch-end", "distributor"))
    return await distributor.books_off(tally.batch_ok)


async def watch_queues(address: str, every_s: float, tally: Tally, stop: asyncio.Event) -> None:
    """Reads the gateway's admission queue depths from its /metrics every `every_s` until `stop`.

    Plain asyncio streams and one metric asked for (prometheus_client's name[] filter): a read must
    cost the load and the gateway next to nothing. A read that fails is left out, not guessed.
    """
    host, _, port = address.rpartition(":")
    request = f"GET {QUEUE_DEPTHS_PATH} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    while not stop.is_set():
        at = tally.since_first_arrival()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            try:
                writer.write(request)
                # HTTP/1.0: the server closes the connection after the answer.
                text = (await asyncio.wait_for(reader.read(), 2)).decode("utf-8", "replace")
            finally:
                writer.close()
        except (OSError, TimeoutError):
            text = ""
        depths = {queue: float(value) for queue, value in QUEUE_DEPTH.findall(text)}
        if depths:
            tally.depths.append((at, depths))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


@dataclass
class Purchases:
    """What the buyers' process timed: every order's latency (ms), with (when it was sent, on
    this machine's monotonic clock, and its latency) for the timeline; the statuses answered.
    Only orders answered 201 are timed: the rest are in the statuses, a 5xx failing the run."""

    latencies: list[float]
    sent: list[tuple[float, float]]
    statuses: Counter[int]
    pid: int

    def describe(self) -> str:
        refused = sum(n for status, n in self.statuses.items() if status != 201)
        p50, p99 = percentile(self.latencies, 0.5), percentile(self.latencies, 0.99)
        return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(self.latencies)} orders, {refused} not created"


async def steady_purchases(
    base_url: str, headers: list[dict[str, str]], per_s: float, seconds: float, start_at: float | None
) -> Purchases:
    """`per_s` orders a second for `seconds` from `start_at` (this machine's monotonic clock; None:
    as soon as this client's connections are open), from the accounts in turn, each timed."""
    timed = Purchases([], [], Counter(), os.getpid())
    accounts = [Account(h) for h in headers]
    tally = Tally()
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)

    async def one(account: Account, timing: bool) -> None:
        try:
            sent = time.monotonic()
            elapsed = await buy(http, account, 1, tally, pay=False)
            if timing:
                timed.latencies.append(elapsed)
                timed.sent.append((sent, elapsed))
        except httpx.TransportError:
            # A connection the gateway closed under load: counted with the statuses, as status 0.
            tally.statuses[0] += 1
        except OrderRefused:
            # A refusal (429 when the purchases bulkhead is full) or a failure: a surge must not
            # end the run before it is reported.
            pass

    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:
        # Untimed, and before the clock starts: this client's own connections are opened first.
        for account in accounts:
            await one(account, timing=False)
        start = time.monotonic() if start_at is None else start_at
        interval = 1 / per_s
        tasks = []
        for n in itertools.count():
            due = start + n * interval
            if due >= start + seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(accounts[n % len(accounts)], timing=True)))
        await asyncio.gather(*tasks)
    timed.statuses = tally.statuses
    return timed


def purchases_in_own_process(
    base_url: str, headers: list[dict[str, str]], per_s: float, seconds: float, start_at: float | None
) -> Purchases:
    return asyncio.run(steady_purchases(base_url, headers, per_s, seconds, start_at))


def print_cpu(
    services: Services, before: CpuSample, after: CpuSample, stamps: int, load: dict[int, str] | None = None
) -> None:
    """CPU ms per admitted stamp over the run, by process: where the machine's time went. `load`
    names the benchmark's own processes besides this one."""
    names = {process.pid: name for name, process in services.running.items()}
    names[os.getpid()] = "load (this benchmark)"
    names.update(load or {})
    spent: Counter[str] = Counter()
    for pid, now in after.processes.items():
        used = after.spent_since(before, pid)
        if pid in names:
            spent[names[pid]] += used
        elif "resource_tracker" in now.command:
            # multiprocessing's helper beside the buyers' process.
            spent["load (buyers)"] += used
        elif "multiprocessing" in now.command:
            spent["signer workers"] += used
        elif now.name.startswith(("postgres", "redis")):
            spent[now.name.split("-")[0]] += used
        else:
            spent["other"] += used
    per_stamp = ", ".join(f"{name} {s * 1000 / max(stamps, 1):.2f}" for name, s in spent.most_common())
    machine = (after.busy_s - before.busy_s) * 1000 / max(stamps, 1)
    print(f"CPU ms per admitted stamp: {per_stamp}; whole machine {machine:.2f}")


def print_timeline(
    timeline: list[tuple[float, int, float]], purchases: list[tuple[float, float]], step_s: float = 2.0
) -> None:
    """Per `step_s` window: retail stamps stamped and turned away (with the mean wait given), and
    the slowest purchase sent in it."""
    windows: dict[int, list[tuple[int, float]]] = {}
    for at, status, wait in timeline:
        windows.setdefault(int(at // step_s), []).append((status, wait))
    slowest: dict[int, float] = {}
    for at, ms in purchases:
        slowest[int(at // step_s)] = max(slowest.get(int(at // step_s), 0.0), ms)
    for n in sorted(windows.keys() | slowest.keys()):
        answers = windows.get(n, [])
        waits = [w for s, w in answers if s == 429]
        mean_wait = statistics.fmean(waits) if waits else 0.0
        print(
            f"  t={n * step_s:5.0f}s  201/s {sum(s == 201 for s, _ in answers) / step_s:6.1f}  "
            f"429/s {len(waits) / step_s:6.1f}  mean Retry-After {mean_wait:5.1f} s  "
            f"slowest purchase {slowest.get(n, 0.0):6.0f} ms"
        )


async def run(options: Options, stack: Stack, document: bytes, tally: Tally) -> dict[str, float]:
    # The buyers time their orders from a process of their own, as other people's phones would:
    # in this one, an event loop sending a thousand stamp requests a second would delay reading
    # their answers by its own stalls.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as buyers_process:
        return await _run(options, stack, document, tally, buyers_process)


async def _run(
    options: Options, stack: Stack, document: bytes, tally: Tally, buyers_process: ProcessPoolExecutor
) -> dict[str, float]:
    capacity = await pool_capacity(stack, document, options.pool_s)
    limit = f"CPU limit {options.signer_cpu:g} cores" if options.signer_cpu else "no CPU limit"
    print(f"pool: one signer, one worker, {limit}: {capacity:.1f} stamps/s standalone")
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with (
        httpx.AsyncClient(base_url=f"http://{stack.http}", timeout=120, limits=limits) as http,
        grpc.aio.insecure_channel(stack.grpc) as distributor_channel,
    ):
        accounts: list[Account] = []
        while len(accounts) < options.retail_accounts + options.purchase_accounts:
            accounts.extend(await asyncio.gather(*(sign_in(http, tally) for _ in range(8))))
        retail, buyers = accounts[: options.retail_accounts], accounts[options.retail_accounts :]
        arrivals = round(SURGE_FACTOR * capacity * options.surge_s)
        per_account = arrivals // len(retail) + 1
        for first in range(0, len(retail), 16):
            await asyncio.gather(
                *(buy(http, a, per_account, tally, pay=True) for a in retail[first : first + 16])
            )
        # Set up before the surge, as a distributor is: its credentials are hashed with argon2, which
        # costs a quarter of a CPU-second here, and its token lasts for the whole surge.
        distributor = await funded_distributor(stack, http, distributor_channel, options.batch_documents)
        print(f"{len(retail)} retail accounts with {per_account} stamps each; {len(buyers)} buyers")

        warm_lost = await warm_up(stack, http, document, options.warm_up_s, tally)
        lane = f"http://{stack.purchases_http}"
        async with httpx.AsyncClient(base_url=lane, timeout=120, limits=limits) as buying:
            # Untimed: the purchases lane's first calls open its connections to quota and Redis,
            # which the main lane did while the accounts were funded.
            for account in buyers * 3:
                await buy(buying, account, 1, tally, pay=False)
        loop = asyncio.get_running_loop()
        buyer_headers = [account.headers for account in buyers]
        unloaded_run = await loop.run_in_executor(
            buyers_process,
            purchases_in_own_process,
            lane,
            buyer_headers,
            options.purchases_per_s,
            options.purchase_s,
            None,
        )
        tally.statuses.update(unloaded_run.statuses)
        unloaded = unloaded_run.latencies
        print(f"purchases unloaded: {unloaded_run.describe()}")

        stamper = StampClient(stack.http, document)
        # The buyers start with the arrivals, their connections open by then.
        starts_at = time.monotonic() + BUYERS_READY_S
        purchases = loop.run_in_executor(
            buyers_process,
            purchases_in_own_process,
            lane,
            buyer_headers,
            options.purchases_per_s,
            options.surge_s,
            starts_at,
        )
        await asyncio.sleep(max(0.0, starts_at - time.monotonic()))
        before = CpuSample.take()
        # The surge's clock starts when the buyers' does, however long the sample took.
        tally.first_arrival = starts_at
        deadline = starts_at + options.surge_s + options.drain_s
        tally.started_at = utc_now()
        tally.events.append(Event(0.0, "arrivals-start", "retail"))
        surge_done = asyncio.Event()
        watcher = None
        if options.watch_queues:
            watcher = asyncio.create_task(
                watch_queues(stack.metrics, options.watch_every_s, tally, surge_done)
            )
        arrival_rate = SURGE_FACTOR * capacity
        users = []
        batch = asyncio.create_task(distributor_batch(distributor, document, options.batch_documents, tally))
        for n in range(arrivals):
            await asyncio.sleep(max(0.0, tally.first_arrival + n / arrival_rate - time.monotonic()))
            account = retail[n % len(retail)]
            users.append(
                asyncio.create_task(
                    stamp_like_the_page(stamper, account, str(n % len(retail)), tally, deadline)
                )
            )
        offered_s = time.monotonic() - tally.first_arrival
        tally.events.append(Event(round(offered_s, 3), "arrivals-end", "retail"))
        await asyncio.gather(*users)
        stamper.close()
        loaded_run = await purchases
        tally.statuses.update(loaded_run.statuses)
        loaded = loaded_run.latencies
        print(f"purchases in the surge: {loaded_run.describe()}")
        tally.purchases = [(sent - tally.first_arrival, ms) for sent, ms in loaded_run.sent]
        distributor_lost = await batch
        surge_done.set()
        if watcher is not None:
            await watcher
        after = CpuSample.take()
        window = tally.last_stamp - tally.first_arrival
        admitted = len(tally.stamp_ms) + tally.batch_ok
        print(
            f"surge: {arrivals} retail stamp requests offered in {offered_s:.1f} s "
            f"({arrivals / offered_s:.0f}/s, {SURGE_FACTOR}x the pool), {tally.turned_away} answers "
            f"429, {tally.gave_up} gave up; distributor batch {tally.batch_ok} stamped, "
            f"failed {dict(tally.batch_failed)}"
        )
        print(f"statuses: {dict(sorted(tally.statuses.items()))}")
        if tally.lost_connections:
            print(f"connections lost: {dict(tally.lost_connections.most_common(5))}")
        print_timeline(tally.timeline, tally.purchases)

        lost = distributor_lost + warm_lost
        for n, account in enumerate(retail):
            lost += await books_off(http, account, tally.stamped[str(n)])
    reconcile = subprocess.run(
        [
            str(Path(sys.executable).parent / "emeterai"),
            "audit",
            "reconcile",
            "--database-url",
            stack.database_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"emeterai audit reconcile: exit {reconcile.returncode}: {reconcile.stdout.strip()[-300:]}")
    if reconcile.returncode != 0:
        lost += max(1, reconcile.stdout.count("\n"))
    gateway_cpu_ms = 0.0
    if before is not None and after is not None:
        # Both lanes: the purchases lane's work is the gateway's too.
        for pid in (process.pid for process in stack.gateways):
            gateway_cpu_ms += after.spent_since(before, pid) * 1000
        print_cpu(stack.services, before, after, admitted, {loaded_run.pid: "load (buyers)"})
    return {
        "admitted_per_s": admitted / window if window > 0 else 0.0,
        "pool_capacity_per_s": capacity,
        "stamp_p50_ms": percentile(tally.stamp_ms, 0.5),
        "stamp_p99_ms": percentile(tally.stamp_ms, 0.99),
        "purchase_p99_ms": percentile(loaded, 0.99),
        "purchase_p99_unloaded_ms": percentile(unloaded, 0.99),
        "http_5xx": float(tally.http_5xx),
        "lost_quota": float(lost),
        "gateway_cpu_ms_per_stamp": gateway_cpu_ms / admitted if admitted else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run, for the smoke test")
    parser.add_argument("--surge-s", type=float, default=10.0, help="seconds of 10x arrivals")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("EMETERAI_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--redis-url", default=os.environ.get("EMETERAI_TEST_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument(
        "--json-out", type=Path, metavar="FILE", help="write the surge second by second, for bench/report.py"
    )
    parser.add_argument(
        "--signer-cpu", type=float, default=Options.signer_cpu, help="the pool's CPU limit, cores (0: none)"
    )
    parser.add_argument(
        "--one-gateway",
        action="store_true",
        help="purchases through the stamping gateway, not a purchases lane of their own",
    )
    parser.add_argument(
        "--warm-up-s",
        type=float,
        default=None,
        help="seconds of steady stamping before the surge, whose gateway CPU a stamp is printed",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=None,
        help="how long a stamp's PIN check and ledger calls wait for company (default: the gateway's)",
    )
    args = parser.parse_args()
    options = Options(
        args.quick,
        args.surge_s,
        args.postgres_url,
        args.redis_url,
        signer_cpu=args.signer_cpu,
        purchases_lane=not args.one_gateway,
    )
    if options.signer_cpu and not CpuLimit.available():
        print("NOTE: no writable cgroup cpu controller here (Linux, as root): the pool has no CPU limit")
        options.signer_cpu = 0.0
    options.watch_queues = args.json_out is not None
    if args.quick:
        options.surge_s = min(options.surge_s, 1.0)
        options.pool_s = options.purchase_s = 2.0
        options.drain_s = 90.0
        options.retail_accounts, options.purchase_accounts, options.batch_documents = 20, 4, 10
        options.warm_up_s = 2.0
    if args.warm_up_s is not None:
        options.warm_up_s = args.warm_up_s
    document = DOCUMENT.read_bytes()
    with (
        tempfile.TemporaryDirectory(prefix="emeterai-surge-") as directory,
        throwaway_database(options.postgres_url) as database_url,
        Services(Path(directory)) as services,
    ):
        stack = Stack(
            services,
            database_url,
            options.redis_url,
            signer_cpu=options.signer_cpu,
            purchases_lane=options.purchases_lane,
            batch_window_ms=args.batch_window_ms,
        )
        tally = Tally()
        try:
            results = asyncio.run(run(options, stack, document, tally))
        finally:
            stack.remove_limits()
        if results["http_5xx"]:
            for name in services.running:
                log = (services.directory / f"{name}.log").read_text(errors="replace")
                errors = [line[:4000] for line in log.splitlines() if '"ERROR"' in line]
                print(f"{name}: {len(errors)} errors", *errors[:5], sep="\n  ")
    share = results["admitted_per_s"] / max(results["pool_capacity_per_s"], 1e-9)
    slowdown = results["purchase_p99_ms"] / max(results["purchase_p99_unloaded_ms"], 1e-9)
    if args.json_out is not None:
        write_run(
            args.json_out,
            Run(
                kind="surge",
                started_at=tally.started_at,
                command=command_line(sys.argv),
                result={name: results[name] for name in RESULT_NAMES},
                samples=samples_from(tally.answers, tally.depths, queue=RETAIL_STAMPS_QUEUE),
                events=tally.events,
            ),
        )
        print(
            f"run file: {args.json_out}: {len(tally.answers)} stamp requests, {len(tally.depths)} queue reads"
        )
    print(
        f"targets: admitted >= 90% of the pool ({share:.0%}), purchase p99 <= 2x unloaded "
        f"({slowdown:.1f}x), 0 5xx, 0 lost quota, gateway CPU <= 2 ms per stamp"
    )
    print("RESULT " + " ".join(f"{name}={results[name]:.1f}" for name in RESULT_NAMES))


if __name__ == "__main__":
    main()
