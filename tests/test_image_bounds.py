"""Hostile image headers: sizes are checked before any decoder allocates for them."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.agent import Agent
from edge.camera.replay import ReplayCamera, ReplayCameraSettings
from edge.cli import main
from edge.clock import FakeClock
from edge.errors import CameraError, ImageDecodeError
from edge.vision.decode import decode_for_analysis, decode_full, image_size
from tests.conftest import make_config


def _real_png() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose IHDR (CRC fixed up) claims `width`x`height`."""
    data = bytearray(_real_png())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header claims `width`x`height`."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMB = png_claiming(100000, 100000)


def test_the_bomb_is_small() -> None:
    assert len(BOMB) < 4096


@pytest.mark.parametrize(
    "data", [BOMB, png_claiming(20000, 10), jpeg_claiming(65000, 65000)], ids=["png", "side", "jpg"]
)
def test_every_decode_path_refuses_an_oversized_header(data: bytes) -> None:
    for read in (image_size, decode_full, lambda d: decode_for_analysis(d, 640)):
        with pytest.raises(ImageDecodeError, match=r"image claims \d+x\d+ pixels"):
            read(data)


def _replay_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "grow"
    folder.mkdir()
    (folder / "a-bomb.png").write_bytes(BOMB)
    (folder / "b-good.png").write_bytes(_real_png())
    return folder


def test_the_replay_camera_reports_the_bomb_and_plays_the_next_photo(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = ReplayCameraSettings(backend="replay", folder=_replay_folder(tmp_path))
    cam = ReplayCamera(settings, clock)
    with pytest.raises(CameraError, match=r"a-bomb\.png: image claims 100000x100000"):
        cam.capture()
    assert cam.capture().width == 30


def test_an_agent_with_the_replay_camera_counts_the_bomb_as_a_failed_capture(
    tmp_path: Path, clock: FakeClock
) -> None:
    folder = _replay_folder(tmp_path)
    cfg = make_config(tmp_path / "data", camera={"backend": "replay", "folder": str(folder)})
    agent = Agent(cfg, clock=clock).start()
    try:
        assert agent.capture_once() is None
        assert agent.stats.captures_failed == 1
        assert "100000x100000" in (agent.stats.last_error or "")
        assert agent.capture_once() is not None
    finally:
        agent.close()


def test_analyze_names_the_bomb_in_one_line_and_analyzes_the_files_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(BOMB)
    good = tmp_path / "good.png"
    good.write_bytes(_real_png())
    assert main(["analyze", str(bomb), str(good), str(bomb)]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["image"]["source"] for line in out.splitlines()] == ["good.png"]
    errors = err.splitlines()
    assert "Traceback" not in err
    assert (
        errors
        == [
            f"error: {bomb}: image claims 100000x100000 pixels; at most 16384 per "
            "side and 64 MP are read"
        ]
        * 2
    )
