"""Bridge ingest throughput, side by side with two baselines, on one broker and one database.

Every consumer drains the same backlog from its own persistent MQTT session (QoS 1):

- bridge:       the real bridge (batched commits), observations/s persisted
- bare paho:    a subscriber that acknowledges and drops each message (the ceiling of
                any Python consumer); goal: bridge >= 0.5x
- per-message:  the same bridge with one INSERT + COMMIT per message (rate over the
                first `--single-messages`); goal: bridge >= 3x

Then a reconnect storm: many devices connect at once and each flushes its backlog while
the bridge runs; reported is the time until every observation is in the database.

PostgreSQL runs with its default durability (fsync and synchronous commit on), as in
production. Run from the repository root: `python bench/bridge_ingest.py` (`--quick`
for a short run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_bridge.config import config_from_data
from cloud_bridge.schema import migrate
from cloud_bridge.service import Bridge
from tests.bridge.factory import observation_message, publish_all
from tests.bridge.pg import PgCluster, find_pg_bin
from tests.mqtt_broker import Broker, find_mosquitto

RECEIVE_MAXIMUM = 2000
TIMEOUT_S = 300.0


def session_properties() -> Properties:
    """A persistent session with the bridge's receive maximum."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


class BareSubscriber:
    """Acknowledges and drops every message: the ceiling for a Python MQTT consumer."""

    def __init__(self, broker: Broker, group: str) -> None:
        self.received = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bare-{group}",
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self.client.on_message = self._on_message
        self.broker, self.group = broker, group

    def _on_message(self, client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        client.ack(msg.mid, msg.qos)
        self.received += 1

    def connect(self) -> None:
        """Connect with a persistent session and subscribe like the bridge does."""
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.connect(
            self.broker.host, self.broker.port, clean_start=False, properties=session_properties()
        )
        self.client.loop_start()
        self.client.subscribe(f"$share/{self.group}/cultivai/v1/+/observation", qos=1)
        if not done.wait(10):
            raise RuntimeError("bare subscriber could not subscribe")

    def disconnect(self) -> None:
        """Leave the session (and its queue) on the broker."""
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: Any, what: str) -> float:
    """Seconds until `condition()` is true; bounded by TIMEOUT_S."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > TIMEOUT_S:
            raise TimeoutError(f"{what} did not finish within {TIMEOUT_S} s")
        time.sleep(0.01)
    return time.perf_counter() - started


def rows(engine: Engine) -> int:
    """Observations stored."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM observations")).scalar_one())


def truncate(engine: Engine) -> None:
    """Empty the fleet tables between runs."""
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE observations, observation_keys, devices, dead_letters, resend_claims")
        )


def make_bridge(broker: Broker, url: str, group: str, max_messages: int) -> Bridge:
    """An in-process bridge in its own subscription group."""
    config = config_from_data(
        {
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "client_id": f"bridge-{group}",
                "group": group,
                "receive_maximum": RECEIVE_MAXIMUM,
            },
            "database": {"url": url, "pool_size": 4},
            "http": {"enabled": False},
            "gaps": {"enabled": False},
            "batching": {"max_messages": max_messages, "max_seconds": 0.25},
            "logging": {"level": "WARNING", "format": "text"},
        },
        env={},
    )
    return Bridge(config)


def drain_bridge(bridge: Bridge, engine: Engine, expected: int, target: int = 0) -> float:
    """Start a bridge on its filled session; seconds until `target` (default: all
    `expected`) rows are stored. With a smaller target the rest stays queued."""
    truncate(engine)
    goal = target or expected
    started = time.perf_counter()
    bridge.start()
    wait_until(lambda: rows_quick(bridge) >= goal, "bridge drain")
    elapsed = time.perf_counter() - started
    bridge.stop()
    stored = rows(engine)
    assert stored == expected if not target else stored >= goal, f"{stored} rows stored"
    return elapsed


def rows_quick(bridge: Bridge) -> float:
    """Observations the bridge has stored, from its own counter."""
    return float(bridge.metrics.stored.labels("observation")._value.get())


