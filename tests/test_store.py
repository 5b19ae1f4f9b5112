"""The local store: seq, atomic photos, pruning by quota and free space, a full disk."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from edge.errors import StorageError
from edge.protocol import CanopyBlock, ExposureBlock, ImageBlock, Observation
from edge.store import Store, StoredImage, Tx

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def builder(captured_at: datetime = T0) -> Callable[[int, bool], Observation]:
    def build(seq: int, stored: bool) -> Observation:
        return Observation(
            device_id="cam-1",
            seq=seq,
            captured_at=captured_at,
            camera="synthetic",
            canopy=CanopyBlock(
                cover_pct=12.5, area_px=1000, yellow_pct=1.0, brown_pct=0.5, exg_threshold=0.1
            ),
            exposure=ExposureBlock(
                verdict="ok", mean_luma=80, under_pct=0, over_pct=0, sharpness=50
            ),
            image=ImageBlock(width=64, height=48, stored=stored),
        )

    return build


def photo(size: int = 10_000) -> StoredImage:
    return StoredImage(
        photo=b"\xff\xd8\xff" + os.urandom(size), overlay=b"\xff\xd8\xff" + b"o" * 100
    )


def test_seq_increases_by_one_and_survives_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    seqs = [store.add_observation(builder(), None).seq for _ in range(3)]
    store.close()
    store = Store(tmp_path)
    seqs += [store.add_observation(builder(), None).seq for _ in range(2)]
    assert seqs == [1, 2, 3, 4, 5]
    assert store.seqs() == seqs


def test_database_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2


def test_photo_and_overlay_are_kept_with_the_observation(tmp_path: Path) -> None:
    store = Store(tmp_path)
    image = photo()
    obs = store.add_observation(builder(), image)
    assert obs.image.stored
    path, overlay = store.image_path(obs.seq), store.image_path(obs.seq, overlay=True)
    assert path is not None and path.read_bytes() == image.photo
    assert overlay is not None and overlay.read_bytes() == image.overlay
    assert not list(tmp_path.rglob(".tmp-*"))


def test_outbox_row_is_written_in_the_same_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def publish(tx: Tx, obs: Observation) -> None:
        tx.enqueue("cultivai/v1/cam-1/observation", obs.model_dump_json(), seq=obs.seq)

    store.add_observation(builder(), None, publish)
    store.add_observation(builder(), None)
    assert store.stats().outbox_depth == 1


def test_a_failing_hook_rolls_back_the_observation_and_its_messages(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def broken(tx: Tx, obs: Observation) -> None:
        tx.enqueue("t", b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.add_observation(builder(), photo(), broken)
    assert store.stats().observations == 0
    assert store.stats().outbox_depth == 0


def test_outbox_limit_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    from edge.outbox import Outbox

    store = Store(tmp_path, max_outbox=5)
    for i in range(8):
        store.enqueue("t", f"m{i}".encode())
    outbox = Outbox(store.engine)
    assert [m.payload for m in outbox.pending(0, 100)] == [b"m3", b"m4", b"m5", b"m6", b"m7"]
    assert outbox.dropped() == 3


def test_a_failing_build_stores_nothing_and_uses_no_seq(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def broken(seq: int, stored: bool) -> Observation:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.add_observation(broken, photo())
    assert store.add_observation(builder(), None).seq == 1
    store.close()
    # The photo written before the failure is an orphan: it goes at a start once it
    # is old enough that no other process can still be about to commit its row.
    leftovers = [p for p in (tmp_path / "images").rglob("*") if p.is_file()]
    for path in leftovers:
        os.utime(path, (time.time() - 3600,) * 2)
    Store(tmp_path)
    assert leftovers and [p for p in (tmp_path / "images").rglob("*") if p.is_file()] == []


def test_oldest_photos_are_pruned_first_and_measurements_stay(tmp_path: Path) -> None:
    store = Store(tmp_path, image_quota_bytes=50_000, min_free_bytes=0)
    for _ in range(12):
        store.add_observation(builder(), photo(10_000))
    kept = [seq for seq in store.seqs() if store.image_path(seq) is not None]
    assert store.seqs() == list(range(1, 13))
    assert kept == list(range(12 - len(kept) + 1, 13))  # the newest ones
    assert store.image_bytes() <= 50_000
    assert store.stats().images_pruned == 12 - len(kept)
    assert store.get(1) is not None


def test_old_measurements_expire_after_the_retention_period(tmp_path: Path) -> None:
    store = Store(tmp_path, retention=timedelta(days=30))
    store.add_observation(builder(T0 - timedelta(days=40)), photo())
    store.add_observation(builder(T0), photo())
    assert store.prune_old_observations(now=T0) == 1
    assert store.seqs() == [2]
    assert store.image_path(2) is not None


def test_orphan_and_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    store = Store(tmp_path)
    obs = store.add_observation(builder(), photo())
    store.close()
    day = next((tmp_path / "images").iterdir())
    old = time.time() - 3600
    for name, data in ((".tmp-000000099.jpg", b"half"), ("000000099.jpg", b"orphan")):
        (day / name).write_bytes(data)
        os.utime(day / name, (old, old))
    (day / "000000100.jpg").write_bytes(b"being written by another process right now")
    store = Store(tmp_path)
    files = sorted(p.name for p in day.iterdir())
    assert files == [f"{obs.seq:09d}.jpg", f"{obs.seq:09d}.overlay.jpg", "000000100.jpg"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB filesystem (tmpfs), so writes fail with ENOSPC as on a full SD card."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(folder: Path) -> Path:
    """Fill the filesystem the way another program would, until ENOSPC."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 16384)
    return filler


def test_full_disk_prunes_old_photos_and_keeps_capturing(small_disk: Path) -> None:
    store = Store(small_disk, image_quota_bytes=100 * 2**20, min_free_bytes=0)
    for _ in range(5):
        store.add_observation(builder(), photo(200_000))
    fill_disk(small_disk)
    obs = store.add_observation(builder(), photo(200_000))
    assert obs.seq == 6
    stats = store.stats()
    assert stats.observations == 6  # every measurement is still there
    assert stats.images_pruned >= 1
    assert store.image_path(1) is None  # the oldest photo went first
    assert store.integrity_check() == "ok"


def test_disk_full_with_nothing_left_to_prune_is_reported_not_fatal(small_disk: Path) -> None:
    store = Store(small_disk, image_quota_bytes=100 * 2**20, min_free_bytes=0)
    first = store.add_observation(builder(), None)
    filler = fill_disk(small_disk)
    with pytest.raises(StorageError, match="database or disk is full"):
        for _ in range(50):  # SQLite may still fit a row or two into free pages
            store.add_observation(builder(), photo(200_000))
    assert store.stats().images_not_kept >= 1
    filler.unlink()
    later = store.add_observation(builder(), photo(200_000))
    assert later.image.stored
    assert store.get(first.seq) is not None
    assert store.seqs() == list(range(1, later.seq + 1))  # no gap, no repeat
    assert store.integrity_check() == "ok"
