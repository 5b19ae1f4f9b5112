"""The bridge stores observations whose colour the device could not measure (null metrics)."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from cloud_bridge.decode import Limits, decode
from cloud_bridge.schema import alembic_config, head_revision, migrate
from cloud_bridge.store import Envelope, FleetStore
from cloud_bridge.tables import ObservationRow
from edge.protocol import topic
from tests.bridge.factory import insert_at_old_revision, observation

LIMITS = Limits(262_144, 65_536)
REASON = "narrow-band red/blue LED light: leaf colour cannot be told apart"


def _write(engine: Engine, *messages: tuple[str, bytes]) -> None:
    now = datetime.now(timezone.utc)
    FleetStore(engine, 1024).write([Envelope(t, p, now, decode(t, p, LIMITS)) for t, p in messages])


def _message(seq: int, measured: bool) -> tuple[str, bytes]:
    obs = observation("cam-1", seq)
    if not measured:
        canopy = obs.canopy.model_copy(
            update={
                "yellow_pct": None,
                "brown_pct": None,
                "hue_mean_deg": None,
                "hue_median_deg": None,
                "greenness_index": None,
                "light": "red_blue",
                "colour_reason": REASON,
            }
        )
        obs = obs.model_copy(update={"canopy": canopy})
    return topic("cam-1", "observation"), obs.model_dump_json().encode()


def _rows(engine: Engine) -> dict[int, ObservationRow]:
    with Session(engine) as s:
        return {r.seq: r for r in s.execute(select(ObservationRow)).scalars()}


def test_bridge_stores_an_observation_without_colour_beside_a_measured_one(
    engine: Engine,
) -> None:
    _write(engine, _message(1, measured=True), _message(2, measured=False))
    rows = _rows(engine)
    measured, unmeasured = rows[1], rows[2]
    expected = observation("cam-1", 1).canopy
    assert (measured.yellow_pct, measured.brown_pct) == (expected.yellow_pct, expected.brown_pct)
    assert (unmeasured.yellow_pct, unmeasured.brown_pct) == (None, None)
    assert unmeasured.greenness_index is None and unmeasured.hue_mean_deg is None
    assert unmeasured.cover_pct == observation("cam-1", 2).canopy.cover_pct
    assert unmeasured.payload["canopy"]["colour_reason"] == REASON
    assert unmeasured.payload["canopy"]["yellow_pct"] is None


def test_migrating_from_0002_keeps_rows_and_then_accepts_null_colour(empty_pg_url: str) -> None:
    engine = create_engine(empty_pg_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    insert_at_old_revision(engine, observation("cam-1", 1))
    with engine.connect() as conn:  # the ORM model has columns later revisions add
        before = conn.exec_driver_sql(
            "SELECT yellow_pct, brown_pct, payload FROM observations WHERE seq = 1"
        ).one()
    assert migrate(engine) == ("0002", head_revision())
    after = _rows(engine)[1]
    assert (after.yellow_pct, after.brown_pct, after.payload) == tuple(before)
    _write(engine, _message(2, measured=False))
    assert _rows(engine)[2].yellow_pct is None
    engine.dispose()
