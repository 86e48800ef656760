"""Ledger operations per second through QuotaService, over gRPC on loopback, on PostgreSQL and SQLite.

    .venv/bin/python bench/ledger.py [--quick] [--pairs N] [--concurrency N] [--clients N]
                                     [--accounts N] [--seconds S] [--replicas N]
                                     [--skip-postgres] [--only SCENARIO ...]

The real services run as their own processes (`python -m services.auth`, `python -m services.quota`)
on free 127.0.0.1 ports, with the EMETERAI_* variables `emeterai up` gives them: --replicas quota
services on one PostgreSQL database made for this run (dropped at the end), as replicas behind a
Kubernetes Service would be, and one quota service on a SQLite file in a temporary folder (SQLite
is the single-node default: one writer process). Every call carries a service token from
AuthService, as the gateway's do.

Why two replicas by default: one quota process runs its gRPC event loop and its writer under one
interpreter lock, and measured at most about 0.75 of a core however many calls were in flight; the
second replica is how the service uses the second core, here as in a cluster.

Scenarios, each a warm-up and then a measured phase of at most --pairs operations and --seconds:
  pg            Reserve then Commit, round-robin over --accounts accounts funded beforehand;
  pg_hot        the same on one account, so every pair waits for the same balance row;
  pg_orders     CreateOrder then ConfirmPayment with the webhook the sandbox provider signs;
  pg_unary      as pg, but one gRPC call per operation instead of the gateway's coalescing;
  pg_reference  two GetBalance calls: what the way through gRPC, the token check and a worker
                thread costs when the ledger work is one read instead of two transactions;
  sqlite        as pg, on SQLite.

The clients call as the gateway does, through BatchingQuotaStub (services/quota/client.py), which
coalesces concurrent calls into QuotaService.Batch calls; pg_unary shows what that is worth.

The load comes from --clients processes (bench/ledger_load.py), --concurrency calls in flight in
all; client i calls replica i modulo --replicas. A barrier starts their measured phases together,
and a rate is the operations that succeeded over the span from that start to the last client's end.
After each scenario every account is read back with GetBalance and compared with what the clients
counted. CPU per operation over the
measured phase is read from /proc for the quota processes, PostgreSQL (for this database), the load
clients and everything else, so a busy machine shows in the figures instead of hiding in them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ledger_load import (  # noqa: E402
    BARRIER_TIMEOUT_S,
    SERVICE_NAME,
    Caller,
    ClientReport,
    Load,
    buy,
    run_client,
)
from ledger_stack import CpuSample, CpuUse, Quota, Services, throwaway_database  # noqa: E402

from emeterai.v1 import quota_service_pb2 as pb  # noqa: E402
from emeterai.v1 import quota_service_pb2_grpc  # noqa: E402
from services.common.clients import ServiceTokenSource, service_channel  # noqa: E402
from services.quota.ledger import MAX_ORDER_QUANTITY  # noqa: E402
from services.quota.payments import SandboxProvider  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RESULT_NAMES = ("pg_pairs_per_s", "pg_hot_pairs_per_s", "pg_orders_per_s", "sqlite_pairs_per_s")
QUICK = {"pairs": 200, "concurrency": 16, "clients": 2, "accounts": 16, "seconds": 5.0, "replicas": 2}
FULL = {"pairs": 10_000, "concurrency": 256, "clients": 2, "accounts": 256, "seconds": 30.0, "replicas": 2}
SCENARIOS = ("pg", "pg_hot", "pg_orders", "pg_unary", "pg_reference", "sqlite")
# CPU spent outside the benchmark above this share of the machine gets a warning.
BUSY_ELSEWHERE = 0.1


@dataclass(frozen=True)
class Options:
    pairs: int
    concurrency: int
    clients: int
    accounts: int
    seconds: float
    # Quota service processes on the PostgreSQL database, as replicas in a cluster would be.
    replicas: int
    postgres_url: str
    skip_postgres: bool
    # Scenario names to run; empty runs them all.
    only: frozenset[str] = frozenset()

    def runs(self, scenario: str) -> bool:
        return not self.only or scenario in self.only

    @property
    def warmup(self) -> int:
        return max(self.concurrency, self.pairs // 20)


@dataclass
class Outcome:
    name: str
    unit: str  # what one operation is, plural: "pairs", "orders"
    done: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]
    error_samples: dict[str, str]
    per_account: Counter[str]
    clients_cpu_s: float
    cpu: CpuUse | None

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


async def measure(name: str, unit: str, load: Load, clients: int, quota: Quota, ours: set[int]) -> Outcome:
    """Run load from `clients` processes that share its workers and counts; gather their reports.

    ours: the benchmark's other processes, which are not counted as someone else's CPU use.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients + 1)
    reports = context.Queue()
    processes = [
        context.Process(
            target=run_client,
            args=(
                replace(
                    load,
                    workers=max(1, _share(load.workers, clients, index)),
                    warmup=_share(load.warmup, clients, index),
                    count=_share(load.count, clients, index),
                ),
                index,
                clients,
                barrier,
                reports,
            ),
            daemon=True,
        )
        for index in range(clients)
    ]
    for process in processes:
        process.start()
    before = after = None
    answers: list[Any] = []
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_S + load.seconds)
            before = CpuSample.take()
        for _ in processes:
            answers.append(await asyncio.to_thread(reports.get, True, BARRIER_TIMEOUT_S + 2 * load.seconds))
        after = CpuSample.take()
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    failures = [answer for answer in answers if isinstance(answer, str)]
    if failures:
        raise RuntimeError("; ".join(failures))
    client_reports: list[ClientReport] = answers
    cpu = None
    if before is not None and after is not None:
        ours = ours | {process.pid for process in processes if process.pid is not None}
        cpu = CpuUse.between(before, after, quota=quota, ours=ours)
    return Outcome(
        name,
        unit,
        done=sum(r.done for r in client_reports),
        seconds=max(r.ended for r in client_reports) - min(r.started for r in client_reports),
        latencies=[latency for r in client_reports for latency in r.latencies],
        errors=sum((r.errors for r in client_reports), Counter()),
        error_samples={k: v for r in client_reports for k, v in r.error_samples.items()},
        per_account=sum((r.per_account for r in client_reports), Counter()),
        clients_cpu_s=sum(r.cpu_s for r in client_reports),
        cpu=cpu,
    )


