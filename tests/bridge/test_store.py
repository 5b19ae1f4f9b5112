"""One batch, one transaction: device rows stay right whatever order messages arrive in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from cloud_bridge.decode import Limits, decode
from cloud_bridge.schema import migrate
from cloud_bridge.store import Envelope, FleetStore
from cloud_bridge.tables import Device
from tests.bridge.conftest import count, dead_letter_count
from tests.bridge.factory import T0, observation_message, status_message

LIMITS = Limits(262_144, 65_536)


def _write(engine: Engine, *messages: tuple[str, bytes]) -> None:
    now = datetime.now(timezone.utc)
    batch = [Envelope(t, p, now, decode(t, p, LIMITS)) for t, p in messages]
    FleetStore(engine, 1024).write(batch)


def _device(engine: Engine, device_id: str = "cam-1") -> Device:
    with Session(engine, expire_on_commit=False) as session:
        return session.get_one(Device, device_id)


@pytest.mark.parametrize(("order", "online"), [("online first", False), ("will first", True)])
def test_within_a_session_the_later_status_wins(engine: Engine, order: str, online: bool) -> None:
    # "will first": the broker restarted, published the Will, and the device, which stayed
    # up, reconnected in the same session and said "online" again.
    first, second = status_message("cam-1", "online", T0), status_message("cam-1", "offline", T0)
    for message in (first, second) if order == "online first" else (second, first):
        _write(engine, message)
    assert _device(engine).online is online


def test_at_the_same_instant_the_will_wins(engine: Engine) -> None:
    now = datetime.now(timezone.utc)
    messages = [status_message("cam-1", "offline", T0), status_message("cam-1", "online", T0)]
    for t, p in messages:
        FleetStore(engine, 1024).write([Envelope(t, p, now, decode(t, p, LIMITS))])
    assert _device(engine).online is False


def test_a_newer_session_wins_over_an_older_sessions_will(engine: Engine) -> None:
    later = T0 + timedelta(hours=1)
    _write(engine, status_message("cam-1", "online", later))
    _write(engine, status_message("cam-1", "offline", T0))
    assert _device(engine).online is True


def test_a_backfilled_old_observation_does_not_move_the_device(engine: Engine) -> None:
    _write(engine, observation_message("cam-1", 10, room="new-room"))
    _write(engine, observation_message("cam-1", 3, room="old-room"))
    device = _device(engine)
    assert (device.room, device.last_seq) == ("new-room", 10)


def test_dead_letters_commit_with_the_batch(engine: Engine) -> None:
    _write(engine, observation_message("cam-1", 1), ("cultivai/v1/cam-1/observation", b"{"))
    assert (count(engine), dead_letter_count(engine)) == (1, 1)


def test_the_same_batch_written_twice_adds_nothing(engine: Engine) -> None:
    batch = [observation_message("cam-1", s) for s in range(1, 51)]
    _write(engine, *batch)
    _write(engine, *batch)
    assert count(engine) == 50


def test_sqlite_stores_the_same_way(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    migrate(engine)
    batch = [observation_message("cam-1", s) for s in range(1, 21)]
    _write(engine, *batch, status_message("cam-1", "online"))
    _write(engine, *batch)
    device = _device(engine)
    assert (count(engine), device.online, device.last_seq) == (20, True, 20)
    assert device.last_seen.tzinfo is not None
