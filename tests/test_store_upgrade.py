"""A device database created before colour metrics could be null is upgraded at start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.errors import StorageError
from edge.store import DB_NAME, Store, observation_json
from tests.test_store import builder

# The tables as earlier releases created them: colour columns NOT NULL.
OLD_SCHEMA = """
CREATE TABLE counters (name VARCHAR(32) NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (name));
CREATE TABLE observations (
    seq INTEGER NOT NULL, device_id VARCHAR(64) NOT NULL, captured_at DATETIME NOT NULL,
    cover_pct FLOAT NOT NULL, yellow_pct FLOAT NOT NULL, brown_pct FLOAT NOT NULL,
    health_label VARCHAR(64), health_confidence FLOAT, payload TEXT NOT NULL,
    image_path VARCHAR(255), overlay_path VARCHAR(255), image_bytes INTEGER NOT NULL,
    PRIMARY KEY (seq)
);
CREATE INDEX ix_observations_captured_at ON observations (captured_at);
CREATE INDEX ix_observations_kept_photos ON observations (seq, image_bytes)
    WHERE image_path IS NOT NULL;
CREATE TABLE grow_baseline (
    seq INTEGER NOT NULL, captured_at DATETIME NOT NULL, kind VARCHAR(16) NOT NULL,
    embedding BLOB NOT NULL, hue_mean_deg FLOAT, greenness_index FLOAT,
    yellow_pct FLOAT NOT NULL, brown_pct FLOAT NOT NULL, PRIMARY KEY (seq)
);
"""


def old_database(root: Path, rows: int) -> None:
    """Write an old-schema database holding `rows` observations and baseline samples."""
    conn = sqlite3.connect(root / DB_NAME)
    conn.executescript(OLD_SCHEMA)
    build = builder()
    for seq in range(1, rows + 1):
        obs = build(seq, False)
        conn.execute(
            "INSERT INTO observations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                "cam-1",
                "2026-03-02 08:00:00.000000",
                12.5,
                seq * 1.0,
                seq * 0.5,
                "healthy",
                0.9,
                observation_json(obs),
                None,
                None,
                0,
            ),
        )
        conn.execute(
            "INSERT INTO grow_baseline VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, "2026-03-02 08:00:00.000000", "capture", b"\x01\x02", 80.0, 0.2, 1.0, 0.5),
        )
    conn.execute("INSERT INTO counters VALUES ('seq', ?)", (rows,))
    conn.commit()
    conn.close()


def dump(root: Path) -> dict[str, object]:
    """Every stored row, the colour columns' NOT NULL flags and the index names."""
    conn = sqlite3.connect(root / DB_NAME)
    try:
        out: dict[str, object] = {}
        for table in ("observations", "grow_baseline"):
            out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY seq").fetchall()
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            out[f"{table}.notnull"] = {
                r[1]: r[3] for r in info if r[1] in ("yellow_pct", "brown_pct")
            }
        out["indexes"] = sorted(
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
            if not r[0].startswith("sqlite_")
        )
        return out
    finally:
        conn.close()


def test_old_not_null_schema_is_rebuilt_at_start_keeping_every_row(tmp_path: Path) -> None:
    old_database(tmp_path, rows=5)
    before = dump(tmp_path)
    assert before["observations.notnull"] == {"yellow_pct": 1, "brown_pct": 1}

    store = Store(tmp_path)
    after = dump(tmp_path)
    assert after["observations"] == before["observations"]
    assert after["grow_baseline"] == before["grow_baseline"]
    assert after["observations.notnull"] == {"yellow_pct": 0, "brown_pct": 0}
    assert after["grow_baseline.notnull"] == {"yellow_pct": 0, "brown_pct": 0}
    assert set(before["indexes"]) <= set(after["indexes"])  # type: ignore[arg-type]
    assert "_old_observations" not in str(after["indexes"])

    build = builder()
    no_colour = store.add_observation(
        lambda seq, stored: build(seq, stored).model_copy(
            update={
                "canopy": build(seq, stored).canopy.model_copy(
                    update={
                        "yellow_pct": None,
                        "brown_pct": None,
                        "colour_reason": "narrow-band light",
                    }
                )
            }
        ),
        None,
    )
    assert no_colour.seq == 6
    got = store.get(6)
    assert got is not None and got.canopy.yellow_pct is None
    assert [o.seq for o in store.recent()] == [6, 5, 4, 3, 2, 1]
    store.close()


def test_an_upgraded_database_is_left_alone_at_the_next_start(tmp_path: Path) -> None:
    old_database(tmp_path, rows=2)
    Store(tmp_path).close()
    first = dump(tmp_path)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    sql_before = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == sql_before
    conn.close()
    assert dump(tmp_path) == first


def test_an_upgrade_that_cannot_copy_a_row_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    # A row the new table refuses (device_id null, once allowed here) stops the rebuild.
    old_database(tmp_path, rows=3)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript(
        """
        CREATE TABLE loose AS SELECT * FROM observations;
        DROP TABLE observations;
        CREATE TABLE observations (
            seq INTEGER NOT NULL, device_id VARCHAR(64), captured_at DATETIME NOT NULL,
            cover_pct FLOAT NOT NULL, yellow_pct FLOAT NOT NULL, brown_pct FLOAT NOT NULL,
            health_label VARCHAR(64), health_confidence FLOAT, payload TEXT NOT NULL,
            image_path VARCHAR(255), overlay_path VARCHAR(255), image_bytes INTEGER NOT NULL,
            PRIMARY KEY (seq)
        );
        CREATE INDEX ix_observations_captured_at ON observations (captured_at);
        INSERT INTO observations SELECT * FROM loose;
        DROP TABLE loose;
        UPDATE observations SET device_id = NULL WHERE seq = 2;
        """
    )
    conn.commit()
    conn.close()
    before = dump(tmp_path)
    with pytest.raises(StorageError, match="cannot upgrade table observations"):
        Store(tmp_path)
    assert dump(tmp_path) == before
