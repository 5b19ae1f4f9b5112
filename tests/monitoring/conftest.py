"""Fixtures of the monitoring tests: a real bridge, two real agents, a real Prometheus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_postgresql.janitor import DatabaseJanitor

from tests.bridge.conftest import (  # noqa: F401
    TEMPLATE,
    bridge_settings,
    engine,
    pg_cluster,
    pg_url,
)
from tests.bridge.pg import PgCluster
from tests.bridge.process import BridgeProcess
from tests.monitoring.prometheus import Prometheus, find_tool
from tests.mqtt_broker import Broker, find_mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "monitoring-test-token"
DEVICES = (("mon-cam-1", "farm1", "veg"), ("mon-cam-2", "farm1", "flower"))


def missing(reason: str) -> None:
    """Skip, or fail under CI, when a real part the test needs is not installed."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class AgentProcess:
    """One `cultivai-edge run` with the synthetic camera, its status page on a free port."""

    def __init__(self, workdir: Path, device: tuple[str, str, str], broker: Broker) -> None:
        self.device_id, self.site, self.room = device
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        token_file = workdir / "metrics-token"
        token_file.write_text(TOKEN + "\n")
        self.config_path = workdir / "edge.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "device": {"id": self.device_id, "site": self.site, "room": self.room},
                    "camera": {"backend": "synthetic", "width": 320, "height": 240},
                    "schedule": {"interval_s": 2},
                    "storage": {"dir": str(workdir / "data"), "min_free_mb": 0},
                    "model": {"enabled": False},
                    "mqtt": {
                        "enabled": True,
                        "host": broker.host,
                        "port": broker.port,
                        "reconnect_min_s": 0.1,
                        "reconnect_max_s": 0.5,
                        "stats_interval_s": 5,
                    },
                    "web": {
                        "host": "127.0.0.1",
                        "port": self.port,
                        "metrics_token_file": str(token_file),
                        "threads": 2,
                    },
                    "logging": {"format": "text", "level": "WARNING"},
                }
            )
        )
        self.log_path = workdir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """host:port Prometheus scrapes."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> AgentProcess:
        """Start and wait until /metrics answers with the token."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(
            f"http://{self.target}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent {self.device_id} exited: {self.log()}")
            try:
                with urllib.request.urlopen(request, timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"agent {self.device_id} not serving within {timeout} s")

    def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        """The agent's log so far (last 4000 characters)."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@dataclass
class Stack:
    """The running parts: broker, database, bridge, agents and the Prometheus over them."""

    broker: Broker
    database_url: str
    bridge: BridgeProcess
    agents: list[AgentProcess]
    prometheus: Prometheus
    scraped: set[str] = field(default_factory=set)


def _jobs(workdir: Path, bridge: BridgeProcess, agents: list[AgentProcess]) -> list[Any]:
    token_file = workdir / "scrape-token"
    token_file.write_text(TOKEN + "\n")
    auth = {"credentials_file": str(token_file)}
    return [
        {
            "job_name": "cultivai-bridge",
            "authorization": auth,
            "static_configs": [{"targets": [f"127.0.0.1:{bridge.port}"]}],
        },
        {
            "job_name": "cultivai-agent",
            "authorization": auth,
            "static_configs": [
                {
                    "targets": [a.target],
                    "labels": {"device_id": a.device_id, "site": a.site, "room": a.room},
                }
                for a in agents
            ],
        },
    ]


@pytest.fixture(scope="module")
def stack(
    pg_cluster: PgCluster,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Mosquitto, a migrated PostgreSQL database, a bridge process, two agent processes
    and Prometheus scraping them every second; torn down after the module."""
    if find_mosquitto() is None:
        missing("mosquitto is not installed (make system-deps installs it)")
    if find_tool("prometheus") is None:
        missing("prometheus is not installed (make system-deps installs it)")
    workdir = tmp_path_factory.mktemp("monitoring")
    broker = Broker(workdir / "broker").start()
    name = f"mon_{uuid.uuid4().hex[:10]}"
    janitor = DatabaseJanitor(
        user=pg_cluster.user,
        host=pg_cluster.host,
        port=pg_cluster.port,
        dbname=name,
        template_dbname=TEMPLATE,
    )
    janitor.init()
    url = pg_cluster.url(name)
    token_file = workdir / "bridge-token"
    token_file.write_text(TOKEN + "\n")
    settings = bridge_settings(
        broker,
        url,
        http={"enabled": True, "port": free_port(), "token_file": str(token_file)},
        gaps={"enabled": True, "scan_interval_s": 1, "grace_s": 5},
    )
    bridge = BridgeProcess(settings, workdir, "bridge")
    agents = [AgentProcess(workdir / d[0], d, broker) for d in DEVICES]
    prometheus = Prometheus(workdir / "prometheus", _jobs(workdir, bridge, agents))
    try:
        bridge.start()
        for agent in agents:
            agent.start()
        prometheus.start()
        yield Stack(broker, url, bridge, agents, prometheus)
    finally:
        prometheus.stop()
        for agent in agents:
            agent.stop()
        if bridge.proc is not None:
            bridge.terminate()
        broker.stop()
        janitor.drop()
