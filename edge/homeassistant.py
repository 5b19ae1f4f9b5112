"""Home Assistant MQTT discovery: retained config messages for the device's entities."""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge.protocol import topic

MANUFACTURER = "CultivAI"


@dataclass(frozen=True, slots=True)
class _Sensor:
    key: str
    name: str
    source: str  # "observation" or "stats"
    template: str
    unit: str | None = None
    icon: str | None = None
    state_class: str | None = "measurement"


SENSORS = (
    _Sensor(
        "canopy_cover",
        "Canopy cover",
        "observation",
        "{{ value_json.canopy.cover_pct }}",
        "%",
        "mdi:leaf",
    ),
    _Sensor(
        "health",
        "Plant health",
        "observation",
        "{{ value_json.health.label if value_json.health else 'unknown' }}",
        None,
        "mdi:sprout",
        None,
    ),
    _Sensor(
        "health_confidence",
        "Plant health confidence",
        "observation",
        "{{ (value_json.health.confidence * 100) | round(1) if value_json.health else 0 }}",
        "%",
        "mdi:percent",
    ),
    _Sensor(
        "yellow",
        "Yellowing",
        "observation",
        "{{ value_json.canopy.yellow_pct }}",
        "%",
        "mdi:leaf-maple",
    ),
    _Sensor(
        "brown", "Browning", "observation", "{{ value_json.canopy.brown_pct }}", "%", "mdi:leaf-off"
    ),
    _Sensor(
        "outbox_depth",
        "Outbox depth",
        "stats",
        "{{ value_json.outbox_depth }}",
        None,
        "mdi:tray-full",
    ),
)


def _device_block(device_id: str, room: str, firmware: str) -> dict[str, object]:
    return {
        "identifiers": [f"cultivai_{device_id}"],
        "name": f"Plant camera {device_id}",
        "manufacturer": MANUFACTURER,
        "model": "CultivAI Edge",
        "sw_version": firmware,
        "suggested_area": room if room != "default" else None,
    }


def node_id(device_id: str) -> str:
    """The device's node id in discovery topics: the device id, '.' made '_'.

    Keeping it equal to the device id (when it has no '.') lets the broker's ACL
    pattern `homeassistant/+/%u/#` pin discovery topics to their device too.
    """
    return device_id.replace(".", "_")


def discovery_messages(
    prefix: str, device_id: str, site: str, room: str, firmware: str, thumbnails: bool
) -> list[tuple[str, bytes]]:
    """(topic, retained payload) for every entity of the device."""
    device = {k: v for k, v in _device_block(device_id, room, firmware).items() if v}
    availability = {
        "availability_topic": topic(device_id, "status"),
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    node = node_id(device_id)
    out = []
    for s in SENSORS:
        config: dict[str, object] = {
            "name": s.name,
            "unique_id": f"cultivai_{node}_{s.key}",
            "object_id": f"cultivai_{node}_{s.key}",
            "state_topic": topic(device_id, s.source),  # type: ignore[arg-type]
            "value_template": s.template,
            "device": device,
            **availability,
        }
        if s.unit:
            config["unit_of_measurement"] = s.unit
        if s.icon:
            config["icon"] = s.icon
        if s.state_class:
            config["state_class"] = s.state_class
        out.append((f"{prefix}/sensor/{node}/{s.key}/config", json.dumps(config).encode()))
    if thumbnails:
        image = {
            "name": "Canopy",
            "unique_id": f"cultivai_{node}_thumbnail",
            "object_id": f"cultivai_{node}_thumbnail",
            "image_topic": f"{topic(device_id, 'thumbnail')}/raw",
            "content_type": "image/jpeg",
            "device": device,
            **availability,
        }
        out.append((f"{prefix}/image/{node}/thumbnail/config", json.dumps(image).encode()))
    return out
