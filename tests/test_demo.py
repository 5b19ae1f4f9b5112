"""`make demo` with the shipped model: the healthy canopy never shows a disease, and
once its yellowing begins the yellowing or drift alert fires, once."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from edge.agent import Agent
from edge.clock import FakeClock
from edge.demo import demo_config

CAPTURES = 34


def test_demo_shows_no_disease_before_yellowing_then_alerts_once(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={"enabled": False})})
    camera = cfg.camera
    assert camera.backend == "synthetic" and camera.yellowing_onset_day is not None
    agent = Agent(cfg, clock=FakeClock(datetime(2026, 3, 2, 8, tzinfo=timezone.utc))).start()
    try:
        observations = [agent.capture_once() for _ in range(CAPTURES)]
        alerts = agent.store.alerts()
    finally:
        agent.close()
    assert all(o is not None and o.health is not None for o in observations)
    onset_seq = 1 + (camera.yellowing_onset_day - camera.start_day) / camera.days_per_capture
    before = [o for o in observations if o is not None and o.seq <= onset_seq]
    assert before
    for o in before:
        assert o.health is not None
        assert o.health.label in ("healthy", "unknown"), (o.seq, o.health.label)
    kinds = Counter(a.kind for a in alerts)
    assert set(kinds) <= {"yellowing", "drift"} and kinds, kinds
    assert all(count == 1 for count in kinds.values()), kinds
    assert all(a.raised_seq > onset_seq for a in alerts)
