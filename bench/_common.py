"""Helpers the benchmarks share: synthetic photos, stopwatches and result tables.

Timings on a shared machine are noisy, so every benchmark runs its candidate and a
baseline alternately in one process and compares medians; the helpers here keep
that bookkeeping out of the benchmark scripts.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import cv2
import numpy as np

from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings


class _FixedClock:
    """A clock for rendering only: the synthetic camera asks for one, never uses it here."""

    def now(self) -> datetime:
        """A fixed instant."""
        return datetime(2024, 1, 1, tzinfo=timezone.utc)

    def wait_until(self, when: datetime, wake: threading.Event) -> bool:
        """Never waits: renders do not sleep."""
        return False


def render_photo(
    width: int,
    height: int,
    seed: int,
    day: float,
    yellowing_onset_day: float | None = None,
    brightness: float = 1.0,
    quality: int = 90,
) -> tuple[bytes, np.ndarray]:
    """A synthetic canopy photo as JPEG bytes, and its exact plant mask (full size)."""
    settings = SyntheticCameraSettings(
        width=width,
        height=height,
        seed=seed,
        yellowing_onset_day=yellowing_onset_day,
        brightness=brightness,
    )
    rgb, truth = SyntheticCamera(settings, _FixedClock()).render(day)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the synthetic photo")
    return buf.tobytes(), truth


class Stopwatch:
    """Splits one run into named laps (seconds), for a per-stage breakdown."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Record the time since the previous lap (or the start) under `name`."""
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now

    @property
    def total(self) -> float:
        """Sum of all laps."""
        return sum(self.laps.values())


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def stage_medians(runs: Sequence[Stopwatch]) -> dict[str, float]:
    """Median seconds of each lap name over several runs."""
    names = list(runs[0].laps)
    return {name: median([r.laps[name] for r in runs]) for name in names}


def ms(seconds: float) -> str:
    """Seconds as milliseconds with one decimal."""
    return f"{seconds * 1000.0:.1f}"


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None
) -> None:
    """A plain aligned text table; `align` has one 'l' or 'r' per column (default: 'lrr...')."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def print_goal(description: str, met: bool) -> None:
    """One line per goal, in a form that is easy to grep."""
    print(f"goal {description}: {'met' if met else 'not met'}")


def environment() -> str:
    """Interpreter, library versions and CPU count, printed above the results."""
    return (
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"opencv {cv2.__version__}, {platform.machine()}, {os.cpu_count()} CPUs"
    )
