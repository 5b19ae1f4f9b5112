"""A real Prometheus scraping a real bridge and two real agents, with the shipped rules."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import yaml

from tests.monitoring.conftest import Stack
from tests.monitoring.grafana import DASHBOARD_FILES, Query, load, queries, render_promql
from tests.monitoring.prometheus import RULE_FILES

pytestmark = pytest.mark.slow
METRIC = re.compile(r"\b(cultivai_[a-z0-9_]+)\b")


def rule_metric_names() -> set[str]:
    """Every exported metric name (not recording-rule name) the shipped rules read."""
    names: set[str] = set()
    for f in RULE_FILES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                names |= set(METRIC.findall(rule["expr"]))
    return names


def scraped_names(stack: Stack) -> set[str]:
    """Metric names Prometheus holds from its scrapes."""
    return set(stack.prometheus.api("label/__name__/values"))


def _up(stack: Stack) -> dict[str, float]:
    return {
        r["metric"].get("device_id", r["metric"]["job"]): float(r["value"][1])
        for r in stack.prometheus.query("up")
    }


def test_every_metric_the_rules_read_is_in_the_scrape(stack: Stack) -> None:
    wanted = rule_metric_names()
    assert "cultivai_outbox_depth" in wanted and "cultivai_bridge_seq_holes" in wanted
    # Histograms and infos appear once the first scrapes are in.
    deadline = time.monotonic() + 60
    while (missing := wanted - scraped_names(stack)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert missing == set()


def test_device_offline_fires_for_the_killed_agent_only(stack: Stack) -> None:
    prom = stack.prometheus
    everyone = {"cultivai-bridge": 1.0, "mon-cam-1": 1.0, "mon-cam-2": 1.0}
    prom.wait_for("bridge and both agents up", lambda: _up(stack) == everyone)

    def per_room() -> dict[tuple[str, str], float]:
        rows = prom.query("cultivai:devices_up:sum_by_site_room")
        return {(r["metric"]["site"], r["metric"]["room"]): float(r["value"][1]) for r in rows}

    prom.wait_for(
        "devices up per room", lambda: per_room() == {("farm1", "veg"): 1, ("farm1", "flower"): 1}
    )
    assert prom.alerts("CultivaiDeviceOffline") == []

    stack.agents[1].kill()

    def firing() -> list[dict[str, Any]]:
        return prom.alerts("CultivaiDeviceOffline", "firing")

    alerts = prom.wait_for("CultivaiDeviceOffline firing", firing, timeout=60)
    assert [a["labels"]["device_id"] for a in alerts] == ["mon-cam-2"]
    labels = alerts[0]["labels"]
    assert (labels["site"], labels["room"], labels["severity"]) == ("farm1", "flower", "warning")
    assert "mon-cam-2 (farm1/flower) unreachable" in alerts[0]["annotations"]["summary"]
    assert _up(stack)["mon-cam-1"] == 1.0
    assert prom.alerts("CultivaiBridgeDown") == []


def _dashboard_promql() -> list[Query]:
    return [q for f in DASHBOARD_FILES for q in queries(load(f)) if q.kind == "prometheus"]


def test_dashboard_promql_runs_on_the_real_scrape(stack: Stack) -> None:
    recorded = {
        rule["record"]
        for f in RULE_FILES
        for group in yaml.safe_load(f.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    found = _dashboard_promql()
    assert len(found) >= 15
    wanted = {n for q in found for n in METRIC.findall(q.text)}
    deadline = time.monotonic() + 60
    while (missing := wanted - scraped_names(stack)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert missing == set(), "dashboards read metrics nobody exports"
    values = {"site": ["farm1"], "device": ["mon-cam-1"]}
    for q in found:
        for name in re.findall(r"\b(cultivai:[a-z0-9_:]+)", q.text):
            assert name in recorded, (q.panel, name)
        expr = render_promql(q.text, values, "30s")
        result = stack.prometheus.query(expr)  # fails on a PromQL error
        if q.dashboard == "cultivai-device" and "increase(" not in expr:
            assert result, f"{q.panel}: nothing for mon-cam-1 from {expr}"
