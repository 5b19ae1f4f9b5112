"""The device's local store: SQLite (WAL) for measurements, files for photos.

Photos are written to a temporary name, fsynced and renamed before the row that
points to them commits, and pruned by clearing the row's reference before the file
is deleted, so a crash or power cut never leaves a row pointing to a missing or
half-written photo. ``seq`` comes from a counter row updated in the same
transaction as the observation, so it increases by one and survives restarts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from edge import dbupgrade, outbox
from edge.errors import StorageError
from edge.protocol import Observation
from edge.tables import AlertRow, Counter, ObservationRow, OutboxRow

log = logging.getLogger(__name__)
DB_NAME = "edge.sqlite3"
IMAGE_DIR = "images"
TMP_PREFIX = ".tmp-"
ORPHAN_AGE_S = 600
RESERVE_NAME = ".disk-reserve"
RESERVE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class StoredImage:
    """Encoded photo and overlay to keep with an observation."""

    photo: bytes
    overlay: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts the status page and metrics report."""

    observations: int
    last_seq: int
    images: int
    image_bytes: int
    outbox_depth: int
    outbox_dropped: int
    images_pruned: int
    images_not_kept: int


class Tx:
    """What a hook may do inside an observation's transaction."""

    def __init__(self, session: Session, max_outbox: int) -> None:
        self.session = session
        self._max_outbox = max_outbox

    def enqueue(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        seq: int | None = None,
        content_type: str | None = None,
    ) -> None:
        """Queue a message for the broker, committed with the observation."""
        outbox.enqueue(
            self.session,
            topic,
            payload,
            qos=qos,
            retain=retain,
            seq=seq,
            content_type=content_type,
        )
        outbox.enforce_limit(self.session, self._max_outbox)

    def open_alert(self, row: AlertRow) -> int:
        """Insert an alert; returns its id."""
        self.session.add(row)
        self.session.flush()
        return row.id

    def close_alert(self, alert_id: int, at: datetime, seq: int) -> None:
        """Mark an alert cleared."""
        self.session.execute(
            update(AlertRow).where(AlertRow.id == alert_id).values(cleared_at=at, cleared_seq=seq)
        )


