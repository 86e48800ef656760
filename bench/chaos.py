"""A chaos run on loopback: services killed and restarted under load, and nothing may be lost.

    .venv/bin/python bench/chaos.py [--seconds S] [--seed N] [--quick] [--json-out FILE]
        [--postgres-url URL] [--max-pdfs N]

The stack runs as in production, each service its own process (bench/surge.py's Stack): auth,
quota on a throwaway PostgreSQL database, one signer, the gateway; and a Redis server of the run's
own (never the machine's), without persistence, for the gateway's token buckets and auth's codes
and revocations. The quota service's holds expire after HOLD_TTL_S, so a hold left behind by a
killed gateway is released within the run.

For --seconds, retail users and distributors send a seeded mix of work, each as a real client
does it (bench/chaos_ops.py): retail purchases (an order under an Idempotency-Key, sometimes sent
twice, then its sandbox payment, paid again only after looking the order up), retail stamps (the
account's PIN, the waiting room's tickets, the same key again after a lost connection or a 503),
new users signing in, and distributors' StampDocument calls, BatchStamp streams and orders over
gRPC, the same keys again after UNAVAILABLE. Some stamps are sent once more after they succeeded,
as a client unsure of its answer does, and must be answered with the same stamp.

Meanwhile, every few seconds, one of signer, quota, auth, gateway (SIGKILL, with every process it
started) or Redis (kill -9, restarted empty) is killed and, after a short delay, started again on
the same address. The first two kills are the signer and one of quota and gateway, the next three
the other targets, then any. PostgreSQL stays up: it is the machine's.

Then, with every service up, the run waits out the hold TTL and the quota sweeper, and checks the
books (bench/chaos_checks.py says exactly how each figure is counted), downloads and validates the
stamped PDFs with poppler's pdfsig, and runs `emeterai audit verify` and `emeterai audit
reconcile` on the ledger's database.

An operation is one document to stamp, one purchase or one sign-in, however many requests it
took. It succeeded when its client got what it asked for (or, having given up, finds the stamp in
its history or the order paid); it failed cleanly when its client was given a clear error (a
problem+json 4xx, 429 or 503, a gRPC status) or lost the connection, and the ledger shows it cost
nothing. The run ends with

    RESULT ops=N succeeded=N failed_cleanly=N kills=N lost_quota=N double_charges=N
        reused_serials=N invalid_pdfs=N

on one line, and must show 0 for the last four. It exits 1 otherwise.

--seed makes the run's schedule reproducible: which operations each client sends, with which
documents, keys and quantities, and which service is killed when and for how long. Timing is
not: how many operations fit in the run and which of them an outage hits change from run to run,
so two runs with one seed are alike, not identical. Without --seed a seed is drawn and printed.

With --json-out, the run second by second goes to a run file (bench/runfile.py) for
bench/report.py, with every kill and restart as an event.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import grpc  # noqa: E402
import httpx  # noqa: E402
from chaos_checks import Findings, check  # noqa: E402
from chaos_ops import OP_BUDGET_S, DistributorClient, Record, RetailUser, new_sign_in  # noqa: E402
from ledger_stack import Services, _free_address, popen_tied, throwaway_database  # noqa: E402
from runfile import KILL, RESTART, SUCCEEDED, Event, Run, command_line, samples_from, utc_now, write_run  # noqa: E402
from surge import DEFAULT_POSTGRES, DOCUMENT, Stack, Tally, buy, funded_distributor, sign_in  # noqa: E402

from services.quota.server import SWEEP_INTERVAL_S  # noqa: E402

RESULT_NAMES = (
    "ops",
    "succeeded",
    "failed_cleanly",
    "kills",
    "lost_quota",
    "double_charges",
    "reused_serials",
    "invalid_pdfs",
)
INVARIANTS = RESULT_NAMES[4:]
TARGETS = ("signer", "quota", "auth", "gateway", "redis")
# The shortest TTL the quota service takes: what a killed gateway leaves held comes back soon.
HOLD_TTL_S = 10
# Small PDFs of the shared corpus that stamp as they are.
DOCUMENTS = (
    "sf-001-minimal-document.pdf",
    "sf-002-libreoffice-writer.pdf",
    "sf-008-reportlab-inline-image.pdf",
    "sf-020-xmp-pymupdf.pdf",
)
RETAIL_MIX = {"stamp": 75, "buy": 20, "sign_in": 5}
DISTRIBUTOR_MIX = {"stamp": 45, "batch": 40, "buy": 15}
MAX_BATCH = 6
# After the last second of load, how long an operation still in flight may go on.
DRAIN_S = 20.0
# No kill this close to the end: the last restart is done while the load still runs.
QUIET_END_S = 3.0
# Client channels try a restarted gateway again within a second, not after gRPC's default backoff.
CLIENT_CHANNEL = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass
class Options:
    seconds: float
    seed: int
    postgres_url: str
    json_out: Path | None
    max_pdfs: int = 1500
    retail_users: int = 6
    distributors: int = 2


class RedisServer:
    """A redis-server of the run's own on a loopback port, without persistence: restarted, it
    comes back empty, as a cache node that lost its memory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.address = _free_address()
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    @property
    def url(self) -> str:
        return f"redis://{self.address}/0"

    def start(self) -> None:
        self.spawn()
        self.wait_started()

    def spawn(self) -> None:
        """Start redis-server without waiting; from a thread that outlives it (see Services.spawn)."""
        host, _, port = self.address.rpartition(":")
        command = [self.binary, "--bind", host, "--port", port, "--save", "", "--appendonly", "no"]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = popen_tied(
                [*command, "--dir", str(self.directory)], stdout=log, stderr=subprocess.STDOUT
            )

    def wait_started(self) -> None:
        """Until it answers PING."""
        assert self.process is not None
        host, _, port = self.address.rpartition(":")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection((host, int(port)), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on {self.address}; see {self.directory}/redis.log")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass(frozen=True)
class Outage:
    gap_s: float  # from the previous restart to this kill
    target: str
    down_s: float  # from the kill to the restart


def outages(rng: random.Random, seconds: float) -> Iterator[Outage]:
    """The kill schedule: the signer and one of quota and gateway first (in seeded order), then
    the other three targets, then seeded random ones. Short runs kill more often."""
    first = ["signer", rng.choice(["quota", "gateway"])]
    rng.shuffle(first)
    rest = [target for target in TARGETS if target not in first]
    rng.shuffle(rest)
    planned = first + rest
    gap = (1.0, 3.0) if seconds < 60 else (2.0, 8.0)
    while True:
        target = planned.pop(0) if planned else rng.choice(TARGETS)
        yield Outage(rng.uniform(*gap), target, rng.uniform(0.5, 2.5))


async def cause_chaos(
    services: Services, redis: RedisServer, rng: random.Random, record: Record, seconds: float
) -> list[Event]:
    events: list[Event] = []
    for outage in outages(rng, seconds):
        if record.t() + outage.gap_s > seconds - QUIET_END_S:
            break
        await asyncio.sleep(outage.gap_s)
        # Killed and spawned from the event loop's thread, which outlives them; waited for in
        # another, so the load goes on meanwhile.
        if outage.target == "redis":
            redis.kill()
        else:
            services.kill(outage.target)
        events.append(Event(round(record.t(), 3), KILL, outage.target))
        await asyncio.sleep(outage.down_s)
        if outage.target == "redis":
            redis.spawn()
            await asyncio.to_thread(redis.wait_started)
        else:
            services.spawn(outage.target)
            await asyncio.to_thread(services.wait_started, outage.target)
        events.append(Event(round(record.t(), 3), RESTART, outage.target))
        down = events[-1].t - events[-2].t
        print(f"  t={events[-2].t:6.1f}s  killed {outage.target}, back after {down:.1f} s", flush=True)
    return events


def pick(rng: random.Random, mix: dict[str, int]) -> str:
    return rng.choices(list(mix), weights=list(mix.values()))[0]


async def retail_load(user: RetailUser, n: int, rng: random.Random, seconds: float) -> None:
    """One user's seeded operations until the run's end. Every operation draws the same random
    values whatever its kind, so the n-th operation of a seed is always the same."""
    record = user.record
    for i in itertools.count():
        if record.t() >= seconds:
            return
        kind, document = pick(rng, RETAIL_MIX), rng.choice(DOCUMENTS)
        quantity, repeat, pause = rng.randint(1, 5), rng.random() < 0.15, rng.uniform(0.0, 0.3)
        deadline = min(record.t() + OP_BUDGET_S, seconds + DRAIN_S)
        if kind == "stamp":
            await user.stamp(f"r{n}-s{i}", document, repeat, deadline)
        elif kind == "buy":
            await user.buy(f"r{n}-o{i}", quantity, repeat, deadline)
        else:
            await new_sign_in(user.http, record)
        await asyncio.sleep(pause)


async def distributor_load(client: DistributorClient, n: int, rng: random.Random, seconds: float) -> None:
    record = client.record
    for i in itertools.count():
        if record.t() >= seconds:
            return
        kind, size = pick(rng, DISTRIBUTOR_MIX), rng.randint(2, MAX_BATCH)
        documents = [rng.choice(DOCUMENTS) for _ in range(MAX_BATCH)][:size]
        quantity, repeat, pause = rng.randint(5, 50), rng.random() < 0.15, rng.uniform(0.0, 0.3)
        deadline = min(record.t() + OP_BUDGET_S, seconds + DRAIN_S)
        if kind == "stamp":
            await client.stamp(f"d{n}-s{i}", documents[0], repeat, deadline)
        elif kind == "batch":
            await client.batch(f"d{n}-b{i}", documents, deadline)
        else:
            await client.buy(f"d{n}-o{i}", quantity, deadline)
        await asyncio.sleep(pause)


async def run(
    options: Options, stack: Stack, redis: RedisServer, documents: dict[str, bytes]
) -> tuple[Findings, Record, list[Event]]:
    rng = random.Random(options.seed)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
    async with (
        httpx.AsyncClient(base_url=f"http://{stack.http}", timeout=40, limits=limits) as http,
        grpc.aio.insecure_channel(stack.grpc, options=CLIENT_CHANNEL) as channel,
    ):
        accounts = [await sign_in(http, Tally()) for _ in range(options.retail_users)]
        for account in accounts:
            await buy(http, account, round(100 + 2 * options.seconds), Tally(), pay=True)
        funding = round(200 + 6 * options.seconds)
        distributors = [
            await funded_distributor(stack, http, channel, funding) for _ in range(options.distributors)
        ]
        print(
            f"{len(accounts)} retail users, {len(distributors)} distributors; {options.seconds:.0f} s of "
            f"load and kills, seed {options.seed}",
            flush=True,
        )
        record = Record()
        users = [RetailUser(http, account, record, documents) for account in accounts]
        clients = [DistributorClient(d, http, record, documents) for d in distributors]
        # One random stream for the kills and one for each client, each from the seed.
        chaos = asyncio.create_task(
            cause_chaos(stack.services, redis, random.Random(rng.random()), record, options.seconds)
        )
        await asyncio.gather(
            *(retail_load(u, n, random.Random(rng.random()), options.seconds) for n, u in enumerate(users)),
            *(
                distributor_load(c, n, random.Random(rng.random()), options.seconds)
                for n, c in enumerate(clients)
            ),
        )
        events = await chaos
        quiet = record.t()
        wait = HOLD_TTL_S + SWEEP_INTERVAL_S + 2
        print(
            f"load done at t={quiet:.1f}s; waiting {wait:.0f} s for every hold to outlive its TTL", flush=True
        )
        await asyncio.sleep(wait)
        findings = await check(
            record,
            [*users, *clients],
            stack.database_url,
            documents,
            max_pdfs=options.max_pdfs,
            rng=random.Random(rng.random()),
        )
    return findings, record, events


def summarize(findings: Findings, record: Record, events: list[Event]) -> None:
    stamps = Counter((op.channel, op.succeeded) for op in record.stamps)
    errors = Counter(
        op.error.split(":")[0][:80]
        for op in [*record.stamps, *record.orders]
        if op.error and not op.succeeded
    )
    kills = Counter(e.target for e in events if e.kind == KILL)
    print(
        f"stamps: retail {stamps['retail', True]} stamped, {stamps['retail', False]} not; distributor "
        f"{stamps['distributor', True]} stamped, {stamps['distributor', False]} not; orders "
        f"{sum(o.paid for o in record.orders)} paid of {len(record.orders)}; sign-ins "
        f"{record.sign_ins.count('')} of {len(record.sign_ins)}"
    )
    print(f"kills: {dict(kills)}; requests sent: {len(record.answers)}, timed out: {record.timeouts}")
    recovery = []
    for event in (e for e in events if e.kind == RESTART):
        first = min(
            (a.answered for a in record.answers if a.outcome == SUCCEEDED and a.sent >= event.t), default=None
        )
        if first is not None:
            recovery.append(f"{event.target} {first - event.t:.1f}")
    print(f"seconds from a restart to the first request sent after it that succeeded: {', '.join(recovery)}")
    if errors:
        print(f"last errors of operations not done: {dict(errors.most_common(8))}")
    for op in [op for op in record.stamps if not op.succeeded][:8]:
        print(f"  not stamped: {op.channel} {op.keys}: {' | '.join(op.history[-6:])}")
    print(
        f"checked {findings.pdfs_checked} stamped PDFs; {findings.found_in_history} stamps found in "
        f"history after the client gave up"
    )
    if findings.unclear:
        print(
            f"{len(findings.unclear)} answers that were not a clear error:",
            *findings.unclear[:10],
            sep="\n  ",
        )
    if findings.problems:
        print(f"{len(findings.problems)} findings:", *findings.problems[:30], sep="\n  ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of load and kills")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (default: drawn)")
    parser.add_argument("--quick", action="store_true", help="a short run for CI: 20 s, fewer clients")
    parser.add_argument("--json-out", type=Path, help="write the run file here")
    parser.add_argument("--max-pdfs", type=int, default=1500, help="stamped PDFs validated at most")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("EMETERAI_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    options = Options(args.seconds, seed, args.postgres_url, args.json_out, max_pdfs=args.max_pdfs)
    if args.quick:
        options.seconds = min(options.seconds, 20.0)
        options.retail_users, options.max_pdfs = 4, min(options.max_pdfs, 400)
    print(f"seed {seed} (rerun with --seed {seed})", flush=True)
    started_at = utc_now()
    corpus = Path(os.environ.get("EMETERAI_CORPUS_DIR", DOCUMENT.parent))
    documents = {name: (corpus / name).read_bytes() for name in DOCUMENTS}
    with (
        tempfile.TemporaryDirectory(prefix="emeterai-chaos-") as directory,
        throwaway_database(options.postgres_url) as database_url,
        RedisServer(Path(directory)) as redis,
        Services(
            Path(directory),
            overrides={
                "quota": {"EMETERAI_HOLD_TTL_S": str(HOLD_TTL_S)},
                # Auth keeps codes and revocations in the run's Redis, as in production; tokens
                # outlast the run.
                "auth": {"EMETERAI_REDIS_URL": redis.url, "EMETERAI_ACCESS_TOKEN_TTL_S": "3600"},
            },
        ) as services,
    ):
        stack = Stack(services, database_url, redis.url)
        findings, record, events = asyncio.run(run(options, stack, redis, documents))
    summarize(findings, record, events)
    result = {
        "ops": findings.ops,
        "succeeded": findings.succeeded,
        "failed_cleanly": findings.failed_cleanly,
        "kills": sum(e.kind == KILL for e in events),
        "lost_quota": findings.lost_quota,
        "double_charges": findings.double_charges,
        "reused_serials": findings.reused_serials,
        "invalid_pdfs": findings.invalid_pdfs,
    }
    if options.json_out is not None:
        write_run(
            options.json_out,
            Run(
                kind="chaos",
                started_at=started_at,
                command=command_line(sys.argv),
                result={name: float(value) for name, value in result.items()},
                samples=samples_from(record.answers),
                events=events,
            ),
        )
    print("RESULT " + " ".join(f"{name}={result[name]}" for name in RESULT_NAMES))
    return 1 if any(result[name] for name in INVARIANTS) else 0


if __name__ == "__main__":
    sys.exit(main())
