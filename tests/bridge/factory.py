"""Build protocol messages for tests, and publish them to a broker the way devices do."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.protocol import (
    Alert,
    CanopyBlock,
    ExposureBlock,
    HealthBlock,
    ImageBlock,
    ModelBlock,
    Observation,
    Status,
    topic,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
_client_ids = itertools.count(1)


def observation(
    device_id: str,
    seq: int,
    site: str = "farm1",
    room: str = "room1",
    label: str = "healthy",
    captured_at: datetime | None = None,
) -> Observation:
    """A complete observation whose values depend on (device_id, seq)."""
    cover = (seq * 7 % 100) + 0.5
    return Observation(
        device_id=device_id,
        seq=seq,
        captured_at=captured_at or T0 + timedelta(minutes=15 * seq),
        site=site,
        room=room,
        camera="synthetic",
        canopy=CanopyBlock(
            cover_pct=min(cover, 100.0),
            area_px=1000 * seq,
            hue_mean_deg=98.5,
            hue_median_deg=99.0,
            greenness_index=0.21,
            yellow_pct=1.5,
            brown_pct=0.25,
            exg_threshold=0.05,
        ),
        exposure=ExposureBlock(
            verdict="ok", mean_luma=118.0, under_pct=0.4, over_pct=0.1, sharpness=312.5
        ),
        image=ImageBlock(width=1280, height=960, stored=True, source="synthetic"),
        health=HealthBlock(label=label, confidence=0.93, scores={label: 0.93, "other": 0.07}),
        model=ModelBlock(name="plant_health", version="1.0.0", backend="litert-cpu"),
    )


def observation_message(device_id: str, seq: int, **kwargs: object) -> tuple[str, bytes]:
    """(topic, payload) of an observation."""
    obs = observation(device_id, seq, **kwargs)  # type: ignore[arg-type]
    return topic(device_id, "observation"), obs.model_dump_json().encode()


def status_message(
    device_id: str, state: str = "online", started_at: datetime | None = None
) -> tuple[str, bytes]:
    """(topic, payload) of a status message."""
    status = Status(
        device_id=device_id,
        state=state,
        firmware="0.1.0",
        model_version="1.0.0",
        model_backend="litert-cpu",
        started_at=started_at or T0,
    )
    return topic(device_id, "status"), status.model_dump_json().encode()


def alert_message(
    device_id: str, alert_id: int, state: str = "raised", seq: int = 1
) -> tuple[str, bytes]:
    """(topic, payload) of an alert."""
    alert = Alert(
        device_id=device_id,
        alert_id=alert_id,
        kind="yellowing",
        state=state,
        at=T0 + timedelta(minutes=seq),
        seq=seq,
        message="yellow_pct rose 9 points over the baseline",
        value=11.0,
        baseline=2.0,
    )
    return topic(device_id, "alert"), alert.model_dump_json().encode()


def connect(host: str, port: int, client_id: str | None = None) -> mqtt.Client:
    """A connected MQTT 5 client with its network loop running."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-pub-{next(_client_ids)}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    return client


def publish_all(
    host: str, port: int, messages: Iterable[tuple[str, bytes]], timeout: float = 60.0
) -> int:
    """Publish at QoS 1 and wait until the broker acknowledged every message."""
    client = connect(host, port)
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("broker did not acknowledge every message in time")
        return len(infos)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll `condition` until true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def insert_at_old_revision(engine: Any, obs: Observation) -> None:
    """Store an observation in a database migrated only part way: later columns left out."""
    from sqlalchemy import MetaData, Table

    from cloud_bridge.store import observation_row

    row = observation_row(obs, datetime.now(timezone.utc), json.loads(obs.model_dump_json()))
    table = Table("observations", MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), {k: v for k, v in row.items() if k in table.c})
