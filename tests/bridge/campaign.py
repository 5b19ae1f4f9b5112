"""A seeded fault campaign: scripted devices, the shipped broker config, a bridge, PostgreSQL.

Faults at random (seeded) moments: broker kill -9 and clean restart, bridge kill -9 and
clean restart, a database outage, device restarts (a dropped connection, its Will, and
a new session that keeps its stored observations, like the agent's SQLite). At the end
every device publishes once more, so a lost tail shows up as a hole, and the campaign
waits for the gap filler to repair what the broker lost.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import Engine, func, select

from cloud_bridge.tables import ObservationRow
from edge.protocol import ResendCommand, command_topic
from tests.bridge.conftest import bridge_settings
from tests.bridge.factory import observation_message, status_message
from tests.bridge.pg import PgCluster
from tests.bridge.process import BridgeProcess
from tests.mqtt_broker import ShippedBroker, free_port

BRIDGE_USER = "cultivai-bridge"
FAULTS = (
    "broker_kill",
    "broker_restart",
    "bridge_kill",
    "bridge_restart",
    "db_outage",
    "device_restart",
)


def fault_bridge(
    broker: ShippedBroker, workdir: Path, password: str, token: str, database: dict[str, Any]
) -> BridgeProcess:
    """A bridge process (not started) tuned for fault drills: small batches, fast gap scans."""
    secret = workdir / "bridge-password"
    secret.write_text(password)
    secret.chmod(0o600)
    token_file = workdir / "token"
    token_file.write_text(token + "\n")
    settings = bridge_settings(
        broker,
        database["url"],
        mqtt={"username": BRIDGE_USER, "password_file": str(secret)},
        database=database,
        http={"enabled": True, "port": free_port(), "token_file": str(token_file)},
        batching={"max_messages": 200, "max_seconds": 0.2},
        gaps={
            "enabled": True,
            "grace_s": 1.0,
            "scan_interval_s": 0.5,
            "resend_interval_s": 1.0,
            "max_requests_per_minute": 6000,
        },
        logging={"format": "json", "level": "INFO"},
    )
    settings["mqtt"]["client_id"] = BRIDGE_USER
    return BridgeProcess(settings, workdir, f"bridge-{uuid.uuid4().hex[:4]}")


class ScriptedDevice:
    """Publishes seq 1, 2, 3, ... at QoS 1, keeps every one, and answers `resend`."""

    def __init__(self, broker: ShippedBroker, device_id: str, password: str) -> None:
        self.broker, self.device_id, self.password = broker, device_id, password
        self.produced: dict[int, tuple[str, bytes]] = {}
        self.lock = threading.Lock()
        self.client: mqtt.Client | None = None
        self.resends = 0
        self.connect()

    def connect(self) -> None:
        """A new session: Will, status online, commands subscribed on every (re)connect."""
        started = datetime.now(timezone.utc)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(self.device_id, self.password)
        will_topic, will = status_message(self.device_id, "offline", started)
        client.will_set(will_topic, will, qos=1, retain=True)
        client.reconnect_delay_set(1, 2)

        def on_connect(c: mqtt.Client, *_: Any) -> None:
            c.subscribe(command_topic(self.device_id, "resend"), qos=1)
            c.publish(*status_message(self.device_id, "online", started), qos=1, retain=True)

        client.on_connect = on_connect
        client.on_message = self._on_command
        client.connect_async(self.broker.host, self.broker.port)
        client.loop_start()
        self.client = client

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (the broker publishes the Will)."""
        client = self.client
        if client is not None:
            client.loop_stop()
            sock = client.socket()
            if sock is not None:
                sock.close()
        self.client = None

    def publish_next(self) -> None:
        """Produce one observation and publish it (paho queues it while disconnected)."""
        with self.lock:
            seq = len(self.produced) + 1
            message = observation_message(self.device_id, seq)
            self.produced[seq] = message
        if self.client is not None:
            self.client.publish(*message, qos=1)

    def _on_command(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            command = ResendCommand.model_validate_json(msg.payload)
        except ValueError:
            return
        with self.lock:
            wanted = [
                self.produced[s]
                for s in range(command.from_seq, command.to_seq + 1)
                if s in self.produced
            ]
        self.resends += 1
        for message in wanted:
            client.publish(*message, qos=1)

    def close(self) -> None:
        """Disconnect cleanly."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        self.client = None


@dataclass
class DeviceReport:
    """What one device produced and what PostgreSQL holds of it."""

    device_id: str
    produced: int
    stored: int
    lost: int
    duplicated: int

    def line(self) -> str:
        """One line of the campaign report."""
        return (
            f"{self.device_id}: produced {self.produced} stored {self.stored} "
            f"lost {self.lost} duplicated {self.duplicated}"
        )


class Campaign:
    """Run devices and faults for `duration_s`, then wait for every seq to be stored once."""

    def __init__(
        self,
        workdir: Path,
        pg: PgCluster,
        pg_url: str,
        engine: Engine,
        seed: int,
        devices: int = 3,
        duration_s: float = 60.0,
        period_s: float = 0.2,
    ) -> None:
        self.workdir, self.pg, self.pg_url, self.engine = workdir, pg, pg_url, engine
        self.rng = random.Random(seed)
        self.duration_s, self.period_s = duration_s, period_s
        self.device_ids = [f"dev-{i:02d}" for i in range(devices)]
        users = {d: f"pw-{d}" for d in self.device_ids} | {BRIDGE_USER: "pw-bridge"}
        self.users = users
        self.broker = ShippedBroker(workdir / "broker", users)
        self.bridge: BridgeProcess | None = None
        self.devices: list[ScriptedDevice] = []
        self.faults: list[str] = []
        self._stop = threading.Event()

    def _bridge(self) -> BridgeProcess:
        return fault_bridge(
            self.broker,
            self.workdir,
            self.users[BRIDGE_USER],
            "campaign-token",
            {"url": self.pg_url},
        )

    def _publishing(self) -> None:
        while not self._stop.wait(self.period_s):
            for device in self.devices:
                device.publish_next()

    def _fault(self, kind: str) -> None:
        assert self.bridge is not None
        self.faults.append(kind)
        if kind == "broker_kill":
            self.broker.kill()
            time.sleep(self.rng.uniform(0.2, 2.0))
            self.broker.start()
        elif kind == "broker_restart":
            self.broker.stop()
            time.sleep(self.rng.uniform(0.2, 2.0))
            self.broker.start()
        elif kind in ("bridge_kill", "bridge_restart"):
            if kind == "bridge_kill":
                self.bridge.kill()
            else:
                self.bridge.terminate()
            time.sleep(self.rng.uniform(0.2, 2.0))
            self.bridge = self._bridge().start(timeout=60)
        elif kind == "db_outage":
            self.pg.stop()
            time.sleep(self.rng.uniform(1.0, 5.0))
            self.pg.start()
        elif kind == "device_restart":
            device = self.rng.choice(self.devices)
            device.drop()
            time.sleep(self.rng.uniform(0.2, 2.0))
            device.connect()

    def run(self, settle_s: float = 120.0) -> list[DeviceReport]:
        """Start everything, inject faults until `duration_s`, settle, and report."""
        self.broker.start()
        self.bridge = self._bridge().start(timeout=60)
        self.devices = [ScriptedDevice(self.broker, d, self.users[d]) for d in self.device_ids]
        publisher = threading.Thread(target=self._publishing, daemon=True)
        publisher.start()
        try:
            # Faults start once every device's seq 1 is stored: seqs below the first one
            # the bridge ever stored for a device are not asked for (docs/bridge.md).
            self._wait(lambda: all(s > 0 for s in self._stored_counts().values()), 60)
            # Every kind of fault once, in seeded order, then seeded random ones.
            first = list(FAULTS)
            self.rng.shuffle(first)
            deadline = time.monotonic() + self.duration_s
            while first or time.monotonic() < deadline:
                time.sleep(self.rng.uniform(1.0, 5.0))
                self._fault(first.pop() if first else self.rng.choice(FAULTS))
            self._stop.set()
            publisher.join()
            time.sleep(1.0)
            for device in self.devices:  # a lost tail becomes a visible hole
                device.publish_next()
            self._wait(self._complete, settle_s)
        except TimeoutError:
            pass
        finally:
            self._stop.set()
            for device in self.devices:
                device.close()
            if self.bridge is not None and self.bridge.proc is not None:
                self.bridge.terminate()
            self.broker.stop()
        return self.report()

    def _stored_counts(self) -> dict[str, int]:
        o = ObservationRow
        query = select(o.device_id, func.count()).group_by(o.device_id)
        try:
            with self.engine.connect() as conn:
                found = {d: int(n) for d, n in conn.execute(query).all()}
        except Exception:
            return {d: 0 for d in self.device_ids}
        return {d: found.get(d, 0) for d in self.device_ids}

    def _complete(self) -> bool:
        stored = self._stored_counts()
        return all(stored[d.device_id] >= len(d.produced) for d in self.devices)

    @staticmethod
    def _wait(condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise TimeoutError

    def report(self) -> list[DeviceReport]:
        """produced / stored / lost / duplicated per device."""
        o = ObservationRow
        reports = []
        with self.engine.connect() as conn:
            for device in self.devices:
                seqs = [
                    int(s)
                    for (s,) in conn.execute(select(o.seq).where(o.device_id == device.device_id))
                ]
                produced = set(device.produced)
                reports.append(
                    DeviceReport(
                        device.device_id,
                        produced=len(produced),
                        stored=len(set(seqs) & produced),
                        lost=len(produced - set(seqs)),
                        duplicated=len(seqs) - len(set(seqs)),
                    )
                )
        return reports
