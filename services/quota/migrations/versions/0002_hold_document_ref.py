"""Holds keep where the gateway's document store put the stamped PDF.

A nullable column, so holds committed before it (whose PDFs the store finds by the hold id) stay
as they are. Adding a column leaves the table, its rows and its triggers in place on both
PostgreSQL and SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("document_ref", sa.String(200), nullable=True))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35. The references go, and with them every download
    # of a PDF the store keeps in a segment: the PDFs stay, but nothing says where.
    op.drop_column("holds", "document_ref")
