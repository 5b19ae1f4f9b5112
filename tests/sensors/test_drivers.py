"""The I2C drivers against a scripted bus replaying datasheet transactions."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge.sensors.base import SensorError, SensorNotFitted, SensorReadError, crc8, with_crc
from edge.sensors.bme280 import Bme280, Calibration, compensate
from edge.sensors.bus import ScriptedBus
from edge.sensors.mlx90640 import Mlx90640
from edge.sensors.scd4x import DATA_READY, READ_MEASUREMENT, SERIAL_NUMBER, START_PERIODIC, Scd4x
from edge.sensors.sht import SHT3X_MEASURE, SHT3X_STATUS, SHT4X_MEASURE, SHT4X_SERIAL, Sht3x, Sht4x


def no_sleep(_: float) -> None:
    pass


def test_crc8_matches_the_sensirion_datasheet_example() -> None:
    assert crc8(bytes([0xBE, 0xEF])) == 0x92


def sht_bus(measure: bytes, probe: bytes, answer: bytes) -> ScriptedBus:
    return ScriptedBus({0x44: {probe: with_crc(0x1234, 0x5678), measure: answer}})


def test_sht4x_converts_words_with_the_datasheet_formulas() -> None:
    # 0x6666 -> -45 + 175 * 26214 / 65535 = 25.0 degC; 0x8000 -> -6 + 125 * 0.5 = 56.5 %.
    bus = sht_bus(SHT4X_MEASURE, SHT4X_SERIAL, with_crc(0x6666, 0x8000))
    reading = Sht4x(bus, 0x44, sleep=no_sleep).read()
    assert reading.air_temp_c == pytest.approx(25.0, abs=0.01)
    assert reading.rh_pct == pytest.approx(56.5, abs=0.01)
    assert bus.writes[-1] == (0x44, bytes([0xFD]))


def test_sht3x_uses_its_own_humidity_scale_and_command() -> None:
    bus = sht_bus(SHT3X_MEASURE, SHT3X_STATUS, bytes([0x66, 0x66, 0x93, 0x80, 0x00, 0xA2]))
    reading = Sht3x(bus, 0x44, sleep=no_sleep).read()
    assert reading.air_temp_c == pytest.approx(25.0, abs=0.01)
    assert reading.rh_pct == pytest.approx(50.0, abs=0.01)
    assert bus.writes[-1] == (0x44, bytes([0x24, 0x00]))


def test_sht_reading_with_a_bad_crc_fails_as_crc() -> None:
    good = with_crc(0x6666, 0x8000)
    bus = sht_bus(SHT4X_MEASURE, SHT4X_SERIAL, good[:5] + bytes([good[5] ^ 0x01]))
    sensor = Sht4x(bus, 0x44, sleep=no_sleep)
    with pytest.raises(SensorReadError) as info:
        sensor.read()
    assert info.value.reason == "crc"
    assert "word 1" in str(info.value)


def test_sht_at_an_empty_address_is_not_fitted() -> None:
    with pytest.raises(SensorNotFitted, match="0x44"):
        Sht4x(ScriptedBus({}), 0x44, sleep=no_sleep)


def test_scd4x_reads_the_datasheet_example_measurement() -> None:
    # Datasheet read_measurement example: 500 ppm, 25 degC, 37 % RH.
    example = bytes([0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3C])
    bus = ScriptedBus(
        {
            0x62: {
                SERIAL_NUMBER: with_crc(0xF896, 0x9F07, 0x3BB1),
                DATA_READY: with_crc(0x8006),
                READ_MEASUREMENT: example,
            }
        }
    )
    sensor = Scd4x(bus, sleep=no_sleep)
    assert (0x62, START_PERIODIC) in bus.writes
    reading = sensor.read()
    assert reading.co2_ppm == 500
    assert reading.air_temp_c == pytest.approx(25.0, abs=0.01)
    assert reading.rh_pct == pytest.approx(37.0, abs=0.01)


def test_scd4x_without_new_data_is_not_ready() -> None:
    bus = ScriptedBus({0x62: {SERIAL_NUMBER: with_crc(1, 2, 3), DATA_READY: with_crc(0x8000)}})
    with pytest.raises(SensorReadError) as info:
        Scd4x(bus, sleep=no_sleep).read()
    assert info.value.reason == "not_ready"


# BMP280 datasheet worked example (section 3.12): the BME280 uses the same T and P formulas.
T_CAL = (27504, 26435, -1000)
P_CAL = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
H_CAL = (75, 370, 0, 313, 50, 30)  # typical trimming values of a production BME280
ADC_T, ADC_P, ADC_H = 519888, 415148, 30000


def bme280_bus(chip_id: int = 0x60) -> ScriptedBus:
    tp = struct.pack("<HhhHhhhhhhhh", *T_CAL, *P_CAL) + bytes([0, H_CAL[0]])
    h2, h3, h4, h5, h6 = H_CAL[1:]
    h = struct.pack("<hB", h2, h3) + bytes(
        [h4 >> 4, (h4 & 0x0F) | ((h5 & 0x0F) << 4), h5 >> 4, h6 & 0xFF]
    )
    data = bytes(
        [
            *(ADC_P >> 12, (ADC_P >> 4) & 0xFF, (ADC_P & 0x0F) << 4),
            *(ADC_T >> 12, (ADC_T >> 4) & 0xFF, (ADC_T & 0x0F) << 4),
            *(ADC_H >> 8, ADC_H & 0xFF),
        ]
    )
    return ScriptedBus(
        {
            0x76: {
                bytes([0xD0]): bytes([chip_id]),
                bytes([0x88]): tp,
                bytes([0xE1]): h,
                bytes([0xF3]): bytes([0x00]),
                bytes([0xF7]): data,
            }
        }
    )


def test_bme280_temperature_and_pressure_match_the_bosch_worked_example() -> None:
    sensor = Bme280(bme280_bus(), 0x76, sleep=no_sleep)
    reading = sensor.read()
    assert reading.air_temp_c == pytest.approx(25.08, abs=0.005)
    assert sensor.pressure_pa == pytest.approx(100653.27, abs=0.5)
    assert (0x76, bytes([0xF2, 0x01])) in sensor._bus.writes  # type: ignore[attr-defined]


def _humidity_int32(cal: Calibration, adc_h: int, adc_t: int) -> float:
    """Bosch's integer humidity compensation (datasheet 4.2.3), as an independent check."""
    var1 = ((adc_t >> 3) - (cal.t1 << 1)) * cal.t2 >> 11
    var2 = (((((adc_t >> 4) - cal.t1) * ((adc_t >> 4) - cal.t1)) >> 12) * cal.t3) >> 14
    v = var1 + var2 - 76800
    v = ((((adc_h << 14) - (cal.h4 << 20) - (cal.h5 * v)) + 16384) >> 15) * (
        (((((v * cal.h6) >> 10) * (((v * cal.h3) >> 11) + 32768)) >> 10) + 2097152) * cal.h2 + 8192
        >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.h1) >> 4)
    v = min(max(v, 0), 419430400)
    return (v >> 12) / 1024.0


