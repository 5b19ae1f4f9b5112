"""Climate sensors behind one interface: air temperature/RH, CO2, a thermal array."""

from __future__ import annotations

from edge.sensors.base import (
    AirReading,
    Co2Reading,
    I2CBus,
    SensorError,
    SensorNotFitted,
    SensorReadError,
    ThermalFrame,
    crc8,
)
from edge.sensors.hub import SensorHub, SensorReadings
from edge.sensors.settings import SensorsConfig

__all__ = [
    "AirReading",
    "Co2Reading",
    "I2CBus",
    "SensorError",
    "SensorHub",
    "SensorNotFitted",
    "SensorReadError",
    "SensorReadings",
    "SensorsConfig",
    "ThermalFrame",
    "crc8",
]
