"""Time as the agent sees it: the wall clock on a device, a fake one in tests."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """Tells the time and waits; the scheduler and cameras take one."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    def wait_until(self, when: datetime, wake: threading.Event) -> bool:
        """Wait until `when` or until `wake` is set; True when woken early."""
        ...


class SystemClock:
    """The real wall clock."""

    # Wall-clock time can jump (NTP sync after boot on a Pi without an RTC), so long
    # waits are cut into short ones that re-read the clock.
    max_slice_s = 30.0

    def now(self) -> datetime:
        """Current UTC time."""
        return datetime.now(timezone.utc)

    def wait_until(self, when: datetime, wake: threading.Event) -> bool:
        """Sleep in short slices until `when`, returning early when woken."""
        while True:
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return wake.is_set()
            if wake.wait(min(remaining, self.max_slice_s)):
                return True


class FakeClock:
    """A clock that jumps instead of sleeping, so tests run a week in milliseconds."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The fake current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        """Jump to `when` (forwards or backwards)."""
        with self._lock:
            self._now = when.astimezone(timezone.utc)

    def wait_until(self, when: datetime, wake: threading.Event) -> bool:
        """Jump to `when` at once unless `wake` is already set."""
        if wake.is_set():
            return True
        with self._lock:
            if when > self._now:
                self._now = when
        return False
