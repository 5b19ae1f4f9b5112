"""Messages from the broker become exactly one row each, whatever the broker repeats."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select

from cloud_bridge.schema import migrate
from cloud_bridge.service import Bridge
from cloud_bridge.tables import AlertRow, Device, ObservationRow
from tests.bridge.conftest import bridge_config, count, observation_keys
from tests.bridge.factory import (
    alert_message,
    observation,
    observation_message,
    publish_all,
    status_message,
    wait_for,
)


def _acked(bridge: Bridge) -> float:
    return bridge.metrics.acked._value.get()


def test_ten_thousand_observations_with_ten_percent_duplicates_make_ten_thousand_rows(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    bridge = start_bridge()
    messages = [observation_message(f"cam-{d:02d}", s) for d in range(50) for s in range(1, 201)]
    rng = random.Random(5)
    messages += rng.sample(messages, 1000)
    rng.shuffle(messages)
    publish_all(broker.host, broker.port, messages)
    wait_for(lambda: _acked(bridge) >= 11_000, 60, "11,000 acknowledgements")
    assert count(engine) == 10_000
    assert observation_keys(engine) == sorted(
        (f"cam-{d:02d}", s) for d in range(50) for s in range(1, 201)
    )
    assert bridge.metrics.duplicates.labels("observation")._value.get() == 1000
    assert bridge.metrics.stored.labels("observation")._value.get() == 10_000


def test_stored_observation_keeps_measurements_and_the_whole_payload(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    bridge = start_bridge()
    publish_all(broker.host, broker.port, [observation_message("cam-1", 7, label="yellowing")])
    wait_for(lambda: _acked(bridge) >= 1, 10, "the acknowledgement")
    with engine.connect() as conn:
        row = conn.execute(select(ObservationRow)).one()
    sent = observation("cam-1", 7, label="yellowing")
    assert (row.device_id, row.seq, row.captured_at) == ("cam-1", 7, sent.captured_at)
    assert (row.health_label, row.cover_pct, row.site, row.room) == (
        "yellowing",
        sent.canopy.cover_pct,
        "farm1",
        "room1",
    )
    assert row.payload == sent.model_dump(mode="json")


def test_status_alerts_and_observations_keep_the_device_row_current(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    bridge = start_bridge()
    publish_all(
        broker.host,
        broker.port,
        [
            status_message("cam-1", "online"),
            observation_message("cam-1", 1),
            observation_message("cam-1", 2, room="room9"),
            alert_message("cam-1", 1, "raised"),
            alert_message("cam-1", 1, "raised"),
        ],
    )
    wait_for(lambda: _acked(bridge) >= 5, 10, "five acknowledgements")
    with engine.connect() as conn:
        device = conn.execute(select(Device)).one()
        alerts = conn.execute(select(AlertRow)).all()
    assert (device.id, device.online, device.firmware, device.last_seq) == (
        "cam-1",
        True,
        "0.1.0",
        2,
    )
    assert (device.site, device.room) == ("farm1", "room9")
    assert len(alerts) == 1
    publish_all(broker.host, broker.port, [status_message("cam-1", "offline")])
    wait_for(lambda: _acked(bridge) >= 6, 10, "the offline status")
    with engine.connect() as conn:
        assert conn.execute(select(Device.online)).scalar_one() is False
    assert count(engine) == 2


def test_the_embedded_sqlite_database_works_end_to_end(broker: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.sqlite3'}"
    engine = create_engine(url)
    migrate(engine)
    bridge = Bridge(bridge_config(broker, url)).start()
    try:
        assert bridge.link is not None and bridge.link.wait_ready(10)
        messages = [observation_message(f"cam-{d}", s) for d in range(5) for s in range(1, 41)]
        publish_all(broker.host, broker.port, messages + messages[:20])
        wait_for(lambda: _acked(bridge) >= 220, 30, "220 acknowledgements")
        assert count(engine) == 200
    finally:
        bridge.stop()
        engine.dispose()