def test_bme280_humidity_agrees_with_the_integer_formula() -> None:
    sensor = Bme280(bme280_bus(), 0x76, sleep=no_sleep)
    reading = sensor.read()
    expected = _humidity_int32(sensor.calibration, ADC_H, ADC_T)
    assert 0 < expected < 100
    assert reading.rh_pct == pytest.approx(expected, abs=0.05)


def test_bme280_calibration_nibbles_decode_signed_h4_h5() -> None:
    cal = Calibration.parse(
        bytes(24) + bytes([0, 75]), bytes([0x70, 0x01, 0, 0xFF, 0xF8, 0xFF, 0x1E])
    )
    assert (cal.h2, cal.h4, cal.h5, cal.h6) == (368, -8, -1, 30)


def test_bmp280_at_the_address_is_refused_as_having_no_humidity() -> None:
    with pytest.raises(SensorError, match="no humidity"):
        Bme280(bme280_bus(chip_id=0x58), 0x76, sleep=no_sleep)


def test_compensate_clips_humidity_into_0_100() -> None:
    cal = Calibration.parse(
        struct.pack("<HhhHhhhhhhhh", *T_CAL, *P_CAL) + bytes([0, 75]),
        bytes([0x72, 1, 0, 19, 0x21, 3, 30]),
    )
    assert compensate(cal, ADC_T, ADC_P, 65535)[2] == 100.0


class _FakeAdafruit:
    def __init__(self, values: list[float] | Exception) -> None:
        self.values = values
        self.refresh_rate = None

    def getFrame(self, frame: list[float]) -> None:  # the driver's name
        if isinstance(self.values, Exception):
            raise self.values
        frame[:] = self.values


def test_mlx90640_frame_is_24_rows_of_32() -> None:
    values = [20.0 + i / 100 for i in range(768)]
    sensor = Mlx90640(open_device=lambda _a: _FakeAdafruit(values))
    frame = sensor.read().celsius
    assert frame.shape == (24, 32)
    assert frame[1, 0] == pytest.approx(20.32)
    assert frame.dtype == np.float32


def test_mlx90640_driver_giving_up_is_an_io_failure() -> None:
    sensor = Mlx90640(open_device=lambda _a: _FakeAdafruit(ValueError("Too many retries")))
    with pytest.raises(SensorReadError) as info:
        sensor.read()
    assert info.value.reason == "io"


def test_mlx90640_without_its_driver_package_says_what_to_install() -> None:
    try:
        import adafruit_mlx90640  # noqa: F401
    except ImportError:
        with pytest.raises(SensorError, match="adafruit-circuitpython-mlx90640"):
            Mlx90640()
    else:
        pytest.skip("adafruit-circuitpython-mlx90640 is installed here")
