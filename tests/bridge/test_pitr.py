"""Point-in-time recovery with pgBackRest: a destroyed cluster restored from its archive.

The drill: devices publish through the broker into a bridge process; the cluster is
killed (-9) and its data folder deleted mid-ingest; `restore` rebuilds it from the base
backup and the WAL archive; the rows committed after the last archived segment are
lost (the RPO) and the devices' resends, asked for by the gap filler, bring them back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from cloud_bridge.ops.backup import BackupError, Repository, backup, restore, restore_point
from cloud_bridge.schema import migrate, require_current
from cloud_bridge.store import Envelope, FleetStore
from cloud_bridge.tables import ObservationRow
from tests.bridge.factory import observation_message
from tests.bridge.live_fleet import LiveFleet, wait_for
from tests.bridge.pg import PgBackRest, PgCluster, find_pg_bin
from tests.bridge.test_backup import _fingerprint, _populate
from tests.mqtt_broker import find_mosquitto

pytestmark = pytest.mark.slow

# Short in the test so the drill is quick; the role's default is 60 s (docs/bridge.md).
ARCHIVE_TIMEOUT_S = 3
DATABASE = "cultivai"
REPO = Path(__file__).resolve().parents[2]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def archived() -> Iterator[tuple[PgCluster, PgBackRest]]:
    """A durable cluster archiving its WAL to a pgBackRest repository, bridge schema in it."""
    bin_dir = find_pg_bin()
    if bin_dir is None or shutil.which("pgbackrest") is None:
        _missing("PostgreSQL or pgbackrest not installed (make system-deps installs them)")
    assert bin_dir is not None
    cluster = PgCluster(bin_dir, durable=True).init()
    try:
        archive = PgBackRest(cluster, archive_timeout_s=ARCHIVE_TIMEOUT_S)
        cluster.start()
        cluster.create_database(DATABASE)
        engine = create_engine(cluster.url(DATABASE))
        migrate(engine)
        engine.dispose()
        yield cluster, archive
    finally:
        cluster.destroy()


def _make(archive: PgBackRest, target: str, **variables: str) -> str:
    """Run `make TARGET` on this archive's pgBackRest config, as an admin would."""
    user = archive.repository.user or ""
    args = [f"PGBACKREST_CONFIG={archive.config}", f"PGBACKREST_USER={user}"]
    args += [f"{name}={value}" for name, value in variables.items()]
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), target, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def _engine(cluster: PgCluster) -> Engine:
    return create_engine(cluster.url(DATABASE), pool_pre_ping=True)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ObservationRow)).scalar_one())


def test_a_destroyed_cluster_comes_back_from_the_archive_and_resends_fill_the_gap(
    archived: tuple[PgCluster, PgBackRest], tmp_path: Path
) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    cluster, archive = archived
    engine = _engine(cluster)
    fleet = LiveFleet(tmp_path, devices=4, period_s=0.1)
    try:
        fleet.start({"url": cluster.url(DATABASE)})
        wait_for(lambda: all(fleet.stored_counts(engine).values()), 60, "first rows stored")
        at_backup = _count(engine)
        _make(archive, "db-backup")  # online, while the bridge writes
        time.sleep(3 * ARCHIVE_TIMEOUT_S)

        before = _count(engine)
        killed_at = datetime.now(timezone.utc)
        cluster.kill()
        cluster.wipe()
        engine.dispose()
        time.sleep(1.0)  # devices keep publishing into the outage

        started = time.monotonic()
        restore(archive.repository)
        cluster.start(timeout=120)
        cluster.wait_writable()
        rto_s = time.monotonic() - started

        with engine.connect() as conn:
            restored, newest = conn.execute(
                select(func.count(), func.max(ObservationRow.stored_at))
            ).one()
        rpo_s = (killed_at - newest).total_seconds()
        lost = before - restored
        print(
            f"\nPITR drill: archive_timeout {ARCHIVE_TIMEOUT_S} s; rows at backup {at_backup}, "
            f"stored before the kill {before}, after restore {restored}: {lost} lost "
            f"(newest restored row {rpo_s:.2f} s before the kill); "
            f"restore + replay + promote {rto_s:.1f} s"
        )
        # `before` is counted an instant before the kill, so it bounds nothing exactly;
        # that the restore holds rows written after the backup shows the replay.
        assert restored > at_backup, "the restore did not replay the archive"

        time.sleep(2.0)  # ingest resumes on the restored cluster
        fleet.stop_publishing()
        wait_for(lambda: fleet.complete(engine), 120, "every produced seq stored")
        reports = fleet.report(engine)
        summary = "\n".join(r.line() for r in reports)
        print(summary)
        assert [(r.lost, r.duplicated) for r in reports] == [(0, 0)] * len(reports), summary
        assert _count(engine) > before
        if lost > 0:
            assert sum(d.resends for d in fleet.devices) > 0, "the gap closed without resends?"
    finally:
        fleet.close()
        engine.dispose()


