"""Holes in a device's seq are found, asked for with `resend`, rate-limited, and filled."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert
from sqlalchemy.orm import Session

from cloud_bridge.config import GapsConfig
from cloud_bridge.gaps import GapFiller, Hole, find_holes
from cloud_bridge.metrics import BridgeMetrics
from cloud_bridge.schema import migrate
from cloud_bridge.service import Bridge
from cloud_bridge.store import observation_row
from cloud_bridge.tables import Device, ObservationRow
from tests.bridge.conftest import observation_keys
from tests.bridge.device import FakeCamera
from tests.bridge.factory import observation, wait_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
FAST_GAPS = {"enabled": True, "grace_s": 0.3, "scan_interval_s": 0.1, "resend_interval_s": 1.0}


def _store(engine: Engine, device_id: str, seqs: list[int], age_s: float) -> None:
    """Rows as if stored `age_s` seconds before NOW."""
    stored_at = NOW - timedelta(seconds=age_s)
    rows = []
    for seq in seqs:
        obs = observation(device_id, seq)
        rows.append(observation_row(obs, stored_at, obs.model_dump(mode="json")))
    with Session(engine) as session, session.begin():
        session.execute(insert(ObservationRow), rows)


def _holes(engine: Engine, grace_s: float = 60, give_up_s: float = 3600) -> list[Hole]:
    with Session(engine) as session:
        return find_holes(session, NOW, grace_s, give_up_s)


def test_missing_seqs_below_a_stored_one_are_holes(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 2, 6, 7, 9], age_s=120)
    assert _holes(engine) == [Hole("cam-1", 3, 5), Hole("cam-1", 8, 8)]


def test_a_gap_younger_than_the_grace_is_not_a_hole_yet(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 2], age_s=120)
    _store(engine, "cam-1", [5], age_s=10)
    assert _holes(engine) == []


def test_holes_older_than_give_up_are_no_longer_asked_for(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 5], age_s=7200)
    assert _holes(engine) == []


def test_a_backfilled_seq_between_old_rows_is_not_mistaken_for_a_hole(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 2, 3, 5, 6], age_s=4000)
    _store(engine, "cam-1", [4], age_s=120)
    assert _holes(engine) == []


def test_a_hole_right_after_long_silence_is_found(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 2, 3], age_s=86_000)
    _store(engine, "cam-1", [7, 8], age_s=120)
    assert _holes(engine) == [Hole("cam-1", 4, 6)]


def test_sqlite_finds_the_same_holes(tmp_path: Path) -> None:
    sqlite = create_engine(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    migrate(sqlite)
    _store(sqlite, "cam-1", [1, 2, 3], age_s=86_000)
    _store(sqlite, "cam-1", [7, 8, 10], age_s=120)
    assert _holes(sqlite) == [Hole("cam-1", 4, 6), Hole("cam-1", 9, 9)]


def test_an_offline_device_is_not_asked(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 3], age_s=120)
    with Session(engine) as session, session.begin():
        session.add(Device(id="cam-1", first_seen=NOW, last_seen=NOW, online=False))
    sent: list[str] = []
    config = GapsConfig(grace_s=60, give_up_after_s=3600)
    filler = GapFiller(engine, config, lambda t, p: sent.append(t), BridgeMetrics(), lambda: NOW)
    assert filler.scan_once() == 0 and sent == []


def test_one_device_is_asked_once_per_interval_across_bridges(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 3], age_s=120)
    sent: list[str] = []
    config = GapsConfig(grace_s=60, give_up_after_s=3600, resend_interval_s=300)
    clock = [NOW]
    bridges = [
        GapFiller(engine, config, lambda t, p: sent.append(t), BridgeMetrics(), lambda: clock[0])
        for _ in range(2)
    ]
    assert [b.scan_once() for b in bridges] == [1, 0]
    clock[0] = NOW + timedelta(seconds=200)
    assert [b.scan_once() for b in bridges] == [0, 0]
    clock[0] = NOW + timedelta(seconds=301)
    assert [b.scan_once() for b in reversed(bridges)] == [1, 0]
    assert sent == ["cultivai/v1/cam-1/cmd/resend"] * 2


@pytest.fixture
def camera(broker: Any) -> Iterator[Callable[..., FakeCamera]]:
    made: list[FakeCamera] = []

    def make(device_id: str, answer: bool = True) -> FakeCamera:
        cam = FakeCamera(broker.host, broker.port, device_id, answer)
        made.append(cam)
        return cam

    yield make
    for cam in made:
        cam.close()


def test_a_hole_is_asked_for_and_filled_end_to_end(
    engine: Engine, start_bridge: Callable[..., Bridge], camera: Callable[..., FakeCamera]
) -> None:
    bridge = start_bridge(gaps=FAST_GAPS)
    cam = camera("cam-gap")
    cam.online()
    cam.publish(s for s in range(1, 21) if s not in (5, 6, 7, 12))
    wait_for(lambda: len(observation_keys(engine)) == 20, 15, "the holes to be filled")
    assert observation_keys(engine) == [("cam-gap", s) for s in range(1, 21)]
    assert sorted(cam.ranges()[:2]) == [(5, 7), (12, 12)]
    assert bridge.metrics.resend_requests._value.get() >= 2


def test_an_unanswered_hole_is_asked_for_at_most_once_per_interval(
    engine: Engine, start_bridge: Callable[..., Bridge], camera: Callable[..., FakeCamera]
) -> None:
    start_bridge(gaps=FAST_GAPS)
    cam = camera("cam-mute", answer=False)
    cam.online()
    cam.publish([1, 2, 4])
    wait_for(lambda: len(cam.ranges()) >= 1, 10, "the first resend request")
    wait_for(lambda: len(cam.ranges()) >= 2, 5, "the second request, an interval later")
    time.sleep(0.5)  # shorter than resend_interval_s: no third request may come
    assert cam.ranges() == [(3, 3), (3, 3)]
