"""The agent's configuration: one YAML file, one pydantic model per section.

Loading a config reads the file and the environment and nothing else: no network,
no files written. Environment variables override single fields, named
``CULTIVAI_EDGE__<SECTION>__<FIELD>`` (for example ``CULTIVAI_EDGE__MQTT__HOST``);
their values are read as YAML scalars.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge import yaml_config
from edge.camera import CameraConfig
from edge.camera.synthetic import SyntheticCameraSettings
from edge.errors import ConfigError
from edge.sensors.settings import SensorsConfig
from edge.tls_config import TlsConfig
from edge.web.settings import WebConfig

ENV_PREFIX = "CULTIVAI_EDGE__"
DEFAULT_CONFIG_PATH = Path("/etc/cultivai/edge.yaml")
CAMERA_BACKENDS = frozenset({"synthetic", "replay", "opencv", "picamera2"})
MIN_CARD_SIDE = 0.01  # a grey card smaller than this share of the frame is a few pixels
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(Section):
    """Who this device is; the id is its MQTT identity and topic level."""

    id: str = Field(
        description="Unique device id: letters, digits, '-', '_', '.', up to 64 characters."
    )
    site: str = Field("default", max_length=64, description="Site (farm or building) name.")
    room: str = Field("default", max_length=64, description="Grow room the camera looks into.")

    @field_validator("id")
    @classmethod
    def _id_is_topic_safe(cls, value: str) -> str:
        if not _DEVICE_ID.fullmatch(value):
            raise ValueError(
                "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or "
                "digit (it is an MQTT topic level, so no '/', '+', '#' or spaces)"
            )
        return value


class ScheduleConfig(Section):
    """When to take photos."""

    interval_s: int = Field(
        900, ge=1, le=86400, description="Seconds between captures, aligned to the clock."
    )
    lights_on: time | None = Field(
        None, description="Start of the photoperiod (HH:MM, local time); null: capture all day."
    )
    lights_off: time | None = Field(
        None, description="End of the photoperiod (HH:MM); may be after midnight."
    )
    timezone: str | None = Field(
        None, description="IANA time zone of lights_on/lights_off; null: the device's zone."
    )
    dark_frame_luma: float = Field(
        20.0,
        ge=0,
        le=255,
        description="Frames with a mean brightness below this (0-255) are skipped as lights-off.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(
                    "is not a known IANA time zone such as 'Europe/Amsterdam'"
                ) from exc
        return value

    @model_validator(mode="after")
    def _photoperiod_pair(self) -> ScheduleConfig:
        if (self.lights_on is None) != (self.lights_off is None):
            raise ValueError("lights_on and lights_off must be set together (or both null)")
        if self.lights_on is not None and self.lights_on == self.lights_off:
            raise ValueError("lights_on and lights_off must differ; leave both null for 24 h")
        return self


class VisionConfig(Section):
    """How photos are measured."""

    analysis_max_side: int = Field(
        640, ge=128, le=4096, description="Long side, in pixels, photos are analysed at."
    )
    px_per_cm: float | None = Field(
        None, gt=0, description="Full-resolution pixels per cm at canopy height; adds cm^2 areas."
    )
    white_reference: tuple[float, float, float, float] | None = Field(
        None,
        description="A grey card in view, as [x, y, width, height] in fractions of the frame "
        "(0-1, from the top left); its colour sets the white balance. null: read the lamp.",
    )

    @field_validator("white_reference")
    @classmethod
    def _card_inside_frame(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is None:
            return None
        x, y, width, height = value
        if not (0 <= x < 1 and 0 <= y < 1):
            raise ValueError("x and y must be fractions of the frame, from 0 up to (not) 1")
        if width < MIN_CARD_SIDE or height < MIN_CARD_SIDE:
            raise ValueError(f"width and height must be at least {MIN_CARD_SIDE} of the frame")
        if x + width > 1 or y + height > 1:
            raise ValueError("the card must lie inside the frame: x + width and y + height <= 1")
        return value


class ModelConfig(Section):
    """The on-device plant-health model."""

    enabled: bool = Field(True, description="Run the plant-health model on every capture.")
    dir: Path | None = Field(
        None, description="Folder with model.tflite, labels.txt, manifest.json; null: shipped."
    )
    delegate: str = Field(
        "auto",
        description="'auto' (Coral EdgeTPU if present, else CPU), 'cpu', 'edgetpu', or a "
        "path to a delegate library.",
    )
    threads: int = Field(2, ge=1, le=16, description="CPU threads for inference.")

    @field_validator("delegate")
    @classmethod
    def _known_delegate(cls, value: str) -> str:
        if value not in ("auto", "cpu", "edgetpu") and "/" not in value:
            raise ValueError("must be 'auto', 'cpu', 'edgetpu' or a path to a delegate .so")
        return value


class AlertsConfig(Section):
    """When observations become a (debounced) alert."""

    problem_confidence: float = Field(
        0.7, gt=0, le=1, description="Model confidence for a problem class to count."
    )
    problem_consecutive: int = Field(
        3, ge=1, le=100, description="Consecutive captures a problem must persist to alert."
    )
    rise_pp: float = Field(
        8.0,
        gt=0,
        le=100,
        description="Rise of yellow_pct or brown_pct over the baseline, in points.",
    )
    baseline_captures: int = Field(
        12, ge=2, le=1000, description="Recent captures the colour baseline is the median of."
    )


class HealthConfig(Section):
    """When a verdict is given, how a canopy is split into zones, and the grow baseline."""

    min_cover_pct: float = Field(
        2.0, ge=0, le=100, description='Plant cover below this is "no plant in view": unknown.'
    )
    closeup_cover_pct: float = Field(
        60.0,
        ge=0,
        le=100,
        description="Plant cover at or above this is a leaf close-up, classified whole.",
    )
    min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A verdict below this calibrated confidence is unknown: the model is unsure.",
    )
    problem_min_confidence: float = Field(
        0.7,
        ge=0,
        le=1,
        description="A problem label (photo or zone) below this calibrated confidence is "
        "unknown: not sure enough to name a problem.",
    )
    zone_tile_px: int = Field(
        80, ge=16, le=1024, description="Zone tile side at analysis resolution, in pixels."
    )
    zone_leaf_cm: float | None = Field(
        None,
        gt=0,
        description="Leaf size in cm; with vision.px_per_cm it sets the tile size instead.",
    )
    zone_min_plant_share: float = Field(
        0.3, gt=0, le=1, description="Share of a tile that must be plant for it to be a zone."
    )
    zone_min_assessed_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of the zoned canopy the model must recognise for a canopy verdict.",
    )
    zone_reuse_max_diff: float = Field(
        5.0,
        ge=0,
        le=255,
        description="A zone whose 8x8 block means moved by at most this many grey levels since "
        "it was assessed keeps that assessment (fixed camera); 0: assess every zone every time.",
    )
    zone_reuse_max_captures: int = Field(
        24,
        ge=0,
        le=10000,
        description="Captures in a row a zone may keep its assessment before it is assessed anew.",
    )
    baseline_captures: int = Field(
        6,
        ge=2,
        le=1000,
        description="Usable first captures of a grow that set its baseline.",
    )
    drift_alert: float = Field(
        3.0, gt=0, description="Drift from the grow baseline that raises an alert when it persists."
    )


class MqttConfig(Section):
    """The broker the device publishes to."""

    enabled: bool = Field(False, description="Publish to a broker; off: keep results on device.")
    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    keepalive_s: int = Field(60, ge=5, le=3600, description="MQTT keepalive in seconds.")
    username: str | None = Field(None, description="Broker user name (usually the device id).")
    password_file: Path | None = Field(
        None, description="File holding the broker password (never the password itself)."
    )
    tls: TlsConfig | None = Field(None, description="TLS settings; null: plain TCP.")
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="MQTT version; 'auto' tries 5 and falls back to 3.1.1."
    )
    thumbnails: bool = Field(False, description="Publish a small JPEG with each observation.")
    thumbnail_max_side: int = Field(
        320, ge=32, le=1280, description="Long side of published thumbnails, in pixels."
    )
    homeassistant_discovery: bool = Field(False, description="Announce sensors to Home Assistant.")
    homeassistant_prefix: str = Field(
        "homeassistant", min_length=1, description="Home Assistant's discovery topic prefix."
    )
    inflight_window: int = Field(
        50, ge=1, le=1000, description="Messages sent and not yet acknowledged, at most."
    )
    outbox_max_messages: int = Field(
        100_000,
        ge=100,
        description="Unsent messages kept; beyond this the oldest are dropped and counted.",
    )
    stats_interval_s: int = Field(60, ge=5, le=86400, description="Seconds between stats messages.")
    reconnect_min_s: float = Field(
        1.0, gt=0, le=60, description="First reconnect delay; doubles per failure, with jitter."
    )
    reconnect_max_s: float = Field(120.0, gt=0, le=3600, description="Longest reconnect delay.")

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttConfig:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file is set but username is not")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


class StorageConfig(Section):
    """Where photos and measurements are kept on the device."""

    dir: Path = Field(Path("/var/lib/cultivai"), description="Data folder (database, photos).")
    image_quota_mb: int = Field(
        2048, ge=1, description="Photos are pruned oldest-first to stay under this size."
    )
    min_free_mb: int = Field(
        200, ge=0, description="Photos are pruned oldest-first to keep this much disk free."
    )
    keep_images: bool = Field(True, description="Keep photos; off: keep measurements only.")
    jpeg_quality: int = Field(90, ge=50, le=100, description="JPEG quality for stored photos.")
    observation_retention_days: int = Field(
        1825, ge=1, description="Measurements older than this are deleted (photos go sooner)."
    )


class GpioConfig(Section):
    """Optional wiring: photo light, status LED, capture button (gpiozero pin names)."""

    pin_factory: Literal["auto", "mock", "lgpio", "rpigpio", "pigpio", "native"] = Field(
        "auto", description="gpiozero pin factory; 'mock' for tests and demos."
    )
    photo_light_pin: int | str | None = Field(
        None, description="Pin of the relay for a neutral photo light (e.g. 17 or 'GPIO17')."
    )
    photo_light_active_high: bool = Field(True, description="Relay switches on with a high pin.")
    photo_light_settle_s: float = Field(
        0.5, ge=0, le=30, description="Seconds between light on and capture."
    )
    status_led_pin: int | str | None = Field(None, description="Pin of the status LED.")
    button_pin: int | str | None = Field(None, description="Pin of the capture-now button.")

    @property
    def any_pin(self) -> bool:
        """True when any device is wired."""
        return any(
            p is not None for p in (self.photo_light_pin, self.status_led_pin, self.button_pin)
        )


class LoggingConfig(Section):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["json", "text"] = Field(
        "json", description="One JSON object per line, or text."
    )


class EdgeConfig(Section):
    """The whole edge agent configuration."""

    device: DeviceConfig = Field(description="Identity of this device.")
    camera: CameraConfig = Field(
        default_factory=SyntheticCameraSettings, description="Camera backend and its settings."
    )
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Capture times.")
    vision: VisionConfig = Field(default_factory=VisionConfig, description="Canopy analysis.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Plant-health model.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert rules.")
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="Plant-health verdicts, zones, grow baseline."
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="On-device storage.")
    web: WebConfig = Field(default_factory=WebConfig, description="Status page.")
    gpio: GpioConfig = Field(default_factory=GpioConfig, description="Optional GPIO devices.")
    sensors: SensorsConfig = Field(
        default_factory=SensorsConfig, description="Climate sensors, leaf temperature, VPD."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")


def _camera_aware(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    # A discriminated union adds the chosen tag to the path: camera.replay.folder.
    if len(parts) > 1 and parts[0] == "camera" and parts[1] in CAMERA_BACKENDS:
        del parts[1]
    elif len(parts) > 2 and parts[0] == "sensors" and parts[1] in ("climate", "co2", "thermal"):
        del parts[2]  # the sensor model tag, as for the camera backend
    return ".".join(parts) or "(top level)"


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: field path, what is wrong and the value that was given."""
    return yaml_config.describe_errors(exc, _camera_aware, EdgeConfig)


def config_from_data(
    data: object, env: Mapping[str, str] | None = None, source: str = "config"
) -> EdgeConfig:
    """Validate already-parsed YAML data (plus environment overrides)."""
    return yaml_config.validate(
        EdgeConfig,
        data,
        env=env,
        prefix=ENV_PREFIX,
        source=source,
        error=ConfigError,
        location=_camera_aware,
    )


def load_config(path: Path, env: Mapping[str, str] | None = None) -> EdgeConfig:
    """Read and validate a YAML config file; raises ConfigError listing every problem."""
    return config_from_data(yaml_config.read_yaml(path, ConfigError), env, str(path))
