"""Horizontal scaling of stamping: stamps/s through the gateway with one signer process, then two.

    .venv/bin/python bench/scale.py [--quick] [--seconds S] [--postgres-url URL] [--redis-url URL]

Each run starts the stack as in production, each service its own process (auth, quota on a
throwaway PostgreSQL database, the gateway with Redis), with one signer process or two, each with
one worker. The gateway is given every signer's address and balances across them.

Each signer replica runs under a CPU limit (--signer-cpu cores, 0.3 by default), a CFS quota as
Kubernetes sets for a pod's CPU limit: in a cluster, capacity is added as replicas of a fixed size.
On one 2-core machine the limit is what makes scaling measurable at all: the rest of the stack
(gateway, ledger, PostgreSQL, the load) spends more CPU per stamp than the signer does, so
unlimited signers would measure the machine filling up, not the signer tier scaling
(--signer-cpu 0 shows that). With the limit, the signers are the bottleneck in both runs and the
machine has room for what a second replica brings.

For each run:

1. The signers alone: stamps/s of the signer processes called directly over gRPC, nothing else
   running. This is what the signer tier can do on this machine, and the reference the gateway's
   figure is read against.
2. Through the gateway: distributors stream documents through BatchStamp (each stream keeps the
   gateway's per-stream concurrency busy) for a warm-up and then --seconds measured seconds;
   stamps/s counts the documents answered OK in the measured window. Items the gateway turns
   away (RESOURCE_EXHAUSTED) are sent again under the same idempotency key.
3. The books: every distributor's balance against the documents answered OK, and `emeterai audit
   reconcile` on the ledger's database.
4. CPU ms per stamp by process, from /proc: where the machine's time went.

It ends with `RESULT one_signer_per_s=N two_signers_per_s=N factor=N` (target: factor >= 1.8).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import grpc  # noqa: E402
import httpx  # noqa: E402
from ledger_stack import CpuLimit, CpuSample, Services, throwaway_database  # noqa: E402
from surge import (  # noqa: E402
    DEFAULT_POSTGRES,
    DEFAULT_REDIS,
    DOCUMENT,
    STATUS_NAMES,
    Distributor,
    Stack,
    batch_item,
    funded_distributor,
    pool_capacity,
    print_cpu,
)

from services.gateway.distributor import BATCH_CONCURRENCY  # noqa: E402

# One stream per distributor, several distributors: each is held to its own token bucket.
STREAMS = 6
TURNED_AWAY = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


@dataclass
class Options:
    seconds: float
    postgres_url: str
    redis_url: str
    signer_cpu: float = 0.3
    warm_up_s: float = 3.0
    pool_s: float = 5.0


@dataclass
class Run:
    signers: int
    signers_alone_per_s: float = 0.0
    through_gateway_per_s: float = 0.0
    stamped: int = 0
    turned_away: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    lost_quota: int = 0


async def stream_documents(
    distributor: Distributor, document: bytes, until: float, window: tuple[float, float]
) -> tuple[int, int, int, dict[str, int], int]:
    """One distributor streaming documents until `until`: (stamped in `window`, stamped in all,
    turned away, failures by status, units its books are off by)."""
    in_window = stamped = turned_away = 0
    failed: dict[str, int] = {}
    retry: list[str] = []
    # The stream is fed as a client would: a few documents ahead of the answers, not all it could
    # send, which would leave thousands buffered past the end of the window.
    ahead = asyncio.Semaphore(2 * BATCH_CONCURRENCY)

    async def documents():
        n = 0
        while True:
            await ahead.acquire()
            if time.monotonic() >= until:
                return
            key = retry.pop() if retry else f"scale-{secrets.token_hex(6)}-{n}"
            n += 1
            yield batch_item(document, key)

    async for result in distributor.api.BatchStamp(
        documents(), metadata=distributor.metadata, timeout=until - time.monotonic() + 120
    ):
        ahead.release()
        now = time.monotonic()
        if result.code == 0:
            stamped += 1
            in_window += window[0] <= now < window[1]
        elif result.code == TURNED_AWAY:
            turned_away += 1
            retry.append(result.client_ref)
        else:
            name = STATUS_NAMES.get(result.code, str(result.code))
            failed[name] = failed.get(name, 0) + 1
    # Keys still waiting for a retry were answered RESOURCE_EXHAUSTED: nothing was held for them.
    return in_window, stamped, turned_away, failed, await distributor.books_off(stamped)


def reconcile(database_url: str) -> tuple[int, str]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "emeterai"), "audit", "reconcile", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout.strip()[-300:]


async def measure(options: Options, stack: Stack, document: bytes, run: Run) -> None:
    run.signers_alone_per_s = await pool_capacity(stack, document, options.pool_s)
    print(f"{run.signers} signer(s) alone: {run.signers_alone_per_s:.1f} stamps/s")
    async with (
        httpx.AsyncClient(base_url=f"http://{stack.http}", timeout=60) as http,
        grpc.aio.insecure_channel(stack.grpc) as channel,
    ):
        # Enough units for the fastest stream this machine could run.
        distributors = [await funded_distributor(stack, http, channel, 20_000) for _ in range(STREAMS)]
        start = time.monotonic()
        window = (start + options.warm_up_s, start + options.warm_up_s + options.seconds)
        before = CpuSample.take()
        streams = await asyncio.gather(
            *(stream_documents(distributor, document, window[1], window) for distributor in distributors)
        )
        after = CpuSample.take()
    in_window = sum(s[0] for s in streams)
    run.stamped = sum(s[1] for s in streams)
    run.turned_away = sum(s[2] for s in streams)
    for failures in (s[3] for s in streams):
        for name, n in failures.items():
            run.failed[name] = run.failed.get(name, 0) + n
    run.lost_quota = sum(s[4] for s in streams)
    run.through_gateway_per_s = in_window / options.seconds
    print(
        f"{run.signers} signer(s) through the gateway: {run.through_gateway_per_s:.1f} stamps/s "
        f"({run.stamped} stamped in all, {run.turned_away} turned away and sent again, "
        f"failed {run.failed})"
    )
    if before is not None and after is not None:
        print_cpu(stack.services, before, after, run.stamped)


def one_run(options: Options, signers: int, document: bytes) -> Run:
    run = Run(signers)
    with (
        tempfile.TemporaryDirectory(prefix="emeterai-scale-") as directory,
        throwaway_database(options.postgres_url) as database_url,
        Services(Path(directory)) as services,
    ):
        stack = Stack(services, database_url, options.redis_url, signers, options.signer_cpu)
        try:
            asyncio.run(measure(options, stack, document, run))
        finally:
            stack.remove_limits()
        code, said = reconcile(database_url)
        print(f"emeterai audit reconcile: exit {code}: {said}")
        if code != 0:
            run.lost_quota += max(1, said.count("\n"))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run, for the smoke test")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("EMETERAI_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--redis-url", default=os.environ.get("EMETERAI_TEST_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument(
        "--signer-cpu", type=float, default=Options.signer_cpu, help="CPU limit per signer, cores (0: none)"
    )
    args = parser.parse_args()
    options = Options(args.seconds, args.postgres_url, args.redis_url, args.signer_cpu)
    if options.signer_cpu and not CpuLimit.available():
        print(
            "NOTE: no writable cgroup cpu controller here (Linux, as root): the signers run without a "
            "CPU limit, and the figures measure this machine filling up rather than the signers scaling"
        )
        options.signer_cpu = 0.0
    limit = f"{options.signer_cpu:g} cores" if options.signer_cpu else "none"
    print(f"each signer replica: one worker, CPU limit {limit}")
    if args.quick:
        options.seconds = min(options.seconds, 3.0)
        options.warm_up_s = options.pool_s = 2.0
    document = DOCUMENT.read_bytes()
    one, two = (one_run(options, signers, document) for signers in (1, 2))
    alone = two.signers_alone_per_s / max(one.signers_alone_per_s, 1e-9)
    factor = two.through_gateway_per_s / max(one.through_gateway_per_s, 1e-9)
    print(
        f"signers alone: {one.signers_alone_per_s:.1f} -> {two.signers_alone_per_s:.1f} stamps/s "
        f"({alone:.2f}x)"
    )
    if options.signer_cpu:
        per_core = one.through_gateway_per_s / options.signer_cpu
        print(f"per signer core through the gateway: {per_core:.1f} stamps/s")
    print(f"lost quota: {one.lost_quota + two.lost_quota}; target: factor >= 1.8 ({factor:.2f}x)")
    print(
        f"RESULT one_signer_per_s={one.through_gateway_per_s:.1f} "
        f"two_signers_per_s={two.through_gateway_per_s:.1f} factor={factor:.2f}"
    )


if __name__ == "__main__":
    main()
