"""Weekly time partitions of `observations` on PostgreSQL, kept by the bridge itself.

`observations` is a range-partitioned table on `captured_at`, one partition per UTC
week (Monday 00:00 to Monday 00:00), named ``observations_YYYYMMDD`` after the
Monday, plus ``observations_default`` for anything outside the created weeks (a
device whose clock is far off, or a resend older than every partition). No insert
ever fails for want of a partition.

`maintain` is run by `cultivai-bridge migrate`, by `cultivai-bridge partitions`, and
by every running bridge at start and then hourly. It creates the partitions of the
coming weeks, moves rows out of the default partition into a week that has just been
created for them, and, when a retention is set, drops whole weeks older than it
(together with their idempotency keys). Concurrent bridges serialise on an advisory
lock; DDL waits at most `LOCK_TIMEOUT` for ingest and is otherwise retried next hour.

SQLite databases are not partitioned; there retention deletes rows.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, Engine, bindparam, text

from cloud_bridge.tables import UtcDateTime

log = logging.getLogger("cloud_bridge.partitions")

WEEK = timedelta(days=7)
PARENT = "observations"
DEFAULT_PARTITION = "observations_default"
LOCK_TIMEOUT = "5s"
_MAINTENANCE_LOCK = 0x43554C55
_NAME = re.compile(r"observations_(\d{8})")
_MONDAY = datetime(2024, 1, 1, tzinfo=timezone.utc)


def week_start(at: datetime) -> datetime:
    """The Monday 00:00 UTC starting the week that holds `at`."""
    at = at.astimezone(timezone.utc)
    weeks = (at - _MONDAY) // WEEK
    return _MONDAY + weeks * WEEK


def partition_name(start: datetime) -> str:
    """The name of the partition of the week starting at `start`."""
    return f"{PARENT}_{start:%Y%m%d}"


def is_partition_name(name: str) -> bool:
    """True for the name of one of the partitions (not the parent table)."""
    return name == DEFAULT_PARTITION or _NAME.fullmatch(name) is not None


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic's filter: the weekly partitions are managed at run time, not by the models."""
    return not (type_ == "table" and name is not None and is_partition_name(name))


def is_partitioned(conn: Connection) -> bool:
    """True when `observations` is a partitioned table (PostgreSQL after migration 0004)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": PARENT}
    ).scalar()
    return kind == "p"


def weeks(conn: Connection) -> list[datetime]:
    """Start of every weekly partition attached to `observations`, oldest first."""
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": PARENT},
    ).scalars()
    starts = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match:
            starts.append(datetime.strptime(match[1], "%Y%m%d").replace(tzinfo=timezone.utc))
    return sorted(starts)


def create_week(conn: Connection, start: datetime) -> int:
    """Create and attach the partition of the week at `start`; returns the rows it took over
    from the default partition (which refuses an overlapping new partition otherwise)."""
    name, end = partition_name(start), start + WEEK
    bounds = {"s": start, "e": end}
    conn.execute(
        text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    )
    moved = conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
            "WHERE captured_at >= :s AND captured_at < :e RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"
        ),
        bounds,
    ).rowcount
    # The CHECK lets ATTACH skip scanning the new partition; the bound replaces it after.
    conn.execute(
        text(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_range "
            f"CHECK (captured_at >= '{start.isoformat()}' AND captured_at < '{end.isoformat()}')"
        )
    )
    conn.execute(
        text(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name} "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    )
    conn.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range"))
    return int(moved or 0)


def drop_week(conn: Connection, start: datetime) -> None:
    """Drop the partition of the week at `start` and the idempotency keys of its rows."""
    name = partition_name(start)
    conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
    conn.execute(text(f"DROP TABLE {name}"))
    conn.execute(
        text("DELETE FROM observation_keys WHERE captured_at >= :s AND captured_at < :e"),
        {"s": start, "e": start + WEEK},
    )


@dataclass
class Maintenance:
    """What one maintenance run changed."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    expired_rows: int = 0


def maintain_connection(
    conn: Connection, now: datetime, ahead_weeks: int, retention_days: int
) -> Maintenance:
    """Partitions for this week and `ahead_weeks` more; drop (or delete) what `retention_days`
    (0: keep everything) has expired. Runs in the caller's transaction."""
    done = Maintenance()
    cutoff = now - timedelta(days=retention_days) if retention_days > 0 else None
    if not is_partitioned(conn):
        if cutoff is not None:
            done.expired_rows = _expire_rows(conn, cutoff)
        return done
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MAINTENANCE_LOCK})
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    existing = set(weeks(conn))
    first = week_start(now)
    wanted = [first + i * WEEK for i in range(ahead_weeks + 1)]
    for start in wanted:
        if start not in existing and (cutoff is None or start + WEEK > cutoff):
            done.moved_from_default += create_week(conn, start)
            done.created.append(partition_name(start))
    if cutoff is not None:
        for start in sorted(existing):
            if start + WEEK <= cutoff:
                drop_week(conn, start)
                done.dropped.append(partition_name(start))
        done.expired_rows = _expire_rows(conn, cutoff, DEFAULT_PARTITION)
    return done


def _expire_rows(conn: Connection, cutoff: datetime, table: str = PARENT) -> int:
    """Delete observations (and their keys) captured before `cutoff` from `table`."""
    cut = bindparam("c", cutoff, type_=UtcDateTime)
    deleted = conn.execute(
        text(f"DELETE FROM {table} WHERE captured_at < :c").bindparams(cut)
    ).rowcount
    conn.execute(text("DELETE FROM observation_keys WHERE captured_at < :c").bindparams(cut))
    return int(deleted or 0)


def maintain(
    engine: Engine,
    ahead_weeks: int,
    retention_days: int,
    now: datetime | None = None,
) -> Maintenance:
    """Run `maintain_connection` in its own transaction and log what it changed."""
    at = now or datetime.now(timezone.utc)
    with engine.begin() as conn:
        done = maintain_connection(conn, at, ahead_weeks, retention_days)
    if done.created or done.dropped or done.moved_from_default or done.expired_rows:
        log.info(
            "partitions maintained",
            extra={
                "created": done.created,
                "dropped": done.dropped,
                "moved_from_default": done.moved_from_default,
                "expired_rows": done.expired_rows,
            },
        )
    return done


MAINTENANCE_INTERVAL_S = 3600.0


def run_maintenance(
    engine: Engine,
    ahead_weeks: int,
    retention_days: int,
    stop: threading.Event,
    interval_s: float = MAINTENANCE_INTERVAL_S,
) -> None:
    """`maintain` now and then every `interval_s` until `stop`; a failure is logged and
    retried next time (the week ahead exists well before it is needed)."""
    while True:
        try:
            maintain(engine, ahead_weeks, retention_days)
        except Exception as exc:
            log.warning(
                "partition maintenance failed; retrying later",
                extra={"error": str(exc).splitlines()[0] if str(exc) else repr(exc)},
            )
        if stop.wait(interval_s):
            return
