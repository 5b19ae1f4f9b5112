"""A generated fleet history at scale (generate_series in the server) and the read API's
queries over it: shared by `bench/fleet_db_scale.py` and the plan test.

The fleet: `devices` cameras (10 sites, 100 rooms), each with `per_device` observations
evenly spaced over `weeks` weeks that end now, so the rows spread over that many weekly
partitions. The payload is a small JSON document (a real one is about 1 kB), which keeps
a large run within a few GB; rows and indexes are otherwise the production ones.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, event, text

from cloud_bridge.partitions import WEEK, create_week, maintain, week_start, weeks
from cloud_bridge.queries import FleetReader

SITES = 10
ROOMS = 100


@dataclass(frozen=True)
class Fleet:
    """The shape of a generated history."""

    devices: int
    per_device: int
    weeks: int
    end: datetime

    @property
    def rows(self) -> int:
        """Observations generated."""
        return self.devices * self.per_device

    @property
    def start(self) -> datetime:
        """Capture time of seq 0 (seq 1 is one step later)."""
        return self.end - self.weeks * WEEK

    @property
    def step(self) -> timedelta:
        """Time between two captures of one device."""
        return self.weeks * WEEK / self.per_device


def device_name(d: int) -> str:
    """The id of generated device number `d`."""
    return f"cam-{d:05d}"


def room_of(d: int) -> tuple[str, str]:
    """(site, room) of generated device number `d`."""
    return f"site-{d % SITES}", f"room-{d % ROOMS}"


_OBSERVATIONS = """
INSERT INTO observations (
    device_id, seq, captured_at, stored_at, site, room, camera, cover_pct, area_px,
    exposure_verdict, sharpness, image_stored, health_label, health_confidence,
    schema_version, model_name, model_version, model_backend, payload)
SELECT 'cam-' || lpad(d::text, 5, '0'), s, :start + s * :step,
    :start + s * :step + interval '2 seconds',
    'site-' || (d % 10), 'room-' || (d % 100), 'synthetic', ((s * 7 + d) % 100) + 0.5,
    1000 * s, 'ok', 300.0, true, (ARRAY['healthy', 'yellowing', 'brown_spots'])[1 + (s + d) % 3],
    0.9, 2, 'plant_health', '1.0.0', 'litert-cpu',
    jsonb_build_object('device_id', 'cam-' || lpad(d::text, 5, '0'), 'seq', s,
        'canopy', jsonb_build_object('cover_pct', ((s * 7 + d) % 100) + 0.5))
FROM generate_series(CAST(:s0 AS bigint), CAST(:s1 AS bigint)) AS s
CROSS JOIN generate_series(0, CAST(:devices AS int) - 1) AS d
"""


def generate(
    engine: Engine, fleet: Fleet, chunks: int = 1, progress: Callable[[str], None] | None = None
) -> float:
    """Fill a migrated, empty database with `fleet`; returns the seconds it took."""
    started = time.perf_counter()
    with engine.begin() as conn:
        have = set(weeks(conn))
        first = week_start(fleet.start)
        for i in range(fleet.weeks + 2):
            if first + i * WEEK not in have:
                create_week(conn, first + i * WEEK)
        conn.execute(
            text(
                "INSERT INTO devices (id, site, room, first_seen, last_seen, online, last_seq) "
                "SELECT 'cam-' || lpad(d::text, 5, '0'), 'site-' || (d % 10), "
                "'room-' || (d % 100), :start, :end, true, :last "
                "FROM generate_series(0, CAST(:devices AS int) - 1) AS d"
            ),
            {
                "start": fleet.start,
                "end": fleet.end,
                "last": fleet.per_device,
                "devices": fleet.devices,
            },
        )
    maintain(engine, ahead_weeks=4, retention_days=0, now=fleet.end)
    bounds = [1 + fleet.per_device * i // chunks for i in range(chunks + 1)]
    for i in range(chunks):
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            params = {
                "start": fleet.start,
                "step": fleet.step,
                "s0": bounds[i],
                "s1": bounds[i + 1] - 1,
                "devices": fleet.devices,
            }
            conn.execute(text(_OBSERVATIONS), params)
            conn.execute(
                text(
                    "INSERT INTO observation_keys (device_id, seq, captured_at) "
                    "SELECT 'cam-' || lpad(d::text, 5, '0'), s, :start + s * :step "
                    "FROM generate_series(CAST(:s0 AS bigint), CAST(:s1 AS bigint)) AS s "
                    "CROSS JOIN generate_series(0, CAST(:devices AS int) - 1) AS d"
                ),
                params,
            )
        if progress:
            progress(f"  {bounds[i + 1] - 1} of {fleet.per_device} captures per device written")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


@contextmanager
def captured_sql(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) the engine runs inside the block."""
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def explain(
    engine: Engine, statement: str, parameters: Any, analyze: bool = True
) -> dict[str, Any]:
    """PostgreSQL's plan of one captured statement, as its JSON document."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute(f"EXPLAIN ({options}) {statement}", parameters)
            row = cursor.fetchone()
        conn.rollback()
    assert row is not None
    plan = row[0]
    document = plan if isinstance(plan, list) else json.loads(plan)
    return dict(document[0])


def explain_text(engine: Engine, statement: str, parameters: Any) -> str:
    """EXPLAIN ANALYZE in text, for the docs."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {statement}", parameters)
            lines = [r[0] for r in cursor.fetchall()]
        conn.rollback()
    return "\n".join(lines)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan document, depth first."""
    stack = [plan.get("Plan", plan)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.get("Plans", []))


def read_queries(reader: FleetReader, fleet: Fleet, i: int) -> dict[str, Callable[[], Any]]:
    """The read API's queries, varied by `i` (another room and device each round)."""
    d = (i * 7919) % fleet.devices
    site, room = room_of(d)
    device = device_name(d)

    def whole_grow() -> int:
        after, total = None, 0
        while True:
            items, after = reader.observations(device, None, after, 1000)
            total += len(items)
            if after is None:
                return total

    return {
        "latest per device": lambda: reader.latest(),
        "one room's week": lambda: reader.room_observations(
            site, room, fleet.end - timedelta(days=7), fleet.end, 1_000_000
        ),
        "one device's whole grow": whole_grow,
        "fleet summary": lambda: reader.fleet_summary(),
    }


def p95(samples: list[float]) -> float:
    """The 95th percentile (inclusive method), in the samples' unit."""
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def time_queries(reader: FleetReader, fleet: Fleet, rounds: int) -> dict[str, list[float]]:
    """Milliseconds of each query over `rounds` rounds (after one untimed warm-up)."""
    for query in read_queries(reader, fleet, rounds).values():
        query()
    times: dict[str, list[float]] = {}
    for i in range(rounds):
        for name, query in read_queries(reader, fleet, i).items():
            started = time.perf_counter()
            query()
            times.setdefault(name, []).append((time.perf_counter() - started) * 1000)
    return times


def now_utc() -> datetime:
    """The current time, aware."""
    return datetime.now(timezone.utc)
