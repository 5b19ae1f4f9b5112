"""The page's own queries and charts, on observations written through the Store."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.web import queries
from edge.web.charts import Line, line_chart, y_scale
from tests.web.conftest import AgentDevice


def test_series_averages_observations_into_buckets(device: AgentDevice) -> None:
    store = device.agent.store
    start = datetime(2026, 3, 2, 0, tzinfo=timezone.utc)
    end = start + timedelta(days=2)
    points = queries.series(store, start, end, buckets=4)  # 12-hour buckets
    # Captures every 3 h from 09:00 on 2 March: 09 | 12-21 | 00-09 | 12-18.
    assert [p.count for p in points] == [1, 4, 4, 3]
    assert [p.at.hour for p in points] == [6, 18, 6, 18]
    second = [o.canopy.cover_pct for o in reversed(store.recent(12))][1:5]
    assert points[1].cover_pct == pytest.approx(sum(second) / 4)
    assert points[0].health_confidence is None


def test_photo_days_follow_the_grow_rooms_time_zone(device: AgentDevice) -> None:
    new_york = queries.photo_days(device.agent.store, ZoneInfo("America/New_York"))
    utc = queries.photo_days(device.agent.store, timezone.utc)
    assert [d.day for d in utc] == [date(2026, 3, 3), date(2026, 3, 2)]
    # 00:00 and 03:00 UTC on 3 March are still 2 March in New York.
    assert new_york[-1].photos == utc[-1].photos + 2


def test_timelapse_takes_the_middle_photo_of_each_day_and_thins_evenly(
    device: AgentDevice,
) -> None:
    per_day = queries.timelapse_frames(device.agent.store, timezone.utc, True, 100)
    assert [f.captured_at.hour for f in per_day] == [15, 9]
    thinned = queries.timelapse_frames(device.agent.store, timezone.utc, False, 4)
    assert [f.seq for f in thinned] == [1, 4, 7, 10]


def test_photo_neighbours_skip_observations_without_photos(tmp_path: Path) -> None:
    from tests.web.conftest import start_device

    fresh = start_device(tmp_path / "data", captures=3)
    try:
        fresh.agent.store._prune_oldest(1)  # the oldest photo goes; its measurements stay
        assert queries.photo_neighbours(fresh.agent.store, 2) == (None, 3)
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("value", "top", "step"),
    [
        (1.0, 1.0, 0.2),
        (1.1, 1.5, 0.5),
        (27.5, 30, 10),
        (43, 50, 10),
        (100, 100, 20),
        (101, 150, 50),
    ],
)
def test_y_scale_rounds_up_to_readable_steps(value: float, top: float, step: float) -> None:
    assert y_scale(value) == pytest.approx((top, step))


def test_a_chart_breaks_its_line_where_the_device_was_off() -> None:
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    times = [start + timedelta(hours=h) for h in (0, 1, 2, 3, 20, 21, 22)]
    svg = line_chart(
        "Cover",
        times,
        [Line("cover", "Cover", [1, 2, 3, 4, 5, 6, 7])],
        start,
        start + timedelta(days=1),
        lambda t: t,
    )
    assert svg.count("<polyline") == 2
    assert "<script" not in svg


def test_a_chart_without_data_says_so() -> None:
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    svg = line_chart(
        "Cover", [], [Line("cover", "Cover", [])], start, start + timedelta(days=1), lambda t: t
    )
    assert "no data in this range" in svg


def test_declined_verdicts_stay_out_of_the_health_chart(fresh_device: AgentDevice) -> None:
    from edge.protocol import HealthBlock, Observation

    store = fresh_device.agent.store
    latest = store.recent(1)[0]
    verdicts = [
        HealthBlock(label="healthy", confidence=0.8, scores={"healthy": 0.8}),
        HealthBlock(
            label="unknown",
            confidence=0.2,
            scores={"healthy": 0.2},
            assessed=False,
            reason="too dark to judge the leaves",
        ),
    ]
    for health in verdicts:

        def build(seq: int, stored: bool, health: HealthBlock = health) -> Observation:
            return latest.model_copy(update={"seq": seq, "health": health})

        store.add_observation(build, None)
    start = latest.captured_at - timedelta(hours=1)
    points = queries.series(store, start, start + timedelta(hours=2), buckets=1)
    assert points[0].health_confidence == pytest.approx(0.8)
    assert points[0].healthy_share == pytest.approx(1.0)


def test_series_averages_leave_out_captures_without_colour(fresh_device: AgentDevice) -> None:
    from edge.protocol import Observation

    store = fresh_device.agent.store
    latest = store.recent(1)[0]
    for yellow, brown in ((None, None), (9.0, 3.0), (None, None)):
        canopy = latest.canopy.model_copy(
            update={"yellow_pct": yellow, "brown_pct": brown, "colour_reason": "too dark"}
        )

        def build(seq: int, stored: bool, canopy: object = canopy) -> Observation:
            return latest.model_copy(update={"seq": seq, "canopy": canopy})

        store.add_observation(build, None)
    # The bucket holds `latest` too; averages are over the captures whose colour was measured.
    start = latest.captured_at - timedelta(minutes=30)
    points = queries.series(store, start, start + timedelta(hours=1), buckets=1)
    assert points[0].count == 4
    assert latest.canopy.yellow_pct is not None and latest.canopy.brown_pct is not None
    assert points[0].yellow_pct == pytest.approx((latest.canopy.yellow_pct + 9.0) / 2)
    assert points[0].brown_pct == pytest.approx((latest.canopy.brown_pct + 3.0) / 2)


def test_a_bucket_without_any_colour_has_no_colour_average(fresh_device: AgentDevice) -> None:

    store = fresh_device.agent.store
    latest = store.recent(1)[0]
    later = latest.captured_at + timedelta(days=3)
    canopy = latest.canopy.model_copy(
        update={"yellow_pct": None, "brown_pct": None, "colour_reason": "too dark"}
    )
    store.add_observation(
        lambda seq, stored: latest.model_copy(
            update={"seq": seq, "captured_at": later, "canopy": canopy}
        ),
        None,
    )
    points = queries.series(store, later - timedelta(hours=1), later + timedelta(hours=1), 1)
    assert points[0].count == 1
    assert points[0].yellow_pct is None and points[0].brown_pct is None
    assert points[0].cover_pct == pytest.approx(latest.canopy.cover_pct)
