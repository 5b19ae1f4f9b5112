"""The bridge stores schema 3 climate fields beside schema 2 observations without them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from alembic import command
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from cloud_bridge.decode import Limits, decode
from cloud_bridge.schema import alembic_config, head_revision, migrate
from cloud_bridge.store import Envelope, FleetStore
from cloud_bridge.tables import ObservationRow
from edge.protocol import ClimateBlock, topic
from tests.bridge.factory import insert_at_old_revision, observation

LIMITS = Limits(262_144, 65_536)
CLIMATE = ClimateBlock(
    air_temp_c=26.1,
    rh_pct=61.5,
    co2_ppm=905,
    leaf_temp_c=23.4,
    leaf_temp_pixels=41,
    air_vpd_kpa=1.303,
    leaf_vpd_kpa=0.898,
    stage="veg",
    vpd_low_kpa=0.8,
    vpd_high_kpa=1.2,
    sensors={"climate": "ok", "co2": "ok", "thermal": "ok"},
)


def _write(engine: Engine, *messages: tuple[str, bytes]) -> None:
    now = datetime.now(timezone.utc)
    FleetStore(engine, 1024).write([Envelope(t, p, now, decode(t, p, LIMITS)) for t, p in messages])


def _v3(seq: int) -> tuple[str, bytes]:
    obs = observation("cam-1", seq).model_copy(update={"climate": CLIMATE})
    return topic("cam-1", "observation"), obs.model_dump_json().encode()


def _v2(seq: int) -> tuple[str, bytes]:
    doc = json.loads(observation("cam-1", seq).model_dump_json())
    doc["schema_version"] = 2
    doc.pop("climate")
    return topic("cam-1", "observation"), json.dumps(doc).encode()


def _rows(engine: Engine) -> dict[int, ObservationRow]:
    with Session(engine) as s:
        return {r.seq: r for r in s.execute(select(ObservationRow)).scalars()}


def test_bridge_stores_climate_columns_and_keeps_v2_rows_null(engine: Engine) -> None:
    _write(engine, _v2(1), _v3(2))
    old, new = _rows(engine)[1], _rows(engine)[2]
    assert (old.schema_version, old.air_temp_c, old.leaf_vpd_kpa) == (2, None, None)
    assert new.schema_version == 3
    assert (new.air_temp_c, new.rh_pct, new.co2_ppm, new.leaf_temp_c) == (26.1, 61.5, 905, 23.4)
    assert (new.air_vpd_kpa, new.leaf_vpd_kpa) == (1.303, 0.898)
    assert new.payload["climate"]["sensors"]["thermal"] == "ok"
    assert new.payload["climate"]["stage"] == "veg"


def test_impossible_climate_values_are_dead_lettered_not_stored(engine: Engine) -> None:
    doc = json.loads(_v3(3)[1])
    doc["climate"]["rh_pct"] = 250
    _write(engine, (topic("cam-1", "observation"), json.dumps(doc).encode()))
    assert 3 not in _rows(engine)


def test_migrating_to_0006_keeps_rows_and_then_stores_climate(empty_pg_url: str) -> None:
    engine = create_engine(empty_pg_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005")
    insert_at_old_revision(engine, observation("cam-1", 1))
    assert migrate(engine) == ("0005", head_revision())
    assert _rows(engine)[1].air_temp_c is None
    _write(engine, _v3(2))
    assert _rows(engine)[2].leaf_temp_c == 23.4
    engine.dispose()


def test_oversized_sensor_status_is_dead_lettered(engine: Engine) -> None:
    doc = json.loads(_v3(4)[1])
    doc["climate"]["sensors"] = {"thermal": "x" * 10_000}
    _write(engine, (topic("cam-1", "observation"), json.dumps(doc).encode()))
    assert 4 not in _rows(engine)
