"""A camera that renders plausible canopy photos with an exact ground-truth mask.

It is the demo camera and the test oracle for canopy analysis: plants grow leaf by
leaf over simulated days, and from `yellowing_onset_day` the oldest leaves turn
yellow (chlorosis), so the measurements have a known answer.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from edge.camera.base import CameraSettings, Exposure, Frame
from edge.clock import Clock

log = logging.getLogger(__name__)

# Colours in RGB, chosen from grow-room photos: living leaf, chlorotic leaf, substrate.
_LEAF_GREEN = np.array([62, 128, 44], dtype=np.float32)
_LEAF_YELLOW = np.array([206, 188, 62], dtype=np.float32)
_SUBSTRATE = np.array([96, 74, 56], dtype=np.float32)


class SyntheticCameraSettings(CameraSettings):
    """Rendered frames; no hardware needed."""

    backend: Literal["synthetic"] = Field("synthetic", description="Camera backend.")
    width: int = Field(1280, ge=64, le=8192, description="Frame width in pixels.")
    height: int = Field(960, ge=64, le=8192, description="Frame height in pixels.")
    plants: int = Field(4, ge=0, le=64, description="Number of plants in view.")
    seed: int = Field(0, description="Random seed for plant placement and texture.")
    start_day: float = Field(6.0, ge=0, description="Plant age in days at the first capture.")
    days_per_capture: float = Field(
        0.5, ge=0, description="Simulated days the plants age between captures."
    )
    yellowing_onset_day: float | None = Field(
        None, ge=0, description="Plant age at which the oldest leaves start to yellow; null: never."
    )
    brightness: float = Field(
        1.0, ge=0, le=2, description="Light level; values near 0 imitate grow lights being off."
    )
    state_file: Path | None = Field(
        None,
        description="File that keeps the number of captures taken, so the plants keep their "
        "age across restarts; null: they start again at start_day.",
    )


class SyntheticCamera:
    """Renders a canopy on substrate; `last_truth` is the exact plant mask."""

    name = "synthetic"

    def __init__(self, settings: SyntheticCameraSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._captures = _load_captures(settings.state_file)
        rng = np.random.default_rng(settings.seed)
        self._background = _render_substrate(settings.width, settings.height, rng)
        self._plants = _place_plants(settings, rng)
        self._noise_rng = np.random.default_rng(settings.seed + 1)

    @property
    def day(self) -> float:
        """Plant age, in days, of the next capture."""
        return self.settings.start_day + self._captures * self.settings.days_per_capture

    def render(self, day: float) -> tuple[np.ndarray, np.ndarray]:
        """Render the canopy at plant age `day`: (RGB image, boolean truth mask)."""
        s = self.settings
        image = self._background.copy()
        mask = np.zeros((s.height, s.width), dtype=np.uint8)
        yellow_from = s.yellowing_onset_day
        for plant in self._plants:
            for leaf in _leaves_at(plant, day, s):
                colour = _LEAF_GREEN + leaf.shade
                if yellow_from is not None and day > yellow_from:
                    # Oldest leaves go first and turn fully yellow over ~8 days.
                    progress = (day - yellow_from) / 8.0 - leaf.order * 0.15
                    amount = float(np.clip(progress, 0.0, 1.0))
                    colour = colour * (1 - amount) + (_LEAF_YELLOW + leaf.shade) * amount
                colour_t = tuple(float(c) for c in np.clip(colour, 0, 255))
                cv2.ellipse(image, leaf.centre, leaf.axes, leaf.angle, 0, 360, colour_t, -1)
                cv2.ellipse(mask, leaf.centre, leaf.axes, leaf.angle, 0, 360, 255, -1)
                vein = tuple(c * 0.8 for c in colour_t)
                thickness = max(1, leaf.axes[1] // 8)
                cv2.line(image, leaf.base, leaf.tip, vein, thickness)
                cv2.line(mask, leaf.base, leaf.tip, 255, thickness)
        noisy = image.astype(np.float32)
        noisy += self._noise_rng.normal(0.0, 3.0, size=noisy.shape).astype(np.float32)
        noisy *= s.brightness
        return np.clip(noisy, 0, 255).astype(np.uint8), mask > 0

    def capture(self) -> Frame:
        """Render the next frame; plants age by `days_per_capture` each call."""
        pixels, truth = self.render(self.day)
        self._captures += 1
        _save_captures(self.settings.state_file, self._captures)
        s = self.settings
        return Frame(
            captured_at=self._clock.now(),
            width=s.width,
            height=s.height,
            pixels=pixels,
            exposure=Exposure(exposure_time_us=8000.0, analogue_gain=1.0, locked=True),
            source=f"synthetic:seed={s.seed}",
            truth_mask=truth,
        )

    def close(self) -> None:
        """Nothing to release."""


def _load_captures(path: Path | None) -> int:
    """Captures taken before a restart; 0 when there is no readable state."""
    if path is None or not path.exists():
        return 0
    try:
        value = json.loads(path.read_text())["captures"]
        if isinstance(value, int) and value >= 0:
            return value
        raise ValueError(f"captures must be a whole number >= 0, not {value!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A damaged state file costs the plants their age, never the camera.
        log.warning(
            "synthetic camera state unreadable; plants start again",
            extra={"path": str(path), "error": str(exc)},
        )
        return 0


def _save_captures(path: Path | None, captures: int) -> None:
    if path is None:
        return
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"captures": captures}))
        os.replace(tmp, path)  # atomic: a crash leaves the old count, not half a file
    except OSError as exc:
        log.warning(
            "synthetic camera state not saved", extra={"path": str(path), "error": str(exc)}
        )


class _Plant:
    def __init__(self, x: float, y: float, size: float, phase: float) -> None:
        self.x, self.y, self.size, self.phase = x, y, size, phase


class _Leaf:
    def __init__(
        self,
        centre: tuple[int, int],
        axes: tuple[int, int],
        angle: float,
        base: tuple[int, int],
        tip: tuple[int, int],
        order: int,
        shade: np.ndarray,
    ) -> None:
        self.centre, self.axes, self.angle = centre, axes, angle
        self.base, self.tip, self.order, self.shade = base, tip, order, shade


def _render_substrate(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    # Mostly lightness variation (clods, moisture), with a little colour variation.
    small = (max(2, height // 32), max(2, width // 32))
    coarse = rng.normal(0.0, 12.0, size=(*small, 1)) + rng.normal(0.0, 3.0, size=(*small, 3))
    blotches = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 5.0, size=(height, width, 1)).astype(np.float32)
    return np.clip(_SUBSTRATE + blotches + grain, 0, 255).astype(np.uint8)


def _place_plants(s: SyntheticCameraSettings, rng: np.random.Generator) -> list[_Plant]:
    if s.plants == 0:
        return []
    cols = math.ceil(math.sqrt(s.plants * s.width / s.height))
    rows = math.ceil(s.plants / cols)
    cell_w, cell_h = s.width / cols, s.height / rows
    plants = []
    for i in range(s.plants):
        r, c = divmod(i, cols)
        x = (c + 0.5 + rng.uniform(-0.15, 0.15)) * cell_w
        y = (r + 0.5 + rng.uniform(-0.15, 0.15)) * cell_h
        size = min(cell_w, cell_h) * rng.uniform(1.0, 1.3)
        plants.append(_Plant(x, y, size, rng.uniform(0, 2 * math.pi)))
    return plants


def _leaves_at(plant: _Plant, day: float, s: SyntheticCameraSettings) -> list[_Leaf]:
    """Leaves of one plant at a given age; leaf i appears on day 2*i and grows."""
    leaves = []
    golden = math.pi * (3 - math.sqrt(5))
    for i in range(14):
        age = day - 2.0 * i
        if age <= 0:
            break
        growth = 1.0 / (1.0 + math.exp(-(age - 6.0) / 2.5))  # logistic leaf expansion
        length = plant.size * 0.5 * growth
        if length < 3:
            continue
        theta = plant.phase + i * golden
        dx, dy = math.cos(theta), math.sin(theta)
        cx, cy = plant.x + dx * length * 0.55, plant.y + dy * length * 0.55
        half_len, half_wid = int(length * 0.5), max(2, int(length * 0.22))
        base = (int(plant.x + dx * length * 0.1), int(plant.y + dy * length * 0.1))
        tip = (int(plant.x + dx * length), int(plant.y + dy * length))
        shade = np.array([(i % 3) * 6 - 6, (i % 4) * 5 - 8, (i % 2) * 4 - 2], dtype=np.float32)
        leaves.append(
            _Leaf(
                (int(cx), int(cy)), (half_len, half_wid), math.degrees(theta), base, tip, i, shade
            )
        )
    # Young leaves grow above old ones: draw oldest first.
    return leaves
