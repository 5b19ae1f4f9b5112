"""Observation schema 2: verdict columns (assessed, reason, drift, zone summary); alert zone.

The zone grid itself stays in the observation's JSON payload. Rows of schema 1 keep
these columns null (assessed null: the device did not say).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OBSERVATION_COLUMNS = (
    ("schema_version", sa.SmallInteger()),
    ("health_assessed", sa.Boolean()),
    ("health_reason", sa.Text()),
    ("health_ood_score", sa.Float()),
    ("health_drift", sa.Float()),
    ("health_assessed_share", sa.Float()),
    ("health_worst_zone", sa.Text()),
    ("health_worst_label", sa.Text()),
)


def upgrade() -> None:
    """Add the verdict columns to observations and the zone to alerts."""
    with op.batch_alter_table("observations") as batch:
        for name, kind in _OBSERVATION_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("zone", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("zone")
    with op.batch_alter_table("observations") as batch:
        for name, _ in reversed(_OBSERVATION_COLUMNS):
            batch.drop_column(name)
