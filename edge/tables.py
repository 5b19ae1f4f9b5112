"""The device database's tables (SQLite through SQLAlchemy 2)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the device's tables."""


class Counter(Base):
    """Monotonic counters (the observation seq)."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, nullable=False)


class ObservationRow(Base):
    """One capture: key measurements as columns, the whole message as JSON."""

    __tablename__ = "observations"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    device_id: Mapped[str] = mapped_column(String(64), nullable=False)
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    cover_pct: Mapped[float] = mapped_column(Float, nullable=False)
    # Null when the light made colour unmeasurable (see canopy.colour_reason).
    yellow_pct: Mapped[float | None] = mapped_column(Float)
    brown_pct: Mapped[float | None] = mapped_column(Float)
    health_label: Mapped[str | None] = mapped_column(String(64))
    health_confidence: Mapped[float | None] = mapped_column(Float)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    image_path: Mapped[str | None] = mapped_column(String(255))
    overlay_path: Mapped[str | None] = mapped_column(String(255))
    image_bytes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    # Photos still kept: pruning, quota and the photo pages read only these rows.
    __table_args__ = (
        Index(
            "ix_observations_kept_photos",
            "seq",
            "image_bytes",
            sqlite_where=text("image_path IS NOT NULL"),
        ),
    )


class OutboxRow(Base):
    """A message waiting to be published, written with the row it belongs to."""

    __tablename__ = "outbox"
    # Ids must never be reused once acknowledged rows are deleted: the publisher
    # reads "everything after the last id it handed out".
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    qos: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    retain: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    seq: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AlertRow(Base):
    """A debounced problem: open while cleared_at is null."""

    __tablename__ = "alerts"
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    label: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    raised_seq: Mapped[int] = mapped_column(Integer, nullable=False)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cleared_seq: Mapped[int | None] = mapped_column(Integer)


class WebSessionRow(Base):
    """A signed-in browser; the cookie holds a token whose SHA-256 is `token_hash`."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant: Mapped[str] = mapped_column(String(32), nullable=False)  # which password hash
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    client: Mapped[str] = mapped_column(String(64), nullable=False)
    user_agent: Mapped[str] = mapped_column(String(200), nullable=False)


class BaselineSampleRow(Base):
    """One capture of the current grow's baseline (its embedding and colour metrics)."""

    __tablename__ = "grow_baseline"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    embedding: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    hue_mean_deg: Mapped[float | None] = mapped_column(Float)
    greenness_index: Mapped[float | None] = mapped_column(Float)
    # Null when the light made colour unmeasurable (see canopy.colour_reason).
    yellow_pct: Mapped[float | None] = mapped_column(Float)
    brown_pct: Mapped[float | None] = mapped_column(Float)
