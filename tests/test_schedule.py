"""Capture schedule: interval slots, photoperiod, no catch-up bursts, a simulated week."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from edge.clock import FakeClock
from edge.config import ScheduleConfig
from edge.schedule import Schedule

UTC = timezone.utc


def schedule(**kw: object) -> Schedule:
    return Schedule(ScheduleConfig.model_validate({"timezone": "UTC", **kw}))


def test_slots_are_aligned_to_the_interval() -> None:
    s = schedule(interval_s=900)
    assert s.next_capture(datetime(2026, 5, 1, 10, 7, 30, tzinfo=UTC)) == datetime(
        2026, 5, 1, 10, 15, tzinfo=UTC
    )
    # Exactly on a slot: the next one, never the same slot twice.
    assert s.next_capture(datetime(2026, 5, 1, 10, 15, tzinfo=UTC)) == datetime(
        2026, 5, 1, 10, 30, tzinfo=UTC
    )


def test_a_simulated_week_captures_only_while_the_lights_are_on() -> None:
    s = schedule(interval_s=1800, lights_on="06:00", lights_off="20:00")
    clock = FakeClock(datetime(2026, 5, 4, 0, 0, tzinfo=UTC))
    wake = threading.Event()
    captures = []
    end = clock.now() + timedelta(days=7)
    while True:
        due = s.next_capture(clock.now())
        if due >= end:
            break
        clock.wait_until(due, wake)
        captures.append(clock.now())
    per_day = Counter(c.date() for c in captures)
    assert len(per_day) == 7
    assert set(per_day.values()) == {28}  # 14 lit hours, every 30 minutes
    assert all(time(6) <= c.time() < time(20) for c in captures)


def test_photoperiod_across_midnight() -> None:
    s = schedule(interval_s=3600, lights_on="18:00", lights_off="06:00")
    t = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    hours = []
    for _ in range(14):
        t = s.next_capture(t)
        hours.append(t.hour)
    assert hours == [18, 19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 18, 19]


def test_downtime_resumes_at_the_next_slot_without_a_burst() -> None:
    s = schedule(interval_s=600)
    last_capture = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
    back_up = last_capture + timedelta(hours=5, minutes=3)  # agent was down for 5 hours
    first = s.next_capture(back_up)
    second = s.next_capture(first)
    assert first == datetime(2026, 5, 4, 13, 10, tzinfo=UTC)
    assert second - first == timedelta(minutes=10)


def test_photoperiod_follows_local_time_across_daylight_saving() -> None:
    zone = ZoneInfo("Europe/Amsterdam")
    s = Schedule(
        ScheduleConfig(
            interval_s=3600, lights_on="06:00", lights_off="08:00", timezone="Europe/Amsterdam"
        )
    )
    t = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # the clocks go forward on 29 March
    local = []
    for _ in range(4):
        t = s.next_capture(t)
        local.append(t.astimezone(zone).strftime("%d %H:%M"))
    assert local == ["29 06:00", "29 07:00", "30 06:00", "30 07:00"]
    assert len(set(local)) == len(local)


def test_dark_frames_are_recognised() -> None:
    s = schedule(dark_frame_luma=20)
    assert s.is_dark(5.0)
    assert not s.is_dark(60.0)


def test_fake_clock_wait_returns_early_when_woken() -> None:
    clock = FakeClock(datetime(2026, 5, 4, tzinfo=UTC))
    wake = threading.Event()
    wake.set()
    assert clock.wait_until(clock.now() + timedelta(hours=1), wake) is True
    assert clock.now() == datetime(2026, 5, 4, tzinfo=UTC)
