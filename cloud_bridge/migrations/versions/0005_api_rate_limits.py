"""The read API's per-client request budget, kept in the database so replicas share it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create api_rate_limits."""
    op.create_table(
        "api_rate_limits",
        sa.Column("client", sa.String(128), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_rate_limits_updated", "api_rate_limits", ["updated_at"])


def downgrade() -> None:
    """Drop api_rate_limits."""
    op.drop_index("ix_api_rate_limits_updated", table_name="api_rate_limits")
    op.drop_table("api_rate_limits")
