"""Time partitions: `observations` becomes range-partitioned by week on captured_at
(PostgreSQL), and `observation_keys` holds the (device_id, seq) idempotency key.

A unique index of a partitioned table must contain the partition key, so the
partitions cannot enforce (device_id, seq) by themselves; the small unpartitioned
`observation_keys` table does, and every insert goes through it first. Existing rows
are copied with their keys; on SQLite only the keys table is added.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

from cloud_bridge.partitions import WEEK, create_week, week_start

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

AHEAD_WEEKS = 4
OLDEST_YEARS = 5
_INDEXES = (
    ("ix_observations_device_captured", ["device_id", "captured_at"]),
    ("ix_observations_site_room_captured", ["site", "room", "captured_at"]),
    ("ix_observations_stored", ["stored_at"]),
)


def _keys_table() -> None:
    op.create_table(
        "observation_keys",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_observation_keys_captured", "observation_keys", ["captured_at"])


def upgrade() -> None:
    """Copy observations into a weekly-partitioned table; fill observation_keys."""
    _keys_table()
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        op.execute(
            "INSERT INTO observation_keys (device_id, seq, captured_at) "
            "SELECT device_id, seq, captured_at FROM observations"
        )
        return
    op.execute("ALTER TABLE observations RENAME TO observations_unpartitioned")
    op.execute(
        "ALTER TABLE observations_unpartitioned "
        "RENAME CONSTRAINT observations_pkey TO observations_unpartitioned_pkey"
    )
    for name, _ in _INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_unpartitioned")
    op.execute(
        "CREATE TABLE observations (LIKE observations_unpartitioned INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (captured_at)"
    )
    op.execute(
        "ALTER TABLE observations ADD CONSTRAINT observations_pkey "
        "PRIMARY KEY (device_id, seq, captured_at)"
    )
    for name, columns in _INDEXES:
        op.create_index(name, "observations", columns)
    op.execute("CREATE TABLE observations_default PARTITION OF observations DEFAULT")
    now = datetime.now(timezone.utc)
    oldest = week_start(now - timedelta(days=365 * OLDEST_YEARS))
    newest = week_start(now) + AHEAD_WEEKS * WEEK
    with_data = bind.execute(
        sa.text(
            "SELECT DISTINCT date_trunc('week', captured_at AT TIME ZONE 'UTC') "
            "FROM observations_unpartitioned"
        )
    ).scalars()
    starts = {w.replace(tzinfo=timezone.utc) for w in with_data}
    starts |= {week_start(now) + i * WEEK for i in range(AHEAD_WEEKS + 1)}
    for start in sorted(s for s in starts if oldest <= s <= newest):
        create_week(bind, start)
    op.execute("INSERT INTO observations SELECT * FROM observations_unpartitioned")
    op.execute(
        "INSERT INTO observation_keys (device_id, seq, captured_at) "
        "SELECT device_id, seq, captured_at FROM observations_unpartitioned"
    )
    op.execute("DROP TABLE observations_unpartitioned")


def downgrade() -> None:
    """Copy the rows back into one plain table keyed by (device_id, seq)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("CREATE TABLE observations_flat (LIKE observations INCLUDING DEFAULTS)")
        op.execute("INSERT INTO observations_flat SELECT * FROM observations")
        op.execute("DROP TABLE observations")  # its partitions go with it
        op.execute("ALTER TABLE observations_flat RENAME TO observations")
        op.execute(
            "ALTER TABLE observations ADD CONSTRAINT observations_pkey PRIMARY KEY (device_id, seq)"
        )
        for name, columns in _INDEXES:
            op.create_index(name, "observations", columns)
    op.drop_index("ix_observation_keys_captured", table_name="observation_keys")
    op.drop_table("observation_keys")
