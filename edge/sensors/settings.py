"""The `sensors` config section: which climate, CO2 and thermal sensors are fitted."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sht3xSettings(_Settings):
    """Sensirion SHT30/31/35 over I2C."""

    model: Literal["sht3x"] = Field(description="Sensor model.")
    address: Literal[0x44, 0x45] = Field(0x44, description="I2C address: 68 (0x44) or 69 (0x45).")


class Sht4xSettings(_Settings):
    """Sensirion SHT40/41/45 over I2C."""

    model: Literal["sht4x"] = Field(description="Sensor model.")
    address: Literal[0x44, 0x45, 0x46] = Field(
        0x44, description="I2C address: 68 (0x44), 69 or 70 by part number."
    )


class Bme280Settings(_Settings):
    """Bosch BME280 over I2C."""

    model: Literal["bme280"] = Field(description="Sensor model.")
    address: Literal[0x76, 0x77] = Field(0x76, description="I2C address: 118 (0x76) or 119.")


class FakeClimateSettings(_Settings):
    """A simulated air sensor, for the demo and tests."""

    model: Literal["fake"] = Field(description="Sensor model.")
    air_temp_c: float = Field(25.0, ge=-40, le=80, description="Air temperature it reports.")
    rh_pct: float = Field(60.0, ge=0, le=100, description="Relative humidity it reports.")
    noise: float = Field(0.1, ge=0, le=10, description="Random noise added to each reading.")
    seed: int = Field(0, description="Random seed of the noise.")


ClimateSettings = Annotated[
    Sht3xSettings | Sht4xSettings | Bme280Settings | FakeClimateSettings,
    Field(discriminator="model"),
]


class Scd4xSettings(_Settings):
    """Sensirion SCD40/SCD41 over I2C (address 0x62)."""

    model: Literal["scd4x"] = Field(description="Sensor model.")


class FakeCo2Settings(_Settings):
    """A simulated CO2 sensor."""

    model: Literal["fake"] = Field(description="Sensor model.")
    co2_ppm: float = Field(800.0, ge=0, le=40000, description="CO2 it reports.")
    noise: float = Field(5.0, ge=0, le=1000, description="Random noise added, in ppm.")
    seed: int = Field(0, description="Random seed of the noise.")


Co2Settings = Annotated[Scd4xSettings | FakeCo2Settings, Field(discriminator="model")]


class Mlx90640Settings(_Settings):
    """Melexis MLX90640 thermal array (needs adafruit-circuitpython-mlx90640)."""

    model: Literal["mlx90640"] = Field(description="Sensor model.")
    address: int = Field(0x33, ge=0x08, le=0x77, description="I2C address (51, 0x33, usually).")
    refresh_hz: float = Field(2.0, description="Frame rate of the array: 0.5, 1, 2 or 4 Hz.")

    @field_validator("refresh_hz")
    @classmethod
    def _known_rate(cls, value: float) -> float:
        if value not in (0.5, 1.0, 2.0, 4.0):
            raise ValueError("must be 0.5, 1, 2 or 4 (frames per second)")
        return value


class FakeThermalSettings(_Settings):
    """A simulated thermal array: leaves where the camera's plants are, warmer ground."""

    model: Literal["fake"] = Field(description="Sensor model.")
    leaf_c: float = Field(23.0, ge=-20, le=80, description="Leaf temperature it shows.")
    background_c: float = Field(27.0, ge=-20, le=80, description="Substrate temperature.")
    noise_c: float = Field(0.15, ge=0, le=5, description="Per-pixel noise in degC.")
    seed: int = Field(0, description="Random seed of the noise.")


ThermalSettings = Annotated[Mlx90640Settings | FakeThermalSettings, Field(discriminator="model")]


class RegistrationSettings(_Settings):
    """Where the camera frame falls in the thermal frame, and which pixels count as leaf.

    A camera point at (x, y), both 0-1 across the photo, is seen by the thermal array
    at (scale_x * x + offset_x, scale_y * y + offset_y), 0-1 across the thermal frame.
    A negative scale mirrors a sensor mounted the other way round.
    """

    scale_x: float = Field(1.0, ge=-4, le=4, description="Thermal widths per camera width.")
    scale_y: float = Field(1.0, ge=-4, le=4, description="Thermal heights per camera height.")
    offset_x: float = Field(0.0, ge=-4, le=4, description="Thermal x of the photo's left edge.")
    offset_y: float = Field(0.0, ge=-4, le=4, description="Thermal y of the photo's top edge.")
    erode_px: int = Field(
        3, ge=0, le=50, description="Plant-mask pixels eroded off leaf edges before sampling."
    )
    min_leaf_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Share of a thermal pixel that must be leaf for it to count as leaf.",
    )
    min_pixels: int = Field(
        3, ge=1, le=768, description="Leaf thermal pixels needed for a leaf temperature."
    )

    @model_validator(mode="after")
    def _scales_nonzero(self) -> RegistrationSettings:
        if self.scale_x == 0 or self.scale_y == 0:
            raise ValueError("scale_x and scale_y must not be 0")
        return self


Stage = Literal["propagation", "veg", "flower"]


class VpdTargetSettings(_Settings):
    """VPD target ranges (kPa) per growth stage, and when leaving them raises an alert."""

    stage: Stage | None = Field(
        None, description="Growth stage now: propagation, veg or flower; null: no VPD alert."
    )
    propagation: tuple[float, float] = Field((0.4, 0.8), description="Target VPD range, kPa.")
    veg: tuple[float, float] = Field((0.8, 1.2), description="Target VPD range, kPa.")
    flower: tuple[float, float] = Field((1.2, 1.6), description="Target VPD range, kPa.")
    use_leaf: bool = Field(
        True, description="Judge leaf VPD when leaf temperature is known; off: always air VPD."
    )
    consecutive: int = Field(
        3, ge=1, le=100, description="Captures in a row out of (or back in) range to raise/clear."
    )

    @model_validator(mode="after")
    def _ordered(self) -> VpdTargetSettings:
        for stage in ("propagation", "veg", "flower"):
            low, high = getattr(self, stage)
            if not 0 <= low < high <= 10:
                raise ValueError(f"{stage} must be [low, high] with 0 <= low < high <= 10 kPa")
        return self

    def target(self) -> tuple[float, float] | None:
        """The range for the configured stage, or None when no stage is set."""
        return None if self.stage is None else getattr(self, self.stage)


class SensorsConfig(_Settings):
    """Climate sensors; each one left null is not fitted."""

    i2c_bus: int = Field(1, ge=0, le=255, description="I2C bus number (/dev/i2c-N).")
    climate: ClimateSettings | None = Field(None, description="Air temperature and RH sensor.")
    co2: Co2Settings | None = Field(None, description="CO2 sensor.")
    thermal: ThermalSettings | None = Field(None, description="Thermal array for leaf temperature.")
    stuck_readings: int = Field(
        10,
        ge=2,
        le=10000,
        description="Identical readings in a row after which a sensor counts as stuck.",
    )
    reprobe_every: int = Field(
        30, ge=1, le=100000, description="Reads between retries of a sensor that did not answer."
    )
    registration: RegistrationSettings = Field(
        default_factory=RegistrationSettings, description="Thermal-to-camera registration."
    )
    vpd: VpdTargetSettings = Field(
        default_factory=VpdTargetSettings, description="VPD targets by growth stage."
    )

    @property
    def any_fitted(self) -> bool:
        """True when any sensor is configured."""
        return any(s is not None for s in (self.climate, self.co2, self.thermal))
