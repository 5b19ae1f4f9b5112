"""The wire contract between device and bridge: topics and versioned messages.

Readers are tolerant (unknown fields are ignored) so a newer device can add a field
without an older bridge rejecting its messages; a breaking change bumps
SCHEMA_VERSION and the topic's ``v1`` level.
"""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import AwareDatetime, Base64Bytes, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1
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


class HealthBlock(Message):
    """The plant-health model's verdict."""

    label: str
    confidence: float = Field(ge=0, le=1)
    scores: dict[str, float]


class ModelBlock(Message):
    """Which model produced the verdict, on which backend; or why none ran."""

    name: str | None = None
    version: str | None = None
    backend: str | None = None
    error: str | None = None


class Observation(Message):
    """One capture's measurements and classification; (device_id, seq) is its key."""

    schema_version: Literal[1] = 1
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
    kind: Literal["health", "yellowing", "browning"]
    state: Literal["raised", "cleared"]
    at: AwareDatetime
    seq: int = Field(ge=1, description="The observation that raised or cleared it.")
    label: str | None = Field(None, description="The problem class, for health alerts.")
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
