"""Reads every fitted sensor once per capture, checks each reading, counts failures.

A sensor the config leaves null, or that does not answer at its address, is "not
fitted": its fields are null and nothing is counted. A fitted sensor whose read
fails (I2C error, CRC mismatch) or whose value is implausible (out of range, the
same value `stuck_readings` times in a row) gives a null field, a failure counted
by sensor and reason, and the next capture tries again. Nothing here raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.sensors.base import (
    AirReading,
    Co2Reading,
    I2CBus,
    SensorError,
    SensorNotFitted,
    SensorReadError,
    ThermalFrame,
)
from edge.sensors.settings import SensorsConfig

log = logging.getLogger(__name__)

# Plausible grow-room values; anything outside is a broken sensor, not weather.
RANGES = {
    "air_temp_c": (-10.0, 60.0),
    "rh_pct": (0.5, 100.0),
    "co2_ppm": (250.0, 10000.0),
    "thermal_c": (-20.0, 80.0),
}
THERMAL_BAD_SHARE = 0.05  # more out-of-range pixels than this: the whole frame is bad
ROLES = ("climate", "co2", "thermal")
FailureHook = Callable[[str, str], None]
BusFactory = Callable[[int], I2CBus]


@dataclass(frozen=True, slots=True)
class SensorReadings:
    """One capture's climate; a null field was not fitted or failed (see `status`)."""

    air_temp_c: float | None = None
    rh_pct: float | None = None
    co2_ppm: float | None = None
    thermal: np.ndarray | None = None
    status: dict[str, str] = field(default_factory=dict)  # role -> ok, not fitted, failed: ...


def _default_bus(number: int) -> I2CBus:
    from edge.sensors.bus import SMBus2Bus

    return SMBus2Bus(number)


def open_sensor(role: str, config: SensorsConfig, bus: Callable[[], I2CBus]) -> Any:
    """Open one configured sensor; raises SensorNotFitted or SensorError."""
    from edge.sensors import bme280, fakes, mlx90640, scd4x, sht

    s = getattr(config, role)
    if s.model == "fake":
        if role == "climate":
            return fakes.FakeClimateSensor(s)
        if role == "co2":
            return fakes.FakeCo2Sensor(s)
        return fakes.FakeThermalSensor(s, config.registration)
    if s.model == "sht3x":
        return sht.Sht3x(bus(), s.address)
    if s.model == "sht4x":
        return sht.Sht4x(bus(), s.address)
    if s.model == "bme280":
        return bme280.Bme280(bus(), s.address)
    if s.model == "scd4x":
        return scd4x.Scd4x(bus())
    return mlx90640.Mlx90640(s.address, s.refresh_hz)


class _Stuck:
    """Counts identical readings in a row."""

    def __init__(self, limit: int) -> None:
        self.limit, self.last, self.repeats = limit, None, 0

    def stuck(self, value: Any) -> bool:
        same = self.last is not None and (
            np.array_equal(self.last, value)
            if isinstance(value, np.ndarray)
            else self.last == value
        )
        self.repeats = self.repeats + 1 if same else 1
        self.last = value
        return self.repeats >= self.limit


