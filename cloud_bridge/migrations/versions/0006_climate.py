"""Observation schema 3: grow-room climate columns (air, leaf temperature, RH, CO2, VPD).

Which sensors answered, the growth stage and its VPD target stay in the JSON
payload's climate block. Rows from devices without sensors, or on schema 1 or 2,
keep these columns null.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    "air_temp_c",
    "rh_pct",
    "co2_ppm",
    "leaf_temp_c",
    "air_vpd_kpa",
    "leaf_vpd_kpa",
)


def upgrade() -> None:
    """Add the nullable climate columns."""
    with op.batch_alter_table("observations") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop them again (the payload still holds the values)."""
    with op.batch_alter_table("observations") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
