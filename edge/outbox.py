"""The outbox: messages waiting for the broker, in the device database.

A message is enqueued in the same transaction as the row it reports (observation,
alert, command result), so a message exists exactly when its row does. The
publisher reads it in id order and deletes it when the broker's PUBACK arrives.
When the outbox outgrows its limit the oldest unsent messages are dropped and
counted (a `dropped` counter in the database), never silently. A retained
message is state, not history: a newer one on the same topic replaces the
unsent older ones, which the broker would overwrite anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from edge.tables import Counter, OutboxRow

log = logging.getLogger(__name__)
DROPPED = "outbox_dropped"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message as read back for publishing."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int | None
    content_type: str | None


def enqueue(
    session: Session,
    topic: str,
    payload: bytes | str,
    *,
    qos: int = 1,
    retain: bool = False,
    seq: int | None = None,
    content_type: str | None = None,
) -> None:
    """Add a message inside the caller's transaction; a retained one supersedes older ones."""
    data = payload.encode() if isinstance(payload, str) else payload
    if retain:
        session.execute(
            delete(OutboxRow).where(OutboxRow.topic == topic, OutboxRow.retain.is_(True))
        )
    session.add(
        OutboxRow(
            topic=topic,
            payload=data,
            qos=qos,
            retain=retain,
            seq=seq,
            content_type=content_type,
            created_at=datetime.now(timezone.utc),
        )
    )


def enforce_limit(session: Session, max_messages: int) -> int:
    """Drop the oldest messages beyond `max_messages`; returns how many were dropped."""
    depth = int(session.execute(select(func.count()).select_from(OutboxRow)).scalar_one())
    excess = depth - max_messages
    if excess <= 0:
        return 0
    oldest = select(OutboxRow.id).order_by(OutboxRow.id).limit(excess).scalar_subquery()
    session.execute(delete(OutboxRow).where(OutboxRow.id.in_(oldest)))
    if session.get(Counter, DROPPED) is None:
        session.add(Counter(name=DROPPED, value=0))
        session.flush()
    session.execute(
        update(Counter).where(Counter.name == DROPPED).values(value=Counter.value + excess)
    )
    log.warning(
        "outbox full: oldest unsent messages dropped",
        extra={"dropped": excess, "limit": max_messages},
    )
    return excess


def dropped_count(session: Session) -> int:
    """Messages dropped over the device's lifetime to respect the limit."""
    row = session.get(Counter, DROPPED)
    return row.value if row else 0


class Outbox:
    """The publisher's view of the outbox."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def pending(self, after_id: int, limit: int) -> list[Outgoing]:
        """Messages with id > after_id, oldest first."""
        columns = (
            OutboxRow.id,
            OutboxRow.topic,
            OutboxRow.payload,
            OutboxRow.qos,
            OutboxRow.retain,
            OutboxRow.seq,
            OutboxRow.content_type,
        )
        query = select(*columns).where(OutboxRow.id > after_id).order_by(OutboxRow.id).limit(limit)
        with self.engine.connect() as conn:
            return [Outgoing(*row) for row in conn.execute(query)]

    def acknowledge(self, ids: list[int]) -> None:
        """The broker has them: delete."""
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(OutboxRow).where(OutboxRow.id.in_(ids)))

    def depth(self) -> int:
        """Messages waiting."""
        with Session(self.engine) as s:
            return int(s.execute(select(func.count()).select_from(OutboxRow)).scalar_one())

    def oldest_age_s(self) -> float:
        """Seconds the oldest waiting message has waited; 0 when none waits."""
        with Session(self.engine) as s:
            oldest = s.execute(select(func.min(OutboxRow.created_at))).scalar_one()
        if oldest is None:
            return 0.0
        if oldest.tzinfo is None:  # SQLite hands back naive UTC
            oldest = oldest.replace(tzinfo=timezone.utc)
        return max(0.0, (datetime.now(timezone.utc) - oldest).total_seconds())

    def dropped(self) -> int:
        """Messages dropped over the device's lifetime to respect the limit."""
        with Session(self.engine) as s:
            return dropped_count(s)
