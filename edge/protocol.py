"""The wire contract between device and bridge: topics and versioned messages.

Readers are tolerant (unknown fields are ignored) so a newer device can add a field
without an older bridge rejecting its messages; a breaking change bumps
SCHEMA_VERSION and the topic's ``v1`` level.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
    yellow_pct: float = Field(ge=0, le=100, description="Chlorotic share of plant pixels.")
    brown_pct: float = Field(ge=0, le=100, description="Necrotic share of plant pixels.")
    exg_threshold: float = Field(description="Excess-green threshold the mask used.")


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
