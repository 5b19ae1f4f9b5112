"""Numbered migrations of the device database: upgrade, refuse, restore, fail safely."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from sqlite3 import Cursor

import pytest
from sqlalchemy import create_engine

from edge import dbupgrade
from edge.dbupgrade import SchemaTooNewError, migrate, restore_snapshot
from edge.errors import StorageError
from edge.migrations import MIGRATIONS, Migration
from edge.store import DB_NAME, Store, observation_json
from edge.tables import Base
from tests.test_store import builder


def schema(path: Path) -> dict[str, object]:
    """Tables (columns: name, type, not null, pk) and indexes (columns, partial) of a file."""
    conn = sqlite3.connect(path)
    try:
        out: dict[str, object] = {}
        tables = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'schema_meta' ORDER BY name"
        ).fetchall()
        for (table,) in tables:
            cols = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            out[table] = [(c[1], c[2].upper(), c[3], c[5]) for c in cols]
            for ix in conn.execute(f'PRAGMA index_list("{table}")').fetchall():
                if ix[1].startswith("sqlite_"):
                    continue
                cols_ix = [r[2] for r in conn.execute(f'PRAGMA index_info("{ix[1]}")')]
                out[f"index {ix[1]}"] = (table, cols_ix, ix[2], ix[4])
        return out
    finally:
        conn.close()


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall() for n in names}
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def fill(root: Path, n: int) -> None:
    """Store `n` observations (with outbox rows) through the real store."""
    store = Store(root)
    build = builder()
    for _ in range(n):
        store.add_observation(
            build, None, lambda tx, o: tx.enqueue("cultivai/v1/c/observation", "{}", seq=o.seq)
        )
    store.close()


def add_column(cur: Cursor) -> None:
    cur.execute("ALTER TABLE observations ADD COLUMN leaf_temp_c FLOAT")
    cur.execute("CREATE TABLE climate (seq INTEGER PRIMARY KEY, rh_pct FLOAT)")


def rename_column(cur: Cursor) -> None:
    cur.execute("ALTER TABLE observations RENAME COLUMN cover_pct TO canopy_cover_pct")


ADDITIVE = (*MIGRATIONS, Migration(2, "leaf temperature", add_column))
BREAKING = (*MIGRATIONS, Migration(2, "rename cover", rename_column, breaks_older=True))


def test_migrations_build_exactly_the_schema_the_models_describe(tmp_path: Path) -> None:
    migrate(tmp_path / "migrated.sqlite3")
    engine = create_engine(f"sqlite:///{tmp_path / 'models.sqlite3'}")
    Base.metadata.create_all(engine)
    engine.dispose()
    assert schema(tmp_path / "migrated.sqlite3") == schema(tmp_path / "models.sqlite3")
    assert user_version(tmp_path / "migrated.sqlite3") == dbupgrade.latest()


def test_todays_unnumbered_database_is_upgraded_with_every_row_and_a_snapshot(
    tmp_path: Path,
) -> None:
    # The shape firmware before numbered migrations left: create_all, user_version 0.
    engine = create_engine(f"sqlite:///{tmp_path / DB_NAME}")
    Base.metadata.create_all(engine)
    engine.dispose()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    build = builder()
    for seq in (1, 2, 3):
        conn.execute(
            "INSERT INTO observations VALUES (?, 'cam-1', '2026-03-02 08:00:00.000000', "
            "12.5, 1.0, 0.5, 'healthy', 0.9, ?, NULL, NULL, 0)",
            (seq, observation_json(build(seq, False))),
        )
        conn.execute(
            "INSERT INTO outbox (topic, payload, qos, retain, seq, created_at) "
            "VALUES ('t', x'7b7d', 1, 0, ?, '2026-03-02 08:00:00.000000')",
            (seq,),
        )
    conn.execute("INSERT INTO counters VALUES ('seq', 3)")
    conn.commit()
    conn.close()
    before = rows(tmp_path / DB_NAME)
    assert user_version(tmp_path / DB_NAME) == 0

    store = Store(tmp_path)
    assert (store.upgrade.from_version, store.upgrade.to_version) == (0, 1)
    assert store.add_observation(build, None).seq == 4
    store.close()
    after = rows(tmp_path / DB_NAME)
    assert after["observations"][:3] == before["observations"]
    assert after["outbox"] == before["outbox"]
    assert store.upgrade.snapshot is not None
    assert rows(store.upgrade.snapshot) == before
    assert user_version(store.upgrade.snapshot) == 0


def test_upgrade_keeps_rows_and_the_snapshot_holds_the_old_version(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    before = rows(tmp_path / DB_NAME)
    result = migrate(tmp_path / DB_NAME, ADDITIVE)
    assert (result.from_version, result.to_version) == (1, 2)
    assert result.snapshot is not None and result.snapshot.is_file()
    assert user_version(result.snapshot) == 1
    assert rows(result.snapshot)["observations"] == before["observations"]
    after = rows(tmp_path / DB_NAME)
    assert [r[:4] for r in after["observations"]] == [r[:4] for r in before["observations"]]
    assert after["outbox"] == before["outbox"]
    assert user_version(tmp_path / DB_NAME) == 2
    assert migrate(tmp_path / DB_NAME, ADDITIVE).snapshot is None  # nothing to do twice


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    before_rows, before_schema = rows(tmp_path / DB_NAME), schema(tmp_path / DB_NAME)

    def half_done(cur: Cursor) -> None:
        add_column(cur)
        cur.execute("UPDATE observations SET leaf_temp_c = 21.5")
        cur.execute("DELETE FROM outbox")
        cur.execute("INSERT INTO climate VALUES (1, NULL), (1, NULL)")  # duplicate key

    broken = (*MIGRATIONS, Migration(2, "half done", half_done))
    with pytest.raises(StorageError, match=r"migration 2 \(half done\).*left unchanged"):
        migrate(tmp_path / DB_NAME, broken)
    assert rows(tmp_path / DB_NAME) == before_rows
    assert schema(tmp_path / DB_NAME) == before_schema
    assert user_version(tmp_path / DB_NAME) == 1
    store = Store(tmp_path)  # this firmware still opens it
    assert store.stats().last_seq == 3
    store.close()


def test_older_firmware_opens_a_database_newer_firmware_changed_compatibly(
    tmp_path: Path,
) -> None:
    fill(tmp_path, 2)
    migrate(tmp_path / DB_NAME, ADDITIVE)
    store = Store(tmp_path)  # this firmware knows schema 1 only
    obs = store.add_observation(builder(), None)
    assert obs.seq == 3
    store.close()
    assert user_version(tmp_path / DB_NAME) == 2  # never lowered


def test_older_firmware_refuses_a_breaking_change_and_names_the_snapshot(
    tmp_path: Path,
) -> None:
    fill(tmp_path, 2)
    snapshot = migrate(tmp_path / DB_NAME, BREAKING).snapshot
    assert snapshot is not None
    with pytest.raises(SchemaTooNewError, match="schema 2, written by newer firmware") as err:
        Store(tmp_path)
    assert str(snapshot) in str(err.value)


def test_restoring_the_snapshot_lets_older_firmware_in_without_reusing_a_seq(
    tmp_path: Path,
) -> None:
    fill(tmp_path, 2)
    snapshot = migrate(tmp_path / DB_NAME, BREAKING).snapshot
    assert snapshot is not None
    conn = sqlite3.connect(tmp_path / DB_NAME)  # newer firmware captured seq 3..5
    conn.execute("UPDATE counters SET value = 5 WHERE name = 'seq'")
    conn.commit()
    conn.close()
    restore_snapshot(tmp_path / DB_NAME, snapshot)
    assert dbupgrade.latest_snapshot(tmp_path / DB_NAME) == snapshot
    store = Store(tmp_path)
    assert store.upgrade.to_version == 1
    assert [o.seq for o in store.recent()] == [2, 1]
    assert store.add_observation(builder(), None).seq == 6
    assert store.integrity_check() == "ok"
    store.close()


def test_migrations_with_a_gap_in_their_numbers_are_refused(tmp_path: Path) -> None:
    gap = (*MIGRATIONS, Migration(3, "skips two", add_column))
    with pytest.raises(StorageError, match="without gaps"):
        migrate(tmp_path / DB_NAME, gap)


SLOW_MIGRATION = """
import sys, time
from pathlib import Path
from edge.dbupgrade import migrate
from edge.migrations import MIGRATIONS, Migration
from tests.test_migrations import add_column

def slow(cur):
    add_column(cur)
    cur.execute("UPDATE observations SET leaf_temp_c = 20")
    cur.execute("DELETE FROM outbox")
    print("migrating", flush=True)
    time.sleep(120)

migrate(Path(sys.argv[1]), (*MIGRATIONS, Migration(2, "slow", slow)))
"""


def test_a_power_cut_in_the_middle_of_a_migration_leaves_the_old_database(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import sys

    fill(tmp_path, 3)
    before_rows, before_schema = rows(tmp_path / DB_NAME), schema(tmp_path / DB_NAME)
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_MIGRATION, str(tmp_path / DB_NAME)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "migrating"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = Store(tmp_path)  # the next start: this firmware, schema 1
    assert store.integrity_check() == "ok"
    store.close()
    assert user_version(tmp_path / DB_NAME) == 1
    assert rows(tmp_path / DB_NAME) == before_rows
    assert schema(tmp_path / DB_NAME) == before_schema
