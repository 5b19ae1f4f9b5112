"""The shipped Grafana dashboards as data: a schema check of what Grafana needs, and
their queries with Grafana's macros and variables substituted, ready to run against
PostgreSQL and Prometheus (no Grafana runs here)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPO = Path(__file__).resolve().parents[2]
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
PANEL_TYPES = {"timeseries", "table", "stat", "bargauge", "gauge", "text", "piechart"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def datasources() -> dict[str, str]:
    """uid -> type of every provisioned data source."""
    path = GRAFANA_DIR / "provisioning" / "datasources" / "cultivai.yml"
    return {d["uid"]: d["type"] for d in yaml.safe_load(path.read_text())["datasources"]}


class Loose(BaseModel):
    """Grafana keeps many more keys than the check looks at."""

    model_config = ConfigDict(extra="allow")


class DataSourceRef(Loose):
    type: str
    uid: str


class GridPos(Loose):
    h: int = Field(ge=1)
    w: int = Field(ge=1, le=24)
    x: int = Field(ge=0, le=23)
    y: int = Field(ge=0)

    @model_validator(mode="after")
    def _fits(self) -> GridPos:
        if self.x + self.w > 24:
            raise ValueError("panel wider than the 24-column grid")
        return self


class Target(Loose):
    refId: str = Field(pattern=r"^[A-Z]$")
    datasource: DataSourceRef
    expr: str | None = None
    rawSql: str | None = None
    format: Literal["table", "time_series"] | None = None


class Panel(Loose):
    id: int = Field(ge=1)
    type: str
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    datasource: DataSourceRef
    gridPos: GridPos
    targets: list[Target] = Field(min_length=1)

    @field_validator("type")
    @classmethod
    def _core_panel(cls, value: str) -> str:
        if value not in PANEL_TYPES:
            raise ValueError(f"{value!r} is not a core panel type this check knows")
        return value

    @model_validator(mode="after")
    def _targets(self) -> Panel:
        refs = [t.refId for t in self.targets]
        if len(refs) != len(set(refs)):
            raise ValueError(f"panel {self.title!r}: refIds repeat")
        for t in self.targets:
            if t.datasource != self.datasource:
                raise ValueError(f"panel {self.title!r}: target {t.refId} on another source")
            if t.datasource.type == "prometheus" and not t.expr:
                raise ValueError(f"panel {self.title!r}: Prometheus target without expr")
            if t.datasource.type != "prometheus" and not (t.rawSql and t.format):
                raise ValueError(f"panel {self.title!r}: SQL target without rawSql/format")
        return self


class Variable(Loose):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["query", "custom", "constant", "interval", "datasource", "textbox"]
    datasource: DataSourceRef | None = None
    query: str | None = None
    multi: bool = False
    includeAll: bool = False


class Templating(Loose):
    list: list[Variable]


class TimeRange(Loose):
    from_: str = Field(alias="from")
    to: str


class Dashboard(Loose):
    uid: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    title: str = Field(min_length=1)
    schemaVersion: int = Field(ge=36)
    tags: list[str]
    time: TimeRange
    templating: Templating
    panels: list[Panel] = Field(min_length=1)

    @model_validator(mode="after")
    def _layout(self) -> Dashboard:
        ids = [p.id for p in self.panels]
        if len(ids) != len(set(ids)):
            raise ValueError("panel ids repeat")
        cells: dict[tuple[int, int], str] = {}
        for p in self.panels:
            g = p.gridPos
            for x in range(g.x, g.x + g.w):
                for y in range(g.y, g.y + g.h):
                    if (x, y) in cells:
                        raise ValueError(f"{p.title!r} overlaps {cells[(x, y)]!r}")
                    cells[(x, y)] = p.title
        return self


def load(path: Path) -> Dashboard:
    """One dashboard file, checked."""
    return Dashboard.model_validate(json.loads(path.read_text()))


@dataclass(frozen=True)
class Query:
    """One panel target or variable query of a dashboard."""

    dashboard: str
    panel: str
    kind: Literal["prometheus", "sql"]
    text: str
    format: str | None


def queries(dashboard: Dashboard) -> list[Query]:
    """Every query the dashboard sends: panel targets and query variables."""
    found: list[Query] = []
    for p in dashboard.panels:
        for t in p.targets:
            if t.expr is not None:
                found.append(Query(dashboard.uid, p.title, "prometheus", t.expr, None))
            elif t.rawSql is not None:
                found.append(Query(dashboard.uid, p.title, "sql", t.rawSql, t.format))
    for v in dashboard.templating.list:
        if v.type == "query" and v.query and v.datasource is not None:
            kind: Literal["prometheus", "sql"] = (
                "prometheus" if v.datasource.type == "prometheus" else "sql"
            )
            found.append(Query(dashboard.uid, f"variable {v.name}", kind, v.query, "table"))
    return found


def variables_used(text: str) -> set[str]:
    """Names of the $variables a query refers to (Grafana's own $__ ones excluded)."""
    names = {m.group(1) or m.group(3) for m in _VARIABLE.finditer(text)}
    return {n for n in names if not n.startswith("__")}


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_sql(
    text: str, start: datetime, end: datetime, values: dict[str, list[str]], interval_s: int
) -> str:
    """The SQL Grafana's PostgreSQL data source would send, for this time range and these
    variable values (macros as documented for that data source)."""
    frm, to = _sql_string(start.isoformat()), _sql_string(end.isoformat())

    def group_alias(m: re.Match[str]) -> str:
        return f'floor(extract(epoch from {m.group(1)})/{interval_s})*{interval_s} AS "time"'

    text = re.sub(r"\$__timeGroupAlias\((\w+),\s*\$__interval\)", group_alias, text)
    text = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN {frm} AND {to}", text)
    text = text.replace("$__timeFrom()", frm).replace("$__timeTo()", to)

    def variable(m: re.Match[str]) -> str:
        name, form = m.group(1) or m.group(3), m.group(2)
        if name.startswith("__"):
            raise AssertionError(f"macro ${name} not substituted")
        chosen = values[name]
        if form == "sqlstring" or len(chosen) > 1:
            return ",".join(_sql_string(v) for v in chosen)
        return chosen[0]

    return _VARIABLE.sub(variable, text)


def render_promql(text: str, values: dict[str, list[str]], rate_interval: str) -> str:
    """The PromQL Grafana would send, with these variable values."""
    text = text.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        chosen = values[name]
        return chosen[0] if len(chosen) == 1 else "(" + "|".join(map(re.escape, chosen)) + ")"

    return _VARIABLE.sub(variable, text)
