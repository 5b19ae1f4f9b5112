"""Colour metrics may be null: a device leaves yellow_pct/brown_pct null (with the
reason in the payload's canopy.colour_reason) when narrow-band LED light or a too-dark
photo makes colour unmeasurable. Existing rows keep their values.

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

_COLUMNS = ("yellow_pct", "brown_pct")


def upgrade() -> None:
    """Drop NOT NULL from the colour columns."""
    with op.batch_alter_table("observations") as batch:
        for name in _COLUMNS:
            batch.alter_column(name, existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    """Restore NOT NULL; fails while rows without colour exist (they cannot be made up)."""
    with op.batch_alter_table("observations") as batch:
        for name in _COLUMNS:
            batch.alter_column(name, existing_type=sa.Float(), nullable=False)
