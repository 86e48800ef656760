"""Stamping-PIN checks per second through AuthService, over gRPC on loopback: one call per check
against the gateway's coalescing into VerifyStampingPins.

    .venv/bin/python bench/pins.py [--quick] [--checks N] [--in-flight N]

The real auth service runs as its own process (`python -m services.auth`, on SQLite in a temporary
folder, as `emeterai up` starts it) on a free 127.0.0.1 port; every call carries a service token,
as the gateway's do. Every retail stamp checks the account's PIN first, so a deadline's stamping
rate is also a rate of checks.

Phases, each --checks checks of the right PIN spread over a few accounts (after a warm-up):
  single        one check in flight, one VerifyStampingPin call each: the reference, what a call
                costs when nothing overlaps;
  unary         --in-flight checks in flight, still one call each;
  batched       --in-flight checks in flight through BatchingAuthStub (services/auth/client.py),
                which sends the checks that wait while its calls are in flight (4 at most)
                together.

Every answer must say the PIN is right with all tries left; then six wrong guesses at one account
sent at once, five of them in one batch, must count down 4, 3, 2, 1, 0 and leave it locked, as six
separate calls would. Auth's CPU per check is read from /proc over each phase.

It ends with `RESULT single_checks_per_s=N unary_checks_per_s=N batched_checks_per_s=N
unary_auth_cpu_ms_per_check=N batched_auth_cpu_ms_per_check=N`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ledger_stack import CpuSample, Services  # noqa: E402

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc  # noqa: E402
from services.auth.client import BatchingAuthStub  # noqa: E402
from services.common.clients import ServiceTokenSource, service_channel  # noqa: E402

PIN = "482915"
ACCOUNTS = 8
RESULT_NAMES = (
    "single_checks_per_s",
    "unary_checks_per_s",
    "batched_checks_per_s",
    "unary_auth_cpu_ms_per_check",
    "batched_auth_cpu_ms_per_check",
)


async def sign_in(stub: auth_service_pb2_grpc.AuthServiceStub, phone: str) -> str:
    """A retail account with the benchmark's PIN set."""
    sent = await stub.RequestOtp(auth_service_pb2.RequestOtpRequest(phone=phone))
    outbox = await stub.ListDevOutbox(auth_service_pb2.ListDevOutboxRequest(phone=sent.phone))
    code = re.search(r"\b(\d{6})\b", outbox.messages[0].body)
    if code is None:
        raise RuntimeError("no one-time code in the dev outbox")
    verified = await stub.VerifyOtp(auth_service_pb2.VerifyOtpRequest(phone=sent.phone, code=code.group(1)))
    account_id = verified.account.account_id
    await stub.SetStampingPin(auth_service_pb2.SetStampingPinRequest(account_id=account_id, pin=PIN))
    return account_id


async def checks_per_s(stub: Any, accounts: list[str], checks: int, in_flight: int) -> float:
    """Right-PIN checks, `in_flight` at a time; every answer must be valid with all tries left."""
    requests = [auth_service_pb2.VerifyStampingPinRequest(account_id=a, pin=PIN) for a in accounts]

    async def checker(n: int) -> None:
        for i in range(n, checks, in_flight):
            answer = await stub.VerifyStampingPin(requests[i % len(requests)], timeout=30)
            if not answer.valid or answer.attempts_left != 5:
                raise RuntimeError(f"a right PIN was refused: {answer}")

    started = time.perf_counter()
    await asyncio.gather(*(checker(n) for n in range(in_flight)))
    return checks / (time.perf_counter() - started)


async def wrong_guesses_count_down(plain: auth_service_pb2_grpc.AuthServiceStub, account_id: str) -> None:
    """Six wrong guesses sent at once: one call in flight at a time, so the first goes alone and the
    other five wait for it and travel in one batch."""
    batching = BatchingAuthStub(plain, max_in_flight=1)
    wrong = auth_service_pb2.VerifyStampingPinRequest(account_id=account_id, pin="000000")
    answers = await asyncio.gather(*(batching.VerifyStampingPin(wrong, timeout=30) for _ in range(6)))
    left = sorted(answer.attempts_left for answer in answers)
    right = await batching.VerifyStampingPin(
        auth_service_pb2.VerifyStampingPinRequest(account_id=account_id, pin=PIN), timeout=30
    )
    if left != [0, 0, 1, 2, 3, 4] or any(a.valid for a in answers) or right.valid:
        raise RuntimeError(f"wrong guesses sent at once did not count down and lock: {left}, {right}")
    print("six wrong guesses at once: 4, 3, 2, 1, 0 tries left, then locked (the right PIN refused)")


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used so far (0 where there is no /proc)."""
    sample = CpuSample.take()
    return sample.processes[pid].cpu_s if sample is not None else 0.0


async def run(services: Services, checks: int, in_flight: int) -> dict[str, float]:
    auth = services.running["auth"].pid
    tokens = ServiceTokenSource(services.auth_address, "gateway", services.service_secret)
    channel = service_channel(services.auth_address, tokens)
    plain = auth_service_pb2_grpc.AuthServiceStub(channel)
    batching = BatchingAuthStub(plain)
    accounts = [await sign_in(plain, f"+628570000{n:04d}") for n in range(ACCOUNTS + 1)]
    locked, accounts = accounts[0], accounts[1:]
    await checks_per_s(plain, accounts, min(checks, 200), in_flight)
    results: dict[str, float] = {}
    for phase, stub, concurrency in (
        ("single", plain, 1),
        ("unary", plain, in_flight),
        ("batched", batching, in_flight),
    ):
        before = cpu_s(auth)
        rate = await checks_per_s(stub, accounts, checks, concurrency)
        cpu_ms = (cpu_s(auth) - before) * 1000 / checks
        results[f"{phase}_checks_per_s"] = rate
        results[f"{phase}_auth_cpu_ms_per_check"] = cpu_ms
        print(f"{phase:8s} {concurrency:3d} in flight: {rate:7.0f} checks/s, auth {cpu_ms:.3f} ms CPU each")
    await wrong_guesses_count_down(plain, locked)
    await channel.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred checks per phase")
    parser.add_argument("--checks", type=int, default=4000, help="checks per phase")
    parser.add_argument("--in-flight", type=int, default=32, help="checks in flight in the concurrent phases")
    args = parser.parse_args()
    checks = 400 if args.quick else args.checks
    with (
        tempfile.TemporaryDirectory(prefix="emeterai-pins-") as directory,
        Services(Path(directory)) as services,
    ):
        services.start_auth()
        results = asyncio.run(run(services, checks, args.in_flight))
    figures = (f"{name}={results[name]:.{3 if 'cpu' in name else 0}f}" for name in RESULT_NAMES)
    print("RESULT " + " ".join(figures))


if __name__ == "__main__":
    main()
