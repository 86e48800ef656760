"""A ledger client for tests/quota/test_crash.py, run as its own process so it can be SIGKILLed.

    PYTHONPATH=<repo> python tests/quota/crash_child.py URL MODE RUN

MODE "loop": buy, reserve, commit, release, transfer and refund as fast as it can, printing
"done <kind> <id>" after each call returns (so the parent knows what must be durable).
MODE "pause": start one reserve, and inside its transaction, once the hold, its serial and the
journal entries are written and the audit chain's head is about to be locked, print "paused <key>"
and sleep, so the parent can kill it mid-transaction.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

from sqlalchemy import event

from services.quota.db import create_ledger_engine
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, ReleaseReason
from services.quota.payments import SandboxProvider

WEBHOOK_SECRET = b"test-webhook-secret"


def say(*words: object) -> None:
    print(*words, flush=True)


def main(url: str, mode: str, run: str) -> None:
    engine = create_ledger_engine(url, create_tables=False)
    provider = SandboxProvider(WEBHOOK_SECRET)
    ledger = Ledger(engine, payment_provider=provider)
    account = f"crash-{run}"
    if mode == "pause":

        @event.listens_for(engine, "after_cursor_execute")
        def pause(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT AUDIT_HEAD"):
                say("paused", run)
                time.sleep(60)

        ledger.reserve(
            account, run, hashlib.sha256(run.encode()).digest(), DocumentMetadata(), Channel.RETAIL
        )
        say("not killed")
        return
    for n in range(100_000):
        order, _ = ledger.create_order(account, 3, f"{run}-order-{n}", Channel.RETAIL)
        ledger.confirm_payment("sandbox", *provider.pay(order))
        say("done order", order.order_id)
        digest = hashlib.sha256(f"{run}-{n}".encode()).digest()
        stamped, _ = ledger.reserve(account, f"{run}-a-{n}", digest, DocumentMetadata(), Channel.RETAIL)
        ledger.commit(stamped.hold_id, digest)
        say("done commit", stamped.hold_id)
        failed, _ = ledger.reserve(account, f"{run}-b-{n}", digest, DocumentMetadata(), Channel.RETAIL)
        ledger.release(failed.hold_id, ReleaseReason.SIGNING_FAILED)
        say("done release", failed.hold_id)
        transfer = ledger.transfer_quota(account, f"{account}-friend", 1, f"{run}-t-{n}", Channel.RETAIL)
        say("done transfer", transfer.transfer_id)
        refund, _ = ledger.refund_order(order.order_id, account, 1, "crash test", f"{run}-r-{n}")
        say("done refund", refund.refund_id)


if __name__ == "__main__":
    main(*sys.argv[1:4])
