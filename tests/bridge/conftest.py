"""Fixtures of the bridge tests: one PostgreSQL cluster per session, a fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Engine, create_engine, func, select

from cloud_bridge.config import BridgeConfig, config_from_data
from cloud_bridge.schema import migrate
from cloud_bridge.service import Bridge
from cloud_bridge.tables import DeadLetter, ObservationRow
from tests.bridge.pg import PgCluster, find_pg_bin

TEMPLATE = "bridge_template"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL server for the whole test session, with a migrated template."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        _missing("PostgreSQL server binaries not found (make system-deps installs them)")
    assert bin_dir is not None
    cluster = PgCluster(bin_dir).init().start()
    try:
        cluster.create_database(TEMPLATE)
        engine = create_engine(cluster.url(TEMPLATE))
        migrate(engine)
        engine.dispose()
        yield cluster
    finally:
        cluster.destroy()


def _janitor(cluster: PgCluster, name: str, template: str | None) -> DatabaseJanitor:
    return DatabaseJanitor(
        user=cluster.user,
        host=cluster.host,
        port=cluster.port,
        dbname=name,
        template_dbname=template,
    )


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with _janitor(pg_cluster, name, TEMPLATE):
        yield pg_cluster.url(name)


@pytest.fixture
def empty_pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database (no schema) for one test."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    with _janitor(pg_cluster, name, None):
        yield pg_cluster.url(name)


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    """An engine on the test's database."""
    eng = create_engine(pg_url, pool_pre_ping=True)
    yield eng
    eng.dispose()


def bridge_settings(broker: Any, database_url: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """Config data for a bridge on the test broker and database, tuned for quick tests."""
    data: dict[str, Any] = {
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "client_id": f"bridge-{uuid.uuid4().hex[:8]}",
            "group": "bridges",
            "reconnect_max_s": 0.5,
            "receive_maximum": 2000,
        },
        "database": {"url": database_url, "retry_max_s": 0.5, "connect_timeout_s": 2},
        "http": {"enabled": False},
        "batching": {"max_messages": 500, "max_seconds": 0.1},
        "gaps": {"enabled": False},
        "logging": {"format": "text", "level": "WARNING"},
    }
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return data


def bridge_config(broker: Any, database_url: str, **sections: dict[str, Any]) -> BridgeConfig:
    """A validated config from `bridge_settings`."""
    return config_from_data(bridge_settings(broker, database_url, **sections), env={})


@pytest.fixture
def start_bridge(broker: Any, pg_url: str) -> Iterator[Callable[..., Bridge]]:
    """Start in-process bridges on the test broker and database; all stopped at the end."""
    started: list[Bridge] = []

    def start(**sections: dict[str, Any]) -> Bridge:
        bridge = Bridge(bridge_config(broker, pg_url, **sections)).start()
        started.append(bridge)
        assert bridge.link is not None
        assert bridge.link.wait_ready(10), "bridge did not subscribe within 10 s"
        return bridge

    yield start
    for bridge in started:
        bridge.stop()
        if bridge.engine is not None:
            bridge.engine.dispose()


def count(engine: Engine, table: Any = ObservationRow) -> int:
    """Rows in a table."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def observation_keys(engine: Engine) -> list[tuple[str, int]]:
    """(device_id, seq) of every stored observation, sorted."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ObservationRow.device_id, ObservationRow.seq).order_by(
                ObservationRow.device_id, ObservationRow.seq
            )
        )
        return [(d, s) for d, s in rows]


def dead_letter_count(engine: Engine) -> int:
    """Rows in dead_letters."""
    return count(engine, DeadLetter)


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Write config data as YAML and return the path."""
    import yaml

    def write(data: dict[str, Any]) -> Path:
        path = tmp_path / f"bridge-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write


@pytest.fixture
def live_bridge(start_bridge: Callable[..., Bridge]) -> Bridge:
    """One running in-process bridge (for tests that feed it many examples)."""
    return start_bridge()
