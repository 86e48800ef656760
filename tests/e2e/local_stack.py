"""The whole stack as separate processes (`emeterai up`) for an end-to-end test module.

Every server binds to a free loopback port; the stack is stopped with SIGTERM when the test is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from emeterai.v1 import distributor_service_pb2 as dpb
from emeterai.v1 import distributor_service_pb2_grpc
from tests.conftest import free_port

STARTUP_TIMEOUT_S = 90


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    data_dir: Path
    http: str
    grpc_address: str

    def emeterai(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [emeterai_script(), *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )


def emeterai_script() -> str:
    found = shutil.which("emeterai", path=str(Path(sys.executable).parent))
    assert found, "the emeterai console script is not installed (pip install -e .)"
    return found


def stack_logs(data_dir: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((data_dir / "logs").glob("*.log"))
    )


@contextlib.contextmanager
def running_stack(
    data_dir: Path, *, signers: int = 1, environment: Mapping[str, str] | None = None
) -> Iterator[RunningStack]:
    """`emeterai up` in data_dir with `signers` signer replicas, until the block ends.

    `environment` adds EMETERAI_* settings for every process of the stack (admission limits, say).
    """
    ports = {name: free_port() for name in ("http", "grpc", "auth", "quota")}
    signer_addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(signers))
    process = subprocess.Popen(
        [
            emeterai_script(),
            "up",
            "--signers",
            str(signers),
            "--data-dir",
            str(data_dir),
            "--http-address",
            f"127.0.0.1:{ports['http']}",
            "--grpc-address",
            f"127.0.0.1:{ports['grpc']}",
            "--auth-address",
            f"127.0.0.1:{ports['auth']}",
            "--quota-address",
            f"127.0.0.1:{ports['quota']}",
            "--signer-addresses",
            signer_addresses,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(environment or {})},
    )
    banner = _banner(process, STARTUP_TIMEOUT_S)
    if "Press Ctrl-C" not in banner:
        process.kill()
        process.wait()
        pytest.fail(f"the stack did not start:\n{banner}\n{stack_logs(data_dir)}")
    assert f"http://127.0.0.1:{ports['http']}" in banner
    running = RunningStack(
        process, data_dir, f"http://127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}"
    )
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _banner(process: subprocess.Popen[str], timeout_s: float) -> str:
    """What `emeterai up` printed up to its "Press Ctrl-C" line, or until timeout_s is out or it
    exits. Read by a thread, so a stack that hangs silently fails the test in time; the thread
    stops at the banner, leaving the rest of the output to the test."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in iter(process.stdout.readline, ""):
            lines.put(line)
            if "Press Ctrl-C" in line:
                break
        lines.put(None)

    threading.Thread(target=read, name="stack-banner", daemon=True).start()
    banner = ""
    deadline = time.monotonic() + timeout_s
    while "Press Ctrl-C" not in banner and (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        banner += line
    return banner


def one_time_code(client: httpx.Client, e164: str) -> str:
    """The newest one-time code the development notifier kept for the number (newest first)."""
    messages = client.get("/v1/dev/outbox", params={"phone": e164}).json()["messages"]
    assert messages, f"no message was sent to {e164}"
    found = re.search(r"\b(\d{6})\b", messages[0]["body"])
    assert found, messages[0]
    return found.group(1)


def signed_in_distributor(stack: RunningStack, name: str) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """A new distributor credential (`emeterai distributors create`), signed in: its
    DistributorService stub on the stack, and the metadata that carries its token."""
    created = stack.emeterai("distributors", "create", "--name", name)
    assert created.returncode == 0, created.stderr
    credential = json.loads(created.stdout)
    api = distributor_service_pb2_grpc.DistributorServiceStub(grpc.insecure_channel(stack.grpc_address))
    token = api.IssueToken(
        dpb.IssueTokenRequest(client_id=credential["client_id"], client_secret=credential["client_secret"])
    ).access_token
    return api, (("authorization", f"Bearer {token}"),)


def funded_distributor(
    stack: RunningStack, name: str, quantity: int
) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """A new distributor, signed in, with `quantity` units bought and paid in the sandbox."""
    api, auth = signed_in_distributor(stack, name)
    order = api.CreateOrder(
        dpb.DistributorServiceCreateOrderRequest(quantity=quantity, idempotency_key="stock"), metadata=auth
    ).order
    with httpx.Client(base_url=stack.http, timeout=60) as client:
        assert client.post(f"/v1/dev/payments/{order.order_id}/pay").json()["webhook_status"] == 200
    return api, auth