def storm(broker: Broker, bridge: Bridge, engine: Engine, devices: int, backlog: int) -> float:
    """`devices` devices connect at once and flush `backlog` observations each."""
    truncate(engine)
    bridge.start()
    assert bridge.link is not None and bridge.link.wait_ready(10)
    clients = []
    for d in range(devices):
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"storm-{d}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.max_inflight_messages_set(50)
        client.max_queued_messages_set(0)
        clients.append(client)
    started = time.perf_counter()

    def flush(client: mqtt.Client, device: str) -> None:
        client.connect(broker.host, broker.port)
        client.loop_start()
        for seq in range(1, backlog + 1):
            t, p = observation_message(device, seq)
            client.publish(t, p, qos=1)

    threads = [
        threading.Thread(target=flush, args=(c, f"storm-{d:03d}")) for d, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = devices * backlog
    wait_until(lambda: rows_quick(bridge) >= expected, "storm drain")
    elapsed = time.perf_counter() - started
    for c in clients:
        c.disconnect()
        c.loop_stop()
    bridge.stop()
    assert rows(engine) == expected
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print rates and ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000, help="backlog each consumer drains")
    p.add_argument("--devices", type=int, default=50, help="devices in that backlog")
    p.add_argument("--storm-devices", type=int, default=200)
    p.add_argument("--storm-backlog", type=int, default=50)
    p.add_argument(
        "--single-messages", type=int, default=2000, help="messages the per-message run stores"
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.storm_devices, args.storm_backlog = 4000, 50, 20
    pg_bin = find_pg_bin()
    if find_mosquitto() is None or pg_bin is None:
        print("needs mosquitto and the PostgreSQL server binaries (make system-deps)")
        return 2
    per_device = args.messages // args.devices
    total = per_device * args.devices
    workdir = Path(tempfile.mkdtemp(prefix="cultivai-bench-"))
    broker = Broker(workdir / "broker", extra="max_inflight_messages 0").start()
    cluster = PgCluster(pg_bin, durable=True).init().start()
    try:
        cluster.create_database("bench")
        url = cluster.url("bench")
        engine = create_engine(url)
        migrate(engine)
        run = uuid.uuid4().hex[:6]
        bare = BareSubscriber(broker, f"bare{run}")
        bare.connect()  # create each consumer's session, then leave it to fill up
        bare.disconnect()
        for group, size in ((f"batched{run}", 500), (f"single{run}", 1)):
            bridge = make_bridge(broker, url, group, size).start()
            assert bridge.link is not None and bridge.link.wait_ready(10)
            bridge.stop()
        print(f"publishing a backlog of {total} observations from {args.devices} devices ...")
        messages = [
            observation_message(f"cam-{d:03d}", s)
            for s in range(1, per_device + 1)
            for d in range(args.devices)
        ]
        publish_all(broker.host, broker.port, messages, timeout=TIMEOUT_S)

        started = time.perf_counter()
        bare.connect()
        wait_until(lambda: bare.received >= total, "bare drain")
        bare_s = time.perf_counter() - started
        bare.disconnect()
        print(f"bare paho: {total / bare_s:.0f} msg/s", flush=True)
        batched_s = drain_bridge(make_bridge(broker, url, f"batched{run}", 500), engine, total)
        print(f"bridge: {total / batched_s:.0f} obs/s", flush=True)
        # Committing each message is slow: its rate is measured on the first part only.
        single_n = min(total, args.single_messages)
        single_s = drain_bridge(
            make_bridge(broker, url, f"single{run}", 1), engine, total, target=single_n
        )
        print(f"per-message: {single_n / single_s:.0f} obs/s", flush=True)
        storm_s = storm(
            broker,
            make_bridge(broker, url, f"storm{run}", 500),
            engine,
            args.storm_devices,
            args.storm_backlog,
        )
        engine.dispose()
    finally:
        cluster.destroy()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    rate = {"bridge": total / batched_s, "bare": total / bare_s, "single": single_n / single_s}
    storm_total = args.storm_devices * args.storm_backlog
    print()
    print(f"backlog: {total} observations, QoS 1, drained from a persistent session")
    print(f"  bridge (batched commits)   {rate['bridge']:9.0f} obs/s persisted")
    print(f"  bare paho (ack and drop)   {rate['bare']:9.0f} msg/s")
    print(f"  per-message INSERT+COMMIT  {rate['single']:9.0f} obs/s persisted")
    print(f"  bridge / bare paho         {rate['bridge'] / rate['bare']:9.2f}x   (goal >= 0.5x)")
    print(f"  bridge / per-message       {rate['bridge'] / rate['single']:9.2f}x   (goal >= 3x)")
    print(
        f"reconnect storm: {args.storm_devices} devices x {args.storm_backlog} observations "
        f"= {storm_total}: all stored in {storm_s:.1f} s ({storm_total / storm_s:.0f} obs/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
