"""Sensirion SHT3x and SHT4x air temperature and humidity sensors, over raw I2C.

Commands and conversions from the Sensirion datasheets: SHT3x single shot, high
repeatability, no clock stretching (0x2400, 15 ms); SHT4x high precision (0xFD, 8.3 ms).
Both answer with two CRC-protected words: temperature then humidity.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.sensors.base import (
    AirReading,
    I2CBus,
    SensorNotFitted,
    SensorReadError,
    sensirion_words,
)

SHT3X_MEASURE = bytes([0x24, 0x00])
SHT3X_STATUS = bytes([0xF3, 0x2D])
SHT4X_MEASURE = bytes([0xFD])
SHT4X_SERIAL = bytes([0x89])


def _celsius(word: int) -> float:
    return -45.0 + 175.0 * word / 65535.0


class _Sht:
    name = "sht"
    _measure = b""
    _probe = b""
    _probe_len = 0
    _wait_s = 0.0

    def __init__(self, bus: I2CBus, address: int, sleep: Callable[[float], None] = time.sleep):
        self._bus, self._address, self._sleep = bus, address, sleep
        try:
            raw = bus.write_read(address, self._probe, self._probe_len)
        except OSError as exc:
            raise SensorNotFitted(f"{self.name}: nothing at 0x{address:02X} ({exc})") from exc
        sensirion_words(raw, self.name)  # a wrong chip here fails its CRC

    def _humidity(self, word: int) -> float:
        raise NotImplementedError

    def read(self) -> AirReading:
        """Trigger one measurement, wait for it, read and check both words."""
        try:
            self._bus.write(self._address, self._measure)
            self._sleep(self._wait_s)
            raw = self._bus.read(self._address, 6)
        except OSError as exc:
            raise SensorReadError("io", f"{self.name}: I2C error: {exc}") from exc
        t_word, rh_word = sensirion_words(raw, self.name)
        return AirReading(_celsius(t_word), self._humidity(rh_word))

    def close(self) -> None:
        """Nothing to stop: both sensors idle between single shots."""


class Sht3x(_Sht):
    """SHT30/31/35: address 0x44 (ADDR low) or 0x45."""

    name = "sht3x"
    _measure = SHT3X_MEASURE
    _probe = SHT3X_STATUS
    _probe_len = 3
    _wait_s = 0.016

    def _humidity(self, word: int) -> float:
        return 100.0 * word / 65535.0


class Sht4x(_Sht):
    """SHT40/41/45: address 0x44 (or 0x45/0x46 by part number)."""

    name = "sht4x"
    _measure = SHT4X_MEASURE
    _probe = SHT4X_SERIAL
    _probe_len = 6
    _wait_s = 0.01

    def _humidity(self, word: int) -> float:
        # The datasheet's formula overshoots 0-100 slightly at the ends; it says to clip.
        return min(100.0, max(0.0, -6.0 + 125.0 * word / 65535.0))
