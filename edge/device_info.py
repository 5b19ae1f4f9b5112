"""Facts about the device itself: CPU temperature, free disk."""

from __future__ import annotations

import shutil
from pathlib import Path

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    """SoC temperature in °C (Raspberry Pi, Jetson), None where the kernel has none."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding `path`."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0
