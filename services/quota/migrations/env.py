"""Alembic's entry point for the ledger: runs the revisions on the connection handed over in
config.attributes["connection"] (see services/quota/migrations/__init__.py), inside the caller's
transaction."""

from __future__ import annotations

from alembic import context

from services.quota.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "the ledger's migrations run on a connection: use `emeterai db upgrade` "
        "or `python -m services.quota.migrations`"
    )
context.configure(
    connection=connection,
    # For autogenerate only: the schema the revisions must add up to.
    target_metadata=metadata,
    compare_type=True,
    # SQLite alters a table by copying it; batch operations do the copy.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
