"""Simulated sensors the demo and the tests drive; same interface as the drivers."""

from __future__ import annotations

import cv2
import numpy as np

from edge.sensors.base import AirReading, Co2Reading, SensorReadError, ThermalFrame
from edge.sensors.mlx90640 import COLS, ROWS
from edge.sensors.settings import (
    FakeClimateSettings,
    FakeCo2Settings,
    FakeThermalSettings,
    RegistrationSettings,
)


class _Failing:
    """Tests set `fail_next` to a reason to make the next reads fail that way."""

    name = "fake"

    def __init__(self) -> None:
        self.fail_next: list[str] = []

    def _maybe_fail(self) -> None:
        if self.fail_next:
            reason = self.fail_next.pop(0)
            raise SensorReadError(reason, f"{self.name}: simulated {reason} failure")

    def close(self) -> None:
        """Nothing to release."""


class FakeClimateSensor(_Failing):
    """Reports the configured air temperature and RH, plus noise; tests may set them."""

    name = "fake-climate"

    def __init__(self, settings: FakeClimateSettings) -> None:
        super().__init__()
        self.air_temp_c, self.rh_pct, self.noise = (
            settings.air_temp_c,
            settings.rh_pct,
            settings.noise,
        )
        self._rng = np.random.default_rng(settings.seed)

    def read(self) -> AirReading:
        """The set values with noise."""
        self._maybe_fail()
        n = self._rng.normal(0, self.noise, 2) if self.noise else (0.0, 0.0)
        return AirReading(self.air_temp_c + float(n[0]), self.rh_pct + float(n[1]))


class FakeCo2Sensor(_Failing):
    """Reports the configured CO2 plus noise."""

    name = "fake-co2"

    def __init__(self, settings: FakeCo2Settings) -> None:
        super().__init__()
        self.co2_ppm, self.noise = settings.co2_ppm, settings.noise
        self._rng = np.random.default_rng(settings.seed)

    def read(self) -> Co2Reading:
        """The set value with noise."""
        self._maybe_fail()
        noise = float(self._rng.normal(0, self.noise)) if self.noise else 0.0
        return Co2Reading(round(self.co2_ppm + noise))


class FakeThermalSensor(_Failing):
    """Renders leaves at `leaf_c` over `background_c`, placed by the camera's truth mask.

    The mask is carried into the thermal frame through the same registration the
    leaf-temperature step inverts, so the demo's leaf temperature has a known answer.
    Without a mask it shows the background only.
    """

    name = "fake-thermal"

    def __init__(self, settings: FakeThermalSettings, registration: RegistrationSettings) -> None:
        super().__init__()
        self.leaf_c, self.background_c = settings.leaf_c, settings.background_c
        self.noise_c = settings.noise_c
        self._reg = registration
        self._rng = np.random.default_rng(settings.seed)

    def read(self, truth_mask: np.ndarray | None = None) -> ThermalFrame:
        """One frame of 24 x 32 pixels."""
        self._maybe_fail()
        share = np.zeros((ROWS, COLS), np.float32)
        if truth_mask is not None and truth_mask.any():
            share = leaf_share_in_thermal(truth_mask, self._reg)
        frame = self.background_c + share * (self.leaf_c - self.background_c)
        if self.noise_c:
            frame = frame + self._rng.normal(0, self.noise_c, frame.shape)
        return ThermalFrame(frame.astype(np.float32))


def leaf_share_in_thermal(
    mask: np.ndarray, reg: RegistrationSettings, rows: int = ROWS, cols: int = COLS
) -> np.ndarray:
    """Share of each thermal pixel covered by the (camera-frame) mask, 0-1."""
    h, w = mask.shape[:2]
    # Thermal x = scale * camera x + offset (both normalised): an affine map in pixels.
    m = np.array(
        [
            [reg.scale_x * cols / w, 0, reg.offset_x * cols],
            [0, reg.scale_y * rows / h, reg.offset_y * rows],
        ],
        dtype=np.float64,
    )
    sub = 8
    big = cv2.warpAffine(
        mask.astype(np.float32), m * [[sub], [sub]], (cols * sub, rows * sub), flags=cv2.INTER_AREA
    )
    return cv2.resize(big, (cols, rows), interpolation=cv2.INTER_AREA)
