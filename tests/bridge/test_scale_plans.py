"""At 200,000 generated observations over six weekly partitions, the read API's queries
use their indexes and read only the partitions they need (plans, not timings)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from cloud_bridge.queries import FleetReader
from tests.bridge.scale import Fleet, captured_sql, explain, generate, nodes, now_utc, read_queries

FLEET = Fleet(devices=1000, per_device=200, weeks=6, end=now_utc())


@pytest.fixture(scope="module")
def big(pg_cluster: Any) -> Iterator[Engine]:
    """One database with the generated fleet, shared by this module's tests."""
    pg_cluster.create_database("scale_plans", template="bridge_template")
    engine = create_engine(pg_cluster.url("scale_plans"))
    generate(engine, FLEET, chunks=2)
    yield engine
    engine.dispose()


def _plans(engine: Engine, name: str) -> list[dict[str, Any]]:
    reader = FleetReader(engine)
    with captured_sql(engine) as seen:
        read_queries(reader, FLEET, 3)[name]()
    return [
        explain(engine, sql, params) for sql, params in seen if sql.lstrip().startswith("SELECT")
    ]


def _observation_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Scans of observation partitions that ran (run-time pruned ones are never executed)."""
    return [
        n
        for n in nodes(plan)
        if str(n.get("Relation Name", "")).startswith("observations_")
        and n.get("Actual Loops", 0) > 0
    ]


def _full_scans(plan: dict[str, Any]) -> list[str]:
    """Partitions read by a sequential scan that met rows (an empty future week costs nothing)."""
    return [
        n["Relation Name"]
        for n in _observation_scans(plan)
        if n["Node Type"] == "Seq Scan"
        and (n.get("Actual Rows", 0) > 0 or n.get("Rows Removed by Filter", 0) > 0)
    ]


def _scanned(plan: dict[str, Any]) -> set[str]:
    """Partitions a plan actually read."""
    return {n["Relation Name"] for n in _observation_scans(plan)}


def test_the_generated_fleet_spans_the_weeks(big: Engine) -> None:
    plan = _plans(big, "latest per device")[0]
    assert plan["Plan"]["Actual Rows"] == FLEET.devices


@pytest.mark.parametrize("name", ["latest per device", "fleet summary"])
def test_latest_rows_are_found_by_key_one_partition_each(big: Engine, name: str) -> None:
    plan = _plans(big, name)[0]
    scans = _observation_scans(plan)
    assert scans and _full_scans(plan) == [], _full_scans(plan)
    # Each device's row is read from the one week its key names: the probes add up to
    # one per device, not one per device and week.
    probes = sum(n.get("Actual Loops", 0) for n in scans)
    assert probes <= FLEET.devices * 1.05, probes


def test_a_room_week_reads_only_its_weeks_by_index(big: Engine) -> None:
    plan = _plans(big, "one room's week")[0]
    assert len(_scanned(plan)) <= 2, _scanned(plan)
    assert _full_scans(plan) == []


def test_a_device_grow_pages_by_its_key_index(big: Engine) -> None:
    plans = _plans(big, "one device's whole grow")
    assert plans
    for plan in plans:
        scans = _observation_scans(plan)
        assert scans and _full_scans(plan) == [], _full_scans(plan)
        read = sum(n.get("Actual Rows", 0) for n in scans)
        assert read <= FLEET.per_device + len(scans), read
