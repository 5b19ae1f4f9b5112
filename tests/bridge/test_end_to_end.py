"""The whole path with real parts: agent -> Mosquitto -> bridge -> PostgreSQL.

The broker is set up to drop messages the way a real one does when a client's
queue overflows; the bridge must notice the hole and the agent must fill it from
its own store in answer to the resend command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from cloud_bridge.service import Bridge
from edge.agent import Agent
from edge.clock import FakeClock
from tests.bridge.conftest import bridge_config, observation_keys
from tests.conftest import make_config
from tests.mqtt_broker import Broker, find_mosquitto

DEVICE = "e2e-cam"
FAST_GAPS = {"enabled": True, "grace_s": 0.3, "scan_interval_s": 0.1, "resend_interval_s": 1.0}


@pytest.fixture
def lossy_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that keeps at most 5 queued messages per offline session, then drops."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = Broker(tmp_path / "broker", extra="max_queued_messages 5").start()
    yield broker
    broker.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_messages_the_broker_drops_are_recovered_from_the_device(
    tmp_path: Path, lossy_broker: Broker, pg_url: str, engine: Engine
) -> None:
    def start_bridge() -> Bridge:
        cfg = bridge_config(lossy_broker, pg_url, gaps=FAST_GAPS, mqtt={"client_id": "bridge-e2e"})
        bridge = Bridge(cfg).start()
        assert bridge.link is not None and bridge.link.wait_ready(10)
        return bridge

    clock = FakeClock(datetime.now(timezone.utc))
    agent = Agent(
        make_config(
            tmp_path / "device",
            device={"id": DEVICE},
            camera={"width": 320, "height": 240},
            mqtt={"enabled": True, "host": lossy_broker.host, "port": lossy_broker.port},
        ),
        clock=clock,
    ).start()
    bridge = start_bridge()
    try:
        assert agent.link is not None and agent.link.listening.wait(20)
        agent.run(max_captures=3)
        wait_for(lambda: len(observation_keys(engine)) == 3, 20, "the first observations")
        bridge.stop()  # its session stays on the broker, which queues only 5 messages
        agent.run(max_captures=15)
        wait_for(lambda: agent.store.stats().outbox_depth == 0, 20, "the device to publish")
        bridge = start_bridge()
        wait_for(lambda: len(observation_keys(engine)) >= 8, 20, "the queued messages")
        time.sleep(0.5)
        assert len(observation_keys(engine)) < 18, "the broker dropped nothing: no hole to fill"
        agent.run(max_captures=1)  # a newer seq makes the dropped ones a hole
        wait_for(lambda: len(observation_keys(engine)) == 19, 30, "the hole to be filled")
        assert observation_keys(engine) == [(DEVICE, s) for s in range(1, 20)]
        assert bridge.metrics.resend_requests._value.get() >= 1
    finally:
        bridge.stop()
        agent.close()
