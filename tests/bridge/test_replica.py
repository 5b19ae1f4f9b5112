"""A streaming read replica: the read API on it, its lag in /readyz, and a failover.

The failover drill: devices publish through the broker into a bridge writing to the
primary and reading from the replica; the primary is killed (-9), the replica promoted,
the bridge restarted on it. With asynchronous replication the rows the primary had
committed but not yet streamed are missing on the replica; the bridge had acknowledged
them, so the broker will not redeliver them, and the devices' resends (gap requests)
bring them back. With a synchronous standby nothing the primary committed is missing.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from cloud_bridge.config import config_from_data
from cloud_bridge.database import is_transient
from cloud_bridge.errors import ConfigError
from cloud_bridge.schema import migrate
from cloud_bridge.service import Bridge
from cloud_bridge.tables import ObservationRow
from tests.bridge.conftest import bridge_config
from tests.bridge.live_fleet import LiveFleet, wait_for
from tests.bridge.pg import PgCluster, find_pg_bin
from tests.mqtt_broker import find_mosquitto

DATABASE = "cultivai"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def pair() -> Iterator[tuple[PgCluster, PgCluster]]:
    """A durable primary with the bridge schema and a streaming hot standby of it."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        _missing("PostgreSQL server binaries not found (make system-deps installs them)")
    assert bin_dir is not None
    primary = PgCluster(bin_dir, durable=True).init()
    replica = PgCluster(bin_dir, durable=True)
    try:
        primary.start()
        primary.create_database(DATABASE)
        engine = create_engine(primary.url(DATABASE))
        migrate(engine)
        engine.dispose()
        replica.init_standby(primary).start()
        yield primary, replica
    finally:
        replica.destroy()
        primary.destroy()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ObservationRow)).scalar_one())


def _get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _has_table(cluster: PgCluster, name: str) -> bool:
    with psycopg.connect(cluster.dsn(DATABASE)) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _read_sessions(replica: Engine) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cultivai-bridge-read'"
    with replica.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


@pytest.mark.slow
@pytest.mark.parametrize("replication", ["async", "sync"])
def test_failover_to_the_promoted_replica_loses_nothing_and_ingest_resumes(
    pair: tuple[PgCluster, PgCluster], tmp_path: Path, replication: str
) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    primary, replica = pair
    on_primary = create_engine(primary.url(DATABASE), pool_pre_ping=True)
    on_replica = create_engine(replica.url(DATABASE), pool_pre_ping=True)
    if replication == "sync":
        with psycopg.connect(primary.dsn("postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
    fleet = LiveFleet(tmp_path, devices=4, period_s=0.1)
    try:
        fleet.start(
            {"url": primary.url(DATABASE), "read_url": replica.url(DATABASE), "pool_size": 2}
        )
        assert fleet.bridge is not None
        wait_for(lambda: all(fleet.stored_counts(on_replica).values()), 60, "rows on the replica")
        status, ready = _get(fleet.bridge.port, "/readyz")
        assert status == 200, ready
        assert ready["checks"]["replica"] == "ok"
        assert ready["replica"]["standby"] is True
        assert isinstance(ready["replica"]["lag_s"], float)
        status, listed = _get(fleet.bridge.port, "/api/v1/devices", fleet.token)
        assert status == 200
        assert sorted(d["id"] for d in listed["devices"]) == fleet.device_ids
        assert _read_sessions(on_replica) > 0, "the read API did not use the replica"
        time.sleep(3.0)

        committed = _count(on_primary)
        primary.kill()
        on_primary.dispose()
        started = time.monotonic()
        replica.promote()
        replica.wait_writable()
        promote_s = time.monotonic() - started
        survived = _count(on_replica)
        fleet.switch_bridge({"url": replica.url(DATABASE)})
        switched_s = time.monotonic() - started
        print(
            f"\nfailover ({replication}): {committed} rows committed on the primary when it "
            f"was killed, {survived} on the promoted replica "
            f"({max(0, committed - survived)} to be resent); promote {promote_s:.1f} s, "
            f"bridge ready on the new primary {switched_s:.1f} s after the kill"
        )
        if replication == "sync":
            assert survived >= committed, "a synchronous standby missed a committed row"

        wait_for(lambda: _count(on_replica) > survived + 20, 60, "ingest on the new primary")
        fleet.stop_publishing()
        wait_for(lambda: fleet.complete(on_replica), 120, "every produced seq stored")
        reports = fleet.report(on_replica)
        summary = "\n".join(r.line() for r in reports)
        print(summary)
        assert [(r.lost, r.duplicated) for r in reports] == [(0, 0)] * len(reports), summary
    finally:
        fleet.close()
        on_primary.dispose()
        on_replica.dispose()


@pytest.mark.slow
def test_readiness_reports_a_replica_that_stopped_replaying(
    pair: tuple[PgCluster, PgCluster], broker: Any
) -> None:
    primary, replica = pair
    database = {"read_url": replica.url(DATABASE), "read_max_lag_s": 0.5}
    bridge = Bridge(bridge_config(broker, primary.url(DATABASE), database=database)).start()
    try:
        with psycopg.connect(primary.dsn(DATABASE), autocommit=True) as conn:
            conn.execute("CREATE TABLE lag_probe (at timestamptz DEFAULT now())")
        wait_for(lambda: _has_table(replica, "lag_probe"), 30, "the table on the replica")
        assert bridge.check_replica() is None
        with psycopg.connect(replica.dsn("postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        with psycopg.connect(primary.dsn(DATABASE), autocommit=True) as conn:
            conn.execute("INSERT INTO lag_probe DEFAULT VALUES")
        wait_for(
            lambda: (bridge.check_replica() or "").startswith("replays"),
            30,
            "a paused replica reported as lagging",
        )
        assert bridge.metrics.replica_lag._value.get() > 0.5
        with psycopg.connect(replica.dsn("postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        wait_for(lambda: bridge.check_replica() is None, 30, "the replica caught up")
    finally:
        bridge.stop()


def test_the_read_engine_refuses_writes_and_reports_no_lag_on_a_primary(
    start_bridge: Callable[..., Bridge], pg_url: str
) -> None:
    bridge = start_bridge(database={"read_url": pg_url})
    assert bridge.read_engine is not None
    with (
        pytest.raises(DBAPIError, match="read-only transaction") as caught,
        bridge.read_engine.begin() as conn,
    ):
        conn.execute(text("DELETE FROM observations"))
    assert is_transient(caught.value)  # a standby's refusal: the writer holds and retries
    assert bridge.check_replica() is None
    assert bridge._replica == {"lag_s": 0.0, "standby": False}


def test_readiness_names_an_unreachable_replica(start_bridge: Callable[..., Bridge]) -> None:
    bridge = start_bridge(
        database={"read_url": "postgresql+psycopg://postgres@127.0.0.1:1/cultivai"}
    )
    problem = bridge.check_replica()
    assert problem is not None and problem.startswith("unreachable")


@pytest.mark.parametrize(
    ("database", "message"),
    [
        (
            {"url": "sqlite:////tmp/x.sqlite3", "read_url": "postgresql+psycopg://r@h/db"},
            "SQLite has no read replicas",
        ),
        ({"url": "postgresql+psycopg://u@h/db", "read_url": "sqlite:///x"}, "read_url"),
        ({"url": "postgresql+psycopg://u@h/db", "read_url": "postgresql://u:pw@h/db"}, "password"),
    ],
)
def test_a_bad_read_url_is_named(database: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_data({"database": database}, env={})
