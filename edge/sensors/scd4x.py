"""Sensirion SCD40/SCD41 CO2 sensor (address 0x62), over raw I2C.

Runs in periodic mode (a new measurement every 5 s); a read asks whether data is
ready (0xE4B8) and then reads CO2, temperature and humidity (0xEC05), each word
protected by the Sensirion CRC-8.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from edge.sensors.base import (
    Co2Reading,
    I2CBus,
    SensorNotFitted,
    SensorReadError,
    sensirion_words,
)

ADDRESS = 0x62
STOP_PERIODIC = bytes([0x3F, 0x86])
START_PERIODIC = bytes([0x21, 0xB1])
SERIAL_NUMBER = bytes([0x36, 0x82])
DATA_READY = bytes([0xE4, 0xB8])
READ_MEASUREMENT = bytes([0xEC, 0x05])


class Scd4x:
    """An SCD4x in periodic measurement mode."""

    name = "scd4x"

    def __init__(
        self, bus: I2CBus, address: int = ADDRESS, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._bus, self._address, self._sleep = bus, address, sleep
        try:
            # A sensor left measuring by an earlier run ignores other commands until stopped.
            bus.write(address, STOP_PERIODIC)
            sleep(0.5)
            bus.write(address, SERIAL_NUMBER)
            sleep(0.001)
            raw = bus.read(address, 9)
        except OSError as exc:
            raise SensorNotFitted(f"scd4x: nothing at 0x{address:02X} ({exc})") from exc
        sensirion_words(raw, self.name)
        try:
            bus.write(address, START_PERIODIC)
        except OSError as exc:
            raise SensorReadError("io", f"scd4x: cannot start measuring: {exc}") from exc

    def _command(self, command: bytes, length: int) -> list[int]:
        try:
            self._bus.write(self._address, command)
            self._sleep(0.001)
            raw = self._bus.read(self._address, length)
        except OSError as exc:
            raise SensorReadError("io", f"scd4x: I2C error: {exc}") from exc
        return sensirion_words(raw, self.name)

    def read(self) -> Co2Reading:
        """The newest measurement; not_ready in the first 5 s after start."""
        (status,) = self._command(DATA_READY, 3)
        if status & 0x07FF == 0:
            raise SensorReadError("not_ready", "scd4x: no new measurement yet")
        co2, t_word, rh_word = self._command(READ_MEASUREMENT, 9)
        return Co2Reading(
            co2_ppm=float(co2),
            air_temp_c=-45.0 + 175.0 * t_word / 65535.0,
            rh_pct=100.0 * rh_word / 65535.0,
        )

    def close(self) -> None:
        """Stop periodic measurement, so the sensor accepts commands next time."""
        with contextlib.suppress(OSError):  # unplugged: nothing to stop
            self._bus.write(self._address, STOP_PERIODIC)
