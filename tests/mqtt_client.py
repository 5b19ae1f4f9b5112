"""A test-side MQTT client that records what crosses the wire."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Recorder:
    """Subscribes and keeps every message; persistent session so a broker restart loses nothing."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str],
        client_id: str = "recorder",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        if username:
            self.client.username_pw_set(username, password)
        self.topics = topics
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(host, port, keepalive=10, clean_start=False, properties=props)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("recorder did not subscribe")

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        for t in self.topics:
            client.subscribe(t, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def on(self, suffix: str) -> list[mqtt.MQTTMessage]:
        """Messages whose topic ends with `suffix`."""
        with self.lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def json(self, suffix: str) -> list[dict[str, Any]]:
        """Decoded JSON payloads of messages whose topic ends with `suffix`."""
        return [json.loads(m.payload) for m in self.on(suffix)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Poll until predicate() is true; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def publish(
    host: str,
    port: int,
    topic: str,
    payload: bytes | str,
    client_id: str = "sender",
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if username:
        client.username_pw_set(username, password)
    client.connect(host, port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
