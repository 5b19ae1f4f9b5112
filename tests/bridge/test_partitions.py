"""Weekly partitions of observations: the migration both ways with data, idempotency across
weeks, the default partition, creating ahead and dropping by retention (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, Table, create_engine, select, text

from cloud_bridge.cli import main
from cloud_bridge.decode import Limits, decode
from cloud_bridge.partitions import (
    DEFAULT_PARTITION,
    WEEK,
    create_week,
    maintain,
    partition_name,
    week_start,
    weeks,
)
from cloud_bridge.schema import alembic_config, head_revision, migrate
from cloud_bridge.store import Envelope, FleetStore, observation_row
from cloud_bridge.tables import DeadLetter, ObservationKey, ObservationRow
from tests.bridge.conftest import count
from tests.bridge.factory import observation

NOW = datetime.now(timezone.utc)
LIMITS = Limits(max_payload_bytes=262_144, thumbnail_max_bytes=65_536)


def _at(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def _down(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def _legacy_rows() -> list[dict[str, Any]]:
    """Observations over ten weeks back, this week, and one with a clock 30 years off."""
    rows = []
    for device in ("cam-a", "cam-b"):
        for seq in range(1, 41):
            at = NOW - timedelta(days=70) + timedelta(hours=42 * seq)
            obs = observation(device, seq, captured_at=at)
            rows.append(observation_row(obs, at, obs.model_dump(mode="json")))
    odd = observation("cam-c", 1, captured_at=datetime(1996, 5, 1, tzinfo=timezone.utc))
    rows.append(observation_row(odd, NOW, odd.model_dump(mode="json")))
    return rows


def _snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    o = ObservationRow
    with engine.connect() as conn:
        query = select(o.device_id, o.seq, o.captured_at, o.health_label, o.payload)
        return [tuple(r) for r in conn.execute(query.order_by(o.device_id, o.seq)).all()]


def _partition_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT tableoid::regclass::text, count(*) FROM observations GROUP BY 1")
        ).all()
    return {name: n for name, n in found}


@pytest.fixture
def legacy(empty_pg_url: str) -> Iterator[Engine]:
    """A database at 0003 (one plain observations table) holding rows."""
    engine = create_engine(empty_pg_url)
    _at(engine, "0003")
    # The ORM model has columns later revisions add: insert only the ones 0003 has.
    table = Table("observations", MetaData(), autoload_with=engine)
    rows = [{k: v for k, v in row.items() if k in table.c} for row in _legacy_rows()]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    yield engine
    engine.dispose()


def test_upgrade_partitions_existing_rows_and_downgrade_restores_them(legacy: Engine) -> None:
    before = _snapshot(legacy)
    migrate(legacy)
    assert _snapshot(legacy) == before
    assert count(legacy, ObservationKey) == len(before)
    with legacy.connect() as conn:
        kind = conn.execute(
            text("SELECT relkind FROM pg_class WHERE relname = 'observations'")
        ).scalar_one()
        created = weeks(conn)
    assert kind == "p"
    # Every week with data, this week and four ahead; the 1996 row waits in the default.
    data_weeks = {week_start(r[2]) for r in before if r[2].year > 2000}
    assert data_weeks | {week_start(NOW) + i * WEEK for i in range(5)} == set(created)
    placed = _partition_rows(legacy)
    assert placed[DEFAULT_PARTITION] == 1
    assert sum(placed.values()) == len(before)
    for name, n in placed.items():
        if name != DEFAULT_PARTITION:
            assert n == sum(1 for r in before if partition_name(week_start(r[2])) == name)

    _down(legacy, "0003")
    assert _snapshot(legacy) == before
    with legacy.connect() as conn:
        kind = conn.execute(
            text("SELECT relkind FROM pg_class WHERE relname = 'observations'")
        ).scalar_one()
        pkey = conn.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'observations_pkey'"
            )
        ).scalar_one()
        keys_table = conn.execute(text("SELECT to_regclass('observation_keys')")).scalar()
    assert (kind, pkey, keys_table) == ("r", "PRIMARY KEY (device_id, seq)", None)
    migrate(legacy)  # and up again: the same rows
    assert _snapshot(legacy) == before


def _envelope(device: str, seq: int, captured_at: datetime, label: str = "healthy") -> Envelope:
    obs = observation(device, seq, captured_at=captured_at, label=label)
    topic, payload = f"cultivai/v1/{device}/observation", obs.model_dump_json().encode()
    return Envelope(topic, payload, NOW, decode(topic, payload, LIMITS))


def test_a_seq_is_stored_once_across_weeks(engine: Engine) -> None:
    store = FleetStore(engine, 4096)
    this_week, last_week = NOW, NOW - WEEK
    first = store.write([_envelope("cam-1", 7, this_week)])
    assert first.stored["observation"] == 1
    # Same key, capture time a week earlier: another partition, still the same key.
    moved = store.write([_envelope("cam-1", 7, last_week)])
    assert moved.stored["observation"] == 0 and moved.dead_letters["conflict"] == 1
    again = store.write([_envelope("cam-1", 7, this_week)])
    assert again.duplicates["observation"] == 1
    assert count(engine) == 1 and count(engine, DeadLetter) == 1


def test_a_row_without_its_week_goes_to_the_default_and_moves_when_the_week_is_made(
    engine: Engine,
) -> None:
    store = FleetStore(engine, 4096)
    far = week_start(NOW) + 20 * WEEK + timedelta(hours=3)
    assert store.write([_envelope("cam-1", 1, far)]).stored["observation"] == 1
    assert _partition_rows(engine) == {DEFAULT_PARTITION: 1}
    done = maintain(engine, ahead_weeks=21, retention_days=0)
    assert partition_name(week_start(far)) in done.created and done.moved_from_default == 1
    assert _partition_rows(engine) == {partition_name(week_start(far)): 1}
    assert maintain(engine, ahead_weeks=21, retention_days=0).created == []


def test_retention_drops_old_weeks_with_their_keys(engine: Engine) -> None:
    store = FleetStore(engine, 4096)
    old = NOW - timedelta(days=60)
    with engine.connect() as conn:
        assert week_start(old) not in weeks(conn)
    # An old week that has data: create it as migrate would have, then fill it.
    with engine.begin() as conn:
        create_week(conn, week_start(old))
    store.write([_envelope("cam-1", 1, old), _envelope("cam-1", 2, NOW)])
    store.write([_envelope("cam-2", 1, datetime(1999, 1, 1, tzinfo=timezone.utc))])
    done = maintain(engine, ahead_weeks=4, retention_days=30)
    assert done.dropped == [partition_name(week_start(old))]
    assert done.expired_rows == 1  # the 1999 row in the default partition
    with engine.connect() as conn:
        keys = conn.execute(select(ObservationKey.device_id, ObservationKey.seq)).all()
        assert week_start(old) not in weeks(conn)
    assert [tuple(k) for k in keys] == [("cam-1", 2)] and count(engine) == 1


def test_retention_deletes_rows_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    assert migrate(engine)[1] == head_revision()
    store = FleetStore(engine, 4096)
    store.write([_envelope("cam-1", 1, NOW - timedelta(days=90)), _envelope("cam-1", 2, NOW)])
    assert maintain(engine, ahead_weeks=4, retention_days=30).expired_rows == 1
    assert count(engine) == 1 and count(engine, ObservationKey) == 1
    engine.dispose()


def test_partitions_command_reports_what_it_did(
    engine: Engine, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FleetStore(engine, 4096)
    store.write([_envelope("cam-1", 1, NOW - timedelta(days=400)), _envelope("cam-1", 2, NOW)])
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"database: {{url: '{pg_url}', retention_days: 365, partitions_ahead_weeks: 6}}\n"
        "logging: {level: WARNING}\n"
    )
    assert main(["partitions", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    ahead = partition_name(week_start(NOW) + 6 * WEEK)
    assert ahead in out and "expired rows deleted: 1" in out
    assert count(engine) == 1
