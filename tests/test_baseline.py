"""The grow baseline: set by the first usable captures, kept across restarts, reset by a command."""

from __future__ import annotations

from pathlib import Path

from edge.agent import Agent
from edge.clock import FakeClock
from edge.commands import CommandRunner
from edge.config import EdgeConfig
from edge.vision.background import LEARN_CAPTURES
from tests.conftest import make_config


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
