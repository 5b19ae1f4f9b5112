"""Versioned migrations of the device database, applied at start.

The schema version is SQLite's `PRAGMA user_version`. At start the store applies the
migrations it is missing, all in one transaction, after taking a snapshot with
SQLite's backup API: a failure rolls everything back (the database is left as it
was), and the snapshot is what a firmware rollback restores when the older firmware
cannot read the migrated database.

A database written by newer firmware is opened as long as no migration it carries
beyond ours `breaks_older`; otherwise it is refused with a message naming the
snapshot to restore. `schema_meta` records the oldest schema version that can still
read the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.errors import StorageError
from edge.migrations import MIGRATIONS, Migration

log = logging.getLogger(__name__)
SNAPSHOT_DIR = "db-snapshots"
SNAPSHOTS_KEPT = 3
META_TABLE = "schema_meta"


class SchemaTooNewError(StorageError):
    """The database was migrated by newer firmware in a way this firmware cannot read."""


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What happened to the database at start."""

    from_version: int
    to_version: int
    snapshot: Path | None


def latest(migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """The schema version this firmware writes."""
    return migrations[-1].version if migrations else 0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's `user_version` (0: never migrated, or empty)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def oldest_reader(conn: sqlite3.Connection) -> int:
    """The oldest schema version that can read this database (0: any)."""
    found = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name=?", (META_TABLE,)
    ).fetchone()
    if found is None:
        return 0
    row = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key='oldest_reader'").fetchone()
    return int(row[0]) if row else 0


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] > 0


def migrate(
    path: Path,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    snapshot_dir: Path | None = None,
) -> Upgrade:
    """Bring the database at `path` to the newest schema; raises StorageError saying why not."""
    _check_numbering(migrations)
    target = latest(migrations)
    snapshots = snapshot_dir or path.parent / SNAPSHOT_DIR
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the device database {path}: {exc}") from exc
    try:
        current = schema_version(conn)
        if current > target:
            return _newer(conn, path, current, target, snapshots)
        if current == target:
            return Upgrade(current, current, None)
        snapshot = _snapshot(conn, path, snapshots, current, target) if _has_tables(conn) else None
        _apply(conn, [m for m in migrations if m.version > current], target)
        log.info(
            "device database migrated",
            extra={"from": current, "to": target, "snapshot": str(snapshot or "")},
        )
        return Upgrade(current, target, snapshot)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the device database {path}: {exc}") from exc
    finally:
        conn.close()


def _check_numbering(migrations: tuple[Migration, ...]) -> None:
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise StorageError(f"migrations must be numbered 1, 2, 3, ... without gaps: {numbers}")


def _newer(
    conn: sqlite3.Connection, path: Path, current: int, target: int, snapshots: Path
) -> Upgrade:
    oldest = oldest_reader(conn)
    if oldest <= target:
        log.warning(
            "device database is from newer firmware; its changes are compatible, opening it",
            extra={"schema": current, "known": target},
        )
        return Upgrade(current, current, None)
    candidates = sorted(snapshots.glob(f"*-v{target}-to-v*.sqlite3")) if snapshots.is_dir() else []
    hint = (
        f"restore the snapshot taken before the upgrade ({candidates[-1]}), which "
        "`cultivai-edge firmware rollback` does, or install the newer firmware again"
        if candidates
        else "install the newer firmware again (no snapshot from before the upgrade is left)"
    )
    raise SchemaTooNewError(
        f"the device database {path} has schema {current}, written by newer firmware; "
        f"this firmware reads schema {target} and the newer one changed it in a way "
        f"firmware before schema {oldest} cannot read: {hint}"
    )


def _snapshot(
    conn: sqlite3.Connection, path: Path, folder: Path, current: int, target: int
) -> Path:
    """A consistent copy of the database (backup API), fsynced and renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size + _wal_size(path)
    free = shutil.disk_usage(folder).free
    if free < 2 * size:
        raise StorageError(
            f"not migrating the device database: a snapshot needs {size // 2**20 + 1} MB "
            f"and {free // 2**20} MB are free in {folder}"
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    final = folder / f"{path.stem}-{stamp}-v{current}-to-v{target}.sqlite3"
    tmp = folder / f".tmp-{final.name}"
    tmp.unlink(missing_ok=True)
    dest = sqlite3.connect(tmp)
    try:
        conn.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dest.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(folder)
    _prune_snapshots(folder, keep=final)
    return final


def _apply(conn: sqlite3.Connection, pending: list[Migration], target: int) -> None:
    cur = conn.cursor()
    step = pending[0]
    try:
        cur.execute("BEGIN IMMEDIATE")
        oldest = oldest_reader(conn)
        for step in pending:
            step.apply(cur)
            if step.breaks_older:
                oldest = step.version
        cur.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT)")
        cur.execute(
            f"INSERT OR REPLACE INTO {META_TABLE} (key, value) VALUES ('oldest_reader', ?)",
            (str(oldest),),
        )
        cur.execute(f"PRAGMA user_version = {int(target)}")
        cur.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            cur.execute("ROLLBACK")
        if isinstance(exc, StorageError):
            raise StorageError(
                f"migration {step.version} ({step.name}): {exc} (left unchanged)"
            ) from exc
        if isinstance(exc, Exception):
            raise StorageError(
                f"migration {step.version} ({step.name}) of the device database failed, "
                f"database left unchanged: {exc}"
            ) from exc
        raise
    finally:
        cur.close()


def restore_snapshot(path: Path, snapshot: Path) -> None:
    """Put a snapshot back as the database, keeping the seq counter ahead of the newer one.

    Observations written after the snapshot are lost from the device, but their seq
    numbers are never handed out again: the bridge keys rows by (device, seq), and a
    reused seq would make it drop a different photo's measurements as a duplicate.
    """
    if not snapshot.is_file():
        raise StorageError(f"snapshot {snapshot} does not exist")
    live = _connect(path)
    src = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        seq = _seq(live)
        src.backup(live)  # one write transaction on the live database
        live.execute("PRAGMA journal_mode=WAL")
        if seq is not None:
            live.execute("UPDATE counters SET value = max(value, ?) WHERE name = 'seq'", (seq,))
        live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot restore {snapshot} over {path}: {exc}") from exc
    finally:
        src.close()
        live.close()
    log.warning("device database restored from snapshot", extra={"snapshot": str(snapshot)})


def latest_snapshot(path: Path, to_version: int | None = None) -> Path | None:
    """The newest snapshot of the database at `path` (taken before migrating to a version)."""
    folder = path.parent / SNAPSHOT_DIR
    if not folder.is_dir():
        return None
    pattern = f"{path.stem}-*-to-v{to_version}.sqlite3" if to_version else f"{path.stem}-*.sqlite3"
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def snapshot_from(path: Path, from_version: int) -> Path | None:
    """The newest snapshot taken when the database left schema `from_version`."""
    folder = path.parent / SNAPSHOT_DIR
    if not folder.is_dir():
        return None
    found = sorted(folder.glob(f"{path.stem}-*-v{from_version}-to-v*.sqlite3"))
    return found[-1] if found else None


def _seq(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def _wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _prune_snapshots(folder: Path, keep: Path) -> None:
    found = sorted(folder.glob("*.sqlite3"))
    for old in found[:-SNAPSHOTS_KEPT]:
        if old != keep:
            old.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
