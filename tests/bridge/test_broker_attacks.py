"""Attacks and restarts against Mosquitto running the shipped config and ACL, with the bridge."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import Engine

from cloud_bridge.service import Bridge
from tests.bridge.conftest import bridge_config, count, observation_keys
from tests.bridge.factory import observation_message, wait_for
from tests.conftest import REPO
from tests.mqtt_broker import ShippedBroker, find_mosquitto

BRIDGE_USER = "cultivai-bridge"
USERS = {"dev-a": "pw-a", "dev-b": "pw-b", "dev-c": "pw-c", BRIDGE_USER: "pw-bridge"}


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[ShippedBroker]:
    """Mosquitto with examples/mosquitto/cultivai.conf and cultivai.acl."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = ShippedBroker(tmp_path / "broker", USERS).start()
    yield broker
    broker.stop()


@pytest.fixture
def bridge_on_shipped(
    shipped: ShippedBroker, pg_url: str, tmp_path: Path
) -> Iterator[Callable[[], Bridge]]:
    """Start bridges that log in as the bridge user; all stopped at the end."""
    secret = tmp_path / "bridge-password"
    secret.write_text(USERS[BRIDGE_USER])
    secret.chmod(0o600)
    started: list[Bridge] = []

    def start() -> Bridge:
        config = bridge_config(
            shipped,
            pg_url,
            mqtt={
                "username": BRIDGE_USER,
                "password_file": str(secret),
                "client_id": BRIDGE_USER,
                "group": BRIDGE_USER,
            },
        )
        bridge = Bridge(config).start()
        started.append(bridge)
        assert bridge.link is not None and bridge.link.wait_ready(10), "bridge did not subscribe"
        return bridge

    yield start
    for bridge in started:
        bridge.stop()
        if bridge.engine is not None:
            bridge.engine.dispose()


class Device:
    """A logged-in MQTT 5 client that records whether the broker dropped it."""

    def __init__(
        self, broker: ShippedBroker, user: str, client_id: str | None = None, clean: bool = True
    ) -> None:
        self.dropped = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or user,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.c.username_pw_set(user, USERS[user])
        connected = threading.Event()
        self.c.on_connect = lambda *_: connected.set()
        self.c.on_disconnect = lambda *_: self.dropped.set()
        self.c.connect(broker.host, broker.port, clean_start=clean)
        self.c.loop_start()
        assert connected.wait(10), f"{user} could not connect"

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        done = threading.Event()
        self.c.on_subscribe = lambda *_: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(10)

    def publish(self, device_id: str, seqs: range) -> None:
        """Publish observations of `device_id` at QoS 1 and wait for every PUBACK."""
        infos = [self.c.publish(*observation_message(device_id, s), qos=1) for s in seqs]
        for info in infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        """Disconnect."""
        self.c.disconnect()
        self.c.loop_stop()


def _keys(device_id: str, seqs: range) -> list[tuple[str, int]]:
    return [(device_id, s) for s in seqs]


def test_a_device_in_the_bridge_group_cannot_swallow_observations(
    shipped: ShippedBroker, engine: Engine, bridge_on_shipped: Callable[[], Bridge]
) -> None:
    bridge_on_shipped()
    thieves = [Device(shipped, user) for user in ("dev-b", "dev-c")]
    for thief in thieves:
        thief.subscribe(f"$share/{BRIDGE_USER}/cultivai/v1/+/observation")
    device = Device(shipped, "dev-a")
    device.publish("dev-a", range(1, 41))
    wait_for(lambda: count(engine) >= 40, 15, "all 40 observations despite the thieves")
    assert observation_keys(engine) == _keys("dev-a", range(1, 41))
    for client in [*thieves, device]:
        client.close()


def test_a_device_cannot_wipe_the_bridge_session_with_its_client_id(
    shipped: ShippedBroker, engine: Engine, bridge_on_shipped: Callable[[], Bridge]
) -> None:
    bridge_on_shipped().stop()
    thief = Device(shipped, "dev-b", client_id=BRIDGE_USER, clean=True)
    thief.close()
    device = Device(shipped, "dev-a")
    device.publish("dev-a", range(1, 21))
    device.close()
    bridge_on_shipped()
    wait_for(lambda: count(engine) >= 20, 15, "the 20 queued while the bridge was away")
    assert observation_keys(engine) == _keys("dev-a", range(1, 21))


def test_a_device_cannot_kick_another_device_with_its_client_id(shipped: ShippedBroker) -> None:
    victim = Device(shipped, "dev-a")
    thief = Device(shipped, "dev-b", client_id="dev-a")
    thief.publish("dev-b", range(1, 2))  # a round trip: the broker has handled the CONNECT
    assert not victim.dropped.is_set(), "the broker dropped dev-a for dev-b's connection"
    thief.close()
    victim.close()


def test_a_clean_broker_restart_while_the_bridge_is_away_loses_nothing(
    shipped: ShippedBroker, engine: Engine, bridge_on_shipped: Callable[[], Bridge]
) -> None:
    bridge_on_shipped().stop()
    device = Device(shipped, "dev-a")
    device.publish("dev-a", range(1, 11))
    device.close()
    shipped.stop()
    shipped.start()
    device = Device(shipped, "dev-a")
    device.publish("dev-a", range(11, 21))
    device.close()
    bridge_on_shipped()
    wait_for(lambda: count(engine) >= 20, 15, "the 20 published around the broker restart")
    assert observation_keys(engine) == _keys("dev-a", range(1, 21))


def test_the_bridge_may_send_resend_commands_only(shipped: ShippedBroker) -> None:
    bridge = Device(shipped, BRIDGE_USER)
    got: dict[str, Any] = {}
    device = Device(shipped, "dev-a")
    device.c.on_message = lambda _c, _u, msg: got.setdefault(msg.topic, msg.payload)
    device.subscribe("cultivai/v1/dev-a/cmd/#")
    bridge.c.publish("cultivai/v1/dev-a/cmd/capture", b"{}", qos=1).wait_for_publish(10)
    bridge.c.publish("cultivai/v1/dev-a/cmd/resend", b"{}", qos=1).wait_for_publish(10)
    wait_for(lambda: "cultivai/v1/dev-a/cmd/resend" in got, 10, "the resend command")
    assert "cultivai/v1/dev-a/cmd/capture" not in got
    bridge.close()
    device.close()


def test_every_shipped_listener_binds_client_ids_to_user_names() -> None:
    # Mosquitto 2.0 applies use_username_as_clientid to the listener it follows only.
    for path in (
        REPO / "examples" / "mosquitto" / "cultivai.conf",
        REPO / "ansible" / "roles" / "mqtt_broker" / "templates" / "mosquitto.conf.j2",
    ):
        sections = ("\n" + path.read_text()).split("\nlistener ")[1:]
        assert sections, f"{path.name} has no listener"
        for section in sections:
            assert "\nuse_username_as_clientid true\n" in section, f"{path.name}: {section[:40]}"
