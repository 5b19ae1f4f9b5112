"""A site's Mosquitto bridged to the cloud broker, both configured by the Ansible role:
devices publish to the site, the bridge consumes from the cloud, the WAN link is cut
under load and restored, and every observation arrives once.

CULTIVAI_WAN_CUT_S sets the outage (15 s here; `make wan-outage` runs a minute)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import Engine

from cloud_bridge.config import config_from_data
from cloud_bridge.service import Bridge
from tests.bridge.conftest import bridge_settings, observation_keys
from tests.bridge.factory import observation_message, wait_for
from tests.bridge.site_broker import Link, RoleBroker
from tests.mqtt_broker import find_mosquitto

pytestmark = pytest.mark.slow
CUT_S = float(os.environ.get("CULTIVAI_WAN_CUT_S", "15"))
DEVICES = {"site-cam-1": "pw-cam-1", "site-cam-2": "pw-cam-2", "site-cam-3": "pw-cam-3"}
RATE_HZ = 5.0  # observations per device per second: far above a real room, to load the link
SITE_USER, SITE_PASSWORD = "site-farm1", "site-secret"
BRIDGE_PASSWORD = "bridge-secret"


class Device(threading.Thread):
    """One device publishing observations to its site broker at QoS 1, as itself."""

    def __init__(self, broker: RoleBroker, device_id: str, password: str) -> None:
        super().__init__(daemon=True, name=device_id)
        self.device_id = device_id
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(device_id, password)
        self.client.max_inflight_messages_set(50)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.stop = threading.Event()
        self.seq = 0
        self.acked: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(1 / RATE_HZ):
                self.seq += 1
                t, payload = observation_message(self.device_id, self.seq, site="farm1")
                info = self.client.publish(t, payload, qos=1)
                info.wait_for_publish(10)
                if not info.is_published():
                    raise AssertionError(f"site broker did not take seq {self.seq}")
                self.acked.append(self.seq)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        self.client.disconnect()
        self.client.loop_stop()
        assert self.error is None, self.error


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[RoleBroker, RoleBroker, Link]]:
    """Cloud broker, the WAN link to it, and the site broker bridged through the link."""
    if find_mosquitto() is None:
        reason = "mosquitto is not installed (make system-deps installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    site_acl = [
        *(f"topic write cultivai/v1/{d}/#" for d in DEVICES),
        *(f"topic read cultivai/v1/{d}/cmd/#" for d in DEVICES),
    ]
    cloud = RoleBroker(
        tmp_path / "cloud",
        "cloud",
        {},
        BRIDGE_PASSWORD,
        mqtt_broker_extra_users=[{"user": SITE_USER, "password": SITE_PASSWORD, "acl": site_acl}],
    ).start()
    link = Link(cloud.port)
    site = RoleBroker(
        tmp_path / "site",
        "farm1",
        DEVICES,
        "unused-on-a-site",
        mqtt_broker_cloud_bridge=True,
        mqtt_broker_cloud_host="127.0.0.1",
        mqtt_broker_cloud_port=link.port,
        mqtt_broker_cloud_tls=False,
        mqtt_broker_cloud_username=SITE_USER,
        mqtt_broker_cloud_password=SITE_PASSWORD,
        mqtt_broker_cloud_restart_timeout="1 3",
        mqtt_broker_cloud_keepalive_s=5,
    ).start()
    yield cloud, site, link
    site.stop()
    link.cut()
    cloud.stop()


def test_the_role_renders_a_persistent_qos1_bridge(
    site: tuple[RoleBroker, RoleBroker, Link],
) -> None:
    conf = site[1].rendered["mosquitto.conf"]
    for line in (
        "connection cloud",
        "cleansession false",
        "topic cultivai/v1/# out 1",
        "topic cultivai/v1/+/cmd/# in 1",
        f"remote_username {SITE_USER}",
        "persistence true",
    ):
        assert f"\n{line}\n" in conf, line
    assert "connection cloud" not in site[0].rendered["mosquitto.conf"]


def test_a_wan_cut_under_load_loses_and_repeats_nothing(
    site: tuple[RoleBroker, RoleBroker, Link], pg_url: str, engine: Engine, tmp_path: Path
) -> None:
    cloud, site_broker, link = site
    password_file = tmp_path / "bridge-password"
    password_file.write_text(BRIDGE_PASSWORD + "\n")
    settings = bridge_settings(
        cloud,
        pg_url,
        mqtt={"username": "cultivai-bridge", "password_file": str(password_file)},
    )
    settings["mqtt"]["client_id"] = "cultivai-bridge"  # the broker pins it to the user name
    bridge = Bridge(config_from_data(settings, env={})).start()
    devices = [Device(site_broker, d, p) for d, p in DEVICES.items()]
    try:
        assert bridge.link is not None and bridge.link.wait_ready(10)
        _wan_cut_under_load(bridge, devices, link, engine)
    finally:
        bridge.stop()


def _wan_cut_under_load(bridge: Bridge, devices: list[Device], link: Link, engine: Engine) -> None:
    try:
        for d in devices:
            d.start()
        wait_for(lambda: len(observation_keys(engine)) >= 15, 30, "first observations at the cloud")
        link.cut()
        cut_at_stored = len(observation_keys(engine))
        cut_at_sent = sum(len(d.acked) for d in devices)
        time.sleep(CUT_S)
        # The site kept working: its broker took every observation meanwhile...
        during = sum(len(d.acked) for d in devices) - cut_at_sent
        assert during >= len(DEVICES) * RATE_HZ * CUT_S * 0.5, during
        # ...and none of them reached the cloud.
        assert len(observation_keys(engine)) - cut_at_stored <= len(DEVICES) * RATE_HZ
        link.restore()
        time.sleep(3)  # load continues after the link is back
    finally:
        for d in devices:
            d.finish()
    expected = sorted((d.device_id, s) for d in devices for s in d.acked)
    wait_for(
        lambda: len(observation_keys(engine)) >= len(expected),
        90,
        f"all {len(expected)} observations at the cloud",
        poll=0.5,
    )
    time.sleep(1)
    assert observation_keys(engine) == expected
    assert link.connections >= 2  # the site broker reconnected through the restored link
    duplicates = sum(
        bridge.metrics.duplicates.labels(kind)._value.get() for kind in ("observation",)
    )
    print(
        f"{len(expected)} observations, {during} during a {CUT_S:.0f} s cut, "
        f"{duplicates:.0f} redelivered and dropped as duplicates"
    )


def _client(broker: RoleBroker, user: str, password: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=user, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(user, password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def test_commands_come_down_to_the_site_once(
    site: tuple[RoleBroker, RoleBroker, Link],
) -> None:
    cloud, site_broker, _ = site
    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    device = _client(site_broker, "site-cam-1", DEVICES["site-cam-1"])
    device.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    device.on_subscribe = lambda *a: subscribed.set()
    device.subscribe("cultivai/v1/site-cam-1/cmd/#", qos=1)
    assert subscribed.wait(10)
    sender = _client(cloud, "cultivai-bridge", BRIDGE_PASSWORD)
    try:
        topic = "cultivai/v1/site-cam-1/cmd/resend"
        # The bridge's subscription on the cloud is made once the site connects.
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            sender.publish(topic, b'{"probe": true}', qos=1).wait_for_publish(5)
            time.sleep(0.5)
        assert got, "no command reached the site"
        got.clear()
        sender.publish(topic, b'{"from_seq": 1, "to_seq": 5}', qos=1).wait_for_publish(5)
        wait_for(lambda: bool(got), 10, "the command at the device")
        time.sleep(1)  # an echo through the bridge would arrive by now
        assert got == [(topic, b'{"from_seq": 1, "to_seq": 5}')]
    finally:
        for c in (device, sender):
            c.disconnect()
            c.loop_stop()
