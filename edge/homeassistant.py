"""Home Assistant MQTT discovery: retained config messages for the device's entities."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from edge import __version__
from edge.protocol import topic

MANUFACTURER = "CultivAI"
UNKNOWN = "unknown"  # the verdict when the model gave none it stands behind
ORIGIN = {"name": "CultivAI Edge", "sw_version": __version__}

# health is null without a model, and `assessed` false when the model declined to
# judge; either way there is no verdict and no confidence to put in statistics.
_HAS_VERDICT = (
    "value_json.health and value_json.health.get('assessed', true)"
    f" and value_json.health.label != '{UNKNOWN}'"
)


def _colour(metric: str) -> str:
    """A colour metric's template: None (HA's "unknown") when it was not measured.

    The analysis leaves colour null under narrow-band LED light or in a too-dark
    photo; a missing field (a message from some other sender) reads the same way.
    """
    value = f"value_json.canopy.{metric}"
    return "{{ " + value + " if " + value + " is number else None }}"


@dataclass(frozen=True, slots=True)
class _Entity:
    key: str
    name: str
    source: str  # "observation" or "stats"
    template: str
    unit: str | None = None
    icon: str | None = None
    state_class: str | None = "measurement"
    diagnostic: bool = False  # about the device, not the plants
    platform: str = "sensor"
    device_class: str | None = None


SENSORS = (
    _Entity(
        "canopy_cover",
        "Canopy cover",
        "observation",
        "{{ value_json.canopy.cover_pct }}",
        "%",
        "mdi:leaf",
    ),
    _Entity(
        "health_confidence",
        "Plant health confidence",
        "observation",
        # HA reads a rendered None as "unknown", not as 0.
        "{{ (value_json.health.confidence * 100) | round(1) if " + _HAS_VERDICT + " else None }}",
        "%",
        "mdi:percent",
    ),
    _Entity(
        "yellow",
        "Yellowing",
        "observation",
        _colour("yellow_pct"),
        "%",
        "mdi:leaf-maple",
    ),
    _Entity("brown", "Browning", "observation", _colour("brown_pct"), "%", "mdi:leaf-off"),
    _Entity(
        "outbox_depth",
        "Outbox depth",
        "stats",
        "{{ value_json.outbox_depth }}",
        None,
        "mdi:tray-full",
        diagnostic=True,
    ),
    _Entity(
        "disk_free",
        "Disk free",
        "stats",
        "{{ value_json.disk_free_bytes }}",
        "B",
        None,
        diagnostic=True,
        device_class="data_size",
    ),
    _Entity(
        "cpu_temperature",
        "CPU temperature",
        "stats",
        "{{ value_json.cpu_temp_c if value_json.cpu_temp_c is not none else None }}",
        "°C",
        None,
        diagnostic=True,
        device_class="temperature",
    ),
    _Entity(
        "alerts",
        "Plant problem",
        "stats",
        "{{ 'ON' if value_json.open_alerts | default(0) > 0 else 'OFF' }}",
        None,
        None,
        state_class=None,
        platform="binary_sensor",
        device_class="problem",
    ),
)


def _climate(field: str) -> str:
    """A climate value's template: None ("unknown") when not measured or no climate block."""
    value = f"value_json.climate.{field}"
    return "{{ " + value + " if value_json.climate and " + value + " is number else None }}"


CLIMATE_SENSORS = {
    "air_temperature": _Entity(
        "air_temperature",
        "Air temperature",
        "observation",
        _climate("air_temp_c"),
        "°C",
        None,
        device_class="temperature",
    ),
    "humidity": _Entity(
        "humidity",
        "Humidity",
        "observation",
        _climate("rh_pct"),
        "%",
        None,
        device_class="humidity",
    ),
    "co2": _Entity(
        "co2",
        "CO2",
        "observation",
        _climate("co2_ppm"),
        "ppm",
        None,
        device_class="carbon_dioxide",
    ),
    "leaf_temperature": _Entity(
        "leaf_temperature",
        "Leaf temperature",
        "observation",
        _climate("leaf_temp_c"),
        "°C",
        "mdi:leaf",
        device_class="temperature",
    ),
    "vpd": _Entity(
        "vpd",
        "Air VPD",
        "observation",
        _climate("air_vpd_kpa"),
        "kPa",
        "mdi:water-percent",
        device_class="pressure",
    ),
    "leaf_vpd": _Entity(
        "leaf_vpd",
        "Leaf VPD",
        "observation",
        _climate("leaf_vpd_kpa"),
        "kPa",
        "mdi:leaf",
        device_class="pressure",
    ),
}