def _store(engine: Engine, device: str, seqs: range) -> None:
    now = datetime.now(timezone.utc)
    from cloud_bridge.decode import Limits, decode

    limits = Limits(262_144, 65_536)
    messages = [observation_message(device, s) for s in seqs]
    FleetStore(engine, 1024).write([Envelope(t, p, now, decode(t, p, limits)) for t, p in messages])


def test_a_restore_to_a_named_point_undoes_a_bad_migration(
    archived: tuple[PgCluster, PgBackRest],
) -> None:
    cluster, archive = archived
    engine = _engine(cluster)
    try:
        _populate(engine)
        backup(archive.repository, "full")
        _store(engine, "cam-late", range(1, 201))  # after the backup: only the WAL has it
        wanted = _fingerprint(engine)
        _make(archive, "db-restore-point", NAME="before-0004", ADMIN_DB=cluster.dsn(DATABASE))
        with engine.begin() as conn:  # the bad migration, and a bad DELETE
            conn.execute(text("DROP TABLE alerts CASCADE"))
            conn.execute(text("DELETE FROM observations WHERE seq > 10"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0004_bad'"))
        _store(engine, "cam-after", range(1, 51))
        engine.dispose()

        cluster.stop()
        _make(archive, "db-restore", TARGET_NAME="before-0004")
        cluster.start(timeout=120)
        cluster.wait_writable()

        assert _fingerprint(engine) == wanted
        require_current(engine)
        with engine.connect() as conn:
            after = conn.execute(
                text("SELECT count(*) FROM observations WHERE device_id = 'cam-after'")
            ).scalar_one()
        assert after == 0
        _store(engine, "cam-after", range(1, 6))  # the restored cluster takes writes
        assert _count(engine) == 1000 + 200 + 5
    finally:
        engine.dispose()


def test_restore_refuses_while_the_server_runs(
    archived: tuple[PgCluster, PgBackRest],
) -> None:
    _cluster, archive = archived
    with pytest.raises(BackupError, match="stop PostgreSQL before restoring"):
        restore(archive.repository)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x; DROP TABLE", "time": None}, "not a valid name"),
        ({"name": "a", "time": "2026-01-01"}, "not both"),
        ({"name": None, "time": "yesterday"}, "expected ISO 8601"),
    ],
)
def test_restore_names_a_bad_target(
    kwargs: dict[str, str | None], message: str, tmp_path: Path
) -> None:
    repo = Repository(tmp_path / "missing.conf", "cultivai", None)
    with pytest.raises(BackupError, match=message):
        restore(repo, **kwargs)


def test_restore_names_a_missing_config(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="cannot read pgBackRest config"):
        restore(Repository(tmp_path / "missing.conf", "cultivai", None))


def test_restore_point_refuses_a_name_that_is_not_one(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "missing.conf", "cultivai", None)
    with pytest.raises(BackupError, match="restore point name"):
        restore_point(repo, "postgresql://127.0.0.1:1/x", "")
