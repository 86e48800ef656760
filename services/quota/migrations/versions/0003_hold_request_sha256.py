"""Holds keep the caller's fingerprint of the rest of the stamp request (placement, metadata).

A retry with the same idempotency key must match it, as it must match the document: the same key
with another placement is refused (HTTP 422) instead of answered with the first stamp. Nullable, so
holds made before it are matched by their document alone, as they were.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("request_sha256", sa.LargeBinary(32), nullable=True))


def downgrade() -> None:
    # Only the fingerprints go: retries of holds made since are then matched by document alone.
    op.drop_column("holds", "request_sha256")
