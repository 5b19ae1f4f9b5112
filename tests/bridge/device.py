"""A simulated camera for gap tests: publishes observations and answers `resend` commands."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.protocol import ResendCommand, command_topic
from tests.bridge.factory import observation_message, status_message


class FakeCamera:
    """Publishes the observations it is given (a test skips some) and resends on request."""

    def __init__(self, host: str, port: int, device_id: str, answer: bool = True) -> None:
        self.device_id = device_id
        self.answer = answer
        self.requests: list[ResendCommand] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"device-{device_id}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_message = self._on_command
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(command_topic(device_id, "resend"), qos=1)
        if not subscribed.wait(5):
            raise TimeoutError("device could not subscribe to its commands")

    def online(self, state: str = "online") -> None:
        """Publish the retained status message."""
        t, p = status_message(self.device_id, state)
        self.client.publish(t, p, qos=1, retain=True).wait_for_publish(5)

    def publish(self, seqs: Iterable[int]) -> None:
        """Publish these observations at QoS 1."""
        for seq in seqs:
            t, p = observation_message(self.device_id, seq)
            self.client.publish(t, p, qos=1).wait_for_publish(5)

    def _on_command(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        command = ResendCommand.model_validate_json(msg.payload)
        with self.lock:
            self.requests.append(command)
        if self.answer:
            threading.Thread(
                target=self.publish, args=(range(command.from_seq, command.to_seq + 1),)
            ).start()

    def ranges(self) -> list[tuple[int, int]]:
        """(from_seq, to_seq) of every resend request so far."""
        with self.lock:
            return [(r.from_seq, r.to_seq) for r in self.requests]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
