"""The wire contract between device and bridge: topics and versioned messages.

Readers are tolerant (unknown fields are ignored) so a newer device can add a field
without an older bridge rejecting its messages; a breaking change bumps
SCHEMA_VERSION and the topic's ``v1`` level.
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

SCHEMA_VERSION = 3  # 2: health.assessed/reason/ood_score/drift/zones/summary; 3: climate
TOPIC_ROOT = "cultivai/v1"
MessageKind = Literal["observation", "thumbnail", "alert", "status", "stats", "cmd_result"]


def topic(device_id: str, kind: MessageKind) -> str:
    """The topic a device publishes one kind of message on."""
    return f"{TOPIC_ROOT}/{device_id}/{kind}"


def command_topic(device_id: str, name: str = "+") -> str:
    """The topic a device listens on for a command (default: all of them)."""
    return f"{TOPIC_ROOT}/{device_id}/cmd/{name}"


class Message(BaseModel):
    """Base of every message: frozen, tolerant of fields added by newer senders."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class CanopyBlock(Message):
    """Canopy measurements of one photo."""

    cover_pct: float = Field(ge=0, le=100, description="Share of the frame that is plant.")
    area_px: int = Field(ge=0, description="Plant area in full-resolution pixels.")
    area_cm2: float | None = Field(None, ge=0, description="Plant area when px_per_cm is set.")
    hue_mean_deg: float | None = Field(None, description="Circular mean hue of plant pixels.")
    hue_median_deg: float | None = Field(None, description="Circular median hue of plant pixels.")
    greenness_index: float | None = Field(None, description="Mean excess-green of plant pixels.")
    yellow_pct: float | None = Field(
        ge=0, le=100, description="Chlorotic share of plant pixels; null: colour not measured."
    )
    brown_pct: float | None = Field(
        ge=0, le=100, description="Necrotic share of plant pixels; null: colour not measured."
    )
    exg_threshold: float = Field(description="Excess-green threshold the mask used.")
    light: str | None = Field(
        None, description="Light the photo was taken under: white, hps, magenta, blue, ..."
    )
    colour_reason: str | None = Field(
        None, description="Why the colour metrics are null; null when they were measured."
    )


class ClimateBlock(Message):
    """Grow-room climate at capture time; a null value was not measured (see `sensors`)."""

    air_temp_c: float | None = Field(None, ge=-40, le=80, description="Air temperature, degC.")
    rh_pct: float | None = Field(None, ge=0, le=100, description="Relative humidity, %.")
    co2_ppm: float | None = Field(None, ge=0, le=40000, description="CO2, ppm.")
    leaf_temp_c: float | None = Field(
        None, ge=-40, le=80, description="Median temperature of the thermal pixels on leaves."
    )
    leaf_temp_pixels: int | None = Field(
        None, ge=0, le=1_000_000, description="Thermal pixels the leaf temperature is from."
    )
    leaf_temp_reason: str | None = Field(
        None, max_length=300, description="Why leaf_temp_c is null, when a thermal frame was read."
    )
    air_vpd_kpa: float | None = Field(None, ge=-50, le=50, description="VPD of the air, kPa.")
    leaf_vpd_kpa: float | None = Field(
        None, ge=-50, le=50, description="Leaf-to-air VPD, kPa (leaf temperature needed)."
    )
    stage: Literal["propagation", "veg", "flower"] | None = Field(
        None, description="Growth stage the VPD target is for."
    )
    vpd_low_kpa: float | None = Field(None, ge=0, le=10, description="Target VPD, lower end.")
    vpd_high_kpa: float | None = Field(None, ge=0, le=10, description="Target VPD, upper end.")
    sensors: dict[
        Annotated[str, StringConstraints(max_length=16)],
        Annotated[str, StringConstraints(max_length=64)],
    ] = Field(
        default_factory=dict,
        max_length=8,
        description="Per sensor role: ok, not fitted, warming up, or failed: reason.",
    )


class ExposureBlock(Message):
    """How the photo was exposed and whether that was usable."""

    verdict: Literal["ok", "under", "over"]
    mean_luma: float
    under_pct: float
    over_pct: float
    sharpness: float = Field(description="Variance of the Laplacian at analysis resolution.")
    exposure_time_us: float | None = None
    analogue_gain: float | None = None
    locked: bool = False


class ImageBlock(Message):
    """The photo behind the measurements (it stays on the device)."""

    width: int = Field(ge=1)
    height: int = Field(ge=1)
    stored: bool = Field(description="Whether the device kept the photo.")
    source: str = Field("", description="Camera source or file name.")


MAX_ZONES = 4096  # a 64 x 64 grid: far finer than leaf scale on any supported camera


class ZoneCell(Message):
    """The verdict on one zone (tile) of the canopy; unknown allowed."""

    zone: str = Field(description="Zone name: row letter and column number, e.g. B3.")
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    label: str = Field(description="Problem class, healthy, or unknown.")
    confidence: float = Field(ge=0, le=1, description="Calibrated confidence of the label.")
    plant_share: float = Field(ge=0, le=1, description="Share of the tile that is plant.")


class ZoneGrid(Message):
    """The canopy's zone grid: only tiles with enough plant are listed."""

    rows: int = Field(ge=1)
    cols: int = Field(ge=1)
    tile_px: int = Field(ge=1, description="Tile side at analysis resolution.")
    cells: list[ZoneCell] = Field(default_factory=list, max_length=MAX_ZONES)


class HealthSummary(Message):
    """Zones rolled up: share of assessed canopy per class and the worst zone."""

    assessed_share: float = Field(ge=0, le=1, description="Share of zoned canopy assessed.")
    shares: dict[str, float] = Field(description="Class -> share of the assessed canopy.")
    worst_zone: str | None = Field(None, description="The zone most confidently not healthy.")
    worst_label: str | None = None
    worst_confidence: float | None = Field(None, ge=0, le=1)


