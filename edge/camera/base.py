"""The camera interface every backend implements, and the frame it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict


class CameraSettings(BaseModel):
    """Base of every camera backend's config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Exposure:
    """Exposure metadata as reported by the camera; None where it does not say."""

    exposure_time_us: float | None = None
    analogue_gain: float | None = None
    colour_gains: tuple[float, float] | None = None
    locked: bool = False

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready form."""
        return {
            "exposure_time_us": self.exposure_time_us,
            "analogue_gain": self.analogue_gain,
            "colour_gains": list(self.colour_gains) if self.colour_gains else None,
            "locked": self.locked,
        }


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured photo.

    A camera fills in `jpeg` when it delivers encoded bytes (replay files, a Pi
    camera's JPEG encoder): they are stored as they are and decoded at reduced
    resolution for analysis. Otherwise `pixels` holds the RGB image.
    """

    captured_at: datetime
    width: int
    height: int
    pixels: np.ndarray | None = None
    jpeg: bytes | None = None
    exposure: Exposure = field(default_factory=Exposure)
    source: str = ""
    truth_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pixels is None and self.jpeg is None:
            raise ValueError("a Frame needs pixels or jpeg bytes")


class Camera(Protocol):
    """What the agent needs from a camera: open once, capture many times, close."""

    name: str

    def capture(self) -> Frame:
        """Take one photo now; raise CameraError when none can be had."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...
