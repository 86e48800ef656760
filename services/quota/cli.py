"""`emeterai db`: bring the ledger's schema up to date before (or instead of) the service doing it.

Exit codes: 0 done; 1 the database could not be reached or the upgrade failed; 2 bad settings or URL.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from services.common.settings import QuotaSettings, SettingsError, load_settings
from services.quota import migrations
from services.quota.db import create_ledger_engine


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `db` on the `emeterai` parser."""
    db = commands.add_parser("db", help="the quota ledger's schema: upgrade it, or show its revision")
    db.add_argument("action", choices=["upgrade", "current"])
    db.add_argument(
        "--database-url",
        help="the ledger's database (default: EMETERAI_DATABASE_URL, else the SQLite file in the data dir)",
    )
    db.set_defaults(run=run_db)


def run_db(args: argparse.Namespace) -> int:
    try:
        url = args.database_url or load_settings(QuotaSettings).resolved_database_url
        engine = create_ledger_engine(url, create_tables=False)
    except (SettingsError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    where = make_url(url).render_as_string(hide_password=True)
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
