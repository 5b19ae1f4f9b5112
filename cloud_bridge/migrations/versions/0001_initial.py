"""Initial fleet schema: devices, observations, alerts, thumbnails, dead letters, resend claims.

Revision ID: 0001
Revises:
Create Date: 2026-03-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_DEVICE = sa.String(64)


def upgrade() -> None:
    """Create every table and index."""
    op.create_table(
        "devices",
        sa.Column("id", _DEVICE, primary_key=True),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("last_seen", _TS, nullable=False),
        sa.Column("online", sa.Boolean()),
        sa.Column("status_at", _TS),
        sa.Column("session_started_at", _TS),
        sa.Column("firmware", sa.Text()),
        sa.Column("model_version", sa.Text()),
        sa.Column("model_backend", sa.Text()),
        sa.Column("ip", sa.Text()),
        sa.Column("last_seq", sa.BigInteger()),
        sa.Column("last_stats", _JSON),
        sa.Column("last_stats_at", _TS),
    )
    op.create_index("ix_devices_site_room", "devices", ["site", "room"])

    op.create_table(
        "observations",
        sa.Column("device_id", _DEVICE, primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("captured_at", _TS, nullable=False),
        sa.Column("stored_at", _TS, nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("camera", sa.Text(), nullable=False),
        sa.Column("cover_pct", sa.Float(), nullable=False),
        sa.Column("area_px", sa.BigInteger(), nullable=False),
        sa.Column("area_cm2", sa.Float()),
        sa.Column("hue_mean_deg", sa.Float()),
        sa.Column("hue_median_deg", sa.Float()),
        sa.Column("greenness_index", sa.Float()),
        sa.Column("yellow_pct", sa.Float(), nullable=False),
        sa.Column("brown_pct", sa.Float(), nullable=False),
        sa.Column("exposure_verdict", sa.String(8), nullable=False),
        sa.Column("sharpness", sa.Float(), nullable=False),
        sa.Column("image_stored", sa.Boolean(), nullable=False),
        sa.Column("health_label", sa.Text()),
        sa.Column("health_confidence", sa.Float()),
        sa.Column("model_name", sa.Text()),
        sa.Column("model_version", sa.Text()),
        sa.Column("model_backend", sa.Text()),
        sa.Column("payload", _JSON, nullable=False),
    )
    op.create_index("ix_observations_device_captured", "observations", ["device_id", "captured_at"])
    op.create_index(
        "ix_observations_site_room_captured", "observations", ["site", "room", "captured_at"]
    )
    op.create_index("ix_observations_stored", "observations", ["stored_at"])

    op.create_table(
        "alerts",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("device_id", _DEVICE, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.Text()),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("baseline", sa.Float()),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.UniqueConstraint("device_id", "alert_id", "state", name="uq_alerts_device_alert_state"),
    )
    op.create_index("ix_alerts_at", "alerts", ["at"])
    op.create_index("ix_alerts_device_at", "alerts", ["device_id", "at"])

    op.create_table(
        "thumbnails",
        sa.Column("device_id", _DEVICE, primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
    )
    op.create_index("ix_dead_letters_received", "dead_letters", ["received_at"])

    op.create_table(
        "resend_claims",
        sa.Column("device_id", _DEVICE, primary_key=True),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("from_seq", sa.BigInteger(), nullable=False),
        sa.Column("to_seq", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    """Drop every table (the fleet's history with it)."""
    for table in (
        "resend_claims",
        "dead_letters",
        "thumbnails",
        "alerts",
        "observations",
        "devices",
    ):
        op.drop_table(table)
