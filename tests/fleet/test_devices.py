"""What site.yml installed runs: selftest, /healthz, the broker's ACL, data into the bridge."""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.fleet.sandbox import DEVICES, Sandbox, device_password

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class TlsClient:
    """An MQTT 5 client over the fleet's TLS listener that records PUBACK reason codes."""

    def __init__(self, fleet: Sandbox, user: str, password: str, client_id: str) -> None:
        self.acks: dict[int, Any] = {}
        self.done = threading.Condition()
        self.connected = threading.Event()
        self.connect_reason: Any = None
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.c.username_pw_set(user, password)
        self.c.tls_set(ca_certs=str(fleet.pki["ca"]), cert_reqs=ssl.CERT_REQUIRED)
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", fleet.broker_port)
        self.c.loop_start()
        assert self.connected.wait(10)

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connect_reason = reason
        self.connected.set()

    def _on_publish(self, c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        with self.done:
            self.acks[mid] = reason
            self.done.notify_all()

    def publish(self, topic: str, payload: bytes = b"{}") -> Any:
        mid = self.c.publish(topic, payload, qos=1).mid
        with self.done:
            assert self.done.wait_for(lambda: mid in self.acks, timeout=10)
            return self.acks[mid]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.mark.parametrize("device", DEVICES)
def test_installed_agent_passes_its_selftest(fleet: Sandbox, device: str) -> None:
    results = fleet.selftest(device)
    assert {part: r["state"] for part, r in results.items()} == {
        "config": "ok",
        "storage": "ok",
        "camera": "ok",
        "model": "ok",
        "broker": "ok",
        "gpio": "skip",
    }, results


@pytest.mark.parametrize("device", DEVICES)
def test_installed_agent_answers_healthz(fleet: Sandbox, device: str) -> None:
    assert fleet.healthz(device) == {"ok": True}


def test_a_device_cannot_publish_to_another_devices_topics(fleet: Sandbox) -> None:
    a = TlsClient(fleet, "dev-a", device_password("dev-a"), "fleet-test-dev-a")
    try:
        assert not a.publish("cultivai/v1/dev-a/fleet-test").is_failure
        denied = a.publish("cultivai/v1/dev-b/observation")
        assert denied.is_failure and denied.getName() == "Not authorized"
        assert a.publish("cultivai/v1/dev-b/cmd/capture").is_failure
    finally:
        a.close()


def test_a_device_cannot_log_in_with_another_devices_password(fleet: Sandbox) -> None:
    client = TlsClient(fleet, "dev-a", device_password("dev-b"), "fleet-test-wrong")
    try:
        assert client.connect_reason.is_failure
    finally:
        client.close()


def test_an_observation_travels_from_device_to_the_bridge_database(fleet: Sandbox) -> None:
    # The broker binds client ids to user names, so the selftest above took over dev-b's
    # connection for a moment; a capture command sent while dev-b reconnects is not queued
    # (clean start). Ask again until the observation arrives.
    operator = TlsClient(fleet, "fleet-operator", "fleet-operator-pw", "fleet-operator")
    dsn = f"postgresql://postgres@127.0.0.1:{fleet.pg_port}/cultivai"
    deadline = time.monotonic() + 60
    next_ask = 0.0
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                if time.monotonic() >= next_ask:
                    ack = operator.publish("cultivai/v1/dev-b/cmd/capture", json.dumps({}).encode())
                    assert not ack.is_failure
                    next_ask = time.monotonic() + 5
                rows = conn.execute(
                    "SELECT seq FROM observations WHERE device_id = 'dev-b'"
                ).fetchall()
                if rows or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    finally:
        operator.close()
    assert rows, fleet.process_log("dev-b") + fleet.process_log("bridge")