class Books(NamedTuple):
    available: int
    held: int
    consumed: int
    purchased: int


def _most_per_account(load: Load, clients: int) -> int:
    """The most operations one account can see: each client goes round-robin over the accounts,
    interleaved with the others."""
    most = max(_share(load.warmup, clients, i) + _share(load.count, clients, i) for i in range(clients))
    return math.ceil(most * clients / len(load.accounts))


async def fund(caller: Caller, accounts: Sequence[str], quantity: int) -> None:
    """Buy quantity units for every account, as many orders as the ledger's largest order needs."""
    gate = asyncio.Semaphore(32)

    async def fund_one(account: str) -> None:
        async with gate:
            for part, start in enumerate(range(0, quantity, MAX_ORDER_QUANTITY)):
                await buy(caller, account, f"fund-{part}", min(MAX_ORDER_QUANTITY, quantity - start))

    await asyncio.gather(*(fund_one(account) for account in accounts))


async def check_books(caller: Caller, expected: dict[str, Books]) -> list[str]:
    """Every account's balance through GetBalance, against what it should be; one line per difference."""
    gate = asyncio.Semaphore(32)
    problems: list[str] = []

    async def check_one(account: str) -> None:
        async with gate:
            balance = (await caller.call("GetBalance", pb.GetBalanceRequest(account_id=account))).balance
        books = Books(balance.available, balance.held, balance.consumed, balance.purchased)
        if books != expected[account]:
            problems.append(f"{account}: expected {expected[account]}, the ledger has {books}")

    await asyncio.gather(*(check_one(account) for account in expected))
    return sorted(problems)


