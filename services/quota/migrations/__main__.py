"""Alembic's own command line on the ledger, for writing revisions:

    python -m services.quota.migrations revision --autogenerate --rev-id 0002 -m "what changes"
    python -m services.quota.migrations history

It works on the database in EMETERAI_DATABASE_URL (the laptop's SQLite file by default), under the
same lock as every upgrade. Operators use `emeterai db upgrade` instead.
"""

from __future__ import annotations

from alembic.config import CommandLine

from services.common.settings import QuotaSettings, load_settings
from services.quota.db import create_ledger_engine
from services.quota.migrations import alembic_config, migration_connection


def main() -> None:
    cli = CommandLine(prog="python -m services.quota.migrations")
    options = cli.parser.parse_args()
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    engine = create_ledger_engine(load_settings(QuotaSettings).resolved_database_url, create_tables=False)
    try:
        with migration_connection(engine) as connection:
            config = alembic_config(connection)
            config.cmd_opts = options
            # A new revision comes out lint-clean, like the rest of the code (ruff is a dev dependency).
            config.set_section_option("post_write_hooks", "hooks", "ruff_fix, ruff_format")
            for hook, arguments in (("ruff_fix", "check --fix --quiet"), ("ruff_format", "format --quiet")):
                config.set_section_option("post_write_hooks", f"{hook}.type", "module")
                config.set_section_option("post_write_hooks", f"{hook}.module", "ruff")
                config.set_section_option(
                    "post_write_hooks", f"{hook}.options", f"{arguments} REVISION_SCRIPT_FILENAME"
                )
            cli.run_cmd(config, options)
    finally:
        engine.dispose()


main()
