"""`emeterai db` and `emeterai audit`: the operator's tools for the quota ledger's database.

`db upgrade|current` brings the schema up to date before (or instead of) the service doing it.
`audit verify|reconcile` checks the hash-chained audit log and the books; it reads only, so it can
run against a live production database or a restored backup alike.

Both take --database-url, else the quota service's own settings (EMETERAI_DATABASE_URL, else the
SQLite file in EMETERAI_DATA_DIR). Exit codes: 0 done and all is well; 1 the database could not be
reached, the upgrade failed, or the audit found discrepancies; 2 bad settings or URL.
"""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import Engine, func, make_url, select
from sqlalchemy.exc import DBAPIError

from services.common.settings import QuotaSettings, SettingsError, load_settings
from services.quota import audit, migrations
from services.quota.db import create_ledger_engine
from services.quota.schema import accounts, serials

_URL_HELP = "the ledger's database (default: EMETERAI_DATABASE_URL, else the SQLite file in the data dir)"


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `db` and `audit` on the `emeterai` parser."""
    db = commands.add_parser("db", help="the quota ledger's schema: upgrade it, or show its revision")
    db.add_argument("action", choices=["upgrade", "current"])
    db.add_argument("--database-url", help=_URL_HELP)
    db.set_defaults(run=run_db)

    checks = commands.add_parser("audit", help="check the ledger: its audit chain, or its books")
    checks.add_argument(
        "check", choices=["verify", "reconcile"], help="verify the chain, or reconcile the books"
    )
    checks.add_argument("--database-url", help=_URL_HELP)
    checks.add_argument("--json", action="store_true", help="print the result as JSON")
    checks.set_defaults(run=run_audit)


def _open(args: argparse.Namespace) -> tuple[Engine, str] | None:
    try:
        url = args.database_url or load_settings(QuotaSettings).resolved_database_url
        engine = create_ledger_engine(url, create_tables=False)
    except (SettingsError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return None
    return engine, make_url(url).render_as_string(hide_password=True)


def run_db(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return 2
    engine, where = opened
    head = migrations.head_revision()
    try:
        before = migrations.current_revision(engine)
        if args.action == "upgrade":
            migrations.upgrade(engine)
            before = before or "empty"
            print(f"{where}: at {head} (head)" + (f", upgraded from {before}" if before != head else ""))
        elif before == head:
            print(f"{where}: at {head} (head)")
        else:
            print(f"{where}: at {before or 'nothing (empty)'}, head is {head}; run `emeterai db upgrade`")
    except DBAPIError as exc:
        print(f"{where}: {exc.orig}", file=sys.stderr)
        return 1
    except migrations.UnversionedLedger as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def run_audit(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return 2
    engine, where = opened
    try:
        if migrations.current_revision(engine) is None:
            print(f"{where}: no ledger here (no schema); nothing to audit", file=sys.stderr)
            return 1
        with audit.snapshot(engine) as conn:
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
    except DBAPIError as exc:
        print(f"{where}: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"check": args.check, "ok": not problems, "problems": problems, **facts}))
    elif problems:
        print(f"{len(problems)} discrepancies found in {where}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    else:
        print(summary)
    return 1 if problems else 0