@dataclass
class Target:
    """One running quota service and the benchmark's own way in, for funding and checking."""

    quota: Quota
    caller: Caller
    services: Services
    options: Options

    def load(self, operation: str, accounts: Sequence[str], batching: bool = True) -> Load:
        return Load(
            operation,
            self.quota.addresses,
            self.services.auth_address,
            self.services.service_secret,
            self.services.webhook_secret,
            tuple(accounts),
            self.options.concurrency,
            self.options.warmup,
            self.options.pairs,
            self.options.seconds,
            batching,
        )

    async def measure(self, name: str, unit: str, load: Load) -> Outcome:
        return await measure(name, unit, load, self.options.clients, self.quota, self.services.pids())

    async def pairs(self, name: str, accounts: Sequence[str], batching: bool = True) -> Outcome:
        """Reserve+commit pairs over accounts, funded first with what they can possibly use."""
        load = self.load("pair", accounts, batching)
        funded = _most_per_account(load, self.options.clients)
        await fund(self.caller, accounts, funded)
        outcome = await self.measure(name, "pairs", load)
        used = outcome.per_account
        expected = {a: Books(funded - used[a], 0, used[a], funded) for a in accounts}
        report(outcome, await check_books(self.caller, expected))
        return outcome

    async def orders(self, name: str, accounts: Sequence[str]) -> Outcome:
        """Orders of one unit, each paid by its own webhook, for accounts that start empty."""
        outcome = await self.measure(name, "orders", self.load("order", accounts))
        paid = outcome.per_account
        expected = {a: Books(paid[a], 0, 0, paid[a]) for a in accounts}
        report(outcome, await check_books(self.caller, expected))
        return outcome

    async def reads(self, name: str, accounts: Sequence[str]) -> Outcome:
        outcome = await self.measure(name, "reads", self.load("balance", accounts))
        report(outcome, None)
        return outcome


@contextlib.asynccontextmanager
async def target(services: Services, quota: Quota, options: Options) -> AsyncIterator[Target]:
    tokens = ServiceTokenSource(services.auth_address, SERVICE_NAME, services.service_secret)
    channel = service_channel(quota.address, tokens)
    provider = SandboxProvider(services.webhook_secret.encode())
    try:
        caller = Caller(quota_service_pb2_grpc.QuotaServiceStub(channel), provider)
        yield Target(quota, caller, services, options)
    finally:
        await channel.close()
        await tokens.close()


