"""A capture under light that makes colour unmeasurable is stored and published with null colour."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from edge.agent import Agent
from edge.camera.base import Frame
from edge.camera.growroom import SceneSpec, render_scene
from edge.clock import FakeClock
from edge.protocol import Observation
from edge.tables import ObservationRow, OutboxRow
from tests.conftest import make_config


class GrowRoomCamera:
    """A camera photographing a synthetic grow-room scene under the given lamp."""

    name = "growroom"

    def __init__(self, clock: FakeClock, lamp: str) -> None:
        self.clock = clock
        self.lamp = lamp
        self.frames = 0

    def capture(self) -> Frame:
        self.frames += 1
        spec = SceneSpec("white_wall", self.lamp, width=480, height=360, frame=self.frames)  # type: ignore[arg-type]
        rgb = render_scene(spec).rgb
        return Frame(self.clock.now(), rgb.shape[1], rgb.shape[0], pixels=rgb, source="growroom")

    def close(self) -> None:
        pass


def test_red_blue_led_capture_is_stored_and_published_without_colour(
    tmp_path: Path, clock: FakeClock
) -> None:
    agent = Agent(
        make_config(tmp_path, mqtt={"enabled": True}),
        clock=clock,
        camera=GrowRoomCamera(clock, "red_blue"),
    ).start()
    obs = agent.capture_once()
    assert obs is not None, agent.stats.last_error
    assert obs.canopy.yellow_pct is None and obs.canopy.brown_pct is None
    assert obs.canopy.colour_reason  # the analysis says why
    assert obs.canopy.cover_pct > 0  # what can be measured still is

    with Session(agent.store.engine) as s:
        row = s.execute(select(ObservationRow)).scalar_one()
        assert row.yellow_pct is None and row.brown_pct is None
        messages = s.execute(select(OutboxRow).where(OutboxRow.seq == obs.seq)).scalars().all()
    published = [
        Observation.model_validate_json(m.payload)
        for m in messages
        if m.topic.endswith("/observation")
    ]
    assert published and published[0] == obs
    sent = next(m for m in messages if m.topic.endswith("/observation"))
    canopy = json.loads(sent.payload)["canopy"]
    assert "yellow_pct" in canopy and canopy["yellow_pct"] is None
    assert canopy["colour_reason"] == obs.canopy.colour_reason
    assert agent.store.get(obs.seq) == obs
    agent.close()