class HealthBlock(Message):
    """The plant-health verdict; `unknown` (assessed false) with a reason when declined."""

    label: str
    confidence: float = Field(ge=0, le=1)
    scores: dict[str, float]
    assessed: bool = Field(True, description="False when the model declined: label unknown.")
    reason: str | None = Field(None, description="Why it was not assessed, in plain words.")
    ood_score: float | None = Field(None, description="Out-of-distribution score of the photo.")
    drift: float | None = Field(
        None, description="Distance from this grow's baseline in baseline spreads; null: none yet."
    )
    zones: ZoneGrid | None = Field(None, description="Per-zone verdicts; null for a close-up.")
    summary: HealthSummary | None = None


class ModelBlock(Message):
    """Which model produced the verdict, on which backend; or why none ran."""

    name: str | None = None
    version: str | None = None
    backend: str | None = None
    error: str | None = None


class Observation(Message):
    """One capture's measurements and classification; (device_id, seq) is its key.

    Version 2 adds the verdict fields of HealthBlock, version 3 the climate block;
    older messages still parse.
    """

    schema_version: Literal[1, 2, 3] = 3
    device_id: str
    seq: int = Field(ge=1)
    captured_at: AwareDatetime
    site: str = "default"
    room: str = "default"
    camera: str
    canopy: CanopyBlock
    exposure: ExposureBlock
    image: ImageBlock
    health: HealthBlock | None = None
    model: ModelBlock = Field(default_factory=ModelBlock)
    climate: ClimateBlock | None = Field(None, description="Null when no sensor is configured.")


class Thumbnail(Message):
    """The small JPEG of one observation (opt-in); (device_id, seq) is its key."""

    schema_version: Literal[1] = 1
    device_id: str
    seq: int = Field(ge=1, description="The observation this photo belongs to.")
    content_type: Literal["image/jpeg"] = "image/jpeg"
    data: Base64Bytes = Field(description="The JPEG file, base64-encoded.")


class Alert(Message):
    """A debounced problem raised or cleared; (device_id, alert_id, state) is its key."""

    schema_version: Literal[1] = 1
    device_id: str
    alert_id: int = Field(ge=1, description="Device-local id shared by raise and clear.")
    kind: Literal["health", "zone", "drift", "yellowing", "browning", "vpd"]
    state: Literal["raised", "cleared"]
    at: AwareDatetime
    seq: int = Field(ge=1, description="The observation that raised or cleared it.")
    label: str | None = Field(None, description="The problem class, for health alerts.")
    zone: str | None = Field(None, description="The canopy zone, for zone alerts.")
    message: str
    value: float | None = Field(None, description="Confidence or percentage that triggered it.")
    baseline: float | None = Field(None, description="The camera's recent baseline, if any.")


class Status(Message):
    """Retained presence of a device; the broker publishes the offline one as Last Will."""

    schema_version: Literal[1] = 1
    device_id: str
    state: Literal["online", "offline"]
    firmware: str | None = None
    model_version: str | None = None
    model_backend: str | None = None
    ip: str | None = None
    started_at: AwareDatetime | None = None


class Stats(Message):
    """Periodic health of the device."""

    schema_version: Literal[1] = 1
    device_id: str
    at: AwareDatetime
    uptime_s: float
    disk_free_bytes: int
    cpu_temp_c: float | None = None
    outbox_depth: int
    outbox_dropped: int = 0
    last_seq: int | None = Field(None, description="Newest seq stored on the device.")
    last_capture_at: AwareDatetime | None = None
    captures_ok: int = 0
    captures_failed: int = 0
    skipped_dark: int = 0
    images_pruned: int = 0
    open_alerts: int = Field(0, ge=0, description="Alerts raised and not yet cleared.")


class Command(Message):
    """Base of commands sent to a device on cmd/<name>; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    request_id: str | None = Field(None, max_length=64, description="Echoed in the result.")


class CaptureCommand(Command):
    """Take a photo now."""


class ReloadModelCommand(Command):
    """Load the model files again (after a model rollout)."""


class ResendCommand(Command):
    """Publish stored observations again, for gap backfill by the bridge."""

    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)

    @model_validator(mode="after")
    def _range(self) -> ResendCommand:
        if self.to_seq < self.from_seq:
            raise ValueError("to_seq must be >= from_seq")
        if self.to_seq - self.from_seq >= MAX_RESEND:
            raise ValueError(f"at most {MAX_RESEND} observations per resend")
        return self


class ResetBaselineCommand(Command):
    """A new grow starts: forget the grow baseline; the next captures set a new one."""


class CaptureEmptySceneCommand(Command):
    """Photograph the scene with the plants out of view and use it as the background."""


class SetScheduleCommand(Command):
    """Change the capture interval or photoperiod until the next restart."""

    interval_s: int | None = Field(None, ge=1, le=86400)
    lights_on: time | None = None
    lights_off: time | None = None


MAX_RESEND = 10_000
COMMANDS: dict[str, type[Command]] = {
    "capture": CaptureCommand,
    "reload-model": ReloadModelCommand,
    "resend": ResendCommand,
    "set-schedule": SetScheduleCommand,
    "reset-baseline": ResetBaselineCommand,
    "capture-empty-scene": CaptureEmptySceneCommand,
}


class CommandResult(Message):
    """The answer to a command: ok, or a clear error."""

    schema_version: Literal[1] = 1
    device_id: str
    command: str
    request_id: str | None = None
    ok: bool
    error: str | None = None
    detail: dict[str, object] = Field(default_factory=dict)
    at: AwareDatetime
