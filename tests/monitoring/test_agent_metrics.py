"""The agent's disk gauge is read at scrape time: a device without a broker, or before
its first stats message, reports its real free space (CultivaiDeviceDiskLow reads it)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge.agent import Agent
from edge.clock import FakeClock
from edge.metrics import AgentMetrics
from tests.conftest import make_config


def _disk_free(metrics: AgentMetrics) -> float:
    text = generate_latest(metrics.registry).decode()
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "cultivai_disk_free_bytes"
    )
    return float(family.samples[0].value)


def test_disk_free_is_read_at_every_scrape() -> None:
    metrics = AgentMetrics()
    free = [5_000_000, 4_000_000]
    metrics.watch_disk(lambda: free.pop(0))
    assert _disk_free(metrics) == 5_000_000
    assert _disk_free(metrics) == 4_000_000


def test_an_agent_without_a_broker_reports_its_free_space(tmp_path: Path, clock: FakeClock) -> None:
    agent = Agent(make_config(tmp_path, mqtt={"enabled": False}), clock=clock).start()
    try:
        assert _disk_free(agent.metrics) > 0
    finally:
        agent.close()
