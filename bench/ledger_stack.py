"""What bench/ledger.py measures and how: service processes, a throwaway database, CPU by process.

The services are started as `emeterai up` starts them, `python -m services.<name>` with EMETERAI_*
variables, but only the two the ledger needs, on free loopback ports, with logs in a folder.
CPU use comes from /proc (Linux), sampled for every process, so a figure also says how much of
the machine something outside the benchmark took while it ran.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from services.common import db
from services.common.boot import STACK_PARENT_VARIABLE
from services.stack import wait_healthy

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SETPRIV = shutil.which("setpriv")


def popen_tied(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """A child process that gets SIGTERM when the thread starting it ends, even by SIGKILL (Linux).

    Through `setpriv --pdeathsig TERM` where util-linux has it, so no Python runs in the forked
    child: grpc's fork handlers run there otherwise, and abort the child while grpc.aio is busy in
    the parent. Else a service of ours asks for the signal itself once it runs (as under
    `emeterai up`, services/common/boot.py), tied to this process rather than the thread.
    """
    if SETPRIV is not None and sys.platform.startswith("linux"):
        return subprocess.Popen([SETPRIV, "--pdeathsig", "TERM", "--", *command], **options)
    environment = options.pop("env", None) or dict(os.environ)
    return subprocess.Popen(command, env=environment | {STACK_PARENT_VARIABLE: str(os.getpid())}, **options)


def _free_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@dataclass(frozen=True)
class Quota:
    """A running quota service: one or more replicas on one database."""

    name: str
    addresses: tuple[str, ...]
    pids: tuple[int, ...]
    # The PostgreSQL database it keeps its ledger in; None for SQLite.
    database: str | None

    @property
    def address(self) -> str:
        return self.addresses[0]


@dataclass
class Services:
    """AuthService and QuotaService processes on loopback ports, each with its log in directory."""

    directory: Path
    service_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    webhook_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    auth_address: str = field(default_factory=_free_address)
    # EMETERAI_* variables a named process gets on top of what its starter gives it, e.g.
    # {"quota": {"EMETERAI_HOLD_TTL_S": "10"}}: settings a benchmark needs without a stack of its own.
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # How each process was started (module, address, variables), so it can be started again.
    _recipes: dict[str, tuple[str, str, dict[str, str]]] = field(default_factory=dict)

    def start(self, name: str, module: str, address: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        (self.directory / name).mkdir(parents=True)
        self._recipes[name] = (module, address, extra)
        return self.restart(name)

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """The process `start` made, started again with the same module, address, variables and
        data folder, without waiting for it (killed first if it still runs).

        The process is told to stop when the thread that spawns it ends (PR_SET_PDEATHSIG follows
        the thread, not the process): spawn from a thread that lives as long as the process should,
        e.g. an event loop's, and wait for it with `wait_started` in a worker thread.
        """
        if name in self.running:
            self.kill(name)
        module, _, extra = self._recipes[name]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("EMETERAI_")} | {
            "PYTHONPATH": str(REPO),
            "EMETERAI_MODE": "dev",
            "EMETERAI_DATA_DIR": str(self.directory / name),
            "EMETERAI_SERVICE_SECRET": self.service_secret,
            "EMETERAI_PAYMENT_WEBHOOK_SECRET": self.webhook_secret,
            "EMETERAI_AUTH_ADDRESS": self.auth_address,
            **extra,
            **self.overrides.get(name, {}),
        }
        with (self.directory / f"{name}.log").open("ab") as log:
            process = popen_tied(
                [sys.executable, "-m", f"services.{module}"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        self.running[name] = process
        return process

    def wait_started(self, name: str) -> None:
        """Until the process spawned last under `name` reports SERVING on its health service."""
        address, process = self._recipes[name][1], self.running[name]
        if not wait_healthy(address, time.monotonic() + 60) or process.poll() is not None:
            raise RuntimeError(f"{name} did not start:\n{self.log_tail(name)}")

    def start_auth(self) -> None:
        self.start("auth", "auth", self.auth_address, {})

    def start_quota(self, name: str, database_url: str, replicas: int = 1) -> Quota:
        addresses, pids = [], []
        for replica in range(replicas):
            address = _free_address()
            extra = {"EMETERAI_QUOTA_ADDRESS": address, "EMETERAI_DATABASE_URL": database_url}
            process = self.start(f"{name}-{replica}" if replicas > 1 else name, "quota", address, extra)
            addresses.append(address)
            pids.append(process.pid)
        database = make_url(database_url)
        return Quota(
            name,
            tuple(addresses),
            tuple(pids),
            database.database if database.drivername.startswith("postgresql") else None,
        )

    def log_tail(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]

    def kill(self, name: str) -> None:
        """SIGKILL the process and every process it started, as a node or container dies: no
        shutdown, no grace, whatever was in flight."""
        process = self.running.pop(name)
        for pid in _with_descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """spawn(name) and wait until it is healthy. Clients reconnect to the same port."""
        process = self.spawn(name)
        self.wait_started(name)
        return process

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.returncode != 0:
            print(f"{name} exited with code {process.returncode}:\n{self.log_tail(name)}")

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)

    def pids(self) -> set[int]:
        return {process.pid for process in self.running.values()}

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def throwaway_database(server_url: str) -> contextlib.AbstractContextManager[str]:
    """URL of a new database emeterai_bench_ledger_<random> on server_url, dropped on leaving."""
    return db.throwaway_database(server_url, "emeterai_bench_ledger")


@dataclass(frozen=True)
class ProcessCpu:
    name: str  # the executable's name, e.g. "postgres"
    command: str
    cpu_s: float  # user and system, all threads


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far of the whole machine and of every process."""

    busy_s: float
    processes: dict[int, ProcessCpu]

    @classmethod
    def take(cls) -> CpuSample | None:
        """None where there is no /proc to read."""
        try:
            ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal; guest time is inside user already.
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        processes = {}
        for entry in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                name, _, rest = stat.partition(" (")[2].rpartition(")")
                fields = rest.split()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                processes[int(entry.name)] = ProcessCpu(
                    name, command.strip(), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                )
        return cls(busy / CLOCK_TICKS, processes)

    def spent_since(self, earlier: CpuSample, pid: int) -> float:
        """CPU seconds process pid spent since `earlier`: all of its time if it started since."""
        then = earlier.processes.get(pid)
        return self.processes[pid].cpu_s - (then.cpu_s if then is not None else 0.0)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent between two samples by the quota service, by PostgreSQL for its
    database and by the whole machine; and the busiest process not part of the benchmark."""

    quota_s: float
    postgres_s: float
    busy_s: float
    busiest_other: str

    @classmethod
    def between(cls, before: CpuSample, after: CpuSample, *, quota: Quota, ours: set[int]) -> CpuUse:
        """ours: the benchmark's own processes besides quota, never named as someone else's."""
        quota_s = postgres_s = 0.0
        spent_by_other: dict[str, float] = {}
        for pid, process in after.processes.items():
            spent = after.spent_since(before, pid)
            if pid in quota.pids:
                quota_s += spent
            elif process.name == "postgres" and quota.database and _serves(process.command, quota.database):
                postgres_s += spent
            elif pid not in ours and pid != os.getpid():
                command = process.command[:100] or f"[{process.name}]"
                spent_by_other[f"{pid} {command} ({spent:.1f} s)"] = spent
        busiest = max(spent_by_other, key=spent_by_other.__getitem__, default="none")
        return cls(quota_s, postgres_s, after.busy_s - before.busy_s, busiest)


def _serves(command: str, database: str) -> bool:
    """Whether a PostgreSQL process works for database: its own backends and the shared
    processes (writer, checkpointer...), not the backends of other databases."""
    # A backend's title is "postgres: <cluster>: <user> <database> <client> <state>".
    is_backend = "(" in command or "[local]" in command
    return not is_backend or f" {database} " in command


CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 100_000


def _with_descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


class CpuLimit:
    """A CPU limit on a process and everything it starts, as Kubernetes sets a container's: a CFS
    quota of `cores` per period, in a cgroup (v1 cpu controller) of its own.

    Only where that controller can be written (Linux, as root); `CpuLimit.available()` says.
    """

    def __init__(self, name: str, cores: float) -> None:
        self.path = CPU_CGROUP / f"emeterai-bench-{os.getpid()}-{name}"
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(round(cores * CFS_PERIOD_US)))

    @staticmethod
    def available() -> bool:
        return os.access(CPU_CGROUP / "cgroup.procs", os.W_OK)

    def add(self, pid: int) -> None:
        """pid and its children so far; the ones it starts later are born inside."""
        for member in _with_descendants(pid):
            with contextlib.suppress(ProcessLookupError, OSError):
                (self.path / "cgroup.procs").write_text(str(member))

    def remove(self) -> None:
        """Give the members back to the root group and delete the group."""
        with contextlib.suppress(OSError):
            for member in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CPU_CGROUP / "cgroup.procs").write_text(member)
            self.path.rmdir()
