"""Camera backends: synthetic, replay, OpenCV (on a real video file), picamera2 seam."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.camera import open_camera
from edge.camera.opencv import OpenCVCamera, OpenCVCameraSettings
from edge.camera.picamera2 import Picamera2Camera, Picamera2CameraSettings
from edge.camera.replay import ReplayCamera, ReplayCameraSettings
from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.clock import FakeClock
from edge.errors import CameraError


def test_synthetic_frames_are_deterministic_and_carry_truth(clock: FakeClock) -> None:
    a = SyntheticCamera(SyntheticCameraSettings(seed=7), clock).capture()
    b = SyntheticCamera(SyntheticCameraSettings(seed=7), clock).capture()
    assert a.pixels is not None and b.pixels is not None and a.truth_mask is not None
    assert (a.pixels == b.pixels).all()
    assert a.pixels.shape == (960, 1280, 3)
    assert a.truth_mask.shape == (960, 1280)
    assert a.captured_at == clock.now()


def test_synthetic_canopy_grows_capture_by_capture(clock: FakeClock) -> None:
    cam = SyntheticCamera(SyntheticCameraSettings(days_per_capture=3.0), clock)
    covers = []
    for _ in range(8):
        frame = cam.capture()
        assert frame.truth_mask is not None
        covers.append(frame.truth_mask.mean())
    assert covers == sorted(covers)
    assert covers[-1] > 5 * covers[0]


def test_synthetic_brightness_imitates_lights_off(clock: FakeClock) -> None:
    frame = SyntheticCamera(SyntheticCameraSettings(brightness=0.05), clock).capture()
    assert frame.pixels is not None and frame.pixels.mean() < 10


def write_photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img = np.full((48, 64, 3), 40 * i, np.uint8)
        path = folder / f"img_{i:03d}.jpg"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def test_replay_plays_photos_in_name_order_and_loops(tmp_path: Path, clock: FakeClock) -> None:
    paths = write_photos(tmp_path / "grow", 3)
    (tmp_path / "grow" / "notes.txt").write_text("not a photo")
    cam = ReplayCamera(ReplayCameraSettings(backend="replay", folder=tmp_path / "grow"), clock)
    sources = [cam.capture().source for _ in range(5)]
    assert sources == [str(p) for p in (*paths, *paths[:2])]


def test_replay_passes_jpeg_bytes_untouched(tmp_path: Path, clock: FakeClock) -> None:
    (path,) = write_photos(tmp_path / "one", 1)
    frame = ReplayCamera(
        ReplayCameraSettings(backend="replay", folder=path.parent), clock
    ).capture()
    assert frame.jpeg == path.read_bytes()
    assert (frame.width, frame.height) == (64, 48)


def test_replay_without_loop_stops_after_the_last_photo(tmp_path: Path, clock: FakeClock) -> None:
    write_photos(tmp_path / "g", 2)
    settings = ReplayCameraSettings(backend="replay", folder=tmp_path / "g", loop=False)
    cam = ReplayCamera(settings, clock)
    cam.capture()
    cam.capture()
    with pytest.raises(CameraError, match="all 2 photos played"):
        cam.capture()


def test_replay_reports_a_corrupt_photo_by_name(tmp_path: Path, clock: FakeClock) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    cam = ReplayCamera(ReplayCameraSettings(backend="replay", folder=folder), clock)
    with pytest.raises(CameraError, match=r"a\.jpg.*empty"):
        cam.capture()


def test_replay_of_a_missing_folder_says_so(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        open_camera(ReplayCameraSettings(backend="replay", folder=tmp_path / "nope"), clock)


def make_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((120, 160, 3), (20 * i, 100, 50), np.uint8))
    writer.release()


def test_opencv_backend_reads_frames_as_rgb(tmp_path: Path, clock: FakeClock) -> None:
    video = tmp_path / "cam.avi"
    make_video(video, 10)
    settings = OpenCVCameraSettings(backend="opencv", source=str(video), warmup_frames=2)
    cam = OpenCVCamera(settings, clock)
    frame = cam.capture()
    cam.close()
    assert frame.pixels is not None
    assert frame.pixels.shape == (120, 160, 3)
    # Written as BGR (40, 100, 50): read back as RGB the red channel is 50.
    assert abs(int(frame.pixels[..., 0].mean()) - 50) < 8


def test_opencv_backend_reports_a_device_that_runs_dry(tmp_path: Path, clock: FakeClock) -> None:
    video = tmp_path / "short.avi"
    make_video(video, 1)
    cam = OpenCVCamera(
        OpenCVCameraSettings(backend="opencv", source=str(video), warmup_frames=0), clock
    )
    cam.capture()
    with pytest.raises(CameraError, match="returned no frame"):
        cam.capture()


def test_opencv_backend_names_a_device_it_cannot_open(clock: FakeClock) -> None:
    settings = OpenCVCameraSettings(backend="opencv", source="/dev/video-does-not-exist")
    with pytest.raises(CameraError, match="could not be opened"):
        OpenCVCamera(settings, clock)


def test_picamera2_off_a_pi_gives_a_clear_error(clock: FakeClock) -> None:
    with pytest.raises(CameraError, match="python3-picamera2"):
        open_camera(Picamera2CameraSettings(backend="picamera2"), clock)


class FakeRequest:
    def __init__(self, array: np.ndarray, metadata: dict[str, Any]) -> None:
        self.array, self.metadata, self.released = array, metadata, False

    def make_array(self, name: str) -> np.ndarray:
        return self.array

    def get_metadata(self) -> dict[str, Any]:
        return self.metadata

    def release(self) -> None:
        self.released = True


class FakePicamera2:
    """Stands in for picamera2.Picamera2, which needs a Pi and its camera."""

    def __init__(self) -> None:
        self.controls: dict[str, Any] = {}
        self.started = False
        self.settled = {"ExposureTime": 12000, "AnalogueGain": 2.0, "ColourGains": (1.9, 1.6)}
        self.requests: list[FakeRequest] = []

    def create_still_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        return {"main": main}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_metadata(self) -> dict[str, Any]:
        return dict(self.settled)

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls.update(controls)

    def capture_request(self) -> FakeRequest:
        bgr = np.zeros((8, 8, 3), np.uint8)
        bgr[..., 0] = 200  # blue in libcamera's "RGB888" memory order
        request = FakeRequest(bgr, {**self.settled, **self.controls})
        self.requests.append(request)
        return request

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        pass


def test_picamera2_locks_exposure_and_white_balance_after_warmup(clock: FakeClock) -> None:
    fake = FakePicamera2()
    slept: list[float] = []
    cam = Picamera2Camera(
        Picamera2CameraSettings(backend="picamera2", warmup_s=1.5),
        clock,
        factory=lambda num: fake,
        sleep=slept.append,
    )
    assert slept == [1.5]
    assert fake.controls == {
        "AeEnable": False,
        "ExposureTime": 12000,
        "AnalogueGain": 2.0,
        "AwbEnable": False,
        "ColourGains": (1.9, 1.6),
    }
    frame = cam.capture()
    assert frame.exposure.locked and frame.exposure.exposure_time_us == 12000
    assert frame.pixels is not None and frame.pixels[0, 0].tolist() == [0, 0, 200]
    assert fake.requests[-1].released


def test_picamera2_can_leave_auto_exposure_on(clock: FakeClock) -> None:
    fake = FakePicamera2()
    settings = Picamera2CameraSettings(
        backend="picamera2", lock_exposure=False, lock_white_balance=False
    )
    cam = Picamera2Camera(settings, clock, factory=lambda num: fake, sleep=lambda s: None)
    assert fake.controls == {}
    assert cam.capture().exposure.locked is False
