"""`make db-backup DB_BACKUP=dump` / `db-restore`: a database survives pg_dump and pg_restore.

The default, pgBackRest with point-in-time recovery, is tested in test_pitr.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from cloud_bridge.decode import Limits, decode
from cloud_bridge.schema import require_current
from cloud_bridge.store import Envelope, FleetStore
from tests.bridge.factory import alert_message, observation_message, status_message
from tests.bridge.pg import PgCluster

pytestmark = pytest.mark.slow

# The same flags the Makefile's DB_BACKUP=dump targets use (docs/bridge.md).
BACKUP = ["pg_dump", "--format=custom", "--no-owner"]
RESTORE = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--file=-"]
RESTORE_FIRST = "DROP TABLE IF EXISTS observations CASCADE;\n"
PSQL = ["psql", "--no-psqlrc", "--quiet", "--single-transaction", "-v", "ON_ERROR_STOP=1"]
FINGERPRINT = {
    "observations": "SELECT md5(string_agg(device_id || seq || payload::text || stored_at, ',' "
    "ORDER BY device_id, seq)) FROM observations",
    "devices": "SELECT md5(string_agg(devices::text, ',' ORDER BY id)) FROM devices",
    "alerts": "SELECT md5(string_agg(alerts::text, ',' ORDER BY id)) FROM alerts",
    "thumbnails": "SELECT md5(string_agg(md5(data), ',' ORDER BY device_id, seq)) FROM thumbnails",
    "dead_letters": "SELECT md5(string_agg(md5(payload) || error, ',' ORDER BY id)) "
    "FROM dead_letters",
    "alembic": "SELECT version_num FROM alembic_version",
}


def _populate(engine: Engine) -> None:
    thumb = {
        "device_id": "cam-1",
        "seq": 1,
        "data": base64.b64encode(b"\xff\xd8\xff" + bytes(200)).decode(),
    }
    messages = [
        status_message("cam-1"),
        *(observation_message(f"cam-{d}", s) for d in range(10) for s in range(1, 101)),
        alert_message("cam-1", 1),
        ("cultivai/v1/cam-1/thumbnail", json.dumps(thumb).encode()),
        ("cultivai/v1/cam-1/observation", b"\x00\xffnot json"),
    ]
    limits = Limits(262_144, 65_536)
    now = datetime.now(timezone.utc)
    FleetStore(engine, 1024).write([Envelope(t, p, now, decode(t, p, limits)) for t, p in messages])


def _fingerprint(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        return {name: conn.execute(text(sql)).scalar_one() for name, sql in FINGERPRINT.items()}


@pytest.fixture
def restored_db(pg_cluster: PgCluster) -> Iterator[str]:
    name = f"restored_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_database(name)
    yield name
    pg_cluster.drop_database(name)


def _run(pg_cluster: PgCluster, command: list[str], *args: str) -> None:
    done = subprocess.run(
        [pg_cluster.tool(command[0]), *command[1:], *args],
        check=False,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"{command[0]} failed: {done.stderr}"


def _restore(pg_cluster: PgCluster, dbname: str, dump: Path) -> None:
    """What `make db-restore` runs: drop the partitioned table, then the cleaning script,
    all in one transaction."""
    script = subprocess.run(
        [pg_cluster.tool(RESTORE[0]), *RESTORE[1:], str(dump)],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    done = subprocess.run(
        [pg_cluster.tool(PSQL[0]), *PSQL[1:], f"--dbname={dbname}"],
        input=RESTORE_FIRST + script,
        check=False,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"restore failed: {done.stderr}"


def test_backup_restores_every_row_into_an_empty_database(
    engine: Engine, pg_cluster: PgCluster, pg_url: str, restored_db: str, tmp_path: Path
) -> None:
    _populate(engine)
    dump = tmp_path / "cultivai.dump"
    source = pg_url.replace("postgresql+psycopg://", "postgresql://")
    _run(pg_cluster, BACKUP, f"--file={dump}", source)
    _restore(pg_cluster, pg_cluster.dsn(restored_db), dump)
    restored = create_engine(pg_cluster.url(restored_db))
    try:
        assert _fingerprint(restored) == _fingerprint(engine)
        with restored.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM observations")).scalar_one() == 1000
        require_current(restored)
    finally:
        restored.dispose()


def test_restore_over_a_live_database_returns_it_to_the_backup(
    engine: Engine, pg_cluster: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    _populate(engine)
    before = _fingerprint(engine)
    dump = tmp_path / "cultivai.dump"
    source = pg_url.replace("postgresql+psycopg://", "postgresql://")
    _run(pg_cluster, BACKUP, f"--file={dump}", source)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM observations WHERE seq > 50"))
    engine.dispose()
    _restore(pg_cluster, source, dump)
    assert _fingerprint(engine) == before
