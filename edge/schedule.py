"""When to take the next photo: clock-aligned slots inside the photoperiod.

Slots sit on multiples of the interval from local midnight, so after downtime the
agent resumes at the next future slot: missed slots are skipped, never made up in
a burst. Slots in the dark period are skipped; if the lights are in fact off at a
slot (a frame darker than ``dark_frame_luma``), the frame is dropped by the agent.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from edge.config import ScheduleConfig


def _zone(config: ScheduleConfig) -> tzinfo:
    if config.timezone is not None:
        return ZoneInfo(config.timezone)
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


class Schedule:
    """Computes capture slots; pure, so tests can step through a week instantly."""

    def __init__(self, config: ScheduleConfig, zone: tzinfo | None = None) -> None:
        self.config = config
        self.zone = zone or _zone(config)
        self.interval = timedelta(seconds=config.interval_s)

    def lights_on_at(self, when: datetime) -> bool:
        """True when `when` falls inside the photoperiod (always, without one)."""
        on, off = self.config.lights_on, self.config.lights_off
        if on is None or off is None:
            return True
        t = when.astimezone(self.zone).time()
        if on < off:
            return on <= t < off
        return t >= on or t < off  # the photoperiod spans midnight

    def _slot_at_or_after(self, when: datetime) -> datetime:
        # Local midnight anchors the slots; the arithmetic is done in UTC so a
        # daylight-saving change never yields a non-existent or repeated slot.
        day = when.astimezone(self.zone).date()
        midnight = datetime.combine(day, time(0), tzinfo=self.zone).astimezone(timezone.utc)
        next_midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)
        slots = -(-(when - midnight) // self.interval)  # ceiling division of timedeltas
        return min(midnight + slots * self.interval, next_midnight.astimezone(timezone.utc))

    def next_capture(self, after: datetime) -> datetime:
        """The first slot strictly after `after` in which the lights are on."""
        candidate = self._slot_at_or_after(after + timedelta(microseconds=1))
        # At most one day of slots plus a day boundary to look through.
        for _ in range(2 + 2 * int(timedelta(days=1) / self.interval)):
            if self.lights_on_at(candidate):
                return candidate
            candidate = self._slot_at_or_after(candidate + timedelta(microseconds=1))
        raise RuntimeError("no capture slot within two days; the photoperiod is empty")

    def is_dark(self, mean_luma: float) -> bool:
        """True when a frame is so dark the lights must be off."""
        return mean_luma < self.config.dark_frame_luma
