"""The private broker fixture really brokers messages and survives a restart."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def test_private_broker_delivers_a_message(broker: Any) -> None:
    got = threading.Event()
    received: list[bytes] = []

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.payload)
        got.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub")
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("t/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    # Publish until the subscription is active: the subscribe is asynchronous.
    for _ in range(50):
        pub.publish("t/1", b"hello", qos=1).wait_for_publish(5)
        if got.wait(0.1):
            break
    pub.loop_stop()
    sub.loop_stop()
    assert received and received[0] == b"hello"
    broker.stop()
    broker.start()
    assert "mosquitto version" in broker.log()
