"""`selftest` beside a running agent, on the shipped broker config (client id = user name).

With `use_username_as_clientid`, any second CONNECT with the device's credentials gets
the agent's client id and the broker disconnects the agent. The self-test must report
the broker without doing that: through the link the running agent records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.broker_check import LINK_STATE_FILE, running_agent_link, try_connect
from edge.clock import FakeClock
from edge.selftest import run_selftest
from tests.conftest import make_config
from tests.mqtt_broker import ShippedBroker, find_mosquitto

USERS = {"dev-a": "pw-a"}


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[ShippedBroker]:
    """Mosquitto with examples/mosquitto/cultivai.conf and cultivai.acl."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = ShippedBroker(tmp_path / "broker", USERS).start()
    yield broker
    broker.stop()


def _config(tmp_path: Path, broker: ShippedBroker) -> Any:
    secret = tmp_path / "pw"
    secret.write_text("pw-a\n")
    secret.chmod(0o600)
    return make_config(
        tmp_path / "data",
        device={"id": "dev-a"},
        mqtt={
            "enabled": True,
            "host": broker.host,
            "port": broker.port,
            "username": "dev-a",
            "password_file": str(secret),
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
    )


def _wait(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _broker_check(config: Any) -> Any:
    return next(r for r in run_selftest(config) if r.part == "broker")


def _agent_link_file(config: Any) -> Path:
    return config.storage.dir / LINK_STATE_FILE


def test_a_second_connect_takes_the_agents_connection_over(
    tmp_path: Path, shipped: ShippedBroker, clock: FakeClock
) -> None:
    # Why the self-test must not CONNECT itself while the agent runs.
    config = _config(tmp_path, shipped)
    agent = Agent(config, clock=clock).start()
    try:
        link = agent.link
        assert link is not None and _wait(lambda: link.connected)
        connects = link.connects
        assert try_connect(config.mqtt, "dev-a-selftest").accepted
        assert _wait(lambda: link.connects > connects), "the broker did not drop the agent"
    finally:
        agent.close()


def _run_agent_elsewhere(config_path: Path) -> subprocess.Popen[bytes]:
    """The agent in its own process, as systemd runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_selftest_beside_a_running_agent_leaves_it_connected(
    tmp_path: Path, shipped: ShippedBroker
) -> None:
    import yaml

    config = _config(tmp_path, shipped)
    data = json.loads(config.model_dump_json())
    data["mqtt"]["password_file"] = str(config.mqtt.password_file)
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(data))
    agent = _run_agent_elsewhere(config_path)
    try:
        state = _agent_link_file(config)
        assert _wait(lambda: (running_agent_link(state) or _Nothing).accepted, timeout=60)
        before = json.loads(state.read_text())["at"]
        result = _broker_check(config)
        assert result.state == "ok", result.detail
        assert f"running agent (pid {agent.pid}) is connected" in result.detail
        time.sleep(2.0)  # a takeover would have dropped the agent by now
        after = json.loads(state.read_text())
        assert after["connected"] and after["at"] == before, "the agent's link changed"
        assert "Client dev-a already connected" not in shipped.log()
    finally:
        agent.terminate()
        agent.wait(30)
    assert not state.exists()  # a clean stop: no agent speaks for the broker any more


class _Nothing:
    accepted = False


def test_selftest_reports_the_running_agents_failure(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", mqtt={"enabled": True})
    state = _agent_link_file(config)
    state.parent.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state.write_text(
            json.dumps(
                {
                    "pid": sleeper.pid,
                    "connected": False,
                    "detail": "broker refused the connection: Not authorized",
                    "at": "2026-03-02T06:00:00+00:00",
                }
            )
        )
        result = _broker_check(config)
        assert result.state == "fail" and "Not authorized" in result.detail
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_file_left_by_a_dead_agent_is_ignored(tmp_path: Path, shipped: ShippedBroker) -> None:
    config = _config(tmp_path, shipped)
    state = _agent_link_file(config)
    state.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state.write_text(json.dumps({"pid": dead.pid, "connected": False, "detail": "x", "at": "t"}))
    assert running_agent_link(state) is None
    result = _broker_check(config)  # no agent runs: the self-test's own CONNECT
    assert result.state == "ok" and "CONNECT accepted" in result.detail, result.detail


def test_a_damaged_link_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / LINK_STATE_FILE
    path.write_bytes(b"\xff{not json")
    assert running_agent_link(path) is None
    path.write_text(json.dumps({"pid": os.getpid()}))
    assert running_agent_link(path) is None
