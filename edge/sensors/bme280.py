"""Bosch BME280 temperature, humidity (and pressure) sensor, over raw I2C.

Forced mode, oversampling x1; the factory calibration is read once and the raw
values compensated with the datasheet's double-precision formulas (section 4.2.3 /
8.1). No CRC on this chip, so the readings rely on the range and stuck checks.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.sensors.base import AirReading, I2CBus, SensorError, SensorNotFitted, SensorReadError

CHIP_ID_REG = 0xD0
BME280_ID = 0x60
BMP280_ID = 0x58
CALIB_TP = 0x88  # 0x88..0xA1: T1..T3, P1..P9, (0xA0 unused), H1
CALIB_H = 0xE1  # 0xE1..0xE7: H2..H6
CTRL_HUM, STATUS, CTRL_MEAS, DATA = 0xF2, 0xF3, 0xF4, 0xF7
FORCED_X1 = (1 << 5) | (1 << 2) | 0b01  # osrs_t x1, osrs_p x1, forced mode


@dataclass(frozen=True, slots=True)
class Calibration:
    """The chip's trimming parameters (dig_T1.. dig_H6 in the datasheet)."""

    t1: int
    t2: int
    t3: int
    p: tuple[int, ...]
    h1: int
    h2: int
    h3: int
    h4: int
    h5: int
    h6: int

    @classmethod
    def parse(cls, tp: bytes, h: bytes) -> Calibration:
        """From the 26 bytes at 0x88 and the 7 bytes at 0xE1."""
        t1, t2, t3, *p = struct.unpack("<HhhHhhhhhhhh", tp[:24])
        h1 = tp[25]
        h2, h3 = struct.unpack("<hB", h[:3])
        # H4 and H5 are 12-bit signed values sharing the nibbles of 0xE5.
        h4 = _signed12((h[3] << 4) | (h[4] & 0x0F))
        h5 = _signed12((h[5] << 4) | (h[4] >> 4))
        h6 = struct.unpack("<b", h[6:7])[0]
        return cls(t1, t2, t3, tuple(p), h1, h2, h3, h4, h5, h6)


def _signed12(value: int) -> int:
    return value - 4096 if value & 0x800 else value


def compensate(cal: Calibration, adc_t: int, adc_p: int, adc_h: int) -> tuple[float, float, float]:
    """(temperature degC, pressure Pa, RH %) from raw ADC values, datasheet formulas."""
    var1 = (adc_t / 16384.0 - cal.t1 / 1024.0) * cal.t2
    var2 = (adc_t / 131072.0 - cal.t1 / 8192.0) ** 2 * cal.t3
    t_fine = var1 + var2
    temperature = t_fine / 5120.0

    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal.p
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * p6 / 32768.0
    var2 = var2 + var1 * p5 * 2.0
    var2 = var2 / 4.0 + p4 * 65536.0
    var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * p1
    pressure = 0.0
    if var1 != 0:
        pressure = 1048576.0 - adc_p
        pressure = (pressure - var2 / 4096.0) * 6250.0 / var1
        var1 = p9 * pressure * pressure / 2147483648.0
        var2 = pressure * p8 / 32768.0
        pressure = pressure + (var1 + var2 + p7) / 16.0

    h = t_fine - 76800.0
    h = (adc_h - (cal.h4 * 64.0 + cal.h5 / 16384.0 * h)) * (
        cal.h2 / 65536.0 * (1.0 + cal.h6 / 67108864.0 * h * (1.0 + cal.h3 / 67108864.0 * h))
    )
    h = h * (1.0 - cal.h1 * h / 524288.0)
    return temperature, pressure, min(100.0, max(0.0, h))


class Bme280:
    """A BME280 at 0x76 (SDO low) or 0x77."""

    name = "bme280"

    def __init__(
        self, bus: I2CBus, address: int = 0x76, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._bus, self._address, self._sleep = bus, address, sleep
        try:
            chip = bus.write_read(address, bytes([CHIP_ID_REG]), 1)[0]
        except OSError as exc:
            raise SensorNotFitted(f"bme280: nothing at 0x{address:02X} ({exc})") from exc
        if chip == BMP280_ID:
            raise SensorError(f"0x{address:02X} is a BMP280: it has no humidity sensor")
        if chip != BME280_ID:
            raise SensorError(f"0x{address:02X} answers with chip id 0x{chip:02X}, not a BME280")
        try:
            self.calibration = Calibration.parse(
                bus.write_read(address, bytes([CALIB_TP]), 26),
                bus.write_read(address, bytes([CALIB_H]), 7),
            )
        except OSError as exc:
            raise SensorError(f"bme280: cannot read its calibration: {exc}") from exc
        self.pressure_pa: float | None = None

    def read(self) -> AirReading:
        """One forced-mode measurement."""
        a = self._address
        try:
            # ctrl_hum only takes effect after a write to ctrl_meas, so it goes first.
            self._bus.write(a, bytes([CTRL_HUM, 0x01]))
            self._bus.write(a, bytes([CTRL_MEAS, FORCED_X1]))
            self._sleep(0.01)
            for _ in range(10):
                if not self._bus.write_read(a, bytes([STATUS]), 1)[0] & 0x08:
                    break
                self._sleep(0.002)
            else:
                raise SensorReadError("io", "bme280: measurement did not finish")
            raw = self._bus.write_read(a, bytes([DATA]), 8)
        except OSError as exc:
            raise SensorReadError("io", f"bme280: I2C error: {exc}") from exc
        adc_p = (raw[0] << 12) | (raw[1] << 4) | (raw[2] >> 4)
        adc_t = (raw[3] << 12) | (raw[4] << 4) | (raw[5] >> 4)
        adc_h = (raw[6] << 8) | raw[7]
        if adc_t == 0x80000 or adc_h == 0x8000:
            # The reset values: the chip skipped the measurement.
            raise SensorReadError("io", "bme280: returned its reset value (no measurement)")
        t, p, rh = compensate(self.calibration, adc_t, adc_p, adc_h)
        self.pressure_pa = p
        return AirReading(t, rh)

    def close(self) -> None:
        """The chip sleeps between forced measurements: nothing to stop."""
