"""Real agent processes against a real broker: SIGKILL mid-drain, Last Will."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.protocol import topic
from edge.store import Store
from tests.conftest import REPO
from tests.mqtt_client import Recorder
from tests.test_store import builder

pytestmark = pytest.mark.slow
DEVICE = "proc-cam"


def write_config(tmp_path: Path, broker: Any, **mqtt: Any) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "device": {"id": DEVICE},
                "camera": {"backend": "synthetic", "width": 320, "height": 240},
                "schedule": {"interval_s": 86400},
                "storage": {"dir": str(tmp_path / "data"), "min_free_mb": 0},
                "model": {"enabled": False},
                "mqtt": {
                    "enabled": True,
                    "host": broker.host,
                    "port": broker.port,
                    "reconnect_min_s": 0.1,
                    "reconnect_max_s": 0.5,
                    "keepalive_s": 5,
                    **mqtt,
                },
            }
        )
    )
    return path


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def fill_outbox(data_dir: Path, count: int) -> None:
    """A backlog as left by a long broker outage, written straight into the store."""
    store = Store(data_dir)
    build = builder()
    with store.transaction() as tx:
        for seq in range(1, count + 1):
            obs = build(seq, False).model_copy(update={"device_id": DEVICE})
            tx.enqueue(topic(DEVICE, "observation"), obs.model_dump_json(), seq=seq)
    store.close()


def test_sigkill_mid_drain_loses_nothing(tmp_path: Path, broker: Any) -> None:
    total = 3000
    fill_outbox(tmp_path / "data", total)
    recorder = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/observation"])
    config = write_config(tmp_path, broker, inflight_window=5)
    agent = start_agent(config)

    def received() -> set[int]:
        return {m["seq"] for m in recorder.json("/observation")}

    assert recorder.wait_for(lambda: len(received()) >= 300, timeout=60)
    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    seen_at_kill = len(received())
    assert seen_at_kill < total, "the drain finished before the kill; make the backlog larger"
    agent = start_agent(config)
    try:
        assert recorder.wait_for(lambda: len(received()) == total, timeout=120)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    seqs = [m["seq"] for m in recorder.json("/observation")]
    assert sorted(set(seqs)) == list(range(1, total + 1))
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen)
    recorder.close()


def test_killed_agent_is_announced_offline_by_its_last_will(tmp_path: Path, broker: Any) -> None:
    recorder = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/status"])
    agent = start_agent(write_config(tmp_path, broker))

    def states() -> list[str]:
        return [s["state"] for s in recorder.json("/status")]

    try:
        assert recorder.wait_for(lambda: states() == ["online"], timeout=60)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    assert recorder.wait_for(lambda: states() == ["online", "offline"], timeout=30)
    recorder.close()


def test_clean_sigterm_logs_no_warning_or_error_from_the_mqtt_link(
    tmp_path: Path, broker: Any
) -> None:
    config = write_config(tmp_path, broker)
    data = yaml.safe_load(config.read_text())
    data["web"] = {"enabled": False}
    config.write_text(yaml.safe_dump(data))
    recorder = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/status"])
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def states() -> list[str]:
        return [s["state"] for s in recorder.json("/status")]

    try:
        assert recorder.wait_for(lambda: states() == ["online"], timeout=60)
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
    recorder.close()
    assert agent.returncode == 0
    lines = output.decode(errors="replace").splitlines()
    mqtt_lines = [line for line in lines if "edge.mqtt" in line]
    assert mqtt_lines, "\n".join(lines)  # the link did log (connected, disconnected)
    noisy = [line for line in mqtt_lines if "WARNING" in line or "ERROR" in line]
    assert noisy == [], "\n".join(noisy)
