"""Outbox drain rate against a bare paho publisher, on the same private broker.

Both send the same observation payloads at QoS 1 with the same in-flight window
and count a message done when its PUBACK is in; the outbox also reads each batch
from SQLite and deletes it there after the PUBACK, which is what the goal prices.
The two runs alternate. Goal: the outbox reaches at least 0.7x the bare rate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import median, print_goal, print_table
from edge.config import DeviceConfig, MqttConfig
from edge.mqtt import MqttLink
from edge.protocol import Status, topic
from edge.store import Store
from tests.mqtt_broker import Broker
from tests.test_store import builder

DEVICE = "bench-cam"
WINDOW = 50


def payloads(count: int) -> list[bytes]:
    build = builder()
    return [
        build(seq, False).model_copy(update={"device_id": DEVICE}).model_dump_json().encode()
        for seq in range(1, count + 1)
    ]


def bare_paho(broker: Broker, messages: list[bytes]) -> float:
    """Seconds for a plain paho client to get every PUBACK."""
    done = threading.Event()
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="bare", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    started = time.perf_counter()
    for payload in messages:
        client.publish(topic(DEVICE, "observation"), payload, qos=1)
    if not done.wait(300):
        raise TimeoutError("bare publisher did not finish")
    elapsed = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    return elapsed


def outbox_drain(broker: Broker, messages: list[bytes], folder: Path) -> float:
    """Seconds for the agent's publisher to empty an outbox holding the messages."""
    store = Store(folder)
    with store.transaction() as tx:
        for seq, payload in enumerate(messages, start=1):
            tx.enqueue(topic(DEVICE, "observation"), payload, seq=seq)
    outbox = store.open_outbox()
    link = MqttLink(
        MqttConfig(enabled=True, host=broker.host, port=broker.port, inflight_window=WINDOW),
        DeviceConfig(id=DEVICE),
        outbox,
        status=lambda state: Status(device_id=DEVICE, state="online"),
        stats=lambda: b"{}",
        on_command=lambda name, payload: None,
    )
    started = time.perf_counter()
    link.start()
    deadline = started + 300
    while outbox.depth() > 0:
        if time.perf_counter() > deadline:
            raise TimeoutError("outbox did not drain")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    link.stop()
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    messages = payloads(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker").start()
        try:
            bare, ours = [], []
            for i in range(args.repeats):
                bare.append(bare_paho(broker, messages))
                ours.append(outbox_drain(broker, messages, Path(tmp) / f"store{i}"))
        finally:
            broker.stop()
    n = args.messages
    bare_rate, our_rate = n / median(bare), n / median(ours)
    print(
        f"{n} observations ({len(messages[0])} bytes each), QoS 1, window {WINDOW}, "
        f"{args.repeats} alternating runs on one private Mosquitto"
    )
    print_table(
        ["publisher", "median s", "observations/s"],
        [
            ["bare paho", f"{median(bare):.2f}", f"{bare_rate:.0f}"],
            ["outbox drain", f"{median(ours):.2f}", f"{our_rate:.0f}"],
        ],
    )
    ratio = our_rate / bare_rate
    print(f"outbox / bare: {ratio:.2f}x")
    print_goal(f"outbox drain rate >= 0.7x bare paho (measured {ratio:.2f}x)", ratio >= 0.7)


if __name__ == "__main__":
    main()
