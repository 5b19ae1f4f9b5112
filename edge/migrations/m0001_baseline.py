"""Migration 1: the schema every database had before migrations were numbered.

Databases from before this migration carry `PRAGMA user_version = 0` and one of
several shapes, all made by `create_all` of their firmware: tables may be missing
(they were added over time) and the colour columns may still be NOT NULL. This step
creates what is missing, adds missing nullable columns, and rebuilds a table whose
stored NOT NULLs the schema below has dropped, copying every row.
"""

from __future__ import annotations

import re
from sqlite3 import Cursor

from edge.errors import StorageError

TABLES: dict[str, str] = {
    "alerts": """CREATE TABLE alerts (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        kind VARCHAR(32) NOT NULL,
        label VARCHAR(64),
        message TEXT NOT NULL,
        value FLOAT,
        baseline FLOAT,
        raised_at DATETIME NOT NULL,
        raised_seq INTEGER NOT NULL,
        cleared_at DATETIME,
        cleared_seq INTEGER
    )""",
    "counters": """CREATE TABLE counters (
        name VARCHAR(32) NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (name)
    )""",
    "grow_baseline": """CREATE TABLE grow_baseline (
        seq INTEGER NOT NULL,
        captured_at DATETIME NOT NULL,
        kind VARCHAR(16) NOT NULL,
        embedding BLOB NOT NULL,
        hue_mean_deg FLOAT,
        greenness_index FLOAT,
        yellow_pct FLOAT,
        brown_pct FLOAT,
        PRIMARY KEY (seq)
    )""",
    "observations": """CREATE TABLE observations (
        seq INTEGER NOT NULL,
        device_id VARCHAR(64) NOT NULL,
        captured_at DATETIME NOT NULL,
        cover_pct FLOAT NOT NULL,
        yellow_pct FLOAT,
        brown_pct FLOAT,
        health_label VARCHAR(64),
        health_confidence FLOAT,
        payload TEXT NOT NULL,
        image_path VARCHAR(255),
        overlay_path VARCHAR(255),
        image_bytes INTEGER NOT NULL,
        PRIMARY KEY (seq)
    )""",
    "outbox": """CREATE TABLE outbox (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        topic VARCHAR(255) NOT NULL,
        payload BLOB NOT NULL,
        qos INTEGER NOT NULL,
        retain BOOLEAN NOT NULL,
        seq INTEGER,
        content_type VARCHAR(64),
        created_at DATETIME NOT NULL
    )""",
    "web_sessions": """CREATE TABLE web_sessions (
        token_hash VARCHAR(64) NOT NULL,
        "grant" VARCHAR(32) NOT NULL,
        created_at DATETIME NOT NULL,
        last_seen_at DATETIME NOT NULL,
        expires_at DATETIME NOT NULL,
        client VARCHAR(64) NOT NULL,
        user_agent VARCHAR(200) NOT NULL,
        PRIMARY KEY (token_hash)
    )""",
}

INDEXES: dict[str, tuple[str, str]] = {
    "ix_observations_captured_at": (
        "observations",
        "CREATE INDEX ix_observations_captured_at ON observations (captured_at)",
    ),
    "ix_observations_kept_photos": (
        "observations",
        "CREATE INDEX ix_observations_kept_photos ON observations (seq, image_bytes) "
        "WHERE image_path IS NOT NULL",
    ),
}

_COLUMN = re.compile(r'^\s*"?(\w+)"?\s+(\w+(?:\(\d+\))?)(.*?),?\s*$')


def _wanted_columns(table: str) -> dict[str, tuple[str, bool]]:
    """Column name -> (declaration, NOT NULL) from the CREATE TABLE above."""
    out: dict[str, tuple[str, bool]] = {}
    for line in TABLES[table].splitlines()[1:]:
        m = _COLUMN.match(line)
        if m and m.group(1).upper() not in ("PRIMARY", "CREATE"):
            decl = f'"{m.group(1)}" {m.group(2)}{m.group(3).rstrip(",")}'
            out[m.group(1)] = (decl, "NOT NULL" in m.group(3).upper())
    return out


def _stored_columns(cur: Cursor, table: str) -> dict[str, bool]:
    """Stored column name -> NOT NULL flag, empty when the table does not exist."""
    return {str(r[1]): bool(r[3]) for r in cur.execute(f'PRAGMA table_info("{table}")')}


def _rebuild(cur: Cursor, table: str, stored: dict[str, bool]) -> None:
    """Recreate `table` as above and copy every row; raises unless all rows arrive."""
    old = f"_old_{table}"
    for name, (owner, _sql) in INDEXES.items():
        if owner == table:
            cur.execute(f'DROP INDEX IF EXISTS "{name}"')
    cur.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    cur.execute(TABLES[table])
    shared = ", ".join(f'"{c}"' for c in _wanted_columns(table) if c in stored)
    try:
        cur.execute(f'INSERT INTO "{table}" ({shared}) SELECT {shared} FROM "{old}"')
    except Exception as exc:
        raise StorageError(f"cannot upgrade table {table} of the device database: {exc}") from exc
    copied = int(cur.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    before = int(cur.execute(f'SELECT count(*) FROM "{old}"').fetchone()[0])
    if copied != before:  # never drop the old rows unless all of them arrived
        raise StorageError(f"cannot upgrade table {table}: copied {copied} of {before} rows")
    cur.execute(f'DROP TABLE "{old}"')


def apply(cur: Cursor) -> None:
    """Bring any unnumbered database to the baseline schema, keeping every row."""
    for table, create in TABLES.items():
        stored = _stored_columns(cur, table)
        if not stored:
            cur.execute(create)
            continue
        wanted = _wanted_columns(table)
        if any(stored.get(c, False) and not notnull for c, (_d, notnull) in wanted.items()):
            _rebuild(cur, table, stored)
            continue
        for column, (decl, notnull) in wanted.items():
            if column not in stored:
                if notnull:
                    raise StorageError(
                        f"cannot upgrade table {table}: required column {column} is missing"
                    )
                cur.execute(f'ALTER TABLE "{table}" ADD COLUMN {decl}')
    for _table, sql in INDEXES.values():
        cur.execute(sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
    if cur.execute("SELECT 1 FROM counters WHERE name = 'seq'").fetchone() is None:
        cur.execute("INSERT INTO counters (name, value) VALUES ('seq', 0)")
