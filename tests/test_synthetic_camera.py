"""The synthetic camera as the demo uses it: plants keep their age across restarts."""

from __future__ import annotations

from pathlib import Path

from edge.camera import open_camera
from edge.camera.synthetic import SyntheticCamera
from edge.clock import FakeClock
from edge.demo import demo_config


def test_demo_plants_keep_their_age_after_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    config = demo_config(tmp_path)
    first = open_camera(config.camera, clock)
    assert isinstance(first, SyntheticCamera)
    start = first.day
    for _ in range(3):
        first.capture()
    first.close()
    again = open_camera(demo_config(tmp_path).camera, clock)
    assert isinstance(again, SyntheticCamera)
    assert again.day == start + 3 * config.camera.days_per_capture  # type: ignore[union-attr]


def test_damaged_state_file_starts_the_plants_again(tmp_path: Path, clock: FakeClock) -> None:
    config = demo_config(tmp_path)
    state = config.camera.state_file  # type: ignore[union-attr]
    assert state is not None
    state.write_text("{not json")
    camera = open_camera(config.camera, clock)
    assert isinstance(camera, SyntheticCamera)
    assert camera.day == config.camera.start_day  # type: ignore[union-attr]
    camera.capture()  # and the next capture writes a good state again
    assert open_camera(config.camera, clock).day == camera.day  # type: ignore[union-attr]
