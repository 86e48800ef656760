"""`emeterai audit`: the operator's check that the ledger's books and audit chain are intact.

It reads the ledger's database directly and changes nothing, so it can run against a live
production database or a restored backup alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sqlalchemy import func, select

from services.common.settings import QuotaSettings
from services.quota import audit
from services.quota.db import create_ledger_engine
from services.quota.schema import accounts, serials


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `audit verify` and `audit reconcile` on the `emeterai` parser."""
    parser = commands.add_parser("audit", help="check the ledger: audit chain and books")
    parser.add_argument(
        "check", choices=["verify", "reconcile"], help="verify the chain, or reconcile the books"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("EMETERAI_DATABASE_URL", ""),
        help="the ledger's database (default: EMETERAI_DATABASE_URL, else the SQLite file in --data-dir)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".emeterai"), help="where `emeterai up` keeps data"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    url = args.database_url or QuotaSettings(data_dir=args.data_dir).resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        print(f"no ledger database at {url}", file=sys.stderr)
        return 2
    engine = create_ledger_engine(url, create_tables=False)
    try:
        with engine.connect() as conn:
            if args.check == "verify":
                checked, problems = audit.verify_chain(conn)
                summary = f"audit chain intact: {checked} events, each hash recomputed and linked"
                facts: dict[str, object] = {"events": checked}
            else:
                problems = audit.reconcile(conn)
                account_count = conn.execute(select(func.count()).select_from(accounts)).scalar_one()
                serial_count = conn.execute(select(func.count()).select_from(serials)).scalar_one()
                summary = (
                    f"books reconciled: {account_count} accounts with purchased = available + held "
                    f"+ consumed + refunded, totals zero over all books, "
                    f"{serial_count} serials each with one hold"
                )
                facts = {"accounts": account_count, "serials": serial_count}
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"check": args.check, "ok": not problems, "problems": problems, **facts}))
    elif problems:
        print(f"{len(problems)} discrepancies found:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    else:
        print(summary)
    return 1 if problems else 0
