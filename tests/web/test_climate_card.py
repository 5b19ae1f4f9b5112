"""The climate card on the status page, from observations with and without sensors."""

from __future__ import annotations

from datetime import timedelta

from edge.protocol import ClimateBlock, Observation
from tests.web.conftest import AgentDevice, log_in, make_app


def _with_climate(
    device: AgentDevice, climate: ClimateBlock | None, earlier: timedelta = timedelta(0)
) -> str:
    store = device.agent.store
    latest = store.recent(1)[0]
    at = latest.captured_at - earlier

    def build(seq: int, stored: bool) -> Observation:
        return latest.model_copy(update={"seq": seq, "climate": climate, "captured_at": at})

    store.add_observation(build, None)
    client = make_app(device).test_client()
    log_in(client)
    return client.get("/").text


def test_climate_card_shows_air_leaf_vpd_and_co2(fresh_device: AgentDevice) -> None:
    climate = ClimateBlock(
        air_temp_c=26.2,
        rh_pct=61.0,
        co2_ppm=905,
        leaf_temp_c=23.9,
        air_vpd_kpa=1.313,
        leaf_vpd_kpa=1.75,
        stage="veg",
        vpd_low_kpa=0.8,
        vpd_high_kpa=1.2,
        sensors={"climate": "ok", "co2": "ok", "thermal": "failed: crc"},
    )
    page = _with_climate(fresh_device, climate)
    assert "Climate" in page
    assert "26.2 °C" in page and "61 % RH" in page
    assert "23.9 °C" in page and "-2.3 °C vs air" in page
    assert '<dd class="bad">1.75 kPa' in page  # out of the veg range
    assert "target 0.80–1.20 for veg" in page
    assert "905 ppm" in page
    assert "failed: crc" in page


def test_climate_card_says_why_there_is_no_leaf_temperature(fresh_device: AgentDevice) -> None:
    climate = ClimateBlock(
        air_temp_c=25.0,
        rh_pct=55.0,
        air_vpd_kpa=1.426,
        leaf_temp_reason="2 thermal pixels fully on leaves; 3 needed",
        sensors={"climate": "ok", "thermal": "ok"},
    )
    page = _with_climate(fresh_device, climate)
    assert "2 thermal pixels fully on leaves" in page
    assert "Air VPD" in page and "1.43 kPa" in page


def test_no_climate_card_without_sensors(fresh_device: AgentDevice) -> None:
    assert 'id="climate-h"' not in _with_climate(fresh_device, None)


def test_history_charts_air_and_leaf_temperature_and_vpd(fresh_device: AgentDevice) -> None:
    climate = ClimateBlock(
        air_temp_c=26.0, rh_pct=60.0, leaf_temp_c=23.0, air_vpd_kpa=1.34, leaf_vpd_kpa=0.9
    )
    _with_climate(fresh_device, climate, earlier=timedelta(minutes=5))  # inside the range
    client = make_app(fresh_device).test_client()
    log_in(client)
    page = client.get("/history").text
    assert "<h2>Temperature</h2>" in page and "<h2>VPD</h2>" in page
    assert "series-leaf" in page and "series-air" in page


def test_no_climate_charts_without_sensors(fresh_device: AgentDevice) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    assert "<h2>VPD</h2>" not in client.get("/history").text
