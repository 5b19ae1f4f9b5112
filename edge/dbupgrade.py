"""Bring an existing device database's tables in line with edge/tables.py.

SQLite cannot drop a NOT NULL constraint in place. A table whose stored schema
still forbids nulls in a column the code now allows (colour metrics, which the
analysis leaves null when the light makes colour unmeasurable) is rebuilt in one
transaction: old table renamed, new table and its indexes created, every row
copied, old table dropped. A failure rolls everything back, so no row is lost.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex, CreateTable

from edge.errors import StorageError
from edge.tables import Base

log = logging.getLogger(__name__)


def _columns(cur: Any, table: str) -> dict[str, bool]:
    """Stored column name -> NOT NULL flag, empty when the table does not exist."""
    rows = cur.execute(f'PRAGMA table_info("{table}")').fetchall()
    return {str(r[1]): bool(r[3]) for r in rows}


def _needs_rebuild(table: Table, stored: dict[str, bool]) -> bool:
    """True when the stored table forbids nulls in a column the model allows."""
    return any(
        col.nullable and not col.primary_key and stored.get(col.name, False)
        for col in table.columns
    )


def _rebuild(cur: Any, engine: Engine, table: Table, stored: dict[str, bool]) -> int:
    """Recreate `table` from the model and copy its rows; returns the row count."""
    old = f"_old_{table.name}"
    for index in table.indexes:  # names must be free for the new table's indexes
        cur.execute(f'DROP INDEX IF EXISTS "{index.name}"')
    cur.execute(f'ALTER TABLE "{table.name}" RENAME TO "{old}"')
    cur.execute(str(CreateTable(table).compile(engine)))
    for index in table.indexes:
        cur.execute(str(CreateIndex(index).compile(engine)))
    shared = ", ".join(f'"{c.name}"' for c in table.columns if c.name in stored)
    cur.execute(f'INSERT INTO "{table.name}" ({shared}) SELECT {shared} FROM "{old}"')
    copied = int(cur.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0])
    before = int(cur.execute(f'SELECT count(*) FROM "{old}"').fetchone()[0])
    if copied != before:  # never drop the old rows unless all of them arrived
        raise StorageError(f"upgrading {table.name}: copied {copied} of {before} rows")
    cur.execute(f'DROP TABLE "{old}"')
    return copied


def relax_not_null(engine: Engine) -> list[str]:
    """Rebuild every table whose stored NOT NULLs the model dropped; returns their names."""
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        saved = dbapi.isolation_level
        dbapi.isolation_level = None  # we issue BEGIN/COMMIT so DDL is inside the transaction
        cur = dbapi.cursor()
        rebuilt: list[str] = []
        name = ""
        try:
            cur.execute("BEGIN IMMEDIATE")
            for table in Base.metadata.sorted_tables:
                name = table.name
                stored = _columns(cur, table.name)
                if stored and _needs_rebuild(table, stored):
                    rows = _rebuild(cur, engine, table, stored)
                    log.info(
                        "upgraded table %s to allow null columns (%d rows kept)", table.name, rows
                    )
                    rebuilt.append(table.name)
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            cur.execute("ROLLBACK")
            raise StorageError(
                f"cannot upgrade table {name} of the device database (left unchanged): {exc}"
            ) from exc
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()
            dbapi.isolation_level = saved
        return rebuilt
    finally:
        raw.close()