def climate_entities(climate: bool, co2: bool, thermal: bool) -> tuple[str, ...]:
    """The climate entities a device with these sensors fitted announces."""
    keys: list[str] = []
    if climate or co2:  # an SCD4x measures temperature and humidity too
        keys += ["air_temperature", "humidity", "vpd"]
    if co2:
        keys.append("co2")
    if thermal:
        keys += ["leaf_temperature", "leaf_vpd"]
    return tuple(keys)


def verdict_options(labels: Sequence[str]) -> list[str]:
    """The states the verdict sensor can take: the model's labels and `unknown`."""
    return [*dict.fromkeys([*labels, UNKNOWN])]


def _verdict(labels: Sequence[str]) -> _Entity:
    options = verdict_options(labels)
    # A label the announced options do not list (a newer model) shows as unknown
    # instead of making HA reject the state.
    template = (
        "{{ value_json.health.label if " + _HAS_VERDICT + " and value_json.health.label in "
        f"{json.dumps(options)} else '{UNKNOWN}' }}}}"
    )
    return _Entity(
        "health",
        "Plant health",
        "observation",
        template,
        None,
        "mdi:sprout",
        None,
        device_class="enum",
    )


def _device_block(device_id: str, room: str, firmware: str, page: str | None) -> dict[str, object]:
    return {
        "identifiers": [f"cultivai_{device_id}"],
        "name": f"Plant camera {device_id}",
        "manufacturer": MANUFACTURER,
        "model": "CultivAI Edge",
        "sw_version": firmware,
        "suggested_area": room if room != "default" else None,
        "configuration_url": page,
    }


def node_id(device_id: str) -> str:
    """The device's node id in discovery topics: the device id, '.' made '_'.

    Keeping it equal to the device id (when it has no '.') lets the broker's ACL
    pattern `homeassistant/+/%u/#` pin discovery topics to their device too.
    """
    return device_id.replace(".", "_")


def discovery_messages(
    prefix: str,
    device_id: str,
    site: str,
    room: str,
    firmware: str,
    thumbnails: bool,
    *,
    labels: Sequence[str] = (),
    status_page: str | None = None,
    climate: Sequence[str] = (),
) -> list[tuple[str, bytes]]:
    """(topic, retained payload) for every entity of the device."""
    device = {k: v for k, v in _device_block(device_id, room, firmware, status_page).items() if v}
    common = {
        "device": device,
        "origin": ORIGIN,
        "availability_topic": topic(device_id, "status"),
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    node = node_id(device_id)
    out = []
    for s in (_verdict(labels), *SENSORS, *(CLIMATE_SENSORS[k] for k in climate)):
        config: dict[str, object] = {
            "name": s.name,
            "unique_id": f"cultivai_{node}_{s.key}",
            "default_entity_id": f"{s.platform}.cultivai_{node}_{s.key}",
            "state_topic": topic(device_id, s.source),  # type: ignore[arg-type]
            "value_template": s.template,
            **common,
        }
        if s.unit:
            config["unit_of_measurement"] = s.unit
        if s.icon:
            config["icon"] = s.icon
        if s.state_class:
            config["state_class"] = s.state_class
        if s.device_class:
            config["device_class"] = s.device_class
        if s.device_class == "enum":
            config["options"] = verdict_options(labels)
        if s.diagnostic:
            config["entity_category"] = "diagnostic"
        out.append((f"{prefix}/{s.platform}/{node}/{s.key}/config", json.dumps(config).encode()))
    if thumbnails:
        image = {
            "name": "Canopy",
            "unique_id": f"cultivai_{node}_thumbnail",
            "default_entity_id": f"image.cultivai_{node}_thumbnail",
            "image_topic": f"{topic(device_id, 'thumbnail')}/raw",
            "content_type": "image/jpeg",
            **common,
        }
        out.append((f"{prefix}/image/{node}/thumbnail/config", json.dumps(image).encode()))
    return out