def _accounts(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def run_all(
    options: Options, services: Services, postgres: Quota | None, sqlite: Quota
) -> dict[str, float]:
    rates = dict.fromkeys(RESULT_NAMES, 0.0)
    spread = _accounts("spread", options.accounts)
    if postgres is None:
        print("PostgreSQL skipped (--skip-postgres): its figures are 0")
    else:
        async with target(services, postgres, options) as pg:
            if options.runs("pg"):
                rates["pg_pairs_per_s"] = (await pg.pairs("pg", spread)).rate
            if options.runs("pg_hot"):
                rates["pg_hot_pairs_per_s"] = (await pg.pairs("pg_hot", ["hot"])).rate
            if options.runs("pg_orders"):
                orders = await pg.orders("pg_orders", _accounts("buyer", options.accounts))
                rates["pg_orders_per_s"] = orders.rate
            if options.runs("pg_unary"):
                await pg.pairs("pg_unary", _accounts("unary", options.accounts), batching=False)
            if options.runs("pg_reference"):
                await pg.reads("pg_reference", spread)
    if options.runs("sqlite"):
        async with target(services, sqlite, options) as lite:
            rates["sqlite_pairs_per_s"] = (await lite.pairs("sqlite", spread)).rate
    return rates


def run(options: Options) -> dict[str, float]:
    """Start the services, run every scenario, stop them, drop the database."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emeterai-bench-ledger-")))
        database_url = None
        if not options.skip_postgres:
            database_url = stack.enter_context(throwaway_database(options.postgres_url))
        # Every service starts before the benchmark's own calls do: with calls in flight, gRPC
        # cannot prepare for a fork (and says so in the output).
        services = stack.enter_context(Services(directory))
        services.start_auth()
        postgres = (
            services.start_quota("quota-postgres", database_url, options.replicas) if database_url else None
        )
        sqlite = services.start_quota("quota-sqlite", f"sqlite:///{directory / 'quota.db'}")
        rates = asyncio.run(run_all(options, services, postgres, sqlite))
    return rates


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def report(outcome: Outcome, problems: list[str] | None) -> None:
    """Print a scenario's figures; problems are the books' disagreements, None when not checked."""
    print(
        f"{outcome.name:13} {outcome.done:6d} {outcome.unit:6} in {outcome.seconds:6.2f} s = "
        f"{outcome.rate:7.1f}/s   latency p50 {_percentile(outcome.latencies, 0.5) * 1000:6.1f} ms"
        f"  p99 {_percentile(outcome.latencies, 0.99) * 1000:6.1f} ms"
        f"   errors {sum(outcome.errors.values())}",
        flush=True,
    )
    indent = " " * 14
    cpu = outcome.cpu
    if cpu is not None and outcome.done:
        per = 1000 / outcome.done
        # Whatever the quota service, its PostgreSQL and the load did not use: the idle parts of
        # the benchmark, interrupts, and anyone else's processes, some too short-lived to name.
        elsewhere = cpu.busy_s - cpu.quota_s - cpu.postgres_s - outcome.clients_cpu_s
        cores = os.cpu_count() or 1
        print(
            f"{indent}CPU ms per {outcome.unit[:-1]}: quota {cpu.quota_s * per:.2f}, postgres "
            f"{cpu.postgres_s * per:.2f}, load clients {outcome.clients_cpu_s * per:.2f}, "
            f"elsewhere {elsewhere * per:.2f}; machine busy {cpu.busy_s / outcome.seconds * 100:.0f}%"
            f" of {cores * 100}%"
        )
        if elsewhere > BUSY_ELSEWHERE * cores * outcome.seconds:
            print(
                f"{indent}WARNING: {elsewhere / outcome.seconds:.2f} cores went elsewhere, so these figures"
                f" are lower than on a quiet machine; the busiest other process: {cpu.busiest_other}"
            )
    for label, count in outcome.errors.most_common():
        print(f"{indent}error {label} x{count}: {outcome.error_samples.get(label, '')}")
    if problems:
        print(f"{indent}BOOKS DISAGREE on {len(problems)} accounts:")
        for problem in problems[:10]:
            print(f"{indent}  {problem}")
    elif problems is not None:
        print(
            f"{indent}books agree: {outcome.per_account.total()} {outcome.unit} in "
            f"{len(outcome.per_account)} accounts, warm-up included"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--pairs", type=int, help=f"measured operations per scenario ({FULL['pairs']})")
    parser.add_argument("--concurrency", type=int, help=f"calls in flight in all ({FULL['concurrency']})")
    parser.add_argument("--clients", type=int, help=f"load client processes ({FULL['clients']})")
    parser.add_argument("--accounts", type=int, help=f"accounts the load spreads over ({FULL['accounts']})")
    parser.add_argument("--seconds", type=float, help=f"time limit of each phase ({FULL['seconds']})")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="a server to make a database on")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only; the pg figures are 0")
    parser.add_argument(
        "--replicas", type=int, help=f"quota replicas on PostgreSQL ({FULL['replicas']}); SQLite has one"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        default=[],
        help="run this scenario (repeatable); the others' figures are 0",
    )
    args = parser.parse_args()
    preset = QUICK if args.quick else FULL
    chosen = {name: preset[name] if getattr(args, name) is None else getattr(args, name) for name in preset}
    options = Options(
        **chosen,
        postgres_url=args.postgres_url,
        skip_postgres=args.skip_postgres,
        only=frozenset(args.only),
    )
    if options.replicas > options.clients:
        parser.error("every replica needs a load client: --replicas must not exceed --clients")
    print(
        f"{options.concurrency} calls in flight from {options.clients} load client processes; "
        f"{options.replicas} quota replicas on PostgreSQL, one on SQLite; "
        f"{options.pairs} measured operations (after {options.warmup} warm-up) or {options.seconds:g} s "
        f"per scenario; {os.cpu_count()} cores",
        flush=True,
    )
    # SIGTERM unwinds as Ctrl-C does, so the services still stop and the database is dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        rates = run(options)
    except KeyboardInterrupt:
        sys.exit("interrupted; the services were stopped and the database dropped")
    print("RESULT " + " ".join(f"{name}={rates[name]:.1f}" for name in RESULT_NAMES))


if __name__ == "__main__":
    main()
