"""What every sensor driver shares: the I2C bus seam, readings, errors and the CRC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.errors import CultivaiError


class SensorError(CultivaiError, RuntimeError):
    """A sensor could not be set up (driver library missing, wrong chip at the address)."""


class SensorNotFitted(SensorError):
    """Nothing answers at the sensor's address: it is not fitted (not an error)."""


class SensorReadError(SensorError):
    """One reading failed; `reason` is a short metric label (io, crc, not_ready)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class I2CBus(Protocol):
    """The I2C transactions the drivers need; smbus2 on a device, a script in tests."""

    def write(self, address: int, data: bytes) -> None:
        """Write bytes to a device (one I2C write message)."""
        ...

    def read(self, address: int, length: int) -> bytes:
        """Read `length` bytes from a device (one I2C read message)."""
        ...

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        """Write then read with a repeated start (register reads)."""
        ...

    def close(self) -> None:
        """Release the bus."""
        ...


@dataclass(frozen=True, slots=True)
class AirReading:
    """Air temperature and relative humidity from one climate sensor read."""

    air_temp_c: float
    rh_pct: float


@dataclass(frozen=True, slots=True)
class Co2Reading:
    """CO2 concentration, with the temperature and RH the CO2 sensor also measures."""

    co2_ppm: float
    air_temp_c: float | None = None
    rh_pct: float | None = None


@dataclass(frozen=True, slots=True)
class ThermalFrame:
    """A thermal array frame in degrees Celsius, rows top to bottom as the array sees."""

    celsius: np.ndarray  # float32, shape (rows, cols)


class ClimateSensor(Protocol):
    """An air temperature and humidity sensor."""

    name: str

    def read(self) -> AirReading:
        """Measure now; raise SensorReadError when the reading cannot be had."""
        ...

    def close(self) -> None:
        """Release the sensor."""
        ...


class Co2Sensor(Protocol):
    """A CO2 sensor."""

    name: str

    def read(self) -> Co2Reading:
        """The newest measurement; SensorReadError('not_ready') while it has none."""
        ...

    def close(self) -> None:
        """Release the sensor."""
        ...


class ThermalSensor(Protocol):
    """A thermal array camera."""

    name: str

    def read(self, truth_mask: np.ndarray | None = None) -> ThermalFrame:
        """One frame; fakes may use the camera's truth mask to place the leaves."""
        ...

    def close(self) -> None:
        """Release the sensor."""
        ...


def crc8(data: bytes) -> int:
    """Sensirion's CRC-8 (polynomial 0x31, init 0xFF, no reflection, no final XOR)."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def sensirion_words(raw: bytes, sensor: str) -> list[int]:
    """Split a Sensirion response into 16-bit words, checking each word's CRC."""
    if len(raw) % 3:
        raise SensorReadError("io", f"{sensor}: {len(raw)} bytes is not a whole number of words")
    words = []
    for i in range(0, len(raw), 3):
        word, crc = raw[i : i + 2], raw[i + 2]
        if crc8(word) != crc:
            raise SensorReadError(
                "crc",
                f"{sensor}: CRC mismatch on word {i // 3} (got 0x{crc:02X}, "
                f"expected 0x{crc8(word):02X}): interference or a loose wire",
            )
        words.append(int.from_bytes(word, "big"))
    return words


def with_crc(*words: int) -> bytes:
    """Encode 16-bit words the Sensirion way (each followed by its CRC); fakes use it."""
    out = bytearray()
    for word in words:
        pair = word.to_bytes(2, "big")
        out += pair + bytes([crc8(pair)])
    return bytes(out)
