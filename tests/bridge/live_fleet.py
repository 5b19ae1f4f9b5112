"""Devices publishing through the shipped broker into a bridge process, for database drills.

The devices are the campaign's scripted ones: they keep every observation they produced
and answer the bridge's `resend` requests, as the agent's outbox does. A drill (restore
from backup, failover to a replica) runs while they publish, then waits until every
produced seq is stored once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from cloud_bridge.tables import ObservationRow
from tests.bridge.campaign import BRIDGE_USER, DeviceReport, ScriptedDevice, fault_bridge
from tests.bridge.process import BridgeProcess
from tests.mqtt_broker import ShippedBroker


class LiveFleet:
    """A broker, `devices` scripted cameras publishing every `period_s`, one bridge process."""

    def __init__(self, workdir: Path, devices: int = 4, period_s: float = 0.1) -> None:
        self.workdir, self.period_s = workdir, period_s
        self.device_ids = [f"cam-{i:02d}" for i in range(devices)]
        self.users = {d: f"pw-{d}" for d in self.device_ids} | {BRIDGE_USER: "pw-bridge"}
        self.broker = ShippedBroker(workdir / "broker", self.users)
        self.devices: list[ScriptedDevice] = []
        self.bridge: BridgeProcess | None = None
        self._stop = threading.Event()
        self._publisher: threading.Thread | None = None
        self.token = "drill-token"

    def bridge_process(self, database: dict[str, Any]) -> BridgeProcess:
        """A bridge process (not started) on this broker with the given database section."""
        return fault_bridge(
            self.broker, self.workdir, self.users[BRIDGE_USER], self.token, database
        )

    def start(self, database: dict[str, Any]) -> LiveFleet:
        """Start the broker, the bridge and the devices; publishing begins."""
        self.broker.start()
        self.bridge = self.bridge_process(database).start(timeout=60)
        self.devices = [ScriptedDevice(self.broker, d, self.users[d]) for d in self.device_ids]
        self._publisher = threading.Thread(target=self._publishing, daemon=True)
        self._publisher.start()
        return self

    def switch_bridge(self, database: dict[str, Any]) -> None:
        """Stop the bridge (SIGTERM) and start a new one on another database section."""
        assert self.bridge is not None
        self.bridge.terminate()
        self.bridge = self.bridge_process(database).start(timeout=60)

    def _publishing(self) -> None:
        while not self._stop.wait(self.period_s):
            for device in self.devices:
                device.publish_next()

    def produced(self) -> int:
        """Observations produced so far, all devices."""
        return sum(len(d.produced) for d in self.devices)

    def stop_publishing(self) -> None:
        """Stop the periodic publishing; then each device publishes once more so that a
        lost tail becomes a hole the gap filler can see."""
        self._stop.set()
        if self._publisher is not None:
            self._publisher.join()
        time.sleep(0.5)
        for device in self.devices:
            device.publish_next()

    def stored_counts(self, engine: Engine) -> dict[str, int]:
        """Stored observations per device (zeros while the database is unreachable)."""
        o = ObservationRow
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(o.device_id, func.count()).group_by(o.device_id))
                found = {d: int(n) for d, n in rows.all()}
        except Exception:
            return dict.fromkeys(self.device_ids, 0)
        return {d: found.get(d, 0) for d in self.device_ids}

    def complete(self, engine: Engine) -> bool:
        """Every produced seq is stored."""
        stored = self.stored_counts(engine)
        return all(stored[d.device_id] >= len(d.produced) for d in self.devices)

    def report(self, engine: Engine) -> list[DeviceReport]:
        """produced / stored / lost / duplicated per device."""
        o = ObservationRow
        reports = []
        with engine.connect() as conn:
            for device in self.devices:
                query = select(o.seq).where(o.device_id == device.device_id)
                seqs = [int(s) for (s,) in conn.execute(query)]
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

    def close(self) -> None:
        """Stop everything this fleet started."""
        self._stop.set()
        for device in self.devices:
            device.close()
        if self.bridge is not None and self.bridge.proc is not None:
            self.bridge.terminate()
        self.broker.stop()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")
