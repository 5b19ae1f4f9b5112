"""`selftest` beside a running agent, on the shipped broker config (client id = user name).

With `use_username_as_clientid`, any second CONNECT with the device's credentials gets
the agent's client id and the broker disconnects the agent. The self-test must report
the broker without doing that: through the link the running agent records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.broker_check import LINK_STATE_FILE, LinkState, running_agent_link, try_connect
from edge.cli import main
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


def _identity(pid: int) -> dict[str, Any]:
    """What an agent with this pid records about itself: pid, boot id, start time."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return {
        "pid": pid,
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "started": int(stat[stat.rindex(")") + 2 :].split()[19]),
    }


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_killed_agents_file_is_not_taken_for_a_process_that_reuses_its_pid(
    tmp_path: Path,
) -> None:
    path = tmp_path / LINK_STATE_FILE
    sleeper = _sleeper()
    try:
        real = {**_identity(sleeper.pid), "connected": True, "detail": "ok", "at": "t"}
        path.write_text(json.dumps(real))
        assert (running_agent_link(path) or _Nothing).accepted  # that process itself
        # The agent was SIGKILLed and another process got its pid: started at another time.
        path.write_text(json.dumps({**real, "started": real["started"] - 1}))
        assert running_agent_link(path) is None
        # The file is from before a power cut: the pid may be anyone's in this boot.
        path.write_text(json.dumps({**real, "boot_id": "00000000-0000-0000-0000-000000000000"}))
        assert running_agent_link(path) is None
        # Written by an older agent, with no way to tell: not trusted.
        path.write_text(json.dumps({k: real[k] for k in ("pid", "connected", "detail", "at")}))
        assert running_agent_link(path) is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_sigkilled_agent_leaves_no_running_link(tmp_path: Path, broker: Any) -> None:
    import yaml

    config = make_config(
        tmp_path / "data",
        mqtt={"enabled": True, "host": broker.host, "port": broker.port, "reconnect_min_s": 0.1},
    )
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    agent = _run_agent_elsewhere(config_path)
    state = _agent_link_file(config)
    try:
        assert _wait(lambda: (running_agent_link(state) or _Nothing).accepted, timeout=60)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(30)
    assert state.exists()  # nothing cleaned up after a SIGKILL
    assert running_agent_link(state) is None
    # The next agent on the folder owns the state: the dead one's lock went with it.
    link = LinkState(state)
    link.record(False, "broker unreachable")
    assert link.owned and json.loads(state.read_text())["pid"] == os.getpid()
    link.forget()
    assert not state.exists()


def test_a_capture_beside_the_running_agent_leaves_its_link_state(
    tmp_path: Path, broker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # `capture` opens a second link with the device's client id; when it closes, the
    # running agent's state must still be there, or selftest would CONNECT and take
    # the agent's connection over.
    import yaml

    mqtt = {"enabled": True, "host": broker.host, "port": broker.port, "reconnect_min_s": 0.1}
    config = make_config(tmp_path / "data", mqtt=mqtt)
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    agent = _run_agent_elsewhere(config_path)
    state = _agent_link_file(config)
    try:
        assert _wait(lambda: (running_agent_link(state) or _Nothing).accepted, timeout=60)
        assert main(["capture", "--config", str(config_path)]) == 0
        capsys.readouterr()
        assert state.exists(), "the capture deleted the running agent's link state"
        assert json.loads(state.read_text())["pid"] == agent.pid
        running = running_agent_link(state)
        assert running is not None and f"pid {agent.pid}" in running.detail
    finally:
        agent.terminate()
        agent.wait(30)
    assert not state.exists()


def test_a_second_link_never_writes_nor_deletes_the_owners_state(tmp_path: Path) -> None:
    path = tmp_path / LINK_STATE_FILE
    owner, second = LinkState(path), LinkState(path)
    owner.record(True, "connected to the broker")
    second.record(False, "disconnected from the broker: session taken over")
    assert owner.owned and not second.owned
    assert json.loads(path.read_text())["connected"] is True
    second.forget()
    assert path.exists()
    owner.forget()
    assert not path.exists()


def test_selftest_reports_the_running_agents_failure(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", mqtt={"enabled": True})
    state = _agent_link_file(config)
    state.parent.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state.write_text(
            json.dumps(
                {
                    **_identity(sleeper.pid),
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
