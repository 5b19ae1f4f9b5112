"""The gap filler asks every device in turn, and asks devices that kept publishing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from cloud_bridge.config import GapsConfig
from cloud_bridge.gaps import MAX_COMMANDS_PER_DEVICE, GapFiller, find_holes
from cloud_bridge.metrics import BridgeMetrics
from cloud_bridge.service import Bridge
from cloud_bridge.store import observation_row
from cloud_bridge.tables import Device, ObservationRow
from tests.bridge.factory import (
    observation,
    observation_message,
    publish_all,
    status_message,
    wait_for,
)
from tests.bridge.test_gaps import NOW

CONFIG = GapsConfig(grace_s=60, give_up_after_s=3600, max_requests_per_minute=1000)


def _store(engine: Engine, device_id: str, seqs: list[int]) -> None:
    stored_at = NOW - timedelta(seconds=120)
    rows = []
    for seq in seqs:
        obs = observation(device_id, seq)
        rows.append(observation_row(obs, stored_at, obs.model_dump(mode="json")))
    with Session(engine) as session, session.begin():
        session.execute(insert(ObservationRow), rows)


def _filler(engine: Engine, sent: list[str]) -> GapFiller:
    return GapFiller(engine, CONFIG, lambda t, p: sent.append(t), BridgeMetrics(), lambda: NOW)


def test_a_device_with_one_hole_is_asked_while_another_has_thousands(engine: Engine) -> None:
    _store(engine, "cam-a-busy", list(range(1, 12_002, 2)))  # 6,000 holes
    _store(engine, "cam-z-quiet", [1, 3])  # one hole, at seq 2
    with Session(engine) as session:
        holes = find_holes(session, NOW, CONFIG.grace_s, CONFIG.give_up_after_s)
    assert sum(h.device_id == "cam-a-busy" for h in holes) == MAX_COMMANDS_PER_DEVICE
    sent: list[str] = []
    _filler(engine, sent).scan_once()
    assert "cultivai/v1/cam-z-quiet/cmd/resend" in sent


def test_a_device_that_published_after_its_offline_status_is_asked(engine: Engine) -> None:
    _store(engine, "cam-1", [1, 3])
    with Session(engine) as session, session.begin():
        session.add(
            Device(
                id="cam-1",
                first_seen=NOW,
                last_seen=NOW,
                online=False,
                status_at=NOW - timedelta(seconds=300),
            )
        )
    sent: list[str] = []
    assert _filler(engine, sent).scan_once() == 1
    assert sent == ["cultivai/v1/cam-1/cmd/resend"]


def _online(engine: Engine, device_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Device.online).where(Device.id == device_id)).scalar()


def test_presence_follows_the_latest_message_of_a_device_that_stayed_up(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    start_bridge()
    # The broker restarts: the device's Will says "offline", the device reconnects in the
    # same session and says "online" again, then keeps publishing.
    publish_all(broker.host, broker.port, [status_message("cam-up", "online")])
    wait_for(lambda: _online(engine, "cam-up") is True, 10, "cam-up online")
    publish_all(broker.host, broker.port, [status_message("cam-up", "offline")])
    wait_for(lambda: _online(engine, "cam-up") is False, 10, "cam-up offline (its Will)")
    publish_all(broker.host, broker.port, [status_message("cam-up", "online")])
    wait_for(lambda: _online(engine, "cam-up") is True, 10, "cam-up online after reconnecting")
    # A Will followed by an observation: the observation is the later word.
    publish_all(broker.host, broker.port, [status_message("cam-obs", "offline")])
    wait_for(lambda: _online(engine, "cam-obs") is False, 10, "cam-obs offline")
    publish_all(broker.host, broker.port, [observation_message("cam-obs", 1)])
    wait_for(lambda: _online(engine, "cam-obs") is True, 10, "cam-obs online after publishing")
