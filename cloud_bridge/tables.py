"""The fleet database's tables (SQLAlchemy 2; PostgreSQL in production, SQLite embedded).

The schema itself is created and changed only by the Alembic migrations in
``cloud_bridge/migrations``; these models describe it for the code.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JsonDocument = JSON().with_variant(JSONB(), "postgresql")
"""JSONB on PostgreSQL, JSON text on SQLite."""

RowId = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit key that SQLite also auto-increments (only INTEGER PRIMARY KEY does there)."""

DEVICE_ID_LENGTH = 64


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware, on both dialects."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC before storing (SQLite would silently drop the offset)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite returns naive."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the bridge's tables."""


class Device(Base):
    """One camera as the fleet sees it: where it is, whether it is online, what it runs."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(DEVICE_ID_LENGTH), primary_key=True)
    site: Mapped[str] = mapped_column(Text, nullable=False, default="default")
    room: Mapped[str] = mapped_column(Text, nullable=False, default="default")
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    online: Mapped[bool | None] = mapped_column(Boolean)
    status_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    session_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    firmware: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(Text)
    model_backend: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_stats: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    last_stats_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_devices_site_room", "site", "room"),)


class ObservationRow(Base):
    """One capture of one device; (device_id, seq) is the idempotency key end to end.

    On PostgreSQL the table is partitioned by week of `captured_at` and its primary key is
    (device_id, seq, captured_at); `ObservationKey` keeps (device_id, seq) unique.
    """

    __tablename__ = "observations"
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    captured_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    site: Mapped[str] = mapped_column(Text, nullable=False)
    room: Mapped[str] = mapped_column(Text, nullable=False)
    camera: Mapped[str] = mapped_column(Text, nullable=False)
    cover_pct: Mapped[float] = mapped_column(Float, nullable=False)
    area_px: Mapped[int] = mapped_column(BigInteger, nullable=False)
    area_cm2: Mapped[float | None] = mapped_column(Float)
    hue_mean_deg: Mapped[float | None] = mapped_column(Float)
    hue_median_deg: Mapped[float | None] = mapped_column(Float)
    greenness_index: Mapped[float | None] = mapped_column(Float)
    # Null when the light made colour unmeasurable (the payload's canopy.colour_reason).
    yellow_pct: Mapped[float | None] = mapped_column(Float)
    brown_pct: Mapped[float | None] = mapped_column(Float)
    exposure_verdict: Mapped[str] = mapped_column(String(8), nullable=False)
    sharpness: Mapped[float] = mapped_column(Float, nullable=False)
    image_stored: Mapped[bool] = mapped_column(Boolean, nullable=False)
    health_label: Mapped[str | None] = mapped_column(Text)
    health_confidence: Mapped[float | None] = mapped_column(Float)
    # Schema 2 verdict fields; null on schema 1 rows (assessed null: not reported).
    schema_version: Mapped[int | None] = mapped_column(SmallInteger)
    health_assessed: Mapped[bool | None] = mapped_column(Boolean)
    health_reason: Mapped[str | None] = mapped_column(Text)
    health_ood_score: Mapped[float | None] = mapped_column(Float)
    health_drift: Mapped[float | None] = mapped_column(Float)
    health_assessed_share: Mapped[float | None] = mapped_column(Float)
    health_worst_zone: Mapped[str | None] = mapped_column(Text)
    health_worst_label: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(Text)
    model_backend: Mapped[str | None] = mapped_column(Text)
    # Schema 3 climate; null without sensors (which ones answered: payload's climate block).
    air_temp_c: Mapped[float | None] = mapped_column(Float)
    rh_pct: Mapped[float | None] = mapped_column(Float)
    co2_ppm: Mapped[float | None] = mapped_column(Float)
    leaf_temp_c: Mapped[float | None] = mapped_column(Float)
    air_vpd_kpa: Mapped[float | None] = mapped_column(Float)
    leaf_vpd_kpa: Mapped[float | None] = mapped_column(Float)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument, nullable=False)

    __table_args__ = (
        Index("ix_observations_device_captured", "device_id", "captured_at"),
        Index("ix_observations_site_room_captured", "site", "room", "captured_at"),
        Index("ix_observations_stored", "stored_at"),
    )


class ObservationKey(Base):
    """The idempotency key of every stored observation, and which week holds its row.

    On PostgreSQL `observations` is partitioned by `captured_at` (see
    `cloud_bridge.partitions`), and a unique index there must include the partition key;
    this small unpartitioned table is what makes (device_id, seq) unique across weeks.
    """

    __tablename__ = "observation_keys"
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    captured_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (Index("ix_observation_keys_captured", "captured_at"),)


class AlertRow(Base):
    """A debounced problem raised or cleared on a device."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_LENGTH), nullable=False)
    alert_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(8), nullable=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    label: Mapped[str | None] = mapped_column(Text)
    zone: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument, nullable=False)

    __table_args__ = (
        UniqueConstraint("device_id", "alert_id", "state", name="uq_alerts_device_alert_state"),
        Index("ix_alerts_at", "at"),
        Index("ix_alerts_device_at", "device_id", "at"),
    )


class ThumbnailRow(Base):
    """The small JPEG of one observation (stored only when thumbnails are enabled)."""

    __tablename__ = "thumbnails"
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    content_type: Mapped[str] = mapped_column(String(32), nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class DeadLetter(Base):
    """A message the bridge could not accept, kept with the reason so nothing vanishes."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (Index("ix_dead_letters_received", "received_at"),)


class ResendClaim(Base):
    """When a device was last asked to resend, so bridges together respect the rate limit."""

    __tablename__ = "resend_claims"
    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_LENGTH), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    from_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    to_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class ApiRateLimit(Base):
    """One read-API client's token bucket, shared by every bridge replica."""

    __tablename__ = "api_rate_limits"
    client: Mapped[str] = mapped_column(String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    allowed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (Index("ix_api_rate_limits_updated", "updated_at"),)
