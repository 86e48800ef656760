"""A process killed with SIGKILL in the middle of a ledger operation leaves no partial state.

The ledger runs in a child process (tests/quota/crash_child.py) on a real database, SQLite and
PostgreSQL. Once it is killed mid-transaction at a known point (after the hold row is written,
before commit), and several times at random moments of a busy loop; afterwards the books must
reconcile, the half-done operation must have left no trace, and every operation the child reported
finished must be there.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, HoldStatus, Order
from services.quota.schema import holds, orders, refunds, serials, transfers
from tests.conftest import ROOT

from .conftest import assert_ledger_consistent

CHILD = Path(__file__).with_name("crash_child.py")


def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


class Child:
    def __init__(self, engine: Engine, mode: str, run: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), database_url(engine), mode, run],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def read_line(self, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert time.monotonic() < deadline and line, self.process.stderr.read() if self.process.stderr else ""
        return line.strip()

    def kill(self) -> list[str]:
        """SIGKILL the child; the lines it printed and that were not read yet."""
        self.process.send_signal(signal.SIGKILL)
        out, _ = self.process.communicate(timeout=30)
        assert self.process.returncode == -signal.SIGKILL
        lines = out.splitlines()
        # Killed mid-write, the last line may be cut short: only whole lines were said.
        return lines if out.endswith("\n") else lines[:-1]


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait(timeout=30)


def count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()  # type: ignore[arg-type]


def test_a_kill_inside_the_transaction_leaves_no_trace(
    ledger: Ledger, buy: Callable[[str, int], Order], engine: Engine, children: list[Child]
) -> None:
    run = secrets.token_hex(4)
    account = f"crash-{run}"
    buy(account, 2)
    before = ledger.get_balance(account)
    child = Child(engine, "pause", run)
    children.append(child)
    assert child.read_line() == f"paused {run}"
    # The child is inside its transaction: the unit is moved and the hold row written, not committed.
    child.kill()
    assert ledger.get_balance(account) == before
    assert count(engine, holds, holds.c.account_id == account) == 0
    assert count(engine, serials, serials.c.account_id == account) == 0
    # The same key works afterwards: nothing half-done stands in its way.
    hold, replayed = ledger.reserve(account, run, os.urandom(32), DocumentMetadata(), Channel.RETAIL)
    assert not replayed and hold.status is HoldStatus.RESERVED
    assert_ledger_consistent(engine)


def test_kills_at_random_moments_lose_nothing_finished_and_leave_nothing_half_done(
    ledger: Ledger, engine: Engine, children: list[Child]
) -> None:
    chance = random.Random(int.from_bytes(os.urandom(4), "big"))
    finished: list[tuple[str, str]] = []
    for _ in range(4):
        child = Child(engine, "loop", secrets.token_hex(4))
        children.append(child)
        first = child.read_line()  # it is running: the engine is open and a call went through
        time.sleep(chance.uniform(0.05, 0.4))
        lines = [first, *child.kill()]
        finished += [tuple(line.split()[1:3]) for line in lines if line.startswith("done ")]  # type: ignore[misc]
    assert len(finished) >= 4
    tables = {"order": (orders, orders.c.order_id), "transfer": (transfers, transfers.c.transfer_id)}
    tables |= {"refund": (refunds, refunds.c.refund_id)}
    for kind, identifier in finished:
        if kind in ("commit", "release"):
            status = HoldStatus.COMMITTED if kind == "commit" else HoldStatus.RELEASED
            assert count(engine, holds, holds.c.hold_id == identifier, holds.c.status == status) == 1, kind
        else:
            table, column = tables[kind]
            assert count(engine, table, column == identifier) == 1, (kind, identifier)
    assert_ledger_consistent(engine)
