"""The Grafana dashboards: their schema, provisioning, and their SQL run against the
real bridge schema (migrated by Alembic, with rows) with Grafana's macros substituted.
Their PromQL runs against a real Prometheus in test_prometheus_live.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import yaml
from sqlalchemy import Engine, text

from cloud_bridge.decode import Limits, decode
from cloud_bridge.store import Envelope, FleetStore
from tests.bridge.factory import T0, alert_message, observation_message, status_message
from tests.monitoring.grafana import (
    DASHBOARD_FILES,
    GRAFANA_DIR,
    Dashboard,
    Query,
    datasources,
    load,
    queries,
    render_sql,
    variables_used,
)

START, END = T0 - timedelta(days=1), T0 + timedelta(days=1)
VALUES = {"site": ["farm1", "farm2"], "device": ["cam-1"]}


def test_there_are_the_three_dashboards() -> None:
    assert {load(f).uid for f in DASHBOARD_FILES} == {
        "cultivai-fleet",
        "cultivai-ingest",
        "cultivai-device",
    }


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_passes_the_schema_check(path: object) -> None:
    board = load(path)  # type: ignore[arg-type]
    assert board.title.startswith("CultivAI")


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_panel_uses_a_provisioned_data_source(path: object) -> None:
    provisioned = datasources()
    for panel in load(path).panels:  # type: ignore[arg-type]
        assert provisioned.get(panel.datasource.uid) == panel.datasource.type, panel.title


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_variable_a_query_uses_is_defined(path: object) -> None:
    board = load(path)  # type: ignore[arg-type]
    defined = {v.name for v in board.templating.list}
    for q in queries(board):
        assert variables_used(q.text) <= defined, (q.panel, q.text)


def test_the_schema_check_catches_mistakes() -> None:
    good = json.loads(DASHBOARD_FILES[0].read_text())
    overlapping = json.loads(json.dumps(good))
    overlapping["panels"][1]["gridPos"] = dict(overlapping["panels"][0]["gridPos"])
    no_query = json.loads(json.dumps(good))
    no_query["panels"][0]["targets"] = []
    for broken in (overlapping, no_query):
        with pytest.raises(ValueError):
            Dashboard.model_validate(broken)


def test_the_dashboard_provider_loads_json_files() -> None:
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "cultivai.yml").read_text()
    )["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    assert set(datasources().values()) == {"prometheus", "grafana-postgresql-datasource"}


def _populate(engine: Engine) -> None:
    messages = [
        status_message("cam-1", "online"),
        status_message("cam-2", "offline"),
        *(observation_message("cam-1", s, site="farm1", room="veg") for s in range(1, 6)),
        observation_message("cam-2", 1, site="farm2", room="flower", label="yellowing"),
        alert_message("cam-1", 1, "raised", seq=2),
        alert_message("cam-1", 1, "cleared", seq=4),
        alert_message("cam-2", 1, "raised", seq=1),
        ("cultivai/v1/cam-1/observation", b"{not json"),
    ]
    limits = Limits(262_144, 65_536)
    batch = [Envelope(t, p, T0, decode(t, p, limits)) for t, p in messages]
    FleetStore(engine, 1024).write(batch)


def _sql_queries() -> list[object]:
    return [
        pytest.param(q, id=f"{q.dashboard}:{q.panel}")
        for f in DASHBOARD_FILES
        for q in queries(load(f))
        if q.kind == "sql"
    ]


@pytest.mark.parametrize("query", _sql_queries())
def test_sql_runs_on_the_bridge_schema_and_finds_the_rows(engine: Engine, query: object) -> None:
    assert isinstance(query, Query)
    _populate(engine)
    sql = render_sql(query.text, START, END, VALUES, interval_s=60)
    with engine.connect() as conn:
        conn.execute(text("SET TRANSACTION READ ONLY"))  # dashboards only read
        result = conn.execute(text(sql))
        columns, rows = list(result.keys()), result.all()
    assert rows, f"{query.panel}: no rows from\n{sql}"
    if query.format == "time_series":
        assert "time" in columns, columns
        assert all(
            isinstance(r[columns.index("time")], (datetime, Decimal, float, int)) for r in rows
        )


def test_open_alerts_on_the_dashboard_match_the_api(engine: Engine) -> None:
    from cloud_bridge.queries import FleetReader

    _populate(engine)
    fleet = next(load(f) for f in DASHBOARD_FILES if load(f).uid == "cultivai-fleet")
    panel = next(p for p in fleet.panels if p.title == "Open alerts")
    assert panel.targets[0].rawSql is not None
    sql = render_sql(panel.targets[0].rawSql, START, END, VALUES, interval_s=60)
    with engine.connect() as conn:
        shown = {(r.device_id, r.kind) for r in conn.execute(text(sql))}
    api = {
        (a["device_id"], a["kind"])
        for a in FleetReader(engine).alerts(None, None, None, "open", None, 100)
    }
    assert shown == api == {("cam-2", "yellowing")}
