"""The Raspberry Pi camera through picamera2, with exposure and colour locked.

Auto exposure and auto white balance would chase the grow lights and make colour
drift from photo to photo; after a warm-up the values the camera settled on are
read back and fixed, so hue and yellowing are comparable across a whole grow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from edge.camera.base import CameraSettings, Exposure, Frame
from edge.clock import Clock
from edge.errors import CameraError

INSTALL_HINT = (
    "picamera2 is not available: on Raspberry Pi OS install it with "
    "'sudo apt install python3-picamera2' and create the agent's venv with "
    "--system-site-packages; other machines need camera.backend opencv, replay or synthetic"
)


class Picamera2CameraSettings(CameraSettings):
    """A Raspberry Pi camera module."""

    backend: Literal["picamera2"] = Field(description="Camera backend.")
    camera_num: int = Field(0, ge=0, le=7, description="Which camera, for boards with several.")
    width: int = Field(2304, ge=64, le=9152, description="Still width in pixels.")
    height: int = Field(1296, ge=64, le=6944, description="Still height in pixels.")
    warmup_s: float = Field(
        2.0, ge=0, le=30, description="Seconds of auto exposure/white balance before locking."
    )
    lock_exposure: bool = Field(True, description="Fix exposure time and gain after warm-up.")
    lock_white_balance: bool = Field(True, description="Fix colour gains after warm-up.")


def _import_picamera2(camera_num: int) -> Any:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise CameraError(f"{INSTALL_HINT} ({exc})") from exc
    try:
        return Picamera2(camera_num)
    except (RuntimeError, IndexError) as exc:
        raise CameraError(f"Pi camera {camera_num} could not be opened: {exc}") from exc


class Picamera2Camera:
    """Captures RGB stills from the Pi camera; `factory` is the seam tests drive."""

    name = "picamera2"

    def __init__(
        self,
        settings: Picamera2CameraSettings,
        clock: Clock,
        factory: Callable[[int], Any] = _import_picamera2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._cam = factory(settings.camera_num)
        self._locked: dict[str, Any] = {}
        # "RGB888" in libcamera's naming is B, G, R byte order in memory.
        config = self._cam.create_still_configuration(
            main={"size": (settings.width, settings.height), "format": "RGB888"}
        )
        self._cam.configure(config)
        self._cam.start()
        sleep(settings.warmup_s)
        self._lock_controls()

    def _lock_controls(self) -> None:
        s = self.settings
        metadata = self._cam.capture_metadata()
        controls: dict[str, Any] = {}
        if s.lock_exposure and "ExposureTime" in metadata:
            controls.update(
                AeEnable=False,
                ExposureTime=int(metadata["ExposureTime"]),
                AnalogueGain=float(metadata.get("AnalogueGain", 1.0)),
            )
        if s.lock_white_balance and "ColourGains" in metadata:
            red, blue = metadata["ColourGains"]
            controls.update(AwbEnable=False, ColourGains=(float(red), float(blue)))
        if controls:
            self._cam.set_controls(controls)
        self._locked = controls

    def capture(self) -> Frame:
        """One still, with the exposure the camera reports for it."""
        try:
            request = self._cam.capture_request()
            try:
                bgr = request.make_array("main")
                metadata = request.get_metadata()
            finally:
                request.release()
        except Exception as exc:  # libcamera raises plain RuntimeErrors and more
            raise CameraError(f"Pi camera capture failed: {exc}") from exc
        rgb = np.ascontiguousarray(bgr[..., 2::-1])
        gains = metadata.get("ColourGains")
        return Frame(
            captured_at=self._clock.now(),
            width=int(rgb.shape[1]),
            height=int(rgb.shape[0]),
            pixels=rgb,
            exposure=Exposure(
                exposure_time_us=_float_or_none(metadata.get("ExposureTime")),
                analogue_gain=_float_or_none(metadata.get("AnalogueGain")),
                colour_gains=(float(gains[0]), float(gains[1])) if gains else None,
                locked=bool(self._locked),
            ),
            source=f"picamera2:{self.settings.camera_num}",
        )

    def close(self) -> None:
        """Stop and release the camera."""
        self._cam.stop()
        self._cam.close()


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
