"""`emeterai up`: the whole system as separate local processes, for a laptop or a test.

Each service is started as `python -m services.<name>` with its EMETERAI_* variables, logs go to
<data dir>/logs, and the command returns only when told to stop (Ctrl-C or SIGTERM), stopping
the gateway first so no new work arrives while the services behind it drain.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.boot import STACK_PARENT_VARIABLE
from services.common.files import write_private_file

STACK_ENV_FILE = "stack.env"
SECRET_FILE = "service-secret"
WEBHOOK_SECRET_FILE = "payment-webhook-secret"


@dataclass(frozen=True)
class StackLayout:
    data_dir: Path
    http_address: str = "127.0.0.1:8080"
    grpc_address: str = "127.0.0.1:50051"
    auth_address: str = "127.0.0.1:50061"
    quota_address: str = "127.0.0.1:50062"
    signer_addresses: tuple[str, ...] = ("127.0.0.1:50071",)

    @property
    def public_url(self) -> str:
        return f"http://{self.http_address}"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    health_address: str


def _secret(path: Path) -> str:
    """A random secret kept in the data dir, so restarts of the stack keep the same one."""
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


def stack_environment(layout: StackLayout) -> dict[str, str]:
    """The EMETERAI_* variables every process of this stack shares; also written to stack.env."""
    data_dir = layout.data_dir.resolve()
    return {
        "EMETERAI_MODE": "dev",
        "EMETERAI_DATA_DIR": str(data_dir),
        "EMETERAI_SERVICE_SECRET": _secret(data_dir / SECRET_FILE),
        "EMETERAI_PAYMENT_WEBHOOK_SECRET": _secret(data_dir / WEBHOOK_SECRET_FILE),
        "EMETERAI_AUTH_ADDRESS": layout.auth_address,
        "EMETERAI_QUOTA_ADDRESS": layout.quota_address,
        "EMETERAI_SIGNER_ADDRESSES": ",".join(layout.signer_addresses),
        "EMETERAI_GATEWAY_HTTP_ADDRESS": layout.http_address,
        "EMETERAI_GATEWAY_GRPC_ADDRESS": layout.grpc_address,
        "EMETERAI_PUBLIC_URL": layout.public_url,
        # Off: one address from the caller's environment would be taken by the first process and
        # stop every other at start (docs/metrics.md).
        "EMETERAI_METRICS_ADDRESS": "",
    }


def read_stack_env(data_dir: Path) -> dict[str, str]:
    """The variables a running (or earlier) stack in data_dir used; empty when there is none."""
    path = data_dir / STACK_ENV_FILE
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def wait_healthy(address: str, deadline: float) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    return False


@dataclass
class Stack:
    layout: StackLayout
    children: list[Child] = field(default_factory=list)

    def start(self, startup_timeout_s: float = 60) -> None:
        from services.signer.pki import ensure_dev_pki

        data_dir = self.layout.data_dir.resolve()
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        # Made once here, before any signer starts, so replicas never race to create it.
        ensure_dev_pki(data_dir / "pki")
        shared = stack_environment(self.layout)
        (data_dir / STACK_ENV_FILE).write_text("".join(f"{k}={v}\n" for k, v in shared.items()))
        (data_dir / STACK_ENV_FILE).chmod(0o600)
        # Other EMETERAI_* settings in the caller's environment (admission limits, say) reach
        # every process; the stack's own addresses, paths and secrets always win.
        base = dict(os.environ) | shared
        # Each child asks for SIGTERM when this process dies (services/common/boot.py). Not a
        # pre-exec hook: with one, subprocess forks this whole process, and a fork while gRPC's
        # threads run can hang in the fork itself (seen as `emeterai up` stuck starting the gateway).
        base[STACK_PARENT_VARIABLE] = str(os.getpid())
        plan = [("auth", self.layout.auth_address, {}), ("quota", self.layout.quota_address, {})]
        for index, address in enumerate(self.layout.signer_addresses):
            # One worker per replica: each replica is one core's worth, and the gateway spreads over them.
            plan.append(
                (
                    f"signer-{index + 1}",
                    address,
                    {"EMETERAI_SIGNER_ADDRESS": address, "EMETERAI_SIGNER_WORKERS": "1"},
                )
            )
        plan.append(("gateway", self.layout.grpc_address, {}))
        deadline = time.monotonic() + startup_timeout_s
        for name, address, extra in plan:
            module = name.split("-")[0]
            log_file = open(data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{module}"],
                env=base | extra,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parent.parent,
            )
            log_file.close()
            self.children.append(Child(name, process, address))
            if not wait_healthy(address, deadline) or process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{name} did not start; see {data_dir / 'logs' / (name + '.log')}")

    def failed_child(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop(self, timeout_s: float = 20) -> dict[str, int]:
        """SIGTERM in reverse start order (gateway first), then wait; kill what does not stop.

        Returns each child's exit code; a clean drain is 0.
        """
        codes: dict[str, int] = {}
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
            codes[child.name] = child.process.returncode
        self.children.clear()
        return codes


def run_until_stopped(stack: Stack) -> int:
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stopping:
        failed = stack.failed_child()
        if failed is not None:
            print(f"{failed.name} exited with code {failed.process.returncode}; stopping", file=sys.stderr)
            stack.stop()
            return 1
        time.sleep(0.2)
    print("stopping...", flush=True)
    unclean = {name: code for name, code in stack.stop().items() if code != 0}
    if unclean:
        print(f"did not stop cleanly: {unclean}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0
