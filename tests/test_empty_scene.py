"""The "empty scene" capture: from the camera, kept across restarts, reset with the grow.

The camera is the replay camera over JPEGs of a grow-room scene with exact truth, so a
frame goes through the same decode as on a device: first the scene with the plants
taken away, then the same scene with plants and a yellow sticky trap beside them
(leaf-sized, near green: only the background tells it from chlorosis).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from edge.agent import Agent
from edge.camera.growroom import Scene, SceneSpec, render_scene
from edge.cli import main
from edge.clock import FakeClock
from edge.errors import CameraError, ExposureError
from edge.observe import BACKGROUND_FILE
from edge.vision.background import BackgroundModel
from tests.conftest import make_config
from tests.mqtt_client import Recorder, publish

TRAP = SceneSpec("white_wall", "white", sticky_trap=True, seed=3)


def _write_jpeg(path: Path, scene: Scene) -> None:
    ok = cv2.imwrite(str(path), cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR))
    assert ok


@pytest.fixture(scope="module")
def trap_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Scene]:
    """A replay folder: the empty scene, then the same scene with plants and a sticky trap."""
    folder = tmp_path_factory.mktemp("replay") / "photos"
    folder.mkdir()
    scene = render_scene(TRAP)
    _write_jpeg(folder / "0-empty.jpg", render_scene(dataclasses.replace(TRAP, empty=True)))
    _write_jpeg(folder / "1-plants.jpg", scene)
    _write_jpeg(folder / "2-plants.jpg", render_scene(dataclasses.replace(TRAP, frame=2)))
    return folder, scene


def _config(tmp_path: Path, folder: Path, **sections: Any) -> Any:
    return make_config(
        tmp_path / "data", camera={"backend": "replay", "folder": str(folder)}, **sections
    )


@pytest.fixture
def start_agent(clock: FakeClock) -> Iterator[Callable[[Any], Agent]]:
    """Starts agents on the fake clock and closes them even when a test fails."""
    started: list[Agent] = []

    def start(cfg: Any) -> Agent:
        agent = Agent(cfg, clock=clock).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.close()


def test_the_empty_scene_keeps_a_sticky_trap_out_of_the_yellowing(
    tmp_path: Path, trap_scene: tuple[Path, Scene], start_agent: Callable[[Any], Agent]
) -> None:
    folder, scene = trap_scene
    agent = start_agent(_config(tmp_path, folder))
    taken = agent.capture_empty_scene()
    assert agent.status()["empty_scene_at"] == taken
    obs = agent.capture_once()
    assert obs is not None and obs.canopy.yellow_pct is not None
    assert abs(obs.canopy.cover_pct - scene.cover_pct) <= 3.0
    assert obs.canopy.yellow_pct < 2.0


def test_without_the_empty_scene_the_trap_reads_as_yellowing(
    tmp_path: Path, trap_scene: tuple[Path, Scene], start_agent: Callable[[Any], Agent]
) -> None:
    folder, _ = trap_scene
    agent = start_agent(_config(tmp_path, folder))
    agent.capture_once()  # the empty frame: measured as a capture, nothing learnt yet
    obs = agent.capture_once()
    assert obs is not None and obs.canopy.yellow_pct is not None
    assert obs.canopy.yellow_pct > 2.0


def test_the_empty_scene_survives_a_restart_and_goes_with_the_baseline(
    tmp_path: Path, trap_scene: tuple[Path, Scene], start_agent: Callable[[Any], Agent]
) -> None:
    folder, _ = trap_scene
    cfg = _config(tmp_path, folder)
    first = start_agent(cfg)
    taken = first.capture_empty_scene()
    first.close()
    stored = cfg.storage.dir / BACKGROUND_FILE
    assert stored.is_file()

    again = start_agent(cfg)  # the replay camera starts over: skip the empty frame
    assert again.status()["empty_scene_at"] == taken
    again.capture_once()  # the empty frame, measured against itself: no plant
    obs = again.capture_once()
    assert obs is not None and obs.canopy.yellow_pct is not None
    assert obs.canopy.yellow_pct < 2.0

    again.reset_baseline()
    assert again.status()["empty_scene_at"] is None and not stored.exists()
    again.close()
    assert start_agent(cfg).status()["empty_scene_at"] is None


def test_a_failed_camera_leaves_the_empty_scene_untaken(
    tmp_path: Path, start_agent: Callable[[Any], Agent]
) -> None:
    agent = start_agent(_config(tmp_path, tmp_path / "no-such-folder"))
    with pytest.raises(CameraError, match="no-such-folder"):
        agent.capture_empty_scene()
    assert agent.status()["empty_scene_at"] is None


@pytest.mark.parametrize(
    ("name", "darken", "why"),
    [
        ("lights-off", lambda rgb: np.zeros_like(rgb), "too dark"),
        ("dim", lambda rgb: (rgb * 0.12).astype(np.uint8), "too dark"),
        (
            "washed-out",
            lambda rgb: np.clip(rgb.astype(np.int32) * 3, 0, 255).astype(np.uint8),
            "too bright",
        ),
    ],
)
def test_an_empty_scene_too_dark_or_too_bright_is_refused(
    tmp_path: Path,
    start_agent: Callable[[Any], Agent],
    name: str,
    darken: Callable[[np.ndarray], np.ndarray],
    why: str,
) -> None:
    # A black frame taken as the background would make every pixel "known" for good.
    folder = tmp_path / name
    folder.mkdir()
    empty = render_scene(dataclasses.replace(TRAP, empty=True))
    _write_jpeg(folder / "0-empty.jpg", dataclasses.replace(empty, rgb=darken(empty.rgb)))
    cfg = _config(tmp_path, folder)
    agent = start_agent(cfg)
    with pytest.raises(ExposureError, match=why):
        agent.capture_empty_scene()
    assert agent.status()["empty_scene_at"] is None
    assert not (cfg.storage.dir / BACKGROUND_FILE).exists()
    assert agent.stats.captures_failed == 0  # the camera worked: nothing to alarm about


def test_a_camera_failing_on_the_empty_scene_counts_as_a_failed_capture(
    tmp_path: Path, trap_scene: tuple[Path, Scene], start_agent: Callable[[Any], Agent]
) -> None:
    folder = tmp_path / "one-photo"
    folder.mkdir()
    photo = folder / "0-empty.jpg"
    photo.write_bytes((trap_scene[0] / "0-empty.jpg").read_bytes())
    agent = start_agent(_config(tmp_path, folder))
    photo.unlink()  # the camera opened, then fails to deliver the frame
    with pytest.raises(CameraError, match="cannot read"):
        agent.capture_empty_scene()
    status = agent.status()
    assert status["empty_scene_at"] is None
    assert status["captures_failed"] == 1 and agent.stats.failures_by_reason == {"camera": 1}
    assert "cannot read" in (agent.stats.last_error or "")


def test_a_damaged_background_file_is_learnt_again_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / BACKGROUND_FILE
    path.write_bytes(b"PK\x03\x04 not really a zip")
    model = BackgroundModel(path=path)
    assert not model.ready and model.empty_scene_at is None
    scene = render_scene(dataclasses.replace(TRAP, empty=True))
    model.capture_empty(scene.rgb)
    assert BackgroundModel(path=path).ready


def test_an_empty_scene_another_process_stored_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / BACKGROUND_FILE
    running = BackgroundModel(path=path)
    assert running.empty_scene_at is None
    command_line = BackgroundModel(path=path)
    command_line.capture_empty(render_scene(dataclasses.replace(TRAP, empty=True)).rgb)
    assert running.empty_scene_at == command_line.empty_scene_at is not None
    assert running.matches(render_scene(dataclasses.replace(TRAP, empty=True, frame=1)).rgb).any()


# -- the command line ------------------------------------------------------------------


def _config_file(tmp_path: Path, folder: Path, **sections: Any) -> Path:
    data = {
        "device": {"id": "cli-cam"},
        "camera": {"backend": "replay", "folder": str(folder)},
        "storage": {"dir": str(tmp_path / "data"), "min_free_mb": 0},
        "model": {"enabled": False},
        **sections,
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_cli_captures_the_empty_scene(
    tmp_path: Path, trap_scene: tuple[Path, Scene], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = trap_scene
    assert main(["capture-empty-scene", "--config", str(_config_file(tmp_path, folder))]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["empty_scene_at"]
    stored = BackgroundModel(path=tmp_path / "data" / BACKGROUND_FILE)
    assert stored.empty_scene_at is not None
    assert stored.empty_scene_at.isoformat() == printed["empty_scene_at"]


def test_the_cli_says_why_when_the_camera_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_file(tmp_path, tmp_path / "missing")
    assert main(["capture-empty-scene", "--config", str(config)]) == 1
    assert "camera not available" in capsys.readouterr().err


# -- the MQTT command --------------------------------------------------------------------


def test_the_command_is_answered_on_cmd_result(
    tmp_path: Path, broker: Any, trap_scene: tuple[Path, Scene], start_agent: Callable[[Any], Agent]
) -> None:
    folder, _ = trap_scene
    mqtt = {"enabled": True, "host": broker.host, "port": broker.port, "reconnect_min_s": 0.1}
    agent = start_agent(_config(tmp_path, folder, mqtt=mqtt))
    recorder = Recorder(broker.host, broker.port, ["cultivai/v1/test-cam/cmd_result"])
    try:
        assert agent.link is not None and agent.link.listening.wait(30), "agent not subscribed"
        publish(
            broker.host,
            broker.port,
            "cultivai/v1/test-cam/cmd/capture-empty-scene",
            b'{"request_id": "empty-1"}',
        )
        assert recorder.wait_for(lambda: bool(recorder.json("/cmd_result")), timeout=20)
        result = recorder.json("/cmd_result")[0]
        assert result["command"] == "capture-empty-scene" and result["request_id"] == "empty-1"
        assert result["ok"] is True, result
        taken = agent.status()["empty_scene_at"]
        assert taken is not None and result["detail"]["empty_scene_at"] == taken.isoformat()

        publish(broker.host, broker.port, "cultivai/v1/test-cam/cmd/capture-empty-scene", b"[1]")
        assert recorder.wait_for(lambda: len(recorder.json("/cmd_result")) >= 2, timeout=20)
        refused = recorder.json("/cmd_result")[1]
        assert refused["ok"] is False and "JSON object" in refused["error"]
    finally:
        recorder.close()


def test_the_cli_never_connects_to_the_broker(
    tmp_path: Path, broker: Any, trap_scene: tuple[Path, Scene]
) -> None:
    # With the device's credentials it could take over the running agent's connection.
    folder, _ = trap_scene
    mqtt = {"enabled": True, "host": broker.host, "port": broker.port}
    config = _config_file(tmp_path, folder, mqtt=mqtt)
    assert main(["capture-empty-scene", "--config", str(config)]) == 0
    assert "cli-cam" not in broker.log()