class SensorHub:
    """The fitted sensors; `read()` once per capture."""

    def __init__(
        self,
        config: SensorsConfig,
        bus_factory: BusFactory | None = None,
        on_failure: FailureHook | None = None,
        opener: Callable[[str, SensorsConfig, Callable[[], I2CBus]], Any] = open_sensor,
    ) -> None:
        self.config = config
        self._bus_factory = bus_factory or _default_bus
        self._bus: I2CBus | None = None
        self._on_failure = on_failure
        self._opener = opener
        self._sensors: dict[str, Any] = {}
        self._state: dict[str, str] = {}
        self._since_probe: dict[str, int] = {}
        self._stuck = {key: _Stuck(config.stuck_readings) for key in (*RANGES, "thermal")}
        self.failures: dict[tuple[str, str], int] = {}
        for role in ROLES:
            if getattr(config, role) is None:
                self._state[role] = "not fitted"
            else:
                self._open(role)

    def _get_bus(self) -> I2CBus:
        if self._bus is None:
            self._bus = self._bus_factory(self.config.i2c_bus)
        return self._bus

    def _open(self, role: str) -> None:
        self._since_probe[role] = 0
        try:
            self._sensors[role] = self._opener(role, self.config, self._get_bus)
            self._state[role] = "ok"
            log.info("sensor fitted", extra={"role": role, "sensor": self._sensors[role].name})
        except SensorNotFitted as exc:
            if self._state.get(role) != "not fitted":
                log.info("sensor not fitted", extra={"role": role, "detail": str(exc)})
            self._state[role] = "not fitted"
        except (SensorError, OSError, ValueError) as exc:
            self._failed(role, "unavailable", str(exc))

    def _failed(self, role: str, reason: str, message: str) -> None:
        key = (role, reason)
        self.failures[key] = self.failures.get(key, 0) + 1
        self._state[role] = f"failed: {reason}"
        log.warning(
            "sensor reading failed", extra={"role": role, "reason": reason, "error": message}
        )
        if self._on_failure is not None:
            self._on_failure(role, reason)

    def status(self) -> dict[str, str]:
        """Role -> ok, not fitted, or failed: reason (of the last read)."""
        return dict(self._state)

    def _raw(self, role: str, truth_mask: np.ndarray | None) -> Any:
        sensor = self._sensors.get(role)
        if sensor is None:
            if getattr(self.config, role) is None:
                return None
            self._since_probe[role] = self._since_probe.get(role, 0) + 1
            if self._since_probe[role] < self.config.reprobe_every:
                return None
            self._open(role)
            sensor = self._sensors.get(role)
            if sensor is None:
                return None
        try:
            reading = sensor.read(truth_mask) if role == "thermal" else sensor.read()
        except SensorReadError as exc:
            if exc.reason == "not_ready":
                self._state[role] = "warming up"
            else:
                self._failed(role, exc.reason, str(exc))
            return None
        except Exception as exc:  # a driver bug must not stop captures
            self._failed(role, "error", f"{type(exc).__name__}: {exc}")
            return None
        self._state[role] = "ok"
        return reading

    def _checked(self, role: str, key: str, value: float | None) -> float | None:
        if value is None:
            return None
        low, high = RANGES[key]
        if not (np.isfinite(value) and low <= value <= high):
            self._failed(role, "out_of_range", f"{key} {value!r} outside {low}..{high}")
            return None
        if self._stuck[key].stuck(value):
            self._failed(role, "stuck", f"{key} stuck at {value!r}")
            return None
        return float(value)

    def _checked_frame(self, frame: ThermalFrame | None) -> np.ndarray | None:
        if frame is None:
            return None
        pixels = np.asarray(frame.celsius, dtype=np.float32)
        low, high = RANGES["thermal_c"]
        bad = ~np.isfinite(pixels) | (pixels < low) | (pixels > high)
        if pixels.ndim != 2 or pixels.size == 0 or bad.mean() > THERMAL_BAD_SHARE:
            self._failed("thermal", "out_of_range", f"{bad.mean():.0%} of pixels implausible")
            return None
        if self._stuck["thermal"].stuck(pixels) or float(np.nanstd(pixels[~bad])) == 0.0:
            self._failed("thermal", "stuck", "thermal frame repeats or is flat")
            return None
        return np.where(bad, np.nan, pixels).astype(np.float32)  # dead pixels left out

    def read(self, truth_mask: np.ndarray | None = None) -> SensorReadings:
        """Read all fitted sensors now; never raises."""
        air: AirReading | None = self._raw("climate", None)
        co2: Co2Reading | None = self._raw("co2", None)
        thermal: ThermalFrame | None = self._raw("thermal", truth_mask)
        temp = rh = None
        if air is not None:
            temp = self._checked("climate", "air_temp_c", air.air_temp_c)
            rh = self._checked("climate", "rh_pct", air.rh_pct)
        elif co2 is not None and self.config.climate is None:
            # An SCD4x measures temperature and RH too: use them when no air sensor is fitted.
            temp = self._checked("co2", "air_temp_c", co2.air_temp_c)
            rh = self._checked("co2", "rh_pct", co2.rh_pct)
        ppm = self._checked("co2", "co2_ppm", co2.co2_ppm) if co2 is not None else None
        return SensorReadings(temp, rh, ppm, self._checked_frame(thermal), self.status())

    def close(self) -> None:
        """Close every sensor and the bus."""
        for sensor in self._sensors.values():
            try:
                sensor.close()
            except Exception:  # closing must not fail shutdown
                log.exception("sensor close failed")
        if self._bus is not None:
            self._bus.close()
