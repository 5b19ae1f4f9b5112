"""The bridge stores schema 2 observations (verdict columns, zones in the payload) and
schema 1 ones from devices not yet updated, side by side."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cloud_bridge.decode import Limits, decode
from cloud_bridge.store import Envelope, FleetStore
from cloud_bridge.tables import AlertRow, ObservationRow
from edge.protocol import Alert, HealthSummary, ZoneCell, ZoneGrid, topic
from tests.bridge.factory import T0, observation

LIMITS = Limits(262_144, 65_536)


def _write(engine: Engine, *messages: tuple[str, bytes]) -> None:
    now = datetime.now(timezone.utc)
    FleetStore(engine, 1024).write([Envelope(t, p, now, decode(t, p, LIMITS)) for t, p in messages])


def _v2(seq: int) -> tuple[str, bytes]:
    obs = observation("cam-1", seq)
    assert obs.health is not None
    health = obs.health.model_copy(
        update={
            "label": "unknown",
            "assessed": False,
            "reason": "most of the canopy looks unlike the leaves the model knows",
            "ood_score": 150.5,
            "drift": 3.4,
            "zones": ZoneGrid(
                rows=2,
                cols=3,
                tile_px=80,
                cells=[
                    ZoneCell(
                        zone="B3",
                        row=1,
                        col=2,
                        label="leaf_spot",
                        confidence=0.8,
                        plant_share=0.9,
                    )
                ],
            ),
            "summary": HealthSummary(
                assessed_share=0.4,
                shares={"leaf_spot": 1.0},
                worst_zone="B3",
                worst_label="leaf_spot",
                worst_confidence=0.8,
            ),
        }
    )
    return topic("cam-1", "observation"), obs.model_copy(
        update={"health": health, "schema_version": 2}
    ).model_dump_json().encode()


def _v1(seq: int) -> tuple[str, bytes]:
    """What a device on firmware before schema 2 sends: no verdict fields at all."""
    doc = json.loads(observation("cam-1", seq).model_dump_json())
    doc["schema_version"] = 1
    for key in ("assessed", "reason", "ood_score", "drift", "zones", "summary"):
        doc["health"].pop(key)
    return topic("cam-1", "observation"), json.dumps(doc).encode()


def test_bridge_stores_a_v2_and_a_v1_observation(engine: Engine) -> None:
    _write(engine, _v1(1), _v2(2))
    with Session(engine) as s:
        rows = {r.seq: r for r in s.execute(select(ObservationRow)).scalars()}
    old, new = rows[1], rows[2]
    assert (old.schema_version, old.health_assessed, old.health_drift) == (1, None, None)
    assert old.health_label == "healthy"
    assert (new.schema_version, new.health_assessed, new.health_label) == (2, False, "unknown")
    assert new.health_reason == "most of the canopy looks unlike the leaves the model knows"
    assert (new.health_drift, new.health_ood_score) == (3.4, 150.5)
    assert (new.health_assessed_share, new.health_worst_zone, new.health_worst_label) == (
        0.4,
        "B3",
        "leaf_spot",
    )
    assert new.payload["health"]["zones"]["cells"][0]["zone"] == "B3"


def test_bridge_stores_a_zone_alert_with_its_zone(engine: Engine) -> None:
    alert = Alert(
        device_id="cam-1",
        alert_id=1,
        kind="zone",
        state="raised",
        at=T0 + timedelta(minutes=1),
        seq=3,
        label="leaf_spot",
        zone="B3",
        message="Leaf spot in zone B3 on 3 captures in a row",
        value=0.8,
    )
    _write(engine, (topic("cam-1", "alert"), alert.model_dump_json().encode()))
    with Session(engine) as s:
        row = s.execute(select(AlertRow)).scalar_one()
    assert (row.kind, row.label, row.zone) == ("zone", "leaf_spot", "B3")
