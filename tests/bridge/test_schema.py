"""Migrations build the schema the code expects, on PostgreSQL and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from cloud_bridge.errors import SchemaNotReadyError
from cloud_bridge.partitions import include_name
from cloud_bridge.schema import current_revision, head_revision, migrate, require_current
from cloud_bridge.tables import Base

TABLES = {"devices", "observations", "alerts", "thumbnails", "dead_letters", "resend_claims"}


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        return list(compare_metadata(context, Base.metadata))


def test_migrate_creates_every_table_on_postgresql(empty_pg_url: str) -> None:
    engine = create_engine(empty_pg_url)
    before, after = migrate(engine)
    assert (before, after) == (None, head_revision())
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_migrate_twice_changes_nothing(empty_pg_url: str) -> None:
    engine = create_engine(empty_pg_url)
    migrate(engine)
    assert migrate(engine) == (head_revision(), head_revision())
    engine.dispose()


def test_migrations_match_the_models_on_postgresql(engine: Engine) -> None:
    assert _differences(engine) == []


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    migrate(engine)
    assert _differences(engine) == []
    assert current_revision(engine) == head_revision()


def test_observations_payload_is_jsonb_on_postgresql(engine: Engine) -> None:
    columns = {c["name"]: c for c in inspect(engine).get_columns("observations")}
    assert type(columns["payload"]["type"]).__name__ == "JSONB"


def test_bridge_refuses_an_unmigrated_database(empty_pg_url: str) -> None:
    engine = create_engine(empty_pg_url)
    with pytest.raises(SchemaNotReadyError, match="cultivai-bridge migrate"):
        require_current(engine)
    engine.dispose()
