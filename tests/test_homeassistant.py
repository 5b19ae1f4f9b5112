"""Home Assistant discovery as Home Assistant reads it: configs and their Jinja templates."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest

from edge.homeassistant import discovery_messages

LABELS = ("healthy", "leaf_spot", "powdery_mildew")
DEVICE = "cam-1"


def configs(**kwargs: Any) -> dict[str, dict[str, Any]]:
    """Discovery configs keyed by '<platform>/<entity>'."""
    messages = discovery_messages(
        "homeassistant", DEVICE, "site", "tent", "1.0", True, labels=LABELS, **kwargs
    )
    out = {}
    for topic_, payload in messages:
        _, platform, _, key, _ = topic_.split("/")
        out[f"{platform}/{key}"] = json.loads(payload)
    return out


def render(template: str, value: dict[str, Any]) -> str:
    """Render a value_template the way Home Assistant does: Jinja over value_json."""
    env = jinja2.Environment(autoescape=False)
    return env.from_string(template).render(value_json=value).strip()


def observation(health: dict[str, Any] | None) -> dict[str, Any]:
    return {"canopy": {"cover_pct": 40.0, "yellow_pct": 1.0, "brown_pct": 0.5}, "health": health}


VERDICT = {"label": "leaf_spot", "confidence": 0.873, "scores": {}, "assessed": True}
UNASSESSED = {"label": "unknown", "confidence": 0.0, "scores": {}, "assessed": False}


def test_no_entity_uses_the_deprecated_object_id() -> None:
    for key, cfg in configs().items():
        assert "object_id" not in cfg, key
        platform = key.split("/")[0]
        assert cfg["default_entity_id"] == f"{platform}.{cfg['unique_id']}"


def test_verdict_is_an_enum_whose_options_include_unknown() -> None:
    verdict = configs()["sensor/health"]
    assert verdict["device_class"] == "enum"
    assert "state_class" not in verdict and "unit_of_measurement" not in verdict
    assert verdict["options"] == [*LABELS, "unknown"]


@pytest.mark.parametrize(
    ("health", "state"),
    [
        (VERDICT, "leaf_spot"),
        (None, "unknown"),
        (UNASSESSED, "unknown"),
        ({**VERDICT, "label": "a_label_of_a_newer_model"}, "unknown"),
        ({k: v for k, v in VERDICT.items() if k != "assessed"}, "leaf_spot"),
    ],
)
def test_verdict_state_is_always_one_of_the_options(
    health: dict[str, Any] | None, state: str
) -> None:
    verdict = configs()["sensor/health"]
    rendered = render(verdict["value_template"], observation(health))
    assert rendered == state and rendered in verdict["options"]


@pytest.mark.parametrize(
    "health", [None, UNASSESSED, {"label": "unknown", "confidence": 0.4, "scores": {}}]
)
def test_confidence_is_unknown_not_zero_without_a_verdict(health: dict[str, Any] | None) -> None:
    template = configs()["sensor/health_confidence"]["value_template"]
    assert render(template, observation(health)) == "None"  # HA's "unknown"


@pytest.mark.parametrize("entity,metric", [("yellow", "yellow_pct"), ("brown", "brown_pct")])
def test_colour_not_measured_is_unknown_not_zero(entity: str, metric: str) -> None:
    template = configs()[f"sensor/{entity}"]["value_template"]
    unmeasured = observation(None)
    unmeasured["canopy"][metric] = None  # narrow-band LED light or too dark
    unmeasured["canopy"]["colour_reason"] = "narrow-band red/blue LED light"
    assert render(template, unmeasured) == "None"  # HA's "unknown"
    del unmeasured["canopy"][metric]
    assert render(template, unmeasured) == "None"


@pytest.mark.parametrize("entity,metric", [("yellow", "yellow_pct"), ("brown", "brown_pct")])
@pytest.mark.parametrize("value", [0.0, 0.5, 37.25])
def test_colour_measured_is_its_value(entity: str, metric: str, value: float) -> None:
    template = configs()[f"sensor/{entity}"]["value_template"]
    measured = observation(None)
    measured["canopy"][metric] = value
    assert float(render(template, measured)) == value


def test_confidence_is_a_percentage_with_a_verdict() -> None:
    template = configs()["sensor/health_confidence"]["value_template"]
    assert float(render(template, observation(VERDICT))) == 87.3


@pytest.mark.parametrize(("open_alerts", "state"), [(0, "OFF"), (2, "ON")])
def test_open_alerts_are_a_problem_binary_sensor(open_alerts: int, state: str) -> None:
    problem = configs()["binary_sensor/alerts"]
    assert problem["device_class"] == "problem"
    assert problem["state_topic"] == f"cultivai/v1/{DEVICE}/stats"
    assert render(problem["value_template"], {"open_alerts": open_alerts}) == state


def test_stats_from_an_older_firmware_read_as_no_problem() -> None:
    problem = configs()["binary_sensor/alerts"]
    assert render(problem["value_template"], {"outbox_depth": 0}) == "OFF"


def test_device_health_sensors_are_diagnostic_and_plant_sensors_are_not() -> None:
    cfgs = configs()
    for key in ("sensor/outbox_depth", "sensor/disk_free", "sensor/cpu_temperature"):
        assert cfgs[key]["entity_category"] == "diagnostic", key
    for key in ("sensor/canopy_cover", "sensor/health", "binary_sensor/alerts", "image/thumbnail"):
        assert "entity_category" not in cfgs[key], key


def test_every_entity_names_its_origin_and_the_status_page() -> None:
    for key, cfg in configs(status_page="http://192.0.2.7:8080/").items():
        assert cfg["origin"]["name"] == "CultivAI Edge", key
        assert cfg["device"]["configuration_url"] == "http://192.0.2.7:8080/", key


def test_no_configuration_url_when_the_page_is_off() -> None:
    for cfg in configs().values():
        assert "configuration_url" not in cfg["device"]


CLIMATE = ("air_temperature", "humidity", "vpd", "co2", "leaf_temperature", "leaf_vpd")


def test_no_climate_entities_without_sensors() -> None:
    assert not any(key in configs() for key in (f"sensor/{k}" for k in CLIMATE))


@pytest.mark.parametrize(
    ("key", "device_class", "unit"),
    [
        ("air_temperature", "temperature", "°C"),
        ("humidity", "humidity", "%"),
        ("co2", "carbon_dioxide", "ppm"),
        ("leaf_temperature", "temperature", "°C"),
        ("vpd", "pressure", "kPa"),
        ("leaf_vpd", "pressure", "kPa"),
    ],
)
def test_climate_entities_have_home_assistant_classes_and_units(
    key: str, device_class: str, unit: str
) -> None:
    config = configs(climate=CLIMATE)[f"sensor/{key}"]
    assert config["device_class"] == device_class
    assert config["unit_of_measurement"] == unit
    assert config["state_class"] == "measurement"
    assert config["state_topic"].endswith("/observation")


def test_climate_value_is_read_from_the_observation() -> None:
    config = configs(climate=CLIMATE)["sensor/leaf_vpd"]
    assert render(config["value_template"], {"climate": {"leaf_vpd_kpa": 0.91}}) == "0.91"


@pytest.mark.parametrize("value", [{"climate": None}, {}, {"climate": {"leaf_vpd_kpa": None}}])
def test_climate_not_measured_is_unknown_not_zero(value: dict[str, Any]) -> None:
    config = configs(climate=CLIMATE)["sensor/leaf_vpd"]
    assert render(config["value_template"], value) == "None"


def test_climate_entities_follow_the_fitted_sensors() -> None:
    from edge.homeassistant import climate_entities

    assert climate_entities(False, False, False) == ()
    assert climate_entities(True, False, False) == ("air_temperature", "humidity", "vpd")
    assert set(climate_entities(False, True, True)) == set(CLIMATE)
