"""Climate in the observation, the VPD alert, and sensor failures never stopping captures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from edge.agent import Agent
from edge.alerts import AlertEngine
from edge.clock import FakeClock
from edge.config import AlertsConfig
from edge.protocol import CanopyBlock, ClimateBlock, ExposureBlock, ImageBlock, Observation
from edge.sensors.settings import VpdTargetSettings
from edge.vpd import air_vpd_kpa, leaf_vpd_kpa
from tests.conftest import make_config

T0 = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
SENSORS = {
    "climate": {"model": "fake", "air_temp_c": 26.0, "rh_pct": 60.0, "noise": 0.05},
    "co2": {"model": "fake", "co2_ppm": 850},
    "thermal": {"model": "fake", "leaf_c": 23.5, "background_c": 27.5, "noise_c": 0.1},
    "vpd": {"stage": "veg"},
}


def climate_agent(tmp_path: Path, clock: FakeClock, **sensors: object) -> Agent:
    cfg = make_config(
        tmp_path,
        camera={"width": 640, "height": 480, "start_day": 20},
        sensors={**SENSORS, **sensors},
    )
    return Agent(cfg, clock=clock).start()


def test_observation_carries_air_leaf_temperature_and_vpd(tmp_path: Path, clock: FakeClock) -> None:
    agent = climate_agent(tmp_path, clock)
    obs = agent.capture_once()
    agent.close()
    assert obs is not None and obs.schema_version == 3
    c = obs.climate
    assert c is not None
    assert c.air_temp_c == pytest.approx(26.0, abs=0.3)
    assert c.co2_ppm == pytest.approx(850, abs=40)
    assert c.leaf_temp_c == pytest.approx(23.5, abs=0.3)
    assert c.leaf_temp_pixels is not None and c.leaf_temp_pixels >= 3
    assert c.air_vpd_kpa == pytest.approx(air_vpd_kpa(c.air_temp_c, c.rh_pct or 0), abs=0.002)
    assert c.leaf_vpd_kpa == pytest.approx(
        leaf_vpd_kpa(c.leaf_temp_c or 0, c.air_temp_c, c.rh_pct or 0), abs=0.002
    )
    assert (c.stage, c.vpd_low_kpa, c.vpd_high_kpa) == ("veg", 0.8, 1.2)
    assert c.sensors == {"climate": "ok", "co2": "ok", "thermal": "ok"}
    stored = agent.store.recent(1)[0]
    assert stored.climate == c  # kept on the device as sent


def test_without_sensors_the_observation_has_no_climate(tmp_path: Path, clock: FakeClock) -> None:
    agent = Agent(make_config(tmp_path, camera={"width": 320, "height": 240}), clock=clock).start()
    obs = agent.capture_once()
    agent.close()
    assert obs is not None and obs.climate is None


def test_a_failing_sensor_is_counted_and_the_capture_is_stored(
    tmp_path: Path, clock: FakeClock
) -> None:
    agent = climate_agent(tmp_path, clock)
    assert agent.sensors is not None
    agent.sensors._sensors["climate"].fail_next = ["crc", "crc"]
    first, second = agent.capture_once(), agent.capture_once()
    third = agent.capture_once()
    metrics = generate_latest(agent.metrics.registry).decode()
    agent.close()
    assert first is not None and second is not None and third is not None
    assert first.climate is not None and first.climate.air_temp_c is None
    assert first.climate.air_vpd_kpa is None and first.climate.co2_ppm is not None
    assert first.climate.sensors["climate"] == "failed: crc"
    assert third.climate is not None and third.climate.air_temp_c is not None
    assert 'cultivai_sensor_failures_total{reason="crc",sensor="climate"} 2.0' in metrics
    assert 'cultivai_climate{quantity="co2_ppm"}' in metrics
    assert 'cultivai_sensor_up{sensor="climate"} 1.0' in metrics


def reading(seq: int, leaf_vpd: float | None, air_vpd: float | None = 1.0) -> Observation:
    return Observation(
        device_id="cam",
        seq=seq,
        captured_at=T0 + timedelta(minutes=15 * seq),
        camera="synthetic",
        canopy=CanopyBlock(cover_pct=40, area_px=1, yellow_pct=1, brown_pct=0, exg_threshold=0.1),
        exposure=ExposureBlock(verdict="ok", mean_luma=120, under_pct=0, over_pct=0, sharpness=100),
        image=ImageBlock(width=64, height=48, stored=False),
        climate=ClimateBlock(air_vpd_kpa=air_vpd, leaf_vpd_kpa=leaf_vpd),
    )


def vpd_run(engine: AlertEngine, values: list[float | None]) -> list[tuple[int, str]]:
    out = []
    for seq, value in enumerate(values, 1):
        for event in engine.evaluate(reading(seq, value)):
            engine.applied(event, seq)
            out.append((seq, event.action))
    return out


def test_vpd_out_of_range_raises_after_n_captures_and_clears_after_n_back() -> None:
    engine = AlertEngine(AlertsConfig(), [], vpd=VpdTargetSettings(stage="flower", consecutive=3))
    events = vpd_run(engine, [1.4, 1.9, 1.95, 1.2, 2.0, 2.1, 2.0, 1.5, 1.4, 1.8, 1.4, 1.5, 1.45])
    assert events == [(7, "raise"), (13, "clear")]


def test_vpd_alert_message_names_the_side_and_the_stage() -> None:
    engine = AlertEngine(AlertsConfig(), [], vpd=VpdTargetSettings(stage="veg", consecutive=1))
    (event,) = engine.evaluate(reading(1, 0.5))
    assert event.kind == "vpd" and "below the veg target 0.80-1.20 kPa" in event.message
    assert event.message.startswith("Leaf VPD 0.50")


def test_missing_vpd_neither_raises_nor_breaks_a_streak() -> None:
    engine = AlertEngine(AlertsConfig(), [], vpd=VpdTargetSettings(stage="veg", consecutive=3))
    out = []
    for seq, (leaf, air) in enumerate([(2.0, 2.0), (None, None), (2.0, 2.0), (2.0, 2.0)], 1):
        out += [(seq, e.action) for e in engine.evaluate(reading(seq, leaf, air))]
    assert out == [(4, "raise")]


def test_air_vpd_is_judged_when_there_is_no_leaf_temperature() -> None:
    engine = AlertEngine(AlertsConfig(), [], vpd=VpdTargetSettings(stage="veg", consecutive=1))
    (event,) = engine.evaluate(reading(1, None, air_vpd=1.6))
    assert event.message.startswith("Air VPD 1.60")


def test_no_growth_stage_means_no_vpd_alert() -> None:
    engine = AlertEngine(AlertsConfig(), [], vpd=VpdTargetSettings(consecutive=1))
    assert vpd_run(engine, [3.0, 3.0, 3.0]) == []


def test_vpd_alert_is_stored_and_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    # Warm humid air with a cool leaf: leaf VPD far below the flower range.
    sensors = {
        "climate": {"model": "fake", "air_temp_c": 24.0, "rh_pct": 85.0, "noise": 0.05},
        "vpd": {"stage": "flower", "consecutive": 2},
    }
    agent = climate_agent(tmp_path, clock, **sensors)
    for _ in range(2):
        agent.capture_once()
        clock.advance(900)
    open_alerts = agent.store.open_alerts()
    agent.close()
    assert [a.kind for a in open_alerts] == ["vpd"]
    again = climate_agent(tmp_path, clock, **sensors)
    again.capture_once()
    assert [a.kind for a in again.store.open_alerts()] == ["vpd"]  # not raised twice
    again.close()