def sqlite_engine(path: Path, synchronous: str = "FULL") -> Engine:
    """An engine on the device database in WAL mode.

    FULL (the default): a commit survives a power cut. A seq that was published
    and then lost would be handed out again for a different photo. The publisher
    deletes acknowledged outbox rows with NORMAL: losing such a delete in a power
    cut only means one redelivery, and it saves an fsync per batch of acks.
    """
    engine = create_engine(f"sqlite:///{path}")

    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    event.listen(engine, "connect", pragmas)
    return engine


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename over `path`, fsync the folder."""
    tmp = path.with_name(TMP_PREFIX + path.name)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


class Store:
    """Observations, their photos and the outbox, in one folder."""

    def __init__(
        self,
        root: Path,
        image_quota_bytes: int = 2048 * 2**20,
        min_free_bytes: int = 200 * 2**20,
        retention: timedelta = timedelta(days=1825),
        max_outbox: int = 100_000,
    ) -> None:
        self.root = root
        self.max_outbox = max_outbox
        self.image_root = root / IMAGE_DIR
        self.image_quota_bytes = image_quota_bytes
        self.min_free_bytes = min_free_bytes
        self.retention = retention
        self.images_pruned = 0
        self.images_not_kept = 0
        self._write_lock = threading.Lock()
        try:
            self.image_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create data folder {root}: {exc.strerror}") from exc
        # Numbered migrations (edge/migrations), a snapshot first; refuses a database
        # that newer firmware changed in a way this one cannot read.
        self.upgrade = dbupgrade.migrate(root / DB_NAME)
        self.engine = sqlite_engine(root / DB_NAME)
        try:
            with Session(self.engine) as s, s.begin():
                if s.get(Counter, "seq") is None:
                    s.add(Counter(name="seq", value=0))
        except OperationalError as exc:
            raise StorageError(f"cannot open database in {root}: {exc.orig}") from exc
        self._remove_orphans()
        self._ensure_reserve()

    # -- writing -------------------------------------------------------------------

    def add_observation(
        self,
        build: Callable[[int, bool], Observation],
        image: StoredImage | None,
        then: Callable[[Tx, Observation], None] | None = None,
    ) -> Observation:
        """Allocate the next seq, keep the photo, and commit the observation.

        `build(seq, image_stored)` returns the Observation; it is called inside the
        transaction once the seq is known and the photo is (or is not) on disk.
        `then(tx, observation)` runs in the same transaction: outbox messages and
        alerts it writes commit or vanish together with the observation. A full
        disk first costs old photos, then this photo; only when nothing is left to
        free does it raise StorageError.
        """
        with self._write_lock:
            if image is not None:
                self._make_room(len(image.photo) + len(image.overlay or b""))
            try:
                return self._insert(build, image, then)
            except OperationalError as exc:
                if not _disk_full(exc):
                    raise StorageError(f"could not store observation: {exc.orig}") from exc
            log.warning("disk full while storing an observation; freeing space")
            self._release_reserve()
            self._prune_oldest(RESERVE_BYTES)
            try:
                return self._insert(build, image, then)
            except OperationalError as exc:
                raise StorageError(f"could not store observation: {exc.orig}") from exc
            finally:
                self._ensure_reserve()

    def _insert(
        self,
        build: Callable[[int, bool], Observation],
        image: StoredImage | None,
        then: Callable[[Tx, Observation], None] | None,
    ) -> Observation:
        with Session(self.engine) as s, s.begin():
            seq = int(
                s.execute(
                    update(Counter)
                    .where(Counter.name == "seq")
                    .values(value=Counter.value + 1)
                    .returning(Counter.value)
                ).scalar_one()
            )
            paths = self._keep_image(seq, image) if image is not None else None
            obs = build(seq, paths is not None)
            s.add(self._row(obs, obs.model_dump_json(), paths))
            if then is not None:
                then(Tx(s, self.max_outbox), obs)
        return obs

    def enqueue(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        seq: int | None = None,
    ) -> None:
        """Queue one message on its own (a command result, a resent observation)."""
        with self._write_lock:
            try:
                with Session(self.engine) as s, s.begin():
                    Tx(s, self.max_outbox).enqueue(topic, payload, qos=qos, retain=retain, seq=seq)
            except OperationalError as exc:
                raise StorageError(f"could not queue message: {exc.orig}") from exc

    def transaction(self) -> Any:
        """A write transaction of its own, as a Tx (used to resend stored rows)."""
        return _TxContext(self)

    def open_outbox(self) -> outbox.Outbox:
        """The publisher's handle on the outbox, with its own connection."""
        return outbox.Outbox(sqlite_engine(self.root / DB_NAME, synchronous="NORMAL"))

    def open_alerts(self) -> list[AlertRow]:
        """Alerts raised and not yet cleared, oldest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(
                s.execute(
                    select(AlertRow).where(AlertRow.cleared_at.is_(None)).order_by(AlertRow.id)
                ).scalars()
            )

    def alerts(self, limit: int = 100) -> list[AlertRow]:
        """Recent alerts, open or cleared, newest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(
                s.execute(select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)).scalars()
            )

    def observations_between(self, from_seq: int, to_seq: int) -> list[tuple[int, str]]:
        """(seq, JSON payload) of stored observations in a seq range."""
        with Session(self.engine) as s:
            return [
                (int(seq), str(payload))
                for seq, payload in s.execute(
                    select(ObservationRow.seq, ObservationRow.payload)
                    .where(ObservationRow.seq.between(from_seq, to_seq))
                    .order_by(ObservationRow.seq)
                )
            ]

    # -- the disk reserve ----------------------------------------------------------
    # On a completely full disk SQLite cannot even commit the update that lets old
    # photos be deleted. A small reserve file is kept and given up at that moment.

    def _ensure_reserve(self) -> None:
        path = self.root / RESERVE_NAME
        if path.exists():
            return
        with contextlib.suppress(OSError):
            if self._disk_free() > 2 * RESERVE_BYTES:
                write_atomic(path, b"\0" * RESERVE_BYTES)

    def _release_reserve(self) -> bool:
        try:
            (self.root / RESERVE_NAME).unlink()
        except FileNotFoundError:
            return False
        log.warning("disk full: released the disk reserve to make room")
        return True

    def _row(
        self, obs: Observation, payload: str, paths: tuple[str, str | None, int] | None
    ) -> ObservationRow:
        return ObservationRow(
            seq=obs.seq,
            device_id=obs.device_id,
            captured_at=obs.captured_at,
            cover_pct=obs.canopy.cover_pct,
            yellow_pct=obs.canopy.yellow_pct,
            brown_pct=obs.canopy.brown_pct,
            health_label=obs.health.label if obs.health else None,
            health_confidence=obs.health.confidence if obs.health else None,
            payload=payload,
            image_path=paths[0] if paths else None,
            overlay_path=paths[1] if paths else None,
            image_bytes=paths[2] if paths else 0,
        )

    def _keep_image(self, seq: int, image: StoredImage) -> tuple[str, str | None, int] | None:
        """Write the photo files; on a full disk prune once and retry, then give up."""
        for attempt in (1, 2):
            try:
                return self._write_image_files(seq, image)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or attempt == 2:
                    self.images_not_kept += 1
                    log.error(
                        "photo not kept, measurements stored without it",
                        extra={"seq": seq, "error": str(exc)},
                    )
                    return None
                freed = self._prune_oldest(max(self.min_free_bytes, 8 * len(image.photo)))
                log.warning(
                    "disk full while saving photo; pruned old photos",
                    extra={"seq": seq, "freed_bytes": freed},
                )
        return None

    def _write_image_files(self, seq: int, image: StoredImage) -> tuple[str, str | None, int]:
        day = _now().strftime("%Y-%m-%d")
        folder = self.image_root / day
        folder.mkdir(exist_ok=True)
        photo = f"{IMAGE_DIR}/{day}/{seq:09d}.jpg"
        write_atomic(self.root / photo, image.photo)
        size = len(image.photo)
        overlay = None
        if image.overlay is not None:
            overlay = f"{IMAGE_DIR}/{day}/{seq:09d}.overlay.jpg"
            write_atomic(self.root / overlay, image.overlay)
            size += len(image.overlay)
        return photo, overlay, size

    # -- pruning -------------------------------------------------------------------

    def _disk_free(self) -> int:
        return shutil.disk_usage(self.root).free

    def _make_room(self, incoming: int) -> None:
        over_quota = self.image_bytes() + incoming - self.image_quota_bytes
        short_of_free = self.min_free_bytes + incoming - self._disk_free()
        need = max(over_quota, short_of_free)
        if need > 0:
            self._prune_oldest(need)

    def _prune_oldest(self, need_bytes: int) -> int:
        """Drop the oldest photos until `need_bytes` are freed; measurements stay."""
        freed = 0
        while freed < need_bytes:
            try:
                rows = self._clear_oldest_refs(need_bytes - freed)
            except OperationalError as exc:
                if not (_disk_full(exc) and self._release_reserve()):
                    raise StorageError(f"could not prune old photos: {exc.orig}") from exc
                rows = self._clear_oldest_refs(need_bytes - freed)
            if not rows:
                break
            freed += sum(row.image_bytes for row in rows)
            # Rows no longer point at these files: deleting them now is safe.
            self._unlink_files(rows)
            self.images_pruned += len(rows)
        if freed:
            log.info("pruned old photos", extra={"freed_bytes": freed})
            self._ensure_reserve()
        self._remove_empty_days()
        return freed

    def _clear_oldest_refs(self, need_bytes: int) -> list[Any]:
        """Unlink the oldest photos from their rows (committed); returns those rows."""
        freed = 0
        with Session(self.engine) as s, s.begin():
            batch = s.execute(
                select(
                    ObservationRow.seq,
                    ObservationRow.image_path,
                    ObservationRow.overlay_path,
                    ObservationRow.image_bytes,
                )
                .where(ObservationRow.image_path.is_not(None))
                .order_by(ObservationRow.seq)
                .limit(32)
            ).all()
            rows = []
            for row in batch:
                if freed >= need_bytes:
                    break
                rows.append(row)
                freed += row.image_bytes
            if rows:
                s.execute(
                    update(ObservationRow)
                    .where(ObservationRow.seq.in_([r.seq for r in rows]))
                    .values(image_path=None, overlay_path=None, image_bytes=0)
                )
        return rows

    def _unlink_files(self, rows: Any) -> None:
        for row in rows:
            for rel in (row.image_path, row.overlay_path):
                if rel:
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / rel).unlink()

    def prune_old_observations(self, now: datetime | None = None) -> int:
        """Delete measurements past the retention period, and their photos."""
        cutoff = (now or _now()) - self.retention
        old = ObservationRow.captured_at < cutoff
        with self._write_lock:
            with Session(self.engine) as s, s.begin():
                files = s.execute(
                    select(ObservationRow.image_path, ObservationRow.overlay_path).where(old)
                ).all()
                result = s.execute(delete(ObservationRow).where(old))
            self._unlink_files(files)
            self._remove_empty_days()
            return int(getattr(result, "rowcount", 0) or 0)

    def _remove_empty_days(self) -> None:
        for day in self.image_root.iterdir():
            if day.is_dir():
                with contextlib.suppress(OSError):
                    day.rmdir()  # only succeeds when empty

    def _remove_orphans(self) -> None:
        """Delete temp files and photos no row points to (left by a crash)."""
        with Session(self.engine) as s:
            referenced = {
                p
                for row in s.execute(select(ObservationRow.image_path, ObservationRow.overlay_path))
                for p in row
                if p
            }
        # Another process on the same folder (a running agent, while `selftest` or
        # `capture` opens the store) may be between writing a photo and committing its
        # row: only files untouched for a while are orphans.
        settled = time.time() - ORPHAN_AGE_S
        removed = 0
        for path in self.image_root.rglob("*"):
            if not path.is_file() or path.relative_to(self.root).as_posix() in referenced:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < settled:
                    path.unlink()
                    removed += 1
        if removed:
            log.info("removed files left by an interrupted write", extra={"files": removed})
        self._remove_empty_days()

    # -- reading -------------------------------------------------------------------

    def image_bytes(self) -> int:
        """Total size of the photos kept."""
        kept = ObservationRow.image_path.is_not(None)
        total = func.coalesce(func.sum(ObservationRow.image_bytes), 0)
        with Session(self.engine) as s:
            return int(s.execute(select(total).where(kept)).scalar_one())

    def get(self, seq: int) -> Observation | None:
        """One observation by seq."""
        with Session(self.engine) as s:
            row = s.get(ObservationRow, seq)
            return Observation.model_validate_json(row.payload) if row else None

    def image_path(self, seq: int, overlay: bool = False) -> Path | None:
        """Path of a kept photo (or its overlay), None when pruned or never kept."""
        with Session(self.engine) as s:
            row = s.get(ObservationRow, seq)
        rel = (row.overlay_path if overlay else row.image_path) if row else None
        return self.root / rel if rel else None

    def recent(self, limit: int = 50, before_seq: int | None = None) -> list[Observation]:
        """Newest observations first."""
        q = select(ObservationRow.payload).order_by(ObservationRow.seq.desc()).limit(limit)
        if before_seq is not None:
            q = q.where(ObservationRow.seq < before_seq)
        with Session(self.engine) as s:
            return [Observation.model_validate_json(p) for p in s.execute(q).scalars()]

    def seqs(self) -> list[int]:
        """Every stored seq, ascending."""
        with Session(self.engine) as s:
            return list(
                s.execute(select(ObservationRow.seq).order_by(ObservationRow.seq)).scalars()
            )

    def stats(self) -> StoreStats:
        """Counts for status and metrics."""
        kept = ObservationRow.image_path.is_not(None)
        with Session(self.engine) as s:
            # Separate queries: each is answered from an index instead of a table scan.
            count = s.execute(select(func.count()).select_from(ObservationRow)).scalar_one()
            last = s.execute(select(func.coalesce(func.max(ObservationRow.seq), 0))).scalar_one()
            images, size = s.execute(
                select(func.count(), func.coalesce(func.sum(ObservationRow.image_bytes), 0)).where(
                    kept
                )
            ).one()
            depth = s.execute(select(func.count()).select_from(OutboxRow)).scalar_one()
            dropped = outbox.dropped_count(s)
        return StoreStats(
            int(count),
            int(last),
            int(images),
            int(size),
            int(depth),
            dropped,
            self.images_pruned,
            self.images_not_kept,
        )

    def integrity_check(self) -> str:
        """SQLite's own consistency check: 'ok' when the file is sound."""
        with self.engine.connect() as conn:
            return str(conn.execute(text("PRAGMA integrity_check")).scalar_one())

    def close(self) -> None:
        """Close database connections."""
        self.engine.dispose()


class _TxContext:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.session: Session | None = None

    def __enter__(self) -> Tx:
        self.store._write_lock.acquire()
        self.session = Session(self.store.engine)
        self.session.begin()
        return Tx(self.session, self.store.max_outbox)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.session is not None
        try:
            if exc_type is None:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.session.close()
            self.store._write_lock.release()


def _disk_full(exc: OperationalError) -> bool:
    return "disk is full" in str(exc.orig) or "disk I/O error" in str(exc.orig)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def observation_json(obs: Observation) -> str:
    """Compact JSON of an observation, as printed by the CLI."""
    return json.dumps(obs.model_dump(mode="json"), separators=(",", ":"))
