"""Reading checks: not fitted, range, stuck, CRC and I/O failures counted, never raised."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edge.sensors import SensorHub, SensorsConfig
from edge.sensors.base import with_crc
from edge.sensors.bus import ScriptedBus
from edge.sensors.sht import SHT4X_MEASURE, SHT4X_SERIAL


def fake_config(**extra: object) -> SensorsConfig:
    return SensorsConfig.model_validate(
        {
            "climate": {"model": "fake", "air_temp_c": 26.0, "rh_pct": 55.0},
            "co2": {"model": "fake", "co2_ppm": 900},
            "thermal": {"model": "fake", "leaf_c": 23.0, "background_c": 28.0},
            **extra,
        }
    )


def recorder() -> tuple[list[tuple[str, str]], object]:
    seen: list[tuple[str, str]] = []
    return seen, lambda role, reason: seen.append((role, reason))


def test_no_sensors_configured_are_all_not_fitted() -> None:
    readings = SensorHub(SensorsConfig()).read()
    assert (readings.air_temp_c, readings.rh_pct, readings.co2_ppm, readings.thermal) == (
        None,
        None,
        None,
        None,
    )
    assert readings.status == {r: "not fitted" for r in ("climate", "co2", "thermal")}


def test_fakes_deliver_every_quantity() -> None:
    mask = np.zeros((240, 320), bool)
    mask[60:180, 80:240] = True
    readings = SensorHub(fake_config()).read(mask)
    assert readings.air_temp_c == pytest.approx(26.0, abs=0.5)
    assert readings.rh_pct == pytest.approx(55.0, abs=0.5)
    assert readings.co2_ppm == pytest.approx(900, abs=30)
    assert readings.thermal is not None and readings.thermal.shape == (24, 32)
    assert readings.thermal[12, 16] == pytest.approx(23.0, abs=1.0)
    assert readings.thermal[0, 0] == pytest.approx(28.0, abs=1.0)
    assert set(readings.status.values()) == {"ok"}


def test_sensor_absent_from_the_bus_is_not_fitted_and_counts_no_failure() -> None:
    seen, hook = recorder()
    config = SensorsConfig.model_validate({"climate": {"model": "sht4x"}})
    hub = SensorHub(config, bus_factory=lambda _n: ScriptedBus({}), on_failure=hook)  # type: ignore[arg-type]
    readings = hub.read()
    assert readings.status["climate"] == "not fitted"
    assert readings.air_temp_c is None
    assert seen == []


def test_sensor_plugged_in_later_is_found_on_a_reprobe() -> None:
    responses: dict[int, dict[bytes, bytes]] = {}
    bus = ScriptedBus(responses)
    config = SensorsConfig.model_validate({"climate": {"model": "sht4x"}, "reprobe_every": 3})
    hub = SensorHub(config, bus_factory=lambda _n: bus)
    assert hub.read().status["climate"] == "not fitted"
    responses[0x44] = {SHT4X_SERIAL: with_crc(1, 2), SHT4X_MEASURE: with_crc(0x6666, 0x8000)}
    assert hub.read().air_temp_c is None  # first read after: still waiting to reprobe
    readings = hub.read()
    assert readings.air_temp_c == pytest.approx(25.0, abs=0.01)


def test_missing_smbus2_or_bus_is_a_failure_not_a_crash() -> None:
    seen, hook = recorder()

    def no_bus(_n: int) -> ScriptedBus:
        raise OSError(2, "No such file or directory: /dev/i2c-1")

    config = SensorsConfig.model_validate({"climate": {"model": "sht3x"}})
    hub = SensorHub(config, bus_factory=no_bus, on_failure=hook)  # type: ignore[arg-type]
    assert hub.read().status["climate"] == "failed: unavailable"
    assert seen == [("climate", "unavailable")]


def test_crc_failure_is_counted_and_the_next_read_recovers() -> None:
    seen, hook = recorder()
    config = fake_config()
    hub = SensorHub(config, on_failure=hook)  # type: ignore[arg-type]
    hub._sensors["climate"].fail_next = ["crc"]
    first = hub.read()
    assert first.air_temp_c is None and first.status["climate"] == "failed: crc"
    assert first.co2_ppm is not None  # other sensors unaffected
    assert hub.read().air_temp_c is not None
    assert seen == [("climate", "crc")]
    assert hub.failures == {("climate", "crc"): 1}


def test_out_of_range_value_is_dropped_and_counted() -> None:
    seen, hook = recorder()
    hub = SensorHub(fake_config(), on_failure=hook)  # type: ignore[arg-type]
    hub._sensors["co2"].co2_ppm = 65535  # what a floating bus reads as all ones
    assert hub.read().co2_ppm is None
    assert ("co2", "out_of_range") in seen


def test_a_value_repeating_exactly_counts_as_stuck() -> None:
    seen, hook = recorder()
    config = SensorsConfig.model_validate(
        {"climate": {"model": "fake", "noise": 0}, "stuck_readings": 3}
    )
    hub = SensorHub(config, on_failure=hook)  # type: ignore[arg-type]
    values = [hub.read().air_temp_c for _ in range(4)]
    assert values[:2] == [25.0, 25.0]
    assert values[2:] == [None, None]
    assert seen.count(("climate", "stuck")) == 4  # temperature and humidity, twice


def test_thermal_frame_with_many_dead_pixels_is_rejected() -> None:
    seen, hook = recorder()
    hub = SensorHub(fake_config(), on_failure=hook)  # type: ignore[arg-type]

    class Broken:
        name = "broken"

        def read(self, truth_mask: object = None) -> object:
            from edge.sensors.base import ThermalFrame

            frame = np.full((24, 32), 24.0, np.float32)
            frame[:4] = -273.0
            return ThermalFrame(frame)

    hub._sensors["thermal"] = Broken()
    assert hub.read().thermal is None
    assert ("thermal", "out_of_range") in seen


def test_a_few_dead_thermal_pixels_become_nan() -> None:
    hub = SensorHub(fake_config())

    class OneDead:
        name = "one-dead"

        def read(self, truth_mask: object = None) -> object:
            from edge.sensors.base import ThermalFrame

            frame = np.random.default_rng(1).normal(24, 0.2, (24, 32)).astype(np.float32)
            frame[3, 3] = 500.0
            return ThermalFrame(frame)

    hub._sensors["thermal"] = OneDead()
    thermal = hub.read().thermal
    assert thermal is not None and np.isnan(thermal[3, 3]) and np.isfinite(thermal[4, 4])


def test_a_driver_bug_is_a_failure_not_a_crash() -> None:
    seen, hook = recorder()
    hub = SensorHub(fake_config(), on_failure=hook)  # type: ignore[arg-type]

    class Buggy:
        name = "buggy"

        def read(self) -> object:
            raise ZeroDivisionError("bug")

    hub._sensors["climate"] = Buggy()
    assert hub.read().status["climate"] == "failed: error"
    assert seen == [("climate", "error")]


def test_scd4x_temperature_stands_in_when_no_air_sensor_is_fitted() -> None:
    from edge.sensors.base import Co2Reading

    hub = SensorHub(SensorsConfig.model_validate({"co2": {"model": "fake"}}))

    class WithClimate:
        name = "scd"

        def read(self) -> Co2Reading:
            return Co2Reading(700.0, 24.5, 61.0)

    hub._sensors["co2"] = WithClimate()
    readings = hub.read()
    assert (readings.co2_ppm, readings.air_temp_c, readings.rh_pct) == (700.0, 24.5, 61.0)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"climate": {"model": "dht22"}}, "climate"),
        ({"climate": {"model": "sht3x", "address": 0x50}}, "address"),
        ({"vpd": {"veg": [1.2, 0.8]}}, "low < high"),
        ({"registration": {"scale_x": 0}}, "must not be 0"),
    ],
)
def test_bad_sensor_config_names_the_problem(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SensorsConfig.model_validate(section)
