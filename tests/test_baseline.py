"""The grow baseline: set by the first usable captures, kept across restarts, reset by a command."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from edge.agent import Agent
from edge.baseline import GrowBaseline, Sample
from edge.clock import FakeClock
from edge.commands import CommandRunner
from edge.config import EdgeConfig
from edge.store import Store
from edge.vision.background import LEARN_CAPTURES
from tests.conftest import make_config

T0 = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)


def _config(tmp_path: Path) -> EdgeConfig:
    return make_config(
        tmp_path,
        camera={"width": 320, "height": 240, "start_day": 14, "days_per_capture": 0.0},
        model={"enabled": True},
        health={"baseline_captures": 3},
    )


def test_first_usable_captures_set_the_baseline_then_drift_is_reported(
    tmp_path: Path, clock: FakeClock
) -> None:
    agent = Agent(_config(tmp_path), clock=clock).start()
    observations = [agent.capture_once() for _ in range(5)]
    drifts = [o.health.drift for o in observations if o is not None and o.health is not None]
    agent.close()
    assert drifts[:3] == [None, None, None]
    assert all(d is not None and d < 1.0 for d in drifts[3:])
    again = Agent(_config(tmp_path), clock=clock).start()
    assert again.baseline.ready  # kept across a restart
    again.close()


def test_reset_baseline_command_forgets_it_and_new_captures_set_a_new_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    agent = Agent(_config(tmp_path), clock=clock).start()
    for _ in range(3):
        agent.capture_once()
    assert agent.baseline.ready
    result = CommandRunner("test-cam", agent, lambda r: None).handle("reset-baseline", b"{}")
    assert result.ok, result.error
    assert agent.baseline.count == 0
    obs = agent.capture_once()
    assert obs is not None and obs.health is not None and obs.health.drift is None
    assert agent.baseline.count == 1
    agent.close()


def test_the_agent_learns_the_background_and_a_new_grow_forgets_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    agent = Agent(_config(tmp_path), clock=clock).start()
    for _ in range(LEARN_CAPTURES):
        agent.capture_once()
    assert agent.observer.background.ready
    agent.reset_baseline()
    assert not agent.observer.background.ready
    agent.close()


class FailingModel:
    """A model whose invoke fails on every photo (a corrupt delegate, say)."""

    def assess_batch(self, rgbs: list[object]) -> list[object]:
        from edge.errors import ModelError

        raise ModelError("model produced no usable scores")


def test_a_model_failing_on_a_photo_still_stores_the_canopy(
    tmp_path: Path, clock: FakeClock
) -> None:
    agent = Agent(_config(tmp_path), clock=clock).start()
    agent.observer.classifier = FailingModel()
    agent.run(max_captures=2)
    stored = agent.store.recent(5)
    agent.close()
    assert len(stored) == 2
    assert all(o.health is None and o.canopy.cover_pct > 0 for o in stored)


def _sample(seq: int, yellow: float | None, brown: float | None, tilt: float = 0.0) -> Sample:
    emb = np.array([1.0, tilt, 0.0, 0.0], np.float32)
    emb /= np.linalg.norm(emb)
    return Sample(seq, T0, "whole", emb, None, None, yellow, brown)


def test_a_sample_without_colour_drifts_on_what_was_measured(tmp_path: Path) -> None:
    # Colour left null (narrow-band LED light) leaves those signals out; the embedding counts.
    store = Store(tmp_path)
    baseline = GrowBaseline(3)
    for seq, yellow in ((1, 2.0), (2, None), (3, 3.0)):
        sample = _sample(seq, yellow, None if yellow is None else 0.5, tilt=0.01 * seq)
        with Session(store.engine) as s, s.begin():
            s.add(sample.row())
        baseline.add(sample)
    loaded = GrowBaseline.load(store.engine, 3)
    assert loaded.ready and [s.yellow_pct for s in loaded._samples] == [2.0, None, 3.0]
    same = loaded.drift(_sample(9, None, None, tilt=0.02))
    assert same is not None and same < 1.0
    moved = loaded.drift(_sample(9, None, None, tilt=2.0))
    assert moved is not None and moved > 5.0
    assert loaded.drift(_sample(9, 40.0, None, tilt=0.02)) == baseline.drift(
        _sample(9, 40.0, None, tilt=0.02)
    )
    store.close()
