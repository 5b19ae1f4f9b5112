"""The agent loop: scheduled captures, dark frames, failing cameras, GPIO, a full run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.camera.base import Frame
from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.clock import FakeClock
from edge.config import EdgeConfig
from edge.errors import CameraError
from tests.conftest import make_config


class FlakyCamera:
    """A camera that fails on the captures listed, as a loose ribbon cable would."""

    name = "flaky"

    def __init__(self, clock: FakeClock, fail_on: set[int]) -> None:
        self.inner = SyntheticCamera(SyntheticCameraSettings(width=320, height=240), clock)
        self.fail_on = fail_on
        self.calls = 0

    def capture(self) -> Frame:
        self.calls += 1
        if self.calls in self.fail_on:
            raise CameraError("flaky camera: no frame (simulated)")
        return self.inner.capture()

    def close(self) -> None:
        pass


def test_runs_a_simulated_day_on_schedule(tmp_path: Path, clock: FakeClock) -> None:
    cfg = make_config(
        tmp_path,
        schedule={
            "interval_s": 3600,
            "lights_on": "06:00",
            "lights_off": "18:00",
            "timezone": "UTC",
        },
        camera={"width": 320, "height": 240},
    )
    clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc))
    agent = Agent(cfg, clock=clock).start()
    agent.run(max_captures=24)
    hours = [o.captured_at.hour for o in reversed(agent.store.recent(100))]
    assert hours == list(range(6, 18)) * 2
    assert [o.seq for o in reversed(agent.store.recent(100))] == list(range(1, 25))
    agent.close()


def test_dark_frames_are_skipped_not_stored(tmp_path: Path, clock: FakeClock) -> None:
    cfg = make_config(tmp_path, camera={"brightness": 0.03, "width": 320, "height": 240})
    agent = Agent(cfg, clock=clock).start()
    agent.run(max_captures=3)
    assert agent.stats.skipped_dark == 3
    assert agent.store.stats().observations == 0
    agent.close()


def test_a_camera_failing_mid_run_is_reported_and_the_agent_keeps_going(
    tmp_path: Path, clock: FakeClock, mock_factory: Any
) -> None:
    cfg = make_config(tmp_path, gpio={"status_led_pin": 5})
    agent = Agent(
        cfg, clock=clock, camera=FlakyCamera(clock, {3, 4, 5}), pin_factory=mock_factory
    ).start()
    agent.run(max_captures=5)
    assert agent.stats.captures_ok == 2
    assert agent.stats.captures_failed == 3
    assert agent.gpio.status == "error"  # three failures in a row
    assert agent.stats.last_error is not None and "simulated" in agent.stats.last_error
    agent.run(max_captures=1)
    assert agent.gpio.status == "ok"
    assert agent.store.seqs() == [1, 2, 3]  # failures use no seq
    agent.close()


def test_photo_light_is_on_only_while_capturing(
    tmp_path: Path, clock: FakeClock, mock_factory: Any
) -> None:
    cfg = make_config(tmp_path, gpio={"photo_light_pin": 17, "photo_light_settle_s": 0})
    seen: list[bool] = []

    class Watching(FlakyCamera):
        def capture(self) -> Frame:
            seen.append(bool(agent.gpio.photo_light.value))
            return super().capture()

    agent = Agent(cfg, clock=clock, camera=Watching(clock, set()), pin_factory=mock_factory)
    agent.start()
    agent.run(max_captures=2)
    assert seen == [True, True]
    assert agent.gpio.photo_light.value == 0
    agent.close()


def test_button_press_takes_a_photo_now(
    tmp_path: Path, clock: FakeClock, mock_factory: Any
) -> None:
    cfg = make_config(tmp_path, gpio={"button_pin": 26}, schedule={"interval_s": 86400})
    agent = Agent(cfg, clock=clock, pin_factory=mock_factory).start()
    start = clock.now()
    mock_factory.pin(26).drive_low()  # buttons pull up: pressed is low
    agent.run(max_captures=1)
    assert agent.store.stats().observations == 1
    assert agent.store.recent(1)[0].captured_at == start  # not at the next daily slot
    agent.close()


def test_stop_ends_the_loop_between_captures(tmp_path: Path, clock: FakeClock) -> None:
    agent = Agent(make_config(tmp_path), clock=clock).start()
    agent.stop()
    agent.run()
    assert agent.stats.captures_ok == 0
    agent.close()


def test_without_a_model_the_canopy_is_still_measured(config: EdgeConfig, clock: FakeClock) -> None:
    model = config.model.model_copy(update={"enabled": True, "dir": Path("/nonexistent")})
    cfg = config.model_copy(update={"model": model})
    agent = Agent(cfg, clock=clock).start()
    obs = agent.capture_once()
    assert obs is not None
    assert obs.health is None
    assert obs.model.error is not None and "/nonexistent" in obs.model.error
    assert obs.canopy.cover_pct > 0
    agent.close()


def test_observation_has_the_documented_fields(config: EdgeConfig, clock: FakeClock) -> None:
    agent = Agent(config, clock=clock).start()
    obs = agent.capture_once()
    assert obs is not None
    data = obs.model_dump(mode="json")
    assert data["device_id"] == "test-cam" and data["seq"] == 1
    assert data["captured_at"].endswith("Z")
    assert 0 <= data["canopy"]["cover_pct"] <= 100
    assert data["image"]["stored"] is True
    assert agent.store.image_path(1) is not None
    agent.close()


def test_retention_runs_daily_in_the_loop(tmp_path: Path, clock: FakeClock) -> None:
    cfg = make_config(
        tmp_path,
        storage={"observation_retention_days": 1},
        schedule={"interval_s": 6 * 3600},
        camera={"width": 320, "height": 240},
    )
    agent = Agent(cfg, clock=clock).start()
    agent.run(max_captures=12)  # three simulated days
    kept = agent.store.recent(100)
    assert len(kept) < 12
    assert min(o.captured_at for o in kept) >= clock.now() - timedelta(days=2)
    agent.close()


@pytest.mark.parametrize("keep", [False])
def test_photos_can_be_turned_off(tmp_path: Path, clock: FakeClock, keep: bool) -> None:
    agent = Agent(make_config(tmp_path, storage={"keep_images": keep}), clock=clock).start()
    obs = agent.capture_once()
    assert obs is not None and obs.image.stored is False
    assert agent.store.stats().images == 0
    agent.close()
