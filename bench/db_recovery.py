"""Recovery time of the fleet database: pgBackRest restore + WAL replay vs pg_restore.

One durable PostgreSQL cluster archiving to pgBackRest (the Ansible role's settings)
is filled with generated observations (`generate_series`, copies of one real row);
a full base backup is taken, more rows are written after it (WAL to replay), and then:

- pgBackRest: stop the server, `restore` (to the end of the archive) into an empty
  data folder, start, replay, promote: seconds until it takes writes again
- baseline:   a logical dump of the same database (`pg_dump -Fc`, taken at the same
  moment) restored with `pg_restore` into an empty database (rows, then indexes)

Printed: rows, database size, each step's seconds, and pg_restore / pgBackRest (the
higher, the more the physical restore saves). Run from the repository root:
`python bench/db_recovery.py` (`--rows 200000` for a short run).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_bridge.decode import Limits, decode
from cloud_bridge.ops.backup import backup, restore
from cloud_bridge.schema import migrate
from cloud_bridge.store import Envelope, FleetStore
from tests.bridge.factory import observation_message
from tests.bridge.pg import PgBackRest, PgCluster, find_pg_bin

DATABASE = "cultivai"
DEVICES = 10_000


def _generate(dsn: str, first: int, last: int) -> None:
    """Observations first..last: copies of seq 1 of device 'seed', spread over DEVICES."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'observations' AND column_default IS NULL "
                "ORDER BY ordinal_position"
            )
        ]
        made = {
            "device_id": f"'cam-' || lpad((g % {DEVICES})::text, 5, '0')",
            "seq": f"g / {DEVICES} + 1",
            "captured_at": "captured_at + g * interval '1 minute'",
            "stored_at": "stored_at + g * interval '1 minute'",
        }
        select = ", ".join(made.get(c, c) for c in columns)
        conn.execute(
            # Column names come from the catalog, the numbers are ints: nothing to quote.
            f"INSERT INTO observations ({', '.join(columns)}) "
            f"SELECT {select} FROM observations o, generate_series({first}, {last}) g "
            "WHERE o.device_id = 'seed'".encode()
        )


def _seconds(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _value(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return row[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows before the backup")
    parser.add_argument("--after", type=float, default=0.1, help="rows after it, as a share")
    args = parser.parse_args()
    bin_dir = find_pg_bin()
    if bin_dir is None or shutil.which("pgbackrest") is None:
        print("needs PostgreSQL and pgbackrest (make system-deps)")
        return 2
    cluster = PgCluster(bin_dir, durable=True).init()
    work = Path(tempfile.mkdtemp(prefix="cultivai-bench-"))
    try:
        archive = PgBackRest(cluster, archive_timeout_s=60)
        cluster.start()
        cluster.create_database(DATABASE)
        engine = create_engine(cluster.url(DATABASE))
        migrate(engine)
        topic, payload = observation_message("seed", 1)
        now = datetime.now(timezone.utc)
        envelope = Envelope(topic, payload, now, decode(topic, payload, Limits(262_144, 65_536)))
        FleetStore(engine, 1024).write([envelope])
        engine.dispose()
        dsn = cluster.dsn(DATABASE)

        fill_s = _seconds(lambda: _generate(dsn, 0, args.rows - 1))
        backup_s = _seconds(lambda: backup(archive.repository, "full"))
        after = int(args.rows * args.after)
        _generate(dsn, args.rows, args.rows + after - 1)
        size_text = _value(dsn, "SELECT pg_size_pretty(pg_database_size(current_database()))")
        rows = _value(dsn, "SELECT count(*) FROM observations")

        dump = work / "cultivai.dump"
        dump_s = _seconds(
            lambda: subprocess.run(
                [cluster.tool("pg_dump"), "-Fc", "--no-owner", f"--file={dump}", dsn], check=True
            )
        )
        cluster.create_database("logical")
        pg_restore_s = _seconds(
            lambda: subprocess.run(
                [
                    cluster.tool("pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    f"--dbname={cluster.dsn('logical')}",
                    str(dump),
                ],
                check=True,
            )
        )

        cluster.stop()
        cluster.wipe()
        started = time.monotonic()
        restore(archive.repository)
        restore_s = time.monotonic() - started
        cluster.start(timeout=600)
        cluster.wait_writable(timeout=1800)
        pitr_s = time.monotonic() - started
        restored = _value(dsn, "SELECT count(*) FROM observations")
        assert restored == rows, f"restored {restored} of {rows} rows"

        print(f"observations: {rows} ({args.rows} in the backup, {after} replayed from WAL)")
        print(f"database size: {size_text}; generated in {fill_s:.1f} s")
        print(f"pgBackRest full backup: {backup_s:.1f} s")
        print(f"pgBackRest restore {restore_s:.1f} s, to writable {pitr_s:.1f} s (RTO)")
        print(f"baseline: pg_dump {dump_s:.1f} s, pg_restore {pg_restore_s:.1f} s")
        print(f"pg_restore / pgBackRest recovery: {pg_restore_s / pitr_s:.2f}x")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
