"""The agent's /metrics as Prometheus reads it: names, types, and promtool's lint."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge import __version__
from edge.agent import Agent
from edge.clock import FakeClock
from tests.conftest import make_config


@pytest.fixture
def agent(tmp_path: Path, clock: FakeClock) -> Iterator[Agent]:
    cfg = make_config(tmp_path / "data", camera={"width": 320, "height": 240})
    a = Agent(cfg, clock=clock, serve_web=False).start()
    a.run(max_captures=2)
    yield a
    a.close()


def families(agent: Agent) -> dict[str, str]:
    text = generate_latest(agent.metrics.registry).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_process_metrics_are_exported(agent: Agent) -> None:
    names = families(agent)
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_start_time_seconds",
    ):
        assert name in names, name


def test_device_metrics_are_exported_with_their_types(agent: Agent) -> None:
    names = families(agent)
    assert names["cultivai_outbox_dropped"] == "counter"  # exposed as ..._total
    assert names["cultivai_outbox_depth"] == "gauge"
    assert names["cultivai_outbox_oldest_age_seconds"] == "gauge"
    assert names["cultivai_cpu_temperature_celsius"] == "gauge"
    assert names["cultivai_last_publish_age_seconds"] == "gauge"
    assert names["cultivai_build_info"] == "gauge"  # Prometheus' info convention
    sample = agent.metrics.registry.get_sample_value
    build = {"version": __version__, "python": platform.python_version()}
    assert sample("cultivai_build_info", build) == 1
    assert sample("cultivai_camera_up") == 1
    assert sample("cultivai_open_alerts") == len(agent.store.open_alerts())


def test_camera_up_follows_the_agent(agent: Agent) -> None:
    agent.stats.camera_open = False
    assert agent.metrics.registry.get_sample_value("cultivai_camera_up") == 0


def test_promtool_finds_nothing_to_complain_about(agent: Agent, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: `make system-deps` installs it (Debian: prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    text = generate_latest(agent.metrics.registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""
