"""Melexis MLX90640 32x24 thermal array, through Adafruit's maintained driver.

The MLX90640's calibration (EEPROM restore, per-pixel offsets and sensitivities)
is long and easy to get wrong, so this driver uses `adafruit-circuitpython-mlx90640`
(with Adafruit Blinka for `board`/`busio`), imported only when the sensor is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge.sensors.base import SensorError, SensorNotFitted, SensorReadError, ThermalFrame

ROWS, COLS = 24, 32
_REFRESH = {0.5: "REFRESH_0_5_HZ", 1.0: "REFRESH_1_HZ", 2.0: "REFRESH_2_HZ", 4.0: "REFRESH_4_HZ"}


def _adafruit_device(address: int) -> Any:
    try:
        import adafruit_mlx90640
        import board
        import busio
    except ImportError as exc:
        raise SensorError(
            "the MLX90640 needs adafruit-circuitpython-mlx90640 (and Adafruit Blinka): "
            "pip install 'cultivai-edge[thermal]'"
        ) from exc
    i2c = busio.I2C(board.SCL, board.SDA, frequency=800_000)
    device = adafruit_mlx90640.MLX90640(i2c, address=address)
    device.module = adafruit_mlx90640
    return device


class Mlx90640:
    """An MLX90640; `open_device` is the seam tests replace (it returns the driver object)."""

    name = "mlx90640"

    def __init__(
        self,
        address: int = 0x33,
        refresh_hz: float = 2.0,
        open_device: Callable[[int], Any] = _adafruit_device,
    ) -> None:
        try:
            self._device = open_device(address)
        except (OSError, ValueError) as exc:
            # The driver reads the EEPROM in its constructor: no answer means not fitted.
            raise SensorNotFitted(f"mlx90640: nothing at 0x{address:02X} ({exc})") from exc
        module = getattr(self._device, "module", None)
        rate = getattr(getattr(module, "RefreshRate", None), _REFRESH[refresh_hz], None)
        if rate is not None:
            self._device.refresh_rate = rate

    def read(self, truth_mask: np.ndarray | None = None) -> ThermalFrame:
        """One full frame (both subpages) in degrees Celsius."""
        values = [0.0] * (ROWS * COLS)
        try:
            self._device.getFrame(values)
        except (OSError, ValueError, RuntimeError) as exc:
            # The driver raises ValueError after too many retries on a bad frame.
            raise SensorReadError("io", f"mlx90640: {exc}") from exc
        return ThermalFrame(np.asarray(values, dtype=np.float32).reshape(ROWS, COLS))

    def close(self) -> None:
        """Nothing to stop."""
